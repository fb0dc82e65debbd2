"""Embedding function: textEmbedding (one `text` or up to 256 `texts`), textEmbeddingAsync (up to 10,000),
and the embedding queue's trigger."""

from typing import Any

from shared import runtime
from shared.native import services

OPERATIONS = {"textEmbedding": services.embed, "textEmbeddingAsync": "shared.jobs.operations:submit_embedding"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("embedding", OPERATIONS, event, context, jobs=("embedding", "shared.jobs.worker:consume"))
