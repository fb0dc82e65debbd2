"""What POST /v1/chat/completions promises (shared/openai/chat.py), driven as the completion function drives
it, against the in-process FM emulator: the request body is read as OpenAI's wire has it and anything wrong
is a 400 naming the field; a native model gets the native completion body the parameter table describes
(the emulator records what reached upstream) and the caller a chat.completion or its chunk stream, which the
pinned `openai` package's types accept; a pass-through model gets the caller's own body with the full model
URI, in its folder's project, and the caller upstream's answer; the usage reaches the request's log fields
(what the summary line and the usage ledger read)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shared import errors, runtime
from shared.client import Call
from shared.config import settings
from shared.openai import chat
from shared.openai.models import validate
from shared.policy import KeyPolicy
from shared.responses import Reply
from tests.clock import ManualClock
from tests.conftest import FOLDER, Emulator, reset_caches

URI = f"gpt://{FOLDER}/yandexgpt/latest"
OSS = f"gpt://{FOLDER}/gpt-oss-20b/latest"
HI = [{"role": "user", "content": "hi there"}]


def request(**fields: Any) -> chat.ChatCompletionRequest:
    return validate(chat.ChatCompletionRequest, {"model": "yandexgpt", "messages": HI, **fields})


def refused(**fields: Any) -> tuple[str, str]:
    """(param, message) of the 400 the body gets, in OpenAI's error shape."""
    with pytest.raises(errors.BadRequestError) as caught:
        native(**fields)
    error = caught.value.to_openai_body()["error"]
    assert error["type"] == "invalid_request_error"
    return error["param"], error["message"]


def native(**fields: Any) -> dict[str, Any]:
    """The native body a request becomes (validation included)."""
    body = {"model": "yandexgpt", "messages": HI, **fields}
    return chat.native_body(validate(chat.ChatCompletionRequest, body), URI)


def invocation(policy: KeyPolicy | None = None) -> runtime.Invocation:
    return runtime.Invocation(settings(), Call.from_context(None, default_s=30), policy=policy)


def create(inv: runtime.Invocation | None = None, **fields: Any) -> tuple[Reply, runtime.Invocation]:
    inv = inv or invocation()
    return chat.create(request(**fields), inv), inv


def upstream(emulator: Emulator, path: str = "/foundationModels/v1/completion") -> list[dict[str, Any]]:
    return [call for call in emulator.calls() if call["path"] == path]


# -- the request body -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,param,rule", [
    (5, "messages[0].content", "must be a string or an array of content parts"),
    ({"type": "text", "text": "x"}, "messages[0].content", "must be a string or an array of content parts"),
    (["x"], "messages[0].content[0].type", "is required (a content part is an object with a type)"),
    ([{"type": "text", "text": "a"}, {"text": "b"}], "messages[0].content[1].type",
     "is required (a content part is an object with a type)"),
    ([{"type": 1, "text": "b"}], "messages[0].content[0].type", "is required (a content part is an object with a type)"),
    ([{"type": "text", "text": "a"}, {"type": "text"}], "messages[0].content[1].text", "must be a string"),
    ([{"type": "text", "text": 3}], "messages[0].content[0].text", "must be a string"),
])
def test_bad_message_content_is_a_400_naming_the_part(content: Any, param: str, rule: str) -> None:
    assert refused(messages=[{"role": "user", "content": content}]) == (param, f"{param}: {rule}")


def test_content_is_a_string_parts_or_on_an_assistant_turn_absent() -> None:
    assert native(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])[
        "messages"] == [{"role": "user", "text": "ab"}]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "refusal": "no"},
                {"role": "user", "content": "again"}]
    assert native(messages=messages)["messages"][1] == {"role": "assistant", "text": "no"}
    assert refused(messages=[{"role": "user", "content": ""}]) == ("messages[0].content",
                                                                   "messages[0].content: must not be empty")


