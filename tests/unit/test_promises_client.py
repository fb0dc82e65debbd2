"""The client's promises, one by one, against a scripted session and the test clock: what is retried and
what never is, which headers go upstream, how long it waits and when it gives up. No sockets; the same
rules are exercised over real HTTP in tests/integration/test_promises_upstream.py."""

from __future__ import annotations

import io
import json
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from shared import auth, client, errors, logs
from shared.config import Settings
from tests.clock import ManualClock

BASE, OPS = "http://fm.test", "http://ops.test"
KEY = "AQVNunit-client-key-0123456789abcdefgh"


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    """A real requests.Response, as the session would hand it back."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    answer.headers.update(headers or {})
    answer.encoding = "utf-8"
    return answer


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens: no byte of the request left."""
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/x", NewConnectionError(None, "Connection refused")))


def unresolvable() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/x", NameResolutionError("fm.test", None, OSError())))


def broken() -> requests.exceptions.ConnectionError:
    """What requests raises when upstream hangs up after the request went out."""
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", RemoteDisconnected("closed")))


class ScriptedSession:
    """Answers (or raises) in order; the last answer repeats. Records every request."""

    def __init__(self, *answers: requests.Response | BaseException, latency: tuple[ManualClock, float] | None = None) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self.latency = latency  # (clock, seconds): each request takes this long on the test clock

    def request(self, method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: tuple[float, float] | None = None) -> requests.Response:
        self.calls.append({"method": method, "url": url, "data": data, "headers": dict(headers or {}),
                           "timeout": timeout})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if self.latency:
            self.latency[0].advance(self.latency[1])
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Rotating(auth.Credentials):
    """Refreshable credentials that hand out a new token on each refresh (no network)."""

    refreshable = True

    def __init__(self) -> None:
        super().__init__("test rotating token", token="t1.rotating-token-0000000000")
        self.refreshes = 0

    def refresh(self, http: Any) -> None:
        self.refreshes += 1
        self._set_token(f"t1.rotating-token-{self.refreshes:010d}", None)


OK = response(200, {"result": {"alternatives": []}}, {"x-request-id": "up-ok"})
COMPLETION_BODY = {"modelUri": "gpt://f/yandexgpt/latest", "messages": [{"role": "user", "text": "привет"}]}

# (method name, arguments, HTTP method, URL) for every call the client makes
GENERATING = [  # each call generates and is billed: sent once at most
    ("completion", (COMPLETION_BODY,), "POST", f"{BASE}/foundationModels/v1/completion"),
    ("completion_async", (COMPLETION_BODY,), "POST", f"{BASE}/foundationModels/v1/completionAsync"),
    ("completion_batch", ({"sourceDatasetId": "fds1"},), "POST", f"{BASE}/foundationModels/v1/completionBatch"),
    ("few_shot_classification", ({"text": "x"},), "POST", f"{BASE}/foundationModels/v1/fewShotTextClassification"),
    ("text_classification", ({"text": "x"},), "POST", f"{BASE}/foundationModels/v1/textClassification"),
]
READ_ONLY = [  # nothing is generated: safe to send again
    ("tokenize", ({"text": "x"},), "POST", f"{BASE}/foundationModels/v1/tokenize"),
    ("tokenize_completion", (COMPLETION_BODY,), "POST", f"{BASE}/foundationModels/v1/tokenizeCompletion"),
    ("text_embedding", ({"text": "x"},), "POST", f"{BASE}/foundationModels/v1/textEmbedding"),
    ("get_operation", ("op1",), "GET", f"{OPS}/operations/op1"),
    ("cancel_operation", ("op1",), "GET", f"{OPS}/operations/op1:cancel"),
]
EVERY_CALL = GENERATING + READ_ONLY


def make(session: ScriptedSession, credentials: auth.Credentials | None = None, **settings: Any) -> client.FoundationModelsClient:
    values = {"base_url": BASE, "operation_url": OPS, "retry_base_s": 0.5, "retry_max_s": 4.0, "max_retries": 2,
              **settings}
    return client.FoundationModelsClient(Settings(**values), credentials or auth.ApiKey("env YC_API_KEY", KEY),
                                         session=session)  # type: ignore[arg-type]


def call(seconds: float = 60.0, request_id: str = "cid-1") -> client.Call:
    return client.Call(deadline=client.clock.monotonic() + seconds, client_request_id=request_id)


