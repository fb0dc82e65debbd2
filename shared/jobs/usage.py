"""The usage ledger: one entry per upstream call that answered with usage, through every door.

Each entry is written twice:
- one JSON log line, `msg: "usage"`, with a `usage` object (always, job store or not), so Cloud Logging
  can export the raw stream: caller, model (full URI), route, mode (as upstream bills it: `sync`, or
  `async` for completionAsync), door (`sync`, `job`, `batch`), input/output/reasoning tokens, requests,
  billing units (classifiers), request id, call key, time;
- when the job store is configured, added to the totals per caller x UTC day x model x mode in ONE
  TransactWriteItems, never a read-modify-write:
      Put    usage#call#<key>                    condition attribute_not_exists(id), TTL USAGE_MARK_DAYS
      Update usage#<day>#<caller>#<k>            ADD the counters of (model, mode), ADD models :uri
  so a second entry with the same call key changes nothing (the transaction is cancelled by the Put's
  condition), and a caller's day is spread over USAGE_SHARDS items (k = crc32(key) mod USAGE_SHARDS), as
  the active-operations index is, so no item is written by every call. A batch's requests each get their
  log line, and enter the store as one entry for the whole batch (record_batch), from its item records.
- in the same transaction, the day's list of callers (for the usage API's admin view, which must find
  everyone's totals without a scan):
      Update usage#<day>#:callers#<j>            ADD callers :caller   (a string set)
  with j = crc32(call key) mod CALLER_SHARDS: spread by the call, not the caller, so neither one busy
  caller nor the whole deployment writes one item (as the active-operations index is spread over 16). The
  ':' keeps it apart from every caller's totals (a quoted caller has none: one named `callers` too).

Reading: a caller's day is one BatchGetItem of USAGE_SHARDS keys (totals()); a month, 31 x USAGE_SHARDS
keys, 100 per BatchGetItem (days()); the callers of a day, CALLER_SHARDS keys (callers()); any set of
(caller, day) pairs, len x USAGE_SHARDS keys (pair_totals()).

A ledger failure never fails the caller's request: it is logged (WARN, with the entry) and the request
goes on. On the synchronous path the store write is one TransactWriteItems on a client that does not
retry throttling or errors (one store round trip), but does try a write conflict again (the caller's own
concurrent requests meet on its items); workers and the poller, where no caller waits, use the store's
usual write (conflicts retried within its bound).
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared import clock, logs

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.jobs.store import JobStore

log = logs.get_logger("usage")

USAGE_SHARDS = 8  # items a caller's day is spread over; a day is one BatchGetItem of this many keys
CALLER_SHARDS = 16  # items a day's list of callers is spread over (by call key)
USAGE_MARK_DAYS = 7  # how long a call key is remembered (longer than a job or batch can be redelivered)
COUNTERS = ("input_tokens", "output_tokens", "reasoning_tokens", "requests", "units")
_SHORT = {"input_tokens": "in", "output_tokens": "out", "reasoning_tokens": "rsn", "requests": "req", "units": "units"}


@dataclass
class Entry:
    """One upstream call's usage."""

    caller: str
    model: str  # the full URI
    route: str  # the operation (completion, createChatCompletion, completionAsync, batch, ...)
    mode: str  # as upstream bills it: sync, async (completionAsync), batch
    door: str  # how it came in here: sync, job (an async operation or background response), batch
    key: str  # the call's key: sync#<request id>, <op>#<task>#<attempt>, <op>#i<index>, ...
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 1
    units: int = 1  # billing units: classifiers' per-request units; 1 per call otherwise
    request_id: str = ""
    at: float = field(default_factory=lambda: clock.now())

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y%m%d")


def record(entry: Entry, settings: Settings, patient: bool = False, message: str = "usage",
           settle: Any = None) -> bool | None:
    """Log the entry and add it to the day's totals once. True: counted now; False: that call key was counted
    before; None: not counted in the store (no store, or the store failed: logged). Never raises."""
    line = _line(entry)
    if not (settings.docapi_endpoint and settings.results_bucket):
        log.info(message, extra={"usage": line})
        return None
    started = time.monotonic()
    try:
        from shared.jobs.store import job_store

        counted = add(job_store(settings), entry, settings, patient, settle)
    except Exception as err:  # the ledger never fails the request it counts
        log.warning("usage not added to the totals (the log line is the record)",
                    extra={"usage": line, "error": f"{type(err).__name__}: {err}"[:300]})
        return None
    log.info(message, extra={"usage": {**line, "counted": counted}, "ledger_ms": round((time.monotonic() - started) * 1000, 2)})
    return counted


