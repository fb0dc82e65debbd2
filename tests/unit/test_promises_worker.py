"""What the queue workers promise (shared/jobs/worker.py), in process: a job is submitted through its front door,
its message is taken off the in-process queue and handed to the function as a real Message Queue trigger event
(local/triggers.py), upstream is the in-process FM emulator, and the store, the queues, upstream and the caller
(GET /operations/{id}) are read afterwards.

A task is run upstream once even when its message comes twice; its lease ends with the invocation (plus 30 s);
a transient upstream failure gives the task back with the reason and fails the invocation, a permanent one ends
the operation with the error; messages left without time are sent again; a message the queue gave up on is sent
again or ends its operation, as the store's count of failed starts says."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from functions.classification import handler as classification_function
from functions.completion import handler as completion_function
from functions.embedding import handler as embedding_function
from functions.operations import handler as operations_function
from local.aws import InProcessMoto
from local.triggers import ymq_event
from shared.config import Settings
from shared.jobs import store as jobs
from shared.jobs import worker
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

FM = "/foundationModels/v1"
COMPLETION = {"modelUri": "yandexgpt-lite", "completionOptions": {"temperature": 0.3},
              "messages": [{"role": "user", "text": "Tell me about the Volga"}]}
FUNCTIONS = {"completion": completion_function, "classification": classification_function,
             "embedding": embedding_function}
CLASSIFY = {"modelUri": "yandexgpt-lite", "taskDescription": "intent", "labels": ["alarm", "weather"],
            "text": "wake me at six", "samples": [{"text": "set an alarm", "label": "alarm"}]}


@pytest.fixture
def env(stack_env: Emulator, aws_jobs: Aws, clock: ManualClock) -> Aws:
    """The emulator upstream, then the in-process store and queues (stack_env resets the queue client, so first), the manual clock."""
    return aws_jobs


def _event(method: str, path: str, body: Any = None, caller: str = "alice") -> dict[str, Any]:
    return {"httpMethod": method, "url": path, "headers": {}, "body": json.dumps(body) if body is not None else None,
            "requestContext": {"authorizer": {"caller": caller}}}


def _submit(kind: str = "completion", body: Any = None) -> str:
    path = {"completion": "completionAsync", "classification": "fewShotTextClassificationAsync",
            "embedding": "textEmbeddingAsync"}[kind]
    answer = FUNCTIONS[kind].handler(_event("POST", f"{FM}/{path}", body or COMPLETION), FakeContext())
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])["id"]


def _get(op_id: str) -> dict[str, Any]:
    answer = operations_function.handler(_event("GET", f"/operations/{op_id}"), FakeContext())
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


def _receive(aws: Aws, queue: str) -> list[Any]:
    found: list[Any] = []
    while batch := aws.queues.receive(aws.resources.queues[queue], max_messages=10):
        found += batch
    return found


def _deliver(aws: Aws, kind: str, messages: list[Any], remaining_ms: int = 60_000, dead: bool = False) -> Any:
    """Hand these messages to the kind's function as one trigger event; what it returned (or raised)."""
    queue = f"{kind}-dlq" if dead else kind
    event = ymq_event(messages, aws.resources.arns[queue])
    return FUNCTIONS[kind].handler(event, FakeContext(remaining_ms=remaining_ms))


def _store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


def _lines(output: io.StringIO, message: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in output.getvalue().splitlines() if f'"{message}"' in x]


def _summary(output: io.StringIO) -> dict[str, Any]:
    return [line for line in _lines(output, "request handled") if line.get("operation") == "consume"][-1]


def _task(op_id: str, number: int = 0) -> dict[str, Any]:
    return _store().item(jobs.task_id(op_id, number)) or {}


def _send(aws: Aws, queue: str, bodies: list[str]) -> list[Any]:
    for body in bodies:
        aws.queues.send(aws.resources.queues[queue], body)
    return _receive(aws, queue)


def _fail_upstream(emulator: Emulator, status: int = 503, path: str = "/foundationModels/v1/completion",
                   count: int = -1, **more: Any) -> None:
    emulator.fault(path=path, status=status, count=count, message=f"emulated fault {status}", **more)


