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


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"},  # the openai client, LangChain, curl -H "Authorization: Bearer ..."
    {"Authorization": f"Api-Key {KEY}"},
    {"X-Api-Key": KEY},
    {"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY},
])
def test_the_key_is_read_from_authorization_or_x_api_key(secured: str, jobs: Jobs, headers: dict[str, str]) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completionAsync", json=BODY, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["createdBy"] == "alice"
    op_id = answer.json()["id"]
    assert requests.get(f"{secured}/operations/{op_id}", headers=headers, timeout=10).status_code == 200


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),  # neither header: the gateway refuses before the authorizer runs
    ({"Authorization": ""}, 401),
    ({"Authorization": f"Basic {KEY}"}, 403),
    ({"Authorization": f"Bearer {KEY}x"}, 403),
    ({"X-Api-Key": KEY + "x"}, 403),
    ({"Authorization": f"Bearer {KEY}", "X-Api-Key": "fmk_someone-else"}, 403),
])
def test_a_missing_wrong_or_ambiguous_key_is_refused(secured: str, stack_env: Emulator, headers: dict[str, str],
                                                     status: int) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completion", json=BODY, headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    assert len(stack_env.calls("/completion")) == 0
