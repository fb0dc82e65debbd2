"""The fault table (docs/reliability-and-faults.md), row by row, for the rows no other test covers: what the caller sees and
what is kept when upstream, IAM, the store or the queue fail, and when a worker or a poller crashes.

Faults are injected on real sockets: the emulator's fault switches, or a loopback proxy in front of
moto server or the emulator that answers with an error, or holds a request without ever answering. A
crash is a real one: the worker or poller runs in a child process that is killed (SIGKILL) while it
holds its lease, so no `finally` and no exception handler runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from local.functions import load
from local.triggers import timer_event, ymq_event
from shared.config import Settings
from shared.jobs.store import JobStore
from tests.conftest import ROOT, Api, Emulator, FakeContext, Jobs, load_event, reset_caches
from tests.keys import authorized_key

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "Tell me about the Volga"}]}


# -- a loopback proxy that fails or holds requests ----------------------------------------------------

class FaultProxy(ThreadingHTTPServer):
    """Forwards every request to `upstream`, except: requests matched by a failure rule get that rule's
    error answer; requests whose ordinal is in the stall range are held open and never answered."""

    daemon_threads = True

    def __init__(self, upstream: str, stall_from: int | None = None, stall_count: int = 10**6) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.rstrip("/")
        self.stall_from, self.stall_count = stall_from, stall_count
        self.rules: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ordinal = 0
        self.failed = 0
        self.stalled = threading.Event()  # set when the first request is held
        self.release = threading.Event()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(self, action: str, count: int, status: int, body: bytes, content_type: str, skip: int = 0) -> None:
        """Answer the next `count` requests for `action` (after letting `skip` through) with this error."""
        with self.lock:
            self.rules.append({"action": action, "count": count, "skip": skip, "status": status, "body": body,
                               "content_type": content_type})

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def decide(self, action: str) -> tuple[str, dict[str, Any] | None]:
        with self.lock:
            ordinal, self.ordinal = self.ordinal, self.ordinal + 1
            if self.stall_from is not None and self.stall_from <= ordinal < self.stall_from + self.stall_count:
                return "stall", None
            for rule in self.rules:
                if rule["count"] and rule["action"] == action:
                    if rule["skip"]:
                        rule["skip"] -= 1
                        return "forward", None
                    rule["count"] -= 1
                    self.failed += 1
                    return "fail", rule
        return "forward", None

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._relay("GET")

    def do_POST(self) -> None:
        self._relay("POST")

    def do_PUT(self) -> None:  # Object Storage uploads
        self._relay("PUT")

    def _relay(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")  # the Document API names its action here
        action = target.rsplit(".", 1)[-1] if target else (parse_qs(body.decode(errors="replace")).get("Action")
                                                            or [""])[0]  # Message Queue in the form
        verdict, rule = self.server.decide(action)
        if verdict == "stall":
            self.server.stalled.set()
            self.server.release.wait(120)
            self.close_connection = True
            return
        if verdict == "fail":
            assert rule is not None
            return self._answer(rule["status"], {"Content-Type": rule["content_type"]}, rule["body"])
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        answer = requests.request(method, self.server.upstream + self.path, data=body, headers=headers, timeout=60)
        keep = {k: v for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
        self._answer(answer.status_code, keep, answer.content)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


THROTTLED = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                        "message": "Throughput exceeds the current capacity"}).encode()
QUEUE_UNAVAILABLE = (b'<?xml version="1.0"?><ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable'
                     b'</Code><Message>Message Queue is unavailable</Message></Error></ErrorResponse>')


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def _proxy(proxies: list[FaultProxy], upstream: str, **kwargs: Any) -> FaultProxy:
    proxy = FaultProxy(upstream, **kwargs)
    proxies.append(proxy)
    return proxy


# -- helpers ------------------------------------------------------------------------------------------

def _operation(api: Api, op_id: str) -> dict[str, Any]:
    answer = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _store() -> JobStore:
    return JobStore(Settings.from_env())


def _invoke(function: str, event_name: str, remaining_ms: int = 60_000) -> tuple[int, dict[str, Any], dict[str, str]]:
    result = load(function)(load_event(event_name), FakeContext(remaining_ms))
    return result["statusCode"], json.loads(result["body"]), result["headers"]


CHILD = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
spec = json.load(open(sys.argv[2]))
for dotted, value in spec["patches"].items():
    module, _, name = dotted.rpartition(".")
    setattr(importlib.import_module(module), name, value)
from local.context import LocalContext
from local.functions import load
load(spec["function"])(spec["event"], LocalContext(spec["function"], timeout_s=60, request_id=spec["request_id"]))
"""


