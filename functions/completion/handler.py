"""Completion function: completion (buffered stream too), tokenize, tokenizeCompletion, completionAsync,
and the completion queue's trigger (the async workers)."""

from typing import Any

from shared import operations, runtime, services

OPERATIONS = {
    "completion": services.complete,
    "tokenize": services.tokenize,
    "tokenizeCompletion": services.tokenize_completion,
    "completionAsync": operations.submit_completion,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("completion", OPERATIONS, event, context, jobs="completion")