@pytest.mark.parametrize("choice,param,rule", [
    ("bogus", "tool_choice", None), (3, "tool_choice", None), ({"type": "web_search"}, "tool_choice", None),
    ({"function": {"name": "f"}}, "tool_choice", None),
    ({"type": "function"}, "tool_choice.function.name", "is required"),
    ({"type": "function", "function": "f"}, "tool_choice.function.name", "is required"),
    ({"type": "function", "function": {"name": 1}}, "tool_choice.function.name", "is required"),
    ({"type": "function", "function": {"name": ""}}, "tool_choice.function.name", "is required"),
    ({"type": "allowed_tools"}, "tool_choice.allowed_tools.mode", "must be 'auto' or 'required'"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}}, "tool_choice.allowed_tools.mode",
     "must be 'auto' or 'required'"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}, "tool_choice.allowed_tools.tools", "ALLOWED"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": {"type": "function"}}},
     "tool_choice.allowed_tools.tools", "ALLOWED"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "f"}}, {"type": "custom", "function": {"name": "g"}}]}},
     "tool_choice.allowed_tools.tools", "ALLOWED"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": "f"}]}},
     "tool_choice.allowed_tools.tools", "ALLOWED"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {}}]}},
     "tool_choice.allowed_tools.tools", "ALLOWED"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": ["f"]}},
     "tool_choice.allowed_tools.tools", "ALLOWED"),
])
def test_a_bad_tool_choice_is_a_400_naming_where_it_is(choice: Any, param: str, rule: str | None) -> None:
    rule = {None: "must be 'none', 'auto', 'required', {\"type\": \"function\", \"function\": {\"name\": ...}} or "
                  "{\"type\": \"allowed_tools\", ...}",
            "ALLOWED": 'must be an array of {"type": "function", "function": {"name"}}'}.get(rule, rule)
    assert refused(tool_choice=choice) == (param, f"{param}: {rule}")


@pytest.mark.parametrize("stop", ["END", ["a", "b", "c", "d"], ["x"]])
def test_stop_is_read_as_a_string_or_up_to_four_strings_and_then_refused_on_the_native_model(stop: Any) -> None:
    assert request(stop=stop).stop == stop
    assert refused(stop=stop) == ("stop", "stop: is not supported on this model (only [], which changes nothing, "
                                          "is accepted)")


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], [1], "x y".split() + [None], 5, {"a": 1}])
def test_any_other_stop_is_a_400_naming_it(stop: Any) -> None:
    assert refused(stop=stop) == ("stop", "stop: must be a string or an array of up to 4 strings")


def test_stop_at_its_no_op_values_changes_nothing() -> None:
    for stop in ("", [], None):
        assert native(stop=stop) == native()


# -- what a native model is sent ------------------------------------------------------------------------------

def test_max_tokens_and_max_completion_tokens_are_one_limit() -> None:
    assert native(max_tokens=7)["completionOptions"] == {"maxTokens": "7"}
    assert native(max_completion_tokens=9)["completionOptions"] == {"maxTokens": "9"}
    assert native(max_tokens=5, max_completion_tokens=5)["completionOptions"] == {"maxTokens": "5"}
    assert refused(max_tokens=5, max_completion_tokens=6) == (
        "max_tokens", "max_tokens: set only one of max_tokens and max_completion_tokens")
    assert "completionOptions" not in native()


def test_roles_map_and_a_developer_message_is_a_system_one() -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "developer", "content": "d", "name": "x"},
                {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert native(messages=messages)["messages"] == [
        {"role": "system", "text": "s"}, {"role": "system", "text": "d"}, {"role": "user", "text": "u"},
        {"role": "assistant", "text": "a"}]


def test_a_refusal_counts_as_an_assistants_text_only_when_it_has_none() -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "said", "refusal": "no"},
                {"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "refusal", "refusal": "y"}]},
                {"role": "assistant", "content": "", "refusal": "r"}]
    assert [m.get("text") for m in native(messages=messages)["messages"]] == ["q", "said", "xy", "r"]


