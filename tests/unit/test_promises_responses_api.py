"""What /v1/responses promises (shared/openai/responses_api.py, and the stored responses of response_store.py), each
in a fraction of a second: the completion function invoked directly with a gateway event (the authorizer's caller
in its context), upstream the in-process FM emulator, the job store the in-process stand-in (local.aws.InProcessMoto:
moto's app without a socket), the clock the manual one. What the caller gets (the Response, its events, the 4xx
naming the field), what upstream is sent, what the store holds (one record and one document a response), who sees
a stored response (its creator only, until it expires), how a conversation is continued, and what a background run
becomes. tests/integration/test_openai_responses.py proves the same through the gateway with the real `openai`
client; this file is what `make mutate` runs for these two modules."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from local.aws import InProcessMoto
from local.functions import load
from local.triggers import ymq_event
from shared import errors
from shared.config import settings
from shared.jobs import store as jobs
from shared.openai import response_object, response_store
from tests.clock import ManualClock
from tests.conftest import FOLDER, Aws, Emulator, FakeContext, counting, reset_caches

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

COMPLETION = "/foundationModels/v1/completion"
URI = f"gpt://{FOLDER}/yandexgpt-lite/latest"
DAY = 86_400
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def env(stack_env: Emulator, aws: Aws, clock: ManualClock) -> Emulator:
    """The emulator upstream, the in-process store, the manual clock."""
    return stack_env


@pytest.fixture
def engine(stack_env: Emulator, aws_jobs: Aws, clock: ManualClock) -> Aws:
    """`env` with the job queues too (a background response is a job on the completion queue); `.emulator`."""
    aws_jobs.emulator = stack_env  # type: ignore[attr-defined]
    return aws_jobs


def queued(aws: Aws) -> list[Any]:
    """The messages waiting on the completion queue (taken off it)."""
    found: list[Any] = []
    while batch := aws.queues.receive(aws.resources.queues["completion"], max_messages=10):
        found += batch
    return found


def run(aws: Aws) -> None:
    """The completion queue's messages handed to the completion function as its trigger would (the worker runs)."""
    messages = queued(aws)
    assert messages
    jobs.reset_job_store()
    load("completion")(ymq_event(messages, aws.resources.arns["completion"]), FakeContext())


