"""Queue workers: a Message Queue trigger batch -> one task per message -> upstream -> the job store.

Workers are idempotent per task: a finished task or operation is skipped, a task held by a live
worker is left for redelivery, and a dead worker's lease runs out so another takes over. Transient
failures (429, 503, 5xx, timeouts, store errors) give the task back and make the invocation fail so
the trigger redelivers; permanent ones (4xx) end the operation with the error and consume the
message. A message that keeps failing moves to the dead-letter queue, whose trigger ends the
operation with the last recorded error; for a batch, only that chunk's requests fail (each with the
reason) and the rest of the batch finishes. The queue counts receives, not failures, so the dead-letter
side asks the store: a task that failed fewer than JOB_MAX_DELIVERIES starts is sent again on a fresh
message (until JOB_QUEUE_WINDOW_S has passed without a start); see docs/dead-letters.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs import batches, usage
from shared.jobs.store import failed_starts, job_store, payload_key, task_id
from shared.jobs.submit import OPERATION_ID, send_bodies, send_tasks
from shared.jobs.views import RESPONSE_TYPES
from shared.native import services

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.runtime import Invocation

log = logs.get_logger("worker")

MIN_TIME_FOR_A_MESSAGE_S = 5.0  # stop taking messages from a batch with less time than this left


class RedeliverError(Exception):
    """Raised at the end of a batch so the trigger puts its messages back (finished ones are skipped then)."""


def consume(kind: str, messages: list[dict[str, Any]], inv: Invocation, worker: str) -> dict[str, Any]:
    """Process a trigger batch; raise RedeliverError at the end if any message needs another try.

    Messages left unstarted for lack of time are no failure: when nothing else in the batch needs another
    try, they are sent again on fresh messages (before this returns and the trigger deletes the batch),
    so the queue does not count the deferral as a receive; otherwise they go back with the batch."""
    retry: list[str] = []
    deferred: list[str] = []
    outcomes: dict[str, int] = {}
    for index, message in enumerate(messages):
        details = message.get("details") or {}
        body = (details.get("message") or {}).get("body", "")
        dead = str(details.get("queue_id", "")).endswith("-dlq")
        if inv.call.remaining() < MIN_TIME_FOR_A_MESSAGE_S:
            rest = [(m.get("details") or {}).get("message", {}).get("body", "") for m in messages[index:]]
            if dead:  # the dead-letter queue has no redrive policy: giving them back costs nothing
                retry.extend(["deadline"] * len(rest))
            else:
                deferred = rest
            break
        try:
            outcome = (dead_letter if dead else process)(kind, body, message, inv, f"{worker}/{index}")
        except (errors.ApiError, RedeliverError) as err:
            log.warning("message will be redelivered", extra={"reason": str(err)[:300], "message_index": index})
            outcome = "retry"
            retry.append(str(err)[:200])
        except Exception as err:  # a bug or an unexpected answer: this message only; its batch-mates go on
            log.warning("message will be redelivered", exc_info=True,
                        extra={"reason": f"{type(err).__name__}: {err}"[:300], "message_index": index})
            outcome = "retry"
            retry.append(f"{type(err).__name__}: {err}"[:200])
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if deferred:
        outcomes["deferred-deadline"] = len(deferred)
    inv.log_fields.update(messages=len(messages), outcomes=outcomes)
    if retry or (deferred and not _send_again(kind, deferred, inv)):
        retry.extend(["deadline"] * len(deferred))
        raise RedeliverError(f"{len(retry)} of {len(messages)} messages need another delivery: {retry[0]}")
    return {"processed": len(messages), "outcomes": outcomes}


def _send_again(kind: str, bodies: list[str], inv: Invocation) -> bool:
    """Send these bodies again on fresh messages of the kind's queue; False if the queue refused (then the
    batch goes back instead, so a message is never lost; a copy too many is skipped by the claim)."""
    try:
        send_bodies(inv.settings, kind, bodies)
    except errors.ApiError as err:
        log.warning("could not send deferred messages again; the batch goes back to the queue",
                    extra={"reason": str(err)[:300], "messages": len(bodies)})
        return False
    log.info("messages deferred at the deadline sent again", extra={"messages": len(bodies)})
    return True


def _parse(body: str) -> tuple[str, int]:
    try:
        data = json.loads(body)
        op_id, number = str(data["op"]), int(data["task"])
    except (ValueError, KeyError, TypeError):
        raise RedeliverError(f"message body is not a job reference: {body[:200]!r}") from None
    if not OPERATION_ID.match(op_id) or number < 0:
        raise RedeliverError(f"message body is not a job reference: {body[:200]!r}")
    return op_id, number


def process(kind: str, body: str, message: dict[str, Any], inv: Invocation, worker: str) -> str:
    op_id, number = _parse(body)
    store = job_store(inv.settings)
    operation = store.item(op_id)
    if operation is None:
        log.error("message for an unknown operation consumed", extra={"operation_id": op_id, "body": body[:500]})
        return "unknown"
    if operation.get("state") == "done":
        return "skipped"
    kind = operation.get("kind", kind)
    # the lease ends when this invocation must (plus a margin): a worker killed at its deadline frees the task
    lease_s = min(inv.settings.job_lease_s, max(inv.call.remaining(), 0) + 30)
    claim = store.claim(op_id, number, worker, lease_s)
    if claim.outcome == "busy":
        raise RedeliverError(f"task {number} of {op_id} is being processed by another worker")
    if claim.outcome == "done":
        finalize(op_id, store, inv.settings)
        return "skipped"
    logs.bind(operation_id=op_id, task=number)
    try:
        payload = json.loads(store.get_object(payload_key(op_id, number)))
        if kind in batches.CHUNKED_KINDS:
            result = batches.start_chunk(op_id, payload, inv)
        else:
            result = execute(kind, payload, inv)
            # upstream answered: into the usage ledger before the task completes (a crash after this point
            # repeats the call as a new attempt, which is billed again and counted again)
            settle = _settle(operation, f"t{number}", inv)
            usage.record_task(operation, number, claim.attempts, payload, result, inv, settle=settle)
            if settle is not None:
                settle.finish(store)  # settled with the ledger entry, else alone (no usage, or the ledger failed)
    except errors.ApiError as err:
        if 400 <= err.status < 500 and err.status != 429:
            store.finish(op_id, None, 0, err.to_status(), deactivate=not operation.get("door"))
            log.info("operation failed permanently", extra={"operation_id": op_id, "error": err.message})
            _release(operation, inv)
            return "failed"
        store.release(op_id, number, worker, f"{err.code}: {err.message}")
        raise
    except Exception as err:  # a bug or an unexpected answer: give the task back, let the queue decide
        deferred = isinstance(err, batches.QuotaDeferred)  # not a failure: this start does not count
        store.release(op_id, number, worker, f"{type(err).__name__}: {err}"[:300], deferred=deferred)
        if deferred:  # come back later on a fresh message, without using up deliveries
            send_tasks(inv.settings, _queue_kind(operation), op_id, [number], delay_s=900)
            return "deferred"
        raise
    if store.complete(op_id, number, worker, json.dumps(result, ensure_ascii=False).encode()):
        finalize(op_id, store, inv.settings)
    return "done"


def execute(kind: str, payload: dict[str, Any], inv: Invocation) -> dict[str, Any]:
    """Run one task against upstream; the result as the operation's response (or a chunk of it)."""
    client = inv.client
    if kind == "completion":
        answer = client.completion(payload, inv.call)
        result = answer.body.get("result") if isinstance(answer.body, dict) else None
        if not isinstance(result, dict):
            raise errors.UpstreamError("upstream completion answer has no result object")
        return {"@type": RESPONSE_TYPES[kind], **result}
    if kind == "classification":
        services.pacer("classification", inv.settings.classification_rps).acquire(inv.call)
        answer = client.few_shot_classification(payload, inv.call)
        return {"@type": RESPONSE_TYPES[kind], **answer.body}
    if kind == "embedding" and "requests" in payload:
        return {"requests": embed_requests(payload["modelUri"], payload["requests"], inv)}
    if kind == "embedding":
        model_uri, dim = payload["modelUri"], payload.get("dim")
        results = services.fan_out(lambda text: services.embed_one(model_uri, text, dim, inv), payload["texts"],
                                   inv.settings.max_concurrency)
        return {"embeddings": [r["embedding"] for r in results],
                "numTokens": str(sum(int(r.get("numTokens", 0) or 0) for r in results)),
                "modelVersion": results[0].get("modelVersion", "")}
    raise errors.BadRequestError(f"unknown job kind {kind!r}")


