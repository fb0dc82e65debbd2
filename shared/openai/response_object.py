"""The native completion's answer as a Responses API `response`: its output items, usage and status, and the
typed events of a stream. Plain data in and out; ids are derived from the response id, so building the same
answer twice (a stream and its final object, two readers settling one background run) gives the same items.

Output item ids: `msg_<r>_<n>` for a message, `fc_<r>_<n>` for a function call (its call id `call_<r>_<n>`),
where <r> is the response id without `resp_` and <n> the item's place among the response's stored items
(its input items first, then its output): an `item_reference` names the response it comes from.

Statuses: a final answer -> completed (tool calls too); a token cut -> incomplete (max_output_tokens); a
content filter -> incomplete (content_filter); a failure -> failed with `error`.
"""

from __future__ import annotations

import json
from typing import Any

from shared import errors
from shared.openai import chat_response

PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def item_id(kind: str, response_id: str, number: int) -> str:
    return f"{PREFIXES.get(kind, 'item')}_{response_id.removeprefix('resp_')}_{number}"


def response_of(item: str) -> str | None:
    """The response an item id of ours belongs to, or None for an id we did not mint."""
    prefix, _, rest = item.partition("_")
    middle, _, number = rest.rpartition("_")
    if prefix not in PREFIXES.values() or not middle or not number.isdigit():
        return None
    return "resp_" + middle