@pytest.mark.parametrize("messages,param,kind", [
    ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]}],
     "messages[0].content[1]", "image_url"),
    ([{"role": "user", "content": [{"type": "refusal", "refusal": "r"}]}], "messages[0].content[0]", "refusal"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "refusal", "refusal": 5}]}],
     "messages[1].content[0]", "refusal"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "refusal"}]}],
     "messages[1].content[0]", "refusal"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c", "content": [{"type": "input_audio", "input_audio": {}}]}],
     "messages[2].content[0]", "input_audio"),
])
def test_a_part_the_model_cannot_read_is_a_400_naming_it(messages: list[Any], param: str, kind: str) -> None:
    assert refused(messages=messages) == (param, f"{param}: a {kind!r} part is not supported: this model takes text "
                                                 "parts only")


@pytest.mark.parametrize("legacy,value", [("function_call", {"name": "f", "arguments": "{}"}),
                                          ("audio", {"id": "audio_1"})])
def test_a_legacy_assistant_field_is_a_400_naming_the_message(legacy: str, value: Any) -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", legacy: value}]
    assert refused(messages=messages) == (f"messages[1].{legacy}",
                                          f"messages[1].{legacy}: is not supported on this model")


def test_tool_calls_and_results_are_located_by_message_and_call() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    bad = {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "nope"}}
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call, bad]}]
    param, _ = refused(messages=messages)
    assert param == "messages[1].tool_calls[1].function.arguments"
    again = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "c1", "content": "1"},
             {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert refused(messages=again)[0] == "messages[3].tool_calls[0].id"
    unknown = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c9", "content": "1"}]
    assert refused(messages=unknown)[0] == "messages[2].tool_call_id"
    answered = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "4"}]}]
    assert native(messages=answered)["messages"][1:] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [{"functionCall": {"name": "f", "arguments": {}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "f", "content": "4"}}]}}]


