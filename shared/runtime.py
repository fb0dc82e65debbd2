"""The one wrapper every handler goes through: envelope -> route -> validated body -> operation -> answer.

It binds the request id and function name to every log line, renders our errors in the upstream
shape, turns anything unknown into a generic 500 (traceback only in the log), and writes one summary
line per request. Queue and timer events are dispatched by event kind, so a handler gains them by
passing more operations, not by being rewritten.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shared import clock, errors, events, logs, responses, routes
from shared.client import Call, FoundationModelsClient
from shared.config import Settings, settings
from shared.ids import uuid4 as new_id
from shared.policy import KeyPolicy

log = logs.get_logger("runtime")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass
class Invocation:
    """What an operation needs besides its body: settings, deadline, ids, and (lazily) the client."""

    settings: Settings
    call: Call
    context: Any = None
    log_fields: dict[str, Any] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    caller: str = "anonymous"  # who asked, from the API Gateway authorizer's context when there is one
    request: events.HttpRequest | None = None  # the HTTP request itself: query, headers, a body that is not JSON
    policy: KeyPolicy | None = None  # the caller key's models and limits (a key stored as data); None: none
    reservation: Any = None  # the request's budget / rate reservation (shared/jobs/limits.py), when it has one

    @property
    def client(self) -> FoundationModelsClient:
        return get_client(self.settings, self.context)

    @property
    def limited(self) -> bool:
        return self.policy is not None and self.policy.limited

    def admit(self, body: dict[str, Any], kind: str, model: str) -> dict[str, Any]:
        """Before a synchronous upstream call: reserve its worst case against the key's budgets and per-minute
        limits (429 when they cannot cover it); the body to send (its output bounded). A key without limits:
        the body as it is, nothing imported, no store round trip. `kind`: completion (a native body), chat or
        responses (an OpenAI body passed through), embedding ({"texts": [...]}), classification."""
        if not self.limited:
            return body
        return importlib.import_module(LIMITS_HOOK).admit(self, body, kind, model)

    def admit_job(self, kind: str, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Before a job is submitted: its worst case reserved (settled by its worker or poller); the payloads."""
        if not self.limited:
            return payloads
        return importlib.import_module(LIMITS_HOOK).admit_job(self, kind, payloads)


Operation = Callable[[Any, Invocation], responses.Reply]
# An operation may also be named "module:function" and imported on first use, so a cold start for a
# synchronous request does not pay for the async and batch modules.
OperationRef = Operation | str


def resolve_operation(ref: OperationRef) -> Operation:
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)

# The usage ledger's hook for synchronous routes (named, so the core imports no surface and a request that
# bills nothing imports nothing heavy): it reads what the operation put in Invocation.log_fields.
USAGE_HOOK = "shared.jobs.usage:record_request"
# Budgets and per-key limits (admit before upstream; the settle rides on the ledger's transaction), imported only
# for a key whose policy sets a limit.
LIMITS_HOOK = "shared.jobs.limits"

_client_lock = threading.Lock()
_client: FoundationModelsClient | None = None


def get_client(config: Settings, context: Any = None) -> FoundationModelsClient:
    """The instance's client, built on first use; credentials come from the chain (cached there)."""
    from shared.auth import default_credentials

    global _client
    credentials = default_credentials(config, context)
    client = _client
    if client is None or client.settings is not config or client.credentials is not credentials:
        with _client_lock:
            if _client is None or _client.settings is not config or _client.credentials is not credentials:
                _client = FoundationModelsClient(config, credentials)
            client = _client
    return client


def reset_client() -> None:
    global _client
    with _client_lock:
        _client = None


