"""Completion function: completion (buffered stream too), tokenize, tokenizeCompletion, completionAsync,
completionBatch, OpenAI's POST /v1/chat/completions and /v1/responses (all its routes), and the completion
queue's trigger (async workers, batch starters and background responses)."""

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
    "createResponse": "shared.openai.responses_api:create",
    "countResponseInputTokens": "shared.openai.responses_api:input_tokens",
    "retrieveResponse": "shared.openai.responses_api:retrieve",
    "deleteResponse": "shared.openai.responses_api:delete",
    "cancelResponse": "shared.openai.responses_api:cancel",
    "listResponseInputItems": "shared.openai.responses_api:input_items",
    # /v1/models and the 404 for any other /v1 path (shared/routes.py says why this function serves them)
    "listModels": "shared.openai.catalog:list_models",
    "retrieveModel": "shared.openai.catalog:retrieve_model",
    "notFoundGet": "shared.openai.catalog:not_found",
    "notFoundPost": "shared.openai.catalog:not_found",
    "notFoundDelete": "shared.openai.catalog:not_found",
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("completion", OPERATIONS, event, context, jobs=("completion", "shared.jobs.worker:consume"))
