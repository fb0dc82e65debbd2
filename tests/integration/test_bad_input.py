"""Bad input of every kind gets a 4xx JSON error that names the field, never a 500 or a stack trace."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from local.context import LocalContext
from local.functions import load
from tests.conftest import Api, Emulator, load_event

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
MSG = [{"role": "user", "text": "hi"}]
GOOD = {"modelUri": "yandexgpt-lite", "messages": MSG}
CLS = {"modelUri": "yandexgpt-lite", "taskDescription": "t", "labels": ["a", "b"], "text": "x"}

CASES: list[tuple[str, str, Any, int, str]] = [
    # (id, path, body (str = raw), status, expected text in message)
    ("not-json", "completion", "this is not json", 400, "body: is not valid JSON"),
    ("empty-body", "completion", "", 400, "body: is empty"),
    ("json-array", "completion", [GOOD], 400, "body: must be a JSON object"),
    ("json-string", "completion", "\"hello\"", 400, "body: must be a JSON object"),
    ("missing-model", "completion", {"messages": MSG}, 400, "modelUri: is required"),
    ("model-wrong-type", "completion", {"modelUri": 5, "messages": MSG}, 400, "modelUri: must be a valid string"),
    ("model-garbage", "completion", {"modelUri": "gpt:/ broken", "messages": MSG}, 400, "modelUri: must be a model URI"),
    ("temperature-high", "completion", {**GOOD, "completionOptions": {"temperature": 1.5}}, 400,
     "completionOptions.temperature: must be between 0 and 1"),
    ("temperature-negative", "completion", {**GOOD, "completionOptions": {"temperature": -0.1}}, 400,
     "completionOptions.temperature: must be between 0 and 1"),
    ("temperature-string", "completion", {**GOOD, "completionOptions": {"temperature": "hot"}}, 400,
     "completionOptions.temperature"),
    ("max-tokens-float", "completion", {**GOOD, "completionOptions": {"maxTokens": 1.5}}, 400,
     "completionOptions.maxTokens: must be a whole number"),
    ("max-tokens-zero", "completion", {**GOOD, "completionOptions": {"maxTokens": "0"}}, 400,
     "completionOptions.maxTokens: must be greater than 0"),
    ("stream-string", "completion", {**GOOD, "completionOptions": {"stream": "yes"}}, 400, "completionOptions.stream"),
    ("options-not-object", "completion", {**GOOD, "completionOptions": [1]}, 400, "completionOptions"),
    ("empty-messages", "completion", {**GOOD, "messages": []}, 400, "messages: must have at least 1 item"),
    ("messages-not-list", "completion", {**GOOD, "messages": "hi"}, 400, "messages: must be a valid list"),
    ("unknown-role", "completion", {**GOOD, "messages": [{"role": "bot", "text": "hi"}]}, 400,
     "messages[0].role: must be 'system', 'user' or 'assistant'"),
    ("empty-text", "completion", {**GOOD, "messages": [{"role": "user", "text": "  "}]}, 400,
     "messages[0].text: must not be empty"),
    ("no-text", "completion", {**GOOD, "messages": [{"role": "user"}]}, 400, "messages[0].text: set exactly one of"),
    ("text-number", "completion", {**GOOD, "messages": [{"role": "user", "text": 42}]}, 400,
     "messages[0].text: must be a valid string"),
    ("unknown-field", "completion", {**GOOD, "temprature": 0.5}, 400, "temprature: is not a known field"),
    ("bad-reasoning", "completion", {**GOOD, "completionOptions": {"reasoningOptions": {"mode": "LOUD"}}}, 400,
     "completionOptions.reasoningOptions.mode"),
    ("tokenize-no-text", "tokenize", {"modelUri": "yandexgpt-lite"}, 400, "text: is required"),
    ("one-label", "fewShotTextClassification", {**CLS, "labels": ["a"]}, 400, "labels: must have at least 2 items"),
    ("21-labels", "fewShotTextClassification", {**CLS, "labels": [f"l{i}" for i in range(21)]}, 400,
     "labels: must have at most 20 items"),
    ("duplicate-labels", "fewShotTextClassification", {**CLS, "labels": ["a", "a"]}, 400, "labels: must not repeat"),
    ("sample-unknown-label", "fewShotTextClassification", {**CLS, "samples": [{"text": "q", "label": "c"}]}, 400,
     "samples[0].label: 'c' is not one of labels"),
    ("no-task", "fewShotTextClassification", {k: v for k, v in CLS.items() if k != "taskDescription"}, 400,
     "taskDescription: is required"),
    ("tuned-no-text", "textClassification", {"modelUri": "cls://f/m/latest@x"}, 400, "text: is required"),
    ("257-texts", "textEmbedding", {"modelUri": "text-search-doc", "texts": ["t"] * 257}, 400,
     "texts: must have at most 256 items"),
    ("empty-texts", "textEmbedding", {"modelUri": "text-search-doc", "texts": []}, 400, "texts: must have at least 1 item"),
    ("text-and-texts", "textEmbedding", {"modelUri": "text-search-doc", "text": "a", "texts": ["b"]}, 400,
     "text: set exactly one of text and texts"),
    ("texts-with-number", "textEmbedding", {"modelUri": "text-search-doc", "texts": ["a", 3]}, 400,
     "texts[1]: must be a valid string"),
    ("dim-negative", "textEmbedding", {"modelUri": "text-search-doc", "text": "a", "dim": -1}, 400, "dim: must be greater"),
]


@pytest.mark.parametrize("path,body,status,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_naming_the_field(api: Api, emulator: Emulator, path: str, body: Any, status: int,
                                               expected: str) -> None:
    if isinstance(body, str):
        response = api.post(f"{FM}/{path}", data=body.encode(), headers={"Content-Type": "application/json"})
    else:
        response = api.post(f"{FM}/{path}", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert expected in error["message"]
    assert error["httpCode"] == status and error["grpcCode"] == 3
    assert "Traceback" not in response.text
    assert emulator.calls() == []  # nothing bad reaches upstream


def test_huge_body_is_refused_before_parsing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("FM_MAX_BODY_BYTES", "100000")
    reset_caches()
    body = {**GOOD, "messages": [{"role": "user", "text": "x" * 200_000}]}
    response = api.post(f"{FM}/completion", body)
    assert response.status_code == 413
    assert response.json()["error"]["message"].startswith("body: is ")
    assert "100000-byte limit" in response.json()["error"]["message"]


def test_non_json_content_type_arrives_base64_and_still_works(api: Api) -> None:
    response = api.post(f"{FM}/completion", data=json.dumps(GOOD).encode(), headers={"Content-Type": "text/x-whatever"})
    assert response.status_code == 200, response.text
    response = api.post(f"{FM}/completion", data=b"\xff\xfe not json", headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("body: is not")


def test_invalid_base64_body_is_a_400(stack_env: Emulator) -> None:
    event = load_event("http-direct-completion-base64")
    event["body"] = "%%% not base64 %%%"
    result = load("completion")(event, LocalContext("completion"))
    assert result["statusCode"] == 400
    assert "isBase64Encoded" in json.loads(result["body"])["error"]["message"]


def test_base64_body_decodes(stack_env: Emulator) -> None:
    event = load_event("http-direct-completion-base64")
    assert json.loads(base64.b64decode(event["body"]))  # the sample really is base64
    result = load("completion")(event, LocalContext("completion"))
    assert result["statusCode"] == 200, result["body"]


def test_unrecognised_event_is_a_400_not_a_crash(stack_env: Emulator) -> None:
    for event in ({}, {"foo": 1}, None, [1, 2]):
        result = load("embedding")(event, LocalContext("embedding"))
        assert result["statusCode"] == 400
        assert json.loads(result["body"])["error"]["message"].startswith("event:")


def test_direct_invocation_names_its_operation_in_the_query(stack_env: Emulator) -> None:
    event = load_event("http-direct-completion-base64")
    event["queryStringParameters"] = {"operation": "tokenize"}
    event["body"] = base64.b64encode(json.dumps({"modelUri": "yandexgpt-lite", "text": "a b"}).encode()).decode()
    result = load("completion")(event, LocalContext("completion"))
    assert result["statusCode"] == 200, result["body"]
    assert [t["text"] for t in json.loads(result["body"])["tokens"]] == ["a", "b"]
    event["queryStringParameters"] = {"operation": "nope"}
    assert load("completion")(event, LocalContext("completion"))["statusCode"] == 404
