"""The API Gateway authorizer: hashed caller keys, constant-time comparison, never open by default."""

from __future__ import annotations

import hashlib

import pytest

from local.functions import load

KEY = "fmk_test-key-0123456789"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()


def _call(headers: dict[str, str]) -> dict:
    return load("authorizer")({"headers": headers, "httpMethod": "POST", "path": "/x"}, None)


def test_known_key_is_authorized_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"bob:{'0' * 64},alice:{DIGEST}")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": True, "context": {"caller": "alice"}}
    assert _call({"x-api-key": KEY})["isAuthorized"] is True  # header names are case-insensitive


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": ""}, {"X-Api-Key": KEY + "x"}, {"Authorization": KEY}])
def test_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{DIGEST}")
    assert _call(headers) == {"isAuthorized": False}


def test_no_configured_keys_lets_nobody_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", "none")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": False}
    monkeypatch.delenv("CALLER_KEY_SHA256")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": False}
