"""The job engine's promises about time bounds and records, as the store and a caller see them: a worker's
and a poller's lease end with their invocation (plus the documented margin), a late unlease never frees
someone else's lease, every record a batch writes carries `expires_at`, a result exactly
RESULT_INLINE_MAX_BYTES long is inline, and cancelling a native batch reaches upstream exactly once.

Over moto server and the emulator; time is the test clock's (leases are read against clock.now(), which
stands still), so the numbers are exact."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from local.functions import load
from local.triggers import timer_event, ymq_event
from shared.config import Settings
from shared.jobs import batches, worker
from shared.jobs import store as store_module
from tests.clock import ManualClock
from tests.conftest import FOLDER, Api, Emulator, FakeContext, Jobs, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "hello"}]}
NATIVE = {"modelUri": f"gpt://{FOLDER}/qwen2.5-32b-instruct/latest", "sourceDatasetId": "fdsEXAMPLE",
          "completionOptions": {"temperature": 0.3, "maxTokens": "1000"}}


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, jobs: Jobs, stack_env: Emulator) -> Emulator:
    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    monkeypatch.setattr(batches, "_windows", {})
    reset_caches()
    stack_env.configure(asyncDelayMs=0)
    return stack_env


def store() -> store_module.JobStore:
    return store_module.JobStore(Settings.from_env())


def batch_body(count: int) -> dict[str, Any]:
    return {"modelUri": "yandexgpt-lite",
            "requests": [{"customId": f"req-{i}", "messages": [{"role": "user", "text": f"question {i}"}]}
                         for i in range(count)]}


def get(api: Api, op_id: str) -> dict[str, Any]:
    response = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def poller(remaining_ms: int = 60_000) -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(remaining_ms, request_id=str(uuid.uuid4())))


def deliver(jobs: Jobs, queue: str, remaining_ms: int, dead: bool = False) -> Any:
    """Take the queue's messages and hand them to the completion function as its trigger would, with a
    context whose remaining time is exactly `remaining_ms`."""
    messages = jobs.queues.receive(jobs.resources.queues[queue])
    assert messages
    arn = jobs.resources.arns[queue + ("-dlq" if dead else "")]
    return load("completion")(ymq_event(messages, arn), FakeContext(remaining_ms, request_id=str(uuid.uuid4())))


# -- leases end with the invocation -----------------------------------------------------------------------

@pytest.mark.parametrize("remaining_ms,lease_s", [(100_000, 100 - 0.5 + 30), (20_000, 20 - 0.5 + 30),
                                                  (900_000, 660.0)])
def test_a_workers_task_lease_ends_with_its_invocation_plus_30_s(
        api_v01: Api, jobs: Jobs, fast: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        remaining_ms: int, lease_s: float) -> None:
    """docs/reliability-and-faults.md (fault table, worker crash): the lease is JOB_LEASE_S (660 s), at most the invocation's time
    + 30 s, so a worker killed at its deadline frees its task 30 s later, not 11 minutes later."""
    operation = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()
    seen: list[dict[str, Any]] = []
    real = worker.execute

    def watching(kind: str, payload: dict[str, Any], inv: Any) -> dict[str, Any]:  # while the task is held
        seen.append(store().item(f"{operation['id']}#0") or {})
        return real(kind, payload, inv)

    monkeypatch.setattr(worker, "execute", watching)
    deliver(jobs, "completion", remaining_ms)
    assert len(seen) == 1 and seen[0]["state"] == "running"
    # the call's deadline is the context's time less 0.5 s (client.SAFETY_MARGIN_S)
    assert seen[0]["lease_until"] - clock.now() == pytest.approx(lease_s, abs=0.01)
    assert get(api_v01, operation["id"])["done"] is True


def test_a_dead_letter_workers_lease_on_a_chunk_ends_with_its_invocation(
        api_v01: Api, jobs: Jobs, fast: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(2)).json()
    op_id = operation["id"]
    for attempt in range(Settings.from_env().job_max_deliveries):  # tried as often as delivered: it fails now
        assert store().claim(op_id, 0, f"crashed-worker-{attempt}", 1).outcome == "claimed"
        store().release(op_id, 0, f"crashed-worker-{attempt}", "UNAVAILABLE: 503")
    seen: list[dict[str, Any]] = []
    real = batches.fail_chunk

    def watching(*args: Any, **kwargs: Any) -> int:
        seen.append(store().item(f"{op_id}#0") or {})
        return real(*args, **kwargs)

    monkeypatch.setattr(batches, "fail_chunk", watching)
    deliver(jobs, "completion", 40_000, dead=True)
    assert len(seen) == 1 and seen[0]["state"] == "running"
    assert seen[0]["lease_until"] - clock.now() == pytest.approx(40 - 0.5 + 30, abs=0.01)


@pytest.mark.parametrize("remaining_ms,lease_s", [(30_000, 30 - 0.5 + 5), (600_000, 120.0), (1_600, 1.1 + 5)])
def test_the_pollers_lease_on_a_batch_ends_with_its_invocation_plus_5_s(
        api_v01: Api, jobs: Jobs, fast: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        remaining_ms: int, lease_s: float) -> None:
    """docs/reliability-and-faults.md (fault table, poller crash): at most 120 s, or its invocation's time + 5 s."""
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(2)).json()
    jobs.drain()
    seen: list[float] = []
    real = store_module.JobStore.items

    def watching(self: store_module.JobStore, op_id: str, indexes: list[int]) -> Any:  # under the lease
        seen.append(float(self.item(op_id)["poll_until"]))
        return real(self, op_id, indexes)

    monkeypatch.setattr(store_module.JobStore, "items", watching)
    poller(remaining_ms)
    assert seen and seen[0] - clock.now() == pytest.approx(lease_s, abs=0.01)
    assert store().item(operation["id"])["poll_until"] == 0  # given back at the end of the run


