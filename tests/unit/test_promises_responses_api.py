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
from shared.config import settings
from shared.jobs import store as jobs
from shared.openai import response_object, response_store
from tests.clock import ManualClock
from tests.conftest import FOLDER, Aws, Emulator, FakeContext, reset_caches

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


def ask(method: str, path: str = "", body: Any = None, caller: str = "alice", query: str = "") -> tuple[int, Any]:
    """(status, body) of /v1/responses<path> as the completion function answers it; an event stream as its events."""
    event = {"httpMethod": method, "url": f"/v1/responses{path}{query}", "headers": {},
             "body": json.dumps(body) if body is not None else None,
             "requestContext": {"authorizer": {"caller": caller}}}
    answer = load("completion")(event, FakeContext())
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


def summary(log: io.StringIO) -> dict[str, Any]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return next(line for line in reversed(lines) if line.get("msg") == "request handled")


def user(text: str) -> dict[str, str]:
    return {"role": "user", "text": text}


def message(text: str, role: str = "user") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def counting(aws: Aws) -> list[str]:
    """What reaches the store from now on: one entry per request (DynamoDB's target, or S3's method and path)."""
    seen: list[str] = []

    def middleware(app: Any) -> Any:
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            seen.append(target.split(".")[-1] if target else f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
            return app(environ, start_response)

        return counted

    aws.wrap(middleware)
    return seen


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
    assert [(a["caller"], a["id"]) for a in attempts] == [("bob", mine["id"])] * 6
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
