"""The Responses pieces that are plain data, in milliseconds: a native result as output items, usage and status;
the typed event stream; the translation core's conversation rules; a request read into turns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import errors
from shared.openai import response_object, translate
from shared.openai.response_request import ResponseCreateRequest
from shared.openai.responses_api import plan_request

URI = "gpt://b1gfolder/yandexgpt/latest"
RID = "resp_0123456789abcdef0123456789abcdef"


def result(text: str = "", calls: list[dict[str, Any]] | None = None, status: str = "ALTERNATIVE_STATUS_FINAL",
           reasoning: int = 0) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if calls:
        message["toolCallList"] = {"toolCalls": [{"functionCall": c} for c in calls]}
    else:
        message["text"] = text
    return {"alternatives": [{"message": message, "status": status}],
            "usage": {"inputTextTokens": "7", "completionTokens": "5", "totalTokens": "12",
                      "completionTokensDetails": {"reasoningTokens": str(reasoning)}}}


def skeleton(**fields: Any) -> dict[str, Any]:
    return {"id": RID, "object": "response", "status": "in_progress", "output": [], "usage": None, "error": None,
            "incomplete_details": None, "completed_at": None, "tools": [], **fields}


# -- output, usage, status -------------------------------------------------------------------------------

def test_a_text_answer_is_one_message_with_an_id_of_this_response() -> None:
    [item] = response_object.output_items(result("Hi."), RID, 3)
    assert item == {"id": "msg_0123456789abcdef0123456789abcdef_3", "type": "message", "status": "completed",
                    "role": "assistant", "content": [{"type": "output_text", "text": "Hi.", "annotations": [],
                                                      "logprobs": []}]}
    assert response_object.response_of(item["id"]) == RID


def test_tool_calls_are_function_call_items_with_unique_ids_and_json_text_arguments() -> None:
    items = response_object.output_items(result(calls=[{"name": "a", "arguments": {"x": 1}}, {"name": "b"}]), RID, 2)
    assert [i["type"] for i in items] == ["function_call", "function_call"]
    assert [i["arguments"] for i in items] == ['{"x":1}', "{}"]
    assert len({i["id"] for i in items}) == len({i["call_id"] for i in items}) == 2
    assert all(response_object.response_of(i["id"]) == RID for i in items)
    other = response_object.output_items(result(calls=[{"name": "a", "arguments": {}}]), "resp_ffff", 2)
    assert other[0]["call_id"] != items[0]["call_id"]  # another response's calls never repeat these ids


def test_only_offered_namespaces_are_split_off_a_call_name() -> None:
    offered = response_object.namespaced([{"type": "namespace", "name": "crm", "tools": [{"name": "lookup"}]}])
    calls = [{"name": "crm__lookup", "arguments": {}}, {"name": "plain__name", "arguments": {}}]
    first, second = response_object.output_items(result(calls=calls), RID, 0, offered)
    assert (first["name"], first["namespace"]) == ("lookup", "crm")
    assert second["name"] == "plain__name" and "namespace" not in second


@pytest.mark.parametrize(("native", "status", "reason"), [
    ("ALTERNATIVE_STATUS_FINAL", "completed", None), ("ALTERNATIVE_STATUS_TOOL_CALLS", "completed", None),
    ("ALTERNATIVE_STATUS_TRUNCATED_FINAL", "incomplete", "max_output_tokens"),
    ("ALTERNATIVE_STATUS_CONTENT_FILTER", "incomplete", "content_filter")])
def test_native_statuses_map_to_response_statuses(native: str, status: str, reason: str | None) -> None:
    final = response_object.finished(skeleton(), result("x", status=native), 0, 1700000000)
    assert final["status"] == status
    assert final["incomplete_details"] == ({"reason": reason} if reason else None)
    assert final["completed_at"] == (1700000000 if status == "completed" else None)


def test_usage_has_every_field_strict_clients_need() -> None:
    assert response_object.usage(result("x", reasoning=2)) == {
        "input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 12}


# -- the event stream -------------------------------------------------------------------------------------

def chunk(text: str, final: bool = False) -> dict[str, Any]:
    return {"result": result(text, status="ALTERNATIVE_STATUS_FINAL" if final else "ALTERNATIVE_STATUS_PARTIAL")}


def test_a_text_stream_is_the_typed_events_in_order_with_deltas_that_add_up() -> None:
    events, last = response_object.stream_events([chunk("Hel"), chunk("Hello"), chunk("Hello!", True)], skeleton(),
                                                  0, 1)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"].endswith(".delta")) == "Hello!"
    final = events[-1]["response"]
    assert final == response_object.finished(skeleton(), last, 0, 1)  # the same answer as without a stream
    assert events[-2]["item"] == final["output"][0] and events[2]["item"]["id"] == final["output"][0]["id"]


def test_a_streamed_tool_call_comes_whole_with_its_argument_events() -> None:
    events, _ = response_object.stream_events([{"result": result(calls=[{"name": "f", "arguments": {"a": 1}}],
                                                                 status="ALTERNATIVE_STATUS_TOOL_CALLS")}],
                                               skeleton(), 0, 1)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert events[2]["item"]["arguments"] == "" and events[4]["arguments"] == '{"a":1}' and events[4]["name"] == "f"


def test_a_failure_after_content_ends_in_error_then_failed_and_before_it_is_raised() -> None:
    failure = {"error": {"grpcCode": 14, "httpCode": 503, "message": "went away"}}
    events, last = response_object.stream_events([chunk("Hel"), failure], skeleton(), 0, 1)
    assert last is None and [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["message"] == events[-2]["error"]["message"] == "went away"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hel"
    with pytest.raises(errors.UpstreamUnavailableError):
        response_object.stream_events([failure], skeleton(), 0, 1)


# -- the translation core -------------------------------------------------------------------------------------

def call(call_id: str, name: str = "f") -> translate.ToolCall:
    return translate.ToolCall(call_id, name, "{}", f"{call_id}.arguments", f"{call_id}.id")


def test_each_run_of_results_is_its_own_tool_result_list_named_by_its_call() -> None:
    turns = [translate.Turn("user", "go", "u"), translate.Turn("assistant", calls=[call("c1", "a")]),
             translate.Turn("tool", "r1", call_id="c1", call_id_where="x"),
             translate.Turn("assistant", calls=[call("c2", "b"), call("c3", "c")]),
             translate.Turn("tool", "r2", call_id="c2"), translate.Turn("tool", "r3", call_id="c3")]
    messages = translate.native_messages(turns)
    assert messages[2] == {"role": "user", "toolResultList": {"toolResults": [
        {"functionResult": {"name": "a", "content": "r1"}}]}}
    assert messages[4] == {"role": "user", "toolResultList": {"toolResults": [
        {"functionResult": {"name": "b", "content": "r2"}}, {"functionResult": {"name": "c", "content": "r3"}}]}}


def test_an_unknown_or_repeated_call_id_is_a_400_naming_where_it_is() -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        translate.native_messages([translate.Turn("tool", "r", call_id="nope", call_id_where="input[1].call_id")])
    assert caught.value.details[0]["field"] == "input[1].call_id"
    with pytest.raises(errors.BadRequestError) as caught:
        translate.native_messages([translate.Turn("assistant", calls=[call("c1")]),
                                   translate.Turn("assistant", calls=[call("c1")])])
    assert caught.value.details[0]["field"] == "c1.id"


# -- a request read into the native body ------------------------------------------------------------------

def plan(**body: Any) -> dict[str, Any]:
    request = ResponseCreateRequest.model_validate({"model": URI, **body})
    return plan_request(request, URI, None, RID).body


def test_consecutive_calls_are_one_tool_call_list_and_reasoning_is_dropped() -> None:
    body = plan(input=[{"role": "user", "content": "go"}, {"type": "reasoning", "summary": []},
                       {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                       {"type": "function_call", "call_id": "c2", "name": "b", "arguments": '{"k": 2}'},
                       {"type": "function_call_output", "call_id": "c2", "output": "two"},
                       {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text",
                                                                                      "text": "one"}]}])
    assert body["messages"] == [
        {"role": "user", "text": "go"},
        {"role": "assistant", "toolCallList": {"toolCalls": [{"functionCall": {"name": "a", "arguments": {}}},
                                                             {"functionCall": {"name": "b", "arguments": {"k": 2}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "b", "content": "two"}},
                                                            {"functionResult": {"name": "a", "content": "one"}}]}}]


def test_instructions_lead_and_a_request_with_nothing_to_answer_is_a_400() -> None:
    assert plan(input="hi", instructions="Be terse.")["messages"][0] == {"role": "system", "text": "Be terse."}
    with pytest.raises(errors.BadRequestError) as caught:
        plan(instructions="Be terse.")
    assert caught.value.details[0]["field"] == "input"


def test_hosted_tools_are_not_offered_and_namespaced_functions_are() -> None:
    body = plan(input="hi", tools=[{"type": "web_search"}, {"type": "namespace", "name": "crm", "description": "d",
                                                            "tools": [{"type": "function", "name": "get"}]}])
    assert body["tools"] == [{"function": {"name": "crm__get"}}]
    assert json.dumps(body).count("web_search") == 0
