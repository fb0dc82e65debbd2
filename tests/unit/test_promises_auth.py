"""The credential chain's promises, each pinned down: when a token counts as fresh, stale or expired; what a
refresh asks for and what it keeps; what a token request retries; which provider the chain picks and what it
says when none works. A fake `http` and the test clock: no sockets, no waiting."""

from __future__ import annotations

import io
import json
import sys
import uuid
from typing import Any

import jwt
import pytest

from shared import auth, logs
from shared.config import Settings
from shared.errors import CredentialsError, CredentialsUnavailableError
from tests.clock import ManualClock
from tests.keys import authorized_key, authorized_key_json

IAM = "https://iam.test/iam/v1/tokens"


class Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        if isinstance(self._body, str):
            raise ValueError("not json")
        return self._body


class Http:
    """Answers in order (the last repeats) and records each request."""

    def __init__(self, *answers: Answer | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> Answer:
        self.calls.append({"method": method, "url": url, **kwargs})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def settings(**values: Any) -> Settings:
    return Settings(metadata_addr="127.0.0.1:9", **values)


def metadata(clock: ManualClock) -> auth.MetadataToken:
    return auth.MetadataToken("169.254.169.254", clock=clock.now)


# -- fresh, stale, expired -----------------------------------------------------------------------------

def test_a_token_is_fresh_until_five_minutes_are_left_then_stale_then_expired(clock: ManualClock) -> None:
    creds = auth.Credentials("s", token="t1.some-token-0000000", expiry=clock.now() + 301, clock=clock.now)
    assert creds.state == "fresh"
    clock.advance(1)
    assert creds.state == "stale"  # exactly 300 s left: refresh now
    clock.advance(299)
    assert creds.state == "stale"  # 1 s left: still usable
    clock.advance(1)
    assert creds.state == "expired"  # 0 s left
    assert auth.Credentials("s", token="t1.some-token-0000000").state == "fresh"  # no expiry: never expires
    assert auth.Credentials("s").state == "expired"  # never fetched


def test_the_default_clock_is_the_shared_clock(clock: ManualClock) -> None:
    creds = auth.Credentials("s", token="t1.some-token-0000000", expiry=clock.now() + 400)
    assert creds.state == "fresh"
    clock.advance(200)
    assert creds.state == "stale"  # no clock passed: shared.clock's time, which the test moved


def test_a_token_without_a_source_of_new_ones_is_used_as_it_is(clock: ManualClock) -> None:
    creds = auth.IamToken("env YC_IAM_TOKEN", "t1.user-token-0000000", expiry=clock.now() - 10, clock=clock.now)
    creds.ensure_fresh(Http(Answer(500, {})))  # not refreshable: nothing is asked for
    creds.invalidate()
    assert creds.expiry == clock.now() - 10  # invalidate() leaves a kind that cannot refresh alone
    assert creds.header() == {"Authorization": "Bearer t1.user-token-0000000"}
    empty = auth.ApiKey("env YC_API_KEY", None)
    with pytest.raises(CredentialsError, match="^env YC_API_KEY has no token$"):
        empty.ensure_fresh()
    with pytest.raises(CredentialsError, match="^env YC_API_KEY has no token$"):
        empty.header()
    assert auth.Credentials("s").refresh(Http(Answer(500, {}))) is None  # the base kind has no source


def test_every_token_of_no_known_shape_is_registered_for_redaction(clock: ManualClock) -> None:
    given = "opaque-" + uuid.uuid4().hex  # no Api-Key/Bearer/t1./eyJ/AQVN shape: only registration redacts it
    auth.ApiKey("env YC_API_KEY", given)
    fetched = "opaque-" + uuid.uuid4().hex
    metadata(clock).refresh(Http(Answer(200, {"access_token": fetched, "expires_in": 60})))
    assert logs.redact(f"{given} {fetched}") == "[REDACTED] [REDACTED]"


def test_no_auth_sends_nothing_and_never_refreshes() -> None:
    creds = auth.NoCredentials()
    assert creds.header() == {} and creds.state == "fresh" and creds.ensure_fresh() is None
    assert creds.source == "FM_NO_AUTH"


# -- refreshing ----------------------------------------------------------------------------------------

def test_the_metadata_token_is_asked_for_with_the_header_and_its_lifetime_kept(clock: ManualClock) -> None:
    http = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": "3600"}))
    creds = metadata(clock)
    assert creds.state == "expired" and repr(creds) == "MetadataToken(source='metadata service 169.254.169.254', state='expired')"
    creds.ensure_fresh(http)
    assert http.calls == [{"method": "GET", "url": f"http://169.254.169.254{auth.METADATA_PATH}",
                           "headers": {"Metadata-Flavor": "Google"}, "timeout": (1.0, 2.0)}]
    assert creds.token == "t1.meta-token-00000000" and creds.expiry == clock.now() + 3600
    assert logs.redact("t1.meta-token-00000000") == "[REDACTED]"
    forever = metadata(clock)
    forever.refresh(Http(Answer(200, {"access_token": "t1.meta-token-forever0", "expires_in": "soon"})))
    assert forever.expiry is None and forever.state == "fresh"


@pytest.mark.parametrize("body,message", [
    ({"expires_in": 60}, "answer has no access_token"),
    ({"access_token": "", "expires_in": 60}, "answer has no access_token"),
    ({"access_token": 42}, "answer has no access_token"),
    ("<html>", "answer is not JSON"),
    (["t1.x"], "answer is not a JSON object"),
])
def test_a_bad_metadata_answer_is_an_error_naming_the_source(clock: ManualClock, body: Any, message: str) -> None:
    with pytest.raises(CredentialsError) as info:
        metadata(clock).refresh(Http(Answer(200, body)))
    assert info.value.message == f"metadata service 169.254.169.254: {message}"


def test_a_token_request_is_tried_twice_on_connection_errors_5xx_and_429_only(clock: ManualClock) -> None:
    good = Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 60})
    for first in (ConnectionError("refused"), Answer(500, {}), Answer(503, {}), Answer(429, {})):
        http = Http(first, good)
        metadata(clock).refresh(http)
        assert len(http.calls) == 2
    for refused in (Answer(400, {}), Answer(401, {}), Answer(404, {}), Answer(499, {})):
        http = Http(refused, good)
        with pytest.raises(CredentialsError) as info:
            metadata(clock).refresh(http)
        assert len(http.calls) == 1
        assert type(info.value) is CredentialsError and info.value.status == 500  # refused: a retry will not help
        assert info.value.message == (f"metadata service 169.254.169.254: token request to http://169.254.169.254"
                                      f"{auth.METADATA_PATH} failed (HTTP {refused.status_code})")
    http = Http(OSError("down"))
    with pytest.raises(CredentialsUnavailableError, match=r"failed \(OSError\)$") as outage:
        metadata(clock).refresh(http)
    assert len(http.calls) == 2
    for busy in (Answer(500, {}), Answer(503, {}), Answer(429, {})):
        with pytest.raises(CredentialsUnavailableError, match=rf"failed \(HTTP {busy.status_code}\)$") as outage:
            metadata(clock).refresh(Http(busy, busy))
    # down or busy on both tries: the caller gets a retryable 503 with Retry-After, not a 500
    assert (outage.value.status, outage.value.grpc_code, outage.value.retryable) == (503, 14, True)
    assert outage.value.retry_after == auth.TRY_AGAIN_S == 1.0