def ask(method: str, path: str = "", body: Any = None, caller: str = "alice", query: str = "",
        policy: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(status, body) of /v1/responses<path> as the completion function answers it; an event stream as its events.
    `policy`: the caller key's limits, as the authorizer hands them on."""
    authorizer: dict[str, Any] = {"caller": caller}
    if policy is not None:
        authorizer["policy"] = json.dumps({"name": caller, **policy})
    event = {"httpMethod": method, "url": f"/v1/responses{path}{query}", "headers": {},
             "body": json.dumps(body) if body is not None else None, "requestContext": {"authorizer": authorizer}}
    answer = load("completion")(event, FakeContext())
    # a created stream is answered as an event stream
    if (method, path) == ("POST", "") and isinstance(body, dict) and body.get("stream") and answer["statusCode"] == 200:
        assert answer["headers"]["Content-Type"].startswith("text/event-stream"), answer
    if answer["headers"]["Content-Type"].startswith("text/event-stream"):
        return answer["statusCode"], [json.loads(chunk.removeprefix("data: "))
                                      for chunk in answer["body"].split("\n\n") if chunk]
    return answer["statusCode"], json.loads(answer["body"])


def create(caller: str = "alice", **body: Any) -> dict[str, Any]:
    status, answer = ask("POST", body={"model": "yandexgpt-lite", **body}, caller=caller)
    assert status == 200, answer
    return answer


def refused(method: str, path: str = "", body: Any = None, caller: str = "alice", query: str = "",
            status: int = 400) -> tuple[str | None, str]:
    """(param, message) of the error the request gets, in OpenAI's shape."""
    got, answer = ask(method, path, body, caller, query)
    assert got == status, answer
    return answer["error"]["param"], answer["error"]["message"]


def upstream(emulator: Emulator) -> list[dict[str, Any]]:
    return [call["body"] for call in emulator.calls(COMPLETION)]


def store() -> jobs.JobStore:
    return jobs.job_store(settings())


def stored(response_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(record, document) of a response as the store holds them."""
    record = store().records([response_id]).get(response_id)
    try:
        document = json.loads(store().get_object(f"responses/{response_id}.json"))
    except jobs.MissingObjectError:
        document = None
    return record, document


def summary(log: io.StringIO, msg: str = "request handled") -> dict[str, Any]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return next(line for line in reversed(lines) if line.get("msg") == msg)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "text": text}


def message(text: str, role: str = "user") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


# -- response_store: ids, records, documents -----------------------------------------------------------------

def test_an_id_is_resp_then_the_creation_millisecond_and_20_random_hex_so_ids_sort_by_creation(
        clock: ManualClock) -> None:
    first, again = response_store.new_response_id(), response_store.new_response_id()
    assert first.startswith("resp_") and len(first) == 37 and int(first[5:], 16) >= 0
    assert first[5:17] == f"{int(clock.now() * 1000):012x}" == again[5:17] and first[17:] != again[17:]
    clock.advance(0.001)
    later = response_store.new_response_id()
    assert later[5:17] == f"{int(clock.now() * 1000):012x}" and later > max(first, again)


@pytest.mark.parametrize(("response_id", "ours"), [
    ("resp_a", True), ("resp_" + "a" * 120, True), ("resp_Az09_-", True), ("resp_0123456789abcdef", True),
    ("resp_", False), ("resp_" + "a" * 121, False), ("resp_a b", False), ("resp_a.b", False), ("resp_a/b", False),
    ("resp_ä", False), ("resp_\u0661", False), ("msg_abc", False), ("xresp_abc", False), ("", False),
    ("RESP_abc", False), ("resp_a\n", False)])
def test_an_id_is_well_formed_as_resp_and_1_to_120_ascii_letters_digits_underscores_or_dashes(
        response_id: str, ours: bool) -> None:
    assert response_store.well_formed(response_id) is ours


def test_a_malformed_id_is_unknown_without_asking_the_store(env: Emulator, aws: Aws) -> None:
    seen = counting(aws)
    for bad in ("resp_a.b", "resp_" + "a" * 121, "file_abc"):
        assert refused("GET", f"/{bad}", status=404) == (None, f"Response with id '{bad}' not found.")
    assert seen == []
    assert refused("GET", "/resp_" + "a" * 120, status=404)[1] == f"Response with id 'resp_{'a' * 120}' not found."
    assert seen == ["BatchGetItem"]


def test_a_stored_response_is_one_record_and_one_document_of_the_whole_conversation(
        env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_RESPONSES_TTL_DAYS", "0.5")
    reset_caches()
    answer = create(input="Привет, Волга", instructions="Be terse.")
    record, document = stored(answer["id"])
    assert record == {"id": answer["id"], "kind": "response", "created_by": "alice",
                      "created_at": answer["created_at"], "expires_at": answer["created_at"] + DAY // 2,
                      "status": "completed", "background": False, "object_key": f"responses/{answer['id']}.json"}
    asked = {"id": response_object.item_id("message", answer["id"], 0), "type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Привет, Волга"}], "status": "completed"}
    assert document == {"response": answer, "context": [asked, *answer["output"]], "input_start": 0,
                        "input_count": 1}
    assert answer["output"][0]["id"] == response_object.item_id("message", answer["id"], 1)


def test_a_stored_response_lives_until_its_expiry_and_is_then_unknown_everywhere(env: Emulator,
                                                                                 clock: ManualClock) -> None:
    answer = create(input="hello")
    expires = answer["created_at"] + 30 * DAY
    clock.advance(expires - clock.now())
    assert clock.now() == expires
    assert ask("GET", f"/{answer['id']}")[0] == 200
    clock.advance(0.001)
    assert refused("GET", f"/{answer['id']}", status=404)[1] == f"Response with id '{answer['id']}' not found."
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "more", "previous_response_id": answer["id"]})[
        0] == "previous_response_id"
    assert stored(answer["id"])[0] is not None  # before the TTL sweep, the record is still there


def test_a_record_of_another_kind_under_a_response_id_is_not_a_response(env: Emulator, clock: ManualClock) -> None:
    rid = "resp_" + "f" * 32
    store().put_record(rid, {"kind": "file", "created_by": "alice", "expires_at": int(clock.now()) + DAY,
                             "object_key": "responses/x.json"})
    assert ask("GET", f"/{rid}")[0] == 404


def test_another_callers_response_is_unknown_on_every_route_and_the_attempt_is_logged(
        env: Emulator, log_output: io.StringIO) -> None:
    mine = create(input="alice's secret question")
    unknown = "resp_" + "0" * 32
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")]:
        for target in (mine["id"], unknown):
            assert refused(method, f"/{target}{path}", caller="bob", status=404) == (
                None, f"Response with id '{target}' not found.")
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "more", "previous_response_id": mine["id"]},
                   caller="bob") == refused("POST", body={"model": "yandexgpt-lite", "input": "more",
                                                          "previous_response_id": unknown}, caller="bob")[:1] + (
        f"previous_response_id: Previous response with id '{mine['id']}' not found.",)
    item = mine["output"][0]["id"]
    assert refused("POST", body={"model": "yandexgpt-lite", "input": [{"type": "item_reference", "id": item}]},
                   caller="bob")[0] == "input"
    attempts = [json.loads(line) for line in log_output.getvalue().splitlines() if "another caller's work" in line]
    assert [(a["caller"], a["id"], a["kind"]) for a in attempts] == [("bob", mine["id"], "response")] * 6
    assert ask("GET", f"/{mine['id']}")[1] == mine  # nothing of alice's changed


def test_the_admin_caller_sees_every_callers_responses(env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    reset_caches()
    mine = create(input="hello")
    assert ask("GET", f"/{mine['id']}", caller="ops") == (200, mine)


def test_delete_removes_the_record_and_the_document_and_the_id_is_then_unknown(env: Emulator) -> None:
    answer = create(input="hello")
    assert ask("DELETE", f"/{answer['id']}") == (200, {"id": answer["id"], "object": "response", "deleted": True})
    assert stored(answer["id"]) == (None, None)
    assert ask("GET", f"/{answer['id']}")[0] == 404 and ask("DELETE", f"/{answer['id']}")[0] == 404


def test_the_response_id_is_in_the_summary_line(env: Emulator, log_output: io.StringIO) -> None:
    answer = create(input="hello")
    assert summary(log_output)["response_id"] == answer["id"]
    ask("GET", f"/{answer['id']}")
    assert summary(log_output)["response_id"] == answer["id"]


# -- create: what the caller gets and what upstream is sent ----------------------------------------------------

def test_a_response_echoes_every_setting_of_the_request_and_upstream_gets_the_native_body(
        env: Emulator, clock: ManualClock, log_output: io.StringIO) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = create(input="Weather in Paris?", instructions="Be terse.", max_output_tokens=300, temperature=0.25,
                    metadata={"ticket": "42"}, user="u-1", safety_identifier="s-1", prompt_cache_key="k-1",
                    max_tool_calls=3, tools=[WEATHER, {"type": "web_search"}], tool_choice="none",
                    parallel_tool_calls=False, reasoning={"effort": "low", "summary": "auto"},
                    text={"format": {"type": "json_schema", "name": "place", "schema": schema}, "verbosity": "medium"})
    now = int(clock.now())
    output = answer.pop("output")
    usage = answer.pop("usage")
    assert answer == {
        "id": answer["id"], "object": "response", "created_at": now, "status": "completed", "background": False,
        "completed_at": now, "error": None, "incomplete_details": None, "instructions": "Be terse.",
        "max_output_tokens": 300, "max_tool_calls": 3, "model": URI, "parallel_tool_calls": False,
        "previous_response_id": None, "conversation": None, "reasoning": {"effort": "low", "summary": "auto"},
        "safety_identifier": "s-1", "prompt_cache_key": "k-1", "prompt_cache_retention": None,
        "service_tier": "default", "store": True, "temperature": 0.25,
        "text": {"format": {"type": "json_schema", "name": "place", "schema": schema}, "verbosity": "medium"},
        "tool_choice": "none", "tools": [{**WEATHER, "strict": None}], "top_logprobs": 0, "top_p": 1.0,
        "truncation": "disabled", "user": "u-1", "metadata": {"ticket": "42"}}
    assert [item["type"] for item in output] == ["message"] and output[0]["id"].endswith("_1")
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert upstream(env) == [{
        "modelUri": URI, "completionOptions": {"temperature": 0.25, "maxTokens": "300",
                                               "reasoningOptions": {"mode": "ENABLED_HIDDEN"}},
        "messages": [{"role": "system", "text": "Be terse."}, user("Weather in Paris?")],
        "jsonSchema": {"schema": schema},
        "tools": [{"function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}],
        "toolChoice": {"mode": "NONE"}, "parallelToolCalls": False}]
    line = summary(log_output)
    assert (line["response_id"], line["input_tokens"], line["completion_tokens"], line["total_tokens"],
            line["attempts"]) == (answer["id"], usage["input_tokens"], usage["output_tokens"], usage["total_tokens"], 1)
    assert len(line["upstream_request_id"]) == 36  # the emulator's x-request-id, a UUID


def test_a_request_without_settings_gets_the_defaults_echoed(env: Emulator) -> None:
    answer = create(input="hello")
    assert {k: answer[k] for k in ("instructions", "max_output_tokens", "temperature", "tools", "tool_choice",
                                   "parallel_tool_calls", "reasoning", "text", "metadata", "store", "user",
                                   "background", "max_tool_calls", "safety_identifier", "prompt_cache_key")} == {
        "instructions": None, "max_output_tokens": None, "temperature": None, "tools": [], "tool_choice": "auto",
        "parallel_tool_calls": True, "reasoning": {"effort": None, "summary": None},
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "metadata": {}, "store": True, "user": None,
        "background": False, "max_tool_calls": None, "safety_identifier": None, "prompt_cache_key": None}
    assert upstream(env) == [{"modelUri": URI, "messages": [user("hello")]}]
    assert create(input="hello", text={"verbosity": "medium"})["text"] == {"format": {"type": "text"},
                                                                           "verbosity": "medium"}
    with_summary = create(input="hello", reasoning={"generate_summary": "concise"}, store=True, parallel_tool_calls=True)
    assert with_summary["reasoning"] == {"effort": None, "summary": "concise"} and with_summary["store"] is True
    assert with_summary["parallel_tool_calls"] is True


def test_a_response_with_store_false_is_answered_but_never_stored(env: Emulator, aws: Aws) -> None:
    seen = counting(aws)
    answer = create(input="hello", store=False)
    assert answer["store"] is False and answer["status"] == "completed"
    assert [s for s in seen if s != "TransactWriteItems"] == []  # the usage ledger's write only
    assert stored(answer["id"]) == (None, None) and ask("GET", f"/{answer['id']}")[0] == 404


def test_background_needs_store_and_cannot_stream(env: Emulator) -> None:
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "x", "background": True, "store": False}) == (
        "store", "store: background responses must be stored (store: true)")
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "x", "background": True, "stream": True}) == (
        "stream", "stream: is not available with background here (a function answers in one body): create it, then "
                  "poll GET /v1/responses/{id}")
    assert upstream(env) == []


def test_a_pass_through_model_without_upstreams_responses_api_is_a_400_naming_the_model(env: Emulator) -> None:
    assert refused("POST", body={"model": "gpt-oss-120b", "input": "x"}) == (
        "model", "model: gpt-oss-120b is served only through upstream's Responses API, which this deployment does "
                 "not reach (FM_RESPONSES_URL)")
    assert env.calls() == []


def test_without_upstreams_responses_api_hosted_tools_are_not_offered_and_the_model_answers(env: Emulator) -> None:
    answer = create(input="Search my files", store=False, tools=[
        {"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "code_interpreter"}, WEATHER])
    assert answer["status"] == "completed" and [t["type"] for t in answer["tools"]] == ["function"]
    assert [c["path"] for c in env.calls()] == [COMPLETION]


def test_with_upstreams_responses_api_a_pass_through_model_goes_there_with_its_references_refused(
        env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_RESPONSES_URL", env.url + "/v1")
    reset_caches()
    answer = create(model="gpt-oss-120b", input="hello", store=False)
    assert "via the Responses API" in answer["output"][0]["content"][0]["text"]
    assert [c["path"] for c in env.calls()] == ["/v1/responses"]
    assert refused("POST", body={"model": "gpt-oss-120b", "store": False, "input": [
        message("a"), {"type": "item_reference", "id": "msg_x_1"}, message("b"),
        {"type": "item_reference", "id": "msg_x_2"}]})[0] == "input[1]"
    assert create(model="gpt-oss-120b", store=False, instructions="Say hi.")["object"] == "response"  # no input
    odd = f"gpt://{FOLDER}/gpt-oss-120b/latest://x"  # the name is the URI's third part, whatever follows it
    assert create(model=odd, input="hello", store=False)["model"] == odd
    assert [c["path"] for c in env.calls()] == ["/v1/responses"] * 3
    native = create(input="hello", store=False)  # a native model still goes to the native completion
    assert native["model"] == URI and len(upstream(env)) == 1


def test_an_answer_without_a_result_is_a_502_and_nothing_is_stored(env: Emulator, aws: Aws,
                                                                  log_output: io.StringIO) -> None:
    seen = counting(aws)
    for wrong in ({"notresult": 1}, [{"result": {}}], {"result": [1]}):
        env.fault(path=COMPLETION, kind="answer", body=wrong)
        status, answer = ask("POST", body={"model": "yandexgpt-lite", "input": "hello"})
        assert status == 502 and answer["error"]["message"] == "upstream completion answer has no result object"
        assert len(summary(log_output, "request failed")["upstream_request_id"]) == 36  # which answer it was
    assert not any(s.startswith("PUT ") for s in seen)  # no document stored


def test_output_items_are_numbered_after_the_input_items_and_the_answer_time_is_the_clock(
        env: Emulator, clock: ManualClock) -> None:
    clock.advance(5.7)
    answer = create(input=[message("a"), message("b"), message("c")])
    assert answer["output"][0]["id"] == response_object.item_id("message", answer["id"], 3)
    assert answer["created_at"] == answer["completed_at"] == int(clock.now())


def test_a_truncated_answer_is_incomplete(env: Emulator) -> None:
    answer = create(input="word " * 40, max_output_tokens=16)
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["completed_at"] is None and stored(answer["id"])[0]["status"] == "incomplete"  # type: ignore[index]


# -- streaming --------------------------------------------------------------------------------------------------

def test_a_stream_is_the_typed_events_and_its_final_response_is_stored_and_logged(
        env: Emulator, log_output: io.StringIO, clock: ManualClock) -> None:
    status, events = ask("POST", body={"model": "yandexgpt-lite", "input": "hello there", "stream": True})
    assert status == 200 and events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert [e["response"]["status"] for e in events[:2]] == ["in_progress", "in_progress"]  # before the answer
    assert {**events[0]["response"], "status": "completed", "output": final["output"], "usage": final["usage"],
            "completed_at": final["completed_at"]} == final
    assert final["completed_at"] == int(clock.now())
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == \
        final["output"][0]["content"][0]["text"]
    assert final["output"][0]["id"] == response_object.item_id("message", final["id"], 1)
    assert upstream(env)[0]["completionOptions"] == {"stream": True}
    line = summary(log_output)
    assert (line["response_id"], line["total_tokens"]) == (final["id"], final["usage"]["total_tokens"])
    assert ask("GET", f"/{final['id']}") == (200, final)
    _, document = stored(final["id"])
    assert document["context"][1:] == final["output"] and document["input_count"] == 1  # type: ignore[index]


def test_a_stream_not_stored_is_still_answered(env: Emulator) -> None:
    status, events = ask("POST", body={"model": "yandexgpt-lite", "input": "hello", "stream": True, "store": False})
    final = events[-1]["response"]
    assert status == 200 and final["status"] == "completed" and final["store"] is False
    assert stored(final["id"]) == (None, None)


def test_a_stream_that_fails_midway_ends_failed_without_usage_in_the_log(env: Emulator,
                                                                          log_output: io.StringIO) -> None:
    env.fault(path=COMPLETION, kind="midstream")
    status, events = ask("POST", body={"model": "yandexgpt-lite", "input": "hello there friend", "stream": True})
    assert status == 200 and [e["type"] for e in events][-2:] == ["error", "response.failed"]
    line = summary(log_output)
    assert "total_tokens" not in line and line["response_id"] == events[-1]["response"]["id"]
    assert ask("GET", f"/{events[-1]['response']['id']}")[1]["status"] == "failed"


# -- stored conversations: previous_response_id and item_reference ----------------------------------------------

def test_a_chain_sends_every_earlier_turn_in_order_without_earlier_instructions(env: Emulator) -> None:
    first = create(input="question 0", instructions="instructions 0")
    second = create(input="question 1", instructions="   ", previous_response_id=first["id"])
    third = create(input=[message("question 2")], instructions="instructions 2", previous_response_id=second["id"])
    answers = [r["output"][0]["content"][0]["text"] for r in (first, second)]
    assert upstream(env)[2]["messages"] == [
        {"role": "system", "text": "instructions 2"}, user("question 0"), {"role": "assistant", "text": answers[0]},
        user("question 1"), {"role": "assistant", "text": answers[1]}, user("question 2")]
    assert upstream(env)[1]["messages"][0] == user("question 0")  # blank instructions are no system message
    assert third["previous_response_id"] == second["id"] and second["instructions"] == "   "
    _, document = stored(third["id"])
    assert document["input_start"] == 4 and document["input_count"] == 1  # type: ignore[index]
    assert [i["id"] for i in document["context"]] == [  # type: ignore[index]
        *(i["id"] for i in stored(second["id"])[1]["context"]), response_object.item_id("message", third["id"], 0),  # type: ignore[index]
        third["output"][0]["id"]]
    assert [i["content"][0]["text"] for i in ask("GET", f"/{third['id']}/input_items")[1]["data"]] == ["question 2"]
    assert ask("GET", f"/{first['id']}") == (200, first) and ask("GET", f"/{second['id']}") == (200, second)


def test_a_continued_response_needs_no_input_of_its_own(env: Emulator) -> None:
    first = create(input="question 0")
    second = create(previous_response_id=first["id"])
    assert upstream(env)[1]["messages"][0] == user("question 0") and len(upstream(env)[1]["messages"]) == 2
    assert ask("GET", f"/{second['id']}/input_items")[1]["data"] == []
    assert second["output"][0]["id"] == response_object.item_id("message", second["id"], 0)


def test_an_unknown_previous_response_is_a_400_with_the_code_clients_match_on(env: Emulator) -> None:
    for previous in ("resp_" + "0" * 32, "resp_bad.id", "msg_1"):
        status, answer = ask("POST", body={"model": "yandexgpt-lite", "input": "x", "previous_response_id": previous})
        assert status == 400 and answer["error"] == {
            "message": f"previous_response_id: Previous response with id '{previous}' not found.",
            "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}
    assert upstream(env) == []


def test_a_conversation_upstreams_responses_api_answered_is_not_continued_here(env: Emulator,
                                                                              clock: ManualClock) -> None:
    rid = "resp_up" + "1" * 30
    store().put_record(rid, {"kind": "response", "upstream": True, "created_by": "alice", "status": "upstream",
                             "expires_at": int(clock.now()) + DAY})
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "x", "previous_response_id": rid}) == (
        "previous_response_id", "previous_response_id: continues a conversation upstream's Responses API answered (a "
                                "pass-through model or a hosted tool); continue it with the same model and tools")
    assert refused("POST", body={"model": "yandexgpt-lite",
                                 "input": [{"type": "item_reference", "id": "msg_up" + "1" * 30 + "_0"}]})[0] == "input"


def test_item_references_resolve_to_the_callers_stored_items_reading_each_response_once(env: Emulator,
                                                                                      aws: Aws) -> None:
    first = create(input=[message("Tell me about the Volga"), message("and the Don")])
    asked = response_object.item_id("message", first["id"], 1)
    answered = first["output"][0]["id"]
    seen = counting(aws)
    second = create(input=[{"type": "item_reference", "id": answered}, message("Shorter"),
                           {"type": "item_reference", "id": asked}], store=False)
    assert [s for s in seen if s.startswith("GET ")] == [f"GET /{settings().results_bucket}/responses/{first['id']}.json"]
    assert seen.count("BatchGetItem") == 1
    text = first["output"][0]["content"][0]["text"]
    assert upstream(env)[1]["messages"] == [{"role": "assistant", "text": text}, user("Shorter"), user("and the Don")]
    assert second["output"][0]["id"] == response_object.item_id("message", second["id"], 3)
    third = create(input=[{"type": "item_reference", "id": asked}, message("again")])  # stored: its input items too
    listed = ask("GET", f"/{first['id']}/input_items", query="?order=asc")[1]["data"]
    assert ask("GET", f"/{third['id']}/input_items", query="?order=asc")[1]["data"][0] == listed[1]  # as stored first
    for missing in ("msg_unknown", "msg_" + first["id"][5:] + "_9", "msg_" + "0" * 32 + "_0", "fc_x_y"):
        assert refused("POST", body={"model": "yandexgpt-lite", "input": [
            message("hi"), {"type": "item_reference", "id": missing}]}) == (
            "input", f"input: Item with id '{missing}' not found. Items are not persisted when `store` is set to false.")


def test_a_previous_response_still_running_in_background_cannot_be_continued(engine: Aws) -> None:
    queued = create(input="hello", background=True)
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "more", "previous_response_id": queued["id"]}) == (
        "previous_response_id", f"previous_response_id: Response '{queued['id']}' is still queued: wait until it has "
                                "finished before continuing it")
    run(engine)
    continued = create(input="more", previous_response_id=queued["id"])
    assert continued["status"] == "completed" and upstream(engine.emulator)[-1]["messages"][0] == user("hello")


# -- input items -----------------------------------------------------------------------------------------------

def test_input_items_become_native_messages_by_role_and_kind(env: Emulator) -> None:
    answer = create(input=[
        {"role": "developer", "content": "Answer in English."},
        {"role": "system", "content": [{"type": "input_text", "text": "Be kind."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
        {"role": "assistant", "content": "Hi."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "I "},
                                                             {"type": "refusal", "refusal": "cannot"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
        {"role": "user", "content": "And again", "id": "msg_mine", "status": "incomplete"}])
    assert upstream(env)[0]["messages"] == [
        {"role": "system", "text": "Answer in English."}, {"role": "system", "text": "Be kind."},
        user("Hello, world"), {"role": "assistant", "text": "Hi."}, {"role": "assistant", "text": "I cannot"},
        user("And again")]
    items = ask("GET", f"/{answer['id']}/input_items", query="?order=asc")[1]["data"]
    rid = answer["id"]
    assert [(i["id"], i["type"], i["role"], i["status"]) for i in items] == [
        (response_object.item_id("message", rid, n), "message", role, "completed")
        for n, role in enumerate(["developer", "system", "user", "assistant", "assistant"])] + [
        ("msg_mine", "message", "user", "incomplete")]
    assert items[3]["content"] == [{"type": "output_text", "text": "Hi."}]
    assert items[0]["content"] == [{"type": "input_text", "text": "Answer in English."}]
    assert all("_where" not in i for i in items) and answer["output"][0]["id"].endswith("_6")


def test_function_calls_in_a_row_are_one_assistant_turn_and_their_outputs_name_them(env: Emulator) -> None:
    create(store=False, tools=[WEATHER], input=[
        message("go"), message("and then"),  # the calls are not the conversation's second turn
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "lookup", "namespace": "crm", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "one"}]},
        {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "c3", "output": "three"}])
    assert upstream(env)[0]["messages"] == [
        user("go"), user("and then"),
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"functionCall": {"name": "crm__lookup", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "crm__lookup", "content": "two"}},
            {"functionResult": {"name": "get_weather", "content": "one"}}]}},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Rome"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "get_weather", "content": "three"}}]}}]


@pytest.mark.parametrize(("item", "param", "rule"), [
    ({"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "x"}]},
     "input[1].content[1]", "a 'input_image' part is not supported: this model takes text parts only"),
    ({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]},
     "input[1].content[0]", "a 'refusal' part is not supported: this model takes text parts only"),
    ({"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_file", "file_id": "f"}]},
     "input[1].output[0]", "a 'input_file' part is not supported: this model takes text parts only"),
    ({"type": "function_call_output", "call_id": "nope", "output": "x"}, "input[1].call_id",
     "'nope' matches no tool call earlier in the conversation"),
    ({"role": "user", "content": [{"type": "input_text", "text": ""}]}, "input[1].content", "must not be empty"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}, "input[1].arguments",
     "must be a JSON object, as text"),
])
def test_a_part_this_model_cannot_take_is_a_400_naming_where_it_is(env: Emulator, item: dict[str, Any], param: str,
                                                                     rule: str) -> None:
    assert refused("POST", body={"model": "yandexgpt-lite", "input": [message("hi"), item]}) == (param,
                                                                                              f"{param}: {rule}")
    assert upstream(env) == []


def test_a_repeated_call_id_is_a_400_naming_the_second(env: Emulator) -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert refused("POST", body={"model": "yandexgpt-lite", "input": [message("hi"), call, message("again"), call]}) == (
        "input[3].call_id", "input[3].call_id: 'c1' repeats an earlier tool call id")


def test_a_conversation_may_begin_with_a_call(env: Emulator) -> None:
    create(store=False, input=[{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                               {"type": "function_call_output", "call_id": "c1", "output": "done"}])
    assert upstream(env)[0]["messages"] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [{"functionCall": {"name": "f", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "f", "content": "done"}}]}}]


def test_an_assistant_text_then_a_call_are_two_assistant_messages(env: Emulator) -> None:
    create(store=False, input=[message("go"), {"role": "assistant", "content": "Let me check."},
                               {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                               {"type": "function_call_output", "call_id": "c1", "output": "done"}])
    assert upstream(env)[0]["messages"] == [
        user("go"), {"role": "assistant", "text": "Let me check."},
        {"role": "assistant", "toolCallList": {"toolCalls": [{"functionCall": {"name": "f", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "f", "content": "done"}}]}}]


def test_a_conversation_with_nothing_to_answer_is_a_400(env: Emulator) -> None:
    rule = "input: is required: the conversation has nothing to answer"
    assert refused("POST", body={"model": "yandexgpt-lite", "instructions": "Be terse."}) == ("input", rule)
    assert refused("POST", body={"model": "yandexgpt-lite", "input": [{"role": "developer", "content": "x"}]}) == (
        "input", rule)
    assert refused("POST", body={"model": "yandexgpt-lite", "input": [{"type": "reasoning", "summary": []}]}) == (
        "input", rule)


# -- tools and tool_choice ----------------------------------------------------------------------------------------

def test_namespaced_functions_are_offered_by_their_long_name_and_echoed_as_their_group(env: Emulator) -> None:
    group = {"type": "namespace", "name": "crm", "description": "Customer records",
             "tools": [{"type": "function", "name": "lookup", "description": "Find", "parameters": {"type": "object"}},
                       {"type": "function", "name": "bare"}, {"type": "web_search"}]}
    hosted_only = {"type": "namespace", "name": "web", "description": "d", "tools": [{"type": "web_search"}]}
    answer = create(input="hi", tools=[group, hosted_only, {"type": "function", "name": "plain"}], store=False)
    assert answer["tools"] == [
        {"type": "namespace", "name": "crm", "description": "Customer records", "tools": group["tools"][:2]},
        {"type": "function", "name": "plain", "description": None, "parameters": None, "strict": None}]
    assert upstream(env)[0]["tools"] == [
        {"function": {"name": "crm__lookup", "description": "Find", "parameters": {"type": "object"}}},
        {"function": {"name": "crm__bare"}}, {"function": {"name": "plain"}}]


def test_tool_choice_forms_reach_upstream(env: Emulator) -> None:
    tools = [WEATHER, {"type": "function", "name": "calc", "parameters": {"type": "object"}}]
    named = create(input="hi", tools=tools, tool_choice={"type": "function", "name": "calc"}, store=False)
    assert named["tool_choice"] == {"type": "function", "name": "calc"}
    create(input="hi", tools=tools, tool_choice="required", store=False)
    create(input="hi", tools=tools, store=False, tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]})
    bodies = upstream(env)
    assert bodies[0]["toolChoice"] == {"functionName": "calc"} and bodies[1]["toolChoice"] == {"mode": "REQUIRED"}
    assert [t["function"]["name"] for t in bodies[2]["tools"]] == ["get_weather"]
    assert bodies[2]["toolChoice"] == {"mode": "REQUIRED"}


@pytest.mark.parametrize(("choice", "param", "rule"), [
    ({"type": "function", "name": "missing"}, "tool_choice.name", "'missing' is not one of tools"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "missing"}]},
     "tool_choice.tools", "'missing' is not one of tools"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"},
                                                         {"type": "web_search"}]},
     "tool_choice.tools[1]", "only function tools are offered on this model"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": 5}]},
     "tool_choice.tools[0]", "only function tools are offered on this model"),
    ({"type": "custom", "name": "x"}, "tool_choice.type", "'custom' tools are not offered on this model (it runs "
                                                          "function tools only)"),
])
def test_a_tool_choice_this_model_cannot_honour_is_a_400_naming_it(env: Emulator, choice: Any, param: str,
                                                                   rule: str | None) -> None:
    got, text = refused("POST", body={"model": "yandexgpt-lite", "input": "hi", "tools": [WEATHER],
                                      "tool_choice": choice})
    assert got == param and (rule is None or text == f"{param}: {rule}")
    assert upstream(env) == []


@pytest.mark.parametrize(("fields", "param", "rule"), [
    ({"text": {"verbosity": "low"}}, "text.verbosity",
     'is not supported on this model (only "medium", which changes nothing, is accepted)'),
    ({"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, "text.format.name",
     "is required with type json_schema"),
    ({"top_p": 0.5}, "top_p", None),
    ({"conversation": "conv_1"}, "conversation", None),
])
def test_a_setting_this_model_cannot_honour_is_a_400_naming_it(env: Emulator, fields: dict[str, Any], param: str,
                                                               rule: str | None) -> None:
    got, text = refused("POST", body={"model": "yandexgpt-lite", "input": "hi", **fields})
    assert got == param and (rule is None or text == f"{param}: {rule}")
    assert upstream(env) == []


def test_text_settings_it_can_honour_are_taken(env: Emulator) -> None:
    create(input="hi", store=False, text={"verbosity": "medium", "format": {"type": "json_object"}})
    create(input="hi", store=False, text={"format": {"type": "text"}})
    first, second = upstream(env)
    assert first["jsonObject"] is True and "jsonObject" not in second and "jsonSchema" not in second


# -- retrieve, input_items, input_tokens ------------------------------------------------------------------------

def test_retrieve_answers_the_stored_response_and_refuses_a_replayed_stream(env: Emulator) -> None:
    answer = create(input="hello")
    for flag in ("true", "1", "True"):
        assert refused("GET", f"/{answer['id']}", query=f"?stream={flag}") == (
            "stream", "stream: replaying a stream is not available here: GET the response")
    assert ask("GET", f"/{answer['id']}", query="?stream=false") == (200, answer)


def test_input_items_page_newest_first_by_default_or_oldest_first(env: Emulator) -> None:
    answer = create(input=[message(f"part {n}") for n in range(5)])
    rid = answer["id"]

    def page(query: str) -> tuple[list[str], Any]:
        status, body = ask("GET", f"/{rid}/input_items", query=query)
        assert status == 200 and body["object"] == "list", body
        texts = [i["content"][0]["text"][5:] for i in body["data"]]
        assert (body["first_id"], body["last_id"]) == ((body["data"][0]["id"], body["data"][-1]["id"])
                                                       if body["data"] else (None, None))
        return texts, body["has_more"]

    ids = [response_object.item_id("message", rid, n) for n in range(5)]
    assert page("") == (["4", "3", "2", "1", "0"], False)
    assert page("?limit=2") == (["4", "3"], True)
    assert page(f"?limit=2&after={ids[3]}") == (["2", "1"], True)
    assert page(f"?limit=3&after={ids[3]}") == (["2", "1", "0"], False)
    assert page("?order=asc&limit=5") == (["0", "1", "2", "3", "4"], False)
    assert page(f"?order=asc&after={ids[3]}") == (["4"], False)
    assert page(f"?order=asc&after={ids[4]}") == ([], False)
    assert refused("GET", f"/{rid}/input_items", query="?order=up") == ("order", "order: must be asc or desc")
    assert refused("GET", f"/{rid}/input_items", query="?after=msg_nope") == (
        "after", "after: 'msg_nope' is not an input item of this response")
    assert refused("GET", f"/{rid}/input_items", query="?limit=101")[0] == "limit"
    assert ask("GET", f"/{rid}/input_items", query="?limit=100")[0] == 200


def test_input_items_default_to_twenty(env: Emulator) -> None:
    answer = create(input=[message(f"part {n}") for n in range(21)])
    body = ask("GET", f"/{answer['id']}/input_items")[1]
    assert len(body["data"]) == 20 and body["has_more"] is True


def test_input_tokens_counts_the_translated_request_with_the_native_tokenizer(env: Emulator,
                                                                             log_output: io.StringIO) -> None:
    first = create(input="question one")
    status, answer = ask("POST", "/input_tokens", {"model": "yandexgpt-lite", "input": "two more words", "stream": True,
                                                   "previous_response_id": first["id"], "instructions": "Be terse."})
    [call] = env.calls("/tokenizeCompletion")
    assert call["body"] == {"modelUri": URI, "messages": [
        {"role": "system", "text": "Be terse."}, user("question one"),
        {"role": "assistant", "text": first["output"][0]["content"][0]["text"]}, user("two more words")]}
    assert status == 200 and answer["object"] == "response.input_tokens" and answer["input_tokens"] > 0
    tokens = json.loads(json.dumps(answer))["input_tokens"]
    env.fault(path="/foundationModels/v1/tokenizeCompletion", kind="answer", body={"tokens": [{"id": "1"}] * 3})
    assert ask("POST", "/input_tokens", {"model": "yandexgpt-lite", "input": "x"}) == (
        200, {"object": "response.input_tokens", "input_tokens": 3})
    for wrong in ({"notokens": 1}, [{"id": "1"}]):
        env.fault(path="/foundationModels/v1/tokenizeCompletion", kind="answer", body=wrong)
        status, answer = ask("POST", "/input_tokens", {"model": "yandexgpt-lite", "input": "x"})
        assert status == 502 and answer["error"]["message"] == "upstream tokenizeCompletion answer has no tokens"
        assert len(summary(log_output, "request failed")["upstream_request_id"]) == 36  # which answer it was
    assert tokens > 0


# -- background -----------------------------------------------------------------------------------------------------

def test_a_background_response_is_stored_queued_and_its_run_is_a_completion_job(engine: Aws,
                                                                               log_output: io.StringIO) -> None:
    answer = create(input="hello", instructions="Be terse.", background=True)
    assert (answer["status"], answer["background"], answer["output"], answer["usage"], answer["completed_at"]) == (
        "queued", True, [], None, None)
    line = summary(log_output)
    record, document = stored(answer["id"])
    assert record["job"] == line["operation_id"] and line["background"] is True  # type: ignore[index]
    assert (record["status"], record["background"]) == ("queued", True)  # type: ignore[index]
    assert document["response"] == answer  # type: ignore[index]
    job = store().item(record["job"])  # type: ignore[index]
    assert (job["kind"], job["description"], job["created_by"]) == ("completion", "Background Response", "alice")
    assert upstream(engine.emulator) == []  # type: ignore[attr-defined]
    assert ask("GET", f"/{answer['id']}") == (200, answer)
    store().claim(record["job"], 0, "worker-1", 60)  # type: ignore[index]
    assert ask("GET", f"/{answer['id']}")[1] == {**answer, "status": "in_progress"}
    assert stored(answer["id"])[0]["status"] == "queued"  # type: ignore[index]  # settled only once it ends


def test_a_background_run_that_ends_is_the_finished_response_stored_from_then_on(engine: Aws, clock: ManualClock,
                                                                                 aws: Aws) -> None:
    answer = create(input=[message("a"), message("b")], background=True)
    clock.advance(7.5)
    run(engine)
    finished = int(clock.now())
    clock.advance(100)  # read later: the answer's time is its run's end
    [sent] = upstream(engine.emulator)  # type: ignore[attr-defined]
    assert sent["messages"] == [user("a"), user("b")]
    status, done = ask("GET", f"/{answer['id']}")
    assert status == 200 and done["status"] == "completed" and done["completed_at"] == finished
    assert done["output"][0]["id"] == response_object.item_id("message", answer["id"], 2)
    assert done["usage"]["total_tokens"] > 0 and {**done, "status": "queued", "output": [], "usage": None,
                                                  "completed_at": None} == answer
    record, document = stored(answer["id"])
    assert record["status"] == "completed" and document["response"] == done  # type: ignore[index]
    assert document["context"][2:] == done["output"] and len(document["context"]) == 3  # type: ignore[index]
    seen = counting(aws)
    assert ask("GET", f"/{answer['id']}") == (200, done)
    assert seen == ["BatchGetItem", f"GET /{settings().results_bucket}/responses/{answer['id']}.json"]  # no job read


@pytest.mark.parametrize(("error", "code", "text"), [
    ({"code": 3, "message": "the prompt breaks a rule"}, "invalid_prompt", "the prompt breaks a rule"),
    ({"code": 8, "message": "slow down"}, "rate_limit_exceeded", "slow down"),
    ({"code": 13, "message": "it broke"}, "server_error", "it broke"),
    ({"code": 14}, "server_error", ""),
])
def test_a_background_run_that_failed_is_a_failed_response_with_its_error(engine: Aws, error: dict[str, Any],
                                                                          code: str, text: str) -> None:
    answer = create(input="hello", background=True)
    job = stored(answer["id"])[0]["job"]  # type: ignore[index]
    assert store().finish(job, None, 0, error)
    status, failed = ask("GET", f"/{answer['id']}")
    assert failed == {**answer, "status": "failed", "error": {"code": code, "message": text}}
    assert stored(answer["id"])[0]["status"] == "failed"  # type: ignore[index]


def test_a_background_run_whose_records_expired_unread_is_failed_with_the_reason(engine: Aws) -> None:
    answer = create(input="hello", background=True)
    assert store().delete_record(stored(answer["id"])[0]["job"])  # type: ignore[index]
    expected = {**answer, "status": "failed", "error": {
        "code": "server_error", "message": "the background run's result expired before the response was read "
                                           "(JOBS_TTL_DAYS)"}}
    assert ask("GET", f"/{answer['id']}") == (200, expected)
    assert stored(answer["id"])[0]["status"] == "failed" and stored(answer["id"])[1]["response"] == expected  # type: ignore[index]


def test_cancel_stops_a_background_run_and_it_stays_cancelled(engine: Aws, log_output: io.StringIO) -> None:
    answer = create(input="hello", background=True)
    job = stored(answer["id"])[0]["job"]  # type: ignore[index]
    status, cancelled = ask("POST", f"/{answer['id']}/cancel")
    assert (status, cancelled) == (200, {**answer, "status": "cancelled"})
    assert summary(log_output)["cancelled"] is True
    assert json.loads(store().item(job)["error"]) == {  # type: ignore[index]
        "code": 1, "message": "cancelled by the caller", "details": []}
    run(engine)  # its message still comes: nothing runs upstream
    assert upstream(engine.emulator) == []  # type: ignore[attr-defined]
    assert ask("GET", f"/{answer['id']}")[1] == cancelled == ask("POST", f"/{answer['id']}/cancel")[1]
    assert "cancelled" not in summary(log_output)


def test_cancel_returns_a_finished_background_response_as_it_is_and_refuses_a_synchronous_one(engine: Aws) -> None:
    answer = create(input="hello", background=True)
    run(engine)
    done = ask("GET", f"/{answer['id']}")[1]
    assert ask("POST", f"/{answer['id']}/cancel") == (200, done)
    sync = create(input="hello")
    assert refused("POST", f"/{sync['id']}/cancel") == (None, "Cannot cancel a synchronous response.")


def test_deleting_a_background_response_still_queued_ends_its_run(engine: Aws) -> None:
    answer = create(input="hello", background=True)
    job = stored(answer["id"])[0]["job"]  # type: ignore[index]
    assert ask("DELETE", f"/{answer['id']}")[0] == 200
    assert store().item(job)["state"] == "done" and stored(answer["id"]) == (None, None)  # type: ignore[index]
    run(engine)
    assert upstream(engine.emulator) == []  # type: ignore[attr-defined]
    finished = create(input="hello", background=True)
    run(engine)
    ended = store().item(stored(finished["id"])[0]["job"])  # type: ignore[index]
    assert ask("DELETE", f"/{finished['id']}")[0] == 200
    assert store().item(ended["id"]) == ended  # a finished run is left as it was


def test_a_background_response_the_store_cannot_take_is_an_error_and_nothing_runs(engine: Aws) -> None:
    refuse_objects(engine)
    status, answer = ask("POST", body={"model": "yandexgpt-lite", "input": "hello", "background": True})
    assert status == 503 and answer["error"]["message"] == "results bucket: AccessDenied"
    assert queued(engine) == []


def test_a_store_failure_after_upstream_answered_costs_the_caller_nothing_and_is_logged(
        env: Emulator, aws: Aws, log_output: io.StringIO) -> None:
    refuse_objects(aws)
    answer = create(input="hello")
    assert answer["status"] == "completed" and ask("GET", f"/{answer['id']}")[0] == 404
    [line] = [json.loads(x) for x in log_output.getvalue().splitlines() if "response not stored" in x]
    assert (line["msg"], line["level"], line["response_id"], line["error"]) == (
        "response not stored: the store failed after upstream answered", "ERROR", answer["id"],
        "results bucket: AccessDenied")


def refuse_objects(aws: Aws) -> None:
    """The results bucket refuses every write of a response document (403, which no client retries)."""
    def middleware(app: Any) -> Any:
        def refusing(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["REQUEST_METHOD"] == "PUT" and "/responses/" in environ["PATH_INFO"]:
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"]
            return app(environ, start_response)

        return refusing

    aws.wrap(middleware)


# -- without the store (a batch's lines) and upstream's own responses --------------------------------------------

def test_a_request_planned_without_the_store_cannot_continue_or_reference_anything() -> None:
    from shared.openai.models import validate
    from shared.openai.responses_api import ResponseCreateRequest, plan_request

    def plan(**body: Any) -> Any:
        return plan_request(validate(ResponseCreateRequest, {"model": "yandexgpt-lite", **body}), URI, None,
                            "resp_" + "0" * 32, stream=False)

    with pytest.raises(errors.BadRequestError) as caught:
        plan(input="x", previous_response_id="resp_" + "1" * 32)
    assert caught.value.to_openai_body()["error"]["code"] == "previous_response_not_found"
    with pytest.raises(errors.BadRequestError) as caught:
        plan(input=[{"type": "item_reference", "id": "msg_" + "1" * 32 + "_0"}])
    assert caught.value.details[0]["field"] == "input"
    assert plan(input="x", stream=True).body == {"modelUri": URI, "messages": [user("x")]}


def test_the_routes_of_a_response_upstream_made_are_forwarded_there(env: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_RESPONSES_URL", env.url + "/v1")
    reset_caches()
    made = create(model="gpt-oss-120b", input="hello")
    rid = made["id"]
    assert ask("GET", f"/{rid}")[1]["id"] == rid
    assert ask("GET", f"/{rid}/input_items")[0] == 200
    ask("POST", f"/{rid}/cancel")
    assert ask("DELETE", f"/{rid}")[0] == 200
    assert [(c["method"], c["path"]) for c in env.calls("")][1:] == [
        ("GET", f"/v1/responses/{rid}"), ("GET", f"/v1/responses/{rid}/input_items"),
        ("POST", f"/v1/responses/{rid}/cancel"), ("DELETE", f"/v1/responses/{rid}")]
    assert ask("GET", f"/{rid}")[0] == 404


def month(caller: str) -> dict[str, Any]:
    """The caller key's budget item this month: used_t (settled and reserved tokens) and its held reservations."""
    from shared import clock
    from shared.jobs import limits

    item = store().item(limits.item_key(caller, limits.month_of(clock.now()))) or {}
    return {"used_t": int(item.get("used_t", 0)), "held": sorted(k for k in item if k.startswith("v_"))}


def test_a_key_with_a_budget_is_charged_what_a_response_used_and_a_cancelled_run_costs_nothing(engine: Aws) -> None:
    budget = {"monthly_tokens": 10**6}
    status, answer = ask("POST", body={"model": "yandexgpt-lite", "input": "hello"}, caller="capped", policy=budget)
    assert status == 200 and month("capped") == {"used_t": answer["usage"]["total_tokens"], "held": []}
    assert "maxTokens" in upstream(engine.emulator)[0]["completionOptions"]  # type: ignore[attr-defined]  # bounded
    status, queued_ = ask("POST", body={"model": "yandexgpt-lite", "input": "hello", "background": True},
                          caller="capped", policy=budget)
    assert status == 200 and month("capped")["used_t"] > answer["usage"]["total_tokens"]  # its worst case reserved
    assert ask("POST", f"/{queued_['id']}/cancel", caller="capped", policy=budget)[0] == 200
    assert month("capped") == {"used_t": answer["usage"]["total_tokens"], "held": []}



def test_a_key_with_a_money_budget_is_charged_the_price_of_the_model_it_used(engine: Aws,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_PRICES", '{"units": {"text_generation": 0.002, "text_generation_alt": 0.001}}')
    reset_caches()
    status, answer = ask("POST", body={"model": "yandexgpt-lite", "input": "hello"}, caller="priced",
                         policy={"monthly_budget": 10.0})
    assert status == 200, answer
    from shared import clock
    from shared.jobs import limits

    item = store().item(limits.item_key("priced", limits.month_of(clock.now()))) or {}
    assert int(item.get("used_m", 0)) > 0 and not [k for k in item if k.startswith("v_")]


def test_an_empty_answer_in_the_stored_conversation_is_a_400_naming_previous_response_id(env: Emulator) -> None:
    env.fault(path=COMPLETION, kind="answer", body={"result": {
        "alternatives": [{"message": {"role": "assistant", "text": ""}, "status": "ALTERNATIVE_STATUS_FINAL"}],
        "usage": {"inputTextTokens": "1", "completionTokens": "0", "totalTokens": "1"}}})
    empty = create(input="say nothing")
    assert refused("POST", body={"model": "yandexgpt-lite", "input": "more", "previous_response_id": empty["id"]}) == (
        "previous_response_id.content", "previous_response_id.content: must not be empty")


def test_a_route_made_forwardable_forwards_upstreams_responses_with_its_method_and_action_and_runs_the_rest(
        env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper the routes get (applied here, as the routes have it applied when the module is imported)."""
    from shared import events, runtime
    from shared.client import Call
    from shared.openai import responses_api
    from shared.responses import Reply

    monkeypatch.setenv("FM_RESPONSES_URL", env.url + "/v1")
    reset_caches()
    made = create(model="gpt-oss-120b", input="hello")
    record = store().records([made["id"]])[made["id"]]

    def operation(body: None, inv: runtime.Invocation) -> Reply:
        if inv.path_params["response_id"] == made["id"]:
            raise responses_api._Upstream(record)
        return Reply({"ran": True, "body": body, "caller": inv.caller})

    def invocation(response_id: str) -> runtime.Invocation:
        request = events.parse_http({"httpMethod": "GET", "url": f"/v1/responses/{response_id}/input_items?limit=1"})
        return runtime.Invocation(settings(), Call.from_context(None), caller="alice", request=request,
                                  path_params={"response_id": response_id})

    listed = responses_api._forwarded("GET", "/input_items")(operation)(None, invocation(made["id"]))
    assert listed.body == ask("GET", f"/{made['id']}/input_items", query="?limit=1")[1]
    deleted = responses_api._forwarded("DELETE", "")(operation)(None, invocation(made["id"]))
    assert deleted.body["id"] == made["id"] and deleted.body["deleted"] is True
    for method, action in [("GET", "/input_items"), ("DELETE", "")]:
        assert responses_api._forwarded(method, action)(operation)(None, invocation("resp_other")).body == {
            "ran": True, "body": None, "caller": "alice"}
    calls = [(c["method"], c["path"], c["query"]) for c in env.calls("") if c["path"].startswith("/v1/responses/")]
    assert calls == [("GET", f"/v1/responses/{made['id']}/input_items", "limit=1")] * 2 + [
        ("DELETE", f"/v1/responses/{made['id']}", None)]
    assert stored(made["id"])[0] is None  # a forwarded DELETE takes the record too
