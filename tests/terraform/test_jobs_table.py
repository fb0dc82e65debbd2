"""The deploy-time jobs table step (deploy/jobs_table.py): it creates the table the functions need, over
real sockets, against moto's DynamoDB (SigV4, as the functions sign) and a loopback stand-in that
answers as the Document API does (Bearer IAM token, ResourceNotFoundException from DescribeTable while
the table is being created, as the API reference says, a new database not found at first, throttling); it is
idempotent, refuses a table with the wrong key, and never prints a credential."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploy import jobs_table
from tests.terraform import hcl

ROOT = hcl.ROOT
TOKEN = "t1.deploy-user-iam-token-never-printed-0123456789"
OAUTH = "y0_deploy-user-oauth-token-never-printed-0123456789"


class DocApiStandIn(ThreadingHTTPServer):
    """Answers CreateTable / DescribeTable / DescribeTimeToLive / UpdateTimeToLive like the Document API:
    a new table is being created for `creating_polls` describes, which answer ResourceNotFoundException
    (400) as describeTable.md says; the first `database_not_ready` calls find no database; the first call
    of each kind may be throttled, and a request without the expected Bearer token is refused."""

    def __init__(self, creating_polls: int = 2, throttle: set[str] | None = None, token: str = TOKEN,
                 database_not_ready: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.creating_polls, self.throttle, self.token = creating_polls, set(throttle or ()), token
        self.database_not_ready = database_not_ready
        self.tables: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ru-central1/b1gfolder/etndatabase"

    def answer(self, action: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append(action)
            if action in self.throttle:
                self.throttle.discard(action)
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"}
            if self.database_not_ready > 0:
                self.database_not_ready -= 1
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                             "message": "database not found"}
            name = body.get("TableName", "")
            table = self.tables.get(name)
            if action == "CreateTable":
                if table:
                    return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceInUseException",
                                 "message": f"table {name} exists"}
                self.tables[name] = {"key": body["KeySchema"], "polls": self.creating_polls, "ttl": None}
                return 200, {"TableDescription": {"TableName": name, "TableStatus": "CREATING"}}
            if table is None:
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": name}
            if action == "DescribeTable":
                if table["polls"] > 0:
                    table["polls"] -= 1
                    return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                                 "message": f"table {name} is being created"}
                return 200, {"Table": {"TableName": name, "TableStatus": "ACTIVE", "KeySchema": table["key"]}}
            if action == "DescribeTimeToLive":
                ttl = table["ttl"]
                return 200, {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": ttl}
                             if ttl else {"TimeToLiveStatus": "DISABLED"}}
            if action == "UpdateTimeToLive":
                table["ttl"] = body["TimeToLiveSpecification"]["AttributeName"]
                return 200, {"TimeToLiveSpecification": body["TimeToLiveSpecification"]}
            return 400, {"__type": "com.amazon.coral.service#UnknownOperationException", "message": action}


class _Handler(BaseHTTPRequestHandler):
    server: DocApiStandIn

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            status, answer = 400, {"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
                                   "message": "no valid IAM token"}
        elif not target.startswith("DynamoDB_20120810.") or self.path != "/ru-central1/b1gfolder/etndatabase":
            status, answer = 404, {"__type": "UnknownOperationException", "message": target}
        else:
            status, answer = self.server.answer(target.partition(".")[2], body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def docapi() -> Iterator[DocApiStandIn]:
    server = DocApiStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_creates_the_table_waits_for_active_and_enables_ttl(docapi: DocApiStandIn) -> None:
    docapi.throttle = {"CreateTable", "DescribeTable"}  # each refused once, then retried
    sleeps: list[float] = []
    api = jobs_table.DocumentApi(docapi.url, jobs_table.Bearer(TOKEN), sleep=sleeps.append)
    summary = jobs_table.ensure_table(api, "jobs", poll_s=3.0, sleep=sleeps.append)
    assert summary == {"table": "jobs", "created": True, "ttl_enabled_now": True}
    assert docapi.tables["jobs"]["key"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert docapi.tables["jobs"]["ttl"] == "expires_at"
    # two throttled calls retried, two polls while it is being created waited out, each wait at least the poll interval
    assert docapi.calls == ["CreateTable", "CreateTable", "DescribeTable", "DescribeTable", "DescribeTable",
                            "DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive"]
    assert sleeps.count(3.0) == 2 and len(sleeps) == 4

    again = jobs_table.ensure_table(api, "jobs", sleep=sleeps.append)  # idempotent: checks, changes nothing
    assert again == {"table": "jobs", "created": False, "ttl_enabled_now": False}
    assert docapi.calls[8:] == ["CreateTable", "DescribeTable", "DescribeTimeToLive"]


def test_gives_up_when_the_table_never_becomes_active(docapi: DocApiStandIn) -> None:
    docapi.creating_polls = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    api = jobs_table.DocumentApi(docapi.url, jobs_table.Bearer(TOKEN), sleep=sleep)
    with pytest.raises(jobs_table.TableError, match="still being created after 30 s"):
        jobs_table.ensure_table(api, "jobs", wait_s=30, poll_s=3, sleep=sleep, clock=lambda: now[0])
    assert docapi.calls.count("DescribeTable") <= 30 / 3 + 1  # never more schema calls than the interval allows


def test_refuses_a_table_with_another_key(docapi: DocApiStandIn) -> None:
    docapi.tables["jobs"] = {"key": [{"AttributeName": "pk", "KeyType": "HASH"}], "polls": 0, "ttl": None}
    api = jobs_table.DocumentApi(docapi.url, jobs_table.Bearer(TOKEN), sleep=lambda s: None)
    with pytest.raises(jobs_table.TableError, match="exists with key"):
        jobs_table.ensure_table(api, "jobs")


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "AWS_", "DOCAPI_", "JOBS_"))}
    return subprocess.run([sys.executable, "-m", "deploy.jobs_table", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**clean, **env}, timeout=60)


def test_the_cli_uses_the_deploying_users_token_and_never_prints_it(docapi: DocApiStandIn) -> None:
    docapi.creating_polls = 0
    done = _run({"YC_TOKEN": TOKEN, "DOCAPI_ENDPOINT": docapi.url, "JOBS_TABLE": "jobs"})
    assert done.returncode == 0, done.stderr
    assert "jobs table jobs: created, ACTIVE, key id, TTL enabled now (expires_at)" in done.stdout
    refused = _run({"YC_TOKEN": TOKEN + "x", "DOCAPI_ENDPOINT": docapi.url})
    assert refused.returncode == 1 and "AccessDeniedException" in refused.stderr
    nothing = _run({"PATH": "/nonexistent", "DOCAPI_ENDPOINT": docapi.url, "YC_METADATA_ADDR": "127.0.0.1:9"})
    assert nothing.returncode == 1 and "YC_TOKEN" in nothing.stderr
    for result in (done, refused, nothing):
        assert TOKEN not in result.stdout + result.stderr


def test_an_oauth_token_is_exchanged_and_yc_is_the_fallback(docapi: DocApiStandIn, tmp_path: Path) -> None:
    exchanged: list[dict[str, Any]] = []

    class Iam(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            exchanged.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps({"iamToken": TOKEN}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    iam = ThreadingHTTPServer(("127.0.0.1", 0), Iam)
    threading.Thread(target=iam.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{iam.server_address[1]}/iam/v1/tokens"
        assert jobs_table.iam_token({"YC_TOKEN": OAUTH, "YC_IAM_ENDPOINT": endpoint}) == TOKEN
        assert exchanged == [{"yandexPassportOauthToken": OAUTH}]
    finally:
        iam.shutdown()
        iam.server_close()
    assert jobs_table.iam_token({"YC_TOKEN": TOKEN}) == TOKEN  # an IAM token is used as is
    yc = tmp_path / "yc"
    yc.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'iam create-token' ] && echo {TOKEN}\n")
    yc.chmod(0o755)
    assert jobs_table.iam_token({"PATH": str(tmp_path)}) == TOKEN
    docapi.creating_polls = 0
    done = _run({"PATH": f"{tmp_path}:{os.environ['PATH']}", "DOCAPI_ENDPOINT": docapi.url})
    assert done.returncode == 0, done.stderr


def test_sigv4_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    """--static-key signs exactly as boto3 signs the functions' own Document API calls."""
    import datetime

    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "https://docapi.serverless.yandexcloud.net/ru-central1/b1gfolder/etndatabase"
    body = b'{"TableName": "jobs"}'
    target = "DynamoDB_20120810.DescribeTable"
    ours = jobs_table.StaticKey("AKIDEXAMPLE", "secret/key+value", "ru-central1", now=lambda: 1_700_000_000.0)
    headers = ours.headers(url, body, target)
    monkeypatch.setattr(auth, "get_current_datetime",
                        lambda: datetime.datetime.fromtimestamp(1_700_000_000, datetime.UTC))
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/x-amz-json-1.0",
                                                          "X-Amz-Target": target})
    auth.SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+value"), "dynamodb", "ru-central1").add_auth(request)
    assert headers["X-Amz-Date"] == request.headers["X-Amz-Date"] == "20231114T221320Z"
    assert headers["Authorization"] == request.headers["Authorization"]


