"""The local stand-ins for Message Queue, the YDB Document API and Object Storage: moto server on loopback.

`provision()` creates what deployment creates in the cloud: one queue per job kind, each with a
dead-letter queue through a redrive policy, the results bucket, and the jobs table with its TTL
attribute (the functions assume it exists, and create it only when a write finds it missing). It
returns the environment the functions read.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

JOB_KINDS = ("completion", "embedding", "classification")
ACCESS_KEY, SECRET_KEY = "local-access-key", "local-secret-key-000000"
REGION = "ru-central1"


def start_moto(port: int = 0, write_conflicts: bool = False, creating_describes: int = 1) -> tuple[Any, str]:
    """Start moto server in this process, its Document API linearizable; (server, url).

    The cloud's Document API applies each conditional write and transaction atomically. moto's backend
    does not: two threads can both pass the same `attribute_not_exists` check, and a transaction can
    iterate a table while another request changes it. So every DynamoDB-protocol request runs under one
    lock, which makes each one atomic and their order a total one, as the real service guarantees. The
    queue and bucket APIs are left concurrent (a long-polling ReceiveMessage must not stall the store).
    This is the only way the project starts moto (a test checks it), so nothing talks to an unserialised one.

    A table moto creates is ACTIVE at once; the Document API's DescribeTable answers
    ResourceNotFoundException (400) while a new table is still being created (the API reference,
    ydb/docapi/api-ref/actions/describeTable.md). So the first `creating_describes` DescribeTable calls
    after a CreateTable answer that, and whoever waits for a new table waits as in the cloud.

    `write_conflicts=True` adds the Document API's optimistic concurrency (see ConflictingWrites), for
    `make bench`; `server.app` is then that layer, which counts the conflicts it answered.
    """
    import logging

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = moto_app(write_conflicts, creating_describes)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="moto-server", daemon=True).start()
    host, bound = server.server_address[:2]
    return server, f"http://{host}:{bound}"


def moto_app(write_conflicts: bool = False, creating_describes: int = 1) -> Any:
    """The WSGI app both start_moto and InProcessMoto serve: moto's server app (which host is which service,
    remembered) behind Touches (which notes changes for renew()), its Document API serialised
    (SerializedDocumentApi), behind ConflictingWrites when asked."""
    os.environ["MOTO_ALLOW_NONEXISTENT_REGION"] = "True"  # moto knows no ru-central1 otherwise
    # renew() empties a queue with PurgeQueue between tests, which moto otherwise refuses within 60 s of the last
    # purge, as SQS does; nothing in the project purges a queue, so no code under test meets the difference
    os.environ["MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"] = "false"
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class Dispatcher(DomainDispatcherApplication):
        """moto's dispatcher, with the backend it finds for a host remembered: it lists moto's package directory
        (and stats each of its ~150 entries) on every request otherwise, about a tenth of a test's time."""

        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self.backends: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in self.backends:
                self.backends[host] = super().get_backend_for_host(host)
            return self.backends[host]

    app: Any = SerializedDocumentApi(Touches(Dispatcher()), creating_describes)
    return ConflictingWrites(app) if write_conflicts else app


IN_PROCESS_URL = "http://127.0.0.1:4"  # an unassigned port, which no test uses for "unreachable" (those use :9, :1); a
# client the transport is not installed in fails to connect at once


