"""Completion function: completion (buffered stream too), tokenize, tokenizeCompletion, completionAsync,
completionBatch, and the completion queue's trigger (async workers and batch starters)."""

from typing import Any

from shared import batches, operations, runtime, services

OPERATIONS = {
    "completion": services.complete,
    "tokenize": services.tokenize,
    "tokenizeCompletion": services.tokenize_completion,
    "completionAsync": operations.submit_completion,
    "completionBatch": batches.submit,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("completion", OPERATIONS, event, context, jobs="completion")
