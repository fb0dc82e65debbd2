"""The Files and Batches routes' promises (docs/openai.md, OpenAI Files and Batch API): `limit` takes exactly its
documented range (files 1-10,000, batches 1-100) and anything else is a 400 naming `limit`; a file past its
`expires_at` is gone on every route at once, though the store's TTL sweep has not deleted its record yet.

Over real HTTP (local gateway) and moto server; time moved by the test clock."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests

from shared.config import Settings
from shared.jobs.store import JobStore
from tests.clock import ManualClock
from tests.conftest import Api, Jobs

pytestmark = pytest.mark.integration


def _get(api: Api, path: str, **params: Any) -> requests.Response:
    return api.http.get(f"{api.url}{path}", params=params, timeout=30)


def _refused_naming_limit(answer: requests.Response, most: int) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "limit" and error["type"] == "invalid_request_error"
    assert f"from 1 to {most}" in error["message"]


@pytest.mark.parametrize("path,most", [("/v1/files", 10_000), ("/v1/batches", 100)])
def test_limit_is_accepted_up_to_its_documented_maximum_and_refused_one_past_it(
        api_v01: Api, jobs: Jobs, path: str, most: int) -> None:
    for accepted in (1, most):
        answer = _get(api_v01, path, limit=accepted)
        assert answer.status_code == 200, (accepted, answer.text)
        assert answer.json()["object"] == "list" and answer.json()["has_more"] is False
    for refused in (most + 1, 0, -1, "ten", "1.5", 10**30):
        _refused_naming_limit(_get(api_v01, path, limit=refused), most)


def _upload(api: Api, data: bytes, expires_s: int | None = None) -> dict[str, Any]:
    form = {"purpose": "batch"}
    if expires_s is not None:
        form.update({"expires_after[anchor]": "created_at", "expires_after[seconds]": str(expires_s)})
    answer = api.http.post(f"{api.url}/v1/files", files={"file": ("requests.jsonl", io.BytesIO(data))}, data=form,
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


LINE = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "hi"}]}}) + "\n"


@pytest.mark.parametrize("inline_max", [1_000_000, 10])  # content served inline, and as a presigned-URL redirect
def test_an_expired_file_is_404_on_every_route_before_the_ttl_sweep(
        api_v01: Api, jobs: Jobs, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, inline_max: int) -> None:
    from tests.conftest import reset_caches

    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", str(inline_max))
    reset_caches()
    short = _upload(api_v01, LINE.encode(), expires_s=3600)
    kept = _upload(api_v01, LINE.encode())  # the store's TTL: 3 days
    assert short["expires_at"] == short["created_at"] + 3600
    assert _get(api_v01, f"/v1/files/{short['id']}").status_code == 200  # within its time: there
    clock.advance(3601)
    assert JobStore(Settings.from_env()).records([short["id"]])  # the record is still in the store ...
    url = f"{api_v01.url}/v1/files/{short['id']}"
    answers = {
        "retrieve": api_v01.http.get(url, timeout=30),
        "content": api_v01.http.get(url + "/content", timeout=30, allow_redirects=False),
        "batch": api_v01.http.post(f"{api_v01.url}/v1/batches", json={
            "input_file_id": short["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}, timeout=30),
        "delete": api_v01.http.delete(url, timeout=30),
    }
    gone = {"error": {"message": f"file {short['id']} not found", "type": "not_found_error", "param": None,
                      "code": "not_found"}}  # the answer for an id that never existed
    for route, answer in answers.items():  # ... but for the caller it is gone
        assert answer.status_code == 404, (route, answer.status_code, answer.text)
        assert answer.json() == gone, route
    listed = [f["id"] for f in _get(api_v01, "/v1/files").json()["data"]]
    assert short["id"] not in listed and kept["id"] in listed
    assert _get(api_v01, f"/v1/files/{kept['id']}").status_code == 200  # an unexpired file is untouched
