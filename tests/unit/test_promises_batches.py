"""What a batch's submission and its chunks promise (shared/jobs/batches.py), in process: the batch is submitted
through completionBatch, its chunk run by the worker from a real trigger event, upstream is the in-process FM
emulator (see tests/unit/test_promises_worker.py for the layer).

Each request becomes one upstream completionAsync call with the batch's options under its own, in chunks of
CHUNK_ITEMS, each started request recorded with its own upstream operation; a request upstream refuses (a 4xx
other than 429) fails alone, any other failure gives the chunk back; a request started before is never started
again; a cancelled batch starts nothing more (seen within ten starts); starts keep to the per-second and hourly
quotas. A native batch (sourceDatasetId) is one upstream completionBatch, its task and progress recorded. A chunk
the queue gave up on fails only its requests without a record, named from its payload (or by position)."""

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
from tests.conftest import Aws, Emulator, FakeContext, counting

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


# -- what the submission sends upstream and records --------------------------------------------------

def _started_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    return sorted((c["body"] for c in emulator.calls("/completionAsync")), key=lambda b: b["messages"][0]["text"])


def test_the_batchs_json_answer_format_reaches_every_request_and_no_options_means_none_sent(
        env: Aws, stack_env: Emulator) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    _submit({"modelUri": "yandexgpt-lite", "jsonSchema": {"schema": schema}, "requests": _requests(2)})
    _run(env)
    bodies = _started_bodies(stack_env)
    assert [b["jsonSchema"] for b in bodies] == [{"schema": schema}] * 2
    assert all("jsonObject" not in b and "completionOptions" not in b for b in bodies)
    stack_env.post("/_emulator/reset", {})
    _submit({"modelUri": "yandexgpt-lite", "jsonObject": True, "requests": _requests(1)})
    _run(env)
    (body,) = _started_bodies(stack_env)
    assert body["jsonObject"] is True and "jsonSchema" not in body and "completionOptions" not in body
    assert set(body) == {"modelUri", "messages", "jsonObject"}


def test_a_requests_own_options_alone_are_sent_when_the_batch_has_none(env: Aws, stack_env: Emulator) -> None:
    _submit({"modelUri": "yandexgpt-lite", "requests": [
        {"messages": [{"role": "user", "text": "one"}], "completionOptions": {"maxTokens": "7"}},
        {"messages": [{"role": "user", "text": "two"}]}]})
    _run(env)
    one, two = _started_bodies(stack_env)
    assert one["completionOptions"] == {"maxTokens": "7"} and "completionOptions" not in two


def test_the_batch_record_counts_its_requests_and_the_log_names_model_and_requests(
        env: Aws, monkeypatch: pytest.MonkeyPatch, log_output: Any) -> None:
    monkeypatch.setattr(batches, "CHUNK_ITEMS", 2)
    status, operation = _submit({"modelUri": "yandexgpt-lite", "requests": _requests(5)})
    assert status == 200, operation
    record = _store().item(operation["id"])
    assert (record["kind"], record["tasks_total"], record["items_total"], record["items_done"],
            record["items_failed"], record["chunk_items"]) == ("batch", 3, 5, 0, 0, 2)
    assert record["description"] == "Batch Completion" and record["created_by"] == "alice"
    payloads = [json.loads(_store().get_object(jobs.payload_key(operation["id"], n))) for n in range(3)]
    assert [item["customId"] for p in payloads for item in p["items"]] == ["0", "1", "2", "3", "4"]
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"request handled"' in x)
    assert (line["model"], line["requests"], line["operation_id"]) == (
        "gpt://b1gtestfolder/yandexgpt-lite/latest", 5, operation["id"])


