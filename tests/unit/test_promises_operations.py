"""What the async operations' HTTP side promises (shared/jobs/operations.py, and the front door every job goes
through, shared/jobs/submit.py), in process: the handlers are called with gateway events, and the job store,
bucket and queues are the in-process stand-in (local.aws.InProcessMoto; tests/unit/test_promises_store.py
says what it is and how it is shown to behave as moto server does).

A submission stores one payload per task, records a queued operation owned by its caller and sends one
message per task; a request the queue cannot take ends the operation at once; reads and cancels take only
an operation id, and answer 404 for another caller's work as for an unknown id."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from functions.completion import handler as completion_function
from functions.embedding import handler as embedding_function
from functions.operations import handler as operations_function
from local.aws import InProcessMoto
from shared.config import Settings
from shared.jobs import store as jobs
from shared.jobs import submit
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

FOLDER = "b1gopsfolder"
FM = "/foundationModels/v1"
COMPLETION = {"modelUri": "yandexgpt-lite", "completionOptions": {"temperature": 0.3},
              "messages": [{"role": "user", "text": "Tell me about the Volga"}]}


@pytest.fixture(autouse=True)
def _folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_FOLDER_ID", FOLDER)


def _event(method: str, path: str, body: Any = None, caller: str | None = "alice",
           policy: str | None = None) -> dict[str, Any]:
    authorizer = {"caller": caller} if caller else {}
    if policy:
        authorizer["policy"] = policy
    return {"httpMethod": method, "url": path, "headers": {}, "body": json.dumps(body) if body is not None else None,
            "requestContext": {"authorizer": authorizer}}


def _call(function: Any, event: dict[str, Any]) -> tuple[int, Any]:
    answer = function.handler(event, FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


def _submit(path: str, body: Any, caller: str | None = "alice", function: Any = completion_function,
            policy: str | None = None) -> tuple[int, Any]:
    return _call(function, _event("POST", f"{FM}/{path}", body, caller, policy))


def _get(op_id: str, caller: str | None = "alice") -> tuple[int, Any]:
    return _call(operations_function, _event("GET", f"/operations/{op_id}", caller=caller))


def _cancel(op_id: str, caller: str | None = "alice") -> tuple[int, Any]:
    return _call(operations_function, _event("POST", f"/operations/{op_id}:cancel", caller=caller))


def _messages(aws: Aws, kind: str) -> list[dict[str, Any]]:
    found = aws.queues.receive(aws.resources.queues[kind], max_messages=10)
    return sorted((json.loads(m.body) for m in found), key=lambda b: b.get("task", 0))


def _store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


# -- submit ------------------------------------------------------------------------------------------

def test_a_completion_is_stored_queued_and_announced_by_one_message(aws_jobs: Aws, clock: ManualClock) -> None:
    status, operation = _submit("completionAsync", COMPLETION)
    assert status == 200
    op_id = operation["id"]
    assert submit.OPERATION_ID.match(op_id) and op_id.startswith("fmo") and len(op_id) == 20
    assert operation["description"] == "Async GPT Completion" and operation["createdBy"] == "alice"
    assert (operation["done"], operation["metadata"]) == (False, {"state": "queued", "completedTasks": "0",
                                                                  "totalTasks": "1"})
    assert _messages(aws_jobs, "completion") == [{"op": op_id, "task": 0}]
    store = _store()
    payload = json.loads(store.get_object(jobs.payload_key(op_id, 0)))
    assert payload["modelUri"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert payload["messages"] == COMPLETION["messages"]
    record = store.item(op_id)
    assert (record["kind"], record["created_by"], record["tasks_total"]) == ("completion", "alice", 1)
    assert store.active_ids() == [op_id]
    assert _get(op_id) == (200, operation)


def test_a_streamed_async_completion_is_refused_naming_the_field(aws_jobs: Aws) -> None:
    status, body = _submit("completionAsync", {**COMPLETION, "completionOptions": {"stream": True}})
    assert status == 400 and body["error"]["message"] == "completionOptions.stream: is not available in async mode"
    assert _store().active_ids() == [] and _messages(aws_jobs, "completion") == []


def test_a_classification_goes_to_its_own_queue(aws_jobs: Aws) -> None:
    body = {"modelUri": "yandexgpt-lite", "taskDescription": "intent", "labels": ["alarm", "weather"],
            "text": "wake me at six", "samples": [{"text": "set an alarm", "label": "alarm"}]}
    from functions.classification import handler as classification_function

    status, operation = _submit("fewShotTextClassificationAsync", body, function=classification_function)
    assert status == 200, operation
    assert operation["description"] == "Async Few-Shot Text Classification"
    assert _messages(aws_jobs, "classification") == [{"op": operation["id"], "task": 0}]
    assert _messages(aws_jobs, "completion") == []
    payload = json.loads(_store().get_object(jobs.payload_key(operation["id"], 0)))
    assert payload["text"] == "wake me at six" and payload["labels"] == ["alarm", "weather"]


def test_embeddings_are_split_into_tasks_of_at_most_the_chunk_size_in_order(
        aws_jobs: Aws, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "2")
    texts = [f"text {n}" for n in range(5)]
    status, operation = _submit("textEmbeddingAsync", {"modelUri": "text-search-doc", "texts": texts, "dim": 256},
                                function=embedding_function)
    assert status == 200, operation
    op_id = operation["id"]
    assert operation["description"] == "Async Text Embedding" and operation["metadata"]["totalTasks"] == "3"
    assert _messages(aws_jobs, "embedding") == [{"op": op_id, "task": n} for n in range(3)]
    store = _store()
    chunks = [json.loads(store.get_object(jobs.payload_key(op_id, n))) for n in range(3)]
    uri = f"emb://{FOLDER}/text-search-doc/latest"
    assert chunks == [{"modelUri": uri, "texts": texts[0:2], "dim": 256}, {"modelUri": uri, "texts": texts[2:4], "dim": 256},
                      {"modelUri": uri, "texts": texts[4:], "dim": 256}]
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"request handled"' in x)
    assert (line["model"], line["texts"], line["operation_id"], line["tasks"]) == (uri, 5, op_id, 3)


def test_one_text_to_embed_is_one_task(aws_jobs: Aws) -> None:
    status, operation = _submit("textEmbeddingAsync", {"modelUri": "text-search-query", "text": "one"},
                                function=embedding_function)
    assert status == 200, operation
    chunk = json.loads(_store().get_object(jobs.payload_key(operation["id"], 0)))
    assert chunk["texts"] == ["one"] and chunk["modelUri"] == f"emb://{FOLDER}/text-search-query/latest"


def test_a_job_whose_queue_is_not_configured_is_refused_before_anything_is_stored(
        aws_jobs: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPLETION_QUEUE_URL")
    status, body = _submit("completionAsync", COMPLETION)
    assert status == 500 and body["error"]["message"].startswith("COMPLETION_QUEUE_URL is not set")
    assert _store().active_ids() == []
    assert _store().s3.list_objects_v2(Bucket="fm-results").get("KeyCount") == 0


def test_a_job_the_queue_refuses_ends_at_once_with_a_retryable_error(aws_jobs: Aws) -> None:
    aws_jobs.queues.call("DeleteQueue", aws_jobs.resources.queues["completion"], {})
    status, body = _submit("completionAsync", COMPLETION)
    assert status == 503, body
    store = _store()
    (op_id,) = [key.split("/")[1] for key in
                (o["Key"] for o in store.s3.list_objects_v2(Bucket="fm-results").get("Contents", []))]
    operation = store.item(op_id)
    assert operation["state"] == "done" and store.active_ids() == []
    error = json.loads(operation["error"])
    assert error["code"] == 14 and error["message"].startswith("could not enqueue the job: ") and error["details"] == []


def test_a_front_door_names_its_own_operation_fields_and_description(aws_jobs: Aws) -> None:
    from shared import runtime

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    reply = submit.submit_tasks("batch", [{"a": 1}, {"b": 2}], inv, queue_kind="completion", numbers={"items": 7},
                                op_id="fmo0000000door01", extra={"door": "openai"}, description="Batch of 7")
    record = _store().item("fmo0000000door01")
    assert (record["kind"], record["door"], record["items"], record["description"]) == ("batch", "openai", 7,
                                                                                          "Batch of 7")
    assert reply.body["id"] == "fmo0000000door01"
    assert _messages(aws_jobs, "completion") == [{"op": "fmo0000000door01", "task": 0},
                                                 {"op": "fmo0000000door01", "task": 1}]
    assert inv.log_fields["operation_id"] == "fmo0000000door01" and inv.log_fields["tasks"] == 2


def test_messages_are_sent_ten_to_a_call_or_one_by_one_when_delayed(aws_jobs: Aws) -> None:
    settings = Settings.from_env()
    submit.send_tasks(settings, "embedding", "fmo000000000many", list(range(12)), extra={"part": "x"})
    received: list[dict[str, Any]] = []
    for _ in range(4):
        received += _messages(aws_jobs, "embedding")
    assert sorted(b["task"] for b in received) == list(range(12))
    assert all(b == {"op": "fmo000000000many", "task": b["task"], "part": "x"} for b in received)
    submit.send_tasks(settings, "classification", "fmo000000000late", [0, 1], delay_s=30)
    assert _messages(aws_jobs, "classification") == []  # not before the delay
    counts = aws_jobs.queues.attributes(aws_jobs.resources.queues["classification"],
                                        ("ApproximateNumberOfMessagesDelayed",))
    assert counts["ApproximateNumberOfMessagesDelayed"] == "2"
    submit.send_bodies(settings, "completion", ['{"op": "fmo000000000body", "task": 3, "deferred": true}'])
    assert _messages(aws_jobs, "completion") == [{"op": "fmo000000000body", "task": 3, "deferred": True}]


def test_operation_ids_are_fresh_and_of_the_checked_form() -> None:
    ids = {submit.new_operation_id() for _ in range(50)}
    assert len(ids) == 50 and all(submit.OPERATION_ID.match(i) and i.startswith("fmo") and len(i) == 20 for i in ids)


# -- read ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op_id", ["SHORT", "abc", "fmo0000000UPPER0", "fmo00000000#0000", "a" * 65, "index%23active"])
def test_only_an_operation_id_is_read_or_cancelled(aws_jobs: Aws, op_id: str) -> None:
    for call in (_get, _cancel):
        status, body = call(op_id)
        assert status == 400, body
        assert body["error"]["message"] == "operationId: must be 8-64 lower-case letters and digits"


def test_an_unknown_operation_and_another_callers_are_the_same_404(aws_jobs: Aws, log_output: io.StringIO) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    unknown = _get("fmo0000000000none")
    theirs = _get(operation["id"], caller="mallory")
    assert unknown[0] == theirs[0] == 404
    assert theirs[1]["error"]["message"] == f"operation {operation['id']} not found"
    assert _cancel(operation["id"], caller="mallory")[0] == 404
    assert _store().item(operation["id"])["state"] == "queued"  # left as it was


def test_the_admin_caller_reads_anyones_but_only_the_owner_gets_a_result_link(
        aws_jobs: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ADMIN_CALLER", "root")
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "10")
    _, operation = _submit("completionAsync", COMPLETION)
    store = _store()
    store.put_object("results/big.json", json.dumps({"text": "x" * 100}).encode())
    store.finish(operation["id"], "results/big.json", 112, None)
    owner, admin = _get(operation["id"]), _get(operation["id"], caller="root")
    assert owner[0] == admin[0] == 200
    assert "url" in json.dumps(owner[1]["response"]) and "results/big.json" in json.dumps(owner[1]["response"])
    assert "results/big.json" not in json.dumps(admin[1])
    assert admin[1]["createdBy"] == "alice"
    assert _cancel(operation["id"], caller="root")[1] == admin[1]  # done: a cancel changes nothing
    cancelled = _cancel(operation["id"])  # and answers the owner with the link, as a read does
    assert "url" in json.dumps(cancelled[1]["response"]) and "results/big.json" in json.dumps(cancelled[1]["response"])


def test_a_done_operation_reads_with_its_result(aws_jobs: Aws) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    store = _store()
    store.put_object("results/small.json", b'{"alternatives": []}')
    store.finish(operation["id"], "results/small.json", 20, None)
    status, read = _get(operation["id"])
    assert status == 200 and read["done"] is True and read["response"] == {"alternatives": []}


# -- cancel ----------------------------------------------------------------------------------------------

def test_a_cancel_ends_the_operation_with_a_cancelled_error_and_leaves_the_index(
        aws_jobs: Aws, log_output: io.StringIO) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    status, cancelled = _cancel(operation["id"])
    assert status == 200
    assert cancelled["done"] is True and cancelled["error"] == {"code": 1, "message": "cancelled by the caller",
                                                                 "details": []}
    assert _get(operation["id"])[1] == cancelled
    assert _store().active_ids() == []
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"operation": "cancel"' in x)
    assert line["cancelled"] is True and line["operation_id"] == operation["id"]
    again = _cancel(operation["id"])
    assert again == (200, cancelled)  # a finished operation is returned unchanged


def test_a_done_operation_keeps_its_result_when_cancelled(aws_jobs: Aws, log_output: io.StringIO) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    store = _store()
    store.put_object("results/r.json", b'{"ok": true}')
    store.finish(operation["id"], "results/r.json", 12, None)
    status, read = _cancel(operation["id"])
    assert status == 200 and read["response"] == {"ok": True} and "error" not in read
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"operation": "cancel"' in x)
    assert "cancelled" not in line and line["operation_id"] == operation["id"]


@pytest.mark.parametrize(("kind", "extra", "stays"), [("batch", {}, True), ("completion", {"door": "openai"}, True),
                                                      ("embedding", {}, False)])
def test_a_cancelled_batch_or_door_job_stays_in_the_pollers_index(aws_jobs: Aws, kind: str, extra: dict[str, str],
                                                                   stays: bool) -> None:
    store = _store()
    store.create("fmo00000000cancl", kind, "d", "alice", [b"{}"], extra=extra)
    assert _cancel("fmo00000000cancl")[0] == 200
    assert store.item("fmo00000000cancl")["state"] == "done"
    assert store.active_ids() == (["fmo00000000cancl"] if stays else [])


def test_a_native_batch_is_cancelled_upstream_too(stack_env: Emulator, aws_jobs: Aws) -> None:
    from tests.conftest import API_KEY

    stack_env.configure(asyncDelayMs=600_000)
    started = stack_env.http.post(f"{stack_env.url}{FM}/completionAsync", timeout=10, json={
        **COMPLETION, "modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest"},
                                  headers={"Authorization": f"Api-Key {API_KEY}", "x-folder-id": FOLDER})
    assert started.status_code == 200, started.text
    upstream = started.json()["id"]
    store = _store()
    store.create("fmo00000000nativ", "batch-native", "d", "alice", [], extra={"upstream_id": upstream})
    assert _cancel("fmo00000000nativ")[0] == 200
    assert [c["path"] for c in stack_env.calls(":cancel")] == [f"/operations/{upstream}:cancel"]
    store.create("fmo00000000nati2", "batch-native", "d", "alice", [])  # not started upstream yet: nothing to cancel
    assert _cancel("fmo00000000nati2")[0] == 200
    assert len(stack_env.calls(":cancel")) == 1


def test_a_limited_keys_job_holds_a_reservation_that_a_cancel_gives_back(aws_jobs: Aws) -> None:
    policy = json.dumps({"name": "alice", "monthly_tokens": 100000})
    status, operation = _submit("completionAsync", {**COMPLETION, "completionOptions": {"maxTokens": "50"}},
                                policy=policy)
    assert status == 200, operation
    store = _store()
    held = json.loads(store.item(operation["id"])["limits"])
    assert (held["caller"], held["kind"], list(held["parts"])) == ("alice", "completion", ["t0"])
    (month,) = [key for key in _keys(store) if key.startswith("limits#alice#")]
    assert store.item(month)["used_t"] == held["parts"]["t0"][0] > 0  # the worst case, reserved
    store.create("fmo00000000batch", "batch", "d", "alice", [], extra={"limits": store.item(operation["id"])["limits"]})
    assert _cancel("fmo00000000batch")[0] == 200
    assert store.item(month)["used_t"] == held["parts"]["t0"][0]  # a batch's is settled by its poller, not here
    assert _cancel(operation["id"])[0] == 200
    assert store.item(month)["used_t"] == 0  # given back: the job never ran


def test_an_unlimited_keys_job_holds_no_reservation(aws_jobs: Aws) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    assert "limits" not in _store().item(operation["id"])


def _keys(store: jobs.JobStore) -> list[str]:
    return [item["id"]["S"] for item in store.db.scan(TableName="jobs", ConsistentRead=True)["Items"]]


def test_a_read_is_logged_with_its_operation_id(aws_jobs: Aws, log_output: io.StringIO) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    assert _get(operation["id"])[0] == 200
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"operation": "get"' in x)
    assert line["operation_id"] == operation["id"] and line["status"] == 200


def test_a_refused_url_is_answered_by_the_function_with_the_requests_ids(aws_jobs: Aws) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    answer = operations_function.handler(_event("POST", f"/operations/{operation['id']}"), FakeContext())
    assert answer["statusCode"] == 405 and answer["headers"]["x-request-id"] == "req-test"
    answer = operations_function.handler(_event("POST", f"/operations/{operation['id']}:delete"), FakeContext())
    assert answer["statusCode"] == 404 and "delete" in json.loads(answer["body"])["error"]["message"]
    assert _store().item(operation["id"])["state"] == "queued"


def test_a_keys_model_allow_list_holds_for_async_submissions(aws_jobs: Aws) -> None:
    policy = json.dumps({"name": "alice", "models": ["text-search-query"]})
    status, body = _submit("textEmbeddingAsync", {"modelUri": "text-search-doc", "text": "one"},
                           function=embedding_function, policy=policy)
    assert status == 403 and body["error"]["message"].startswith("modelUri: "), body
    assert _store().active_ids() == [] and _messages(aws_jobs, "embedding") == []
    status, operation = _submit("textEmbeddingAsync", {"modelUri": "text-search-query", "text": "one"},
                                function=embedding_function, policy=policy)
    assert status == 200, operation


def test_a_fresh_instance_reads_and_cancels_with_its_own_store(aws_jobs: Aws, log_output: io.StringIO) -> None:
    _, operation = _submit("completionAsync", COMPLETION)
    jobs.reset_job_store()  # the operations function's instance has not used the store yet
    assert _get(operation["id"]) == (200, operation)
    jobs.reset_job_store()
    status, cancelled = _cancel(operation["id"])
    assert status == 200 and cancelled["done"] is True
    jobs.reset_job_store()
    status, body = _cancel("fmo0000000000none")
    assert status == 404 and body["error"]["message"] == "operation fmo0000000000none not found"
    _, other = _submit("completionAsync", COMPLETION)
    status, body = _cancel(other["id"], caller="mallory")
    assert status == 404 and body["error"]["message"] == f"operation {other['id']} not found"
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if "another caller's work" in x)
    assert (line["caller"], line["id"], line["kind"]) == ("mallory", other["id"], "operation")


def test_a_direct_invocation_without_an_operation_id_is_refused_naming_it(aws_jobs: Aws) -> None:
    for operation in ("get", "cancel"):
        event = {"httpMethod": "GET", "url": "", "queryStringParameters": {"operation": operation}, "headers": {},
                 "body": "", "requestContext": {"authorizer": {"caller": "alice"}}}
        status, body = _call(operations_function, event)
        assert status == 400 and body["error"]["message"] == "operationId: must be 8-64 lower-case letters and digits"
