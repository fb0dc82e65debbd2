"""What /v1/files promises (shared/openai/files.py, and the file records of shared/openai/batch_store.py), in
process: the operations function is invoked with API Gateway events, the job store is its in-process stand-in
and time is the test clock (tests/clock.py).

An upload is stored with its owner, bytes and expiry (JOBS_TTL_DAYS, or a shorter `expires_after`) and answered
as OpenAI's file object; a bad form is a 400 naming the field, an upload past what API Gateway passes a 413
before anything is stored; a file is listed newest first (or oldest first), by purpose, in pages after a cursor,
with `limit` 1-10,000 and anything else a 400 naming `limit`; its content comes inline up to
RESULT_INLINE_MAX_BYTES and above that as a 307 to a presigned link minted for its owner only; an unknown,
another caller's or expired file (past `expires_at`, before the TTL sweep) is 404 on every route; a deleted
file is gone from every route and from the listing."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.operations import handler as operations_function
from local.aws import InProcessMoto
from shared.config import Settings
from shared.jobs import store as jobs
from shared.openai import batch_store, files
from tests.clock import ManualClock
from tests.conftest import Aws, FakeContext, in_zone, reset_caches

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

DAY = 86_400
BOUNDARY = "XyZzy"


@pytest.fixture
def env(aws: Aws, clock: ManualClock) -> Aws:
    return aws


class Answer:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status: int = raw["statusCode"]
        self.headers: dict[str, str] = raw.get("headers") or {}
        body = raw.get("body") or ""
        self.content: bytes = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()

    def json(self) -> Any:
        return json.loads(self.content)

    def error(self) -> dict[str, Any]:
        return self.json()["error"]


def call(method: str, path: str, body: Any = None, *, caller: str = "alice", query: dict[str, Any] | None = None,
         raw: bytes | None = None, content_type: str | None = None, policy: str | None = None) -> Answer:
    """One API Gateway event to the operations function; `policy` is the key's policy as the authorizer hands it."""
    headers = {"Content-Type": content_type} if content_type else {}
    authorizer = {"caller": caller, **({"policy": policy} if policy is not None else {})}
    event: dict[str, Any] = {"httpMethod": method, "url": path, "headers": headers,
                             "requestContext": {"authorizer": authorizer},
                             "queryStringParameters": {k: str(v) for k, v in (query or {}).items()}}
    if raw is not None:
        event.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    else:
        event["body"] = json.dumps(body) if body is not None else None
    return Answer(operations_function.handler(event, FakeContext()))


def form(*parts: tuple[str, bytes, str | None, str | None]) -> bytes:
    """A multipart body of (name, data, filename, content type) parts."""
    body = b""
    for name, data, filename, kind in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if kind:
            body += f"Content-Type: {kind}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post_form(body: bytes, caller: str = "alice", content_type: str = f"multipart/form-data; boundary={BOUNDARY}"
              ) -> Answer:
    return call("POST", "/v1/files", raw=body, caller=caller, content_type=content_type)


def upload(data: bytes = b'{"a": 1}\n', name: str = "requests.jsonl", purpose: str = "batch", caller: str = "alice",
           kind: str | None = "application/jsonl", expires: tuple[str, str] | None = None) -> dict[str, Any]:
    parts = [("purpose", purpose.encode(), None, None), ("file", data, name, kind)]
    if expires is not None:
        parts += [("expires_after[anchor]", expires[0].encode(), None, None),
                  ("expires_after[seconds]", expires[1].encode(), None, None)]
    answer = post_form(form(*parts), caller=caller)
    assert answer.status == 200, answer.content
    return answer.json()


def refused(answer: Answer, status: int = 400) -> tuple[str | None, str]:
    assert answer.status == status, (answer.status, answer.content)
    error = answer.error()
    return error["param"], error["message"]


def store() -> jobs.JobStore:
    return jobs.JobStore(Settings.from_env())


