"""Pass-through to upstream's own Responses API (shared/openai/responses_upstream.py), driven with a real
Invocation against the in-process FM emulator's /v1/responses and (where a response is stored) the job store on
the in-process moto server: which requests need upstream, what reaches it (the caller's body as it came, the
model's full URI, the model's folder as the OpenAI project), what the caller gets, who owns a stored upstream
response, the usage in the summary line, and the refusals (a 400 naming the field) for what cannot be served."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared import config, errors, events, runtime
from shared.client import Call
from shared.jobs.store import job_store
from shared.openai import response_store, responses_upstream
from shared.openai.models import validate
from shared.openai.response_request import ResponseCreateRequest
from tests.conftest import FOLDER, Emulator

PASSTHROUGH = "gpt-oss-120b"
MODEL = f"gpt://{FOLDER}/{PASSTHROUGH}/latest"
OTHER_FOLDER_MODEL = f"gpt://b1gother/{PASSTHROUGH}/latest"
DAY = 86_400


@pytest.fixture
def upstream(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator's Responses API as upstream's (FM_RESPONSES_URL)."""
    monkeypatch.setenv("FM_RESPONSES_URL", stack_env.url + "/v1")
    config.reset_settings()
    return stack_env


@pytest.fixture(scope="module")
def tables(moto_server: str) -> str:
    """The jobs table and results bucket on the in-process moto server, made once for this module (every test
    writes its own response ids)."""
    import boto3

    from local.aws import ACCESS_KEY, REGION, SECRET_KEY
    from shared.jobs.store import create_jobs_table, s3_config

    common = {"endpoint_url": moto_server, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
              "aws_secret_access_key": SECRET_KEY}
    db = boto3.client("dynamodb", **common)
    if "upstream-jobs" not in db.list_tables().get("TableNames", []):
        create_jobs_table(db, "upstream-jobs", poll_s=0.01)
    s3 = boto3.client("s3", **common, config=s3_config())
    if "upstream-results" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="upstream-results", CreateBucketConfiguration={"LocationConstraint": REGION})
    return moto_server


@pytest.fixture
def stored(upstream: Emulator, tables: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    from local.aws import ACCESS_KEY, REGION, SECRET_KEY

    for name, value in {"DOCAPI_ENDPOINT": tables, "S3_ENDPOINT": tables, "JOBS_TABLE": "upstream-jobs",
                        "RESULTS_BUCKET": "upstream-results", "YC_REGION": REGION, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET_KEY}.items():
        monkeypatch.setenv(name, value)
    config.reset_settings()
    yield upstream


def _inv(caller: str = "alice", query: str = "") -> runtime.Invocation:
    request = events.parse_http({"httpMethod": "GET", "url": "/v1/responses/x" + (f"?{query}" if query else "")})
    return runtime.Invocation(config.settings(), Call.from_context(None), caller=caller, request=request)


def _request(**body: Any) -> Any:
    return validate(ResponseCreateRequest, {"model": PASSTHROUGH, "input": "hello there", **body})


def _create(inv: runtime.Invocation | None = None, model: str = MODEL, references: list[int] | None = None,
            **body: Any) -> Any:
    return responses_upstream.create(_request(**body), model, inv or _inv(), references or [])


def _calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [call for call in emulator.calls() if call["path"].startswith("/v1/responses")]


def _refused(call: Any, status: int) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value


def _record(response_id: str) -> dict[str, Any] | None:
    return job_store(config.settings()).records([response_id]).get(response_id)


# -- what needs upstream ----------------------------------------------------------------------------------

PASSTHROUGH_MODELS = frozenset({PASSTHROUGH})


@pytest.mark.parametrize(("body", "name", "needed"), [
    ({}, PASSTHROUGH, True),
    ({}, "yandexgpt", False),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "yandexgpt", True),
    ({"tools": [{"type": "mcp", "server_label": "s"}]}, "yandexgpt", True),
    ({"tools": [{"type": "code_interpreter"}]}, "yandexgpt", True),
    ({"tools": [{"type": "image_generation"}]}, "yandexgpt", True),
    ({"tools": [{"type": "web_search"}]}, "yandexgpt", False),  # dropped for a native model, never forced
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "yandexgpt", False),
    ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "web_search_preview"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "web_search_2025_08_26"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "web_search_preview_2025_03_11"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "file_search"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "mcp"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "image_generation"}}, "yandexgpt", True),
    ({"tool_choice": {"type": "code_interpreter"}}, "yandexgpt", True),
    ({"tool_choice": "required", "tools": [{"type": "web_search"}]}, "yandexgpt", False),
    ({"tool_choice": {"type": "function", "name": "f"}, "tools": [{"type": "function", "name": "f"}]},
     "yandexgpt", False),
    ({"tool_choice": {"type": "custom"}}, "yandexgpt", False),
])
def test_a_request_needs_upstream_for_a_pass_through_model_or_a_tool_only_it_runs(
        body: dict[str, Any], name: str, needed: bool) -> None:
    assert responses_upstream.needed(_request(**body), name, PASSTHROUGH_MODELS) is needed


