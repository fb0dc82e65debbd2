"""/v1/responses through the local gateway, driven by the real `openai` client (and LangChain's ChatOpenAI with
use_responses_api), against the emulator and moto's store; what went upstream is read back from the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.conftest import FOLDER, Api, Emulator, Jobs

pytestmark = pytest.mark.integration

COMPLETION = "/foundationModels/v1/completion"
MODEL = "yandexgpt-lite"
URI = f"gpt://{FOLDER}/yandexgpt-lite/latest"
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}
CALCULATOR = {"type": "function", "name": "calculator", "description": "Evaluates an arithmetic expression",
              "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                             "required": ["expression"]}}


@pytest.fixture
def client(api_v01: Api, jobs: Jobs) -> OpenAI:
    return OpenAI(base_url=api_v01.url + "/v1", api_key="local", max_retries=0)


@pytest.fixture
def any_client(api: Api, jobs: Jobs) -> OpenAI:
    """For the tests that run in both payload formats."""
    return OpenAI(base_url=api.url + "/v1", api_key="local", max_retries=0)


def upstream(emulator: Emulator) -> list[dict[str, Any]]:
    return [call["body"] for call in emulator.calls(COMPLETION)]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "text": text}


# -- create --------------------------------------------------------------------------------------------------

def test_a_string_input_is_a_stored_response_and_one_user_message_upstream(any_client: OpenAI,
                                                                           emulator: Emulator) -> None:
    client = any_client
    raw = client.responses.with_raw_response.create(model=MODEL, input="Name three rivers in Russia.",
                                                    instructions="Be terse.", max_output_tokens=500, temperature=0.5,
                                                    metadata={"ticket": "42"})
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == URI and response.instructions == "Be terse." and response.metadata == {"ticket": "42"}
    assert response.store is True and response.background is False and response.error is None
    assert response.max_output_tokens == 500 and response.temperature == 0.5 and response.tools == []
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_") and message.content[0].annotations == []
    assert response.output_text.startswith("[emulated yandexgpt-lite]")
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-request-id"]
    body = json.loads(raw.http_response.text)
    from openai.types.responses import Response

    assert Response.model_validate(body).model_dump() == response.model_dump()  # every field the type requires
    for field in ("completed_at", "incomplete_details", "previous_response_id", "conversation", "reasoning",
                  "parallel_tool_calls", "tool_choice", "top_p", "truncation", "text", "user"):
        assert field in body, field  # strict clients fail on a missing field, so every one is sent
    assert upstream(emulator) == [{"modelUri": URI, "completionOptions": {"temperature": 0.5, "maxTokens": "500"},
                                   "messages": [{"role": "system", "text": "Be terse."},
                                                user("Name three rivers in Russia.")]}]
    assert client.responses.retrieve(response.id).model_dump() == response.model_dump()


def test_item_list_input_roles_and_parts_on_the_wire(client: OpenAI, emulator: Emulator) -> None:
    client.responses.create(model=MODEL, reasoning={"effort": "low"}, input=[
        {"role": "developer", "content": "Answer in English."},
        {"role": "system", "content": [{"type": "input_text", "text": "Be kind."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello, "}, {"type": "input_text", "text": "world"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},  # dropped (Codex sends it without id)
        {"role": "user", "content": "And again"}])
    assert upstream(emulator)[0] == {
        "modelUri": URI, "completionOptions": {"reasoningOptions": {"mode": "ENABLED_HIDDEN"}},
        "messages": [{"role": "system", "text": "Answer in English."}, {"role": "system", "text": "Be kind."},
                     user("Hello, world"), {"role": "assistant", "text": "Hi."}, user("And again")]}


def test_a_truncated_answer_is_incomplete_with_its_reason(client: OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="word " * 40, max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16 and response.completed_at is None


def test_json_schema_format_and_parse(client: OpenAI, emulator: Emulator) -> None:
    class City(BaseModel):
        name: str
        population: int

    parsed = client.responses.parse(model=MODEL, input="Describe Moscow", text_format=City)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.name == "Moscow"
    client.responses.create(model=MODEL, input="Answer in JSON", text={"format": {"type": "json_object"}})
    first, second = upstream(emulator)
    assert first["jsonSchema"]["schema"]["required"] == ["name", "population"]
    assert second["jsonObject"] is True


# -- tools ---------------------------------------------------------------------------------------------------

def test_a_function_tool_conversation_continued_by_previous_response_id(client: OpenAI, emulator: Emulator) -> None:
    first = client.responses.create(model="yandexgpt", input="What is the weather in Paris? And calculate 12 * 7.",
                                    instructions="Use the tools.", tools=[WEATHER, CALCULATOR])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "calculator"] and first.status == "completed"
    assert json.loads(calls[0].arguments) == {"city": "Paris"} and calls[0].id.startswith("fc_")
    assert len({c.call_id for c in calls}) == 2 and all(c.call_id.startswith("call_") for c in calls)
    results = {"get_weather": "Sunny, 21 C", "calculator": "84"}
    second = client.responses.create(
        model="yandexgpt", previous_response_id=first.id, tools=[WEATHER, CALCULATOR],
        input=[{"type": "function_call_output", "call_id": c.call_id, "output": results[c.name]} for c in calls])
    assert "get_weather returned Sunny, 21 C" in second.output_text and second.previous_response_id == first.id
    round_one, round_two = upstream(emulator)
    assert round_one["tools"] == [{"function": {k: WEATHER[k] for k in ("name", "description", "parameters")}},
                                  {"function": {k: CALCULATOR[k] for k in ("name", "description", "parameters")}}]
    assert round_two["messages"] == [  # no instructions: they are not carried over
        user("What is the weather in Paris? And calculate 12 * 7."),
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"functionCall": {"name": "calculator", "arguments": {"expression": "12 * 7"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "get_weather", "content": "Sunny, 21 C"}},
            {"functionResult": {"name": "calculator", "content": "84"}}]}}]


def test_the_same_conversation_stateless_with_store_false(client: OpenAI, emulator: Emulator) -> None:
    ask = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.responses.create(model="yandexgpt", input=[ask], tools=[WEATHER], store=False)
    call = first.output[0]
    assert first.store is False and call.type == "function_call"
    history = [ask, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}]
    second = client.responses.create(model="yandexgpt", input=history, tools=[WEATHER], store=False)
    assert "get_weather returned Sunny" in second.output_text
    for gone in (first.id, second.id):
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(gone)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="yandexgpt", previous_response_id=first.id, input="more")
    assert caught.value.code == "previous_response_not_found" and caught.value.param == "previous_response_id"
    assert upstream(emulator)[1]["messages"][1:] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [{"functionResult": {"name": "get_weather",
                                                                                "content": "Sunny"}}]}}]


def test_an_output_for_an_unknown_call_id_is_a_400_naming_it(client: OpenAI, emulator: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="yandexgpt", input=[
            {"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "call_nope", "output": "x"}])
    assert caught.value.param == "input[1].call_id" and "call_nope" in caught.value.message
    assert upstream(emulator) == []


def test_tool_choice_forms_and_hosted_tools_not_offered(client: OpenAI, emulator: Emulator) -> None:
    ask = "Weather in Paris, and calculate 1 + 1"
    named = client.responses.create(model="yandexgpt", input=ask, tools=[WEATHER, CALCULATOR],
                                    tool_choice={"type": "function", "name": "calculator"})
    assert [i.name for i in named.output] == ["calculator"]
    hosted = client.responses.create(model="yandexgpt", input=ask, parallel_tool_calls=False,
                                     tools=[{"type": "web_search"}, WEATHER, {"type": "local_shell"}])
    assert [t.type for t in hosted.tools] == ["function"] and len(hosted.output) == 1
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="yandexgpt", input=ask, tools=[WEATHER], tool_choice={"type": "web_search"})
    assert caught.value.param == "tool_choice.type"
    bodies = upstream(emulator)
    assert bodies[0]["toolChoice"] == {"functionName": "calculator"}
    assert [t["function"]["name"] for t in bodies[1]["tools"]] == ["get_weather"]
    assert bodies[1]["parallelToolCalls"] is False


def test_namespaced_functions_are_offered_and_called_back_with_their_namespace(client: OpenAI,
                                                                              emulator: Emulator) -> None:
    group = {"type": "namespace", "name": "crm", "description": "Customer records",
             "tools": [{"type": "function", "name": "weather_lookup", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}
    first = client.responses.create(model="yandexgpt", input="What is the weather in Kazan?", tools=[group],
                                    tool_choice="required")
    call = json.loads(first.model_dump_json())["output"][0]
    assert call["type"] == "function_call" and call["name"] == "weather_lookup" and call["namespace"] == "crm"
    second = client.responses.create(model="yandexgpt", previous_response_id=first.id, tools=[group],
                                     input=[{"type": "function_call_output", "call_id": call["call_id"],
                                             "output": "Rain"}])
    assert second.status == "completed"
    bodies = upstream(emulator)
    assert bodies[0]["tools"][0]["function"]["name"] == "crm__weather_lookup"
    assert bodies[1]["messages"][1]["toolCallList"]["toolCalls"][0]["functionCall"]["name"] == "crm__weather_lookup"


# -- stored conversations -----------------------------------------------------------------------------------

def test_a_chain_of_turns_sends_every_earlier_turn_in_order(client: OpenAI, emulator: Emulator) -> None:
    previous = None
    answers = []
    for turn in range(4):
        response = client.responses.create(model=MODEL, input=f"question {turn}", previous_response_id=previous,
                                           instructions=f"instructions {turn}")
        answers.append(response.output_text)
        previous = response.id
    last = upstream(emulator)[-1]["messages"]
    expected: list[dict[str, str]] = [{"role": "system", "text": "instructions 3"}]
    for turn in range(3):
        expected += [user(f"question {turn}"), {"role": "assistant", "text": answers[turn]}]
    assert last == [*expected, user("question 3")]


def test_item_references_resolve_to_the_stored_items(client: OpenAI, emulator: Emulator) -> None:
    first = client.responses.create(model=MODEL, input="Tell me about the Volga")
    client.responses.create(model=MODEL, input=[
        {"role": "user", "content": "Tell me about the Volga"}, {"type": "item_reference", "id": first.output[0].id},
        {"role": "user", "content": "Shorter, please"}])
    assert upstream(emulator)[1]["messages"] == [user("Tell me about the Volga"),
                                                 {"role": "assistant", "text": first.output_text},
                                                 user("Shorter, please")]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input=[{"type": "item_reference", "id": "msg_unknown_1"}])
    assert caught.value.param == "input" and "msg_unknown_1" in caught.value.message


def test_input_items_page_in_both_orders(client: OpenAI) -> None:
    items = [{"role": "user", "content": f"part {n}"} for n in range(5)]
    response = client.responses.create(model=MODEL, input=items)
    newest_first = client.responses.input_items.list(response.id, limit=2)
    assert [i.content[0].text for i in newest_first.data] == ["part 4", "part 3"] and newest_first.has_more
    everything = list(client.responses.input_items.list(response.id, limit=2, order="asc"))
    assert [i.content[0].text for i in everything] == [f"part {n}" for n in range(5)]
    assert all(i.id and i.type == "message" and i.role == "user" for i in everything)
    assert len({i.id for i in everything}) == 5


def test_delete_makes_the_id_gone_for_every_route(client: OpenAI, api_v01: Api) -> None:
    response = client.responses.create(model=MODEL, input="hello")
    deleted = api_v01.http.delete(f"{api_v01.url}/v1/responses/{response.id}", timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": response.id, "object": "response", "deleted": True}
    for call in (lambda: client.responses.retrieve(response.id), lambda: client.responses.delete(response.id),
                 lambda: client.responses.input_items.list(response.id), lambda: client.responses.cancel(response.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="again", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"


# -- streaming -----------------------------------------------------------------------------------------------

def test_stream_helper_reads_typed_events_in_order(any_client: OpenAI) -> None:
    client = any_client
    whole = client.responses.create(model=MODEL, input="Name three rivers in Russia.", store=False).output_text
    with client.responses.stream(model=MODEL, input="Name three rivers in Russia.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert len(deltas) >= 2 and "".join(deltas) == whole == final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert client.responses.retrieve(final.id).output_text == whole  # a streamed response is stored too


def test_a_streamed_tool_call_has_its_argument_events(client: OpenAI) -> None:
    with client.responses.stream(model="yandexgpt", input="What is the weather in Paris?", tools=[WEATHER]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {"city": "Paris"}


def test_a_stream_failing_midway_ends_in_error_then_failed(api_v01: Api, jobs: Jobs, emulator: Emulator) -> None:
    emulator.fault(path=COMPLETION, kind="midstream", message="the model went away")
    response = api_v01.post("/v1/responses", {"model": MODEL, "input": "hello", "stream": True})
    events = [json.loads(block[6:]) for block in response.text.split("\n\n") if block]
    assert response.status_code == 200 and [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["error"]["message"] == events[-2]["message"] == "the model went away"
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["code"] == "server_error"


# -- background ----------------------------------------------------------------------------------------------

def test_background_runs_on_the_async_engine_to_completion(any_client: OpenAI, jobs: Jobs,
                                                          emulator: Emulator) -> None:
    client = any_client
    queued = client.responses.create(model=MODEL, input="Name three rivers in Russia.", background=True)
    assert queued.status == "queued" and queued.background is True and queued.output == []
    assert emulator.calls(COMPLETION) == []  # nothing upstream until a worker takes the task
    assert client.responses.retrieve(queued.id).status == "queued"
    jobs.drain()
    done = client.responses.retrieve(queued.id)
    assert done.status == "completed" and done.output_text.startswith("[emulated yandexgpt-lite]")
    assert done.usage.total_tokens > 0 and done.id == queued.id
    assert len(emulator.calls(COMPLETION)) == 1
    assert client.responses.retrieve(queued.id).model_dump() == done.model_dump()  # settled once, read the same


def test_cancel_stops_a_background_run_for_good(client: OpenAI, jobs: Jobs, emulator: Emulator) -> None:
    queued = client.responses.create(model=MODEL, input="hello", background=True)
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.error is None
    jobs.drain()
    assert client.responses.retrieve(queued.id).status == "cancelled"
    assert emulator.calls(COMPLETION) == []
    assert client.responses.cancel(queued.id).status == "cancelled"  # again: the same answer
    sync = client.responses.create(model=MODEL, input="hello")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(sync.id)
    assert "Cannot cancel a synchronous response." in caught.value.message


def test_background_needs_store_and_cannot_stream(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hello", background=True, store=False)
    assert caught.value.param == "store"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hello", background=True, stream=True)
    assert caught.value.param == "stream"


# -- input tokens and errors ---------------------------------------------------------------------------------

def test_input_tokens_counts_the_translated_request(client: OpenAI, emulator: Emulator) -> None:
    counted = client.responses.input_tokens.count(model=MODEL, input="Name three rivers in Russia.",
                                                  instructions="Be terse.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    call = emulator.calls("/tokenizeCompletion")[0]["body"]
    assert call["messages"] == [{"role": "system", "text": "Be terse."}, user("Name three rivers in Russia.")]


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x", "temperature": 1.5}, "temperature"),
    ({"input": "x", "top_p": 0.5}, "top_p"),
    ({"input": "x", "max_output_tokens": 5}, "max_output_tokens"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": "x", "unknown_field": 1}, "unknown_field"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:,"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "input[0].arguments"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
])
def test_bad_requests_are_400s_naming_the_parameter(client: OpenAI, emulator: Emulator, body: dict[str, Any],
                                                    param: str) -> None:
    known = {k: v for k, v in body.items() if k != "unknown_field"}
    extra = {k: v for k, v in body.items() if k == "unknown_field"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, **known, extra_body=extra or None)
    assert caught.value.param == param and caught.value.type == "invalid_request_error"
    assert upstream(emulator) == []


# -- two callers ---------------------------------------------------------------------------------------------

KEYS = {"alice": "fmk_alice-responses-key-0123456789abcd", "bob": "fmk_bob-responses-key-0123456789abcdef"}
SECRET = "alice's private question about the Volga"


@pytest.fixture
def callers(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, OpenAI]]:
    import hashlib

    from local import gateway
    from tests.conftest import reset_caches

    monkeypatch.setenv("CALLER_KEY_SHA256", ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"
                                                     for name, key in KEYS.items()))
    reset_caches()
    server = gateway.start(authorize=True)
    yield {name: OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) for name, key in KEYS.items()}
    server.shutdown()


def test_another_callers_ids_are_unknown_on_every_route(callers: dict[str, OpenAI], emulator: Emulator,
                                                        log_output: Any) -> None:
    alice, bob = callers["alice"], callers["bob"]
    mine = alice.responses.create(model=MODEL, input=SECRET, tools=[WEATHER])
    background = alice.responses.create(model=MODEL, input=SECRET, background=True)
    unknown = "resp_" + "0" * 32

    def refused(call: Any, response_id: str) -> tuple[int, Any]:
        with pytest.raises(openai.APIStatusError) as caught:
            call(response_id)
        body = json.loads(caught.value.response.text.replace(response_id, "<id>"))
        return caught.value.status_code, body

    routes = [bob.responses.retrieve, bob.responses.delete, bob.responses.cancel,
              lambda rid: bob.responses.input_items.list(rid),
              lambda rid: bob.responses.create(model=MODEL, input="more", previous_response_id=rid),
              lambda rid: bob.responses.input_tokens.count(model=MODEL, input="more", previous_response_id=rid)]
    for route in routes:
        for target in (mine.id, background.id):
            assert refused(route, target) == refused(route, unknown)
    item = {"type": "item_reference", "id": mine.output[0].id}
    with pytest.raises(openai.BadRequestError) as caught:
        bob.responses.create(model=MODEL, input=[item])
    assert caught.value.param == "input"
    assert all(SECRET not in json.dumps(call["body"]) for call in emulator.calls(COMPLETION)[1:])
    assert alice.responses.retrieve(mine.id).output_text == mine.output_text  # nothing of alice's changed
    assert alice.responses.retrieve(background.id).status == "queued"  # bob's cancel did not reach it
    attempts = [json.loads(line) for line in log_output.getvalue().splitlines()
                if "another caller's work" in line]
    assert len(attempts) >= 2 * len(routes) and {a["caller"] for a in attempts} == {"bob"}
    assert SECRET not in log_output.getvalue()


def test_continuing_a_long_conversation_costs_the_same_few_store_round_trips(client: OpenAI, emulator: Emulator) -> None:
    """Each turn reads one record and one document (which holds the whole conversation), whatever the chain's
    length, and writes one document and one record: counted on the wire (botocore's requests)."""
    from shared.config import settings
    from shared.jobs.store import job_store

    store = job_store(settings())
    sent: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        sent.append(event_name.split(".", 2)[2])  # before-send.<service>.<Operation>

    store.db.meta.events.register("before-send", count)
    store.s3.meta.events.register("before-send", count)
    store._one_shot_client().meta.events.register("before-send", count)  # the usage ledger's
    per_turn = {}
    previous = None
    for turn in range(1, 51):
        sent.clear()
        previous = client.responses.create(model=MODEL, input=f"question {turn}", previous_response_id=previous).id
        per_turn[turn] = sorted(sent)
    assert per_turn[1] == ["PutObject", "TransactWriteItems", "UpdateItem"]  # TransactWriteItems: the usage ledger
    assert per_turn[2] == per_turn[10] == per_turn[50] == ["BatchGetItem", "GetObject", "PutObject",
                                                           "TransactWriteItems", "UpdateItem"]
    assert len(upstream(emulator)[-1]["messages"]) == 99  # all 49 earlier turns (question, answer) and this one


# -- batches -------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("fast")  # quotas high and async operations done at once (tests/conftest.py)
def test_a_batch_of_responses_lines_answers_as_the_sync_route(client: OpenAI, jobs: Jobs, emulator: Emulator) -> None:
    from openai.types.responses import Response

    from tests.integration.test_openai_batches import lines_of, run_to_end, start

    lines = [{"custom_id": f"r-{i}", "method": "POST", "url": "/v1/responses",
              "body": {"model": MODEL, "input": f"question {i}", "instructions": "Be terse.", "metadata": {"n": str(i)}}}
             for i in range(12)]
    lines.append({"custom_id": "tool", "method": "POST", "url": "/v1/responses",
                  "body": {"model": MODEL, "input": "What is the weather in Paris?", "tools": [WEATHER]}})
    bad = {"custom_id": "bad", "method": "POST", "url": "/v1/responses",
           "body": {"model": MODEL, "input": "x", "previous_response_id": "resp_1"}}
    refused = start(client, [*lines, bad], endpoint="/v1/responses")
    assert refused.status == "failed" and refused.errors.data[0].param == "body.previous_response_id"
    batch = start(client, lines, endpoint="/v1/responses")
    finished = run_to_end(client, jobs, batch.id)
    assert finished.status == "completed" and finished.request_counts.completed == 13
    answers = {line["custom_id"]: Response.model_validate(line["response"]["body"])
               for line in lines_of(client, finished.output_file_id)}
    for i in range(12):
        answer = answers[f"r-{i}"]
        assert answer.status == "completed" and answer.output_text.endswith(f"question {i}")
        assert answer.instructions == "Be terse." and answer.metadata == {"n": str(i)} and answer.store is False
    assert answers["tool"].output[0].type == "function_call" and answers["tool"].output[0].name == "get_weather"
    total = sum(a.usage.input_tokens + a.usage.output_tokens for a in answers.values())
    assert finished.usage.total_tokens == total and finished.usage.input_tokens == sum(
        a.usage.input_tokens for a in answers.values())
    bodies = [call["body"] for call in emulator.calls("/completionAsync")]
    terse = [b for b in bodies if b["messages"][0] == {"role": "system", "text": "Be terse."}]  # started concurrently
    assert len(bodies) == 13 and len(terse) == 12 and [b["tools"] for b in bodies if b not in terse] == [
        [{"function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}]]


# -- pass-through to upstream's own Responses API ----------------------------------------------------------------

RESPONSES_PATH = "/v1/responses"
FILE_SEARCH = {"type": "file_search", "vector_store_ids": ["vs_1"]}


@pytest.fixture
def upstream_responses(jobs: Jobs, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    from tests.conftest import reset_caches

    monkeypatch.setenv("FM_RESPONSES_URL", emulator.url + "/v1")
    reset_caches()
    return emulator


def test_pass_through_models_and_hosted_tools_go_to_upstreams_responses_api(client: OpenAI,
                                                                             upstream_responses: Emulator) -> None:
    emulator = upstream_responses
    first = client.responses.create(model="gpt-oss-120b", input="Hello there", instructions="Be brief.")
    assert "via the Responses API" in first.output_text
    second = client.responses.create(model="gpt-oss-120b", input="And again", previous_response_id=first.id)
    assert "Reply #2" in second.output_text
    hosted = client.responses.create(model=MODEL, input="Search my files", tools=[FILE_SEARCH])
    assert [t.type for t in hosted.tools] == ["file_search"]
    sent = emulator.calls(RESPONSES_PATH)
    assert [c["body"]["model"] for c in sent] == [f"gpt://{FOLDER}/gpt-oss-120b/latest"] * 2 + [URI]
    assert all(c["project"] == FOLDER and c["auth"] == "Api-Key" for c in sent)
    assert sent[0]["body"]["instructions"] == "Be brief." and sent[1]["body"]["previous_response_id"] == first.id
    assert emulator.calls(COMPLETION) == []
    assert client.responses.retrieve(first.id).output_text == first.output_text  # forwarded, after the owner check
    assert [i.type for i in client.responses.input_items.list(first.id)] == ["message"]
    with client.responses.stream(model="gpt-oss-120b", input="Stream it") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text and client.responses.retrieve(final.id).id == final.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_the_two_kinds_of_conversation_never_continue_each_other(client: OpenAI, upstream_responses: Emulator) -> None:
    translated = client.responses.create(model=MODEL, input="Hello")
    passed = client.responses.create(model="gpt-oss-120b", input="Hello")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-oss-120b", input="more", previous_response_id=translated.id)
    assert caught.value.param == "previous_response_id" and "translated" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="more", previous_response_id=passed.id)
    assert caught.value.param == "previous_response_id" and "upstream" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-oss-120b", input=[{"type": "item_reference", "id": "msg_x"}])
    assert caught.value.param == "input[0]"


def test_without_an_upstream_responses_api_hosted_tools_are_not_offered(client: OpenAI, emulator: Emulator) -> None:
    answer = client.responses.create(model=MODEL, input="Search my files", tools=[FILE_SEARCH, WEATHER])
    assert [t.type for t in answer.tools] == ["function"] and answer.status == "completed"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-oss-120b", input="Hello")
    assert caught.value.param == "model" and "FM_RESPONSES_URL" in caught.value.message
    assert emulator.calls(RESPONSES_PATH) == []


def test_a_background_response_whose_run_expired_unread_is_failed_with_the_reason(client: OpenAI) -> None:
    from shared.config import settings
    from shared.jobs.store import job_store

    queued = client.responses.create(model=MODEL, input="hello", background=True)
    store = job_store(settings())
    record = store.records([queued.id])[queued.id]
    assert store.delete_record(record["job"])  # the job store's TTL sweep took the run before anyone read it
    failed = client.responses.retrieve(queued.id)
    assert failed.status == "failed" and "expired" in failed.error.message and failed.error.code == "server_error"
    assert client.responses.retrieve(queued.id).status == "failed"


def test_an_expired_response_is_unknown_everywhere_before_the_ttl_sweep(client: OpenAI, clock: Any) -> None:
    response = client.responses.create(model=MODEL, input="hello")
    clock.advance(30 * 86400 + 1)  # FM_RESPONSES_TTL_DAYS (30) has passed; the record is still in the store
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="more", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input=[{"type": "item_reference", "id": response.output[0].id}])


def test_a_background_run_upstream_refuses_is_failed_with_its_error(client: OpenAI, jobs: Jobs,
                                                                    emulator: Emulator) -> None:
    emulator.fault(path=COMPLETION, status=400, message="the prompt breaks a rule")
    queued = client.responses.create(model=MODEL, input="hello", background=True)
    jobs.drain()
    failed = client.responses.retrieve(queued.id)
    assert failed.status == "failed" and failed.output == [] and failed.usage is None
    assert failed.error.code == "invalid_prompt" and "the prompt breaks a rule" in failed.error.message


def test_item_ids_are_unique_within_a_continued_response_and_name_the_right_item(client: OpenAI,
                                                                                  emulator: Emulator) -> None:
    first = client.responses.create(model=MODEL, input="a")  # the chain holds 2 items: its question and answer
    second = client.responses.create(model=MODEL, previous_response_id=first.id,
                                     input=[{"role": "user", "content": "c"}, {"role": "user", "content": "d"}])
    inputs = [item.id for item in client.responses.input_items.list(second.id, order="asc")]
    ids = [*inputs, *(item.id for item in second.output)]
    assert len(set(ids)) == len(ids) == 3
    client.responses.create(model=MODEL, input=[{"type": "item_reference", "id": second.output[0].id},
                                                {"role": "user", "content": "e"}])
    assert upstream(emulator)[-1]["messages"][0] == {"role": "assistant", "text": second.output_text}
