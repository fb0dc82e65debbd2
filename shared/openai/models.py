"""What every OpenAI request body shares: snake_case fields as the wire has them, unknown fields refused
by name, and the same 400 that names the field as the native routes give (rendered in OpenAI's error
shape, with the field as `param`). Each surface's request model lives beside its translation
(chat.py, embeddings.py, ...) and is named on its route as "module:Class"."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared import errors
from shared.native.models import validate

__all__ = ["OpenAIBody", "check_function_name", "check_metadata", "describe_rules", "refuse_unsupported", "validate"]


class OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


def check_function_name(value: str) -> str:
    """A function tool's name, as OpenAI takes it (a validator's ValueError names the rule)."""
    if not 1 <= len(value) <= 64 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        raise ValueError("must be 1-64 letters, digits, underscores or dashes")
    return value


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's metadata rule: at most 16 pairs, keys at most 64 characters, values at most 512."""
    if value is not None:
        if len(value) > 16:
            raise ValueError("must have at most 16 keys")
        for key, item in value.items():
            if len(key) > 64 or len(item) > 512:
                raise ValueError(f"@{key}: keys are at most 64 characters, values at most 512")
    return value


def refuse_unsupported(request: BaseModel, default_only: dict[str, Any], refused: dict[str, str],
                       also_fine: dict[str, Any] | None = None) -> None:
    """The parameter table's rule: a DEFAULT_ONLY parameter set to anything but its no-op value (or the value
    `also_fine` names for it), or any REFUSED parameter set at all, is a 400 naming it."""
    given = request.model_fields_set
    for name, default in default_only.items():
        value = getattr(request, name)
        if name in given and value is not None and value != default and (also_fine or {}).get(name, default) != value:
            raise errors.BadRequestError.field(
                name, f"is not supported on this model (only {json.dumps(default)}, which changes nothing, "
                      "is accepted)")
    for name, reason in refused.items():
        if getattr(request, name) is not None:
            raise errors.BadRequestError.field(name, reason)


def describe_rules(schema: dict[str, Any], default_only: dict[str, Any], refused: dict[str, str]) -> None:
    """What depends on the model, which OpenAPI 3.0 cannot tie to a field's value: said in descriptions."""
    props = schema.get("properties", {})
    for name, default in default_only.items():
        props.get(name, {})["description"] = (f"Native models accept only {json.dumps(default)} (changes nothing); "
                                              "pass-through models take any value.")
    for name, reason in refused.items():
        props.get(name, {})["description"] = f"Native models: a 400 when set ({reason}); pass-through models take it."
    props.get("temperature", {})["description"] = "0-1 on native models (above 1 is a 400); 0-2 on pass-through models."
