"""The local stand-ins for Message Queue, the YDB Document API and Object Storage: moto server on loopback.

`provision()` creates what Terraform creates in the cloud: one queue per job kind, each with a
dead-letter queue through a redrive policy, and the results bucket (the jobs table, with its TTL
attribute, is created by the functions on first use, as in the cloud). It returns the environment
the functions read.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

JOB_KINDS = ("completion", "embedding", "classification")
ACCESS_KEY, SECRET_KEY = "local-access-key", "local-secret-key-000000"
REGION = "ru-central1"


def start_moto(port: int = 0) -> tuple[Any, str]:
    """Start moto server in this process, its Document API linearizable; (server, url).

    The cloud's Document API applies each conditional write and transaction atomically. moto's backend
    does not: two threads can both pass the same `attribute_not_exists` check, and a transaction can
    iterate a table while another request changes it. So every DynamoDB-protocol request runs under one
    lock, which makes each one atomic and their order a total one, as the real service guarantees. The
    queue and bucket APIs are left concurrent (a long-polling ReceiveMessage must not stall the store).
    """
    os.environ["MOTO_ALLOW_NONEXISTENT_REGION"] = "True"  # moto knows no ru-central1 otherwise
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", port, SerializedDocumentApi(DomainDispatcherApplication(create_backend_app)),
                         threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="moto-server", daemon=True).start()
    host, bound = server.server_address[:2]
    return server, f"http://{host}:{bound}"


class SerializedDocumentApi:
    """WSGI middleware: DynamoDB-protocol requests (X-Amz-Target: DynamoDB_*) one at a time, whole."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]  # the whole answer is made while the backend is ours
            finally:
                getattr(result, "close", lambda: None)()


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

    from shared.jobs.queue import QueueClient

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
