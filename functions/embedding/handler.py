"""Embedding function: textEmbedding, one `text` or up to 256 `texts`."""

from typing import Any

from shared import runtime, services

OPERATIONS = {"textEmbedding": services.embed}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("embedding", OPERATIONS, event, context)
