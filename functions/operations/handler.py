"""Operations function: one path item, /operations/{operationId}, for GET and POST.

What to do is decided from the real method and URL (`operations.by_url`), never from the gateway's
integration context, so a mis-tagged route cannot turn a read into a cancel: `GET /operations/X`
reads; `POST /operations/X:cancel` (or `%3A`) and upstream's `GET /operations/X:cancel` cancel; a
plain `POST /operations/X` is 405. It also serves the OpenAI Files and Batch API (/v1/files,
/v1/batches), whose batches are jobs like any other, the Usage and Costs API (/v1/organization/...)
over the usage ledger, and the admin API for caller keys (/admin/keys); `by_url` leaves those paths to
the route table.
"""

from typing import Any

from shared import errors, runtime
from shared.jobs import operations

OPERATIONS = {
    "get": operations.get, "cancel": operations.cancel,
    # OpenAI Files and Batch API (imported on first use)
    "createFile": "shared.openai.files:create", "listFiles": "shared.openai.files:list_files",
    "retrieveFile": "shared.openai.files:retrieve", "deleteFile": "shared.openai.files:delete",
    "downloadFile": "shared.openai.files:content",
    "createBatch": "shared.openai.batches:create", "listBatches": "shared.openai.batches:list_batches",
    "retrieveBatch": "shared.openai.batches:retrieve", "cancelBatch": "shared.openai.batches:cancel",
    # caller keys as data (the admin API)
    "createKey": "shared.jobs.keys:create", "listKeys": "shared.jobs.keys:list_keys",
    "retrieveKey": "shared.jobs.keys:retrieve", "updateKey": "shared.jobs.keys:update",
    "revokeKey": "shared.jobs.keys:revoke", "rotateKey": "shared.jobs.keys:rotate",
    # OpenAI Usage and Costs API (the usage ledger)
    "usageCompletions": "shared.openai.usage_api:completions", "usageEmbeddings": "shared.openai.usage_api:embeddings",
    "usageCosts": "shared.openai.usage_api:costs",
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return runtime.serve("operations", OPERATIONS, operations.by_url(event), context)
    except errors.ApiError as refusal:  # every route of this function answers it, with the request's ids
        return runtime.serve("operations", dict.fromkeys(OPERATIONS, operations.refuse(refusal)), event, context)
