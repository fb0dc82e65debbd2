"""Request and response bodies, in the native camelCase (snake_case accepted on input, as upstream does).

Validation messages name the field the way the caller wrote it and the rule it broke, e.g.
`completionOptions.temperature: must be between 0 and 1`. int64 fields accept numbers or numeric
strings and are sent upstream as strings, as the proto3 JSON mapping does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.errors import BadRequestError

MAX_LABELS = 20
MIN_LABELS = 2
MAX_SYNC_TEXTS = 256
MAX_ASYNC_TEXTS = 10_000


def _int64(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be a whole number")
    if isinstance(value, str):
        if not value.strip().lstrip("-").isdigit():
            raise ValueError("must be a whole number (a JSON number or a string of digits)")
        return int(value)
    return value


Int64 = Annotated[int, BeforeValidator(_int64), PlainSerializer(lambda v: str(v), return_type=str)]

# -- what the validators enforce, said in JSON Schema for the OpenAPI spec (deploy/openapi.py) ---------
# These annotate; they change nothing that is accepted. Python's str.strip() and `\s` know 29 white-space
# characters and ECMA regex (the spec's) a different set, so the class is spelled out.
WS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{WS}]"  # somewhere a character strip() keeps
NUMBER_WS = WS.replace(r"\x1c-\x20", r"\x20")  # what int() and float() skip around digits: not U+001C-U+001F
# `$` in Python also matches before a final newline, so a value the handlers accept may end with one
_NAME = r"[A-Za-z0-9][A-Za-z0-9._\-]*"


def model_uri_pattern(schemes: str, tuned: bool = False) -> str:
    """A full `<scheme>://<folder>/<model>[/<version>]` URI or a short `<model>[/<version>]` name (expanded
    with YC_FOLDER_ID), as services.resolve_model reads them; `tuned`: a `...@<suffix>` one (textClassification)."""
    if tuned:
        return (f"^({schemes})://[^/{WS}]+/[^/{WS}@]+/[^{WS}]*@[^{WS}]*\\n?$"
                f"|^{_NAME}/[A-Za-z0-9._\\-@]*@[A-Za-z0-9._\\-@]*\\n?$")
    return f"^({schemes})://[^/{WS}]+/[^/{WS}@]+(/[^{WS}]*)?\\n?$|^{_NAME}(/[A-Za-z0-9._\\-@]+)?\\n?$"


def _replaced(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """json_schema_extra that puts `schema` in place of the generated one (for a BeforeValidator's rule)."""

    def apply(generated: dict[str, Any]) -> None:
        generated.clear()
        generated.update(schema)

    return apply


# int64 as proto3 JSON has it: a number or a string of digits (white space around is stripped), > 0
POSITIVE_INT64 = {"anyOf": [{"type": "integer", "minimum": 1},
                            {"type": "string", "pattern": f"^[{NUMBER_WS}]*0*[1-9][0-9]*[{NUMBER_WS}]*$"},
                            {"type": "null"}],
                  "description": "A whole number > 0, as a JSON number or a string of digits."}
# a lax float between 0 and 1: pydantic reads true/false as 1/0, and numeric strings; the pattern has the
# plain decimal forms (exponents are read too)
UNIT_INTERVAL = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
                           {"type": "string", "pattern": f"^[{NUMBER_WS}]*(\\+?(0+(\\.[0-9]*)?|0*\\.[0-9]+|0*1(\\.0*)?)"
                                                         f"|-(0+(\\.0*)?|0*\\.0+))[{NUMBER_WS}]*$"},
                           {"type": "boolean"},
                           {"type": "null"}],
                 "description": "Between 0 and 1 (a number; numeric strings and true/false, read as 1/0, are accepted)."}


def exactly_one_of(**fields: str) -> dict[str, Any]:
    """JSON Schema for "exactly one of these fields is set (not null)", by field alias -> JSON type."""
    return {"oneOf": [{"required": [name], "properties": {name: {"type": kind}}} for name, kind in fields.items()]}


