"""Promises of the gate in front of the backend: the authorizer reads exactly the two documented
Authorization schemes and compares a presented key with every stored key in constant time, and
FM_ALLOWED_MODELS lets through exactly the listed models."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from local.functions import load
from shared import errors
from shared.config import Settings
from shared.native.services import resolve_model
from shared.openai import catalog

KEY = "fmk_promise-key-0123456789"
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()
OTHER = hashlib.sha256(b"fmk_someone-else").hexdigest()
THIRD = hashlib.sha256(b"fmk_a-third-one").hexdigest()


def _authorize(headers: dict[str, str]) -> dict:
    return load("authorizer")({"headers": headers, "httpMethod": "POST", "path": "/x"}, None)


# -- the Authorization scheme is one of the two names, exactly -------------------------------------------

@pytest.mark.parametrize("scheme", ["Bear", "bearer-", "Bearerx", "api", "Api-", "r", "e", "-", "key", "Api-Ke",
                                    "Bearerapi-key", "bearer,api-key", "Bearer/Api-Key", "api-keyy", "xbearer"])
def test_a_scheme_that_is_only_part_of_bearer_or_api_key_is_refused_even_with_the_right_key(
        monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    monkeypatch.setenv("CALLER_KEY_SHA256", f"alice:{DIGEST}")
    assert _authorize({"Authorization": f"{scheme} {KEY}"}) == {"isAuthorized": False}
    # the same key under a documented scheme is let in: the refusal is the scheme's
    assert _authorize({"Authorization": f"Bearer {KEY}"})["isAuthorized"] is True
    assert _authorize({"Authorization": f"API-KEY {KEY}"})["isAuthorized"] is True


# -- the comparison: every stored key, in constant time, no early exit ------------------------------------

@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("presented", [KEY, "fmk_not-a-caller"])
def test_a_presented_key_is_compared_with_every_stored_key_in_constant_time(
        monkeypatch: pytest.MonkeyPatch, position: int, presented: str) -> None:
    stored = [("bob", OTHER), ("carol", THIRD)]
    stored.insert(position, ("alice", DIGEST))
    monkeypatch.setenv("CALLER_KEY_SHA256", ",".join(f"{name}:{digest}" for name, digest in stored))
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verdict = _authorize({"X-Api-Key": presented})
    presented_digest = hashlib.sha256(presented.encode()).digest()
    # each stored key once, through hmac.compare_digest, whether or not (and wherever) one matched
    assert sorted(compared) == sorted((presented_digest, bytes.fromhex(d)) for _, d in stored)
    if presented == KEY:
        assert verdict == {"isAuthorized": True, "context": {"caller": "alice"}}
    else:
        assert verdict == {"isAuthorized": False}


# -- FM_ALLOWED_MODELS: exactly the listed models ---------------------------------------------------------

def _settings(*allowed: str) -> Settings:
    return Settings(folder_id="b1gfolder", allowed_models=allowed)


@pytest.mark.parametrize("asked", [
    "yandexgpt-lite", "yandexgpt-lite/rc", "gpt://b1gfolder/yandexgpt-lite/latest", "yandexgpt2", "xyandexgpt",
    "gpt://b1gfolder/yandexgpt-lite/yandexgpt", "gpt://yandexgpt/other/latest", "gpt://b1gyandexgpt/other/latest",
    "gpt://b1gfolder/other/yandexgpt", "gpt://b1gfolder/other/latest@yandexgpt", "Yandexgpt",
])
def test_an_allow_list_name_refuses_every_model_that_merely_contains_it(asked: str) -> None:
    settings = _settings("yandexgpt")
    with pytest.raises(errors.ForbiddenError, match="is not allowed here"):
        resolve_model(asked, "gpt", settings)
    with pytest.raises(errors.ForbiddenError) as refused:  # /v1 says so naming `model`
        catalog.resolve(asked, "gpt", settings)
    assert refused.value.status == 403
    assert refused.value.details == [{"@type": "field", "field": "model",
                                      "description": refused.value.message.removeprefix("model: ")}]


@pytest.mark.parametrize("asked", ["yandexgpt", "yandexgpt/rc", "gpt://b1gfolder/yandexgpt/latest",
                                   "gpt://b1gfolder/yandexgpt/rc"])
def test_an_allow_list_name_lets_that_model_in_at_any_version(asked: str) -> None:
    assert resolve_model(asked, "gpt", _settings("yandexgpt")).split("/")[3] == "yandexgpt"
    assert catalog.resolve(asked, "gpt", _settings("yandexgpt")).split("/")[3] == "yandexgpt"


@pytest.mark.parametrize("allowed,asked,ok", [
    ("gpt://b1gfolder/yandexgpt/latest", "yandexgpt", True),
    ("gpt://b1gfolder/yandexgpt/latest", "gpt://b1gfolder/yandexgpt/latest", True),
    ("gpt://b1gfolder/yandexgpt/latest", "yandexgpt/rc", False),  # another version
    ("gpt://b1gfolder/yandexgpt/latest", "gpt://b1gother/yandexgpt/latest", False),  # another folder
    ("gpt://b1gfolder/yandexgpt/latest", "gpt://b1gfolder/yandexgpt/latest@tuned", False),
    ("gpt://b1gfolder/yandexgpt", "yandexgpt", False),  # an entry that is a prefix of the URI
    ("yandexgpt/rc", "yandexgpt/rc", True),
    ("yandexgpt/rc", "yandexgpt", False),
    ("yandexgpt/rc", "yandexgpt/rc2", False),
    ("yandexgpt/latest", "yandexgpt-lite", False),
])
def test_a_versioned_or_full_allow_list_entry_is_matched_exactly(allowed: str, asked: str, ok: bool) -> None:
    settings = _settings(allowed)
    if ok:
        assert resolve_model(asked, "gpt", settings).startswith("gpt://")
    else:
        with pytest.raises(errors.ForbiddenError):
            resolve_model(asked, "gpt", settings)
