"""The one wrapper every handler goes through (shared/runtime.py), in process and without upstream: what an
operation is handed, what the caller gets back (ids, the dialect's error shape, never a traceback), what
the log says about it, and how queue and timer triggers reach their workers.

Operations here are the project's own where one serves without upstream (the /v1 model list), and small
functions of the test where the point is what `serve` hands an operation or does with what it raises."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared import auth, errors, logs, runtime
from shared import clock as shared_clock
from shared.client import SAFETY_MARGIN_S
from shared.config import Settings
from shared.openai import catalog
from shared.policy import KeyPolicy
from shared.responses import Reply
from tests.clock import ManualClock
from tests.conftest import FakeContext

FOLDER = "b1gfolder"
QUEUE_TYPE = "yandex.cloud.events.messagequeue.QueueMessage"
TIMER_TYPE = "yandex.cloud.events.serverless.triggers.TimerMessage"


@pytest.fixture(autouse=True)
def _folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_FOLDER_ID", FOLDER)


def _event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
           **extra: Any) -> dict[str, Any]:
    event = {"httpMethod": method, "url": path, "headers": headers or {},
             "body": json.dumps(body) if body is not None else None}
    return {**event, **extra}


def _lines(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


class Seen:
    """An operation that answers what it was handed."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.calls: list[tuple[Any, runtime.Invocation]] = []
        self.reply = reply or Reply({"ok": True}, status=201)

    def __call__(self, body: Any, inv: runtime.Invocation) -> Reply:
        self.calls.append((body, inv))
        inv.log_fields["model"] = "m"
        return self.reply


def _raising(error: BaseException) -> Any:
    def operation(body: Any, inv: runtime.Invocation) -> Reply:
        raise error
    return operation


def test_a_request_reaches_its_operation_and_the_answer_carries_both_ids(log_output: io.StringIO) -> None:
    seen = Seen()
    event = _event("POST", "/foundationModels/v1/tokenize", {"modelUri": "yandexgpt", "text": "hi"},
                   {"X-Client-Request-Id": "client.id:1-2_3"},
                   requestContext={"requestId": "gw-1", "authorizer": {"caller": "alice"}},
                   pathParams={"unused": "x"})
    answer = runtime.serve("completion", {"tokenize": seen}, event, FakeContext(request_id=""))
    assert answer["statusCode"] == 201 and json.loads(answer["body"]) == {"ok": True}
    assert answer["headers"]["x-request-id"] == "gw-1"
    assert answer["headers"]["x-client-request-id"] == "client.id:1-2_3"
    [(body, inv)] = seen.calls
    assert body.model_uri == "yandexgpt" and body.text == "hi"  # validated against the route's request model
    assert inv.caller == "alice" and inv.policy is None and inv.request is not None
    assert inv.request.path == "/foundationModels/v1/tokenize" and inv.path_params == {}
    assert inv.call.client_request_id == "client.id:1-2_3" and inv.settings.folder_id == FOLDER
    summary = _lines(log_output)[-1]
    assert summary["msg"] == "request handled" and summary["operation"] == "tokenize" and summary["status"] == 201
    assert summary["model"] == "m" and summary["latency_ms"] >= 0
    assert summary["function"] == "completion" and summary["request_id"] == "gw-1"
    assert summary["client_request_id"] == "client.id:1-2_3"
    assert logs.context_fields() == {}  # nothing stays bound after the request


def test_the_platforms_request_id_wins_and_a_missing_one_is_made() -> None:
    event = _event("GET", "/v1/models", requestContext={"requestId": "gw-1"})
    answer = runtime.serve("completion", {"listModels": catalog.list_models}, event, FakeContext(request_id="fn-1"))
    assert answer["headers"]["x-request-id"] == "fn-1"
    made = runtime.serve("completion", {"listModels": catalog.list_models}, _event("GET", "/v1/models"), None)
    other = runtime.serve("completion", {"listModels": catalog.list_models}, _event("GET", "/v1/models"), None)
    assert made["headers"]["x-request-id"] and made["headers"]["x-request-id"] != other["headers"]["x-request-id"]
    assert made["headers"]["x-client-request-id"] != made["headers"]["x-request-id"]


