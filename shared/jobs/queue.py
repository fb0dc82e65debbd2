"""Yandex Message Queue client speaking the SQS *query* protocol (form-encoded POST, XML answers).

Why not boto3's SQS client: current botocore sends SQS calls in the AWS JSON 1.0 protocol
(`X-Amz-Target: AmazonSQS.SendMessage`, JSON body), which Message Queue does not speak; the Yandex
docs say boto3 above 1.26.0 is unsupported and calls fail. Pinning an old boto3 would also pin the
DynamoDB and S3 clients, so instead this module builds query-protocol requests itself
(`Action=SendMessage&Version=2012-11-05&...`), signs them with botocore's SigV4 signer (service
`sqs`) and sends them over `requests`. botocore is imported only when a queue is used.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from shared import errors, logs

if TYPE_CHECKING:
    import requests

log = logs.get_logger("queue")

API_VERSION = "2012-11-05"


class QueueError(errors.UpstreamUnavailableError):
    """A Message Queue call failed (retryable: the trigger redelivers, a send is retried by the caller)."""


@dataclass
class Message:
    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


class QueueClient:
    def __init__(self, endpoint: str, region: str, access_key: str | None, secret_key: str | None,
                 session: requests.Session | None = None, timeout: tuple[float, float] = (3.05, 25.0)) -> None:
        import requests

        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        logs.register_secret(secret_key)
        self.session = session or requests.Session()
        self.timeout = timeout

    # -- actions --
    def send(self, queue_url: str, body: str, delay_s: int = 0) -> str:
        params = {"MessageBody": body}
        if delay_s:
            params["DelaySeconds"] = str(delay_s)
        root = self.call("SendMessage", queue_url, params)
        return _text(root, "MessageId") or ""

    def send_batch(self, queue_url: str, bodies: list[str]) -> None:
        """Send up to any number of bodies, 10 per SendMessageBatch call (the API's limit)."""
        for start in range(0, len(bodies), 10):
            params: dict[str, str] = {}
            for n, body in enumerate(bodies[start:start + 10], start=1):
                params[f"SendMessageBatchRequestEntry.{n}.Id"] = f"m{start + n}"
                params[f"SendMessageBatchRequestEntry.{n}.MessageBody"] = body
            root = self.call("SendMessageBatch", queue_url, params)
            failed = [el for el in root.iter() if _local(el.tag) == "BatchResultErrorEntry"]
            if failed:
                raise QueueError(f"SendMessageBatch: {len(failed)} of the messages were refused "
                                 f"({_text(failed[0], 'Code')}: {_text(failed[0], 'Message')})")

    def receive(self, queue_url: str, max_messages: int = 10, wait_s: int = 0,
                visibility_s: int | None = None) -> list[Message]:
        params = {"MaxNumberOfMessages": str(max_messages), "WaitTimeSeconds": str(wait_s),
                  "AttributeName.1": "All"}
        if visibility_s is not None:
            params["VisibilityTimeout"] = str(visibility_s)
        root = self.call("ReceiveMessage", queue_url, params)
        messages = []
        for element in root.iter():
            if _local(element.tag) != "Message":
                continue
            attributes = {}
            for attribute in element:
                if _local(attribute.tag) == "Attribute":
                    attributes[_text(attribute, "Name") or ""] = _text(attribute, "Value") or ""
            messages.append(Message(_text(element, "MessageId") or "", _text(element, "ReceiptHandle") or "",
                                    _text(element, "Body") or "", _text(element, "MD5OfBody") or "", attributes))
        return messages

    def delete(self, queue_url: str, receipt_handle: str) -> None:
        self.call("DeleteMessage", queue_url, {"ReceiptHandle": receipt_handle})

    def change_visibility(self, queue_url: str, receipt_handle: str, visibility_s: int) -> None:
        self.call("ChangeMessageVisibility", queue_url,
                  {"ReceiptHandle": receipt_handle, "VisibilityTimeout": str(visibility_s)})

    def create_queue(self, name: str, attributes: dict[str, str] | None = None) -> str:
        params = {"QueueName": name}
        for n, (key, value) in enumerate((attributes or {}).items(), start=1):
            params[f"Attribute.{n}.Name"] = key
            params[f"Attribute.{n}.Value"] = value
        root = self.call("CreateQueue", None, params)
        return _text(root, "QueueUrl") or ""

    def attributes(self, queue_url: str, names: tuple[str, ...] = ("All",)) -> dict[str, str]:
        params = {f"AttributeName.{n}": name for n, name in enumerate(names, start=1)}
        root = self.call("GetQueueAttributes", queue_url, params)
        out = {}
        for element in root.iter():
            if _local(element.tag) == "Attribute":
                out[_text(element, "Name") or ""] = _text(element, "Value") or ""
        return out

    # -- transport --
    def build(self, action: str, queue_url: str | None, params: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        """The signed request: (url, headers, form-encoded body). Separate so tests can inspect it."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as AwsCredentials

        form = {"Action": action, "Version": API_VERSION, **params}
        if queue_url:
            form["QueueUrl"] = queue_url
        body = urlencode(form).encode()
        url = queue_url or self.endpoint
        if not url.startswith(self.endpoint):  # a URL from another host: post to our endpoint instead
            url = self.endpoint
        request = AWSRequest(method="POST", url=url, data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        if self._access_key and self._secret_key:
            SigV4Auth(AwsCredentials(self._access_key, self._secret_key), "sqs", self.region).add_auth(request)
        return url, dict(request.headers.items()), body

    def call(self, action: str, queue_url: str | None, params: dict[str, str]) -> ElementTree.Element:
        import requests

        url, headers, body = self.build(action, queue_url, params)
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as err:
            raise QueueError(f"{action}: Message Queue unreachable ({type(err).__name__})") from None
        try:
            root = ElementTree.fromstring(response.content)
        except ElementTree.ParseError:
            raise QueueError(f"{action}: HTTP {response.status_code} with a body that is not XML") from None
        if response.status_code != 200 or _local(root.tag) == "ErrorResponse":
            raise QueueError(f"{action}: HTTP {response.status_code} {_text(root, 'Code')}: {_text(root, 'Message')}")
        return root


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ElementTree.Element, name: str) -> str | None:
    for child in element.iter():
        if _local(child.tag) == name:
            return child.text
    return None


_lock = threading.Lock()
_client: QueueClient | None = None


def queue_client(endpoint: str, region: str, access_key: str | None, secret_key: str | None) -> QueueClient:
    """The instance's queue client (one Session, reused across warm invocations)."""
    global _client
    with _lock:
        if _client is None or (_client.endpoint, _client.region) != (endpoint.rstrip("/"), region):
            _client = QueueClient(endpoint, region, access_key, secret_key)
        return _client


def reset_queue_client() -> None:
    global _client
    with _lock:
        _client = None