def listing(caller: str = "alice", **query: Any) -> dict[str, Any]:
    answer = call("GET", "/v1/files", query=query, caller=caller)
    assert answer.status == 200, answer.content
    return answer.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [f["id"] for f in page["data"]]


# -- POST /v1/files ---------------------------------------------------------------------------------------

def test_an_upload_is_stored_and_answered_as_openais_file_object(env: Aws, clock: ManualClock) -> None:
    data = b'{"custom_id": "a"}\n\x00\xff binary too'
    created = upload(data, name="my requests.jsonl")
    now = int(clock.now())
    assert created["id"].startswith("file-") and len(created["id"]) == 29
    assert created == {"id": created["id"], "object": "file", "bytes": len(data), "created_at": now,
                       "expires_at": now + 3 * DAY, "filename": "my requests.jsonl", "purpose": "batch",
                       "status": "processed", "status_details": None}
    assert call("GET", f"/v1/files/{created['id']}").json() == created
    content = call("GET", f"/v1/files/{created['id']}/content")
    assert content.status == 200 and content.content == data
    assert content.headers["Content-Type"] == "application/jsonl"
    record = store().item(created["id"])
    assert record["created_by"] == "alice" and record["kind"] == "file"
    assert store().get_object(f"files/{created['id']}") == data
    assert ids(listing()) == [created["id"]] and ids(listing(caller="bob")) == []


def test_the_ttl_follows_jobs_ttl_days_and_a_part_without_a_type_is_octet_stream(
        env: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TTL_DAYS", "1")
    reset_caches()
    created = upload(kind=None, purpose="user_data")
    assert created["expires_at"] == created["created_at"] + DAY and created["purpose"] == "user_data"
    assert call("GET", f"/v1/files/{created['id']}/content").headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("seconds", [3600, 2_592_000, 7200])
def test_expires_after_sets_expires_at_within_the_ttl(env: Aws, seconds: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TTL_DAYS", "30")
    reset_caches()
    created = upload(expires=("created_at", f" {seconds} "))
    assert created["expires_at"] == created["created_at"] + seconds
    assert store().item(created["id"])["expires_at"] == created["expires_at"]


def test_expires_after_past_the_jobs_ttl_keeps_the_ttl(env: Aws) -> None:
    created = upload(expires=("created_at", "2592000"))
    assert created["expires_at"] == created["created_at"] + 3 * DAY


@pytest.mark.parametrize("anchor,seconds,param", [
    ("created_at", "3599", "expires_after.seconds"), ("created_at", "2592001", "expires_after.seconds"),
    ("created_at", "-3600", "expires_after.seconds"), ("created_at", "1e4", "expires_after.seconds"),
    ("created_at", None, "expires_after.seconds"), ("last_active_at", "3600", "expires_after.anchor"),
    (None, "3600", "expires_after.anchor"),
])
def test_a_bad_expires_after_is_a_400_naming_it(env: Aws, anchor: str | None, seconds: str | None, param: str) -> None:
    parts = [("purpose", b"batch", None, None), ("file", b"x", "a.jsonl", None)]
    if anchor is not None:
        parts.append(("expires_after[anchor]", anchor.encode(), None, None))
    if seconds is not None:
        parts.append(("expires_after[seconds]", seconds.encode(), None, None))
    rule = "must be 3600-2592000" if param.endswith("seconds") else "must be created_at"
    assert refused(post_form(form(*parts))) == (param, f"{param}: {rule}")
    assert listing()["data"] == []


PURPOSES = "assistants, batch, fine-tune, vision, user_data, evals"


@pytest.mark.parametrize("parts,param,message", [
    ([("file", b"x", "a.jsonl", None)], "purpose", f"purpose: is required: one of {PURPOSES}"),
    ([("purpose", b"batch_output", None, None), ("file", b"x", "a.jsonl", None)], "purpose",
     f"purpose: must be one of {PURPOSES}"),
    ([("purpose", b"\xff\xfe", None, None), ("file", b"x", "a.jsonl", None)], "purpose", "purpose: must be UTF-8 text"),
    ([("purpose", b"batch", None, None)], "file", "file: is required: a form part named `file` with a filename"),
    ([("purpose", b"batch", None, None), ("file", b"x", None, None)], "file",
     "file: is required: a form part named `file` with a filename"),
])
def test_a_bad_upload_is_a_400_naming_the_field(env: Aws, parts: list[Any], param: str, message: str) -> None:
    assert refused(post_form(form(*parts))) == (param, message)
    assert listing()["data"] == []


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"])
def test_every_documented_purpose_is_taken(env: Aws, purpose: str) -> None:
    assert upload(purpose=f"  {purpose}\r\n")["purpose"] == purpose


def test_an_empty_filename_is_named_file(env: Aws) -> None:
    assert upload(name="")["filename"] == "file"


def test_the_last_part_of_a_name_wins(env: Aws) -> None:
    created = post_form(form(("purpose", b"vision", None, None), ("file", b"first", "one.txt", None),
                             ("purpose", b"evals", None, None), ("file", b"second", "two.txt", "text/plain"))).json()
    assert (created["purpose"], created["filename"], created["bytes"]) == ("evals", "two.txt", 6)
    content = call("GET", f"/v1/files/{created['id']}/content")
    assert content.content == b"second" and content.headers["Content-Type"] == "text/plain"


def test_header_names_are_read_in_any_case(env: Aws) -> None:
    body = (f"--{BOUNDARY}\r\ncontent-DISPOSITION: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n"
            f"CONTENT-TYPE: text/csv\r\n\r\na,b\r\n--{BOUNDARY}--\r\n").encode()
    created = post_form(body).json()
    assert created["filename"] == "f.txt"
    assert call("GET", f"/v1/files/{created['id']}/content").headers["Content-Type"] == "text/csv"


def test_non_utf8_names_are_read_with_replacement(env: Aws) -> None:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"").encode() + b"a\xffb.txt" + (
            f"\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n").encode()
    assert post_form(body).json()["filename"] == "a\ufffdb.txt"
    odd = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"").encode() + b"\xfe\xff" + (
        b'"\r\n\r\nextra\r\n') + form(("purpose", b"batch", None, None), ("file", b"x", "a.txt", None))
    # a part whose name is not UTF-8 is read (with replacement) and ignored
    answer = post_form(odd)
    assert answer.status == 200 and answer.json()["filename"] == "a.txt"


