"""What the batch poller promises (shared/jobs/poller.py), in process: batches are submitted through their front
door and their chunks run by the worker (as in tests/unit/test_promises_worker.py), upstream is the in-process FM
emulator, and the poller is the batch_poller function invoked with a real timer event (local/triggers.py).

Each due request is polled upstream, recorded once and finished with the batch as one JSON Lines object in input
order; a request not done yet is polled again later, on a growing interval; a cancelled batch's upstream work is
cancelled; a job whose tasks sat queued or whose worker died is sent again; a job past its deadline ends."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from functions.batch_poller import handler as poller_function
from functions.completion import handler as completion_function
from functions.operations import handler as operations_function
from local.aws import InProcessMoto
from local.triggers import timer_event, ymq_event
from shared.config import Settings
from shared.jobs import store as jobs
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext, configure

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

FM = "/foundationModels/v1"


@pytest.fixture
def env(aws_fast: Aws) -> Aws:
    """The emulator (its async operations done at once), the in-process store and queues, the manual clock."""
    return aws_fast


def _event(method: str, path: str, body: Any = None, caller: str = "alice") -> dict[str, Any]:
    return {"httpMethod": method, "url": path, "headers": {}, "body": json.dumps(body) if body is not None else None,
            "requestContext": {"authorizer": {"caller": caller}}}


def _get(op_id: str) -> dict[str, Any]:
    answer = operations_function.handler(_event("GET", f"/operations/{op_id}"), FakeContext())
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


def _store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


def _receive(aws: Aws, queue: str = "completion") -> list[Any]:
    found: list[Any] = []
    while batch := aws.queues.receive(aws.resources.queues[queue], max_messages=10):
        found += batch
    return found


def _batch(aws: Aws, texts: list[str], run: bool = True) -> str:
    body = {"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"r{i}", "messages": [{"role": "user", "text": text}]} for i, text in enumerate(texts)]}
    answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", body), FakeContext())
    assert answer["statusCode"] == 200, answer
    op_id = json.loads(answer["body"])["id"]
    if run:
        messages = _receive(aws)
        completion_function.handler(ymq_event(messages, aws.resources.arns["completion"]), FakeContext())
    return op_id


def _poll(remaining_ms: int = 60_000) -> dict[str, Any]:
    return poller_function.handler(timer_event(), FakeContext(remaining_ms=remaining_ms))


def _polls(emulator: Emulator) -> list[dict[str, Any]]:
    return [c for c in emulator.calls() if c["path"].startswith("/operations/")]


def _lines(output: io.StringIO, message: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in output.getvalue().splitlines() if f'"{message}"' in x]


def test_a_batch_whose_requests_are_done_upstream_is_finished_with_one_line_each_in_input_order(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _batch(env, ["one", "EMULATOR_FAIL two", "three"])
    assert _poll() == {"items-finished": 3, "batches-finished": 1}
    assert len(_polls(stack_env)) == 3
    store = _store()
    record = store.item(op_id)
    assert record["state"] == "done" and op_id not in store.active_ids()
    data = store.get_object(record["result_key"])
    assert record["result_key"] == f"results/{op_id}/results.jsonl" and record["result_size"] == len(data)
    assert data.endswith(b"\n")
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert [x["customId"] for x in lines] == ["r0", "r1", "r2"]
    assert lines[1] == {"customId": "r1", "error": {"code": 3, "message": "emulated failure of this request",
                                                    "details": []}}
    assert lines[0]["response"]["alternatives"][0]["message"]["role"] == "assistant" and "error" not in lines[0]
    assert (record["items_done"], record["items_failed"]) == (3, 1)
    read = _get(op_id)
    assert read["done"] is True and read["response"]["succeeded"] == "2" and read["response"]["failed"] == "1"
    line = _lines(log_output, "batch finished")[-1]
    assert (line["operation_id"], line["requests"], line["failed"], line["result_bytes"]) == (op_id, 3, 1, len(data))
    summary = [x for x in _lines(log_output, "request handled") if x.get("operation") == "tick"][-1]
    assert summary["poller"] == {"items-finished": 3, "batches-finished": 1}
    assert _poll() == {}  # nothing left to do


def test_a_request_not_done_upstream_is_polled_again_later_on_a_growing_interval(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one"])
    assert _poll() == {"items-pending": 1}
    store = _store()
    item = store.item(jobs.item_id(op_id, 0))
    assert item["polls"] == 1 and float(item["next_poll_at"]) == pytest.approx(clock.now() + 1.5, abs=0.01)
    assert _poll() == {}  # not due yet: upstream is not asked
    assert len(_polls(stack_env)) == 1
    clock.advance(1.6)
    assert _poll() == {"items-pending": 1}
    item = store.item(jobs.item_id(op_id, 0))
    assert item["polls"] == 2 and float(item["next_poll_at"]) == pytest.approx(clock.now() + 2.25, abs=0.01)
    store.set_fields(jobs.item_id(op_id, 0), {"polls": 20})
    clock.advance(3)
    _poll()
    assert float(store.item(jobs.item_id(op_id, 0))["next_poll_at"]) == pytest.approx(clock.now() + 30, abs=0.01)
    progress = _get(op_id)["metadata"]
    assert (progress["completedBatches"], progress["totalBatches"]) == ("0", "1")


def test_a_request_upstream_no_longer_knows_is_settled_as_lost_and_a_5xx_is_tried_again(
        env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one", "two"])
    stack_env.post("/_emulator/reset", {})  # upstream forgets its operations
    stack_env.configure(asyncDelayMs=0)
    stack_env.fault(path="/operations/", status=503, count=-1)
    assert _poll() == {"poll-errors": 2}
    assert _store().items(op_id, [0, 1])[0]["state"] != "done"
    stack_env.post("/_emulator/reset", {})
    assert _poll() == {"items-lost": 2, "batches-finished": 1}
    lines = [json.loads(x) for x in _store().get_object(_store().item(op_id)["result_key"]).decode().splitlines()]
    assert [x["error"]["code"] for x in lines] == [5, 5] and "not found" in lines[0]["error"]["message"]


def test_a_cancelled_batch_has_its_upstream_work_cancelled_and_leaves_the_index(
        env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    answer = operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"), FakeContext())
    assert answer["statusCode"] == 200
    store = _store()
    assert op_id in store.active_ids()
    assert _poll() == {"items-finished": 2}
    assert len(stack_env.calls(":cancel")) == 2 and op_id not in store.active_ids()
    records = store.items(op_id, [0, 1])
    assert all(r["failed"] and json.loads(r["outcome"])["code"] == 1 for r in records.values())


def test_a_batch_leased_by_another_poller_is_left_to_it(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one"])
    assert _store().lease(op_id, "poll", "other-poller", 60)
    assert _poll() == {"leased-elsewhere": 1}
    assert _polls(stack_env) == []


def test_the_poller_stops_a_second_before_its_deadline(env: Aws, stack_env: Emulator) -> None:
    _batch(env, ["one"])
    assert _poll(remaining_ms=1_400) == {"deadline": 1}  # 0.9 s left
    assert _polls(stack_env) == []
    assert _poll(remaining_ms=1_500) == {"items-finished": 1, "batches-finished": 1}  # exactly 1 s left: enough


def test_an_index_entry_without_its_operation_is_dropped(env: Aws) -> None:
    store = _store()
    store.activate("fmo0000000000gone")
    assert "fmo0000000000gone" in store.active_ids()
    assert _poll() == {}
    assert store.active_ids() == []


def test_a_job_whose_task_sat_queued_is_sent_again_once_per_threshold(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    answer = completion_function.handler(_event("POST", f"{FM}/completionAsync", {
        "modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "hi"}]}), FakeContext())
    op_id = json.loads(answer["body"])["id"]
    _receive(env)  # its message is lost
    assert _poll() == {}
    clock.advance(301)
    assert _poll() == {"requeued-tasks": 1}
    assert [json.loads(m.body) for m in _receive(env)] == [{"op": op_id, "task": 0}]
    assert _lines(log_output, "re-enqueued stuck tasks")[-1]["tasks"] == [0]
    assert _poll() == {}  # not again before another threshold
    clock.advance(301)
    store = _store()
    store.claim(op_id, 0, "live-worker", 600)
    assert _poll() == {}  # a live worker holds it
    clock.advance(601)
    assert _poll() == {"requeued-tasks": 1}  # that worker died


def test_a_job_past_its_deadline_ends_as_expired(env: Aws, clock: ManualClock, log_output: io.StringIO) -> None:
    store = _store()
    store.create("fmo000000000late", "completion", "d", "alice", [b"{}"], numbers={"deadline_at": clock.now() + 10})
    assert _poll() == {}
    clock.advance(11)
    assert _poll() == {"expired": 1}
    error = json.loads(store.item("fmo000000000late")["error"])
    assert error == {"code": 4, "message": "the job did not finish within its completion window", "details": []}
    assert store.active_ids() == []


def test_a_native_batch_follows_its_upstream_operation(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", {
        "modelUri": "yandexgpt-lite", "sourceDatasetId": "fdsdataset1"}), FakeContext())
    assert answer["statusCode"] == 200, answer
    op_id = json.loads(answer["body"])["id"]
    assert _poll() == {"native-pending": 1}
    record = _store().item(op_id)
    assert record["state"] == "running" and record["task_status"] == "PENDING" and record["total_batches"] == 10
    assert record["task_id"].startswith("cbt")


def test_a_native_batch_ends_with_its_upstream_operation(env: Aws, stack_env: Emulator) -> None:
    ids = []
    for dataset in ("fdsdataset1", "fdsEMULATOR_FAIL"):
        answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", {
            "modelUri": "yandexgpt-lite", "sourceDatasetId": dataset}), FakeContext())
        ids.append(json.loads(answer["body"])["id"])
    assert _poll() == {"native-finished": 2}
    store = _store()
    good, bad = store.item(ids[0]), store.item(ids[1])
    assert good["state"] == "done" and good["task_status"] == "COMPLETED" and good["result_dataset_id"].startswith("fds")
    assert "error" not in good and _get(ids[0])["response"]["resultDatasetId"] == good["result_dataset_id"]
    assert json.loads(bad["error"]) == {"code": 3, "message": "emulated failure of this batch task", "details": []}
    assert bad["task_status"] == "FAILED" and store.active_ids() == []
    store.activate(ids[0])  # a done native batch still indexed is dropped without asking upstream
    calls = len(_polls(stack_env))
    assert _poll() == {} and store.active_ids() == [] and len(_polls(stack_env)) == calls


def test_an_expired_batch_has_its_pending_requests_cancelled_upstream(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    store = _store()
    store.set_fields(op_id, {"deadline_at": clock.now() + 5})
    clock.advance(6)
    assert _poll() == {"expired": 1, "items-finished": 2}
    records = store.items(op_id, [0, 1])
    assert json.loads(store.item(op_id)["error"]) == {
        "code": 4, "message": "the job did not finish within its completion window", "details": []}
    assert [json.loads(r["outcome"])["code"] for r in records.values()] == [1, 1]  # upstream's answer to the cancel
    assert len(stack_env.calls(":cancel")) == 2 and store.active_ids() == []


def _limited_batch(env: Aws, texts: tuple[str, ...]) -> str:
    """A completion batch of `texts` by alice, whose key has a monthly token budget, submitted and its chunk
    run by the worker; its operation id."""
    body = {"modelUri": "yandexgpt-lite", "completionOptions": {"maxTokens": "40"}, "requests": [
        {"messages": [{"role": "user", "text": text}]} for text in texts]}
    event = _event("POST", f"{FM}/completionBatch", body)
    event["requestContext"]["authorizer"]["policy"] = json.dumps({"name": "alice", "monthly_tokens": 100000})
    answer = completion_function.handler(event, FakeContext())
    assert answer["statusCode"] == 200, answer
    completion_function.handler(ymq_event(_receive(env), env.resources.arns["completion"]), FakeContext())
    return str(json.loads(answer["body"])["id"])


def _budget_key(store: jobs.JobStore) -> str:
    """The key of alice's one budget item (limits#alice#<month>)."""
    (key,) = [i["id"]["S"] for i in store.db.scan(TableName="jobs", ConsistentRead=True)["Items"]
              if i["id"]["S"].startswith("limits#alice#")]
    return key


