"""`make run`'s entry point: a fresh process that serves the API on loopback and prints a working curl."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_local_stack_serves_the_printed_curl(tmp_path: Path) -> None:
    # port 0 everywhere: each server binds a free port itself, so no other process (an xdist worker) can take
    # a port between a probe and the stack's bind; the gateway's is read from what the stack prints
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "FM_", "AWS_")) and k != "DOCAPI_ENDPOINT"}
    env["POLLER_INTERVAL_S"] = "0.5"
    process = subprocess.Popen([sys.executable, "-m", "local.stack", "--port", "0", "--emulator-port", "0",
                                "--moto-port", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while not any(line.strip().startswith("-d ") for line in lines):
            line = process.stdout.readline()
            assert line, "the stack exited before printing its curl"
            lines.append(line)
        port = int(next(line for line in lines if line.startswith("API on ")).split()[2].rsplit(":", 1)[1])
        curl = "".join(lines[-2:]).replace("\\\n", " ")
        body = shlex.split(curl)[-1]
        deadline = time.monotonic() + 10
        while True:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/foundationModels/v1/completion", data=body,
                                         headers={"Content-Type": "application/json"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["alternatives"][0]["message"]["text"].startswith("[emulated")
        # the async path: the stack's own trigger runner does the work
        operation = requests.post(f"http://127.0.0.1:{port}/foundationModels/v1/completionAsync", data=body,
                                  headers={"Content-Type": "application/json"}, timeout=10).json()
        while True:
            polled = requests.get(f"http://127.0.0.1:{port}/operations/{operation['id']}", timeout=10).json()
            if polled["done"]:
                break
            assert time.monotonic() < deadline + 20
            time.sleep(0.2)
        assert polled["response"]["alternatives"][0]["message"]["text"].startswith("[emulated")
        # a batch driven by the CLI, as a user would: progress bar, then the results file
        source = tmp_path / "requests.jsonl"
        source.write_text("".join(json.dumps({"customId": f"c{i}", "messages": [{"role": "user", "text": f"q {i}"}]}) + "\n"
                                  for i in range(30)) + json.dumps({"request": [{"role": "user", "text": "dataset form"}]}) + "\n")
        out = tmp_path / "results.jsonl"
        cli = subprocess.run([sys.executable, "-m", "local.batch_cli", str(source), "--url", f"http://127.0.0.1:{port}",
                              "--model", "yandexgpt-lite", "--out", str(out), "--interval", "0.3", "--timeout", "60"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert cli.returncode == 0, cli.stderr
        assert "[##############################] 31/31" in cli.stderr and "31 succeeded, 0 failed" in cli.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["customId"] for line in lines] == [f"c{i}" for i in range(30)] + ["30"]
        assert all("response" in line for line in lines)
        # an OpenAI batch file through the same CLI: /v1/files, /v1/batches, output and error lines in input order
        source = tmp_path / "openai.jsonl"
        source.write_text("".join(json.dumps({"custom_id": f"o{i}", "method": "POST", "url": "/v1/chat/completions",
                                              "body": {"model": "yandexgpt-lite", "messages": [
                                                  {"role": "user", "content": f"q {i}" + (" EMULATOR_FAIL" if i == 3 else "")}]}})
                                  + "\n" for i in range(12)))
        cli = subprocess.run([sys.executable, "-m", "local.batch_cli", str(source), "--format", "openai", "--url",
                              f"http://127.0.0.1:{port}", "--out", str(out), "--interval", "0.3", "--timeout", "60"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
        assert cli.returncode == 0, cli.stderr
        assert "[##############################] 12/12 (1 failed) COMPLETED" in cli.stderr, cli.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["custom_id"] for line in lines] == [f"o{i}" for i in range(12)]
        assert [line["response"]["status_code"] for line in lines] == [200] * 3 + [400] + [200] * 8
    finally:
        process.terminate()
        process.wait(timeout=10)