def embed_requests(model_uri: str, requests: list[dict[str, Any]], inv: Invocation) -> list[dict[str, Any]]:
    """Independent embedding requests in one task (the OpenAI batch door: one per input line), their texts
    fanned out together; a request upstream refuses (4xx) fails only itself, as {"error": status}."""
    flat = [(number, text, request.get("dim")) for number, request in enumerate(requests) for text in request["texts"]]

    def one(entry: tuple[int, str, int | None]) -> dict[str, Any]:
        try:
            return services.embed_one(model_uri, entry[1], entry[2], inv)
        except errors.ApiError as err:
            if 400 <= err.status < 500 and err.status != 429:
                return {"error": err.to_status()}
            raise

    results = services.fan_out(one, flat, inv.settings.max_concurrency) if flat else []
    grouped: list[list[dict[str, Any]]] = [[] for _ in requests]
    for (number, _, _), result in zip(flat, results, strict=True):
        grouped[number].append(result)
    answers = []
    for parts in grouped:
        failed = next((p["error"] for p in parts if "error" in p), None)
        answers.append({"error": failed} if failed is not None else {
            "embeddings": [p["embedding"] for p in parts],
            "numTokens": str(sum(int(p.get("numTokens", 0) or 0) for p in parts)),
            "modelVersion": parts[0].get("modelVersion", "") if parts else ""})
    return answers


