"""The job store on the wire, through a loopback proxy in front of moto server that records every request
and can answer chosen Document API calls with a fault: write conflicts are retried (and given up on after
the bound), uploads carry no flexible-checksum headers, the normal path makes no schema call, and a
missing table is created once by racing instances."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from shared.config import Settings
from shared.jobs import store as store_module
from tests.conftest import FOLDER, Api, Jobs, reset_caches

pytestmark = pytest.mark.integration

SCHEMA_CALLS = {"DescribeTable", "CreateTable", "ListTables", "UpdateTable", "DeleteTable", "UpdateTimeToLive",
                "DescribeTimeToLive"}
PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONFLICT = {"__type": PREFIX + "TransactionConflictException", "message": "Transaction is ongoing for the item"}
CANCELLED = {"__type": PREFIX + "TransactionCanceledException",
             "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                        "[None, TransactionConflict]",
             "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "conflict"}]}


class Proxy(ThreadingHTTPServer):
    """Forwards every request to moto server and records it; answers the next `times` calls of a Document
    API operation with a fault instead when told to; can hold calls of one operation until `count` of
    them have arrived, so that racing callers are known to be inside the race together."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[dict[str, Any]] = []
        self.faults: dict[str, list[dict[str, Any]]] = {}
        self.gates: dict[str, threading.Barrier] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail(self, operation: str, body: dict[str, Any], times: int) -> None:
        with self.lock:
            self.faults.setdefault(operation, []).extend([body] * times)

    def gate(self, operation: str, count: int) -> None:
        self.gates[operation] = threading.Barrier(count, timeout=30)

    def operations(self) -> Counter[str]:
        return Counter(r["operation"] for r in self.seen if r["operation"])

    def answers(self, operation: str) -> list[int]:
        return [r["status"] for r in self.seen if r["operation"] == operation]


class _ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        record = {"method": self.command, "path": self.path, "operation": operation,
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": 0}
        with self.server.lock:
            self.server.seen.append(record)
            queued = self.server.faults.get(operation)
            fault = queued.pop(0) if queued else None
        if fault is not None:
            record["status"] = 400
            self._answer(400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(fault).encode())
            return
        if operation in self.server.gates:
            self.server.gates[operation].wait()
        upstream = requests.request(self.command, self.server.upstream + self.path, data=body, timeout=30,
                                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        record["status"] = upstream.status_code
        skip = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        self._answer(upstream.status_code, {k: v for k, v in upstream.headers.items() if k.lower() not in skip},
                     upstream.content)

    def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@pytest.fixture
def proxy(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    """The jobs stack with the functions' Document API and Object Storage endpoints behind the proxy."""
    server = Proxy(jobs.resources.endpoint)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    monkeypatch.setenv("DOCAPI_ENDPOINT", server.url)
    monkeypatch.setenv("S3_ENDPOINT", server.url)
    reset_caches()
    yield server
    server.shutdown()
    server.server_close()


def _store() -> store_module.JobStore:
    return store_module.JobStore(Settings.from_env())


# -- write conflicts (issue 11 item 8) --
def test_write_conflicts_are_retried_until_the_write_succeeds(proxy: Proxy) -> None:
    store = _store()
    proxy.fail("PutItem", CONFLICT, 2)
    store.create("fmo0000000conf01", "completion", "d", "me", [b"{}"])
    updates = len(proxy.answers("UpdateItem"))  # the index, written by create()
    proxy.fail("UpdateItem", CONFLICT, 3)
    assert store.claim("fmo0000000conf01", 0, "w1", 60).outcome == "claimed"
    proxy.fail("TransactWriteItems", CANCELLED, 2)
    assert store.complete("fmo0000000conf01", 0, "w1", b"{}") is True
    assert store.item("fmo0000000conf01")["tasks_done"] == 1
    assert store.item("fmo0000000conf01#0")["state"] == "done"
    assert proxy.answers("PutItem") == [400, 400, 200]
    assert proxy.answers("TransactWriteItems") == [400, 400, 200]
    assert proxy.answers("UpdateItem")[updates:] == [400, 400, 400, 200, 200]  # the task, then the operation


def test_a_conflict_that_persists_ends_in_store_error_after_the_bound(proxy: Proxy) -> None:
    store = _store()
    store.create("fmo0000000conf02", "completion", "d", "me", [b"{}"])
    assert store.claim("fmo0000000conf02", 0, "w1", 60).outcome == "claimed"
    attempts = store_module.CONFLICT_ATTEMPTS
    before = len(proxy.answers("TransactWriteItems"))
    proxy.fail("TransactWriteItems", CANCELLED, attempts)
    with pytest.raises(store_module.StoreError, match="TransactionCanceledException after 6 attempts"):
        store.complete("fmo0000000conf02", 0, "w1", b"{}")
    assert proxy.answers("TransactWriteItems")[before:] == [400] * attempts
    proxy.fail("UpdateItem", CONFLICT, attempts)
    with pytest.raises(store_module.StoreError, match="TransactionConflictException after 6 attempts"):
        store.finish("fmo0000000conf02", None, 0, {"code": 13, "message": "x", "details": []})
    assert store.item("fmo0000000conf02#0")["state"] == "running"  # nothing was written
    assert store.item("fmo0000000conf02")["tasks_done"] == 0
    assert store.complete("fmo0000000conf02", 0, "w1", b"{}") is True  # once the conflict clears


def test_a_failed_condition_is_not_retried(proxy: Proxy) -> None:
    store = _store()
    store.create("fmo0000000conf03", "completion", "d", "me", [b"{}"])
    assert store.claim("fmo0000000conf03", 0, "w1", 60).outcome == "claimed"
    before = len(proxy.answers("TransactWriteItems"))
    assert store.complete("fmo0000000conf03", 0, "w2", b"{}") is False  # not the holder: one request
    assert proxy.answers("TransactWriteItems")[before:] == [400]


# -- flexible checksums (issue 11 item 9) --
def test_uploads_carry_no_flexible_checksum_headers(proxy: Proxy) -> None:
    import boto3

    from local.aws import ACCESS_KEY, REGION, SECRET_KEY

    store = _store()
    store.put_object("results/wire/one.json", b'{"a": 1}')
    assert store.get_object("results/wire/one.json") == b'{"a": 1}'
    default = boto3.client("s3", endpoint_url=proxy.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                           aws_secret_access_key=SECRET_KEY)  # what current boto3 does unless told otherwise
    default.put_object(Bucket=store.bucket, Key="results/wire/two.json", Body=b'{"a": 2}')
    puts = [r["headers"] for r in proxy.seen if r["method"] == "PUT" and "/results/wire/" in r["path"]]
    assert len(puts) == 2

    def checksum_headers(headers: dict[str, str]) -> list[str]:
        return sorted(name for name in headers if name.startswith("x-amz-checksum-")
                      or name in ("x-amz-sdk-checksum-algorithms", "x-amz-sdk-checksum-algorithm", "x-amz-trailer"))

    assert checksum_headers(puts[0]) == []
    assert checksum_headers(puts[1]) != []  # the proxy does see them when a client sends them


# -- no schema calls on the normal path; the table created on a missing-table answer (issue 11 item 7) --
def test_submission_work_and_reads_make_no_schema_call(proxy: Proxy, api_v01: Api, jobs: Jobs) -> None:
    body = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "Hi"}]}
    for _ in range(2):  # each round a cold start: new settings, clients and store
        reset_caches()
        operation = api_v01.post("/foundationModels/v1/completionAsync", body).json()
        jobs.drain()
        reset_caches()
        answer = api_v01.http.get(f"{api_v01.url}/operations/{operation['id']}", timeout=30).json()
        assert answer["done"] is True, answer
    store = _store()
    assert store.active_ids() == [] and store.items("fmo0000000nothing", [0, 1]) == {}
    calls = proxy.operations()
    assert calls["PutItem"] >= 2 and calls["TransactWriteItems"] >= 2 and calls["GetItem"] >= 2
    assert not set(calls) & SCHEMA_CALLS, calls


