"""Async operations, the HTTP side: completionAsync, textEmbeddingAsync, fewShotTextClassificationAsync
submit through `submit.submit_tasks`; GET /operations/{id} reads and cancel stops any job (batches too),
both only for the caller that created it or the admin caller (`access`): anyone else gets 404.

The queue side is `worker`, the timer side `poller`; what a caller sees is built by `views`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared import errors, logs
from shared.jobs import access
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
    model_uri = services.resolve_model(request.model_uri, "emb", inv.settings, inv.policy)
    inv.log_fields["model"] = model_uri
    texts = [request.text] if request.text is not None else list(request.texts or [])
    size = inv.settings.embedding_chunk_texts
    chunks = [{"modelUri": model_uri, "texts": texts[i:i + size], "dim": request.dim}
              for i in range(0, len(texts), size)]
    inv.log_fields["texts"] = len(texts)
    return submit_tasks("embedding", chunks, inv)


# -- read --------------------------------------------------------------------------------------------

def get(_: None, inv: Invocation) -> Reply:
    op_id = _operation_id(inv)
    store = job_store(inv.settings)
    item = access.visible(store.item(op_id), inv, "operation", op_id)
    inv.log_fields["operation_id"] = op_id
    return Reply(view(item, store, inv.settings, owner=access.owns(item, inv)))


def cancel(_: None, inv: Invocation) -> Reply:
    """Stop an operation: nothing new starts; upstream work is cancelled where it can be (the poller
    finishes cancelling a batch's upstream operations). A finished operation is returned unchanged.
    Someone else's operation is not found (404, as for an unknown id) and is left as it was."""
    op_id = _operation_id(inv)
    store = job_store(inv.settings)
    item = access.visible(store.item(op_id), inv, "operation", op_id)
    if item.get("state") != "done":
        if item.get("kind") == "batch-native" and item.get("upstream_id"):
            inv.client.cancel_operation(item["upstream_id"], inv.call)
        cancelled = {"code": 1, "message": "cancelled by the caller", "details": []}
        # a batch stays in the poller's index until its upstream operations are cancelled too
        # (and a job with another front door, until the poller has given that door what finished)
        store.finish(op_id, None, 0, cancelled, deactivate=item.get("kind") != "batch" and not item.get("door"))
        inv.log_fields["cancelled"] = True
        if item.get("limits") and item.get("kind") != "batch":  # a batch's is settled by its poller
            from shared.jobs import limits

            limits.release_job(item, inv.settings)  # a task still running settles by adding its real usage
    inv.log_fields["operation_id"] = op_id
    return Reply(view(store.item(op_id) or item, store, inv.settings, owner=access.owns(item, inv)))


def _operation_id(inv: Invocation) -> str:
    """The path's operation id, checked: only operation ids (never a task's or an index's key) reach the store."""
    op_id = inv.path_params.get("operationId", "")
    if not OPERATION_ID.match(op_id):
        raise errors.BadRequestError.field("operationId", "must be 8-64 lower-case letters and digits")
    return op_id



# -- dispatch by the real URL ------------------------------------------------------------------------

if TYPE_CHECKING:
    from typing import Any

CANCEL = "cancel"


def by_url(event: Any) -> Any:
    """The event with its operation and operationId taken from the real method and URL, never from the
    gateway's integration context: `GET /operations/X` reads; `POST /operations/X:cancel` (the colon may
    arrive as %3A or %3a) and upstream's `GET /operations/X:cancel` cancel; a plain POST is 405. A direct
    invocation (no URL) keeps the operation it names. Raises the ApiError to answer with."""
    from urllib.parse import unquote

    from shared import events

    if events.kind(event) != "http":
        return event
    try:
        request = events.parse_http(event)
    except errors.ApiError:
        return event  # the runtime answers the same error with the request's ids
    if not request.path:
        return event
    prefix = "/operations/"
    if not request.path.startswith(prefix):
        return event  # another route of the function (e.g. /v1/...): the route table decides
    segment = request.path[len(prefix):].rstrip("/")
    if not segment or "/" in segment:
        raise errors.NotFoundError(f"no route for {request.path}")
    op_id, colon, verb = unquote(segment).partition(":")
    if colon and verb != CANCEL:
        raise errors.NotFoundError(f"operations/{op_id}:{verb}: the operation service has no method {verb!r}; "
                                   f"use :{CANCEL}")
    if request.method == "GET":
        operation = CANCEL if colon else "get"
    elif request.method == "POST" and colon:
        operation = CANCEL
    else:
        raise errors.MethodNotAllowedError.allowing(
            f"{request.method} is not allowed on /operations/{op_id}; GET reads it, POST /operations/{op_id}:cancel "
            "cancels it", ["GET"])
    routed = dict(event)
    context = dict(event.get("requestContext") or {})
    context["apiGateway"] = {**(context.get("apiGateway") or {}), "operationContext": {"operation": operation}}
    routed["requestContext"] = context
    routed["pathParameters" if request.envelope == "1.0" else "pathParams"] = {"operationId": op_id}
    return routed


def refuse(err: errors.ApiError) -> Any:
    """An operation that answers `err` (what `by_url` raised), so the runtime renders it with the request's ids."""

    def refused(_: None, inv: Invocation) -> Reply:
        raise err

    return refused
