"""The OpenAI Files and Batch API's plain parts, without sockets: ids, the upload limit, the form parser,
grouping embedding lines into tasks, and the Batch status read from a job record."""

from __future__ import annotations

import json
import time

import pytest

from shared import errors
from shared.config import Settings
from shared.openai import batch_store, batches, files


def test_ids_sort_by_creation_time_and_carry_it() -> None:
    first = batch_store.new_file_id()
    time.sleep(0.002)
    second = batch_store.new_file_id()
    assert first < second and first.startswith("file-") and len(first) == 29
    assert abs(batch_store.created_ms(second) - time.time() * 1000) < 5000
    job = batch_store.new_batch_job_id()
    assert batches.OPERATION_ID.match(job) and batch_store.job_of(batch_store.batch_id(job)) == job
    assert batch_store.created_ms("batch_" + job) == batch_store.created_ms(job.replace("fmob", "file-", 1))
    assert batch_store.created_ms("nonsense") is None and batch_store.job_of("fmo123") == ""


def test_the_upload_limit_is_api_gateways_less_base64() -> None:
    assert files.max_upload_bytes(Settings()) == (2_500_000 - 8192) * 3 // 4 == 1_868_856


def form(*parts: tuple[str, bytes, str | None]) -> tuple[bytes, str]:
    body = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--XyZ\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            body += b"Content-Type: application/jsonl\r\n"
        body += b"\r\n" + data + b"\r\n"
    return body + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"


def test_the_form_parser_reads_fields_and_files() -> None:
    data = b'{"a": 1}\r\n--Xy is not the boundary\r\n\x00\xff'
    body, content_type = form(("purpose", b"batch", None), ("file", data, "my file.jsonl"))
    parsed = files.parse_form(body, content_type)
    assert bytes(parsed["purpose"]["data"]) == b"batch" and parsed["purpose"]["filename"] is None
    assert bytes(parsed["file"]["data"]) == data and parsed["file"]["filename"] == "my file.jsonl"
    assert parsed["file"]["content_type"] == "application/jsonl"


@pytest.mark.parametrize("body, content_type, param", [
    (b"{}", "application/json", "Content-Type"),
    (b"x", "multipart/form-data", "Content-Type"),
    (form(("purpose", b"batch", None))[0][:-12], "multipart/form-data; boundary=XyZ", "body"),
    (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--\r\n", "multipart/form-data; boundary=XyZ", "body"),
])
def test_bad_forms_name_what_is_wrong(body: bytes, content_type: str, param: str) -> None:
    with pytest.raises(errors.BadRequestError) as refused:
        files.parse_form(body, content_type)
    assert refused.value.details[0]["field"] == param


def test_embedding_lines_group_into_tasks_of_whole_lines() -> None:
    lines = [{"index": i, "customId": f"c{i}", "texts": ["t"] * n, "dim": None} for i, n in enumerate([3, 4, 5, 12, 1])]
    tasks = batches.embedding_tasks(lines, "emb://f/text-search-doc/latest", 10)
    assert [[r["index"] for r in t["requests"]] for t in tasks] == [[0, 1], [2], [3], [4]]
    assert all(t["modelUri"] == "emb://f/text-search-doc/latest" for t in tasks)


def record(**fields: object) -> dict[str, object]:
    base = {"id": "fmob0000000000001aaaaaaaaaaaaa", "state": "running", "items_total": 10, "items_done": 0,
            "items_failed": 0, "created_at": 1000.5, "modified_at": 1200.0, "deadline_at": 87400,
            "oa": json.dumps({"endpoint": "/v1/chat/completions", "input_file_id": "file-1", "model": "gpt://f/m"})}
    return {**base, **fields}


@pytest.mark.parametrize("fields, status", [
    ({"state": "queued"}, "in_progress"),
    ({"items_done": 4, "items_failed": 1}, "in_progress"),
    ({"items_done": 10}, "finalizing"),
    ({"state": "done", "result_key": "k"}, "completed"),
    ({"state": "done", "error": json.dumps({"code": 1, "message": "cancelled"})}, "cancelling"),
    ({"state": "done", "error": json.dumps({"code": 1, "message": "cancelled"}), "oa_settled": 1}, "cancelled"),
    ({"state": "done", "error": json.dumps({"code": 4, "message": "late"})}, "finalizing"),
    ({"state": "done", "error": json.dumps({"code": 4, "message": "late"}), "oa_settled": 1}, "expired"),
    ({"state": "done", "error": json.dumps({"code": 14, "message": "dead letter"})}, "failed"),
])
def test_the_batch_status_follows_the_job_record(fields: dict[str, object], status: str) -> None:
    view = batches.batch_object(record(**fields))
    assert view["status"] == status and view["id"].startswith("batch_fmob")
    assert view["expires_at"] == 1000 + 86_400 and view["in_progress_at"] == 1000


def test_counts_come_from_the_engine_then_from_the_settled_files() -> None:
    running = batches.batch_object(record(items_done=6, items_failed=2))
    assert running["request_counts"] == {"total": 10, "completed": 4, "failed": 2}
    settled = batches.batch_object(record(state="done", oa_settled=1, oa_completed=7, oa_failed=2, items_done=9,
                                          oa_output_file_id="file-o", oa_error_file_id="file-e"))
    assert settled["request_counts"] == {"total": 10, "completed": 7, "failed": 2}
    assert (settled["output_file_id"], settled["error_file_id"]) == ("file-o", "file-e")
    invalid = batches.batch_object(record(state="done", items_total=0, error=json.dumps({"code": 3, "message": "x"}),
                                          oa_errors=json.dumps([{"code": "invalid_json_line", "line": 2}])))
    assert invalid["status"] == "failed" and invalid["errors"]["data"][0]["line"] == 2
    assert invalid["in_progress_at"] is None and invalid["failed_at"] == 1200
