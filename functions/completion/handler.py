"""Completion function: completion (buffered stream too), tokenize, tokenizeCompletion, completionAsync,
completionBatch, OpenAI's POST /v1/chat/completions, and the completion queue's trigger (async workers and
batch starters)."""

from typing import Any

from shared import runtime
from shared.native import services

OPERATIONS = {
    "completion": services.complete,
    "tokenize": services.tokenize,
    "tokenizeCompletion": services.tokenize_completion,
    "completionAsync": "shared.jobs.operations:submit_completion",  # imported on first use
    "completionBatch": "shared.jobs.batches:submit",
    "createChatCompletion": "shared.openai.chat:create",  # the OpenAI translation, only when /v1 is called
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("completion", OPERATIONS, event, context, jobs=("completion", "shared.jobs.worker:consume"))
