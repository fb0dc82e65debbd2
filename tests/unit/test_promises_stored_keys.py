"""Promises of the authorizer for keys stored as data (shared/jobs/keys.py), against a stand-in Document API on
loopback that answers GetItem from a dict (milliseconds, so `make mutate` can use it): what a stored key lets
through and with which policy, what refuses it, what the instance remembers and for how long, how the store's
failures end (never as a refusal of a key that may be valid), and that the lookup is a signed, consistent GetItem
of exactly the key's digest record."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.functions import load
from shared import policy
from shared.policy import KeyCache, KeyPolicy
from tests.clock import ManualClock

SECRET = "fmk_stored-secret-0123456789abcdefghijklmnopq"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
BOOT = "fmk_configured-key-0123456789"


ACCESS_KEY, SECRET_KEY = "YCAJEtestaccesskey", "YCtestsecretkey0123456789"
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,]+)/([^,]+), SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})")


class DocApi(ThreadingHTTPServer):
    """GetItem from `items` (id -> plain record); `answers` (status, __type or a whole body as bytes: a front
    proxy's) are given, in turn, before it.

    It accepts what the Document API accepts and refuses the rest as it does: a request signed (SigV4, service
    dynamodb, its region) with the one static key it knows, whose signature it recomputes with botocore's signer
    over the method, path, signed headers and body it received; the GetItem target, the JSON 1.0 content type;
    its own table; a key that is exactly the table's hash key (`id`, a string). A read that is not consistent may
    be answered from `lagging` (a replica behind the last writes) while that is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.region = "ru-central1"
        self.table = "jobs-test"
        self.items: dict[str, dict[str, Any]] = {}
        self.lagging: dict[str, dict[str, Any]] | None = None
        self.secret_key = SECRET_KEY  # the secret of its one static key, ACCESS_KEY
        self.answers: list[tuple[int, str | bytes]] = []
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.refused: list[str] = []  # the __type of every request it refused

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ru-central1/b1gcloud/etndb"


class _Handler(BaseHTTPRequestHandler):
    server: DocApi

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        refusal = self._refusal(raw, body)
        if refusal:
            status, kind, message = refusal
            self.server.refused.append(kind)
            return self._answer(status, {"__type": kind, "message": message})
        if self.server.answers:
            status, kind = self.server.answers.pop(0)
            if isinstance(kind, bytes):
                return self._answer(status, kind, "text/html")
            return self._answer(status, {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": kind})
        items = self.server.items if body.get("ConsistentRead") is True or self.server.lagging is None \
            else self.server.lagging
        record = items.get(body["Key"]["id"]["S"])
        self._answer(200, {"Item": {k: ({"SS": v} if isinstance(v, list) else {"N": str(v)} if isinstance(v, (int, float))
                                        else {"S": v}) for k, v in record.items()}} if record else {})

    def _refusal(self, raw: bytes, body: Any) -> tuple[int, str, str] | None:
        coral, dynamodb = "com.amazon.coral.service#", "com.amazonaws.dynamodb.v20120810#"
        authorization = self.headers.get("Authorization")
        if not authorization:
            return 400, coral + "MissingAuthenticationTokenException", "Request is missing Authentication Token"
        parsed = _AUTH.fullmatch(authorization)
        signed = parsed.group(3).split(";") if parsed else []
        if not parsed or "host" not in signed or "x-amz-date" not in signed or not self.headers.get("X-Amz-Date"):
            return 400, coral + "IncompleteSignatureException", "Authorization header requires Credential, " \
                "SignedHeaders and Signature, signing host and x-amz-date"
        if parsed.group(1) != ACCESS_KEY:
            return 400, coral + "UnrecognizedClientException", "The security token included in the request is invalid."
        stamp = self.headers["X-Amz-Date"]
        try:
            skew = abs(datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC).timestamp()
                       - time.time())
        except ValueError:
            skew = float("inf")
        if skew > 15 * 60:
            return 400, coral + "InvalidSignatureException", "Signature expired or X-Amz-Date malformed"
        if any(self.headers.get(name) is None for name in signed):
            return 400, coral + "InvalidSignatureException", "A signed header is missing"
        # the signature a server holding the same secret computes over what it received
        received = AWSRequest(method=self.command, url=f"http://{self.headers['Host']}{self.path}", data=raw,
                              headers={name: self.headers[name] for name in signed})
        received.context["timestamp"] = stamp
        signer = SigV4Auth(Credentials(ACCESS_KEY, self.server.secret_key), "dynamodb", self.server.region)
        signature = signer.signature(signer.string_to_sign(received, signer.canonical_request(received)), received)
        expected = (f"AWS4-HMAC-SHA256 Credential={signer.scope(received)}, "
                    f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(received))}, Signature={signature}")
        if not hmac.compare_digest(expected, authorization):
            return 400, coral + "InvalidSignatureException", \
                "The request signature we calculated does not match the signature you provided."
        if self.headers.get("X-Amz-Target") != "DynamoDB_20120810.GetItem":
            return 400, coral + "UnknownOperationException", "Unknown operation"
        if self.headers.get("Content-Type") != "application/x-amz-json-1.0" or not isinstance(body, dict):
            return 400, coral + "SerializationException", "Expected a JSON 1.0 body"
        if body.get("TableName") != self.server.table:
            return 400, dynamodb + "ResourceNotFoundException", "Requested resource not found"
        key = body.get("Key")
        if not (isinstance(key, dict) and list(key) == ["id"] and isinstance(key["id"], dict)
                and list(key["id"]) == ["S"] and isinstance(key["id"]["S"], str)):
            return 400, dynamodb + "ValidationException", "The provided key element does not match the schema"
        if not isinstance(body.get("ConsistentRead", False), bool):
            return 400, dynamodb + "ValidationException", "ConsistentRead must be a boolean"
        return None

    def _answer(self, status: int, payload: dict[str, Any] | bytes, content_type: str = "application/x-amz-json-1.0") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def docapi(monkeypatch: pytest.MonkeyPatch) -> Iterator[DocApi]:
    server = DocApi()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    monkeypatch.setenv("DOCAPI_ENDPOINT", server.url)
    monkeypatch.setenv("JOBS_TABLE", "jobs-test")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("CALLER_KEY_SHA256", f"boot:{hashlib.sha256(BOOT.encode()).hexdigest()}")
    monkeypatch.setenv("FM_KEY_CACHE_S", "10")
    yield server
    server.shutdown()
    server.server_close()


def authorize(key: str) -> dict[str, Any]:
    return load("authorizer")({"headers": {"Authorization": f"Bearer {key}"}}, None)


def store(server: DocApi, **record: Any) -> None:
    server.items[policy.digest_key(DIGEST)] = {"name": "carol", **record}


def test_a_stored_key_is_let_in_with_its_name_and_policy(docapi: DocApi, clock: ManualClock) -> None:
    store(docapi, rpm=60, tpm=5000, monthly_tokens=10**6, monthly_budget=12.5, models=["yandexgpt-lite"])
    verdict = authorize(SECRET)
    assert verdict["isAuthorized"] is True and verdict["context"]["caller"] == "carol"
    handed = KeyPolicy.from_context(verdict["context"], "carol")
    assert handed == KeyPolicy(name="carol", models=("yandexgpt-lite",), rpm=60, tpm=5000, monthly_tokens=10**6,
                               monthly_budget=12.5)
    # one compact JSON string, limits as integers (the store's numbers come as text, read as floats)
    assert verdict["context"]["policy"] == ('{"name":"carol","models":["yandexgpt-lite"],"rpm":60,"tpm":5000,'
                                            '"monthly_tokens":1000000,"monthly_budget":12.5}')
    headers, body = docapi.requests[0]
    assert body == {"TableName": "jobs-test", "Key": {"id": {"S": f"apikey#sha256#{DIGEST}"}}, "ConsistentRead": True}
    assert headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=YCAJEtestaccesskey/")
    assert "/ru-central1/dynamodb/aws4_request" in headers["authorization"]
    assert "YCtestsecretkey" not in json.dumps(headers) + json.dumps(verdict)


def test_unknown_expired_and_reserved_keys_are_refused(docapi: DocApi, clock: ManualClock) -> None:
    assert authorize(SECRET) == {"isAuthorized": False}  # no such record
    clock.advance(11)  # past the remembered "no such key"
    store(docapi, key_expires_at=clock.now() + 5)
    assert authorize(SECRET)["isAuthorized"] is True
    clock.advance(5)  # expiry is judged at every verdict, the record still remembered
    assert authorize(SECRET) == {"isAuthorized": False}
    assert len(docapi.requests) == 2
    docapi.items[policy.digest_key(DIGEST)] = {"name": "anonymous"}
    clock.advance(11)
    assert authorize(SECRET) == {"isAuthorized": False}  # the name of callers nothing names is never a key's
    docapi.items[policy.digest_key(DIGEST)] = {"rpm": 5}
    clock.advance(11)
    assert authorize(SECRET) == {"isAuthorized": False}  # a record without a name


def test_a_configured_key_is_judged_without_the_store(docapi: DocApi) -> None:
    verdict = authorize(BOOT)
    assert verdict == {"isAuthorized": True, "context": {"caller": "boot"}}
    assert docapi.requests == []


def test_the_instance_remembers_a_lookup_for_exactly_the_cache_time(docapi: DocApi, clock: ManualClock) -> None:
    store(docapi)
    assert authorize(SECRET)["isAuthorized"] is True
    del docapi.items[policy.digest_key(DIGEST)]  # revoked
    clock.advance(9.9)
    assert authorize(SECRET)["isAuthorized"] is True and len(docapi.requests) == 1  # remembered
    clock.advance(0.2)
    assert authorize(SECRET) == {"isAuthorized": False} and len(docapi.requests) == 2
    store(docapi)  # a refusal is remembered as long
    clock.advance(9.9)
    assert authorize(SECRET) == {"isAuthorized": False} and len(docapi.requests) == 2
    clock.advance(0.2)
    assert authorize(SECRET)["isAuthorized"] is True and len(docapi.requests) == 3


def test_a_cache_time_of_zero_reads_every_time(docapi: DocApi, clock: ManualClock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_KEY_CACHE_S", "0")
    store(docapi)
    for _ in range(3):
        assert authorize(SECRET)["isAuthorized"] is True
    assert len(docapi.requests) == 3


@pytest.mark.parametrize(("answers", "tries"), [
    ([(500, "InternalServerError")] * 3, 3),
    ([(400, "ThrottlingException")] * 3, 3),
    ([(400, "AccessDeniedException")], 1),
])
def test_a_store_that_cannot_answer_fails_the_invocation_not_the_key(docapi: DocApi, clock: ManualClock,
                                                                     answers: list[tuple[int, str]], tries: int) -> None:
    """The gateway answers a failed authorizer with 500, which clients retry; a 403 they would not."""
    store(docapi)
    docapi.answers = list(answers)
    with pytest.raises(RuntimeError, match="stored key lookup failed"):
        authorize(SECRET)
    assert len(docapi.requests) == tries
    assert authorize(SECRET)["isAuthorized"] is True  # nothing was remembered from the failure


def test_a_store_that_answers_on_a_later_try_lets_the_key_in(docapi: DocApi, clock: ManualClock) -> None:
    store(docapi)
    docapi.answers = [(503, "ServiceUnavailable"), (400, "ThrottlingException")]
    assert authorize(SECRET)["isAuthorized"] is True and len(docapi.requests) == 3
    assert clock.sleeps == [0.05, 0.1]  # backed off between tries


def test_no_table_yet_means_no_stored_keys(docapi: DocApi, clock: ManualClock) -> None:
    docapi.answers = [(400, "ResourceNotFoundException")]
    assert authorize(SECRET) == {"isAuthorized": False} and len(docapi.requests) == 1


def test_no_store_configured_means_configured_keys_only(docapi: DocApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCAPI_ENDPOINT")
    store(docapi)
    assert authorize(SECRET) == {"isAuthorized": False}
    assert authorize(BOOT)["isAuthorized"] is True and docapi.requests == []


def test_the_cache_holds_at_most_its_size_dropping_the_least_recently_used(clock: ManualClock) -> None:
    cache = KeyCache(ttl_s=60, size=3)
    for name in ("a", "b", "c"):
        cache.put(name, {"name": name})
    assert cache.get("a") == (True, {"name": "a"})  # a is now the most recent
    cache.put("d", None)
    assert cache.get("b") == (False, None)  # the least recently used went
    assert cache.get("a")[0] and cache.get("c")[0] and cache.get("d") == (True, None)
    clock.advance(60)
    assert cache.get("a") == (False, None)  # expired at exactly ttl_s


def test_a_policy_from_context_is_only_the_callers_own_and_well_formed() -> None:
    mine = KeyPolicy(name="carol", rpm=5)
    assert KeyPolicy.from_context({"policy": mine.to_context()}, "carol") == mine
    assert KeyPolicy.from_context({"policy": mine.to_context()}, "mallory") is None
    for raw in ("", "not json", "[1]", json.dumps({"rpm": 5}), None, 7):
        assert KeyPolicy.from_context({"policy": raw}, "carol") is None
    assert KeyPolicy.from_context({}, "carol") is None
    assert json.loads(KeyPolicy(name="x", models=("a", "b")).to_context()) == {"name": "x", "models": ["a", "b"]}
    assert not KeyPolicy(name="x", models=("a",)).limited and KeyPolicy(name="x", monthly_budget=1.0).limited


def test_a_policy_has_integer_limits_and_a_money_budget_whatever_number_form_they_came_in() -> None:
    """The admin API's body and the store's record may hold 60.0 or 12: a policy's limits are counts, its budget money."""
    made = KeyPolicy.from_record({"name": "x", "rpm": 60.0, "tpm": 5000.0, "monthly_tokens": 1e6, "monthly_budget": 12,
                                  "models": ["a"], "key_expires_at": 1.0, "rpm_extra": 1})
    assert made == KeyPolicy(name="x", models=("a",), rpm=60, tpm=5000, monthly_tokens=10**6, monthly_budget=12.0)
    assert [type(made.rpm), type(made.tpm), type(made.monthly_tokens), type(made.monthly_budget)] == [int, int, int, float]
    assert made.to_context() == '{"name":"x","models":["a"],"rpm":60,"tpm":5000,"monthly_tokens":1000000,"monthly_budget":12.0}'
    assert KeyPolicy.from_record({"name": "y", "rpm": None, "models": None}) == KeyPolicy(name="y")  # None: no limit


def test_the_instance_remembers_at_most_4096_keys(clock: ManualClock) -> None:
    """The authorizer's memory (KeyCache with its default size): random keys cannot grow it past 4096 digests."""
    cache = KeyCache(ttl_s=60)
    for n in range(4097):
        cache.put(f"{n:064x}", None)
    assert cache.get(f"{0:064x}") == (False, None)  # the oldest went
    assert all(cache.get(f"{n:064x}") == (True, None) for n in range(1, 4097))


def test_unset_settings_mean_the_documented_defaults(docapi: DocApi, clock: ManualClock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """FM_KEY_CACHE_S unset: 10 s; JOBS_TABLE unset: `jobs`; YC_REGION names the signature's scope."""
    monkeypatch.delenv("FM_KEY_CACHE_S")
    monkeypatch.delenv("JOBS_TABLE")
    monkeypatch.setenv("YC_REGION", "il1")
    docapi.region, docapi.table = "il1", "jobs"  # a store in that region, with the default table
    store(docapi)
    assert authorize(SECRET)["isAuthorized"] is True
    headers, body = docapi.requests[0]
    assert body["TableName"] == "jobs" and "/il1/dynamodb/aws4_request" in headers["authorization"]
    clock.advance(9.9)
    authorize(SECRET)
    assert len(docapi.requests) == 1
    clock.advance(0.2)
    authorize(SECRET)
    assert len(docapi.requests) == 2


def _closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on: a connection to it is refused at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("answers", "named"), [
    ([(400, "AccessDeniedException")], "GetItem: HTTP 400 AccessDeniedException"),
    ([(503, b'{"message": "Service Unavailable"}')] * 3, "GetItem: HTTP 503"),  # an error without __type
    ([(502, b"<html><h1>502 Bad Gateway</h1></html>")] * 3, "GetItem: HTTP 502"),  # a front proxy's page
    ([(500, b"")] * 3, "GetItem: HTTP 500"),
    ([(503, b'"Service Unavailable"')] * 3, "GetItem: HTTP 503"),  # JSON, but not the store's error object
    (None, "GetItem: ConnectionError"),  # the store's address refuses connections
])
def test_a_failed_lookup_is_one_error_line_naming_the_failure_and_no_secret(
        docapi: DocApi, clock: ManualClock, log_output: Any, monkeypatch: pytest.MonkeyPatch,
        answers: list[tuple[int, str | bytes]] | None, named: str) -> None:
    """What an operator needs to tell bad credentials from a throttled or unreachable store, and nothing secret."""
    if answers is None:
        monkeypatch.setenv("DOCAPI_ENDPOINT", f"http://127.0.0.1:{_closed_port()}/ru-central1/b1gcloud/etndb")
    else:
        docapi.answers = list(answers)
    with pytest.raises(RuntimeError) as failed:
        authorize(SECRET)
    assert str(failed.value) == "stored key lookup failed"  # the gateway's 500; nothing of the key in it
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.startswith("{")]
    assert [(line["msg"], line["level"], line["error"]) for line in lines] == [
        ("stored key lookup failed", "ERROR", f"RuntimeError: {named}")]
    text = log_output.getvalue()
    assert SECRET not in text and DIGEST not in text and SECRET_KEY not in text


def test_a_5xx_without_the_stores_error_body_is_retried_as_any_5xx(docapi: DocApi, clock: ManualClock) -> None:
    """A proxy in front of the store answers 502 / 503 with a page of its own (or nothing): still a server error."""
    store(docapi)
    docapi.answers = [(502, b"<html><h1>502 Bad Gateway</h1></html>"), (503, b"")]
    assert authorize(SECRET)["isAuthorized"] is True and len(docapi.requests) == 3
    assert clock.sleeps == [0.05, 0.1]
    clock.advance(11)
    docapi.answers = [(503, b'["Service Unavailable"]')]
    assert authorize(SECRET)["isAuthorized"] is True and len(docapi.requests) == 5


def test_the_stores_secret_key_never_reaches_a_log_line(docapi: DocApi, clock: ManualClock, log_output: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the authorizer holds the store's secret, a line quoting it (a library's debug line, an error echoing
    the configuration) shows it redacted: the secret has no recognisable shape, so it is redacted by value."""
    secret = f"YCsecret{uuid.uuid4().hex}"  # a value no earlier test can have registered
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    docapi.secret_key = secret
    store(docapi)
    assert authorize(SECRET)["isAuthorized"] is True
    logging.getLogger("fm.authorizer").error("configuration: %s", secret)
    assert secret not in log_output.getvalue() and "configuration: [REDACTED]" in log_output.getvalue()


def test_a_stored_key_never_acts_as_a_configured_keys_caller(docapi: DocApi, clock: ManualClock) -> None:
    """A configured key added later under a stored key's name: the name is the configured key's alone."""
    docapi.items[policy.digest_key(DIGEST)] = {"name": "boot"}
    assert authorize(SECRET) == {"isAuthorized": False}
    assert authorize(BOOT) == {"isAuthorized": True, "context": {"caller": "boot"}}


@pytest.mark.parametrize(("setting", "value", "refused"), [
    ("AWS_SECRET_ACCESS_KEY", "YCanothersecret0123456789", "InvalidSignatureException"),
    ("YC_REGION", "il1", "InvalidSignatureException"),  # signed for a region the store is not in
    ("AWS_ACCESS_KEY_ID", "YCAJEanotheraccesskey", "UnrecognizedClientException"),
])
def test_a_lookup_the_store_refuses_to_authenticate_fails_the_invocation_once(
        docapi: DocApi, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, setting: str, value: str,
        refused: str) -> None:
    """Credentials the store does not accept are the deployment's fault, not the key's: a 500, not retried."""
    store(docapi)
    monkeypatch.setenv(setting, value)
    with pytest.raises(RuntimeError, match="stored key lookup failed"):
        authorize(SECRET)
    assert [kind.rsplit("#", 1)[-1] for kind in docapi.refused] == [refused] and len(docapi.requests) == 1


def test_a_revoked_key_is_refused_even_while_a_replica_still_holds_it(docapi: DocApi, clock: ManualClock) -> None:
    """The lookup is a consistent read: a replica behind the revocation (or the creation) is never what answers."""
    store(docapi)
    docapi.lagging = {}  # the key was created a moment ago
    assert authorize(SECRET)["isAuthorized"] is True
    docapi.lagging = dict(docapi.items)
    del docapi.items[policy.digest_key(DIGEST)]  # and now revoked
    clock.advance(11)
    assert authorize(SECRET) == {"isAuthorized": False}
    assert docapi.refused == [] and len(docapi.requests) == 2
