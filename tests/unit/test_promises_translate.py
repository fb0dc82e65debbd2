"""The one translation core of the OpenAI dialect (shared/openai/translate.py), in its dialect-neutral form:
Chat Completions and Responses both read their wire into Turns, a ToolChoice and option values, so what
is promised here holds on both routes. A conversation becomes native messages (tool rounds as their own
lists, each result named by its call's function); tools and a tool choice become the native ones; what
the native side cannot honour is a 400 naming the wire's field."""

from __future__ import annotations

import pytest

from shared import errors
from shared.openai import translate
from shared.openai.translate import ToolCall, ToolChoice, Turn

WEATHER = {"name": "weather", "parameters": {"type": "object"}}
NEWS = {"name": "news"}


def _call(call_id: str, name: str = "weather", arguments: str = '{"city": "Riga"}', n: int = 1) -> ToolCall:
    return ToolCall(call_id, name, arguments, f"messages[{n}].tool_calls[0].function.arguments",
                    f"messages[{n}].tool_calls[0].id")


def _result(call_id: str, text: str, n: int) -> Turn:
    return Turn("tool", text, f"messages[{n}].content", call_id=call_id, call_id_where=f"messages[{n}].tool_call_id")


def _refusal(call: object, *args: object, **kwargs: object) -> errors.BadRequestError:
    with pytest.raises(errors.BadRequestError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value


def _field(err: errors.BadRequestError) -> tuple[str, str]:
    detail = err.details[0]
    assert err.message == f"{detail['field']}: {detail['description']}"
    return detail["field"], detail["description"]


def test_two_tool_rounds_are_two_result_lists_each_with_its_own_results() -> None:
    turns = [Turn("system", "be brief", "messages[0].content"), Turn("user", "weather and news", "messages[1]"),
             Turn("assistant", "", "messages[2]", calls=[_call("c1", n=2), _call("c2", "news", "", n=2)]),
             _result("c1", "sunny", 3), _result("c2", "calm", 4),
             Turn("assistant", "Let me check again.", "messages[5]", calls=[_call("c3", n=5)]),
             _result("c3", "rain", 6), Turn("assistant", "Rain later.", "messages[7]"), Turn("user", "thanks", "m[8]")]
    assert translate.native_messages(turns) == [
        {"role": "system", "text": "be brief"}, {"role": "user", "text": "weather and news"},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "weather", "arguments": {"city": "Riga"}}},
            {"functionCall": {"name": "news", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "weather", "content": "sunny"}},
            {"functionResult": {"name": "news", "content": "calm"}}]}},
        {"role": "assistant", "text": "Let me check again."},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "weather", "arguments": {"city": "Riga"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "weather", "content": "rain"}}]}},
        {"role": "assistant", "text": "Rain later."}, {"role": "user", "text": "thanks"}]


def test_a_result_for_no_earlier_call_is_a_400_naming_its_id() -> None:
    turns = [Turn("user", "hi", "messages[0]"), _result("c9", "sunny", 1)]
    assert _field(_refusal(translate.native_messages, turns)) == (
        "messages[1].tool_call_id", "'c9' matches no tool call earlier in the conversation")
    later = [Turn("user", "hi", "m0"), _result("c1", "early", 1), Turn("assistant", "", "m2", calls=[_call("c1")])]
    assert _field(_refusal(translate.native_messages, later))[0] == "messages[1].tool_call_id"


def test_a_repeated_call_id_is_a_400_naming_where_it_repeats() -> None:
    turns = [Turn("user", "hi", "m0"), Turn("assistant", "", "m1", calls=[_call("c1", n=1)]), _result("c1", "x", 2),
             Turn("assistant", "", "m3", calls=[_call("c1", n=3)])]
    assert _field(_refusal(translate.native_messages, turns)) == (
        "messages[3].tool_calls[0].id", "'c1' repeats an earlier tool call id")


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"', "3"])
def test_call_arguments_that_are_not_a_json_object_are_a_400_naming_them(arguments: str) -> None:
    turns = [Turn("user", "hi", "m0"), Turn("assistant", "", "m1", calls=[_call("c1", arguments=arguments, n=1)])]
    assert _field(_refusal(translate.native_messages, turns)) == (
        "messages[1].tool_calls[0].function.arguments", "must be a JSON object, as text")
    assert _field(_refusal(translate.arguments, arguments, "input[2].arguments")) == (
        "input[2].arguments", "must be a JSON object, as text")


def test_empty_arguments_are_an_empty_object() -> None:
    assert translate.arguments("", "x") == {} and translate.arguments("  \n", "x") == {}
    assert translate.arguments('{"a": [1]}', "x") == {"a": [1]}


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_a_turn_with_nothing_to_say_is_a_400_naming_it(text: str) -> None:
    for role in ("user", "system", "assistant"):
        assert _field(_refusal(translate.native_messages, [Turn(role, text, "input[4].content")])) == (
            "input[4].content", "must not be empty")


