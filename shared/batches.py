"""Batch completion: inline batches over upstream completionAsync, native completionBatch tasks, and
the poller that drives every batch (and every stuck job) to an end.

Inline batch (`requests`, up to 10,000): the submission is split into chunks sent through the
completion queue. A worker starts one upstream async operation per request, paced to the quota
(FM_ASYNC_START_RPS, FM_ASYNC_START_PER_HOUR) and records each upstream id in an item record
(`<op>#i<n>`, written once, conditionally). The timer-triggered poller then, within its deadline:
polls the items that are due (paced to FM_OPERATION_GET_RPS), records each result or error with one
conditional transaction (so two pollers never count an item twice), and when every item is settled
writes the results as one JSON Lines object (`{"customId", "response"|"error"}` per line, in input
order) and finishes the operation. A poller holds a short lease per batch, so two pollers share the
work rather than repeat it. Native batches are tracked through their upstream operation.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from typing import Any

from shared import errors, logs, services
from shared.config import Settings
from shared.jobs import item_id, job_store, task_id
from shared.models import BatchCompletionRequest
from shared.responses import Reply
from shared.runtime import Invocation

log = logs.get_logger("batches")

CHUNK_ITEMS = 100  # requests per queue message
BATCH_RESPONSE_TYPE = "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.BatchCompletionResponse"
POLL_MARGIN_S = 1.0  # stop polling this long before the invocation's deadline
FIRST_POLL_S, MAX_POLL_INTERVAL_S = 1.0, 30.0
POLLER_LEASE_S = 120.0


# -- submit ------------------------------------------------------------------------------------------

def submit(request: BatchCompletionRequest, inv: Invocation) -> Reply:
    from shared import operations

    model_uri = services.resolve_model(request.model_uri, "gpt", inv.settings)
    inv.log_fields["model"] = model_uri
    if request.source_dataset_id is not None:
        return _submit_native(request, model_uri, inv)
    shared_options = request.completion_options.upstream() if request.completion_options else {}
    extras = {k: v for k, v in (("jsonObject", request.json_object), ("jsonSchema", request.json_schema)) if v is not None}
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
    return operations.submit_tasks("batch", chunks, inv, queue_kind="completion",
                                   numbers={"items_total": len(items), "items_done": 0, "items_failed": 0})


def _submit_native(request: BatchCompletionRequest, model_uri: str, inv: Invocation) -> Reply:
    from shared import operations

    body = request.upstream()
    body["modelUri"] = model_uri
    body.pop("requests", None)
    answer = inv.client.completion_batch(body, inv.call)
    upstream = answer.body if isinstance(answer.body, dict) else {}
    if not upstream.get("id"):
        raise errors.UpstreamError("upstream completionBatch answered without an operation id")
    store = job_store(inv.settings)
    op_id = operations.new_operation_id()
    metadata = upstream.get("metadata") or {}
    item = store.create(op_id, "batch-native", "Batch Completion", inv.caller, [], extra={
        "upstream_id": str(upstream["id"]), "task_id": str(metadata.get("taskId", "")),
        "task_status": str(metadata.get("taskStatus", "CREATED"))},
        numbers={"completed_batches": int(metadata.get("completedBatches", 0) or 0),
                 "total_batches": int(metadata.get("totalBatches", 0) or 0)})
    inv.log_fields.update(operation_id=op_id, upstream_operation_id=upstream["id"])
    return Reply(view(item))


# -- the view --------------------------------------------------------------------------------------

def task_status(item: dict[str, Any]) -> str:
    if item.get("kind") == "batch-native":
        return item.get("task_status", "CREATED")
    if item.get("state") == "queued":
        return "PENDING"
    if item.get("state") != "done":
        return "IN_PROGRESS"
    if item.get("error"):
        return "CANCELED" if json.loads(item["error"]).get("code") == 1 else "FAILED"
    return "COMPLETED"


def view(item: dict[str, Any], store: Any = None, settings: Settings | None = None) -> dict[str, Any]:
    from shared.operations import operation_view

    base = operation_view(item)  # without a store: no result is loaded; the batch response is built below
    native = item.get("kind") == "batch-native"
    base["metadata"] = {
        "taskId": item.get("task_id") or item["id"], "taskStatus": task_status(item),
        "completedBatches": str(item.get("completed_batches" if native else "items_done", 0)),
        "totalBatches": str(item.get("total_batches" if native else "items_total", 0)),
    }
    if not native:
        base["metadata"]["failedRequests"] = str(item.get("items_failed", 0))
    if item.get("state") == "done" and not item.get("error"):
        response: dict[str, Any] = {"@type": BATCH_RESPONSE_TYPE, "taskId": base["metadata"]["taskId"],
                                    "taskStatus": "COMPLETED"}
        if native:
            response["resultDatasetId"] = item.get("result_dataset_id", "")
        else:
            response.update(succeeded=str(int(item.get("items_total", 0)) - int(item.get("items_failed", 0))),
                            failed=str(item.get("items_failed", 0)), sizeBytes=str(item.get("result_size", 0)))
            if store is not None and settings is not None and item.get("result_key"):
                response["resultUrl"] = store.presign(item["result_key"], settings.presign_ttl_s)
                response["urlExpiresInSeconds"] = str(settings.presign_ttl_s)
        base["response"] = response
    return base


# -- the worker: start upstream operations for one chunk ---------------------------------------------

class HourlyWindow:
    """At most `limit` events in any 3600 s, per instance (the async-start quota is hourly too)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.events: collections.deque[float] = collections.deque()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
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


