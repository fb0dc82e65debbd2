"""Batch completion end to end over real HTTP, moto server and the emulator: inline batches on upstream
completionAsync, native completionBatch, the timer-driven poller, cancellation, deadlines and rates."""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from typing import Any

import pytest
import requests

from local.context import LocalContext
from local.functions import load
from local.triggers import timer_event
from tests.conftest import Api, Emulator, FakeContext, Jobs, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"


def batch_body(count: int, fail_every: int = 0) -> dict[str, Any]:
    items = []
    for i in range(count):
        text = f"question {i}" + (" EMULATOR_FAIL" if fail_every and i % fail_every == 0 else "")
        items.append({"customId": f"req-{i:05d}", "messages": [{"role": "user", "text": text}]})
    return {"modelUri": "yandexgpt-lite", "completionOptions": {"temperature": 0.1}, "requests": items}


def poller(remaining_ms: int = 60_000) -> dict[str, Any]:
    import uuid

    return load("batch_poller")(timer_event(), FakeContext(remaining_ms, request_id=str(uuid.uuid4())))


def get(api: Api, op_id: str) -> dict[str, Any]:
    response = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def run_to_end(api: Api, jobs: Jobs, op_id: str, rounds: int = 50) -> tuple[dict[str, Any], list[int]]:
    progress = []
    for _ in range(rounds):
        jobs.drain()
        poller()
        operation = get(api, op_id)
        progress.append(int(operation["metadata"]["completedBatches"]))
        if operation["done"]:
            return operation, progress
    raise AssertionError(f"batch {op_id} did not finish: {operation}")


