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
from shared import logs
from shared.config import Settings
from shared.jobs import store as jobs
from shared.jobs import worker
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext, configure

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
    """Hand these messages to the kind's function as one trigger event, on an instance that has not used its
    job store yet (as a fresh one would); what it returned (or raised)."""
    jobs.reset_job_store()
    queue = f"{kind}-dlq" if dead else kind
    event = ymq_event(messages, aws.resources.arns[queue])
    return FUNCTIONS[kind].handler(event, FakeContext(remaining_ms=remaining_ms))


def _store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


def _lines(output: io.StringIO, message: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in output.getvalue().splitlines() if f'"{message}"' in x]


RESENT = ("a task that failed fewer than JOB_MAX_DELIVERIES starts reached the dead-letter queue; sent again")


def _summary(output: io.StringIO) -> dict[str, Any]:
    return [line for line in _lines(output, "request handled") if line.get("operation") == "consume"][-1]


def _task(op_id: str, number: int = 0) -> dict[str, Any]:
    return _store().item(jobs.task_id(op_id, number)) or {}


def _send(aws: Aws, queue: str, bodies: list[str]) -> list[Any]:
    for body in bodies:
        aws.queues.send(aws.resources.queues[queue], body)
    return _receive(aws, queue)


def _record_sends(aws: Aws) -> list[tuple[Any, str | None]]:
    """What the queue is asked to send one message at a time (SendMessage): (body, DelaySeconds)."""
    from urllib.parse import parse_qs

    sent: list[tuple[Any, str | None]] = []

    def middleware(app: Any) -> Any:
        def recorder(environ: dict[str, Any], start_response: Any) -> Any:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            if form.get("Action") == "SendMessage":
                sent.append((json.loads(form["MessageBody"]), form.get("DelaySeconds")))
            return app(environ, start_response)
        return recorder

    aws.wrap(middleware)
    return sent


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
    done = _lines(log_output, "operation done")[-1]
    assert (done["operation_id"], done["result_bytes"], done["tasks"]) == (op_id, _store().item(op_id)["result_size"], 1)
    summary = _summary(log_output)
    assert (summary["operation"], summary["messages"], summary["outcomes"]) == ("consume", 1, {"done": 1})
    assert (summary["operation_id"], summary["task"]) == (op_id, 0)  # what the worker's lines are bound to
    (usage,) = [line["usage"] for line in _lines(log_output, "usage")]
    assert (usage["key"], usage["caller"], usage["counted"]) == (f"{op_id}#0#1", "alice", True)
    assert usage["input_tokens"] == int(response["usage"]["inputTextTokens"]) > 0


def test_a_message_that_is_no_job_reference_is_named_by_its_first_200_characters() -> None:
    body = "x" * 199 + "yz" + "w" * 100
    with pytest.raises(worker.RedeliverError) as raised:
        worker._parse(body)
    assert str(raised.value) == f"message body is not a job reference: {body[:200]!r}" and "z" not in str(raised.value)


def test_finishing_an_operation_that_is_gone_does_nothing(env: Aws) -> None:
    """An operation whose record is gone (deleted, expired) when its last task ends is left alone."""
    store = _store()
    assert worker.finalize("fmo00000000gone01", store, Settings.from_env()) is None
    assert store.item("fmo00000000gone01") is None


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
    assert [line["usage"]["key"] for line in _lines(log_output, "usage")] == [f"{op_id}#0#2"]  # the second start


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

@pytest.mark.parametrize("status", [503, 500])
def test_a_transient_upstream_failure_gives_the_task_back_with_the_reason_and_fails_the_invocation(
        env: Aws, stack_env: Emulator, log_output: io.StringIO, status: int) -> None:
    op_id = _submit()
    messages = _receive(env, "completion")
    _fail_upstream(stack_env, status)
    with pytest.raises(worker.RedeliverError, match=f"^1 of 1 messages need another delivery: .*emulated fault {status}$"):
        _deliver(env, "completion", messages)
    task, operation = _task(op_id), _store().item(op_id)
    assert task["state"] == "queued" and task["attempts"] == 1
    assert task["last_error"].endswith(f": emulated fault {status}") and task["last_error"].split(":")[0].isupper()
    assert operation["last_error"] == task["last_error"]
    assert operation["state"] != "done" and _get(op_id)["done"] is False
    warning = _lines(log_output, "message will be redelivered")[-1]
    assert warning["reason"].endswith(f": emulated fault {status}") and warning["message_index"] == 0
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
    line = _lines(log_output, "operation failed permanently")[-1]
    assert line["operation_id"] == op_id and line["error"].endswith(f"emulated fault {status}")


def test_a_long_upstream_error_is_cut_in_the_logs_and_the_invocations_error(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _submit()
    stack_env.fault(path="/foundationModels/v1/completion", status=503, count=-1, message="m" * 1500)
    with pytest.raises(worker.RedeliverError) as raised:
        _deliver(env, "completion", _receive(env, "completion"))
    reason = str(raised.value).removeprefix("1 of 1 messages need another delivery: ")
    assert len(reason) == 200 and reason.startswith("Error in session request_id=")
    assert len(_lines(log_output, "message will be redelivered")[-1]["reason"]) == 300
    assert len(_task(op_id)["last_error"]) == 1000  # the store keeps 1000 characters of it


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
                                  '{"op": "fmo0000000000none", "task": "x"}', "x" * 300])