@pytest.mark.parametrize("sent", ["has space", "a" * 129, "semi;colon", "é"])
def test_a_client_request_id_that_is_not_a_plain_token_is_replaced(sent: str) -> None:
    answer = runtime.serve("completion", {"listModels": catalog.list_models},
                           _event("GET", "/v1/models", headers={"X-Client-Request-Id": sent}), None)
    kept = answer["headers"]["x-client-request-id"]
    assert kept != sent and kept and " " not in kept
    longest = "b" * 128
    answer = runtime.serve("completion", {"listModels": catalog.list_models},
                           _event("GET", "/v1/models", headers={"X-Client-Request-Id": longest}), None)
    assert answer["headers"]["x-client-request-id"] == longest


def test_a_model_list_answers_without_upstream() -> None:
    answer = runtime.serve("completion", {"listModels": "shared.openai.catalog:list_models"},
                           _event("GET", "/v1/models"), None)
    assert answer["statusCode"] == 200
    assert f"gpt://{FOLDER}/yandexgpt/latest" in [m["id"] for m in json.loads(answer["body"])["data"]]


def test_errors_come_in_the_dialect_of_the_path(log_output: io.StringIO) -> None:
    operations = {"notFoundGet": catalog.not_found, "tokenize": Seen()}
    openai = runtime.serve("completion", operations, _event("GET", "/v1/nothing/here"), None)
    assert openai["statusCode"] == 404
    assert json.loads(openai["body"])["error"]["type"] == "not_found_error"
    native = runtime.serve("completion", operations, _event("POST", "/foundationModels/v1/tokenize", [1]), None)
    assert native["statusCode"] == 400 and json.loads(native["body"])["error"]["httpCode"] == 400
    lines = [line for line in _lines(log_output) if line["msg"] == "request failed"]
    assert [(line["status"], line["level"]) for line in lines] == [(404, "INFO"), (400, "INFO")]
    assert lines[0]["operation"] == "notFoundGet" and "Invalid URL (/v1/nothing/here)" in lines[0]["error"]


def test_a_path_without_a_route_is_answered_in_its_dialect_before_any_route() -> None:
    native = runtime.serve("completion", {}, _event("GET", "/foundationModels/v1/nope"), None)
    assert native["statusCode"] == 404 and json.loads(native["body"])["error"]["message"] == \
        "no route for /foundationModels/v1/nope"
    openai = runtime.serve("completion", {}, _event("PUT", "/v1/models"), None)
    assert openai["statusCode"] == 405 and openai["headers"]["Allow"] == "GET"
    assert json.loads(openai["body"])["error"]["type"] == "invalid_request_error"


def test_a_bad_body_is_a_400_naming_it_and_the_operation_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_BODY_BYTES", "1024")
    seen = Seen()
    for body in ("{", "", '{"modelUri": "yandexgpt"}'):
        event = {"httpMethod": "POST", "url": "/foundationModels/v1/tokenize", "body": body}
        answer = runtime.serve("completion", {"tokenize": seen}, event, None)
        assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"]["httpCode"] == 400
    big = _event("POST", "/foundationModels/v1/tokenize", {"modelUri": "yandexgpt", "text": "a" * 1000})
    answer = runtime.serve("completion", {"tokenize": seen}, big, None)
    assert answer["statusCode"] == 413 and "1024-byte limit" in json.loads(answer["body"])["error"]["message"]
    assert seen.calls == []
    listing = runtime.serve("completion", {"listModels": seen}, _event("GET", "/v1/models", body="{"), None)
    assert listing["statusCode"] == 201 and seen.calls[0][0] is None  # a route without a request model reads none


def test_an_unexpected_failure_is_a_generic_500_with_the_traceback_only_in_the_log(log_output: io.StringIO) -> None:
    secret = "sk-this-must-never-leave-the-log"
    answer = runtime.serve("completion", {"listModels": _raising(RuntimeError(secret))}, _event("GET", "/v1/models"),
                           FakeContext(request_id="fn-9"))
    assert answer["statusCode"] == 500 and secret not in answer["body"]
    assert json.loads(answer["body"])["error"] == {
        "message": "internal error; see the function log for this request id", "type": "server_error",
        "param": None, "code": "internal"}
    assert answer["headers"]["x-request-id"] == "fn-9"
    [line] = [line for line in _lines(log_output) if line["msg"] == "unhandled error"]
    assert line["level"] == "ERROR" and line["operation"] == "listModels" and "RuntimeError" in line["exc_info"]
    assert line["request_id"] == "fn-9" and line["latency_ms"] >= 0


