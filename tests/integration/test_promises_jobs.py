"""The docs' promises about async jobs and batches, each by a test that a broken promise fails:
over real HTTP, moto server and the emulator, with time moved by the test clock rather than waited for.

Also the corrected versions of three weak tests elsewhere: the store's state machine driven through the
store itself (not a table no code reads), a poller that really dies (its lease stays held), and an async
embedding spread over several chunks with every position checked."""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
import requests

from local.functions import load
from local.triggers import timer_event
from shared.config import Settings
from shared.jobs import batches
from shared.jobs import store as store_module
from tests.clock import ManualClock
from tests.conftest import FOLDER, ROOT, Api, Emulator, FakeContext, Jobs, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "hello"}]}


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, jobs: Jobs, stack_env: Emulator) -> Emulator:
    """No pacing waits, one attempt per upstream call (so a fault reaches the worker), operations done at once."""
    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    monkeypatch.setattr(batches, "_windows", {})  # a fresh hourly start budget, as a new instance has
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


def poller() -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(60_000, request_id=str(uuid.uuid4())))


def run_to_end(api: Api, jobs: Jobs, op_id: str, rounds: int = 20) -> dict[str, Any]:
    for _ in range(rounds):
        jobs.drain()
        poller()
        operation = get(api, op_id)
        if operation["done"]:
            return operation
    raise AssertionError(f"{op_id} did not finish: {operation}")


def result_lines(operation: dict[str, Any]) -> list[dict[str, Any]]:
    body = requests.get(operation["response"]["resultUrl"], timeout=30).text
    return [json.loads(line) for line in body.splitlines()]


# -- batches: starting each request once ---------------------------------------------------------------

def test_a_redelivered_chunk_never_starts_a_request_twice(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.fault(path=f"{FM}/completionAsync", status=503, after=3, count=1)  # the 4th start fails
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(6)).json()
    jobs.drain()
    assert jobs.triggers["completion"].failures == 1  # the chunk went back to the queue and came again
    assert len(fast.calls("/completionAsync")) == 3 + 1 + 3  # started 3, one refused, then only the other 3
    records = store().items(operation["id"], list(range(6)))
    assert sorted(records) == list(range(6)) and len({r["upstream_id"] for r in records.values()}) == 6
    finished = run_to_end(api_v01, jobs, operation["id"])
    assert [line["customId"] for line in result_lines(finished)] == [f"req-{i}" for i in range(6)]
    assert all("response" in line for line in result_lines(finished))


def started_texts(emulator: Emulator) -> list[str]:
    """The request text of every completionAsync upstream received, in arrival order."""
    return [c["body"]["messages"][0]["text"] for c in emulator.calls("/completionAsync")]


def test_a_chunk_starts_its_requests_concurrently_and_no_more_at_once_than_allowed(
        api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "3")
    reset_caches()
    fast.configure(latencyMs=300)  # each start is held 300 ms: one at a time, upstream never sees two at once
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(12)).json()
    jobs.drain()
    assert 2 <= fast.max_in_flight() <= 3  # concurrent, within FM_MAX_CONCURRENCY
    assert sorted(started_texts(fast)) == sorted(f"question {i}" for i in range(12))  # each once
    records = store().items(operation["id"], list(range(12)))
    assert sorted(records) == list(range(12)) and len({r["upstream_id"] for r in records.values()}) == 12