@pytest.mark.parametrize("body,content_type,message", [
    (b"{}", "application/json", "Content-Type: must be multipart/form-data with a boundary (the `file` and `purpose` "
                                "fields as form parts)"),
    (b"x", "multipart/form-data", None), (b"x", "multipart/form-data; boundary=", None),
    (b"x", "multipart/mixed; boundary=XyZzy", None), (b"x", "", None),
])
def test_a_body_that_is_not_a_form_is_a_400_naming_content_type(env: Aws, body: bytes, content_type: str,
                                                                message: str | None) -> None:
    param, said = refused(post_form(body, content_type=content_type))
    assert param == "Content-Type" and said.startswith("Content-Type: must be multipart/form-data with a boundary")
    assert message is None or said == message


@pytest.mark.parametrize("body,message", [
    (form(("purpose", b"batch", None, None))[:-12], "body: is not valid multipart/form-data (it ends before the "
                                                    "closing boundary)"),
    (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
     "body: every form part needs Content-Disposition: form-data; name=..."),
    (f"--{BOUNDARY}\r\nContent-Disposition: attachment; name=\"purpose\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
     "body: every form part needs Content-Disposition: form-data; name=..."),
    (f"--{BOUNDARY}\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
     "body: every form part needs Content-Disposition: form-data; name=..."),
    (b"--XyZzy\r\nbroken header line without colon\r\n\r\nx\r\n--XyZzy--\r\n", None),
])
def test_a_broken_form_is_a_400_naming_the_body(env: Aws, body: bytes, message: str | None) -> None:
    param, said = refused(post_form(body))
    assert param == "body"
    if message is None:
        assert said.startswith("body: is not valid multipart/form-data (") and said.endswith(")")
    else:
        assert said == message


