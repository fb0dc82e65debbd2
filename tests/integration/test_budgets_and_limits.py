"""Budgets and per-key limits (shared/jobs/limits.py, issue 17 §5-§7) end to end: the function handlers get the
HTTP event API Gateway would deliver behind the authorizer (requestContext.authorizer = {caller, policy}), call
the FM emulator over loopback, and keep their reservations in moto server's Document API. The tests with the
`openai` client go through the local gateway with the real authorizer, on keys stored through the admin API.

The concurrency tests cannot pass by luck: every admitted request is held at a gate in front of upstream until all
50 requests have been decided (admitted and waiting at the gate, or refused), so no settle can free room during the
race, and the count of admissions must be exactly what the budget allows, whatever the interleaving. They run many
rounds, with two CPU burners beside them."""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from local import gateway as gateway_module
from local.functions import load
from local.gateway import build_event
from local.triggers import timer_event
from shared import routes
from shared.config import Settings
from shared.jobs import limits, usage
from shared.jobs.store import JobStore
from shared.jobs.submit import send_tasks
from shared.policy import KeyPolicy
from tests.clock import ManualClock
from tests.conftest import FOLDER, Emulator, FakeContext, Jobs, reset_caches
from tests.integration.test_fault_table import FaultProxy, _child, _kill_when_stalled, _proxy, proxies
from tests.integration.test_job_store import busy_cpus

pytestmark = pytest.mark.integration

__all__ = ["busy_cpus", "proxies"]  # fixtures, imported for this module's tests

FM = "/foundationModels/v1"
LITE = f"gpt://{FOLDER}/yandexgpt-lite/latest"
MAX_TOKENS = 40
PRICES = json.dumps({"units": {"text_generation": 0.0012, "text_generation_alt": 0.0012}})


def completion(text: str = "Tell me about the Volga", max_tokens: int | None = MAX_TOKENS) -> dict[str, Any]:
    body: dict[str, Any] = {"modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": text}]}
    if max_tokens is not None:
        body["completionOptions"] = {"maxTokens": str(max_tokens)}
    return body


def event(method: str, path: str, body: Any, policy: KeyPolicy | None, caller: str | None = None) -> dict[str, Any]:
    """The event API Gateway delivers behind the authorizer: the caller's name and its key's policy."""
    route, params = routes.resolve(method, path)
    data = json.dumps(body).encode() if body is not None else b""
    built = build_event(method, path, {"Content-Type": "application/json"}, data, route, params)
    name = caller or (policy.name if policy is not None else "anonymous")
    built["requestContext"]["authorizer"] = {"caller": name, **({"policy": policy.to_context()} if policy else {})}
    return built


class Answer:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = int(raw["statusCode"])
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        text = raw.get("body") or ""
        self.text = text
        try:
            self.json = json.loads(text)
        except ValueError:
            self.json = None


def call(path: str, body: Any, policy: KeyPolicy | None, method: str = "POST") -> Answer:
    route, _ = routes.resolve(method, path)
    raw = load(route.function)(event(method, path, body, policy), FakeContext(60_000, request_id=str(uuid.uuid4())))
    return Answer(raw)


def store() -> JobStore:
    return JobStore(Settings.from_env())


def month_item(caller: str) -> dict[str, Any]:
    from shared import clock

    item = store().item(limits.item_key(caller, limits.month_of(clock.now())))
    return {**dict.fromkeys(("used_t", "used_m", "set_t", "set_m", "a80", "a100"), 0), **item} if item else {}


def held(item: dict[str, Any]) -> list[str]:
    return [name for name in item if name.startswith("v_")]


def poller() -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(60_000, request_id=str(uuid.uuid4())))


def completion_tokens(answer: Answer) -> int:
    u = answer.json["result"]["usage"]
    return int(u["inputTextTokens"]) + int(u["completionTokens"])


def worst_of(emulator: Emulator, max_tokens: int = MAX_TOKENS) -> int:
    """The worst case the gateway reserves for the last completion upstream saw: the body's UTF-8 bytes as JSON
    plus its maxTokens (docs/budgets-and-limits.md)."""
    body = emulator.calls("/completion")[-1]["body"]
    return limits.input_bound(body) + max_tokens