def test_a_refresh_that_fails_keeps_a_stale_token_logs_it_and_fails_an_expired_one(clock: ManualClock) -> None:
    creds = metadata(clock)
    creds.ensure_fresh(Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 3600})))
    stream = io.StringIO()
    logs.configure(level="INFO", stream=stream)
    try:
        clock.advance(3400)  # stale
        creds.ensure_fresh(Http(Answer(503, {})))
        assert creds.token == "t1.meta-token-00000000"
        (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
        assert line["msg"] == "token refresh failed; using the current token until it expires"
        assert line["source"] == "metadata service 169.254.169.254" and line["level"] == "WARN"
        clock.advance(200)  # expired
        with pytest.raises(CredentialsError, match=r"failed \(HTTP 503\)$"):
            creds.ensure_fresh(Http(Answer(503, {})))
    finally:
        logs.configure(level="INFO", stream=sys.stdout)


def test_a_fresh_token_is_not_refreshed_and_an_invalidated_one_is(clock: ManualClock) -> None:
    http = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 3600}),
                Answer(200, {"access_token": "t1.meta-token-11111111", "expires_in": 3600}))
    creds = metadata(clock)
    creds.ensure_fresh(http)
    creds.ensure_fresh(http)
    assert len(http.calls) == 1
    creds.invalidate()  # upstream said 401
    assert creds.expiry == clock.now() - 1 and creds.state == "expired"
    creds.ensure_fresh(http)
    assert creds.token == "t1.meta-token-11111111" and len(http.calls) == 2