def _child(tmp_path: Path, function: str, event: dict[str, Any], request_id: str, env: dict[str, str],
           patches: dict[str, Any] | None = None) -> subprocess.Popen[bytes]:
    """Run one invocation of `function` in a child process (to be killed mid-run)."""
    spec = tmp_path / f"{request_id}.json"
    spec.write_text(json.dumps({"function": function, "event": event, "request_id": request_id,
                                "patches": patches or {}}))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(spec)], env={**os.environ, **env},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when_stalled(child: subprocess.Popen[bytes], proxy: FaultProxy) -> float:
    """SIGKILL the child once it is stuck in the held request; the time it died."""
    try:
        assert proxy.stalled.wait(90), "the child never reached the held request"
    finally:
        child.kill()
        child.wait(30)
    return time.time()


def _wait_until(epoch: float) -> None:
    while time.time() <= epoch:
        time.sleep(0.05)


# -- upstream 429 storm, 503, connection reset, malformed body (async side) -----------------------------

def test_sync_429_storm_gives_up_after_the_retries_with_429_and_retry_after(stack_env: Emulator,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "2")
    reset_caches()
    stack_env.fault(path=f"{FM}/completion", status=429, retryAfter=0, count=-1, message="quota exceeded")
    status, body, headers = _invoke("completion", "http-v01-completion")
    assert status == 429 and body["error"]["grpcCode"] == 8 and "quota exceeded" in body["error"]["message"]
    assert headers["Retry-After"] == "1"  # the caller is told to come back
    assert len(stack_env.calls("/completion")) == 3  # 1 + FM_MAX_RETRIES, then it stops