def _line(entry: Entry) -> dict[str, Any]:
    line = {k: v for k, v in asdict(entry).items() if k != "at"}
    line.update(time=datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="milliseconds"), day=entry.day)
    return line


def add(store: JobStore, entry: Entry, settings: Settings, patient: bool, settle: Any = None) -> bool:
    """The one transaction: the call's mark (only if absent) and the ADD to its caller-day shard."""
    now = clock.now()
    day_start = datetime.strptime(entry.day, "%Y%m%d").replace(tzinfo=UTC).timestamp()
    prefix = attribute_prefix(entry.model, entry.mode)
    names = {"#models": "models", "#exp": "expires_at", "#caller": "caller", "#day": "day"}
    values: dict[str, Any] = {":models": {"SS": [entry.model]}, ":caller": {"S": entry.caller}, ":day": {"S": entry.day},
                              ":exp": {"N": str(int(day_start + settings.usage_ttl_days * 86400))}}
    adds = ["#models :models"]
    for number, counter in enumerate(COUNTERS):
        names[f"#c{number}"] = f"{prefix}_{_SHORT[counter]}"
        values[f":c{number}"] = {"N": str(int(getattr(entry, counter) or 0))}
        adds.append(f"#c{number} :c{number}")
    update = {"TableName": store.table, "Key": {"id": {"S": totals_key(entry.caller, entry.day, shard(entry.key))}},
              "UpdateExpression": f"ADD {', '.join(adds)} SET #exp = if_not_exists(#exp, :exp), #caller = :caller, "
                                  "#day = :day",
              "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
    mark = {"TableName": store.table, "ConditionExpression": "attribute_not_exists(id)",
            "Item": {"id": {"S": mark_key(entry.key)}, "caller": {"S": entry.caller},
                     "expires_at": {"N": str(int(now + USAGE_MARK_DAYS * 86400))}}}
    items = [{"Put": mark}, {"Update": update}, {"Update": caller_list_update(store, entry, values[":exp"])}]
    if settle is not None:  # a budget reservation's settle rides on this transaction (shared/jobs/limits.py)
        return settle.commit(store, items, mark_key(entry.key), patient, entry)
    return store.add_usage(items, mark_key(entry.key), patient)


def caller_list_update(store: JobStore, entry: Entry, expires: dict[str, str]) -> dict[str, Any]:
    """The transaction's ADD of the caller to its day's list (one of CALLER_SHARDS items, by call key)."""
    return {"TableName": store.table, "Key": {"id": {"S": callers_key(entry.day, zlib.crc32(entry.key.encode()) % CALLER_SHARDS)}},
            "UpdateExpression": "ADD #callers :caller SET #exp = if_not_exists(#exp, :exp), #day = :day",
            "ExpressionAttributeNames": {"#callers": "callers", "#exp": "expires_at", "#day": "day"},
            "ExpressionAttributeValues": {":caller": {"SS": [entry.caller]}, ":exp": expires, ":day": {"S": entry.day}}}


def mark_key(call_key: str) -> str:
    return f"usage#call#{call_key}"


def shard(call_key: str) -> int:
    return zlib.crc32(call_key.encode()) % USAGE_SHARDS


def totals_key(caller: str, day: str, number: int) -> str:
    return f"usage#{day}#{quote(caller, safe='')}#{number}"


def callers_key(day: str, number: int) -> str:
    return f"usage#{day}#:callers#{number}"  # ':' is quoted in a caller's name: no totals key is this


def attribute_prefix(model: str, mode: str) -> str:
    """Counters of one (model, mode) are named m<hash of the URI>_<mode>_<counter>: any URI, a safe name."""
    return f"m{hashlib.sha256(model.encode()).hexdigest()[:16]}_{mode}"


def totals(store: JobStore, caller: str, day: str) -> dict[str, dict[str, dict[str, int]]]:
    """A caller's totals for one UTC day (YYYYMMDD): model URI -> mode -> counter -> sum; one BatchGetItem."""
    return days(store, caller, [day]).get(day, {})


def days(store: JobStore, caller: str, day_list: list[str]) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """Totals for several days: len(day_list) x USAGE_SHARDS keys, 100 per BatchGetItem."""
    keys = [totals_key(caller, day, n) for day in day_list for n in range(USAGE_SHARDS)]
    found = store.records(keys)
    out: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for record in found.values():
        day = str(record.get("day", ""))
        for model in record.get("models", []):
            for mode in ("sync", "async", "batch"):
                prefix = attribute_prefix(model, mode)
                if f"{prefix}_req" not in record:
                    continue
                sums = out.setdefault(day, {}).setdefault(model, {}).setdefault(mode, dict.fromkeys(COUNTERS, 0))
                for counter in COUNTERS:
                    sums[counter] += int(record.get(f"{prefix}_{_SHORT[counter]}", 0))
    return out


def callers(store: JobStore, day_list: list[str]) -> dict[str, set[str]]:
    """The callers with usage on each day (YYYYMMDD -> names): len(day_list) x CALLER_SHARDS keys."""
    found = store.records([callers_key(day, n) for day in day_list for n in range(CALLER_SHARDS)])
    out: dict[str, set[str]] = {}
    for record in found.values():
        out.setdefault(str(record.get("day", "")), set()).update(str(c) for c in record.get("callers", []))
    return out


def pair_totals(store: JobStore, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]]:
    """Totals of several (caller, day) pairs: (caller, day) -> model URI -> mode -> counter -> sum."""
    keys = [totals_key(caller, day, n) for caller, day in pairs for n in range(USAGE_SHARDS)]
    out: dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]] = {}
    for record in store.records(keys).values():
        per_pair = out.setdefault((str(record.get("caller", "")), str(record.get("day", ""))), {})
        for model in record.get("models", []):
            for mode in ("sync", "async", "batch"):
                prefix = attribute_prefix(model, mode)
                if f"{prefix}_req" not in record:
                    continue
                sums = per_pair.setdefault(model, {}).setdefault(mode, dict.fromkeys(COUNTERS, 0))
                for counter in COUNTERS:
                    sums[counter] += int(record.get(f"{prefix}_{_SHORT[counter]}", 0))
    return out


