"""Envelopes: how the platform wraps a request, turned into one `HttpRequest` shape.

Known HTTP shapes (reference §2.1, §2.2):
- API Gateway payload format 0.1 and direct invocation: `url` is the real path (may carry the query
  string), `path` is the spec template, values in `pathParams`; on direct calls both are "".
- API Gateway payload format 1.0 (`"version": "1.0"`): `path` is real, `resource` the template,
  values in `pathParameters`.
Headers are matched case-insensitively; base64 bodies are decoded. Queue and timer events
(`messages[]`) are recognised here too, so handlers can add them without a new parser.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BadRequestError, PayloadTooLargeError


@dataclass
class HttpRequest:
    method: str
    path: str  # the real path, no query string ("" on a direct invocation)
    headers: dict[str, str]  # lower-case names
    query: dict[str, str]  # the last value of each parameter
    body: bytes
    request_id: str | None
    envelope: str  # "0.1", "1.0" or "direct"
    path_params: dict[str, str] = field(default_factory=dict)
    operation: str | None = None  # from the gateway integration's context, when the spec sets it
    authorizer: dict[str, Any] = field(default_factory=dict)  # what the API Gateway authorizer returned
    query_lists: dict[str, list[str]] = field(default_factory=dict)  # every value of each parameter, in order

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self, max_bytes: int) -> Any:
        """The body parsed as JSON; 413 past max_bytes, 400 when it is not JSON."""
        if len(self.body) > max_bytes:
            raise PayloadTooLargeError.field(
                "body", f"is {len(self.body)} bytes, more than the {max_bytes}-byte limit")
        if not self.body.strip():
            raise BadRequestError.field("body", "is empty; send a JSON object")
        try:
            return json.loads(self.body)
        except UnicodeDecodeError:
            raise BadRequestError.field("body", "is not UTF-8 text") from None
        except ValueError as err:
            reason = getattr(err, "msg", "syntax error")
            where = f" at line {err.lineno} column {err.colno}" if hasattr(err, "lineno") else ""
            raise BadRequestError.field("body", f"is not valid JSON ({reason}{where})") from None


@dataclass
class TriggerMessages:
    """A Message Queue or timer trigger event: the raw `messages` list and the event type."""

    kind: str  # "queue" or "timer"
    messages: list[dict[str, Any]]


def kind(event: Any) -> str:
    """'http', 'queue', 'timer' or 'unknown'."""
    if isinstance(event, dict):
        if "httpMethod" in event:
            return "http"
        messages = event.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            event_type = str((messages[0].get("event_metadata") or {}).get("event_type", ""))
            if event_type.endswith("messagequeue.QueueMessage"):
                return "queue"
            if event_type.endswith("TimerMessage"):
                return "timer"
    return "unknown"


def parse_http(event: dict[str, Any]) -> HttpRequest:
    """Any HTTP envelope -> HttpRequest. Raises BadRequestError for a body it cannot decode."""
    headers = _lower(event.get("headers"))
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if isinstance(values, list) and values and name.lower() not in headers:
            headers[name.lower()] = str(values[-1])
    context = event.get("requestContext") or {}
    request_id = context.get("requestId") if isinstance(context, dict) else None
    operation_context = (context.get("apiGateway") or {}).get("operationContext") if isinstance(context, dict) else None
    operation = operation_context.get("operation") if isinstance(operation_context, dict) else None
    if event.get("version") == "1.0":
        envelope, path, params = "1.0", event.get("path") or "", event.get("pathParameters") or {}
    else:
        envelope = "0.1" if event.get("url") else "direct"
        path, params = event.get("url") or "", event.get("pathParams") or {}
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    raw_query = ""
    if "?" in path:
        path, _, raw_query = path.partition("?")
        if not query:
            from urllib.parse import parse_qsl

            query = dict(parse_qsl(raw_query))
    return HttpRequest(
        method=str(event.get("httpMethod") or "GET").upper(),
        path=path,
        headers=headers,
        query=query,
        body=_body(event),
        request_id=str(request_id) if request_id else None,
        envelope=envelope,
        path_params={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
        operation=str(operation) if operation else None,
        authorizer=context.get("authorizer") or {} if isinstance(context, dict) else {},
        query_lists=_query_lists(event, raw_query, query),
    )


def _query_lists(event: dict[str, Any], raw_query: str, query: dict[str, str]) -> dict[str, list[str]]:
    """Every value of each query parameter (`a=1&a=2`, `a[]=1&a[]=2`): the envelope's
    multiValueQueryStringParameters, else the URL's query string, else the single values."""
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, dict) and multi:
        return {str(k): [str(v) for v in (values if isinstance(values, list) else [values])]
                for k, values in multi.items()}
    if raw_query:
        from urllib.parse import parse_qs

        return parse_qs(raw_query, keep_blank_values=True)
    return {k: [v] for k, v in query.items()}


def _lower(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _body(event: dict[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if isinstance(body, (dict, list)):  # some callers hand a parsed body
        return json.dumps(body).encode()
    text = str(body)
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError.field("body", "isBase64Encoded is true but the body is not valid base64") from None
    return text.encode("utf-8", errors="surrogatepass")
