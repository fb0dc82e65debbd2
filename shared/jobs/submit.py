"""The front door every job goes through: store one payload per task, record a queued operation, send
one small message per task ({"op", "task"}). Async operations and inline batches (native and OpenAI)
all enter here, so they share one store layout, one id scheme and one queue protocol.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from shared import errors
from shared.ids import uuid4 as new_id
from shared.jobs.store import job_store  # boto3 itself is imported only inside the store
from shared.jobs.views import view
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.runtime import Invocation

DESCRIPTIONS = {"completion": "Async GPT Completion", "embedding": "Async Text Embedding",
                "classification": "Async Few-Shot Text Classification", "batch": "Batch Completion",
                "batch-native": "Batch Completion"}
OPERATION_ID = re.compile(r"^[a-z0-9]{8,64}$")


def _queue(settings: Settings) -> Any:
    from shared.jobs.queue import queue_client

    return queue_client(settings.ymq_endpoint, settings.region, settings.access_key_id, settings.secret_access_key)


def submit_tasks(kind: str, payloads: list[dict[str, Any]], inv: Invocation, queue_kind: str | None = None,
                 numbers: dict[str, float] | None = None, *, op_id: str | None = None,
                 extra: dict[str, str] | None = None, description: str | None = None) -> Reply:
    """Record a queued operation with one stored payload per task, then send one message per task.

    Another front door (the OpenAI Batch API) passes its own `op_id` (so it can index it first), `extra`
    string fields for its own view (e.g. `door`), and a `description`; the job itself is the same."""
    settings = inv.settings
    queue_kind = queue_kind or kind
    settings.queue_url(queue_kind)  # fail before storing anything when the queue is not configured
    store = job_store(settings)
    op_id = op_id or new_operation_id()
    payloads = inv.admit_job(kind, payloads)  # a key's budget and limits: reserved here, settled by the job
    if inv.reservation is not None:
        extra = {**(extra or {}), "limits": inv.reservation.to_record()}
    encoded = [json.dumps(payload, ensure_ascii=False).encode() for payload in payloads]
    item = store.create(op_id, kind, description or DESCRIPTIONS[kind], inv.caller, encoded, extra=extra,
                        numbers=numbers)
    try:
        send_tasks(settings, queue_kind, op_id, list(range(len(payloads))))
    except errors.ApiError as err:
        store.finish(op_id, None, 0, {"code": 14, "message": f"could not enqueue the job: {err.message}", "details": []})
        raise
    if inv.reservation is not None:
        inv.reservation.handed = True  # its worker or poller settles it from here
    inv.log_fields.update(operation_id=op_id, tasks=len(payloads))
    return Reply(view(item))


def send_tasks(settings: Settings, queue_kind: str, op_id: str, numbers: list[int], delay_s: int = 0,
               extra: dict[str, Any] | None = None) -> None:
    """One message per task; `extra` adds fields to each body."""
    bodies = [json.dumps({"op": op_id, "task": n, **(extra or {})}) for n in numbers]
    queue = _queue(settings)
    if delay_s:
        for body in bodies:
            queue.send(settings.queue_url(queue_kind), body, delay_s=delay_s)
    else:
        queue.send_batch(settings.queue_url(queue_kind), bodies)


def send_bodies(settings: Settings, queue_kind: str, bodies: list[str]) -> None:
    """Send message bodies as they are (the worker's messages deferred at its deadline)."""
    _queue(settings).send_batch(settings.queue_url(queue_kind), bodies)


def new_operation_id() -> str:
    return "fmo" + new_id().replace("-", "")[:17]


