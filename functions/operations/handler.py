"""Operations function: GET /operations/{operationId} and cancel (POST, or upstream's GET form)."""

from typing import Any

from shared import runtime
from shared.jobs import operations

OPERATIONS = {"get": operations.get, "cancel": operations.cancel, "cancelGet": operations.cancel}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("operations", OPERATIONS, event, context)