class InProcessMoto:
    """The app start_moto serves (SerializedDocumentApi over moto's DomainDispatcherApplication, and optionally
    ConflictingWrites), reached without a socket: boto3 clients of the default session whose endpoint is
    `url` hand each prepared request to it from a botocore `before-send` handler, and get its answer as an
    AWSResponse; `requests_adapter()` does the same for a requests Session (the queue client's transport).

    What a client sees is what it sees over loopback: the request is made into the WSGI environ werkzeug's
    server (with moto's handler) makes from the same bytes, the answer's status, headers and body are the
    app's (no body for HEAD, werkzeug's 500 page for an exception in the app), and each Document API call
    runs whole under SerializedDocumentApi's lock, so racing threads meet exactly as at the server. It only
    saves the socket, the HTTP parsing and the server thread: about 1.2 s at start and most of each call.
    moto's backends are per process, as behind start_moto: `reset()` is POST /moto-api/reset."""

    def __init__(self, write_conflicts: bool = False, creating_describes: int = 1, url: str = IN_PROCESS_URL) -> None:
        self.url = url.rstrip("/")
        self.app: Any = moto_app(write_conflicts, creating_describes)
        import boto3

        # clients copy their session's handlers when made, so the handler goes on the default session once and
        # sends on to whichever instance owns the request's endpoint (None: botocore sends it as usual)
        session = boto3._get_default_session()  # noqa: SLF001 - the session boto3.client() builds clients from
        session.events.register("before-send", _in_process_send, unique_id="local.aws.InProcessMoto")
        _IN_PROCESS[self.url] = self

    @classmethod
    def shared(cls) -> InProcessMoto:
        """The process's instance (made once, and warmed: moto imported, its DynamoDB, S3 and reset apps built, the
        clients' service models loaded, and the table and bucket provisioned by renew(); about 2 s). A test module
        that calls this at import has it made before a process forks its test runs (mutmut's forkserver), so each
        run starts warm."""
        global _SHARED
        with _SHARED_LOCK:
            if _SHARED is None:
                import requests

                _SHARED = cls()
                session = requests.Session()
                session.mount(_SHARED.url, _SHARED.requests_adapter())
                renew(_SHARED.url, queues=False, session=session)  # left as the `aws` fixture's first test wants it
            return _SHARED

    def close(self) -> None:
        if _IN_PROCESS.get(self.url) is self:
            del _IN_PROCESS[self.url]

    def reset(self) -> None:
        """Empty every moto backend (what POST /moto-api/reset does at the server)."""
        status, _, _ = self.call("POST", self.url + "/moto-api/reset", {}, b"")
        assert status == 200, status

    def call(self, method: str, url: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request through the app: (status, headers, body)."""
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        host, _, port = parts.netloc.partition(":")
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0), "wsgi.url_scheme": parts.scheme, "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "SERVER_SOFTWARE": "in-process", "REQUEST_METHOD": method, "SCRIPT_NAME": "",
            "PATH_INFO": _wsgi_text(unquote(parts.path)), "QUERY_STRING": _wsgi_text(parts.query),
            "REQUEST_URI": _wsgi_text(target), "RAW_URI": _wsgi_text(target), "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": 0, "SERVER_NAME": host, "SERVER_PORT": port or "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": parts.netloc}
        for name, value in headers.items():  # as werkzeug's server: names with '_' dropped, repeats joined
            if "_" in name:
                continue
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
            if key == "HTTP_HOST":
                continue  # an absolute URL's host is the one the server uses
            environ[key] = f"{environ[key]},{text}" if key in environ else text
        if "CONTENT_LENGTH" not in environ and (body or method in ("POST", "PUT", "PATCH")):
            environ["CONTENT_LENGTH"] = str(len(body))  # as http.client adds it
        answer: list[Any] = []

        def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            answer[:] = [status, list(response_headers)]
            return lambda data: None

        try:
            result = self.app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        except Exception:  # noqa: BLE001 - werkzeug's server answers an exception in the app with its 500 page
            from werkzeug.exceptions import InternalServerError

            error = InternalServerError()
            data = error.get_body(environ).encode()
            answer[:] = ["500 INTERNAL SERVER ERROR", error.get_headers(environ)]
        status = int(str(answer[0]).split(None, 1)[0])
        return status, answer[1], b"" if method == "HEAD" else data

    def send(self, request: Any) -> Any:
        """A botocore AWSPreparedRequest in, an AWSResponse out."""
        from botocore.awsrequest import AWSResponse

        body = request.body
        if hasattr(body, "read"):
            body = body.read()
            request.reset_stream()  # botocore may send it again (a retry)
        elif isinstance(body, str):
            body = body.encode()
        status, headers, data = self.call(request.method, request.url, request.headers, body or b"")
        return AWSResponse(request.url, status, dict(headers), _Raw(data))

    def requests_adapter(self) -> Any:
        """A requests transport adapter that sends through the app (mount it on the endpoint's prefix)."""
        import requests
        from requests.adapters import BaseAdapter
        from requests.structures import CaseInsensitiveDict

        moto = self

        class Adapter(BaseAdapter):
            def send(self, request: Any, **kwargs: Any) -> requests.Response:
                body = request.body or b""
                status, headers, data = moto.call(request.method, request.url, request.headers,
                                                  body.encode() if isinstance(body, str) else body)
                response = requests.Response()
                response.status_code, response.url, response.request = status, request.url, request
                response.headers = CaseInsensitiveDict(headers)
                response.raw, response.encoding = _Raw(data), None
                response._content = data  # noqa: SLF001 - read whole, as the adapter would once asked
                return response

            def close(self) -> None:
                pass

        return Adapter()


_IN_PROCESS: dict[str, InProcessMoto] = {}
_SHARED: InProcessMoto | None = None
_SHARED_LOCK = threading.Lock()


def _in_process_send(request: Any, **_: Any) -> Any:
    for url, moto in list(_IN_PROCESS.items()):
        if request.url == url or request.url.startswith(url + "/") or request.url.startswith(url + "?"):
            return moto.send(request)
    return None


def _wsgi_text(text: str) -> str:
    return text.encode().decode("latin-1")  # WSGI's native strings, as werkzeug's server makes them


class _Raw(io.BytesIO):
    """A response body botocore (and requests) read from: stream() for AWSResponse.content, read() for
    a StreamingBody (S3 GetObject)."""

    def stream(self, **_: Any) -> Any:
        data = self.read()
        while data:
            yield data
            data = self.read()


class SerializedDocumentApi:
    """WSGI middleware: DynamoDB-protocol requests (X-Amz-Target: DynamoDB_*) one at a time, whole."""

    def __init__(self, app: Any, creating_describes: int = 0) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.creating_describes = creating_describes
        self.creating: dict[str, int] = {}  # table -> DescribeTable calls still answered "not found"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target.startswith("DynamoDB"):
            return self.app(environ, start_response)
        action, table = target.partition(".")[2], ""
        if action in ("CreateTable", "DescribeTable"):
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(size)
            environ["wsgi.input"] = io.BytesIO(body)
            table = str(json.loads(body or b"{}").get("TableName", ""))
        with self.lock:
            if action == "DescribeTable" and self.creating.get(table, 0) > 0:
                self.creating[table] -= 1
                answer = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                                     "message": f"Requested resource not found: Table: {table} is being created"})
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                                   ("Content-Length", str(len(answer)))])
                return [answer.encode()]
            status: list[str] = []

            def recording(code: str, headers: Any, *rest: Any) -> Any:
                status.append(code)
                return start_response(code, headers, *rest)

            result = self.app(environ, recording)
            if action == "CreateTable" and status and status[0].startswith("200"):
                self.creating[table] = self.creating_describes
            try:
                return [b"".join(result)]  # the whole answer is made while the backend is ours
            finally:
                getattr(result, "close", lambda: None)()