# -- refusals -------------------------------------------------------------------------------------------------

def test_an_item_reference_is_refused_naming_its_position(upstream: Emulator) -> None:
    err = _refused(lambda: _create(references=[2, 5], store=False), 400)
    assert err.details[0]["field"] == "input[2]"
    assert err.message == ("input[2]: item_reference is not available for a model or tool served by upstream's "
                           "Responses API: send the item itself")
    assert _calls(upstream) == []


def test_without_upstreams_responses_api_the_400_names_the_model_or_the_tools(stack_env: Emulator) -> None:
    err = _refused(lambda: _create(store=False), 400)
    assert err.details[0]["field"] == "model"
    assert err.message == (f"model: {PASSTHROUGH} is served only through upstream's Responses API, which this "
                           "deployment does not reach (FM_RESPONSES_URL)")
    err = _refused(lambda: _create(model=f"gpt://{FOLDER}/yandexgpt/rc", store=False,
                                   tools=[{"type": "code_interpreter"}]), 400)
    assert err.details[0]["field"] == "tools"
    assert err.message == ("tools: a hosted tool (file_search, mcp, code_interpreter, image_generation, or a forced "
                           "web_search) needs upstream's Responses API, which this deployment does not reach "
                           "(FM_RESPONSES_URL)")
    assert _calls(stack_env) == []


# -- create, not stored ---------------------------------------------------------------------------------------

def test_the_callers_body_goes_as_it_came_with_the_models_uri_and_folder(upstream: Emulator) -> None:
    inv = _inv()
    reply = _create(inv, model=OTHER_FOLDER_MODEL, store=False, temperature=0.5, metadata={"k": "v"},
                    instructions="be brief")
    [call] = _calls(upstream)
    assert call["method"] == "POST" and call["path"] == "/v1/responses" and call["project"] == "b1gother"
    assert call["body"] == {"model": OTHER_FOLDER_MODEL, "input": "hello there", "store": False, "temperature": 0.5,
                            "metadata": {"k": "v"}, "instructions": "be brief"}
    body = reply.body
    assert not reply.sse and body["object"] == "response" and body["model"] == OTHER_FOLDER_MODEL
    assert body["id"].startswith("resp_up") and "via the Responses API" in body["output"][0]["content"][0]["text"]
    usage = body["usage"]
    assert inv.log_fields == {"passthrough": True, "upstream_request_id": inv.log_fields["upstream_request_id"],
                              "attempts": 1, "input_tokens": usage["input_tokens"],
                              "completion_tokens": usage["output_tokens"], "total_tokens": usage["total_tokens"],
                              "reasoning_tokens": 0}
    assert len(inv.log_fields["upstream_request_id"]) == 36


def test_a_background_run_is_marked_in_the_log(upstream: Emulator) -> None:
    inv = _inv()
    _create(inv, store=False, background=True)
    assert inv.log_fields["background"] is True
    inv = _inv()
    _create(inv, store=False)
    assert "background" not in inv.log_fields