def test_an_assistant_turn_without_calls_is_one_text_message() -> None:
    assert translate.native_messages([Turn("user", "hi", "m0"), Turn("assistant", "hello", "m1")]) == [
        {"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}]


def test_tools_become_native_functions_and_a_mode_applies_only_with_tools() -> None:
    assert translate.native_tools([WEATHER, NEWS], None, None) == {
        "tools": [{"function": WEATHER}, {"function": NEWS}]}
    for mode, native in (("none", "NONE"), ("auto", "AUTO"), ("required", "REQUIRED")):
        assert translate.native_tools([WEATHER], ToolChoice(mode=mode), True) == {
            "tools": [{"function": WEATHER}], "toolChoice": {"mode": native}, "parallelToolCalls": True}
    assert translate.native_tools([], ToolChoice(mode="auto"), False) == {}  # nothing to choose from: no choice
    assert translate.native_tools([], ToolChoice(mode="none"), None) == {}
    assert translate.native_tools([], None, True) == {}  # parallel_tool_calls means nothing without tools
    assert translate.native_tools([WEATHER], ToolChoice(), False) == {"tools": [{"function": WEATHER}],
                                                                     "parallelToolCalls": False}


def test_required_without_tools_is_a_400() -> None:
    assert _field(_refusal(translate.native_tools, [], ToolChoice(mode="required"), None)) == (
        "tool_choice", "'required' needs tools")


def test_one_named_function_must_be_one_of_the_tools() -> None:
    assert translate.native_tools([WEATHER, NEWS], ToolChoice(function="news", where="tool_choice.function.name"),
                                  None) == {"tools": [{"function": WEATHER}, {"function": NEWS}],
                                            "toolChoice": {"functionName": "news"}}
    err = _refusal(translate.native_tools, [WEATHER], ToolChoice(function="news", where="tool_choice.name"), None)
    assert _field(err) == ("tool_choice.name", "'news' is not one of tools")


def test_an_allowed_subset_offers_only_those_tools() -> None:
    third = {"name": "stocks"}
    choice = ToolChoice(allowed=["stocks", "weather"], where="tool_choice.tools")
    assert translate.native_tools([WEATHER, NEWS, third], choice, None) == {
        "tools": [{"function": WEATHER}, {"function": third}], "toolChoice": {"mode": "AUTO"}}
    required = ToolChoice(mode="required", allowed=["news"], where="tool_choice.tools")
    assert translate.native_tools([WEATHER, NEWS], required, None)["toolChoice"] == {"mode": "REQUIRED"}
    assert _field(_refusal(translate.native_tools, [], choice, None)) == ("tool_choice", "allowed_tools needs tools")
    unknown = ToolChoice(allowed=["weather", "golf", "chess"], where="tool_choice.tools")
    assert _field(_refusal(translate.native_tools, [WEATHER], unknown, None)) == (
        "tool_choice.tools", "'golf' is not one of tools")


def test_options_map_to_the_native_ones_and_temperature_keeps_the_native_range() -> None:
    assert translate.completion_options(stream=None, temperature=None, max_tokens=None, reasoning_effort=None) == {}
    assert translate.completion_options(stream=True, temperature=1, max_tokens=12, reasoning_effort="none") == {
        "stream": True, "temperature": 1, "maxTokens": "12", "reasoningOptions": {"mode": "DISABLED"}}
    for effort in ("minimal", "low", "medium", "high"):
        assert translate.completion_options(stream=False, temperature=0, max_tokens=None, reasoning_effort=effort) == {
            "temperature": 0, "reasoningOptions": {"mode": "ENABLED_HIDDEN"}}
    err = _refusal(translate.completion_options, stream=None, temperature=1.01, max_tokens=None, reasoning_effort=None)
    assert _field(err) == ("temperature", "must be between 0 and 1 on this model (the native range; it is not rescaled)")


def test_a_response_format_becomes_json_object_or_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert translate.response_format("json_schema", schema) == {"jsonSchema": {"schema": schema}}
    assert translate.response_format("json_schema", None) == {"jsonObject": True}
    assert translate.response_format("json_object", schema) == {"jsonObject": True}
    assert translate.response_format("text", schema) == {} and translate.response_format(None, None) == {}


def test_the_body_has_upstreams_field_order_and_no_empty_options() -> None:
    messages = [{"role": "user", "text": "hi"}]
    native = translate.body("gpt://f/m/latest", {"temperature": 0.1}, messages, {"tools": []}, {"jsonObject": True})
    assert list(native) == ["modelUri", "completionOptions", "messages", "tools", "jsonObject"]
    assert translate.body("gpt://f/m/latest", {}, messages) == {"modelUri": "gpt://f/m/latest", "messages": messages}
