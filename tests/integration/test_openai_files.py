"""The OpenAI Files API with the real `openai` client over real HTTP (local gateway, moto server): upload,
list and page, retrieve, content (inline and through a presigned URL), delete, the upload limit, bad
forms, and two callers who never see each other's files or batches."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import openai
import pytest
import requests

from local import gateway
from tests.conftest import Api, Emulator, Jobs, reset_caches

pytestmark = pytest.mark.integration

ALICE, BOB = "fmk_alice-files-key-0123456789abcdef", "fmk_bob-files-key-0123456789abcdef0"


@pytest.fixture
def client(api_v01: Api, jobs: Jobs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api_v01.url}/v1", api_key="local", max_retries=0)


def upload(client: openai.OpenAI, data: bytes, name: str = "requests.jsonl", purpose: str = "batch") -> Any:
    return client.files.create(file=(name, io.BytesIO(data), "application/jsonl"), purpose=purpose)  # type: ignore[arg-type]


def test_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    data = b'{"custom_id": "a", "method": "POST"}\n' + "привет\n".encode()
    made = upload(client, data)
    assert made.object == "file" and made.id.startswith("file-") and made.bytes == len(data)
    assert made.filename == "requests.jsonl" and made.purpose == "batch" and made.status == "processed"
    assert made.expires_at == made.created_at + 3 * 86400  # JOBS_TTL_DAYS
    assert client.files.retrieve(made.id).model_dump() == made.model_dump()
    assert client.files.content(made.id).content == data
    deleted = client.files.delete(made.id)
    assert deleted.deleted is True and deleted.id == made.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(made.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(made.id)
    assert made.id not in [f.id for f in client.files.list()]


def test_listing_is_newest_first_pages_and_filters(client: openai.OpenAI) -> None:
    made = [upload(client, f"line {i}\n".encode(), purpose="batch" if i % 2 else "user_data").id for i in range(5)]
    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == made[::-1][:2] and page.has_more is True
    raw = requests.get(f"{client.base_url}files", params={"limit": 2}, timeout=10).json()
    assert raw["first_id"] == made[4] and raw["last_id"] == made[3] and raw["has_more"] is True
    assert [f.id for f in client.files.list(limit=2)] == made[::-1]  # the client pages on with `after`
    assert [f.id for f in client.files.list(purpose="batch")] == [made[3], made[1]]
    assert [f.id for f in client.files.list(order="asc", limit=3)] == made
    last = client.files.list(after=made[1])
    assert [f.id for f in last.data] == [made[0]] and last.has_more is False
    client.files.delete(made[2])
    assert [f.id for f in client.files.list(limit=1)] == [made[4], made[3], made[1], made[0]]
    bad = requests.get(f"{client.base_url}files", params={"limit": "0"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_content_above_the_inline_limit_comes_through_a_presigned_url(client: openai.OpenAI,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "1000")
    reset_caches()
    data = b"x" * 5000
    made = upload(client, data)
    raw = requests.get(f"{client.base_url}files/{made.id}/content", allow_redirects=False, timeout=10)
    assert raw.status_code == 307 and "Signature" in raw.headers["Location"]
    assert client.files.content(made.id).content == data  # the client follows it


def test_an_upload_past_what_api_gateway_passes_is_a_413_before_anything_is_stored(
        client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import Settings
    from shared.openai.files import max_upload_bytes

    assert max_upload_bytes(Settings()) == 1_868_856  # (2.5 MB - 8 KB of event) x 3/4: base64 in the event
    monkeypatch.setenv("FM_MAX_BODY_BYTES", "20000")
    reset_caches()
    with pytest.raises(openai.APIStatusError) as refused:
        upload(client, b"y" * 9000)
    assert refused.value.status_code == 413
    assert refused.value.body["param"] == "file" and "8856 bytes" in refused.value.body["message"]
    assert list(client.files.list()) == []
    assert upload(client, b"y" * 8000).bytes == 8000


def test_bad_forms_are_400s_naming_the_field(api_v01: Api, jobs: Jobs) -> None:
    url = f"{api_v01.url}/v1/files"
    cases = [
        (dict(files={"file": ("a.jsonl", b"x")}), "purpose"),
        (dict(files={"file": ("a.jsonl", b"x")}, data={"purpose": "nonsense"}), "purpose"),
        (dict(data={"purpose": "batch"}, files={"other": ("a", b"x")}), "file"),
        (dict(json={"purpose": "batch"}), "Content-Type"),
        (dict(data=b"--b\r\nContent-Disposition: form-data; name=purpose\r\n\r\nbatch",
              headers={"Content-Type": "multipart/form-data; boundary=b"}), "body"),
        (dict(files={"file": ("a.jsonl", b"x")}, data={"purpose": "batch", "expires_after[anchor]": "created_at",
                                                       "expires_after[seconds]": "10"}), "expires_after.seconds"),
    ]
    for kwargs, param in cases:
        answer = requests.post(url, timeout=10, **kwargs)
        assert answer.status_code == 400, (kwargs, answer.text)
        assert answer.json()["error"]["param"] == param, answer.json()
    short = requests.post(url, files={"file": ("a.jsonl", b"x")}, timeout=10, data={
        "purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"}).json()
    assert short["expires_at"] == short["created_at"] + 3600


def test_unknown_file_ids_are_404_in_openais_shape(api_v01: Api, jobs: Jobs) -> None:
    for file_id in ("file-000000000000aaaaaaaaaaaa", "nope", "fmo0000000000000000"):
        for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            answer = requests.request(method, f"{api_v01.url}/v1/files/{file_id}{suffix}", timeout=10)
            assert answer.status_code == 404, answer.text
            assert answer.json() == {"error": {"message": f"file {file_id} not found", "type": "not_found_error",
                                               "param": None, "code": "not_found"}}


@pytest.fixture
def two_callers(stack_env: Emulator, jobs: Jobs, monkeypatch: pytest.MonkeyPatch,
                authorizing_gateway: gateway.GatewayServer) -> str:
    hashes = ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in (("alice", ALICE),
                                                                                              ("bob", BOB)))
    monkeypatch.setenv("CALLER_KEY_SHA256", hashes)
    return authorizing_gateway.url


def test_another_callers_files_and_batches_are_404_and_unlisted(two_callers: str, jobs: Jobs) -> None:
    def as_(key: str) -> openai.OpenAI:  # the caller key as Authorization: Bearer, which the authorizer reads
        return openai.OpenAI(base_url=f"{two_callers}/v1", api_key=key, max_retries=0)

    alice, bob = as_(ALICE), as_(BOB)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "hi"}]}}
    mine = upload(alice, (json.dumps(line) + "\n").encode())
    batch = alice.batches.create(input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h")
    jobs.drain()
    for call in (lambda: bob.files.retrieve(mine.id), lambda: bob.files.content(mine.id),
                 lambda: bob.files.delete(mine.id), lambda: bob.batches.retrieve(batch.id),
                 lambda: bob.batches.cancel(batch.id),
                 lambda: bob.batches.create(input_file_id=mine.id, endpoint="/v1/chat/completions",
                                            completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(bob.files.list()) == [] and list(bob.batches.list()) == []
    assert [f.id for f in alice.files.list()] == [mine.id] and [b.id for b in alice.batches.list()] == [batch.id]
    assert alice.files.retrieve(mine.id).id == mine.id and alice.batches.retrieve(batch.id).status == "in_progress"
    assert requests.get(f"{two_callers}/v1/files", timeout=10).status_code == 401  # no key at all


def _store() -> Any:
    from shared.config import Settings
    from shared.jobs.store import JobStore

    return JobStore(Settings.from_env())


def test_a_delete_the_bucket_refuses_still_removes_the_file(client: openai.OpenAI, jobs: Jobs,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The object delete fails (as with a role that may not delete): the file is gone all the same, not a
    503 after it has left the list; its bytes stay until the bucket's lifecycle rule expires them."""
    from shared.jobs import store as store_module

    made = upload(client, b"line\n")

    def refused(self: Any, key: str) -> None:
        raise store_module.StoreError("results bucket: AccessDenied")

    monkeypatch.setattr(store_module.JobStore, "delete_object", refused)
    assert client.files.delete(made.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(made.id)
    assert made.id not in [f.id for f in client.files.list()]
    assert _store().get_object(f"files/{made.id}") == b"line\n"  # left to the lifecycle rule


def test_a_delete_that_fails_at_the_record_leaves_the_file_whole(client: openai.OpenAI, jobs: Jobs,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.jobs import store as store_module

    made = upload(client, b"kept\n")

    def failing(self: Any, key: str) -> bool:
        raise store_module.StoreError("job store: InternalServerError")

    with monkeypatch.context() as patch:
        patch.setattr(store_module.JobStore, "delete_record", failing)
        with pytest.raises(openai.APIStatusError) as refused:
            client.files.delete(made.id)
        assert refused.value.status_code == 503
    assert client.files.retrieve(made.id).id == made.id
    assert client.files.content(made.id).content == b"kept\n"
    assert made.id in [f.id for f in client.files.list()]
    assert client.files.delete(made.id).deleted is True  # the retry completes it
    with pytest.raises(openai.NotFoundError):
        client.files.content(made.id)


def test_content_whose_object_is_gone_is_a_404_not_a_retryable_503(client: openai.OpenAI, jobs: Jobs) -> None:
    made = upload(client, b"short-lived\n")
    store = _store()
    store.s3.delete_object(Bucket=store.bucket, Key=f"files/{made.id}")  # e.g. expired by the lifecycle rule
    with pytest.raises(openai.NotFoundError) as gone:
        client.files.content(made.id)
    assert made.id in gone.value.message
