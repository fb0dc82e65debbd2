"""Codex CLI (`wire_api = "responses"`, the npm package's own binary, installed by `make test` into .codex-cli)
in `codex exec` against the local gateway: a session gets its answer from a translated model. Codex sends
`store: false`, `stream: true`, its whole history, function tools beside a namespace group and the hosted
web_search tool, reasoning with encrypted content, and client_metadata: checked on the wire."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, Api, Emulator, Jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODEX = ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"


def test_a_codex_exec_session_gets_its_answer(api_v01: Api, jobs: Jobs, emulator: Emulator, tmp_path: Path) -> None:
    if not CODEX.exists():
        pytest.skip("the Codex CLI is not installed: `make test` installs it into .codex-cli (npm)")
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