def test_a_stream_is_upstreams_events_and_logs_the_finished_usage(upstream: Emulator) -> None:
    inv = _inv()
    reply = _create(inv, store=False, stream=True)
    assert reply.sse and [call["body"].get("stream") for call in _calls(upstream)] == [True]
    parsed = [json.loads(event) for event in reply.body]
    assert parsed[0]["type"] == "response.created" and parsed[-1]["type"] == "response.completed"
    usage = parsed[-1]["response"]["usage"]
    assert (inv.log_fields["input_tokens"], inv.log_fields["completion_tokens"], inv.log_fields["total_tokens"]) == (
        usage["input_tokens"], usage["output_tokens"], usage["total_tokens"])
    assert inv.log_fields["passthrough"] is True and inv.log_fields["attempts"] == 1


@pytest.mark.parametrize("raw", ["", 'data: {"type": "response.created", "response": {"id": "resp_x"}}\n\n'
                                     'data: not json\n\ndata: [1]\n\n'])
def test_a_stream_without_a_finished_usage_logs_none(upstream: Emulator, raw: str) -> None:
    upstream.fault(path="/v1/responses", kind="answer", raw=raw)
    inv = _inv()
    reply = _create(inv, store=False, stream=True)
    assert reply.sse and len(reply.body) == raw.count("data:")
    assert "input_tokens" not in inv.log_fields and inv.log_fields["passthrough"] is True


@pytest.mark.parametrize("body", [{"object": "response"}, {"id": ""}, [1], None])
def test_an_answer_without_a_response_id_is_an_upstream_error(upstream: Emulator, body: Any) -> None:
    upstream.fault(path="/v1/responses", kind="answer", body=body)
    inv = _inv()
    err = _refused(lambda: _create(inv, store=False), 502)
    assert err.message == "upstream's Responses API answered without a response id"
    assert err.upstream_request_id == inv.log_fields["upstream_request_id"] and err.upstream_request_id


def test_an_answer_without_usage_logs_none(upstream: Emulator) -> None:
    upstream.fault(path="/v1/responses", kind="answer", body={"id": "resp_abc", "usage": None})
    inv = _inv()
    assert _create(inv, store=False).body == {"id": "resp_abc", "usage": None}
    assert "input_tokens" not in inv.log_fields


# -- stored: ownership and continuation ------------------------------------------------------------------------

def test_a_stored_upstream_response_is_recorded_as_the_callers(stored: Emulator, clock: Any) -> None:
    inv = _inv("alice")
    reply = _create(inv, model=OTHER_FOLDER_MODEL)
    response_id = reply.body["id"]
    now = int(clock.now())
    record = _record(response_id)
    assert record is not None
    assert {k: record[k] for k in ("kind", "upstream", "created_by", "status", "background", "folder")} == {
        "kind": "response", "upstream": True, "created_by": "alice", "status": "upstream", "background": False,
        "folder": "b1gother"}
    assert int(record["created_at"]) == now and int(record["expires_at"]) == now + 30 * DAY
    assert response_store.record(job_store(config.settings()), response_id, _inv("alice")) is not None
    assert response_store.record(job_store(config.settings()), response_id, _inv("bob")) is None