def test_an_upstream_failure_is_logged_as_a_warning_with_the_upstream_ids(log_output: io.StringIO) -> None:
    failure = errors.UpstreamUnavailableError("busy", upstream_status=503, upstream_request_id="up-1",
                                              upstream_grpc_code=14, retry_after=2.5)
    answer = runtime.serve("completion", {"listModels": _raising(failure)}, _event("GET", "/v1/models"), None)
    assert answer["statusCode"] == 503 and answer["headers"]["Retry-After"] == "3"
    [line] = [line for line in _lines(log_output) if line["msg"] == "request failed"]
    assert (line["level"], line["status"], line["grpc_code"]) == ("WARN", 503, 14)
    assert (line["upstream_status"], line["upstream_request_id"], line["error"]) == (503, "up-1", "busy")


def test_a_direct_invocation_names_its_operation_in_the_query() -> None:
    seen = Seen()
    event = {"httpMethod": "GET", "queryStringParameters": {"operation": "retrieveModel", "model": "yandexgpt"}}
    answer = runtime.serve("completion", {"retrieveModel": catalog.retrieve_model, "listModels": seen}, event, None)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["id"] == f"gpt://{FOLDER}/yandexgpt/latest"
    unknown = {"httpMethod": "GET", "queryStringParameters": {"operation": "dropTables"}}
    answer = runtime.serve("completion", {"listModels": seen}, unknown, None)
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["message"] == "the completion function has no operation 'dropTables'"
    tokenize = json.dumps({"modelUri": "yandexgpt", "text": "hi"})  # a body for the second route, not the first
    first = runtime.serve("completion", {"completion": seen, "tokenize": seen}, {"httpMethod": "POST", "body": tokenize},
                          None)
    assert first["statusCode"] == 400  # no operation: the function's first route, whose body is checked
    assert json.loads(first["body"])["error"]["message"] == "messages: is required (and 1 more problem)"
    assert seen.calls == []


def test_a_query_names_no_operation_when_the_request_has_a_path() -> None:
    seen, other = Seen(), Seen(Reply({"other": True}))
    event = _event("GET", "/v1/models?operation=retrieveModel", queryStringParameters={"operation": "retrieveModel"})
    answer = runtime.serve("completion", {"listModels": seen, "retrieveModel": other}, event, None)
    assert answer["statusCode"] == 201 and len(seen.calls) == 1 and other.calls == []


def test_the_gateways_operation_context_wins_over_the_path() -> None:
    seen = Seen()
    event = _event("GET", "/v1/models/whatever", requestContext={
        "apiGateway": {"operationContext": {"operation": "listModels"}}}, pathParams={"model": "whatever"})
    answer = runtime.serve("completion", {"listModels": seen}, event, None)
    assert answer["statusCode"] == 201 and seen.calls[0][1].path_params == {"model": "whatever"}
    query = {"httpMethod": "GET", "queryStringParameters": {"operation": "retrieveModel", "model": "llama"}}
    runtime.serve("completion", {"retrieveModel": seen}, query, None)
    assert seen.calls[1][1].path_params == {"model": "llama"}  # the query, without `operation`, on a direct call


def test_a_path_of_another_function_or_operation_is_a_404_naming_who_serves_it() -> None:
    answer = runtime.serve("embedding", {"textEmbedding": Seen()}, _event("GET", "/v1/models"), None)
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["message"] == "/v1/models is served by the completion function, not embedding"
    answer = runtime.serve("completion", {"completion": Seen()}, _event("GET", "/v1/models"), None)
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["message"] == "/v1/models is served by the completion function, not completion"


def test_a_trigger_event_sent_to_a_function_without_that_trigger_is_a_400() -> None:
    queue = {"messages": [{"event_metadata": {"event_type": QUEUE_TYPE}}]}
    answer = runtime.serve("completion", {"completion": Seen()}, queue, None)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["message"] == "event: a queue event is not handled by the completion function"
    timer = {"messages": [{"event_metadata": {"event_type": TIMER_TYPE}}]}
    assert runtime.serve("completion", {}, timer, None, jobs=("completion", Seen()))["statusCode"] == 400
    assert runtime.serve("completion", {}, queue, None, timer=Seen())["statusCode"] == 400


