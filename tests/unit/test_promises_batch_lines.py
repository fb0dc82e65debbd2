"""One line of an OpenAI batch, both ways (shared/openai/batch_lines.py): a line is read and answered as the
same request sent to the sync route would be, and refused (400 naming the parameter) for what a batch
cannot do; the model it names is resolved as the sync route resolves it, key allow-list included."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from shared import errors
from shared.config import Settings
from shared.openai import batch_lines, response_object
from shared.openai.chat import ChatCompletionRequest, native_body
from shared.openai.models import validate
from shared.policy import KeyPolicy

SETTINGS = Settings(folder_id="b1g")
CHAT = {"model": "yandexgpt", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2, "max_tokens": 9}


def _refusal(call: Any, *args: Any) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as raised:
        call(*args)
    return raised.value


def test_a_chat_line_becomes_the_native_body_the_sync_route_sends() -> None:
    body, model = batch_lines.chat_request(CHAT, SETTINGS)
    assert model == "gpt://b1g/yandexgpt/latest"
    assert body == native_body(validate(ChatCompletionRequest, CHAT), model)
    assert batch_lines.chat_request({**CHAT, "model": "gpt://other/llama/rc"}, SETTINGS)[1] == "gpt://other/llama/rc"


def test_a_chat_line_is_refused_for_what_a_batch_cannot_do() -> None:
    err = _refusal(batch_lines.chat_request, {**CHAT, "stream": True}, SETTINGS)
    assert (err.status, err.message) == (400, "stream: is not available in a batch (its answers are files)")
    err = _refusal(batch_lines.chat_request, {**CHAT, "model": "gpt-oss-20b"}, SETTINGS)
    assert err.status == 400 and err.message == (
        "model: gpt-oss-20b is served only through upstream's OpenAI mode, which has no batch; send its "
        "requests to /v1/chat/completions")
    added = Settings(folder_id="b1g", openai_passthrough_models="mine")
    assert _refusal(batch_lines.chat_request, {**CHAT, "model": "gpt://b1g/mine/latest"}, added).status == 400
    err = _refusal(batch_lines.chat_request, {**CHAT, "messages": []}, SETTINGS)
    assert err.status == 400 and err.message.startswith("messages")
    err = _refusal(batch_lines.chat_request, {**CHAT, "model": "not a model"}, SETTINGS)
    assert err.status == 400 and err.message.startswith("model: ")


def test_a_line_names_only_a_model_the_deployment_and_the_key_allow() -> None:
    narrow = Settings(folder_id="b1g", allowed_models="yandexgpt-lite")
    err = _refusal(batch_lines.chat_request, CHAT, narrow)
    assert err.status == 403 and err.message.startswith("model: ")
    policy = KeyPolicy(name="alice", models=("yandexgpt-lite", "text-search-doc"))
    assert _refusal(batch_lines.chat_request, CHAT, SETTINGS, policy).status == 403
    assert batch_lines.chat_request({**CHAT, "model": "yandexgpt-lite"}, SETTINGS, policy)[1] == \
        "gpt://b1g/yandexgpt-lite/latest"
    line = {"model": "text-search-query", "input": "x"}
    assert _refusal(batch_lines.embeddings_request, line, SETTINGS, policy).status == 403
    assert batch_lines.embeddings_request({**line, "model": "text-search-doc"}, SETTINGS, policy)["model"] == \
        "emb://b1g/text-search-doc/latest"
    responses = {"model": "yandexgpt", "input": "Hi"}
    assert _refusal(batch_lines.responses_request, responses, SETTINGS, policy).status == 403


def test_a_chat_answer_is_the_chat_completion_the_sync_route_returns() -> None:
    result = {"alternatives": [{"message": {"role": "assistant", "text": "Hello"}, "status": "ALTERNATIVE_STATUS_FINAL"}],
              "usage": {"inputTextTokens": "5", "completionTokens": "2", "totalTokens": "7"}, "modelVersion": "v"}
    answer = batch_lines.chat_answer(result, "gpt://b1g/yandexgpt/latest", "chatcmpl-1", 1700000000)
    assert (answer["id"], answer["created"], answer["model"], answer["object"]) == (
        "chatcmpl-1", 1700000000, "gpt://b1g/yandexgpt/latest", "chat.completion")
    assert answer["choices"][0]["message"]["content"] == "Hello"
    assert answer["usage"]["prompt_tokens"] == 5 and answer["usage"]["completion_tokens"] == 2


def test_an_embeddings_line_without_an_encoding_answers_floats() -> None:
    request = batch_lines.embeddings_request({"model": "text-search-doc", "input": ["a", "b"], "dimensions": 256},
                                             SETTINGS)
    assert request == {"model": "emb://b1g/text-search-doc/latest", "texts": ["a", "b"], "dim": 256,
                       "encodingFormat": "float"}
    one = batch_lines.embeddings_request({"model": "text-search-doc", "input": "a", "encoding_format": "base64"},
                                         SETTINGS)
    assert one == {"model": "emb://b1g/text-search-doc/latest", "texts": ["a"], "dim": None,
                   "encodingFormat": "base64"}
    err = _refusal(batch_lines.embeddings_request, {"model": "text-search-doc", "input": []}, SETTINGS)
    assert err.status == 400 and err.message.startswith("input")


def test_an_embeddings_answer_is_the_list_the_sync_route_returns() -> None:
    result = {"embeddings": [[0.5, -1.0], [0.25, 2.0]], "numTokens": "6"}
    floats = batch_lines.embeddings_answer(result, "emb://b1g/text-search-doc/latest", "float")
    assert floats == {"object": "list", "model": "emb://b1g/text-search-doc/latest",
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                               {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]}],
                      "usage": {"prompt_tokens": 6, "total_tokens": 6}}
    encoded = batch_lines.embeddings_answer(result, "m", "base64")
    assert [struct.unpack("<2f", base64.b64decode(d["embedding"])) for d in encoded["data"]] == [(0.5, -1.0),
                                                                                                 (0.25, 2.0)]
    assert encoded["data"][0]["embedding"] == base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    empty = batch_lines.embeddings_answer({"numTokens": None, "embeddings": None}, "m", "float")
    assert empty["data"] == [] and empty["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    assert batch_lines.embeddings_answer({}, "m", "float")["usage"] == {"prompt_tokens": 0, "total_tokens": 0}


def test_a_responses_line_is_planned_as_the_sync_route_plans_it_and_never_stored() -> None:
    body, model, line = batch_lines.responses_request({"model": "yandexgpt", "input": "Hi", "store": True}, SETTINGS)
    assert model == "gpt://b1g/yandexgpt/latest" and body["modelUri"] == model
    assert body["messages"] == [{"role": "user", "text": "Hi"}]
    assert line["first"] == 1 and line["skeleton"]["store"] is False and line["skeleton"]["model"] == model
    result = {"alternatives": [{"message": {"role": "assistant", "text": "Hello"}, "status": "ALTERNATIVE_STATUS_FINAL"}],
              "usage": {"inputTextTokens": "3", "completionTokens": "1", "totalTokens": "4"}}
    answer = batch_lines.responses_answer(result, line, 1700000001)
    assert answer["status"] == "completed" and answer["output"][0]["content"][0]["text"] == "Hello"
    assert answer["id"] == line["skeleton"]["id"] and answer["completed_at"] == 1700000001
    assert answer["output"][0]["id"] == response_object.item_id("message", answer["id"], 1)  # after the input item


def test_a_responses_line_is_answered_in_one_piece_and_echoes_its_tools() -> None:
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    body, _, line = batch_lines.responses_request({"model": "yandexgpt", "input": "Hi", "tools": [tool],
                                                   "temperature": 0.5}, SETTINGS)
    assert body["completionOptions"] == {"temperature": 0.5}  # never a stream: the answer is one file line
    assert [t["name"] for t in line["skeleton"]["tools"]] == ["weather"]
    assert body["tools"][0]["function"]["name"] == "weather"


@pytest.mark.parametrize(("extra", "field"), [({"stream": True}, "stream"), ({"background": True}, "background"),
                                              ({"previous_response_id": "resp_1"}, "previous_response_id")])
def test_a_responses_line_is_refused_for_what_a_batch_cannot_do(extra: dict[str, Any], field: str) -> None:
    err = _refusal(batch_lines.responses_request, {"model": "yandexgpt", "input": "Hi", **extra}, SETTINGS)
    assert err.status == 400 and err.message == (f"{field}: is not available in a batch" + {
        "previous_response_id": ": send the conversation's items as input"}.get(field, " (its answers are files)"))


def test_a_responses_line_for_a_passthrough_model_is_refused() -> None:
    err = _refusal(batch_lines.responses_request, {"model": "gpt-oss-120b", "input": "Hi"}, SETTINGS)
    assert err.status == 400 and err.message == (
        "model: gpt-oss-120b is served only through upstream's OpenAI mode, which has no batch; send its "
        "requests to /v1/responses")
