"""Upstream failures: what is retried (429, 503, never-sent connections), what is not, and how it is reported."""

from __future__ import annotations

import io
import json
import socket
from typing import Any

import pytest

from local.functions import load
from tests.clock import ManualClock
from tests.conftest import Emulator, FakeContext, load_event, reset_caches

pytestmark = pytest.mark.integration


def invoke(function: str, event_name: str, remaining_ms: int = 60_000) -> tuple[int, dict[str, Any], dict[str, str]]:
    result = load(function)(load_event(event_name), FakeContext(remaining_ms))
    body = result["body"]
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {"ndjson": body}
    return result["statusCode"], parsed, result["headers"]


def test_429_with_retry_after_is_retried_until_success(stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=429, retryAfter=0, count=2)
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 200, body
    assert len(stack_env.calls("/completion")) == 3
    assert len(clock.sleeps) == 2 and all(0 <= s <= 0.001 for s in clock.sleeps)  # Retry-After 0 + jitter/10


def test_503_storm_gives_up_after_max_attempts_with_a_503(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "3")
    reset_caches()
    stack_env.fault(path="/foundationModels/v1/completion", status=503, count=-1)
    status, body, headers = invoke("completion", "http-v01-completion")
    assert status == 503
    assert body["error"]["grpcCode"] == 14
    assert len(stack_env.calls("/completion")) == 4  # 1 + FM_MAX_RETRIES


def test_retry_after_is_honoured(stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=429, retryAfter=1, count=1)
    status, _, _ = invoke("embedding", "http-v01-embedding")
    assert status == 200
    assert len(stack_env.calls("/textEmbedding")) == 2
    assert len(clock.sleeps) == 1 and 1.0 <= clock.sleeps[0] <= 1.001  # Retry-After + jitter/10 (base 0.01 s)


def test_retries_stop_at_the_invocation_deadline(stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=429, retryAfter=5, count=-1)
    status, body, headers = invoke("completion", "http-v01-completion", remaining_ms=3000)
    assert clock.sleeps == []  # a 5 s Retry-After does not fit in 3 s: give up at once, without waiting
    assert status == 429
    assert headers["Retry-After"] == "5"
    assert len(stack_env.calls("/completion")) == 1


def test_500_is_not_retried_and_becomes_502(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=500, count=1)
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 502
    assert "emulated fault 500" in body["error"]["message"]
    assert len(stack_env.calls("/completion")) == 1


def test_both_upstream_error_shapes_are_parsed(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, shape="status", message="text too long", count=1)
    status, body, _ = invoke("embedding", "http-v01-embedding")
    assert status == 400 and body["error"]["message"] == "text too long"
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=403, shape="gateway", message="no access", count=1)
    status, body, _ = invoke("embedding", "http-v01-embedding")
    assert status == 403 and "no access" in body["error"]["message"]
    upstream = [d for d in body["error"]["details"] if d.get("@type") == "upstream"]
    assert upstream and upstream[0]["requestId"]  # the upstream request id is quoted for support


def test_read_timeout_on_completion_is_not_retried(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TIMEOUT_S", "0.3")
    reset_caches()
    stack_env.fault(path="/foundationModels/v1/completion", kind="delay", delayMs=1000, count=-1)
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 504
    assert "not retried" in body["error"]["message"]
    assert len(stack_env.calls("/completion")) == 1


@pytest.mark.xdist_group("wall-clock")  # see tests/conftest.py: never beside the CPU-burning test
def test_read_timeout_on_embedding_is_retried(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_TIMEOUT_S", "1.0")  # generous for the retried call, even on a busy machine
    reset_caches()
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="delay", delayMs=3000, count=1)
    status, _, _ = invoke("embedding", "http-v01-embedding")
    assert status == 200
    assert len(stack_env.calls("/textEmbedding")) == 2


def test_connection_dropped_after_send_is_not_retried_for_completion(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", kind="drop", count=1)
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 502
    assert "after the request was sent" in body["error"]["message"]
    assert len(stack_env.calls("/completion")) == 1


def test_connection_refused_is_retried_then_reported(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch,
                                                     clock: ManualClock, log_output: io.StringIO) -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("FM_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FM_MAX_RETRIES", "2")
    reset_caches()
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 503
    assert body["error"]["message"] == "could not connect to upstream"
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    retries = [line for line in lines if line["msg"] == "retrying upstream call"]
    assert [(r["attempt"], r["reason"]) for r in retries] == [(1, "could not connect to upstream"),
                                                              (2, "could not connect to upstream")]
    assert len(clock.sleeps) == 2  # three connection attempts, two waits between them


def test_malformed_upstream_body_is_a_502(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", kind="malformed", count=1)
    status, body, _ = invoke("completion", "http-v01-completion")
    assert status == 502
    assert "not valid JSON" in body["error"]["message"]


def test_one_failing_text_fails_the_batch_with_its_error(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    reset_caches()
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, message="text is too long", count=1)
    status, body, _ = invoke("embedding", "http-v10-embedding-texts")
    assert status == 400
    assert "text is too long" in body["error"]["message"]


def test_embedding_fan_out_is_paced_to_the_quota(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_EMBEDDING_RPS", "20")
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "8")
    reset_caches()
    event = load_event("http-v10-embedding-texts")
    event["body"] = json.dumps({"modelUri": "text-search-doc", "texts": [f"text {i}" for i in range(30)]})
    result = load("embedding")(event, FakeContext())
    assert result["statusCode"] == 200
    times = sorted(c["t"] for c in stack_env.calls("/textEmbedding"))
    assert len(times) == 30
    # 30 calls at 20/s from 8 threads need 29 intervals of 50 ms: the threads share one pacer. (A busy
    # machine only stretches this; the slot spacing itself is checked exactly, on the test clock, in
    # tests/unit/test_promises_client.py::test_the_pacer_spaces_calls_and_refuses_a_slot_past_the_deadline.)
    assert times[-1] - times[0] >= 29 * 0.05 - 0.02


def test_embedding_fan_out_concurrency_is_bounded(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "3")
    reset_caches()
    stack_env.configure(latencyMs=50)
    event = load_event("http-v10-embedding-texts")
    event["body"] = json.dumps({"modelUri": "text-search-doc", "texts": [f"text {i}" for i in range(24)]})
    result = load("embedding")(event, FakeContext())
    assert result["statusCode"] == 200
    assert len(json.loads(result["body"])["embeddings"]) == 24
    assert stack_env.max_in_flight() == 3  # fanned out, but never past FM_MAX_CONCURRENCY
