"""The lines of an OpenAI batch's output and error files (shared/openai/batch_outcomes.py), from the records
the engine keeps, in process: a success answers what the sync route would, under the upstream operation's
id; a refused or failed request gets the status and error body the sync route would give; a request that
never ran says why (cancelled, expired, the batch failed); the batch's usage sums its answers.
tests/integration/test_openai_batches.py proves the same files end to end, through the engine."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from shared.config import Settings
from shared.openai import batch_lines, batch_outcomes

JOB = "op-1"
MODEL = "gpt://b1g/yandexgpt/latest"
CHAT = {"endpoint": batch_lines.CHAT, "model": MODEL}
CREATED = 1_700_000_000


def _result(text: str, prompt: int = 5, completion: int = 2, reasoning: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"inputTextTokens": str(prompt), "completionTokens": str(completion),
                             "totalTokens": str(prompt + completion)}
    if reasoning is not None:
        usage["completionTokensDetails"] = {"reasoningTokens": str(reasoning)}
    return {"alternatives": [{"message": {"role": "assistant", "text": text}, "status": "ALTERNATIVE_STATUS_FINAL"}],
            "usage": usage, "modelVersion": "23.10.2024"}


def _done(outcome: dict[str, Any], failed: bool = False, **fields: Any) -> dict[str, Any]:
    return {"state": "done", "outcome": json.dumps(outcome), "failed": failed, **fields}


def _lines(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["line"] for o in outcomes]


def test_a_chat_success_is_the_sync_answer_under_the_upstream_operations_id() -> None:
    records = {0: _done(_result("Hello"), custom_id="first", upstream_id="fm-op-77")}
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, records, {}, CHAT, None, None, CREATED)
    answer = batch_lines.chat_answer(_result("Hello"), MODEL, f"chatcmpl-{JOB}-0", CREATED)
    assert outcome["line"] == {"id": f"batch_req_{JOB}_0", "custom_id": "first",
                               "response": {"status_code": 200, "request_id": "fm-op-77", "body": answer}, "error": None}
    assert (outcome["ok"], outcome["failed"], outcome["ran"], outcome["index"]) == (True, False, True, 0)
    assert outcome["body"] == answer and outcome["body"]["created"] == CREATED
    assert outcome["native"] == {"customId": "first", "response": _result("Hello")}


def test_a_request_without_an_upstream_id_is_named_by_its_item() -> None:
    records = {0: _done(_result("Hi"), custom_id="a")}
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, records, {}, CHAT, None, None, CREATED)
    assert outcome["line"]["response"]["request_id"] == f"{JOB}#i0"


@pytest.mark.parametrize(("code", "status", "kind"), [
    (13, 502, "server_error"),  # INTERNAL: what the sync route answers for it, not a 400
    (3, 400, "invalid_request_error"), (8, 429, "rate_limit_error"), (7, 403, "permission_error"),
    (5, 404, "not_found_error"), (14, 503, "server_error"), (4, 504, "server_error"), (None, 502, "server_error"),
    (0, 502, "server_error"), (99, 502, "server_error"),
])
def test_a_failed_request_gets_the_status_the_sync_route_would_give(code: int | None, status: int, kind: str) -> None:
    error = {"message": "upstream says no"} if code is None else {"code": code, "message": "upstream says no"}
    records = {0: _done(error, failed=True, custom_id="c", upstream_id="fm-op-1")}
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, records, {}, CHAT, None, None, CREATED)
    line = outcome["line"]
    assert (line["id"], line["custom_id"]) == (f"batch_req_{JOB}_0", "c")
    assert line["response"]["status_code"] == status and line["response"]["request_id"] == "fm-op-1"
    assert line["response"]["body"]["error"]["type"] == kind
    assert line["response"]["body"]["error"]["message"] == "upstream says no" and line["error"] is None
    assert (outcome["ok"], outcome["failed"], outcome["ran"], outcome["body"]) == (False, True, True, None)
    assert outcome["native"] == {"customId": "c", "error": error}


@pytest.mark.parametrize("record", [{"state": "done", "outcome": "[]", "failed": True},
                                    {"state": "done", "failed": True},
                                    {"state": "done", "outcome": '{"code": 99}', "failed": True}])
def test_a_failure_without_a_status_is_a_502_saying_so(record: dict[str, Any]) -> None:
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, {0: record}, {}, CHAT, None, None, CREATED)
    assert outcome["line"]["response"]["status_code"] == 502
    assert outcome["line"]["response"]["body"]["error"]["message"] == "upstream answered HTTP 500"


@pytest.mark.parametrize(("stop", "code", "message"), [
    (1, "batch_cancelled", "This request was not run: the batch was cancelled."),
    (4, "batch_expired", "This request could not be executed before the completion window expired."),
    (13, "batch_failed", "This request was not run: the batch failed (the queue is gone)."),
])
def test_a_request_that_never_ran_says_why(stop: int, code: str, message: str) -> None:
    error = {"code": stop, "message": "the queue is gone"}
    records = {1: {"state": "running", "custom_id": "b", "upstream_id": "fm-op-2"},
               2: _done({"code": stop, "message": "stopped"}, failed=True, custom_id="c"),
               3: _done({"code": 1, "message": "cancelled"}, failed=True, custom_id="d")}
    requests = {0: {"index": 0, "customId": "a"}}
    outcomes = batch_outcomes.chat_outcomes(JOB, 4, records, requests, CHAT, stop, error, CREATED)
    assert [o["line"]["custom_id"] for o in outcomes] == ["a", "b", "c", "d"]
    for index, outcome in enumerate(outcomes):  # never started, still running, or stopped by the stop itself
        custom_id = outcome["line"]["custom_id"]
        assert outcome == {"index": index, "ok": False, "failed": False, "ran": False, "body": None,
                           "line": {"id": f"batch_req_{JOB}_{index}", "custom_id": custom_id, "response": None,
                                    "error": {"code": code, "message": message}},
                           "native": {"customId": custom_id, "error": {"code": stop, "message": message, "details": []}}}


def test_a_failure_of_its_own_in_a_stopped_batch_is_still_a_failure() -> None:
    records = {0: _done({"code": 3, "message": "bad"}, failed=True, custom_id="a")}
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, records, {}, CHAT, 4, {"code": 4}, CREATED)
    assert outcome["failed"] and outcome["line"]["response"]["status_code"] == 400
    assert (outcome["index"], outcome["line"]["id"], outcome["line"]["custom_id"]) == (0, f"batch_req_{JOB}_0", "a")


def test_a_request_that_never_ran_in_a_running_batch_failed_for_an_unknown_reason() -> None:
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, {}, {}, CHAT, None, None, CREATED)
    assert outcome["line"]["custom_id"] == "0"  # no record and no chunk: its index
    assert outcome["line"]["error"] == {"code": "batch_failed",
                                        "message": "This request was not run: the batch failed (unknown)."}
    assert outcome["native"]["error"]["code"] == 2
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, {}, {}, CHAT, None, {"code": 9}, CREATED)
    assert outcome["line"]["error"]["message"] == "This request was not run: the batch failed ()."


def test_a_responses_batch_answers_response_objects() -> None:
    settings = Settings(folder_id="b1g")
    _, model, line = batch_lines.responses_request({"model": "yandexgpt", "input": "Hi"}, settings)
    door = {"endpoint": batch_lines.RESPONSES, "model": model}
    records = {0: _done(_result("Hello", 3, 1, reasoning=1), custom_id="r", upstream_id="fm-op-9")}
    [outcome] = batch_outcomes.chat_outcomes(JOB, 1, records, {0: {"index": 0, "customId": "r", "response": line}},
                                             door, None, None, CREATED)
    body = outcome["line"]["response"]["body"]
    assert body["object"] == "response" and body["status"] == "completed" and body["completed_at"] == CREATED
    assert body["output"][0]["content"][0]["text"] == "Hello" and body["store"] is False
    assert outcome["line"]["response"]["request_id"] == "fm-op-9"
    assert batch_outcomes.usage([outcome["body"]]) == {
        "input_tokens": 3, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 4}


def test_the_batch_usage_sums_input_output_and_reasoning_tokens_of_its_answers() -> None:
    records = {0: _done(_result("a", 5, 2)), 1: _done(_result("b", 7, 11, reasoning=4)),
               2: _done({"code": 3, "message": "bad"}, failed=True)}
    outcomes = batch_outcomes.chat_outcomes(JOB, 3, records, {}, CHAT, None, None, CREATED)
    assert batch_outcomes.usage([o["body"] for o in outcomes if o["ok"]]) == {
        "input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 13,
        "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 25}
    assert batch_outcomes.usage([]) is None
    nothing = batch_outcomes.usage([{}, {"usage": None}, {"usage": {"prompt_tokens": None, "completion_tokens_details": {}}}])
    assert nothing == {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                       "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}


def _embeddings(index: int, encoding: str | None = None) -> dict[str, Any]:
    request = {"index": index, "customId": f"e{index}", "model": "emb://b1g/text-search-doc/latest", "texts": ["t"]}
    return {**request, "encodingFormat": encoding} if encoding else request


def test_an_embeddings_batch_answers_floats_unless_base64_was_asked() -> None:
    door = {"endpoint": batch_lines.EMBEDDINGS, "model": "emb://b1g/text-search-doc/latest"}
    answer = {"embeddings": [[0.5, -1.0]], "numTokens": "3"}
    tasks = [([_embeddings(2), _embeddings(0, "base64")], [answer, answer]), ([_embeddings(1)], [answer])]
    outcomes = batch_outcomes.embedding_outcomes(JOB, tasks, door, None, None)
    assert [o["index"] for o in outcomes] == [0, 1, 2]  # input order, whatever the tasks' order
    floats = outcomes[2]["line"]
    assert floats == {"id": f"batch_req_{JOB}_2", "custom_id": "e2", "error": None, "response": {
        "status_code": 200, "request_id": f"{JOB}-2",
        "body": {"object": "list", "model": door["model"], "usage": {"prompt_tokens": 3, "total_tokens": 3},
                 "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}]}}}
    encoded = outcomes[0]["line"]["response"]["body"]["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -1.0)
    assert outcomes[1]["native"] == {"customId": "e1", "response": answer}


def test_an_embeddings_request_that_failed_or_never_ran_says_so() -> None:
    door = {"endpoint": batch_lines.EMBEDDINGS, "model": "m"}
    tasks = [([_embeddings(0), _embeddings(1)], [{"error": {"code": 3, "message": "too long"}}]),  # one answer short
             ([_embeddings(2)], None)]  # a task that never finished
    outcomes = batch_outcomes.embedding_outcomes(JOB, tasks, door, 4, {"code": 4})
    assert outcomes[0]["line"]["response"]["status_code"] == 400 and outcomes[0]["failed"]
    assert (outcomes[0]["line"]["id"], outcomes[0]["line"]["custom_id"]) == (f"batch_req_{JOB}_0", "e0")
    assert outcomes[0]["line"]["response"]["request_id"] == f"{JOB}-0"
    assert outcomes[0]["native"] == {"customId": "e0", "error": {"code": 3, "message": "too long"}}
    for index, outcome in enumerate(outcomes[1:], start=1):
        assert outcome["line"] == {"id": f"batch_req_{JOB}_{index}", "custom_id": f"e{index}", "response": None,
                                   "error": {"code": "batch_expired", "message": batch_outcomes.STOPPED[4][1]}}
        assert not outcome["ran"]
    failed = batch_outcomes.embedding_outcomes(JOB, [([_embeddings(0)], None)], door, 13, {"code": 13, "message": "gone"})
    assert failed[0]["line"]["error"] == {"code": "batch_failed", "message": "This request was not run: the batch failed (gone)."}