def finalize(op_id: str, store: Any, settings: Settings) -> None:
    """When every task is done, write the operation's response and mark it done (once)."""
    operation = store.item(op_id)
    if operation is None or operation.get("state") == "done" or operation.get("kind") == "batch" or operation.get("door"):
        return  # a batch (or a job with another front door) is finished by the poller once every request has settled
    total = int(operation.get("tasks_total", 1))
    if int(operation.get("tasks_done", 0)) < total:
        return
    keys = store.task_result_keys(op_id, total)
    kind = operation.get("kind", "")
    if total == 1 and kind != "embedding":
        key, data = keys[0], store.get_object(keys[0])
    else:
        parts = [json.loads(store.get_object(k)) for k in keys]
        response = {"@type": RESPONSE_TYPES.get(kind, ""), "embeddings": [v for p in parts for v in p["embeddings"]],
                    "numTokens": str(sum(int(p["numTokens"]) for p in parts)), "modelVersion": parts[0]["modelVersion"]}
        key, data = f"results/{op_id}/response.json", json.dumps(response, ensure_ascii=False).encode()
        store.put_object(key, data)
    if store.finish(op_id, key, len(data), None):
        log.info("operation done", extra={"operation_id": op_id, "result_bytes": len(data), "tasks": total})


def dead_letter(kind: str, body: str, message: dict[str, Any], inv: Invocation, worker: str) -> str:
    """A message the queue gave up on. The queue counts receives, not failures, so the store decides:
    a task that failed JOB_MAX_DELIVERIES starts ends its operation (or, in a batch, its chunk) with the
    last error; one that failed fewer is sent again on a fresh message (a fresh receive count), as often
    as it comes here, until JOB_QUEUE_WINDOW_S has passed since its last start (or its submission); then
    it ends with DEADLINE_EXCEEDED, naming how often it was started. Never leaves an operation done: false."""
    try:
        op_id, number = _parse(body)
    except RedeliverError:
        log.error("unreadable message reached the dead-letter queue; consumed",
                  extra={"body": body[:2000], "queue_message": message.get("details", {}).get("message", {})})
        return "dead-unreadable"
    store = job_store(inv.settings)
    operation = store.item(op_id)
    if operation is None or operation.get("state") == "done":
        return "dead-skipped"
    task = store.item(task_id(op_id, number)) or {}
    if task.get("state") == "done":  # finished by another copy; only the operation's last step may be missing
        finalize(op_id, store, inv.settings)
        return "dead-skipped"
    now, limit = clock.now(), inv.settings.job_max_deliveries
    failed = failed_starts(task, now)
    live = task.get("state") == "running" and float(task.get("lease_until", 0) or 0) > now
    since = max(float(operation.get("created_at", 0) or 0), float(task.get("started_at", 0) or 0))
    attributes = (message.get("details") or {}).get("message", {}).get("attributes") or {}
    receives = attributes.get("ApproximateReceiveCount", "several")
    if failed < limit and (live or now < since + inv.settings.job_queue_window_s):
        # Some of its receives were no failed start of its own (a batch-mate's failure, a deferral near the
        # deadline, another worker's lease, the scaling policy's 429 before the function ran): send it
        # again. Sent before this message is deleted (the trigger deletes it when this returns); a copy
        # too many is harmless, since a task is claimed before it runs and a finished one is skipped.
        send_tasks(inv.settings, _queue_kind(operation), op_id, [number])
        store.note_resend(op_id)
        log.warning("a task that failed fewer than JOB_MAX_DELIVERIES starts reached the dead-letter queue; "
                    "sent again", extra={"operation_id": op_id, "task": number, "failed_starts": failed,
                                         "receives": receives})
        return "dead-requeued"
    last = task.get("last_error") or operation.get("last_error") or "none recorded (the worker may have crashed or timed out)"
    if failed >= limit:
        code, why = 14, (f"after {failed} failed starts (JOB_MAX_DELIVERIES {limit}; dead-letter queue); "
                         f"last error: {last}")
    elif failed == 0 and not int(task.get("attempts", 0) or 0):
        code, why = 4, (f"never started: no worker took it within JOB_QUEUE_WINDOW_S "
                        f"({inv.settings.job_queue_window_s:g} s) of its submission (its message was received "
                        f"but not run: the functions were busy or throttled)")
    else:
        code, why = 4, (f"not finished within JOB_QUEUE_WINDOW_S ({inv.settings.job_queue_window_s:g} s) of its "
                        f"last start, after {failed} failed starts (fewer than JOB_MAX_DELIVERIES {limit}); "
                        f"last error: {last}")
    if operation.get("kind") in batches.CHUNKED_KINDS:
        return _dead_chunk(op_id, number, operation, why, code, inv, worker)
    error = {"code": code, "message": f"gave up on task {number} {why}", "details": []}
    store.finish(op_id, None, 0, error, deactivate=not operation.get("door"))  # the poller settles its door first
    _release(operation, inv)
    log.warning("operation failed: its task reached the dead-letter queue" if code == 14 else
                "operation failed: its task was not run in time", extra={"operation_id": op_id, "task": number})
    return "dead-failed" if code == 14 else "dead-expired"