@pytest.fixture
def priced(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    monkeypatch.setenv("FM_PRICES", PRICES)
    reset_caches()
    return jobs


# -- a gate in front of upstream: every request waits until the test opens it ---------------------------------

class Gate(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _GateHandler)
        self.upstream = upstream.rstrip("/")
        self.open = threading.Event()
        self.arrived = 0
        self.changed = threading.Condition()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def arrive(self) -> None:
        with self.changed:
            self.arrived += 1
            self.changed.notify_all()


class _GateHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Gate

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.arrive()
        assert self.server.open.wait(300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        answer = requests.post(self.server.upstream + self.path, data=body, headers=headers, timeout=60)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


@pytest.fixture
def gate(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    server = Gate(os.environ["FM_BASE_URL"])
    monkeypatch.setenv("FM_BASE_URL", server.url)
    reset_caches()
    yield server
    server.open.set()
    server.shutdown()
    server.server_close()


def race(requests_: list[tuple[str, Any, KeyPolicy]], gate: Gate) -> list[Answer]:
    """Send every request at once (a barrier starts them); hold upstream until each is decided (waiting at the gate,
    or answered without reaching it), then open the gate; the answers in order."""
    answers: list[Answer | None] = [None] * len(requests_)
    refused = [0]  # answered while the gate was shut: decided without reaching upstream
    start = threading.Barrier(len(requests_), timeout=120)
    before = gate.arrived

    def one(index: int) -> None:
        path, body, policy = requests_[index]
        start.wait()
        answer = call(path, body, policy)
        answers[index] = answer
        with gate.changed:
            if not gate.open.is_set():
                refused[0] += 1
            gate.changed.notify_all()

    gate.open.clear()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests_))]
    for thread in threads:
        thread.start()
    with gate.changed:  # every request is either held at the gate or answered: only then may upstream answer
        assert gate.changed.wait_for(lambda: (gate.arrived - before) + refused[0] == len(requests_), timeout=300)
    gate.open.set()
    for thread in threads:
        thread.join(300)
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


# -- §5: budgets that hold under concurrency -----------------------------------------------------------------

ROUNDS = 8


@pytest.mark.xdist_group("wall-clock")  # its burners never run beside a wall-clock bound (tests/conftest.py)
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fifty_concurrent_requests_against_a_budget_of_ten_worst_cases_admit_exactly_ten(
        gate: Gate, emulator: Emulator, busy_cpus: None) -> None:
    """Each round: a fresh key whose monthly_tokens covers 10 worst cases and not 11; 50 requests race (native and
    /v1 rounds alternate); exactly 10 reach upstream, 40 get 429 before anything reaches upstream, and once all have
    settled the key's total is exactly the sum of upstream's usage, with nothing left reserved."""
    gate.open.set()
    probe = call(f"{FM}/completion", completion(), None)  # no policy: the body as upstream sees it, for its size
    assert probe.status == 200, probe.text
    worst = worst_of(emulator)
    assert worst > completion_tokens(probe)  # the worst case bounds the real usage
    for number in range(ROUNDS):
        policy = KeyPolicy(name=f"racer-{number}-{uuid.uuid4().hex[:6]}", monthly_tokens=10 * worst + worst - 1)
        calls_before = len(emulator.calls("/completion"))
        if number % 2:
            path, body = "/v1/chat/completions", {"model": "yandexgpt-lite", "max_tokens": MAX_TOKENS,
                                                 "messages": [{"role": "user", "content": "Tell me about the Volga"}]}
        else:
            path, body = f"{FM}/completion", completion()
        answers = race([(path, body, policy)] * 50, gate)
        admitted = [a for a in answers if a.status == 200]
        refused = [a for a in answers if a.status == 429]
        assert (len(admitted), len(refused)) == (10, 40), [(a.status, a.text[:200]) for a in answers if
                                                           a.status not in (200, 429)][:3]
        assert len(emulator.calls("/completion")) - calls_before == 10  # the refused never reached upstream
        if path.startswith("/v1"):
            assert all(a.json["error"]["code"] == "insufficient_quota" and a.json["error"]["type"] == "insufficient_quota"
                       for a in refused)
            real = sum(a.json["usage"]["total_tokens"] for a in admitted)
        else:
            assert all(a.json["error"]["grpcCode"] == 8 and a.json["error"]["httpCode"] == 429 for a in refused)
            real = sum(completion_tokens(a) for a in admitted)
        item = month_item(policy.name)
        assert (item["set_t"], item["used_t"], held(item)) == (real, real, [])