def test_an_upload_past_what_api_gateway_passes_is_a_413_before_anything_is_stored(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_BODY_BYTES", "12192")  # (12,192 - 8,192) x 3 / 4 = 3,000 bytes of body
    reset_caches()
    assert files.max_upload_bytes(Settings.from_env()) == 3000
    head = form(("purpose", b"batch", None, None), ("file", b"", "a.jsonl", None))
    fits = form(("purpose", b"batch", None, None), ("file", b"x" * (3000 - len(head)), "a.jsonl", None))
    assert len(fits) == 3000 and post_form(fits).status == 200
    over = form(("purpose", b"batch", None, None), ("file", b"x" * (3001 - len(head)), "a.jsonl", None))
    assert refused(post_form(over), 413) == (
        "file", "file: the upload is 3001 bytes; the largest that reaches this API through API Gateway is 3000 bytes "
                "of multipart body (2.5 MB, base64-encoded in the event): split the batch into several files")
    assert len(listing()["data"]) == 1


# -- GET /v1/files -----------------------------------------------------------------------------------------

def _three(clock: ManualClock) -> list[str]:
    made = []
    for purpose in ("batch", "user_data", "batch"):
        made.append(upload(purpose=purpose)["id"])
        clock.advance(1)
    return made


def test_the_listing_is_newest_first_or_oldest_first_and_filters_by_purpose(env: Aws, clock: ManualClock) -> None:
    a, b, c = _three(clock)
    page = listing()
    assert ids(page) == [c, b, a] and page["object"] == "list"
    assert (page["first_id"], page["last_id"], page["has_more"]) == (c, a, False)
    assert page["data"][0] == call("GET", f"/v1/files/{c}").json()
    assert ids(listing(order="asc")) == [a, b, c]
    assert ids(listing(order="desc")) == [c, b, a]
    assert ids(listing(purpose="batch")) == [c, a] and ids(listing(purpose="user_data")) == [b]
    assert ids(listing(purpose="")) == [c, b, a] and ids(listing(purpose="vision")) == []
    empty = listing(caller="bob")
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_the_listing_pages_after_a_cursor(env: Aws, clock: ManualClock) -> None:
    a, b, c = _three(clock)
    first = listing(limit=2)
    assert ids(first) == [c, b] and first["has_more"] is True
    second = listing(limit=2, after=first["last_id"])
    assert ids(second) == [a] and second["has_more"] is False
    assert ids(listing(limit=1, after=c)) == [b] and listing(limit=1, after=c)["has_more"] is True
    assert ids(listing(order="asc", limit=2)) == [a, b] and listing(order="asc", limit=2)["has_more"] is True
    assert ids(listing(order="asc", after=a)) == [b, c] and ids(listing(order="asc", after=c)) == []
    assert ids(listing(after="")) == [c, b, a] and ids(listing(limit="")) == [c, b, a]
    assert ids(listing(limit=3)) == [c, b, a] and listing(limit=3)["has_more"] is False


def test_the_listing_reaches_back_across_hours_and_days_within_the_ttl(env: Aws, clock: ManualClock) -> None:
    old = upload()["id"]
    clock.advance(2 * DAY + 5 * 3600)
    new = upload()["id"]
    assert ids(listing()) == [new, old] and ids(listing(order="asc")) == [old, new]
    assert ids(listing(after=new)) == [old] and ids(listing(order="asc", after=old)) == [new]
    clock.advance(DAY)  # the old one is now past its TTL (3 days): gone from the listing before any sweep
    assert ids(listing()) == [new]


def test_a_page_past_max_page_says_more_follow(env: Aws, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    a, b, c = _three(clock)
    monkeypatch.setattr(batch_store, "MAX_PAGE", 2)
    page = listing(limit=10_000)
    assert ids(page) == [c, b] and page["has_more"] is True


@pytest.mark.parametrize("limit", [1, 10_000])
def test_limit_is_taken_up_to_its_documented_maximum(env: Aws, limit: int) -> None:
    assert listing(limit=limit)["has_more"] is False


@pytest.mark.parametrize("limit", [10_001, 0, -1, "ten", "1.5", "\u0661", 10**30, " 5"])
def test_any_other_limit_is_a_400_naming_limit(env: Aws, limit: Any) -> None:
    assert refused(call("GET", "/v1/files", query={"limit": limit})) == (
        "limit", "limit: must be a whole number from 1 to 10000")


def test_a_bad_order_is_a_400_naming_order(env: Aws) -> None:
    assert refused(call("GET", "/v1/files", query={"order": "newest"})) == ("order", "order: must be asc or desc")


# -- GET /v1/files/{id}, its content, DELETE ------------------------------------------------------------------

ROUTES = [("GET", "/v1/files/{}"), ("GET", "/v1/files/{}/content"), ("DELETE", "/v1/files/{}")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_an_unknown_or_foreign_file_is_a_404_on_every_route(env: Aws, method: str, path: str) -> None:
    mine = upload()["id"]
    for file_id, caller in ((mine, "bob"), ("file-000000000000000000000000", "alice"), ("nonsense", "alice"),
                            (mine + "0" * 40, "alice"), (mine.replace("file-", "fmob"), "alice")):
        answer = call(method, path.format(file_id), caller=caller)
        assert refused(answer, 404)[1] == f"file {file_id} not found", (file_id, caller)
    assert call("GET", f"/v1/files/{mine}").status == 200


@pytest.mark.parametrize("method,path", ROUTES)
def test_an_expired_file_is_a_404_on_every_route_before_the_ttl_sweep(env: Aws, clock: ManualClock, method: str,
                                                                     path: str) -> None:
    alive, created = upload(expires=("created_at", "3600")), upload(expires=("created_at", "3600"))
    clock.advance(3599)
    assert call(method, path.format(alive["id"])).status == 200
    clock.advance(2)
    assert refused(call(method, path.format(created["id"])), 404)[1] == f"file {created['id']} not found"
    assert store().item(created["id"]) is not None  # the record is still there: only the sweep deletes it


def test_a_record_of_another_kind_under_a_file_id_is_a_404(env: Aws, clock: ManualClock) -> None:
    file_id = batch_store.new_file_id()
    store().put_record(file_id, {"id": file_id, "kind": "batch", "created_by": "alice",
                                 "expires_at": int(clock.now()) + DAY})
    assert refused(call("GET", f"/v1/files/{file_id}"), 404)[1] == f"file {file_id} not found"


def test_the_admin_caller_sees_anothers_file(env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ADMIN_CALLER", "root")
    reset_caches()
    created = upload(b"abc")
    assert call("GET", f"/v1/files/{created['id']}", caller="root").json() == created
    assert call("GET", f"/v1/files/{created['id']}/content", caller="root").content == b"abc"


def test_content_above_the_inline_limit_is_a_presigned_link_for_its_owner_only(
        env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "10")
    monkeypatch.setenv("RESULT_URL_TTL_S", "120")
    monkeypatch.setenv("FM_ADMIN_CALLER", "root")
    reset_caches()
    at_limit = upload(b"0123456789")
    assert call("GET", f"/v1/files/{at_limit['id']}/content").content == b"0123456789"
    over = upload(b"0123456789A")
    answer = call("GET", f"/v1/files/{over['id']}/content")
    assert answer.status == 307 and answer.json() == {}
    location = answer.headers["Location"]
    assert f"/files/{over['id']}?" in location and "Expires=" in location or "X-Amz-Expires=120" in location
    assert location == store().presign(f"files/{over['id']}", 120)
    forbidden = call("GET", f"/v1/files/{over['id']}/content", caller="root")
    assert forbidden.status == 403 and "Location" not in forbidden.headers
    assert forbidden.error()["message"] == (f"file {over['id']} is larger than 10 bytes: its content is handed only "
                                            "to its owner, as a presigned link")


def test_content_whose_bytes_are_gone_is_a_404_saying_so(env: Aws) -> None:
    created = upload()
    store().delete_object(f"files/{created['id']}")
    assert refused(call("GET", f"/v1/files/{created['id']}/content"), 404)[1] == (
        f"file {created['id']} not found (its content is no longer stored)")


def test_a_deleted_file_is_gone_from_every_route_and_the_listing(env: Aws, clock: ManualClock) -> None:
    keep = upload(purpose="vision")["id"]
    clock.advance(1)
    gone = upload(purpose="vision")["id"]
    assert call("DELETE", f"/v1/files/{gone}", caller="bob").status == 404
    answer = call("DELETE", f"/v1/files/{gone}")
    assert answer.status == 200 and answer.json() == {"id": gone, "object": "file", "deleted": True}
    for method, path in ROUTES:
        assert call(method, path.format(gone)).status == 404
    assert ids(listing()) == [keep] and ids(listing(purpose="vision")) == [keep]
    with pytest.raises(jobs.MissingObjectError):
        store().get_object(f"files/{gone}")
    assert store().item(gone) is None
    hour = batch_store._hour(batch_store.created_ms(gone))
    assert store().item(batch_store.list_key("file", "alice", hour))["ids"] == [f"{keep}|vision"]


def test_a_delete_whose_cleanup_fails_still_answers_deleted(env: Aws, monkeypatch: pytest.MonkeyPatch,
                                                            log_output: Any) -> None:
    from shared import errors

    created = upload()

    def refuse(self: Any, key: str) -> None:
        raise errors.UpstreamUnavailableError("the bucket is away")

    monkeypatch.setattr(jobs.JobStore, "delete_object", refuse)
    assert call("DELETE", f"/v1/files/{created['id']}").json()["deleted"] is True
    assert call("GET", f"/v1/files/{created['id']}").status == 404 and listing()["data"] == []
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if x.startswith("{")]
    (left,) = [x for x in lines if x.get("msg") == "deleted file left behind (it expires)"]
    assert (left["file_id"], left["reason"], left["level"]) == (created["id"], "the bucket is away", "WARN")


# -- the ids and the caller's list records (batch_store.py) ----------------------------------------------------

def test_ids_carry_their_creation_time_and_sort_by_it(clock: ManualClock) -> None:
    ms = int(clock.now() * 1000)
    file_id, job = batch_store.new_file_id(), batch_store.new_batch_job_id()
    assert file_id[:17] == f"file-{ms:012x}" and len(file_id) == 29 and int(file_id[17:], 16) >= 0
    assert job[:16] == f"fmob{ms:012x}" and len(job) == 29 and int(job[16:], 16) >= 0
    assert batch_store.created_ms(file_id) == ms == batch_store.created_ms(batch_store.batch_id(job))
    assert len({batch_store.new_file_id() for _ in range(50)}) == 50
    assert len({batch_store.new_batch_job_id() for _ in range(50)}) == 50
    clock.advance(0.002)
    assert batch_store.new_file_id() > file_id and batch_store.new_batch_job_id() > job
    assert batch_store.batch_id(job) == "batch_" + job and batch_store.job_of("batch_" + job) == job
    assert batch_store.job_of(job) == "" and batch_store.job_of("batch_") == ""
    for other in ("file-zzzzzzzzzzzz0", "fmob" + job[4:], "batch_" + file_id, "x"):
        assert batch_store.created_ms(other) is None, other


def test_a_list_record_outlives_its_entries(env: Aws, clock: ManualClock) -> None:
    created = upload(purpose="vision")
    hour = batch_store._hour(batch_store.created_ms(created["id"]))
    assert hour == datetime.fromtimestamp(created["created_at"], UTC).strftime("%Y%m%d%H")
    key = batch_store.list_key("file", "alice", hour)
    assert key == f"list#file#{hashlib.sha256(b'alice').hexdigest()[:16]}#{hour}"
    record = store().item(key)
    assert record["ids"] == [f"{created['id']}|vision"]
    ms = batch_store.created_ms(created["id"])
    assert float(record["expires_at"]) == pytest.approx(ms / 1000 + 3 * DAY + 7200, abs=1)


def test_records_past_expires_at_are_expired_and_loads_reads_only_json_text(clock: ManualClock) -> None:
    now = clock.now()
    assert batch_store.expired({"expires_at": now - 1}) and not batch_store.expired({"expires_at": now + 1})
    assert batch_store.expired({"expires_at": 100}, now=101) and not batch_store.expired({"expires_at": 100}, 100)
    assert batch_store.expired({}) and batch_store.expired({"expires_at": None})
    assert batch_store.loads('{"a": 1}') == {"a": 1} and batch_store.loads("[1]", {}) == [1]
    assert batch_store.loads("", {"d": 1}) == {"d": 1} and batch_store.loads(None) is None
    assert batch_store.loads(b'{"a": 1}', "d") == "d" and batch_store.loads("{nope", "d") == "d"


def test_an_id_too_long_to_be_ours_is_a_404_without_a_lookup(env: Aws) -> None:
    for file_id in ("file-" + "0" * 3000, "file-" + "0" * 60):
        assert refused(call("GET", f"/v1/files/{file_id}"), 404)[1] == f"file {file_id} not found"


def test_the_summary_line_names_the_file(env: Aws, log_output: Any) -> None:
    created = upload(b"12345", purpose="evals")
    call("GET", f"/v1/files/{created['id']}")
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if x.startswith("{")]
    summaries = [x for x in lines if x.get("msg") in ("request handled", "request failed")]
    assert [(x.get("file_id"), x.get("bytes"), x.get("purpose")) for x in summaries] == [
        (created["id"], 5, "evals"), (created["id"], None, None)]


def test_a_list_entry_goes_to_its_ids_creation_hour(env: Aws, clock: ManualClock) -> None:
    file_id = batch_store.new_file_id()  # made now, listed two hours later (as a batch's output file chosen once)
    clock.advance(7200)
    batch_store.add_to_list(store(), "file", "alice", file_id)
    hour = batch_store._hour(batch_store.created_ms(file_id))
    record = store().item(batch_store.list_key("file", "alice", hour))
    assert record["ids"] == [file_id]
    assert int(record["expires_at"]) == int(batch_store.created_ms(file_id) / 1000 + 3 * DAY + 7200)


def test_a_file_is_listed_until_its_last_second(env: Aws, clock: ManualClock) -> None:
    created = upload()
    clock.advance(3 * DAY - 1)
    assert ids(listing()) == [created["id"]] and ids(listing(order="asc")) == [created["id"]]
    clock.advance(2)
    assert listing()["data"] == []


def test_a_listing_reaches_back_past_a_hundred_hours(env: Aws, clock: ManualClock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TTL_DAYS", "6")
    reset_caches()
    old = upload()["id"]
    clock.advance(5 * DAY)  # 120 hours: its list record is in the second read of 100 hours
    new = upload()["id"]
    page = listing(limit=1)
    assert ids(page) == [new] and page["has_more"] is True
    assert ids(listing()) == [new, old] and ids(listing(after=new)) == [old]
    assert ids(listing(order="asc", limit=1)) == [old] and listing(order="asc", limit=1)["has_more"] is True


def test_the_bytes_are_stored_with_their_content_type(env: Aws) -> None:
    created = upload(kind="text/csv; charset=utf-8")
    head = store().s3.head_object(Bucket=store().bucket, Key=f"files/{created['id']}")
    assert head["ContentType"] == "text/csv; charset=utf-8"


def test_a_file_saved_again_under_its_id_keeps_its_first_record(env: Aws, clock: ManualClock) -> None:
    file_id = batch_store.new_file_id()
    first = batch_store.save_file(store(), "alice", "a.jsonl", "batch_output", b"one", "application/jsonl", 7200,
                                  file_id=file_id)
    clock.advance(60)
    again = batch_store.save_file(store(), "alice", "b.jsonl", "batch_output", b"two!", "application/jsonl", None,
                                  file_id=file_id)
    assert again == first == store().item(file_id)
    assert first["expires_at"] == first["created_at"] + 7200 and first["bytes"] == 3
    assert ids(listing(purpose="batch_output")) == [file_id]


def _to(clock: ManualClock, moment: float) -> None:
    clock.advance(moment - clock.now())


def test_a_file_made_in_any_hour_of_the_ttl_is_listed_once(env: Aws, clock: ManualClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing walks back hour by hour from any moment (here 10 ms past an hour's turn), across reads of 100
    hours: a file made k hours before is found, once, for every k in the TTL (6 days here)."""
    monkeypatch.setenv("JOBS_TTL_DAYS", "6")
    reset_caches()
    back = (0, 1, 10, 11, 12, 50, 98, 99, 100, 101, 102, 140, 143)
    listed_at = (clock.now() // 3600 + max(back) + 2) * 3600 + 0.010
    made = []
    for hours in sorted(back, reverse=True):
        _to(clock, listed_at - hours * 3600)
        made.append(upload()["id"])
    _to(clock, listed_at)
    assert ids(listing(limit=100)) == made[::-1]
    assert ids(listing(limit=100, order="asc")) == made


def test_a_file_made_under_another_timezone_is_listed(env: Aws, clock: ManualClock) -> None:
    """The list records are keyed by the UTC hour: a function whose process runs ten hours east of UTC
    writes where any other finds it."""
    with in_zone("EAST-10"):  # ten hours east of UTC
        made = upload()["id"]
    assert ids(listing()) == [made]


def test_a_listing_reads_one_batch_per_hundred_hours_from_its_cursor(env: Aws, clock: ManualClock,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What the module promises a listing costs: one BatchGetItem per 100 hours it looks back (from the
    cursor's hour when paging on) plus one per 100 objects on the page."""
    sizes: list[int] = []
    original = jobs.JobStore._batch_get

    def counted(self: jobs.JobStore, keys: list[str]) -> dict[str, dict[str, Any]]:
        sizes.append(len(keys))
        return original(self, keys)

    def requests() -> int:
        made = sum(-(-n // 100) for n in sizes)
        sizes.clear()
        return made

    monkeypatch.setattr(jobs.JobStore, "_batch_get", counted)
    assert listing()["data"] == [] and requests() == 1  # the default TTL (3 days): one read of its hours
    upload()
    requests()
    assert len(listing()["data"]) == 1 and requests() == 2  # and one of the page's records
    monkeypatch.setenv("JOBS_TTL_DAYS", "30")
    reset_caches()
    old = upload()["id"]
    clock.advance(DAY)
    cursor = upload()["id"]
    clock.advance(25 * DAY)  # 600 hours after the cursor: 30 days (721 hours) is eight reads from now
    upload()
    requests()
    assert len(listing()["data"]) == 3 and requests() == 9
    assert ids(listing(after=cursor)) == [old] and requests() == 3  # hours 600-721 in two reads, and the record


def test_a_file_saved_later_under_an_id_chosen_earlier_dates_from_its_id(env: Aws, clock: ManualClock) -> None:
    """A batch's output file ids are chosen once, and the files written later (perhaps by another poller):
    the file dates from its id, so that its created_at, its expiry and its place in the listing agree."""
    file_id = batch_store.new_file_id()
    chosen = batch_store.created_ms(file_id) / 1000
    clock.advance(2 * 3600 + 30)
    record = batch_store.save_file(store(), "alice", "out.jsonl", "batch_output", b"{}\n", "application/jsonl",
                                   file_id=file_id)
    assert record["created_at"] == int(chosen) and record["expires_at"] == int(chosen + 3 * DAY)
    assert call("GET", f"/v1/files/{file_id}").json()["created_at"] == int(chosen)
    newer = upload()["id"]
    assert ids(listing()) == [newer, file_id]
