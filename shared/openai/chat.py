"""POST /v1/chat/completions: an OpenAI chat request translated to the native completion, and back.

Plain data in and out; the `openai` package is never imported. The request model checks shapes only
(OpenAI's own types and ranges). What the native completion cannot honour is refused by `native_body`
with a 400 naming the parameter, so the models upstream serves only in its own OpenAI mode
(`Settings.passthrough_models`) get the caller's body as it came, and upstream's rules. The answer's
side (native result -> chat.completion, cumulative chunks -> SSE deltas) is in chat_response.py.

The parameter table (docs/openai.md, "Chat completions", shows the same):
- mapped: model -> modelUri (short names and the allow-list as on the native routes); messages;
  temperature (0-1; above 1 is a 400, never rescaled); max_completion_tokens / max_tokens -> maxTokens;
  reasoning_effort (none -> DISABLED, any other -> ENABLED_HIDDEN); response_format json_object /
  json_schema -> jsonObject / jsonSchema.schema; tools, tool_choice, parallel_tool_calls; stream and
  stream_options.include_usage.
- DEFAULT_ONLY: they would change the answer and have no native equivalent, so only their default
  value (which changes nothing) is accepted.
- REFUSED: a 400 whenever set. IGNORED: accepted and dropped, since they do not change the answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared import clock, errors, logs
from shared.ids import uuid4 as new_id
from shared.native import services
from shared.native.models import NonEmptyStr, StrictBool, StrictStr, model_uri_pattern
from shared.openai import chat_response, translate
from shared.openai.models import OpenAIBody, check_function_name, describe_rules, refuse_unsupported
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.runtime import Invocation

log = logs.get_logger("openai.chat")

# Would change the answer, no native equivalent: accepted only at the value that changes nothing.
DEFAULT_ONLY: dict[str, Any] = {
    "n": 1, "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0, "logprobs": False, "top_logprobs": 0,
    "logit_bias": {}, "stop": [], "modalities": ["text"], "verbosity": "medium",
}
# Ask for something the native completion cannot do: a 400 whenever set.
REFUSED: dict[str, str] = {
    "audio": "audio output is not available on this model",
    "web_search_options": "web search is not available on this model",
    "moderation": "OpenAI moderation is not available on this model",
    "functions": "the legacy functions API is not supported; send tools",
    "function_call": "the legacy function_call is not supported; send tool_choice",
}
# Accepted and ignored: they do not change the answer.
IGNORED = ("user", "seed", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
           "prompt_cache_retention", "prompt_cache_options", "prediction", "stream_options.include_obfuscation")

TOOL_CHOICE_MODES = translate.TOOL_CHOICE_MODES

StrictInt = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True)]  # a JSON number (ints too), never a string or a boolean


# -- the request, as the wire has it --

class ContentPart(OpenAIBody):
    """One part of a message's content. Only `text` parts reach the native completion; the others
    (image_url, input_audio, file) are a 400 there and go as they are to the pass-through models."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    type: str
    text: str | None = None