def test_in_iam_mode_no_policy_is_read_even_one_named_for_the_anonymous_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_AUTH_MODE", "iam")
    seen = Seen()
    policy = json.dumps({"name": "anonymous", "models": ["yandexgpt"]})  # what a direct invoker could write
    event = _event("GET", "/v1/models", requestContext={"authorizer": {"caller": "anonymous", "policy": policy}})
    runtime.serve("completion", {"listModels": seen}, event, None)
    assert seen.calls[0][1].caller == "anonymous" and seen.calls[0][1].policy is None
    monkeypatch.setenv("FM_AUTH_MODE", "api_key")
    from shared import config

    config.reset_settings()
    runtime.serve("completion", {"listModels": seen}, event, None)
    assert seen.calls[1][1].policy is not None and seen.calls[1][1].policy.models == ("yandexgpt",)


@pytest.mark.parametrize(("auth_mode", "caller"), [("api_key", "alice"), ("iam", "anonymous")])
def test_the_caller_and_its_policy_come_from_the_authorizer_only_behind_the_gateway(
        monkeypatch: pytest.MonkeyPatch, auth_mode: str, caller: str) -> None:
    monkeypatch.setenv("FM_AUTH_MODE", auth_mode)
    policy = json.dumps({"name": "alice", "models": ["yandexgpt"]})
    seen = Seen()
    event = _event("GET", "/v1/models", requestContext={"authorizer": {"caller": "alice", "policy": policy}})
    runtime.serve("completion", {"listModels": seen}, event, None)
    inv = seen.calls[0][1]
    assert inv.caller == caller
    assert (inv.policy is not None and inv.policy.models == ("yandexgpt",)) == (auth_mode == "api_key")


def test_a_queue_batch_reaches_its_worker_with_the_invocations_deadline(log_output: io.StringIO) -> None:
    calls: list[tuple[Any, ...]] = []

    def worker(kind: str, messages: list[Any], inv: runtime.Invocation, request_id: str) -> dict[str, Any]:
        calls.append((kind, messages, inv.call.remaining(), request_id, logs.context_fields()))
        inv.log_fields["claimed"] = 2
        return {"consumed": len(messages)}

    messages = [{"event_metadata": {"event_type": QUEUE_TYPE}, "details": {"message": {"body": "1"}}}]
    event = {"messages": messages}
    assert runtime.serve("worker", {}, event, FakeContext(remaining_ms=30_000, request_id="q-1"),
                         jobs=("completion", worker)) == {"consumed": 1}
    [(kind, got, remaining, request_id, bound)] = calls
    assert kind == "completion" and got == messages and request_id == "q-1"
    assert 30 - SAFETY_MARGIN_S - 5 < remaining <= 30 - SAFETY_MARGIN_S
    assert bound == {"function": "worker", "request_id": "q-1", "trigger": "message-queue"}
    summary = _lines(log_output)[-1]
    assert (summary["msg"], summary["operation"], summary["status"], summary["claimed"]) == \
        ("request handled", "consume", 200, 2)
    runtime.serve("worker", {}, event, None, jobs=("completion", "tests.unit.test_promises_runtime:_worker_600"))
    assert logs.context_fields() == {}


def _worker_600(kind: str, messages: list[Any], inv: runtime.Invocation, request_id: str) -> dict[str, Any]:
    """Without a context, a trigger invocation has the platform's longest time, 600 s, and an id of its own."""
    assert 600 - SAFETY_MARGIN_S - 5 < inv.call.remaining() <= 600 - SAFETY_MARGIN_S
    assert request_id and logs.context_fields()["request_id"] == request_id
    return {}


def test_a_failed_queue_batch_raises_so_the_trigger_redelivers_it(log_output: io.StringIO) -> None:
    def worker(kind: str, messages: list[Any], inv: runtime.Invocation, request_id: str) -> dict[str, Any]:
        inv.log_fields["claimed"] = 1
        raise RuntimeError("store down " + "x" * 600)

    event = {"messages": [{"event_metadata": {"event_type": QUEUE_TYPE}}]}
    with pytest.raises(RuntimeError):
        runtime.serve("worker", {}, event, FakeContext(request_id="q-2"), jobs=("completion", worker))
    [line] = [line for line in _lines(log_output) if line["msg"].startswith("batch failed")]
    assert line["msg"] == "batch failed; the trigger will redeliver it" and line["level"] == "WARN"
    assert line["error"] == ("store down " + "x" * 600)[:500] and line["claimed"] == 1 and line["request_id"] == "q-2"
    assert logs.context_fields() == {}


