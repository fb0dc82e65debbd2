"""The OpenAI batch output's promises, as a caller with the `openai` client sees them: each line's
`request_id` names the upstream operation, `usage` sums the lines' tokens, an upstream INTERNAL gets the
status the sync route gives it, `output_expires_after` sets the files' expiry, a poller that dies half-way
through settling leaves no second set of files, an embeddings line without `encoding_format` answers
floats, and an embeddings batch expires past its window as a chat batch does.

Over real HTTP (local gateway), moto server and the emulator; time moved by the test clock."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import openai
import pytest

from local.functions import load
from local.triggers import timer_event
from shared.config import Settings
from shared.jobs import store as store_module
from tests.clock import ManualClock
from tests.conftest import Api, Emulator, FakeContext, Jobs, reset_caches
from tests.integration.test_promises_engine import check_usage_ttls

pytestmark = pytest.mark.integration

TERMINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture
def client(api_v01: Api) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_v01.url}/v1", api_key="local", max_retries=0)


def poller() -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(60_000, request_id=str(uuid.uuid4())))


def chat_line(i: int, text: str) -> dict[str, Any]:
    return {"custom_id": f"req-{i:03d}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": text}]}}


def embedding_line(i: int, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"emb-{i:03d}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-search-doc", "input": f"text number {i}", **body}}


def start(client: openai.OpenAI, lines: list[dict[str, Any]], endpoint: str = "/v1/chat/completions",
          **kwargs: Any) -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h", **kwargs)


def run_to_end(client: openai.OpenAI, jobs: Jobs, batch_id: str, rounds: int = 20) -> Any:
    for _ in range(rounds):
        jobs.drain()
        poller()
        batch = client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
    raise AssertionError(f"batch {batch_id} did not end")


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def upstream_operation(emulator: Emulator, operation_id: str) -> dict[str, Any]:
    answer = emulator.http.get(f"{emulator.url}/operations/{operation_id}", headers={"Authorization": "Api-Key x"},
                               timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- what each line says --------------------------------------------------------------------------------------

def test_each_lines_request_id_is_its_upstream_operation_and_usage_sums_the_lines(
        client: openai.OpenAI, jobs: Jobs, fast: Emulator) -> None:
    texts = ["hi", "a somewhat longer question about rivers and lakes", "x " * 40, "what is the capital of France"]
    finished = run_to_end(client, jobs, start(client, [chat_line(i, t) for i, t in enumerate(texts)]).id)
    assert finished.status == "completed"
    lines = lines_of(client, finished.output_file_id)
    assert len(lines) == 4
    started = {c["body"]["messages"][0]["text"] for c in fast.calls("/completionAsync")}
    assert started == set(texts)
    for line in lines:
        request_id = line["response"]["request_id"]
        upstream = upstream_operation(fast, request_id)  # upstream knows this id ...
        assert upstream["done"] is True
        text = upstream["response"]["alternatives"][0]["message"]["text"]
        assert line["response"]["body"]["choices"][0]["message"]["content"] == text  # ... as this line's answer
    assert len({line["response"]["request_id"] for line in lines}) == 4
    bodies = [line["response"]["body"] for line in lines]
    prompt = sum(b["usage"]["prompt_tokens"] for b in bodies)
    output = sum(b["usage"]["completion_tokens"] for b in bodies)
    assert len({b["usage"]["prompt_tokens"] for b in bodies}) > 1 and prompt != output  # the sums tell them apart
    usage = finished.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (prompt, output, prompt + output)
    assert usage.total_tokens == sum(b["usage"]["total_tokens"] for b in bodies)


def test_an_upstream_internal_error_in_a_line_gets_the_status_the_sync_route_gives(
        client: openai.OpenAI, api_v01: Api, jobs: Jobs, fast: Emulator) -> None:
    lines = [chat_line(0, "fine"), chat_line(1, "this one EMULATOR_INTERNAL"), chat_line(2, "refused EMULATOR_FAIL")]
    finished = run_to_end(client, jobs, start(client, lines).id)
    assert finished.request_counts.model_dump() == {"total": 3, "completed": 1, "failed": 2}
    bad = {line["custom_id"]: line for line in lines_of(client, finished.error_file_id)}
    # the sync route, when upstream answers INTERNAL (HTTP 500, gRPC 13)
    fast.fault(path="/foundationModels/v1/completion", status=500, message="emulated internal error", count=1)
    sync = api_v01.post("/v1/chat/completions", {"model": "yandexgpt-lite",
                                                 "messages": [{"role": "user", "content": "fine"}]})
    assert sync.status_code == 502, sync.text
    internal = bad["req-001"]["response"]
    assert internal["status_code"] == sync.status_code
    assert internal["body"]["error"]["type"] == sync.json()["error"]["type"]
    assert internal["body"]["error"]["code"] == sync.json()["error"]["code"]
    assert "emulated internal error" in internal["body"]["error"]["message"]
    refused = bad["req-002"]["response"]  # INVALID_ARGUMENT stays a 400
    assert refused["status_code"] == 400 and refused["body"]["error"]["type"] == "invalid_request_error"


def test_output_expires_after_sets_the_output_and_error_files_expiry(client: openai.OpenAI, jobs: Jobs,
                                                                     fast: Emulator) -> None:
    lines = [chat_line(0, "fine"), chat_line(1, "refused EMULATOR_FAIL")]
    batch = start(client, lines, extra_body={"output_expires_after": {"anchor": "created_at", "seconds": 7200}})
    finished = run_to_end(client, jobs, batch.id)
    assert finished.output_file_id and finished.error_file_id
    for file_id in (finished.output_file_id, finished.error_file_id):
        made = client.files.retrieve(file_id)
        assert made.expires_at == made.created_at + 7200, made
    plain = run_to_end(client, jobs, start(client, lines).id)  # without it: the store's TTL, 3 days
    made = client.files.retrieve(plain.output_file_id)
    assert made.expires_at == made.created_at + 3 * 86400


# -- settling once ------------------------------------------------------------------------------------------------

def test_a_poller_that_dies_after_writing_the_files_leaves_no_second_set(
        client: openai.OpenAI, jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [chat_line(0, "fine"), chat_line(1, "refused EMULATOR_FAIL")]
    batch = start(client, lines)
    before = {f.id for f in client.files.list()}
    real = store_module.JobStore.set_fields
    died: list[str] = []

    def dies_before_settling(self: store_module.JobStore, key: str, fields: dict[str, Any]) -> None:
        if "oa_settled_at" in fields and not died:  # the files are written; the batch is not yet settled
            died.append(key)
            raise KeyboardInterrupt("the poller's instance was stopped")
        return real(self, key, fields)

    monkeypatch.setattr(store_module.JobStore, "set_fields", dies_before_settling)
    jobs.drain()
    for _ in range(5):
        try:
            poller()
        except KeyboardInterrupt:
            pass
        if died:
            break
    assert died
    assert client.batches.retrieve(batch.id).status in ("in_progress", "finalizing")  # not settled
    written = {f.id for f in client.files.list()} - before
    assert len(written) == 2  # the output and the error file
    finished = run_to_end(client, jobs, batch.id)  # the next poller settles it
    assert finished.status == "completed"
    assert {finished.output_file_id, finished.error_file_id} == written  # the same files, chosen once
    assert {f.id for f in client.files.list()} - before == written  # no orphan second pair
    assert len(lines_of(client, finished.output_file_id)) == 1 and len(lines_of(client, finished.error_file_id)) == 1


# -- embeddings batches ---------------------------------------------------------------------------------------

def test_an_embeddings_line_without_encoding_format_answers_floats(client: openai.OpenAI, api_v01: Api,
                                                                   jobs: Jobs, fast: Emulator) -> None:
    lines = [embedding_line(0), embedding_line(1, encoding_format="base64"), embedding_line(2, encoding_format="float")]
    finished = run_to_end(client, jobs, start(client, lines, endpoint="/v1/embeddings").id)
    assert finished.status == "completed"
    answers = {line["custom_id"]: line["response"]["body"]["data"][0]["embedding"]
               for line in lines_of(client, finished.output_file_id)}
    sync = api_v01.post("/foundationModels/v1/textEmbedding",
                        {"modelUri": "text-search-doc", "text": "text number 0"}).json()["embedding"]
    assert isinstance(answers["emb-000"], list) and all(isinstance(v, float) for v in answers["emb-000"])
    assert answers["emb-000"] == sync
    assert isinstance(answers["emb-001"], str)  # base64 when asked for
    assert isinstance(answers["emb-002"], list)


def test_an_embeddings_batch_past_its_window_expires_and_keeps_what_finished(
        client: openai.OpenAI, jobs: Jobs, fast: Emulator, clock: ManualClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_CHUNK_TEXTS", "5")
    reset_caches()
    batch = start(client, [embedding_line(i) for i in range(15)], endpoint="/v1/embeddings")  # three tasks
    assert batch.expires_at == batch.created_at + 86_400
    trigger = jobs.triggers["embedding"]
    trigger.batch_size = 1
    trigger.poll_once()  # one task runs within the window
    poller()
    clock.advance(86_400 + 1)  # the window passes
    poller()
    jobs.drain()  # the remaining tasks find the batch over and run nothing
    poller()
    expired = client.batches.retrieve(batch.id)
    assert expired.status == "expired" and expired.expired_at
    assert len(fast.calls("/textEmbedding")) == 5
    assert [line["custom_id"] for line in lines_of(client, expired.output_file_id)] == [f"emb-{i:03d}" for i in range(5)]
    rest = lines_of(client, expired.error_file_id)
    assert [line["custom_id"] for line in rest] == [f"emb-{i:03d}" for i in range(5, 15)]
    assert {line["error"]["code"] for line in rest} == {"batch_expired"}
    assert expired.request_counts.model_dump() == {"total": 15, "completed": 5, "failed": 0}
    job = store_module.JobStore(Settings.from_env()).item(batch.id.removeprefix("batch_"))
    assert job is not None and json.loads(job["error"])["code"] == 4



def test_every_record_an_openai_batch_writes_carries_expires_at(client: openai.OpenAI, jobs: Jobs,
                                                                fast: Emulator, clock: ManualClock) -> None:
    """The store's TTL deletes records by `expires_at`; one without it stays for ever. Files, the caller's
    list records, the jobs, their tasks and items, the output and error files: each has it, about
    JOBS_TTL_DAYS from now. Only the index of unsettled jobs, which all share, has none (it must never go)."""
    chat = run_to_end(client, jobs, start(client, [chat_line(0, "fine"), chat_line(1, "no EMULATOR_FAIL")]).id)
    embeddings = run_to_end(client, jobs, start(client, [embedding_line(0)], endpoint="/v1/embeddings").id)
    assert chat.status == embeddings.status == "completed" and chat.error_file_id
    jobs_store = store_module.JobStore(Settings.from_env())
    pages = jobs_store.db.get_paginator("scan").paginate(TableName=jobs_store.table, ConsistentRead=True)
    records = [store_module._plain(raw) for page in pages for raw in page.get("Items", [])]
    records = [r for r in records if r["id"] not in jobs_store.index_keys()]
    records = check_usage_ttls(records, clock.now())
    kinds = {r["id"].split("#")[0] if r["id"].startswith("list#") else r["id"][:4] for r in records}
    assert {"file", "list", "fmob"} <= kinds, kinds  # files, list records, jobs (and their tasks and items)
    for record in records:
        assert "expires_at" in record, record["id"]
        # (an hour's list record is kept 2 h past the TTL of the objects it lists)
        assert clock.now() < record["expires_at"] <= clock.now() + 3 * 86400 + 7200, record["id"]