def serve(function: str, operations: Mapping[str, OperationRef], event: Any, context: Any,
          jobs: tuple[str, OperationRef] | None = None, timer: OperationRef | None = None) -> dict[str, Any]:
    """Handle one invocation of `function`: an HTTP request; (when `jobs` = (job kind, worker) is given)
    a Message Queue trigger batch of that kind's jobs for worker(kind, messages, invocation, worker_id);
    or (when `timer` is given) a timer trigger's tick, timer(invocation, worker_id)."""
    if jobs and events.kind(event) == "queue":
        return consume(function, jobs[0], resolve_operation(jobs[1]), event, context)
    if timer is not None and events.kind(event) == "timer":
        return tick(function, resolve_operation(timer), context)
    started = clock.monotonic()
    request_id = str(getattr(context, "request_id", "") or "") or None
    token = logs.bind(function=function, request_id=request_id)
    ids: dict[str, str] = {}
    route_name = None
    dialect = "native"
    status = 500
    invocation: Invocation | None = None
    try:
        config = settings()
        logs.configure(config.log_level)
        kind = events.kind(event)
        if kind != "http":
            raise errors.BadRequestError.field("event", f"a {kind} event is not handled by the {function} function")
        request = events.parse_http(event)
        dialect = routes.dialect_of(request.path)
        request_id = request_id or request.request_id or new_id()
        client_request_id = request.header("x-client-request-id")
        if not client_request_id or not _CLIENT_REQUEST_ID.match(client_request_id):
            client_request_id = new_id()
        ids = {"x-request-id": request_id, "x-client-request-id": client_request_id}
        logs.bind(request_id=request_id, client_request_id=client_request_id)
        route, params = _route(function, request, operations)
        route_name, dialect = route.operation, route.dialect
        caller = _caller(request.authorizer, config.auth_mode)
        if route.admin and (not config.admin_caller or caller != config.admin_caller):
            raise errors.NotFoundError(f"no route for {request.path}")  # as for a path that does not exist
        body = request.json(config.max_body_bytes) if route.request else None
        parsed = _validate(route, body) if route.request else None
        invocation = Invocation(config, Call.from_context(context, client_request_id=client_request_id), context,
                                path_params=params, caller=caller, request=request,
                                policy=_policy(request.authorizer, caller, config.auth_mode))
        reply = resolve_operation(operations[route.operation])(parsed, invocation)
        status = reply.status
        resolve_operation(USAGE_HOOK)(route.operation, invocation, request_id)  # logs its failures, never raises
        _finish_limits(invocation)
        _summary(route_name, status, started, invocation.log_fields)
        return responses.http(reply, {**ids, **_limit_headers(invocation)})
    except errors.ApiError as err:
        _finish_limits(invocation)
        ids = {**ids, **_limit_headers(invocation)}
        status = err.status
        level = log.warning if status >= 500 else log.info
        level("request failed", extra={"operation": route_name, "status": status, "error": err.message,
                                       "grpc_code": err.grpc_code, "upstream_status": err.upstream_status,
                                       "upstream_request_id": err.upstream_request_id,
                                       "latency_ms": _ms(started)})
        return responses.error(err, ids, dialect)
    except Exception:
        _finish_limits(invocation)
        log.exception("unhandled error", extra={"operation": route_name, "latency_ms": _ms(started)})
        return responses.error(errors.ApiError("internal error; see the function log for this request id"), ids, dialect)
    finally:
        logs.unbind(token)


@contextmanager
def _trigger_invocation(function: str, trigger: str, context: Any, default_s: float) -> Iterator[tuple[Invocation, str]]:
    """What every trigger invocation starts with: the request id bound to the logs, settings, the deadline."""
    request_id = str(getattr(context, "request_id", "") or "") or new_id()
    token = logs.bind(function=function, request_id=request_id, trigger=trigger)
    try:
        config = settings()
        logs.configure(config.log_level)
        yield Invocation(config, Call.from_context(context, default_s=default_s), context), request_id
    finally:
        logs.unbind(token)


def consume(function: str, kind: str, worker: Callable[..., dict[str, Any]], event: dict[str, Any],
            context: Any) -> dict[str, Any]:
    """A Message Queue trigger batch. Raising is how a trigger invocation fails, so the platform
    redelivers the batch; anything returned means every message is consumed."""
    started = clock.monotonic()
    with _trigger_invocation(function, "message-queue", context, 600.0) as (invocation, request_id):
        try:
            result = worker(kind, event["messages"], invocation, request_id)
        except Exception as err:
            log.warning("batch failed; the trigger will redeliver it",
                        extra={"error": str(err)[:500], "latency_ms": _ms(started), **invocation.log_fields})
            raise
        _summary("consume", 200, started, invocation.log_fields)
        return result


