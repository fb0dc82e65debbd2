"""Async operations end to end over real HTTP: gateway -> handler -> job store and queue (moto server)
-> trigger runner -> handler as worker -> emulator; then GET /operations/{id}."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from local.functions import load
from tests.conftest import FOLDER, Api, Jobs, load_event

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "completionOptions": {"temperature": 0.3},
              "messages": [{"role": "user", "text": "Tell me about the Volga"}]}
CLASSIFY = {"modelUri": "yandexgpt-lite", "taskDescription": "intent", "labels": ["alarm", "weather"],
            "text": "wake me at six", "samples": [{"text": "set an alarm", "label": "alarm"}]}


def poll(api: Api, op_id: str) -> dict[str, Any]:
    response = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_completion_async_submit_poll_result(api: Api, jobs: Jobs) -> None:
    response = api.post(f"{FM}/completionAsync", COMPLETION)
    assert response.status_code == 200, response.text
    operation = response.json()
    assert operation["done"] is False and operation["description"] == "Async GPT Completion"
    assert {"id", "createdAt", "createdBy", "modifiedAt", "metadata"} <= set(operation)
    assert poll(api, operation["id"])["done"] is False
    jobs.drain()
    finished = poll(api, operation["id"])
    assert finished["done"] is True and "error" not in finished
    result = finished["response"]
    assert result["@type"] == "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.CompletionResponse"
    assert result["alternatives"][0]["message"]["text"].startswith("[emulated yandexgpt-lite]")
    assert result["usage"]["totalTokens"].isdigit()


def test_classification_async(api: Api, jobs: Jobs) -> None:
    operation = api.post(f"{FM}/fewShotTextClassificationAsync", CLASSIFY).json()
    jobs.drain()
    result = poll(api, operation["id"])["response"]
    assert result["predictions"][0]["label"] == "alarm"


def test_async_validation_errors_name_the_field(api: Api, jobs: Jobs) -> None:
    response = api.post(f"{FM}/completionAsync", {**COMPLETION, "completionOptions": {"stream": True}})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "completionOptions.stream: is not available in async mode"
    response = api.post(f"{FM}/textEmbeddingAsync", {"modelUri": "text-search-doc", "texts": ["x"] * 10_001})
    assert response.status_code == 400 and "texts: must have at most 10000 items" in response.json()["error"]["message"]
    assert api.http.get(f"{api.url}/operations/NOT-AN-ID", timeout=5).status_code == 400
    assert api.http.get(f"{api.url}/operations/fmo0000000000000000", timeout=5).status_code == 404


def test_permanent_upstream_error_fails_the_operation_and_consumes_the_message(api: Api, jobs: Jobs) -> None:
    api_emulator = _emulator(api)
    api_emulator.fault(path="/foundationModels/v1/completion", status=400, message="invalid message role", count=1)
    operation = api.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()
    finished = poll(api, operation["id"])
    assert finished["done"] is True and "response" not in finished
    assert finished["error"]["code"] == 3 and "invalid message role" in finished["error"]["message"]
    assert len(api_emulator.calls("/completion")) == 1
    assert jobs.queues.receive(jobs.resources.queues["completion-dlq"]) == []


def _emulator(api: Api) -> Any:
    import os

    from tests.conftest import Emulator

    return Emulator(os.environ["FM_BASE_URL"])


def test_503_storm_is_ridden_out_by_redelivery(api: Api, jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("FM_MAX_RETRIES", "1")  # each delivery tries twice, the storm lasts 4 calls
    reset_caches()
    emulator = _emulator(api)
    emulator.fault(path="/foundationModels/v1/completion", status=503, count=4)
    operation = api.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()
    finished = poll(api, operation["id"])
    assert finished["done"] is True and "response" in finished, finished
    assert len(emulator.calls("/completion")) == 5
    assert jobs.triggers["completion"].failures == 2


def test_poison_message_ends_in_the_dlq_and_the_operation_fails(api: Api, jobs: Jobs) -> None:
    emulator = _emulator(api)
    emulator.fault(path="/foundationModels/v1/completion", status=503, count=-1, message="overloaded")
    operation = api.post(f"{FM}/completionAsync", COMPLETION).json()
    jobs.drain()
    finished = poll(api, operation["id"])
    assert finished["done"] is True
    assert "dead-letter queue" in finished["error"]["message"] and "overloaded" in finished["error"]["message"]
    assert jobs.triggers["completion-dlq"].invocations == 1


@pytest.mark.slow
def test_ten_thousand_texts_complete_in_order(api_v01: Api, jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    api = api_v01
    from tests.conftest import reset_caches

    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "250")
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "16")
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "0")  # force the presigned-URL path
    reset_caches()
    texts = [f"text number {i}" for i in range(10_000)]
    operation = api.post(f"{FM}/textEmbeddingAsync", {"modelUri": "text-search-doc", "texts": texts}).json()
    assert operation["metadata"]["totalTasks"] == "40"
    jobs.drain()
    finished = poll(api, operation["id"])
    response = finished["response"]
    assert set(response) >= {"@type", "resultUrl", "sizeBytes"}
    import requests

    body = requests.get(response["resultUrl"], timeout=30).json()
    assert len(body["embeddings"]) == 10_000
    for index in (0, 4321, 9999):
        single = api.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "text": texts[index]}).json()
        assert body["embeddings"][index] == single["embedding"]
    assert int(body["numTokens"]) == 3 * 10_000


def test_killed_mid_batch_loses_nothing_and_redoes_nothing(api: Api, jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")  # ten texts -> ten messages -> one batch of ten
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    reset_caches()
    emulator = _emulator(api)
    texts = [f"t{i}" for i in range(10)]
    operation = api.post(f"{FM}/textEmbeddingAsync", {"modelUri": "text-search-doc", "texts": texts}).json()
    # the sixth upstream call fails: the invocation raises after storing the other nine results
    emulator.fault(path="/foundationModels/v1/textEmbedding", status=503, after=5, count=1)
    jobs.drain()
    assert jobs.triggers["embedding"].failures == 1 and jobs.triggers["embedding"].invocations == 2
    finished = poll(api, operation["id"])
    assert finished["done"] is True and len(finished["response"]["embeddings"]) == 10
    calls = emulator.calls("/textEmbedding")
    assert len(calls) == 11  # ten texts once each, plus the one retry: nothing redone on redelivery
    for index, text in enumerate(texts):
        single = api.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "text": text}).json()["embedding"]
        assert finished["response"]["embeddings"][index] == single


def test_two_workers_one_message_one_upstream_call(api: Api, jobs: Jobs) -> None:
    emulator = _emulator(api)
    emulator.configure(latencyMs=300)
    operation = api.post(f"{FM}/completionAsync", COMPLETION).json()
    message = jobs.queues.receive(jobs.resources.queues["completion"])
    event_body = {"op": operation["id"], "task": 0}
    assert json.loads(message[0].body) == event_body
    from local.triggers import ymq_event

    event = ymq_event(message, jobs.resources.arns["completion"])
    outcomes: list[str] = []

    def worker() -> None:
        from local.context import LocalContext

        try:
            load("completion")(event, LocalContext("completion"))
            outcomes.append("returned")
        except Exception as err:
            outcomes.append(type(err).__name__)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["RedeliverError", "returned"]  # the loser asks for redelivery
    assert len(emulator.calls("/completion")) == 1
    assert poll(api, operation["id"])["done"] is True
    # the redelivered copy is skipped: no second upstream call, nothing written twice
    load("completion")(event, None)
    assert len(emulator.calls("/completion")) == 1


def test_sample_queue_events_are_handled(jobs: Jobs) -> None:
    for name in ("ymq-completion-job", "ymq-embedding-job", "ymq-classification-job"):
        event = load_event(name)
        result = load(name.split("-")[1])(event, None)  # an unknown operation is consumed, not retried
        assert result["outcomes"] == {"unknown": 1}
