"""A native answer as a Responses API response (shared/openai/response_object.py), every field of it: the
output items and their ids (derived from the response id, so building an answer twice gives the same items),
the stream's typed events each whole and in OpenAI's order, a failure midway as `error` then
`response.failed` keeping what was said, and the log fields the usage ledger reads."""

from __future__ import annotations

from typing import Any

import pytest

from shared import errors
from shared.openai import response_object

RID = "resp_ab_cd"  # an id with an underscore inside: item ids still name their response
R = "ab_cd"
USAGE = {"inputTextTokens": "7", "completionTokens": "5", "totalTokens": "12",
         "completionTokensDetails": {"reasoningTokens": "1"}}


def _result(text: Any = "", calls: list[Any] | None = None, status: str = "ALTERNATIVE_STATUS_FINAL") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "text": text}
    if calls is not None:
        message["toolCallList"] = {"toolCalls": calls}
    return {"alternatives": [{"message": message, "status": status}], "usage": USAGE}


def _skeleton(**fields: Any) -> dict[str, Any]:
    return {"id": RID, "object": "response", "status": "queued", "output": [], "usage": None, "error": None,
            "incomplete_details": None, "completed_at": None, "tools": [], **fields}


def _message(text: str, number: int, status: str = "completed") -> dict[str, Any]:
    return {"id": f"msg_{R}_{number}", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


PART = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
USAGE_OUT = {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 12}


@pytest.mark.parametrize(("kind", "prefix"), [("message", "msg"), ("function_call", "fc"),
                                              ("function_call_output", "fco"), ("reasoning", "rs"), ("other", "item")])
def test_item_ids_name_their_response_and_place(kind: str, prefix: str) -> None:
    assert response_object.item_id(kind, RID, 4) == f"{prefix}_{R}_4"
    assert response_object.response_of(f"{prefix}_{R}_4") == (RID if prefix != "item" else None)


@pytest.mark.parametrize("item", ["msg", "msg__3", "msg_ab_x", "msg_ab_", "xyz_ab_3", "fc_3", ""])
def test_an_id_we_did_not_mint_names_no_response(item: str) -> None:
    assert response_object.response_of(item) is None


def test_output_items_are_the_text_then_each_call_numbered_after_the_input() -> None:
    calls = [{"functionCall": {"name": "crm__lookup", "arguments": {"who": "Zoë", "n": 2}}},
             {"functionCall": {"name": "weather"}}]
    items = response_object.output_items(_result("Checking.", calls), RID, 2,
                                         {"crm__lookup": ("crm", "lookup")})
    assert items == [
        _message("Checking.", 2),
        {"id": f"fc_{R}_3", "type": "function_call", "status": "completed", "arguments": '{"who":"Zoë","n":2}',
         "call_id": f"call_{R}_3", "name": "lookup", "namespace": "crm"},
        {"id": f"fc_{R}_4", "type": "function_call", "status": "completed", "arguments": "{}",
         "call_id": f"call_{R}_4", "name": "weather"}]
    only_calls = response_object.output_items(_result(None, calls[1:]), RID, 0)
    assert [item["id"] for item in only_calls] == [f"fc_{R}_0"]  # no empty message beside a call
    assert response_object.output_items(_result(5), RID, 1) == [_message("", 1)]  # text that is not text: empty


@pytest.mark.parametrize("calls", [["weather"], [{"functionCall": None}], [{"functionCall": {"arguments": {}}}]])
def test_a_call_without_a_function_name_is_a_502(calls: list[Any]) -> None:
    with pytest.raises(errors.UpstreamError, match="^upstream tool call has no functionCall name$"):
        response_object.output_items(_result("", calls), RID, 0)


def test_odd_messages_and_call_lists_answer_an_empty_message() -> None:
    odd = {"alternatives": [{"message": "hi", "status": "ALTERNATIVE_STATUS_FINAL"}]}
    assert response_object.output_items(odd, RID, 0) == [_message("", 0)]
    no_list = {"alternatives": [{"message": {"text": "a", "toolCallList": ["x"]}}]}
    assert response_object.output_items(no_list, RID, 0) == [_message("a", 0)]


def test_a_finished_response_echoes_its_skeleton_with_the_answer() -> None:
    tools = [{"type": "namespace", "name": "crm", "tools": [{"name": "lookup"}]}]
    calls = [{"functionCall": {"name": "crm__lookup", "arguments": {}}}]
    final = response_object.finished(_skeleton(tools=tools, error={"old": 1}), _result("", calls), 1, 1700)
    assert final == {**_skeleton(tools=tools), "status": "completed", "incomplete_details": None, "error": None,
                     "output": [{"id": f"fc_{R}_1", "type": "function_call", "status": "completed", "arguments": "{}",
                                 "call_id": f"call_{R}_1", "name": "lookup", "namespace": "crm"}],
                     "usage": USAGE_OUT, "completed_at": 1700}


@pytest.mark.parametrize(("state", "error"), [("failed", {"code": "server_error", "message": "boom"}),
                                              ("cancelled", None)])
def test_a_failed_or_cancelled_response_has_no_output(state: str, error: Any) -> None:
    assert response_object.failed(_skeleton(output=[1], usage={"x": 1}), "server_error", "boom", state) == {
        **_skeleton(), "status": state, "error": error, "output": [], "usage": None, "completed_at": None}
    assert response_object.failed(_skeleton(), "c", "m")["status"] == "failed"


@pytest.mark.parametrize(("err", "code"), [(errors.RateLimitedError("x"), "rate_limit_exceeded"),
                                           (errors.BadRequestError("x"), "invalid_prompt"),
                                           (errors.UpstreamError("x"), "server_error"),
                                           (errors.NotFoundError("x"), "server_error")])
def test_error_codes_are_the_responses_ones(err: errors.ApiError, code: str) -> None:
    assert response_object.error_code(err) == code


def test_usage_becomes_the_log_fields_the_ledger_reads() -> None:
    assert response_object.log_fields(USAGE_OUT) == {"input_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                                                     "reasoning_tokens": 1}
    assert response_object.log_fields({"input_tokens": 2, "output_tokens_details": "x"}) == {
        "input_tokens": 2, "completion_tokens": None, "total_tokens": None, "reasoning_tokens": None}
    assert response_object.log_fields(None) == {} and response_object.log_fields("usage") == {}


# -- the stream ---------------------------------------------------------------------------------------------

def _chunk(text: str, status: str = "ALTERNATIVE_STATUS_PARTIAL", calls: list[Any] | None = None) -> dict[str, Any]:
    return {"result": _result(text, calls, status)}


def _numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert [e.pop("sequence_number") for e in events] == list(range(len(events)))
    return events


def test_a_text_stream_is_every_event_whole_in_order() -> None:
    running = {**_skeleton(), "status": "in_progress"}
    events, last = response_object.stream_events([_chunk("Hel"), _chunk("Hel"), _chunk("Hello", "ALTERNATIVE_STATUS_FINAL")],
                                                 _skeleton(), 2, 1700)
    final = response_object.finished(_skeleton(), last, 2, 1700)
    item = f"msg_{R}_2"
    assert _numbered(events) == [
        {"type": "response.created", "response": running},
        {"type": "response.in_progress", "response": running},
        {"type": "response.output_item.added", "output_index": 0, "item": {**_message("", 2, "in_progress"), "content": []}},
        {"type": "response.content_part.added", "item_id": item, "output_index": 0, "content_index": 0, "part": PART},
        {"type": "response.output_text.delta", "item_id": item, "output_index": 0, "content_index": 0, "delta": "Hel",
         "logprobs": []},
        {"type": "response.output_text.delta", "item_id": item, "output_index": 0, "content_index": 0, "delta": "lo",
         "logprobs": []},
        {"type": "response.output_text.done", "item_id": item, "output_index": 0, "content_index": 0, "text": "Hello",
         "logprobs": []},
        {"type": "response.content_part.done", "item_id": item, "output_index": 0, "content_index": 0,
         "part": {**PART, "text": "Hello"}},
        {"type": "response.output_item.done", "output_index": 0, "item": _message("Hello", 2)},
        {"type": "response.completed", "response": final}]
    assert final["status"] == "completed" and final["output"] == [_message("Hello", 2)]


def test_an_empty_answer_still_opens_and_closes_its_message_and_a_cut_one_is_incomplete() -> None:
    events, _ = response_object.stream_events([_chunk("", "ALTERNATIVE_STATUS_TRUNCATED_FINAL")], _skeleton(), 0, 1)
    item = f"msg_{R}_0"
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"]
    assert events[2]["item"] == {**_message("", 0, "in_progress"), "content": []}
    assert events[3] == {"type": "response.content_part.added", "sequence_number": 3, "item_id": item,
                         "output_index": 0, "content_index": 0, "part": PART}
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_streamed_call_after_text_comes_whole_with_its_argument_events() -> None:
    calls = [{"functionCall": {"name": "weather", "arguments": {"city": "Riga"}}}]
    events, _ = response_object.stream_events([_chunk("Let me see."), _chunk("Let me see.", "ALTERNATIVE_STATUS_TOOL_CALLS",
                                                                             calls)], _skeleton(), 0, 1)
    call = {"id": f"fc_{R}_1", "type": "function_call", "status": "completed", "arguments": '{"city":"Riga"}',
            "call_id": f"call_{R}_1", "name": "weather"}
    tail = _numbered(events)[-6:]
    assert tail == [
        {"type": "response.output_item.done", "output_index": 0, "item": _message("Let me see.", 0)},
        {"type": "response.output_item.added", "output_index": 1, "item": {**call, "status": "in_progress", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": call["id"], "output_index": 1,
         "delta": '{"city":"Riga"}'},
        {"type": "response.function_call_arguments.done", "item_id": call["id"], "output_index": 1, "name": "weather",
         "arguments": '{"city":"Riga"}'},
        {"type": "response.output_item.done", "output_index": 1, "item": call},
        {"type": "response.completed", "response": response_object.finished(
            _skeleton(), _chunk("Let me see.", "ALTERNATIVE_STATUS_TOOL_CALLS", calls)["result"], 0, 1)}]


def test_a_failure_midway_is_an_error_then_failed_keeping_what_was_said() -> None:
    failure = {"error": {"grpcCode": 8, "httpCode": 429, "message": "quota"}}
    events, last = response_object.stream_events([_chunk("Hel"), failure], _skeleton(), 1, 1)
    assert last is None
    error, failed = _numbered(events)[-2:]
    assert error == {"type": "error", "code": "rate_limit_exceeded", "message": "quota", "param": None,
                     "error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "quota",
                               "param": None}}
    assert failed == {"type": "response.failed", "response": {
        **_skeleton(), "status": "failed", "output": [_message("Hel", 1, "incomplete")],
        "error": {"code": "rate_limit_exceeded", "message": "quota"}, "usage": None}}
    events, _ = response_object.stream_events([_chunk(""), failure], _skeleton(), 0, 1)
    assert events[-1]["response"]["output"] == []  # nothing said yet: nothing kept


@pytest.mark.parametrize(("chunks", "message"), [({"result": {}}, "upstream stream is not a list of chunks"),
                                                 ([], "upstream stream ended without a result")])
def test_a_stream_that_is_not_one_is_a_502(chunks: Any, message: str) -> None:
    with pytest.raises(errors.UpstreamError) as raised:
        response_object.stream_events(chunks, _skeleton(), 0, 1)
    assert raised.value.message == message and raised.value.status == 502


def test_an_error_before_any_content_is_raised_as_the_sync_routes_error() -> None:
    with pytest.raises(errors.RateLimitedError, match="^quota$"):
        response_object.stream_events([{"error": {"grpcCode": 8, "message": "quota"}}], _skeleton(), 0, 1)
    with pytest.raises(errors.UpstreamError, match="neither a result nor an error"):
        response_object.stream_events(["junk"], _skeleton(), 0, 1)
