"""`make run`'s entry point: a fresh process that serves the API on loopback and prints a working curl."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_local_stack_serves_the_printed_curl() -> None:
    port, emulator_port, moto_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "FM_", "AWS_")) and k != "DOCAPI_ENDPOINT"}
    process = subprocess.Popen([sys.executable, "-m", "local.stack", "--port", str(port), "--emulator-port",
                                str(emulator_port), "--moto-port", str(moto_port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while not any(line.strip().startswith("-d ") for line in lines):
            line = process.stdout.readline()
            assert line, "the stack exited before printing its curl"
            lines.append(line)
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
    finally:
        process.terminate()
        process.wait(timeout=10)