def test_a_late_unlease_never_frees_the_lease_of_whoever_took_it_over(jobs: Jobs, clock: ManualClock) -> None:
    jobs_store, op = store(), "fmo00000000unlease"
    jobs_store.create(op, "batch", "d", "me", [b"{}"])
    assert jobs_store.lease(op, "poll", "poller-a", 10) is True
    assert jobs_store.lease(op, "poll", "poller-b", 10) is False  # a's lease is live
    clock.advance(11)  # a's lease ran out while a was still working (descheduled, slow store)
    assert jobs_store.lease(op, "poll", "poller-b", 60) is True
    held = jobs_store.item(op)
    jobs_store.unlease(op, "poll", "poller-a")  # a finishes and gives back what it no longer holds
    after = jobs_store.item(op)
    assert (after["poll_holder"], after["poll_until"]) == ("poller-b", held["poll_until"])
    assert jobs_store.lease(op, "poll", "poller-c", 60) is False  # b's lease still keeps others out
    jobs_store.unlease(op, "poll", "poller-b")  # its holder's unlease does free it
    assert jobs_store.lease(op, "poll", "poller-c", 60) is True


# -- every record a batch writes carries expires_at ---------------------------------------------------------

def _table(jobs_store: store_module.JobStore) -> list[dict[str, Any]]:
    pages = jobs_store.db.get_paginator("scan").paginate(TableName=jobs_store.table, ConsistentRead=True)
    return [store_module._plain(raw) for page in pages for raw in page.get("Items", [])]


