"""POST /v1/chat/completions through the local gateway, driven by the real `openai` client and LangChain's
ChatOpenAI, against the emulator; what went upstream is read back from the emulator's call log."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.conftest import API_KEY, FOLDER, Api, Emulator, reset_caches

pytestmark = pytest.mark.integration

CALLER_KEY = "fmk_chat-test-caller-key-0123456789abcdef"
COMPLETION = "/foundationModels/v1/completion"
OPENAI_CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "Name three rivers in Russia."}]
IMAGE = "data:image/png;base64,AA=="

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluates an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


def client(api: Api, **options: Any) -> OpenAI:
    return OpenAI(base_url=api.url + "/v1", api_key=CALLER_KEY, max_retries=options.pop("max_retries", 0), **options)


def upstream(emulator: Emulator, path: str = COMPLETION) -> list[dict[str, Any]]:
    """The bodies that reached the emulator on `path`, in order."""
    return [call["body"] for call in emulator.calls(path)]


# -- plain chat --

def test_plain_chat_is_a_chat_completion_and_the_native_body_on_the_wire(api: Api, emulator: Emulator) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *USER]
    response = client(api).chat.completions.with_raw_response.create(model="yandexgpt-lite", messages=messages)
    completion = response.parse()
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert abs(completion.created - time.time()) < 600
    choice = completion.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith("[emulated yandexgpt-lite]") and choice.message.tool_calls is None
    usage = completion.usage
    assert all(isinstance(n, int) for n in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    assert response.headers["x-request-id"] and completion._request_id == response.headers["x-request-id"]
    assert upstream(emulator) == [{"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest",
                                   "messages": [{"role": "system", "text": "You are terse."},
                                                {"role": "user", "text": USER[0]["content"]}]}]
    assert emulator.calls(COMPLETION)[0]["auth"] == "Api-Key"  # our credentials upstream, never the caller's key


def test_full_uri_and_every_mapped_option_reach_the_native_body(api_v01: Api, emulator: Emulator) -> None:
    chat = client(api_v01).chat.completions
    uri = f"gpt://{FOLDER}/yandexgpt/rc"
    completion = chat.create(model=uri, messages=USER, temperature=0.6, max_tokens=500, reasoning_effort="low",
                             n=1, logprobs=False, user="alice", seed=7, metadata={"k": "v"}, store=False)
    assert completion.model == uri
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0  # reasoning was on
    chat.create(model=uri, messages=USER, max_completion_tokens=100, reasoning_effort="none", temperature=0)
    first, second = upstream(emulator)
    assert first == {"modelUri": uri, "messages": [{"role": "user", "text": USER[0]["content"]}],
                     "completionOptions": {"temperature": 0.6, "maxTokens": "500",
                                           "reasoningOptions": {"mode": "ENABLED_HIDDEN"}}}
    assert second["completionOptions"] == {"temperature": 0, "maxTokens": "100",
                                           "reasoningOptions": {"mode": "DISABLED"}}


def test_text_parts_are_joined_and_developer_is_system(api_v01: Api, emulator: Emulator) -> None:
    messages = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
                {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "And again", "name": "alice"}]
    client(api_v01).chat.completions.create(model="yandexgpt-lite", messages=messages)
    assert upstream(emulator)[0]["messages"] == [{"role": "system", "text": "Be brief."},
                                                 {"role": "user", "text": "Hello, world"},
                                                 {"role": "assistant", "text": "Hi."},
                                                 {"role": "user", "text": "And again"}]


def test_a_non_text_part_is_a_400_naming_it(api_v01: Api, emulator: Emulator) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": IMAGE}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        client(api_v01).chat.completions.create(model="yandexgpt-lite", messages=messages)
    assert caught.value.param == "messages[0].content[1]"
    assert "'image_url' part is not supported" in caught.value.message
    assert caught.value.type == "invalid_request_error"
    assert emulator.calls() == []


# -- streaming --

def test_stream_sends_deltas_that_add_up_to_the_whole_answer(api: Api, emulator: Emulator) -> None:
    chat = client(api).chat.completions
    whole = chat.create(model="yandexgpt-lite", messages=USER).choices[0].message.content
    chunks = list(chat.create(model="yandexgpt-lite", messages=USER, stream=True,
                              stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == whole
    assert len([d for d in deltas if d.content]) >= 2  # really in pieces, not one cumulative text
    assert [d.role for d in deltas] == ["assistant"] + [None] * (len(deltas) - 1)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id} and all(c.object == "chat.completion.chunk" for c in chunks)
    assert upstream(emulator)[1]["completionOptions"] == {"stream": True}


def test_stream_body_is_one_event_stream_ending_in_done(api_v01: Api) -> None:
    response = api_v01.post(OPENAI_CHAT, {"model": "yandexgpt-lite", "messages": USER, "stream": True})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert all(block.startswith("data: ") and "\n" not in block for block in events)
    assert events[-1] == "data: [DONE]"
    assert "usage" not in json.loads(events[0][6:])  # no usage chunk or field unless asked for


def test_a_stream_failing_midway_ends_in_an_error_event(api_v01: Api, emulator: Emulator) -> None:
    emulator.fault(path=COMPLETION, kind="midstream", message="the model went away")
    stream = client(api_v01).chat.completions.create(model="yandexgpt-lite", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)  # an error event, not an HTTP status
    assert "the model went away" in caught.value.message
    assert received and received[0].choices[0].delta.role == "assistant"


def test_a_stream_refused_before_any_content_is_an_http_error(api_v01: Api, emulator: Emulator) -> None:
    emulator.fault(path=COMPLETION, status=400, message="prompt is too long")
    with pytest.raises(openai.BadRequestError) as caught:
        list(client(api_v01).chat.completions.create(model="yandexgpt-lite", messages=USER, stream=True))
    assert "prompt is too long" in caught.value.message


# -- truncation and JSON answers --

def test_max_tokens_truncation_finishes_with_length(api_v01: Api) -> None:
    chat = client(api_v01).chat.completions
    completion = chat.create(model="yandexgpt-lite", messages=USER, max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert len(completion.choices[0].message.content.split()) == 3
    chunks = list(chat.create(model="yandexgpt-lite", messages=USER, max_completion_tokens=3, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]


class City(BaseModel):
    name: str
    population: int
    rivers: list[str]


def test_json_schema_answers_fit_the_schema(api_v01: Api, emulator: Emulator) -> None:
    chat = client(api_v01).chat.completions
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
              "required": ["city", "temperature"], "additionalProperties": False}
    completion = chat.create(model="yandexgpt-lite", messages=[{"role": "user", "content": "Weather in Kazan?"}],
                             response_format={"type": "json_schema",
                                              "json_schema": {"name": "weather", "schema": schema, "strict": True}})
    answer = json.loads(completion.choices[0].message.content)
    assert set(answer) == {"city", "temperature"} and answer["city"] == "Kazan"
    parsed = chat.parse(model="yandexgpt-lite", messages=[{"role": "user", "content": "Describe Moscow"}],
                        response_format=City).choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.name == "Moscow"
    bodies = upstream(emulator)
    assert bodies[0]["jsonSchema"] == {"schema": schema} and "jsonObject" not in bodies[0]
    assert bodies[1]["jsonSchema"]["schema"]["required"] == ["name", "population", "rivers"]


def test_a_schema_upstream_cannot_use_is_its_400_not_a_5xx(api_v01: Api) -> None:
    node = {"type": "object", "properties": {"next": {"$ref": "#"}, "size": {"type": "integer", "minimum": "big"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client(api_v01).chat.completions.create(
            model="yandexgpt-lite", messages=USER,
            response_format={"type": "json_schema", "json_schema": {"name": "node", "schema": node}})
    assert "jsonSchema.schema is not a usable JSON Schema" in caught.value.message


def test_json_object_answers_are_a_json_object(api_v01: Api, emulator: Emulator) -> None:
    completion = client(api_v01).chat.completions.create(
        model="yandexgpt-lite", messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"})
    assert isinstance(json.loads(completion.choices[0].message.content), dict)
    assert upstream(emulator)[0]["jsonObject"] is True


# -- tools --

def test_two_round_tool_conversation(api: Api, emulator: Emulator) -> None:
    chat = client(api).chat.completions
    messages: list[Any] = [{"role": "system", "content": "Use the tools."},
                           {"role": "user", "content": "What is the weather in Paris? And calculate 12 * 7."}]
    first = chat.create(model="yandexgpt", messages=messages, tools=[WEATHER, CALCULATOR])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "calculator"]
    assert len({c.id for c in calls}) == 2 and all(c.type == "function" for c in calls)
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert json.loads(calls[1].function.arguments) == {"expression": "12 * 7"}
    results = {"get_weather": "Sunny, 21 C", "calculator": "84"}
    messages.append(choice.message)
    messages += [{"role": "tool", "tool_call_id": c.id, "content": results[c.function.name]} for c in calls]
    second = chat.create(model="yandexgpt", messages=messages, tools=[WEATHER, CALCULATOR])
    assert second.choices[0].finish_reason == "stop"
    assert "get_weather returned Sunny, 21 C" in second.choices[0].message.content
    assert "calculator returned 84" in second.choices[0].message.content
    round_one, round_two = upstream(emulator)
    assert round_one["tools"] == [{"function": WEATHER["function"]}, {"function": CALCULATOR["function"]}]
    assert "toolChoice" not in round_one and "parallelToolCalls" not in round_one
    assert round_two["messages"][2:] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"functionCall": {"name": "calculator", "arguments": {"expression": "12 * 7"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "get_weather", "content": "Sunny, 21 C"}},
            {"functionResult": {"name": "calculator", "content": "84"}}]}}]


def test_tool_choice_none_answers_in_text(api_v01: Api, emulator: Emulator) -> None:
    completion = client(api_v01).chat.completions.create(
        model="yandexgpt", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER], tool_choice="none")
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.tool_calls is None
    assert upstream(emulator)[0]["toolChoice"] == {"mode": "NONE"}


def test_named_and_required_tool_choice_and_parallel_calls(api_v01: Api, emulator: Emulator) -> None:
    chat = client(api_v01).chat.completions
    ask = [{"role": "user", "content": "Weather in Paris, and calculate 1 + 1"}]
    named = chat.create(model="yandexgpt", messages=ask, tools=[WEATHER, CALCULATOR],
                        tool_choice={"type": "function", "function": {"name": "calculator"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["calculator"]
    one = chat.create(model="yandexgpt", messages=ask, tools=[WEATHER, CALCULATOR], parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls) == 1
    required = chat.create(model="yandexgpt", messages=[{"role": "user", "content": "Hello"}], tools=[WEATHER],
                           tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls"
    bodies = upstream(emulator)
    assert bodies[0]["toolChoice"] == {"functionName": "calculator"}
    assert bodies[1]["parallelToolCalls"] is False
    assert bodies[2]["toolChoice"] == {"mode": "REQUIRED"}


def test_streamed_tool_calls_carry_an_index(api_v01: Api) -> None:
    chunks = list(client(api_v01).chat.completions.create(
        model="yandexgpt", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER], stream=True))
    calls = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == \
        [(0, "get_weather", {"city": "Oslo"})]
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]


def test_a_tool_result_for_an_unknown_call_id_is_a_400(api_v01: Api, emulator: Emulator) -> None:
    messages = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client(api_v01).chat.completions.create(model="yandexgpt", messages=messages, tools=[WEATHER])
    assert caught.value.param == "messages[2].tool_call_id" and "'call_2'" in caught.value.message
    assert emulator.calls() == []


# -- errors, as the client's exception classes --

@pytest.mark.parametrize("options,param", [
    ({"temperature": 1.5}, "temperature"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"stop": ["\n"]}, "stop"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"top_p": 0.9}, "top_p"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}, "tools": [WEATHER]},
     "tool_choice.function.name"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"model": "gpt:/ broken"}, "model"),
])
def test_what_cannot_be_honoured_is_a_400_naming_the_parameter(api_v01: Api, emulator: Emulator,
                                                               options: dict[str, Any], param: str) -> None:
    arguments = {"model": "yandexgpt-lite", "messages": USER, **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client(api_v01).chat.completions.create(**arguments)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert caught.value.message.startswith(f"Error code: 400 - {param}: ")
    assert emulator.calls() == []


def test_a_model_outside_the_allow_list_is_permission_denied(api_v01: Api, emulator: Emulator,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt-lite")
    reset_caches()
    chat = client(api_v01).chat.completions
    assert chat.create(model="yandexgpt-lite", messages=USER).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat.create(model="yandexgpt", messages=USER)
    assert caught.value.param == "model" and "model 'yandexgpt' is not allowed" in caught.value.message
    with pytest.raises(openai.PermissionDeniedError):
        chat.create(model="gpt-oss-20b", messages=USER)  # pass-through models too
    assert len(emulator.calls()) == 1


def test_upstream_not_found_and_unauthenticated_map_to_the_client_classes(api_v01: Api, emulator: Emulator) -> None:
    chat = client(api_v01).chat.completions
    emulator.fault(path=COMPLETION, status=404, message="model not found")
    with pytest.raises(openai.NotFoundError) as not_found:
        chat.create(model="yandexgpt-lite", messages=USER)
    assert "model not found" in not_found.value.message and not_found.value.type == "not_found_error"
    emulator.configure(apiKeys=["some-other-key"])
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        chat.create(model="yandexgpt-lite", messages=USER)
    assert unauthenticated.value.type == "authentication_error"


def test_rate_limit_carries_retry_after_and_the_client_honours_it(api_v01: Api, emulator: Emulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")  # pass upstream's 429 straight on
    reset_caches()
    emulator.fault(path=COMPLETION, status=429, retryAfter=2, count=2)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client(api_v01, max_retries=1).chat.completions.create(model="yandexgpt-lite", messages=USER)
    assert time.monotonic() - started >= 2.0  # the one retry waited Retry-After, not the client's 0.5 s backoff
    assert caught.value.response.headers["retry-after"] == "2"
    assert len(emulator.calls(COMPLETION)) == 2


# -- models served only in upstream's OpenAI mode --

def test_pass_through_models_go_to_upstreams_openai_mode(api: Api, emulator: Emulator) -> None:
    chat = client(api).chat.completions
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is in the picture?"},
                                             {"type": "image_url", "image_url": {"url": IMAGE}}]}]
    completion = chat.create(model="gemma-3-27b-it", messages=messages, temperature=1.3, max_tokens=50)
    assert completion.choices[0].message.content.startswith("[emulated gemma-3-27b-it via the OpenAI API]")
    assert completion.usage.total_tokens > 0
    call = emulator.calls(OPENAI_CHAT)[0]
    assert call["body"] == {"model": f"gpt://{FOLDER}/gemma-3-27b-it/latest", "messages": messages,
                            "temperature": 1.3, "max_tokens": 50}
    assert call["project"] == FOLDER and call["auth"] == "Api-Key"
    assert emulator.calls(COMPLETION) == []
    chunks = list(chat.create(model=f"gpt://{FOLDER}/gpt-oss-120b/latest", messages=USER, stream=True,
                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[emulated gpt-oss-120b via the OpenAI API]")
    assert chunks[-1].usage.total_tokens > 0


def test_the_pass_through_list_is_extended_by_a_setting(api_v01: Api, emulator: Emulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_OPENAI_PASSTHROUGH_MODELS", "deepseek-v3, my-tuned-oss")
    reset_caches()
    completion = client(api_v01).chat.completions.create(model="deepseek-v3", messages=USER)
    assert "via the OpenAI API" in completion.choices[0].message.content
    client(api_v01).chat.completions.create(model="qwen3-235b-a22b-fp8", messages=USER)  # the defaults stay
    assert len(emulator.calls(OPENAI_CHAT)) == 2 and emulator.calls(COMPLETION) == []


def test_pass_through_errors_keep_upstreams_message_and_status(api_v01: Api, emulator: Emulator) -> None:
    emulator.fault(path=OPENAI_CHAT, status=400, message="tool_choice required is not supported")
    with pytest.raises(openai.BadRequestError) as caught:
        client(api_v01).chat.completions.create(model="gpt-oss-20b", messages=USER)
    assert "tool_choice required is not supported" in caught.value.message


# -- LangChain --

def langchain_chat(api: Api, **options: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=options.pop("model", "yandexgpt-lite"), base_url=api.url + "/v1", api_key=CALLER_KEY,
                      max_retries=0, **options)


def test_langchain_invoke_and_stream(api_v01: Api, emulator: Emulator) -> None:
    llm = langchain_chat(api_v01, temperature=0.2, max_tokens=200)
    answer = llm.invoke([("system", "Be terse."), ("human", "Hello there")])
    assert answer.content.startswith("[emulated yandexgpt-lite]")
    assert answer.response_metadata["finish_reason"] == "stop"
    assert answer.usage_metadata["total_tokens"] > 0
    streamed = list(langchain_chat(api_v01, temperature=0.2, max_tokens=200, stream_usage=True)
                    .stream([("system", "Be terse."), ("human", "Hello there")]))
    assert "".join(chunk.content for chunk in streamed) == answer.content
    assert sum((chunk.usage_metadata or {}).get("total_tokens", 0) for chunk in streamed) == \
        answer.usage_metadata["total_tokens"]
    first, second = upstream(emulator)
    assert first["completionOptions"] == {"temperature": 0.2, "maxTokens": "200"}  # LangChain's "stream": false
    assert second["completionOptions"] == {"stream": True, "temperature": 0.2, "maxTokens": "200"}


def test_langchain_bind_tools_two_rounds(api_v01: Api, emulator: Emulator) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"Rainy in {city}"

    @tool
    def calculator(expression: str) -> str:
        """Evaluates an arithmetic expression."""
        return "10"

    llm = langchain_chat(api_v01, model="yandexgpt").bind_tools([get_weather, calculator])
    messages: list[Any] = [HumanMessage("What is the weather in Rome? Then calculate 2 * 5.")]
    reply = llm.invoke(messages)
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Rome"}),
                                                                  ("calculator", {"expression": "2 * 5"})]
    tools = {"get_weather": get_weather, "calculator": calculator}
    messages += [reply] + [ToolMessage(tools[c["name"]].invoke(c["args"]), tool_call_id=c["id"])
                           for c in reply.tool_calls]
    final = llm.invoke(messages)
    assert "get_weather returned Rainy in Rome" in final.content and "calculator returned 10" in final.content
    results = upstream(emulator)[1]["messages"][-1]["toolResultList"]["toolResults"]
    assert [r["functionResult"]["name"] for r in results] == ["get_weather", "calculator"]


class Person(BaseModel):
    name: str
    age: int


def test_langchain_with_structured_output(api_v01: Api, emulator: Emulator) -> None:
    llm = langchain_chat(api_v01)
    person = llm.with_structured_output(Person).invoke("Tell me about Alice, who is 31 years old.")
    assert person == Person(name="Alice", age=31)
    by_tool = llm.with_structured_output(Person, method="function_calling").invoke("Describe Boris, 40")
    assert by_tool == Person(name="Boris", age=40)
    as_json = llm.with_structured_output(None, method="json_mode").invoke("Answer in JSON")
    assert isinstance(as_json, dict)
    schema_call, tool_call, json_call = upstream(emulator)
    assert schema_call["jsonSchema"]["schema"]["properties"].keys() == {"name", "age"}
    assert tool_call["toolChoice"] == {"functionName": "Person"} and tool_call["parallelToolCalls"] is False
    assert json_call["jsonObject"] is True


# -- robustness --

BAD_BODIES: list[Any] = [
    "not json", "", [], {"messages": USER}, {"model": "yandexgpt-lite"}, {"model": "yandexgpt-lite", "messages": []},
    {"model": "yandexgpt-lite", "messages": "hi"}, {"model": "yandexgpt-lite", "messages": [{"role": "user"}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "bot", "content": "x"}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": 5}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": [5]}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "  "}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "assistant"}]},
    {"model": "yandexgpt-lite", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {
        "name": "f", "arguments": "not json"}}]}]},
    {"model": "yandexgpt-lite", "messages": USER, "temperature": "hot"},
    {"model": "yandexgpt-lite", "messages": USER, "temperature": 3},
    {"model": "yandexgpt-lite", "messages": USER, "max_tokens": 1.5},
    {"model": "yandexgpt-lite", "messages": USER, "stream": "yes"},
    {"model": "yandexgpt-lite", "messages": USER, "tools": [{"type": "function"}]},
    {"model": "yandexgpt-lite", "messages": USER, "tools": "all"},
    {"model": "yandexgpt-lite", "messages": USER, "tool_choice": 3},
    {"model": "yandexgpt-lite", "messages": USER, "tool_choice": "required"},
    {"model": "yandexgpt-lite", "messages": USER, "response_format": {"type": "xml"}},
    {"model": "yandexgpt-lite", "messages": USER, "response_format": {"type": "json_schema"}},
    {"model": "yandexgpt-lite", "messages": USER, "functions": [{"name": "f"}]},
    {"model": "yandexgpt-lite", "messages": USER, "audio": {"voice": "alloy", "format": "mp3"}},
    {"model": "yandexgpt-lite", "messages": USER, "max_tokens": 5, "max_completion_tokens": 6},
    {"model": "yandexgpt-lite", "messages": USER, "reasoning_effort": "extreme"},
    {"model": "yandexgpt-lite", "messages": USER, "frobnicate": True},
    {"model": 7, "messages": USER}, {"model": "a b c", "messages": USER},
]


def test_bad_input_is_never_a_5xx_and_always_in_openais_error_shape(api_v01: Api, emulator: Emulator) -> None:
    for body in BAD_BODIES:
        if isinstance(body, str):
            response = api_v01.post(OPENAI_CHAT, data=body.encode(), headers={"Content-Type": "application/json"})
        else:
            response = api_v01.post(OPENAI_CHAT, body)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["type"] == "invalid_request_error" and error["message"], body
    assert emulator.calls() == []


def test_no_caller_key_or_credential_reaches_a_log_line(api_v01: Api, emulator: Emulator, log_output: Any) -> None:
    chat = client(api_v01).chat.completions
    chat.create(model="yandexgpt-lite", messages=USER)
    list(chat.create(model="yandexgpt-lite", messages=USER, stream=True))
    chat.create(model="gpt-oss-20b", messages=USER)
    with pytest.raises(openai.BadRequestError):
        chat.create(model="yandexgpt-lite", messages=[{"role": "user", "content": f"my key is {CALLER_KEY}"}],
                    temperature=5)
    text = log_output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    handled = [line for line in lines if line["msg"] == "request handled"]
    assert [line["operation"] for line in handled] == ["createChatCompletion"] * 3
    assert handled[0]["model"] == f"gpt://{FOLDER}/yandexgpt-lite/latest" and handled[0]["total_tokens"] > 0
    assert handled[2]["passthrough"] is True
    assert CALLER_KEY not in text and API_KEY not in text and "fmk_" not in text