TOOLS = [{"type": "function", "function": {"name": "f", "description": None, "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "g"}}]


def test_tools_and_a_choice_naming_one_of_them_reach_the_model() -> None:
    sent = native(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "g"}}, parallel_tool_calls=False)
    assert sent["tools"] == [{"function": {"name": "f", "parameters": {"type": "object"}}}, {"function": {"name": "g"}}]
    assert sent["toolChoice"] == {"functionName": "g"} and sent["parallelToolCalls"] is False
    sent = native(tools=TOOLS, tool_choice="auto")
    assert sent["tools"] == [{"function": {"name": "f", "parameters": {"type": "object"}}}, {"function": {"name": "g"}}]
    allowed = native(tools=TOOLS, tool_choice={"type": "allowed_tools", "allowed_tools": {
        "mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]}})
    assert [t["function"]["name"] for t in allowed["tools"]] == ["f"] and allowed["toolChoice"] == {"mode": "AUTO"}


def test_a_choice_naming_a_tool_not_offered_is_a_400_naming_where() -> None:
    assert refused(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "h"}})[0] == \
        "tool_choice.function.name"
    assert refused(tools=TOOLS, tool_choice={"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "h"}}]}})[0] == \
        "tool_choice.allowed_tools.tools"


def test_response_formats_reach_the_model() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert native(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})[
        "jsonSchema"] == {"schema": schema}
    assert native(response_format={"type": "json_object"})["jsonObject"] is True
    assert set(native(response_format={"type": "text"})) == {"modelUri", "messages"}


def test_options_reach_the_model() -> None:
    assert native(temperature=0.5, stream=True, reasoning_effort="none")["completionOptions"] == {
        "stream": True, "temperature": 0.5, "reasoningOptions": {"mode": "DISABLED"}}


# -- create: a native model -----------------------------------------------------------------------------------

def test_a_native_answer_is_a_chat_completion_and_upstream_got_the_native_body(
        stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    reply, inv = create(temperature=0.2, max_tokens=50, user="u1", seed=3)
    assert reply.status == 200 and not reply.sse
    completion = ChatCompletion.model_validate(reply.body)
    assert completion.id.startswith("chatcmpl-") and len(completion.id) > len("chatcmpl-") + 8
    assert completion.created == int(clock.now()) and completion.model == URI
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content and completion.choices[0].message.role == "assistant"
    [call] = upstream(stack_env)
    assert call["body"] == {"modelUri": URI, "messages": [{"role": "user", "text": "hi there"}],
                            "completionOptions": {"temperature": 0.2, "maxTokens": "50"}}
    usage = reply.body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert inv.log_fields["model"] == URI and inv.log_fields["attempts"] == 1
    assert inv.log_fields["upstream_request_id"]
    assert (inv.log_fields["input_tokens"], inv.log_fields["completion_tokens"], inv.log_fields["total_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
    assert inv.log_fields["reasoning_tokens"] == 0
    other, _ = create()
    assert other.body["id"] != reply.body["id"]


def test_reasoning_tokens_reach_the_log_fields(stack_env: Emulator) -> None:
    reply, inv = create(reasoning_effort="high")
    assert reply.body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2  # "hi there"
    assert inv.log_fields["reasoning_tokens"] == 2
    assert upstream(stack_env)[0]["body"]["completionOptions"] == {"reasoningOptions": {"mode": "ENABLED_HIDDEN"}}


def test_a_retried_answer_says_how_many_attempts_it_took(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=503, count=1)
    reply, inv = create()
    assert reply.status == 200 and inv.log_fields["attempts"] == 2 and len(upstream(stack_env)) == 2


def test_a_native_stream_is_chunks_then_done_with_usage_when_asked(stack_env: Emulator, clock: ManualClock) -> None:
    reply, inv = create(stream=True, stream_options={"include_usage": True})
    assert reply.sse and reply.body[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(event) for event in reply.body[:-1]]
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert all(c.created == int(clock.now()) and c.model == URI for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert inv.log_fields["total_tokens"] == chunks[-1].usage.total_tokens > 0
    assert upstream(stack_env)[0]["body"]["completionOptions"] == {"stream": True}
    plain, inv = create(stream=True)
    assert all(c.get("usage", None) is None for c in plain.body[:-1] if isinstance(c, dict))
    assert inv.log_fields["total_tokens"] > 0  # our log has it even when the caller did not ask


def test_an_upstream_answer_without_a_result_is_a_502_carrying_its_request_id(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", status=200, shape="status", count=1)
    with pytest.raises(errors.UpstreamError) as caught:
        create()
    assert caught.value.status == 502 and caught.value.message == "upstream completion answer has no result object"
    assert caught.value.upstream_request_id


def test_payload_logging_logs_the_messages_and_the_result_only_when_asked(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    create()
    assert "completion payload" not in log_output.getvalue()
    monkeypatch.setenv("LOG_PAYLOADS", "true")
    reset_caches()
    reply, _ = create()
    [line] = [json.loads(line) for line in log_output.getvalue().splitlines() if "completion payload" in line]
    assert line["msg"] == "completion payload"
    assert line["messages"] == [{"role": "user", "text": "hi there"}]
    assert line["result"]["alternatives"][0]["message"]["text"] == reply.body["choices"][0]["message"]["content"]


def test_a_model_that_cannot_be_used_is_refused_naming_model(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.BadRequestError) as bad:
        create(model="not a model")
    assert bad.value.message.startswith("model: ") and "modelUri" not in bad.value.message
    assert bad.value.to_openai_body()["error"]["param"] == "model"
    assert all(d.get("field") != "modelUri" for d in bad.value.details)
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt-lite")
    reset_caches()
    with pytest.raises(errors.ForbiddenError) as forbidden:
        create()
    assert forbidden.value.message.startswith("model: ") and forbidden.value.status == 403
    assert create(model="yandexgpt-lite")[1].log_fields["model"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert upstream(stack_env) and all(c["body"]["modelUri"].endswith("/yandexgpt-lite/latest")
                                       for c in upstream(stack_env))


def test_a_model_given_by_full_uri_and_a_short_name_with_version(stack_env: Emulator) -> None:
    assert create(model=f"gpt://{FOLDER}/yandexgpt/rc")[0].body["model"] == f"gpt://{FOLDER}/yandexgpt/rc"
    assert create(model="yandexgpt-lite/rc")[0].body["model"] == f"gpt://{FOLDER}/yandexgpt-lite/rc"


# -- create: a pass-through model -----------------------------------------------------------------------------

def test_a_pass_through_model_gets_the_callers_body_in_its_folders_project(stack_env: Emulator) -> None:
    reply, inv = create(model="gpt-oss-20b", temperature=1.5, n=1, seed=4, stop="END", max_tokens=20)
    [call] = upstream(stack_env, "/v1/chat/completions")
    assert call["body"] == {"model": OSS, "messages": HI, "temperature": 1.5, "n": 1, "seed": 4, "stop": "END",
                            "max_tokens": 20}
    assert call["project"] == FOLDER and not upstream(stack_env)
    completion = ChatCompletion.model_validate(reply.body)
    assert completion.model == OSS and reply.body["id"].startswith("chatcmpl-") and not reply.sse
    assert "via the OpenAI API" in completion.choices[0].message.content
    assert inv.log_fields["passthrough"] is True and inv.log_fields["model"] == OSS
    assert inv.log_fields["total_tokens"] == completion.usage.total_tokens > 0
    assert inv.log_fields["input_tokens"] == completion.usage.prompt_tokens
    assert inv.log_fields["attempts"] == 1 and inv.log_fields["upstream_request_id"]
    assert inv.log_fields["reasoning_tokens"] is None


def test_a_pass_through_model_is_one_the_deployment_adds(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_OPENAI_PASSTHROUGH_MODELS", "yandexgpt-lite")
    reset_caches()
    reply, _ = create(model="yandexgpt-lite")
    assert upstream(stack_env, "/v1/chat/completions")[0]["body"]["model"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert "via the OpenAI API" in reply.body["choices"][0]["message"]["content"]


def test_a_pass_through_stream_keeps_the_usage_chunk_from_a_caller_who_did_not_ask(stack_env: Emulator) -> None:
    reply, inv = create(model="gpt-oss-20b", stream=True, stream_options={"include_obfuscation": False})
    [call] = upstream(stack_env, "/v1/chat/completions")
    assert call["body"]["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert reply.sse and reply.body[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(event) for event in reply.body[:-1]]
    assert all(chunk.choices for chunk in chunks) and all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("[emulated gpt-oss-20b")
    assert inv.log_fields["total_tokens"] > 0 and inv.log_fields["passthrough"] is True


def test_a_pass_through_stream_without_stream_options_asks_for_usage_too(stack_env: Emulator) -> None:
    reply, inv = create(model="gpt-oss-20b", stream=True)
    assert upstream(stack_env, "/v1/chat/completions")[0]["body"]["stream_options"] == {"include_usage": True}
    assert all('"usage"' not in event for event in reply.body) and inv.log_fields["total_tokens"] > 0


def test_a_pass_through_stream_gives_the_usage_chunk_to_a_caller_who_asked(stack_env: Emulator) -> None:
    reply, inv = create(model="gpt-oss-20b", stream=True, stream_options={"include_usage": True})
    assert upstream(stack_env, "/v1/chat/completions")[0]["body"]["stream_options"] == {"include_usage": True}
    last = ChatCompletionChunk.model_validate_json(reply.body[-2])
    assert last.choices == [] and last.usage is not None and reply.body[-1] == "[DONE]"
    assert inv.log_fields["total_tokens"] == last.usage.total_tokens
    assert inv.log_fields["input_tokens"] == last.usage.prompt_tokens
    assert inv.log_fields["completion_tokens"] == last.usage.completion_tokens
    assert sum(1 for event in reply.body if '"usage"' in event) == 1


def test_a_pass_through_without_a_stream_sends_no_stream_options(stack_env: Emulator) -> None:
    create(model="gpt-oss-20b", stream=False)
    assert upstream(stack_env, "/v1/chat/completions")[0]["body"] == {"model": OSS, "messages": HI, "stream": False}


def test_a_pass_through_stream_with_no_events_is_a_502(stack_env: Emulator) -> None:
    stack_env.fault(path="/v1/chat/completions", status=200, shape="openai", count=1)
    with pytest.raises(errors.UpstreamError) as caught:
        create(model="gpt-oss-20b", stream=True)
    assert caught.value.status == 502 and caught.value.message == "upstream answered the stream with no events"
    assert caught.value.upstream_request_id


def test_a_pass_through_model_gets_a_json_schema_format_under_its_wire_name(stack_env: Emulator) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    create(model="gpt-oss-20b", response_format=fmt)
    assert upstream(stack_env, "/v1/chat/completions")[0]["body"]["response_format"] == fmt


def sse(*events: Any) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return {"id": "chatcmpl-u", "object": "chat.completion.chunk", "created": 1, "model": OSS, "choices": choices,
            **extra}


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_a_pass_through_stream_cut_before_done_ends_in_an_error_event(stack_env: Emulator) -> None:
    stack_env.fault(path="/v1/chat/completions", kind="answer", contentType="text/event-stream",
                    data=sse(chunk("a"), chunk("b")), count=1)
    reply, _ = create(model="gpt-oss-20b", stream=True)
    assert [json.loads(e) for e in reply.body[:2]] == [chunk("a"), chunk("b")]
    assert reply.body[2:] == [{"error": {"message": "upstream's event stream ended before [DONE]",
                                         "type": "server_error", "param": None, "code": "unknown"}}]


def test_a_pass_through_stream_that_ends_in_upstreams_error_is_passed_on_as_it_came(stack_env: Emulator) -> None:
    failure = {"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}}
    stack_env.fault(path="/v1/chat/completions", kind="answer", contentType="text/event-stream",
                    data=sse(chunk("a"), chunk("b"), failure), count=1)
    reply, _ = create(model="gpt-oss-20b", stream=True, stream_options={"include_usage": True})
    assert [json.loads(e) for e in reply.body] == [chunk("a"), chunk("b"), failure]


def test_chunks_that_carry_a_null_usage_are_kept_and_the_usage_chunk_is_logged(stack_env: Emulator) -> None:
    """As OpenAI streams with include_usage: every chunk says "usage": null, one chunk without choices has it."""
    events = [chunk("a", usage=None), chunk(None, usage=USAGE), chunk("", usage=None), ["usage"], "[DONE]"]
    stack_env.fault(path="/v1/chat/completions", kind="answer", contentType="text/event-stream",
                    data=sse(*events), count=1)
    reply, inv = create(model="gpt-oss-20b", stream=True)  # the caller did not ask for usage
    assert [json.loads(e) if e != "[DONE]" else e for e in reply.body] == [
        chunk("a", usage=None), chunk("", usage=None), ["usage"], "[DONE]"]
    assert (inv.log_fields["input_tokens"], inv.log_fields["total_tokens"]) == (3, 5)


def test_a_pass_through_answer_that_is_not_an_object_is_a_502(stack_env: Emulator) -> None:
    stack_env.fault(path="/v1/chat/completions", kind="answer", data="[1, 2]", count=1)
    with pytest.raises(errors.UpstreamError) as caught:
        create(model="gpt-oss-20b")
    assert caught.value.status == 502 and caught.value.message == "upstream chat answer is not a JSON object"
    assert caught.value.upstream_request_id


def test_a_tool_result_takes_text_parts_only(stack_env: Emulator) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c", "content": [{"type": "refusal", "refusal": "no"}]}]
    assert refused(messages=messages) == ("messages[2].content[0]", "messages[2].content[0]: a 'refusal' part is "
                                                                    "not supported: this model takes text parts only")


@pytest.mark.parametrize("mode,native_mode", [("auto", "AUTO"), ("required", "REQUIRED"), ("none", "NONE")])
def test_a_tool_choice_mode_reaches_the_model(mode: str, native_mode: str) -> None:
    assert native(tools=TOOLS, tool_choice=mode)["toolChoice"] == {"mode": native_mode}


def test_required_without_tools_is_a_400_naming_tool_choice() -> None:
    assert refused(tool_choice="required") == ("tool_choice", "tool_choice: 'required' needs tools")


def test_the_caller_keys_models_are_the_only_ones_it_may_use(stack_env: Emulator) -> None:
    key = KeyPolicy(name="k1", models=("yandexgpt-lite",))
    with pytest.raises(errors.ForbiddenError) as forbidden:
        create(invocation(key))
    assert forbidden.value.message == "model: model 'yandexgpt' is not allowed for this key"
    assert forbidden.value.to_openai_body()["error"]["param"] == "model" and not stack_env.calls()
    assert create(invocation(key), model="yandexgpt-lite")[0].body["model"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"


def test_only_the_fields_name_changes_in_a_model_error_not_the_callers_words(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt")
    reset_caches()
    with pytest.raises(errors.ForbiddenError) as forbidden:
        create(model="modelUri")
    assert forbidden.value.message == "model: model 'modelUri' is not allowed here (FM_ALLOWED_MODELS)"
    monkeypatch.delenv("YC_FOLDER_ID")
    reset_caches()
    with pytest.raises(errors.BadRequestError) as bad:
        create(model="modelUri")
    assert bad.value.message == ("model: short model name 'modelUri' needs YC_FOLDER_ID on the server; send a full "
                                 "gpt:// URI")


def _verdict(schema: dict[str, Any], ref: str, value: Any) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"}).is_valid(value)


def _accepted(model: type, value: Any) -> bool:
    try:
        validate(model, value)
    except errors.BadRequestError:
        return False
    return True


CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize("message", [
    {"role": "user", "content": "x"}, {"role": "system", "content": [{"type": "text", "text": "s"}]},
    {"role": "developer", "content": "d", "tool_calls": None, "tool_call_id": None},
    {"role": "assistant", "content": "a"}, {"role": "assistant", "tool_calls": [CALL]},
    {"role": "assistant", "content": None, "refusal": "no"}, {"role": "assistant", "function_call": {"name": "f"}},
    {"role": "assistant", "audio": {"id": "a1"}}, {"role": "assistant", "content": "a", "tool_calls": None},
    {"role": "tool", "tool_call_id": "c", "content": "r"},
    {"role": "user"}, {"role": "user", "content": None}, {"role": "system", "content": "s", "tool_call_id": "c"},
    {"role": "user", "content": "x", "tool_calls": [CALL]}, {"role": "assistant"},
    {"role": "assistant", "content": None, "tool_calls": []}, {"role": "assistant", "content": "a", "tool_call_id": "c"},
    {"role": "tool", "content": "r"}, {"role": "tool", "tool_call_id": "", "content": "r"},
    {"role": "tool", "tool_call_id": None, "content": "r"}, {"role": "tool", "tool_call_id": "c"},
    {"role": "tool", "tool_call_id": "c", "content": "r", "tool_calls": [CALL]},
])
def test_the_spec_states_the_message_rules_the_validator_enforces(message: dict[str, Any]) -> None:
    schema = chat.ChatCompletionRequest.model_json_schema()
    assert _verdict(schema, "ChatMessage", message) == _accepted(chat.ChatMessage, message)


@pytest.mark.parametrize("fmt", [
    {"type": "text"}, {"type": "json_object", "json_schema": None}, {"type": "json_schema", "json_schema": {"name": "x"}},
    {"type": "json_schema"}, {"type": "json_schema", "json_schema": None}, {"type": "text", "json_schema": {"name": "x"}},
])
def test_the_spec_states_the_response_format_rule_the_validator_enforces(fmt: dict[str, Any]) -> None:
    schema = chat.ChatCompletionRequest.model_json_schema()
    assert _verdict(schema, "ResponseFormat", fmt) == _accepted(chat.ResponseFormat, fmt)


def test_a_model_uri_with_another_scheme_mark_later_is_sent_as_given_never_a_500(stack_env: Emulator) -> None:
    odd = f"gpt://{FOLDER}/yandexgpt/latest://x"
    assert create(model=odd)[0].body["model"] == odd
    # the name is the URI's second segment, whole: 'gpt-oss-20b:' is no pass-through model
    named = f"gpt://{FOLDER}/gpt-oss-20b://x/latest"
    create(model=named)
    assert [call["body"]["modelUri"] for call in upstream(stack_env)] == [odd, named]
    assert not upstream(stack_env, "/v1/chat/completions")
