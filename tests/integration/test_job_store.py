"""The job store's state machine against moto server: every step is a conditional write, so races
between workers have exactly one winner."""

from __future__ import annotations

import threading
import time

import pytest

from shared.config import Settings
from shared.jobs import store as jobs_module
from tests.conftest import Jobs

pytestmark = pytest.mark.integration


def _store() -> jobs_module.JobStore:
    return jobs_module.JobStore(Settings.from_env())


def _race(count: int, action) -> list:  # type: ignore[no-untyped-def]
    results: list = []
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        results.append(action(index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_only_one_of_many_workers_claims_a_task(jobs: Jobs) -> None:
    store = _store()
    store.create("fmo00000000race1", "completion", "d", "me", [b"{}"])
    outcomes = _race(8, lambda i: store.claim("fmo00000000race1", 0, f"w{i}", 60).outcome)
    assert sorted(outcomes) == ["busy"] * 7 + ["claimed"]
    operation = store.item("fmo00000000race1")
    assert operation["state"] == "running"


def test_completion_counts_once_and_only_for_the_lease_holder(jobs: Jobs) -> None:
    store = _store()
    store.create("fmo00000000race2", "embedding", "d", "me", [b"{}", b"{}"])
    assert store.claim("fmo00000000race2", 0, "w1", 60).outcome == "claimed"
    assert store.complete("fmo00000000race2", 0, "w2", b"{}") is False  # not the holder
    results = _race(4, lambda i: store.complete("fmo00000000race2", 0, "w1", b"{}"))
    assert sorted(results) == [False, False, False, True]
    assert store.item("fmo00000000race2")["tasks_done"] == 1
    assert store.claim("fmo00000000race2", 0, "w3", 60).outcome == "done"


def test_expired_lease_is_taken_over_and_released_task_is_claimable(jobs: Jobs) -> None:
    store = _store()
    store.create("fmo00000000race3", "completion", "d", "me", [b"{}"])
    assert store.claim("fmo00000000race3", 0, "w1", 0.5).outcome == "claimed"
    assert store.claim("fmo00000000race3", 0, "w2", 60).outcome == "busy"
    time.sleep(1.1)
    takeover = store.claim("fmo00000000race3", 0, "w2", 60)
    assert takeover.outcome == "claimed" and takeover.attempts == 2
    store.release("fmo00000000race3", 0, "w2", "UNAVAILABLE: upstream 503")
    assert store.item("fmo00000000race3#0")["state"] == "queued"
    assert store.claim("fmo00000000race3", 0, "w3", 60).outcome == "claimed"


def test_an_operation_finishes_once_with_exactly_one_outcome(jobs: Jobs) -> None:
    store = _store()
    store.create("fmo00000000race4", "completion", "d", "me", [b"{}"])
    results = _race(6, lambda i: store.finish("fmo00000000race4", "k", 1, None) if i % 2 else
                    store.finish("fmo00000000race4", None, 0, {"code": 3, "message": "x", "details": []}))
    assert results.count(True) == 1
    item = store.item("fmo00000000race4")
    assert item["state"] == "done" and (("error" in item) != ("result_key" in item))


def test_transitions_table_names_every_move() -> None:
    assert ("operation", "done", "running") not in jobs_module.TRANSITIONS
    assert ("task", "done", "running") not in jobs_module.TRANSITIONS
