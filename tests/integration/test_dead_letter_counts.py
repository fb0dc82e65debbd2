"""The dead-letter queue means "failed JOB_MAX_DELIVERIES times", not "was received that often" (issue 18,
item 11; docs/dead-letters.md). The queue counts every receive, also those that were no failed start of
the task's own (the scaling policy's 429 before the function runs, a deferral near the deadline, another
worker's lease, a batch-mate's failure). So the dead-letter side asks the store: a task whose failed
starts are fewer than JOB_MAX_DELIVERIES is sent again on a fresh message, each time it arrives, until
JOB_QUEUE_WINDOW_S has passed since its last start (or its submission); one that failed that often ends
its operation with the dead-letter reason; one not run in time ends with DEADLINE_EXCEEDED, saying so.

Over loopback: moto server as the queue (its redrive policy counts receives as Message Queue does: a
message received maxReceiveCount times moves on its next receive), the local trigger runners, the
emulator upstream. The local queues' maxReceiveCount is 3 (tests/conftest.py), and so JOB_MAX_DELIVERIES."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest

from local.context import LocalContext
from local.functions import load
from local.triggers import ymq_event
from shared.config import Settings
from shared.jobs import store as store_module
from shared.jobs import worker
from shared.jobs.queue import Message
from tests.clock import ManualClock
from tests.conftest import FOLDER, Api, Emulator, Jobs, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest",
              "messages": [{"role": "user", "text": "Tell me about the Volga"}]}
LIMIT = 3  # the local queues' maxReceiveCount, and JOB_MAX_DELIVERIES


def _store() -> store_module.JobStore:
    return store_module.JobStore(Settings.from_env())


def _submit(api: Api) -> str:
    answer = api.post(f"{FM}/completionAsync", COMPLETION)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def _start(op_id: str, failed: int, deferred: int = 0) -> None:
    """Start the task `failed + deferred` times by hand: `failed` given back with an error (a transient
    failure), `deferred` given back as no failure (the hourly start quota)."""
    store = _store()
    for n in range(failed + deferred):
        assert store.claim(op_id, 0, f"w{n}", 60).outcome == "claimed"
        store.release(op_id, 0, f"w{n}", "UNAVAILABLE: overloaded", deferred=n >= failed)


def _move_to_dlq(jobs: Jobs, extra: dict[str, Any] | None = None) -> None:
    """Move the job queue's one message to the dead-letter queue, as the redrive policy does."""
    queue, dead = jobs.resources.queues["completion"], jobs.resources.queues["completion-dlq"]
    [message] = jobs.queues.receive(queue, 10)
    jobs.queues.send(dead, json.dumps({**json.loads(message.body), **(extra or {})}))
    jobs.queues.delete(queue, message.receipt_handle)


def _throttled(jobs: Jobs, expected: int = 1) -> None:
    """A delivery the function never saw (the scaling policy answered the trigger 429): the messages are
    received, then visible again, with one more receive counted."""
    queue = jobs.resources.queues["completion"]
    messages = jobs.queues.receive(queue, 10)
    assert len(messages) == expected
    for message in messages:
        jobs.queues.change_visibility(queue, message.receipt_handle, 0)


def _operation(api: Api, op_id: str) -> dict[str, Any]:
    answer = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- what the dead-letter side decides from the store -----------------------------------------------------

@pytest.mark.parametrize(("failed", "deferred", "old_requeued_mark"), [
    (0, 0, False), (0, 0, True), (1, 0, False), (2, 0, True), (2, 4, False)])
def test_a_task_that_failed_fewer_starts_than_the_bound_is_sent_again(api_v01: Api, jobs: Jobs, failed: int,
                                                                      deferred: int, old_requeued_mark: bool) -> None:
    """Also the message an older version marked {"requeued": 1} (its "second arrival", which then failed)."""
    assert Settings.from_env().job_max_deliveries == LIMIT
    op_id = _submit(api_v01)
    _start(op_id, failed, deferred)
    _move_to_dlq(jobs, {"requeued": 1} if old_requeued_mark else None)
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished, finished
    assert jobs.triggers["completion-dlq"].invocations == 1
    assert _store().item(op_id)["dead_letter_resends"] == 1


@pytest.mark.parametrize(("failed", "deferred"), [(3, 0), (3, 2)])
def test_a_task_that_failed_the_bound_ends_with_the_dead_letter_reason(api_v01: Api, jobs: Jobs, failed: int,
                                                                       deferred: int) -> None:
    op_id = _submit(api_v01)
    _start(op_id, failed, deferred)
    _move_to_dlq(jobs)
    jobs.drain()
    error = _operation(api_v01, op_id)["error"]
    assert error["code"] == 14 and "dead-letter queue" in error["message"], error
    assert f"after {failed} failed starts" in error["message"] and "overloaded" in error["message"]
    assert jobs.triggers["completion"].invocations == 0  # nothing sent back to the job queue


# -- over the real queue: receives that were no failed start never count ---------------------------------