def test_reads_of_a_missing_table_find_nothing_and_create_nothing(proxy: Proxy) -> None:
    store = _store()
    store.db.delete_table(TableName=store.table)
    assert store.item("fmo0000000absent") is None
    assert store.active_ids() == []
    assert store.items("fmo0000000absent", [0, 1, 2]) == {}
    assert "CreateTable" not in proxy.operations()


def test_racing_instances_create_a_missing_table_once_and_both_writes_land(proxy: Proxy) -> None:
    stores = [_store(), _store()]  # two function instances, cold
    stores[0].db.delete_table(TableName=stores[0].table)
    proxy.gate("CreateTable", 2)  # both instances are inside the creation race before either is answered
    errors: list[BaseException] = []

    def submit(index: int) -> None:
        try:
            stores[index].create(f"fmo00000000new{index:02d}", "completion", "d", "me", [b"{}"])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(proxy.answers("CreateTable")) == [200, 400]  # one created it, the other was told it exists
    assert proxy.operations()["UpdateTimeToLive"] == 1  # by the creator
    ttl = stores[0].db.describe_time_to_live(TableName=stores[0].table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert {stores[0].item(f"fmo00000000new{i:02d}")["state"] for i in range(2)} == {"queued"}
    assert sorted(stores[1].active_ids()) == ["fmo00000000new00", "fmo00000000new01"]


def test_the_local_conflict_model_answers_as_the_document_api_does(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make bench`'s store (local.aws.ConflictingWrites): a write to an item another write holds is refused
    in the Document API's shapes, which the store retries; a write holds its items only while it runs."""
    from local.aws import start_moto

    server, url = start_moto(write_conflicts=True)  # the same moto backend, behind the conflict model
    try:
        monkeypatch.setenv("DOCAPI_ENDPOINT", url)
        store, model = _store(), server.app
        store.create("fmo0000000model1", "completion", "d", "me", [b"{}"])
        assert model.busy == set() and model.conflicts == 0
        model.busy.add((store.table, json.dumps({"S": "fmo0000000model1#0"})))  # a write to task 0 in flight
        with pytest.raises(store_module.StoreError, match="TransactionConflictException after 6 attempts"):
            store.claim("fmo0000000model1", 0, "w1", 60)
        assert model.conflicts == store_module.CONFLICT_ATTEMPTS
        model.busy.clear()
        assert store.claim("fmo0000000model1", 0, "w1", 60).outcome == "claimed"
        model.busy.add((store.table, json.dumps({"S": "fmo0000000model1"})))  # the operation, 2nd in the transaction
        with pytest.raises(store_module.StoreError, match="TransactionCanceledException after 6 attempts"):
            store.complete("fmo0000000model1", 0, "w1", b"{}")
        model.busy.clear()
        assert store.complete("fmo0000000model1", 0, "w1", b"{}") is True
        assert model.busy == set() and model.conflicts == 2 * store_module.CONFLICT_ATTEMPTS
    finally:
        server.shutdown()
        server.server_close()
