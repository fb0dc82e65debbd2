"""What a caller sees of a job, and who may see it (shared/jobs/views.py, shared/jobs/access.py), from the
stored item alone: the Operation JSON of an async operation or a batch, a result inline up to
RESULT_INLINE_MAX_BYTES and a presigned link past it (for the owner only), and a 404 for someone else's
work that reads exactly like one for an id that does not exist.

The results bucket here is a dict behind the two calls the views make (get_object, presign); the real
bucket behind them is proven by tests/integration/test_async.py and test_promises_jobs.py."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared import errors
from shared.client import Call
from shared.config import Settings
from shared.jobs import access, views
from shared.runtime import Invocation

INLINE = 1000
SETTINGS = Settings.from_env({"RESULT_INLINE_MAX_BYTES": str(INLINE), "RESULT_URL_TTL_S": "900"})


class Bucket:
    """The results bucket as the views use it: objects by key, and presigned links that name key and TTL."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.presigned: list[tuple[str, int]] = []

    def get_object(self, key: str) -> bytes:
        return self.objects[key]

    def presign(self, key: str, ttl_s: int) -> str:
        self.presigned.append((key, ttl_s))
        return f"https://bucket.example/{key}?ttl={ttl_s}"


def _done(**fields: Any) -> dict[str, Any]:
    item = {"id": "op-1", "kind": "completion", "state": "done", "tasks_total": 1, "tasks_done": 1,
            "created_at": 1_700_000_000.25, "modified_at": 1_700_000_001, "created_by": "alice",
            "description": "a completion", "result_key": "results/op-1.json", "result_size": 20}
    return {**item, **fields}


def test_a_running_operation_shows_its_progress_and_no_result() -> None:
    item = {"id": "op-1", "kind": "embedding", "state": "running", "tasks_total": 4, "tasks_done": 3,
            "created_at": 1.5, "modified_at": 2, "created_by": "bob", "description": "texts",
            "last_error": "RESOURCE_EXHAUSTED; retrying", "result_key": "k", "result_size": 5}
    assert views.view(item, Bucket({"k": b"{}"}), SETTINGS, owner=True) == {
        "id": "op-1", "description": "texts", "createdAt": "1970-01-01T00:00:01.500000Z", "createdBy": "bob",
        "modifiedAt": "1970-01-01T00:00:02.000000Z", "done": False,
        "metadata": {"state": "running", "completedTasks": "3", "totalTasks": "4",
                     "lastError": "RESOURCE_EXHAUSTED; retrying"},
    }


def test_a_bare_queued_item_reads_with_defaults() -> None:
    assert views.operation_view({"id": "op-2", "state": "queued", "created_at": None, "modified_at": ""}) == {
        "id": "op-2", "description": "", "createdAt": "", "createdBy": "", "modifiedAt": "", "done": False,
        "metadata": {"state": "queued", "completedTasks": "0", "totalTasks": "1"},
    }


def test_a_failed_operation_has_its_error_and_no_response() -> None:
    error = {"code": 3, "message": "messages: is empty", "details": []}
    shown = views.view(_done(error=json.dumps(error), last_error="old"), Bucket({}), SETTINGS, owner=True)
    assert shown["error"] == error and "response" not in shown and shown["done"] is True
    assert shown["metadata"] == {"state": "done", "completedTasks": "1", "totalTasks": "1"}  # no lastError when done


def test_a_result_up_to_the_inline_limit_is_inline_and_one_byte_more_is_a_link_for_the_owner_only() -> None:
    result = {"alternatives": [{"message": {"role": "assistant", "text": "hi"}}]}
    bucket = Bucket({"results/op-1.json": json.dumps(result).encode()})
    inline = views.view(_done(result_size=INLINE), bucket, SETTINGS, owner=False)
    assert inline["response"] == result and "error" not in inline and bucket.presigned == []
    large = views.view(_done(result_size=INLINE + 1), bucket, SETTINGS, owner=True)
    assert large["response"] == {
        "@type": "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.CompletionResponse",
        "sizeBytes": str(INLINE + 1), "resultUrl": "https://bucket.example/results/op-1.json?ttl=900",
        "urlExpiresInSeconds": "900"}
    assert bucket.presigned == [("results/op-1.json", 900)]
    admin = views.view(_done(result_size=INLINE + 1, kind="embedding"), bucket, SETTINGS, owner=False)
    assert admin["response"] == {
        "@type": "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.TextEmbeddingBatchResponse",
        "sizeBytes": str(INLINE + 1)}
    assert bucket.presigned == [("results/op-1.json", 900)]  # no link minted for anyone but the owner
    unknown = views.view(_done(result_size=INLINE + 1, kind="other"), bucket, SETTINGS)
    assert unknown["response"] == {"@type": "", "sizeBytes": str(INLINE + 1)}