def test_a_timer_tick_runs_its_work_within_the_invocations_time(log_output: io.StringIO) -> None:
    seen: list[tuple[float, str, dict[str, Any]]] = []

    def work(inv: runtime.Invocation, request_id: str) -> dict[str, Any]:
        seen.append((inv.call.remaining(), request_id, logs.context_fields()))
        return {"polled": 3}

    event = {"messages": [{"event_metadata": {"event_type": TIMER_TYPE}}]}
    assert runtime.serve("poller", {}, event, None, timer=work) == {"polled": 3}
    [(remaining, request_id, bound)] = seen
    assert 60 - SAFETY_MARGIN_S - 5 < remaining <= 60 - SAFETY_MARGIN_S
    assert bound == {"function": "poller", "request_id": request_id, "trigger": "timer"} and request_id
    summary = _lines(log_output)[-1]
    assert (summary["msg"], summary["operation"], summary["status"]) == ("request handled", "tick", 200)
    assert runtime.serve("poller", {}, event, FakeContext(request_id="t-1"), timer=work) == {"polled": 3}
    assert seen[1][1] == "t-1" and logs.context_fields() == {}


def test_the_client_is_built_once_per_settings_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "AQVN-test-key-0123456789")
    first = Settings.from_env()
    client = runtime.get_client(first)
    assert runtime.get_client(first) is client and client.settings is first
    second = Settings.from_env()
    other = runtime.get_client(second)
    assert other is not client and other.settings is second and runtime.get_client(second) is other
    inv = runtime.Invocation(second, runtime.Call(deadline=shared_clock.monotonic() + 5))
    assert inv.client is other
    runtime.reset_client()
    assert runtime.get_client(second) is not other


def test_an_operation_gets_the_platforms_context_and_its_deadline(clock: ManualClock) -> None:
    seen = Seen()
    context = FakeContext(remaining_ms=42_000, request_id="fn-3")
    runtime.serve("completion", {"listModels": seen}, _event("GET", "/v1/models"), context)
    inv = seen.calls[0][1]
    assert inv.context is context and inv.call.remaining() == pytest.approx(42 - SAFETY_MARGIN_S)


def test_latencies_in_the_log_are_the_requests_time_in_milliseconds(clock: ManualClock, log_output: io.StringIO) -> None:
    def slow(reply: Reply | None = None, error: BaseException | None = None, seconds: float = 0.001234) -> Any:
        def operation(body: Any, inv: runtime.Invocation) -> Reply:
            shared_clock.sleep(seconds)
            if error is not None:
                raise error
            return reply or Reply({})
        return operation

    runtime.serve("completion", {"listModels": slow()}, _event("GET", "/v1/models"), None)
    runtime.serve("completion", {"listModels": slow(error=errors.ForbiddenError("no"), seconds=0.25)},
                  _event("GET", "/v1/models"), None)
    runtime.serve("completion", {"listModels": slow(error=KeyError("x"), seconds=2)}, _event("GET", "/v1/models"), None)
    queue = {"messages": [{"event_metadata": {"event_type": QUEUE_TYPE}}]}
    runtime.serve("worker", {}, queue, None, jobs=("completion", lambda *args: slow(seconds=0.5)(None, args[2]) and {}))
    with pytest.raises(RuntimeError):
        runtime.serve("worker", {}, queue, None,
                      jobs=("completion", lambda *args: slow(error=RuntimeError("down"), seconds=3)(None, args[2])))
    timer = {"messages": [{"event_metadata": {"event_type": TIMER_TYPE}}]}
    runtime.serve("poller", {}, timer, None, timer=lambda inv, rid: slow(seconds=0.75)(None, inv) and {})
    lines = [(line["msg"], line["latency_ms"]) for line in _lines(log_output) if "latency_ms" in line]
    assert lines == [("request handled", 1.23), ("request failed", 250.0), ("unhandled error", 2000.0),
                     ("request handled", 500.0), ("batch failed; the trigger will redeliver it", 3000.0),
                     ("request handled", 750.0)]


def test_a_500_of_our_own_is_logged_as_a_warning(log_output: io.StringIO) -> None:
    failure = errors.ConfigError("FM_THING: is wrong")
    answer = runtime.serve("completion", {"listModels": _raising(failure)}, _event("GET", "/v1/models"), None)
    assert answer["statusCode"] == 500
    [line] = [line for line in _lines(log_output) if line["msg"] == "request failed"]
    assert (line["level"], line["status"]) == ("WARN", 500)