def test_a_task_received_without_a_start_more_often_than_the_bound_still_completes(api_v01: Api, jobs: Jobs) -> None:
    """Deferred at the deadline five times (each time sent again on a fresh message, so the queue counts
    nothing), then three rounds through the dead-letter queue (nine receives the scaling policy
    throttled); then it runs, once."""
    emulator = Emulator(os.environ["FM_BASE_URL"])
    op_id = _submit(api_v01)
    trigger, dead = jobs.triggers["completion"], jobs.triggers["completion-dlq"]
    trigger.timeout_s = 2.0  # less than MIN_TIME_FOR_A_MESSAGE_S: the worker defers the message unstarted
    for _ in range(5):
        assert trigger.poll_once() == 1
        [message] = jobs.queues.receive(jobs.resources.queues["completion"], 10)
        assert message.attributes["ApproximateReceiveCount"] == "1"  # a fresh message: nothing counted
        jobs.queues.change_visibility(jobs.resources.queues["completion"], message.receipt_handle, 0)
        _throttled(jobs)
    assert trigger.failures == 0 and dead.invocations == 0
    trigger.timeout_s = 600.0
    _throttled(jobs)  # its third receive
    for round_ in range(1, 4):
        _throttled(jobs, expected=0)  # received LIMIT times: this receive moved it to the dead-letter queue
        assert dead.poll_once() == 1 and dead.failures == 0 and _store().item(op_id)["dead_letter_resends"] == round_
        assert _operation(api_v01, op_id)["done"] is False
        for _ in range(LIMIT):
            _throttled(jobs)
    assert emulator.calls("/completion") == [] and _store().item(f"{op_id}#0") is None  # never started so far
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished, finished
    assert len(emulator.calls("/completion")) == 1 and _store().item(f"{op_id}#0")["attempts"] == 1
    assert trigger.failures == 0 and dead.invocations == 4  # the fourth: the last copy, moved, sent again


