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


@pytest.mark.parametrize("stored", [
    f"alice:{'g' * 64}", f"alice:{DIGEST[:-2]}", f"alice:{DIGEST}00", f"anonymous:{DIGEST}",
    f"alice:{DIGEST[:32]} {DIGEST[32:]}",
])
def test_a_malformed_or_reserved_stored_key_lets_nobody_in_and_breaks_no_other(monkeypatch: pytest.MonkeyPatch,
                                                                              stored: str) -> None:
    other = "fmk_other-key-0123456789"
    monkeypatch.setenv("CALLER_KEY_SHA256", f"{stored},bob:{hashlib.sha256(other.encode()).hexdigest()}")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": False}  # refused, not an exception (a 500)
    assert _call({"X-Api-Key": other}) == {"isAuthorized": True, "context": {"caller": "bob"}}


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": ""}, {"X-Api-Key": KEY + "x"}, {"Authorization": KEY}])
def test_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{DIGEST}")
    assert _call(headers) == {"isAuthorized": False}


def test_no_configured_keys_lets_nobody_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", "none")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": False}
    monkeypatch.delenv("CALLER_KEY_SHA256")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": False}


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"},  # what every OpenAI client sends
    {"authorization": f"bearer {KEY}"},  # scheme names are case-insensitive
    {"Authorization": f"Api-Key {KEY}"},  # Yandex Cloud's own style
    {"Authorization": f"Bearer   {KEY}  "},
    {"X-Api-Key": KEY},
    {"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY},  # both, the same key
])
def test_the_key_may_come_in_authorization_or_x_api_key(monkeypatch: pytest.MonkeyPatch,
                                                         headers: dict[str, str]) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{DIGEST}")
    assert _call(headers) == {"isAuthorized": True, "context": {"caller": "alice"}}


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Basic {KEY}"},  # a scheme the authorizer does not read
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {KEY}x"},
    # two different keys: the gateway caches a verdict under one header's value, so it must never
    # have been earned by the other header's key
    {"Authorization": f"Bearer {KEY}", "X-Api-Key": "fmk_someone-else"},
    {"Authorization": "Bearer fmk_someone-else", "X-Api-Key": KEY},
    {"Authorization": f"Basic {KEY}", "X-Api-Key": KEY},
])
def test_a_bad_or_ambiguous_authorization_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                      headers: dict[str, str]) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{DIGEST}")
    assert _call(headers) == {"isAuthorized": False}


def test_an_entry_that_is_only_a_digest_names_its_key_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-written list of bare digests (no `name:`): each key is let in, as the caller named `caller`."""
    other = "fmk_other-key-0123456789"
    monkeypatch.setenv("CALLER_KEY_SHA256", f"{DIGEST}, bob:{hashlib.sha256(other.encode()).hexdigest()}")
    assert _call({"X-Api-Key": KEY}) == {"isAuthorized": True, "context": {"caller": "caller"}}
    assert _call({"X-Api-Key": other}) == {"isAuthorized": True, "context": {"caller": "bob"}}