def test_a_refresh_another_thread_finished_is_not_repeated(clock: ManualClock) -> None:
    """The state is read again under the lock: a thread that waited for it finds the token fresh."""
    creds = metadata(clock)
    http = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 3600}))

    class RefreshesWhileWaiting:
        def __enter__(self) -> None:
            creds._set_token("t1.meta-token-by-other", clock.now() + 3600)  # the other thread's refresh

        def __exit__(self, *exc: Any) -> None:
            return None

    creds._lock = RefreshesWhileWaiting()  # type: ignore[assignment]
    creds.ensure_fresh(http)
    assert http.calls == [] and creds.token == "t1.meta-token-by-other"


# -- service-account keys ------------------------------------------------------------------------------

def test_the_jwt_has_the_documented_header_and_claims(clock: ManualClock) -> None:
    key = authorized_key()
    creds = auth.ServiceAccountKey.from_json(json.dumps(key), "env YC_SA_KEY_JSON", IAM, clock.now)
    token = creds.signed_jwt()
    assert jwt.get_unverified_header(token) == {"alg": "PS256", "kid": key["id"], "typ": "JWT"}
    claims = jwt.decode(token, key["public_key"], algorithms=["PS256"], audience=IAM,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": key["service_account_id"], "aud": IAM, "iat": int(clock.now()),
                      "exp": int(clock.now()) + 3600}
    assert logs.redact(f"jwt={token}") == "jwt=[REDACTED]"


@pytest.fixture
def lines() -> Any:
    stream = io.StringIO()
    logs.configure(level="INFO", stream=stream)
    yield stream
    logs.configure(level="INFO", stream=sys.stdout)


def test_the_exchange_posts_the_jwt_and_keeps_the_earlier_of_its_expiry_and_an_hour(clock: ManualClock,
                                                                                     lines: io.StringIO) -> None:
    creds = auth.ServiceAccountKey.from_json(authorized_key_json(), "env YC_SA_KEY_JSON", IAM, clock.now)
    soon = auth.parse_rfc3339("2030-01-01T00:00:00Z")
    clock.advance(soon - clock.now() - 1800)  # the token the exchange returns lives 30 more minutes
    http = Http(Answer(200, {"iamToken": "t1.exchanged-00000000", "expiresAt": "2030-01-01T00:00:00Z"}))
    creds.ensure_fresh(http)
    (request,) = http.calls
    assert (request["method"], request["url"], request["timeout"]) == ("POST", IAM, (3.05, 10))
    assert set(request["json"]) == {"jwt"} and request["json"]["jwt"].count(".") == 2
    assert creds.token == "t1.exchanged-00000000" and creds.expiry == soon  # 30 min < an hour
    (line,) = [line for line in map(json.loads, lines.getvalue().splitlines())
               if line["msg"] == "exchanged service-account key for an IAM token"]
    assert line["source"] == "env YC_SA_KEY_JSON" and line["level"] == "INFO"
    no_expiry = Http(Answer(200, {"iamToken": "t1.exchanged-11111111"}))
    creds.refresh(no_expiry)
    assert creds.expiry == clock.now() + 3600  # no expiresAt: an hour


