"""Every route through the local gateway (payload formats 0.1 and 1.0) to the handlers and the emulator."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import FOLDER, Api, Emulator

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"

# The request body of the Cloud AI Hybrid REST example (POST /foundationModels/v1/completion), filled in.
HYBRID_BODY = {
    "modelUri": f"gpt://{FOLDER}/yandexgpt/latest",
    "completionOptions": {"stream": False, "temperature": 0.6, "maxTokens": "2000"},
    "messages": [
        {"role": "system", "text": "Найди ошибки в тексте и исправь их"},
        {"role": "user", "text": "Ламинат подойдёт для укладке на кухне или в детской комнате"},
    ],
}


def test_completion_answers_in_the_documented_shape(api: Api, emulator: Emulator) -> None:
    response = api.post(f"{FM}/completion", HYBRID_BODY)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    result = response.json()["result"]
    alternative = result["alternatives"][0]
    assert alternative["message"]["role"] == "assistant"
    assert alternative["message"]["text"].startswith("[emulated yandexgpt]")
    assert alternative["status"] == "ALTERNATIVE_STATUS_FINAL"
    usage = result["usage"]
    assert all(isinstance(usage[k], str) and usage[k].isdigit() for k in ("inputTextTokens", "completionTokens", "totalTokens"))
    assert int(usage["totalTokens"]) == int(usage["inputTextTokens"]) + int(usage["completionTokens"])
    assert isinstance(result["modelVersion"], str)
    calls = emulator.calls("/completion")
    assert len(calls) == 1
    assert calls[0]["auth"] == "Api-Key"
    assert calls[0]["dataLogging"] == "false"
    assert calls[0]["folderId"] is None  # never with service-account credentials (an API key is one)
    assert calls[0]["clientRequestId"] == response.headers["x-client-request-id"]


def test_caller_client_request_id_is_forwarded_and_echoed(api: Api, emulator: Emulator) -> None:
    response = api.post(f"{FM}/completion", HYBRID_BODY, headers={"x-client-request-id": "my-trace-42"})
    assert response.headers["x-client-request-id"] == "my-trace-42"
    assert emulator.calls("/completion")[0]["clientRequestId"] == "my-trace-42"
    assert response.headers["x-request-id"]


def test_stream_returns_cumulative_ndjson_chunks_in_one_body(api: Api) -> None:
    body = {**HYBRID_BODY, "completionOptions": {"stream": True}}
    response = api.post(f"{FM}/completion", body)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    chunks = [json.loads(line) for line in response.text.splitlines()]
    assert len(chunks) >= 2
    texts = [c["result"]["alternatives"][0]["message"]["text"] for c in chunks]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))  # cumulative, not deltas
    assert chunks[-1]["result"]["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_FINAL"
    assert chunks[0]["result"]["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_PARTIAL"


def test_short_model_name_is_expanded_with_the_folder(api: Api) -> None:
    body = {**HYBRID_BODY, "modelUri": "yandexgpt-lite"}
    response = api.post(f"{FM}/completion", body)
    assert response.status_code == 200
    assert "[emulated yandexgpt-lite]" in response.json()["result"]["alternatives"][0]["message"]["text"]


def test_model_outside_the_allow_list_is_forbidden(api: Api, monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt-lite, text-search-doc")
    reset_caches()
    assert api.post(f"{FM}/completion", {**HYBRID_BODY, "modelUri": "yandexgpt-lite"}).status_code == 200
    response = api.post(f"{FM}/completion", HYBRID_BODY)  # yandexgpt, not lite
    assert response.status_code == 403
    assert response.json()["error"]["grpcCode"] == 7
    assert "modelUri" in response.json()["error"]["message"]
    assert len(emulator.calls("/completion")) == 1


def test_tokenize_and_tokenize_completion(api: Api) -> None:
    response = api.post(f"{FM}/tokenize", {"modelUri": "yandexgpt-lite", "text": "Hello, world"})
    assert response.status_code == 200
    tokens = response.json()["tokens"]
    assert [t["text"] for t in tokens] == ["Hello", ",", "world"]
    assert all(isinstance(t["id"], str) for t in tokens)
    response = api.post(f"{FM}/tokenizeCompletion", HYBRID_BODY)
    assert response.status_code == 200
    texts = [t["text"] for t in response.json()["tokens"]]
    assert texts[:2] == ["Найди", "ошибки"] and texts[-1] == "комнате"  # system then user text, in order
    assert response.json()["modelVersion"]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def test_single_text_embedding_is_native(api: Api) -> None:
    response = api.post(f"{FM}/textEmbedding", {"modelUri": f"emb://{FOLDER}/text-search-doc/latest", "text": "river"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["embedding"]) == 256
    assert math.isclose(sum(v * v for v in body["embedding"]), 1.0, rel_tol=1e-3)
    assert body["numTokens"] == "1"


def test_texts_extension_returns_every_vector_in_input_order(api: Api, emulator: Emulator) -> None:
    texts = [f"document number {i} about topic {i % 7}" for i in range(40)]
    response = api.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["embeddings"]) == 40
    singles = [api.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "text": t}).json()["embedding"]
               for t in (texts[0], texts[17], texts[39])]
    assert body["embeddings"][0] == singles[0]
    assert body["embeddings"][17] == singles[1]
    assert body["embeddings"][39] == singles[2]
    assert int(body["numTokens"]) > 40
    assert len(emulator.calls("/textEmbedding")) == 43


def test_similar_texts_have_closer_embeddings(api: Api) -> None:
    texts = ["the cat sat on the mat", "a cat is sitting on a mat", "quarterly revenue grew by ten percent"]
    vectors = api.post(f"{FM}/textEmbedding", {"modelUri": "text-search-doc", "texts": texts}).json()["embeddings"]
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2


def test_few_shot_classification_uses_labels_and_samples(api: Api) -> None:
    body = {"modelUri": "yandexgpt-lite", "taskDescription": "intent", "labels": ["weather", "alarm", "translation"],
            "text": "please set an alarm for seven",
            "samples": [{"text": "set an alarm for six", "label": "alarm"}, {"text": "is it raining", "label": "weather"}]}
    response = api.post(f"{FM}/fewShotTextClassification", body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert predictions[0]["label"] == "alarm"
    assert math.isclose(sum(p["confidence"] for p in predictions), 1.0, rel_tol=1e-3)
    assert {p["label"] for p in predictions} == {"weather", "alarm", "translation"}


def test_zero_shot_classification_without_samples(api: Api) -> None:
    body = {"modelUri": f"cls://{FOLDER}/yandexgpt/latest", "taskDescription": "topic", "labels": ["sport", "cooking"],
            "text": "cooking pasta"}
    response = api.post(f"{FM}/fewShotTextClassification", body)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "cooking"


def test_tuned_classifier_by_model_uri(api: Api) -> None:
    response = api.post(f"{FM}/textClassification", {"modelUri": f"cls://{FOLDER}/yandexgpt-lite/latest@tuned1", "text": "great"})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert {p["label"] for p in predictions} == {"negative", "neutral", "positive"}  # the tuned model's labels
    assert math.isclose(sum(p["confidence"] for p in predictions), 1.0, rel_tol=1e-3)
    assert response.json()["inputTokens"] == "1"


def test_upstream_400_is_reported_with_its_message(api: Api) -> None:
    # the emulator rejects a tuned call without an @suffix; our validation cannot know that
    response = api.post(f"{FM}/textClassification", {"modelUri": f"cls://{FOLDER}/yandexgpt-lite/latest", "text": "x"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["grpcCode"] == 3 and "tuned classifier" in error["message"]


def test_unknown_path_and_wrong_method(api: Api) -> None:
    response = api.post(f"{FM}/doesNotExist", {})
    assert response.status_code == 404
    assert response.json()["error"]["grpcCode"] == 5
    response = api.http.get(api.url + f"{FM}/completion", timeout=5)
    assert response.status_code == 405
    assert "GET" in response.json()["error"]["message"]