# -- what the doors call ------------------------------------------------------------------------------------

def native_usage(usage: Any) -> dict[str, int]:
    """Native completion usage (int64 as strings) -> our counters."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("completionTokensDetails") if isinstance(usage.get("completionTokensDetails"), dict) else {}
    return {"input_tokens": _int(usage.get("inputTextTokens")), "output_tokens": _int(usage.get("completionTokens")),
            "reasoning_tokens": _int(details.get("reasoningTokens"))}


def openai_usage(usage: Any) -> dict[str, int]:
    """OpenAI chat or Responses usage -> our counters."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    return {"input_tokens": _int(usage.get("prompt_tokens", usage.get("input_tokens"))),
            "output_tokens": _int(usage.get("completion_tokens", usage.get("output_tokens"))),
            "reasoning_tokens": _int(details.get("reasoning_tokens") if isinstance(details, dict) else 0)}


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


# The synchronous routes that reach a billed upstream call, and what they count. Tokenize routes are free
# upstream (shared/prices.py), listing and stored-response routes call no model; a background response is
# counted by the worker that runs it.
SYNC_ROUTES = {"completion": "tokens", "textEmbedding": "tokens", "createChatCompletion": "tokens",
               "createEmbedding": "tokens", "createResponse": "tokens",
               "fewShotTextClassification": "requests", "textClassification": "requests"}


def record_request(operation: str, inv: Any, request_id: str) -> bool | None:
    """runtime's hook after a synchronous route answered: the entry from what the operation put in
    inv.log_fields (model, input_tokens, completion_tokens, reasoning_tokens), keyed sync#<request id>."""
    try:
        entry = _sync_entry(operation, inv, request_id)
    except Exception:  # the ledger never fails the request it counts
        log.warning("usage entry could not be built", exc_info=True, extra={"operation": operation})
        return None
    if entry is None:
        return None
    settle = None
    if getattr(inv, "reservation", None) is not None:
        from shared.jobs.limits import for_request

        settle = for_request(inv)
    return record(entry, inv.settings, settle=settle)


def _sync_entry(operation: str, inv: Any, request_id: str) -> Entry | None:
    counts = SYNC_ROUTES.get(operation)
    fields = inv.log_fields
    if counts is None or not fields.get("model") or fields.get("background"):
        return None
    if counts == "tokens" and fields.get("input_tokens") is None and fields.get("completion_tokens") is None:
        log.warning("upstream answered without usage: the call is not in the usage ledger",
                    extra={"operation": operation, "model": fields.get("model")})
        return None
    entry = Entry(caller=inv.caller, model=str(fields["model"]), route=operation, mode="sync", door="sync",
                  key=f"sync#{request_id}", input_tokens=_int(fields.get("input_tokens")),
                  output_tokens=_int(fields.get("completion_tokens")),
                  reasoning_tokens=_int(fields.get("reasoning_tokens")),
                  request_id=str(fields.get("upstream_request_id") or request_id))
    if operation in ("textEmbedding", "createEmbedding"):  # one upstream call per text
        entry.requests = entry.units = max(1, _int(fields.get("texts")))
    if counts == "requests":
        from shared.prices import classifier_units, table

        entry.units = classifier_units(entry.model, entry.input_tokens, table(inv.settings.prices))
    return entry


