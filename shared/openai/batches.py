"""/v1/batches: OpenAI's Batch API as a front door to the batch engine.

`POST /v1/batches` reads the caller's input file, checks every line (JSON, `custom_id` present and unique,
`method` POST, `url` the batch's endpoint, one model, a body the sync route would take: the same
translation reads it) and then creates the same job records as the native doors do:
- chat lines: an inline batch (kind `batch`, chunks of 100 through the completion queue; each request an
  upstream completionAsync, paced to the quotas, settled by the timer poller), as completionBatch does;
- embeddings lines: an embedding job through the embedding queue, one task per group of lines, each line
  its own request, so a line upstream refuses fails only itself.
The job record carries `door: openai` and this door's fields (`oa*`); when its work has ended the poller
calls batch_output.settle, which writes the output and error files. Everything else (workers, leases,
pacing, cancel, the poller) is the engine's, and `GET /operations/<job id>` reads the same record as
`GET /v1/batches/batch_<job id>`: the two views cannot disagree.

Validation happens inside the create call, so a batch is never seen `validating`: `create` answers
`in_progress`, or `failed` with `errors.data[]` (a line number for each bad line). Then: `in_progress` ->
`finalizing` (every request settled, files being written) -> `completed`; `cancelling` (cancelled, upstream
work being cancelled) -> `cancelled`; `expired` past the 24 h window (the poller stops it like a cancel).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator

from shared import clock, errors, logs
from shared.jobs.access import may_see, visible
from shared.jobs.batches import CHUNK_ITEMS
from shared.jobs.store import job_store
from shared.jobs.submit import OPERATION_ID, submit_tasks
from shared.native.models import NonEmptyStr
from shared.openai import batch_lines, batch_store, files
from shared.openai.models import OpenAIBody, check_metadata
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.runtime import Invocation

log = logs.get_logger("openai.batches")

WINDOW_S = 86_400  # completion_window "24h", the only one
MAX_REQUESTS = 10_000  # as the native inline batch
MAX_EMBEDDING_INPUTS = 50_000  # OpenAI's own cap for an embeddings batch
MAX_REPORTED_ERRORS = 1000
MAX_LIST_LIMIT = 100
DESCRIPTIONS = {batch_lines.CHAT: "OpenAI Batch (chat completions)", batch_lines.EMBEDDINGS: "OpenAI Batch (embeddings)",
                batch_lines.RESPONSES: "OpenAI Batch (responses)"}


class OutputExpiresAfter(OpenAIBody):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(strict=True, ge=files.EXPIRES_MIN_S, le=files.EXPIRES_MAX_S)]


class BatchCreateRequest(OpenAIBody):
    input_file_id: NonEmptyStr
    endpoint: Literal["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    output_expires_after: OutputExpiresAfter | None = None

    _metadata = field_validator("metadata")(classmethod(lambda cls, value: check_metadata(value)))


# -- POST /v1/batches ---------------------------------------------------------------------------------------

def create(request: BatchCreateRequest, inv: Invocation) -> Reply:
    store = job_store(inv.settings)
    source = files.owned_file(request.input_file_id, inv)
    if source.get("purpose") != "batch":
        raise errors.BadRequestError.field("input_file_id", f"file {source['id']} was uploaded with purpose "
                                                            f"{source.get('purpose')!r}; a batch needs purpose 'batch'")
    data = store.get_object(source.get("object_key") or f"files/{source['id']}")
    lines, problems, model = read_lines(data, request.endpoint, inv)
    job_id = batch_store.new_batch_job_id()
    door = {"endpoint": request.endpoint, "input_file_id": source["id"], "completion_window": "24h",
            "metadata": request.metadata, "model": model,
            "output_expires_s": request.output_expires_after.seconds if request.output_expires_after else None}
    extra = {"door": "openai", "oa": json.dumps(door, ensure_ascii=False), "model": str(model or "")}
    batch_store.add_to_list(store, "batch", inv.caller, batch_store.batch_id(job_id))
    inv.log_fields.update(batch_id=batch_store.batch_id(job_id), operation_id=job_id, requests=len(lines))
    if problems:
        extra["oa_errors"] = json.dumps(problems[:MAX_REPORTED_ERRORS], ensure_ascii=False)
        store.create(job_id, "batch", DESCRIPTIONS[request.endpoint], inv.caller, [], extra=extra,
                     numbers={"items_total": 0, "items_done": 0, "items_failed": 0})
        more = f" (the first {MAX_REPORTED_ERRORS} are listed)" if len(problems) > MAX_REPORTED_ERRORS else ""
        store.finish(job_id, None, 0, {"code": 3, "message": f"the input file has {len(problems)} invalid "
                                                              f"line{'s' if len(problems) > 1 else ''}{more}",
                                       "details": []})
        inv.log_fields["invalid_lines"] = len(problems)
    else:
        numbers = {"items_total": len(lines), "items_done": 0, "items_failed": 0,
                   "deadline_at": clock.now() + WINDOW_S}
        if request.endpoint in (batch_lines.CHAT, batch_lines.RESPONSES):
            chunks = [{"items": lines[i:i + CHUNK_ITEMS]} for i in range(0, len(lines), CHUNK_ITEMS)]
            submit_tasks("batch", chunks, inv, queue_kind="completion", numbers={**numbers, "chunk_items": CHUNK_ITEMS},
                         op_id=job_id, extra=extra, description=DESCRIPTIONS[request.endpoint])
        else:
            submit_tasks("embedding", embedding_tasks(lines, model, inv.settings.embedding_chunk_texts), inv,
                         numbers=numbers, op_id=job_id, extra=extra, description=DESCRIPTIONS[request.endpoint])
    return Reply(batch_object(store.item(job_id) or {}))


def read_lines(data: bytes, endpoint: str, inv: Invocation) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The input file's requests (as the engine takes them), its problems (OpenAI's errors.data[], each
    with its 1-based line number), and the one model its lines name."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_problem("invalid_file", "The file is not UTF-8 text.", None, None)], ""
    lines: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    model = ""
    texts = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            problems.append(_problem("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        if not isinstance(line, dict):
            problems.append(_problem("invalid_json_line", "This line is not a JSON object.", number))
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            problems.append(_problem("invalid_request", "custom_id: must be a non-empty string", number, "custom_id"))
            continue
        if custom_id in seen:
            problems.append(_problem("duplicate_custom_id", f"custom_id {custom_id!r} repeats line {seen[custom_id]}; "
                                                            "each request needs its own", number, "custom_id"))
            continue
        seen[custom_id] = number
        if line.get("method") != "POST":
            problems.append(_problem("invalid_method", "method: must be POST", number, "method"))
            continue
        if line.get("url") != endpoint:
            problems.append(_problem("url_mismatch", f"url: must be the batch's endpoint, {endpoint}", number, "url"))
            continue
        body = line.get("body")
        if not isinstance(body, dict):
            problems.append(_problem("invalid_request", "body: must be a JSON object", number, "body"))
            continue
        try:
            if endpoint == batch_lines.CHAT:
                native, line_model = batch_lines.chat_request(body, inv.settings, inv.policy)
                request: dict[str, Any] = {"index": len(lines), "customId": custom_id, "body": native}
            elif endpoint == batch_lines.RESPONSES:  # the answer's skeleton rides with the request (the chunk)
                native, line_model, answer = batch_lines.responses_request(body, inv.settings, inv.policy)
                request = {"index": len(lines), "customId": custom_id, "body": native, "response": answer}
            else:
                parsed = batch_lines.embeddings_request(body, inv.settings, inv.policy)
                line_model = parsed["model"]
                texts += len(parsed["texts"])
                request = {"index": len(lines), "customId": custom_id, "texts": parsed["texts"], "dim": parsed["dim"],
                           "encodingFormat": parsed["encodingFormat"]}
        except errors.ApiError as err:  # refused as the sync route would refuse the same body
            field = next((d.get("field") for d in err.details if d.get("@type") == "field"), None)
            problems.append(_problem(err.code.lower(), f"body.{err.message}" if field else err.message, number,
                                     f"body.{field}" if field else "body"))
            continue
        if model and line_model != model:
            problems.append(_problem("model_mismatch", f"body.model: every line of a batch must use one model "
                                                       f"(line {seen[lines[0]['customId']]} uses {model})",
                                     number, "body.model"))
            continue
        model = model or line_model
        lines.append(request)
    if not lines and not problems:
        problems.append(_problem("empty_file", "The input file has no requests.", None))
    if len(lines) > MAX_REQUESTS:
        problems.append(_problem("too_many_tasks", f"The input file has {len(lines)} requests; a batch takes at "
                                                   f"most {MAX_REQUESTS}.", None))
    if texts > MAX_EMBEDDING_INPUTS:
        problems.append(_problem("too_many_tasks", f"The input file has {texts} embedding inputs; a batch takes "
                                                   f"at most {MAX_EMBEDDING_INPUTS}.", None))
    return lines, problems, model


def _problem(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def embedding_tasks(lines: list[dict[str, Any]], model: str, chunk_texts: int) -> list[dict[str, Any]]:
    """Consecutive lines grouped into tasks of at most `chunk_texts` texts (a line with more is a task of
    its own); each line stays one request of its task, with what its answer needs."""
    tasks: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for line in lines:
        if current and size + len(line["texts"]) > chunk_texts:
            tasks.append({"modelUri": model, "requests": current})
            current, size = [], 0
        current.append(line)
        size += len(line["texts"])
    if current:
        tasks.append({"modelUri": model, "requests": current})
    return tasks


# -- GET /v1/batches/{batch_id}, GET /v1/batches, POST /v1/batches/{batch_id}/cancel -----------------------------

def owned_batch(batch: str, inv: Invocation) -> dict[str, Any]:
    """The caller's OpenAI batch record, or 404 (unknown, expired, a native job, or another caller's). Another
    caller's native job is refused by `visible` too, so the attempt on their work is logged."""
    job_id = batch_store.job_of(batch)
    record = None
    if OPERATION_ID.match(job_id):
        record = job_store(inv.settings).item(job_id)
        if record is not None and record.get("door") != "openai" and may_see(record, inv):
            record = None
    inv.log_fields.update(batch_id=batch, operation_id=job_id)
    return visible(record, inv, "batch", batch)


