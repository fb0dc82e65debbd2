"""Async operations, the HTTP side: completionAsync, textEmbeddingAsync, fewShotTextClassificationAsync
submit through `submit.submit_tasks`; GET /operations/{id} reads and cancel stops any job (batches too).

The queue side is `worker`, the timer side `poller`; what a caller sees is built by `views`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import errors, logs
from shared.jobs.store import job_store
from shared.jobs.submit import OPERATION_ID, submit_tasks
from shared.jobs.views import view
from shared.native import services
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.native.models import CompletionRequest, EmbeddingAsyncRequest, FewShotClassificationRequest
    from shared.runtime import Invocation

log = logs.get_logger("operations")

# -- submit ------------------------------------------------------------------------------------------

def submit_completion(request: CompletionRequest, inv: Invocation) -> Reply:
    if request.stream:
        raise errors.BadRequestError.field("completionOptions.stream", "is not available in async mode")
    body = services.upstream_body(request, "gpt", inv)
    return submit_tasks("completion", [body], inv)


def submit_classification(request: FewShotClassificationRequest, inv: Invocation) -> Reply:
    return submit_tasks("classification", [services.upstream_body(request, "cls", inv)], inv)


def submit_embedding(request: EmbeddingAsyncRequest, inv: Invocation) -> Reply:
    model_uri = services.resolve_model(request.model_uri, "emb", inv.settings)
    inv.log_fields["model"] = model_uri
    texts = [request.text] if request.text is not None else list(request.texts or [])
    size = inv.settings.embedding_chunk_texts
    chunks = [{"modelUri": model_uri, "texts": texts[i:i + size], "dim": request.dim}
              for i in range(0, len(texts), size)]
    inv.log_fields["texts"] = len(texts)
    return submit_tasks("embedding", chunks, inv)


# -- read --------------------------------------------------------------------------------------------

def get(_: None, inv: Invocation) -> Reply:
    op_id = inv.path_params.get("operationId", "")
    if not OPERATION_ID.match(op_id):
        raise errors.BadRequestError.field("operationId", "must be 8-64 lower-case letters and digits")
    store = job_store(inv.settings)
    item = store.item(op_id)
    if item is None or "#" in op_id:
        raise errors.NotFoundError(f"operation {op_id} not found")
    inv.log_fields["operation_id"] = op_id
    return Reply(view(item, store, inv.settings))


def cancel(_: None, inv: Invocation) -> Reply:
    """Stop an operation: nothing new starts; upstream work is cancelled where it can be (the poller
    finishes cancelling a batch's upstream operations). A finished operation is returned unchanged."""
    op_id = inv.path_params.get("operationId", "")
    if not OPERATION_ID.match(op_id):
        raise errors.BadRequestError.field("operationId", "must be 8-64 lower-case letters and digits")
    store = job_store(inv.settings)
    item = store.item(op_id)
    if item is None:
        raise errors.NotFoundError(f"operation {op_id} not found")
    if item.get("state") != "done":
        if item.get("kind") == "batch-native" and item.get("upstream_id"):
            inv.client.cancel_operation(item["upstream_id"], inv.call)
        cancelled = {"code": 1, "message": "cancelled by the caller", "details": []}
        # a batch stays in the poller's index until its upstream operations are cancelled too
        # (and a job with another front door, until the poller has given that door what finished)
        store.finish(op_id, None, 0, cancelled, deactivate=item.get("kind") != "batch" and not item.get("door"))
        inv.log_fields["cancelled"] = True
    inv.log_fields["operation_id"] = op_id
    return Reply(view(store.item(op_id) or item, store, inv.settings))
