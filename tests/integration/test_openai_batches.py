"""The OpenAI Batch API end to end, with the real `openai` client over real HTTP: local gateway -> the
operations function -> the job store and queues (moto server) -> the trigger runners and the timer
poller -> the emulator. The batch is the engine's own job, so the engine's guarantees are checked again
through this door: a poller killed mid-run, two pollers at once, cancel, per-request failures."""

from __future__ import annotations

import collections
import io
import json
import threading
import time
import uuid
from typing import Any

import openai
import pytest
import requests
from openai.types.chat import ChatCompletion

from local.functions import load
from local.triggers import timer_event
from tests.conftest import Api, Emulator, FakeContext, Jobs, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
TERMINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture
def client(api_v01: Api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_v01.url}/v1", api_key="local", max_retries=0)


def poller(remaining_ms: int = 60_000) -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(remaining_ms, request_id=str(uuid.uuid4())))


def chat_line(i: int, text: str | None = None, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"req-{i:04d}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": text or f"question {i}"}],
                     **body}}


def jsonl(lines: list[Any]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def start(client: openai.OpenAI, lines: list[Any], endpoint: str = "/v1/chat/completions", **kwargs: Any) -> Any:
    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h", **kwargs)


def run_to_end(client: openai.OpenAI, jobs: Jobs, batch_id: str, rounds: int = 40) -> Any:
    seen = []
    for _ in range(rounds):
        jobs.drain()
        poller()
        batch = client.batches.retrieve(batch_id)
        seen.append((batch.status, batch.request_counts.completed + batch.request_counts.failed))
        if batch.status in TERMINAL:
            settled = [n for _, n in seen]
            assert settled == sorted(settled), seen  # progress never goes back
            return batch
    raise AssertionError(f"batch {batch_id} did not end: {seen[-3:]}")


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def operation(api: Api, batch_id: str) -> dict[str, Any]:
    answer = api.http.get(f"{api.url}/operations/{batch_id.removeprefix('batch_')}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_hundred_chat_requests_upload_create_poll_download(client: openai.OpenAI, api_v01: Api, jobs: Jobs,
                                                                fast: Emulator) -> None:
    batch = start(client, [chat_line(i) for i in range(200)], metadata={"team": "catalogue"})
    assert batch.status == "in_progress" and batch.request_counts.total == 200
    assert batch.endpoint == "/v1/chat/completions" and batch.metadata == {"team": "catalogue"}
    assert batch.model == "gpt://b1gtestfolder/yandexgpt-lite/latest"
    assert batch.expires_at == batch.created_at + 86_400
    finished = run_to_end(client, jobs, batch.id)
    assert finished.status == "completed" and finished.error_file_id is None
    assert finished.request_counts.model_dump() == {"total": 200, "completed": 200, "failed": 0}
    assert finished.completed_at and finished.finalizing_at and finished.in_progress_at == finished.created_at
    assert finished.usage is not None and finished.usage.total_tokens > 0
    lines = lines_of(client, finished.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i:04d}" for i in range(200)]  # each once
    for line in lines:
        assert line["error"] is None and line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        number = int(line["custom_id"].split("-")[1])
        assert completion.choices[0].message.content.endswith(f"question {number}")
        assert completion.choices[0].finish_reason == "stop"
    assert len(fast.calls("/completionAsync")) == 200
    output = client.files.retrieve(finished.output_file_id)
    assert output.purpose == "batch_output" and output.bytes == len(client.files.content(output.id).content)
    native = operation(api_v01, batch.id)  # the same work through the native door
    assert native["done"] is True and native["metadata"]["completedBatches"] == "200"
    assert native["metadata"]["failedRequests"] == "0" and native["response"]["succeeded"] == "200"


@pytest.mark.xdist_group("wall-clock")  # 10 poller runs of 1.8 s each: never beside the CPU burners (tests/conftest.py)
def test_the_two_doors_never_disagree_while_it_runs(client: openai.OpenAI, api_v01: Api, jobs: Jobs,
                                                    fast: Emulator) -> None:
    batch = start(client, [chat_line(i) for i in range(30)])
    jobs.drain()
    for _ in range(10):
        poller(remaining_ms=1800)
        mine, native = client.batches.retrieve(batch.id), operation(api_v01, batch.id)
        assert mine.request_counts.completed + mine.request_counts.failed <= int(native["metadata"]["completedBatches"])
        assert (mine.status in TERMINAL) == native["done"]
        if native["done"]:
            assert mine.status == "completed" and native["metadata"]["completedBatches"] == "30"
            return
    raise AssertionError("the batch did not finish")


def test_embeddings_batch_vectors_equal_the_sync_ones(client: openai.OpenAI, api_v01: Api, jobs: Jobs,
                                                      fast: Emulator) -> None:
    texts = [f"a sentence about rivers number {i}" for i in range(25)]
    lines = [{"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "text-search-doc", "input": text, "encoding_format": "float"}}
             for i, text in enumerate(texts)]
    lines.append({"custom_id": "emb-many", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "text-search-doc", "input": texts[:3], "encoding_format": "base64"}})
    batch = start(client, lines, endpoint="/v1/embeddings")
    finished = run_to_end(client, jobs, batch.id)
    assert finished.status == "completed", finished
    assert finished.request_counts.model_dump() == {"total": 26, "completed": 26, "failed": 0}
    answers = {line["custom_id"]: line["response"]["body"] for line in lines_of(client, finished.output_file_id)}
    assert len(answers) == 26
    # the sync /v1/embeddings route is not on this branch yet: compare with the native textEmbedding it wraps
    for i, text in enumerate(texts):
        sync = api_v01.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "text": text}).json()["embedding"]
        assert answers[f"emb-{i}"]["data"][0]["embedding"] == sync
        assert answers[f"emb-{i}"]["object"] == "list" and answers[f"emb-{i}"]["usage"]["prompt_tokens"] > 0
    import base64
    import struct

    many = answers["emb-many"]["data"]
    assert [d["index"] for d in many] == [0, 1, 2]
    decoded = struct.unpack(f"<{len(answers['emb-0']['data'][0]['embedding'])}f", base64.b64decode(many[0]["embedding"]))
    assert decoded == pytest.approx(answers["emb-0"]["data"][0]["embedding"], abs=1e-6)
    native = operation(api_v01, batch.id)
    assert native["done"] is True and native["metadata"]["completedBatches"] == "26"