def results(operation: dict[str, Any]) -> list[dict[str, Any]]:
    body = requests.get(operation["response"]["resultUrl"], timeout=60).text
    return [json.loads(line) for line in body.splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_thousand_requests_finish_with_every_result(api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    api = api_v01
    submitted = api.post(f"{FM}/completionBatch", batch_body(2000))
    assert submitted.status_code == 200, submitted.text
    operation = submitted.json()
    assert operation["metadata"] == {"taskId": operation["id"], "taskStatus": "PENDING", "completedBatches": "0",
                                     "totalBatches": "2000", "failedRequests": "0"}
    finished, progress = run_to_end(api, jobs, operation["id"])
    assert progress == sorted(progress) and progress[-1] == 2000  # monotonic
    assert finished["metadata"]["taskStatus"] == "COMPLETED"
    assert finished["response"]["succeeded"] == "2000" and finished["response"]["failed"] == "0"
    lines = results(finished)
    assert [line["customId"] for line in lines] == [f"req-{i:05d}" for i in range(2000)]
    assert all(line["response"]["alternatives"][0]["message"]["text"].endswith(f"question {i}")
               for i, line in enumerate(lines))
    assert len(fast.calls("/completionAsync")) == 2000  # each request started exactly once


def test_failing_items_are_recorded_per_line(api: Api, jobs: Jobs, fast: Emulator) -> None:
    # request 7 by its text, not as the 8th call: a chunk's starts run concurrently, in no fixed order
    fast.fault(path="/foundationModels/v1/completionAsync", status=400, message="bad request 7",
               bodyContains='question 7"', count=1)
    operation = api.post(f"{FM}/completionBatch", batch_body(30, fail_every=10)).json()
    finished, _ = run_to_end(api, jobs, operation["id"])
    lines = results(finished)
    assert len(lines) == 30
    failed = {line["customId"]: line["error"] for line in lines if "error" in line}
    assert set(failed) == {"req-00000", "req-00007", "req-00010", "req-00020"}
    assert "bad request 7" in failed["req-00007"]["message"]  # refused at start
    assert failed["req-00010"]["message"] == "emulated failure of this request"  # failed upstream
    assert finished["response"]["failed"] == "4" and finished["metadata"]["failedRequests"] == "4"


def test_two_pollers_together_produce_the_same_result(api: Api, jobs: Jobs, fast: Emulator) -> None:
    operation = api.post(f"{FM}/completionBatch", batch_body(200)).json()
    jobs.drain()
    for _ in range(30):
        threads = [threading.Thread(target=poller) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        state = get(api, operation["id"])
        if state["done"]:
            break
    assert state["done"] and state["metadata"]["completedBatches"] == "200"
    lines = results(state)
    assert len(lines) == 200 and len({line["customId"] for line in lines}) == 200
    per_operation = collections.Counter(c["path"] for c in fast.calls() if c["path"].startswith("/operations/"))
    assert max(per_operation.values()) == 1  # no upstream operation was fetched twice


def test_cancelled_batch_stops_and_cancels_upstream(api: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.configure(asyncDelayMs=60_000)  # upstream operations that would run for a minute
    operation = api.post(f"{FM}/completionBatch", batch_body(150)).json()
    jobs.triggers["completion"].batch_size = 1
    jobs.triggers["completion"].poll_once()  # the first chunk (100 requests) starts
    cancelled = api.post(f"/operations/{operation['id']}:cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["done"] is True and body["error"]["code"] == 1 and body["metadata"]["taskStatus"] == "CANCELED"
    jobs.drain()  # the second chunk sees the cancellation and starts nothing
    assert len(fast.calls("/completionAsync")) == 100
    poller()
    assert len([c for c in fast.calls() if c["path"].endswith(":cancel")]) == 100  # upstream cancelled
    assert get(api, operation["id"])["error"]["message"] == "cancelled by the caller"
    assert api.http.get(f"{api.url}/operations/{operation['id']}:cancel", timeout=10).json()["done"] is True


@pytest.mark.xdist_group("wall-clock")  # see tests/conftest.py: never beside the CPU-burning test
def test_upstream_rates_are_never_exceeded(api_v01: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' promise (docs/deploying.md, Fleet-wide pacing): at most floor(rate) + 1 calls let go in any one second, on the
    pacers the real engine uses for a real batch. Checked at the moment each call is let go, which the code
    decides; when its request then arrives upstream depends on the machine (a request descheduled after being
    let go arrives late: tests/unit/test_promises_pacing.py covers that on a simulated clock)."""
    from shared import client

    let_go: dict[int, list[float]] = collections.defaultdict(list)  # per second's bound (maxlen): moments

    class Recorded(collections.deque):  # type: ignore[type-arg]
        def append(self, moment: float) -> None:
            let_go[self.maxlen or 0].append(moment)
            super().append(moment)

    monkeypatch.setattr(client, "deque", Recorded)
    monkeypatch.setenv("FM_ASYNC_START_RPS", "20")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "25")
    reset_caches()
    operation = api_v01.post(f"{FM}/completionBatch", batch_body(50)).json()
    run_to_end(api_v01, jobs, operation["id"])

    def worst_second(times: list[float]) -> int:
        times = sorted(times)
        return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)

    starts = [c["t"] for c in fast.calls("/completionAsync")]
    gets = [c["t"] for c in fast.calls() if c["path"].startswith("/operations/")]
    assert len(starts) == 50 and len(gets) >= 50
    assert len(let_go[21]) == 50 and len(let_go[26]) >= len(gets)  # every upstream call went through its pacer
    assert worst_second(let_go[21]) <= 21  # 20/s, +1 for the window's edge
    assert worst_second(let_go[26]) <= 26  # 25/s


def test_native_batch_is_tracked_by_its_operation(api: Api, jobs: Jobs, fast: Emulator) -> None:
    fast.configure(asyncDelayMs=300)
    body = {"modelUri": "gpt://b1gtestfolder/qwen2.5-32b-instruct/latest", "sourceDatasetId": "fdsEXAMPLE",
            "completionOptions": {"temperature": 0.3, "maxTokens": "1000"}}
    operation = api.post(f"{FM}/completionBatch", body).json()
    assert operation["metadata"]["taskId"].startswith("cbt") and operation["done"] is False
    assert len(fast.calls("/completionBatch")) == 1
    time.sleep(0.35)
    poller()
    finished = get(api, operation["id"])
    assert finished["done"] is True and finished["metadata"]["taskStatus"] == "COMPLETED"
    assert finished["response"]["resultDatasetId"].startswith("fds")
    assert finished["metadata"]["completedBatches"] == finished["metadata"]["totalBatches"] == "10"


def test_batch_validation(api: Api, jobs: Jobs) -> None:
    cases = [
        ({"modelUri": "yandexgpt-lite"}, "requests: set exactly one of sourceDatasetId and requests"),
        ({"modelUri": "yandexgpt-lite", "requests": []}, "requests: must have at least 1 item"),
        ({**batch_body(2), "requests": [{"customId": "a", "messages": [{"role": "user", "text": "x"}]}] * 2},
         "requests[1].customId: repeats requests[0].customId"),
        ({"modelUri": "yandexgpt-lite", "requests": [{"messages": []}]}, "requests[0].messages: must have at least 1"),
        ({**batch_body(1), "completionOptions": {"stream": True}}, "completionOptions.stream: is not available"),
    ]
    for body, expected in cases:
        response = api.post(f"{FM}/completionBatch", body)
        assert response.status_code == 400, response.text
        assert expected in response.json()["error"]["message"], response.json()
    too_many = {"modelUri": "yandexgpt-lite", "requests": [{"messages": [{"role": "user", "text": "x"}]}] * 10_001}
    assert "at most 10000" in api.post(f"{FM}/completionBatch", too_many).json()["error"]["message"]


def test_poller_requeues_a_job_whose_message_was_lost(api: Api, jobs: Jobs, fast: Emulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_STUCK_AFTER_S", "0")
    reset_caches()
    operation = api.post(f"{FM}/completionAsync", {"modelUri": "yandexgpt-lite",
                                                   "messages": [{"role": "user", "text": "hi"}]}).json()
    lost = jobs.queues.receive(jobs.resources.queues["completion"])
    for message in lost:  # the message vanishes: nobody will ever work on the job
        jobs.queues.delete(jobs.resources.queues["completion"], message.receipt_handle)
    summary = poller()
    assert summary.get("requeued-tasks") == 1
    jobs.drain()
    assert get(api, operation["id"])["done"] is True


def test_timer_sample_event_invokes_the_poller(jobs: Jobs) -> None:
    from tests.conftest import load_event

    assert isinstance(load("batch_poller")(load_event("timer-batch-poller"), LocalContext("batch_poller", 30)), dict)


def test_poller_rides_out_operation_service_faults(api: Api, jobs: Jobs, fast: Emulator) -> None:
    operation = api.post(f"{FM}/completionBatch", batch_body(20)).json()
    jobs.drain()
    fast.fault(path="/operations/", status=503, count=8)  # the operation service stumbles
    fast.fault(path="/operations/", kind="malformed", count=2)
    finished, progress = run_to_end(api, jobs, operation["id"])
    assert progress == sorted(progress)
    assert [line["customId"] for line in results(finished)] == [f"req-{i:05d}" for i in range(20)]
    assert all("response" in line for line in results(finished))


def _run_poison_batch(api: Api, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch,
                      concurrency: int) -> tuple[dict[str, Any], list[int]]:
    """40 requests in four chunks of 10; requests 13-16 make upstream answer 503 every time, so chunk 1
    (requests 10-19) never gets past them and its message ends in the dead-letter queue. Run to the end."""
    from shared.jobs import batches

    monkeypatch.setattr(batches, "CHUNK_ITEMS", 10)
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    monkeypatch.setenv("FM_MAX_CONCURRENCY", str(concurrency))
    reset_caches()
    fast.fault(path="/foundationModels/v1/completionAsync", status=503, count=-1, bodyContains="POISON",
               message="overloaded")
    body = batch_body(40)
    for index in range(13, 17):
        body["requests"][index]["messages"][0]["text"] += " POISON"
    operation = api.post(f"{FM}/completionBatch", body).json()
    return run_to_end(api, jobs, operation["id"])


def test_a_poison_chunk_fails_only_its_own_requests(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a chunk's starts one at a time, in order: 10-12 start, then 13 stops the chunk (else 17-19 may start)
    finished, progress = _run_poison_batch(api_v01, jobs, fast, monkeypatch, concurrency=1)
    assert progress == sorted(progress)
    assert jobs.triggers["completion-dlq"].invocations >= 1  # chunk 1's message went to the dead-letter queue
    lines = results(finished)
    assert [line["customId"] for line in lines] == [f"req-{i:05d}" for i in range(40)]  # each once, in order
    failed = {line["customId"]: line["error"] for line in lines if "error" in line}
    assert set(failed) == {f"req-{i:05d}" for i in range(13, 20)}  # 10-12 started before the poison: kept
    for error in failed.values():
        assert error["code"] == 14
        assert re.search(r"gave up on its chunk \(task 1\) after 3 failed starts \(JOB_MAX_DELIVERIES 3; "
                         r"dead-letter queue\)", error["message"]), error
        assert "overloaded" in error["message"]  # the last error upstream gave
    assert all(line["response"]["alternatives"] for line in lines if "response" in line)
    assert finished["metadata"]["taskStatus"] == "COMPLETED" and finished["metadata"]["failedRequests"] == "7"
    assert finished["response"]["failed"] == "7" and finished["response"]["succeeded"] == "33"
    assert len(fast.calls("/completionAsync")) == 33 + 3  # each good request started once; 13 tried per delivery


def test_a_poison_chunk_fails_only_its_own_requests_with_concurrent_starts(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same poison chunk with its starts running 4 at a time (the default path): which of the chunk's good
    requests start before the poison stops it varies from run to run, so this checks what must hold every
    time: each request has exactly one result line; every request upstream accepted succeeded and was
    started once; every other request of the poison chunk failed with the dead letter's reason; and the
    three other chunks finished whole."""
    finished, _ = _run_poison_batch(api_v01, jobs, fast, monkeypatch, concurrency=4)
    lines = results(finished)
    assert [line["customId"] for line in lines] == [f"req-{i:05d}" for i in range(40)]  # each once, in order
    texts = [call["body"]["messages"][0]["text"] for call in fast.calls("/completionAsync")]
    accepted = [int(text.split()[1]) for text in texts if "POISON" not in text]
    assert len(accepted) == len(set(accepted))  # no request upstream accepted was started twice
    succeeded = {int(line["customId"][4:]) for line in lines if "response" in line}
    assert succeeded == set(accepted)
    failed = {int(line["customId"][4:]): line["error"] for line in lines if "error" in line}
    assert set(range(13, 17)) <= set(failed) <= set(range(10, 20))  # only chunk 1, and all of its poison
    assert set(failed).isdisjoint(succeeded) and len(failed) + len(succeeded) == 40
    for error in failed.values():
        assert error["code"] == 14 and "dead-letter queue" in error["message"] and "overloaded" in error["message"]
    assert finished["response"]["failed"] == str(len(failed))
    assert finished["response"]["succeeded"] == str(40 - len(failed))


def test_a_chunk_with_an_unreadable_payload_fails_only_its_requests(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    api = api_v01
    from shared.config import Settings
    from shared.jobs import batches
    from shared.jobs.store import JobStore, payload_key

    monkeypatch.setattr(batches, "CHUNK_ITEMS", 10)
    body = batch_body(25)
    for item in body["requests"]:
        del item["customId"]  # the default customId is the request's index
    operation = api.post(f"{FM}/completionBatch", body).json()
    JobStore(Settings.from_env()).put_object(payload_key(operation["id"], 1), b"{not a chunk")
    finished, _ = run_to_end(api, jobs, operation["id"])
    lines = results(finished)
    assert [line["customId"] for line in lines] == [str(i) for i in range(25)]
    failed = {line["customId"]: line["error"]["message"] for line in lines if "error" in line}
    assert set(failed) == {str(i) for i in range(10, 20)}
    assert all("dead-letter queue" in message and "JSONDecodeError" in message for message in failed.values())
    assert finished["response"]["failed"] == "10" and finished["response"]["succeeded"] == "15"


def test_a_chunk_that_reached_the_dlq_untried_is_sent_again_each_time(api_v01: Api, jobs: Jobs, fast: Emulator,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk's message that reaches the dead-letter queue never started (its receives all went to
    invocations that died on a batch-mate, or to the scaling policy's 429s) is sent again, on every arrival
    (an older version failed it on the second, which it had marked {"requeued": 1}); only once
    JOB_QUEUE_WINDOW_S has passed without a start do its requests fail, saying they were never started."""
    api = api_v01
    from shared.jobs import batches

    monkeypatch.setattr(batches, "CHUNK_ITEMS", 10)
    queue, dead = jobs.resources.queues["completion"], jobs.resources.queues["completion-dlq"]

    def dead_letter_chunk_1(op_id: str, body: dict[str, Any]) -> None:
        """Chunk 1's message reaches the dead-letter queue without any worker having tried it; chunk 0's
        is left alone."""
        messages = jobs.queues.receive(queue, 10)
        assert sorted(json.loads(m.body)["task"] for m in messages) == [0, 1]
        for message in messages:
            if json.loads(message.body)["task"] == 1:
                jobs.queues.send(dead, json.dumps(body))
                jobs.queues.delete(queue, message.receipt_handle)
            else:
                jobs.queues.change_visibility(queue, message.receipt_handle, 0)

    for body in ({}, {"requeued": 1}):  # a first arrival, and what an older version took for a second one
        op_id = api.post(f"{FM}/completionBatch", batch_body(20)).json()["id"]
        dead_letter_chunk_1(op_id, {"op": op_id, "task": 1, **body})
        finished, _ = run_to_end(api, jobs, op_id)
        assert finished["response"]["failed"] == "0" and finished["response"]["succeeded"] == "20"

    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    reset_caches()
    from shared import clock
    from tests.clock import ManualClock

    manual = ManualClock()
    previous = clock.use(manual)
    try:
        op_id = api.post(f"{FM}/completionBatch", batch_body(20)).json()["id"]
        dead_letter_chunk_1(op_id, {"op": op_id, "task": 1})
        manual.advance(61)  # the window has passed, with no start in it
        finished, _ = run_to_end(api, jobs, op_id)
    finally:
        clock.use(previous)
    lines = results(finished)
    assert [line["customId"] for line in lines] == [f"req-{i:05d}" for i in range(20)]
    assert [line["customId"] for line in lines if "error" in line] == [f"req-{i:05d}" for i in range(10, 20)]
    error = lines[10]["error"]
    assert "never started" in error["message"] and "JOB_QUEUE_WINDOW_S (60 s)" in error["message"], error
    assert "dead-letter" not in error["message"] and finished["response"]["failed"] == "10"