def test_a_limited_keys_batch_is_settled_to_its_usage_when_it_finishes(env: Aws) -> None:
    op_id = _limited_batch(env, ("one", "two three"))
    store = _store()
    month = _budget_key(store)
    held = store.item(month)["used_t"]
    assert _poll() == {"items-finished": 2, "batches-finished": 1}
    lines = [json.loads(x) for x in store.get_object(store.item(op_id)["result_key"]).decode().splitlines()]
    used = sum(int(x["response"]["usage"]["totalTokens"]) for x in lines)
    assert [x["customId"] for x in lines] == ["0", "1"]
    assert store.item(month)["used_t"] == used < held


def test_a_limited_keys_batch_with_no_usage_releases_what_it_held(env: Aws, stack_env: Emulator) -> None:
    """No request succeeded, so no ledger entry settles the reservation: the poller releases it alone."""
    stack_env.fault(path="/foundationModels/v1/completionAsync", status=400, count=-1, bodyContains="refuse me")
    op_id = _limited_batch(env, ("refuse me", "refuse me too"))
    store = _store()
    month = _budget_key(store)
    assert store.item(month)["used_t"] > 0
    _poll()
    assert store.item(op_id)["state"] == "done" and int(store.item(op_id)["items_failed"]) == 2
    assert store.item(month)["used_t"] == 0