def test_a_file_with_bad_lines_fails_with_their_line_numbers(client: openai.OpenAI, jobs: Jobs, fast: Emulator) -> None:
    lines: list[Any] = [
        chat_line(0),
        "{not json",
        {**chat_line(2), "method": "GET"},
        {**chat_line(3), "url": "/v1/embeddings"},
        chat_line(0),  # a repeated custom_id
        chat_line(5, temperature=1.5),  # the chat translation refuses it, as the sync route does
        chat_line(6, model="yandexgpt"),  # a second model
        {**chat_line(7), "custom_id": ""},
        chat_line(8, n=3),
    ]
    lines[6]["body"]["model"] = "yandexgpt"
    batch = start(client, lines)
    assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
    found = {e.line: (e.code, e.param) for e in batch.errors.data}
    assert found == {2: ("invalid_json_line", None), 3: ("invalid_method", "method"), 4: ("url_mismatch", "url"),
                     5: ("duplicate_custom_id", "custom_id"), 6: ("invalid_argument", "body.temperature"),
                     7: ("model_mismatch", "body.model"), 8: ("invalid_request", "custom_id"),
                     9: ("invalid_argument", "body.n")}, batch.errors
    assert client.batches.retrieve(batch.id).status == "failed"
    assert len(fast.calls("/completionAsync")) == 0
    empty = start(client, ["", "  "])
    assert [(e.code, e.line) for e in empty.errors.data] == [("empty_file", None)]


def test_requests_upstream_refuses_go_to_the_error_file_and_the_rest_complete(client: openai.OpenAI, jobs: Jobs,
                                                                              fast: Emulator) -> None:
    # request 7 by its text, not as the 8th call: a chunk's starts run concurrently, in no fixed order
    fast.fault(path="/foundationModels/v1/completionAsync", status=400, message="bad request 7",
               bodyContains='question 7"', count=1)
    lines = [chat_line(i, f"question {i}" + (" EMULATOR_FAIL" if i in (3, 12) else "")) for i in range(20)]
    finished = run_to_end(client, jobs, start(client, lines).id)
    assert finished.status == "completed"
    assert finished.request_counts.model_dump() == {"total": 20, "completed": 17, "failed": 3}
    good = lines_of(client, finished.output_file_id)
    bad = {line["custom_id"]: line for line in lines_of(client, finished.error_file_id)}
    assert len(good) == 17 and set(bad) == {"req-0003", "req-0007", "req-0012"}
    refused = bad["req-0007"]["response"]
    assert refused["status_code"] == 400 and bad["req-0007"]["error"] is None
    assert refused["body"]["error"]["type"] == "invalid_request_error" and "bad request 7" in refused["body"]["error"]["message"]
    assert bad["req-0003"]["response"]["body"]["error"]["message"] == "emulated failure of this request"


