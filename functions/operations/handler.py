"""Operations function: GET /operations/{operationId} for every async job."""

from typing import Any

from shared import operations, runtime

OPERATIONS = {"get": operations.get}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("operations", OPERATIONS, event, context)