class QuotaDeferred(Exception):
    """The hourly start quota is used up: the chunk is sent again, delayed, instead of failing."""


def start_chunk(op_id: str, payload: dict[str, Any], inv: Invocation) -> dict[str, Any]:
    """Start an upstream async operation for each request of the chunk not started yet."""
    store = job_store(inv.settings)
    items = payload["items"]
    existing = store.items(op_id, [item["index"] for item in items])
    started = refused = 0
    for position, item in enumerate(items):
        if item["index"] in existing:
            continue  # started (or refused) by an earlier delivery: never twice
        if position % 10 == 0:
            operation = store.item(op_id) or {}
            if operation.get("state") == "done":  # cancelled or failed meanwhile: start nothing more
                return {"started": started, "refused": refused, "stopped": True}
        if not hourly(inv.settings.async_start_per_hour).take():
            raise QuotaDeferred(f"hourly start quota ({inv.settings.async_start_per_hour}) reached")
        services.pacer("async-start", inv.settings.async_start_rps).acquire(inv.call)
        try:
            answer = inv.client.completion_async(item["body"], inv.call)
        except errors.ApiError as err:
            if 400 <= err.status < 500 and err.status != 429:  # this request is bad; the others go on
                store.item_finished(op_id, item["index"], item["customId"], err.to_status(), True, from_state=None)
                refused += 1
                continue
            raise
        upstream_id = (answer.body or {}).get("id") if isinstance(answer.body, dict) else None
        if not upstream_id:
            raise errors.UpstreamError("upstream completionAsync answered without an operation id")
        store.item_started(op_id, item["index"], str(upstream_id), item["customId"])
        started += 1
    return {"started": started, "refused": refused}


# -- the poller --------------------------------------------------------------------------------------

def poll(inv: Invocation, worker: str) -> dict[str, Any]:
    """One poller run: walk the active operations until the deadline; safe to run several at once."""
    store = job_store(inv.settings)
    summary: collections.Counter[str] = collections.Counter()
    for op_id in store.active_ids():
        if inv.call.remaining() < POLL_MARGIN_S:
            summary["deadline"] += 1
            break
        operation = store.item(op_id)
        if operation is None:
            store.deactivate(op_id)
            continue
        if not store.lease(op_id, "poll", worker, min(POLLER_LEASE_S, max(inv.call.remaining(), 1) + 5)):
            summary["leased-elsewhere"] += 1
            continue
        try:
            kind = operation.get("kind")
            if kind == "batch":
                _poll_batch(operation, store, inv, summary)
            elif kind == "batch-native":
                _poll_native(operation, store, inv, summary)
            else:
                _sweep_job(operation, store, inv, summary)
        except errors.RateLimitedError:  # the local pacer found no slot before the deadline
            summary["deadline"] += 1
            break
        except errors.ApiError as err:
            log.warning("poller could not advance an operation", extra={"operation_id": op_id, "error": err.message})
            summary["errors"] += 1
        finally:
            store.unlease(op_id, "poll", worker)
    inv.log_fields.update(poller=dict(summary))
    return dict(summary)


