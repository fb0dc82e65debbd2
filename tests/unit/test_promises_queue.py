"""The queue client's promises without a socket: the exact query-protocol form of every action, batches
split at the API's limit of 10, answers parsed from namespaced XML, and every failure a retryable
QueueError that names the action. (The bytes on a real wire: tests/integration/test_queue_protocol.py.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from shared import errors, logs
from shared.jobs import queue

ENDPOINT = "http://ymq.test"
QUEUE = f"{ENDPOINT}/b1g/dj6/jobs"
NS = 'xmlns="http://queue.amazonaws.com/doc/2012-11-05/"'


def xml(body: str, status: int = 200) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body.encode()
    return answer


class ScriptedSession:
    def __init__(self, *answers: requests.Response | BaseException) -> None:
        self.answers = list(answers)
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, data: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> requests.Response:
        self.posts.append({"url": url, "form": dict(parse_qsl(data.decode())), "body": data, "headers": headers,
                           "timeout": timeout})
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def client(*answers: requests.Response | BaseException, access: str | None = "AKID",
           secret: str | None = "queue-secret-value-1234") -> tuple[queue.QueueClient, ScriptedSession]:
    session = ScriptedSession(*answers)
    return queue.QueueClient(ENDPOINT + "/", "ru-central1", access, secret, session=session,  # type: ignore[arg-type]
                             timeout=(1.5, 9.0)), session


SENT = xml(f"<SendMessageResponse {NS}><SendMessageResult><MessageId>m-1</MessageId></SendMessageResult>"
           "</SendMessageResponse>")
EMPTY = xml(f"<Response {NS}></Response>")


def test_send_posts_the_query_form_to_the_queue_and_returns_the_message_id() -> None:
    queues, session = client(SENT)
    assert queues.send(QUEUE, '{"op": "x", "task": 0}') == "m-1"
    assert queues.send(QUEUE, "later", delay_s=900) == "m-1"
    now, later = session.posts
    assert now["url"] == QUEUE and now["timeout"] == (1.5, 9.0)
    assert now["form"] == {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": '{"op": "x", "task": 0}',
                           "QueueUrl": QUEUE}
    assert now["body"].startswith(b"Action=SendMessage&Version=2012-11-05&")
    assert later["form"]["DelaySeconds"] == "900" and later["form"]["MessageBody"] == "later"
    assert now["headers"]["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert now["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert "/ru-central1/sqs/aws4_request" in now["headers"]["Authorization"]


def test_a_send_without_a_message_id_answers_empty() -> None:
    queues, _ = client(EMPTY)
    assert queues.send(QUEUE, "x") == ""


def test_without_credentials_nothing_is_signed() -> None:
    for access, secret in ((None, "s-123456"), ("AKID", None)):
        queues, session = client(SENT, access=access, secret=secret)
        queues.send(QUEUE, "x")
        assert "Authorization" not in session.posts[0]["headers"]


def test_a_queue_url_on_another_host_is_posted_to_our_endpoint() -> None:
    queues, session = client(SENT)
    queues.send("https://elsewhere.test/b1g/dj6/jobs", "x")
    assert session.posts[0]["url"] == ENDPOINT
    assert session.posts[0]["form"]["QueueUrl"] == "https://elsewhere.test/b1g/dj6/jobs"


def test_batches_go_ten_at_a_time_with_unique_ids() -> None:
    queues, session = client(EMPTY)
    queues.send_batch(QUEUE, [f"body-{n}" for n in range(23)])
    assert [p["form"]["Action"] for p in session.posts] == ["SendMessageBatch"] * 3
    sizes = [sum(1 for key in p["form"] if key.endswith(".MessageBody")) for p in session.posts]
    assert sizes == [10, 10, 3]
    last = session.posts[2]["form"]
    assert last["SendMessageBatchRequestEntry.1.Id"] == "m21" and last["SendMessageBatchRequestEntry.1.MessageBody"] == "body-20"
    assert last["SendMessageBatchRequestEntry.3.Id"] == "m23" and last["SendMessageBatchRequestEntry.3.MessageBody"] == "body-22"
    assert all(p["url"] == QUEUE and p["form"]["QueueUrl"] == QUEUE for p in session.posts)
    ids = [v for p in session.posts for k, v in p["form"].items() if k.endswith(".Id")]
    assert len(set(ids)) == 23 and session.posts[0]["form"]["SendMessageBatchRequestEntry.10.Id"] == "m10"


def test_a_refused_entry_fails_the_batch_naming_the_reason() -> None:
    refused = xml(f"<SendMessageBatchResponse {NS}><SendMessageBatchResult><BatchResultErrorEntry><Id>m2</Id>"
                  "<Code>InvalidMessageContents</Code><Message>bad bytes</Message></BatchResultErrorEntry>"
                  "<BatchResultErrorEntry><Id>m3</Id><Code>X</Code><Message>y</Message></BatchResultErrorEntry>"
                  "</SendMessageBatchResult></SendMessageBatchResponse>")
    queues, _ = client(refused)
    with pytest.raises(queue.QueueError) as info:
        queues.send_batch(QUEUE, ["a", "b", "c"])
    assert str(info.value) == "SendMessageBatch: 2 of the messages were refused (InvalidMessageContents: bad bytes)"
    assert queues.send_batch(QUEUE, []) is None


RECEIVED = xml(f"""<ReceiveMessageResponse {NS}><ReceiveMessageResult>
<Message><MessageId>id-1</MessageId><ReceiptHandle>rh-1</ReceiptHandle><MD5OfBody>md5-1</MD5OfBody><Body>one</Body>
<Attribute><Name>ApproximateReceiveCount</Name><Value>2</Value></Attribute>
<Attribute><Name>SentTimestamp</Name><Value>1700000000000</Value></Attribute></Message>
<Message><MessageId>id-2</MessageId><ReceiptHandle>rh-2</ReceiptHandle><Body>two</Body></Message>
</ReceiveMessageResult></ReceiveMessageResponse>""")


def test_receive_asks_for_everything_and_reads_each_message() -> None:
    queues, session = client(RECEIVED)
    first, second = queues.receive(QUEUE, max_messages=7, wait_s=3, visibility_s=45)
    assert session.posts[0]["form"] == {"Action": "ReceiveMessage", "Version": "2012-11-05", "QueueUrl": QUEUE,
                                        "MaxNumberOfMessages": "7", "WaitTimeSeconds": "3", "AttributeName.1": "All",
                                        "VisibilityTimeout": "45"}
    assert (first.message_id, first.receipt_handle, first.body, first.md5_of_body) == ("id-1", "rh-1", "one", "md5-1")
    assert first.attributes == {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"}
    assert (second.message_id, second.body, second.md5_of_body, second.attributes) == ("id-2", "two", "", {})
    queues.receive(QUEUE)
    assert session.posts[1]["form"]["MaxNumberOfMessages"] == "10" and session.posts[1]["form"]["WaitTimeSeconds"] == "0"
    assert "VisibilityTimeout" not in session.posts[1]["form"]


def test_a_message_with_missing_fields_reads_as_empty_strings() -> None:
    queues, _ = client(xml(f"<ReceiveMessageResponse {NS}><ReceiveMessageResult><Message>"
                           "<Attribute><Value>v</Value></Attribute><Attribute><Name>n</Name></Attribute>"
                           "</Message></ReceiveMessageResult></ReceiveMessageResponse>"))
    (message,) = queues.receive(QUEUE)
    assert (message.message_id, message.receipt_handle, message.body) == ("", "", "")
    assert message.attributes == {"": "v", "n": ""}


def test_answers_without_a_namespace_are_read_too() -> None:
    queues, _ = client(xml("<ReceiveMessageResponse><ReceiveMessageResult><Message><MessageId>id-9</MessageId>"
                           "<Body>plain</Body></Message></ReceiveMessageResult></ReceiveMessageResponse>"),
                       xml("<GetQueueAttributesResponse><GetQueueAttributesResult><Attribute><Name>A</Name></Attribute>"
                           "<Attribute><Value>1</Value></Attribute></GetQueueAttributesResult></GetQueueAttributesResponse>"))
    (message,) = queues.receive(QUEUE)
    assert (message.message_id, message.body) == ("id-9", "plain")
    assert queues.attributes(QUEUE) == {"A": "", "": "1"}


def test_delete_visibility_create_and_attributes_send_their_parameters() -> None:
    created = xml(f"<CreateQueueResponse {NS}><CreateQueueResult><QueueUrl>{QUEUE}</QueueUrl></CreateQueueResult>"
                  "</CreateQueueResponse>")
    attributes = xml(f"<GetQueueAttributesResponse {NS}><GetQueueAttributesResult>"
                     "<Attribute><Name>QueueArn</Name><Value>arn:jobs</Value></Attribute>"
                     "<Attribute><Name>DelaySeconds</Name><Value>0</Value></Attribute>"
                     "</GetQueueAttributesResult></GetQueueAttributesResponse>")
    queues, session = client(EMPTY, EMPTY, created, created, attributes, attributes)
    queues.delete(QUEUE, "rh-1")
    queues.change_visibility(QUEUE, "rh-2", 0)
    assert queues.create_queue("jobs", {"VisibilityTimeout": "60", "RedrivePolicy": "{}"}) == QUEUE
    assert queues.create_queue("bare") == QUEUE
    assert queues.attributes(QUEUE) == {"QueueArn": "arn:jobs", "DelaySeconds": "0"}
    queues.attributes(QUEUE, ("QueueArn", "DelaySeconds"))
    forms = [p["form"] for p in session.posts]
    assert forms[0] == {"Action": "DeleteMessage", "Version": "2012-11-05", "ReceiptHandle": "rh-1", "QueueUrl": QUEUE}
    assert forms[1] == {"Action": "ChangeMessageVisibility", "Version": "2012-11-05", "ReceiptHandle": "rh-2",
                        "VisibilityTimeout": "0", "QueueUrl": QUEUE}
    assert forms[2] == {"Action": "CreateQueue", "Version": "2012-11-05", "QueueName": "jobs",
                        "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "60",
                        "Attribute.2.Name": "RedrivePolicy", "Attribute.2.Value": "{}"}
    assert session.posts[2]["url"] == ENDPOINT and "QueueUrl" not in forms[2]
    assert forms[3] == {"Action": "CreateQueue", "Version": "2012-11-05", "QueueName": "bare"}
    assert forms[4] == {"Action": "GetQueueAttributes", "Version": "2012-11-05", "AttributeName.1": "All",
                        "QueueUrl": QUEUE}
    assert forms[5]["AttributeName.1"] == "QueueArn" and forms[5]["AttributeName.2"] == "DelaySeconds"


def test_create_queue_without_a_url_in_the_answer_answers_empty() -> None:
    queues, _ = client(EMPTY)
    assert queues.create_queue("x") == ""


@pytest.mark.parametrize("answer,message", [
    (requests.exceptions.ConnectionError("refused"), "SendMessage: Message Queue unreachable (ConnectionError)"),
    (requests.exceptions.ReadTimeout("slow"), "SendMessage: Message Queue unreachable (ReadTimeout)"),
    (xml("<html>bad gateway", 502), "SendMessage: HTTP 502 with a body that is not XML"),
    (xml(f"<ErrorResponse {NS}><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>", 403),
     "SendMessage: HTTP 403 AccessDenied: no"),
    (xml(f"<ErrorResponse {NS}><Error><Code>Throttled</Code><Message>slow</Message></Error></ErrorResponse>"),
     "SendMessage: HTTP 200 Throttled: slow"),
    (xml(f"<Other {NS}/>", 500), "SendMessage: HTTP 500 None: None"),
])
def test_every_failure_is_a_retryable_queue_error_naming_the_action(answer: Any, message: str) -> None:
    queues, _ = client(answer)
    with pytest.raises(queue.QueueError) as info:
        queues.send(QUEUE, "x")
    assert str(info.value) == message
    assert isinstance(info.value, errors.UpstreamUnavailableError) and info.value.retryable and info.value.status == 503


def test_the_secret_key_is_redacted_and_never_sent() -> None:
    queues, session = client(SENT, secret="queue-secret-value-5678")
    queues.send(QUEUE, "x")
    assert "queue-secret-value-5678" not in str(session.posts[0]) and session.posts[0]["body"].find(b"5678") < 0
    assert logs.redact("leaked queue-secret-value-5678") == "leaked [REDACTED]"


def test_the_instance_keeps_one_client_per_endpoint_and_region() -> None:
    queue.reset_queue_client()
    first = queue.queue_client(ENDPOINT + "/", "ru-central1", "a", "s-123456")
    assert queue.queue_client(ENDPOINT, "ru-central1", "a", "s-123456") is first  # the same, trailing slash or not
    assert queue.queue_client(ENDPOINT + "/", "ru-central1", "a", "s-123456") is first
    assert first._access_key == "a" and first._secret_key == "s-123456"  # it signs with what it was given
    other_region = queue.queue_client(ENDPOINT, "kz1", "a", "s-123456")
    assert other_region is not first and other_region.region == "kz1"
    other_endpoint = queue.queue_client("http://other.test", "kz1", "a", "s-123456")
    assert other_endpoint is not other_region and other_endpoint.endpoint == "http://other.test"
    queue.reset_queue_client()
    assert queue.queue_client(ENDPOINT, "ru-central1", "a", "s-123456") is not first
    prefixed = queue.queue_client("http://ymq.test/prefiX/", "r", "a", "s-123456")
    assert queue.queue_client("http://ymq.test/prefiX/", "r", "a", "s-123456") is prefixed
    assert queue.QueueClient("http://ymq.test/prefiX/", "r", None, None).endpoint == "http://ymq.test/prefiX"
    default = queue.QueueClient(ENDPOINT, "ru-central1", None, None)
    assert isinstance(default.session, requests.Session) and default.timeout == (3.05, 25.0)
    queue.reset_queue_client()


def test_the_signature_covers_the_method_url_and_body_that_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: datetime.datetime(2026, 1, 2, 3, 4, 5))
    queues, _ = client(SENT)
    url, headers, body = queues.build("SendMessage", QUEUE, {"MessageBody": "x"})
    expected = AWSRequest(method="POST", url=QUEUE, data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(Credentials("AKID", "queue-secret-value-1234"), "sqs", "ru-central1").add_auth(expected)
    assert url == QUEUE and headers["X-Amz-Date"] == "20260102T030405Z"
    assert headers["Authorization"] == expected.headers["Authorization"]  # SigV4 of exactly these bytes
