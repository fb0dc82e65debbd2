"""Response bodies of the /v1 routes, for documentation and the generated OpenAPI spec only.

The answers are built as plain dicts (shared/openai/*.py), so nothing at run time imports this module.
Class names become the spec's component names, shared with the native schemas: hence the OpenAI prefix.
"""

from __future__ import annotations

from typing import Literal

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