def _poll_batch(operation: dict[str, Any], store: Any, inv: Invocation, summary: collections.Counter[str]) -> None:
    op_id, total = operation["id"], int(operation.get("items_total", 0))
    records = store.items(op_id, list(range(total)))  # read once a round and kept current below
    cancelled = operation.get("state") == "done"
    now = time.time()

    def settle(index: int, record: dict[str, Any], outcome: dict[str, Any], failed: bool) -> bool:
        if store.item_finished(op_id, index, record["custom_id"], outcome, failed):
            records[index] = {**record, "state": "done", "failed": failed,
                              "outcome": json.dumps(outcome, ensure_ascii=False)}
            return True
        records.update(store.items(op_id, [index]))  # recorded already: take what the store holds
        return False

    for index, record in sorted(records.items()):
        if record.get("state") == "done" or (not cancelled and float(record.get("next_poll_at", 0)) > now):
            continue
        if inv.call.remaining() < POLL_MARGIN_S:
            summary["deadline"] += 1
            break
        try:
            services.pacer("operation-get", inv.settings.operation_get_rps).acquire(_before_margin(inv))
        except errors.RateLimitedError:  # no call slot left before the deadline
            summary["deadline"] += 1
            break
        try:
            answer = (inv.client.cancel_operation if cancelled else inv.client.get_operation)(record["upstream_id"], inv.call)
        except errors.NotFoundError as err:  # upstream keeps operations 3 days
            settle(index, record, err.to_status(), True)
            summary["items-lost"] += 1
            continue
        except errors.ApiError as err:
            if err.retryable or err.status >= 500:
                summary["poll-errors"] += 1
                continue
            raise
        upstream = answer.body if isinstance(answer.body, dict) else {}
        if cancelled and not upstream.get("done"):
            upstream = {"done": True, "error": {"code": 1, "message": "cancelled by the caller", "details": []}}
        if upstream.get("done"):
            failed = "error" in upstream
            outcome = upstream["error"] if failed else upstream.get("response", {})
            if settle(index, record, outcome, failed):
                summary["items-finished"] += 1
        else:
            polls = int(record.get("polls", 0)) + 1
            store.set_fields(item_id(op_id, index), {"polls": polls, "next_poll_at": time.time() + min(
                MAX_POLL_INTERVAL_S, FIRST_POLL_S * 1.5 ** polls)})
            summary["items-pending"] += 1
    if cancelled:
        if all(records.get(i, {}).get("state", "done") == "done" for i in range(total)):
            store.deactivate(op_id)
        return
    _requeue_if_stuck(operation, store, inv, summary)
    # progress is counted from the item records (never a separate counter that a crash could skew);
    # only this lease holder writes it, and records only move forward, so it never goes back.
    # (A request a worker refused during this round is counted in the next one.)
    settled = [r for r in records.values() if r.get("state") == "done"]
    counts = {"items_done": len(settled), "items_failed": sum(1 for r in settled if r.get("failed"))}
    if counts["items_done"] != int(operation.get("items_done", 0)) or counts["items_failed"] != int(operation.get("items_failed", 0)):
        store.set_fields(op_id, counts)
    fresh = {**operation, **counts, **{k: v for k, v in (store.item(op_id) or {}).items() if k in ("state", "tasks_done")}}
    if fresh.get("state") != "done" and len(settled) >= total and int(fresh.get("tasks_done", 0)) >= int(operation.get("tasks_total", 0)):
        _finish_batch(fresh, records, store, summary)


