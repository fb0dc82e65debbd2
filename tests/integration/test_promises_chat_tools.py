"""Chat tool conversations over several rounds (docs/openai.md, Chat completions): each round's tool results go
upstream as a toolResultList of their own, holding only that round's results, and the tool-call ids the
route hands out are unique across answers, so a client that re-sends a two-round conversation (the normal
way to continue one) is not refused for a repeated id.

With the real `openai` client over the local gateway; what went upstream is read from the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from tests.conftest import Api, Emulator

pytestmark = pytest.mark.integration

COMPLETION = "/foundationModels/v1/completion"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluates an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
TOOLS = [WEATHER, CALCULATOR]


def _client(api: Api) -> OpenAI:
    return OpenAI(base_url=api.url + "/v1", api_key="fmk_tools-test-key-0123456789", max_retries=0)


def _two_rounds(chat: Any) -> tuple[list[Any], list[str], list[str]]:
    """A conversation with two tool rounds back to back (the second forced right after the first's results);
    the messages so far and each round's call ids."""
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris and in Rome? Then calculate 12 * 7."}]
    first = chat.create(model="yandexgpt", messages=messages, tools=TOOLS,
                        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    round_one = first.choices[0].message.tool_calls
    assert [c.function.name for c in round_one] == ["get_weather"]
    messages.append(first.choices[0].message)
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "Sunny, 21 C"} for c in round_one]
    second = chat.create(model="yandexgpt", messages=messages, tools=TOOLS,
                         tool_choice={"type": "function", "function": {"name": "calculator"}})
    round_two = second.choices[0].message.tool_calls
    assert [c.function.name for c in round_two] == ["calculator"]
    messages.append(second.choices[0].message)
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "84"} for c in round_two]
    return messages, [c.id for c in round_one], [c.id for c in round_two]


def test_two_tool_rounds_go_upstream_as_two_tool_result_lists_each_with_its_own_results(
        api_v01: Api, emulator: Emulator) -> None:
    chat = _client(api_v01).chat.completions
    messages, _, _ = _two_rounds(chat)
    final = chat.create(model="yandexgpt", messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert "calculator returned 84" in final.choices[0].message.content
    assert "get_weather" not in final.choices[0].message.content  # the model is answered this round's results only
    sent = emulator.calls(COMPLETION)[-1]["body"]["messages"]
    assert sent[1:] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "get_weather", "content": "Sunny, 21 C"}}]}},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "calculator", "arguments": {"expression": "12 * 7"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "calculator", "content": "84"}}]}},
    ]


def test_tool_call_ids_are_unique_across_answers_so_a_resent_conversation_is_accepted(
        api_v01: Api, emulator: Emulator) -> None:
    chat = _client(api_v01).chat.completions
    messages, round_one, round_two = _two_rounds(chat)
    assert not set(round_one) & set(round_two)
    again = _two_rounds(chat)  # the same conversation asked again: new ids, not the same ones
    assert not set(again[1] + again[2]) & set(round_one + round_two)
    for _ in range(2):  # continuing the conversation, and re-sending it (a client's retry)
        answer = chat.create(model="yandexgpt", messages=messages, tools=TOOLS)
        assert answer.choices[0].finish_reason == "stop"