def test_a_deferral_the_queue_refuses_to_send_again_goes_back_with_its_batch(api_v01: Api, jobs: Jobs,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent before the trigger deletes the batch: when the send fails, the invocation fails instead, and
    the message comes back (counted); nothing is lost."""
    op_id = _submit(api_v01)
    queue = jobs.resources.queues["completion"]
    monkeypatch.setenv("COMPLETION_QUEUE_URL", queue + "-gone")  # the queue answers: no such queue
    reset_caches()
    trigger = jobs.triggers["completion"]
    trigger.timeout_s = 2.0
    assert trigger.poll_once() == 1 and trigger.failures == 1
    [message] = jobs.queues.receive(queue, 10)
    assert message.attributes["ApproximateReceiveCount"] == "2" and json.loads(message.body)["op"] == op_id
    jobs.queues.change_visibility(queue, message.receipt_handle, 0)
    monkeypatch.setenv("COMPLETION_QUEUE_URL", queue)
    reset_caches()
    trigger.timeout_s = 600.0
    jobs.drain()
    assert "response" in _operation(api_v01, op_id)


def test_only_failed_starts_count_even_among_receives_that_were_none(api_v01: Api, jobs: Jobs,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round through the queue: one failed start between two throttled receives. The task ends with
    the dead-letter reason after exactly LIMIT upstream calls (an older version failed it after two)."""
    monkeypatch.setenv("FM_MAX_RETRIES", "0")  # one upstream call per start
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.fault(path=f"{FM}/completion", status=503, count=-1, message="overloaded")
    op_id = _submit(api_v01)
    trigger, dead = jobs.triggers["completion"], jobs.triggers["completion-dlq"]
    for round_ in range(1, LIMIT + 1):
        assert _operation(api_v01, op_id)["done"] is False
        _throttled(jobs)
        assert trigger.poll_once() == 1 and trigger.failures == round_  # a real start, failed
        _throttled(jobs)
        _throttled(jobs, expected=0)  # moved to the dead-letter queue
        assert dead.poll_once() == 1
        assert len(emulator.calls("/completion")) == round_
    error = _operation(api_v01, op_id)["error"]
    assert error["code"] == 14 and "dead-letter queue" in error["message"] and "overloaded" in error["message"]
    assert f"after {LIMIT} failed starts" in error["message"]
    assert _store().item(op_id)["dead_letter_resends"] == LIMIT - 1
    assert jobs.drain() == 0 and len(emulator.calls("/completion")) == LIMIT


# -- a copy sent again never runs the task twice ---------------------------------------------------------

def test_a_copy_sent_again_while_the_original_is_in_flight_does_not_run_twice(
        api_v01: Api, jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original is held in flight (its upstream call waits on an event) while its copy goes round the
    dead-letter queue twice, finding the task busy each time; then the original finishes, and the copy is
    skipped: one upstream call."""
    emulator = Emulator(os.environ["FM_BASE_URL"])
    entered, hold = threading.Event(), threading.Event()
    execute = worker.execute

    def held(kind: str, payload: dict[str, Any], inv: Any) -> dict[str, Any]:
        if not entered.is_set():
            entered.set()
            assert hold.wait(120)
        return execute(kind, payload, inv)

    monkeypatch.setattr(worker, "execute", held)
    op_id = _submit(api_v01)
    queue = jobs.resources.queues["completion"]
    [original] = jobs.queues.receive(queue, 10, visibility_s=600)  # handed to invocation A
    outcome: list[Any] = []
    invocation_a = threading.Thread(target=lambda: outcome.append(load("completion")(
        ymq_event([original], jobs.resources.arns["completion"]), LocalContext("completion", timeout_s=300))))
    invocation_a.start()
    try:
        assert entered.wait(60), "invocation A never reached its upstream call"
        # A's message outlived its visibility timeout, was received by invocations that found the task busy,
        # and reached the dead-letter queue; A's start is still in flight, so it has not failed
        jobs.queues.send(jobs.resources.queues["completion-dlq"], original.body)
        trigger, dead = jobs.triggers["completion"], jobs.triggers["completion-dlq"]
        for round_ in range(1, 3):
            assert dead.poll_once() == 1 and dead.failures == 0  # sent again
            for _ in range(LIMIT):
                assert trigger.poll_once() == 1  # the copy finds the task busy: given back
            assert trigger.poll_once() == 0  # moved to the dead-letter queue
            assert trigger.failures == LIMIT * round_
        assert emulator.calls("/completion") == []
    finally:
        hold.set()
        invocation_a.join(120)
    assert outcome and outcome[0]["outcomes"] == {"done": 1}
    assert jobs.drain() > 0  # the copy, back in the dead-letter queue: its task is done, so it is dropped
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished
    assert len(emulator.calls("/completion")) == 1 and _store().item(f"{op_id}#0")["attempts"] == 1
    assert jobs.triggers["completion-dlq"].invocations == 3


def test_copies_of_one_task_racing_in_many_invocations_call_upstream_once(api_v01: Api, jobs: Jobs) -> None:
    """Eight rounds of six invocations handed copies of the same task at once (a copy sent again by the
    dead-letter side, the poller's re-send, the original): one upstream call per task, one result."""
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.configure(latencyMs=200)  # the winner is still in flight while the others claim
    for round_ in range(1, 9):
        op_id = _submit(api_v01)  # its original message stays in the queue; copies are handed out below
        body = json.dumps({"op": op_id, "task": 0})
        gate = threading.Barrier(6)
        outcomes: list[str] = []

        def invocation(n: int, op_id: str = op_id, body: str = body, gate: threading.Barrier = gate,
                       outcomes: list[str] = outcomes) -> None:
            event = ymq_event([Message(f"copy-{op_id}-{n}", "", body)], jobs.resources.arns["completion"])
            gate.wait(30)
            try:
                outcomes.append(next(iter(load("completion")(event, LocalContext("completion"))["outcomes"])))
            except worker.RedeliverError:
                outcomes.append("busy")

        threads = [threading.Thread(target=invocation, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert outcomes.count("done") == 1 and len(outcomes) == 6, outcomes
        assert set(outcomes) <= {"done", "busy", "skipped"}
        assert len(emulator.calls("/completion")) == round_
        jobs.drain()  # the original: skipped
        assert len(emulator.calls("/completion")) == round_
        assert _operation(api_v01, op_id)["done"] is True and _store().item(f"{op_id}#0")["attempts"] == 1


# -- the bound that keeps a message from going round for ever ------------------------------------------

@pytest.mark.parametrize("case", ["never-started", "failed-once", "in-flight"])
def test_a_task_not_run_within_the_window_ends_with_its_own_reason(api_v01: Api, jobs: Jobs, clock: ManualClock,
                                                                   monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    reset_caches()
    op_id = _submit(api_v01)
    store = _store()
    if case == "failed-once":
        _start(op_id, 1)
    if case == "in-flight":
        assert store.claim(op_id, 0, "slow-worker", 600).outcome == "claimed"  # its lease outlasts the window
    clock.advance(61)
    _move_to_dlq(jobs)
    assert jobs.triggers["completion-dlq"].poll_once() == 1
    operation = _operation(api_v01, op_id)
    if case == "in-flight":  # a live start has not failed: sent again, whatever the time
        assert operation["done"] is False and store.item(op_id)["dead_letter_resends"] == 1
        assert len(jobs.queues.receive(jobs.resources.queues["completion"], 10)) == 1
        return
    error = operation["error"]
    assert error["code"] == 4 and "JOB_QUEUE_WINDOW_S (60 s)" in error["message"], error
    assert "dead-letter" not in error["message"]
    if case == "never-started":
        assert "never started" in error["message"]
    else:
        assert "after 1 failed starts" in error["message"] and "overloaded" in error["message"]
    assert jobs.drain() == 0 and jobs.triggers["completion"].invocations == 0
