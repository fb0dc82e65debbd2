"""The OpenAI door's side of a batch job, called by the poller (shared/jobs/doors.py): progress of an
embeddings batch while it runs, and the output and error files once the job's work has ended.

Output file, one line per request that succeeded, in input order:
    {"id": "batch_req_<job>_<n>", "custom_id", "response": {"status_code": 200, "request_id", "body": <the
     chat.completion or embeddings list the sync route returns>}, "error": null}
Error file, one line per request that did not:
    refused or failed upstream: "response": {"status_code": <4xx/5xx>, "request_id", "body": {"error":
        {"message", "type", "param", "code"}}}, "error": null   (the sync route's error, as OpenAI writes it)
    never run: "response": null, "error": {"code": "batch_cancelled" | "batch_expired" | "batch_failed",
        "message"}   (a cancelled or expired batch keeps what finished; the rest is listed here)
`request_id` is the upstream operation's id for a chat request (the id upstream support knows).

The lines themselves are made by batch_outcomes.py from the records read here (plain data, so every
promise about a line has a unit test). Settling is idempotent: the file ids are chosen once and kept on
the job's record, each file's record is written only once, and `oa_settled` is set last, so a poller
killed half-way is simply repeated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs.store import payload_key, task_id
from shared.openai import batch_lines, batch_outcomes, batch_store

if TYPE_CHECKING:
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("openai.batch_output")

def advance(operation: dict[str, Any], store: JobStore, inv: Invocation) -> bool:
    """An embeddings batch: count the requests of every newly finished task (once each, however many
    pollers look); True when every task is done."""
    op_id = operation["id"]
    total = int(operation.get("tasks_total", 0))
    counted = set(operation.get("oa_counted") or [])
    tasks = store.records([task_id(op_id, n) for n in range(total)])
    for number in range(total):
        task = tasks.get(task_id(op_id, number)) or {}
        if task.get("state") != "done" or str(number) in counted or not task.get("result_key"):
            continue
        answers = json.loads(store.get_object(task["result_key"])).get("requests", [])
        failed = sum(1 for answer in answers if "error" in answer)
        store.add_once(op_id, {"items_done": len(answers), "items_failed": failed}, "oa_counted", str(number))
    fresh = store.item(op_id) or operation
    return int(fresh.get("tasks_done", 0)) >= total


def settle(operation: dict[str, Any], store: JobStore, inv: Invocation,
           records: dict[int, dict[str, Any]] | None) -> tuple[str, int] | None:
    """Write the batch's output and error files (and, for an embeddings job, its native results), once.
    Returns the native result's (key, size) for a job the poller finishes here; None for a batch."""
    op_id = operation["id"]
    fresh = store.item(op_id) or operation
    if fresh.get("oa_settled"):
        return (fresh.get("oa_native_key", ""), int(fresh.get("oa_native_size", 0))) if fresh.get("kind") != "batch" else None
    store.put_record(op_id, {"oa_finalizing_at": int(clock.now())}, unless_set="oa_finalizing_at")
    door = batch_store.loads(fresh.get("oa"), {})
    error = batch_store.loads(fresh.get("error"))
    stop = error.get("code") if isinstance(error, dict) and fresh.get("state") == "done" else None
    if fresh.get("kind") == "batch":
        outcomes = _chat_outcomes(fresh, store, records, door, stop, error)
    else:
        outcomes = _embedding_outcomes(fresh, store, door, stop, error)
    ok = [o["line"] for o in outcomes if o["ok"]]
    bad = [o["line"] for o in outcomes if not o["ok"]]
    store.put_record(op_id, {"oa_file_ids": f"{batch_store.new_file_id()},{batch_store.new_file_id()}"},
                     unless_set="oa_file_ids")
    output_id, error_id = (store.item(op_id) or {})["oa_file_ids"].split(",")
    owner = fresh.get("created_by", "")
    keep = door.get("output_expires_s")
    fields: dict[str, Any] = {"oa_completed": len(ok), "oa_failed": sum(1 for o in outcomes if o["failed"])}
    for file_id, lines, name, key in ((output_id, ok, "output", "oa_output_file_id"),
                                      (error_id, bad, "errors", "oa_error_file_id")):
        if lines:
            data = ("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n").encode()
            batch_store.save_file(store, owner, f"batch_{op_id}_{name}.jsonl", "batch_output", data,
                                  "application/jsonl", keep, file_id=file_id)
            fields[key] = file_id
    usage = batch_outcomes.usage([o["body"] for o in outcomes if o["ok"]])
    if usage is not None:
        fields["oa_usage"] = json.dumps(usage)
    native = None
    if fresh.get("kind") != "batch":  # the native door's result, as a batch's: one line per request
        data = ("\n".join(json.dumps(o["native"], ensure_ascii=False) for o in outcomes) + "\n").encode()
        key = f"results/{op_id}/results.jsonl"
        store.put_object(key, data)
        native = (key, len(data))
        fields.update(oa_native_key=key, oa_native_size=len(data), items_done=sum(1 for o in outcomes if o["ran"]),
                      items_failed=fields["oa_failed"])
    fields["oa_settled_at"] = int(clock.now())
    store.set_fields(op_id, fields)
    store.set_fields(op_id, {"oa_settled": 1})  # last: the view says completed/cancelled/expired only now
    log.info("openai batch settled", extra={"operation_id": op_id, "succeeded": len(ok), "errors": len(bad)})
    return native


# -- what the outcomes are made from, read from the store (batch_outcomes.py makes the lines) ----------------

def _chat_outcomes(operation: dict[str, Any], store: JobStore, records: dict[int, dict[str, Any]] | None,
                   door: dict[str, Any], stop: int | None, error: Any) -> list[dict[str, Any]]:
    op_id, total = operation["id"], int(operation.get("items_total", 0))
    if records is None:
        records = store.items(op_id, list(range(total)))
    missing = [i for i in range(total) if i not in records]
    responses = door.get("endpoint") == batch_lines.RESPONSES
    requests = _chat_requests(operation, store) if missing or responses else {}
    return batch_outcomes.chat_outcomes(op_id, total, records, requests, door, stop, error, int(clock.now()))


def _chat_requests(operation: dict[str, Any], store: JobStore) -> dict[int, dict[str, Any]]:
    """The requests as their chunks hold them (custom ids of requests that never got a record, because a batch
    stopped before they started; a Responses line's answer skeleton), by index."""
    found: dict[int, dict[str, Any]] = {}
    for number in range(int(operation.get("tasks_total", 0))):
        try:
            for item in json.loads(store.get_object(payload_key(operation["id"], number)))["items"]:
                found[int(item["index"])] = item
        except (errors.ApiError, ValueError, KeyError, TypeError):
            continue
    return found


def _embedding_outcomes(operation: dict[str, Any], store: JobStore, door: dict[str, Any], stop: int | None,
                        error: Any) -> list[dict[str, Any]]:
    op_id, total = operation["id"], int(operation.get("tasks_total", 0))
    records = store.records([task_id(op_id, n) for n in range(total)])
    tasks = []
    for number in range(total):
        requests = json.loads(store.get_object(payload_key(op_id, number)))["requests"]
        task = records.get(task_id(op_id, number)) or {}
        answers = None
        if task.get("state") == "done" and task.get("result_key"):
            answers = json.loads(store.get_object(task["result_key"])).get("requests")
        tasks.append((requests, answers))
    return batch_outcomes.embedding_outcomes(op_id, tasks, door, stop, error)