def _content(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError("must be a string or an array of content parts")
    for index, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ValueError(f"@[{index}].type: is required (a content part is an object with a type)")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise ValueError(f"@[{index}].text: must be a string")
    return value


class FunctionCall(OpenAIBody):
    name: NonEmptyStr
    arguments: StrictStr  # a JSON object, as text


class ToolCall(OpenAIBody):
    id: NonEmptyStr
    type: Literal["function"] = "function"
    function: FunctionCall


NOT_NULL: dict[str, Any] = {"not": {"enum": [None]}}


def _absent(*names: str) -> dict[str, Any]:
    """JSON Schema: none of these fields is set to a value (each absent or null)."""
    return {"not": {"anyOf": [{"required": [n], "properties": {n: NOT_NULL}} for n in names]}}


def _set(name: str, **rule: Any) -> dict[str, Any]:
    """JSON Schema: this field is set to a value (present, not null)."""
    return {"required": [name], "properties": {name: {**NOT_NULL, **rule}}}


def _message_rules() -> dict[str, Any]:
    """The rules ChatMessage._by_role enforces, as the spec states them (OpenAPI 3.0 has oneOf, not if/then);
    built when a schema is (json_schema_extra), not at import."""
    return {"oneOf": [
        {"properties": {"role": {"enum": ["tool"]}}, "required": ["role"],
         "allOf": [_set("tool_call_id", minLength=1), _set("content"), _absent("tool_calls")]},
        {"properties": {"role": {"enum": ["system", "developer", "user"]}}, "required": ["role"],
         "allOf": [_set("content"), _absent("tool_call_id", "tool_calls")]},
        {"properties": {"role": {"enum": ["assistant"]}}, "required": ["role"], "allOf": [_absent("tool_call_id")],
         "anyOf": [_set("content"), _set("tool_calls", minItems=1), _set("refusal"), _set("function_call"),
                   _set("audio")]},
    ]}


def _format_rules() -> dict[str, Any]:
    """ResponseFormat's rule (json_schema with its type, and only with it), as the spec states it."""
    return {"oneOf": [
        {"properties": {"type": {"enum": ["json_schema"]}}, "allOf": [_set("json_schema")]},
        {"properties": {"type": {"enum": ["text", "json_object"]}}, "allOf": [_absent("json_schema")]}]}


class ChatMessage(OpenAIBody):
    model_config = ConfigDict(json_schema_extra=lambda schema, _: schema.update(_message_rules()))

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = None  # a string or an array of content parts (validated by _content)
    name: StrictStr | None = None  # accepted and ignored
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None
    refusal: StrictStr | None = None
    function_call: dict[str, Any] | None = None  # legacy: refused on the native path
    audio: dict[str, Any] | None = None  # a reference to an earlier audio answer: refused on the native path

    @field_validator("content", mode="plain", json_schema_input_type=str | list[ContentPart] | None)
    @classmethod
    def _check_content(cls, value: Any) -> Any:
        return _content(value)

    @model_validator(mode="after")
    def _by_role(self) -> ChatMessage:
        if self.role == "tool":
            if not self.tool_call_id:
                raise ValueError("@tool_call_id: is required on a tool message")
        elif self.tool_call_id is not None:
            raise ValueError("@tool_call_id: only tool messages carry it")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("@tool_calls: only assistant messages carry them")
        if self.content is None:
            if self.role != "assistant":
                raise ValueError("@content: is required")
            if not self.tool_calls and self.refusal is None and self.function_call is None and self.audio is None:
                raise ValueError("@content: an assistant message needs content or tool_calls")
        return self


class FunctionDefinition(OpenAIBody):
    name: StrictStr = Field(json_schema_extra={"pattern": "^[A-Za-z0-9_-]{1,64}$"})
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object
    strict: StrictBool | None = None

    _name = field_validator("name")(classmethod(lambda cls, value: check_function_name(value)))


class Tool(OpenAIBody):
    type: Literal["function"]
    function: FunctionDefinition


def _tool_choice(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value in TOOL_CHOICE_MODES):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError("@function.name: is required")
        return value
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        allowed = value.get("allowed_tools")
        if not isinstance(allowed, dict) or allowed.get("mode") not in ("auto", "required"):
            raise ValueError("@allowed_tools.mode: must be 'auto' or 'required'")
        tools = allowed.get("tools")
        if not isinstance(tools, list) or not all(_named_function(t) for t in tools):
            raise ValueError('@allowed_tools.tools: must be an array of {"type": "function", "function": {"name"}}')
        return value
    raise ValueError("must be 'none', 'auto', 'required', {\"type\": \"function\", \"function\": {\"name\": ...}} "
                     "or {\"type\": \"allowed_tools\", ...}")


def _named_function(tool: Any) -> bool:
    return (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)
            and isinstance(tool["function"].get("name"), str))


class _Open(OpenAIBody):
    """For the spec only: a shape _tool_choice checks, which lets other keys through."""

    model_config = ConfigDict(extra="allow")


class _FunctionName(_Open):
    name: NonEmptyStr


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: _FunctionName


class _NamedTool(_Open):
    type: Literal["function"]
    function: dict[str, Any] = Field(json_schema_extra={"required": ["name"],
                                                        "properties": {"name": {"type": "string"}}})


class _AllowedTools(_Open):
    mode: Literal["auto", "required"]
    tools: list[_NamedTool]


class AllowedToolsChoice(_Open):
    type: Literal["allowed_tools"]
    allowed_tools: _AllowedTools


class JsonSchemaFormat(OpenAIBody):
    name: NonEmptyStr
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(OpenAIBody):
    model_config = ConfigDict(json_schema_extra=lambda schema, _: schema.update(_format_rules()))

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("@json_schema: is required with type json_schema, and only with it")
        return self


class StreamOptions(OpenAIBody):
    include_usage: StrictBool | None = None
    include_obfuscation: StrictBool | None = None  # ignored: the whole stream comes in one body