# -- the async engine: a task's upstream calls (worker) and a batch request's result (poller) --------------------

JOB_ROUTES = {"completion": "completionAsync", "embedding": "textEmbeddingAsync",
              "classification": "fewShotTextClassificationAsync"}


def record_task(operation: dict[str, Any], number: int, attempt: int, payload: dict[str, Any],
                result: dict[str, Any], inv: Any, settle: Any = None) -> bool | None:
    """A task's upstream answer, recorded by the worker right after upstream answered and before the task is
    completed, keyed <op>#<task>#<attempt>: a redelivery of a completed task never gets here, and an attempt
    that calls upstream again (after a crash or a lease taken over) is a second billed call, counted."""
    try:
        kind = str(operation.get("kind", ""))
        entry = Entry(caller=str(operation.get("created_by") or "anonymous"), model=str(payload.get("modelUri", "")),
                      route=_job_route(operation, kind), mode="sync", door="batch" if operation.get("door") else "job",
                      key=f"{operation['id']}#{number}#{attempt}", request_id=str(operation["id"]))
        if kind == "completion":
            entry.__dict__.update(native_usage(result.get("usage")))
        elif kind == "classification":
            from shared.prices import classifier_units, table

            entry.input_tokens = _int(result.get("inputTokens"))
            entry.units = classifier_units(entry.model, entry.input_tokens, table(inv.settings.prices))
        elif "requests" in result:  # an embeddings batch's task: several requests, each one call per text
            answers = [a for a in result["requests"] if "error" not in a]
            entry.requests = entry.units = sum(len(a.get("embeddings", [])) for a in answers)
            entry.input_tokens = sum(_int(a.get("numTokens")) for a in answers)
        else:
            entry.requests = entry.units = len(result.get("embeddings", []))
            entry.input_tokens = _int(result.get("numTokens"))
    except Exception:
        log.warning("usage entry could not be built", exc_info=True, extra={"operation_id": operation.get("id")})
        return None
    if not entry.requests:
        return None
    return record(entry, inv.settings, patient=True, settle=settle)


def _job_route(operation: dict[str, Any], kind: str) -> str:
    if operation.get("door"):
        return "createBatch"
    if operation.get("description") == "Background Response":
        return "createResponse"
    return JOB_ROUTES.get(kind, kind)


def _item_entry(operation: dict[str, Any], key: str, usage: Any) -> Entry:
    return Entry(caller=str(operation.get("created_by") or "anonymous"), model=str(operation.get("model") or "unknown"),
                 route="createBatch" if operation.get("door") else "completionBatch", mode="async", door="batch",
                 key=key, request_id=str(operation["id"]), **native_usage(usage))


def log_item(operation: dict[str, Any], index: int, outcome: dict[str, Any]) -> None:
    """A batch request upstream finished (completionAsync: billed as async): its `usage` log line, written by the
    poller whose conditional write recorded the item (so once). Its totals enter the store with its batch's
    (record_batch): one transaction per batch, not per request."""
    try:
        line = _line(_item_entry(operation, f"{operation['id']}#i{index}", outcome.get("usage")))
    except Exception:
        log.warning("usage entry could not be built", exc_info=True, extra={"operation_id": operation.get("id")})
        return
    log.info("usage", extra={"usage": {**line, "counted": "with its batch"}})


def record_batch(operation: dict[str, Any], records: dict[int, dict[str, Any]], inv: Any,
                 settle: Any = None) -> bool | None:
    """A batch's usage, summed from its item records (each holds upstream's result), into the totals once: key
    <op>#batch, one transaction, on the day the batch ends. The poller calls it before it finishes the batch
    (or, for a stopped one, drops it from its index), so a poller that dies between the two leaves it to the
    next run, which counts nothing: no window loses a batch's usage. Logged as "usage batch totals", so a sum
    of the "usage" lines counts each request once."""
    try:
        entry = _item_entry(operation, f"{operation['id']}#batch", None)
        entry.requests = entry.units = 0
        for item in records.values():
            if item.get("state") != "done" or item.get("failed"):
                continue
            counts = native_usage(json.loads(item.get("outcome") or "{}").get("usage"))
            for name, value in counts.items():
                setattr(entry, name, getattr(entry, name) + value)
            entry.requests += 1
            entry.units += 1
    except Exception:
        log.warning("usage entry could not be built", exc_info=True, extra={"operation_id": operation.get("id")})
        return None
    if not entry.requests:
        return None
    return record(entry, inv.settings, patient=True, message="usage batch totals", settle=settle)
