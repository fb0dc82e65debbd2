"""Foundation Models REST client: one pooled requests.Session per instance, timeouts, retries, error mapping.

Retry rules (reference §6 and §10.9): only 429 and 503 answers, and connection failures that happened
before the request was sent, are retried, with jittered exponential backoff that honours Retry-After,
a capped number of attempts, and never past the invocation's deadline. A read timeout on a call that
is not idempotent (completion, classification: each call generates and is billed) is reported, never
retried. A 401 makes refreshable credentials refresh and the call go once more. Upstream answers
become our exception types here and nowhere else.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.config import Settings
from shared.ids import uuid4 as new_id

if TYPE_CHECKING:
    import requests

    from shared.auth import Credentials

log = logs.get_logger("client")

SAFETY_MARGIN_S = 0.5  # leave this much of the invocation for shaping the answer


@dataclass
class Call:
    """Per-invocation call settings: the deadline (on clock.monotonic) and our correlation id."""

    deadline: float
    client_request_id: str = field(default_factory=new_id)

    @classmethod
    def from_context(cls, context: Any, default_s: float = 300.0, client_request_id: str | None = None) -> Call:
        remaining = default_s
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if callable(getter):
            try:
                remaining = float(getter()) / 1000.0
            except (TypeError, ValueError):
                pass
        deadline = clock.monotonic() + max(remaining - SAFETY_MARGIN_S, 0.0)
        return cls(deadline=deadline, client_request_id=client_request_id or new_id())

    def remaining(self) -> float:
        return self.deadline - clock.monotonic()


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, how often and how long to wait."""

    max_attempts: int = 5
    base_s: float = 1.0
    max_delay_s: float = 10.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1-based): Retry-After if given, else backoff."""
        jitter = random.uniform(0, self.base_s)
        if retry_after is not None:
            return retry_after + jitter / 10
        return min(self.max_delay_s, self.base_s * 1.5**retry_number + jitter)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.max_retries + 1, base_s=settings.retry_base_s,
                   max_delay_s=settings.retry_max_s)


class Pacer:
    """Spaces calls evenly to stay under a per-second quota, shared by all threads of the instance.

    The promise is about the moments calls are let go (acquire() returning, the last moment this code
    decides before the request is sent): in any one-second window at most ⌊rate⌋ + 1 of them, and on
    average no more than the rate. Each call takes a slot (slots are 1/rate apart) and sleeps until it;
    when it wakes it goes only if the last `window_s` seconds hold fewer than ⌊rate⌋ + 1 calls let go.
    A thread that woke late (descheduled while it slept) and would make one too many does not go late:
    it takes a new slot, after the window has room, and waits again.

    `window_s` is one second plus `slack_s`, 0.9 × (⌊rate⌋ + 1 − rate) ÷ rate (45 ms at 20/s): short enough
    that calls on their slots never wait for it, and it carries the promise from the moments calls are
    let go to the moments their requests arrive, for every request that leaves within `slack_s` of
    being let go.
    """

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s
        self.per_second = math.floor(rate_per_s) + 1  # at most this many let go in any one second
        self.slack_s = 0.9 * (self.per_second - rate_per_s) / rate_per_s
        self.window_s = 1.0 + self.slack_s
        self._next = 0.0
        self._gone: deque[float] = deque(maxlen=self.per_second)  # when the last calls were let go
        self._lock = threading.Lock()

    def _full(self, now: float) -> bool:
        return len(self._gone) == self.per_second and self._gone[0] > now - self.window_s

    def _reserve(self, now: float, call: Call) -> float:
        slot = max(now, self._next)
        if self._full(now):
            slot = max(slot, self._gone[0] + self.window_s)
        if slot > call.deadline:
            raise errors.RateLimitedError("local quota pacing: no call slot before the deadline")
        self._next = slot + self.interval
        return slot

    def acquire(self, call: Call) -> None:
        with self._lock:
            slot = self._reserve(clock.monotonic(), call)
        while True:
            wait = slot - clock.monotonic()
            if wait > 0:
                clock.sleep(wait)
            with self._lock:
                now = clock.monotonic()
                if now < slot:  # woke early: sleep the rest
                    continue
                if not self._full(now):
                    self._gone.append(now)
                    return
                slot = self._reserve(now, call)  # missed its slot: a new one, instead of going late


@dataclass
class Answer:
    """A successful upstream answer: parsed JSON (or NDJSON lines) plus ids for the log."""

    body: Any
    status: int
    request_id: str | None
    attempts: int


class FoundationModelsClient:
    """Every Foundation Models REST method we use, over one keep-alive Session."""

    def __init__(self, settings: Settings, credentials: Credentials, session: requests.Session | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.session = session or new_session(settings.max_concurrency)
        self.retry = retry or RetryPolicy.from_settings(settings)

    # -- methods (paths from reference §1) --
    def completion(self, body: dict[str, Any], call: Call) -> Answer:
        stream = bool((body.get("completionOptions") or {}).get("stream"))
        return self.post("/foundationModels/v1/completion", body, call, idempotent=False, ndjson=stream)

    def completion_async(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/completionAsync", body, call, idempotent=False)

    def completion_batch(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/completionBatch", body, call, idempotent=False)

    def tokenize(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/tokenize", body, call, idempotent=True)

    def tokenize_completion(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/tokenizeCompletion", body, call, idempotent=True)

    def text_embedding(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/textEmbedding", body, call, idempotent=True)

    def few_shot_classification(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/fewShotTextClassification", body, call, idempotent=False)

    def text_classification(self, body: dict[str, Any], call: Call) -> Answer:
        return self.post("/foundationModels/v1/textClassification", body, call, idempotent=False)

    def chat_completions(self, body: dict[str, Any], call: Call, project: str | None) -> Answer:
        """Upstream's OpenAI-compatible chat (models it serves only there): the JSON answer, or with
        `stream` the event stream's data payloads (text, `[DONE]` included) in order."""
        headers = {"OpenAI-Project": project} if project else None
        return self.request("POST", f"{self.settings.base_url}/v1/chat/completions", body, call, idempotent=False,
                            sse=bool(body.get("stream")), headers=headers)

    def responses(self, method: str, path: str, body: dict[str, Any] | None, call: Call, project: str | None,
                  stream: bool = False) -> Answer:
        """Upstream's own Responses API (Settings.responses_endpoint) at `path` ("" to create, "/<id>",
        "/<id>/cancel", "/<id>/input_items?..."): the JSON answer, or with `stream` the events' data payloads."""
        headers = {"OpenAI-Project": project} if project else None
        return self.request(method, f"{self.settings.responses_endpoint}/responses{path}", body, call,
                            idempotent=method in ("GET", "DELETE"), sse=stream, headers=headers)

    def get_operation(self, operation_id: str, call: Call) -> Answer:
        return self.request("GET", f"{self.settings.operation_url}/operations/{operation_id}", None, call,
                            idempotent=True)

    def cancel_operation(self, operation_id: str, call: Call) -> Answer:
        return self.request("GET", f"{self.settings.operation_url}/operations/{operation_id}:cancel", None, call,
                            idempotent=True)

    def post(self, path: str, body: dict[str, Any], call: Call, *, idempotent: bool, ndjson: bool = False) -> Answer:
        return self.request("POST", f"{self.settings.base_url}{path}", body, call, idempotent=idempotent,
                            ndjson=ndjson)

    # -- the one request loop --
    def request(self, method: str, url: str, body: dict[str, Any] | None, call: Call, *, idempotent: bool,
                ndjson: bool = False, sse: bool = False, headers: dict[str, str] | None = None) -> Answer:
        import requests

        attempt = 0
        reauthenticated = False
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if body is not None else None
        while True:
            attempt += 1
            remaining = call.remaining()
            if remaining <= 0:
                raise errors.UpstreamTimeoutError("the invocation's deadline passed before upstream answered")
            self.credentials.ensure_fresh()
            sent = self._headers(call, data is not None)
            if headers:
                sent.update(headers)
            timeout = (min(self.settings.connect_timeout_s, remaining), min(self.settings.timeout_s, remaining))
            started = clock.monotonic()
            try:
                response = self.session.request(method, url, data=data, headers=sent, timeout=timeout)
            except requests.exceptions.ConnectTimeout:
                failure: errors.ApiError = errors.UpstreamUnavailableError("could not connect to upstream (timeout)")
            except requests.exceptions.ReadTimeout:
                if not idempotent:
                    raise errors.UpstreamTimeoutError(
                        f"upstream did not answer within {timeout[1]:.1f}s; not retried, because the call is not "
                        "idempotent and may already be generating") from None
                failure = errors.UpstreamTimeoutError(f"upstream did not answer within {timeout[1]:.1f}s")
            except requests.exceptions.ConnectionError as err:
                if _never_sent(err):
                    failure = errors.UpstreamUnavailableError("could not connect to upstream")
                elif not idempotent:
                    raise errors.UpstreamError(
                        "connection to upstream broke after the request was sent; not retried, because the call "
                        "is not idempotent") from None
                else:
                    failure = errors.UpstreamUnavailableError("connection to upstream broke")
            except requests.exceptions.RequestException as err:
                raise errors.UpstreamError(f"request to upstream failed: {type(err).__name__}") from None
            else:
                elapsed_ms = round((clock.monotonic() - started) * 1000, 1)
                upstream_id = response.headers.get("x-request-id")
                log.debug("upstream call", extra={"method": method, "url": url, "status": response.status_code,
                                                  "latency_ms": elapsed_ms, "attempt": attempt,
                                                  "upstream_request_id": upstream_id})
                if response.status_code == 200:
                    return Answer(_parse_body(response, ndjson, sse), 200, upstream_id, attempt)
                if response.status_code == 401 and self.credentials.refreshable and not reauthenticated:
                    reauthenticated = True
                    self.credentials.invalidate()
                    attempt -= 1
                    continue
                failure = parse_error(response)
                if response.status_code == 401:
                    failure.message = f"upstream rejected our credentials ({self.credentials.source}): {failure.message}"
                if response.status_code not in self.retry.statuses:
                    raise failure
            if attempt >= self.retry.max_attempts:
                raise failure
            delay = self.retry.delay(attempt, failure.retry_after)
            if clock.monotonic() + delay >= call.deadline:
                raise failure
            log.info("retrying upstream call", extra={"url": url, "attempt": attempt, "delay_s": round(delay, 3),
                                                      "reason": failure.message[:200]})
            clock.sleep(delay)

    def _headers(self, call: Call, has_body: bool) -> dict[str, str]:
        headers = self.credentials.header()
        headers["x-client-request-id"] = call.client_request_id
        headers["x-data-logging-enabled"] = "true" if self.settings.data_logging else "false"
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.credentials.sends_folder and self.settings.folder_id:
            headers["x-folder-id"] = self.settings.folder_id
        return headers


