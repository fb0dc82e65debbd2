"""Response bodies of the /v1/responses routes, for documentation and the generated OpenAPI spec only (the
answers are built as plain dicts in response_object.py and responses_api.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from shared.openai.batch_schemas import _LIMIT_100, _query
from shared.openai.schemas import OpenAIResponse


class ResponseOutputText(OpenAIResponse):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class ResponseOutputMessage(OpenAIResponse):
    id: str
    type: Literal["message"]
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"]
    content: list[ResponseOutputText]


class ResponseFunctionCall(OpenAIResponse):
    id: str
    type: Literal["function_call"]
    status: Literal["in_progress", "completed", "incomplete"]
    call_id: str
    name: str
    arguments: str  # a JSON object, as text
    namespace: str | None = None


class ResponseInputTokensDetails(OpenAIResponse):
    cached_tokens: int


class ResponseOutputTokensDetails(OpenAIResponse):
    reasoning_tokens: int


class ResponseUsage(OpenAIResponse):
    input_tokens: int
    input_tokens_details: ResponseInputTokensDetails
    output_tokens: int
    output_tokens_details: ResponseOutputTokensDetails
    total_tokens: int


class ResponseError(OpenAIResponse):
    code: str
    message: str


class ResponseIncompleteDetails(OpenAIResponse):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(OpenAIResponse):
    """A response. With `stream: true` the body is instead a text/event-stream of typed events
    (`response.created` ... `response.completed` / `response.incomplete` / `response.failed`)."""

    stream_media_type: ClassVar[str] = "text/event-stream"

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
    background: bool
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: ResponseIncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[ResponseOutputMessage | ResponseFunctionCall]
    parallel_tool_calls: bool
    previous_response_id: str | None
    store: bool
    temperature: float | None
    text: dict[str, Any]
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: str
    usage: ResponseUsage | None
    metadata: dict[str, str]


class ResponseDeleted(OpenAIResponse):
    id: str
    object: Literal["response"]
    deleted: bool


class ResponseInputTokens(OpenAIResponse):
    object: Literal["response.input_tokens"]
    input_tokens: int


class ResponseItemList(OpenAIResponse):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


SPEC_EXTRAS: dict[str, dict[str, Any]] = {
    "listResponseInputItems": {"parameters": [
        _query("limit", _LIMIT_100, "1-100 (default 20)"),
        _query("after", {"type": "string"}, "an input item id of this response: the page starts after it"),
        _query("order", {"type": "string", "enum": ["asc", "desc"]}, "by position in the input (default desc)")]},
}
