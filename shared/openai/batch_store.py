"""Where the OpenAI Files and Batch API keep their objects: file records and bytes in the job store and
results bucket, and one caller's lists of files and batches, without a scan.

Ids sort by creation time: `file-<12 hex ms><12 hex random>`; a batch is the job `fmob<12 hex ms><13 hex
random>` behind the id `batch_<job id>` (so GET /operations/<job id> reads the same record).

The owner-scoped lists. The Document API has no secondary index we can count on, and a Scan reads the
whole table, so each caller has list records of their own, sharded by creation hour:

    list#<file|batch>#<sha256(caller)[:16]>#<YYYYMMDDHH>   ids: string set of "<id>" or "<id>|<purpose>"

An upload or a batch adds its id to its hour's record (ADD to a set is atomic, so concurrent writers all
land; only one caller's uploads in one hour touch the same record). Listing reads that caller's hour
records newest first (JOBS_TTL_DAYS x 24 + 1 of them, 100 keys per BatchGetItem, stopping once the page
is full), then the page's records. Limits: a list record holds what one caller creates in one hour, about
8,000 ids at the Document API's item size (400 KB, as DynamoDB's; YDB does not document its own), and a
listing costs one BatchGetItem per 100 hours it has to look back (one for the default 3-day TTL; paging on
with `after` starts at the cursor's hour) plus one per 100 objects on the page. The hours are UTC's, whatever
the process's time zone. Records expire with the jobs' TTL; an id whose record is gone (deleted,
expired) is skipped, and its list entry goes when the hour's record expires.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import clock, logs

if TYPE_CHECKING:
    from shared.jobs.store import JobStore

FILE_PREFIX, BATCH_PREFIX, BATCH_JOB_PREFIX = "file-", "batch_", "fmob"
log = logs.get_logger("openai.batch_store")
MAX_PAGE = 1000  # objects per page, whatever `limit` asks (a client pages on with `after`)


def _hex_now() -> tuple[int, str]:
    ms = int(clock.now() * 1000)
    return ms, f"{ms:012x}"


def new_file_id() -> str:
    return FILE_PREFIX + _hex_now()[1] + os.urandom(6).hex()


def new_batch_job_id() -> str:
    """The job id of a new OpenAI batch (it matches the operation id rule: lower-case letters and digits)."""
    return BATCH_JOB_PREFIX + _hex_now()[1] + os.urandom(7).hex()[:13]


def batch_id(job_id: str) -> str:
    return BATCH_PREFIX + job_id


def job_of(batch: str) -> str:
    return batch.removeprefix(BATCH_PREFIX) if batch.startswith(BATCH_PREFIX) else ""


def created_ms(object_id: str) -> int | None:
    """The creation time an id carries (ms), or None for an id that is not one of ours."""
    for prefix in (FILE_PREFIX, BATCH_PREFIX + BATCH_JOB_PREFIX):
        if object_id.startswith(prefix):
            try:
                return int(object_id[len(prefix):len(prefix) + 12], 16)
            except ValueError:
                return None
    return None


# -- the owner-scoped lists ------------------------------------------------------------------------------

def _hour(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d%H")


def list_key(kind: str, owner: str, hour: str) -> str:
    return f"list#{kind}#{hashlib.sha256(owner.encode()).hexdigest()[:16]}#{hour}"


def _entry(object_id: str, purpose: str | None) -> str:
    return f"{object_id}|{purpose}" if purpose else object_id


def add_to_list(store: JobStore, kind: str, owner: str, object_id: str, purpose: str | None = None) -> None:
    ms = created_ms(object_id) or int(clock.now() * 1000)
    store.set_add(list_key(kind, owner, _hour(ms)), "ids", [_entry(object_id, purpose)],
                  ms / 1000 + store.ttl_s + 7200)


def remove_from_list(store: JobStore, kind: str, owner: str, object_id: str, purpose: str | None = None) -> None:
    ms = created_ms(object_id)
    if ms is not None:
        store.set_remove(list_key(kind, owner, _hour(ms)), "ids", [_entry(object_id, purpose)])


def page(store: JobStore, kind: str, owner: str, limit: int, after: str | None = None, purpose: str | None = None,
         newest_first: bool = True) -> tuple[list[dict[str, Any]], bool]:
    """One page of a caller's objects of `kind` (their records, newest first unless told otherwise), after
    the object `after`, and whether more follow."""
    now = clock.now()
    limit = min(limit, MAX_PAGE)
    start_ms = now * 1000
    end_ms = (now - store.ttl_s) * 1000 - 3_600_000
    hours = []
    ms = start_ms
    while ms >= end_ms:
        hours.append(_hour(ms))
        ms -= 3_600_000
    if not newest_first:
        hours.reverse()
    cursor = created_ms(after) if after else None
    if cursor is not None:  # skip the hours wholly on the far side of the cursor
        cut = _hour(cursor)
        hours = [h for h in hours if (h <= cut if newest_first else h >= cut)]
    chosen: list[str] = []
    for start in range(0, len(hours), 100):
        keys = [list_key(kind, owner, h) for h in hours[start:start + 100]]
        found = store.records(keys)
        entries = []
        for key in keys:
            for entry in (found.get(key) or {}).get("ids", []):
                object_id, _, entry_purpose = entry.partition("|")
                if purpose is not None and entry_purpose != purpose:
                    continue
                if after and (object_id >= after if newest_first else object_id <= after):
                    continue
                entries.append(object_id)
        chosen.extend(sorted(set(entries), reverse=newest_first))
        if len(chosen) > limit:
            break
    more = len(chosen) > limit
    wanted = chosen[:limit]
    records = store.records([_record_key(kind, object_id) for object_id in wanted])
    out = []
    for object_id in wanted:
        record = records.get(_record_key(kind, object_id))
        if record is not None and record.get("created_by") == owner and not expired(record, now):
            out.append(record)
    return out, more


def _record_key(kind: str, object_id: str) -> str:
    return job_of(object_id) if kind == "batch" else object_id


def expired(record: dict[str, Any], now: float | None = None) -> bool:
    """Past its `expires_at` (the store's TTL sweep deletes such records eventually, not at once)."""
    return float(record.get("expires_at", 0) or 0) < (now or clock.now())


# -- file records ---------------------------------------------------------------------------------------

def file_object(record: dict[str, Any]) -> dict[str, Any]:
    """A file record as OpenAI's file object."""
    return {"id": record["id"], "object": "file", "bytes": int(record.get("bytes", 0)),
            "created_at": int(record.get("created_at", 0)), "expires_at": int(record.get("expires_at", 0)) or None,
            "filename": record.get("filename", ""), "purpose": record.get("purpose", ""),
            "status": "processed", "status_details": None}


def save_file(store: JobStore, owner: str, filename: str, purpose: str, data: bytes, content_type: str,
              expires_in_s: float | None = None, file_id: str | None = None) -> dict[str, Any]:
    """Store a file's bytes, its record and its list entry; with a given `file_id` (a batch's output, chosen
    once), a second call finds the record made and changes nothing. Returns the record."""
    file_id = file_id or new_file_id()
    created = (created_ms(file_id) or clock.now() * 1000) / 1000
    ttl = store.ttl_s if expires_in_s is None else min(float(expires_in_s), store.ttl_s)
    record = {"id": file_id, "kind": "file", "created_by": owner, "created_at": int(created),
              "bytes": len(data), "filename": filename, "purpose": purpose, "content_type": content_type,
              "object_key": f"files/{file_id}", "expires_at": int(created + ttl)}
    store.put_object(record["object_key"], data, content_type=content_type)
    if store.put_record(file_id, record):
        add_to_list(store, "file", owner, file_id, purpose)
        return record
    return store.records([file_id]).get(file_id) or record


def delete_file(store: JobStore, record: dict[str, Any]) -> None:
    """Delete a file so that a failure leaves it fully present or fully gone. The record goes first: if
    that fails nothing has changed and the caller may retry; once it is gone, every read answers 404 and
    listings skip the id. The list entry and the bytes follow; if either fails then, the file is already
    gone for every caller, the list entry leaves with its hour's record and the object with the bucket's
    lifecycle rule (jobs_ttl_days), so the failure is logged, never answered as a 503."""
    from shared.errors import ApiError

    store.delete_record(record["id"])
    try:
        remove_from_list(store, "file", record.get("created_by", ""), record["id"], record.get("purpose"))
        store.delete_object(record.get("object_key") or f"files/{record['id']}")
    except ApiError as err:
        log.warning("deleted file left behind (it expires)", extra={"file_id": record["id"], "reason": err.message})


def loads(text: Any, default: Any = None) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) and text else default
    except ValueError:
        return default