class ConflictingWrites:
    """WSGI middleware: a write to an item that another write is still applying is refused, as the Document
    API's optimistic concurrency refuses it (TransactionConflictException to PutItem/UpdateItem/DeleteItem,
    TransactionCanceledException with reason TransactionConflict to TransactWriteItems).

    A write holds its items (table and key `id`) from arrival until its answer is made, waiting for the
    serialised backend included; a second write to one of them in that time is the conflict. This is a
    model, not YDB's exact rule, but it puts the cost of a hot item where the real service puts it: on
    the writers of that item, who must retry."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")
    PREFIX = "com.amazonaws.dynamodb.v20120810#"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.busy: set[tuple[str, str]] = set()
        self.conflicts = 0
        # operation -> how many of its next calls to refuse as conflicting, whatever they touch: a test's way to
        # make "this write met another" happen a known number of times, without racing for it
        self.refuse_next: dict[str, int] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        operation = target.rsplit(".", 1)[-1]
        if not target.startswith("DynamoDB") or operation not in self.WRITES:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        request = json.loads(body or b"{}")
        entries = [next(iter(e.values())) for e in request["TransactItems"]] if operation == "TransactWriteItems" \
            else [request]
        keys = [(e.get("TableName", ""), json.dumps((e.get("Key") or e.get("Item") or {}).get("id"))) for e in entries]
        with self.lock:
            clash = [key in self.busy for key in keys]
            if self.refuse_next.get(operation, 0) > 0:
                self.refuse_next[operation] -= 1
                clash = [True] * len(keys)
            if any(clash):
                self.conflicts += 1
                return self._conflict(operation, clash, start_response)
            self.busy.update(keys)
        try:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                getattr(result, "close", lambda: None)()
        finally:
            with self.lock:
                self.busy.difference_update(keys)

    def _conflict(self, operation: str, clash: list[bool], start_response: Any) -> list[bytes]:
        if operation == "TransactWriteItems":
            reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"} if c
                       else {"Code": "None"} for c in clash]
            body = {"__type": self.PREFIX + "TransactionCanceledException", "CancellationReasons": reasons,
                    "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                               f"[{', '.join(r['Code'] for r in reasons)}]"}
        else:
            body = {"__type": self.PREFIX + "TransactionConflictException",
                    "message": "Transaction is ongoing for the item"}
        data = json.dumps(body).encode()
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                           ("Content-Length", str(len(data)))])
        return [data]


class Changes:
    """What moto's backends may have had changed since `renew()` last left them as provisioned, whichever stand-in
    the request came through: moto keeps one set of backends per process, so every app of this process (each
    start_moto server, the InProcessMoto) notes into the one CHANGES.

    A data change is noted by where it is: items by table, objects by bucket, messages by queue. `anything`
    (a table, bucket or queue made, deleted or altered, a moto reset, a request not recognised) makes the next
    `renew()` reset moto and provision it again. Requests made while `quiet` (renew's own) are not noted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.quiet = False
        self.provisioned: tuple[tuple[Any, ...], Resources] | None = None  # (how, what) renew() last made
        self.anything = True  # nothing is known of backends renew() has not provisioned
        self.tables: set[str] = set()
        self.buckets: set[str] = set()
        self.queues: set[str] = set()  # queue names

    def note(self, kind: str, name: str) -> None:
        with self.lock:
            if kind == "anything" or (kind != "read" and not name):
                self.anything = True
            elif kind != "read":
                {"table": self.tables, "bucket": self.buckets, "queue": self.queues}[kind].add(name)


CHANGES = Changes()


class Touches:
    """WSGI middleware just in front of moto: notes in CHANGES what each request may change.

    Data: Document API item writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems) by
    table; object writes and deletes by bucket; message operations (SendMessage, ReceiveMessage,
    DeleteMessage, ChangeMessageVisibility and their batches, PurgeQueue) by queue, since a receive moves
    messages to the queue's dead-letter queue and a received message stays in flight. Reads change nothing.
    Anything else is `anything`."""

    DOC_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable",
                           "ListTables", "DescribeTimeToLive"})
    DOC_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
    QUEUE_READS = frozenset({"GetQueueAttributes", "GetQueueUrl", "ListQueues", "ListDeadLetterSourceQueues",
                             "ListQueueTags"})
    QUEUE_DATA = frozenset({"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage",
                            "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch",
                            "PurgeQueue"})

    def __init__(self, app: Any, changes: Changes = CHANGES) -> None:
        self.app = app
        self.changes = changes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.changes.quiet:
            self.changes.note(*self.change(environ))
        return self.app(environ, start_response)

    def change(self, environ: dict[str, Any]) -> tuple[str, str]:
        """What a request may change: ("read", ""), ("table" | "bucket" | "queue", its name) or ("anything", "")."""
        from urllib.parse import parse_qs

        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        service, _, operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).partition(".")
        if path.startswith("/moto-api"):
            return "anything", ""
        if service.startswith("DynamoDB"):
            if operation in self.DOC_READS:
                return "read", ""
            if operation not in self.DOC_WRITES:
                return "anything", ""
            request = json.loads(self._body(environ) or b"{}")
            tables = {str(e.get("TableName", "")) for e in (next(iter(t.values())) for t in request["TransactItems"])} \
                if operation == "TransactWriteItems" else set(request.get("RequestItems", {})) \
                if operation == "BatchWriteItem" else {str(request.get("TableName", ""))}
            return ("table", tables.pop()) if len(tables) == 1 else ("anything", "")
        if service == "AmazonSQS":  # the JSON protocol (boto3's), which only tests use
            return self._queue(operation, str(json.loads(self._body(environ) or b"{}").get("QueueUrl", "")), path)
        signer = str(environ.get("HTTP_AUTHORIZATION", "")).partition("Credential=")[2].split(",")[0].split("/")
        signed_for = signer[3] if len(signer) > 3 else ""
        if signed_for == "sqs":  # the query protocol (Message Queue's, the project's queue client's)
            params = parse_qs(environ.get("QUERY_STRING", ""))
            if "form-urlencoded" in str(environ.get("CONTENT_TYPE", "")):
                params.update(parse_qs(self._body(environ).decode("latin-1")))
            return self._queue(params.get("Action", [""])[0], params.get("QueueUrl", [""])[0], path)
        if method in ("GET", "HEAD"):
            return "read", ""
        bucket, _, key = path.lstrip("/").partition("/")
        if signed_for == "s3" and (key or (method == "POST" and "delete" in parse_qs(
                environ.get("QUERY_STRING", ""), keep_blank_values=True))):
            return "bucket", bucket  # an object written or deleted (path-style addresses, as s3_config asks)
        return "anything", ""

    def _queue(self, action: str, queue_url: str, path: str) -> tuple[str, str]:
        if action in self.QUEUE_READS:
            return "read", ""
        if action in self.QUEUE_DATA:
            return "queue", (queue_url or path).rstrip("/").rpartition("/")[2]
        return "anything", ""

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        return body


