"""The deploy-time jobs table step (deploy/jobs_table.py): it creates the table the functions need, over
real sockets, against moto's DynamoDB (SigV4, as the functions sign) and a loopback stand-in that
answers as the Document API does (Bearer IAM token, CREATING before ACTIVE, throttling); it is
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
    a new table is CREATING for `creating_polls` describes, the first call of each kind may be throttled,
    and a request without the expected Bearer token is refused."""

    def __init__(self, creating_polls: int = 2, throttle: set[str] | None = None, token: str = TOKEN) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.creating_polls, self.throttle, self.token = creating_polls, set(throttle or ()), token
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
                status = "CREATING" if table["polls"] > 0 else "ACTIVE"
                table["polls"] -= 1
                return 200, {"Table": {"TableName": name, "TableStatus": status, "KeySchema": table["key"]}}
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
    # two throttled calls retried, two CREATING polls waited out, each wait at least the poll interval
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
    with pytest.raises(jobs_table.TableError, match="still CREATING after 30 s"):
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
    nothing = _run({"PATH": "/nonexistent", "DOCAPI_ENDPOINT": docapi.url})
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