def test_concurrent_starts_record_what_succeeded_before_giving_a_chunk_back(
        api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    """One request refused (400), one start failing (503) while the others are in flight: the refusal is
    that request's result, the 503 gives the chunk back only after every start that succeeded is recorded,
    and the redelivery starts only what has no record: each request reaches upstream once (6: twice)."""
    fast.configure(latencyMs=100)
    fast.fault(path=f"{FM}/completionAsync", status=400, message="bad request 3", bodyContains='question 3"', count=1)
    fast.fault(path=f"{FM}/completionAsync", status=503, bodyContains='question 6"', count=1)
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(12)).json()
    trigger = jobs.triggers["completion"]
    assert trigger.poll_once() == 1 and trigger.failures == 1  # the first delivery: given back
    first = {int(text.split()[1]) for text in started_texts(fast)}
    assert 6 in first
    records = store().items(operation["id"], list(range(12)))
    assert {i for i, r in records.items() if r.get("upstream_id")} == first - {3, 6}  # every success recorded
    assert (3 in records) == (3 in first) and 6 not in records
    jobs.drain()
    calls = collections.Counter(int(text.split()[1]) for text in started_texts(fast))
    assert calls == {**{i: 1 for i in range(12)}, 6: 2}
    finished = run_to_end(api_v01, jobs, operation["id"])
    lines = result_lines(finished)
    assert [line["customId"] for line in lines] == [f"req-{i}" for i in range(12)]
    assert [i for i, line in enumerate(lines) if "error" in line] == [3]
    assert "bad request 3" in lines[3]["error"]["message"] and finished["response"]["failed"] == "1"


