"""The job store: operations and their tasks in YDB's DynamoDB-compatible Document API, payloads and
results in Object Storage. boto3 is imported here only, and only when a job is touched.

Items (one table, key `id`):
    operation  id=<op>        kind, state, tasks_total, tasks_done, created_at, modified_at, created_by,
                              description, error (JSON), last_error, result_key, result_size, expires_at (TTL)
    task       id=<op>#<n>    state, worker, lease_until, attempts (claims), deferrals (claims given back
                              as no failure), started_at (last claim), last_error, result_key
    batch item id=<op>#i<n>   state, upstream_id, custom_id, next_poll_at, polls, outcome, failed
    index      id=index#active#<k>  ops: the unsettled operations whose id hashes to shard k

State machine, each step one conditional write, so two workers can never both win a step:

    task:       (absent|queued) --claim--> running --complete--> done
                running --claim, lease expired--> running   (a worker died; another takes over)
                running --release (transient error)--> queued
    operation:  queued --first task claimed--> running --all tasks done | failure--> done

A task's completion and the operation's tasks_done counter move in one transaction, so the count is
exact; the worker that sees tasks_done == tasks_total assembles the result, and finishing is
conditional on the operation not being done already.

Two answers botocore does not retry are handled here, for writes only (PutItem, UpdateItem,
TransactWriteItems): a write conflict (TransactionConflictException, or a cancelled transaction whose
reason is TransactionConflict) is retried a bounded number of times with jittered backoff; a missing
table (ResourceNotFoundException) is created, as deployment would have, and the write repeated once.
So the normal path makes no schema call at all: DescribeTable has a quota of 30 a minute per database.
"""

from __future__ import annotations

import json
import random
import re
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from shared import clock, errors, logs
from shared.config import Settings

log = logs.get_logger("jobs")

QUEUED, RUNNING, DONE = "queued", "running", "done"
# The only moves the store makes, each enforced by a ConditionExpression below (and checked by
# tests/integration/test_promises_jobs.py::test_the_store_makes_no_move_outside_its_state_machine):
#   task:      (none) -> running, queued -> running, running -> running (a lease taken over), running -> done,
#              running -> queued (given back)
#   operation: queued -> running, queued -> done, running -> done


# A write conflict is retried up to CONFLICT_ATTEMPTS times in all, sleeping a random time in
# [0, min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2**n)] before the n-th retry ("full jitter"), so writers
# that collided spread out instead of colliding again; at most about 0.6 s in all.
CONFLICT_ATTEMPTS = 6
CONFLICT_BASE_S = 0.02
CONFLICT_CAP_S = 0.32
# The index of unsettled operations is spread over this many items, so that no item is written by
# every submission and every finish (a hot item is where the Document API answers with conflicts).
ACTIVE_SHARDS = 16


class StoreError(errors.UpstreamUnavailableError):
    """The job store or bucket failed in a way a retry may fix."""


class MissingObjectError(errors.NotFoundError):
    """The bucket has no object under the key: no retry brings it back (a record that outlived its
    object, e.g. an object the lifecycle rule expired), so it is a 404, never a retryable 503."""



def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def is_write_conflict(err: Exception) -> bool:
    """TransactionConflictException, or a cancelled transaction whose only failures are conflicts."""
    code = _code(err)
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = {r.get("Code") for r in getattr(err, "response", {}).get("CancellationReasons", [])} - {"None", None}
    return reasons == {"TransactionConflict"}


@dataclass
class Claim:
    outcome: str  # "claimed", "done" (task already finished), "busy" (another worker holds the lease)
    attempts: int = 0


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else str(value)}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        out[key] = float(value) if kind == "N" and "." in value else int(value) if kind == "N" else value
    return out  # BOOL and SS come through as bool and list