def test_bad_settings_are_a_500_in_the_log_with_the_request_id(monkeypatch: pytest.MonkeyPatch,
                                                               log_output: io.StringIO) -> None:
    monkeypatch.setenv("FM_TIMEOUT_S", "soon")
    answer = runtime.serve("completion", {"listModels": Seen()}, _event("GET", "/v1/models"),
                           FakeContext(request_id="fn-7"))
    assert answer["statusCode"] == 500 and answer["headers"] == {"Content-Type": "application/json"}
    assert "FM_TIMEOUT_S" in json.loads(answer["body"])["error"]["message"]
    assert "grpcCode" in json.loads(answer["body"])["error"]  # before the path is read: the native shape
    [line] = [line for line in _lines(log_output) if line["msg"] == "request failed"]
    assert line["request_id"] == "fn-7" and line["function"] == "completion" and line["operation"] is None


def test_a_sync_answer_reaches_the_usage_ledger_under_its_operation_and_request_id(log_output: io.StringIO) -> None:
    def answered(body: Any, inv: runtime.Invocation) -> Reply:
        inv.log_fields.update(model="gpt://b1g/yandexgpt/latest", input_tokens=5, completion_tokens=2)
        return Reply({"done": True})

    event = _event("POST", "/foundationModels/v1/completion", {"modelUri": "yandexgpt", "messages": [
        {"role": "user", "text": "hi"}]}, requestContext={"authorizer": {"caller": "alice"}})
    runtime.serve("completion", {"completion": answered}, event, FakeContext(request_id="fn-5"))
    [line] = [line for line in _lines(log_output) if line["msg"] == "usage"]
    usage = line["usage"]
    assert (usage["route"], usage["caller"], usage["key"], usage["request_id"]) == ("completion", "alice", "sync#fn-5",
                                                                                    "fn-5")
    assert (usage["input_tokens"], usage["output_tokens"]) == (5, 2)


def test_the_client_uses_the_chains_credentials_and_follows_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "AQVN-test-key-0123456789")
    settings = Settings.from_env()
    client = runtime.get_client(settings)
    assert client.credentials is auth.default_credentials(settings)
    auth.reset_credentials()  # the chain chose again (a configuration change): the client follows it
    renewed = runtime.get_client(settings)
    assert renewed is not client and renewed.credentials is auth.default_credentials(settings)
    assert runtime.get_client(settings) is renewed


def test_the_functions_own_token_comes_from_the_invocations_context() -> None:
    context = FakeContext(token={"access_token": "t1.context-token", "expires_in": 3600, "token_type": "Bearer"})
    client = runtime.get_client(Settings.from_env(), context)
    assert client.credentials.source == "function context.token"


