"""Completion function: completion (buffered stream too), tokenize, tokenizeCompletion."""

from typing import Any

from shared import runtime, services

OPERATIONS = {
    "completion": services.complete,
    "tokenize": services.tokenize,
    "tokenizeCompletion": services.tokenize_completion,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("completion", OPERATIONS, event, context)