def test_each_started_request_records_its_own_upstream_operation(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from local import emulator as emulator_module

    route, answered = emulator_module.Handler._route, {}

    def recording(self: Any, method: str, path: str, raw: bytes) -> Any:
        body = route(self, method, path, raw)
        if path.endswith("/completionAsync"):
            answered[json.loads(raw)["messages"][0]["text"]] = body["id"]
        return body

    monkeypatch.setattr(emulator_module.Handler, "_route", recording)
    _, operation = _submit({"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"c{i}", "messages": [{"role": "user", "text": f"question {i}"}]} for i in range(3)]})
    assert _run(env)["outcomes"] == {"done": 1}
    records = _store().items(operation["id"], [0, 1, 2])
    assert [(records[i]["state"], records[i]["custom_id"], records[i]["upstream_id"]) for i in range(3)] == [
        ("running", f"c{i}", answered[f"question {i}"]) for i in range(3)]


# -- a native batch ------------------------------------------------------------------------------------

def _answering_completion_batch(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """The emulator's completionBatch answer, changed by `change` (what upstream might answer instead)."""
    from local import emulator as emulator_module

    route = emulator_module.Handler._route

    def changed(self: Any, method: str, path: str, raw: bytes) -> Any:
        body = route(self, method, path, raw)
        return change(body) if path.endswith("/completionBatch") else body

    monkeypatch.setattr(emulator_module.Handler, "_route", changed)


def test_a_native_batch_records_upstreams_task_and_progress_and_sends_the_callers_options(
        env: Aws, stack_env: Emulator, log_output: Any) -> None:
    stack_env.configure(asyncDelayMs=600_000)  # still pending upstream
    status, operation = _submit({"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1",
                                 "completionOptions": {"temperature": 0.2}, "jsonObject": True})
    assert status == 200, operation
    (call,) = stack_env.calls("/completionBatch")
    assert call["body"] == {"modelUri": "gpt://b1gtestfolder/yandexgpt-lite/latest", "sourceDatasetId": "fdsdataset1",
                            "completionOptions": {"temperature": 0.2}, "jsonObject": True}
    record = _store().item(operation["id"])
    upstream = stack_env.http.get(f"{stack_env.url}/operations/{record['upstream_id']}", timeout=5, headers={
        "Authorization": "Api-Key x"}).json()
    assert (record["task_id"], record["task_status"], record["completed_batches"], record["total_batches"]) == (
        upstream["metadata"]["taskId"], "PENDING", 0, 10)
    assert (record["state"], record["created_by"], record["description"]) == ("queued", "alice", "Batch Completion")
    assert operation["id"] != record["upstream_id"] and _store().active_ids() == [operation["id"]]
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if '"request handled"' in x)
    assert (line["model"], line["operation_id"], line["upstream_operation_id"]) == (
        "gpt://b1gtestfolder/yandexgpt-lite/latest", operation["id"], record["upstream_id"])


def test_a_native_batch_whose_answer_lacks_progress_is_recorded_as_created_with_none_done(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    _answering_completion_batch(monkeypatch, lambda body: {**body, "metadata": None})
    status, operation = _submit({"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1"})
    assert status == 200, operation
    record = _store().item(operation["id"])
    assert (record["task_id"], record["task_status"], record["completed_batches"], record["total_batches"]) == (
        "", "CREATED", 0, 0)
    _answering_completion_batch(monkeypatch, lambda body: {**body, "metadata": {"taskId": "cbt1", "totalBatches": "4",
                                                                                "completedBatches": "3"}})
    _, operation = _submit({"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset2"})
    record = _store().item(operation["id"])
    assert (record["task_id"], record["task_status"], record["completed_batches"], record["total_batches"]) == (
        "cbt1", "CREATED", 3, 4)


@pytest.mark.parametrize("answer", [{"id": ""}, {"done": False}, ["not", "an", "object"]])
def test_a_native_batch_upstream_started_without_an_operation_id_is_a_bad_gateway_and_nothing_is_stored(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    from local import emulator as emulator_module

    route = emulator_module.Handler._route
    monkeypatch.setattr(emulator_module.Handler, "_route", lambda self, method, path, raw: (
        answer if path.endswith("/completionBatch") else route(self, method, path, raw)))
    status, body = _submit({"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1"})
    assert status == 502, body
    assert body["error"]["message"] == "upstream completionBatch answered without an operation id"
    assert _store().active_ids() == []


# -- the hourly start quota ------------------------------------------------------------------------------

@pytest.fixture
def hour_clock(clock: ManualClock) -> ManualClock:
    """The manual clock, its monotonic time starting at 0 so that an hour later is exactly 3600.0."""
    clock.advance(-clock.monotonic())
    assert clock.monotonic() == 0.0
    return clock


def test_the_hourly_window_lets_limit_starts_through_in_any_hour_and_frees_each_an_hour_after_it(
        hour_clock: ManualClock) -> None:
    window = batches.HourlyWindow(2)
    assert [window.take(), window.take(), window.take()] == [True, True, False]
    hour_clock.advance(1800)
    assert window.take() is False
    hour_clock.advance(1799.5)  # 3599.5 s after the first two
    assert window.take() is False
    hour_clock.advance(0.5)  # exactly an hour after them: both slots are free again
    assert [window.take(), window.take(), window.take()] == [True, True, False]
    hour_clock.advance(3599.5)
    assert window.take() is False
    hour_clock.advance(0.5)
    assert window.take() is True


def test_the_hourly_window_frees_the_oldest_start_first(hour_clock: ManualClock) -> None:
    window = batches.HourlyWindow(2)
    assert window.take() is True
    hour_clock.advance(1800)
    assert (window.take(), window.take()) == (True, False)
    hour_clock.advance(1800)  # the first start is an hour old, the second half an hour
    assert (window.take(), window.take()) == (True, False)
    hour_clock.advance(1800)  # now the second is an hour old
    assert (window.take(), window.take()) == (True, False)


def test_a_refused_start_takes_no_slot(hour_clock: ManualClock) -> None:
    window = batches.HourlyWindow(1)
    assert window.take() is True
    for _ in range(5):
        hour_clock.advance(600)
        assert window.take() is False  # refused: counts nothing
    hour_clock.advance(600)
    assert window.take() is True  # an hour after the only start taken


def test_the_instance_shares_one_hourly_window_per_limit_until_reset() -> None:
    first = batches.hourly(2)
    assert (first.take(), first.take()) == (True, True)
    assert batches.hourly(2) is first and batches.hourly(2).take() is False  # a later invocation: the same quota
    assert batches.hourly(3).take() is True and batches.hourly(3).limit == 3  # another setting, its own
    batches.reset_windows()
    assert batches.hourly(2) is not first and batches.hourly(2).take() is True


# -- a chunk the queue gave up on (fail_chunk, called as the worker's dead-letter side calls it) ------------

OP = "fmo0000000deadch"
REASON = {"code": 14, "message": "not started: gave up on its chunk", "details": []}


def _writes(seen: list[str]) -> int:
    """The Document API's item writes among what reached the store."""
    return sum(call in ("PutItem", "UpdateItem", "TransactWriteItems") for call in seen)


def _chunk(store: jobs.JobStore, number: int, indexes: list[int]) -> None:
    items = [{"index": i, "customId": f"id-{i}", "body": {}} for i in indexes]
    store.put_object(jobs.payload_key(OP, number), json.dumps({"items": items}).encode())


def _outcomes(store: jobs.JobStore, indexes: range) -> dict[int, tuple[Any, ...]]:
    return {i: (r["state"], r["custom_id"], r.get("failed"), json.loads(r["outcome"]) if "outcome" in r else None)
            for i, r in store.items(OP, list(indexes)).items()}


def test_a_dead_chunk_fails_its_requests_without_a_record_once_with_their_own_ids(aws: Aws, clock: ManualClock) -> None:
    store = _store()
    _chunk(store, 1, [3, 4, 5, 6])
    store.item_started(OP, 4, "upstream4", "id-4")
    store.item_finished(OP, 5, "id-5", {"code": 3, "message": "refused", "details": []}, True, from_state=None)
    operation = {"items_total": 9, "chunk_items": 3}  # the payload, not these numbers, names the requests
    seen = counting(aws)
    assert batches.fail_chunk(OP, 1, operation, REASON, store) == 2
    assert _writes(seen) == 2  # one record for each request without one; the others are not written to at all
    assert _outcomes(store, range(10)) == {
        3: ("done", "id-3", True, REASON), 4: ("running", "id-4", None, None),
        5: ("done", "id-5", True, {"code": 3, "message": "refused", "details": []}), 6: ("done", "id-6", True, REASON)}
    assert all(r["expires_at"] > clock.now() for r in store.items(OP, [3, 6]).values())
    assert batches.fail_chunk(OP, 1, operation, {**REASON, "message": "again"}, store) == 0  # a redelivered dead letter
    assert _writes(seen) == 2  # wrote nothing
    assert _outcomes(store, range(10))[3] == ("done", "id-3", True, REASON)


@pytest.mark.parametrize("payload", [b"not json", b'{"no": "items"}', b'{"items": [1, 2]}', b'{"items": [{}]}', None])
def test_a_dead_chunk_whose_payload_is_unreadable_names_its_requests_by_position(
        aws: Aws, log_output: Any, payload: bytes | None) -> None:
    """Unreadable, or gone from the bucket (None: a record that outlived its object)."""
    store = _store()
    if payload is not None:
        store.put_object(jobs.payload_key(OP, 1), payload)
    store.item_started(OP, 2, "upstream2", "id-2")
    assert batches.fail_chunk(OP, 1, {"items_total": 5, "chunk_items": 2}, REASON, store) == 1
    assert _outcomes(store, range(6)) == {2: ("running", "id-2", None, None), 3: ("done", "3", True, REASON)}
    line = next(json.loads(x) for x in log_output.getvalue().splitlines() if "payload is unreadable" in x)
    assert line["msg"] == "a dead chunk's payload is unreadable or gone; its requests are named by index"
    assert (line["level"], line["operation_id"], line["task"]) == ("ERROR", OP, 1)
    if payload is not None:
        store.put_object(jobs.payload_key(OP, 2), payload)  # the last chunk holds only what is left
    assert batches.fail_chunk(OP, 2, {"items_total": 5, "chunk_items": 2}, REASON, store) == 1
    assert set(_outcomes(store, range(6))) == {2, 3, 4}


def test_a_dead_chunk_whose_payload_the_store_cannot_read_now_is_tried_again(aws: Aws,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that does not answer is no lost payload: nothing is recorded, and the dead letter comes back."""
    store = _store()
    _chunk(store, 1, [2, 3])

    def unavailable(key: str) -> bytes:
        raise jobs.StoreError("results bucket: EndpointConnectionError")

    monkeypatch.setattr(store, "get_object", unavailable)
    with pytest.raises(jobs.StoreError):
        batches.fail_chunk(OP, 1, {"items_total": 5, "chunk_items": 2}, REASON, store)
    assert _outcomes(store, range(6)) == {}


def test_an_unreadable_dead_chunk_of_a_record_without_its_sizes_uses_the_default_chunk(aws: Aws) -> None:
    store = _store()
    store.put_object(jobs.payload_key(OP, 1), b"")
    assert batches.fail_chunk(OP, 1, {"items_total": 250}, REASON, store) == batches.CHUNK_ITEMS == 100
    assert sorted(store.items(OP, list(range(99, 201)))) == list(range(100, 200))
    store.put_object(jobs.payload_key(OP, 2), b"")
    assert batches.fail_chunk(OP, 2, {"items_total": 250}, REASON, store) == 50
    store.put_object(jobs.payload_key(OP, 0), b"")
    assert batches.fail_chunk(OP, 0, {}, REASON, store) == 0  # no count of requests: none to name


# -- starting a chunk's requests ---------------------------------------------------------------------------

def _batch_of(n: int, prefix: str = "question") -> str:
    status, operation = _submit({"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"c{i}", "messages": [{"role": "user", "text": f"{prefix} {i}"}]} for i in range(n)]})
    assert status == 200, operation
    return str(operation["id"])


def _chunk_result(op_id: str, number: int = 0) -> dict[str, Any]:
    store = _store()
    return dict(json.loads(store.get_object(store.item(jobs.task_id(op_id, number))["result_key"])))


def test_a_batch_cancelled_while_its_chunk_starts_is_seen_within_ten_starts(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.client import FoundationModelsClient

    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")  # one start after another: the count is exact
    op_id = _batch_of(25)
    start, calls = FoundationModelsClient.completion_async, []

    def start_then_cancel_on_the_third(self: Any, body: dict[str, Any], call: Any) -> Any:
        calls.append(body)
        if len(calls) == 3:  # the caller cancels meanwhile
            assert operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"),
                                               FakeContext())["statusCode"] == 200
        return start(self, body, call)

    monkeypatch.setattr(FoundationModelsClient, "completion_async", start_then_cancel_on_the_third)
    assert _run(env)["outcomes"] == {"done": 1}
    assert len(calls) == 10  # looked again before the 11th start, saw it done, started nothing more
    assert sorted(_store().items(op_id, list(range(25)))) == list(range(10))
    store = _store()  # the batch was done before the chunk was: its result is stored, though not counted on it
    (key,) = [o["Key"] for o in store.s3.list_objects_v2(Bucket="fm-results", Prefix=f"results/{op_id}/task-0.")[
        "Contents"]]
    assert json.loads(store.get_object(key)) == {"started": 10, "refused": 0, "stopped": True}


def test_starts_are_paced_to_the_per_second_start_quota(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")
    monkeypatch.setenv("FM_ASYNC_START_RPS", "4")
    op_id = _batch_of(3)
    clock.sleeps.clear()
    assert _run(env)["outcomes"] == {"done": 1}
    assert clock.sleeps == [pytest.approx(0.25), pytest.approx(0.25)]
    assert _chunk_result(op_id) == {"started": 3, "refused": 0}


def test_a_chunk_past_the_hourly_quota_is_deferred_and_starts_the_rest_an_hour_later(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")
    monkeypatch.setenv("FM_ASYNC_START_PER_HOUR", "2")
    op_id = _batch_of(3)
    messages = _receive(env)
    assert _run(env, messages)["outcomes"] == {"deferred": 1}
    task = _store().item(jobs.task_id(op_id, 0))
    assert task["last_error"] == "QuotaDeferred: hourly start quota (2) reached"
    assert sorted(_store().items(op_id, [0, 1, 2])) == [0, 1]
    clock.advance(3600)
    assert _run(env, messages)["outcomes"] == {"done": 1}
    assert sorted(r["custom_id"] for r in _store().items(op_id, [0, 1, 2]).values()) == ["c0", "c1", "c2"]
    assert len(stack_env.calls("/completionAsync")) == 3
    assert _chunk_result(op_id) == {"started": 1, "refused": 0}


def test_a_chunk_whose_requests_all_started_before_starts_nothing(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch_of(2)
    store = _store()
    for index in (0, 1):
        store.item_started(op_id, index, f"earlier{index}", f"c{index}")
    assert _run(env)["outcomes"] == {"done": 1}
    assert stack_env.calls("/completionAsync") == []
    assert _chunk_result(op_id) == {"started": 0, "refused": 0}
    assert store.items(op_id, [0, 1])[0]["upstream_id"] == "earlier0"


@pytest.mark.parametrize(("status", "refused"), [(400, True), (404, True), (429, False), (500, False),
                                                 (503, False)])
def test_only_a_4xx_other_than_429_refuses_the_request_alone_else_the_chunk_is_given_back(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, status: int, refused: bool) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")
    op_id = _batch_of(3)
    stack_env.fault(path="/foundationModels/v1/completionAsync", status=status, count=-1, bodyContains="question 1",
                    message="not this one")
    if refused:
        assert _run(env)["outcomes"] == {"done": 1}
        records = _store().items(op_id, [0, 1, 2])
        assert (records[1]["state"], records[1]["custom_id"], records[1]["failed"]) == ("done", "c1", True)
        assert json.loads(records[1]["outcome"])["message"].endswith("not this one")
        assert records[0]["state"] == records[2]["state"] == "running"
        assert _chunk_result(op_id) == {"started": 2, "refused": 1}
    else:
        with pytest.raises(worker.RedeliverError):
            _run(env)
        assert sorted(_store().items(op_id, [0, 1, 2])) == [0]  # nothing after the error starts
        assert _store().item(jobs.task_id(op_id, 0))["state"] == "queued"


@pytest.mark.parametrize("answer", [["a", "list"], {"done": False}])
def test_an_upstream_start_answered_without_an_object_id_gives_the_chunk_back(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, answer: Any) -> None:
    from local import emulator as emulator_module

    route = emulator_module.Handler._route
    monkeypatch.setattr(emulator_module.Handler, "_route", lambda self, method, path, raw: (
        answer if path.endswith("/completionAsync") else route(self, method, path, raw)))
    op_id = _batch_of(1)
    with pytest.raises(worker.RedeliverError, match="upstream completionAsync answered without an operation id"):
        _run(env)
    assert _store().items(op_id, [0]) == {}
    assert _store().item(jobs.task_id(op_id, 0))["last_error"] == (
        "UNKNOWN: upstream completionAsync answered without an operation id")


def test_a_start_that_fails_on_our_side_with_a_500_gives_the_chunk_back_and_refuses_no_request(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_caches

    op_id = _batch_of(2)
    monkeypatch.delenv("YC_API_KEY")  # the instance has no credentials (and the metadata address answers nothing)
    reset_caches()
    with pytest.raises(worker.RedeliverError, match="no credentials found"):
        _run(env)
    assert _store().items(op_id, [0, 1]) == {} and stack_env.calls("/completionAsync") == []
    assert _store().item(jobs.task_id(op_id, 0))["last_error"].startswith("UNAUTHENTICATED: no credentials found")


def test_a_keys_model_allow_list_holds_for_batches(env: Aws, stack_env: Emulator) -> None:
    policy = json.dumps({"name": "alice", "models": ["yandexgpt"]})
    for body in ({"modelUri": "yandexgpt-lite", "requests": _requests(1)},
                 {"modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1"}):
        event = _event("POST", f"{FM}/completionBatch", body)
        event["requestContext"]["authorizer"]["policy"] = policy
        answer = completion_function.handler(event, FakeContext())
        assert answer["statusCode"] == 403, answer
        assert json.loads(answer["body"])["error"]["message"].startswith("modelUri: ")
    assert _store().active_ids() == [] and stack_env.calls("/completionBatch") == []
    event = _event("POST", f"{FM}/completionBatch", {"modelUri": "yandexgpt", "requests": _requests(1)})
    event["requestContext"]["authorizer"]["policy"] = policy
    assert completion_function.handler(event, FakeContext())["statusCode"] == 200