@pytest.mark.integration
def test_against_moto_dynamodb_with_the_functions_signature(moto_server: str) -> None:
    """The table made here is the table the store uses: boto3 with the local static key sees its key and TTL."""
    import boto3

    from local.aws import ACCESS_KEY, REGION, SECRET_KEY

    table = f"deploytest-{uuid.uuid4().hex[:8]}"
    api = jobs_table.DocumentApi(moto_server, jobs_table.StaticKey(ACCESS_KEY, SECRET_KEY, REGION))
    assert jobs_table.ensure_table(api, table, poll_s=0.1)["created"] is True
    db = boto3.client("dynamodb", endpoint_url=moto_server, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY)
    try:
        described = db.describe_table(TableName=table)["Table"]
        assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
        assert described["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
        ttl = db.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        assert jobs_table.ensure_table(api, table, poll_s=0.1) == {"table": table, "created": False,
                                                                   "ttl_enabled_now": False}
    finally:
        db.delete_table(TableName=table)


def test_the_store_uses_the_same_key_and_ttl_attribute() -> None:
    """The table layout lives in two places (the store creates it too if it was ever deleted): they agree."""
    store_code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "shared").rglob("*.py"))
    assert f'"AttributeName": "{jobs_table.KEY_ATTRIBUTE}", "KeyType": "HASH"' in store_code
    assert f'"AttributeName": "{jobs_table.TTL_ATTRIBUTE}"' in store_code
    terraform = hcl.load_all()
    assert hcl.TERRAFORM.joinpath("storage.tf").read_text().count("-m deploy.jobs_table") == 1
    assert any(str(entry.get("jobs_table", "")).strip('"') == jobs_table.DEFAULT_TABLE
               for entry in terraform["locals.tf"]["locals"])


