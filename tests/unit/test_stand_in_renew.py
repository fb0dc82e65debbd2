"""What `local.aws.renew` promises the fixtures (`aws`, `aws_jobs`, `jobs` in tests/conftest.py): whatever the last
test did, the next one finds the stand-in as `provision()` leaves a fresh moto, with nothing of the last test's
items, objects or messages (queued, in flight, or moved to a dead-letter queue) and none of its structural changes.

renew() undoes only what changed (local.aws.Changes, noted by the Touches middleware in every app the process
serves, since moto keeps one set of backends per process); these tests check the outcome, on the in-process
stand-in and on moto server over loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from local.aws import ACCESS_KEY, REGION, SECRET_KEY, InProcessMoto, renew, start_moto
from shared.jobs.queue import QueueClient
from shared.jobs.store import s3_config

InProcessMoto.shared()


@pytest.fixture(params=["in-process", "loopback"])
def stand_in(request: pytest.FixtureRequest) -> Iterator[tuple[str, requests.Session]]:
    session = requests.Session()
    if request.param == "in-process":
        moto = InProcessMoto.shared()
        session.mount(moto.url, moto.requests_adapter())
        yield moto.url, session
    else:
        server, url = start_moto()
        yield url, session
        server.shutdown()


def _clients(url: str, session: requests.Session) -> tuple[Any, Any, QueueClient]:
    common = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
              "aws_secret_access_key": SECRET_KEY}
    return (boto3.client("dynamodb", **common), boto3.client("s3", **common, config=s3_config()),
            QueueClient(url, REGION, ACCESS_KEY, SECRET_KEY, session=session))


def _dirty(url: str, session: requests.Session, resources: Any) -> None:
    """Leave data everywhere a test can: items (put, transaction, batch), objects, queued, in-flight and
    dead-lettered messages."""
    db, s3, queues = _clients(url, session)
    db.put_item(TableName=resources.table, Item={"id": {"S": "a"}})
    db.transact_write_items(TransactItems=[{"Put": {"TableName": resources.table, "Item": {"id": {"S": "b"}}}}])
    db.batch_write_item(RequestItems={resources.table: [{"PutRequest": {"Item": {"id": {"S": f"c{n}"}}}}
                                                        for n in range(25)]})
    for n in range(3):
        s3.put_object(Bucket=resources.bucket, Key=f"results/{n}.json", Body=b"{}")
    queues.send(resources.queues["completion"], "queued")
    queues.send(resources.queues["embedding"], "in flight")
    assert queues.receive(resources.queues["embedding"], wait_s=0)  # now invisible for 30 s
    queues.send(resources.queues["classification"], "poison")
    for _ in range(resources.max_receive_count + 1):  # the receive past the count moves it to the DLQ
        for message in queues.receive(resources.queues["classification"], wait_s=0):
            queues.change_visibility(resources.queues["classification"], message.receipt_handle, 0)


def _empty(url: str, session: requests.Session, resources: Any) -> None:
    db, s3, queues = _clients(url, session)
    assert db.scan(TableName=resources.table, ConsistentRead=True)["Items"] == []
    assert s3.list_objects_v2(Bucket=resources.bucket).get("Contents", []) == []
    for name, queue_url in resources.queues.items():
        counts = queues.attributes(queue_url, ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                               "ApproximateNumberOfMessagesDelayed"))
        assert set(counts.values()) == {"0"}, (name, counts)


def test_data_a_test_left_is_gone_and_what_was_provisioned_stays(stand_in: tuple[str, requests.Session]) -> None:
    url, session = stand_in
    first = renew(url, max_receive_count=3, session=session)
    _dirty(url, session, first)
    _, _, queues = _clients(url, session)
    assert queues.attributes(first.queues["classification-dlq"], ("ApproximateNumberOfMessages",)) == {
        "ApproximateNumberOfMessages": "1"}  # the poison message really reached the dead-letter queue
    second = renew(url, max_receive_count=3, session=session)
    assert (second.queues, second.arns, second.table, second.bucket) == (first.queues, first.arns, first.table,
                                                                         first.bucket)
    _empty(url, session, second)
    policy = json.loads(queues.attributes(second.queues["completion"], ("RedrivePolicy",))["RedrivePolicy"])
    assert policy == {"deadLetterTargetArn": second.arns["completion-dlq"], "maxReceiveCount": 3}
    assert queues.send(second.queues["completion"], "next test") and queues.receive(second.queues["completion"], wait_s=0)


@pytest.mark.parametrize("change", ["queue attributes", "table deleted", "bucket deleted", "extra queue", "reset"])
def test_a_structural_change_is_undone_too(stand_in: tuple[str, requests.Session], change: str) -> None:
    url, session = stand_in
    first = renew(url, max_receive_count=3, session=session)
    _dirty(url, session, first)
    db, s3, queues = _clients(url, session)
    if change == "queue attributes":
        queues.call("SetQueueAttributes", first.queues["completion"],
                    {"Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "0"})
    elif change == "table deleted":
        db.delete_table(TableName=first.table)
    elif change == "bucket deleted":
        s3.delete_objects(Bucket=first.bucket, Delete={"Objects": [{"Key": f"results/{n}.json"} for n in range(3)]})
        s3.delete_bucket(Bucket=first.bucket)
    elif change == "extra queue":
        queues.create_queue("stray")
    else:
        session.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    second = renew(url, max_receive_count=3, session=session)
    _empty(url, session, second)
    assert queues.attributes(second.queues["completion"], ("VisibilityTimeout",)) == {"VisibilityTimeout": "30"}
    assert "stray" not in " ".join(queues.call("ListQueues", None, {}).itertext())
    assert first.table in db.list_tables()["TableNames"]
    assert first.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_other_arguments_are_provisioned_afresh(stand_in: tuple[str, requests.Session]) -> None:
    url, session = stand_in
    renew(url, max_receive_count=3, session=session)
    without = renew(url, queues=False, session=session)
    _, _, queues = _clients(url, session)
    assert without.queues == {} and list(queues.call("ListQueues", None, {}).iter("{*}QueueUrl")) == []
    five = renew(url, max_receive_count=5, session=session)
    policy = json.loads(queues.attributes(five.queues["embedding"], ("RedrivePolicy",))["RedrivePolicy"])
    assert policy["maxReceiveCount"] == 5
