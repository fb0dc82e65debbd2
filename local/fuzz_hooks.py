"""schemathesis hooks for `make fuzz`: keep schema-valid cases within the rules OpenAPI 3.0 cannot say.

The spec carries every rule JSON Schema can express. These few relate one field to another, or are
upstream's per model, so the spec says them in a `description` only; a positive (schema-valid) case
that breaks one would be refused with a 400 naming the rule and count as a false failure. Each is
repaired here, for positive cases only: negative cases go out as generated.

- fewShotTextClassification: each `samples[].label` is one of `labels`.
- completionBatch: `requests[].customId` is unique within the batch.
- completion: `toolChoice.functionName` names one of `tools`.
- /v1/chat/completions: `tool_choice` names only the request's tools. On a native model: the parameters only pass-through models take are at their
  defaults, the refused ones absent (messages' audio and function_call too), temperature at most 1.
- /v1/responses (and input_tokens): as for chat, plus no stored ids (previous_response_id, item_reference), tool
  outputs that answer an earlier call, background only with store and without stream.
- /v1/files: `expires_after[anchor]` and `expires_after[seconds]` come together.
- /v1/organization/usage/* and /costs: `end_time` is after `start_time`; no `page` (a cursor is only ever one
  an earlier answer gave, for a day within the query's range).
- textEmbedding (and /v1/embeddings' `dimensions`): `dim` is at most the model's output size (the emulator's model has 256).
- /admin/keys (POST, PATCH): `expires_at` is in the future.
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis

EMULATOR_DIM = 256


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "meta", None)
    if (meta is not None and meta.generation.mode.is_positive and case.operation.path == "/v1/files"
            and isinstance(case.body, dict)):
        anchor, seconds = "expires_after[anchor]", "expires_after[seconds]"
        if (anchor in case.body) != (seconds in case.body):  # the two come together
            case.body.setdefault(anchor, "created_at")
            case.body.setdefault(seconds, 3600)
        return case
    if (meta is not None and meta.generation.mode.is_positive and case.operation.path.startswith("/v1/organization/")
            and isinstance(case.query, dict)):
        _usage_query(case.query)
        return case
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    path, body = case.operation.path, case.body
    if path.startswith("/admin/keys") and isinstance(body.get("expires_at"), int) and body["expires_at"] <= time.time():
        body["expires_at"] = int(time.time()) + 86_400 + body["expires_at"] % 1000
        return case
    if path.endswith("/fewShotTextClassification") or path.endswith("/fewShotTextClassificationAsync"):
        labels = body.get("labels")
        if isinstance(labels, list) and labels and isinstance(body.get("samples"), list):
            for index, sample in enumerate(body["samples"]):
                if isinstance(sample, dict) and sample.get("label") not in labels:
                    sample["label"] = labels[index % len(labels)]
    elif path.endswith("/completionBatch") and isinstance(body.get("requests"), list):
        seen: set[str] = set()
        for index, item in enumerate(body["requests"]):
            if isinstance(item, dict) and isinstance(item.get("customId"), str):
                if item["customId"] in seen:
                    item["customId"] = _fresh(seen, index)
                seen.add(item["customId"])
    elif path.endswith("/textEmbedding") and body.get("dim") is not None:
        if _int(body["dim"]) > EMULATOR_DIM:
            body["dim"] = EMULATOR_DIM
    elif path in ("/foundationModels/v1/completion", "/foundationModels/v1/tokenizeCompletion",
                  "/foundationModels/v1/completionAsync") and isinstance(body.get("toolChoice"), dict):
        names = [t["function"]["name"] for t in body.get("tools") or [] if isinstance(t, dict)
                 and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)]
        if "functionName" in body["toolChoice"] and body["toolChoice"]["functionName"] not in names:
            body["toolChoice"] = {"functionName": names[0]} if names else {"mode": "AUTO"}
    elif path == "/v1/chat/completions" and not _passthrough(body.get("model")):
        from shared.openai.chat import DEFAULT_ONLY, REFUSED

        for name, default in DEFAULT_ONLY.items():
            if body.get(name) is not None:
                body[name] = default
        for name in REFUSED:
            body.pop(name, None)
        if isinstance(body.get("temperature"), (int, float)) and body["temperature"] > 1:
            body["temperature"] = 1
        _tool_choice_within_tools(body)
        if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
            body.pop("max_tokens")
        _native_messages(body.get("messages") or [])
    elif path in ("/v1/responses", "/v1/responses/input_tokens"):
        _responses_body(body)
    elif path == "/v1/embeddings" and body.get("dimensions") is not None:
        if _int(body["dimensions"]) > EMULATOR_DIM:
            body["dimensions"] = EMULATOR_DIM
    return case


def _native_messages(messages: list[Any]) -> None:
    """What the native translation needs of a conversation: text content only and not blank, tool results
    that answer an earlier tool call, unique call ids, arguments that are a JSON object as text."""
    ids: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        message.pop("audio", None)
        message.pop("function_call", None)
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if message.get("role") == "assistant" and message.get("tool_calls"):
            for number, call in enumerate(message["tool_calls"]):
                call["id"] = f"call_{index}_{number}"
                call["function"]["arguments"] = "{}"
                ids.append(call["id"])
            message["content"] = content if isinstance(content, str) else None
            continue
        if message.get("role") == "tool":
            if not ids:
                message.clear()
                message.update(role="user", content="ok")
                continue
            message["tool_call_id"] = ids[0]
        message["content"] = content if isinstance(content, str) and content.strip() else "ok"


def _tool_choice_within_tools(body: dict[str, Any]) -> None:
    """tool_choice may name (or, with 'required', need) only the request's own tools."""
    names = [t["function"]["name"] for t in body.get("tools") or [] if isinstance(t, dict)
             and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)]
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto"):
        return
    if not names:
        body["tool_choice"] = "auto"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        choice["function"]["name"] = names[0]
    elif isinstance(choice, dict):
        choice["allowed_tools"]["tools"] = [{"type": "function", "function": {"name": name}} for name in names]