def test_a_new_database_not_serving_yet_is_waited_for_a_bounded_time(docapi: DocApiStandIn) -> None:
    docapi.database_not_ready = 3
    sleeps: list[float] = []
    api = jobs_table.DocumentApi(docapi.url, jobs_table.Bearer(TOKEN), sleep=sleeps.append)
    summary = jobs_table.ensure_table(api, "jobs", poll_s=3.0, sleep=sleeps.append)
    assert summary["created"] is True and docapi.calls[:4] == ["CreateTable"] * 4
    assert sleeps[:3] == [3.0, 3.0, 3.0]

    docapi.database_not_ready = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(jobs_table.DocumentApiError, match="ResourceNotFoundException"):
        jobs_table.ensure_table(api, "other", poll_s=3.0, sleep=sleep, clock=lambda: now[0], settle_s=30)
    assert 30 <= now[0] <= 33


def test_any_other_refusal_of_create_table_fails_at_once(docapi: DocApiStandIn) -> None:
    api = jobs_table.DocumentApi(docapi.url, jobs_table.Bearer(TOKEN + "x"), sleep=lambda s: None)
    with pytest.raises(jobs_table.DocumentApiError, match="AccessDeniedException"):
        jobs_table.ensure_table(api, "jobs", sleep=lambda s: pytest.fail("a wrong token is not waited for"))