def test_cancel_mid_way_keeps_what_finished_and_starts_nothing_new(client: openai.OpenAI, api_v01: Api, jobs: Jobs,
                                                                   fast: Emulator) -> None:
    batch = start(client, [chat_line(i) for i in range(250)])  # three chunks of at most 100
    trigger = jobs.triggers["completion"]
    trigger.batch_size = 1
    trigger.poll_once()  # chunk 0 starts, and upstream finishes its requests at once
    poller()
    assert client.batches.retrieve(batch.id).request_counts.completed == 100
    fast.configure(asyncDelayMs=60_000)
    trigger.poll_once()  # chunk 1 starts: 100 requests upstream will take a minute over
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    jobs.drain()  # chunk 2 sees the cancellation: nothing new starts
    assert len(fast.calls("/completionAsync")) == 200
    poller()  # the poller cancels chunk 1 upstream, then writes what finished
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    assert len([c for c in fast.calls() if c["path"].endswith(":cancel")]) == 100
    kept = lines_of(client, cancelled.output_file_id)
    assert sorted(line["custom_id"] for line in kept) == [f"req-{i:04d}" for i in range(100)]
    rest = lines_of(client, cancelled.error_file_id)
    assert len(rest) == 150 and {line["error"]["code"] for line in rest} == {"batch_cancelled"}
    assert all(line["response"] is None for line in rest)
    assert cancelled.request_counts.model_dump() == {"total": 250, "completed": 100, "failed": 0}
    assert operation(api_v01, batch.id)["metadata"]["taskStatus"] == "CANCELED"
    assert client.batches.cancel(batch.id).status == "cancelled"  # again: unchanged


