"""Response bodies of the /v1 routes, for documentation and the generated OpenAPI spec only.

The handlers build their answers as plain dicts, so nothing at run time imports this module; the
spec generator finds each route's class through routes.model(route, "response").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Response(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


# -- chat completions (POST /v1/chat/completions) --

class ChatCompletionFunctionCall(Response):
    name: str
    arguments: str  # a JSON object, as text


class ChatCompletionToolCall(Response):
    id: str
    type: Literal["function"]
    function: ChatCompletionFunctionCall


class ChatCompletionMessage(Response):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionToolCall] | None = None


class ChatCompletionChoice(Response):
    index: int
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]
    logprobs: Any = None


class CompletionTokensDetails(Response):
    reasoning_tokens: int


class ChatCompletionUsage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(Response):
    """The answer of POST /v1/chat/completions. With `stream: true` the body is instead a text/event-stream
    of `chat.completion.chunk` objects (`data: {...}` events, then `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: ChatCompletionUsage
    system_fingerprint: str | None = None