# -- a task runs once, and its operation ends with its result ----------------------------------------------

def test_a_completion_runs_upstream_once_and_its_result_is_the_operations_response(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _submit()
    messages = _receive(env, "completion")
    assert [json.loads(m.body) for m in messages] == [{"op": op_id, "task": 0}]
    result = _deliver(env, "completion", messages)
    assert result == {"processed": 1, "outcomes": {"done": 1}}
    calls = stack_env.calls("/completion")
    assert len(calls) == 1
    read = _get(op_id)
    assert read["done"] is True and "error" not in read
    response = read["response"]
    assert response["@type"] == "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.CompletionResponse"
    assert response["alternatives"][0]["message"]["role"] == "assistant"
    assert _store().active_ids() == []
    summary = _summary(log_output)
    assert (summary["operation"], summary["messages"], summary["outcomes"]) == ("consume", 1, {"done": 1})


def test_a_message_delivered_twice_runs_upstream_once(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    messages = _receive(env, "completion")
    _deliver(env, "completion", messages)
    again = _deliver(env, "completion", messages)
    assert again == {"processed": 1, "outcomes": {"skipped": 1}}
    assert len(stack_env.calls("/completion")) == 1
    assert _task(op_id)["attempts"] == 1


def test_a_done_task_of_an_unfinished_operation_is_not_run_again(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["one", "two"]})
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    _deliver(env, "embedding", messages[:1])
    assert _deliver(env, "embedding", messages[:1]) == {"processed": 1, "outcomes": {"skipped": 1}}
    assert len(stack_env.calls("textEmbedding")) == 1
    assert _get(op_id)["done"] is False and _store().item(op_id)["tasks_done"] == 1
    assert _deliver(env, "embedding", messages[1:]) == {"processed": 1, "outcomes": {"done": 1}}
    assert _get(op_id)["done"] is True


def test_a_task_held_by_a_live_worker_is_left_for_redelivery_and_taken_over_when_its_lease_ran_out(
        env: Aws, stack_env: Emulator, clock: ManualClock, log_output: io.StringIO) -> None:
    op_id = _submit()
    messages = _receive(env, "completion")
    assert _store().claim(op_id, 0, "someone-else", 100).outcome == "claimed"
    with pytest.raises(worker.RedeliverError, match=f"1 of 1 messages need another delivery: task 0 of {op_id} "
                                                    "is being processed by another worker"):
        _deliver(env, "completion", messages)
    assert stack_env.calls("/completion") == [] and _task(op_id)["worker"] == "someone-else"
    failed = _lines(log_output, "batch failed; the trigger will redeliver it")[-1]
    assert failed["outcomes"] == {"retry": 1} and failed["messages"] == 1
    clock.advance(101)
    assert _deliver(env, "completion", messages)["outcomes"] == {"done": 1}
    assert len(stack_env.calls("/completion")) == 1 and _task(op_id)["attempts"] == 2


@pytest.mark.parametrize(("lease", "remaining_ms", "expected"), [(None, 60_000, 59.5 + 30), (None, 20_000, 19.5 + 30),
                                                                 ("40", 60_000, 40.0)])
def test_the_lease_ends_with_the_invocation_plus_30_s_or_at_job_lease_s(
        env: Aws, monkeypatch: pytest.MonkeyPatch, lease: str | None, remaining_ms: int, expected: float) -> None:
    if lease:
        monkeypatch.setenv("JOB_LEASE_S", lease)
    op_id = _submit()
    _deliver(env, "completion", _receive(env, "completion"), remaining_ms=remaining_ms)
    task = _task(op_id)
    assert task["state"] == "done"
    assert float(task["lease_until"]) - float(task["started_at"]) == pytest.approx(expected, abs=0.01)


# -- failures ---------------------------------------------------------------------------------------

def test_a_transient_upstream_failure_gives_the_task_back_with_the_reason_and_fails_the_invocation(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _submit()
    messages = _receive(env, "completion")
    _fail_upstream(stack_env, 503)
    with pytest.raises(worker.RedeliverError, match="^1 of 1 messages need another delivery: .*emulated fault 503$"):
        _deliver(env, "completion", messages)
    task, operation = _task(op_id), _store().item(op_id)
    assert task["state"] == "queued" and task["attempts"] == 1
    assert task["last_error"].startswith("UNAVAILABLE: ") and task["last_error"].endswith(": emulated fault 503")
    assert operation["last_error"] == task["last_error"]
    assert operation["state"] != "done" and _get(op_id)["done"] is False
    warning = _lines(log_output, "message will be redelivered")[-1]
    assert warning["reason"].endswith(": emulated fault 503") and warning["message_index"] == 0
    stack_env.post("/_emulator/reset", {})
    assert _deliver(env, "completion", messages)["outcomes"] == {"done": 1}
    assert _task(op_id)["attempts"] == 2 and _get(op_id)["done"] is True


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_permanent_upstream_refusal_ends_the_operation_with_the_error_and_consumes_the_message(
        env: Aws, stack_env: Emulator, log_output: io.StringIO, status: int) -> None:
    op_id = _submit()
    _fail_upstream(stack_env, status)
    assert _deliver(env, "completion", _receive(env, "completion")) == {"processed": 1, "outcomes": {"failed": 1}}
    read = _get(op_id)
    assert read["done"] is True and "response" not in read
    assert read["error"]["message"].endswith(f": emulated fault {status}") and read["error"]["code"] != 0
    assert _store().active_ids() == []
    assert _lines(log_output, "operation failed permanently")[-1]["operation_id"] == op_id


def test_429_is_transient(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    _fail_upstream(stack_env, 429)
    with pytest.raises(worker.RedeliverError):
        _deliver(env, "completion", _receive(env, "completion"))
    assert _task(op_id)["state"] == "queued" and _get(op_id)["done"] is False
    assert _task(op_id)["last_error"].startswith("RESOURCE_EXHAUSTED: ")


def test_a_bug_on_one_message_gives_its_task_back_and_its_batch_mates_go_on(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    broken, fine = _submit(), _submit()
    _store().put_object(jobs.payload_key(broken, 0), b"not json")
    messages = sorted(_receive(env, "completion"), key=lambda m: json.loads(m.body)["op"] != broken)
    with pytest.raises(worker.RedeliverError, match="1 of 2 messages need another delivery: JSONDecodeError: "):
        _deliver(env, "completion", messages)
    assert _get(fine)["done"] is True and _get(broken)["done"] is False
    assert _task(broken)["state"] == "queued" and _task(broken)["last_error"].startswith("JSONDecodeError: Expecting")
    warning = _lines(log_output, "message will be redelivered")[-1]
    assert warning["reason"].startswith("JSONDecodeError: ") and warning["message_index"] == 0
    assert "Traceback" in warning["exc_info"]  # a bug: logged with where it happened
    assert _lines(log_output, "batch failed; the trigger will redeliver it")[-1]["outcomes"] == {"retry": 1, "done": 1}


@pytest.mark.parametrize("body", ["not json", '{"op": "fmo0000000000none"}', '{"task": 0}', '["fmo0000000000none", 0]',
                                  '{"op": "NOT-AN-ID", "task": 0}', '{"op": "fmo0000000000none", "task": -1}',
                                  '{"op": "fmo0000000000none", "task": "x"}'])
def test_a_message_that_is_no_job_reference_is_redelivered_and_named(env: Aws, stack_env: Emulator, body: str) -> None:
    messages = _send(env, "completion", [body])
    with pytest.raises(worker.RedeliverError) as raised:
        _deliver(env, "completion", messages)
    assert f"message body is not a job reference: {body[:200]!r}" in str(raised.value)
    assert stack_env.calls("/completion") == []


def test_a_message_for_an_unknown_operation_is_consumed(env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    messages = _send(env, "completion", ['{"op": "fmo0000000000none", "task": 0}'])
    assert _deliver(env, "completion", messages) == {"processed": 1, "outcomes": {"unknown": 1}}
    line = _lines(log_output, "message for an unknown operation consumed")[-1]
    assert line["operation_id"] == "fmo0000000000none" and line["level"] == "ERROR"
    assert stack_env.calls("/completion") == []


def test_the_task_number_zero_is_a_job_reference(env: Aws) -> None:
    op_id = _submit()
    messages = _send(env, "completion", [json.dumps({"op": op_id, "task": 0, "extra": 1})])
    assert _deliver(env, "completion", messages[:1])["outcomes"] == {"done": 1}


# -- the invocation's deadline --------------------------------------------------------------------------

def test_messages_without_time_left_are_sent_again_on_fresh_messages_and_the_batch_is_consumed(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    first, second = _submit(), _submit()
    messages = _receive(env, "completion")
    result = _deliver(env, "completion", messages, remaining_ms=5_400)  # 4.9 s left: less than a message needs
    assert result == {"processed": 2, "outcomes": {"deferred-deadline": 2}}
    assert stack_env.calls("/completion") == []
    again = _receive(env, "completion")
    assert sorted(m.body for m in again) == sorted(m.body for m in messages)
    assert all(m.attributes.get("ApproximateReceiveCount") == "1" for m in again)  # fresh: no receive counted
    assert _lines(log_output, "messages deferred at the deadline sent again")[-1]["messages"] == 2
    assert _summary(log_output)["outcomes"] == {"deferred-deadline": 2}
    assert {_get(first)["done"], _get(second)["done"]} == {False}


def test_with_exactly_the_time_a_message_needs_it_is_taken(env: Aws) -> None:
    op_id = _submit()
    assert _deliver(env, "completion", _receive(env, "completion"), remaining_ms=5_500)["outcomes"] == {"done": 1}
    assert _get(op_id)["done"] is True


def test_time_running_out_mid_batch_defers_only_the_rest(env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    first, second = _submit(), _submit()
    messages = sorted(_receive(env, "completion"), key=lambda m: json.loads(m.body)["op"] != first)
    _fail_upstream(stack_env, 429, count=1, retryAfter=1)  # the first message's call waits 1 s, then succeeds
    result = _deliver(env, "completion", messages, remaining_ms=6_000)
    assert result == {"processed": 2, "outcomes": {"done": 1, "deferred-deadline": 1}}
    assert _get(first)["done"] is True and _get(second)["done"] is False
    assert [json.loads(m.body)["op"] for m in _receive(env, "completion")] == [second]


def test_deferred_messages_go_back_with_the_batch_when_another_needs_a_retry(
        env: Aws, stack_env: Emulator) -> None:
    first, second = _submit(), _submit()
    jobs_ = sorted(_receive(env, "completion"), key=lambda m: json.loads(m.body)["op"] != first)
    messages = _send(env, "completion", ["garbage"]) + jobs_
    _fail_upstream(stack_env, 429, count=1, retryAfter=1)  # the first job's call waits 1 s, then succeeds
    with pytest.raises(worker.RedeliverError, match="^2 of 3 messages need another delivery: message body is not"):
        _deliver(env, "completion", messages, remaining_ms=6_000)
    assert _get(first)["done"] is True and _get(second)["done"] is False
    assert _receive(env, "completion") == []  # the deferred one goes back with the batch, not on a fresh message


def test_deferred_messages_the_queue_refuses_go_back_with_the_batch(env: Aws, log_output: io.StringIO) -> None:
    _submit()
    messages = _receive(env, "completion")
    env.queues.call("DeleteQueue", env.resources.queues["completion"], {})
    with pytest.raises(worker.RedeliverError, match="^1 of 1 messages need another delivery: deadline$"):
        _deliver(env, "completion", messages, remaining_ms=5_400)
    line = _lines(log_output, "could not send deferred messages again; the batch goes back to the queue")[-1]
    assert line["messages"] == 1 and line["reason"]


def test_dead_letters_without_time_left_go_back_with_their_batch(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    assert len(_receive(env, "completion")) == 1  # its message taken; what reaches the dead-letter queue is below
    messages = _send(env, "completion-dlq", [json.dumps({"op": op_id, "task": 0})] * 2)
    with pytest.raises(worker.RedeliverError, match="^2 of 2 messages need another delivery: deadline$"):
        _deliver(env, "completion", messages, remaining_ms=5_400, dead=True)
    assert _receive(env, "completion") == []  # given back, not sent again
    assert _store().item(op_id)["state"] == "queued"
