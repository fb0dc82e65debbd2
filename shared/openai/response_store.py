"""Where stored responses live: one record in the job store and one document in the results bucket each.

    record    id=resp_<32 hex>   kind "response", created_by, created_at, expires_at (TTL), status,
                                 job (a background run's operation id), object_key
    document  responses/<id>.json  {"response": the Response object, "context": every item of the
                                 conversation so far, in order (the chain's items, this turn's input items,
                                 its output), "input_start", "input_count" (where this turn's input is)}

The document carries the whole conversation, so continuing one (`previous_response_id`) reads one record
and one document however long the chain is: 2 store round trips, not one per turn. An `item_reference`
names the response its item came from (response_object.item_id), so resolving one reads that response
the same way (once per response referenced, whatever the number of items).

A record belongs to the caller that created it: for anyone else it does not exist (the same answer as an
unknown id, and the attempt is logged, as for files and batches). Records expire after
FM_RESPONSES_TTL_DAYS (30 by default); an expired record is treated as absent before the TTL sweep
removes it. The ids sort by creation time (`resp_<12 hex ms><20 hex random>`).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.jobs.access import visible

if TYPE_CHECKING:
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("openai.responses")

PREFIX = "resp_"
PENDING = ("queued", "in_progress")


def new_response_id() -> str:
    return f"{PREFIX}{int(clock.now() * 1000):012x}{os.urandom(10).hex()}"


def well_formed(response_id: str) -> bool:
    """Ours, or upstream's (passed-through responses): resp_ and up to 120 letters, digits, _ or -."""
    rest = response_id.removeprefix(PREFIX)
    return (response_id.startswith(PREFIX) and 1 <= len(rest) <= 120
            and all(c.isascii() and (c.isalnum() or c in "_-") for c in rest))


def object_key(response_id: str) -> str:
    return f"responses/{response_id}.json"


def save(store: JobStore, inv: Invocation, document: dict[str, Any], job: str | None = None) -> None:
    """Store a new response: its document, then its record (so a record always has its document)."""
    response = document["response"]
    ttl_s = inv.settings.responses_ttl_days * 86400
    store.put_object(object_key(response["id"]), _encode(document))
    store.put_record(response["id"], {"kind": "response", "created_by": inv.caller, "created_at": response["created_at"],
                                      "expires_at": int(response["created_at"] + ttl_s), "status": response["status"],
                                      "background": bool(response.get("background")), "job": job,
                                      "object_key": object_key(response["id"])})


def replace(store: JobStore, record: dict[str, Any], document: dict[str, Any]) -> None:
    """A background run's final document and status (written by whoever settles it first; the same content)."""
    store.put_object(record["object_key"], _encode(document))
    store.set_fields(record["id"], {"status": document["response"]["status"]})


def record(store: JobStore, response_id: str, inv: Invocation) -> dict[str, Any] | None:
    """This caller's live record for the id, or None (unknown, malformed, expired, deleted or another
    caller's: the same answer; another caller's attempt is logged)."""
    if not well_formed(response_id):
        return None
    found = store.records([response_id]).get(response_id)
    if found is None or found.get("kind") != "response" or float(found.get("expires_at", 0) or 0) < clock.now():
        return None
    try:
        return visible(found, inv, "response", response_id)
    except errors.NotFoundError:
        return None


def owned(response_id: str, inv: Invocation, store: JobStore) -> dict[str, Any]:
    """The caller's record, or 404 in OpenAI's words."""
    found = record(store, response_id, inv)
    inv.log_fields["response_id"] = response_id
    if found is None:
        raise errors.NotFoundError(f"Response with id '{response_id}' not found.")
    return found


def document(store: JobStore, found: dict[str, Any]) -> dict[str, Any]:
    data = store.get_object(found.get("object_key") or object_key(found["id"]))
    return json.loads(data)


def delete(store: JobStore, found: dict[str, Any]) -> None:
    """The record first (from then on the id is gone for every route), then the document."""
    store.delete_record(found["id"])
    store.delete_object(found.get("object_key") or object_key(found["id"]))


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