def tick(function: str, work: Callable[[Invocation, str], dict[str, Any]], context: Any) -> dict[str, Any]:
    """A timer trigger's invocation: run `work` within the invocation's remaining time."""
    started = clock.monotonic()
    with _trigger_invocation(function, "timer", context, 60.0) as (invocation, request_id):
        result = work(invocation, request_id)
        _summary("tick", 200, started, invocation.log_fields)
        return result


def _validate(route: routes.Route, body: Any) -> Any:
    """The body checked against the route's request model, in the route's dialect (400 naming the field)."""
    return importlib.import_module(routes.MODEL_MODULES[route.dialect]).validate(routes.model(route), body)


def _caller(authorizer: dict[str, Any], auth_mode: str = "api_key") -> str:
    """Who asked: the key name our API Gateway authorizer put in its context (functions/authorizer),
    else "anonymous".

    In auth_mode = api_key only the gateway's service account may invoke the functions, so that context
    is the gateway's word. In auth_mode = iam there is no authorizer, and the platform gives the function
    nothing that names the invoking subject: it strips the Authorization header, and requestContext.identity
    holds only sourceIp and userAgent (reference §2.1). So direct IAM invokers are all "anonymous" and
    share their operations; and since a direct invoker can send any event with ?integration=raw, no other
    field (a header, a claimed subject) is taken as an identity. For the same reason, with FM_AUTH_MODE=iam
    (Terraform sets it) even `authorizer.caller` is ignored: a direct invoker could write it, and claim
    FM_ADMIN_CALLER with it."""
    if auth_mode == "iam":
        return "anonymous"
    caller = authorizer.get("caller")
    return caller if isinstance(caller, str) and caller else "anonymous"


def _policy(authorizer: dict[str, Any], caller: str, auth_mode: str) -> KeyPolicy | None:
    """The caller key's policy from the authorizer's context (never in auth_mode iam, as for the caller)."""
    return None if auth_mode == "iam" else KeyPolicy.from_context(authorizer, caller)


def _route(function: str, request: events.HttpRequest, operations: Mapping[str, OperationRef]) -> tuple[routes.Route, dict[str, str]]:
    """The gateway's operation context wins, then the path; a direct call gets the function's first route."""
    own = routes.for_function(function)
    # a direct (IAM) invocation has no path: it names its operation as ?operation=...
    operation = request.operation or (request.query.get("operation") if not request.path else None)
    if operation:
        for route in own:
            if route.operation == operation:
                params = request.path_params or {k: v for k, v in request.query.items() if k != "operation"}
                return route, params
        raise errors.NotFoundError(f"the {function} function has no operation {operation!r}")
    if not request.path:
        return own[0], {}
    route, params = routes.resolve(request.method, request.path)
    if route.function != function or route.operation not in operations:
        raise errors.NotFoundError(f"{request.path} is served by the {route.function} function, not {function}")
    return route, params


def _finish_limits(invocation: Invocation | None) -> None:
    """A reservation the ledger did not settle (no usage, a failure) is settled alone or released; never raises."""
    if invocation is not None and invocation.reservation is not None:
        importlib.import_module(LIMITS_HOOK).finish_request(invocation)


def _limit_headers(invocation: Invocation | None) -> dict[str, str]:
    """The key's x-ratelimit-* headers, on every answer to a request that was admitted."""
    reservation = invocation.reservation if invocation is not None else None
    return dict(reservation.headers) if reservation is not None else {}


def _ms(started: float) -> float:
    return round((clock.monotonic() - started) * 1000, 2)


def _summary(operation: str, status: int, started: float, fields: dict[str, Any]) -> None:
    log.info("request handled", extra={"operation": operation, "status": status, "latency_ms": _ms(started), **fields})
