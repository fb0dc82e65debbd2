"""Batch completion: inline batches over upstream completionAsync, and native completionBatch tasks.

Inline batch (`requests`, up to 10,000): the submission is split into chunks sent through the
completion queue. A worker starts one upstream async operation per request, paced to the quota
(FM_ASYNC_START_RPS, FM_ASYNC_START_PER_HOUR) and records each upstream id in an item record
(`<op>#i<n>`, written once, conditionally). The timer-triggered `poller` takes it from there.
A chunk whose message ends in the dead-letter queue fails only its own requests (`fail_chunk`), so
the rest of the batch finishes. Native batches (`sourceDatasetId`) are started upstream and tracked
through their upstream operation.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs.store import job_store, payload_key
from shared.jobs.submit import new_operation_id, submit_tasks
from shared.jobs.views import view
from shared.native import services
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.native.models import BatchCompletionRequest
    from shared.runtime import Invocation

log = logs.get_logger("batches")


CHUNK_ITEMS = 100  # requests per queue message
START_CHECK_EVERY = 10  # look whether the operation ended (cancelled, failed) before every 10th start
CHUNKED_KINDS = ("batch",)  # jobs whose tasks are chunks of requests, each request settled on its own


# -- submit ------------------------------------------------------------------------------------------

def submit(request: BatchCompletionRequest, inv: Invocation) -> Reply:
    model_uri = services.resolve_model(request.model_uri, "gpt", inv.settings, inv.policy)
    inv.log_fields["model"] = model_uri
    if request.source_dataset_id is not None:
        return _submit_native(request, model_uri, inv)
    shared_options = request.completion_options.upstream() if request.completion_options else {}
    json_schema = request.json_schema.upstream() if request.json_schema is not None else None
    extras = {k: v for k, v in (("jsonObject", request.json_object), ("jsonSchema", json_schema)) if v is not None}
    items = []
    for index, item in enumerate(request.requests or []):
        body: dict[str, Any] = {"modelUri": model_uri, "messages": [m.upstream() for m in item.messages], **extras}
        options = {**shared_options, **(item.completion_options.upstream() if item.completion_options else {})}
        if options:
            body["completionOptions"] = options
        items.append({"index": index, "customId": item.custom_id if item.custom_id is not None else str(index),
                      "body": body})
    chunks = [{"items": items[i:i + CHUNK_ITEMS]} for i in range(0, len(items), CHUNK_ITEMS)]
    inv.log_fields["requests"] = len(items)
    return submit_tasks("batch", chunks, inv, queue_kind="completion", extra={"model": model_uri},
                        numbers={"items_total": len(items), "items_done": 0, "items_failed": 0,
                                 "chunk_items": CHUNK_ITEMS})


def _submit_native(request: BatchCompletionRequest, model_uri: str, inv: Invocation) -> Reply:
    body = request.upstream()
    body["modelUri"] = model_uri
    body.pop("requests", None)
    answer = inv.client.completion_batch(body, inv.call)
    upstream = answer.body if isinstance(answer.body, dict) else {}
    if not upstream.get("id"):
        raise errors.UpstreamError("upstream completionBatch answered without an operation id")
    store = job_store(inv.settings)
    op_id = new_operation_id()
    metadata = upstream.get("metadata") or {}
    item = store.create(op_id, "batch-native", "Batch Completion", inv.caller, [], extra={
        "upstream_id": str(upstream["id"]), "task_id": str(metadata.get("taskId", "")),
        "task_status": str(metadata.get("taskStatus", "CREATED"))},
        numbers={"completed_batches": int(metadata.get("completedBatches", 0) or 0),
                 "total_batches": int(metadata.get("totalBatches", 0) or 0)})
    inv.log_fields.update(operation_id=op_id, upstream_operation_id=upstream["id"])
    return Reply(view(item))


# -- the worker: start upstream operations for one chunk ---------------------------------------------

class HourlyWindow:
    """At most `limit` events in any 3600 s, per instance (the async-start quota is hourly too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: collections.deque[float] = collections.deque()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = clock.monotonic()
            while self.events and self.events[0] <= now - 3600:
                self.events.popleft()
            if len(self.events) >= self.limit:
                return False
            self.events.append(now)
            return True


_windows: dict[int, HourlyWindow] = {}
_windows_lock = threading.Lock()


def hourly(limit: int) -> HourlyWindow:
    """The instance-wide hourly window for this limit (shared across warm invocations)."""
    with _windows_lock:
        return _windows.setdefault(limit, HourlyWindow(limit))


def reset_windows() -> None:
    """Forget every hourly window (tests; a new instance starts with none)."""
    with _windows_lock:
        _windows.clear()


class QuotaDeferred(Exception):
    """The hourly start quota is used up: the chunk is sent again, delayed, instead of failing."""


def start_chunk(op_id: str, payload: dict[str, Any], inv: Invocation) -> dict[str, Any]:
    """Start an upstream async operation for each request of the chunk not started yet.

    Starts run on a small bounded pool (services.fan_out, FM_MAX_CONCURRENCY threads) within the
    instance's pacer, so the upstream call and the record write of one request overlap the next ones'
    pacing slots instead of delaying them. Each request is started and recorded by the thread that took
    it; when one start gives the chunk back (429, 503, a transient error, the deadline, the hourly
    quota) or sees the operation done, no further start begins, and the ones already past that point
    (at most one per thread) finish and are recorded before the error reaches the worker (fan_out's
    pool is shut down, waiting, before it raises). The operation is looked at before every
    START_CHECK_EVERY-th start, and no start begins during that look.
    """
    store = job_store(inv.settings)
    items = payload["items"]
    existing = store.items(op_id, [item["index"] for item in items])
    todo = [item for item in items if item["index"] not in existing]  # started (or refused) before: never twice
    window = hourly(inv.settings.async_start_per_hour)
    pacer = services.pacer("async-start", inv.settings.async_start_rps)
    # Taking a turn, and every START_CHECK_EVERY-th turn's look at the operation, happen under `gate`: while
    # one thread reads the operation no other start begins, so once it is seen done nothing more starts
    # (only the turns taken before that look, already under way, finish).
    gate = threading.Lock()
    turns = {"taken": 0}
    halt = threading.Event()  # set on the first error or on seeing the operation done: start nothing more

    def start_one(item: dict[str, Any]) -> str | None:
        """"started", "refused" (upstream's 4xx, recorded as this request's error), or None (not started)."""
        try:
            with gate:
                if halt.is_set():
                    return None
                check, turns["taken"] = turns["taken"] % START_CHECK_EVERY == 0, turns["taken"] + 1
                if check and (store.item(op_id) or {}).get("state") == "done":  # cancelled or failed meanwhile
                    halt.set()
                    return None
            if not window.take():
                raise QuotaDeferred(f"hourly start quota ({inv.settings.async_start_per_hour}) reached")
            pacer.acquire(inv.call)  # past here the start goes on: it holds its hourly and per-second slots
            try:
                answer = inv.client.completion_async(item["body"], inv.call)
            except errors.ApiError as err:
                if 400 <= err.status < 500 and err.status != 429:  # this request is bad; the others go on
                    store.item_finished(op_id, item["index"], item["customId"], err.to_status(), True,
                                        from_state=None)
                    return "refused"
                raise
            upstream_id = (answer.body or {}).get("id") if isinstance(answer.body, dict) else None
            if not upstream_id:
                raise errors.UpstreamError("upstream completionAsync answered without an operation id")
            store.item_started(op_id, item["index"], str(upstream_id), item["customId"])
            return "started"
        except BaseException:
            halt.set()
            raise

    # any error leaves fan_out as an exception, so a halt seen after it returns means the operation was done
    outcomes = collections.Counter(services.fan_out(start_one, todo, inv.settings.max_concurrency) if todo else [])
    result = {"started": outcomes["started"], "refused": outcomes["refused"]}
    return {**result, "stopped": True} if halt.is_set() else result


# -- the dead-letter side: a chunk the queue gave up on --------------------------------------------

def fail_chunk(op_id: str, number: int, operation: dict[str, Any], reason: dict[str, Any], store: Any) -> int:
    """Record every request of chunk `number` that has no item record yet as failed with `reason` (one
    record each, written once, so a redelivered dead letter counts nothing twice). Requests the chunk
    started, or upstream refused, keep their own records. Returns how many were recorded now."""
    requests = _chunk_requests(op_id, number, operation, store)
    existing = store.items(op_id, list(requests))
    failed = 0
    for index, custom_id in requests.items():
        if index not in existing and store.item_finished(op_id, index, custom_id, reason, True, from_state=None):
            failed += 1
    return failed


def _chunk_requests(op_id: str, number: int, operation: dict[str, Any], store: Any) -> dict[int, str]:
    """The chunk's requests, index -> customId, from its stored payload. If the payload itself cannot be
    parsed, or is gone (no retry brings it back), from the chunk's position, with the request's index as its
    customId (the default customId; the caller's own ids were in that payload only). A store that does not
    answer raises, so the dead letter is tried again."""
    from shared.jobs.store import MissingObjectError

    try:
        items = json.loads(store.get_object(payload_key(op_id, number)))["items"]
        return {int(item["index"]): str(item["customId"]) for item in items}
    except (ValueError, KeyError, TypeError, MissingObjectError):
        log.error("a dead chunk's payload is unreadable or gone; its requests are named by index",
                  extra={"operation_id": op_id, "task": number})
    size = int(operation.get("chunk_items", CHUNK_ITEMS))
    total = int(operation.get("items_total", 0))
    return {index: str(index) for index in range(number * size, min((number + 1) * size, total))}
