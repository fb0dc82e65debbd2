"""Embedding function: textEmbedding (one `text` or up to 256 `texts`), textEmbeddingAsync (up to 10,000),
OpenAI's POST /v1/embeddings, and the embedding queue's trigger."""

from typing import Any

from shared import runtime
from shared.native import services

OPERATIONS = {
    "textEmbedding": services.embed,
    "textEmbeddingAsync": "shared.jobs.operations:submit_embedding",  # imported on first use
    "createEmbedding": "shared.openai.embeddings:create",  # /v1: a native cold start does not pay for it
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("embedding", OPERATIONS, event, context, jobs=("embedding", "shared.jobs.worker:consume"))
