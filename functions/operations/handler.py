"""Operations function: GET /operations/{operationId} and cancel (POST, or upstream's GET form), and the
OpenAI Files and Batch API (/v1/files, /v1/batches), whose batches are jobs like any other."""

from typing import Any

from shared import runtime
from shared.jobs import operations

OPERATIONS = {
    "get": operations.get, "cancel": operations.cancel, "cancelGet": operations.cancel,
    # OpenAI Files and Batch API (imported on first use)
    "createFile": "shared.openai.files:create", "listFiles": "shared.openai.files:list_files",
    "retrieveFile": "shared.openai.files:retrieve", "deleteFile": "shared.openai.files:delete",
    "downloadFile": "shared.openai.files:content",
    "createBatch": "shared.openai.batches:create", "listBatches": "shared.openai.batches:list_batches",
    "retrieveBatch": "shared.openai.batches:retrieve", "cancelBatch": "shared.openai.batches:cancel",
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("operations", OPERATIONS, event, context)