def test_times_are_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Novosibirsk")
    time.tzset()
    try:
        shown = views.view({"id": "op-1", "state": "queued", "created_at": 0, "modified_at": 1_700_000_000.5})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (shown["createdAt"], shown["modifiedAt"]) == ("1970-01-01T00:00:00.000000Z", "2023-11-14T22:13:20.500000Z")


def test_no_link_is_minted_unless_the_caller_is_named_the_owner() -> None:
    bucket = Bucket({})
    large = views.operation_view(_done(result_size=INLINE + 1), bucket, SETTINGS)
    assert "resultUrl" not in large["response"] and large["response"]["sizeBytes"] == str(INLINE + 1)
    batch = views.batch_view(_batch(state="done"), bucket, SETTINGS)
    assert "resultUrl" not in batch["response"] and bucket.presigned == []


def test_without_the_store_no_result_is_loaded() -> None:
    for store, settings in ((None, SETTINGS), (Bucket({}), None)):
        shown = views.operation_view(_done(), store, settings, owner=True)
        assert shown["done"] is True and "response" not in shown and "error" not in shown


@pytest.mark.parametrize(("item", "status"), [
    ({"state": "queued"}, "PENDING"),
    ({"state": "running"}, "IN_PROGRESS"),
    ({"state": "cancelling"}, "IN_PROGRESS"),
    ({"state": "done", "error": json.dumps({"code": 1, "message": "cancelled"})}, "CANCELED"),
    ({"state": "done", "error": json.dumps({"code": 13, "message": "internal"})}, "FAILED"),
    ({"state": "done", "error": json.dumps({"message": "no code"})}, "FAILED"),
    ({"state": "done"}, "COMPLETED"),
    ({"state": "done", "error": ""}, "COMPLETED"),
    ({"kind": "batch-native", "state": "queued", "task_status": "RUNNING"}, "RUNNING"),
    ({"kind": "batch-native", "state": "done"}, "CREATED"),
])
def test_a_batch_task_status_follows_its_state(item: dict[str, Any], status: str) -> None:
    assert views.task_status(item) == status


def _batch(**fields: Any) -> dict[str, Any]:
    item = {"id": "batch-1", "kind": "batch", "state": "running", "items_total": 10, "items_done": 4,
            "items_failed": 1, "tasks_total": 10, "tasks_done": 4, "created_at": 10, "modified_at": 20,
            "created_by": "alice", "description": "nightly", "result_key": "results/batch-1.jsonl",
            "result_size": 12345}
    return {**item, **fields}


def test_a_running_batch_counts_its_requests() -> None:
    shown = views.view(_batch(), Bucket({}), SETTINGS, owner=True)
    assert shown["metadata"] == {"taskId": "batch-1", "taskStatus": "IN_PROGRESS", "completedBatches": "4",
                                 "totalBatches": "10", "failedRequests": "1"}
    assert "response" not in shown and shown["done"] is False and shown["createdBy"] == "alice"


def test_a_finished_batch_answers_its_counts_and_a_link_for_the_owner() -> None:
    bucket = Bucket({})
    done = _batch(state="done", items_done=10, items_failed=3)
    assert views.view(done, bucket, SETTINGS, owner=True)["response"] == {
        "@type": "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.BatchCompletionResponse",
        "taskId": "batch-1", "taskStatus": "COMPLETED", "succeeded": "7", "failed": "3", "sizeBytes": "12345",
        "resultUrl": "https://bucket.example/results/batch-1.jsonl?ttl=900", "urlExpiresInSeconds": "900"}
    others = views.view(done, bucket, SETTINGS, owner=False)["response"]
    assert "resultUrl" not in others and "urlExpiresInSeconds" not in others and others["succeeded"] == "7"
    for store, settings, item in ((None, SETTINGS, done), (bucket, None, done), (bucket, SETTINGS, {**done, "result_key": ""})):
        assert "resultUrl" not in views.view(item, store, settings, owner=True)["response"]
    assert bucket.presigned == [("results/batch-1.jsonl", 900)]
    bare = views.view({"id": "b-2", "kind": "batch", "state": "done"}, bucket, SETTINGS, owner=True)
    assert bare["metadata"] == {"taskId": "b-2", "taskStatus": "COMPLETED", "completedBatches": "0",
                                "totalBatches": "0", "failedRequests": "0"}
    assert bare["response"] == {"@type": views.BATCH_RESPONSE_TYPE, "taskId": "b-2", "taskStatus": "COMPLETED",
                                "succeeded": "0", "failed": "0", "sizeBytes": "0"}


