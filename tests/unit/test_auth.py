"""Credential kinds and the chain, with a fake http callable and a fake clock: no sockets."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import jwt
import pytest

from shared import auth
from shared.config import Settings
from shared.errors import CredentialsError
from tests.keys import authorized_key, authorized_key_json


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        if isinstance(self._body, str):
            raise ValueError("not json")
        return self._body


class FakeHttp:
    def __init__(self, *answers: FakeResponse | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        with self.lock:
            self.calls.append({"method": method, "url": url, **kwargs})
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        time.sleep(0.01)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(**values: Any) -> Settings:
    return Settings(metadata_addr="127.0.0.1:9", **values)


def test_chain_prefers_explicit_credentials_in_order() -> None:
    key = authorized_key_json()
    both = settings(api_key="AQVNkey-one-1234567890", iam_token="t1.token-abcdefghijkl", sa_key_json=key)
    assert isinstance(auth.find_credentials(both), auth.ApiKey)
    assert isinstance(auth.find_credentials(settings(iam_token="t1.token-abcdefghijkl", sa_key_json=key)), auth.IamToken)
    assert isinstance(auth.find_credentials(settings(sa_key_json=key)), auth.ServiceAccountKey)


def test_context_token_beats_metadata_and_explicit_beats_context() -> None:
    class Ctx:
        token = {"access_token": "t1.ctx-token-000000000", "expires_in": 100, "token_type": "Bearer"}

    assert isinstance(auth.find_credentials(settings(), Ctx()), auth.ContextToken)
    assert isinstance(auth.find_credentials(settings(api_key="AQVNkey-1234567890"), Ctx()), auth.ApiKey)


def test_headers_by_kind() -> None:
    assert auth.ApiKey("s", "AQVNsecret-value-000").header() == {"Authorization": "Api-Key AQVNsecret-value-000"}
    assert auth.IamToken("s", "t1.abc-token-0000000").header() == {"Authorization": "Bearer t1.abc-token-0000000"}
    assert auth.IamToken.sends_folder and not auth.ApiKey.sends_folder and not auth.ServiceAccountKey.sends_folder


def test_repr_never_shows_the_secret() -> None:
    creds = auth.ApiKey("env YC_API_KEY", "AQVNsuper-secret-value")
    assert "super-secret" not in repr(creds) and "env YC_API_KEY" in repr(creds)


def test_service_account_jwt_has_the_documented_claims() -> None:
    key = authorized_key()
    clock = Clock()
    creds = auth.ServiceAccountKey.from_json(json.dumps(key), "env YC_SA_KEY_JSON", "https://iam.example/iam/v1/tokens",
                                             clock)
    token = creds.signed_jwt()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "PS256" and header["kid"] == key["id"] and header["typ"] == "JWT"
    claims = jwt.decode(token, key["public_key"], algorithms=["PS256"], audience="https://iam.example/iam/v1/tokens",
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == key["service_account_id"]
    assert claims["exp"] - claims["iat"] <= 3600


def test_key_prefix_line_is_stripped_and_rest_shape_accepted() -> None:
    key = authorized_key()
    rest_shape = {"key": {"id": key["id"], "serviceAccountId": key["service_account_id"]},
                  "privateKey": key["private_key"].replace("\n", "\\n")}
    creds = auth.ServiceAccountKey.from_json(json.dumps(rest_shape), "s", "https://iam/x")
    assert creds.key_id == key["id"]


@pytest.mark.parametrize("text,expected", [
    ("not json", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"id": "x"}', "missing service_account_id, private_key"),
    ('{"id": "x", "service_account_id": "y", "private_key": "garbage"}', "no PEM block"),
    ('{"id": "x", "service_account_id": "y", "private_key": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----"}',
     "not a readable PEM"),
])
def test_broken_key_is_an_error_not_a_skip(text: str, expected: str) -> None:
    with pytest.raises(CredentialsError, match=expected) as info:
        auth.find_credentials(settings(sa_key_json=text))
    assert "AAAA" not in str(info.value)


def test_unreadable_key_file_names_the_variable(tmp_path: Any) -> None:
    with pytest.raises(CredentialsError, match="YC_SA_KEY_FILE"):
        auth.find_credentials(settings(sa_key_file=str(tmp_path / "missing.json")))


def test_exchanged_token_is_refreshed_hourly_at_most() -> None:
    clock = Clock()
    http = FakeHttp(FakeResponse(200, {"iamToken": "t1.first-token-00000", "expiresAt": "2027-01-15T20:00:00.123456789Z"}))
    creds = auth.ServiceAccountKey.from_json(authorized_key_json(), "s", "https://iam/x", clock)
    creds.ensure_fresh(http)
    assert creds.token == "t1.first-token-00000"
    assert creds.expiry == clock.now + 3600  # capped at an hour although the token lives 12 h
    clock.now += 3000  # 10 minutes left: still fresh (margin 5 min)
    creds.ensure_fresh(http)
    assert len(http.calls) == 1
    clock.now += 400  # inside the margin: refresh
    http.answers = [FakeResponse(200, {"iamToken": "t1.second-token-0000", "expiresAt": "2027-01-15T20:00:00Z"})]
    creds.ensure_fresh(http)
    assert creds.token == "t1.second-token-0000" and len(http.calls) == 2
    assert http.calls[0]["json"]["jwt"].count(".") == 2


def test_threads_share_one_refresh() -> None:
    http = FakeHttp(FakeResponse(200, {"access_token": "t1.meta-token-000000", "expires_in": 3600}))
    creds = auth.MetadataToken("127.0.0.1:1")
    threads = [threading.Thread(target=creds.ensure_fresh, args=(http,)) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(http.calls) == 1
    assert http.calls[0]["headers"] == {"Metadata-Flavor": "Google"}


def test_stale_token_survives_a_failed_refresh_but_expired_does_not() -> None:
    clock = Clock()
    http = FakeHttp(FakeResponse(200, {"access_token": "t1.meta-token-000000", "expires_in": 3600}))
    creds = auth.MetadataToken("127.0.0.1:1", clock=clock)
    creds.ensure_fresh(http)
    clock.now += 3500  # stale
    http.answers = [FakeResponse(503, {})]
    creds.ensure_fresh(http)  # logged, current token kept
    assert creds.token == "t1.meta-token-000000"
    clock.now += 200  # expired
    with pytest.raises(CredentialsError, match="HTTP 503"):
        creds.ensure_fresh(http)


def test_token_exchange_retries_once_on_connection_error() -> None:
    http = FakeHttp(ConnectionError("boom"), FakeResponse(200, {"access_token": "t1.meta-token-000000", "expires_in": 60}))
    creds = auth.MetadataToken("127.0.0.1:1")
    creds.ensure_fresh(http)
    assert len(http.calls) == 2


def test_context_token_follows_each_invocation() -> None:
    class Ctx:
        def __init__(self, token: str) -> None:
            self.token = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    creds = auth.default_credentials(settings(), Ctx("t1.first-000000000"))
    assert creds.token == "t1.first-000000000"
    again = auth.default_credentials(settings(), Ctx("t1.second-00000000"))
    assert again is creds and creds.token == "t1.second-00000000"


def test_rfc3339_with_nanoseconds() -> None:
    assert auth.parse_rfc3339("2025-01-01T00:00:00.123456789Z") == pytest.approx(1735689600.123456)
    assert auth.parse_rfc3339("garbage") is None
