"""/v1/files: OpenAI's Files API on the results bucket and the job store.

`POST /v1/files` takes multipart/form-data (`file`, `purpose`, optional `expires_after[anchor]` and
`expires_after[seconds]`), parsed by python-multipart (imported here only, so no other route pays for it).
The bytes go to the results bucket (`files/<id>`), the record to the job store with its owner and TTL
(JOBS_TTL_DAYS, or a shorter `expires_after`), and the id to the owner's list (batch_store.py). A file
belongs to the caller that uploaded it (or, for a batch's output, created the batch): any other caller
gets 404 for its id, exactly as for an id that does not exist.

The largest upload is what reaches the function: API Gateway takes at most FM_MAX_BODY_BYTES (2.5 MB),
and a multipart body is not text, so it reaches the function base64-encoded inside the event, 4 bytes for
every 3; with room for the rest of the event, that leaves (2,500,000 - 8,192) x 3 / 4 = 1,868,856 bytes of
multipart body. Past that the answer is a 413 that says so, before anything is stored. Content is
returned inline up to RESULT_INLINE_MAX_BYTES, and above that as a 307 to a presigned URL of the bucket
(the `openai` client follows it, dropping its Authorization header for the other host); that link is
minted for the file's owner only, so the admin caller gets a 403 there (as it gets a result's size, not its URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import errors
from shared.jobs.access import owns, visible
from shared.jobs.store import MissingObjectError, job_store
from shared.openai import batch_store
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.runtime import Invocation

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")  # what the client may upload
EVENT_ALLOWANCE = 8192  # the event's headers, request context and JSON around the base64 body
EXPIRES_MIN_S, EXPIRES_MAX_S = 3600, 2_592_000
MAX_LIST_LIMIT = 10_000


def max_upload_bytes(settings: Settings) -> int:
    """The largest multipart body that reaches the function through API Gateway (base64 in the event)."""
    return (settings.max_body_bytes - EVENT_ALLOWANCE) * 3 // 4


# -- POST /v1/files ---------------------------------------------------------------------------------------

def create(_: None, inv: Invocation) -> Reply:
    request = inv.request
    body = request.body if request is not None else b""
    limit = max_upload_bytes(inv.settings)
    if len(body) > limit:
        raise errors.PayloadTooLargeError.field(
            "file", f"the upload is {len(body)} bytes; the largest that reaches this API through API Gateway "
                    f"is {limit} bytes of multipart body (2.5 MB, base64-encoded in the event): split the "
                    "batch into several files")
    form = parse_form(body, request.header("content-type", "") if request is not None else "")
    purpose = _text_field(form, "purpose")
    if purpose is None:
        raise errors.BadRequestError.field("purpose", f"is required: one of {', '.join(PURPOSES)}")
    if purpose not in PURPOSES:
        raise errors.BadRequestError.field("purpose", f"must be one of {', '.join(PURPOSES)}")
    upload = form.get("file")
    if upload is None or upload["filename"] is None:
        raise errors.BadRequestError.field("file", "is required: a form part named `file` with a filename")
    expires_in = _expires_after(form)
    store = job_store(inv.settings)
    record = batch_store.save_file(store, inv.caller, upload["filename"] or "file", purpose, bytes(upload["data"]),
                                   upload["content_type"] or "application/octet-stream", expires_in)
    inv.log_fields.update(file_id=record["id"], bytes=record["bytes"], purpose=purpose)
    return Reply(batch_store.file_object(record))


def parse_form(body: bytes, content_type: str) -> dict[str, dict[str, Any]]:
    """multipart/form-data -> {name: {"data", "filename", "content_type"}} (the last part of a name wins),
    with python-multipart's streaming parser doing the parsing; a 400 naming what is wrong otherwise."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise errors.BadRequestError.field("Content-Type", "must be multipart/form-data with a boundary "
                                                           "(the `file` and `purpose` fields as form parts)")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    ended: list[bool] = []

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][bytes(header["field"]).decode("latin-1").strip().lower()] = bytes(header["value"])
        header["field"], header["value"] = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    callbacks: Any = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                      "on_header_value": on_header_value, "on_header_end": on_header_end,
                      "on_part_data": on_part_data, "on_end": lambda: ended.append(True)}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as err:
        raise errors.BadRequestError.field("body", f"is not valid multipart/form-data ({err})") from None
    if not ended:
        raise errors.BadRequestError.field("body", "is not valid multipart/form-data (it ends before the closing "
                                                   "boundary)")
    form: dict[str, dict[str, Any]] = {}
    for part in parts:
        disposition, options = parse_options_header(part["headers"].get("content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise errors.BadRequestError.field("body", "every form part needs Content-Disposition: form-data; name=...")
        filename = options.get(b"filename")
        form[options[b"name"].decode("utf-8", "replace")] = {
            "data": part["data"], "filename": filename.decode("utf-8", "replace") if filename is not None else None,
            "content_type": part["headers"].get("content-type", b"").decode("latin-1") or None}
    return form


def _text_field(form: dict[str, dict[str, Any]], name: str) -> str | None:
    part = form.get(name)
    if part is None:
        return None
    try:
        return bytes(part["data"]).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise errors.BadRequestError.field(name, "must be UTF-8 text") from None


def _expires_after(form: dict[str, dict[str, Any]]) -> int | None:
    anchor, seconds = _text_field(form, "expires_after[anchor]"), _text_field(form, "expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise errors.BadRequestError.field("expires_after.anchor", "must be created_at")
    if seconds is None or not seconds.isdigit() or not EXPIRES_MIN_S <= int(seconds) <= EXPIRES_MAX_S:
        raise errors.BadRequestError.field("expires_after.seconds", f"must be {EXPIRES_MIN_S}-{EXPIRES_MAX_S}")
    return int(seconds)


# -- GET /v1/files, GET /v1/files/{file_id}, GET .../content, DELETE ------------------------------------------

def list_files(_: None, inv: Invocation) -> Reply:
    query = inv.request.query if inv.request is not None else {}
    limit = query_limit(query, MAX_LIST_LIMIT, MAX_LIST_LIMIT)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.BadRequestError.field("order", "must be asc or desc")
    purpose = query.get("purpose") or None
    records, more = batch_store.page(job_store(inv.settings), "file", inv.caller, limit, query.get("after") or None,
                                     purpose, newest_first=order == "desc")
    return Reply(list_body([batch_store.file_object(r) for r in records], more))


def list_body(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    """OpenAI's list page. `has_more` is always there: without it the client pages until an empty page."""
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


def query_limit(query: dict[str, str], default: int, most: int) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise errors.BadRequestError.field("limit", f"must be a whole number from 1 to {most}")
    return int(raw)


def owned_file(file_id: str, inv: Invocation) -> dict[str, Any]:
    """The caller's file record, or 404 (unknown, expired, or another caller's: the same answer)."""
    record = None
    if file_id.startswith(batch_store.FILE_PREFIX) and len(file_id) <= 64:
        record = job_store(inv.settings).records([file_id]).get(file_id)
        if record is not None and (record.get("kind") != "file" or batch_store.expired(record)):
            record = None
    inv.log_fields["file_id"] = file_id
    return visible(record, inv, "file", file_id)


def retrieve(_: None, inv: Invocation) -> Reply:
    return Reply(batch_store.file_object(owned_file(inv.path_params.get("file_id", ""), inv)))


def content(_: None, inv: Invocation) -> Reply:
    record = owned_file(inv.path_params.get("file_id", ""), inv)
    store = job_store(inv.settings)
    key = record.get("object_key") or f"files/{record['id']}"
    if int(record.get("bytes", 0)) > inv.settings.result_inline_bytes:  # API Gateway caps answers at 2.5 MB
        if not owns(record, inv):  # a presigned URL escapes every later check: the owner's only (access.owns)
            raise errors.ForbiddenError(f"file {record['id']} is larger than {inv.settings.result_inline_bytes} "
                                        "bytes: its content is handed only to its owner, as a presigned link")
        return Reply({}, status=307, headers={"Location": store.presign(key, inv.settings.presign_ttl_s)})
    try:
        data = store.get_object(key)
    except MissingObjectError:  # the record outlived its bytes: the file is gone, and no retry brings it back
        raise errors.NotFoundError(f"file {record['id']} not found (its content is no longer stored)") from None
    return Reply(data, headers={"Content-Type": record.get("content_type") or "application/octet-stream"})


def delete(_: None, inv: Invocation) -> Reply:
    record = owned_file(inv.path_params.get("file_id", ""), inv)
    batch_store.delete_file(job_store(inv.settings), record)
    return Reply({"id": record["id"], "object": "file", "deleted": True})