def test_a_cancel_during_concurrent_starts_stops_the_chunk(
        api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start cancels the batch before it reaches upstream, and every other start waits until the
    cancel is through. With 8 threads, turns 0-7 are taken before the cancel is through, so the 11th turn's
    look at the operation (turns 0, 10, 20, ... look) sees it done, and no turn begins during a look: exactly
    the 10 turns before it reach upstream, never the whole chunk of 100; each started one is recorded."""
    from shared.client import FoundationModelsClient

    monkeypatch.setenv("FM_MAX_CONCURRENCY", "8")
    reset_caches()
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(100)).json()
    original = FoundationModelsClient.completion_async
    lock, cancelled, seen = threading.Lock(), threading.Event(), []

    def cancelling(self: FoundationModelsClient, body: dict[str, Any], call: Any) -> Any:
        with lock:
            seen.append(body)
            first = len(seen) == 1
        if first:
            answer = api_v01.post(f"/operations/{operation['id']}:cancel")
            assert answer.status_code == 200, answer.text
            cancelled.set()
        assert cancelled.wait(30)
        return original(self, body, call)

    monkeypatch.setattr(FoundationModelsClient, "completion_async", cancelling)
    jobs.drain()
    assert jobs.triggers["completion"].failures == 0
    started = len(fast.calls("/completionAsync"))
    assert started == 10  # before the look was made under the turn lock, a busy machine let 18 through
    records = store().items(operation["id"], list(range(100)))
    assert len(records) == started and all(r.get("upstream_id") for r in records.values())
    poller()
    assert len([c for c in fast.calls() if c["path"].endswith(":cancel")]) == started  # each cancelled upstream


def test_a_429_while_starting_a_chunk_gives_the_chunk_back(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.fault(path=f"{FM}/completionAsync", status=429, after=2, count=1)
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(4)).json()
    finished = run_to_end(api_v01, jobs, operation["id"])
    assert jobs.triggers["completion"].failures == 1
    assert all("response" in line for line in result_lines(finished))  # the refused start was not a bad request
    assert finished["response"]["failed"] == "0" and len(fast.calls("/completionAsync")) == 5


def test_when_the_hourly_budget_is_spent_the_chunk_comes_back_15_minutes_later(
        api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_ASYNC_START_PER_HOUR", "3")
    reset_caches()
    from shared.jobs.queue import QueueClient

    sent: list[tuple[str, str, int]] = []
    original_send = QueueClient.send

    def recording_send(self: QueueClient, queue_url: str, body: str, delay_s: int = 0) -> str:
        sent.append((queue_url, body, delay_s))
        return original_send(self, queue_url, body, delay_s)

    monkeypatch.setattr(QueueClient, "send", recording_send)
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(5)).json()
    jobs.drain()
    assert len(fast.calls("/completionAsync")) == 3  # the budget, and not one more
    assert jobs.triggers["completion"].failures == 0  # deferred, not failed: no delivery used up
    message = json.dumps({"op": operation["id"], "task": 0})
    assert sent == [(jobs.resources.queues["completion"], message, 900)]
    state = get(api_v01, operation["id"])
    assert state["done"] is False and "error" not in state
    task = store().item(store_module.task_id(operation["id"], 0))
    assert task["state"] == "queued" and "hourly start quota (3) reached" in task["last_error"]
    # an hour on, the delayed message arrives (sent here by hand: moto would hold it for 900 real seconds)
    clock.advance(3600)
    jobs.queues.send(jobs.resources.queues["completion"], message)
    finished = run_to_end(api_v01, jobs, operation["id"])
    assert len(fast.calls("/completionAsync")) == 5  # the other two, each once
    assert [line["customId"] for line in result_lines(finished)] == [f"req-{i}" for i in range(5)]


# -- workers: transient failures give the task back ----------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
def test_a_transient_upstream_failure_in_a_worker_gives_the_task_back(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                                      status: int) -> None:
    fast.fault(path=f"{FM}/completion", status=status, count=1)
    operation = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()
    finished = get(api_v01, operation["id"])
    assert finished["done"] is True and "error" not in finished, finished
    assert finished["response"]["alternatives"][0]["message"]["text"].startswith("[emulated yandexgpt-lite]")
    assert jobs.triggers["completion"].failures == 1 and len(fast.calls("/completion")) == 2


def test_a_bad_request_in_a_worker_ends_the_operation_at_once(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.fault(path=f"{FM}/completion", status=400, message="invalid role", count=1)
    operation = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()
    finished = get(api_v01, operation["id"])
    assert finished["error"]["code"] == 3 and finished["error"]["message"].endswith("invalid role")
    assert jobs.triggers["completion"].failures == 0 and len(fast.calls("/completion")) == 1


# -- the stuck sweep --------------------------------------------------------------------------------------

def test_the_stuck_sweep_leaves_a_live_lease_alone_and_takes_back_a_dead_one(
        api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("JOBS_STUCK_AFTER_S", "300")
    reset_caches()
    operation = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()
    queue = jobs.resources.queues["completion"]
    for message in jobs.queues.receive(queue):  # a worker took the message ...
        jobs.queues.delete(queue, message.receipt_handle)
    assert store().claim(operation["id"], 0, "worker-alive", 600).outcome == "claimed"  # ... and holds the task
    clock.advance(301)  # quiet for longer than JOBS_STUCK_AFTER_S, but the lease has 299 s to go
    assert "requeued-tasks" not in poller()
    assert jobs.queues.receive(queue) == []  # nothing sent: the worker is alive
    clock.advance(300)  # the lease ran out 1 s ago: the worker died
    assert poller()["requeued-tasks"] == 1
    jobs.drain()
    finished = get(api_v01, operation["id"])
    assert finished["done"] is True and "response" in finished and len(fast.calls("/completion")) == 1


# -- native batches --------------------------------------------------------------------------------------

def test_a_failed_native_batch_is_recorded_as_failed(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    body = {"modelUri": f"gpt://{FOLDER}/qwen2.5-32b-instruct/latest", "sourceDatasetId": "fdsEMULATOR_FAIL"}
    operation = api_v01.post(f"{FM}/completionBatch", body).json()
    assert poller()["native-finished"] == 1
    finished = get(api_v01, operation["id"])
    assert finished["done"] is True and "response" not in finished
    assert finished["error"] == {"code": 3, "message": "emulated failure of this batch task", "details": []}
    assert finished["metadata"]["taskStatus"] == "FAILED"
    assert poller().get("native-finished", 0) == 0  # settled: not polled again


def test_the_poller_stops_before_its_deadline_on_the_clock(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                           monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    """Replaces test_batches.py::test_the_poller_never_runs_past_its_deadline (a wall-clock bound). At 10
    polls a second, a 2.55 s invocation (less 0.5 s for the answer and 1 s of poller margin: 1.05 s) has
    slots for exactly 11 polls, at 0, 0.1, ... 1.0 s: time moves only by the pacer's waits, so the count is
    exact, not a race (and no slot falls on the deadline, where float rounding would decide)."""
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "10")
    reset_caches()
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(30)).json()
    jobs.drain()
    started = clock.monotonic()
    summary = load("batch_poller")(timer_event(), FakeContext(2550, request_id="deadline-poller"))
    assert summary == {"items-finished": 11, "deadline": 1}
    assert clock.monotonic() - started == pytest.approx(1.0)  # the last slot, 1 s before the deadline
    assert len([c for c in fast.calls() if c["path"].startswith("/operations/")]) == 11
    assert get(api_v01, operation["id"])["metadata"]["completedBatches"] == "11"


# -- corrected versions of weak tests in other files -----------------------------------------------------

def test_the_store_makes_no_move_outside_its_state_machine(jobs: Jobs, clock: ManualClock) -> None:
    """Replaces test_job_store.py::test_transitions_table_names_every_move (which read a table no code uses)."""
    jobs_store, op = store(), "fmo0000000000moves"
    jobs_store.create(op, "embedding", "d", "me", [b"{}", b"{}"])
    assert jobs_store.item(op)["state"] == "queued"
    assert jobs_store.claim(op, 0, "w1", 60).outcome == "claimed"  # task absent -> running
    assert jobs_store.item(op)["state"] == "running"  # operation queued -> running
    assert jobs_store.claim(op, 0, "w2", 60).outcome == "busy"  # running, lease live: nobody else
    assert jobs_store.complete(op, 0, "w2", b"{}") is False  # only the holder completes
    jobs_store.release(op, 0, "w2", "not mine")  # nor releases
    assert jobs_store.item(f"{op}#0")["worker"] == "w1" and jobs_store.item(f"{op}#0")["state"] == "running"
    clock.advance(61)  # w1's lease ran out: running -> running, taken over
    takeover = jobs_store.claim(op, 0, "w2", 60)
    assert (takeover.outcome, takeover.attempts) == ("claimed", 2)
    assert jobs_store.complete(op, 0, "w1", b"{}") is False  # the old holder's late result is refused
    jobs_store.release(op, 0, "w2", "UNAVAILABLE: 503")  # running -> queued
    assert jobs_store.item(f"{op}#0")["state"] == "queued"
    assert jobs_store.claim(op, 0, "w3", 60).outcome == "claimed"  # queued -> running
    assert jobs_store.complete(op, 0, "w3", b"{}") is True  # running -> done, counted once
    clock.advance(3600)
    assert jobs_store.claim(op, 0, "w4", 60).outcome == "done"  # done -> running: never
    jobs_store.release(op, 0, "w3", "late")  # done -> queued: never
    assert jobs_store.item(f"{op}#0")["state"] == "done"
    assert jobs_store.complete(op, 0, "w3", b"{}") is False and jobs_store.item(op)["tasks_done"] == 1
    assert jobs_store.finish(op, None, 0, {"code": 1, "message": "cancelled", "details": []}) is True
    assert jobs_store.finish(op, "results/x", 1, None) is False  # done -> done: never twice
    assert jobs_store.claim(op, 1, "w5", 60).outcome == "claimed"  # a straggler may claim its task ...
    assert jobs_store.item(op)["state"] == "done"  # ... but the operation does not go back to running
    assert jobs_store.complete(op, 1, "w5", b"{}") is False and jobs_store.item(op)["tasks_done"] == 1
    queued_op = "fmo000000000queued"
    jobs_store.create(queued_op, "completion", "d", "me", [b"{}"])
    assert jobs_store.finish(queued_op, None, 0, {"code": 1, "message": "cancelled", "details": []}) is True
    assert jobs_store.claim(queued_op, 0, "w6", 60).outcome == "claimed" and jobs_store.item(queued_op)["state"] == "done"


KILLED_POLLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from local.functions import load
from local.triggers import timer_event
from shared.jobs import store
from tests.conftest import FakeContext

original, recorded = store.JobStore.item_finished, []

def dies_after_fifty(self, *args, **kwargs):
    if len(recorded) == 50:
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: the lease stays as it was
    recorded.append(args[1])
    return original(self, *args, **kwargs)

store.JobStore.item_finished = dies_after_fifty
load("batch_poller")(timer_event(), FakeContext(60_000, request_id="killed-poller"))
"""


def test_a_poller_killed_mid_run_leaves_its_lease_and_the_next_takes_over_after_it(
        api_v01: Api, jobs: Jobs, fast: Emulator, clock: ManualClock) -> None:
    """Replaces test_batches.py::test_a_poller_killed_mid_run_loses_and_duplicates_nothing, whose
    KeyboardInterrupt ran the poller's `finally` and released the lease a real crash leaves held."""
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(120)).json()
    op_id = operation["id"]
    jobs.drain()
    child = subprocess.run([sys.executable, "-c", KILLED_POLLER.format(root=str(ROOT))], env=dict(os.environ),
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    records = store().items(op_id, list(range(120)))
    assert sum(1 for r in records.values() if r["state"] == "done") == 50  # recorded before the kill, kept
    held = store().item(op_id)
    assert held["poll_holder"].startswith("killed-poller") and held["poll_until"] > clock.now()
    assert poller().get("leased-elsewhere") == 1  # the dead poller's lease still holds: no double work
    assert sum(1 for r in store().items(op_id, list(range(120))).values() if r["state"] == "done") == 50
    clock.advance(held["poll_until"] - clock.now() + 1)  # its lease runs out
    finished = run_to_end(api_v01, jobs, op_id)
    assert [line["customId"] for line in result_lines(finished)] == [f"req-{i}" for i in range(120)]
    assert finished["metadata"]["completedBatches"] == "120" and len(fast.calls("/completionAsync")) == 120
    gets: dict[str, int] = {}
    for call in fast.calls():
        if call["path"].startswith("/operations/"):
            gets[call["path"]] = gets.get(call["path"], 0) + 1
    assert len(gets) == 120 and sorted(gets.values())[-2] == 1  # at most the one in flight at the kill twice


def test_an_async_embedding_over_several_chunks_keeps_every_position(api_v01: Api, jobs: Jobs,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaces test_async.py::test_embedding_async_small (one chunk, one position checked)."""
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "2")
    reset_caches()
    texts = ["alpha river", "beta mountain range", "gamma sea", "delta forest floor", "epsilon sky"]
    operation = api_v01.post(f"{FM}/textEmbeddingAsync", {"modelUri": "text-search-doc", "texts": texts}).json()
    assert operation["metadata"]["totalTasks"] == "3"
    jobs.drain()
    result = get(api_v01, operation["id"])["response"]
    singles = [api_v01.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "text": t}).json() for t in texts]
    assert result["embeddings"] == [s["embedding"] for s in singles]  # every position, in input order
    assert result["numTokens"] == str(sum(int(s["numTokens"]) for s in singles)) == "12"
    assert result["@type"].endswith("TextEmbeddingBatchResponse") and result["modelVersion"]


def test_an_unreadable_message_reaches_the_dlq_and_its_body_is_logged(jobs: Jobs, log_output: io.StringIO) -> None:
    """Replaces test_async.py::test_unreadable_message_goes_to_the_dlq_and_is_logged (which read no log line)."""
    body = f"not a job {uuid.uuid4().hex}"  # a text no earlier test registered as a secret (it would be redacted)
    jobs.queues.send(jobs.resources.queues["embedding"], body)
    jobs.drain()
    assert jobs.triggers["embedding"].failures == 3 and jobs.triggers["embedding-dlq"].invocations == 1
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    retries = [line for line in lines if line["msg"] == "message will be redelivered"]
    assert len(retries) == 3 and all("not a job reference" in line["reason"] for line in retries)
    (dead,) = [line for line in lines if line["msg"] == "unreadable message reached the dead-letter queue; consumed"]
    assert dead["body"] == body and dead["level"] == "ERROR" and dead["function"] == "embedding"
