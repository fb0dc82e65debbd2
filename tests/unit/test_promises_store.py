"""What the job store (shared/jobs/store.py) promises its callers, against the in-process stand-in.

The fast layer: `local.aws.InProcessMoto` is the app `start_moto` serves (SerializedDocumentApi over moto's
server app), reached without a socket. boto3 clients whose endpoint is its URL hand each
prepared request to the app from a botocore `before-send` handler and get the app's answer back as an
AWSResponse; the request is made into the WSGI environ werkzeug's server makes, so the app sees what it sees
over loopback, and each Document API call still runs whole under one lock (racing threads meet as at the
server). The `aws` fixture (tests/conftest.py) gives each test the table and bucket as provisioned (local.aws.renew).
tests/integration/test_store_contract.py runs every test here again against moto server on loopback (the
same fixture, parametrized "loopback"), which is how the fast layer is shown to behave as the server does;
the CPU-burner race (tests/integration/test_job_store.py) stays on the server only.

Each test states a promise: the state machine (claim, lease, complete, release, finish: one conditional
write each, one winner), transactions, the active index, records, sets, add_once, objects (a missing one is
a 404, not a retryable 503) and write conflicts retried within their bound.
"""

from __future__ import annotations

import io
import json
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest

from local.aws import InProcessMoto
from shared import errors
from shared.config import Settings
from shared.jobs import store as jobs
from tests.clock import ManualClock
from tests.conftest import Aws, logged, race

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

OP = "fmo00000000store"
TTL_S = 3 * 86400  # JOBS_TTL_DAYS' default


def _store(**overrides: Any) -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env(**overrides))


def _race(count: int, action: Callable[[int], Any]) -> list[Any]:
    return race(count, action, timeout=10)


class Gate:
    """WSGI middleware: the first `count` Document API calls of `operation` wait for each other before going
    on, so the racers are known to be inside the race together (it cannot pass because one came late)."""

    def __init__(self, app: Any, operation: str, count: int) -> None:
        self.app, self.operation = app, operation
        self.barrier = threading.Barrier(count, timeout=10)
        self.left = count
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith("." + self.operation):
            with self.lock:
                wait, self.left = self.left > 0, self.left - 1
            if wait:
                self.barrier.wait()
        return self.app(environ, start_response)


class Cancel:
    """WSGI middleware: the next `times` TransactWriteItems are answered TransactionCanceledException with no
    CancellationReasons (the Document API documents none) and not applied."""

    def __init__(self, app: Any, times: int) -> None:
        self.app, self.times, self.calls = app, times, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".TransactWriteItems"):
            self.calls += 1
            if self.calls <= self.times:
                body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                                   "Message": "Transaction cancelled"}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                                   ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


class Refuse:
    """WSGI middleware: the next `times` Document API calls of `operation` are answered 400 with error `code`
    (and not applied), as the Document API answers a refusal."""

    def __init__(self, app: Any, operation: str, code: str, times: int = 1000) -> None:
        self.app, self.operation, self.code, self.times, self.calls = app, operation, code, times, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith("." + self.operation):
            self.calls += 1
            if self.calls <= self.times:
                body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}",
                                   "message": f"refused: {self.code}"}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                                   ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


# -- create -------------------------------------------------------------------------------------------

