"""Response bodies, for documentation and the generated OpenAPI spec only.

Upstream answers pass through unchanged, so nothing at run time imports this module (keeping it out
of the handlers' cold start); `deploy.openapi` and the tests do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, RootModel
from pydantic.alias_generators import to_camel


class Response(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True)


class Usage(Response):
    input_text_tokens: str
    completion_tokens: str
    total_tokens: str


class Alternative(Response):
    message: dict[str, Any]
    status: str


class CompletionResult(Response):
    alternatives: list[Alternative]
    usage: Usage
    model_version: str


class CompletionResponse(Response):
    stream_media_type: ClassVar[str] = "application/x-ndjson"  # with stream: true, one of these per line

    result: CompletionResult


class Token(Response):
    id: str
    text: str
    special: bool


class TokenizeResponse(Response):
    tokens: list[Token]
    model_version: str


class EmbeddingResponse(Response):
    embedding: list[float]
    num_tokens: str
    model_version: str


class BatchEmbeddingResponse(Response):
    embeddings: list[list[float]]
    num_tokens: str
    model_version: str


class TextEmbeddingResponse(RootModel[EmbeddingResponse | BatchEmbeddingResponse]):
    """textEmbedding: one embedding for `text`, a list of them for `texts`."""

    model_config = ConfigDict(defer_build=True)


class Prediction(Response):
    label: str
    confidence: float


class ClassificationResponse(Response):
    predictions: list[Prediction]
    model_version: str
    input_tokens: str | None = None


class Status(Response):
    code: int
    message: str
    details: list[dict[str, Any]] = []


class Operation(Response):
    """An Operation as the operation service returns it; when done, exactly one of response and error."""

    id: str
    description: str
    created_at: str
    created_by: str
    modified_at: str
    done: bool
    metadata: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: Status | None = None