def test_sequential_requests_that_fit_are_never_refused(jobs: Jobs, emulator: Emulator) -> None:
    """One request after another: each is admitted exactly when what is settled plus its worst case fits the budget
    (nothing is in flight between them), so none is refused while it fits; the total is upstream's usage."""
    probe = call(f"{FM}/completion", completion(), None)
    worst = worst_of(emulator)
    policy = KeyPolicy(name="steady", monthly_tokens=6 * worst)
    settled, admitted = 0, 0
    for _ in range(200):
        answer = call(f"{FM}/completion", completion(), policy)
        fits = settled + worst <= policy.monthly_tokens
        assert answer.status == (200 if fits else 429), (settled, worst, answer.text)
        if answer.status != 200:
            break
        settled += completion_tokens(answer)
        admitted += 1
    real = completion_tokens(probe)  # every answer to the same prompt uses the same tokens
    assert admitted == 5 * worst // real + 1 > 6  # admitted while settled <= budget - worst: far more than 6
    item = month_item("steady")
    assert (item["set_t"], item["used_t"], held(item)) == (settled, settled, [])


def test_a_request_whose_worst_case_exceeds_the_whole_budget_is_refused_at_once(jobs: Jobs, emulator: Emulator) -> None:
    policy = KeyPolicy(name="tiny", monthly_tokens=50)
    answer = call("/v1/chat/completions", {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "Hi"}]},
                  policy)
    assert answer.status == 429 and answer.json["error"]["code"] == "insufficient_quota"
    assert "monthly_tokens" in answer.json["error"]["message"] and answer.headers["x-should-retry"] == "false"
    assert emulator.calls("/completion") == [] and month_item("tiny") == {}  # nothing reached upstream or the store