def _passthrough(model: Any) -> bool:
    """Whether the chat route passes this model through (as shared.openai.chat.create decides, by name)."""
    from shared.config import Settings

    if not isinstance(model, str):
        return False
    parts = model.split("://", 1)[1].split("/") if "://" in model else ["", *model.split("/")]
    return len(parts) > 1 and parts[1] in Settings.from_env().passthrough_models


def _fresh(seen: set[str], index: int) -> str:
    candidate = f"request-{index}"
    while candidate in seen:
        candidate += "-"
    return candidate


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _responses_body(body: dict[str, Any]) -> None:
    """A Responses request within what the native translation takes: parameters at their no-op values, no
    references to stored items or responses (a fresh case has none), text-only messages that are not blank, tool
    results that answer an earlier call, and a tool choice that names an offered function."""
    from shared.openai.response_request import DEFAULT_ONLY, REFUSED

    for name, default in DEFAULT_ONLY.items():
        if body.get(name) is not None:
            body[name] = default
    for name in (*REFUSED, "previous_response_id"):
        body.pop(name, None)
    if isinstance(body.get("temperature"), (int, float)) and body["temperature"] > 1:
        body["temperature"] = 1
    if body.get("background"):
        body["store"] = True
        body.pop("stream", None)
    text = body.get("text")
    if isinstance(text, dict):
        if text.get("verbosity") is not None:
            text["verbosity"] = "medium"
        fmt = text.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and not fmt.get("name"):
            fmt["name"] = "answer"
    if isinstance(body.get("metadata"), dict):
        body["metadata"] = {str(k)[:64]: v[:512] if isinstance(v, str) else v
                            for k, v in list(body["metadata"].items())[:16]}
    body["input"] = _responses_input(body.get("input"))
    functions = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
            functions.append(tool["name"])
        elif isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            functions += [f"{tool.get('name')}__{t.get('name')}" for t in tool["tools"] if isinstance(t, dict)
                          and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto"):
        return
    plain = [name for name in functions if "__" not in name]
    if choice == "required" and not functions or isinstance(choice, dict) and not plain:
        body["tool_choice"] = "auto"
    elif isinstance(choice, dict) and choice.get("type") == "function":
        choice["name"] = plain[0]
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        choice["tools"] = [{"type": "function", "name": name} for name in plain]
    elif isinstance(choice, dict):
        body["tool_choice"] = "auto"


def _responses_input(items: Any) -> Any:
    if isinstance(items, str):
        return items if items.strip() else "ok"
    calls: list[str] = []
    out: list[Any] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else "item_reference")
        if kind == "item_reference":
            continue
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict)
                                  and p.get("type") in ("input_text", "output_text", "text"))
            item["content"] = content if isinstance(content, str) and content.strip() else "ok"
        elif kind == "function_call":
            item["call_id"] = f"call_{index}"
            item["arguments"] = "{}"
            item.pop("namespace", None)
            calls.append(item["call_id"])
        elif kind == "function_call_output":
            if not calls:
                continue
            item["call_id"] = calls[0]
            if not isinstance(item.get("output"), str):
                item["output"] = "ok"
        out.append(item)
    if not any(isinstance(i, dict) and i.get("type", "message") == "message" and i.get("role") != "system"
               and i.get("role") != "developer" or isinstance(i, dict) and i.get("type") in
               ("function_call", "function_call_output") for i in out):
        out.append({"role": "user", "content": "ok"})
    return out


def _usage_query(query: dict[str, Any]) -> None:
    query.pop("page", None)
    start, end = query.get("start_time"), query.get("end_time")
    if isinstance(start, str) and start.isdigit() and isinstance(end, str) and end.isdigit() and int(end) <= int(start):
        if int(start) >= 9_999_999_999:
            query["start_time"] = start = "0"
        query["end_time"] = str(int(start) + 1)
