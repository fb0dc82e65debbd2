"""The docs' promises about what goes upstream and what comes back, over real HTTP to the emulator:
the folder header with a user's IAM token, FM_DATA_LOGGING, calls that generate never sent twice,
and upstream's words redacted before a caller or a log line sees them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from local.functions import load
from shared import auth, client, errors
from shared.config import Settings
from tests.conftest import API_KEY, FOLDER, Emulator, FakeContext, load_event, reset_caches

pytestmark = pytest.mark.integration


def invoke(function: str, event_name: str) -> tuple[int, dict[str, Any]]:
    result = load(function)(load_event(event_name), FakeContext())
    return result["statusCode"], json.loads(result["body"])


def test_a_user_iam_token_sends_the_folder_and_an_api_key_does_not(stack_env: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_API_KEY")
    monkeypatch.setenv("YC_IAM_TOKEN", "t1.user-iam-token-0123456789abcdef")
    reset_caches()
    assert invoke("completion", "http-v01-completion")[0] == 200
    monkeypatch.delenv("YC_IAM_TOKEN")
    monkeypatch.setenv("YC_API_KEY", API_KEY)
    reset_caches()
    assert invoke("completion", "http-v01-completion")[0] == 200
    with_token, with_key = stack_env.calls("/completion")
    assert (with_token["auth"], with_token["folderId"]) == ("Bearer", FOLDER)
    assert (with_key["auth"], with_key["folderId"]) == ("Api-Key", None)


def test_fm_data_logging_is_sent_upstream(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("embedding", "http-v01-embedding")[0] == 200
    monkeypatch.setenv("FM_DATA_LOGGING", "true")
    reset_caches()
    assert invoke("embedding", "http-v01-embedding")[0] == 200
    assert [c["dataLogging"] for c in stack_env.calls("/textEmbedding")] == ["false", "true"]


@pytest.mark.parametrize("path,event_name", [("/fewShotTextClassification", "http-v01-classification-fewshot"),
                                             ("/completion", "http-v01-completion")])
def test_a_classification_or_completion_is_not_sent_again_after_a_read_timeout(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, path: str, event_name: str) -> None:
    monkeypatch.setenv("FM_TIMEOUT_S", "0.3")
    reset_caches()
    stack_env.fault(path=f"/foundationModels/v1{path}", kind="delay", delayMs=1500, count=-1)
    function = "classification" if "Classification" in path else "completion"
    status, body = invoke(function, event_name)
    assert status == 504 and "not retried" in body["error"]["message"]
    assert len(stack_env.calls(path)) == 1


def _client(emulator: Emulator, **settings: Any) -> client.FoundationModelsClient:
    config = Settings(base_url=emulator.url, operation_url=emulator.url, retry_base_s=0.01, **settings)
    return client.FoundationModelsClient(config, auth.ApiKey("env YC_API_KEY", API_KEY))


ASYNC_BODY = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "hi"}]}


def test_completion_async_is_not_sent_again_after_the_connection_broke(emulator: Emulator) -> None:
    emulator.fault(path="/foundationModels/v1/completionAsync", kind="drop", count=1)
    with pytest.raises(errors.UpstreamError, match="after the request was sent"):
        _client(emulator).completion_async(ASYNC_BODY, client.Call.from_context(None, default_s=30))
    assert len(emulator.calls("/completionAsync")) == 1  # upstream may have started it: never a second one


def test_completion_async_is_not_sent_again_after_a_read_timeout(emulator: Emulator) -> None:
    emulator.fault(path="/foundationModels/v1/completionAsync", kind="delay", delayMs=1500, count=-1)
    with pytest.raises(errors.UpstreamTimeoutError, match="not retried"):
        _client(emulator, timeout_s=0.3).completion_async(ASYNC_BODY, client.Call.from_context(None, default_s=30))
    assert len(emulator.calls("/completionAsync")) == 1


def test_tokenize_is_sent_again_after_the_connection_broke(emulator: Emulator) -> None:
    emulator.fault(path="/foundationModels/v1/tokenize", kind="drop", count=1)
    answer = _client(emulator).tokenize({"modelUri": f"gpt://{FOLDER}/yandexgpt/latest", "text": "a b"},
                                        client.Call.from_context(None, default_s=30))
    assert answer.attempts == 2 and [t["text"] for t in answer.body["tokens"]] == ["a", "b"]


ECHOED_KEY = "AQVNechoed-by-upstream-0123456789abcdef"  # never registered: only its shape gives it away
ECHOED_TOKEN = "t1.echoed-by-upstream-9euelZqXyMnNy5Kb"


def test_upstream_error_text_is_redacted_for_the_caller_and_the_log(stack_env: Emulator, log_output: io.StringIO) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=400, count=1,
                    message=f"key {ECHOED_KEY} and Authorization: Bearer {ECHOED_TOKEN} are not valid here")
    status, body = invoke("completion", "http-v01-completion")
    assert status == 400
    message = body["error"]["message"]
    assert message.endswith("key [REDACTED] and Authorization: Bearer [REDACTED] are not valid here")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    (failed,) = [line for line in lines if line["msg"] == "request failed"]
    assert failed["error"] == message and failed["status"] == 400
    everything = json.dumps(body) + log_output.getvalue()
    assert ECHOED_KEY not in everything and ECHOED_TOKEN not in everything