def output_items(result: dict[str, Any], response_id: str, first: int,
                 namespaces: dict[str, tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """A native result -> the response's output items (a message, or one function_call per tool call);
    `namespaces`: the offered <namespace>__<name> functions, so their calls come back with `namespace`."""
    alternative = chat_response._alternative(result)
    text, calls = _text_and_calls(alternative, namespaces or {})
    items: list[dict[str, Any]] = []
    if text or not calls:
        items.append(message_item(item_id("message", response_id, first), text))
    for call in calls:
        number = first + len(items)
        item = {"id": item_id("function_call", response_id, number), "type": "function_call", "status": "completed",
                "arguments": call["arguments"], "call_id": f"call_{response_id.removeprefix('resp_')}_{number}",
                "name": call["name"]}
        if call.get("namespace"):
            item["namespace"] = call["namespace"]
        items.append(item)
    return items


def message_item(item: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


NAMESPACE_SEPARATOR = "__"  # a namespaced function reaches the model as <namespace>__<name>


def namespaced(tools: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The native names of the functions offered inside namespace groups (as echoed in `tools`)."""
    return {f"{tool['name']}{NAMESPACE_SEPARATOR}{inner['name']}": (tool["name"], inner["name"])
            for tool in tools if tool.get("type") == "namespace" for inner in tool.get("tools") or []}


def _text_and_calls(alternative: dict[str, Any],
                    namespaces: dict[str, tuple[str, str]]) -> tuple[str, list[dict[str, Any]]]:
    message = alternative.get("message") if isinstance(alternative.get("message"), dict) else {}
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    call_list = message.get("toolCallList")
    calls = []
    for call in (call_list.get("toolCalls") if isinstance(call_list, dict) else None) or []:
        function = call.get("functionCall") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise errors.UpstreamError("upstream tool call has no functionCall name")
        arguments = function.get("arguments")
        namespace, name = namespaces.get(function["name"], (None, function["name"]))
        calls.append({"name": name, "namespace": namespace,
                      "arguments": json.dumps(arguments if arguments is not None else {}, ensure_ascii=False,
                                              separators=(",", ":"))})
    return text, calls


def usage(result: dict[str, Any]) -> dict[str, Any]:
    """Native usage -> the Responses usage object (every field, as strict clients require)."""
    chat = chat_response.usage(result)
    return {"input_tokens": chat["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": chat["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": chat["completion_tokens_details"]["reasoning_tokens"]},
            "total_tokens": chat["total_tokens"]}


def log_fields(usage: Any) -> dict[str, Any]:
    """A Responses usage object as the request's log fields (the summary line and the usage ledger's hook read
    them); nothing when there is none."""
    if not isinstance(usage, dict):
        return {}
    details = usage.get("output_tokens_details")
    return {"input_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "reasoning_tokens": details.get("reasoning_tokens") if isinstance(details, dict) else None}


def status(result: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(status, incomplete_details) of a native result."""
    alternative = chat_response._alternative(result)
    reason = {"ALTERNATIVE_STATUS_TRUNCATED_FINAL": "max_output_tokens",
              "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter"}.get(str(alternative.get("status")))
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def finished(skeleton: dict[str, Any], result: dict[str, Any], first: int, completed_at: int) -> dict[str, Any]:
    """The skeleton (settings echoed, status queued / in_progress) with a native result's answer."""
    state, incomplete = status(result)
    return {**skeleton, "status": state, "incomplete_details": incomplete, "error": None,
            "output": output_items(result, skeleton["id"], first, namespaced(skeleton.get("tools") or [])),
            "usage": usage(result),
            "completed_at": completed_at if state == "completed" else None}


def failed(skeleton: dict[str, Any], code: str, message: str, state: str = "failed") -> dict[str, Any]:
    """The skeleton as a failed (or cancelled, with state "cancelled" and no error) response."""
    return {**skeleton, "status": state, "error": {"code": code, "message": message} if state == "failed" else None,
            "output": [], "usage": None, "completed_at": None}


ERROR_CODES = {429: "rate_limit_exceeded", 400: "invalid_prompt"}  # ResponseErrorCode; anything else server_error


def error_code(err: errors.ApiError) -> str:
    return ERROR_CODES.get(err.status, "server_error")


# -- the stream: typed events, in OpenAI's order --------------------------------------------------------

def stream_events(chunks: Any, skeleton: dict[str, Any], first: int, completed_at: int) -> tuple[list[Any], dict[str, Any] | None]:
    """Native cumulative NDJSON chunks -> the events of a Responses stream, and the last native result (None
    when the stream failed midway: its events then end in `error` and `response.failed`). An upstream error
    before any content is raised, so the caller gets an ordinary HTTP error."""
    if not isinstance(chunks, list):
        raise errors.UpstreamError("upstream stream is not a list of chunks")
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    running = {**skeleton, "status": "in_progress"}
    text_id = item_id("message", skeleton["id"], first)
    sent = ""
    last: dict[str, Any] | None = None
    for line in chunks:
        result = line.get("result") if isinstance(line, dict) else None
        if not isinstance(result, dict):
            failure = chat_response.native_error(line)
            if last is None:
                raise failure
            return _failed_stream(events, emit, running, failure, text_id, sent), None
        if last is None:
            emit("response.created", response=running)
            emit("response.in_progress", response=running)
        last = result
        text, _ = _text_and_calls(chat_response._alternative(result), {})
        if text and not sent:
            _open_message(emit, text_id)
        if len(text) > len(sent) and text.startswith(sent):
            emit("response.output_text.delta", item_id=text_id, output_index=0, content_index=0,
                 delta=text[len(sent):], logprobs=[])
            sent = text
    if last is None:
        raise errors.UpstreamError("upstream stream ended without a result")
    final = finished(skeleton, last, first, completed_at)
    for index, item in enumerate(final["output"]):
        if item["type"] == "message":
            if not sent:
                _open_message(emit, text_id)
            text = item["content"][0]["text"]
            emit("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text,
                 logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                 part=item["content"][0])
        else:
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "arguments": ""})
            emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                 delta=item["arguments"])
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                 name=item["name"], arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed" if final["status"] == "completed" else "response.incomplete", response=final)
    return events, last


def _open_message(emit: Any, text_id: str) -> None:
    emit("response.output_item.added", output_index=0, item={**message_item(text_id, ""), "status": "in_progress",
                                                               "content": []})
    emit("response.content_part.added", item_id=text_id, output_index=0, content_index=0,
         part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})


def _failed_stream(events: list[dict[str, Any]], emit: Any, running: dict[str, Any], failure: errors.ApiError,
                   text_id: str, sent: str) -> list[dict[str, Any]]:
    """An error after content: the `error` event in both shapes clients read (flat, as the spec and the AI SDK
    have it; nested, which openai-python raises on), then `response.failed` with what was said so far."""
    code = error_code(failure)
    body = failure.to_openai_body()["error"]
    emit("error", code=code, message=failure.message, param=None,
         error={"type": body["type"], "code": code, "message": failure.message, "param": None})
    partial = [message_item(text_id, sent, "incomplete")] if sent else []
    emit("response.failed", response={**running, "status": "failed", "output": partial,
                                      "error": {"code": code, "message": failure.message}, "usage": None})
    return events
