"""The body of POST /v1/responses as the wire has it: input items, tools, tool choice, text format, reasoning,
and the parameter table (DEFAULT_ONLY, REFUSED, IGNORED, as chat.py has it). Shapes only: what the native
completion cannot honour is refused in translation (responses_api.py), with a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from shared import errors
from shared.native.models import NonEmptyStr, StrictBool, StrictStr, model_uri_pattern, validate
from shared.openai import translate
from shared.openai.models import OpenAIBody, check_function_name, check_metadata, describe_rules
from shared.openai.response_object import NAMESPACE_SEPARATOR

DEFAULT_ONLY: dict[str, Any] = {"top_p": 1, "top_logprobs": 0, "truncation": "disabled"}
REFUSED: dict[str, str] = {
    "conversation": "the Conversations API is not available here; chain responses with previous_response_id",
    "prompt": "stored prompt templates are not available here; send instructions and input",
    "moderation": "OpenAI moderation is not available on this model",
    "context_management": "server-side compaction is not available on this model",
}
IGNORED = ("include", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
           "service_tier", "max_tool_calls", "stream_options", "client_metadata", "background_options",
           "reasoning.summary")
HOSTED = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
          "mcp", "code_interpreter", "image_generation", "computer_use_preview", "computer", "local_shell", "shell",
          "apply_patch", "custom", "tool_search")

Number = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
NAME_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
NAMESPACE_PATTERN = "^[A-Za-z0-9-]*(_[A-Za-z0-9-]+)*_?$"  # 1-64; no "__": that joins a namespace to its functions


# -- the request, as the wire has it -----------------------------------------------------------------------

class _ResponseOpen(OpenAIBody):
    model_config = ConfigDict(extra="allow", defer_build=True)


class ResponseTextPart(OpenAIBody):
    type: Literal["input_text", "output_text", "text"]
    text: StrictStr
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class ResponseRefusalPart(OpenAIBody):
    type: Literal["refusal"]
    refusal: StrictStr


class ResponseMediaPart(_ResponseOpen):
    """input_image / input_file: a 400 on this model, named by where it is."""

    type: Literal["input_image", "input_file"]


ResponsePart = ResponseTextPart | ResponseRefusalPart | ResponseMediaPart


class ResponseMessageItem(OpenAIBody):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ResponsePart]
    id: StrictStr | None = None
    status: StrictStr | None = None
    phase: StrictStr | None = None


class ResponseFunctionCallItem(OpenAIBody):
    type: Literal["function_call"]
    call_id: NonEmptyStr
    name: NonEmptyStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None
    namespace: StrictStr | None = None


class ResponseFunctionCallOutputItem(OpenAIBody):
    type: Literal["function_call_output"]
    call_id: NonEmptyStr
    output: str | list[ResponsePart]
    id: StrictStr | None = None
    status: StrictStr | None = None


class ResponseReasoningItem(_ResponseOpen):
    """Dropped: native reasoning is hidden, so there is nothing to give back to the model. Codex sends no id."""

    type: Literal["reasoning"]


class ResponseItemReference(OpenAIBody):
    type: Literal["item_reference"] | None = None
    id: NonEmptyStr


ITEMS: dict[str, type[OpenAIBody]] = {"message": ResponseMessageItem, "function_call": ResponseFunctionCallItem,
                                      "function_call_output": ResponseFunctionCallOutputItem, "reasoning": ResponseReasoningItem,
                                      "item_reference": ResponseItemReference}
ResponseInputItem = ResponseMessageItem | ResponseFunctionCallItem | ResponseFunctionCallOutputItem | ResponseReasoningItem | ResponseItemReference


def _sub(model: type[OpenAIBody], value: Any, where: str) -> OpenAIBody:
    """A nested object checked by its model; its first problem named under `where` (the '@' path convention)."""
    try:
        return validate(model, value)
    except errors.BadRequestError as err:
        detail = err.details[0] if err.details else {"field": "", "description": err.message}
        field = detail.get("field", "")
        field = "" if field == "body" else field
        joined = where + ("" if not field or field.startswith("[") or not where else ".") + field
        rule = detail.get("description", err.message)
        raise ValueError(f"@{joined}: {rule}" if joined else rule) from None


def _items(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError("must be a string or an array of input items")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"@[{index}]: must be an object")
        kind = item.get("type")
        if kind is None:
            kind = "message" if "role" in item else "item_reference" if "id" in item else None
        if not isinstance(kind, str) or kind not in ITEMS:
            raise ValueError(f"@[{index}].type: must be one of {', '.join(ITEMS)} (hosted tool items are not "
                             "available on this model)")
        items.append(_sub(ITEMS[kind], item, f"[{index}]"))
    return items


class ResponseFunctionTool(OpenAIBody):
    type: Literal["function"]
    name: StrictStr = Field(json_schema_extra={"pattern": NAME_PATTERN})
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None
    # newer keys clients may send; nothing on the native side uses them
    defer_loading: StrictBool | None = None
    output_schema: dict[str, Any] | None = None
    allowed_callers: list[StrictStr] | None = None

    _name = field_validator("name")(classmethod(lambda cls, value: check_function_name(value)))


class ResponseNamespaceFunction(ResponseFunctionTool):
    model_config = ConfigDict(extra="allow", defer_build=True)  # `async` and whatever a namespace adds


class ResponseNamespaceTool(_ResponseOpen):
    type: Literal["namespace"]
    name: StrictStr = Field(min_length=1, max_length=64, json_schema_extra={"pattern": NAMESPACE_PATTERN})
    description: StrictStr | None = None
    tools: list[dict[str, Any]]


class ResponseHostedTool(_ResponseOpen):
    type: Literal[HOSTED]  # type: ignore[valid-type]


def _tools(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("must be an array of tools")
    tools = []
    for index, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or kind not in ("function", "namespace", *HOSTED):
            raise ValueError(f"@[{index}].type: must be function, namespace or a hosted tool type "
                             f"({', '.join(HOSTED)})")
        model = {"function": ResponseFunctionTool, "namespace": ResponseNamespaceTool}.get(kind, ResponseHostedTool)
        checked = _sub(model, tool, f"[{index}]")
        if isinstance(checked, ResponseNamespaceTool):
            if not 1 <= len(checked.name) <= 64 or NAMESPACE_SEPARATOR in checked.name or not all(
                    c.isascii() and (c.isalnum() or c in "_-") for c in checked.name):
                raise ValueError(f"@[{index}].name: must be 1-64 letters, digits, dashes or single underscores")
            for number, inner in enumerate(checked.tools):
                if isinstance(inner, dict) and inner.get("type") == "function":
                    _sub(ResponseNamespaceFunction, inner, f"[{index}].tools[{number}]")
        tools.append(checked)
    return tools


class ResponseNamedFunction(OpenAIBody):
    type: Literal["function"]
    name: NonEmptyStr


class ResponseAllowedTools(_ResponseOpen):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class ResponseHostedChoice(_ResponseOpen):
    type: StrictStr


def _tool_choice(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value in translate.TOOL_CHOICE_MODES):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError("must be 'none', 'auto', 'required' or a tool choice object")
    if value["type"] == "function":
        return _sub(ResponseNamedFunction, value, "").model_dump()
    if value["type"] == "allowed_tools":
        checked = _sub(ResponseAllowedTools, value, "")
        for index, tool in enumerate(checked.tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise ValueError(f"@tools[{index}]: must be a tool object with a type")
        return value
    return value  # a hosted or other tool kind: refused in translation, since it is never offered


class ResponseTextFormat(OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = Field(None, json_schema_extra={"pattern": NAME_PATTERN})
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None
    description: StrictStr | None = None


class ResponseTextConfig(OpenAIBody):
    format: ResponseTextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponseReasoningConfig(OpenAIBody):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None
    mode: Literal["standard", "pro"] | None = None


class ResponseStreamOptions(OpenAIBody):
    include_obfuscation: StrictBool | None = None


class ResponseCreateRequest(OpenAIBody):
    """The body of POST /v1/responses (openai 3.57.0's parameters; unknown ones are refused by name)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: describe_rules(schema, DEFAULT_ONLY, REFUSED))

    model: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    input: Any = None  # a string or a list of input items (validated by _items)
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = None
    store: StrictBool | None = None
    background: StrictBool | None = None
    stream: StrictBool | None = None
    stream_options: ResponseStreamOptions | None = None
    tools: Any = None  # validated by _tools
    tool_choice: Any = None  # validated by _tool_choice
    parallel_tool_calls: StrictBool | None = None
    max_output_tokens: StrictInt | None = Field(None, ge=16)
    max_tool_calls: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    text: ResponseTextConfig | None = None
    reasoning: ResponseReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, StrictStr] | None = None
    include: list[StrictStr] | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: StrictStr | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: StrictStr | None = None
    client_metadata: dict[str, Any] | None = None  # Codex sends it
    background_options: dict[str, Any] | None = None
    conversation: StrictStr | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    context_management: list[Any] | None = None

    @field_validator("input", mode="plain", json_schema_input_type=str | list[ResponseInputItem] | None)
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        return None if value is None else _items(value)

    @field_validator("tools", mode="plain", json_schema_input_type=list[ResponseFunctionTool | ResponseNamespaceTool | ResponseHostedTool] | None)
    @classmethod
    def _check_tools(cls, value: Any) -> Any:
        return _tools(value)

    @field_validator("tool_choice", mode="plain", json_schema_input_type=(
        Literal["none", "auto", "required"] | ResponseNamedFunction | ResponseAllowedTools | ResponseHostedChoice | None))
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        return _tool_choice(value)

    _metadata = field_validator("metadata")(classmethod(lambda cls, value: check_metadata(value)))


class InputTokensRequest(ResponseCreateRequest):
    """The body of POST /v1/responses/input_tokens: the create body's fields, `model` required here too."""
