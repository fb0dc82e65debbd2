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

Settling is idempotent: the file ids are chosen once and kept on the job's record, each file's record is
written only once, and `oa_settled` is set last, so a poller killed half-way is simply repeated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs.store import item_id, payload_key, task_id
from shared.openai import batch_lines, batch_store

if TYPE_CHECKING:
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("openai.batch_output")

STOPPED = {1: ("batch_cancelled", "This request was not run: the batch was cancelled."),
           4: ("batch_expired", "This request could not be executed before the completion window expired.")}
FAILED = ("batch_failed", "This request was not run: the batch failed ({reason}).")


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
    usage = _usage([o["body"] for o in outcomes if o["ok"]])
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


# -- one outcome per request, in input order -----------------------------------------------------------------

def _chat_outcomes(operation: dict[str, Any], store: JobStore, records: dict[int, dict[str, Any]] | None,
                   door: dict[str, Any], stop: int | None, error: Any) -> list[dict[str, Any]]:
    op_id, total = operation["id"], int(operation.get("items_total", 0))
    if records is None:
        records = store.items(op_id, list(range(total)))
    missing = [i for i in range(total) if i not in records]
    responses = door.get("endpoint") == batch_lines.RESPONSES
    requests = _chat_requests(operation, store) if missing or responses else {}
    custom_ids = {index: str(item["customId"]) for index, item in requests.items()}
    created = int(clock.now())
    outcomes = []
    for index in range(total):
        record = records.get(index) or {}
        custom_id = record.get("custom_id") or custom_ids.get(index, str(index))
        request_id = record.get("upstream_id") or item_id(op_id, index)
        if record.get("state") != "done":
            outcomes.append(_not_run(op_id, index, custom_id, stop, error))
            continue
        outcome = json.loads(record.get("outcome") or "{}")
        if not record.get("failed"):
            if responses:
                body = batch_lines.responses_answer(outcome, requests[index]["response"], created)
            else:
                body = batch_lines.chat_answer(outcome, door.get("model", ""), f"chatcmpl-{op_id}-{index}", created)
            outcomes.append(_success(op_id, index, custom_id, request_id, body, {"customId": custom_id,
                                                                                   "response": outcome}))
        elif stop is not None and outcome.get("code") in (1, stop):  # stopped by the cancel, expiry or failure
            outcomes.append(_not_run(op_id, index, custom_id, stop, error))
        else:
            outcomes.append(_failure(op_id, index, custom_id, request_id, outcome))
    return outcomes


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
    tasks = store.records([task_id(op_id, n) for n in range(total)])
    outcomes = []
    for number in range(total):
        requests = json.loads(store.get_object(payload_key(op_id, number)))["requests"]
        task = tasks.get(task_id(op_id, number)) or {}
        answers = None
        if task.get("state") == "done" and task.get("result_key"):
            answers = json.loads(store.get_object(task["result_key"])).get("requests")
        for position, request in enumerate(requests):
            index, custom_id = int(request["index"]), str(request["customId"])
            answer = answers[position] if answers is not None and position < len(answers) else None
            request_id = f"{op_id}-{index}"
            if answer is None:
                outcomes.append(_not_run(op_id, index, custom_id, stop, error))
            elif "error" in answer:
                outcomes.append(_failure(op_id, index, custom_id, request_id, answer["error"]))
            else:
                body = batch_lines.embeddings_answer(answer, door.get("model", ""), request.get("encodingFormat", "float"))
                outcomes.append(_success(op_id, index, custom_id, request_id, body,
                                         {"customId": custom_id, "response": answer}))
    return sorted(outcomes, key=lambda o: o["index"])


def _success(op_id: str, index: int, custom_id: str, request_id: str, body: dict[str, Any],
             native: dict[str, Any]) -> dict[str, Any]:
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": None}
    return {"index": index, "ok": True, "failed": False, "ran": True, "line": line, "body": body, "native": native}


def _failure(op_id: str, index: int, custom_id: str, request_id: str, status: Any) -> dict[str, Any]:
    """A request upstream refused or failed: the error the sync route would have answered, in OpenAI's shape."""
    status = status if isinstance(status, dict) else {}
    grpc = int(status.get("code", 2) or 2)
    http = errors.GRPC_TO_HTTP.get(grpc, 500)
    err = errors.from_upstream(http, grpc, str(status.get("message", "")), None)
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id,
            "response": {"status_code": err.status, "request_id": request_id, "body": err.to_openai_body()},
            "error": None}
    return {"index": index, "ok": False, "failed": True, "ran": True, "line": line, "body": None,
            "native": {"customId": custom_id, "error": status}}


def _not_run(op_id: str, index: int, custom_id: str, stop: int | None, error: Any) -> dict[str, Any]:
    if stop in STOPPED:
        code, message = STOPPED[stop]
    else:
        reason = error.get("message", "") if isinstance(error, dict) else "unknown"
        code, message = FAILED[0], FAILED[1].format(reason=reason)
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}
    return {"index": index, "ok": False, "failed": False, "ran": False, "line": line, "body": None,
            "native": {"customId": custom_id, "error": {"code": stop or 2, "message": message, "details": []}}}


def _usage(bodies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Token usage summed over the answers, in the Batch object's shape."""
    if not bodies:
        return None
    def total(body: dict[str, Any], chat: str, responses: str) -> int:  # a chat answer's usage name, or a Response's
        usage = body.get("usage") or {}
        return int(usage.get(chat, usage.get(responses, 0)) or 0)

    prompt = sum(total(b, "prompt_tokens", "input_tokens") for b in bodies)
    output = sum(total(b, "completion_tokens", "output_tokens") for b in bodies)
    reasoning = sum(int(((b.get("usage") or {}).get("completion_tokens_details")
                         or (b.get("usage") or {}).get("output_tokens_details") or {}).get("reasoning_tokens", 0)
                        or 0) for b in bodies)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": prompt + output}
