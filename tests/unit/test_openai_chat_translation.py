"""The chat translation as plain data: OpenAI request -> native body, native answer -> chat.completion,
cumulative native chunks -> SSE deltas; and the SSE framing both ways. No sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import errors
from shared.client import sse_data
from shared.openai import chat_response
from shared.openai.chat import ChatCompletionRequest, native_body
from shared.openai.models import validate
from shared.responses import Reply, http

URI = "gpt://b1gfolder/yandexgpt/latest"
HEAD = {"id": "chatcmpl-1", "created": 1700000000, "model": URI}


def body(**fields: Any) -> dict[str, Any]:
    request = validate(ChatCompletionRequest, {"model": "yandexgpt", **fields})
    return native_body(request, URI)


def result(text: str | None = None, status: str = "ALTERNATIVE_STATUS_FINAL", calls: list[Any] | None = None,
           reasoning: str = "0") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if calls is not None:
        message["toolCallList"] = {"toolCalls": calls}
    else:
        message["text"] = text
    return {"alternatives": [{"message": message, "status": status}],
            "usage": {"inputTextTokens": "5", "completionTokens": "3", "totalTokens": "8",
                      "completionTokensDetails": {"reasoningTokens": reasoning}},
            "modelVersion": "09.02.2025"}


def test_a_minimal_request_is_a_minimal_native_body() -> None:
    assert body(messages=[{"role": "user", "content": "hi"}]) == {
        "modelUri": URI, "messages": [{"role": "user", "text": "hi"}]}


def test_options_map_to_completion_options_and_defaults_change_nothing() -> None:
    native = body(messages=[{"role": "user", "content": "hi"}], temperature=1, max_completion_tokens=10,
                  max_tokens=10, reasoning_effort="high", stream=True, n=1, top_p=1, frequency_penalty=0,
                  presence_penalty=0, logprobs=False, top_logprobs=0, logit_bias={}, stop=[], modalities=["text"],
                  verbosity="medium", seed=1, user="u", metadata={"a": "b"}, service_tier="auto",
                  stream_options={"include_usage": True, "include_obfuscation": False}, prediction={"type": "content"})
    assert native["completionOptions"] == {"stream": True, "temperature": 1, "maxTokens": "10",
                                           "reasoningOptions": {"mode": "ENABLED_HIDDEN"}}
    assert set(native) == {"modelUri", "completionOptions", "messages"}


@pytest.mark.parametrize("fields,param", [
    ({"temperature": 1.01}, "temperature"), ({"n": 3}, "n"), ({"stop": "END"}, "stop"),
    ({"top_logprobs": 2}, "top_logprobs"), ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"), ({"function_call": "auto"}, "function_call"),
    ({"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens"),
])
def test_what_the_native_side_cannot_honour_is_refused_by_name(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        body(messages=[{"role": "user", "content": "hi"}], **fields)
    assert caught.value.to_openai_body()["error"]["param"] == param


def test_tools_choice_and_formats() -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                                             "strict": True}}
    other = {"type": "function", "function": {"name": "g"}}
    native = body(messages=[{"role": "user", "content": "hi"}], tools=[tool, other], parallel_tool_calls=True,
                  tool_choice={"type": "allowed_tools", "allowed_tools": {
                      "mode": "required", "tools": [{"type": "function", "function": {"name": "g"}}]}},
                  response_format={"type": "json_object"})
    assert native["tools"] == [{"function": {"name": "g"}}]
    assert native["toolChoice"] == {"mode": "REQUIRED"} and native["parallelToolCalls"] is True
    assert native["jsonObject"] is True
    assert body(messages=[{"role": "user", "content": "hi"}], tools=[tool], tool_choice="auto")["tools"] == [
        {"function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}}]
    assert "toolChoice" not in body(messages=[{"role": "user", "content": "hi"}], tool_choice="none")
    schemaless = body(messages=[{"role": "user", "content": "hi"}],
                      response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert schemaless["jsonObject"] is True
    assert "jsonObject" not in body(messages=[{"role": "user", "content": "hi"}], response_format={"type": "text"})


def test_tool_turns_become_tool_call_and_result_lists_named_by_id() -> None:
    messages = [
        {"role": "user", "content": "weather and sum"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "b", "type": "function", "function": {"name": "sum", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "3"}]},
        {"role": "tool", "tool_call_id": "a", "content": "rain"},
        {"role": "user", "content": "thanks"},
    ]
    assert body(messages=messages)["messages"] == [
        {"role": "user", "text": "weather and sum"},
        {"role": "assistant", "text": "Let me check."},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "weather", "arguments": {"city": "Oslo"}}},
            {"functionCall": {"name": "sum", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "sum", "content": "3"}},
            {"functionResult": {"name": "weather", "content": "rain"}}]}},
        {"role": "user", "text": "thanks"},
    ]


def test_tool_ids_must_match_an_earlier_call_and_be_unique() -> None:
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    early = [{"role": "tool", "tool_call_id": "a", "content": "x"},
             {"role": "assistant", "content": None, "tool_calls": [call]}]
    with pytest.raises(errors.BadRequestError, match=r"messages\[0\].tool_call_id"):
        body(messages=early)
    twice = [{"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "assistant", "content": None, "tool_calls": [call]}]
    with pytest.raises(errors.BadRequestError, match=r"messages\[1\].tool_calls\[0\].id: 'a' repeats"):
        body(messages=twice)
    with pytest.raises(errors.BadRequestError, match="must be a JSON object"):
        body(messages=[{"role": "assistant", "content": None, "tool_calls": [
            {**call, "function": {"name": "f", "arguments": "[1]"}}]}])


def test_a_chat_completion_from_a_native_result() -> None:
    completion = chat_response.chat_completion(result("Hello.", reasoning="2"), HEAD)
    assert completion == {**HEAD, "object": "chat.completion", "system_fingerprint": "09.02.2025",
                          "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": "Hello.", "refusal": None}}],
                          "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                                    "completion_tokens_details": {"reasoning_tokens": 2}}}


@pytest.mark.parametrize("status,reason", [
    ("ALTERNATIVE_STATUS_FINAL", "stop"), ("ALTERNATIVE_STATUS_TRUNCATED_FINAL", "length"),
    ("ALTERNATIVE_STATUS_CONTENT_FILTER", "content_filter"), ("ALTERNATIVE_STATUS_UNSPECIFIED", "stop"),
])
def test_finish_reasons(status: str, reason: str) -> None:
    assert chat_response.chat_completion(result("x", status), HEAD)["choices"][0]["finish_reason"] == reason


def test_tool_calls_get_unique_ids_and_json_string_arguments() -> None:
    calls = [{"functionCall": {"name": "f", "arguments": {"q": "ü"}}}, {"functionCall": {"name": "f"}}]
    message = chat_response.chat_completion(result(calls=calls, status="ALTERNATIVE_STATUS_TOOL_CALLS"),
                                            HEAD)["choices"][0]
    assert message["finish_reason"] == "tool_calls" and message["message"]["content"] is None
    tool_calls = message["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in tool_calls] == [{"q": "ü"}, {}]
    assert len({c["id"] for c in tool_calls}) == 2 and all(c["id"].startswith("call_") for c in tool_calls)


def test_cumulative_chunks_become_deltas() -> None:
    lines = [{"result": result("Hel", "ALTERNATIVE_STATUS_PARTIAL")},
             {"result": result("Hello", "ALTERNATIVE_STATUS_PARTIAL")},
             {"result": result("Hello", "ALTERNATIVE_STATUS_PARTIAL")},
             {"result": result("Hello!", "ALTERNATIVE_STATUS_TRUNCATED_FINAL")}]
    events, last = chat_response.chunk_events(lines, HEAD, include_usage=True)
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {"content": "!"},
                      {}]
    assert [e["choices"][0]["finish_reason"] for e in events[:-2]] == [None] * 4 + ["length"]
    assert all(e["usage"] is None for e in events[:-2])
    assert events[-2] == {**HEAD, "object": "chat.completion.chunk", "choices": [],
                          "usage": chat_response.usage(last)}
    assert events[-1] == "[DONE]"


def test_an_error_line_first_is_raised_and_later_is_an_error_event() -> None:
    error = {"error": {"grpcCode": 8, "httpCode": 429, "message": "quota"}}
    with pytest.raises(errors.RateLimitedError, match="quota"):
        chat_response.chunk_events([error], HEAD, include_usage=False)
    events, _ = chat_response.chunk_events([{"result": result("Hi", "ALTERNATIVE_STATUS_PARTIAL")}, error], HEAD,
                                           include_usage=False)
    assert events[-1] == {"error": {"message": "quota", "type": "rate_limit_error", "param": None,
                                    "code": "resource_exhausted"}}
    assert "[DONE]" not in events
    with pytest.raises(errors.UpstreamError):
        chat_response.chunk_events([], HEAD, include_usage=False)


def test_sse_framing_round_trips() -> None:
    events = [{"a": 1}, 'multi\nline', "[DONE]"]
    rendered = http(Reply(events, sse=True), {})
    assert rendered["headers"]["Content-Type"].startswith("text/event-stream")
    assert rendered["body"] == 'data: {"a":1}\n\ndata: multi\ndata: line\n\ndata: [DONE]\n\n'
    assert sse_data(rendered["body"]) == ['{"a":1}', "multi\nline", "[DONE]"]
    assert sse_data(": ping\r\n\r\nevent: x\r\nid: 3\r\n\r\ndata:{}\r\n\r\ndata: [DONE]") == ["{}", "[DONE]"]


def test_the_chat_path_imports_neither_openai_nor_the_jobs_modules() -> None:
    """The completion handler and the whole chat translation, in a fresh interpreter: plain data only."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import handler; "
            "from shared.openai import chat, chat_response; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'langchain_openai', 'boto3') "
            "or m.startswith('shared.jobs')))")
    out = subprocess.run([sys.executable, "-c", code, str(root / "functions" / "completion"), str(root)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
