"""Shaping answers into the `{statusCode, headers, body, isBase64Encoded}` the platform expects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ApiError


@dataclass
class Reply:
    """What an operation returns: a JSON body, NDJSON lines for a buffered stream, (`sse`) the events of a
    buffered text/event-stream (each item a JSON value, or a str sent as it is: `[DONE]`), or bytes (sent
    as they are)."""

    body: Any
    status: int = 200
    ndjson: bool = False
    sse: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def http(reply: Reply, ids: dict[str, str]) -> dict[str, Any]:
    if isinstance(reply.body, bytes):  # bytes as they are (a file's content), base64 in the envelope
        import base64

        headers = {"Content-Type": "application/octet-stream", **ids, **reply.headers}
        return {"statusCode": reply.status, "headers": headers, "body": base64.b64encode(reply.body).decode("ascii"),
                "isBase64Encoded": True}
    if reply.sse:
        # a str item with newlines (an upstream event of several data lines) stays one event
        text = "".join("data: " + (item.replace("\n", "\ndata: ") if isinstance(item, str) else dumps(item)) + "\n\n"
                       for item in reply.body)
        content_type = "text/event-stream; charset=utf-8"
    elif reply.ndjson:
        text = "".join(dumps(line) + "\n" for line in reply.body)
        content_type = "application/x-ndjson"
    else:
        text = dumps(reply.body)
        content_type = "application/json"
    headers = {"Content-Type": content_type, **ids, **reply.headers}
    return {"statusCode": reply.status, "headers": headers, "body": text, "isBase64Encoded": False}


def error(err: ApiError, ids: dict[str, str], dialect: str = "native") -> dict[str, Any]:
    """An error in the dialect's shape: native (the upstream gateway's) or OpenAI's."""
    headers = dict(ids)
    if err.retry_after is not None and err.status in (429, 503):
        headers["Retry-After"] = str(max(int(err.retry_after + 0.999), 1))
    headers.update(getattr(err, "headers", None) or {})  # e.g. a key's x-ratelimit-* (shared/jobs/limits.py)
    if getattr(err, "allow", ()):
        headers["Allow"] = ", ".join(err.allow)  # type: ignore[attr-defined]
    if dialect == "openai":
        if not err.retryable and err.status in (502, 504):
            # the openai client retries every 5xx; upstream may already be generating (and billing) this one
            headers["x-should-retry"] = "false"
        body = err.to_openai_body()
    else:
        body = err.to_body(ids.get("x-request-id"))
    return http(Reply(body, status=err.status, headers=headers), {})