@pytest.mark.integration
def test_the_local_stand_in_answers_describe_table_as_the_docs_say_while_creating() -> None:
    """local/aws.py's moto: DescribeTable of a table being created is ResourceNotFoundException (400), as
    in the cloud, and both the deploy step and the store's own waiter wait it out."""
    import boto3
    from botocore.exceptions import ClientError

    from local.aws import ACCESS_KEY, REGION, SECRET_KEY, start_moto
    from shared.jobs.store import create_jobs_table

    server, url = start_moto(creating_describes=2)
    try:
        db = boto3.client("dynamodb", endpoint_url=url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
        db.create_table(TableName="probe", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        for _ in range(2):
            with pytest.raises(ClientError) as creating:
                db.describe_table(TableName="probe")
            assert creating.value.response["Error"]["Code"] == "ResourceNotFoundException"
            assert creating.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert db.describe_table(TableName="probe")["Table"]["TableStatus"] == "ACTIVE"

        api = jobs_table.DocumentApi(url, jobs_table.StaticKey(ACCESS_KEY, SECRET_KEY, REGION))
        assert jobs_table.ensure_table(api, "deployed", poll_s=0.01)["created"] is True
        assert create_jobs_table(db, "by-a-function", poll_s=0.01) is True
    finally:
        server.shutdown()


class _TokenService(ThreadingHTTPServer):
    """A loopback IAM token service (POST {"jwt"} -> iamToken, the JWT checked with the key's public half)
    and metadata service (GET with Metadata-Flavor: Google -> access_token)."""

    def __init__(self, public_key: Any = None) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.public_key, self.seen = public_key, []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenService

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        import jwt

        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        claims = jwt.decode(sent["jwt"], self.server.public_key, algorithms=["PS256"],
                            audience=f"http://{self.server.address}/iam/v1/tokens")
        self.server.seen.append({"claims": claims, "kid": jwt.get_unverified_header(sent["jwt"])["kid"]})
        self._send(200, {"iamToken": TOKEN})

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Metadata-Flavor") != "Google" or "service-accounts/default/token" not in self.path:
            self._send(403, {})
            return
        self.server.seen.append({"metadata": self.path})
        self._send(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_service() -> Iterator[tuple[_TokenService, dict[str, str]]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    key = {"id": "ajekeyid", "service_account_id": "ajesaid", "created_at": "2026-01-01T00:00:00Z",
           "key_algorithm": "RSA_2048", "public_key": "-",
           "private_key": "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <ajekeyid>\n" + pem}
    server = _TokenService(private.public_key())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, key
    server.shutdown()
    server.server_close()


def test_a_service_account_key_file_is_exchanged_first_as_the_provider_does(
        token_service: tuple[_TokenService, dict[str, str]], docapi: DocApiStandIn, tmp_path: Path) -> None:
    server, key = token_service
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    endpoint = f"http://{server.address}/iam/v1/tokens"
    # the key file wins over YC_TOKEN, as in the provider's Config.credentials
    assert jobs_table.iam_token({"YC_SERVICE_ACCOUNT_KEY_FILE": str(path), "YC_TOKEN": "t1.other",
                                 "YC_IAM_ENDPOINT": endpoint}) == TOKEN
    assert jobs_table.iam_token({"YC_SERVICE_ACCOUNT_KEY_FILE": json.dumps(key), "YC_IAM_ENDPOINT": endpoint}) == TOKEN
    assert [seen["kid"] for seen in server.seen] == ["ajekeyid", "ajekeyid"]
    assert server.seen[0]["claims"]["iss"] == "ajesaid"
    assert server.seen[0]["claims"]["exp"] - server.seen[0]["claims"]["iat"] == 3600
    docapi.creating_polls = 0
    done = _run({"YC_SERVICE_ACCOUNT_KEY_FILE": str(path), "YC_IAM_ENDPOINT": endpoint, "DOCAPI_ENDPOINT": docapi.url})
    assert done.returncode == 0, done.stderr
    assert "BEGIN PRIVATE KEY" not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    broken = _run({"YC_SERVICE_ACCOUNT_KEY_FILE": json.dumps({"id": "x"}), "DOCAPI_ENDPOINT": docapi.url})
    assert broken.returncode == 1 and "missing service_account_id, private_key" in broken.stderr


def test_the_pss_signature_verifies_with_the_public_key_for_both_pem_forms() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = private.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode()
        signature = jobs_table.pss_sign(jobs_table.rsa_private_numbers(pem), b"header.claims")
        private.public_key().verify(signature, b"header.claims",
                                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        with pytest.raises(InvalidSignature):
            private.public_key().verify(signature, b"header.other",
                                        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                        hashes.SHA256())


def test_the_metadata_service_is_the_last_resort(token_service: tuple[_TokenService, dict[str, str]],
                                                 docapi: DocApiStandIn) -> None:
    server, _ = token_service
    assert jobs_table.iam_token({"PATH": "/nonexistent", "YC_METADATA_ADDR": server.address}) == TOKEN
    assert server.seen == [{"metadata": jobs_table.METADATA_PATH}]
    docapi.creating_polls = 0
    done = _run({"PATH": "/nonexistent", "YC_METADATA_ADDR": server.address, "DOCAPI_ENDPOINT": docapi.url})
    assert done.returncode == 0, done.stderr
