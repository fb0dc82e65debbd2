"""The deployed gateway's API key scheme, locally: the authorizer function decides, over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from local import gateway
from tests.conftest import Emulator, Jobs

pytestmark = pytest.mark.integration

KEY = "fmk_alice-test-key-0123456789abcdef"


@pytest.fixture
def secured(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{hashlib.sha256(KEY.encode()).hexdigest()}")
    server = gateway.start(authorize=True)
    yield server.url
    server.shutdown()


BODY = {"modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "hi"}]}


def test_requests_need_a_known_key(secured: str, stack_env: Emulator) -> None:
    url = f"{secured}/foundationModels/v1/completion"
    assert requests.post(url, json=BODY, timeout=10).status_code == 401
    assert requests.post(url, json=BODY, headers={"X-Api-Key": KEY + "x"}, timeout=10).status_code == 403
    assert len(stack_env.calls("/completion")) == 0
    answer = requests.post(url, json=BODY, headers={"X-Api-Key": KEY}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_the_caller_named_by_the_authorizer_owns_the_operation(secured: str, jobs: Jobs) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completionAsync", json=BODY, headers={"X-Api-Key": KEY},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["createdBy"] == "alice"