def renew(url: str, max_receive_count: int = 5, visibility_s: int = 30, queues: bool = True,
          session: Any = None) -> Resources:
    """The stand-in this process serves at `url` (start_moto's or an InProcessMoto) as `provision()` with these
    arguments leaves a fresh moto, at the least cost: if `renew()` last provisioned it so, at this URL, and only
    data has changed since (CHANGES), the items, objects and messages are deleted (a Scan and a BatchWriteItem, a ListObjectsV2
    and a DeleteObjects, a PurgeQueue for each queue used and its dead-letter queue); otherwise moto is reset and
    provisioned again. `session`: the requests Session the queue calls go through (see provision)."""
    import requests

    how = (url, max_receive_count, visibility_s, queues)
    session = session or requests.Session()
    changes = CHANGES
    with changes.lock:
        known, changes.provisioned = changes.provisioned, None  # until this one is done
        anything, tables, buckets, names = changes.anything, changes.tables, changes.buckets, changes.queues
        changes.anything, changes.tables, changes.buckets, changes.queues = True, set(), set(), set()
        changes.quiet = True
    try:
        if known is None or known[0] != how or anything:
            session.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
            resources = provision(url, max_receive_count, visibility_s, queues, session, poll_s=0.001)
        else:
            resources = known[1]
            _empty(url, resources, session, tables & {resources.table}, buckets & {resources.bucket}, names)
        with changes.lock:
            changes.provisioned, changes.anything = (how, resources), False
    finally:
        changes.quiet = False
    return Resources(resources.endpoint, dict(resources.queues), dict(resources.arns), resources.table,
                     resources.bucket, resources.max_receive_count)