def _stop(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a string or an array of up to 4 strings")


class ChatCompletionRequest(OpenAIBody):
    """The body of POST /v1/chat/completions (openai 3.57.0's parameters; unknown ones are refused by name)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: describe_rules(schema, DEFAULT_ONLY, REFUSED))

    model: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    temperature: Number | None = Field(None, ge=0, le=2)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None  # validated by _tool_choice
    parallel_tool_calls: StrictBool | None = None
    # DEFAULT_ONLY on the native path
    n: StrictInt | None = Field(None, ge=1, le=128)
    top_p: Number | None = Field(None, ge=0, le=1)
    frequency_penalty: Number | None = Field(None, ge=-2, le=2)
    presence_penalty: Number | None = Field(None, ge=-2, le=2)
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, Number] | None = None
    stop: Any = None  # validated by _stop
    modalities: list[Literal["text", "audio"]] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    # REFUSED on the native path
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    # IGNORED
    user: StrictStr | None = None
    seed: StrictInt | None = None
    metadata: dict[str, StrictStr] | None = None
    store: StrictBool | None = None
    service_tier: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: StrictStr | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None

    @field_validator("tool_choice", mode="plain", json_schema_input_type=(
        Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | None))
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        return _tool_choice(value)

    @field_validator("stop", mode="plain", json_schema_input_type=str | list[str] | None)
    @classmethod
    def _check_stop(cls, value: Any) -> Any:
        return _stop(value)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# -- the operation --

def create(request: ChatCompletionRequest, inv: Invocation) -> Reply:
    """POST /v1/chat/completions: the native completion (or, for pass-through models, upstream's OpenAI mode)."""
    model_uri = resolve_model(request.model, inv)
    folder, name = model_uri.split("://", 1)[1].split("/")[:2]
    if name in inv.settings.passthrough_models:
        return _pass_through(request, model_uri, folder, inv)
    body = inv.admit(native_body(request, model_uri), "completion", model_uri)  # a key's budget and limits
    answer = inv.client.completion(body, inv.call)
    inv.log_fields.update(upstream_request_id=answer.request_id, attempts=answer.attempts)
    head = {"id": f"chatcmpl-{new_id()}", "created": int(clock.now()), "model": model_uri}
    if request.stream:
        events, last = chat_response.chunk_events(answer.body, head, request.include_usage)
        _log_usage(inv, chat_response.usage(last))
        return Reply(events, sse=True)
    if not isinstance(answer.body, dict) or not isinstance(answer.body.get("result"), dict):
        raise errors.UpstreamError("upstream completion answer has no result object",
                                   upstream_request_id=answer.request_id)
    completion = chat_response.chat_completion(answer.body["result"], head)
    _log_usage(inv, completion["usage"])
    if inv.settings.log_payloads:
        log.info("completion payload", extra={"messages": body["messages"], "result": answer.body["result"]})
    return Reply(completion)


def resolve_model(model: str, inv: Invocation) -> str:
    """The model's full URI, as the native routes resolve it; errors name `model`, the OpenAI field."""
    try:
        uri = services.resolve_model(model, "gpt", inv.settings, inv.policy)
    except errors.ApiError as err:
        err.message = err.message.replace("modelUri", "model", 1)
        err.details = [{**d, "field": "model"} if d.get("field") == "modelUri" else d for d in err.details]
        raise
    inv.log_fields["model"] = uri
    return uri


def _pass_through(request: ChatCompletionRequest, model_uri: str, folder: str, inv: Invocation) -> Reply:
    """A model upstream serves only in its OpenAI mode: the caller's body as it came, with the full URI."""
    body = request.model_dump(by_alias=True, exclude_unset=True)
    body["model"] = model_uri
    hide_usage = bool(request.stream) and not request.include_usage
    if hide_usage:  # the usage ledger needs upstream's usage: asked for, and its chunk kept from the caller
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    inv.log_fields["passthrough"] = True
    body = inv.admit(body, "chat", model_uri)
    answer = inv.client.chat_completions(body, inv.call, project=folder)
    inv.log_fields.update(upstream_request_id=answer.request_id, attempts=answer.attempts)
    if request.stream:
        events = list(answer.body)
        if not events:
            raise errors.UpstreamError("upstream answered the stream with no events",
                                       upstream_request_id=answer.request_id)
        if events[-1].strip() != "[DONE]" and '"error"' not in events[-1]:
            # a stream cut short would look complete to the client: say so instead
            events.append(errors.UpstreamError("upstream's event stream ended before [DONE]").to_openai_body())
        for event in reversed(events):
            if '"usage"' in event and isinstance(_json(event).get("usage"), dict):
                _log_usage(inv, _json(event).get("usage"))
                break
        if hide_usage:
            events = [e for e in events if not ('"usage"' in e and _json(e).get("choices") == [])]
        return Reply(events, sse=True)
    if not isinstance(answer.body, dict):
        raise errors.UpstreamError("upstream chat answer is not a JSON object", upstream_request_id=answer.request_id)
    _log_usage(inv, answer.body.get("usage"))
    return Reply(answer.body)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _log_usage(inv: Invocation, usage: Any) -> None:
    if isinstance(usage, dict):
        details = usage.get("completion_tokens_details")
        inv.log_fields.update(input_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
                              total_tokens=usage.get("total_tokens"),
                              reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None)


# -- request translation: OpenAI -> native --

def native_body(request: ChatCompletionRequest, model_uri: str) -> dict[str, Any]:
    """The native completion body for a chat request; a 400 naming the parameter for what it cannot honour."""
    refuse_unsupported(request, DEFAULT_ONLY, REFUSED, also_fine={"stop": ""})
    options = translate.completion_options(stream=request.stream, temperature=request.temperature,
                                           max_tokens=_max_tokens(request), reasoning_effort=request.reasoning_effort)
    fmt = request.response_format
    schema = fmt.json_schema.schema_ if fmt is not None and fmt.json_schema is not None else None
    return translate.body(model_uri, options, native_messages(request.messages),
                          translate.response_format(fmt.type if fmt is not None else None, schema),
                          _native_tools(request))


def _max_tokens(request: ChatCompletionRequest) -> int | None:
    a, b = request.max_completion_tokens, request.max_tokens
    if a is not None and b is not None and a != b:
        raise errors.BadRequestError.field("max_tokens", "set only one of max_tokens and max_completion_tokens")
    return a if a is not None else b


def native_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI messages -> native ones (translate.native_messages: consecutive `tool` messages become one
    toolResultList, each result named by the function of the earlier assistant tool call whose id it answers)."""
    return translate.native_messages([_turn(index, message) for index, message in enumerate(messages)])


def _turn(index: int, message: ChatMessage) -> translate.Turn:
    where = f"messages[{index}]"
    if message.role == "tool":
        assert message.tool_call_id is not None  # the model's validator guarantees it
        return translate.Turn("tool", _text(message.content, where), where, call_id=message.tool_call_id,
                              call_id_where=f"{where}.tool_call_id")
    for legacy in ("function_call", "audio"):
        if getattr(message, legacy) is not None:
            raise errors.BadRequestError.field(f"{where}.{legacy}", "is not supported on this model")
    text = _text(message.content, where, assistant=message.role == "assistant")
    if message.role == "assistant" and not text and message.refusal:
        text = message.refusal
    calls = [translate.ToolCall(call.id, call.function.name, call.function.arguments,
                                f"{where}.tool_calls[{number}].function.arguments", f"{where}.tool_calls[{number}].id")
             for number, call in enumerate(message.tool_calls or [])] if message.role == "assistant" else []
    role = "system" if message.role in ("system", "developer") else message.role
    return translate.Turn(role, text, f"{where}.content", calls=calls)


def _text(content: Any, where: str, assistant: bool = False) -> str:
    """A message's content as one text: a string, or its text parts joined (refusal parts on assistant
    messages count as text); any other part is a 400 naming it."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for index, part in enumerate(content):
        kind = part["type"]
        if kind == "text":
            texts.append(part["text"])
        elif kind == "refusal" and assistant and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise errors.BadRequestError.field(
                f"{where}.content[{index}]", f"a {kind!r} part is not supported: this model takes text parts only")
    return "".join(texts)


def _native_tools(request: ChatCompletionRequest) -> dict[str, Any]:
    """tools, tool_choice and parallel_tool_calls -> tools, toolChoice and parallelToolCalls."""
    functions = [tool.function.model_dump(exclude_none=True) for tool in request.tools or []]
    choice = request.tool_choice
    neutral = None
    if isinstance(choice, str):
        neutral = translate.ToolChoice(mode=choice)
    elif isinstance(choice, dict) and choice["type"] == "function":
        neutral = translate.ToolChoice(function=choice["function"]["name"], where="tool_choice.function.name")
    elif isinstance(choice, dict):
        allowed = choice["allowed_tools"]
        neutral = translate.ToolChoice(mode=allowed["mode"], allowed=[t["function"]["name"] for t in allowed["tools"]],
                                       where="tool_choice.allowed_tools.tools")
    return translate.native_tools(functions, neutral, request.parallel_tool_calls)