def _before_margin(inv: Invocation) -> Any:
    """The invocation's call settings with the deadline moved up by the poller's margin."""
    from shared.client import Call

    return Call(deadline=inv.call.deadline - POLL_MARGIN_S, client_request_id=inv.call.client_request_id)


def _finish_batch(operation: dict[str, Any], records: dict[int, dict[str, Any]], store: Any,
                  summary: collections.Counter[str]) -> None:
    op_id, total = operation["id"], int(operation.get("items_total", 0))
    lines = []
    for index in range(total):
        record = records[index]
        key = "error" if record.get("failed") else "response"
        lines.append(json.dumps({"customId": record["custom_id"], key: json.loads(record["outcome"])},
                                ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode()
    key = f"results/{op_id}/results.jsonl"
    store.put_object(key, data)
    if store.finish(op_id, key, len(data), None):
        summary["batches-finished"] += 1
        log.info("batch finished", extra={"operation_id": op_id, "requests": total,
                                          "failed": operation.get("items_failed", 0), "result_bytes": len(data)})


def _poll_native(operation: dict[str, Any], store: Any, inv: Invocation, summary: collections.Counter[str]) -> None:
    if operation.get("state") == "done":
        store.deactivate(operation["id"])
        return
    services.pacer("operation-get", inv.settings.operation_get_rps).acquire(inv.call)
    answer = inv.client.get_operation(operation["upstream_id"], inv.call)
    upstream = answer.body if isinstance(answer.body, dict) else {}
    metadata = upstream.get("metadata") or {}
    fields: dict[str, Any] = {"state": "running"} if operation.get("state") == "queued" else {}
    if metadata:
        fields.update(task_status=str(metadata.get("taskStatus", operation.get("task_status", ""))),
                      completed_batches=int(metadata.get("completedBatches", 0) or 0),
                      total_batches=int(metadata.get("totalBatches", 0) or 0))
        if metadata.get("taskId"):
            fields["task_id"] = str(metadata["taskId"])
    if upstream.get("done") and "response" in upstream:
        fields.update(task_status=str(upstream["response"].get("taskStatus", "COMPLETED")),
                      result_dataset_id=str(upstream["response"].get("resultDatasetId", "")))
    if fields:
        store.set_fields(operation["id"], fields)
    if upstream.get("done"):
        error = upstream.get("error")
        store.finish(operation["id"], None, 0, error)
        summary["native-finished"] += 1
    else:
        summary["native-pending"] += 1


def _sweep_job(operation: dict[str, Any], store: Any, inv: Invocation, summary: collections.Counter[str]) -> None:
    if operation.get("state") == "done":
        store.deactivate(operation["id"])
        return
    _requeue_if_stuck(operation, store, inv, summary)


def _requeue_if_stuck(operation: dict[str, Any], store: Any, inv: Invocation, summary: collections.Counter[str]) -> None:
    """Send again the messages of tasks that sat queued (message lost) or whose worker died, past a threshold."""
    from shared import operations

    now = time.time()
    threshold = inv.settings.stuck_after_s
    if now - float(operation.get("modified_at", now)) < threshold or now - float(operation.get("requeued_at", 0)) < threshold:
        return
    stuck = []
    for number in range(int(operation.get("tasks_total", 0))):
        task = store.item(task_id(operation["id"], number)) or {}
        state = task.get("state")
        if state is None or state == "queued" or (state == "running" and float(task.get("lease_until", 0)) < now):
            stuck.append(number)
    if stuck:
        queue_kind = "completion" if operation.get("kind") == "batch" else operation.get("kind", "")
        operations.send_tasks(inv.settings, queue_kind, operation["id"], stuck)
        store.set_fields(operation["id"], {"requeued_at": now})
        summary["requeued-tasks"] += len(stuck)
        log.warning("re-enqueued stuck tasks", extra={"operation_id": operation["id"], "tasks": stuck})