def _empty(url: str, resources: Resources, session: Any, tables: set[str], buckets: set[str],
           names: set[str]) -> None:
    """Delete the items of `tables`, the objects of `buckets` and the messages of the queues `names` (and of
    their dead-letter queues) of a provisioned stand-in."""
    from shared.jobs.queue import QueueClient

    db, s3 = _clients(url)
    for table in tables:
        for page in db.get_paginator("scan").paginate(TableName=table, ProjectionExpression="#k",
                                                      ExpressionAttributeNames={"#k": "id"}, ConsistentRead=True):
            keys = [{"DeleteRequest": {"Key": item}} for item in page.get("Items", [])]
            for start in range(0, len(keys), 25):
                db.batch_write_item(RequestItems={table: keys[start:start + 25]})
    for bucket in buckets:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            if page.get("Contents"):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in page["Contents"]],
                                                          "Quiet": True})
    client = QueueClient(url, REGION, ACCESS_KEY, SECRET_KEY, session=session)
    for name in sorted(names | {f"{n}-dlq" for n in names}):
        if name in resources.queues:
            client.call("PurgeQueue", resources.queues[name], {})


def _clients(endpoint: str) -> tuple[Any, Any]:
    """Document API and Object Storage clients for a stand-in, made once per endpoint (boto3 clients are slow to
    build, and thread-safe)."""
    with _CLIENTS_LOCK:
        if endpoint not in _CLIENTS:
            import boto3

            from shared.jobs.store import s3_config

            common = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
                      "aws_secret_access_key": SECRET_KEY}
            _CLIENTS[endpoint] = (boto3.client("dynamodb", **common), boto3.client("s3", **common, config=s3_config()))
        return _CLIENTS[endpoint]