def test_a_failed_or_cancelled_batch_has_its_error_and_no_response() -> None:
    error = {"code": 1, "message": "cancelled by the caller", "details": []}
    shown = views.view(_batch(state="done", error=json.dumps(error)), Bucket({}), SETTINGS, owner=True)
    assert shown["error"] == error and "response" not in shown
    assert shown["metadata"]["taskStatus"] == "CANCELED"


def test_an_upstream_batch_task_reads_as_its_own_counts_and_dataset() -> None:
    native = {"id": "op-9", "kind": "batch-native", "task_id": "task-7", "task_status": "COMPLETED", "state": "done",
              "completed_batches": 3, "total_batches": 3, "items_done": 99, "items_total": 99,
              "result_dataset_id": "ds-1", "created_by": "alice", "result_key": "k", "result_size": 5}
    shown = views.view(native, Bucket({}), SETTINGS, owner=True)
    assert shown["metadata"] == {"taskId": "task-7", "taskStatus": "COMPLETED", "completedBatches": "3",
                                 "totalBatches": "3"}
    assert shown["response"] == {"@type": views.BATCH_RESPONSE_TYPE, "taskId": "task-7", "taskStatus": "COMPLETED",
                                 "resultDatasetId": "ds-1"}
    bare = views.view({"id": "op-8", "kind": "batch-native", "state": "done"})
    assert bare["metadata"] == {"taskId": "op-8", "taskStatus": "CREATED", "completedBatches": "0",
                                "totalBatches": "0"}
    assert bare["response"]["resultDatasetId"] == ""


def test_another_doors_job_reads_as_a_batch() -> None:
    shown = views.view({**_batch(), "kind": "completion", "door": "openai"})
    assert shown["metadata"]["taskId"] == "batch-1" and shown["metadata"]["failedRequests"] == "1"


# -- who may see it --

def _invocation(caller: str, admin: str | None = None) -> Invocation:
    settings = Settings.from_env({"FM_ADMIN_CALLER": admin} if admin else {})
    return Invocation(settings, Call(deadline=0.0), caller=caller)


def test_only_the_creator_and_the_admin_caller_may_see_a_job() -> None:
    item = {"id": "op-1", "created_by": "alice"}
    assert access.may_see(item, _invocation("alice")) and access.owns(item, _invocation("alice"))
    assert not access.may_see(item, _invocation("bob")) and not access.owns(item, _invocation("bob"))
    assert access.may_see(item, _invocation("ops", admin="ops")) and not access.owns(item, _invocation("ops", "ops"))
    assert not access.may_see(item, _invocation("bob", admin="ops"))
    assert not access.may_see(None, _invocation("alice")) and not access.may_see(None, _invocation("ops", "ops"))
    anonymous = {"id": "op-2", "created_by": "anonymous"}
    assert access.may_see(anonymous, _invocation("anonymous")) and not access.may_see(anonymous, _invocation("alice"))
    nobody = {"id": "op-3"}  # an item without an owner is no caller's
    assert not access.may_see(nobody, _invocation("anonymous")) and not access.owns(nobody, _invocation("anonymous"))
    assert access.may_see(nobody, _invocation("ops", admin="ops"))


def test_someone_elses_job_is_a_404_like_an_unknown_id_and_the_attempt_is_logged(log_output: io.StringIO) -> None:
    item = {"id": "op-1", "created_by": "alice", "description": "secret plans"}
    assert access.visible(item, _invocation("alice"), "operation", "op-1") is item
    assert access.visible(item, _invocation("ops", admin="ops"), "operation", "op-1") is item
    assert log_output.getvalue() == ""
    answers = []
    for found in (item, None):
        with pytest.raises(errors.NotFoundError) as raised:
            access.visible(found, _invocation("bob"), "batch", "op-1")
        answers.append((raised.value.status, raised.value.message))
    assert answers == [(404, "batch op-1 not found")] * 2
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert len(lines) == 1  # the attempt on alice's work; an unknown id is no attempt on anyone's
    assert lines[0]["msg"] == "access to another caller's work refused" and lines[0]["level"] == "WARN"
    assert (lines[0]["caller"], lines[0]["id"], lines[0]["kind"]) == ("bob", "op-1", "batch")
    assert "alice" not in log_output.getvalue() and "secret plans" not in log_output.getvalue()