def test_every_record_a_batch_writes_carries_expires_at(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                       clock: ManualClock) -> None:
    """The store's TTL deletes records by `expires_at`; a record without one stays for ever. The items of
    a request started, one refused at start (a 400 from upstream), the tasks, the operation: each has it,
    JOBS_TTL_DAYS (3 days) from when it was written. Only the index of unsettled operations, which every
    batch shares and the poller empties, has none (it must never expire)."""
    fast.fault(path=f"{FM}/completionAsync", status=400, after=2, count=1)  # the 3rd start is refused
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(4)).json()
    op_id = operation["id"]
    jobs.drain()
    clock.advance(5)
    for _ in range(5):
        poller()
        if get(api_v01, op_id)["done"]:
            break
    finished = get(api_v01, op_id)
    assert finished["done"] is True and finished["metadata"]["failedRequests"] == "1"
    jobs_store = store()
    records = [r for r in _table(jobs_store) if r["id"] not in jobs_store.index_keys()]
    records = check_usage_ttls(records, clock.now())
    ids = sorted(r["id"] for r in records)
    assert ids == sorted([op_id, f"{op_id}#0", *(f"{op_id}#i{i}" for i in range(4))])  # every kind of record
    ttl = 3 * 86400
    for record in records:
        assert "expires_at" in record, record["id"]
        assert clock.now() - 10 <= record["expires_at"] - ttl <= clock.now() + 1, record["id"]


def check_usage_ttls(records: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The usage ledger's records carry their own, longer expiry: a call mark USAGE_MARK_DAYS after it was
    written, a day's totals FM_USAGE_TTL_DAYS (400) after the start of their UTC day. The other records."""
    from shared.jobs import usage

    for record in records:
        if record["id"].startswith("usage#call#"):
            assert now - 10 <= record["expires_at"] - usage.USAGE_MARK_DAYS * 86400 <= now + 1, record["id"]
        elif record["id"].startswith("usage#"):
            assert now - 86400 - 10 <= record["expires_at"] - 400 * 86400 <= now + 1, record["id"]
    return [r for r in records if not r["id"].startswith("usage#")]


# -- the inline result boundary -----------------------------------------------------------------------------

def test_a_result_exactly_the_inline_limit_is_inline_and_one_byte_more_is_a_url(
        api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    operation = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()

    def seen_with_limit(limit: int) -> dict[str, Any]:
        monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", str(limit))
        reset_caches()
        return get(api_v01, operation["id"])["response"]

    size = int(seen_with_limit(0)["sizeBytes"])  # the result's size, as a caller is told it
    inline = seen_with_limit(size)
    assert inline["@type"].endswith("CompletionResponse") and inline["alternatives"]
    assert "resultUrl" not in inline and "sizeBytes" not in inline
    assert len(json.dumps(inline, ensure_ascii=False, separators=(",", ":")).encode()) <= size
    over = seen_with_limit(size - 1)
    assert over["sizeBytes"] == str(size) and "alternatives" not in over
    assert over["resultUrl"].startswith("http")
    assert json.loads(requests.get(over["resultUrl"], timeout=30).content) == inline


# -- native batch cancel -------------------------------------------------------------------------------------

def test_cancelling_a_native_batch_cancels_it_upstream_exactly_once(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.configure(asyncDelayMs=600_000)  # still running upstream when the caller cancels
    operation = api_v01.post(f"{FM}/completionBatch", NATIVE).json()
    assert poller().get("native-pending") == 1
    upstream_id = store().item(operation["id"])["upstream_id"]
    first = api_v01.post(f"/operations/{operation['id']}:cancel", {})
    assert first.status_code == 200, first.text
    assert first.json()["done"] is True and first.json()["error"]["code"] == 1
    again = api_v01.post(f"/operations/{operation['id']}:cancel", {})  # a caller's retry
    assert again.status_code == 200 and again.json()["error"] == first.json()["error"]
    poller()
    poller()
    cancels = [c for c in fast.calls() if c["path"].endswith(":cancel")]
    assert [c["path"] for c in cancels] == [f"/operations/{upstream_id}:cancel"]
    upstream = fast.http.get(f"{fast.url}/operations/{upstream_id}", timeout=5,
                             headers={"Authorization": "Api-Key x"}).json()
    assert upstream["done"] is True and upstream["error"]["code"] == 1  # upstream really stopped it
    assert get(api_v01, operation["id"])["metadata"]["taskStatus"] != "COMPLETED"