def test_a_message_that_is_no_job_reference_is_redelivered_and_named(env: Aws, stack_env: Emulator, body: str,
                                                                      log_output: io.StringIO) -> None:
    messages = _send(env, "completion", [body])
    with pytest.raises(worker.RedeliverError) as raised:
        _deliver(env, "completion", messages)
    reason = f"message body is not a job reference: {body[:200]!r}"
    assert str(raised.value) == f"1 of 1 messages need another delivery: {reason[:200]}"
    assert _lines(log_output, "message will be redelivered")[-1]["reason"] == reason
    assert stack_env.calls("/completion") == []


def test_a_message_for_an_unknown_operation_is_consumed(env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    body = json.dumps({"op": "fmo0000000000none", "task": 0, "pad": "x" * 600})
    messages = _send(env, "completion", [body])
    assert _deliver(env, "completion", messages) == {"processed": 1, "outcomes": {"unknown": 1}}
    line = _lines(log_output, "message for an unknown operation consumed")[-1]
    assert line["operation_id"] == "fmo0000000000none" and line["level"] == "ERROR" and line["body"] == body[:500]
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
    from shared import errors
    from shared.jobs import submit

    with pytest.raises(errors.ApiError) as refused:  # what the queue answers such a send
        submit.send_bodies(Settings.from_env(), "completion", [messages[0].body])
    assert line["messages"] == 1 and line["reason"] == str(refused.value)[:300] and "queue" in line["reason"].lower()


def test_dead_letters_without_time_left_go_back_with_their_batch(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    assert len(_receive(env, "completion")) == 1  # its message taken; what reaches the dead-letter queue is below
    messages = _send(env, "completion-dlq", [json.dumps({"op": op_id, "task": 0})] * 2)
    with pytest.raises(worker.RedeliverError, match="^2 of 2 messages need another delivery: deadline$"):
        _deliver(env, "completion", messages, remaining_ms=5_400, dead=True)
    assert _receive(env, "completion") == []  # given back, not sent again
    assert _store().item(op_id)["state"] == "queued"


# -- the dead-letter queue --------------------------------------------------------------------------------

def _failed_start(env: Aws, emulator: Emulator, op_id: str, times: int = 1) -> None:
    """Start the job's task `times` times, each failing upstream with a 503 (the task is given back)."""
    _fail_upstream(emulator, 503)
    for _ in range(times):
        with pytest.raises(worker.RedeliverError):
            _deliver(env, "completion", _send(env, "completion", [json.dumps({"op": op_id, "task": 0})]))
    emulator.post("/_emulator/reset", {})


def _dead(env: Aws, op_id: str, number: int = 0, kind: str = "completion") -> dict[str, Any]:
    return _deliver(env, kind, _send(env, f"{kind}-dlq", [json.dumps({"op": op_id, "task": number})]), dead=True)


def test_a_task_that_failed_job_max_deliveries_starts_ends_its_operation_with_the_last_error(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "2")
    op_id = _submit()
    _receive(env, "completion")
    _failed_start(env, stack_env, op_id, times=2)
    assert _dead(env, op_id) == {"processed": 1, "outcomes": {"dead-failed": 1}}
    error = _get(op_id)["error"]
    last = _task(op_id)["last_error"]
    assert error == {"code": 14, "details": [],
                     "message": f"gave up on task 0 after 2 failed starts (JOB_MAX_DELIVERIES 2; dead-letter queue); "
                                f"last error: {last}"}
    assert last.endswith("emulated fault 503")
    assert _store().active_ids() == [] and _receive(env, "completion") == []
    line = _lines(log_output, "operation failed: its task reached the dead-letter queue")[-1]
    assert (line["operation_id"], line["task"], line["level"]) == (op_id, 0, "WARN")


def test_a_task_that_failed_fewer_starts_is_sent_again_and_counted(
        env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    op_id = _submit()
    _receive(env, "completion")
    _failed_start(env, stack_env, op_id, times=1)
    messages = _send(env, "completion-dlq", [json.dumps({"op": op_id, "task": 0})])
    assert _deliver(env, "completion", messages, dead=True) == {"processed": 1, "outcomes": {"dead-requeued": 1}}
    assert [json.loads(m.body) for m in _receive(env, "completion")] == [{"op": op_id, "task": 0}]
    assert _store().item(op_id)["dead_letter_resends"] == 1 and _get(op_id)["done"] is False
    line = _lines(log_output, RESENT)[-1]
    assert (line["operation_id"], line["task"], line["failed_starts"]) == (op_id, 0, 1)
    assert line["receives"] == messages[0].attributes["ApproximateReceiveCount"]


def test_a_resend_without_receive_count_says_several(env: Aws, log_output: io.StringIO) -> None:
    op_id = _submit()
    event = ymq_event(_send(env, "completion-dlq", [json.dumps({"op": op_id, "task": 0})]),
                      env.resources.arns["completion-dlq"])
    event["messages"][0]["details"]["message"]["attributes"] = {}
    completion_function.handler(event, FakeContext())
    assert _lines(log_output, RESENT)[-1]["receives"] == "several"


def test_a_task_never_started_within_the_window_ends_as_never_run(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "120")
    op_id = _submit()
    _receive(env, "completion")
    clock.advance(119)
    assert _dead(env, op_id)["outcomes"] == {"dead-requeued": 1}
    clock.advance(1)  # exactly JOB_QUEUE_WINDOW_S after its submission: the window has passed
    assert _dead(env, op_id)["outcomes"] == {"dead-expired": 1}
    error = _get(op_id)["error"]
    assert error == {"code": 4, "details": [], "message": (
        "gave up on task 0 never started: no worker took it within JOB_QUEUE_WINDOW_S (120 s) of its submission "
        "(its message was received but not run: the functions were busy or throttled)")}
    assert _store().active_ids() == []


def test_a_task_not_finished_within_the_window_of_its_last_start_ends_naming_its_failed_starts(
        env: Aws, stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        log_output: io.StringIO) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "120")
    op_id = _submit()
    _receive(env, "completion")
    clock.advance(100)
    _failed_start(env, stack_env, op_id)  # started at +100 s (plus its retries' waits): the window counts from there
    clock.advance(100)
    assert _dead(env, op_id)["outcomes"] == {"dead-requeued": 1}
    _receive(env, "completion")
    clock.advance(21)
    assert _dead(env, op_id)["outcomes"] == {"dead-expired": 1}
    last = _task(op_id)["last_error"]
    assert _get(op_id)["error"] == {"code": 4, "details": [], "message": (
        f"gave up on task 0 not finished within JOB_QUEUE_WINDOW_S (120 s) of its last start, after 1 failed "
        f"starts (fewer than JOB_MAX_DELIVERIES 3); last error: {last}")}
    line = _lines(log_output, "operation failed: its task was not run in time")[-1]
    assert (line["operation_id"], line["task"], line["level"]) == (op_id, 0, "WARN")


def test_a_task_under_a_live_lease_is_sent_again_even_past_the_window(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    op_id = _submit()
    _receive(env, "completion")
    clock.advance(61)
    _store().claim(op_id, 0, "slow-worker", 100)
    clock.advance(61)  # past the window since its start too, but its lease is live: the worker may still finish
    assert _dead(env, op_id)["outcomes"] == {"dead-requeued": 1}
    clock.advance(39)  # the lease runs out now: that start failed (1 of 3: the aws_jobs queues' maxReceiveCount), and the window has passed
    assert _dead(env, op_id)["outcomes"] == {"dead-expired": 1}
    assert "after 1 failed starts" in _get(op_id)["error"]["message"]
    assert "last error: none recorded (the worker may have crashed or timed out)" in _get(op_id)["error"]["message"]


def test_dead_letters_for_finished_or_unknown_work_are_consumed(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    done = _submit()
    _deliver(env, "completion", _receive(env, "completion"))
    assert _dead(env, done)["outcomes"] == {"dead-skipped": 1}
    assert _dead(env, "fmo0000000000none")["outcomes"] == {"dead-skipped": 1}
    half = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["one", "two"]})
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    _deliver(env, "embedding", messages[:1])
    assert _dead(env, half, 0, kind="embedding")["outcomes"] == {"dead-skipped": 1}
    assert _get(half)["done"] is False and _receive(env, "embedding") == []
    garbage = "garbage " * 300
    # a value another test in this process registered as a secret (test_auth's key file whose private_key is
    # "garbage") would be redacted from the line: this promise is about the body, so no secret is registered here
    monkeypatch.setattr(logs, "_secrets", set())
    event = ymq_event(_send(env, "completion-dlq", [garbage]), env.resources.arns["completion-dlq"])
    assert completion_function.handler(event, FakeContext())["outcomes"] == {"dead-unreadable": 1}
    line = _lines(log_output, "unreadable message reached the dead-letter queue; consumed")[-1]
    assert line["body"] == garbage[:2000] and line["queue_message"]["body"] == garbage and line["level"] == "ERROR"


def test_the_last_task_done_through_a_dead_letter_finishes_its_operation(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["one", "two"]})
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    _deliver(env, "embedding", messages)
    store = _store()
    store._update(op_id, "SET #state = :running", {":running": {"S": "running"}})  # as if it crashed before the finish
    assert _dead(env, op_id, 1, kind="embedding")["outcomes"] == {"dead-skipped": 1}
    assert _get(op_id)["done"] is True


# -- what each kind's result is ---------------------------------------------------------------------------

def test_a_classification_answers_with_upstreams_predictions(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit("classification", CLASSIFY)
    assert _deliver(env, "classification", _receive(env, "classification"))["outcomes"] == {"done": 1}
    response = _get(op_id)["response"]
    upstream = stack_env.calls("fewShotTextClassification")
    assert len(upstream) == 1
    assert response["@type"] == "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.FewShotTextClassificationResponse"
    assert [p["label"] for p in response["predictions"]] == ["alarm", "weather"] and response["modelVersion"]


def test_embedding_tasks_are_joined_in_order_into_one_response(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "2")
    texts = ["alpha", "beta gamma", "delta epsilon zeta"]
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": texts, "dim": 8})
    messages = sorted(_receive(env, "embedding"), key=lambda m: -json.loads(m.body)["task"])  # the last one first
    assert _deliver(env, "embedding", messages)["outcomes"] == {"done": 2}
    response = _get(op_id)["response"]
    singles = []
    for text in texts:
        single = _submit("embedding", {"modelUri": "text-search-doc", "text": text, "dim": 8})
        _deliver(env, "embedding", _receive(env, "embedding"))
        singles.append(_get(single)["response"])
    assert response["@type"] == "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.TextEmbeddingBatchResponse"
    assert response["embeddings"] == [s["embeddings"][0] for s in singles]
    assert all(len(e) == 8 for e in response["embeddings"])
    assert response["numTokens"] == str(sum(int(s["numTokens"]) for s in singles)) and int(response["numTokens"]) > 3
    assert response["modelVersion"] == singles[0]["modelVersion"] != ""
    record = _store().item(op_id)
    assert record["result_key"] == f"results/{op_id}/response.json"
    assert record["result_size"] == len(_store().get_object(record["result_key"]))
    texts_sent = sorted(c["body"]["text"] for c in stack_env.calls("textEmbedding"))
    assert texts_sent == sorted(texts * 2)


def test_a_result_is_inline_up_to_result_inline_max_bytes_and_a_link_beyond(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    op_id = _submit()
    _deliver(env, "completion", _receive(env, "completion"))
    record = _store().item(op_id)
    data = _store().get_object(record["result_key"])
    assert record["result_size"] == len(data) and json.loads(data) == _get(op_id)["response"]
    configure(env, monkeypatch, RESULT_INLINE_MAX_BYTES=str(len(data)))
    assert _get(op_id)["response"] == json.loads(data)
    configure(env, monkeypatch, RESULT_INLINE_MAX_BYTES=str(len(data) - 1))
    assert record["result_key"] in json.dumps(_get(op_id)["response"])


def test_a_door_jobs_embedding_requests_fail_alone_and_the_door_finishes_it(
        env: Aws, stack_env: Emulator) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    uri = "emb://b1gtestfolder/text-search-doc/latest"
    requests = [{"texts": ["one", "two"], "dim": 8}, {"texts": ["refused"]}, {"texts": []}, {"texts": ["three"]}]
    submit.submit_tasks("embedding", [{"modelUri": uri, "requests": requests}], inv, op_id="fmo0000000door02",
                        extra={"door": "openai"})
    _fail_upstream(stack_env, 400, path="/foundationModels/v1/textEmbedding", bodyContains="refused")
    assert _deliver(env, "embedding", _receive(env, "embedding"))["outcomes"] == {"done": 1}
    store = _store()
    (key,) = store.task_result_keys("fmo0000000door02", 1)
    answers = json.loads(store.get_object(key))["requests"]
    assert answers[1]["error"]["message"].endswith("emulated fault 400") and set(answers[1]) == {"error"}
    assert answers[2] == {"embeddings": [], "numTokens": "0", "modelVersion": ""}
    assert [len(e) for e in answers[0]["embeddings"]] == [8, 8] and len(answers[3]["embeddings"]) == 1
    assert int(answers[0]["numTokens"]) == 2 and answers[0]["modelVersion"] and answers[3]["modelVersion"]
    assert "dim" not in next(c for c in stack_env.calls("textEmbedding") if c["body"]["text"] == "three")["body"]
    assert store.item("fmo0000000door02")["state"] != "done"  # its own door (the poller) finishes it


def test_a_door_jobs_task_whose_requests_hold_no_text_is_done_without_upstream(env: Aws, stack_env: Emulator) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    uri = "emb://b1gtestfolder/text-search-doc/latest"
    submit.submit_tasks("embedding", [{"modelUri": uri, "requests": [{"texts": []}, {"texts": []}]}], inv,
                        op_id="fmo0000000door04", extra={"door": "openai"})
    assert _deliver(env, "embedding", _receive(env, "embedding"))["outcomes"] == {"done": 1}
    (key,) = _store().task_result_keys("fmo0000000door04", 1)
    assert json.loads(_store().get_object(key))["requests"] == [{"embeddings": [], "numTokens": "0",
                                                                 "modelVersion": ""}] * 2
    assert stack_env.calls("textEmbedding") == []


@pytest.mark.parametrize("status", [503, 500, 429])
def test_a_door_jobs_transient_failure_gives_the_whole_task_back(env: Aws, stack_env: Emulator, status: int) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    uri = "emb://b1gtestfolder/text-search-doc/latest"
    submit.submit_tasks("embedding", [{"modelUri": uri, "requests": [{"texts": ["one"]}, {"texts": ["two"]}]}],
                        inv, op_id="fmo0000000door03", extra={"door": "openai"})
    _fail_upstream(stack_env, status, path="/foundationModels/v1/textEmbedding", bodyContains="two")
    with pytest.raises(worker.RedeliverError):
        _deliver(env, "embedding", _receive(env, "embedding"))
    task = _task("fmo0000000door03")
    assert task["state"] == "queued" and task["last_error"].endswith(f"emulated fault {status}")


# -- a key with a budget: what its job holds is settled by the worker ---------------------------------------

LIMITED = json.dumps({"name": "alice", "monthly_tokens": 100000})


def _limited_submit() -> tuple[str, str, int]:
    event = _event("POST", f"{FM}/completionAsync", {**COMPLETION, "completionOptions": {"maxTokens": "50"}})
    event["requestContext"]["authorizer"]["policy"] = LIMITED
    answer = completion_function.handler(event, FakeContext())
    assert answer["statusCode"] == 200, answer
    op_id = json.loads(answer["body"])["id"]
    store = _store()
    held = json.loads(store.item(op_id)["limits"])["parts"]["t0"][0]
    (month,) = [i["id"]["S"] for i in store.db.scan(TableName="jobs", ConsistentRead=True)["Items"]
                if i["id"]["S"].startswith("limits#alice#")]
    assert store.item(month)["used_t"] == held > 0
    return op_id, month, held


def test_a_limited_keys_job_is_settled_to_what_upstream_used(env: Aws) -> None:
    op_id, month, held = _limited_submit()
    _deliver(env, "completion", _receive(env, "completion"))
    used = int(_get(op_id)["response"]["usage"]["totalTokens"])
    assert _store().item(month)["used_t"] == used != held


def test_a_limited_keys_job_that_failed_gives_its_reservation_back(env: Aws, stack_env: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    op_id, month, _ = _limited_submit()
    _fail_upstream(stack_env, 400, count=1)
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"failed": 1}
    assert _store().item(month)["used_t"] == 0
    dead, month, held = _limited_submit()
    assert _store().item(month)["used_t"] == held
    _receive(env, "completion")
    _failed_start(env, stack_env, dead)
    assert _dead(env, dead)["outcomes"] == {"dead-failed": 1}
    assert _store().item(month)["used_t"] == 0


# -- a batch's chunks ----------------------------------------------------------------------------------

def _batch(n: int) -> str:
    body = {"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"r{i}", "messages": [{"role": "user", "text": f"question {i}"}]} for i in range(n)]}
    answer = completion_function.handler(_event("POST", f"{FM}/completionBatch", body), FakeContext())
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])["id"]


def test_a_batch_chunk_starts_each_request_upstream_once(env: Aws, stack_env: Emulator) -> None:
    op_id = _batch(3)
    messages = _receive(env, "completion")
    assert _deliver(env, "completion", messages)["outcomes"] == {"done": 1}
    assert _deliver(env, "completion", messages)["outcomes"] == {"skipped": 1}
    assert len(stack_env.calls("/completionAsync")) == 3
    store = _store()
    assert json.loads(store.get_object(_task(op_id)["result_key"])) == {"started": 3, "refused": 0}
    assert sorted(r["custom_id"] for r in store.items(op_id, [0, 1, 2]).values()) == ["r0", "r1", "r2"]
    assert store.item(op_id)["state"] != "done"  # the poller finishes a batch


def test_a_batch_chunk_past_the_hourly_start_quota_comes_back_later_without_using_a_delivery(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_ASYNC_START_PER_HOUR", "2")
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    sent = _record_sends(env)
    op_id = _batch(3)
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"deferred": 1}
    task = _task(op_id)
    assert (task["state"], task["attempts"], task["deferrals"]) == ("queued", 1, 1)
    assert task["last_error"] == "QuotaDeferred: hourly start quota (2) reached"
    assert jobs.failed_starts(task, 0) == 0
    counts = env.queues.attributes(env.resources.queues["completion"], ("ApproximateNumberOfMessagesDelayed",))
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    assert sent == [({"op": op_id, "task": 0}, "900")]  # a quarter of an hour later
    assert len(stack_env.calls("/completionAsync")) == 2
    clock.advance(61)  # no start of its own failed: past the window it ends as not finished, after 0 failed starts
    assert _dead(env, op_id)["outcomes"] == {"dead-chunk-failed": 1}
    (record,) = [r for r in _store().items(op_id, [0, 1, 2]).values() if r.get("failed")]
    assert json.loads(record["outcome"]) == {"code": 4, "details": [], "message": (
        "not started: gave up on its chunk (task 0) not finished within JOB_QUEUE_WINDOW_S (60 s) of its last start, "
        "after 0 failed starts (fewer than JOB_MAX_DELIVERIES 3); last error: QuotaDeferred: hourly start quota (2) "
        "reached")}


def test_a_dead_batch_chunk_fails_only_its_unstarted_requests_and_the_batch_goes_on(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    op_id = _batch(3)
    messages = _receive(env, "completion")
    _fail_upstream(stack_env, 503, path="/foundationModels/v1/completionAsync", after=1)  # the first one starts
    with pytest.raises(worker.RedeliverError):
        _deliver(env, "completion", messages)
    stack_env.post("/_emulator/reset", {})
    last = _task(op_id)["last_error"]
    assert _dead(env, op_id)["outcomes"] == {"dead-chunk-failed": 1}
    store = _store()
    records = store.items(op_id, [0, 1, 2])
    failed = [r for r in records.values() if r.get("failed")]
    assert len(failed) == 2 and len(records) == 3
    reason = json.loads(failed[0]["outcome"])
    assert reason == {"code": 14, "details": [], "message": (
        f"not started: gave up on its chunk (task 0) after 1 failed starts (JOB_MAX_DELIVERIES 1; dead-letter queue); "
        f"last error: {last}")}
    task = _task(op_id)
    assert task["state"] == "done" and task["worker"].endswith("/0")
    assert float(task["lease_until"]) - float(task["started_at"]) == pytest.approx(59.5 + 30, abs=0.01)
    assert json.loads(store.get_object(task["result_key"])) == {"started": 0, "deadLettered": 2}
    assert store.item(op_id)["state"] != "done" and op_id in store.active_ids()
    line = _lines(log_output, "batch chunk failed: its message reached the dead-letter queue; the rest of the batch "
                              "goes on")[-1]
    assert (line["operation_id"], line["task"], line["requests_failed"]) == (op_id, 0, 2)
    assert _dead(env, op_id)["outcomes"] == {"dead-skipped": 1}


def test_a_dead_batch_chunk_held_by_a_live_worker_waits_for_it(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    op_id = _batch(2)
    _receive(env, "completion")
    store = _store()
    store.claim(op_id, 0, "dead-worker", 10)
    clock.advance(11)  # its lease ran out: one failed start
    store.claim(op_id, 0, "dead-worker-2", 100)
    clock.advance(11)
    store._update(jobs.task_id(op_id, 0), "SET attempts = :n", {":n": {"N": "3"}})
    with pytest.raises(worker.RedeliverError, match=f"task 0 of {op_id} is being processed by another worker"):
        _dead(env, op_id)
    assert store.items(op_id, [0, 1]) == {}


@pytest.fixture
def proto3_embeddings(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's embedding answers for a text holding "sparse" as upstream's proto3 JSON writes a zero
    count: without numTokens (and, for this test, without modelVersion)."""
    from local import emulator as emulator_module

    route = emulator_module.Handler._route

    def sparse(self: Any, method: str, path: str, raw: bytes) -> Any:
        body = route(self, method, path, raw)
        if path.endswith("/textEmbedding") and isinstance(body, dict) and b"sparse" in raw:
            body = {k: v for k, v in body.items() if k not in ("numTokens", "modelVersion")}
        return body

    monkeypatch.setattr(emulator_module.Handler, "_route", sparse)


def test_an_embedding_answer_without_zero_valued_fields_counts_no_tokens(
        env: Aws, proto3_embeddings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    uri = "emb://b1gtestfolder/text-search-doc/latest"
    submit.submit_tasks("embedding", [{"modelUri": uri, "requests": [{"texts": ["sparse", "sparse"]}, {"texts": ["sparse", "one"]}]}],
                        inv, op_id="fmo0000000door05", extra={"door": "openai"})
    _deliver(env, "embedding", _receive(env, "embedding"))
    (key,) = _store().task_result_keys("fmo0000000door05", 1)
    answers = json.loads(_store().get_object(key))["requests"]
    assert [(a.get("numTokens"), a.get("modelVersion")) for a in answers] == [("0", ""), ("1", "")], answers
    assert [len(a["embeddings"]) for a in answers] == [2, 2]
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["sparse", "two"]})
    _deliver(env, "embedding", _receive(env, "embedding"))
    response = _get(op_id)["response"]
    assert response["numTokens"] == "1" and len(response["embeddings"]) == 2 and response["modelVersion"] == ""


@pytest.mark.parametrize("failed_before", [True, False])
def test_a_dead_batch_chunk_the_store_refuses_to_fail_goes_back_keeping_its_reason(
        env: Aws, stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        failed_before: bool) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    op_id = _batch(2)
    messages = _receive(env, "completion")
    if failed_before:
        _fail_upstream(stack_env, 503, path="/foundationModels/v1/completionAsync")
        with pytest.raises(worker.RedeliverError):
            _deliver(env, "completion", messages)
    else:
        clock.advance(61)  # never started within the window
    before = _task(op_id).get("last_error")
    assert bool(before) is failed_before
    env.refuse_next("PutItem", 100)  # every request's failure record is refused
    with pytest.raises(worker.RedeliverError):
        _dead(env, op_id)
    env.restore()
    task = _task(op_id)
    assert task["state"] == "queued"
    assert task["last_error"] == (before if failed_before else "dead-letter handling failed")
    assert _store().items(op_id, [0, 1]) == {}


def test_a_dead_batch_chunk_whose_payload_is_unreadable_fails_its_requests_by_position(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    op_id = _batch(3)
    _receive(env, "completion")
    store = _store()
    store.put_object(jobs.payload_key(op_id, 0), b"not json")
    clock.advance(61)
    assert _dead(env, op_id)["outcomes"] == {"dead-chunk-failed": 1}
    records = store.items(op_id, [0, 1, 2])
    assert sorted((i, r["custom_id"], r["failed"]) for i, r in records.items()) == [
        (0, "0", True), (1, "1", True), (2, "2", True)]
    assert json.loads(records[0]["outcome"])["message"].startswith("not started: gave up on its chunk (task 0) never "
                                                                    "started: no worker took it within")


def _door_completion(op_id: str) -> None:
    from shared import runtime
    from shared.jobs import submit

    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    payload = {"modelUri": "gpt://b1gtestfolder/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "hi"}]}
    submit.submit_tasks("completion", [payload], inv, op_id=op_id, extra={"door": "openai"})


def test_a_door_job_that_failed_stays_indexed_for_its_door_to_settle(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    _door_completion("fmo0000000door06")
    _fail_upstream(stack_env, 400, count=1)
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"failed": 1}
    store = _store()
    assert store.item("fmo0000000door06")["state"] == "done" and "fmo0000000door06" in store.active_ids()
    _door_completion("fmo0000000door07")
    _receive(env, "completion")
    _failed_start(env, stack_env, "fmo0000000door07")
    assert _dead(env, "fmo0000000door07")["outcomes"] == {"dead-failed": 1}
    assert store.item("fmo0000000door07")["state"] == "done" and "fmo0000000door07" in store.active_ids()


def test_a_door_jobs_finished_task_leaves_the_operation_to_its_door(env: Aws) -> None:
    _door_completion("fmo0000000door08")
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"done": 1}
    record = _store().item("fmo0000000door08")
    assert record["state"] != "done" and record["tasks_done"] == 1


def test_results_are_stored_as_utf8(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit(body={**COMPLETION, "messages": [{"role": "user", "text": "Расскажи про Волгу"}]})
    _deliver(env, "completion", _receive(env, "completion"))
    record = _store().item(op_id)
    data = _store().get_object(record["result_key"])
    text = _get(op_id)["response"]["alternatives"][0]["message"]["text"]
    assert not text.isascii() and text.encode() in data and record["result_size"] == len(data)


def test_one_text_to_embed_is_answered_as_a_batch_response(env: Aws) -> None:
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "text": "one"})
    _deliver(env, "embedding", _receive(env, "embedding"))
    response = _get(op_id)["response"]
    assert response["@type"] == "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.TextEmbeddingBatchResponse"
    assert len(response["embeddings"]) == 1 and _store().item(op_id)["result_key"] == f"results/{op_id}/response.json"


def test_a_dead_letter_is_sent_again_on_its_own_kinds_queue(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit("classification", CLASSIFY)
    _receive(env, "classification")
    assert _dead(env, op_id, kind="classification")["outcomes"] == {"dead-requeued": 1}
    assert [json.loads(m.body) for m in _receive(env, "classification")] == [{"op": op_id, "task": 0}]
    assert _receive(env, "completion") == []


def test_a_dead_letter_without_its_message_is_consumed_as_unreadable(env: Aws, log_output: io.StringIO) -> None:
    event = {"messages": [{"event_metadata": {"event_type": "yandex.cloud.events.messagequeue.QueueMessage"},
                           "details": {"queue_id": env.resources.arns["completion-dlq"]}}]}
    assert completion_function.handler(event, FakeContext())["outcomes"] == {"dead-unreadable": 1}
    line = _lines(log_output, "unreadable message reached the dead-letter queue; consumed")[-1]
    assert line["body"] == "" and line["queue_message"] == {}


def test_a_task_whose_payload_is_gone_fails_its_operation_at_once(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    _store().delete_object(jobs.payload_key(op_id, 0))
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"failed": 1}
    error = _get(op_id)["error"]
    assert error["code"] == 5 and error["message"] == f"results bucket: no object {jobs.payload_key(op_id, 0)}"
    assert stack_env.calls("/completion") == []


def test_a_limited_keys_batch_that_failed_keeps_its_reservation_for_the_poller(env: Aws) -> None:
    body = {"modelUri": "yandexgpt-lite", "completionOptions": {"maxTokens": "40"},
            "requests": [{"messages": [{"role": "user", "text": "one"}]}]}
    event = _event("POST", f"{FM}/completionBatch", body)
    event["requestContext"]["authorizer"]["policy"] = LIMITED
    answer = completion_function.handler(event, FakeContext())
    assert answer["statusCode"] == 200, answer
    op_id = json.loads(answer["body"])["id"]
    store = _store()
    (month,) = [i["id"]["S"] for i in store.db.scan(TableName="jobs", ConsistentRead=True)["Items"]
                if i["id"]["S"].startswith("limits#alice#")]
    held = store.item(month)["used_t"]
    store.delete_object(jobs.payload_key(op_id, 0))
    assert _deliver(env, "completion", _receive(env, "completion"))["outcomes"] == {"failed": 1}
    assert store.item(op_id)["state"] == "done" and store.item(month)["used_t"] == held > 0


def test_a_dead_letter_of_a_cancelled_operation_is_consumed(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    _receive(env, "completion")
    answer = operations_function.handler(_event("POST", f"/operations/{op_id}:cancel"), FakeContext())
    assert answer["statusCode"] == 200
    assert _dead(env, op_id)["outcomes"] == {"dead-skipped": 1}
    assert _receive(env, "completion") == [] and "dead_letter_resends" not in _store().item(op_id)
    assert _deliver(env, "completion", _send(env, "completion", [json.dumps({"op": op_id, "task": 0})])) == {
        "processed": 1, "outcomes": {"skipped": 1}}  # nor is it run
    assert stack_env.calls("/completion") == []


def test_a_dead_task_without_its_own_error_reports_its_operations_last_one(
        env: Aws, stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["one", "two"]})
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    _fail_upstream(stack_env, 503, path="/foundationModels/v1/textEmbedding")
    with pytest.raises(worker.RedeliverError):
        _deliver(env, "embedding", messages[1:])  # task 1 fails: the operation's last error
    stack_env.post("/_emulator/reset", {})
    _store().claim(op_id, 0, "a-worker-that-died", 10)
    clock.advance(11)  # task 0's start failed without a word
    assert "last_error" not in _task(op_id, 0)
    assert _dead(env, op_id, 0, kind="embedding")["outcomes"] == {"dead-failed": 1}
    last = _store().item(op_id)["last_error"]
    assert last.endswith("emulated fault 503")
    assert _get(op_id)["error"]["message"] == (f"gave up on task 0 after 1 failed starts (JOB_MAX_DELIVERIES 1; "
                                               f"dead-letter queue); last error: {last}")


def test_classification_tasks_share_the_instances_pace_with_synchronous_requests(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_CLASSIFICATION_RPS", "1")
    op_id = _submit("classification", CLASSIFY)
    answer = classification_function.handler(_event("POST", f"{FM}/fewShotTextClassification", CLASSIFY),
                                             FakeContext())
    assert answer["statusCode"] == 200, answer
    waited = sum(clock.sleeps)
    _deliver(env, "classification", _receive(env, "classification"))
    assert _get(op_id)["done"] is True
    assert sum(clock.sleeps) - waited == pytest.approx(1.0, abs=0.05)  # one request a second, the sync one first


def test_a_job_of_an_unknown_kind_fails_naming_it(env: Aws, stack_env: Emulator, log_output: io.StringIO) -> None:
    _store().create("fmo00000000weird", "weird", "d", "alice", [b"{}"])
    messages = _send(env, "completion", ['{"op": "fmo00000000weird", "task": 0}'])
    assert _deliver(env, "completion", messages)["outcomes"] == {"failed": 1}
    assert _get("fmo00000000weird")["error"] == {"code": 3, "message": "unknown job kind 'weird'", "details": []}
    line = _lines(log_output, "operation failed permanently")[-1]
    assert (line["operation_id"], line["error"]) == ("fmo00000000weird", "unknown job kind 'weird'")


@pytest.fixture
def resultless_completions(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator answers a completion whose text holds "resultless" with 200 and a body without a result."""
    from local import emulator as emulator_module

    route = emulator_module.Handler._route

    def resultless(self: Any, method: str, path: str, raw: bytes) -> Any:
        body = route(self, method, path, raw)
        return {"alternatives": []} if path.endswith("/completion") and b"resultless" in raw else body

    monkeypatch.setattr(emulator_module.Handler, "_route", resultless)


def test_a_completion_answer_without_a_result_gives_the_task_back(env: Aws, resultless_completions: None) -> None:
    op_id = _submit(body={**COMPLETION, "messages": [{"role": "user", "text": "resultless"}]})
    with pytest.raises(worker.RedeliverError, match="upstream completion answer has no result object"):
        _deliver(env, "completion", _receive(env, "completion"))
    assert _task(op_id)["state"] == "queued"
    assert _task(op_id)["last_error"].endswith(": upstream completion answer has no result object")


def test_a_completion_answer_that_is_no_object_gives_the_task_back(env: Aws, stack_env: Emulator) -> None:
    op_id = _submit()
    stack_env.fault(path="/foundationModels/v1/completion", kind="answer", body=["not", "an", "answer"])
    with pytest.raises(worker.RedeliverError, match="upstream completion answer has no result object"):
        _deliver(env, "completion", _receive(env, "completion"))
    assert _task(op_id)["last_error"].endswith(": upstream completion answer has no result object")


def test_a_worker_without_credentials_gives_its_tasks_back(env: Aws, stack_env: Emulator,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime
    from shared.jobs import submit

    op_id = _submit()
    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()), caller="bob")
    submit.submit_tasks("embedding", [{"modelUri": "emb://b1gtestfolder/text-search-doc/latest",
                                       "requests": [{"texts": ["one"]}, {"texts": ["two"]}]}], inv,
                        op_id="fmo0000000door09", extra={"door": "openai"})
    monkeypatch.delenv("YC_API_KEY")  # a misconfigured instance: no credentials at all (a 500, not the task's fault)
    configure(env, monkeypatch)
    for kind, op in (("completion", op_id), ("embedding", "fmo0000000door09")):
        with pytest.raises(worker.RedeliverError):
            _deliver(env, kind, _receive(env, kind))
        task = _task(op)
        assert task["state"] == "queued" and task["last_error"].startswith("UNAUTHENTICATED: "), task
    assert _get(op_id)["done"] is False


def test_a_dead_batch_chunk_finished_by_another_copy_just_before_its_claim_is_left_alone(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_QUEUE_WINDOW_S", "60")
    op_id = _batch(2)
    _receive(env, "completion")
    clock.advance(61)  # past the window: the dead letter would fail the chunk's requests
    task_key = jobs.task_id(op_id, 0)
    raced: list[bool] = []

    def middleware(app: Any) -> Any:
        def racing(environ: dict[str, Any], start_response: Any) -> Any:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            if not raced and b"ADD attempts" in body and task_key.encode() in body:
                raced.append(True)  # another copy of the chunk's message finishes it just before this claim
                _store().set_fields(task_key, {"state": "done"})
            return app(environ, start_response)
        return racing

    env.wrap(middleware)
    assert _dead(env, op_id)["outcomes"] == {"dead-skipped": 1}
    assert raced and _store().items(op_id, [0, 1]) == {}  # none of its requests failed


def test_a_dead_task_reports_its_own_last_error_before_its_operations(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "1")
    monkeypatch.setenv("JOB_MAX_DELIVERIES", "1")
    op_id = _submit("embedding", {"modelUri": "text-search-doc", "texts": ["one", "two"]})
    messages = sorted(_receive(env, "embedding"), key=lambda m: json.loads(m.body)["task"])
    for number, text in ((0, "one"), (1, "two")):
        stack_env.fault(path="/foundationModels/v1/textEmbedding", status=503, count=-1, bodyContains=text,
                        message=f"failure of task {number}")
        with pytest.raises(worker.RedeliverError):
            _deliver(env, "embedding", messages[number:number + 1])
        stack_env.post("/_emulator/reset", {})
    assert _store().item(op_id)["last_error"].endswith("failure of task 1")
    assert _dead(env, op_id, 0, kind="embedding")["outcomes"] == {"dead-failed": 1}
    assert _get(op_id)["error"]["message"].endswith(": failure of task 0")
