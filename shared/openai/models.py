"""What every OpenAI request body shares: snake_case fields as the wire has them, unknown fields refused
by name, and the same 400 that names the field as the native routes give (rendered in OpenAI's error
shape, with the field as `param`). Each surface's request model lives beside its translation
(chat.py, embeddings.py, ...) and is named on its route as "module:Class"."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.native.models import validate

__all__ = ["OpenAIBody", "validate"]


class OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