def test_a_money_budget_refuses_a_model_without_a_price(jobs: Jobs, emulator: Emulator) -> None:
    """Generation prices are not confirmed (shared/prices.py): a key with a money budget cannot use such a model until
    FM_PRICES sets its price; a token budget can."""
    body = {"model": "yandexgpt-lite", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
    answer = call("/v1/chat/completions", body, KeyPolicy(name="money", monthly_budget=5.0))
    assert answer.status == 403 and "FM_PRICES" in answer.json["error"]["message"]
    assert answer.json["error"]["type"] == "permission_error" and emulator.calls("/completion") == []
    assert call("/v1/chat/completions", body, KeyPolicy(name="tokens", monthly_tokens=10_000)).status == 200


def test_every_door_settles_to_exactly_the_usage_the_ledger_counts(priced: Jobs, emulator: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Sync native and /v1 (completion, chat, embeddings, classification, responses), an async job, an inline batch:
    the key's settled tokens are the ledger's input + output tokens, its money the price table's cost of them, and
    nothing stays reserved."""
    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    reset_caches()
    emulator.configure(asyncDelayMs=0)
    policy = KeyPolicy(name="every-door", monthly_tokens=10**7, monthly_budget=100.0)
    sync = [(f"{FM}/completion", completion()),
            (f"{FM}/completion", {**completion(max_tokens=None), "completionOptions": {"stream": True}}),
            (f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "texts": ["one text", "two more texts"]}),
            (f"{FM}/fewShotTextClassification", {"modelUri": "yandexgpt-lite", "taskDescription": "intent",
                                                 "labels": ["alarm", "weather"], "text": "wake me up"}),
            ("/v1/chat/completions", {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "Hi"}]}),
            ("/v1/embeddings", {"model": "text-search-doc", "input": ["a b c", "d e"]}),
            ("/v1/responses", {"model": "yandexgpt-lite", "input": "Name a river", "max_output_tokens": 30})]
    for path, body in sync:
        answer = call(path, body, policy)
        assert answer.status == 200, (path, answer.text)
    op = call(f"{FM}/completionAsync", completion(), policy).json["id"]
    batch = call(f"{FM}/completionBatch", {"modelUri": "yandexgpt-lite", "requests": [
        {"messages": [{"role": "user", "text": f"question {i}"}]} for i in range(3)]}, policy).json["id"]
    assert len(held(month_item(policy.name))) == 2  # the job's and the batch's reservations, until they settle
    for _ in range(10):
        priced.drain()
        poller()
        if all(call(f"/operations/{i}", None, policy, "GET").json["done"] for i in (op, batch)):
            break
    poller()
    item = month_item(policy.name)
    from datetime import UTC, datetime

    from shared.prices import cost, table

    totals = usage.totals(store(), policy.name, datetime.now(UTC).strftime("%Y%m%d"))
    tokens = sum(c["input_tokens"] + c["output_tokens"] for modes in totals.values() for c in modes.values())
    assert set(totals) == {LITE, f"emb://{FOLDER}/text-search-doc/latest", f"cls://{FOLDER}/yandexgpt-lite/latest"}
    assert (item["set_t"], item["used_t"], held(item)) == (tokens, tokens, [])
    priced_cost = cost(totals, table(PRICES))
    assert priced_cost["unpriced"] == []
    assert item["set_m"] == item["used_m"] == round(priced_cost["total"] * limits.NANO)


# -- async jobs and batches: reserved at submit, settled by the worker or the poller ---------------------------

def test_an_async_job_reserves_at_submit_and_a_redelivered_task_settles_nothing_twice(
        jobs: Jobs, emulator: Emulator) -> None:
    probe = call(f"{FM}/completion", completion(), None)
    assert probe.status == 200
    worst = worst_of(emulator)
    policy = KeyPolicy(name="async", monthly_tokens=2 * worst - 1)  # one job's worst case at a time
    first = call(f"{FM}/completionAsync", completion(), policy)
    assert first.status == 200
    item = month_item("async")
    assert (item["used_t"], item["set_t"], len(held(item))) == (worst, 0, 1)  # reserved while the caller waited
    second = call(f"{FM}/completionAsync", completion(), policy)
    assert second.status == 429 and second.json["error"]["grpcCode"] == 8  # refused at submit: nothing queued
    jobs.drain()
    result = call(f"/operations/{first.json['id']}", None, policy, "GET").json["response"]
    real = int(result["usage"]["inputTextTokens"]) + int(result["usage"]["completionTokens"])
    send_tasks(Settings.from_env(), "completion", first.json["id"], [0])  # the same task delivered again
    jobs.drain()
    item = month_item("async")
    assert (item["used_t"], item["set_t"], held(item)) == (real, real, [])
    assert call(f"{FM}/completionAsync", completion(), policy).status == 200  # room again once it settled


def test_a_job_settles_even_after_its_reservation_was_swept(jobs: Jobs) -> None:
    policy = KeyPolicy(name="late", monthly_tokens=10**6)
    op = call(f"{FM}/completionAsync", completion(), policy).json["id"]
    key = limits.item_key("late", limits.month_of(limits.clock.now()))
    item = store().item(key)
    assert limits.sweep_item(store(), key, item, limits.clock.now() + limits.JOB_RESERVATION_S + 1)  # as if expired
    assert (month_item("late")["used_t"], held(month_item("late"))) == (0, [])
    jobs.drain()
    result = call(f"/operations/{op}", None, policy, "GET").json["response"]
    real = int(result["usage"]["inputTextTokens"]) + int(result["usage"]["completionTokens"])
    item = month_item("late")
    assert (item["used_t"], item["set_t"], held(item)) == (real, real, [])


def test_a_failed_job_releases_its_reservation(jobs: Jobs, emulator: Emulator) -> None:
    emulator.fault(path=f"{FM}/completion", status=400, count=-1, message="bad request")
    policy = KeyPolicy(name="failing", monthly_tokens=10**6)
    op = call(f"{FM}/completionAsync", completion(), policy).json["id"]
    jobs.drain()
    assert call(f"/operations/{op}", None, policy, "GET").json["error"]
    item = month_item("failing")
    assert (item["used_t"], item["set_t"], held(item)) == (0, 0, [])


def test_a_cancelled_job_releases_its_reservation(jobs: Jobs) -> None:
    policy = KeyPolicy(name="cancelling", monthly_tokens=10**6)
    op = call(f"{FM}/completionAsync", completion(), policy).json["id"]
    assert month_item("cancelling")["used_t"] > 0
    assert call(f"/operations/{op}:cancel", None, policy, "POST").status == 200
    jobs.drain()  # its task is skipped: nothing ran
    item = month_item("cancelling")
    assert (item["used_t"], item["set_t"], held(item)) == (0, 0, [])


def test_an_inline_batch_reserves_its_sum_at_create_and_settles_at_finish(fast: Emulator, jobs: Jobs) -> None:
    requests_ = [{"messages": [{"role": "user", "text": f"question {i}"}],
                  "completionOptions": {"maxTokens": "30"}} for i in range(4)]
    body = {"modelUri": "yandexgpt-lite", "requests": requests_}
    roomy = KeyPolicy(name="batcher", monthly_tokens=10**6)
    op = call(f"{FM}/completionBatch", body, roomy).json["id"]
    reserved = month_item("batcher")["used_t"]
    assert reserved > 4 * 30 and month_item("batcher")["set_t"] == 0
    tight = KeyPolicy(name="batcher", monthly_tokens=2 * reserved - 1)  # the same key, its budget lowered
    refused = call(f"{FM}/completionBatch", body, tight)
    assert refused.status == 429 and len(fast.calls("/completionAsync")) == 0
    for _ in range(10):
        jobs.drain()
        poller()
        if call(f"/operations/{op}", None, roomy, "GET").json["done"]:
            break
    poller()
    from datetime import UTC, datetime

    lite = usage.totals(store(), "batcher", datetime.now(UTC).strftime("%Y%m%d"))[LITE]["async"]
    item = month_item("batcher")
    assert lite["requests"] == 4
    assert (item["set_t"], item["used_t"], held(item)) == ((lite["input_tokens"] + lite["output_tokens"],) * 2 + ([],))


def test_a_crash_between_reserve_and_settle_holds_only_that_reservation_until_it_expires(
        jobs: Jobs, emulator: Emulator, proxies: list[FaultProxy], tmp_path: Path, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A function killed while upstream generates (after its reservation, before its settle) holds exactly its own
    worst case: a request that would fit beside it is refused while it is held, and admitted once it expired (the
    refused admission sweeps it); nothing else is lost or doubled."""
    probe = call(f"{FM}/completion", completion(), None)
    worst = worst_of(emulator)
    monkeypatch.setenv("FM_LIMITS_RESERVATION_S", "10")
    reset_caches()
    policy = KeyPolicy(name="crashed", monthly_tokens=2 * worst - 1)
    held_upstream = _proxy(proxies, os.environ["FM_BASE_URL"], stall_from=0)
    child = _child(tmp_path, "completion", event("POST", f"{FM}/completion", completion(), policy), "dies",
                   {"FM_BASE_URL": held_upstream.url, "FM_LIMITS_RESERVATION_S": "10"})
    _kill_when_stalled(child, held_upstream)
    item = month_item("crashed")
    assert (item["used_t"], item["set_t"], len(held(item))) == (worst, 0, 1)  # that reservation, and nothing more
    refused = call(f"{FM}/completion", completion(), policy)
    assert refused.status == 429 and month_item("crashed")["used_t"] == worst  # it fits only without the dead one
    expires = int(item[held(item)[0]].split()[2])
    assert expires <= limits.clock.now() + 10 + 60  # the child reserved for FM_LIMITS_RESERVATION_S, from its clock
    clock.advance(expires - clock.now() + 1)  # past the dead request's reservation
    admitted = call(f"{FM}/completion", completion(), policy)
    assert admitted.status == 200, admitted.text
    item = month_item("crashed")
    assert (item["used_t"], item["set_t"], held(item)) == (completion_tokens(probe),) * 2 + ([],)


# -- §6: per-key rate limits -------------------------------------------------------------------------------------

CHAT = {"model": "yandexgpt-lite", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def test_requests_per_minute_answer_429_with_retry_after_and_openais_headers(jobs: Jobs, clock: ManualClock) -> None:
    clock.advance(60 - clock.now() % 60 + 1)  # one second into a minute (the clock stands still unless moved)
    policy = KeyPolicy(name="rpm", rpm=3)
    answers = [call("/v1/chat/completions", CHAT, policy) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["x-ratelimit-limit-requests"] for a in answers} == {"3"}
    assert {a.headers["x-ratelimit-reset-requests"] for a in answers} == {"59s"}
    refused = answers[3]
    assert refused.headers["retry-after"] == "59" and "x-ratelimit-limit-tokens" not in refused.headers
    assert refused.json["error"] == {"message": refused.json["error"]["message"], "type": "requests", "param": None,
                                     "code": "rate_limit_exceeded"}
    native = call(f"{FM}/completion", completion(), policy)
    assert native.status == 429 and native.json["error"]["grpcCode"] == 8 and native.headers["retry-after"] == "59"
    clock.advance(60)  # the next minute
    assert call("/v1/chat/completions", CHAT, policy).status == 200


def test_tokens_per_minute_count_the_worst_case_and_settle_to_the_real_usage(jobs: Jobs, emulator: Emulator,
                                                                              clock: ManualClock) -> None:
    clock.advance(60 - clock.now() % 60 + 1)
    first = call("/v1/chat/completions", CHAT, KeyPolicy(name="tpm", tpm=10**6))
    worst = limits.input_bound(emulator.calls("/completion")[-1]["body"]) + CHAT["max_tokens"]
    real = first.json["usage"]["total_tokens"]
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 10**6 - worst  # at admission: its worst case
    tight = KeyPolicy(name="tpm", tpm=real + worst)  # the same key: the first settled to `real`, one worst case more
    second = call("/v1/chat/completions", CHAT, tight)
    assert second.status == 200 and second.headers["x-ratelimit-remaining-tokens"] == "0"  # exactly fits: admitted
    third = call("/v1/chat/completions", CHAT, tight)  # 2 x real settled in this minute: no room for a worst case
    assert third.status == 429 and third.json["error"]["type"] == "tokens"
    assert third.headers["x-ratelimit-limit-tokens"] == str(tight.tpm) and third.headers["retry-after"] == "59"
    assert third.headers["x-ratelimit-remaining-tokens"] == str(tight.tpm - 2 * real)


@pytest.mark.xdist_group("wall-clock")  # its burners never run beside a wall-clock bound (tests/conftest.py)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_caller_at_its_limit_leaves_the_others_untouched(gate: Gate, clock: ManualClock, busy_cpus: None) -> None:
    """Callers A and B (rpm 5 each) race 30 and 5 requests: A gets exactly 5, B all of its 5, in every round."""
    for number in range(4):
        clock.advance(60 - clock.now() % 60 + 1)
        a, b = KeyPolicy(name=f"a{number}", rpm=5), KeyPolicy(name=f"b{number}", rpm=5)
        mixed = [(f"{FM}/completion", completion(), a)] * 30 + [(f"{FM}/completion", completion(), b)] * 5
        answers = race(mixed, gate)
        assert [x.status for x in answers[:30]].count(200) == 5
        assert [x.status for x in answers[:30]].count(429) == 25
        assert [x.status for x in answers[30:]] == [200] * 5


ADMIN_KEY = "fmk_limits-admin-key-0123456789abcdef"


class StoredKeys:
    """Keys stored through the admin API (shared/jobs/keys.py) on a gateway with the real authorizer in front:
    `put(policy)` creates the key named policy.name (or changes its policy) and gives its secret."""

    def __init__(self, url: str) -> None:
        import requests

        self.url, self.secrets = url, {}
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {ADMIN_KEY}"

    def put(self, policy: KeyPolicy) -> str:
        fields = {name: getattr(policy, name) for name in ("rpm", "tpm", "monthly_tokens", "monthly_budget")}
        if policy.name in self.secrets:
            answer = self.http.patch(f"{self.url}/admin/keys/{policy.name}", json=fields, timeout=30)
        else:
            answer = self.http.post(f"{self.url}/admin/keys", timeout=30, json={
                "name": policy.name, **{k: v for k, v in fields.items() if v is not None}})
            self.secrets[policy.name] = answer.json().get("key")
        assert answer.status_code in (200, 201), answer.text
        return self.secrets[policy.name]


@pytest.fixture
def keyed_gateway(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, StoredKeys]]:
    """The local gateway with the authorizer in front and the admin key configured; the test's keys are stored
    through the admin API. FM_KEY_CACHE_S=0: a changed policy reaches the next request (the bound itself is
    tests/integration/test_admin_keys.py's)."""
    import hashlib

    monkeypatch.setenv("CALLER_KEY_SHA256", f"ops:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}")
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    monkeypatch.setenv("FM_KEY_CACHE_S", "0")
    server = gateway_module.start(authorize=True)
    yield server.url, StoredKeys(server.url)
    server.shutdown()
    server.server_close()


def test_the_openai_client_sees_rate_limit_error_with_the_headers(keyed_gateway: tuple[str, StoredKeys],
                                                                  clock: ManualClock) -> None:
    url, stored = keyed_gateway
    key_a = stored.put(KeyPolicy(name="client-a", rpm=2, tpm=100_000))
    key_b = stored.put(KeyPolicy(name="client-b", monthly_tokens=10))
    clock.advance(60 - clock.now() % 60 + 1)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key_a, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    assert raw.headers["x-ratelimit-remaining-requests"] == "1" and raw.headers["x-ratelimit-limit-tokens"] == "100000"
    assert raw.parse().choices[0].message.content
    client.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(**CHAT)
    headers = limited.value.response.headers
    assert headers["retry-after"] == "59" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-reset-requests"] == "59s"
    assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "requests"
    broke = openai.OpenAI(base_url=f"{url}/v1", api_key=key_b, max_retries=0)
    with pytest.raises(openai.RateLimitError) as quota:
        broke.embeddings.create(model="text-search-doc", input="more than ten bytes of text")
    assert quota.value.code == "insufficient_quota" and quota.value.type == "insufficient_quota"
    assert quota.value.response.headers["x-should-retry"] == "false"


# -- §7: alerts ------------------------------------------------------------------------------------------------

class Hook(ThreadingHTTPServer):
    """A webhook receiver on loopback: keeps every JSON body POSTed to it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.server.lock:
            self.server.received.append(body)
        self.send_response(204)
        self.end_headers()


def test_alerts_at_80_and_100_percent_are_sent_once_each_under_concurrency(
        jobs: Jobs, emulator: Emulator, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Hook()
    monkeypatch.setenv("FM_BUDGET_WEBHOOK_URL", f"http://127.0.0.1:{hook.server_address[1]}/alerts")
    reset_caches()
    try:
        call(f"{FM}/completion", completion(), None)
        worst = worst_of(emulator)
        policy = KeyPolicy(name="alerted", monthly_tokens=10 * worst)
        statuses: list[int] = []
        for _ in range(100):  # waves of 10 racing requests until the budget has refused a whole wave
            wave: list[int] = []

            def one(into: list[int] = wave) -> None:
                into.append(call(f"{FM}/completion", completion(), policy).status)

            threads = [threading.Thread(target=one) for _ in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            statuses += wave
            if set(wave) == {429}:
                break
        assert set(wave) == {429} and statuses.count(200) > 10 and set(statuses) == {200, 429}, statuses
        lines = [json.loads(line) for line in log_output.getvalue().splitlines() if "budget threshold" in line]
        assert sorted(line["budget_alert"]["threshold_percent"] for line in lines) == [80, 100]
        assert all(line["level"] == "WARN" and line["budget_alert"]["caller"] == "alerted" for line in lines)
        eighty = next(line["budget_alert"] for line in lines if line["budget_alert"]["threshold_percent"] == 80)
        assert eighty["tokens_used"] >= 8 * worst
        assert sorted(event["threshold_percent"] for event in hook.received) == [80, 100]
        item = month_item("alerted")
        assert item["a80"] > 0 and item["a100"] > 0 and item["set_t"] >= 8 * worst
    finally:
        hook.shutdown()
        hook.server_close()


# -- cost: store round trips --------------------------------------------------------------------------------------

def test_a_limited_request_costs_two_store_round_trips_and_a_key_without_limits_none_more(
        jobs: Jobs, proxies: list[FaultProxy], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Document API's requests, counted at a proxy: a key without limits pays only the ledger's transaction;
    a limited key one UpdateItem more (the reservation), with the settle inside the ledger's transaction."""
    docapi = _proxy(proxies, os.environ["DOCAPI_ENDPOINT"])
    monkeypatch.setenv("DOCAPI_ENDPOINT", docapi.url)
    reset_caches()
    assert call(f"{FM}/completion", completion(), None).status == 200  # warms the table and clients
    counted = []
    for policy in (None, KeyPolicy(name="counted", rpm=100, tpm=10**6, monthly_tokens=10**6)):
        before = docapi.ordinal
        assert call(f"{FM}/completion", completion(), policy).status == 200
        counted.append(docapi.ordinal - before)
    assert counted == [1, 2]


def test_a_key_used_now_and_then_keeps_few_per_minute_counters(jobs: Jobs, clock: ManualClock) -> None:
    """Each admission removes the previous minute's counters; with gaps in the traffic older ones stay, until an
    admission sees TIDY_AT of them and removes them: the item never grows with the month."""
    policy = KeyPolicy(name="sporadic", rpm=10)
    if limits.month_of(clock.now()) != limits.month_of(clock.now() + 7200):
        clock.advance(7200)  # the whole test in one month (one item)
    most = 0
    for _ in range(3 * limits.TIDY_AT):
        clock.advance(120)  # a minute with no request between every two
        assert call(f"{FM}/completion", completion(), policy).status == 200
        stale = limits._stale_minutes(month_item("sporadic"), int(clock.now() // 60))
        most = max(most, len(stale))
    assert limits.TIDY_AT - 2 <= most < limits.TIDY_AT  # it reached the bound, and never passed it


def test_openai_batches_reserve_at_create_and_settle_to_the_ledger(keyed_gateway: tuple[str, StoredKeys],
                                                                   fast: Emulator, jobs: Jobs) -> None:
    """/v1/batches through the gateway with the openai client: a chat batch (settled by the poller when it ends) and an
    embeddings batch (one reservation part per task, settled by the worker): the key's settled total is the ledger's,
    nothing stays reserved; a batch the budget cannot cover is refused at create with insufficient_quota."""
    url, stored = keyed_gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=stored.put(KeyPolicy(name="batch-key", monthly_tokens=10**6)),
                           max_retries=0)
    chat = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "yandexgpt-lite", "max_tokens": 30, "messages": [{"role": "user", "content": f"q {i}"}]}}
            for i in range(3)]
    emb = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-search-doc", "input": [f"text {i}", "more"]}} for i in range(2)]
    batches = []
    for lines, endpoint in ((chat, "/v1/chat/completions"), (emb, "/v1/embeddings")):
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        batches.append(client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"))
    assert month_item("batch-key")["used_t"] > 0 and month_item("batch-key")["set_t"] == 0
    for _ in range(20):
        jobs.drain()
        poller()
        if all(client.batches.retrieve(b.id).status == "completed" for b in batches):
            break
    poller()
    from datetime import UTC, datetime

    totals = usage.totals(store(), "batch-key", datetime.now(UTC).strftime("%Y%m%d"))
    tokens = sum(c["input_tokens"] + c["output_tokens"] for modes in totals.values() for c in modes.values())
    item = month_item("batch-key")
    assert tokens > 0 and (item["set_t"], item["used_t"], held(item)) == (tokens, tokens, [])
    stored.put(KeyPolicy(name="batch-key", monthly_tokens=tokens + 10))  # now nearly used up
    data = "".join(json.dumps(line) + "\n" for line in chat).encode()
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    with pytest.raises(openai.RateLimitError) as refused:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert refused.value.code == "insufficient_quota"
    assert sorted(b.id for b in client.batches.list()) == sorted(b.id for b in batches)  # nothing was created
