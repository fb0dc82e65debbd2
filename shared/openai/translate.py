"""The one translation core of the OpenAI dialect: a conversation, its tools and its options -> the native
completion body. Chat Completions (chat.py) and Responses (responses_api.py) each read their own wire
shape into the plain form here (Turn, a tool choice, option values, each with the wire's name for
errors), and this module builds the native body from it, so both dialects refuse the same things the
same way and a fix here fixes both.

The native conversation: system / user / assistant `text` messages; an assistant's tool calls as one
`toolCallList` message (native calls have no ids: a call's id lives only on our side, to name its
result); consecutive tool results as one `toolResultList` message (role user, as the official SDK sends
them), each result named by the function of the earlier call whose id it answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared import errors

REASONING = {"none": "DISABLED"}  # every other effort: ENABLED_HIDDEN (the native side has on or off)
TOOL_CHOICE_MODES = {"none": "NONE", "auto": "AUTO", "required": "REQUIRED"}


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text
    where: str  # the wire's name of its arguments, for errors
    id_where: str  # the wire's name of its id, for errors


@dataclass
class Turn:
    """One step of the conversation, in the dialect-neutral form. `where` is the wire's name for it."""

    role: str  # "system", "user", "assistant" or "tool"
    text: str = ""
    where: str = ""
    calls: list[ToolCall] = field(default_factory=list)  # an assistant's tool calls
    call_id: str = ""  # a tool result: the id of the call it answers
    call_id_where: str = ""  # the wire's name of that id, for errors


@dataclass
class ToolChoice:
    """A tool choice in neutral form: a mode (none/auto/required), one function, or an allowed subset."""

    mode: str | None = None
    function: str | None = None
    allowed: list[str] | None = None
    where: str = "tool_choice"  # the wire's name of the function name, or of the allowed list


def native_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    """Turns -> native messages; a 400 naming the wire's field for an unanswerable result or a repeated id."""
    names: dict[str, str] = {}  # call id -> function name, from the assistant turns so far
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the toolResultList the current run of results fills
    for turn in turns:
        if turn.role == "tool":
            name = names.get(turn.call_id)
            if name is None:
                raise errors.BadRequestError.field(
                    turn.call_id_where, f"{turn.call_id!r} matches no tool call earlier in the conversation")
            if results is None:
                results = []
                out.append({"role": "user", "toolResultList": {"toolResults": results}})
            results.append({"functionResult": {"name": name, "content": turn.text}})
            continue
        results = None
        if turn.role == "assistant" and turn.calls:
            if turn.text.strip():
                out.append({"role": "assistant", "text": turn.text})
            calls = []
            for call in turn.calls:
                if call.id in names:
                    raise errors.BadRequestError.field(call.id_where, f"{call.id!r} repeats an earlier tool call id")
                names[call.id] = call.name
                calls.append({"functionCall": {"name": call.name, "arguments": arguments(call.arguments, call.where)}})
            out.append({"role": "assistant", "toolCallList": {"toolCalls": calls}})
            continue
        if not turn.text.strip():
            raise errors.BadRequestError.field(turn.where, "must not be empty")
        out.append({"role": turn.role, "text": turn.text})
    return out


def arguments(text: str, where: str) -> dict[str, Any]:
    """A call's arguments (a JSON object, as text) as the native object; a 400 naming `where` otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise errors.BadRequestError.field(where, "must be a JSON object, as text") from None
    if not isinstance(value, dict):
        raise errors.BadRequestError.field(where, "must be a JSON object, as text")
    return value


def native_tools(functions: list[dict[str, Any]], choice: ToolChoice | None,
                 parallel_tool_calls: bool | None) -> dict[str, Any]:
    """Function definitions ({name, description?, parameters?, strict?}), a tool choice and
    parallel_tool_calls -> the native tools, toolChoice and parallelToolCalls."""
    names = [function["name"] for function in functions]
    out: dict[str, Any] = {}
    if functions:
        out["tools"] = [{"function": function} for function in functions]
    if choice is not None and choice.mode is not None and choice.allowed is None:
        if choice.mode == "required" and not functions:
            raise errors.BadRequestError.field("tool_choice", "'required' needs tools")
        if functions:
            out["toolChoice"] = {"mode": TOOL_CHOICE_MODES[choice.mode]}
    elif choice is not None and choice.function is not None:
        if choice.function not in names:
            raise errors.BadRequestError.field(choice.where, f"{choice.function!r} is not one of tools")
        out["toolChoice"] = {"functionName": choice.function}
    elif choice is not None and choice.allowed is not None:  # only the listed tools are offered
        if not functions:
            raise errors.BadRequestError.field("tool_choice", "allowed_tools needs tools")
        unknown = [name for name in choice.allowed if name not in names]
        if unknown:
            raise errors.BadRequestError.field(choice.where, f"{unknown[0]!r} is not one of tools")
        out["tools"] = [tool for tool in out["tools"] if tool["function"]["name"] in choice.allowed]
        out["toolChoice"] = {"mode": TOOL_CHOICE_MODES[choice.mode or "auto"]}
    if parallel_tool_calls is not None and functions:
        out["parallelToolCalls"] = parallel_tool_calls
    return out


def completion_options(*, stream: bool | None, temperature: float | None, max_tokens: int | None,
                       reasoning_effort: str | None) -> dict[str, Any]:
    """The native completionOptions; temperature above 1 is a 400 (the native range, never rescaled)."""
    options: dict[str, Any] = {}
    if stream:
        options["stream"] = True
    if temperature is not None:
        if temperature > 1:
            raise errors.BadRequestError.field(
                "temperature", "must be between 0 and 1 on this model (the native range; it is not rescaled)")
        options["temperature"] = temperature
    if max_tokens is not None:
        options["maxTokens"] = str(max_tokens)
    if reasoning_effort is not None:
        options["reasoningOptions"] = {"mode": REASONING.get(reasoning_effort, "ENABLED_HIDDEN")}
    return options


def response_format(kind: str | None, schema: dict[str, Any] | None) -> dict[str, Any]:
    """text / json_object / json_schema -> nothing, jsonObject, or jsonSchema (a json_schema without a schema:
    any JSON object)."""
    if kind == "json_object" or (kind == "json_schema" and schema is None):
        return {"jsonObject": True}
    if kind == "json_schema":
        return {"jsonSchema": {"schema": schema}}
    return {}


def body(model_uri: str, options: dict[str, Any], messages: list[dict[str, Any]], *parts: dict[str, Any]) -> dict[str, Any]:
    """The native completion body, its fields in the order upstream documents them."""
    out: dict[str, Any] = {"modelUri": model_uri}
    if options:
        out["completionOptions"] = options
    out["messages"] = messages
    for part in parts:
        out.update(part)
    return out