def test_a_limited_keys_cancelled_batch_releases_what_it_held(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _limited_batch(env, ("one", "two"))
    store = _store()
    month = _budget_key(store)
    assert store.item(month)["used_t"] > 0
    assert store.finish(op_id, None, 0, {"code": 1, "message": "cancelled", "details": []}, deactivate=False)
    assert _poll() == {"items-finished": 2}
    assert store.item(month)["used_t"] == 0 and store.active_ids() == []  # nothing ran: nothing is kept


def test_progress_is_counted_from_the_request_records(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    op_id = _batch(env, ["one", "EMULATOR_FAIL two"])
    stack_env.configure(asyncDelayMs=3_600_000)
    body = {"modelUri": "yandexgpt-lite", "requests": [{"messages": [{"role": "user", "text": "late"}]}]}
    completion_function.handler(_event("POST", f"{FM}/completionBatch", body), FakeContext())
    completion_function.handler(ymq_event(_receive(env), env.resources.arns["completion"]), FakeContext())
    summary = _poll()
    assert summary == {"items-finished": 2, "batches-finished": 1, "items-pending": 1}
    assert (_store().item(op_id)["items_done"], _store().item(op_id)["items_failed"]) == (2, 1)


# -- a native batch: its record follows what each upstream answer says --------------------------------------

def _native(dataset: str = "fdsdataset1") -> str:
    answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", {
        "modelUri": "yandexgpt-lite", "sourceDatasetId": dataset}), FakeContext())
    assert answer["statusCode"] == 200, answer
    return str(json.loads(answer["body"])["id"])


def _answer_next_poll(emulator: Emulator, body: Any) -> None:
    """Upstream's next answer on /operations/ is this 200 body (the emulator's "answer" fault)."""
    emulator.fault(path="/operations/", kind="answer", body=body)