def test_a_stored_background_response_and_a_streamed_one_are_recorded(
        stored: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_RESPONSES_TTL_DAYS", "2")
    config.reset_settings()
    response_id = _create(_inv(), background=True).body["id"]
    record = _record(response_id)
    assert record is not None and record["background"] is True
    assert int(record["expires_at"]) - int(record["created_at"]) == 2 * DAY
    events_ = [json.loads(e) for e in _create(_inv("carol"), model=OTHER_FOLDER_MODEL, stream=True).body]
    streamed = events_[0]["response"]["id"]
    record = _record(streamed)
    assert record is not None and record["created_by"] == "carol" and record["background"] is False
    assert record["folder"] == "b1gother" and record["upstream"] is True


def test_a_response_not_stored_upstream_is_not_recorded(stored: Emulator) -> None:
    response_id = _create(store=False).body["id"]
    assert _record(response_id) is None
    stored.fault(path="/v1/responses", kind="answer", body={"id": "resp_" + "x" * 121})
    assert _record(_create().body["id"]) is None  # an id this gateway could never be asked for
    stored.fault(path="/v1/responses", kind="answer", raw='data: {"type": "response.created", "response": {}}\n\n')
    assert len(_create(stream=True).body) == 1  # no id in the stream: nothing to own


def test_a_conversation_continues_only_from_the_callers_upstream_response(stored: Emulator) -> None:
    first = _create(_inv("alice")).body["id"]
    reply = _create(_inv("alice"), previous_response_id=first)
    assert reply.body["previous_response_id"] == first and "Reply #2" in reply.body["output"][0]["content"][0]["text"]
    assert _calls(stored)[-1]["body"]["previous_response_id"] == first
    for caller, previous in (("bob", first), ("alice", "resp_unknown"), ("alice", "not-an-id")):
        err = _refused(lambda c=caller, p=previous: _create(_inv(c), previous_response_id=p), 400)
        assert err.details[0]["field"] == "previous_response_id" and err.code == "previous_response_not_found"
        assert err.message == f"previous_response_id: Previous response with id '{previous}' not found."
    assert len(_calls(stored)) == 2


def test_a_translated_conversation_cannot_continue_upstream(stored: Emulator, clock: Any) -> None:
    now = int(clock.now())
    job_store(config.settings()).put_record("resp_translated1", {"kind": "response", "created_by": "alice",
                                                                 "created_at": now, "expires_at": now + DAY,
                                                                 "status": "completed"})
    err = _refused(lambda: _create(_inv("alice"), previous_response_id="resp_translated1", store=False), 400)
    assert err.details[0]["field"] == "previous_response_id" and err.code != "previous_response_not_found"
    assert err.message == ("previous_response_id: continues a conversation this gateway translated for a native "
                           "model; upstream's Responses API (needed for this model or tool) cannot see it: send its "
                           "items as input instead")
    assert _calls(stored) == []


# -- routes on a stored upstream response ----------------------------------------------------------------------

def _found(response_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": response_id, "kind": "response", "upstream": True, "created_by": "alice", "folder": FOLDER,
            **fields}


def test_retrieve_and_input_items_are_forwarded_to_the_responses_folder(stored: Emulator) -> None:
    created = _create(model=OTHER_FOLDER_MODEL, store=True).body
    got = responses_upstream.forward("GET", _found(created["id"], folder="b1gother"), "", _inv())
    assert got.body == created
    items = responses_upstream.forward("GET", _found(created["id"], folder="b1gother"), "/input_items",
                                       _inv(query="order=asc&limit=5"))
    assert items.body["object"] == "list" and items.body["data"][0]["content"] == "hello there"
    calls = _calls(stored)
    assert [(c["method"], c["path"], c["query"], c["project"]) for c in calls[1:]] == [
        ("GET", f"/v1/responses/{created['id']}", None, "b1gother"),
        ("GET", f"/v1/responses/{created['id']}/input_items", "order=asc&limit=5", "b1gother")]
    err = _refused(lambda: responses_upstream.forward("GET", _found(created["id"]), "", _inv()), 404)
    assert "not found" in err.message  # the record's folder, not ours, is the project asked


def test_input_items_carry_the_callers_query_and_nothing_else_does(stored: Emulator) -> None:
    created = _create(store=True, input=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]).body
    found = _found(created["id"], folder=None)  # a record without a folder: the deployment's
    ascending = responses_upstream.forward("GET", found, "/input_items", _inv(query="order=asc")).body
    descending = responses_upstream.forward("GET", found, "/input_items", _inv()).body
    assert [i["content"] for i in ascending["data"]] == ["one", "two"]
    assert [i["content"] for i in descending["data"]] == ["two", "one"]
    assert responses_upstream.forward("GET", found, "", _inv(query="order=asc")).body["id"] == created["id"]
    no_request = runtime.Invocation(config.settings(), Call.from_context(None), caller="alice")
    assert responses_upstream.forward("GET", found, "/input_items", no_request).body["data"][0]["content"] == "two"
    assert [c["project"] for c in _calls(stored)[1:]] == [FOLDER] * 4
    assert [c["query"] for c in _calls(stored)[1:]] == ["order=asc", None, None, None]


def test_forwarding_without_upstreams_responses_api_is_a_503(stack_env: Emulator) -> None:
    err = _refused(lambda: responses_upstream.forward("GET", _found("resp_x"), "", _inv()), 503)
    assert err.message == ("this response was made by upstream's Responses API, which this deployment no longer "
                           "reaches (FM_RESPONSES_URL)")
    assert _calls(stack_env) == []