def invoke(fm: client.FoundationModelsClient, name: str, args: tuple[Any, ...], deadline_s: float = 60.0) -> client.Answer:
    return getattr(fm, name)(*args, call(deadline_s))


# -- what is retried and what never is --------------------------------------------------------------

@pytest.mark.parametrize("name,args,method,url", GENERATING)
def test_a_generating_call_is_never_sent_again_after_a_read_timeout(clock: ManualClock, name: str, args: tuple[Any, ...],
                                                                    method: str, url: str) -> None:
    session = ScriptedSession(requests.exceptions.ReadTimeout("read timed out"), OK)
    with pytest.raises(errors.UpstreamTimeoutError, match="not retried, because the call is not idempotent") as info:
        invoke(make(session, timeout_s=7.0), name, args)
    assert info.value.status == 504 and "within 7.0s" in info.value.message
    assert len(session.calls) == 1 and clock.sleeps == []


@pytest.mark.parametrize("name,args,method,url", GENERATING)
def test_a_generating_call_is_never_sent_again_after_the_connection_broke(clock: ManualClock, name: str,
                                                                         args: tuple[Any, ...], method: str, url: str) -> None:
    session = ScriptedSession(broken(), OK)
    with pytest.raises(errors.UpstreamError) as info:
        invoke(make(session), name, args)
    assert type(info.value) is errors.UpstreamError and info.value.status == 502
    assert info.value.message == ("connection to upstream broke after the request was sent; not retried, because "
                                  "the call is not idempotent")
    assert len(session.calls) == 1 and clock.sleeps == []


@pytest.mark.parametrize("name,args,method,url", READ_ONLY)
def test_a_read_only_call_is_sent_again_after_a_read_timeout_or_a_broken_connection(
        clock: ManualClock, name: str, args: tuple[Any, ...], method: str, url: str) -> None:
    session = ScriptedSession(requests.exceptions.ReadTimeout("slow"), broken(), OK)
    answer = invoke(make(session), name, args)
    assert answer.attempts == 3 and answer.status == 200 and answer.request_id == "up-ok"
    assert [c["url"] for c in session.calls] == [url] * 3 and len(clock.sleeps) == 2


