"""The native completion's answer as OpenAI's: a `chat.completion`, or the `chat.completion.chunk` events
of a stream. Plain data in and out.

Native stream chunks are cumulative (each carries the whole text so far); OpenAI's are deltas. So the
events are: the role once, then only the new suffix of each chunk's text, tool calls (each with its
`index`) when the answer has them, one chunk with the finish reason, the usage chunk (`choices: []`)
when asked for, and `[DONE]`. A function cannot stream, so the caller gets all of them in one body.
An upstream error before any content is an ordinary HTTP error; after content, an error event ends
the stream, as OpenAI's clients expect (they raise on it).
"""

from __future__ import annotations

import json
import os
from typing import Any

from shared import errors, logs

FINISH_REASONS = {
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
}


def chat_completion(result: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """A native `result` (alternatives, usage, modelVersion) -> a `chat.completion` object.
    `head` holds the id, created and model every answer of this request shares."""
    alternative = _alternative(result)
    text, tool_calls = _message(alternative)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None,
                               "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    completion = {**head, "object": "chat.completion",
                  "choices": [{"index": 0, "message": message, "logprobs": None,
                               "finish_reason": finish_reason(alternative, tool_calls)}],
                  "usage": usage(result)}
    if result.get("modelVersion"):
        completion["system_fingerprint"] = str(result["modelVersion"])
    return completion


def chunk_events(lines: Any, head: dict[str, Any], include_usage: bool) -> tuple[list[Any], dict[str, Any]]:
    """Native cumulative NDJSON chunks -> the SSE events of a `chat.completion.chunk` stream, and the last
    native result (for the usage line of our log)."""
    if not isinstance(lines, list):
        raise errors.UpstreamError("upstream stream is not a list of chunks")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        event = {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            event["usage"] = None
        return event

    events: list[Any] = []
    sent = ""  # the text the client has been sent so far
    last: dict[str, Any] | None = None
    for line in lines:
        result = line.get("result") if isinstance(line, dict) else None
        if not isinstance(result, dict):
            failure = native_error(line)
            if last is None:
                raise failure
            events.append(failure.to_openai_body())
            return events, last
        if last is None:
            events.append(chunk({"role": "assistant", "content": ""}))
        last = result
        text = _text(_alternative(result))
        if len(text) > len(sent) and text.startswith(sent):
            events.append(chunk({"content": text[len(sent):]}))
            sent = text
    if last is None:
        raise errors.UpstreamError("upstream stream ended without a result")
    alternative = _alternative(last)
    _, tool_calls = _message(alternative)
    if tool_calls:
        events.append(chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)]}))
    events.append(chunk({}, finish_reason(alternative, tool_calls)))
    if include_usage:
        events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage(last)})
    events.append("[DONE]")
    return events, last


def finish_reason(alternative: dict[str, Any], tool_calls: list[dict[str, Any]]) -> str:
    if tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(str(alternative.get("status")), "stop")


def usage(result: dict[str, Any]) -> dict[str, Any]:
    """Native usage (int64 as strings) -> OpenAI's (integers; reasoning tokens in completion_tokens_details)."""
    native = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    prompt, completion = _int(native.get("inputTextTokens")), _int(native.get("completionTokens"))
    total = _int(native.get("totalTokens")) or prompt + completion
    details = native.get("completionTokensDetails") if isinstance(native.get("completionTokensDetails"), dict) else {}
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
            "completion_tokens_details": {"reasoning_tokens": _int(details.get("reasoningTokens"))}}


def native_error(line: Any) -> errors.ApiError:
    """An `{"error": {...}}` line of a native stream (or anything that is not a result) as our error."""
    inner = line.get("error") if isinstance(line, dict) else None
    if not isinstance(inner, dict):
        return errors.UpstreamError("upstream stream sent a line that is neither a result nor an error")
    grpc = _int(inner.get("grpcCode", inner.get("code")))
    status = _int(inner.get("httpCode")) or errors.GRPC_TO_HTTP.get(grpc, 502)
    message = logs.redact(str(inner.get("message") or f"upstream stream failed (gRPC code {grpc})"))
    return errors.from_upstream(status, grpc, message, None)


def _alternative(result: dict[str, Any]) -> dict[str, Any]:
    alternatives = result.get("alternatives")
    if not isinstance(alternatives, list) or not alternatives or not isinstance(alternatives[0], dict):
        raise errors.UpstreamError("upstream completion answer has no alternatives")
    return alternatives[0]


def _text(alternative: dict[str, Any]) -> str:
    message = alternative.get("message")
    text = message.get("text") if isinstance(message, dict) else None
    return text if isinstance(text, str) else ""


def _message(alternative: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(text, tool_calls) of an alternative; each tool call gets a new unique id."""
    message = alternative.get("message") if isinstance(alternative.get("message"), dict) else {}
    text = _text(alternative)
    call_list = message.get("toolCallList")
    calls = call_list.get("toolCalls") if isinstance(call_list, dict) else None
    tool_calls = []
    for call in calls or []:
        function = call.get("functionCall") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise errors.UpstreamError("upstream tool call has no functionCall name")
        arguments = function.get("arguments")
        tool_calls.append({"id": "call_" + os.urandom(12).hex(), "type": "function",
                           "function": {"name": function["name"],
                                        "arguments": json.dumps(arguments if arguments is not None else {},
                                                                ensure_ascii=False, separators=(",", ":"))}})
    return text, tool_calls


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