def test_create_stores_the_payloads_and_a_queued_operation_in_the_active_index(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    now = clock.now()
    item = store.create(OP, "embedding", "Async Text Embedding", "caller-a", [b'{"n": 0}', b'{"n": 1}'],
                        extra={"door": "openai"}, numbers={"limit": 2.5, "whole": 7})
    assert store.item(OP) == item
    assert item == {"id": OP, "kind": "embedding", "state": "queued", "tasks_total": 2, "tasks_done": 0,
                    "created_at": now, "modified_at": now, "created_by": "caller-a",
                    "description": "Async Text Embedding", "expires_at": int(now + TTL_S), "door": "openai",
                    "limit": 2.5, "whole": 7}
    assert [store.get_object(jobs.payload_key(OP, n)) for n in (0, 1)] == [b'{"n": 0}', b'{"n": 1}']
    assert jobs.payload_key(OP, 1) == f"requests/{OP}/task-1.json"
    assert store.active_ids() == [OP]


def test_an_operation_id_is_created_once(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "first", "a", [])
    with pytest.raises(jobs.StoreError, match="ConditionalCheckFailed"):
        store.create(OP, "completion", "second", "b", [])
    assert store.item(OP)["description"] == "first"


def test_the_ttl_follows_jobs_ttl_days(aws: Aws, clock: ManualClock) -> None:
    store = _store(jobs_ttl_days=1.5)
    store.create(OP, "completion", "d", "a", [b"{}"])
    assert store.item(OP)["expires_at"] == int(clock.now() + 1.5 * 86400)
    store.claim(OP, 0, "w1", 60)
    assert store.item(jobs.task_id(OP, 0))["expires_at"] == int(clock.now() + 1.5 * 86400)


# -- claim, lease, complete, release, finish ----------------------------------------------------------

def test_a_claim_takes_a_queued_task_and_starts_its_operation(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}", b"{}"])
    clock.advance(5)
    now = clock.now()
    claim = store.claim(OP, 0, "w1", 60)
    assert (claim.outcome, claim.attempts) == ("claimed", 1)
    task = store.item(jobs.task_id(OP, 0))
    assert task == {"id": f"{OP}#0", "state": "running", "worker": "w1", "lease_until": now + 60, "started_at": now,
                    "attempts": 1, "expires_at": int(now + TTL_S)}
    operation = store.item(OP)
    assert (operation["state"], operation["modified_at"]) == ("running", now)
    clock.advance(1)
    assert store.claim(OP, 1, "w2", 60).outcome == "claimed"
    assert store.item(OP)["modified_at"] == now  # already running: the operation is not written again


def test_a_live_lease_keeps_other_workers_out_until_it_runs_out(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    assert store.claim(OP, 0, "w1", 10).outcome == "claimed"
    busy = store.claim(OP, 0, "w2", 60)
    assert (busy.outcome, busy.attempts) == ("busy", 1)
    clock.advance(10)
    assert store.claim(OP, 0, "w1", 60).outcome == "busy"  # at its last instant the lease still holds, even for w1
    clock.advance(0.5)
    takeover = store.claim(OP, 0, "w2", 60)
    assert (takeover.outcome, takeover.attempts) == ("claimed", 2)
    assert store.item(jobs.task_id(OP, 0))["worker"] == "w2"


def test_only_one_of_many_racing_workers_claims_a_task(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    aws.wrap(lambda app: Gate(app, "UpdateItem", 6))  # all six claims are in flight together
    outcomes = _race(6, lambda i: store.claim(OP, 0, f"w{i}", 60).outcome)
    assert sorted(outcomes) == ["busy"] * 5 + ["claimed"]
    assert store.item(OP)["state"] == "running"


def test_completion_is_counted_once_and_only_for_the_lease_holder(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}", b"{}"])
    assert store.claim(OP, 0, "w1", 60).outcome == "claimed"
    assert store.complete(OP, 0, "w2", b'{"theirs": 1}') is False  # not the holder
    assert store.item(OP)["tasks_done"] == 0
    clock.advance(3)
    assert store.complete(OP, 0, "w1", b'{"ours": 1}') is True
    task = store.item(jobs.task_id(OP, 0))
    key = f"results/{OP}/task-0.w1.json"
    assert (task["state"], task["result_key"], task["modified_at"]) == ("done", key, clock.now())
    assert store.get_object(key) == b'{"ours": 1}'
    operation = store.item(OP)
    assert (operation["tasks_done"], operation["modified_at"]) == (1, clock.now())
    assert store.complete(OP, 0, "w1", b"{}") is False  # done already
    assert store.item(OP)["tasks_done"] == 1
    done = store.claim(OP, 0, "w3", 60)
    assert (done.outcome, done.attempts) == ("done", 1)


def test_racing_completions_of_one_task_count_once(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    aws.wrap(lambda app: Gate(app, "TransactWriteItems", 4))
    assert sorted(_race(4, lambda i: store.complete(OP, 0, "w1", b"{}"))) == [False, False, False, True]
    assert store.item(OP)["tasks_done"] == 1


def test_no_completion_counts_on_an_operation_that_ended(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}", b"{}"])
    store.claim(OP, 0, "w1", 60)
    assert store.finish(OP, None, 0, {"code": 1, "message": "cancelled", "details": []}) is True
    assert store.complete(OP, 0, "w1", b"{}") is False
    assert store.item(OP)["tasks_done"] == 0
    assert store.item(jobs.task_id(OP, 0))["state"] == "running"
    assert store.claim(OP, 1, "w2", 60).outcome == "claimed"
    assert store.item(OP)["state"] == "done"  # a late claim never brings an ended operation back


def test_a_release_gives_the_task_back_with_its_reason(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    clock.advance(2)
    store.release(OP, 0, "w1", "UNAVAILABLE: " + "x" * 2000)
    task, operation = store.item(jobs.task_id(OP, 0)), store.item(OP)
    assert (task["state"], task["lease_until"], task.get("deferrals")) == ("queued", clock.now(), None)
    assert task["last_error"] == ("UNAVAILABLE: " + "x" * 2000)[:1000]
    assert (operation["last_error"], operation["modified_at"]) == (task["last_error"], clock.now())
    again = store.claim(OP, 0, "w2", 60)
    assert (again.outcome, again.attempts) == ("claimed", 2)
    assert jobs.failed_starts(store.item(jobs.task_id(OP, 0)), clock.now()) == 1


def test_a_deferred_release_is_no_failed_start(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    for n in (1, 2):
        store.claim(OP, 0, f"w{n}", 60)
        store.release(OP, 0, f"w{n}", "quota", deferred=True)
        assert store.item(jobs.task_id(OP, 0))["deferrals"] == n
    assert jobs.failed_starts(store.item(jobs.task_id(OP, 0)), clock.now()) == 0


def test_only_the_lease_holder_releases_and_an_ended_operation_keeps_its_record(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    store.release(OP, 0, "w2", "not mine")
    task = store.item(jobs.task_id(OP, 0))
    assert (task["state"], task["worker"], task.get("last_error")) == ("running", "w1", None)
    store.finish(OP, "k", 1, None)
    store.release(OP, 0, "w1", "late")
    assert "last_error" not in store.item(OP) or store.item(OP)["last_error"] == "not mine"


def test_failed_starts_counts_claims_less_deferrals_and_a_live_lease() -> None:
    assert jobs.failed_starts({}, 100) == 0
    assert jobs.failed_starts({"attempts": 3, "deferrals": 1, "state": "queued"}, 100) == 2
    assert jobs.failed_starts({"attempts": 3, "state": "running", "lease_until": 101}, 100) == 2
    assert jobs.failed_starts({"attempts": 3, "state": "running", "lease_until": 100}, 100) == 3  # ran out
    assert jobs.failed_starts({"attempts": 1, "deferrals": 2, "state": "queued"}, 100) == 0
    assert jobs.failed_starts({"attempts": 2, "state": "done", "lease_until": 500}, 100) == 2


def test_an_operation_finishes_once_with_exactly_one_outcome(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    clock.advance(4)
    assert store.finish(OP, "results/x.json", 42, None) is True
    operation = store.item(OP)
    assert (operation["state"], operation["result_key"], operation["result_size"]) == ("done", "results/x.json", 42)
    assert operation["modified_at"] == clock.now() and "error" not in operation
    assert store.finish(OP, None, 0, {"code": 13, "message": "late", "details": []}) is False
    assert store.item(OP) == operation
    assert store.active_ids() == []


def test_a_failed_operation_keeps_its_error_as_written(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    error = {"code": 3, "message": "refusé: 'x'", "details": []}
    assert store.finish(OP, None, 0, error) is True
    operation = store.item(OP)
    assert operation["error"] == json.dumps(error, ensure_ascii=False) and "result_key" not in operation


def test_racing_finishes_have_one_winner(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    aws.wrap(lambda app: Gate(app, "UpdateItem", 4))
    results = _race(4, lambda i: store.finish(OP, "k", 1, None, deactivate=False) if i % 2 else
                    store.finish(OP, None, 0, {"code": 3, "message": "x", "details": []}, deactivate=False))
    assert results.count(True) == 1
    item = store.item(OP)
    assert item["state"] == "done" and (("error" in item) != ("result_key" in item))


def test_finish_without_deactivating_leaves_the_index_and_a_missing_result_key_is_empty(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [])
    assert store.finish(OP, None, 0, None, deactivate=False) is True
    assert store.active_ids() == [OP]
    assert (store.item(OP)["result_key"], store.item(OP)["result_size"]) == ("", 0)


def test_an_operation_that_does_not_exist_is_never_finished_nor_made(aws: Aws) -> None:
    store = _store()
    assert store.finish("fmo0000000absent", "k", 1, None) is False
    store.note_resend("fmo0000000absent")
    assert store.item("fmo0000000absent") is None


def test_resends_are_counted_until_the_operation_ends(aws: Aws) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    store.note_resend(OP)
    store.note_resend(OP)
    assert store.item(OP)["dead_letter_resends"] == 2
    store.finish(OP, "k", 1, None)
    store.note_resend(OP)
    assert store.item(OP)["dead_letter_resends"] == 2


def test_task_result_keys_are_in_task_order_and_only_when_all_are_done(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}", b"{}"])
    for number, worker in ((1, "wb"), (0, "wa")):
        store.claim(OP, number, worker, 60)
        store.complete(OP, number, worker, b"{}")
    assert store.task_result_keys(OP, 2) == [f"results/{OP}/task-0.wa.json", f"results/{OP}/task-1.wb.json"]
    with pytest.raises(jobs.StoreError, match="task 2 has no result"):
        store.task_result_keys(OP, 3)


def test_a_completion_cancelled_without_reasons_while_ours_is_tried_again(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    cancel: Cancel = aws.wrap(lambda app: Cancel(app, 2))
    assert store.complete(OP, 0, "w1", b'{"ok": 1}') is True
    assert cancel.calls == 3 and len(clock.sleeps) == 2
    assert store.item(OP)["tasks_done"] == 1


def test_a_completion_cancelled_without_reasons_for_another_worker_is_dropped_at_once(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    cancel: Cancel = aws.wrap(lambda app: Cancel(app, 100))
    assert store.complete(OP, 0, "w2", b"{}") is False
    assert cancel.calls == 1


def test_a_completion_cancelled_while_ours_every_time_ends_in_a_store_error(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    cancel: Cancel = aws.wrap(lambda app: Cancel(app, 100))
    with pytest.raises(jobs.StoreError, match="cancelled 6 times"):
        store.complete(OP, 0, "w1", b"{}")
    assert cancel.calls == jobs.CONFLICT_ATTEMPTS
    assert len(clock.sleeps) == jobs.CONFLICT_ATTEMPTS - 1
    assert all(0 <= s <= min(jobs.CONFLICT_CAP_S, jobs.CONFLICT_BASE_S * 2 ** n) for n, s in enumerate(clock.sleeps))
    task = store.item(jobs.task_id(OP, 0))
    assert (task["state"], task["worker"]) == ("running", "w1")


# -- write conflicts ----------------------------------------------------------------------------------

def test_write_conflicts_are_retried_with_bounded_jittered_waits(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    aws.refuse_next("UpdateItem", 5)
    assert store.claim(OP, 0, "w1", 60).outcome == "claimed"
    assert len(clock.sleeps) == 5
    assert all(0 <= s <= min(jobs.CONFLICT_CAP_S, jobs.CONFLICT_BASE_S * 2 ** n) for n, s in enumerate(clock.sleeps))
    assert sum(clock.sleeps) > 0  # jittered, not zero


@pytest.mark.parametrize("jitter", ["top", "bottom"])
def test_the_nth_retry_waits_a_random_time_up_to_a_doubling_capped_bound(aws: Aws, clock: ManualClock,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          jitter: str) -> None:
    """Full jitter: before the n-th retry a wait drawn from [0, min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2**(n-1))],
    for every write that retries conflicts (the usual write, the hasty usage write, a completion)."""
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high if jitter == "top" else low

    monkeypatch.setattr(jobs, "random", types.SimpleNamespace(uniform=uniform))
    bounds = [min(jobs.CONFLICT_CAP_S, jobs.CONFLICT_BASE_S * 2 ** n) for n in range(jobs.CONFLICT_ATTEMPTS - 1)]
    assert bounds == [0.02, 0.04, 0.08, 0.16, 0.32]
    expected = bounds if jitter == "top" else [0.0] * len(bounds)
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    writes: list[tuple[str, Callable[[], Any]]] = [
        ("UpdateItem", lambda: store.claim(OP, 0, "w1", 60)),
        ("TransactWriteItems", lambda: store.add_usage(_usage_items("mark#1", 1), "mark#1", False))]
    for operation, write in writes:
        clock.sleeps.clear()
        drawn.clear()
        aws.refuse_next(operation, jobs.CONFLICT_ATTEMPTS)
        with pytest.raises(jobs.StoreError):
            write()
        assert clock.sleeps == expected and drawn == [(0, b) for b in bounds]
    store.claim(OP, 0, "w1", 60)
    clock.sleeps.clear()
    aws.wrap(lambda app: Cancel(app, 100))
    with pytest.raises(jobs.StoreError):
        store.complete(OP, 0, "w1", b"{}")
    assert clock.sleeps == expected


def test_a_conflict_that_persists_is_a_store_error_after_the_bound(aws: Aws, clock: ManualClock,
                                                                  log_output: io.StringIO) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [b"{}"])
    aws.refuse_next("UpdateItem", jobs.CONFLICT_ATTEMPTS)
    with pytest.raises(jobs.StoreError, match="TransactionConflictException after 6 attempts"):
        store.claim(OP, 0, "w1", 60)
    assert len(clock.sleeps) == jobs.CONFLICT_ATTEMPTS - 1
    (line,) = logged(log_output, "job store: write conflict persisted")
    assert (line["level"], line["attempts"]) == ("WARN", jobs.CONFLICT_ATTEMPTS)
    assert isinstance(jobs.StoreError("x"), errors.UpstreamUnavailableError)  # retryable: the message comes back


def test_a_conflicting_transaction_is_retried(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    aws.refuse_next("TransactWriteItems", 3)
    assert store.complete(OP, 0, "w1", b"{}") is True
    assert store.item(OP)["tasks_done"] == 1 and len(clock.sleeps) == 3
    aws.refuse_next("PutItem", 2)
    store.create("fmo0000000second", "completion", "d", "me", [])
    assert store.item("fmo0000000second")["state"] == "queued"


def test_is_write_conflict_reads_the_code_and_the_cancellation_reasons() -> None:
    from botocore.exceptions import ClientError

    def err(code: str, reasons: list[str] | None = None) -> ClientError:
        response: dict[str, Any] = {"Error": {"Code": code}}
        if reasons is not None:
            response["CancellationReasons"] = [{"Code": r} for r in reasons]
        return ClientError(response, "op")  # type: ignore[arg-type]

    assert jobs.is_write_conflict(err("TransactionConflictException"))
    assert jobs.is_write_conflict(err("TransactionCanceledException", ["None", "TransactionConflict"]))
    assert not jobs.is_write_conflict(err("TransactionCanceledException", ["ConditionalCheckFailed",
                                                                           "TransactionConflict"]))
    assert not jobs.is_write_conflict(err("TransactionCanceledException", ["None"]))
    assert not jobs.is_write_conflict(err("TransactionCanceledException"))
    assert not jobs.is_write_conflict(err("ConditionalCheckFailedException", ["TransactionConflict"]))
    assert not jobs.is_write_conflict(ValueError("no response"))


# -- transactions and the usage ledger's write --------------------------------------------------------

def _usage_items(mark: str, tokens: int) -> list[dict[str, Any]]:
    return [{"Put": {"TableName": "jobs", "Item": {"id": {"S": mark}}, "ConditionExpression": "attribute_not_exists(id)"}},
            {"Update": {"TableName": "jobs", "Key": {"id": {"S": "usage#a"}}, "UpdateExpression": "ADD tokens :t",
                        "ExpressionAttributeValues": {":t": {"N": str(tokens)}}}}]


@pytest.mark.parametrize("patient", [True, False])
def test_a_usage_write_applies_once_per_mark(aws: Aws, patient: bool) -> None:
    store = _store()
    assert store.add_usage(_usage_items("mark#1", 5), "mark#1", patient) is True
    assert store.add_usage(_usage_items("mark#1", 5), "mark#1", patient) is False
    assert store.add_usage(_usage_items("mark#2", 2), "mark#2", patient) is True
    assert store.item("usage#a")["tokens"] == 7


@pytest.mark.parametrize("patient", [True, False])
def test_a_usage_write_that_conflicts_is_tried_again(aws: Aws, clock: ManualClock, patient: bool) -> None:
    store = _store()
    aws.refuse_next("TransactWriteItems", 2)
    assert store.add_usage(_usage_items("mark#1", 5), "mark#1", patient) is True
    assert store.item("usage#a")["tokens"] == 5 and len(clock.sleeps) == 2
    assert all(0 <= s <= min(jobs.CONFLICT_CAP_S, jobs.CONFLICT_BASE_S * 2 ** n) for n, s in enumerate(clock.sleeps))


def test_a_hasty_usage_write_gives_up_after_the_conflict_bound(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    aws.refuse_next("TransactWriteItems", jobs.CONFLICT_ATTEMPTS)
    with pytest.raises(jobs.StoreError, match="TransactionConflict"):
        store.add_usage(_usage_items("mark#1", 5), "mark#1", False)
    assert len(clock.sleeps) == jobs.CONFLICT_ATTEMPTS - 1
    assert store.item("usage#a") is None


def test_a_usage_write_cancelled_without_reasons_is_judged_by_its_mark(aws: Aws) -> None:
    store = _store()
    aws.wrap(lambda app: Cancel(app, 1))
    with pytest.raises(jobs.StoreError, match=r"^job store: usage transaction cancelled \(no reasons\)$"):
        store.add_usage(_usage_items("mark#1", 5), "mark#1", False)
    store.put_record("mark#1", {"at": 1})
    aws.wrap(lambda app: Cancel(app, 1))
    assert store.add_usage(_usage_items("mark#1", 5), "mark#1", True) is False


def test_a_usage_write_refused_otherwise_is_a_store_error(aws: Aws) -> None:
    store = _store()
    items = _usage_items("mark#1", 5)
    items[1]["Update"]["ConditionExpression"] = "attribute_exists(id)"  # the second item's condition fails
    with pytest.raises(jobs.StoreError, match=r"^job store: usage transaction cancelled \(None, ConditionalCheckFailed\)$"):
        store.add_usage(items, "mark#1", True)
    with pytest.raises(jobs.StoreError, match="ValidationException"):
        store.add_usage([{"Put": {"TableName": "jobs", "Item": {"id": {"N": "1"}}}}], "x", True)


def test_a_transaction_applies_whole_or_not_at_all(aws: Aws) -> None:
    store = _store()
    assert store.transact(_usage_items("mark#1", 5)) is True
    assert store.transact(_usage_items("mark#1", 5)) is False
    assert store.item("usage#a")["tokens"] == 5
    with pytest.raises(jobs.StoreError, match="ValidationException"):
        store.transact([{"Put": {"TableName": "jobs", "Item": {"id": {"N": "1"}}}}])


# -- the active index ---------------------------------------------------------------------------------

def test_the_active_index_is_spread_over_shards_and_reads_back_whole(aws: Aws) -> None:
    store = _store()
    ids = [f"fmo00000000idx{n:02d}" for n in range(40)]
    for op_id in ids:
        store.activate(op_id)
    assert store.active_ids() == sorted(ids)
    held = {key: len(item.get("ops", [])) for key, item in store.records(store.index_keys()).items()}
    assert sum(held.values()) == 40 and max(held.values()) <= 8 and len(held) >= 12  # no item holds them all
    assert set(held) <= {f"index#active#{n}" for n in range(16)}
    assert store.index_key(ids[0]) == f"index#active#{__import__('zlib').crc32(ids[0].encode()) % 16}"
    for op_id in ids[::2]:
        store.deactivate(op_id)
    assert store.active_ids() == sorted(ids[1::2])


def test_ids_indexed_elsewhere_are_still_read_and_removed(aws: Aws) -> None:
    """Ids written by an older version (the single index item) or under another shard count are found and,
    once deactivated, gone, so changing the layout strands nothing."""
    store = _store()
    legacy, moved = "fmo00000000old01", next(f"fmo0000000move{n:02d}" for n in range(99)
                                            if store.index_key(f"fmo0000000move{n:02d}").endswith("#5"))
    store.set_add(jobs.ACTIVE_INDEX, "ops", [legacy], 0)
    jobs.JobStore(Settings.from_env(), active_shards=4).activate(moved)  # shard #1 of 4
    store.activate("fmo00000000new01")
    assert store.active_ids() == sorted([legacy, moved, "fmo00000000new01"])
    store.deactivate(legacy)
    store.deactivate(moved)
    assert store.active_ids() == ["fmo00000000new01"]
    assert all(not item.get("ops") for key, item in store.records(store.index_keys()).items()
               if key != store.index_key("fmo00000000new01"))


# -- plain records, sets, counts ----------------------------------------------------------------------

def test_a_record_is_put_once_with_its_typed_fields(aws: Aws) -> None:
    store = _store()
    fields = {"name": "a.jsonl", "bytes": 12, "ratio": 0.5, "ok": True, "off": False, "gone": None, "id": "x"}
    assert store.put_record("file#1", fields) is True
    assert store.records(["file#1"]) == {"file#1": {"id": "file#1", "name": "a.jsonl", "bytes": 12, "ratio": 0.5,
                                                    "ok": True, "off": False}}
    assert store.put_record("file#1", {"name": "b"}) is False
    assert store.item("file#1")["name"] == "a.jsonl"


def test_a_record_is_written_unless_a_chosen_field_is_set(aws: Aws) -> None:
    store = _store()
    assert store.put_record("r", {"status": "new"}) is True
    assert store.put_record("r", {"status": "seen"}, unless_set=None) is True
    assert store.put_record("r", {"finished": 1}, unless_set="finished") is True
    assert store.put_record("r", {"finished": 2, "status": "late"}, unless_set="finished") is False
    assert store.item("r") == {"id": "r", "status": "seen", "finished": 1}


def test_records_reads_many_keys_once_each_and_leaves_out_the_absent(aws: Aws) -> None:
    store = _store()
    keys = [f"rec#{n:03d}" for n in range(130)]
    for key in keys[::3]:
        store.put_record(key, {"n": int(key[4:])})
    found = store.records(keys + keys[:5])
    assert sorted(found) == keys[::3]
    assert all(found[key] == {"id": key, "n": int(key[4:])} for key in found)
    assert store.records([]) == {}


def test_delete_record_says_whether_there_was_one(aws: Aws) -> None:
    store = _store()
    store.put_record("r", {"a": 1})
    assert store.delete_record("r") is True
    assert store.item("r") is None
    assert store.delete_record("r") is False


def test_set_fields_writes_strings_and_numbers(aws: Aws) -> None:
    store = _store()
    store.set_fields("r", {"phase": "polling", "polls": 3, "rate": 1.25})
    store.set_fields("r", {"polls": 4})
    assert store.item("r") == {"id": "r", "phase": "polling", "polls": 4, "rate": 1.25}


def test_set_add_keeps_every_value_and_the_first_expiry(aws: Aws) -> None:
    store = _store()
    store.set_add("s", "members", ["a", "b"], 1000.7)
    store.set_add("s", "members", ["b", "c"], 2000)
    record = store.item("s")
    assert sorted(record["members"]) == ["a", "b", "c"] and record["expires_at"] == 1000
    store.set_remove("s", "members", ["a", "c"])
    assert store.item("s")["members"] == ["b"]
    store.set_remove("nothing", "members", ["a"])
    assert store.item("nothing") is None


def test_concurrent_set_adds_all_land(aws: Aws) -> None:
    store = _store()
    _race(4, lambda i: store.set_add("s", "members", [f"m{i}"], 0))
    assert sorted(store.item("s")["members"]) == ["m0", "m1", "m2", "m3"]


def test_add_once_counts_a_mark_once(aws: Aws) -> None:
    store = _store()
    assert store.add_once("b", {"done": 1}, "marks", "m1") is False  # no record: nothing counted, none made
    assert store.item("b") is None
    store.put_record("b", {"done": 0})
    assert store.add_once("b", {"done": 1, "failed": 2}, "marks", "m1") is True
    assert store.add_once("b", {"done": 1, "failed": 2}, "marks", "m1") is False
    assert store.add_once("b", {"done": 1}, "marks", "m2") is True
    record = store.item("b")
    assert (record["done"], record["failed"], sorted(record["marks"])) == (2, 2, ["m1", "m2"])


# -- named leases -------------------------------------------------------------------------------------

def test_a_named_lease_has_one_holder_until_it_runs_out_or_is_given_up(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    assert store.lease("batch#1", "poll", "p1", 30) is False  # no record
    store.put_record("batch#1", {"state": "running"})
    assert store.lease("batch#1", "poll", "p1", 30) is True
    assert store.item("batch#1")["poll_until"] == clock.now() + 30
    assert store.lease("batch#1", "poll", "p2", 30) is False
    clock.advance(20)
    assert store.lease("batch#1", "poll", "p1", 30) is True  # renewed by its holder
    clock.advance(29)
    assert store.lease("batch#1", "poll", "p2", 30) is False
    clock.advance(2)
    assert store.lease("batch#1", "poll", "p2", 30) is True
    store.unlease("batch#1", "poll", "p1")  # not p1's any more: nothing changes
    assert store.lease("batch#1", "poll", "p1", 30) is False
    store.unlease("batch#1", "poll", "p2")
    assert store.lease("batch#1", "poll", "p1", 30) is True
    assert store.lease("batch#1", "other", "p2", 30) is True  # another name, another lease


# -- batch items --------------------------------------------------------------------------------------

def test_a_batch_item_is_started_once_and_finished_once(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    assert store.item_started(OP, 0, "up-1", "c-0") is True
    assert store.item_started(OP, 0, "up-2", "c-0") is False
    item = store.item(jobs.item_id(OP, 0))
    assert item == {"id": f"{OP}#i0", "state": "running", "upstream_id": "up-1", "custom_id": "c-0",
                    "next_poll_at": clock.now(), "polls": 0, "expires_at": int(clock.now() + TTL_S)}
    outcome = {"text": "é", "n": 1}
    assert store.item_finished(OP, 0, "c-0", outcome, failed=False) is True
    assert store.item_finished(OP, 0, "c-0", {"other": 1}, failed=True) is False
    done = store.item(jobs.item_id(OP, 0))
    assert (done["state"], done["outcome"], done["failed"]) == ("done", json.dumps(outcome, ensure_ascii=False), False)
    assert store.item_finished(OP, 1, "c-1", {"n": 2}, failed=True) is False  # never started
    assert store.item_finished(OP, 1, "c-1", {"n": 2}, failed=True, from_state=None) is True  # refused at start
    assert store.item_finished(OP, 1, "c-1", {"n": 3}, failed=True, from_state=None) is False
    refused = store.item(jobs.item_id(OP, 1))
    assert refused == {"id": f"{OP}#i1", "state": "done", "custom_id": "c-1", "outcome": '{"n": 2}', "failed": True,
                       "expires_at": int(clock.now() + TTL_S)}
    assert sorted(store.items(OP, [0, 1, 2])) == [0, 1]
    assert store.items(OP, [1])[1]["failed"] is True


def test_racing_item_starts_have_one_winner(aws: Aws) -> None:
    store = _store()
    aws.wrap(lambda app: Gate(app, "PutItem", 4))
    assert sorted(_race(4, lambda i: store.item_started(OP, 3, f"up{i}", "c"))) == [False, False, False, True]


# -- objects ------------------------------------------------------------------------------------------

def test_objects_are_stored_with_their_type_and_a_missing_one_is_a_404(aws: Aws) -> None:
    store = _store()
    store.put_object("results/a b/ü.jsonl", b'{"x": 1}\n', content_type="application/jsonl")
    assert store.get_object("results/a b/ü.jsonl") == b'{"x": 1}\n'
    assert store.s3.head_object(Bucket=store.bucket, Key="results/a b/ü.jsonl")["ContentType"] == "application/jsonl"
    store.put_object("plain", b"{}")
    assert store.s3.head_object(Bucket=store.bucket, Key="plain")["ContentType"] == "application/json"
    store.delete_object("results/a b/ü.jsonl")
    with pytest.raises(jobs.MissingObjectError) as missing:
        store.get_object("results/a b/ü.jsonl")
    assert isinstance(missing.value, errors.NotFoundError) and not isinstance(missing.value, jobs.StoreError)
    assert "results/a b/ü.jsonl" in str(missing.value)


def test_a_missing_bucket_is_a_store_error_not_a_404(aws: Aws) -> None:
    store = _store(results_bucket="no-such-bucket")
    with pytest.raises(jobs.StoreError, match="^results bucket: NoSuchBucket$") as failed:
        store.get_object("k")
    assert not isinstance(failed.value, errors.NotFoundError)
    with pytest.raises(jobs.StoreError, match="^results bucket: NoSuchBucket$"):
        store.put_object("k", b"{}")
    with pytest.raises(jobs.StoreError, match="^results bucket: NoSuchBucket$"):
        store.delete_object("k")


class Missing:
    """WSGI middleware: every S3 GET of an object answers 404 as some S3-compatible stores do: with no error
    body (botocore then reads the code "404"), or with the code NotFound."""

    def __init__(self, app: Any, body: bytes) -> None:
        self.app, self.body = app, body

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].startswith("/fm-results/") \
                and "HTTP_X_AMZ_TARGET" not in environ:
            start_response("404 Not Found", [("Content-Type", "application/xml"), ("Content-Length", str(len(self.body)))])
            return [self.body]
        return self.app(environ, start_response)


@pytest.mark.parametrize("body", [b"", b"<Error><Code>NotFound</Code><Message>Not Found</Message></Error>"])
def test_an_object_answered_404_in_another_dialect_is_still_missing(aws: Aws, body: bytes) -> None:
    store = _store()
    store.put_object("k", b"{}")
    aws.wrap(lambda app: Missing(app, body))
    with pytest.raises(jobs.MissingObjectError):
        store.get_object("k")


def test_a_presigned_url_names_the_object_and_its_lifetime(aws: Aws) -> None:
    store = _store()
    url = store.presign("results/op/out.jsonl", 900)
    assert url.startswith(f"{aws.url}/fm-results/results/op/out.jsonl?") and "X-Amz-Expires=900" in url


# -- a table that is not there yet --------------------------------------------------------------------

def test_a_missing_table_reads_as_empty_and_the_first_write_creates_it(
        aws: Aws, waits: list[float], clock: ManualClock, log_output: io.StringIO) -> None:
    store = _store(jobs_table="jobs-new")
    assert store.item(OP) is None and store.records([OP]) == {} and store.active_ids() == []
    assert store.delete_record(OP) is False  # creates the table on the way
    assert waits == [3.0]  # DescribeTable every 3 s (its quota is 30 a minute) until the new table is ACTIVE
    other = _store(jobs_table="jobs-newer")
    other.create(OP, "completion", "d", "me", [b"{}"])
    assert other.item(OP)["state"] == "queued"
    described = other.db.describe_time_to_live(TableName="jobs-newer")["TimeToLiveDescription"]
    assert (described["AttributeName"], described["TimeToLiveStatus"]) == ("expires_at", "ENABLED")
    assert jobs.create_jobs_table(other.db, "jobs-newer") is False  # made already: waited for, not made again
    assert [(x["level"], x["table"]) for x in logged(log_output, "created the jobs table")] == [("INFO", "jobs-new"), ("INFO", "jobs-newer")]


def test_a_table_that_is_not_made_is_a_store_error_naming_why(aws: Aws, waits: list[float]) -> None:
    db = _store().db
    aws.wrap(lambda app: Refuse(app, "DescribeTable", "ResourceNotFoundException"))  # never ACTIVE
    with pytest.raises(jobs.StoreError, match="^job store: creating table: WaiterError$"):
        jobs.create_jobs_table(db, "jobs-stuck")
    assert waits == [3.0] * 39  # 40 DescribeTable calls 3 s apart: two minutes, then given up
    for code in ("LimitExceededException", "ValidationException"):  # one botocore models, one it does not
        aws.restore()
        aws.wrap(lambda app, code=code: Refuse(app, "CreateTable", code))
        with pytest.raises(jobs.StoreError, match=f"^job store: creating table: {code}$"):
            jobs.create_jobs_table(db, "jobs-refused")


def test_a_write_whose_table_stays_missing_makes_it_once_then_fails(aws: Aws, waits: list[float]) -> None:
    store = _store()
    store.create(OP, "completion", "d", "me", [])
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "UpdateItem", "ResourceNotFoundException"))
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        store.claim(OP, 0, "w1", 60)
    assert refusal.calls == 2  # the write, the table made (it was there), the write once more


def test_the_store_clients_bound_each_call_and_speak_what_s3_compatible_stores_take(aws: Aws) -> None:
    """Every store call: 3 s to connect, 20 s to read, 4 attempts (3 retries); the ledger's hasty client: 2 s, 5 s, one;
    Object Storage addressed by path, signed with SigV4, with checksums only where an API requires one; and the
    secret key is redacted from every log line."""
    from uuid import uuid4

    from shared import logs

    secret = "store-secret-" + uuid4().hex
    store = _store(secret_access_key=secret, access_key_id="store-key-id", region="ru-central9")
    for client in (store.db, store.s3):  # signed for the deployment's region, with its key, whatever boto3 would find
        assert (client.meta.region_name, client._request_signer._credentials.access_key) == ("ru-central9",
                                                                                             "store-key-id")
    for client in (store.db, store.s3):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout, config.retries) == (
            3, 20, {"total_max_attempts": 4, "mode": "standard"})  # botocore's count: the first try and 3 retries
    s3 = store.s3.meta.config
    assert (s3.s3, s3.signature_version, s3.request_checksum_calculation, s3.response_checksum_validation) == (
        {"addressing_style": "path"}, "s3v4", "when_required", "when_required")
    hasty = store._one_shot_client().meta.config
    assert (hasty.connect_timeout, hasty.read_timeout, hasty.retries) == (2, 5, {"total_max_attempts": 1,
                                                                               "mode": "standard"})
    assert secret not in logs.redact(f"signed with {secret}")


class Unprocessed:
    """WSGI middleware: the first BatchGetItem reads only the first key of each table and answers the others as
    UnprocessedKeys, as the Document API may (a read over its size or throughput limits; moto never does)."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".BatchGetItem"):
            return self.app(environ, start_response)
        self.calls += 1
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        left: dict[str, Any] = {}
        for table, asked in body["RequestItems"].items():
            if self.calls == 1 and len(asked["Keys"]) > 1:
                left[table] = {**asked, "Keys": asked["Keys"][1:]}
                asked["Keys"] = asked["Keys"][:1]
        sent = json.dumps(body).encode()
        answered: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answered.update(status=status, headers=headers)

        answer = json.loads(b"".join(self.app({**environ, "wsgi.input": io.BytesIO(sent),
                                                "CONTENT_LENGTH": str(len(sent))}, keep)))
        out = json.dumps({**answer, "UnprocessedKeys": left}).encode()
        start_response(answered["status"], [(k, v) for k, v in answered["headers"]  # the body changed: its CRC too
                                            if k.lower() not in ("content-length", "x-amz-crc32")]
                       + [("Content-Length", str(len(out)))])
        return [out]


def test_keys_the_store_leaves_unprocessed_are_read_again(aws: Aws) -> None:
    store = _store()
    ids = [f"fmo0000000store{n}" for n in range(3)]
    for op_id in ids:
        store.create(op_id, "completion", "d", "me", [])
    reading: Unprocessed = aws.wrap(Unprocessed)
    assert sorted(store.records(ids)) == ids
    assert reading.calls == 2  # the first read, then the keys it left


# -- the fast layer itself ----------------------------------------------------------------------------

def test_the_in_process_stand_in_opens_no_socket(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the tests here run on is the in-process app: with every socket connection refused, the store
    still works (the same tests over loopback are tests/integration/test_store_contract.py)."""
    import socket

    def refused(*_: Any, **__: Any) -> None:
        raise OSError("no sockets in the in-process stand-in")

    monkeypatch.setattr(socket.socket, "connect", refused)
    store = _store()
    store.create(OP, "completion", "d", "me", [b'{"p": 1}'])
    assert store.claim(OP, 0, "w1", 60).outcome == "claimed"
    assert store.complete(OP, 0, "w1", b"{}") is True
    assert store.get_object(jobs.payload_key(OP, 0)) == b'{"p": 1}'


# -- refusals and failures are StoreErrors (retryable) naming what happened; a missing object stays a 404 --

@pytest.mark.parametrize(("operation", "write"), [
    ("PutItem", lambda store: store.item_started(OP, 0, "up", "c")),
    ("PutItem", lambda store: store.item_finished(OP, 0, "c", {}, failed=True, from_state=None)),
    ("UpdateItem", lambda store: store.item_finished(OP, 0, "c", {}, failed=True)),
    ("UpdateItem", lambda store: store.finish(OP, "k", 1, None)),
    ("PutItem", lambda store: store.create(OP, "completion", "d", "me", [])),
    ("DeleteItem", lambda store: store.delete_record(OP)),
    ("TransactWriteItems", lambda store: store.transact(_usage_items("mark#1", 1))),
    ("TransactWriteItems", lambda store: store.add_usage(_usage_items("mark#1", 1), "mark#1", True)),
    ("GetItem", lambda store: store.item(OP)),
    ("BatchGetItem", lambda store: store.records([OP])),
])
def test_a_refused_call_is_a_store_error_naming_the_refusal(aws: Aws, operation: str,
                                                           write: Callable[[jobs.JobStore], Any]) -> None:
    store = _store()
    aws.wrap(lambda app: Refuse(app, operation, "AccessDeniedException"))
    with pytest.raises(jobs.StoreError, match="^job store: .*AccessDeniedException"):
        write(store)


def test_a_refused_completion_is_a_store_error(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "AccessDeniedException"))
    with pytest.raises(jobs.StoreError, match="^job store: AccessDeniedException$"):
        store.complete(OP, 0, "w1", b"{}")


@pytest.mark.parametrize("patient", [True, False])
def test_a_transaction_refused_as_a_failed_condition_is_a_condition_that_did_not_hold(aws: Aws, patient: bool) -> None:
    """The Document API may answer a transaction ConditionalCheckFailedException rather than a cancellation."""
    store = _store()
    store.put_record("mark#1", {"at": 1})
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ConditionalCheckFailedException"))
    assert store.transact(_usage_items("mark#2", 1)) is False
    assert store.add_usage(_usage_items("mark#1", 1), "mark#1", patient) is False  # its mark is there: applied


def test_a_completion_refused_as_a_failed_condition_is_judged_by_the_records(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ConditionalCheckFailedException", times=1))
    assert store.complete(OP, 0, "w1", b"{}") is True  # still ours: tried again
    assert store.item(OP)["tasks_done"] == 1


def test_a_delete_whose_table_stays_missing_finds_nothing(aws: Aws) -> None:
    store = _store()
    aws.wrap(lambda app: Refuse(app, "DeleteItem", "ResourceNotFoundException"))
    assert store.delete_record(OP) is False


def test_throttling_is_retried_by_the_patient_write_only(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.endpoint

    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=waits.append, time=__import__("time").time))
    store = _store()
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ThrottlingException", times=1))
    assert store.add_usage(_usage_items("mark#1", 1), "mark#1", True) is True
    assert refusal.calls == 2 and len(waits) == 1  # botocore's own retry, after a backoff
    refusal.calls, refusal.times = 0, 1
    with pytest.raises(jobs.StoreError, match="ThrottlingException"):  # one round trip, no retry
        store.add_usage(_usage_items("mark#2", 1), "mark#2", False)
    assert refusal.calls == 1 and len(waits) == 1


def test_an_unreachable_store_is_a_store_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback port 1, where nothing listens: every call fails to connect (botocore's retries' waits recorded,
    not taken), and each is a StoreError naming the failure, never botocore's own exception."""
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda s: None,
                                                                         time=__import__("time").time))
    store = jobs.JobStore(Settings(docapi_endpoint="http://127.0.0.1:1", s3_endpoint="http://127.0.0.1:1",
                                   results_bucket="b", access_key_id="a", secret_access_key="s"))
    calls: list[Callable[[], Any]] = [
        lambda: store.item(OP), lambda: store.records([OP]), lambda: store.put_record("r", {"a": 1}),
        lambda: store.delete_record("r"), lambda: store.put_object("k", b"{}"), lambda: store.get_object("k"),
        lambda: store.delete_object("k"), lambda: store.add_usage(_usage_items("m", 1), "m", True),
        lambda: store.add_usage(_usage_items("m", 1), "m", False), lambda: store.create_table()]
    for call in calls:
        with pytest.raises(jobs.StoreError, match=r"(job store|results bucket): .*(EndpointConnectionError|"
                                                  r"ConnectionClosedError|ConnectTimeoutError)"):
            call()



def test_an_instance_keeps_one_store_until_reset(aws: Aws) -> None:
    """boto3 clients are slow to build: a warm instance reuses its store; reset_job_store drops it."""
    settings = Settings.from_env()
    first = jobs.job_store(settings)
    assert isinstance(first, jobs.JobStore) and jobs.job_store(settings) is first
    jobs.reset_job_store()
    second = jobs.job_store(settings)
    assert second is not first and jobs.job_store(settings) is second


class Wire:
    """WSGI middleware: records each Document API request's operation and JSON body, as the service receives it."""

    def __init__(self, app: Any) -> None:
        self.app, self.seen = app, []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.seen.append((target.rpartition(".")[2], json.loads(body or b"{}")))
        return self.app(environ, start_response)


def test_reads_are_consistent_and_at_most_100_keys_a_call_as_the_api_allows(aws: Aws) -> None:
    store = _store()
    wire: Wire = aws.wrap(Wire)
    store.records([f"k{n}" for n in range(230)])
    store.item("k1")
    batches = [body["RequestItems"]["jobs"] for op, body in wire.seen if op == "BatchGetItem"]
    assert [len(b["Keys"]) for b in batches] == [100, 100, 30] and all(b["ConsistentRead"] is True for b in batches)
    assert [body["ConsistentRead"] for op, body in wire.seen if op == "GetItem"] == [True]


def test_a_discarded_or_retried_completion_says_so_in_the_log(aws: Aws, log_output: io.StringIO) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}"])
    store.claim(OP, 0, "w1", 60)
    aws.wrap(lambda app: Cancel(app, 1))
    assert store.complete(OP, 0, "w1", b"{}") is True
    aws.wrap(lambda app: Cancel(app, 1))
    assert store.complete(OP, 0, "w2", b"{}") is False
    lines = [json.loads(x) for x in log_output.getvalue().splitlines()]
    retried = next(x for x in lines if x["msg"] == "completion cancelled while its conditions hold: trying again")
    assert (retried["operation_id"], retried["task"], retried["attempt"], retried["level"]) == (OP, 0, 1, "INFO")
    dropped = next(x for x in lines if x["msg"] == "task result discarded: another worker owns the task or the "
                                                  "operation ended")
    assert (dropped["operation_id"], dropped["task"], dropped["level"]) == (OP, 0, "WARN")


def test_a_completion_that_never_goes_through_names_its_task(aws: Aws) -> None:
    store = _store()
    store.create(OP, "embedding", "d", "me", [b"{}", b"{}"])
    store.claim(OP, 1, "w1", 60)
    aws.wrap(lambda app: Cancel(app, 100))
    with pytest.raises(jobs.StoreError, match=r"^job store: completion of task 1 cancelled 6 times while its "
                                              r"conditions held$"):
        store.complete(OP, 1, "w1", b"{}")


def test_throttling_is_retried_three_times_by_the_patient_write(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard retries, max_attempts 3: three retries (four calls) before the refusal is the caller's."""
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda s: None,
                                                                         time=__import__("time").time))
    store = _store()
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "UpdateItem", "ThrottlingException", times=3))
    assert store.put_record("r", {"a": 1}) is True and refusal.calls == 4
    refusal.calls, refusal.times = 0, 4
    with pytest.raises(jobs.StoreError, match="^job store: ThrottlingException$"):
        store.put_record("s", {"a": 1})
    assert refusal.calls == 4