_CLIENTS: dict[str, tuple[Any, Any]] = {}
_CLIENTS_LOCK = threading.Lock()


@dataclass
class Resources:
    endpoint: str
    queues: dict[str, str] = field(default_factory=dict)  # name -> URL (kinds and their -dlq)
    arns: dict[str, str] = field(default_factory=dict)
    table: str = "jobs"
    bucket: str = "fm-results"
    max_receive_count: int = 5

    def env(self) -> dict[str, str]:
        return {"YMQ_ENDPOINT": self.endpoint, "DOCAPI_ENDPOINT": self.endpoint, "S3_ENDPOINT": self.endpoint,
                "JOBS_TABLE": self.table, "RESULTS_BUCKET": self.bucket, "YC_REGION": REGION,
                "JOB_MAX_DELIVERIES": str(self.max_receive_count),
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                **{f"{kind.upper()}_QUEUE_URL": self.queues[kind] for kind in JOB_KINDS if kind in self.queues}}


def provision(endpoint: str, max_receive_count: int = 5, visibility_s: int = 30, queues: bool = True,
              session: Any = None, poll_s: float = 0.05) -> Resources:
    """Create the table, the bucket and (unless `queues` is False) the queues; `session`: the requests Session
    the queue calls go through (InProcessMoto.requests_adapter mounted, for the in-process stand-in)."""
    from shared.jobs.queue import QueueClient
    from shared.jobs.store import create_jobs_table

    resources = Resources(endpoint, max_receive_count=max_receive_count)
    db, s3 = _clients(endpoint)
    if resources.table not in db.list_tables().get("TableNames", []):
        create_jobs_table(db, resources.table, poll_s=poll_s)  # the stand-in counts describes, not seconds
    if resources.bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=resources.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    if not queues:
        return resources
    client = QueueClient(endpoint, REGION, ACCESS_KEY, SECRET_KEY, session=session)
    for kind in JOB_KINDS:
        dlq = client.create_queue(f"{kind}-dlq")
        dlq_arn = client.attributes(dlq, ("QueueArn",))["QueueArn"]
        url = client.create_queue(kind, {
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
            "VisibilityTimeout": str(visibility_s)})
        resources.queues.update({kind: url, f"{kind}-dlq": dlq})
        resources.arns.update({kind: client.attributes(url, ("QueueArn",))["QueueArn"], f"{kind}-dlq": dlq_arn})
    return resources
