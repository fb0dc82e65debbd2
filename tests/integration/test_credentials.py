"""The credential chain against a local IAM token endpoint and a local metadata endpoint (the emulator)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from local.functions import load
from shared import auth
from tests.conftest import Emulator, FakeContext, load_event, reset_caches
from tests.keys import authorized_key, authorized_key_json

pytestmark = pytest.mark.integration


def _use_sa_key(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> dict[str, Any]:
    key = authorized_key()
    emulator.post("/_emulator/keys", {"id": key["id"], "public_key": key["public_key"],
                                      "service_account_id": key["service_account_id"]})
    emulator.configure(strictBearer=True)
    monkeypatch.delenv("YC_API_KEY")
    monkeypatch.setenv("YC_SA_KEY_JSON", json.dumps(key))
    monkeypatch.setenv("YC_IAM_ENDPOINT", f"{emulator.url}/iam/v1/tokens")
    reset_caches()
    return key


def _complete(context: Any = None) -> dict[str, Any]:
    return load("completion")(load_event("http-v01-completion"), context or FakeContext())


def test_service_account_key_is_exchanged_once_for_many_invocations(stack_env: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _use_sa_key(monkeypatch, stack_env)
    for _ in range(5):
        assert _complete()["statusCode"] == 200
    assert len(stack_env.calls("/iam/v1/tokens")) == 1  # the emulator verified the PS256 JWT with the public key
    calls = stack_env.calls("/completion")
    assert len(calls) == 5 and all(c["auth"] == "Bearer" for c in calls)
    assert all(c["folderId"] is None for c in calls)  # no x-folder-id with service-account credentials


def test_concurrent_invocations_share_one_exchange(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_sa_key(monkeypatch, stack_env)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(_complete()["statusCode"])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert len(stack_env.calls("/iam/v1/tokens")) == 1


def test_revoked_token_is_refreshed_and_the_call_retried_once(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_sa_key(monkeypatch, stack_env)
    assert _complete()["statusCode"] == 200
    stack_env.configure(revokeTokens=True)
    assert _complete()["statusCode"] == 200
    assert len(stack_env.calls("/iam/v1/tokens")) == 2
    assert len(stack_env.calls("/completion")) == 3  # 200, 401, 200


def test_wrong_key_is_a_credentials_error_naming_the_source(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    _use_sa_key(monkeypatch, stack_env)
    monkeypatch.setenv("YC_SA_KEY_JSON", authorized_key_json(key_id="unknownkey"))
    reset_caches()
    result = _complete()
    assert result["statusCode"] == 500
    message = json.loads(result["body"])["error"]["message"]
    assert "YC_SA_KEY_JSON" in message and "HTTP 401" in message
    assert "PRIVATE KEY" not in result["body"]


def test_metadata_service_token(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_API_KEY")
    monkeypatch.setenv("YC_METADATA_ADDR", stack_env.url.removeprefix("http://"))
    stack_env.configure(strictBearer=True)
    reset_caches()
    for _ in range(3):
        assert _complete()["statusCode"] == 200
    assert len(stack_env.calls("/computeMetadata/v1/instance/service-accounts/default/token")) == 1
    assert isinstance(auth.default_credentials(auth.Settings.from_env()), auth.MetadataToken)


def test_metadata_token_is_refreshed_before_expiry(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_API_KEY")
    monkeypatch.setenv("YC_METADATA_ADDR", stack_env.url.removeprefix("http://"))
    stack_env.configure(strictBearer=True, tokenTtlS=200)  # inside the 300 s refresh margin: always stale
    reset_caches()
    assert _complete()["statusCode"] == 200
    assert _complete()["statusCode"] == 200
    assert len(stack_env.calls("/default/token")) == 3  # first fetch, then a refresh before each use


def test_function_context_token_is_used(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_API_KEY")
    reset_caches()
    result = _complete(FakeContext(token={"access_token": "t1.context-token-value-123", "expires_in": 3600,
                                          "token_type": "Bearer"}))
    assert result["statusCode"] == 200
    assert stack_env.calls("/completion")[0]["auth"] == "Bearer"


def test_nothing_configured_names_what_to_set(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_API_KEY")
    reset_caches()
    result = _complete()
    assert result["statusCode"] == 500
    message = json.loads(result["body"])["error"]["message"]
    for name in ("YC_API_KEY", "YC_IAM_TOKEN", "YC_SA_KEY_JSON", "context.token", "metadata"):
        assert name in message


def test_the_metadata_service_is_reached_directly_even_with_a_proxy_configured(stack_env: Emulator,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a proxy address where nothing listens: using it would fail
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    creds = auth.MetadataToken(stack_env.url.removeprefix("http://"))
    with monkeypatch.context() as env:  # only around the fetch: the test's own HTTP must not use the proxy
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.setenv(name, dead)
        for name in ("NO_PROXY", "no_proxy"):
            env.delenv(name, raising=False)
        creds.ensure_fresh()  # the default http: proxies from the environment are ignored
    assert creds.token and len(stack_env.calls("/default/token")) == 1