@pytest.mark.parametrize("body", [{"expiresAt": "2030-01-01T00:00:00Z"}, {"iamToken": ""}, {"iamToken": 7}])
def test_an_exchange_without_a_token_is_an_error(clock: ManualClock, body: dict[str, Any]) -> None:
    creds = auth.ServiceAccountKey.from_json(authorized_key_json(), "env YC_SA_KEY_JSON", IAM, clock.now)
    with pytest.raises(CredentialsError) as info:
        creds.refresh(Http(Answer(200, body)))
    assert info.value.message == "env YC_SA_KEY_JSON: IAM token exchange answered without iamToken"


def test_key_files_in_every_documented_shape_are_read(clock: ManualClock) -> None:
    key = authorized_key()
    plain = auth.ServiceAccountKey.from_json(json.dumps(key), "s", IAM)
    assert (plain.key_id, plain.service_account_id, plain.iam_endpoint, plain.source) == (
        key["id"], key["service_account_id"], IAM, "s")
    rest = {"key": {"id": "kid-rest", "serviceAccountId": "sa-rest"}, "privateKey": key["private_key"].replace("\n", "\\n")}
    parsed = auth.ServiceAccountKey.from_json(json.dumps(rest), "s", IAM)
    assert (parsed.key_id, parsed.service_account_id) == ("kid-rest", "sa-rest")
    odd = {**key, "key": "not an object"}  # a `key` that is not an object is ignored
    assert auth.ServiceAccountKey.from_json(json.dumps(odd), "s", IAM).key_id == key["id"]
    assert logs.redact(f"x {key['private_key']} y") == "x [REDACTED] y"  # the whole value, prefix line and all
    with pytest.raises(CredentialsError) as info:
        auth.ServiceAccountKey.from_json(json.dumps({**key, "private_key": "no pem"}), "file YC_SA_KEY_FILE", IAM)
    assert info.value.message == "file YC_SA_KEY_FILE: private_key has no PEM block"


@pytest.mark.parametrize("data,missing", [
    ({}, "id, service_account_id, private_key"),
    ({"id": "", "service_account_id": "sa", "private_key": "k"}, "id"),
    ({"id": "k1", "service_account_id": 5, "private_key": "k"}, "service_account_id"),
    ({"id": "k1", "service_account_id": "sa"}, "private_key"),
])
def test_a_key_missing_fields_names_them(data: dict[str, Any], missing: str) -> None:
    with pytest.raises(CredentialsError) as info:
        auth.ServiceAccountKey.from_json(json.dumps(data), "file YC_SA_KEY_FILE", IAM)
    assert info.value.message == f"file YC_SA_KEY_FILE: missing {missing}"


