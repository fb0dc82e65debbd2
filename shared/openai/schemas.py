"""Response bodies of the /v1 routes, for documentation and the generated OpenAPI spec only.

The answers are built as plain dicts (shared/openai/*.py), so nothing at run time imports this module.
Class names become the spec's component names, shared with the native schemas: hence the OpenAI prefix.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class OpenAIResponse(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class OpenAIErrorDetail(OpenAIResponse):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(OpenAIResponse):
    """Every /v1 error: {"error": {message, type, param, code}}; our request id is the x-request-id header."""

    error: OpenAIErrorDetail


# -- embeddings and models (shared/openai/embeddings.py, shared/openai/catalog.py) --

class OpenAIEmbedding(OpenAIResponse):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # a string with encoding_format "base64": float32 little-endian


class OpenAIEmbeddingUsage(OpenAIResponse):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingList(OpenAIResponse):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIEmbeddingUsage


class OpenAIModel(OpenAIResponse):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(OpenAIResponse):
    object: Literal["list"]
    data: list[OpenAIModel]


# -- chat completions (POST /v1/chat/completions) --

class ChatCompletionFunctionCall(OpenAIResponse):
    name: str
    arguments: str  # a JSON object, as text


class ChatCompletionToolCall(OpenAIResponse):
    id: str
    type: Literal["function"]
    function: ChatCompletionFunctionCall


class ChatCompletionMessage(OpenAIResponse):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionToolCall] | None = None


class ChatCompletionChoice(OpenAIResponse):
    index: int
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]
    logprobs: Any = None


class CompletionTokensDetails(OpenAIResponse):
    reasoning_tokens: int


class ChatCompletionUsage(OpenAIResponse):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(OpenAIResponse):
    """The answer of POST /v1/chat/completions. With `stream: true` the body is instead a text/event-stream
    of `chat.completion.chunk` objects (`data: {...}` events, then `data: [DONE]`)."""

    stream_media_type: ClassVar[str] = "text/event-stream"  # the spec documents the stream from it

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage
    system_fingerprint: str | None = None
