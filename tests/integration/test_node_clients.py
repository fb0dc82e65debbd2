"""The npm clients of /v1/responses, installed by `make test` into .node-clients (Makefile NODE_CLIENTS), against
the local gateway:
- Codex CLI (`wire_api = "responses"`, the package's own binary) in `codex exec`: a session gets its answer
  from a translated model. Codex sends `store: false`, `stream: true`, its whole history, function tools
  beside a namespace group and the hosted web_search tool, reasoning with encrypted content, and
  client_metadata: checked on the wire.
- The Vercel AI SDK's `openai.responses(...)` model (its default store: earlier assistant text goes back as
  `item_reference` items): a two-turn conversation, a tool run and a stream."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, Api, Emulator, Jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE_CLIENTS = ROOT / ".node-clients"
CODEX = NODE_CLIENTS / "node_modules" / ".bin" / "codex"
MISSING = "the npm clients are not installed: `make test` installs them into .node-clients (npm)"


def test_a_codex_exec_session_gets_its_answer(api_v01: Api, jobs: Jobs, emulator: Emulator, tmp_path: Path) -> None:
    if not CODEX.exists():
        pytest.skip(MISSING)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "yandexgpt"\nmodel_provider = "gateway"\n\n[model_providers.gateway]\nname = "yc-fm-functions"\n'
        f'base_url = "{api_v01.url}/v1"\nwire_api = "responses"\nenv_key = "GATEWAY_KEY"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(home), GATEWAY_KEY="local", NO_COLOR="1")
    done = subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "Say hello to the river Volga"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[emulated yandexgpt]" in done.stdout and "Say hello to the river Volga" in done.stdout
    sent = [call["body"] for call in emulator.calls("/foundationModels/v1/completion")]
    assert len(sent) == 1 and sent[0]["completionOptions"]["stream"] is True
    assert sent[0]["messages"][-1] == {"role": "user", "text": "Say hello to the river Volga"}
    names = [tool["function"]["name"] for tool in sent[0]["tools"]]
    assert "exec_command" in names and any("__" in name for name in names)  # a namespace group's functions too


AI_SDK_SCRIPT = """
import { generateText, streamText, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";
const model = createOpenAI({ baseURL: process.env.BASE_URL, apiKey: "local" }).responses("yandexgpt");
const question = "Name three rivers in Russia.";
const first = await generateText({ model, system: "Be terse.", prompt: question });
const second = await generateText({ model, messages: [{ role: "user", content: question }, ...first.response.messages,
                                                      { role: "user", content: "Which is longest?" }] });
const weather = await generateText({ model, prompt: "What is the weather in Paris?", stopWhen: ({ steps }) => steps.length >= 2,
  tools: { get_weather: tool({ description: "Weather in a city", inputSchema: z.object({ city: z.string() }),
                              execute: async ({ city }) => `Sunny in ${city}` }) } });
let streamed = "";
const stream = streamText({ model, prompt: "Hello there" });
for await (const delta of stream.textStream) streamed += delta;
console.log(JSON.stringify({ first: first.text, second: second.text, calls: weather.steps.map(s => s.toolCalls.map(c => c.toolName)),
                             weather: weather.text, streamed, finish: await stream.finishReason }));
"""


def test_the_ai_sdk_responses_model_converses_runs_a_tool_and_streams(api_v01: Api, jobs: Jobs, emulator: Emulator,
                                                                      tmp_path: Path) -> None:
    if not (NODE_CLIENTS / "node_modules" / "@ai-sdk" / "openai").exists():
        pytest.skip(MISSING)
    script = NODE_CLIENTS / f"ai-sdk-{os.getpid()}-{tmp_path.name}.mjs"  # beside node_modules, so imports resolve
    script.write_text(AI_SDK_SCRIPT, encoding="utf-8")
    try:
        done = subprocess.run(["node", str(script)], cwd=NODE_CLIENTS, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "BASE_URL": api_v01.url + "/v1"}, stdin=subprocess.DEVNULL)
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["first"].startswith("[emulated yandexgpt]") and answer["second"].endswith("Which is longest?")
    assert answer["calls"] == [["get_weather"], []] and "get_weather returned Sunny in Paris" in answer["weather"]
    assert answer["streamed"].startswith("[emulated yandexgpt]") and answer["finish"] == "stop"
    sent = [call["body"]["messages"] for call in emulator.calls("/foundationModels/v1/completion")]
    assert sent[1] == [{"role": "user", "text": "Name three rivers in Russia."},  # the item_reference, resolved
                       {"role": "assistant", "text": answer["first"]}, {"role": "user", "text": "Which is longest?"}]