def new_session(pool_size: int) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _never_sent(err: Exception) -> bool:
    """True when the connection failed before any byte of the request left (refused, DNS, TLS setup)."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, NameResolutionError)):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _parse_body(response: requests.Response, ndjson: bool, sse: bool = False) -> Any:
    text = response.text
    if sse:
        return sse_data(text)
    try:
        if ndjson:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except ValueError:
        raise errors.UpstreamError("upstream answered 200 with a body that is not valid JSON",
                                   upstream_status=200,
                                   upstream_request_id=response.headers.get("x-request-id")) from None


def sse_data(text: str) -> list[str]:
    """The `data` payloads of a text/event-stream body, one per event (several data lines joined with
    newlines, one leading space dropped); comments and events without data are skipped."""
    events: list[str] = []
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") + [""]:
        if not line:
            if lines:
                events.append("\n".join(lines))
                lines = []
        elif line.startswith("data:"):
            lines.append(line[6:] if line.startswith("data: ") else line[5:])
    return events


def parse_error(response: requests.Response) -> errors.ApiError:
    """Both upstream error shapes -> a typed error carrying status, gRPC code, message and request id."""
    status = response.status_code
    grpc_code: int | None = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):  # {"error": {"grpcCode", "httpCode", "message", ...}}
            grpc_code = _int(inner.get("grpcCode", inner.get("code")))
            message = str(inner.get("message") or "")
        elif isinstance(inner, str):
            message = inner
        if not message and "message" in body:  # google.rpc.Status {"code", "message", "details"}
            message = str(body.get("message") or "")
            grpc_code = _int(body.get("code"))
    elif response.text:
        message = response.text.strip()[:300]
    retry_after = _retry_after(response.headers.get("Retry-After"))
    return errors.from_upstream(status, grpc_code, logs.redact(message), response.headers.get("x-request-id"),
                                retry_after)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - clock.now(), 0.0)
        except (TypeError, ValueError):
            return None