NOT_STREAMING = {"not": {"required": ["stream"], "properties": {"stream": {"enum": [True]}}}}
StrictStr = Annotated[str, Field(strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]
NonEmptyStr = Annotated[str, Field(strict=True, min_length=1)]


class Body(BaseModel):
    """Base for request bodies: camelCase aliases, snake_case accepted, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    def upstream(self) -> dict[str, Any]:
        """The body as upstream expects it: camelCase, no unset fields, int64 as strings."""
        return self.model_dump(by_alias=True, exclude_none=True)


class ReasoningOptions(Body):
    mode: Literal["REASONING_MODE_UNSPECIFIED", "DISABLED", "ENABLED_HIDDEN"]


class CompletionOptions(Body):
    stream: StrictBool | None = None
    temperature: float | None = Field(None, json_schema_extra=_replaced(UNIT_INTERVAL))
    max_tokens: Int64 | None = Field(None, json_schema_extra=_replaced(POSITIVE_INT64))
    reasoning_options: ReasoningOptions | None = None

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError("must be between 0 and 1")
        return value

    @field_validator("max_tokens")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value


class Upstream(Body):
    """A nested object upstream defines: its known fields checked, any others passed through unchanged."""

    model_config = ConfigDict(extra="allow")


class FunctionCall(Upstream):
    name: StrictStr
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(Upstream):
    function_call: FunctionCall


class ToolCallList(Upstream):
    tool_calls: list[ToolCall] = Field(min_length=1)


class FunctionResult(Upstream):
    name: StrictStr
    content: StrictStr


class ToolResult(Upstream):
    function_result: FunctionResult


class ToolResultList(Upstream):
    tool_results: list[ToolResult] = Field(min_length=1)


class JsonSchema(Upstream):
    schema_: dict[str, Any] = Field(alias="schema")


class Function(Upstream):
    name: NonEmptyStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object


class Tool(Upstream):
    function: Function


class ToolChoice(Body):
    """Exactly one of `mode` and `functionName` (which must name one of the request's tools)."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(mode="string", functionName="string"))

    mode: Literal["NONE", "AUTO", "REQUIRED"] | None = None
    function_name: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _one(self) -> ToolChoice:
        if (self.mode is None) == (self.function_name is None):
            raise ValueError("@mode: set exactly one of mode and functionName")
        return self


class Message(Body):
    model_config = ConfigDict(json_schema_extra=exactly_one_of(text="string", toolCallList="object",
                                                               toolResultList="object"))

    role: Literal["system", "user", "assistant"]
    text: StrictStr | None = Field(None, json_schema_extra={"pattern": NOT_BLANK})
    tool_call_list: ToolCallList | None = None
    tool_result_list: ToolResultList | None = None

    @model_validator(mode="after")
    def _one_content(self) -> Message:
        present = [v for v in (self.text, self.tool_call_list, self.tool_result_list) if v is not None]
        if len(present) != 1:
            raise ValueError("@text: set exactly one of text, toolCallList, toolResultList")
        if self.text is not None and not self.text.strip():
            raise ValueError("@text: must not be empty")
        return self


ONE_FORMAT = {"not": {"required": ["jsonObject", "jsonSchema"],
                      "properties": {"jsonObject": {"enum": [True]}, "jsonSchema": {"type": "object"}}}}


class CompletionRequest(Body):
    model_config = ConfigDict(json_schema_extra=ONE_FORMAT)

    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    completion_options: CompletionOptions | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = Field(None, description="functionName must name one of `tools`")
    parallel_tool_calls: StrictBool | None = None
    json_object: StrictBool | None = None
    json_schema: JsonSchema | None = None

    @property
    def stream(self) -> bool:
        return bool(self.completion_options and self.completion_options.stream)

    @model_validator(mode="after")
    def _one_format(self) -> CompletionRequest:
        if self.json_object and self.json_schema is not None:
            raise ValueError("@jsonSchema: set at most one of jsonObject and jsonSchema")
        if self.tool_choice is not None and self.tool_choice.function_name is not None:
            if self.tool_choice.function_name not in [tool.function.name for tool in self.tools or []]:
                raise ValueError("@toolChoice.functionName: is not the name of one of tools")
        return self


class CompletionAsyncRequest(CompletionRequest):
    """completionAsync: a completion request; the handler refuses `completionOptions.stream: true` (said here for the spec)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: (
        schema.update(ONE_FORMAT), schema["properties"]["completionOptions"].update(NOT_STREAMING)))


MAX_BATCH_REQUESTS = 10_000


class BatchItem(Body):
    """One request of an inline batch: its messages, optional options, and the caller's id for it."""

    custom_id: Annotated[str, Field(strict=True, min_length=1, max_length=128)] | None = Field(
        None, description="Unique within the batch.")
    messages: list[Message] = Field(min_length=1)
    completion_options: CompletionOptions | None = Field(None, json_schema_extra=NOT_STREAMING)

    @field_validator("completion_options")
    @classmethod
    def _no_stream(cls, value: CompletionOptions | None) -> CompletionOptions | None:
        if value is not None and value.stream:
            raise ValueError("@stream: is not available in batch mode")
        return value


class BatchCompletionRequest(Body):
    """Native: `sourceDatasetId` (an upstream batch task). Extension: `requests` (1..10,000 inline)."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(sourceDatasetId="string", requests="array"))

    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    completion_options: CompletionOptions | None = Field(None, json_schema_extra=NOT_STREAMING)
    source_dataset_id: NonEmptyStr | None = None
    requests: list[BatchItem] | None = Field(None, min_length=1, max_length=MAX_BATCH_REQUESTS)
    json_object: StrictBool | None = None
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _one_source(self) -> BatchCompletionRequest:
        if (self.source_dataset_id is None) == (self.requests is None):
            raise ValueError("@requests: set exactly one of sourceDatasetId and requests")
        if self.completion_options is not None and self.completion_options.stream:
            raise ValueError("@completionOptions.stream: is not available in batch mode")
        seen: dict[str, int] = {}
        for index, item in enumerate(self.requests or []):
            if item.custom_id is not None:
                if item.custom_id in seen:
                    raise ValueError(f"@requests[{index}].customId: repeats requests[{seen[item.custom_id]}].customId")
                seen[item.custom_id] = index
        return self


class TokenizeRequest(Body):
    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    text: NonEmptyStr


class EmbeddingRequest(Body):
    """Native: one `text`. Extension: `texts` (1..256), answered in input order."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(text="string", texts="array"))

    # fine-tuned embedding models have gpt:// URIs
    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("emb|gpt")})
    text: NonEmptyStr | None = None
    texts: list[NonEmptyStr] | None = Field(None, min_length=1, max_length=MAX_SYNC_TEXTS)
    dim: Int64 | None = Field(None, json_schema_extra=_replaced(POSITIVE_INT64))

    @model_validator(mode="after")
    def _text_or_texts(self) -> EmbeddingRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("@text: set exactly one of text and texts")
        return self

    @field_validator("dim")
    @classmethod
    def _dim_positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value


