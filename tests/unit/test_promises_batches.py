"""What a batch's submission and its chunks promise (shared/jobs/batches.py), in process: the batch is submitted
through completionBatch, its chunk run by the worker from a real trigger event, upstream is the in-process FM
emulator (see tests/unit/test_promises_worker.py for the layer).

Each request becomes one upstream completionAsync call with the batch's options under its own, in chunks of
CHUNK_ITEMS; a request upstream refuses fails alone; a request started before is never started again; a
cancelled batch starts nothing more (the hourly start quota deferring a chunk: tests/unit/test_promises_worker.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.completion import handler as completion_function
from functions.operations import handler as operations_function
from local.aws import InProcessMoto
from local.triggers import ymq_event
from shared.config import Settings
from shared.jobs import batches, worker
from shared.jobs import store as jobs
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

FM = "/foundationModels/v1"


@pytest.fixture
def env(stack_env: Emulator, aws_jobs: Aws, clock: ManualClock) -> Aws:
    return aws_jobs


def _event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return {"httpMethod": method, "url": path, "headers": {}, "body": json.dumps(body) if body is not None else None,
            "requestContext": {"authorizer": {"caller": "alice"}}}


def _store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


def _receive(aws: Aws) -> list[Any]:
    found: list[Any] = []
    while batch := aws.queues.receive(aws.resources.queues["completion"], max_messages=10):
        found += batch
    return found


def _submit(body: dict[str, Any]) -> tuple[int, Any]:
    answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", body), FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


def _run(aws: Aws, messages: list[Any] | None = None) -> dict[str, Any]:
    jobs.reset_job_store()
    return completion_function.handler(ymq_event(messages if messages is not None else _receive(aws),
                                                 aws.resources.arns["completion"]), FakeContext())


def _requests(n: int, prefix: str = "question") -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "text": f"{prefix} {i}"}]} for i in range(n)]


def test_each_request_is_one_upstream_call_with_the_batchs_options_under_its_own(
        env: Aws, stack_env: Emulator) -> None:
    status, operation = _submit({"modelUri": "yandexgpt-lite", "completionOptions": {"temperature": 0.1,
                                                                                     "maxTokens": "30"},
                                 "requests": [{"customId": "a", "messages": [{"role": "user", "text": "one"}],
                                               "completionOptions": {"temperature": 0.9}},
                                              {"messages": [{"role": "user", "text": "two"}]}]})
    assert status == 200, operation
    op_id = operation["id"]
    assert operation["metadata"]["totalBatches"] == "2" and operation["metadata"]["completedBatches"] == "0"
    assert _run(env)["outcomes"] == {"done": 1}
    calls = sorted((c["body"] for c in stack_env.calls("/completionAsync")), key=lambda b: b["messages"][0]["text"])
    assert [c["messages"] for c in calls] == [[{"role": "user", "text": "one"}], [{"role": "user", "text": "two"}]]
    assert calls[0]["completionOptions"] == {"temperature": 0.9, "maxTokens": "30"}
    assert calls[1]["completionOptions"] == {"temperature": 0.1, "maxTokens": "30"}
    assert all(c["modelUri"] == "gpt://b1gtestfolder/yandexgpt-lite/latest" for c in calls)
    records = _store().items(op_id, [0, 1])
    assert (records[0]["custom_id"], records[1]["custom_id"]) == ("a", "1")
    record = _store().item(op_id)
    assert (record["kind"], record["items_total"], record["chunk_items"], record["model"]) == (
        "batch", 2, batches.CHUNK_ITEMS, "gpt://b1gtestfolder/yandexgpt-lite/latest")


def test_requests_go_in_chunks_of_chunk_items(env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK_ITEMS", 2)
    status, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(5)})
    assert status == 200
    payloads = [json.loads(_store().get_object(jobs.payload_key(operation["id"], n))) for n in range(3)]
    assert [[item["index"] for item in p["items"]] for p in payloads] == [[0, 1], [2, 3], [4]]
    assert sorted(json.loads(m.body)["task"] for m in _receive(env)) == [0, 1, 2]


def test_a_request_upstream_refuses_fails_alone(env: Aws, stack_env: Emulator) -> None:
    _, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(3)})
    stack_env.fault(path="/foundationModels/v1/completionAsync", status=400, count=1, bodyContains="question 1",
                    message="bad request 1")
    _run(env)
    store = _store()
    records = store.items(operation["id"], [0, 1, 2])
    assert records[1]["state"] == "done" and records[1]["failed"] is True
    assert json.loads(records[1]["outcome"])["message"].endswith("bad request 1")
    assert records[0]["state"] == records[2]["state"] == "running"
    result = json.loads(store.get_object(store.item(jobs.task_id(operation["id"], 0))["result_key"]))
    assert result == {"started": 2, "refused": 1}


def test_a_chunk_given_back_midway_starts_only_the_rest_next_time(env: Aws, stack_env: Emulator) -> None:
    _, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(3)})
    messages = _receive(env)
    stack_env.fault(path="/foundationModels/v1/completionAsync", status=503, count=-1, bodyContains="question 2")
    with pytest.raises(worker.RedeliverError):
        _run(env, messages)
    stack_env.post("/_emulator/reset", {})
    assert _run(env, messages)["outcomes"] == {"done": 1}
    texts = [c["body"]["messages"][0]["text"] for c in stack_env.calls("/completionAsync")]
    assert sorted(texts) == ["question 2"] and len(_store().items(operation["id"], [0, 1, 2])) == 3


def test_a_cancelled_batch_starts_nothing_more(env: Aws, stack_env: Emulator) -> None:
    _, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(3)})
    answer = operations_function.handler(_event("POST", f"/operations/{operation['id']}:cancel"), FakeContext())
    assert answer["statusCode"] == 200
    _run(env)
    assert stack_env.calls("/completionAsync") == []


def test_an_upstream_start_without_an_operation_id_gives_the_chunk_back(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from local import emulator as emulator_module

    route = emulator_module.Handler._route

    def anonymous(self: Any, method: str, path: str, raw: bytes) -> Any:
        body = route(self, method, path, raw)
        return {**body, "id": ""} if path.endswith("/completionAsync") else body

    monkeypatch.setattr(emulator_module.Handler, "_route", anonymous)
    _, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(1)})
    with pytest.raises(worker.RedeliverError, match="upstream completionAsync answered without an operation id"):
        _run(env)
    assert _store().items(operation["id"], [0]) == {}


def test_a_native_batch_is_started_upstream_and_recorded(env: Aws, stack_env: Emulator) -> None:
    status, operation = _submit({"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1"})
    assert status == 200, operation
    (call,) = stack_env.calls("/completionBatch")
    assert call["body"]["sourceDatasetId"] == "fdsdataset1" and "requests" not in call["body"]
    assert call["body"]["modelUri"] == "gpt://b1gtestfolder/yandexgpt-lite/latest"
    record = _store().item(operation["id"])
    assert record["kind"] == "batch-native" and record["upstream_id"] and record["task_id"].startswith("cbt")
    assert operation["description"] == "Batch Completion"
