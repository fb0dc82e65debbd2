"""The local stand-ins for Message Queue, the YDB Document API and Object Storage: moto server on loopback.

`provision()` creates what Terraform creates in the cloud: one queue per job kind, each with a
dead-letter queue through a redrive policy, and the results bucket (the jobs table, with its TTL
attribute, is created by the functions on first use, as in the cloud). It returns the environment
the functions read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

JOB_KINDS = ("completion", "embedding", "classification")
ACCESS_KEY, SECRET_KEY = "local-access-key", "local-secret-key-000000"
REGION = "ru-central1"


def start_moto(port: int = 0) -> tuple[Any, str]:
    """Start moto server in this process; (server, url)."""
    os.environ["MOTO_ALLOW_NONEXISTENT_REGION"] = "True"  # moto knows no ru-central1 otherwise
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


@dataclass
class Resources:
    endpoint: str
    queues: dict[str, str] = field(default_factory=dict)  # name -> URL (kinds and their -dlq)
    arns: dict[str, str] = field(default_factory=dict)
    table: str = "jobs"
    bucket: str = "fm-results"

    def env(self) -> dict[str, str]:
        return {"YMQ_ENDPOINT": self.endpoint, "DOCAPI_ENDPOINT": self.endpoint, "S3_ENDPOINT": self.endpoint,
                "JOBS_TABLE": self.table, "RESULTS_BUCKET": self.bucket, "YC_REGION": REGION,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                **{f"{kind.upper()}_QUEUE_URL": self.queues[kind] for kind in JOB_KINDS}}


def provision(endpoint: str, max_receive_count: int = 5, visibility_s: int = 30) -> Resources:
    import boto3

    from shared.queue import QueueClient

    common = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": ACCESS_KEY,
              "aws_secret_access_key": SECRET_KEY}
    resources = Resources(endpoint)
    # the jobs table is not made here: the functions create it on first use, as they do in the cloud
    s3 = boto3.client("s3", **common)
    if resources.bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=resources.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    queues = QueueClient(endpoint, REGION, ACCESS_KEY, SECRET_KEY)
    for kind in JOB_KINDS:
        dlq = queues.create_queue(f"{kind}-dlq")
        dlq_arn = queues.attributes(dlq, ("QueueArn",))["QueueArn"]
        url = queues.create_queue(kind, {
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
            "VisibilityTimeout": str(visibility_s)})
        resources.queues.update({kind: url, f"{kind}-dlq": dlq})
        resources.arns.update({kind: queues.attributes(url, ("QueueArn",))["QueueArn"], f"{kind}-dlq": dlq_arn})
    return resources