class JobStore:
    def __init__(self, settings: Settings, active_shards: int = ACTIVE_SHARDS) -> None:
        settings.require_store()
        import boto3
        from botocore.config import Config

        common = {"region_name": settings.region, "aws_access_key_id": settings.access_key_id,
                  "aws_secret_access_key": settings.secret_access_key}
        logs.register_secret(settings.secret_access_key)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=20)
        self.table = settings.jobs_table
        self.bucket = settings.results_bucket or ""
        self.ttl_s = settings.jobs_ttl_days * 86400
        self.active_shards = active_shards
        self._found_in: dict[str, str] = {}  # op id -> the index item active_ids() last saw it in
        self.db = boto3.client("dynamodb", endpoint_url=settings.docapi_endpoint, config=config, **common)
        self._one_shot: Any = None  # a client that never retries, for the usage ledger's synchronous path
        self._one_shot_args = {"endpoint_url": settings.docapi_endpoint, **common}
        self.s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint, **common, config=config.merge(s3_config()))

    # -- low level --
    def _write(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One PutItem / UpdateItem / TransactWriteItems (the client method's name), retrying write
        conflicts and creating a missing table; any other refusal is raised as botocore's ClientError."""
        from botocore.exceptions import BotoCoreError, ClientError

        call = getattr(self.db, operation)
        attempt, created = 1, False
        while True:
            try:
                return call(**kwargs)
            except ClientError as err:
                if is_write_conflict(err):
                    if attempt >= CONFLICT_ATTEMPTS:
                        log.warning("job store: write conflict persisted", extra={"attempts": attempt})
                        raise StoreError(f"job store: {_code(err)} after {attempt} attempts") from None
                    clock.sleep(random.uniform(0, min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2 ** (attempt - 1))))
                    attempt += 1
                elif _code(err) == "ResourceNotFoundException" and not created:
                    self.create_table()
                    created = True  # and the write is repeated once
                else:
                    raise
            except BotoCoreError as err:
                raise StoreError(f"job store: {type(err).__name__}") from None

    def add_usage(self, items: list[dict[str, Any]], mark: str, patient: bool) -> bool:
        """The usage ledger's one TransactWriteItems (shared/jobs/usage.py): True when applied, False when its
        call mark (the first item, put only if absent) was there already. `patient`: the usual write (conflicts
        retried, a missing table created); otherwise a client that does not retry throttling or errors, so a
        caller waits one store round trip unless the write conflicts with another (then it is tried again, as
        the usual write is, up to CONFLICT_ATTEMPTS times: a conflict is where concurrent calls of one caller
        meet, and dropping those would under-count exactly the busy callers). A cancellation without reasons
        is judged by the mark."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if patient:
                self._write("transact_write_items", TransactItems=items)
            else:
                for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                    try:
                        self._one_shot_client().transact_write_items(TransactItems=items)
                        break
                    except ClientError as err:
                        if not is_write_conflict(err) or attempt == CONFLICT_ATTEMPTS:
                            raise
                        clock.sleep(random.uniform(0, min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2 ** (attempt - 1))))
            return True
        except ClientError as err:
            if _code(err) not in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                raise StoreError(f"job store: {_code(err)}") from None
            reasons = [r.get("Code") for r in getattr(err, "response", {}).get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"] or (not reasons and self.item(mark) is not None):
                return False
            raise StoreError(f"job store: usage transaction cancelled ({', '.join(map(str, reasons)) or 'no reasons'})") from None
        except BotoCoreError as err:
            raise StoreError(f"job store: {type(err).__name__}") from None

    def transact(self, items: list[dict[str, Any]]) -> bool:
        """One TransactWriteItems with the usual write's retries; False when a condition did not hold (the
        caller then reads the state to tell why: a cancellation's reasons are not relied on)."""
        from botocore.exceptions import ClientError

        try:
            self._write("transact_write_items", TransactItems=items)
            return True
        except ClientError as err:
            if _code(err) in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                return False
            raise StoreError(f"job store: {_code(err)}") from None

    def _one_shot_client(self) -> Any:
        if self._one_shot is None:
            import boto3
            from botocore.config import Config

            self._one_shot = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                                    connect_timeout=2, read_timeout=5),
                                          **self._one_shot_args)
        return self._one_shot

    def create_table(self) -> None:
        """Create the jobs table after a write found it missing; see create_jobs_table."""
        create_jobs_table(self.db, self.table)

    def _update(self, key: str, expression: str, values: dict[str, Any], condition: str | None = None,
                names: dict[str, str] | None = None) -> bool:
        """One conditional UpdateItem; False when the condition did not hold."""
        from botocore.exceptions import ClientError

        text = expression + " " + (condition or "")
        all_names = {"#state": "state", **(names or {})}
        used = set(re.findall(r"[:#]\w+", text))  # the API refuses placeholders the expressions do not use
        used_values = {k: v for k, v in values.items() if k in used}
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": {"id": _s(key)}, "UpdateExpression": expression,
                                  "ExpressionAttributeValues": used_values}
        used_names = {k: v for k, v in all_names.items() if k in used}
        if used_names:
            kwargs["ExpressionAttributeNames"] = used_names
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            self._write("update_item", **kwargs)
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None

    def item(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.db.get_item(TableName=self.table, Key={"id": _s(key)}, ConsistentRead=True).get("Item")
        except ClientError as err:
            if err.response["Error"]["Code"] == "ResourceNotFoundException":  # no job was ever submitted
                return None
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None
        except BotoCoreError as err:
            raise StoreError(f"job store: {type(err).__name__}") from None
        return _plain(found) if found else None

    # -- objects --
    def put_object(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as err:
            raise StoreError(f"results bucket: {type(err).__name__}") from None

    def get_object(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404", "NotFound"):
                raise MissingObjectError(f"results bucket: no object {key}") from None
            raise StoreError(f"results bucket: {type(err).__name__}") from None
        except BotoCoreError as err:
            raise StoreError(f"results bucket: {type(err).__name__}") from None

    def presign(self, key: str, ttl_s: int) -> str:
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_s)

    # -- operations --
    def create(self, op_id: str, kind: str, description: str, created_by: str, payloads: list[bytes],
               extra: dict[str, str] | None = None, numbers: dict[str, float] | None = None) -> dict[str, Any]:
        """Store each task's payload, then the operation (queued); payloads first, so a queued task always has one."""
        from botocore.exceptions import ClientError

        for number, payload in enumerate(payloads):
            self.put_object(payload_key(op_id, number), payload)
        now = clock.now()
        item = {"id": _s(op_id), "kind": _s(kind), "state": _s(QUEUED), "tasks_total": _n(len(payloads)),
                "tasks_done": _n(0), "created_at": _n(now), "modified_at": _n(now), "created_by": _s(created_by),
                "description": _s(description), "expires_at": _n(int(now + self.ttl_s))}
        for key, value in (extra or {}).items():
            item[key] = _s(value)
        for key, number in (numbers or {}).items():
            item[key] = _n(number)
        try:
            self._write("put_item", TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(id)")
        except ClientError as err:
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None
        self.activate(op_id)
        return _plain(item)

    # -- the index of operations not yet settled, which the batch poller walks --
    # Spread over `active_shards` items, an operation's chosen by a stable hash of its id; active_ids()
    # reads them all (and the single item older versions wrote) with one BatchGetItem.
    def index_keys(self) -> list[str]:
        return [*(f"{ACTIVE_INDEX}#{n}" for n in range(self.active_shards)), ACTIVE_INDEX]

    def index_key(self, op_id: str) -> str:
        return f"{ACTIVE_INDEX}#{zlib.crc32(op_id.encode()) % self.active_shards}"

    def activate(self, op_id: str) -> None:
        self._update(self.index_key(op_id), "ADD ops :op", {":op": {"SS": [op_id]}})

    def deactivate(self, op_id: str) -> None:
        key = self.index_key(op_id)
        self._update(key, "DELETE ops :op", {":op": {"SS": [op_id]}})
        found_in = self._found_in.pop(op_id, key)
        if found_in != key:  # put there under another shard count, or by an older version
            self._update(found_in, "DELETE ops :op", {":op": {"SS": [op_id]}})

    def active_ids(self) -> list[str]:
        found = self._batch_get(self.index_keys())
        ids: list[str] = []
        for key, record in found.items():
            for op_id in record.get("ops", []):
                ids.append(op_id)
                if key != self.index_key(op_id):
                    self._found_in[op_id] = key
        return sorted(set(ids))

    def set_fields(self, key: str, fields: dict[str, Any]) -> None:
        """Plain SET of string or number fields (progress and bookkeeping, not state)."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": (_n(v) if isinstance(v, (int, float)) else _s(str(v))) for i, v in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        self._update(key, expression, values, names=names)

    def lease(self, key: str, field: str, holder: str, seconds: float) -> bool:
        """Take a named lease on an item (e.g. the poller's on a batch) unless someone else holds a live one."""
        now = clock.now()
        return self._update(key, f"SET {field}_until = :until, {field}_holder = :holder",
                            {":until": _n(now + seconds), ":now": _n(now), ":holder": _s(holder)},
                            f"attribute_exists(id) AND (attribute_not_exists({field}_until) OR {field}_until < :now "
                            f"OR {field}_holder = :holder)")

    def unlease(self, key: str, field: str, holder: str) -> None:
        self._update(key, f"SET {field}_until = :zero", {":zero": _n(0), ":holder": _s(holder)},
                     f"{field}_holder = :holder")

    # -- batch items: one record per request, id <op>#i<n> --
    def item_started(self, op_id: str, index: int, upstream_id: str, custom_id: str) -> bool:
        from botocore.exceptions import ClientError

        now = clock.now()
        try:
            self._write("put_item", TableName=self.table, ConditionExpression="attribute_not_exists(id)", Item={
                "id": _s(item_id(op_id, index)), "state": _s(RUNNING), "upstream_id": _s(upstream_id),
                "custom_id": _s(custom_id), "next_poll_at": _n(now), "polls": _n(0),
                "expires_at": _n(int(now + self.ttl_s))})
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None

    def item_finished(self, op_id: str, index: int, custom_id: str, outcome: dict[str, Any], failed: bool,
                      from_state: str | None = RUNNING) -> bool:
        """running (or absent, for a request refused at start) -> done, in one conditional write, so
        exactly one poller records an item. The batch's counts are derived from these records."""
        from botocore.exceptions import ClientError

        now = clock.now()
        record = {"id": _s(item_id(op_id, index)), "state": _s(DONE), "custom_id": _s(custom_id),
                  "outcome": _s(json.dumps(outcome, ensure_ascii=False)), "failed": {"BOOL": failed},
                  "expires_at": _n(int(now + self.ttl_s))}
        try:
            if from_state is None:
                self._write("put_item", TableName=self.table, Item=record,
                            ConditionExpression="attribute_not_exists(id)")
                return True
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None
        return self._update(item_id(op_id, index), "SET #state = :done, outcome = :outcome, failed = :failed",
                            {":done": _s(DONE), ":outcome": record["outcome"], ":failed": record["failed"],
                             ":from": _s(from_state)}, "#state = :from")

    def items(self, op_id: str, indexes: list[int]) -> dict[int, dict[str, Any]]:
        """Batch items by index (absent ones are not started yet)."""
        found = self._batch_get([item_id(op_id, i) for i in indexes])
        return {int(key.rsplit("#i", 1)[1]): record for key, record in found.items()}

    def _batch_get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Items by key, consistent reads, 100 keys per BatchGetItem; absent ones (or no table yet) left out."""
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table: {"Keys": [{"id": _s(k)} for k in keys[start:start + 100]],
                                                    "ConsistentRead": True}}
            while request:
                try:
                    answer = self.db.batch_get_item(RequestItems=request)
                except ClientError as err:
                    if _code(err) == "ResourceNotFoundException":  # no job was ever submitted
                        return {}
                    raise StoreError(f"job store: {_code(err)}") from None
                except BotoCoreError as err:
                    raise StoreError(f"job store: {type(err).__name__}") from None
                for raw in answer.get("Responses", {}).get(self.table, []):
                    record = _plain(raw)
                    found[record["id"]] = record
                request = answer.get("UnprocessedKeys") or {}
        return found

    def claim(self, op_id: str, number: int, worker: str, lease_s: float) -> Claim:
        """queued/absent -> running, or take over a running task whose lease expired."""
        now = clock.now()
        won = self._update(
            task_id(op_id, number),
            "SET #state = :running, worker = :worker, lease_until = :until, started_at = :now, expires_at = :expires "
            "ADD attempts :one",
            {":running": _s(RUNNING), ":queued": _s(QUEUED), ":worker": _s(worker), ":until": _n(now + lease_s),
             ":now": _n(now), ":one": _n(1), ":expires": _n(int(now + self.ttl_s))},
            "attribute_not_exists(id) OR #state = :queued OR (#state = :running AND lease_until < :now)")
        task = self.item(task_id(op_id, number)) or {}
        if won:
            self._update(op_id, "SET #state = :running, modified_at = :now",
                         {":running": _s(RUNNING), ":queued": _s(QUEUED), ":now": _n(now)}, "#state = :queued")
            return Claim("claimed", int(task.get("attempts", 1)))
        return Claim("done" if task.get("state") == DONE else "busy", int(task.get("attempts", 0)))

    def complete(self, op_id: str, number: int, worker: str, result: bytes) -> bool:
        """Store the task's result and, in one transaction, mark it done and count it on the operation.

        A cancelled transaction is judged by the records, not by its reason list (the Document API
        documents no CancellationReasons codes, and may send none): if the task is still this worker's
        and the operation not done, both conditions held, so the cancellation was a conflict or a
        transient refusal, and the transaction is tried again (as many times as a write conflict, then a
        StoreError, so the message is redelivered); otherwise the result is not this worker's to count."""
        from botocore.exceptions import ClientError

        key = f"results/{op_id}/task-{number}.{worker}.json"
        self.put_object(key, result)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            now = clock.now()
            try:
                self._write("transact_write_items", TransactItems=[
                    {"Update": {"TableName": self.table, "Key": {"id": _s(task_id(op_id, number))},
                                "UpdateExpression": "SET #state = :done, result_key = :key, modified_at = :now",
                                "ConditionExpression": "#state = :running AND worker = :worker",
                                "ExpressionAttributeNames": {"#state": "state"},
                                "ExpressionAttributeValues": {":done": _s(DONE), ":running": _s(RUNNING),
                                                              ":worker": _s(worker), ":key": _s(key),
                                                              ":now": _n(now)}}},
                    {"Update": {"TableName": self.table, "Key": {"id": _s(op_id)},
                                "UpdateExpression": "SET modified_at = :now ADD tasks_done :one",
                                "ConditionExpression": "#state <> :done",
                                "ExpressionAttributeNames": {"#state": "state"},
                                "ExpressionAttributeValues": {":one": _n(1), ":now": _n(now), ":done": _s(DONE)}}},
                ])
                return True
            except ClientError as err:
                if err.response["Error"]["Code"] not in ("TransactionCanceledException",
                                                         "ConditionalCheckFailedException"):
                    raise StoreError(f"job store: {err.response['Error']['Code']}") from None
            found = self.records([task_id(op_id, number), op_id])
            task, operation = found.get(task_id(op_id, number)) or {}, found.get(op_id) or {}
            if task.get("state") != RUNNING or task.get("worker") != worker or operation.get("state") in (DONE, None):
                log.warning("task result discarded: another worker owns the task or the operation ended",
                            extra={"operation_id": op_id, "task": number})
                return False
            log.info("completion cancelled while its conditions hold: trying again",
                     extra={"operation_id": op_id, "task": number, "attempt": attempt})
            if attempt < CONFLICT_ATTEMPTS:
                clock.sleep(random.uniform(0, min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2 ** (attempt - 1))))
        raise StoreError(f"job store: completion of task {number} cancelled {CONFLICT_ATTEMPTS} times while its "
                         "conditions held")

    def release(self, op_id: str, number: int, worker: str, reason: str, deferred: bool = False) -> None:
        """A transient failure: give the task back (running -> queued) and remember why, for the DLQ report.
        `deferred`: given back for a reason that is no failure of the task (e.g. the hourly start quota), so
        this start does not count toward JOB_MAX_DELIVERIES (see failed_starts)."""
        now = clock.now()
        expression = "SET #state = :queued, last_error = :reason, lease_until = :now" + (
            " ADD deferrals :one" if deferred else "")
        self._update(task_id(op_id, number), expression,
                     {":queued": _s(QUEUED), ":running": _s(RUNNING), ":worker": _s(worker),
                      ":reason": _s(reason[:1000]), ":now": _n(now), ":one": _n(1)},
                     "#state = :running AND worker = :worker")
        self._update(op_id, "SET last_error = :reason, modified_at = :now",
                     {":reason": _s(reason[:1000]), ":now": _n(now), ":done": _s(DONE)}, "#state <> :done")

    def note_resend(self, op_id: str) -> None:
        """Count one copy of a task's message sent again by the dead-letter side (for the logs and the report)."""
        self._update(op_id, "ADD dead_letter_resends :one", {":one": _n(1), ":done": _s(DONE)},
                     "attribute_exists(id) AND #state <> :done")

    def finish(self, op_id: str, result_key: str | None, result_size: int, error: dict[str, Any] | None,
               deactivate: bool = True) -> bool:
        """queued/running -> done with exactly one of a result or an error; False if it was already done."""
        now = clock.now()
        values: dict[str, Any] = {":done": _s(DONE), ":now": _n(now)}
        if error is not None:
            expression = "SET #state = :done, modified_at = :now, #error = :error"
            values[":error"] = _s(json.dumps(error, ensure_ascii=False))
        else:
            expression = "SET #state = :done, modified_at = :now, result_key = :key, result_size = :size"
            values.update({":key": _s(result_key or ""), ":size": _n(result_size)})
        done = self._update(op_id, expression, values, "attribute_exists(id) AND #state <> :done",
                            names={"#error": "error"} if error is not None else None)
        if done and deactivate:
            self.deactivate(op_id)
        return done

    def task_result_keys(self, op_id: str, total: int) -> list[str]:
        keys = []
        for number in range(total):
            task = self.item(task_id(op_id, number)) or {}
            if task.get("state") != DONE or not task.get("result_key"):
                raise StoreError(f"operation {op_id}: task {number} has no result yet")
            keys.append(task["result_key"])
        return keys

    # -- plain records and string sets, for surfaces that keep their own objects here (OpenAI files) --
    def put_record(self, key: str, fields: dict[str, Any], unless_set: str | None = "id") -> bool:
        """Write a record's string, number and boolean fields in one UpdateItem, only if field `unless_set`
        is absent (by default: only if no record has the key yet); False then. None fields are left out."""
        kept = {name: value for name, value in fields.items() if value is not None and name != "id"}
        names = {f"#f{i}": name for i, name in enumerate(kept)}
        values = {f":v{i}": _typed(value) for i, value in enumerate(kept.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(kept)))
        condition = None
        if unless_set:
            names["#unless"] = unless_set
            condition = "attribute_not_exists(#unless)"
        return self._update(key, expression, values, condition, names=names)

    def records(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The records that exist among `keys` (key -> record), 100 keys per consistent BatchGetItem."""
        return self._batch_get(list(dict.fromkeys(keys)))

    def delete_record(self, key: str) -> bool:
        """Delete a record; False when there was none."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._write("delete_item", TableName=self.table, Key={"id": _s(key)},
                        ConditionExpression="attribute_exists(id)")
            return True
        except ClientError as err:
            if err.response["Error"]["Code"] in ("ConditionalCheckFailedException", "ResourceNotFoundException"):
                return False
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None
        except BotoCoreError as err:
            raise StoreError(f"job store: {type(err).__name__}") from None

    def set_add(self, key: str, field: str, values: list[str], expires_at: float) -> None:
        """Add strings to a record's string set (ADD is atomic: concurrent adds all land), creating it with a TTL."""
        self._update(key, "ADD #set :values SET expires_at = if_not_exists(expires_at, :expires)",
                     {":values": {"SS": values}, ":expires": _n(int(expires_at))}, names={"#set": field})

    def set_remove(self, key: str, field: str, values: list[str]) -> None:
        self._update(key, "DELETE #set :values", {":values": {"SS": values}}, "attribute_exists(id)",
                     names={"#set": field})

    def add_once(self, key: str, numbers: dict[str, int], marks: str, mark: str) -> bool:
        """Add to number fields and put `mark` in the string set `marks`, unless `mark` is there already:
        a count that two pollers (or one retried) can never make twice."""
        names = {"#marks": marks, **{f"#n{i}": name for i, name in enumerate(numbers)}}
        values = {":mark": {"SS": [mark]}, ":one": _s(mark), **{f":n{i}": _n(v) for i, v in enumerate(numbers.values())}}
        adds = ", ".join([*(f"#n{i} :n{i}" for i in range(len(numbers))), "#marks :mark"])
        return self._update(key, f"ADD {adds}", values, "attribute_exists(id) AND (attribute_not_exists(#marks) OR "
                            "NOT contains(#marks, :one))", names=names)

    def delete_object(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as err:
            raise StoreError(f"results bucket: {type(err).__name__}") from None


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return _n(value)
    return _s(str(value))


def failed_starts(task: dict[str, Any], now: float) -> int:
    """How many times a task was started and failed: its claims, less those given back as no failure
    (deferrals) and less the one still under a live lease (a start in flight has not failed yet). A worker
    that died holding the task counts: its lease ran out without a result."""
    starts = int(task.get("attempts", 0) or 0) - int(task.get("deferrals", 0) or 0)
    if task.get("state") == RUNNING and float(task.get("lease_until", 0) or 0) > now:
        starts -= 1
    return max(starts, 0)


def task_id(op_id: str, number: int) -> str:
    return f"{op_id}#{number}"


def item_id(op_id: str, index: int) -> str:
    return f"{op_id}#i{index}"


ACTIVE_INDEX = "index#active"


def s3_config() -> Any:
    """Object Storage client settings: path-style addresses, SigV4, and checksums only where an API requires
    one. Current botocore otherwise adds flexible-checksum headers (x-amz-checksum-crc32,
    x-amz-sdk-checksum-algorithm) to every upload, which S3-compatible stores may refuse."""
    from botocore.config import Config

    return Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                  request_checksum_calculation="when_required", response_checksum_validation="when_required")


def create_jobs_table(db: Any, table: str, poll_s: float = 3.0) -> bool:
    """Create the jobs document table (key `id`, TTL on `expires_at`) and wait until it is ACTIVE.

    Deployment does this once; the functions only after a write found the table missing. Two callers
    may race: the loser gets ResourceInUseException and waits as well. True if this call created it."""
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    try:
        try:
            db.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
            created = True
        except ClientError as err:
            if _code(err) != "ResourceInUseException":  # being created, or made already, by someone else
                raise
            created = False
        # DescribeTable until ACTIVE, every 3 s: it is a schema operation, 30 a minute per database. While
        # the table is being created it answers ResourceNotFoundException, which this waiter retries.
        db.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": poll_s,
                                                                          "MaxAttempts": int(120 / poll_s)})
        if created:
            db.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                             "AttributeName": "expires_at"})
            log.info("created the jobs table", extra={"table": table})
        return created
    except (ClientError, WaiterError) as err:
        raise StoreError(f"job store: creating table: {_code(err) or type(err).__name__}") from None
    except BotoCoreError as err:
        raise StoreError(f"job store: creating table: {type(err).__name__}") from None


def payload_key(op_id: str, number: int) -> str:
    return f"requests/{op_id}/task-{number}.json"


_lock = threading.Lock()
_store: JobStore | None = None


def job_store(settings: Settings) -> JobStore:
    """The instance's store, created on first use (boto3 clients are slow to build)."""
    global _store
    with _lock:
        if _store is None:
            _store = JobStore(settings)
        return _store


def reset_job_store() -> None:
    global _store
    with _lock:
        _store = None