def retrieve(_: None, inv: Invocation) -> Reply:
    return Reply(batch_object(owned_batch(inv.path_params.get("batch_id", ""), inv)))


def list_batches(_: None, inv: Invocation) -> Reply:
    query = inv.request.query if inv.request is not None else {}
    limit = files.query_limit(query, 20, MAX_LIST_LIMIT)
    records, more = batch_store.page(job_store(inv.settings), "batch", inv.caller, limit, query.get("after") or None)
    return Reply(files.list_body([batch_object(r) for r in records], more))


def cancel(_: None, inv: Invocation) -> Reply:
    """The engine's cancel (nothing new starts; upstream work is cancelled by the poller), then this view:
    `cancelling` until the poller has cancelled upstream and written what finished, then `cancelled`."""
    from shared.jobs import operations

    record = owned_batch(inv.path_params.get("batch_id", ""), inv)
    operations.cancel(None, dataclasses.replace(inv, path_params={"operationId": record["id"]}))
    return Reply(batch_object(job_store(inv.settings).item(record["id"]) or record))


# -- the Batch object -------------------------------------------------------------------------------------------

def status(record: dict[str, Any]) -> str:
    """OpenAI's status of a batch job, from the engine's state and what this door has written."""
    error = batch_store.loads(record.get("error"))
    settled = bool(record.get("oa_settled"))
    total, done = int(record.get("items_total", 0)), int(record.get("items_done", 0))
    if record.get("state") != "done":
        return "finalizing" if total and done >= total else "in_progress"
    if not isinstance(error, dict):
        return "completed"
    if error.get("code") == 1:
        return "cancelled" if settled else "cancelling"
    if error.get("code") == 4:
        return "expired" if settled else "finalizing"
    return "failed"