def test_a_poller_killed_mid_run_loses_and_duplicates_nothing(client: openai.OpenAI, jobs: Jobs, fast: Emulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.jobs import store as jobs_module
    from shared.openai import batch_store

    batch = start(client, [chat_line(i) for i in range(120)])
    jobs.drain()
    original = jobs_module.JobStore.item_finished
    calls = {"n": 0}

    def dies_after_fifty(self: Any, *args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] > 50:
            raise KeyboardInterrupt("poller killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jobs_module.JobStore, "item_finished", dies_after_fifty)
    with pytest.raises(KeyboardInterrupt):
        poller()
    monkeypatch.setattr(jobs_module.JobStore, "item_finished", original)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    # and a poller killed while it writes the files: the next one writes them, once
    saved = batch_store.save_file
    kills = {"n": 0}

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        kills["n"] += 1
        if kills["n"] == 1:
            raise KeyboardInterrupt("poller killed while writing the output")
        return saved(*args, **kwargs)

    monkeypatch.setattr(batch_store, "save_file", dies_once)
    time.sleep(0.1)
    with pytest.raises(KeyboardInterrupt):
        for _ in range(5):
            poller()
    assert client.batches.retrieve(batch.id).status == "finalizing"
    finished = run_to_end(client, jobs, batch.id)
    lines = lines_of(client, finished.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i:04d}" for i in range(120)]
    assert len(fast.calls("/completionAsync")) == 120
    outputs = [f for f in client.files.list(purpose="batch_output")]
    assert [f.id for f in outputs] == [finished.output_file_id]  # written once


def test_two_pollers_together_produce_the_same_result(client: openai.OpenAI, jobs: Jobs, fast: Emulator) -> None:
    batch = start(client, [chat_line(i) for i in range(200)])
    jobs.drain()
    for _ in range(30):
        threads = [threading.Thread(target=poller) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        state = client.batches.retrieve(batch.id)
        if state.status in TERMINAL:
            break
    assert state.status == "completed" and state.request_counts.completed == 200
    lines = lines_of(client, state.output_file_id)
    assert len(lines) == 200 and len({line["custom_id"] for line in lines}) == 200
    per_operation = collections.Counter(c["path"] for c in fast.calls() if c["path"].startswith("/operations/"))
    assert max(per_operation.values()) == 1  # no upstream operation was fetched twice
    assert len(fast.calls("/completionAsync")) == 200


def test_a_batch_past_its_window_expires_and_keeps_what_finished(client: openai.OpenAI, jobs: Jobs,
                                                                 fast: Emulator) -> None:
    from shared.config import Settings
    from shared.jobs.store import JobStore

    batch = start(client, [chat_line(i) for i in range(150)])
    trigger = jobs.triggers["completion"]
    trigger.batch_size = 1
    trigger.poll_once()  # the first 100 start and finish
    poller()
    JobStore(Settings.from_env()).set_fields(batch.id.removeprefix("batch_"), {"deadline_at": time.time() - 1})
    poller()  # past the window: stopped like a cancel
    jobs.drain()
    poller()
    expired = client.batches.retrieve(batch.id)
    assert expired.status == "expired" and expired.expired_at
    assert len(lines_of(client, expired.output_file_id)) == 100
    rest = lines_of(client, expired.error_file_id)
    assert len(rest) == 50 and {line["error"]["code"] for line in rest} == {"batch_expired"}


def test_listing_batches_pages_newest_first(client: openai.OpenAI, jobs: Jobs, fast: Emulator) -> None:
    made = [start(client, [chat_line(i)]).id for i in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more is True
    assert [b.id for b in client.batches.list(limit=2)] == made[::-1]  # the client pages on with `after`
    last = client.batches.list(limit=2, after=made[1])
    assert [b.id for b in last.data] == [made[0]] and last.has_more is False


def test_unknown_and_malformed_batches(client: openai.OpenAI, api_v01: Api, jobs: Jobs) -> None:
    for batch_id in ("batch_fmob0000000000000000000000000", "batch_nope", "fmo0000000000000000"):
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve(batch_id)
        with pytest.raises(openai.NotFoundError):
            client.batches.cancel(batch_id)
    answer = requests.get(f"{api_v01.url}/v1/batches/batch_nope", timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": {"message": "batch batch_nope not found", "type": "not_found_error",
                                       "param": None, "code": "not_found"}}
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-000000000000aaaaaaaaaaaa", endpoint="/v1/chat/completions",
                              completion_window="24h")
    bad = api_v01.post("/v1/batches", {"input_file_id": "file-x", "endpoint": "/v1/completions",
                                       "completion_window": "24h"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "endpoint"
    native = api_v01.post(f"{FM}/completionBatch", {"modelUri": "yandexgpt-lite",
                                                    "requests": [{"messages": [{"role": "user", "text": "x"}]}]})
    with pytest.raises(openai.NotFoundError):  # a native job is not an OpenAI batch
        client.batches.retrieve("batch_" + native.json()["id"])


def embedding_line(i: int) -> dict[str, Any]:
    return {"custom_id": f"emb-{i:03d}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-search-doc", "input": f"text number {i}"}}


def test_an_embeddings_request_upstream_refuses_fails_alone(client: openai.OpenAI, jobs: Jobs, fast: Emulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")  # one call at a time, so `after` picks one text
    reset_caches()
    fast.fault(path="/foundationModels/v1/textEmbedding", status=400, message="text too long", after=4, count=1)
    finished = run_to_end(client, jobs, start(client, [embedding_line(i) for i in range(10)],
                                              endpoint="/v1/embeddings").id)
    assert finished.status == "completed"
    assert finished.request_counts.model_dump() == {"total": 10, "completed": 9, "failed": 1}
    bad = lines_of(client, finished.error_file_id)
    assert [line["custom_id"] for line in bad] == ["emb-004"]
    assert bad[0]["response"]["status_code"] == 400 and "text too long" in bad[0]["response"]["body"]["error"]["message"]
    assert len(lines_of(client, finished.output_file_id)) == 9


def test_a_cancelled_embeddings_batch_keeps_its_finished_tasks(client: openai.OpenAI, api_v01: Api, jobs: Jobs,
                                                               fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "10")
    reset_caches()
    batch = start(client, [embedding_line(i) for i in range(30)], endpoint="/v1/embeddings")  # three tasks
    trigger = jobs.triggers["embedding"]
    trigger.batch_size = 1
    trigger.poll_once()  # the first task runs
    poller()
    running = client.batches.retrieve(batch.id)
    assert running.status == "in_progress" and running.request_counts.completed == 10
    assert operation(api_v01, batch.id)["metadata"]["completedBatches"] == "10"  # the same count, natively
    assert client.batches.cancel(batch.id).status == "cancelling"
    jobs.drain()  # the other tasks see the cancellation
    calls = len(fast.calls("/textEmbedding"))
    assert calls == 10
    poller()
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled"
    assert [line["custom_id"] for line in lines_of(client, cancelled.output_file_id)] == [f"emb-{i:03d}" for i in range(10)]
    assert {line["error"]["code"] for line in lines_of(client, cancelled.error_file_id)} == {"batch_cancelled"}