def _settle(operation: dict[str, Any], part: str, inv: Invocation) -> Any:
    """The settle of the job's budget reservation for this task (shared/jobs/limits.py); None without one."""
    if not operation.get("limits"):
        return None
    from shared.jobs import limits

    return limits.for_part(operation, part, inv.settings)


def _release(operation: dict[str, Any], inv: Invocation) -> None:
    """A job that ended failed: what it still holds of its key's budget is released (a batch: by its poller)."""
    if operation.get("limits") and operation.get("kind") not in batches.CHUNKED_KINDS:
        from shared.jobs import limits

        limits.release_job(operation, inv.settings)


def _queue_kind(operation: dict[str, Any]) -> str:
    kind = str(operation.get("kind", ""))
    return "completion" if kind in batches.CHUNKED_KINDS else kind


def _dead_chunk(op_id: str, number: int, operation: dict[str, Any], why: str, code: int, inv: Invocation,
                worker: str) -> str:
    """One chunk of a batch the queue gave up on: its requests that never started fail with the reason
    (each its own result line), the task is marked done, and the rest of the batch goes on; the poller
    finishes the batch as usual. Claimed first, so it never races a worker still holding the chunk."""
    store = job_store(inv.settings)
    last = (store.item(task_id(op_id, number)) or {}).get("last_error", "")
    claim = store.claim(op_id, number, worker, min(inv.settings.job_lease_s, max(inv.call.remaining(), 0) + 30))
    if claim.outcome == "done":  # a later copy of the chunk's message (the poller re-sends stuck ones) finished it
        return "dead-skipped"
    if claim.outcome == "busy":
        raise RedeliverError(f"task {number} of {op_id} is being processed by another worker")
    reason = {"code": code, "message": f"not started: gave up on its chunk (task {number}) {why}", "details": []}
    try:
        failed = batches.fail_chunk(op_id, number, operation, reason, store)
    except Exception:
        store.release(op_id, number, worker, last or "dead-letter handling failed")  # keep the original reason
        raise
    store.complete(op_id, number, worker, json.dumps({"started": 0, "deadLettered": failed}).encode())
    log.warning("batch chunk failed: its message reached the dead-letter queue; the rest of the batch goes on",
                extra={"operation_id": op_id, "task": number, "requests_failed": failed})
    return "dead-chunk-failed"