def test_a_read_only_call_gives_up_after_its_attempts_with_the_last_failure(clock: ManualClock) -> None:
    session = ScriptedSession(requests.exceptions.ReadTimeout("slow"), requests.exceptions.ReadTimeout("slow"), broken())
    with pytest.raises(errors.UpstreamUnavailableError, match="^connection to upstream broke$"):
        make(session, max_retries=2).text_embedding({"text": "x"}, call())
    assert len(session.calls) == 3
    session = ScriptedSession(requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(errors.UpstreamTimeoutError, match=r"^upstream did not answer within 9\.0s$"):
        make(session, max_retries=1, timeout_s=9.0).tokenize({"text": "x"}, call())
    assert len(session.calls) == 2


@pytest.mark.parametrize("name,args,method,url", EVERY_CALL)
def test_a_refused_connection_is_retried_for_every_call_until_the_attempts_run_out(
        clock: ManualClock, name: str, args: tuple[Any, ...], method: str, url: str) -> None:
    session = ScriptedSession(refused())
    with pytest.raises(errors.UpstreamUnavailableError, match="^could not connect to upstream$") as info:
        invoke(make(session, max_retries=3), name, args)
    assert info.value.status == 503 and info.value.retryable
    assert len(session.calls) == 4  # 1 + FM_MAX_RETRIES, each one counted
    assert len(clock.sleeps) == 3
    session = ScriptedSession(refused(), unresolvable(), requests.exceptions.ConnectTimeout("slow connect"), OK)
    assert invoke(make(session, max_retries=3), name, args).attempts == 4


def test_a_connect_timeout_is_reported_as_unavailable_after_the_retries(clock: ManualClock) -> None:
    session = ScriptedSession(requests.exceptions.ConnectTimeout("slow connect"))
    with pytest.raises(errors.UpstreamUnavailableError, match=r"^could not connect to upstream \(timeout\)$"):
        make(session, max_retries=1).completion(COMPLETION_BODY, call())
    assert len(session.calls) == 2


def test_any_other_transport_failure_is_reported_at_once(clock: ManualClock) -> None:
    session = ScriptedSession(requests.exceptions.ChunkedEncodingError("cut"), OK)
    with pytest.raises(errors.UpstreamError, match="^request to upstream failed: ChunkedEncodingError$"):
        make(session).tokenize({"text": "x"}, call())
    assert len(session.calls) == 1


@pytest.mark.parametrize("status,expected", [(429, errors.RateLimitedError), (503, errors.UpstreamUnavailableError)])
def test_429_and_503_are_retried_and_then_passed_on(clock: ManualClock, status: int, expected: type) -> None:
    session = ScriptedSession(response(status, {"code": 8, "message": "slow down"}))
    with pytest.raises(expected, match="^slow down$"):
        make(session, max_retries=2).completion(COMPLETION_BODY, call())
    assert len(session.calls) == 3
    session = ScriptedSession(response(status, {"code": 8, "message": "slow down"}), OK)
    assert make(session).completion(COMPLETION_BODY, call()).attempts == 2


@pytest.mark.parametrize("status,expected", [(400, errors.BadRequestError), (404, errors.NotFoundError),
                                             (500, errors.UpstreamError), (504, errors.UpstreamTimeoutError)])
def test_other_answers_are_passed_on_at_once(clock: ManualClock, status: int, expected: type) -> None:
    session = ScriptedSession(response(status, {"error": {"grpcCode": 3, "message": "no"}}), OK)
    with pytest.raises(expected):
        make(session).text_embedding({"text": "x"}, call())
    assert len(session.calls) == 1 and clock.sleeps == []


# -- waiting ------------------------------------------------------------------------------------------

def test_retry_after_is_waited_for_on_the_clock(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.random, "uniform", lambda low, high: high)  # the largest jitter
    session = ScriptedSession(response(429, {"code": 8, "message": "quota"}, {"Retry-After": "2"}), OK)
    make(session, retry_base_s=0.5).completion(COMPLETION_BODY, call())
    assert clock.sleeps == [pytest.approx(2.05)]  # Retry-After + a tenth of the jitter


def test_without_retry_after_the_backoff_grows_and_is_capped(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.random, "uniform", lambda low, high: (low, high) and 0.25)
    session = ScriptedSession(response(503, {"code": 14, "message": "busy"}))
    with pytest.raises(errors.UpstreamUnavailableError):
        make(session, max_retries=4, retry_base_s=1.0, retry_max_s=3.0).tokenize({"text": "x"}, call(600))
    assert clock.sleeps == [pytest.approx(1.75), pytest.approx(2.5), 3.0, 3.0]  # 1.5^n + 0.25, capped at 3


def test_a_wait_that_would_reach_the_deadline_is_not_started(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.random, "uniform", lambda low, high: 0.0)
    session = ScriptedSession(response(429, {"code": 8, "message": "quota"}, {"Retry-After": "5"}), OK)
    with pytest.raises(errors.RateLimitedError) as info:
        make(session).completion(COMPLETION_BODY, call(5.0))  # 5 s left, 5 s to wait: give up now
    assert info.value.retry_after == 5.0 and len(session.calls) == 1 and clock.sleeps == []
    session = ScriptedSession(response(429, {"code": 8, "message": "quota"}, {"Retry-After": "4.5"}), OK)
    assert make(session).completion(COMPLETION_BODY, call(5.0)).attempts == 2  # 4.5 s fits
    assert clock.sleeps == [4.5]


def test_no_call_goes_out_once_the_deadline_has_passed(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    with pytest.raises(errors.UpstreamTimeoutError, match="^the invocation's deadline passed before upstream answered$"):
        make(session).completion(COMPLETION_BODY, call(0.0))
    assert session.calls == []


def test_timeouts_are_the_settings_cut_to_the_time_left(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    fm = make(session, connect_timeout_s=3.0, timeout_s=50.0)
    fm.completion(COMPLETION_BODY, call(60.0))
    fm.completion(COMPLETION_BODY, call(20.0))
    fm.completion(COMPLETION_BODY, call(2.0))
    assert [c["timeout"] for c in session.calls] == [(3.0, 50.0), (3.0, 20.0), (2.0, 2.0)]


def test_the_call_deadline_comes_from_the_invocation_less_a_margin(clock: ManualClock) -> None:
    class Context:
        def __init__(self, value: Any) -> None:
            self.value = value

        def get_remaining_time_in_millis(self) -> Any:
            return self.value

    start = clock.monotonic()
    assert client.Call.from_context(Context(10_000)).deadline == start + 9.5
    assert client.Call.from_context(Context(200)).remaining() == 0.0  # never negative
    assert client.Call.from_context(Context("soon"), default_s=30).deadline == start + 29.5
    assert client.Call.from_context(None, default_s=30).deadline == start + 29.5
    given = client.Call.from_context(None, client_request_id="mine")
    assert given.client_request_id == "mine"
    assert client.Call.from_context(None).client_request_id != client.Call.from_context(None).client_request_id
    clock.advance(4.0)
    assert given.remaining() == pytest.approx(300.0 - 0.5 - 4.0)


def test_the_pacer_spaces_calls_and_refuses_a_slot_past_the_deadline(clock: ManualClock) -> None:
    pacer = client.Pacer(4.0)  # one call every 0.25 s
    deadline = call(0.5)
    for _ in range(3):
        pacer.acquire(deadline)
    assert clock.sleeps == [0.25, 0.25]  # the first goes at once
    with pytest.raises(errors.RateLimitedError, match="^local quota pacing: no call slot before the deadline$"):
        pacer.acquire(deadline)  # the next slot (0.75 s) is past the deadline (0.5 s)
    clock.advance(10)
    pacer.acquire(call(0.0))  # a slot exactly at the deadline is still taken
    assert clock.sleeps == [0.25, 0.25]


def test_the_retry_policy_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = client.RetryPolicy.from_settings(Settings(max_retries=3, retry_base_s=0.2, retry_max_s=7.0))
    assert (policy.max_attempts, policy.base_s, policy.max_delay_s) == (4, 0.2, 7.0)
    seen: list[tuple[float, float]] = []
    monkeypatch.setattr(client.random, "uniform", lambda low, high: seen.append((low, high)) or high)
    assert policy.delay(2) == pytest.approx(0.2 * 2.25 + 0.2)
    assert policy.delay(1, retry_after=3.0) == pytest.approx(3.02)
    assert policy.delay(1, retry_after=0.0) == pytest.approx(0.02)
    assert seen == [(0, 0.2)] * 3


# -- what goes upstream ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,method,url", EVERY_CALL)
def test_every_call_goes_to_its_path_with_its_body(clock: ManualClock, name: str, args: tuple[Any, ...], method: str,
                                                   url: str) -> None:
    session = ScriptedSession(OK)
    assert invoke(make(session), name, args).body == {"result": {"alternatives": []}}  # one JSON document, not lines
    sent = session.calls[0]
    assert (sent["method"], sent["url"]) == (method, url)
    if method == "POST":
        assert sent["data"] == json.dumps(args[0], ensure_ascii=False, separators=(",", ":")).encode()
        assert sent["headers"]["Content-Type"] == "application/json"
    else:
        assert sent["data"] is None and "Content-Type" not in sent["headers"]


def test_the_body_is_compact_utf8_json(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    make(session).completion(COMPLETION_BODY, call())
    assert session.calls[0]["data"] == ('{"modelUri":"gpt://f/yandexgpt/latest","messages":'
                                        '[{"role":"user","text":"привет"}]}').encode()


def test_headers_carry_the_credential_the_request_id_and_the_data_logging_choice(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    make(session).completion(COMPLETION_BODY, call(request_id="trace-7"))
    make(session, data_logging=True).completion(COMPLETION_BODY, call(request_id="trace-8"))
    first, second = (c["headers"] for c in session.calls)
    assert first == {"Authorization": f"Api-Key {KEY}", "x-client-request-id": "trace-7",
                     "x-data-logging-enabled": "false", "Content-Type": "application/json"}
    assert second["x-data-logging-enabled"] == "true" and second["x-client-request-id"] == "trace-8"


def test_only_a_user_iam_token_sends_the_folder(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    iam = auth.IamToken("env YC_IAM_TOKEN", "t1.user-token-0123456789")
    make(session, iam, folder_id="b1gfolder").completion(COMPLETION_BODY, call())
    make(session, iam).completion(COMPLETION_BODY, call())  # no YC_FOLDER_ID: nothing to send
    make(session, folder_id="b1gfolder").completion(COMPLETION_BODY, call())  # an API key: the key's folder
    with_token, without_folder, with_key = (c["headers"] for c in session.calls)
    assert with_token["x-folder-id"] == "b1gfolder" and with_token["Authorization"] == "Bearer t1.user-token-0123456789"
    assert "x-folder-id" not in without_folder and "x-folder-id" not in with_key


def test_no_auth_sends_no_authorization(clock: ManualClock) -> None:
    session = ScriptedSession(OK)
    make(session, auth.NoCredentials()).tokenize({"text": "x"}, call())
    assert "Authorization" not in session.calls[0]["headers"]


# -- 401 ------------------------------------------------------------------------------------------------

def test_a_401_refreshes_refreshable_credentials_and_goes_once_more(clock: ManualClock) -> None:
    creds = Rotating()
    session = ScriptedSession(response(401, {"code": 16, "message": "expired"}), OK)
    answer = make(session, creds).completion(COMPLETION_BODY, call())
    assert answer.attempts == 1 and creds.refreshes == 1  # the re-authenticated call is not a retry
    assert [c["headers"]["Authorization"] for c in session.calls] == [
        "Bearer t1.rotating-token-0000000000", "Bearer t1.rotating-token-0000000001"]
    assert clock.sleeps == []


def test_a_second_401_is_reported_naming_the_credential_source(clock: ManualClock) -> None:
    creds = Rotating()
    session = ScriptedSession(response(401, {"code": 16, "message": "expired"}))
    with pytest.raises(errors.UnauthorizedError) as info:
        make(session, creds).completion(COMPLETION_BODY, call())
    assert info.value.message == "upstream rejected our credentials (test rotating token): expired"
    assert len(session.calls) == 2 and creds.refreshes == 1
    session = ScriptedSession(response(401, {"code": 16, "message": "bad key"}))
    with pytest.raises(errors.UnauthorizedError) as info:
        make(session).completion(COMPLETION_BODY, call())
    assert info.value.message == "upstream rejected our credentials (env YC_API_KEY): bad key"
    assert len(session.calls) == 1  # an API key cannot be refreshed


# -- answers and errors ----------------------------------------------------------------------------------

def test_a_stream_answer_is_parsed_line_by_line(clock: ManualClock) -> None:
    chunks = [{"result": {"n": 1}}, {"result": {"n": 2}}]
    body = "\n".join(json.dumps(c) for c in chunks) + "\n\n"
    session = ScriptedSession(response(200, body, {"x-request-id": "up-s"}))
    answer = make(session).completion({**COMPLETION_BODY, "completionOptions": {"stream": True}}, call())
    assert answer.body == chunks and answer.request_id == "up-s"
    session = ScriptedSession(response(200, body))
    with pytest.raises(errors.UpstreamError, match="not valid JSON"):
        make(session).completion(COMPLETION_BODY, call())  # the same lines are not one JSON document


def test_a_200_that_is_not_json_is_an_upstream_error(clock: ManualClock) -> None:
    session = ScriptedSession(response(200, '{"result": {', {"x-request-id": "up-bad"}))
    with pytest.raises(errors.UpstreamError) as info:
        make(session).completion(COMPLETION_BODY, call())
    assert info.value.message == "upstream answered 200 with a body that is not valid JSON"
    assert info.value.upstream_status == 200 and info.value.upstream_request_id == "up-bad"
    assert len(session.calls) == 1


def test_both_error_shapes_and_plain_text_are_read() -> None:
    gateway = client.parse_error(response(400, {"error": {"grpcCode": 3, "httpCode": 400, "message": "bad role"}},
                                          {"x-request-id": "up-1"}))
    assert (type(gateway), gateway.message, gateway.upstream_grpc_code, gateway.upstream_status,
            gateway.upstream_request_id) == (errors.BadRequestError, "bad role", 3, 400, "up-1")
    legacy = client.parse_error(response(403, {"error": {"code": "7", "message": "denied"}}))
    assert legacy.upstream_grpc_code == 7 and legacy.message == "denied"
    status = client.parse_error(response(429, {"code": 8, "message": "quota", "details": []}, {"Retry-After": "3"}))
    assert (status.upstream_grpc_code, status.message, status.retry_after) == (8, "quota", 3.0)
    text = client.parse_error(response(502, "  " + "x" * 400 + "  "))
    assert text.message == "x" * 300 and text.upstream_grpc_code is None
    plain = client.parse_error(response(404, {"error": "no such model"}))
    assert plain.message == "no such model" and plain.upstream_grpc_code is None
    empty = client.parse_error(response(500, {"error": {"grpcCode": "x"}}))
    assert empty.message == "upstream answered HTTP 500" and empty.upstream_grpc_code is None
    both = client.parse_error(response(400, {"error": {"grpcCode": 3, "message": "inner"}, "message": "outer", "code": 9}))
    assert (both.message, both.upstream_grpc_code) == ("inner", 3)  # the gateway shape wins when both are there
    blank = client.parse_error(response(429, {"code": 8, "message": ""}))
    assert blank.message == "upstream answered HTTP 429" and blank.upstream_grpc_code == 8
    nothing = client.parse_error(response(503, ""))
    assert nothing.message == "upstream answered HTTP 503" and nothing.retry_after is None


def test_upstream_error_text_is_redacted() -> None:
    logs.register_secret("registered-secret-value-42")
    echoed = client.parse_error(response(400, {"error": {"grpcCode": 3, "message": (
        "bad key AQVNechoed-key-0123456789abcdef, header Bearer t1.echoed-token-0123456789 "
        "and registered-secret-value-42")}}))
    assert "AQVNechoed" not in echoed.message and "t1.echoed" not in echoed.message
    assert "registered-secret-value-42" not in echoed.message
    assert echoed.message.startswith("bad key [REDACTED], header Bearer [REDACTED]")
    text = client.parse_error(response(502, "proxy saw Api-Key AQVNplain-text-key-0123456789abc"))
    assert "AQVNplain" not in text.message and "[REDACTED]" in text.message


@pytest.mark.parametrize("value,expected", [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)])
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert client._retry_after(value) == expected


def test_retry_after_as_an_http_date_is_read_against_the_clock(clock: ManualClock) -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    later = format_datetime(datetime.fromtimestamp(int(clock.now()) + 30, UTC), usegmt=True)
    assert client._retry_after(later) == pytest.approx(30 - (clock.now() - int(clock.now())), abs=1e-6)
    clock.advance(100)
    assert client._retry_after(later) == 0.0


def test_only_failures_before_sending_count_as_never_sent() -> None:
    assert client._never_sent(refused()) and client._never_sent(unresolvable())
    assert not client._never_sent(broken())
    assert not client._never_sent(requests.exceptions.ConnectionError("no cause at all"))
    try:  # a cause chain, not args, carries the reason
        try:
            raise NewConnectionError(None, "refused")
        except NewConnectionError as inner:
            raise requests.exceptions.ConnectionError("wrapped") from inner
    except requests.exceptions.ConnectionError as chained:
        assert client._never_sent(chained)
    try:  # raised while handling the refusal, without `from`: only __context__ links them
        try:
            raise NewConnectionError(None, "refused")
        except NewConnectionError:
            raise requests.exceptions.ConnectionError("while handling")  # noqa: B904 (implicit chaining is the point)
    except requests.exceptions.ConnectionError as implicit:
        assert implicit.__cause__ is None and isinstance(implicit.__context__, NewConnectionError)
        assert client._never_sent(implicit)
    looped_a, looped_b = requests.exceptions.ConnectionError("a"), OSError("b")
    looped_a.__cause__, looped_b.__cause__ = looped_b, looped_a
    assert not client._never_sent(looped_a)  # a cycle ends the walk


def test_the_session_pools_enough_connections_for_the_fan_out() -> None:
    session = client.new_session(16)
    for prefix in ("http://", "https://"):
        adapter = session.get_adapter(prefix + "fm.test")
        assert adapter._pool_connections == 4 and adapter._pool_maxsize == 16
    assert client.new_session(2).get_adapter("https://fm.test")._pool_maxsize == 4


def test_retries_and_calls_are_logged(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.random, "uniform", lambda low, high: 0.0)
    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    try:
        session = ScriptedSession(response(503, {"code": 14, "message": "busy " * 100}), OK, latency=(clock, 0.12344))
        make(session, retry_base_s=0.123456).completion(COMPLETION_BODY, call())
    finally:
        logs.configure(level="INFO", stream=__import__("sys").stdout)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    calls = [line for line in lines if line["msg"] == "upstream call"]
    assert [(c["status"], c["attempt"], c["method"], c["url"]) for c in calls] == [
        (503, 1, "POST", f"{BASE}/foundationModels/v1/completion"), (200, 2, "POST", f"{BASE}/foundationModels/v1/completion")]
    assert calls[1]["upstream_request_id"] == "up-ok" and calls[0]["upstream_request_id"] is None
    assert [c["latency_ms"] for c in calls] == [123.4, 123.4]  # each request took 0.12344 s on the clock
    (retry,) = [line for line in lines if line["msg"] == "retrying upstream call"]
    assert retry["attempt"] == 1 and retry["delay_s"] == 0.185 and retry["url"].endswith("/completion")  # 0.185184 s
    assert retry["reason"] == ("busy " * 100)[:200] and retry["level"] == "INFO"