def test_the_log_level_setting_holds_for_every_request(monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("LOG_LEVEL", "WARN")
    runtime.serve("completion", {"listModels": Seen()}, _event("GET", "/v1/models"), None)
    runtime.serve("completion", {"listModels": _raising(RuntimeError("x"))}, _event("GET", "/v1/models"), None)
    assert [line["msg"] for line in _lines(log_output)] == ["unhandled error"]  # no INFO summary line


# -- admin routes, and what the per-key limits hook gets --------------------------------------------------

@pytest.mark.parametrize(("admin", "caller", "reaches"), [
    ("ops", "ops", True), ("ops", "alice", False), ("ops", "anonymous", False), ("", "anonymous", False),
    ("", "ops", False),
])
def test_an_admin_route_reaches_its_operation_for_the_admin_caller_only(monkeypatch: pytest.MonkeyPatch, admin: str,
                                                                         caller: str, reaches: bool) -> None:
    """Anyone else gets the 404 of a path that does not exist, before the body is read; no admin configured:
    nobody."""
    if admin:
        monkeypatch.setenv("FM_ADMIN_CALLER", admin)
    seen = Seen()
    event = _event("POST", "/admin/keys", body=[1], requestContext={"authorizer": {"caller": caller}})
    answer = runtime.serve("operations", {"createKey": seen}, event, None)
    if reaches:
        assert answer["statusCode"] == 400 and "body" in answer["body"]  # validated, as any route: a bad body
        answer = runtime.serve("operations", {"createKey": seen},
                               _event("POST", "/admin/keys", {"name": "k"},
                                      requestContext={"authorizer": {"caller": caller}}), None)
        assert answer["statusCode"] == 201 and seen.calls[0][0].name == "k"
    else:
        assert answer["statusCode"] == 404 and json.loads(answer["body"])["error"]["message"] == "no route for /admin/keys"
        assert seen.calls == []


FINISHED: list[runtime.Invocation] = []


def finish_request(inv: runtime.Invocation) -> None:  # this module stands in for shared.jobs.limits below
    FINISHED.append(inv)


class _Held:
    headers = {"x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4"}


def test_an_admitted_request_answers_its_limit_headers_and_its_reservation_is_finished(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "LIMITS_HOOK", __name__)
    FINISHED.clear()

    def admitted(body: Any, inv: runtime.Invocation) -> Reply:
        inv.reservation = _Held()
        return Reply({"ok": True})

    def admitted_then_failed(body: Any, inv: runtime.Invocation) -> Reply:
        inv.reservation = _Held()
        raise errors.UpstreamUnavailableError("upstream busy")

    def admitted_then_crashed(body: Any, inv: runtime.Invocation) -> Reply:
        inv.reservation = _Held()
        raise KeyError("a bug")

    for operation, status in ((admitted, 200), (admitted_then_failed, 503), (admitted_then_crashed, 500)):
        answer = runtime.serve("completion", {"listModels": operation}, _event("GET", "/v1/models"), None)
        assert answer["statusCode"] == status
        if status != 500:  # an unhandled failure answers only the generic 500, but its reservation is finished too
            assert answer["headers"]["x-ratelimit-remaining-requests"] == "4"
        assert FINISHED[-1].reservation is not None and FINISHED[-1].caller == "anonymous"
    assert len(FINISHED) == 3
    plain = runtime.serve("completion", {"listModels": Seen(Reply({"ok": True}))}, _event("GET", "/v1/models"), None)
    assert not any(k.startswith("x-ratelimit") for k in plain["headers"]) and len(FINISHED) == 3  # no reservation


ADMITTED: list[tuple[Any, ...]] = []


def admit(inv: runtime.Invocation, body: dict[str, Any], kind: str, model: str) -> dict[str, Any]:  # as finish_request
    ADMITTED.append((inv.caller, body, kind, model))
    return {**body, "maxTokens": 10}  # what the key's budget leaves for the answer


def admit_job(inv: runtime.Invocation, kind: str, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ADMITTED.append((inv.caller, kind, payloads))
    return [{**payload, "reserved": True} for payload in payloads]


@pytest.mark.parametrize("policy", [None, KeyPolicy(name="alice", models=("yandexgpt",)), KeyPolicy(name="alice", rpm=5),
                                    KeyPolicy(name="alice", monthly_budget=1.5)])
def test_only_a_key_with_limits_has_its_requests_and_jobs_admitted_by_the_limits(
        monkeypatch: pytest.MonkeyPatch, policy: KeyPolicy | None) -> None:
    """A key with limits: what goes upstream (or into the job) is what the limits admitted. Any other: the body as
    it is, and the limits module is never imported (a module that does not exist stands in for it then)."""
    limited = policy is not None and policy.limited
    monkeypatch.setattr(runtime, "LIMITS_HOOK", __name__ if limited else "shared.no_such_module")
    ADMITTED.clear()

    def sends(body: Any, inv: runtime.Invocation) -> Reply:
        return Reply({"sent": inv.admit({"messages": ["hi"]}, "chat", "gpt://b1g/yandexgpt/latest"),
                      "jobs": inv.admit_job("completion", [{"n": 1}, {"n": 2}])})

    authorizer = {"caller": "alice", **({"policy": policy.to_context()} if policy else {})}
    answer = runtime.serve("completion", {"listModels": sends}, _event("GET", "/v1/models",
                                                                      requestContext={"authorizer": authorizer}), None)
    assert answer["statusCode"] == 200
    if limited:
        assert json.loads(answer["body"]) == {"sent": {"messages": ["hi"], "maxTokens": 10},
                                              "jobs": [{"n": 1, "reserved": True}, {"n": 2, "reserved": True}]}
        assert ADMITTED == [("alice", {"messages": ["hi"]}, "chat", "gpt://b1g/yandexgpt/latest"),
                            ("alice", "completion", [{"n": 1}, {"n": 2}])]
    else:
        assert json.loads(answer["body"]) == {"sent": {"messages": ["hi"]}, "jobs": [{"n": 1}, {"n": 2}]}
        assert ADMITTED == []