def test_an_unreadable_private_key_names_the_source_and_hides_the_key() -> None:
    with pytest.raises(CredentialsError) as info:
        auth.load_private_key("no pem here", "env YC_SA_KEY_JSON")
    assert info.value.message == "env YC_SA_KEY_JSON: private_key has no PEM block"
    with pytest.raises(CredentialsError) as info:
        auth.load_private_key("junk -----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "k")
    assert info.value.message == "k: private_key is not a readable PEM private key"


@pytest.mark.parametrize("text,expected", [
    ("2025-01-01T00:00:00Z", 1735689600.0),
    ("2025-01-01T00:00:00.5Z", 1735689600.5),
    ("2025-01-01T00:00:00.123456789Z", 1735689600.123456),
    (" 2025-01-01T03:00:00+03:00 ", 1735689600.0),
    ("2025-01-01T00:00:00.250+00:00", 1735689600.25),
    ("garbage", None), ("2025-13-01T00:00:00Z", None), (None, None), (1735689600, None),
])
def test_rfc3339_times(text: Any, expected: float | None) -> None:
    assert auth.parse_rfc3339(text) == (pytest.approx(expected) if expected is not None else None)


# -- the function's own token --------------------------------------------------------------------------

class Context:
    def __init__(self, token: Any) -> None:
        self.token = token


def test_the_context_token_is_taken_with_its_lifetime(clock: ManualClock) -> None:
    creds = auth.ContextToken(Context({"access_token": "t1.ctx-token-00000000", "expires_in": 600}), clock.now)
    assert creds.token == "t1.ctx-token-00000000" and creds.expiry == clock.now() + 600
    assert creds.source == "function context.token" and creds.refreshable
    creds.use_context(Context({"access_token": "t1.ctx-token-11111111"}))
    assert creds.token == "t1.ctx-token-11111111" and creds.expiry is None
    same = creds.context
    creds.use_context(same)
    creds.use_context(None)
    creds.use_context(Context({"access_token": ""}))  # a context without a usable token changes nothing
    creds.use_context(Context("t1.not-a-dict"))
    assert creds.token == "t1.ctx-token-11111111" and creds.context is same


def test_a_context_token_that_went_away_is_an_error(clock: ManualClock) -> None:
    context = Context({"access_token": "t1.ctx-token-00000000", "expires_in": 1})
    creds = auth.ContextToken(context, clock.now)
    context.token = None
    clock.advance(2)
    with pytest.raises(CredentialsError, match="^function context.token is no longer present$"):
        creds.ensure_fresh()


# -- the chain -----------------------------------------------------------------------------------------

def test_the_chain_order_and_the_source_each_kind_reports(tmp_path: Any) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(authorized_key_json())
    context = Context({"access_token": "t1.ctx-token-00000000", "expires_in": 600})
    cases = [
        (settings(no_auth=True, api_key="AQVNkey-0123456789abcdef"), None, auth.NoCredentials, "FM_NO_AUTH"),
        (settings(api_key="AQVNkey-0123456789abcdef", iam_token="t1.iam-0000000000"), context, auth.ApiKey,
         "env YC_API_KEY"),
        (settings(iam_token="t1.iam-0000000000", sa_key_file=str(key_file)), context, auth.IamToken, "env YC_IAM_TOKEN"),
        (settings(sa_key_json=authorized_key_json(), sa_key_file=str(key_file)), context, auth.ServiceAccountKey,
         "env YC_SA_KEY_JSON"),
        (settings(sa_key_file=str(key_file)), context, auth.ServiceAccountKey, "file YC_SA_KEY_FILE"),
        (settings(), context, auth.ContextToken, "function context.token"),
    ]
    def fixed() -> float:  # a clock of the caller's, not the shared one: every kind must keep it
        return 1_000_000.0

    for config, ctx, kind, source in cases:
        found = auth.find_credentials(config, ctx, clock=fixed)
        assert type(found) is kind and found.source == source
        if kind is not auth.NoCredentials:
            assert found.clock is fixed
    assert auth.find_credentials(cases[1][0]).token == "AQVNkey-0123456789abcdef"
    assert auth.find_credentials(cases[2][0]).token == "t1.iam-0000000000"
    for config in (cases[3][0], cases[4][0]):
        found = auth.find_credentials(config, clock=fixed)
        assert found.iam_endpoint == config.iam_endpoint and found.key_id == "ajekeyid0000test"
        found.refresh(Http(Answer(200, {"iamToken": "t1.exchanged-22222222"})))
        assert found.expiry == 1_000_000.0 + 3600  # the exchange reads the caller's clock
    context_token = auth.find_credentials(settings(), context, clock=fixed)
    assert context_token.expiry == 1_000_000.0 + 600


def test_the_metadata_service_is_the_last_resort(clock: ManualClock) -> None:
    http = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 60}))
    found = auth.find_credentials(Settings(metadata_addr="10.0.0.1:80"), None, http, clock=lambda: 5.0)
    assert isinstance(found, auth.MetadataToken) and found.token == "t1.meta-token-00000000"
    assert found.expiry == 65.0  # expires_in on the caller's clock
    assert http.calls[0]["url"] == f"http://10.0.0.1:80{auth.METADATA_PATH}" and http.calls[0]["timeout"] == (1.0, 2.0)
    quiet = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 60}))
    auth.find_credentials(Settings(), None, quiet)  # not configured: probe the default address briefly
    assert quiet.calls[0]["url"] == f"http://169.254.169.254{auth.METADATA_PATH}" and quiet.calls[0]["timeout"] == (0.2, 1.0)


