"""The native answer as OpenAI's (shared/openai/chat_response.py): a chat.completion, or the chunk events of a
stream, whatever upstream sends; an answer that is not what upstream documents is a 502 saying what was
wrong, never a crash; an error line is the error the sync route gives, with upstream's codes on it and no
secret in its message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import errors
from shared.openai import chat_response

HEAD = {"id": "chatcmpl-1", "created": 1_700_000_000, "model": "gpt://b1g/yandexgpt/latest"}
CALL = {"functionCall": {"name": "weather", "arguments": {"city": "Zürich", "days": [1, 2]}}}


def _result(message: Any, status: str = "ALTERNATIVE_STATUS_FINAL", usage: Any = None) -> dict[str, Any]:
    return {"alternatives": [{"message": message, "status": status}], "usage": usage}


def _upstream_error(call: Any, *args: Any) -> str:
    with pytest.raises(errors.UpstreamError) as raised:
        call(*args)
    assert raised.value.status == 502
    return raised.value.message


@pytest.mark.parametrize("alternatives", [None, [], {"x": 1}, ["text"], "text"])
def test_an_answer_without_alternatives_is_a_502_saying_so(alternatives: Any) -> None:
    assert _upstream_error(chat_response.chat_completion, {"alternatives": alternatives}, HEAD) == \
        "upstream completion answer has no alternatives"


@pytest.mark.parametrize("message", ["hello", None, {"text": 5}, {"role": "assistant"}])
def test_a_message_that_is_not_what_upstream_documents_answers_empty_content(message: Any) -> None:
    completion = chat_response.chat_completion(_result(message), HEAD)
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "", "refusal": None}


@pytest.mark.parametrize("call", ["weather", {"functionCall": "weather"}, {"functionCall": {"name": 5}}, {}])
def test_a_tool_call_without_a_function_name_is_a_502(call: Any) -> None:
    message = {"role": "assistant", "toolCallList": {"toolCalls": [call]}}
    assert _upstream_error(chat_response.chat_completion, _result(message), HEAD) == \
        "upstream tool call has no functionCall name"


def test_tool_calls_come_as_functions_with_compact_json_text_and_the_text_beside_them() -> None:
    message = {"role": "assistant", "text": "Checking.", "toolCallList": {"toolCalls": [CALL]}}
    choice = chat_response.chat_completion(_result(message), HEAD)["choices"][0]  # FINAL, yet a tool call
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Checking."
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Zürich","days":[1,2]}'}


@pytest.mark.parametrize(("usage", "expected"), [
    ({"inputTextTokens": "5", "completionTokens": "3", "totalTokens": "9"}, (5, 3, 9, 0)),  # upstream's total wins
    ({"inputTextTokens": "5", "completionTokens": "3"}, (5, 3, 8, 0)),
    ({"inputTextTokens": "n/a", "completionTokens": None, "totalTokens": "x",
      "completionTokensDetails": {"reasoningTokens": "2"}}, (0, 0, 0, 2)),
    ({"inputTextTokens": 4, "completionTokens": 1, "completionTokensDetails": "many"}, (4, 1, 5, 0)),
    ("lots", (0, 0, 0, 0)), (None, (0, 0, 0, 0)),
])
def test_usage_is_integers_whatever_upstream_sends(usage: Any, expected: tuple[int, int, int, int]) -> None:
    prompt, completion, total, reasoning = expected
    assert chat_response.usage({"usage": usage}) == {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
        "completion_tokens_details": {"reasoning_tokens": reasoning}}


def test_a_stream_is_whole_chunk_events_and_a_tool_call_comes_with_its_index() -> None:
    lines = [{"result": _result({"role": "assistant", "text": "Hi"}, "ALTERNATIVE_STATUS_PARTIAL")},
             {"result": _result({"role": "assistant", "text": "Hi", "toolCallList": {"toolCalls": [CALL, CALL]}})}]
    events, last = chat_response.chunk_events(lines, HEAD, include_usage=False)
    chunk = {**HEAD, "object": "chat.completion.chunk"}
    assert events[0] == {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "logprobs": None, "finish_reason": None}]}
    assert events[1] == {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None,
                                               "finish_reason": None}]}
    calls = events[2]["choices"][0]["delta"]["tool_calls"]
    assert [(c["index"], c["type"], c["function"]["name"]) for c in calls] == [(0, "function", "weather"),
                                                                               (1, "function", "weather")]
    assert calls[0]["id"] != calls[1]["id"]
    assert events[3] == {**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                               "finish_reason": "tool_calls"}]}
    assert events[4:] == ["[DONE]"] and last == lines[1]["result"]


@pytest.mark.parametrize(("lines", "message"), [
    ({"result": {}}, "upstream stream is not a list of chunks"),
    ([], "upstream stream ended without a result"),
    (["not a chunk"], "upstream stream sent a line that is neither a result nor an error"),
    ([{"error": "boom"}], "upstream stream sent a line that is neither a result nor an error"),
])
def test_a_stream_that_is_not_one_is_a_502_saying_why(lines: Any, message: str) -> None:
    assert _upstream_error(chat_response.chunk_events, lines, HEAD, False) == message


@pytest.mark.parametrize(("inner", "kind", "status", "grpc"), [
    ({"grpcCode": 8, "httpCode": 429, "message": "quota"}, errors.RateLimitedError, 429, 8),
    ({"code": 3, "message": "bad"}, errors.BadRequestError, 400, 3),  # a google.rpc.Status: `code`
    ({"grpcCode": 14, "code": 3, "message": "busy"}, errors.UpstreamUnavailableError, 503, 14),
    ({"grpcCode": 13, "httpCode": "404", "message": "gone"}, errors.NotFoundError, 404, 13),  # the HTTP code wins
    ({"grpcCode": 99, "message": "odd"}, errors.UpstreamError, 502, 99),  # a code upstream does not document
])
def test_an_error_line_is_the_sync_routes_error_with_upstreams_codes(inner: dict[str, Any], kind: type, status: int,
                                                                     grpc: int) -> None:
    err = chat_response.native_error({"error": inner})
    assert type(err) is kind and err.status == status and err.message == inner["message"]
    assert (err.upstream_status, err.upstream_grpc_code) == (status, grpc)


def test_an_error_line_without_a_message_names_its_code_and_never_a_secret() -> None:
    assert chat_response.native_error({"error": {"grpcCode": 13}}).message == "upstream stream failed (gRPC code 13)"
    leaked = chat_response.native_error({"error": {"code": 16, "message": "bad key AQVN1234567890abcdefghijklmnopqrstuvwxyzAB"}})
    assert leaked.status == 401 and "AQVN" not in leaked.message and "[REDACTED]" in leaked.message
    assert json.dumps(leaked.to_openai_body()).count("AQVN") == 0