class EmbeddingAsyncRequest(EmbeddingRequest):
    """textEmbeddingAsync: one `text` or up to 10,000 `texts`, split into chunks across queue messages."""

    texts: list[NonEmptyStr] | None = Field(None, min_length=1, max_length=MAX_ASYNC_TEXTS)


class ClassificationSample(Body):
    text: NonEmptyStr
    label: NonEmptyStr


class FewShotClassificationRequest(Body):
    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("cls")})
    task_description: NonEmptyStr
    labels: list[NonEmptyStr] = Field(min_length=MIN_LABELS, max_length=MAX_LABELS, json_schema_extra={"uniqueItems": True})
    text: NonEmptyStr
    samples: list[ClassificationSample] | None = Field(None, description="Each sample's label is one of `labels`.")

    @field_validator("labels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a label")
        return value

    @model_validator(mode="after")
    def _known_sample_labels(self) -> FewShotClassificationRequest:
        for index, sample in enumerate(self.samples or []):
            if sample.label not in self.labels:
                raise ValueError(f"@samples[{index}].label: {sample.label!r} is not one of labels")
        return self


class TextClassificationRequest(Body):
    model_uri: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("cls", tuned=True)},
                                   description="A tuned classifier: `cls://<folder>/<model>/<version>@<suffix>`.")
    text: NonEmptyStr


def validate(model: type[Body], data: Any) -> Any:
    """Validate a request body; any problem becomes a 400 naming the first bad field."""
    if not isinstance(data, dict):
        raise BadRequestError.field("body", f"must be a JSON object, got {_json_type(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _bad_request(err) from None


def _bad_request(err: ValidationError) -> BadRequestError:
    issues = [_located(issue) for issue in err.errors(include_url=False, include_input=False)]
    field, rule = issues[0]
    extra = len(issues) - 1
    message = f"{field}: {rule}"
    if extra:
        message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    details = [{"@type": "field", "field": f, "description": r} for f, r in issues[:20]]
    return BadRequestError(message, details=details)


def _located(issue: dict[str, Any]) -> tuple[str, str]:
    """(field path, rule); a validator's "@sub.field: rule" message extends the path it was raised at."""
    field, rule = _field_path(issue["loc"]), _rule(issue)
    if rule.startswith("@") and ": " in rule:
        sub, rule = rule[1:].split(": ", 1)
        field = f"{field}{'' if sub.startswith('[') or not field else '.'}{sub}"
    return field or "body", rule


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part not in ("function-after", "function-before", "json-or-python"):
            if part.startswith("function-"):
                continue
            path += f".{part}" if path else part
    return path


def _rule(issue: dict[str, Any]) -> str:
    kind = issue["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = str(issue["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if message.startswith("Input should be"):
        message = "must be" + message[len("Input should be"):]
    message = message.replace("List should have", "must have").replace("String should have", "must have")
    return message.replace(" after validation", "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