def test_when_nothing_answers_the_error_says_what_to_set() -> None:
    with pytest.raises(CredentialsError) as info:
        auth.find_credentials(Settings(), None, Http(ConnectionError("no route")))
    assert info.value.message == (
        "no credentials found: tried YC_API_KEY, YC_IAM_TOKEN, YC_SA_KEY_JSON, YC_SA_KEY_FILE, the function's "
        "context.token (give the function a service account) and the metadata service; set one of them")
    with pytest.raises(CredentialsError) as info:  # an address that was set explicitly: say why it failed
        auth.find_credentials(Settings(metadata_addr="10.0.0.1:80"), None, Http(Answer(403, {})))
    assert info.value.message.endswith(
        f"the metadata service (metadata service 10.0.0.1:80: token request to http://10.0.0.1:80{auth.METADATA_PATH} "
        "failed (HTTP 403)); set one of them")
    # finding nothing is a configuration to fix (500), even when the metadata service was busy: once the
    # chain has chosen a source, that source's outages are 503s (the refresh tests above)
    for answers in ((Answer(403, {}),), (Answer(503, {}), Answer(503, {}))):
        with pytest.raises(CredentialsError) as info:
            auth.find_credentials(Settings(metadata_addr="10.0.0.1:80"), None, Http(*answers))
        assert type(info.value) is CredentialsError and info.value.status == 500


def test_an_unreadable_key_file_says_why(tmp_path: Any) -> None:
    with pytest.raises(CredentialsError) as info:
        auth.find_credentials(settings(sa_key_file=str(tmp_path / "gone.json")))
    assert info.value.message == f"YC_SA_KEY_FILE: cannot read {tmp_path / 'gone.json'} (No such file or directory)"


def test_the_instance_chooses_once_logs_the_source_once_and_forgets_on_reset() -> None:
    stream = io.StringIO()
    logs.configure(level="INFO", stream=stream)
    try:
        first = auth.default_credentials(settings(api_key="AQVNkey-0123456789abcdef"))
        again = auth.default_credentials(settings(iam_token="t1.iam-0000000000"))  # cached: the chain is not walked
        assert again is first and isinstance(first, auth.ApiKey)
        auth.reset_credentials()
        other = auth.default_credentials(settings(iam_token="t1.iam-0000000000"))
        assert isinstance(other, auth.IamToken)
    finally:
        logs.configure(level="INFO", stream=sys.stdout)
    chosen = [line for line in map(json.loads, stream.getvalue().splitlines()) if line["msg"] == "credentials chosen"]
    assert [(c["source"], c["level"]) for c in chosen] == [("env YC_API_KEY", "INFO"), ("env YC_IAM_TOKEN", "INFO")]
    assert "AQVNkey" not in stream.getvalue()


def test_the_instance_chain_asks_the_metadata_service_through_the_given_http() -> None:
    http = Http(Answer(200, {"access_token": "t1.meta-token-00000000", "expires_in": 60}))
    found = auth.default_credentials(Settings(metadata_addr="10.0.0.1:80"), None, http)
    assert isinstance(found, auth.MetadataToken) and len(http.calls) == 1


def test_numbers_and_context_tokens_are_read_defensively() -> None:
    assert auth._number("12.5") == 12.5 and auth._number(None) is None and auth._number("x") is None
    assert auth._number([1]) is None and auth._number(0) == 0.0
    assert auth._context_token(None) is None and auth._context_token(Context(None)) is None
    assert auth._context_token(object()) is None  # a context object without a token attribute
    assert auth._context_token(Context({"access_token": 5})) is None
    assert auth._context_token(Context({"access_token": "t"})) == {"access_token": "t"}
