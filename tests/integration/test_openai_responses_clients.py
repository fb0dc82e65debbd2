"""/v1/responses with the clients that speak it by default, unchanged but for the base URL: the OpenAI Agents
SDK's default (Responses) model, LangChain's ChatOpenAI(use_responses_api=True) and pydantic-ai's
OpenAIResponsesModel. What went upstream is read back from the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Api, Emulator, Jobs

pytestmark = pytest.mark.integration

COMPLETION = "/foundationModels/v1/completion"


def upstream(emulator: Emulator) -> list[dict[str, Any]]:
    return [call["body"] for call in emulator.calls(COMPLETION)]


@pytest.fixture
def base_url(api_v01: Api, jobs: Jobs) -> str:
    return api_v01.url + "/v1"


def test_agents_sdk_default_model_runs_a_function_tool_and_continues(base_url: str, emulator: Emulator) -> None:
    from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    set_default_openai_client(AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0), use_for_tracing=False)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    agent = Agent(name="forecaster", instructions="Use the tools.", model="yandexgpt", tools=[get_weather])
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert seen == ["Paris"]
    assert "get_weather returned Sunny in Paris" in result.final_output
    more = Runner.run_sync(agent, "Thanks. Say goodbye.", previous_response_id=result.last_response_id)
    assert more.final_output.startswith("[emulated yandexgpt]")
    first, second, third = upstream(emulator)
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-1]["toolResultList"]["toolResults"] == [
        {"functionResult": {"name": "get_weather", "content": "Sunny in Paris"}}]
    assert third["messages"][0] == {"role": "system", "text": "Use the tools."}
    assert third["messages"][1:] == [*second["messages"][1:], {"role": "assistant", "text": result.final_output},
                                     {"role": "user", "text": "Thanks. Say goodbye."}]


def test_agents_sdk_streams_through_the_gateway(base_url: str) -> None:
    import asyncio

    from agents import Agent, Runner, set_default_openai_client, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    set_default_openai_client(AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0), use_for_tracing=False)

    async def run() -> tuple[str, list[str]]:
        streamed = Runner.run_streamed(Agent(name="a", model="yandexgpt-lite"), "Name three rivers in Russia.")
        deltas = [event.data.delta async for event in streamed.stream_events()
                  if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"]
        return streamed.final_output, deltas

    final, deltas = asyncio.run(run())
    assert len(deltas) >= 2 and "".join(deltas) == final


def test_langchain_use_responses_api_invokes_and_binds_tools(base_url: str, emulator: Emulator) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="yandexgpt", base_url=base_url, api_key="local", use_responses_api=True, max_retries=0)
    answer = llm.invoke("Name three rivers in Russia.")
    assert answer.text.startswith("[emulated yandexgpt]") and answer.response_metadata["id"].startswith("resp_")

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "Sunny"

    tooled = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    call = tooled.invoke([question])
    assert [c["name"] for c in call.tool_calls] == ["get_weather"] and call.tool_calls[0]["args"] == {"city": "Paris"}
    final = tooled.invoke([question, call, ToolMessage("Sunny", tool_call_id=call.tool_calls[0]["id"])])
    assert "get_weather returned Sunny" in final.text
    last = upstream(emulator)[-1]["messages"]
    assert last[-1] == {"role": "user", "toolResultList": {"toolResults": [
        {"functionResult": {"name": "get_weather", "content": "Sunny"}}]}}


def test_pydantic_ai_responses_model_runs_a_tool(base_url: str, emulator: Emulator) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIResponsesModel("yandexgpt", provider=OpenAIProvider(base_url=base_url, api_key="local"))
    agent = Agent(model, instructions="Use the tools.")
    cities: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return "Sunny"

    result = agent.run_sync("What is the weather in Paris?")
    assert cities == ["Paris"] and "get_weather returned Sunny" in result.output
    bodies = upstream(emulator)
    assert json.dumps(bodies[0]["tools"]).count("get_weather") == 1
    assert bodies[1]["messages"][0] == {"role": "system", "text": "Use the tools."}