def batch_object(record: dict[str, Any]) -> dict[str, Any]:
    """The job record as OpenAI's Batch object."""
    door = batch_store.loads(record.get("oa"), {})
    error = batch_store.loads(record.get("error"))
    state = status(record)
    created, modified = int(record.get("created_at", 0)), int(record.get("modified_at", 0)) or None
    settled_at = int(record.get("oa_settled_at", 0)) or None
    invalid = batch_store.loads(record.get("oa_errors"))
    total, failed = int(record.get("items_total", 0)), int(record.get("items_failed", 0))
    completed = int(record.get("items_done", 0)) - failed
    if record.get("oa_settled"):
        completed, failed = int(record.get("oa_completed", 0)), int(record.get("oa_failed", 0))
    errors_list = None
    if invalid:
        errors_list = {"object": "list", "data": invalid}
    elif state == "failed" and isinstance(error, dict):
        errors_list = {"object": "list", "data": [{"code": "batch_failed", "message": error.get("message", ""),
                                                   "param": None, "line": None}]}
    return {
        "id": batch_store.batch_id(record.get("id", "")), "object": "batch", "endpoint": door.get("endpoint", ""),
        "errors": errors_list, "input_file_id": door.get("input_file_id", ""), "completion_window": "24h",
        "status": state, "output_file_id": record.get("oa_output_file_id") or None,
        "error_file_id": record.get("oa_error_file_id") or None, "created_at": created,
        "in_progress_at": None if invalid else created,
        "expires_at": created + WINDOW_S if record.get("deadline_at") else None,
        "finalizing_at": int(record.get("oa_finalizing_at", 0)) or None,
        "completed_at": modified if state == "completed" else None,
        "failed_at": modified if state == "failed" else None,
        "expired_at": settled_at if state == "expired" else None,
        "cancelling_at": modified if state in ("cancelling", "cancelled") else None,
        "cancelled_at": settled_at if state == "cancelled" else None,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": door.get("metadata"), "model": door.get("model") or None,
        "usage": batch_store.loads(record.get("oa_usage")),
    }