def test_a_native_batchs_progress_is_what_upstream_last_said(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _native()
    store = _store()
    upstream_id = store.item(op_id)["upstream_id"]
    _answer_next_poll(stack_env, {"id": upstream_id, "done": False, "metadata": {
        "taskId": "cbtlater", "taskStatus": "IN_PROGRESS", "completedBatches": "4", "totalBatches": "12"}})
    assert _poll() == {"native-pending": 1}
    record = store.item(op_id)
    assert (record["state"], record["task_status"], record["task_id"]) == ("running", "IN_PROGRESS", "cbtlater")
    assert (record["completed_batches"], record["total_batches"]) == (4, 12)
    modified = record["modified_at"]
    _answer_next_poll(stack_env, ["not", "an", "operation"])  # an answer that is no object: not done yet
    assert _poll() == {"native-pending": 1}
    assert store.item(op_id) == {**record, "poll_until": 0, "modified_at": modified}
    _answer_next_poll(stack_env, {"id": upstream_id, "done": False, "metadata": {"taskStatus": "IN_PROGRESS"}})
    assert _poll() == {"native-pending": 1}
    record = store.item(op_id)
    assert (record["task_id"], record["completed_batches"], record["total_batches"]) == ("cbtlater", 0, 0)
    _answer_next_poll(stack_env, {"id": upstream_id, "done": False, "metadata": {"totalBatches": "12"}})
    assert _poll() == {"native-pending": 1}
    record = store.item(op_id)  # a status upstream did not say again is the one recorded
    assert (record["task_status"], record["completed_batches"], record["total_batches"]) == ("IN_PROGRESS", 0, 12)
    _answer_next_poll(stack_env, {"id": upstream_id, "done": True, "response": {"resultDatasetId": "fdsresult"}})
    assert _poll() == {"native-finished": 1}
    record = store.item(op_id)
    assert (record["state"], record["task_status"], record["result_dataset_id"]) == ("done", "COMPLETED", "fdsresult")
    assert "error" not in record and store.active_ids() == []


def test_a_native_batch_records_the_status_its_finished_upstream_operation_names(
        env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _native()
    store = _store()
    upstream_id = store.item(op_id)["upstream_id"]
    _answer_next_poll(stack_env, {"id": upstream_id, "done": True, "response": {
        "taskId": "cbtdone", "taskStatus": "CANCELED", "resultDatasetId": ""}})
    assert _poll() == {"native-finished": 1}
    assert store.item(op_id)["task_status"] == "CANCELED"


def test_every_pending_native_batch_is_counted_in_the_rounds_summary(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    _native()
    _native("fdsdataset2")
    assert _poll() == {"native-pending": 2}


def test_a_native_batchs_answer_without_metadata_keeps_its_recorded_progress(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _native()
    store = _store()
    _poll()
    record = store.item(op_id)
    assert record["state"] == "running"
    _answer_next_poll(stack_env, {"id": record["upstream_id"], "done": False, "metadata": None})
    assert _poll() == {"native-pending": 1}
    assert store.item(op_id) == record  # nothing written: not even the state it already has


def test_native_polls_share_the_operation_get_quota_with_batch_polls(
        env: Aws, stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    _batch(env, ["one"])
    _native()
    configure(env, monkeypatch, FM_OPERATION_GET_RPS="0.5")  # one operation GET every 2 s, whoever makes it
    clock.sleeps.clear()
    assert _poll() == {"items-finished": 1, "batches-finished": 1, "native-finished": 1}
    assert len(_polls(stack_env)) == 2
    assert sum(clock.sleeps) == pytest.approx(2.0, abs=0.01)


def test_a_run_out_of_operation_get_slots_counts_what_it_finished_and_every_batch_it_left(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _batch(env, ["one", "two"]), _batch(env, ["three", "four"])  # alike: either comes first
    configure(env, monkeypatch, FM_OPERATION_GET_RPS="0.01")  # one operation GET per 100 s: one fits in this run
    assert _poll() == {"items-finished": 1, "deadline": 2}  # each batch left for want of a slot is counted
    done = {op_id: int(_store().item(op_id).get("items_done", 0)) for op_id in (first, second)}
    assert sorted(done.values()) == [0, 1]  # and the request it finished is counted before the run stops


def test_a_poll_that_fails_on_our_side_leaves_the_request_for_the_next_run(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that cannot be read (a 500 of ours, not retryable) are no answer about the request: it stays
    running, counted as a poll error, and the next run asks again."""
    op_id = _batch(env, ["one", "two"])
    monkeypatch.delenv("YC_API_KEY", raising=False)
    configure(env, monkeypatch, YC_SA_KEY_JSON="not json")
    assert _poll() == {"poll-errors": 2}
    assert {r["state"] for r in _store().items(op_id, [0, 1]).values()} == {"running"}


def test_an_operation_the_poller_cannot_advance_is_counted_and_logged_and_the_others_go_on(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    ids = [_native(), _native()]
    stack_env.fault(path="/operations/", status=403, count=1)  # refused: not retried, nothing recorded
    assert _poll() == {"errors": 1, "native-pending": 1}
    (line,) = _lines(log_output, "poller could not advance an operation")
    assert line["operation_id"] in ids and line["error"] == "emulated fault 403" and line["level"] == "WARN"
    store = _store()
    assert sorted(store.active_ids()) == sorted(ids)
    assert all(store.lease(op_id, "poll", "another-poller", 60) for op_id in ids)  # its lease was given back


def _document_api_request(environ: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a Document API call reaching the stand-in (left readable for it); {} for other calls."""
    if not environ.get("HTTP_X_AMZ_TARGET"):
        return {}
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    return dict(json.loads(body or b"{}"))


class _Leases:
    """WSGI middleware: records each poller lease taken (the Document API's UpdateItem that sets poll_until)."""

    def __init__(self, app: Any) -> None:
        self.app, self.until = app, []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _document_api_request(environ)
        if "SET poll_until = :until," in request.get("UpdateExpression", ""):
            self.until.append(float(request["ExpressionAttributeValues"][":until"]["N"]))
        return self.app(environ, start_response)


@pytest.mark.parametrize(("remaining_ms", "lease_s"), [(600_000, 120.0), (60_000, 64.5), (1_800, 6.3)])
def test_a_poller_holds_a_batch_for_what_its_invocation_has_left_plus_5_s_and_at_most_120_s(
        env: Aws, stack_env: Emulator, clock: ManualClock, remaining_ms: int, lease_s: float) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    _batch(env, ["one"])
    leases: _Leases = env.wrap(_Leases)
    _poll(remaining_ms=remaining_ms)
    assert leases.until == [pytest.approx(clock.now() + lease_s, abs=0.01)]  # (0.5 s of it is the answer's margin)


# -- a stopped batch: what its unfinished requests record -----------------------------------------------------

def test_a_cancelled_batchs_requests_that_upstream_does_not_confirm_stopped_record_the_cancel(
        env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one"])
    assert operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"), FakeContext())["statusCode"] == 200
    _answer_next_poll(stack_env, {"id": "d7qanything", "done": False})  # the cancel is taken, not done yet
    assert _poll() == {"items-finished": 1}
    record = _store().items(op_id, [0])[0]
    assert record["failed"] and json.loads(record["outcome"]) == {
        "code": 1, "message": "cancelled by the caller", "details": []}


def test_an_expired_batchs_requests_that_upstream_does_not_confirm_stopped_record_the_expiry(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one"])
    _store().set_fields(op_id, {"deadline_at": clock.now() + 5})
    clock.advance(6)
    _answer_next_poll(stack_env, {"done": False})
    assert _poll() == {"expired": 1, "items-finished": 1}
    assert json.loads(_store().items(op_id, [0])[0]["outcome"]) == {
        "code": 4, "message": "the job did not finish within its completion window", "details": []}


CANCELLED = {"code": 1, "message": "cancelled by the caller", "details": []}


@pytest.mark.parametrize(("error", "recorded"), [
    ('{"code": 1, "message": "cancelled by the door", "details": []}', {"code": 1, "message": "cancelled by the door",
                                                                        "details": []}),
    ('{"code": 13, "message": "broke", "details": []}', CANCELLED), ("not json", CANCELLED), ("[1, 4]", CANCELLED),
    ('{"code": 4.5}', CANCELLED)])
def test_a_stopped_batchs_unconfirmed_requests_record_its_own_cancel_or_expiry_else_a_cancel(
        env: Aws, stack_env: Emulator, error: str, recorded: dict[str, Any]) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one"])
    store = _store()
    assert store.finish(op_id, None, 0, {"code": 13, "message": "broke", "details": []}, deactivate=False)
    store.set_fields(op_id, {"error": error})
    _answer_next_poll(stack_env, {"done": False})
    assert _poll() == {"items-finished": 1}
    assert json.loads(store.items(op_id, [0])[0]["outcome"]) == recorded
    assert store.active_ids() == []


# -- a batch's requests: when each is polled, what each answer records ----------------------------------------

def test_a_request_is_due_at_its_next_poll_time_not_before(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one"])
    store = _store()
    store.set_fields(jobs.item_id(op_id, 0), {"next_poll_at": clock.now() + 0.001})
    assert _poll() == {}
    store.set_fields(jobs.item_id(op_id, 0), {"next_poll_at": clock.now()})
    assert _poll() == {"items-pending": 1}


@pytest.mark.parametrize(("status", "summary"), [(429, {"poll-errors": 1}), (500, {"poll-errors": 1}),
                                                  (501, {"poll-errors": 1}), (403, {"errors": 1})])
def test_a_poll_upstream_refuses_leaves_the_request_unsettled(
        env: Aws, stack_env: Emulator, status: int, summary: dict[str, int]) -> None:
    op_id = _batch(env, ["one"])
    stack_env.fault(path="/operations/", status=status, count=-1)
    assert _poll() == summary
    store = _store()
    assert store.items(op_id, [0])[0]["state"] == "running" and store.item(op_id)["state"] != "done"
    assert store.active_ids() == [op_id]


def test_an_answer_that_is_no_object_or_done_without_a_response_is_read_as_such(
        env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one", "two"])
    _answer_next_poll(stack_env, ["done", True])  # not an operation: not done yet
    _answer_next_poll(stack_env, {"done": True})  # done, with neither a response nor an error
    assert _poll() == {"items-pending": 1, "items-finished": 1}
    store = _store()
    records = store.items(op_id, [0, 1])
    assert records[0]["state"] == "running" and records[0]["polls"] == 1
    assert records[1]["state"] == "done" and not records[1]["failed"] and json.loads(records[1]["outcome"]) == {}


def test_each_request_that_finished_well_writes_its_usage_line_once(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _batch(env, ["one", "EMULATOR_FAIL two", "three four"])
    _poll()
    lines = [x["usage"] for x in _lines(log_output, "usage") if x["usage"].get("counted") == "with its batch"]
    assert [(x["key"], x["input_tokens"]) for x in lines] == [(f"{op_id}#i0", 1), (f"{op_id}#i2", 2)]


class _OtherPollerFirst:
    """WSGI middleware: when the poller under test records request 0 of the batch, another poller has just
    recorded it (with its own outcome), so the poller's conditional write finds it done."""

    def __init__(self, app: Any) -> None:
        self.app, self.op_id, self.done = app, "", False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _document_api_request(environ)
        if not self.done and ":outcome" in request.get("UpdateExpression", "") and \
                request.get("Key", {}).get("id", {}).get("S") == jobs.item_id(self.op_id, 0):
            self.done = True
            assert _store().item_finished(self.op_id, 0, "r0", {"by": "the other poller"}, False)
        return self.app(environ, start_response)


def test_a_request_another_poller_recorded_first_is_counted_once_with_its_outcome(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _batch(env, ["one", "two"])
    other: _OtherPollerFirst = env.wrap(_OtherPollerFirst)
    other.op_id = op_id
    assert _poll() == {"items-finished": 1, "batches-finished": 1}
    assert other.done
    store = _store()
    lines = [json.loads(x) for x in store.get_object(store.item(op_id)["result_key"]).decode().splitlines()]
    assert lines[0] == {"customId": "r0", "response": {"by": "the other poller"}}
    assert lines[1]["customId"] == "r1" and "alternatives" in lines[1]["response"]
    usage_lines = [x for x in _lines(log_output, "usage") if x["usage"].get("counted") == "with its batch"]
    assert [x["usage"]["key"] for x in usage_lines] == [f"{op_id}#i1"]


def test_a_batch_whose_chunks_have_not_all_completed_is_not_finished_yet(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one"])
    store = _store()
    store.set_fields(op_id, {"tasks_done": 0})  # its chunk has not recorded that it is done
    assert _poll() == {"items-finished": 1}
    record = store.item(op_id)
    assert record["state"] == "running" and (record["items_done"], record["items_failed"]) == (1, 0)
    store.set_fields(op_id, {"tasks_done": 1})
    assert _poll() == {"batches-finished": 1}
    assert store.item(op_id)["state"] == "done"


def test_progress_is_written_only_when_it_moved(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    store = _store()
    assert _poll() == {"items-pending": 2}
    record = store.item(op_id)
    assert (record["items_done"], record["items_failed"]) == (0, 0)
    store.set_fields(op_id, {"items_done": 5, "items_failed": 0})  # a wrong count is put right
    _poll()
    assert store.item(op_id)["items_done"] == 0
    store.set_fields(op_id, {"items_done": 0, "items_failed": 3})
    _poll()
    assert store.item(op_id)["items_failed"] == 0


def test_a_batch_is_finished_with_its_results_in_utf8(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["привет мир"])
    assert _poll() == {"items-finished": 1, "batches-finished": 1}
    store = _store()
    data = store.get_object(store.item(op_id)["result_key"])
    assert "привет".encode() in data and b"\\u" not in data


def test_a_cancelled_batch_whose_chunks_never_started_leaves_the_index(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one", "two"], run=False)
    assert operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"), FakeContext())["statusCode"] == 200
    store = _store()
    assert op_id in store.active_ids()
    assert _poll() == {}
    assert store.active_ids() == [] and _polls(stack_env) == []


def test_a_cancelled_batch_stays_indexed_until_every_request_is_stopped(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    assert operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"), FakeContext())["statusCode"] == 200
    configure(env, monkeypatch, FM_OPERATION_GET_RPS="0.5")  # time for one cancel only before the deadline
    assert _poll(remaining_ms=3_400) == {"items-finished": 1, "deadline": 1}
    store = _store()
    assert store.active_ids() == [op_id]
    assert _poll() == {"items-finished": 1}
    assert store.active_ids() == []


def test_the_poller_stops_when_the_quota_has_no_slot_a_second_before_its_deadline(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    op_id = _batch(env, ["one", "two"])
    configure(env, monkeypatch, FM_OPERATION_GET_RPS="0.5")  # the second poll's slot is 2 s after the first
    assert _poll(remaining_ms=3_400) == {"items-finished": 1, "deadline": 1}  # 2.9 s left, 1.9 before the margin
    assert len(_polls(stack_env)) == 1
    assert _store().items(op_id, [0, 1])[1]["state"] == "running"
    assert _poll(remaining_ms=3_600) == {"items-finished": 1, "batches-finished": 1}


# -- a job's tasks that sat queued or whose worker died: sent again on their kind's queue ---------------------

@pytest.mark.parametrize(("kind", "queue"), [("embedding", "embedding"), ("classification", "classification"),
                                             ("batch", "completion")])
def test_the_tasks_of_a_job_untouched_for_the_threshold_that_no_live_worker_holds_are_sent_again(
        env: Aws, clock: ManualClock, log_output: io.StringIO, kind: str, queue: str) -> None:
    store = _store()
    op_id = "fmo000000000stuck"
    store.create(op_id, kind, "d", "alice", [b"{}"] * 5)
    store.claim(op_id, 0, "w", 600)
    assert store.complete(op_id, 0, "w", b"{}")  # done: never again
    store.claim(op_id, 1, "w", 600)  # held by a live worker (its lease ends exactly now: still its own)
    store.claim(op_id, 2, "w", 600)  # its worker died: the lease ran out
    store.claim(op_id, 3, "w", 600)
    store.release(op_id, 3, "w", "503")  # given back, its message lost
    # task 4: never claimed, its message lost
    now = clock.now()
    store.set_fields(jobs.task_id(op_id, 1), {"lease_until": now})
    store.set_fields(jobs.task_id(op_id, 2), {"lease_until": now - 0.001})
    store.set_fields(op_id, {"modified_at": now - 300 + 0.001})
    _receive(env, queue)
    assert _poll() == {}  # untouched for less than the threshold
    store.set_fields(op_id, {"modified_at": now - 300})
    assert _poll() == {"requeued-tasks": 3}
    assert sorted(json.loads(m.body)["task"] for m in _receive(env, queue)) == [2, 3, 4]
    assert all(_receive(env, other) == [] for other in ("completion", "embedding", "classification"))
    assert _lines(log_output, "re-enqueued stuck tasks")[-1]["operation_id"] == op_id
    assert store.item(op_id)["requeued_at"] == now
    store.set_fields(op_id, {"requeued_at": now - 300 + 0.001})
    assert _poll() == {}  # sent again less than the threshold ago
    store.set_fields(op_id, {"requeued_at": now - 300})
    assert _poll() == {"requeued-tasks": 3}


def test_a_job_expires_at_its_deadline_and_only_once(env: Aws, clock: ManualClock, log_output: io.StringIO) -> None:
    store = _store()
    now = clock.now()
    store.create("fmo0000000000due", "completion", "d", "alice", [b"{}"], numbers={"deadline_at": now + 0.001})
    store.create("fmo000000000nodl", "completion", "d", "alice", [b"{}"], numbers={"deadline_at": 0})
    assert _poll() == {}
    store.set_fields("fmo0000000000due", {"deadline_at": now})
    assert _poll() == {"expired": 1}
    (line,) = _lines(log_output, "job expired")
    assert line["operation_id"] == "fmo0000000000due" and line["level"] == "WARN"
    assert store.item("fmo0000000000due")["state"] == "done" and store.item("fmo000000000nodl")["state"] == "queued"
    assert store.active_ids() == ["fmo000000000nodl"]
    store.activate("fmo0000000000due")  # seen again (say, by a poller that read the index before): not again
    assert _poll() == {} and len(_lines(log_output, "job expired")) == 1


def test_the_poller_stops_when_the_quota_has_no_slot_before_the_deadline_for_a_native_batch(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    ids = [_native() for _ in range(3)]
    configure(env, monkeypatch, FM_OPERATION_GET_RPS="0.5")
    assert _poll(remaining_ms=2_400) == {"native-pending": 1, "deadline": 1}  # the next slot is past the deadline
    store = _store()
    assert sum(1 for op_id in ids if store.item(op_id)["state"] == "running") == 1
    assert all(store.lease(op_id, "poll", "another-poller", 60) for op_id in ids)


# -- a job of another front door (the OpenAI Batch API): finished through its door ----------------------------

def _door_embeddings(op_id: str, texts: list[list[str]]) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    uri = "emb://b1gtestfolder/text-search-doc/latest"
    index, payloads = 0, []
    for chunk in texts:  # one task per chunk, one request per text, as the OpenAI door makes them
        payloads.append({"modelUri": uri, "requests": [
            {"index": index + n, "customId": f"c{index + n}", "texts": [text]} for n, text in enumerate(chunk)]})
        index += len(chunk)
    submit.submit_tasks("embedding", payloads, inv, op_id=op_id, extra={"door": "openai"})


def test_a_door_job_is_finished_through_its_door_once_every_task_is_done(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    from functions.embedding import handler as embedding_function

    _door_embeddings("fmo00000000door1", [["one"], ["two"]])
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    embedding_function.handler(ymq_event(messages[:1], env.resources.arns["embedding"]), FakeContext())
    store = _store()
    clock.advance(301)  # long untouched, but its door is waiting for a task it still has
    assert _poll() == {"requeued-tasks": 1}
    record = store.item("fmo00000000door1")
    assert record["state"] != "done" and not record.get("oa_settled") and record["items_done"] == 1
    embedding_function.handler(ymq_event(messages[1:], env.resources.arns["embedding"]), FakeContext())
    assert _poll() == {"batches-finished": 1}
    record = store.item("fmo00000000door1")
    assert record["state"] == "done" and record["oa_settled"] == 1
    data = store.get_object(record["result_key"])
    assert record["result_key"] == record["oa_native_key"] and record["result_size"] == len(data) > 0
    assert store.active_ids() == []


def test_every_door_job_finished_in_a_round_is_counted(env: Aws, stack_env: Emulator) -> None:
    from functions.embedding import handler as embedding_function

    _door_embeddings("fmo00000000door3", [["one"]])
    _door_embeddings("fmo00000000door4", [["two"]])
    embedding_function.handler(ymq_event(_receive(env, "embedding"), env.resources.arns["embedding"]), FakeContext())
    assert _poll() == {"batches-finished": 2}


def test_every_stuck_task_of_a_round_is_counted(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    _door_embeddings("fmo00000000door5", [["one"]])
    _door_embeddings("fmo00000000door6", [["two"], ["three"]])
    _receive(env, "embedding")  # their messages are lost
    clock.advance(301)
    assert _poll() == {"requeued-tasks": 3}


def test_a_door_job_that_ended_early_is_settled_through_its_door_and_leaves_the_index(
        env: Aws, stack_env: Emulator) -> None:
    _door_embeddings("fmo00000000door2", [["one"]])
    store = _store()
    assert store.finish("fmo00000000door2", None, 0, {"code": 1, "message": "cancelled", "details": []},
                        deactivate=False)
    assert _poll() == {}
    record = store.item("fmo00000000door2")
    assert record["oa_settled"] == 1 and "result_key" not in record and store.active_ids() == []


def test_a_door_batch_is_settled_through_its_door_when_it_finishes(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one", "EMULATOR_FAIL two"])
    store = _store()
    store.set_fields(op_id, {"door": "openai"})  # as the OpenAI door creates it
    assert _poll() == {"items-finished": 2, "batches-finished": 1}
    record = store.item(op_id)
    assert record["state"] == "done" and record["oa_settled"] == 1 and (record["oa_completed"], record["oa_failed"]) == (1, 1)
    assert store.get_object(record["result_key"]).count(b"\n") == 2 and store.active_ids() == []


def test_a_cancelled_door_batch_is_settled_through_its_door_with_what_finished(env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    store = _store()
    store.set_fields(op_id, {"door": "openai"})
    answer = {"alternatives": [{"message": {"role": "assistant", "text": "hi"}, "status": "ALTERNATIVE_STATUS_FINAL"}],
              "usage": {"inputTextTokens": "1", "completionTokens": "1", "totalTokens": "2"}, "modelVersion": "1"}
    store.item_finished(op_id, 0, "r0", answer, False)  # finished before the cancel
    assert store.finish(op_id, None, 0, {"code": 1, "message": "cancelled", "details": []}, deactivate=False)
    assert _poll() == {"items-finished": 1}
    record = store.item(op_id)
    assert record["oa_settled"] == 1 and record["oa_completed"] == 1 and record["oa_error_file_id"]  # the cancelled one
    assert store.active_ids() == []


def test_a_batchs_usage_enters_the_days_totals_once_when_it_finishes_or_is_cancelled(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    from shared.jobs import usage

    done = _batch(env, ["one", "EMULATOR_FAIL two", "three four"])
    assert _poll() == {"items-finished": 3, "batches-finished": 1}
    stack_env.configure(asyncDelayMs=3_600_000)
    cancelled = _batch(env, ["five", "six"])
    store = _store()
    answer = {"alternatives": [], "usage": {"inputTextTokens": "7", "completionTokens": "3", "totalTokens": "10"}}
    store.item_finished(cancelled, 0, "r0", answer, False)
    assert operations_function.handler(_event("POST", f"/operations/{cancelled}:cancel"), FakeContext())["statusCode"] == 200
    assert _poll() == {"items-finished": 1}
    lines = {x["usage"]["key"]: x["usage"] for x in _lines(log_output, "usage batch totals")}
    assert set(lines) == {f"{done}#batch", f"{cancelled}#batch"}
    assert (lines[f"{done}#batch"]["requests"], lines[f"{done}#batch"]["counted"]) == (2, True)
    assert (lines[f"{cancelled}#batch"]["requests"], lines[f"{cancelled}#batch"]["input_tokens"]) == (1, 7)
    day = lines[f"{done}#batch"]["day"]
    (model,) = usage.totals(store, "alice", day).values()
    assert model["async"]["requests"] == 3  # two of the finished batch, one of the cancelled one


class _CancelAfterRead:
    """WSGI middleware: right after the poller reads the operation `op_id` (GetItem), it is cancelled (as the
    operations function does), so the poller goes on with what it read."""

    def __init__(self, app: Any) -> None:
        self.app, self.op_id, self.done = app, "", False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _document_api_request(environ)
        answer = self.app(environ, start_response)
        if not self.done and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".GetItem") and \
                request.get("Key", {}).get("id", {}).get("S") == self.op_id:
            self.done = True
            assert _store().finish(self.op_id, None, 0, CANCELLED)
        return answer


def test_a_native_batch_cancelled_while_the_poller_asks_upstream_stays_cancelled(
        env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _native()
    _poll()
    assert _store().item(op_id)["state"] == "running"
    cancel: _CancelAfterRead = env.wrap(_CancelAfterRead)
    cancel.op_id = op_id
    assert _poll() == {"native-pending": 1}
    record = _store().item(op_id)
    assert cancel.done and record["state"] == "done" and json.loads(record["error"]) == CANCELLED


def test_a_native_batch_done_upstream_without_a_dataset_records_none_and_no_result(
        env: Aws, stack_env: Emulator) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _native()
    _answer_next_poll(stack_env, {"done": True, "response": {"taskStatus": "COMPLETED"}})
    assert _poll() == {"native-finished": 1}
    record = _store().item(op_id)
    assert (record["state"], record["result_dataset_id"], record["result_size"], record["result_key"]) == (
        "done", "", 0, "")


def test_an_expired_batch_stays_indexed_until_its_requests_are_stopped(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    stack_env.configure(asyncDelayMs=3_600_000)
    op_id = _batch(env, ["one", "two"])
    store = _store()
    store.set_fields(op_id, {"deadline_at": clock.now()})
    stack_env.fault(path="/operations/", status=503, count=-1)
    assert _poll() == {"expired": 1, "poll-errors": 2}
    assert store.item(op_id)["state"] == "done" and store.active_ids() == [op_id]
    stack_env.post("/_emulator/reset", {})  # upstream answers again (and has forgotten them)
    assert _poll() == {"items-lost": 2}
    assert store.active_ids() == []


class _RefuseBudgetReads:
    """WSGI middleware: the Document API refuses every read (GetItem) of a key's budget item (limits#...)."""

    def __init__(self, app: Any) -> None:
        self.app, self.refused = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _document_api_request(environ)
        if environ.get("HTTP_X_AMZ_TARGET", "").endswith(".GetItem") and \
                request.get("Key", {}).get("id", {}).get("S", "").startswith("limits#"):
            self.refused += 1
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
            return [json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                                "message": "refused by the test"}).encode()]
        return self.app(environ, start_response)


def test_a_budget_sweep_that_fails_is_logged_and_the_batch_still_finishes(
        env: Aws, log_output: io.StringIO) -> None:
    op_id = _limited_batch(env, ("one",))
    refusing: _RefuseBudgetReads = env.wrap(_RefuseBudgetReads)
    assert _poll() == {"items-finished": 1, "batches-finished": 1}
    assert refusing.refused >= 1 and _store().item(op_id)["state"] == "done"
    (line,) = _lines(log_output, "budget sweep failed")
    assert line["level"] == "WARN" and line["error"].startswith("StoreError: ")


def test_a_poll_that_waited_out_upstreams_retry_after_leaves_the_rest_for_the_next_run(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    op_id = _batch(env, ["one", "two"])
    stack_env.fault(path="/operations/", status=503, retryAfter=2, count=1)  # the first poll waits 2 s, then gets it
    clock.sleeps.clear()
    assert _poll(remaining_ms=3_400) == {"items-finished": 1, "deadline": 1}  # 0.9 s left after it
    assert clock.sleeps == [pytest.approx(2, abs=0.01)] and len(_polls(stack_env)) == 2
    assert _store().items(op_id, [0, 1])[1]["state"] == "running"
    assert int(_store().item(op_id)["items_done"]) == 1  # what this run finished is counted before it stops


def test_a_run_that_ran_out_of_time_counts_every_operation_it_left(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    _batch(env, ["one", "two"])
    _batch(env, ["three", "four"])  # alike: the index gives them in either order
    stack_env.fault(path="/operations/", status=503, retryAfter=2, count=1)  # the first poll waits 2 s, then gets it
    assert _poll(remaining_ms=3_400) == {"items-finished": 1, "deadline": 2}  # the first batch's rest, and the second


def test_a_run_counts_every_operation_it_advanced(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    first, second = _batch(env, ["one"]), _batch(env, ["two"])
    store = _store()
    for op_id in ("fmo0000000late01", "fmo0000000late02"):
        store.create(op_id, "completion", "d", "alice", [b"{}"], numbers={"deadline_at": clock.now()})
    assert _poll() == {"items-finished": 2, "batches-finished": 2, "expired": 2}
    assert store.item(first)["state"] == store.item(second)["state"] == "done"
    stack_env.configure(asyncDelayMs=3_600_000)
    ids = [_native(), _native()]
    for op_id in ids:
        assert store.lease(op_id, "poll", "another-poller", 60)
    assert _poll() == {"leased-elsewhere": 2}
    for op_id in ids:
        store.unlease(op_id, "poll", "another-poller")
    stack_env.fault(path="/operations/", status=403, count=2)
    assert _poll() == {"errors": 2}


def test_an_index_entry_without_its_operation_is_dropped_and_the_run_goes_on(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one"])
    store = _store()
    store.activate("fmo-gone")  # read before the batch (the index is walked in order)
    assert store.active_ids() == ["fmo-gone", op_id]
    assert _poll() == {"items-finished": 1, "batches-finished": 1}
    assert store.active_ids() == []


class _ChunkCompletesMidRound:
    """WSGI middleware: when the poller records the batch's first request, its last chunk completes (the
    operation's tasks_done is put back to tasks_total), as a worker finishing the chunk meanwhile would."""

    def __init__(self, app: Any) -> None:
        self.app, self.op_id, self.done = app, "", False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _document_api_request(environ)
        if not self.done and ":outcome" in request.get("UpdateExpression", ""):
            self.done = True
            _store().set_fields(self.op_id, {"tasks_done": 1})
        return self.app(environ, start_response)


def test_a_chunk_that_completes_while_the_poller_polls_lets_the_batch_finish_in_that_round(
        env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(env, ["one"])
    _store().set_fields(op_id, {"tasks_done": 0})  # its chunk has not recorded that it is done yet
    chunk: _ChunkCompletesMidRound = env.wrap(_ChunkCompletesMidRound)
    chunk.op_id = op_id
    assert _poll() == {"items-finished": 1, "batches-finished": 1}
    assert chunk.done and _store().item(op_id)["state"] == "done"
