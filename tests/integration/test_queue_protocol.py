"""Message Queue speaks only the SQS query protocol: the bytes our client puts on the wire prove it,
next to what current boto3 would send (the JSON protocol, which Message Queue refuses)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from local.aws import ACCESS_KEY, REGION, SECRET_KEY
from shared.jobs.queue import QueueClient

pytestmark = pytest.mark.integration


class Recorder(ThreadingHTTPServer):
    """A loopback proxy that records each raw request and forwards it to moto server."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append({"line": self.requestline, "headers": dict(self.headers.items()), "body": body})
        upstream = requests.post(self.server.upstream + self.path, data=body, timeout=10,
                                 headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "text/xml"))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)


@pytest.fixture
def recorder(moto_server: str) -> Iterator[Recorder]:
    server = Recorder(moto_server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server
    server.shutdown()


def test_our_queue_client_sends_the_query_protocol(recorder: Recorder, moto_server: str) -> None:
    proxy = f"http://127.0.0.1:{recorder.server_address[1]}"
    client = QueueClient(proxy, REGION, ACCESS_KEY, SECRET_KEY)
    url = client.create_queue("wire-test")
    url = proxy + url[url.index("/", len("http://")):]  # address the queue through the recorder
    client.send(url, '{"op": "fmoabcdef12", "task": 0}')
    sent = recorder.requests[-1]
    assert sent["line"].startswith("POST ")
    assert sent["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert "X-Amz-Target" not in sent["headers"]  # the JSON protocol's marker
    form = parse_qs(sent["body"].decode())
    assert form["Action"] == ["SendMessage"] and form["Version"] == ["2012-11-05"]
    assert form["MessageBody"] == ['{"op": "fmoabcdef12", "task": 0}']
    assert sent["body"].startswith(b"Action=SendMessage&Version=2012-11-05&")
    assert sent["headers"]["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert f"/{REGION}/sqs/aws4_request" in sent["headers"]["Authorization"]
    assert SECRET_KEY.encode() not in sent["body"] and SECRET_KEY not in str(sent["headers"])
    assert [m.body for m in client.receive(url)] == ['{"op": "fmoabcdef12", "task": 0}']


def test_current_boto3_would_send_json_which_is_why_we_do_not_use_it(recorder: Recorder) -> None:
    import boto3

    proxy = f"http://127.0.0.1:{recorder.server_address[1]}"
    sqs = boto3.client("sqs", endpoint_url=proxy, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY)
    sqs.list_queues()
    sent = recorder.requests[-1]
    assert sent["headers"].get("X-Amz-Target") == "AmazonSQS.ListQueues"
    assert sent["headers"]["Content-Type"].startswith("application/x-amz-json")
