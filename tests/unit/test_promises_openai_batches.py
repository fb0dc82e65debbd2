"""What /v1/batches promises (shared/openai/batches.py, batch_output.py and the batch records of batch_store.py),
in process: the operations function is invoked with API Gateway events, the batch's tasks are run by the
completion and embedding functions from real trigger events, the poller is the batch_poller function with a
timer event, the job store and queues are their in-process stand-ins, upstream is the FM emulator, and time is
the test clock (tests/clock.py).

Creating a batch reads the caller's input file and checks every line as the sync route would (each bad line
listed in `errors.data[]` with its line number, the batch `failed`); a good file becomes the engine's job,
`in_progress` at once. Once its work has ended the poller writes the output file (the successes, each with
`request_id` the upstream operation's id) and the error file (the refusals with the sync route's status, an
upstream INTERNAL a 502; the requests never run with batch_cancelled or batch_expired), each file's id chosen
once, `usage` the sum of the lines', the files' expiry set by `output_expires_after`. An embeddings batch
counts its requests as its tasks finish. A batch is the caller's: another caller's, a native job's or an unknown
id is a 404; the listing is newest first in pages of at most 100; cancel answers `cancelling` until the poller
has cancelled upstream and written what finished, then `cancelled`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.batch_poller import handler as poller_function
from functions.completion import handler as completion_function
from functions.embedding import handler as embedding_function
from local.aws import InProcessMoto
from local.triggers import timer_event, ymq_event
from shared.jobs import store as jobs
from shared.openai import batch_store, batches
from tests.clock import ManualClock
from tests.conftest import Aws, Emulator, FakeContext, configure
from tests.unit.test_promises_openai_files import call, refused, store, upload

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

CHAT, EMB = "/v1/chat/completions", "/v1/embeddings"
LITE = "gpt://b1gtestfolder/yandexgpt-lite/latest"
DOC = "emb://b1gtestfolder/text-search-doc/latest"
DAY = 86_400


@pytest.fixture
def env(aws_fast: Aws) -> Aws:
    """The emulator (its async operations done at once), the in-process store and queues, the manual clock."""
    return aws_fast


def chat_line(i: int, text: str | None = None, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"req-{i}", "method": "POST", "url": CHAT,
            "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": text or f"question {i}"}],
                     **body}}


def embedding_line(i: int, text: str | None = None, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"emb-{i}", "method": "POST", "url": EMB,
            "body": {"model": "text-search-doc", "input": text or f"text number {i}", **body}}


def jsonl(lines: list[Any]) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def create(body: dict[str, Any], caller: str = "alice") -> Any:
    return call("POST", "/v1/batches", body, caller=caller)


def start(lines: list[Any] | bytes, endpoint: str = CHAT, caller: str = "alice", **fields: Any) -> dict[str, Any]:
    data = lines if isinstance(lines, bytes) else jsonl(lines)
    source = upload(data, caller=caller)
    answer = create({"input_file_id": source["id"], "endpoint": endpoint, "completion_window": "24h", **fields},
                    caller=caller)
    assert answer.status == 200, answer.content
    return answer.json()


def get(batch_id: str, caller: str = "alice") -> dict[str, Any]:
    answer = call("GET", f"/v1/batches/{batch_id}", caller=caller)
    assert answer.status == 200, answer.content
    return answer.json()


def receive(aws: Aws, queue: str) -> list[Any]:
    found: list[Any] = []
    while batch := aws.queues.receive(aws.resources.queues[queue], max_messages=10):
        found += batch
    return found


def work(aws: Aws, one: bool = False) -> None:
    """Run the queued tasks: every one, or (one=True) only the first embedding task found."""
    for queue, function in (("completion", completion_function), ("embedding", embedding_function)):
        messages = aws.queues.receive(aws.resources.queues[queue], max_messages=1) if one else receive(aws, queue)
        if messages:
            jobs.reset_job_store()
            function.handler(ymq_event(messages, aws.resources.arns[queue]), FakeContext())


def poll() -> dict[str, Any]:
    return poller_function.handler(timer_event(), FakeContext(remaining_ms=60_000))


def run_to_end(aws: Aws, batch_id: str, rounds: int = 6) -> dict[str, Any]:
    for _ in range(rounds):
        work(aws)
        poll()
        batch = get(batch_id)
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
    raise AssertionError(f"batch {batch_id} did not end")


def lines_of(file_id: str | None, caller: str = "alice") -> list[dict[str, Any]]:
    if file_id is None:
        return []
    answer = call("GET", f"/v1/files/{file_id}/content", caller=caller)
    assert answer.status == 200, answer.content
    return [json.loads(line) for line in answer.content.decode().splitlines()]


def job_id(batch: dict[str, Any]) -> str:
    return batch["id"].removeprefix("batch_")


# -- POST /v1/batches: a good input file --------------------------------------------------------------------------

def test_a_chat_batch_is_in_progress_at_once_and_completes_with_its_output_file(
        env: Aws, stack_env: Emulator, clock: ManualClock) -> None:
    texts = ["hi", "a somewhat longer question about rivers and lakes", "x " * 30]
    batch = start([chat_line(i, t) for i, t in enumerate(texts)], metadata={"team": "catalogue"})
    now = int(clock.now())
    assert batch["id"].startswith("batch_fmob") and batches.OPERATION_ID.match(job_id(batch))
    assert batch == {**batch, "object": "batch", "endpoint": CHAT, "errors": None, "completion_window": "24h",
                     "status": "in_progress", "output_file_id": None, "error_file_id": None, "created_at": now,
                     "in_progress_at": now, "expires_at": now + DAY, "finalizing_at": None, "completed_at": None,
                     "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                     "request_counts": {"total": 3, "completed": 0, "failed": 0}, "metadata": {"team": "catalogue"},
                     "model": LITE, "usage": None}
    assert batch["input_file_id"].startswith("file-")
    record = store().item(job_id(batch))
    assert (record["kind"], record["door"], record["created_by"]) == ("batch", "openai", "alice")
    assert record["description"] == "OpenAI Batch (chat completions)" and int(record["chunk_items"]) == 100
    assert float(record["deadline_at"]) == pytest.approx(clock.now() + DAY, abs=1)
    payload = json.loads(store().get_object(jobs.payload_key(job_id(batch), 0)))
    assert [(i["index"], i["customId"]) for i in payload["items"]] == [(0, "req-0"), (1, "req-1"), (2, "req-2")]
    clock.advance(5)
    finished = run_to_end(env, batch["id"])
    assert finished["status"] == "completed" and finished["error_file_id"] is None
    assert finished["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert finished["completed_at"] == finished["finalizing_at"] == now + 5 and finished["failed_at"] is None
    assert finished["expired_at"] is None and finished["cancelled_at"] is None and finished["cancelling_at"] is None
    lines = lines_of(finished["output_file_id"])
    assert [line["custom_id"] for line in lines] == ["req-0", "req-1", "req-2"]
    for n, line in enumerate(lines):
        assert line["id"] == f"batch_req_{job_id(batch)}_{n}" and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["body"]["object"] == "chat.completion"
    started = {c["body"]["messages"][0]["text"]: c for c in stack_env.calls("/completionAsync")}
    assert set(started) == set(texts)
    # request_id is the upstream operation's id: upstream answers that id with this line's answer
    for line in lines:
        upstream = stack_env.http.get(f"{stack_env.url}/operations/{line['response']['request_id']}",
                                      headers={"Authorization": "Api-Key x"}, timeout=5).json()
        text = upstream["response"]["alternatives"][0]["message"]["text"]
        assert line["response"]["body"]["choices"][0]["message"]["content"] == text
    bodies = [line["response"]["body"] for line in lines]
    prompt = sum(b["usage"]["prompt_tokens"] for b in bodies)
    output = sum(b["usage"]["completion_tokens"] for b in bodies)
    assert prompt != output
    assert finished["usage"]["input_tokens"] == prompt and finished["usage"]["output_tokens"] == output
    assert finished["usage"]["total_tokens"] == prompt + output
    made = call("GET", f"/v1/files/{finished['output_file_id']}").json()
    assert (made["purpose"], made["filename"]) == ("batch_output", f"batch_{job_id(batch)}_output.jsonl")
    assert made["expires_at"] == made["created_at"] + 3 * DAY
    assert made["bytes"] == len(call("GET", f"/v1/files/{made['id']}/content").content)
    assert call("GET", f"/v1/files/{made['id']}", caller="bob").status == 404


def test_refusals_go_to_the_error_file_with_the_sync_routes_status(env: Aws, clock: ManualClock) -> None:
    lines = [chat_line(0, "fine"), chat_line(1, "this one EMULATOR_INTERNAL"), chat_line(2, "refused EMULATOR_FAIL")]
    batch = start(lines, output_expires_after={"anchor": "created_at", "seconds": 7200})
    finished = run_to_end(env, batch["id"])
    assert finished["status"] == "completed"
    assert finished["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    assert [line["custom_id"] for line in lines_of(finished["output_file_id"])] == ["req-0"]
    bad = {line["custom_id"]: line for line in lines_of(finished["error_file_id"])}
    assert list(bad) == ["req-1", "req-2"]
    internal = bad["req-1"]
    assert internal["error"] is None and internal["id"] == f"batch_req_{job_id(batch)}_1"
    assert internal["response"]["status_code"] == 502 and internal["response"]["body"]["error"]["type"]
    assert bad["req-2"]["response"]["status_code"] == 400
    assert bad["req-2"]["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert finished["usage"]["total_tokens"] > 0
    for file_id, name in ((finished["output_file_id"], "output"), (finished["error_file_id"], "errors")):
        made = call("GET", f"/v1/files/{file_id}").json()
        assert made["expires_at"] == made["created_at"] + 7200
        assert made["filename"] == f"batch_{job_id(batch)}_{name}.jsonl" and made["purpose"] == "batch_output"
    assert finished["output_file_id"] != finished["error_file_id"]


def test_a_batch_with_only_refusals_has_no_output_file_and_no_usage(env: Aws) -> None:
    finished = run_to_end(env, start([chat_line(0, "no EMULATOR_FAIL")])["id"])
    assert finished["output_file_id"] is None and finished["usage"] is None
    assert finished["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    assert len(lines_of(finished["error_file_id"])) == 1


def test_a_poller_that_dies_after_writing_the_files_leaves_no_second_set(
        env: Aws, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    batch = start([chat_line(0, "fine"), chat_line(1, "refused EMULATOR_FAIL")])
    real = jobs.JobStore.set_fields
    died: list[str] = []

    def dies_before_settling(self: jobs.JobStore, key: str, fields: dict[str, Any]) -> None:
        if "oa_settled_at" in fields and not died:  # the files are written; the batch is not yet settled
            died.append(key)
            raise KeyboardInterrupt("the poller's instance was stopped")
        return real(self, key, fields)

    monkeypatch.setattr(jobs.JobStore, "set_fields", dies_before_settling)
    work(env)
    with pytest.raises(KeyboardInterrupt):
        poll()
    assert died and get(batch["id"])["status"] == "finalizing"
    written = {f["id"] for f in call("GET", "/v1/files", query={"purpose": "batch_output"}).json()["data"]}
    assert len(written) == 2
    first_finalizing = store().item(job_id(batch))["oa_finalizing_at"]
    clock.advance(30)
    finished = run_to_end(env, batch["id"])
    assert finished["status"] == "completed" and finished["finalizing_at"] == first_finalizing
    assert finished["completed_at"] == first_finalizing + 30
    assert {finished["output_file_id"], finished["error_file_id"]} == written
    listed = {f["id"] for f in call("GET", "/v1/files", query={"purpose": "batch_output"}).json()["data"]}
    assert listed == written
    assert len(lines_of(finished["output_file_id"])) == 1 and len(lines_of(finished["error_file_id"])) == 1
    assert poll() == {} and get(batch["id"]) == finished  # settled once: nothing more happens


def test_a_cancelled_batch_is_cancelling_until_the_poller_has_written_what_finished(
        env: Aws, clock: ManualClock) -> None:
    batch = start([chat_line(i) for i in range(3)])
    clock.advance(7)
    answer = call("POST", f"/v1/batches/{batch['id']}/cancel")
    assert answer.status == 200
    cancelling = answer.json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] == int(clock.now())
    assert cancelling["cancelled_at"] is None and get(batch["id"]) == cancelling
    assert call("POST", f"/v1/batches/{batch['id']}/cancel", caller="bob").status == 404
    clock.advance(3)
    cancelled = run_to_end(env, batch["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] == int(clock.now())
    assert cancelled["cancelling_at"] == cancelling["cancelling_at"] and cancelled["completed_at"] is None
    assert cancelled["output_file_id"] is None
    rest = lines_of(cancelled["error_file_id"])
    assert [line["custom_id"] for line in rest] == ["req-0", "req-1", "req-2"]
    assert {line["error"]["code"] for line in rest} == {"batch_cancelled"}
    assert all(line["response"] is None for line in rest)
    assert cancelled["request_counts"] == {"total": 3, "completed": 0, "failed": 0}


# -- embeddings ---------------------------------------------------------------------------------------------------

def test_an_embeddings_batch_counts_its_requests_as_its_tasks_finish(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    configure(env, monkeypatch, EMBEDDING_CHUNK_TEXTS="3")
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, count=-1, bodyContains="refuse me",
                    message="bad text")
    lines = [embedding_line(0), embedding_line(1, "refuse me"), embedding_line(2), embedding_line(3),
             embedding_line(4, encoding_format="base64"), embedding_line(5), embedding_line(6)]
    batch = start(lines, endpoint=EMB)
    assert batch["model"] == DOC and batch["request_counts"]["total"] == 7
    record = store().item(job_id(batch))
    assert record["kind"] == "embedding" and int(record["tasks_total"]) == 3
    assert record["description"] == "OpenAI Batch (embeddings)"
    tasks = [json.loads(store().get_object(jobs.payload_key(job_id(batch), n))) for n in range(3)]
    assert [[r["customId"] for r in t["requests"]] for t in tasks] == [
        ["emb-0", "emb-1", "emb-2"], ["emb-3", "emb-4", "emb-5"], ["emb-6"]]
    assert all(t["modelUri"] == DOC for t in tasks)
    messages = receive(env, "embedding")
    by_task = {json.loads(m.body)["task"]: m for m in messages}
    arn = env.resources.arns["embedding"]
    embedding_function.handler(ymq_event([by_task[1]], arn), FakeContext())  # the second task finishes first
    poll()
    progress = get(batch["id"])
    assert progress["status"] == "in_progress"
    assert progress["request_counts"] == {"total": 7, "completed": 3, "failed": 0}
    embedding_function.handler(ymq_event([by_task[0]], arn), FakeContext())  # then the first: two answers, a refusal
    poll()
    assert get(batch["id"])["request_counts"] == {"total": 7, "completed": 5, "failed": 1}
    poll()  # counted once, however many pollers look
    assert get(batch["id"])["request_counts"] == {"total": 7, "completed": 5, "failed": 1}
    clock.advance(4)
    embedding_function.handler(ymq_event([by_task[2]], arn), FakeContext())
    finished = run_to_end(env, batch["id"])
    assert finished["status"] == "completed"
    assert finished["request_counts"] == {"total": 7, "completed": 6, "failed": 1}
    answers = {line["custom_id"]: line for line in lines_of(finished["output_file_id"])}
    assert list(answers) == ["emb-0", "emb-2", "emb-3", "emb-4", "emb-5", "emb-6"]
    assert isinstance(answers["emb-0"]["response"]["body"]["data"][0]["embedding"], list)
    assert isinstance(answers["emb-4"]["response"]["body"]["data"][0]["embedding"], str)
    assert answers["emb-2"]["response"]["request_id"] == f"{job_id(batch)}-2"
    (refusal,) = lines_of(finished["error_file_id"])
    assert refusal["custom_id"] == "emb-1" and refusal["response"]["status_code"] == 400
    assert finished["usage"]["input_tokens"] > 0 and finished["usage"]["output_tokens"] == 0
    job = store().item(job_id(batch))  # the native door's result, one line per request
    assert job["result_key"] == f"results/{job_id(batch)}/results.jsonl"
    native = store().get_object(job["result_key"])
    assert int(job["result_size"]) == len(native) and native.endswith(b"\n")
    assert [json.loads(line)["customId"] for line in native.decode().splitlines()] == [f"emb-{i}" for i in range(7)]
    assert (int(job["items_done"]), int(job["items_failed"])) == (7, 1)


def test_an_embeddings_batch_past_its_window_expires_and_keeps_what_finished(
        env: Aws, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    configure(env, monkeypatch, EMBEDDING_CHUNK_TEXTS="2")
    batch = start([embedding_line(i) for i in range(5)], endpoint=EMB)
    work(env, one=True)
    poll()
    clock.advance(DAY + 1)
    poll()
    work(env)  # the remaining tasks find the batch over and run nothing
    poll()
    expired = get(batch["id"])
    assert expired["status"] == "expired" and expired["expired_at"] == int(clock.now())
    assert expired["cancelled_at"] is None and expired["completed_at"] is None and expired["failed_at"] is None
    assert [line["custom_id"] for line in lines_of(expired["output_file_id"])] == ["emb-0", "emb-1"]
    rest = lines_of(expired["error_file_id"])
    assert [line["custom_id"] for line in rest] == ["emb-2", "emb-3", "emb-4"]
    assert {line["error"]["code"] for line in rest} == {"batch_expired"}
    assert expired["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    job = store().item(job_id(batch))
    assert (int(job["items_done"]), int(job["items_failed"])) == (2, 0)


def test_settling_a_chat_batch_leaves_its_native_result_to_the_poller(env: Aws) -> None:
    """The door's settle answers None for a chat batch and writes no native result: the poller writes that
    from the item records (only an embeddings job's native result is the door's)."""
    from shared import runtime
    from shared.config import Settings
    from shared.openai import batch_output

    batch = start([chat_line(0), chat_line(1)])
    assert call("POST", f"/v1/batches/{batch['id']}/cancel").status == 200
    job = store().item(job_id(batch))
    inv = runtime.Invocation(settings=Settings.from_env(), call=runtime.Call.from_context(FakeContext()),
                             caller="alice")
    assert batch_output.settle(job, store(), inv, None) is None
    settled = store().item(job_id(batch))
    assert settled["oa_settled"] and "oa_native_key" not in settled and "result_key" not in settled
    listed = store().s3.list_objects_v2(Bucket=store().bucket, Prefix=f"results/{job_id(batch)}/")
    assert listed.get("KeyCount") == 0


def test_a_chat_batch_runs_in_chunks_of_chunk_items_requests(env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK_ITEMS", 2)
    batch = start([chat_line(i) for i in range(5)])
    record = store().item(job_id(batch))
    assert int(record["tasks_total"]) == 3 and int(record["chunk_items"]) == 2
    chunks = [json.loads(store().get_object(jobs.payload_key(job_id(batch), n))) for n in range(3)]
    assert [[item["customId"] for item in chunk["items"]] for chunk in chunks] == [
        ["req-0", "req-1"], ["req-2", "req-3"], ["req-4"]]
    finished = run_to_end(env, batch["id"])
    assert [line["custom_id"] for line in lines_of(finished["output_file_id"])] == [f"req-{i}" for i in range(5)]


def test_an_embeddings_line_keeps_its_dimensions(env: Aws) -> None:
    batch = start([embedding_line(0, dimensions=8), embedding_line(1)], endpoint=EMB)
    finished = run_to_end(env, batch["id"])
    answers = {line["custom_id"]: line["response"]["body"] for line in lines_of(finished["output_file_id"])}
    assert len(answers["emb-0"]["data"][0]["embedding"]) == 8 and len(answers["emb-1"]["data"][0]["embedding"]) == 256


def test_an_embeddings_batch_cancelled_before_a_poller_counted_its_finished_task_counts_it_when_settled(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that finished after the last poll and before the cancel is counted when the batch is settled:
    the native operation's counts agree with its result lines and with the batch's request counts."""
    configure(env, monkeypatch, EMBEDDING_CHUNK_TEXTS="3")
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, count=-1, bodyContains="refuse me",
                    message="bad text")
    batch = start([embedding_line(0), embedding_line(1, "refuse me"), embedding_line(2), embedding_line(3)],
                  endpoint=EMB)
    work(env, one=True)  # the first task (three requests, one refused) finishes; no poller has looked yet
    assert call("POST", f"/v1/batches/{batch['id']}/cancel").status == 200
    cancelled = run_to_end(env, batch["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["request_counts"] == {"total": 4, "completed": 2, "failed": 1}
    job = store().item(job_id(batch))
    assert (int(job["items_done"]), int(job["items_failed"])) == (3, 1)
    assert [line["custom_id"] for line in lines_of(cancelled["error_file_id"])] == ["emb-1", "emb-3"]


def test_an_embeddings_batch_whose_task_was_dead_lettered_fails_its_requests_with_the_reason(
        env: Aws, stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that failed JOB_MAX_DELIVERIES starts ends the embeddings batch failed; the poller still writes
    what finished, and each request of the dead task is in the error file with the engine's reason."""
    from shared.jobs.worker import RedeliverError

    configure(env, monkeypatch, EMBEDDING_CHUNK_TEXTS="2", JOB_MAX_DELIVERIES="1")
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=503, count=-1, bodyContains="break me")
    batch = start([embedding_line(0, "break me"), embedding_line(1), embedding_line(2)], endpoint=EMB)
    with pytest.raises(RedeliverError):
        work(env)  # the second task finishes; the first fails its one start
    env.queues.send(env.resources.queues["embedding-dlq"], json.dumps({"op": job_id(batch), "task": 0}))
    dead = receive(env, "embedding-dlq")
    embedding_function.handler(ymq_event(dead, env.resources.arns["embedding-dlq"]), FakeContext())
    poll()
    failed = get(batch["id"])
    assert failed["status"] == "failed" and failed["errors"]["data"][0]["code"] == "batch_failed"
    reason = failed["errors"]["data"][0]["message"]
    assert reason.startswith("gave up on task 0 after 1 failed starts")
    assert [line["custom_id"] for line in lines_of(failed["output_file_id"])] == ["emb-2"]
    rest = lines_of(failed["error_file_id"])
    assert [line["custom_id"] for line in rest] == ["emb-0", "emb-1"]
    assert {line["error"]["code"] for line in rest} == {"batch_failed"}
    assert {line["error"]["message"] for line in rest} == {f"This request was not run: the batch failed ({reason})."}


# -- POST /v1/batches: what is refused ----------------------------------------------------------------------------

def invalid(lines: list[Any] | bytes, endpoint: str = CHAT) -> dict[str, Any]:
    batch = start(lines, endpoint)
    assert batch["status"] == "failed" and batch["in_progress_at"] is None and batch["expires_at"] is None
    assert batch["failed_at"] == batch["created_at"]
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert get(batch["id"]) == batch
    return batch


def problems(batch: dict[str, Any]) -> list[tuple[Any, ...]]:
    assert batch["errors"]["object"] == "list"
    return [(p["line"], p["code"], p["param"], p["message"]) for p in batch["errors"]["data"]]


def test_every_bad_line_is_listed_with_its_number_and_nothing_runs(env: Aws, stack_env: Emulator) -> None:
    good = chat_line(0)
    lines = [good, "", "not json", "[1, 2]", {**chat_line(3), "custom_id": ""}, {**chat_line(4), "custom_id": 4},
             chat_line(0), {**chat_line(5), "method": "GET"}, {**chat_line(6), "url": EMB},
             {**chat_line(7), "body": "hello"}, chat_line(8, temperature=5),
             {**chat_line(9), "body": {"model": "yandexgpt", "messages": [{"role": "user", "content": "x"}]}},
             "   ", {**chat_line(10), "body": {"model": "gpt://otherfolder/yandexgpt/latest", "messages": [{"role": "user", "content": "x"}]}}, {**chat_line(11), "body": {"model": "yandexgpt-lite", "messages": []}}]
    batch = invalid(lines)
    found = problems(batch)
    assert found[:9] == [
        (3, "invalid_json_line", None, "This line is not parseable as valid JSON."),
        (4, "invalid_json_line", None, "This line is not a JSON object."),
        (5, "invalid_request", "custom_id", "custom_id: must be a non-empty string"),
        (6, "invalid_request", "custom_id", "custom_id: must be a non-empty string"),
        (7, "duplicate_custom_id", "custom_id", "custom_id 'req-0' repeats line 1; each request needs its own"),
        (8, "invalid_method", "method", "method: must be POST"),
        (9, "url_mismatch", "url", f"url: must be the batch's endpoint, {CHAT}"),
        (10, "invalid_request", "body", "body: must be a JSON object"),
        (11, "invalid_argument", "body.temperature", "body.temperature: must be less than or equal to 2"),
    ]
    assert found[9:] == [
        (12, "model_mismatch", "body.model", f"body.model: every line of a batch must use one model (line 1 uses {LITE})"),
        (14, "model_mismatch", "body.model", f"body.model: every line of a batch must use one model (line 1 uses {LITE})"),
        (15, "invalid_argument", "body.messages", "body.messages: must have at least 1 item, not 0")]
    assert batch["errors"]["data"][0] == {"code": "invalid_json_line", "message": found[0][3], "param": None,
                                          "line": 3}
    assert stack_env.calls("/completionAsync") == [] and receive(env, "completion") == []
    record = store().item(job_id(batch))
    assert json.loads(record["error"])["message"] == "the input file has 12 invalid lines"


def test_one_bad_line_is_one_invalid_line(env: Aws) -> None:
    batch = invalid([chat_line(0), "{"])
    assert json.loads(store().item(job_id(batch))["error"])["message"] == "the input file has 1 invalid line"
    assert batch["errors"]["data"] == [{"code": "invalid_json_line", "line": 2, "param": None,
                                        "message": "This line is not parseable as valid JSON."}]


def test_a_file_that_is_not_utf8_or_has_no_request_fails(env: Aws) -> None:
    not_text = invalid(b"\xff\xfe{}\n")
    assert problems(not_text) == [(None, "invalid_file", None, "The file is not UTF-8 text.")]
    assert not_text["model"] is None and store().item(job_id(not_text))["model"] == ""
    assert problems(invalid(b"\n  \n")) == [(None, "empty_file", None, "The input file has no requests.")]


@pytest.mark.parametrize("endpoint,line", [
    (CHAT, chat_line(0)), (EMB, embedding_line(0)),
    ("/v1/responses", {"custom_id": "r-0", "method": "POST", "url": "/v1/responses",
                       "body": {"model": "yandexgpt-lite", "input": "hello"}})])
def test_a_line_naming_a_model_the_key_may_not_use_is_refused_as_the_sync_route_would(
        env: Aws, endpoint: str, line: dict[str, Any]) -> None:
    from shared.policy import KeyPolicy

    line = {**line, "url": endpoint}
    source = upload(jsonl([line]))
    body = {"input_file_id": source["id"], "endpoint": endpoint, "completion_window": "24h"}
    policy = KeyPolicy("alice", models=("yandexgpt",)).to_context()
    batch = call("POST", "/v1/batches", body, policy=policy).json()
    assert batch["status"] == "failed"
    ((number, code, param, message),) = problems(batch)
    assert (number, code, param) == (1, "permission_denied", "body.model") and message.startswith("body.model: ")
    assert call("POST", "/v1/batches", body).json()["status"] == "in_progress"  # the same file, for a key without a list


def test_the_summary_line_names_the_batch_and_its_operation(env: Aws, log_output: Any) -> None:
    batch = start([chat_line(0)])
    for method, path in (("GET", f"/v1/batches/{batch['id']}"), ("POST", f"/v1/batches/{batch['id']}/cancel")):
        assert call(method, path).status == 200
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if x.startswith("{")]
    summaries = [x for x in lines if x.get("msg") == "request handled"][-2:]
    assert [(x["operation"], x.get("batch_id"), x.get("operation_id")) for x in summaries] == [
        ("retrieveBatch", batch["id"], job_id(batch)), ("cancelBatch", batch["id"], job_id(batch))]


def test_past_the_most_requests_or_embedding_inputs_the_batch_fails(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "MAX_REQUESTS", 2)
    assert start([chat_line(0), chat_line(1)])["status"] == "in_progress"
    assert problems(invalid([chat_line(i) for i in range(3)])) == [
        (None, "too_many_tasks", None, "The input file has 3 requests; a batch takes at most 2.")]
    monkeypatch.setattr(batches, "MAX_EMBEDDING_INPUTS", 4)
    fits = start([embedding_line(0, input=["a", "b"]), embedding_line(1, input=["c", "d"])], EMB)
    assert fits["status"] == "in_progress"
    assert problems(invalid([embedding_line(0, input=["a", "b", "c"]), embedding_line(1, input=["d", "e"])], EMB)
                    ) == [(None, "too_many_tasks", None, "The input file has 5 embedding inputs; a batch takes at "
                                                         "most 4.")]


def test_at_most_a_thousand_problems_are_listed(env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "MAX_REPORTED_ERRORS", 2)
    batch = invalid(["x", "y", "z"])
    assert [p[0] for p in problems(batch)] == [1, 2]
    message = json.loads(store().item(job_id(batch))["error"])["message"]
    assert message == "the input file has 3 invalid lines (the first 2 are listed)"
    batch = invalid(["x", "y"])
    assert json.loads(store().item(job_id(batch))["error"])["message"] == "the input file has 2 invalid lines"


def test_the_input_file_must_be_the_callers_and_for_batch(env: Aws) -> None:
    other = upload(jsonl([chat_line(0)]), caller="bob")
    body = {"input_file_id": other["id"], "endpoint": CHAT, "completion_window": "24h"}
    assert refused(create(body), 404)[1] == f"file {other['id']} not found"
    mine = upload(jsonl([chat_line(0)]), purpose="user_data")
    assert refused(create({**body, "input_file_id": mine["id"]})) == (
        "input_file_id", f"input_file_id: file {mine['id']} was uploaded with purpose 'user_data'; a batch needs "
                         "purpose 'batch'")
    assert call("GET", "/v1/batches").json()["data"] == []


@pytest.mark.parametrize("fields,param", [
    ({"endpoint": "/v1/completions"}, "endpoint"), ({"completion_window": "48h"}, "completion_window"),
    ({"output_expires_after": {"anchor": "created_at", "seconds": 3599}}, "output_expires_after.seconds"),
    ({"output_expires_after": {"anchor": "created_at", "seconds": 2_592_001}}, "output_expires_after.seconds"),
    ({"output_expires_after": {"anchor": "created_at", "seconds": "7200"}}, "output_expires_after.seconds"),
    ({"input_file_id": ""}, "input_file_id"), ({"metadata": {"k": 1}}, "metadata.k"),
])
def test_a_bad_create_body_is_a_400_naming_the_field(env: Aws, fields: dict[str, Any], param: str) -> None:
    source = upload(jsonl([chat_line(0)]))
    body = {"input_file_id": source["id"], "endpoint": CHAT, "completion_window": "24h", **fields}
    assert refused(create(body))[0] == param


@pytest.mark.parametrize("seconds", [3600, 2_592_000])
def test_output_expires_after_takes_its_whole_range(env: Aws, seconds: int) -> None:
    batch = start([chat_line(0)], output_expires_after={"anchor": "created_at", "seconds": seconds})
    assert json.loads(store().item(job_id(batch))["oa"])["output_expires_s"] == seconds


# -- GET /v1/batches/{id}, GET /v1/batches ---------------------------------------------------------------------

def test_an_unknown_foreign_or_native_batch_is_a_404(env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = start([chat_line(0)])
    assert get(mine["id"]) == mine
    body = {"modelUri": "yandexgpt-lite", "requests": [{"messages": [{"role": "user", "text": "x"}]}]}
    native = completion_function.handler({"httpMethod": "POST", "url": "/foundationModels/v1/completionBatch",
                                          "headers": {}, "body": json.dumps(body),
                                          "requestContext": {"authorizer": {"caller": "alice"}}}, FakeContext())
    assert native["statusCode"] == 200, native
    native_id = json.loads(native["body"])["id"]
    for batch_id, caller in ((mine["id"], "bob"), ("batch_" + native_id, "alice"), (job_id(mine), "alice"),
                             ("batch_fmob0000000000000000000000000", "alice"), ("batch_NOT-AN-ID", "alice"),
                             ("batch_" + native_id, "bob")):
        for method, path in (("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")):
            answer = call(method, path.format(batch_id), caller=caller)
            assert refused(answer, 404)[1] == f"batch {batch_id} not found", (batch_id, caller)
    assert store().item(native_id)["state"] != "done"  # the native job was not cancelled through this door
    configure(env, monkeypatch, FM_ADMIN_CALLER="root")
    assert get(mine["id"], caller="root") == mine


def test_the_listing_is_newest_first_in_pages(env: Aws, clock: ManualClock) -> None:
    made = []
    for i in range(3):
        made.append(start([chat_line(i)])["id"])
        clock.advance(1)
    start([chat_line(9)], caller="bob")
    page = call("GET", "/v1/batches").json()
    assert [b["id"] for b in page["data"]] == made[::-1] and page["has_more"] is False
    assert page["data"][0] == get(made[2])
    assert (page["first_id"], page["last_id"]) == (made[2], made[0])
    first = call("GET", "/v1/batches", query={"limit": 2}).json()
    assert [b["id"] for b in first["data"]] == [made[2], made[1]] and first["has_more"] is True
    rest = call("GET", "/v1/batches", query={"limit": 2, "after": first["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == [made[0]] and rest["has_more"] is False


def test_the_listing_takes_twenty_by_default_and_limit_up_to_a_hundred(
        env: Aws, clock: ManualClock) -> None:
    owner = "alice"
    for _ in range(21):  # list entries alone: the page reads their records, which are made here too
        job = batch_store.new_batch_job_id()
        store().put_record(job, {"id": job, "kind": "batch", "door": "openai", "created_by": owner,
                                 "state": "running", "created_at": int(clock.now()),
                                 "expires_at": int(clock.now()) + DAY})
        batch_store.add_to_list(store(), "batch", owner, batch_store.batch_id(job))
        clock.advance(0.01)
    page = call("GET", "/v1/batches").json()
    assert len(page["data"]) == 20 and page["has_more"] is True
    assert call("GET", "/v1/batches", query={"limit": 100}).json()["has_more"] is False
    assert refused(call("GET", "/v1/batches", query={"limit": 101})) == (
        "limit", "limit: must be a whole number from 1 to 100")


def test_a_responses_batch_answers_each_line_as_the_sync_route_would(env: Aws, log_output: Any) -> None:
    lines = [{"custom_id": f"r-{i}", "method": "POST", "url": "/v1/responses",
              "body": {"model": "yandexgpt-lite", "input": text, "instructions": "be brief"}}
             for i, text in enumerate(["hello", "refused EMULATOR_FAIL", "again"])]
    batch = start(lines, endpoint="/v1/responses")
    assert batch["endpoint"] == "/v1/responses" and batch["model"] == LITE
    assert store().item(job_id(batch))["description"] == "OpenAI Batch (responses)"
    finished = run_to_end(env, batch["id"])
    assert finished["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    answers = lines_of(finished["output_file_id"])
    assert [line["custom_id"] for line in answers] == ["r-0", "r-2"]
    for line in answers:
        body = line["response"]["body"]
        assert body["object"] == "response" and body["status"] == "completed" and body["store"] is False
        assert body["instructions"] == "be brief" and body["output"][0]["content"][0]["text"]
    assert finished["usage"]["input_tokens"] == sum(line["response"]["body"]["usage"]["input_tokens"]
                                                    for line in answers)
    (refusal,) = lines_of(finished["error_file_id"])
    assert refusal["custom_id"] == "r-1" and refusal["response"]["status_code"] == 400
    settled = [json.loads(x) for x in log_output.getvalue().splitlines() if '"openai batch settled"' in x]
    assert [(x["operation_id"], x["succeeded"], x["errors"]) for x in settled] == [(job_id(batch), 2, 1)]


def test_an_embeddings_job_settled_by_a_poller_that_died_before_finishing_it_is_finished_with_the_same_result(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = start([embedding_line(0), embedding_line(1)], endpoint=EMB)
    real = jobs.JobStore.finish
    died: list[str] = []

    def dies_before_finishing(self: jobs.JobStore, op_id: str, *args: Any, **kwargs: Any) -> Any:
        if not died:
            died.append(op_id)
            raise KeyboardInterrupt("the poller's instance was stopped")
        return real(self, op_id, *args, **kwargs)

    monkeypatch.setattr(jobs.JobStore, "finish", dies_before_finishing)
    work(env)
    with pytest.raises(KeyboardInterrupt):
        poll()
    settled = store().item(job_id(batch))
    assert settled["oa_settled"] and settled["state"] != "done"
    output = settled["oa_output_file_id"]
    finished = run_to_end(env, batch["id"])
    assert finished["status"] == "completed" and finished["output_file_id"] == output
    job = store().item(job_id(batch))
    assert job["result_key"] == f"results/{job_id(batch)}/results.jsonl"
    assert int(job["result_size"]) == len(store().get_object(job["result_key"])) > 0


def test_a_model_mismatch_names_the_line_of_the_first_request(env: Aws) -> None:
    other = chat_line(2)
    other["body"]["model"] = "yandexgpt"
    batch = invalid(["", "not json", chat_line(1), other])
    assert problems(batch)[1] == (4, "model_mismatch", "body.model", "body.model: every line of a batch must use one "
                                                                     f"model (line 3 uses {LITE})")
    assert store().item(job_id(batch))["model"] == LITE


def test_an_invalid_file_is_a_failed_batch_with_its_door_fields(env: Aws, log_output: Any) -> None:
    source = upload(b"nope\n")
    jobs.reset_job_store()  # a fresh instance, whose first use of the store is this create
    answer = create({"input_file_id": source["id"], "endpoint": EMB, "completion_window": "24h",
                     "metadata": {"k": "v"}})
    batch = answer.json()
    native = call("GET", f"/operations/{job_id(batch)}").json()  # the same record, through the native door
    assert native["done"] is True and native["error"] == {
        "code": 3, "message": "the input file has 1 invalid line", "details": []}
    assert (native["metadata"]["completedBatches"], native["metadata"]["totalBatches"]) == ("0", "0")
    assert (batch["status"], batch["endpoint"], batch["input_file_id"]) == ("failed", EMB, source["id"])
    assert batch["metadata"] == {"k": "v"} and batch["model"] is None and batch["output_file_id"] is None
    record = store().item(job_id(batch))
    assert record["description"] == "OpenAI Batch (embeddings)" and record["model"] == ""
    assert (record["kind"], record["door"], record["created_by"]) == ("batch", "openai", "alice")
    assert json.loads(record["oa"]) == {"endpoint": EMB, "input_file_id": source["id"], "completion_window": "24h",
                                        "metadata": {"k": "v"}, "model": "", "output_expires_s": None}
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if x.startswith("{")]
    (summary,) = [x for x in lines if x.get("msg") == "request handled" and x.get("operation") == "createBatch"]
    assert (summary["batch_id"], summary["operation_id"], summary["requests"], summary["invalid_lines"]) == (
        batch["id"], job_id(batch), 0, 1)
    assert [b["id"] for b in call("GET", "/v1/batches").json()["data"]] == [batch["id"]]


def test_a_batch_that_failed_in_the_engine_says_why(clock: ManualClock) -> None:
    record = {"id": "fmob0000000000001aaaaaaaaaaaaa", "state": "done", "items_total": 4, "items_done": 3,
              "items_failed": 1, "created_at": 1000.7, "modified_at": 1500.2, "deadline_at": 87400,
              "error": json.dumps({"code": 14, "message": "the chunk was dead-lettered"}),
              "oa": json.dumps({"endpoint": CHAT, "input_file_id": "file-1", "model": LITE, "metadata": None})}
    view = batches.batch_object(record)
    assert view["status"] == "failed" and view["failed_at"] == 1500 and view["completed_at"] is None
    assert view["errors"] == {"object": "list", "data": [{"code": "batch_failed", "message": "the chunk was "
                                                          "dead-lettered", "param": None, "line": None}]}
    assert view["request_counts"] == {"total": 4, "completed": 2, "failed": 1}
    assert view["created_at"] == 1000 and view["in_progress_at"] == 1000 and view["usage"] is None
    assert view["expired_at"] is None and view["cancelled_at"] is None and view["cancelling_at"] is None
    running = batches.batch_object({**record, "state": "running", "error": None, "items_done": 0})
    assert running["errors"] is None and running["failed_at"] is None and running["status"] == "in_progress"
    late = batches.batch_object({**record, "error": json.dumps({"code": 4, "message": "late"}), "oa_settled": 1,
                                 "oa_settled_at": 1600.9, "oa_completed": 3, "oa_failed": 1,
                                 "oa_finalizing_at": 1550.5})
    assert (late["status"], late["expired_at"], late["finalizing_at"], late["errors"]) == ("expired", 1600, 1550, None)
    assert late["request_counts"] == {"total": 4, "completed": 3, "failed": 1}


def test_a_cancelled_batch_whose_first_chunk_is_gone_still_names_the_rest(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "CHUNK_ITEMS", 1)
    batch = start([chat_line(i) for i in range(3)])
    assert int(store().item(job_id(batch))["tasks_total"]) == 3
    store().delete_object(jobs.payload_key(job_id(batch), 0))
    assert call("POST", f"/v1/batches/{batch['id']}/cancel").status == 200
    cancelled = run_to_end(env, batch["id"])
    rest = lines_of(cancelled["error_file_id"])
    assert [line["custom_id"] for line in rest] == ["0", "req-1", "req-2"]  # the lost chunk's request by its index
    assert {line["error"]["code"] for line in rest} == {"batch_cancelled"}


def test_the_files_are_utf8_json_lines_served_as_jsonl(env: Aws, clock: ManualClock) -> None:
    lines = [{**chat_line(0, "привет"), "custom_id": "запрос-0"},
             {**chat_line(1, "нет EMULATOR_FAIL"), "custom_id": "запрос-1"}]
    batch = start(lines, metadata={"team": "команда"})
    work(env)
    clock.advance(9)
    finished = run_to_end(env, batch["id"])
    for file_id, custom_id in ((finished["output_file_id"], "запрос-0"), (finished["error_file_id"], "запрос-1")):
        content = call("GET", f"/v1/files/{file_id}/content")
        assert content.headers["Content-Type"] == "application/jsonl"
        assert f'"custom_id": "{custom_id}"'.encode() in content.content and content.content.endswith(b"}\n")
    (line,) = lines_of(finished["output_file_id"])
    assert line["response"]["body"]["created"] == int(clock.now())
    embedded = start([{**embedding_line(0, "тест"), "custom_id": "вектор"}], endpoint=EMB)
    run_to_end(env, embedded["id"])
    native = store().get_object(store().item(job_id(embedded))["result_key"])
    assert '"customId": "вектор"'.encode() in native
    assert '"team": "команда"' in store().item(job_id(batch))["oa"]  # the door's fields as UTF-8 too
    invalid_batch = invalid([{**chat_line(0), "custom_id": "дубль"}, {**chat_line(1), "custom_id": "дубль"}])
    assert "'дубль' repeats line 1" in store().item(job_id(invalid_batch))["oa_errors"]


def test_a_batch_settled_by_a_poller_that_died_before_letting_it_go_keeps_its_settled_time(
        env: Aws, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    configure(env, monkeypatch, EMBEDDING_CHUNK_TEXTS="1")
    batch = start([embedding_line(0), embedding_line(1)], endpoint=EMB)
    work(env, one=True)
    poll()
    clock.advance(DAY + 1)
    real = jobs.JobStore.deactivate
    died: list[str] = []

    def dies_before_letting_go(self: jobs.JobStore, op_id: str) -> Any:
        if not died:
            died.append(op_id)
            raise KeyboardInterrupt("the poller's instance was stopped")
        return real(self, op_id)

    monkeypatch.setattr(jobs.JobStore, "deactivate", dies_before_letting_go)
    for _ in range(3):  # the window passes: the job is stopped, then settled, and the poller dies
        try:
            poll()
        except KeyboardInterrupt:
            break
    assert died
    first = get(batch["id"])
    assert first["status"] == "expired" and first["expired_at"] == int(clock.now())
    clock.advance(60)
    poll()  # the next poller settles it again: nothing changes
    assert get(batch["id"]) == first