def test_async_429_storm_ends_in_the_dlq_with_the_last_error(api_v01: Api, jobs: Jobs,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.fault(path=f"{FM}/completion", status=429, retryAfter=0, count=-1, message="quota exceeded")
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" not in finished
    assert finished["error"]["code"] == 14
    assert "dead-letter queue" in finished["error"]["message"]
    assert "RESOURCE_EXHAUSTED" in finished["error"]["message"] and "quota exceeded" in finished["error"]["message"]
    assert len(emulator.calls("/completion")) == 3  # one try per delivery (maxReceiveCount 3), then given up


@pytest.mark.parametrize("fault", [
    {"status": 429, "retryAfter": 0},
    {"status": 503},
    {"kind": "drop"},  # connection reset after the request was sent
    {"kind": "malformed"},  # a 200 whose body is not JSON
], ids=["429", "503", "connection-reset", "malformed-body"])
def test_async_job_rides_out_one_upstream_fault_by_redelivery(api_v01: Api, jobs: Jobs, fault: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")  # no retry inside the call: the fault fails the delivery
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.fault(path=f"{FM}/completion", count=1, **fault)
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "error" not in finished, finished
    assert finished["response"]["alternatives"][0]["message"]["text"].endswith("Tell me about the Volga")
    assert jobs.triggers["completion"].failures == 1  # the faulty delivery, given back to the queue
    assert len(emulator.calls("/completion")) == 2
    assert _store().item(f"{op_id}#0")["attempts"] == 2


# -- timeout past the deadline ---------------------------------------------------------------------------

@pytest.mark.xdist_group("wall-clock")  # see tests/conftest.py: never beside the CPU-burning test
def test_sync_upstream_slower_than_the_deadline_is_a_504_in_time(stack_env: Emulator, proxies: list[FaultProxy],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hanging = _proxy(proxies, stack_env.url, stall_from=0)  # upstream accepts the call and never answers
    monkeypatch.setenv("FM_BASE_URL", hanging.url)
    reset_caches()
    started = time.monotonic()
    status, body, _ = _invoke("completion", "http-v01-completion", remaining_ms=3000)
    assert time.monotonic() - started < 3.0  # answered before the platform would have killed the function
    assert status == 504 and body["error"]["grpcCode"] == 4
    assert "not retried" in body["error"]["message"]  # a completion may already be generating upstream
    assert hanging.ordinal == 1


@pytest.mark.xdist_group("wall-clock")  # see tests/conftest.py: never beside the CPU-burning test
def test_worker_cut_off_at_its_deadline_gives_the_task_back(api_v01: Api, jobs: Jobs, proxies: list[FaultProxy],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.jobs import worker

    monkeypatch.setattr(worker, "MIN_TIME_FOR_A_MESSAGE_S", 1.0)  # let a short invocation take the message
    hanging = _proxy(proxies, os.environ["FM_BASE_URL"], stall_from=0, stall_count=1)  # only the first call hangs
    monkeypatch.setenv("FM_BASE_URL", hanging.url)
    reset_caches()
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    trigger = jobs.triggers["completion"]
    trigger.timeout_s = 3.0  # an invocation with 3 s to live, whose upstream call outlasts it
    started = time.monotonic()
    assert trigger.poll_once() == 1
    assert time.monotonic() - started < 3.0 and trigger.failures == 1  # gave up in time, asked for redelivery
    task = _store().item(f"{op_id}#0")
    assert task["state"] == "queued" and "DEADLINE_EXCEEDED" in task["last_error"]  # given back, with the reason
    trigger.timeout_s = 60.0
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished and hanging.ordinal == 2


# -- IAM exchange failure -------------------------------------------------------------------------------

def _use_sa_key(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    key = authorized_key()
    emulator.post("/_emulator/keys", {"id": key["id"], "public_key": key["public_key"],
                                      "service_account_id": key["service_account_id"]})
    emulator.configure(strictBearer=True)
    monkeypatch.delenv("YC_API_KEY")
    monkeypatch.setenv("YC_SA_KEY_JSON", json.dumps(key))
    monkeypatch.setenv("YC_IAM_ENDPOINT", f"{emulator.url}/iam/v1/tokens")
    reset_caches()


def test_iam_exchange_outage_fails_the_call_and_the_job_waits_it_out(api_v01: Api, jobs: Jobs,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = Emulator(os.environ["FM_BASE_URL"])
    _use_sa_key(monkeypatch, emulator)
    emulator.fault(path="/iam/v1/tokens", status=503, count=4)  # two exchanges of two tries each
    status, body, headers = _invoke("completion", "http-v01-completion")
    # an outage, not a broken key: a retryable 503 with Retry-After, naming the source and the exchange's answer
    assert status == 503 and body["error"]["grpcCode"] == 14 and headers["Retry-After"] == "1", (status, body)
    assert "YC_SA_KEY_JSON" in body["error"]["message"] and "HTTP 503" in body["error"]["message"]
    assert "PRIVATE KEY" not in json.dumps(body) and len(emulator.calls("/completion")) == 0
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    jobs.drain()  # the first delivery meets the outage and is given back; the next one exchanges the key
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished, finished
    assert jobs.triggers["completion"].failures == 1
    assert len(emulator.calls("/iam/v1/tokens")) == 5 and len(emulator.calls("/completion")) == 1


# -- store throttling -----------------------------------------------------------------------------------

@pytest.fixture
def boto_backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """boto3's waits between its retries of a throttled call, recorded instead of slept (botocore sleeps in
    botocore.endpoint, its only use of `time` there): the tries and the answers are the same, without 1-2 s
    of random backoff for each throttled call."""
    import types

    import botocore.endpoint

    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=waits.append))
    return waits


def test_store_throttling_is_a_503_never_a_lost_or_phantom_job(api_v01: Api, jobs: Jobs, proxies: list[FaultProxy],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               boto_backoffs: list[float]) -> None:
    store_proxy = _proxy(proxies, jobs.resources.endpoint)
    monkeypatch.setenv("DOCAPI_ENDPOINT", store_proxy.url)
    reset_caches()
    done_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    jobs.drain()
    store_proxy.fail("GetItem", 2, 400, THROTTLED, "application/x-amz-json-1.0")
    assert _operation(api_v01, done_id)["done"] is True  # a short throttle: absorbed by boto3's own retries
    assert store_proxy.failed == 2

    store_proxy.fail("PutItem", 100, 400, THROTTLED, "application/x-amz-json-1.0")  # longer than boto3 retries
    refused = api_v01.post(f"{FM}/completionAsync", COMPLETION)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["grpcCode"] == 14 and "ThrottlingException" in refused.json()["error"]["message"]
    assert jobs.queues.receive(jobs.resources.queues["completion"]) == []  # nothing queued for a job not recorded

    store_proxy.clear()
    store_proxy.fail("GetItem", 100, 400, THROTTLED, "application/x-amz-json-1.0")
    busy = api_v01.http.get(f"{api_v01.url}/operations/{done_id}", timeout=60)
    assert busy.status_code == 503  # not a 404: the operation is there, the store is busy
    store_proxy.clear()
    assert _operation(api_v01, done_id)["done"] is True
    assert store_proxy.failed >= 2 + 8  # each throttled call was tried several times (boto3's retries) before giving up
    assert boto_backoffs and all(wait > 0 for wait in boto_backoffs)  # boto3 did ask to back off between tries


def test_store_throttling_in_a_worker_is_ridden_out_by_redelivery(api_v01: Api, jobs: Jobs,
                                                                  proxies: list[FaultProxy],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  boto_backoffs: list[float]) -> None:
    store_proxy = _proxy(proxies, jobs.resources.endpoint)
    monkeypatch.setenv("DOCAPI_ENDPOINT", store_proxy.url)
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    store_proxy.fail("GetItem", 100, 400, THROTTLED, "application/x-amz-json-1.0")
    assert jobs.triggers["completion"].poll_once() == 1
    assert jobs.triggers["completion"].failures == 1 and len(emulator.calls("/completion")) == 0
    store_proxy.clear()
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished
    assert len(emulator.calls("/completion")) == 1  # the throttled delivery never reached upstream


# -- queue send failure at submission ---------------------------------------------------------------------

def test_queue_send_failure_at_submission_is_a_503_and_nothing_runs(api_v01: Api, jobs: Jobs,
                                                                    proxies: list[FaultProxy],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    queue_proxy = _proxy(proxies, jobs.resources.endpoint)
    monkeypatch.setenv("YMQ_ENDPOINT", queue_proxy.url)
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")  # 25 texts -> 25 tasks -> three SendMessageBatch calls
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    queue_proxy.fail("SendMessageBatch", 1, 503, QUEUE_UNAVAILABLE, "text/xml", skip=1)  # the second call fails
    answer = api_v01.post(f"{FM}/textEmbeddingAsync", {"modelUri": "text-search-doc",
                                                       "texts": [f"text {i}" for i in range(25)]})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["grpcCode"] == 14 and "ServiceUnavailable" in answer.json()["error"]["message"]
    sent = jobs.queues.receive(jobs.resources.queues["embedding"], 10)
    assert len(sent) == 10  # the first call's messages went out before the failure
    op_id = json.loads(sent[0].body)["op"]
    for message in sent:
        jobs.queues.change_visibility(jobs.resources.queues["embedding"], message.receipt_handle, 0)
    recorded = _operation(api_v01, op_id)  # the operation is kept, ended with the reason
    assert recorded["done"] is True and "could not enqueue the job" in recorded["error"]["message"]
    jobs.drain()
    assert jobs.triggers["embedding"].failures == 0 and len(emulator.calls("/textEmbedding")) == 0  # skipped


# -- worker crash and poller crash: a killed process, its lease held ------------------------------------

def test_worker_crash_with_its_lease_held_is_taken_over_after_the_lease(api_v01: Api, jobs: Jobs,
                                                                        proxies: list[FaultProxy], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_LEASE_S", "5")
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    op_id = api_v01.post(f"{FM}/completionAsync", COMPLETION).json()["id"]
    queue = jobs.resources.queues["completion"]
    messages = jobs.queues.receive(queue, 10, visibility_s=600)  # what the trigger hands the dying invocation
    upstream = _proxy(proxies, emulator.url, stall_from=0)  # the dead worker's upstream call never returns
    child = _child(tmp_path, "completion", ymq_event(messages, jobs.resources.arns["completion"]), "dead-worker",
                   {"FM_BASE_URL": upstream.url})
    _kill_when_stalled(child, upstream)

    task = _store().item(f"{op_id}#0")
    assert task["state"] == "running" and task["worker"] == "dead-worker/0" and task["attempts"] == 1
    dead_until = float(task["lease_until"])
    for message in messages:  # the invocation died: the platform makes its messages visible again
        jobs.queues.change_visibility(queue, message.receipt_handle, 0)
    if time.time() < dead_until - 1.0:  # while the dead worker's lease lasts, its task is not run twice
        assert jobs.triggers["completion"].poll_once() == 1 and jobs.triggers["completion"].failures == 1
        assert _store().item(f"{op_id}#0")["worker"] == "dead-worker/0"
    _wait_until(dead_until)
    jobs.drain()
    finished = _operation(api_v01, op_id)
    assert finished["done"] is True and "response" in finished
    calls = emulator.calls("/completion")
    assert len(calls) == 1 and calls[0]["t"] >= dead_until  # taken over only once the lease had run out
    assert _store().item(f"{op_id}#0")["attempts"] == 2


def test_poller_crash_with_its_lease_held_loses_and_repeats_nothing(api_v01: Api, jobs: Jobs,
                                                                    proxies: list[FaultProxy], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import collections

    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    reset_caches()
    emulator = Emulator(os.environ["FM_BASE_URL"])
    emulator.configure(asyncDelayMs=0)
    body = {"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"r{i:02d}", "messages": [{"role": "user", "text": f"question {i}"}]} for i in range(30)]}
    op_id = api_v01.post(f"{FM}/completionBatch", body).json()["id"]
    jobs.drain()  # all 30 upstream operations started
    operations = _proxy(proxies, emulator.url, stall_from=10)  # ten polls answered, then the 11th hangs
    child = _child(tmp_path, "batch_poller", timer_event(), "dead-poller", {"FM_OPERATION_URL": operations.url},
                   patches={"shared.jobs.poller.POLLER_LEASE_S": 5})  # a short lease, so the test is short
    _kill_when_stalled(child, operations)

    store = _store()
    batch = store.item(op_id)
    assert batch["poll_holder"] == "dead-poller" and batch["state"] != "done"
    dead_until = float(batch["poll_until"])
    records = store.items(op_id, list(range(30)))
    assert sum(1 for r in records.values() if r["state"] == "done") == 10  # what it recorded before dying is kept
    if time.time() < dead_until - 1.0:  # its lease still stands: another poller leaves the batch alone
        summary = load("batch_poller")(timer_event(), FakeContext(60_000, request_id="early-poller"))
        assert summary.get("leased-elsewhere") == 1
    _wait_until(dead_until)
    for round_ in range(20):
        load("batch_poller")(timer_event(), FakeContext(60_000, request_id=f"poller-{round_}"))
        finished = _operation(api_v01, op_id)
        if finished["done"]:
            break
    assert finished["done"] is True and finished["response"]["succeeded"] == "30"
    lines = [json.loads(line) for line in requests.get(finished["response"]["resultUrl"], timeout=30).text.splitlines()]
    assert [line["customId"] for line in lines] == [f"r{i:02d}" for i in range(30)]
    polls = [c for c in emulator.calls() if c["path"].startswith("/operations/")]
    per_operation = collections.Counter(c["path"] for c in polls)
    assert len(per_operation) == 30 and max(per_operation.values()) == 1  # nothing fetched twice, nothing lost
    assert all(c["t"] >= dead_until for c in polls[10:])  # the rest only after the dead poller's lease ran out