def test_delete_is_forwarded_and_forgets_the_record(stored: Emulator) -> None:
    response_id = _create(_inv("alice")).body["id"]
    record = _record(response_id)
    assert record is not None
    from shared.jobs.store import reset_job_store

    reset_job_store()  # an instance that has not used its store yet
    reply = responses_upstream.forward("DELETE", {**record, "id": response_id}, "", _inv("alice"))
    assert reply.body == {"id": response_id, "object": "response", "deleted": True}
    assert _record(response_id) is None
    assert [(c["method"], c["path"], c["query"]) for c in _calls(stored)][-1] == (
        "DELETE", f"/v1/responses/{response_id}", None)


def _usage_lines(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line)["usage"] for line in log.getvalue().splitlines() if '"msg": "usage"' in line]


def test_a_background_response_is_counted_once_when_its_finished_answer_is_read(
        stored: Emulator, log_output: io.StringIO) -> None:
    created = _create(_inv("alice"), background=True).body
    found = {**(_record(created["id"]) or {}), "id": created["id"]}
    responses_upstream.forward("GET", found, "", _inv("alice"))
    responses_upstream.forward("GET", found, "", _inv("admin"))  # whoever reads it, the owner's usage
    first, again = _usage_lines(log_output)
    usage = created["usage"]
    assert {k: first[k] for k in ("caller", "model", "route", "mode", "door", "key", "request_id", "input_tokens",
                                  "output_tokens", "counted")} == {
        "caller": "alice", "model": MODEL, "route": "createResponse", "mode": "sync", "door": "job",
        "key": f"resp#{created['id']}", "request_id": created["id"], "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"], "counted": True}
    assert again["key"] == first["key"] and again["counted"] is False and again["caller"] == "alice"


def test_only_a_finished_background_answer_with_usage_is_counted(
        stored: Emulator, log_output: io.StringIO) -> None:
    created = _create(store=True).body
    responses_upstream.forward("GET", _found(created["id"]), "", _inv())  # not a background one
    responses_upstream.forward("GET", _found(created["id"], background=True), "/input_items", _inv())
    for body in ({**created, "status": "in_progress"}, {**created, "usage": None}, [created],
                 {**created, "status": "incomplete", "model": None}):
        stored.fault(path=f"/v1/responses/{created['id']}", kind="answer", body=body)
        responses_upstream.forward("GET", _found(created["id"], background=True, created_by=None), "", _inv("dave"))
    [line] = _usage_lines(log_output)
    assert line["caller"] == "dave" and line["model"] == "" and line["key"] == f"resp#{created['id']}"


def test_a_limited_keys_pass_through_is_refused_for_its_worst_case_before_upstream(stored: Emulator) -> None:
    from shared.jobs import limits
    from shared.policy import KeyPolicy

    settings = config.settings()
    inv = runtime.Invocation(settings, Call.from_context(None), caller="alice",
                             policy=KeyPolicy(name="alice", monthly_tokens=1))
    sent = {"model": MODEL, "input": "hello there", "store": False}
    bounded = limits.with_max_tokens(sent, "responses", settings.limits_default_max_tokens)
    worst = limits.worst_case("responses", bounded, MODEL, "sync", settings)[0]
    err = _refused(lambda: _create(inv, store=False), 429)
    assert f"up to {worst} tokens" in err.message
    assert _calls(stored) == []


def test_the_folder_and_name_are_read_before_any_later_scheme_in_the_uri(stack_env: Emulator,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    odd = f"gpt://b1gother/{PASSTHROUGH}/v1://x/y"  # a version part may hold '://' again
    err = _refused(lambda: _create(model=odd, store=False), 400)
    assert err.details[0]["field"] == "model" and err.message.startswith(f"model: {PASSTHROUGH} is served only")
    monkeypatch.setenv("FM_RESPONSES_URL", stack_env.url + "/v1")
    config.reset_settings()
    _create(model=odd, store=False)
    assert [call["project"] for call in _calls(stack_env)] == ["b1gother"]


def test_fields_go_upstream_under_their_openai_names(upstream: Emulator) -> None:
    text = {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}}
    _create(store=False, text=text)
    assert _calls(upstream)[0]["body"]["text"] == text
