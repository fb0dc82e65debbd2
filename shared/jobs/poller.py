"""The batch poller (timer-triggered): drives every batch, and every stuck job, to an end.

Within its deadline it polls the batch items that are due (paced to FM_OPERATION_GET_RPS), records
each result or error with one conditional write (so two pollers never count an item twice), and when
every item is settled writes the results as one JSON Lines object (`{"customId", "response"|"error"}`
per line, in input order) and finishes the operation. A poller holds a short lease per batch, so two
pollers share the work rather than repeat it. Native batches are tracked through their upstream
operation; cancelled batches get their upstream operations cancelled; tasks that sat queued or whose
worker died are re-enqueued.
"""

from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs import doors, usage
from shared.jobs.store import item_id, job_store, task_id
from shared.jobs.submit import send_tasks
from shared.native import services

if TYPE_CHECKING:
    from shared.runtime import Invocation

log = logs.get_logger("poller")

POLL_MARGIN_S = 1.0  # stop polling this long before the invocation's deadline
FIRST_POLL_S, MAX_POLL_INTERVAL_S = 1.0, 30.0
POLLER_LEASE_S = 120.0


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
            operation = _expire_if_late(operation, store, summary)
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
    now = clock.now()

    def settle(index: int, record: dict[str, Any], outcome: dict[str, Any], failed: bool) -> bool:
        if store.item_finished(op_id, index, record["custom_id"], outcome, failed):
            records[index] = {**record, "state": "done", "failed": failed,
                              "outcome": json.dumps(outcome, ensure_ascii=False)}
            if not failed:
                usage.log_item(operation, index, outcome)  # its log line; the store's totals go with the batch's
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
            upstream = {"done": True, "error": _stop_reason(operation)}
        if upstream.get("done"):
            failed = "error" in upstream
            outcome = upstream["error"] if failed else upstream.get("response", {})
            if settle(index, record, outcome, failed):
                summary["items-finished"] += 1
        else:
            polls = int(record.get("polls", 0)) + 1
            store.set_fields(item_id(op_id, index), {"polls": polls, "next_poll_at": clock.now() + min(
                MAX_POLL_INTERVAL_S, FIRST_POLL_S * 1.5 ** polls)})
            summary["items-pending"] += 1
    if cancelled:
        if all(records.get(i, {}).get("state", "done") == "done" for i in range(total)):
            if (hook := doors.door(operation)) is not None:  # what finished is kept, through its door too
                hook.settle(operation, store, inv, records)
            _record_batch(operation, records, store, inv)  # before it leaves the index: repeated (counted once) if we die
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
        _finish_batch(fresh, records, store, inv, summary)


def _record_batch(operation: dict[str, Any], records: dict[int, dict[str, Any]], store: Any, inv: Invocation) -> None:
    """The batch's usage into the ledger, and (for a key with a budget) its reservation settled in the same
    transaction, else alone; the key's expired reservations are swept while we are at it."""
    if not operation.get("limits"):
        usage.record_batch(operation, records, inv)
        return
    from shared.jobs import limits

    settle = limits.for_part(operation, "b", inv.settings)
    usage.record_batch(operation, records, inv, settle=settle)
    if settle is not None:
        settle.finish(store)
        try:
            limits.sweep_key(store, settle.res.caller)
        except Exception as err:  # a sweep is housekeeping: the next one does it
            log.warning("budget sweep failed", extra={"error": f"{type(err).__name__}: {err}"[:300]})


def _before_margin(inv: Invocation) -> Any:
    """The invocation's call settings with the deadline moved up by the poller's margin."""
    from shared.client import Call

    return Call(deadline=inv.call.deadline - POLL_MARGIN_S, client_request_id=inv.call.client_request_id)


def _finish_batch(operation: dict[str, Any], records: dict[int, dict[str, Any]], store: Any, inv: Invocation,
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
    if (hook := doors.door(operation)) is not None:  # its door's results exist before the job reads as done
        hook.settle(operation, store, inv, records)
    _record_batch(operation, records, store, inv)  # before the finish: a poller dying between them is repeated, counted once
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
    hook = doors.door(operation)
    if operation.get("state") == "done":
        if hook is not None:  # cancelled, expired or failed: its door still gets what finished
            hook.settle(operation, store, inv, None)
        store.deactivate(operation["id"])
        return
    if hook is not None and hook.advance(operation, store, inv):  # every task done: the door assembles the result
        key, size = hook.settle(operation, store, inv, None)
        if store.finish(operation["id"], key, size, None):
            summary["batches-finished"] += 1
        return
    _requeue_if_stuck(operation, store, inv, summary)


# -- a job with a deadline (`deadline_at`, e.g. an OpenAI batch's completion window) ------------------

EXPIRED = {"code": 4, "message": "the job did not finish within its completion window", "details": []}
CANCELLED = {"code": 1, "message": "cancelled by the caller", "details": []}


def _expire_if_late(operation: dict[str, Any], store: Any, summary: collections.Counter[str]) -> dict[str, Any]:
    """End a job still running past its `deadline_at` (DEADLINE_EXCEEDED); its unfinished work is then
    stopped as a cancelled job's is. Batches stay in the index until that is done."""
    deadline = float(operation.get("deadline_at", 0) or 0)
    if not deadline or operation.get("state") == "done" or clock.now() < deadline:
        return operation
    if store.finish(operation["id"], None, 0, EXPIRED, deactivate=False):
        summary["expired"] += 1
        log.warning("job expired", extra={"operation_id": operation["id"]})
    return store.item(operation["id"]) or operation


def _stop_reason(operation: dict[str, Any]) -> dict[str, Any]:
    """What an unfinished request of a stopped batch records: the job's own error (cancelled or expired)."""
    try:
        error = json.loads(operation.get("error") or "null")
    except ValueError:
        error = None
    return error if isinstance(error, dict) and error.get("code") in (1, 4) else CANCELLED


def _requeue_if_stuck(operation: dict[str, Any], store: Any, inv: Invocation, summary: collections.Counter[str]) -> None:
    """Send again the messages of tasks that sat queued (message lost) or whose worker died, past a threshold."""
    now = clock.now()
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
        send_tasks(inv.settings, queue_kind, operation["id"], stuck)
        store.set_fields(operation["id"], {"requeued_at": now})
        summary["requeued-tasks"] += len(stuck)
        log.warning("re-enqueued stuck tasks", extra={"operation_id": operation["id"], "tasks": stuck})
