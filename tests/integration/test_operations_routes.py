"""/operations/{operationId} is one path item; what happens is decided from the real method and URL.

Every form goes through the local gateway over real HTTP (raw request targets, so the client cannot
normalise the percent-encoding): GET reads; POST `:cancel` (also `%3A`, `%3a`) and GET `:cancel`
cancel; a plain POST is 405 with `Allow`; and a request whose integration context says cancel still
only reads (issue 11 item 2).
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from local import functions, gateway
from local.context import LocalContext
from shared import routes
from tests.conftest import FOLDER, Api, Jobs

pytestmark = pytest.mark.integration

BODY = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest", "messages": [{"role": "user", "text": "hello"}]}
CANCELLED = "cancelled by the caller"


def raw(api: Api, method: str, target: str) -> tuple[int, dict[str, str], Any]:
    """One request with the request target sent byte for byte."""
    split = urlsplit(api.url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    try:
        connection.request(method, target, body=b"" if method == "POST" else None)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(body) if body else None
    finally:
        connection.close()


def submit(api: Api) -> str:
    answer = api.post("/foundationModels/v1/completionAsync", BODY)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def state(api: Api, op_id: str) -> dict[str, Any]:
    status, _, body = raw(api, "GET", f"/operations/{op_id}")
    assert status == 200, body
    return body


def test_get_reads_and_never_cancels(api: Api, jobs: Jobs) -> None:
    op_id = submit(api)
    for _ in range(3):
        assert state(api, op_id)["done"] is False
    status, _, body = raw(api, "GET", f"/operations/{op_id}/")
    assert status == 200 and body["done"] is False


@pytest.mark.parametrize(("method", "suffix"), [
    ("POST", ":cancel"), ("POST", "%3Acancel"), ("POST", "%3acancel"), ("GET", ":cancel"), ("GET", "%3Acancel"),
])
def test_every_cancel_form_cancels(api: Api, jobs: Jobs, method: str, suffix: str) -> None:
    op_id = submit(api)
    status, _, body = raw(api, method, f"/operations/{op_id}{suffix}")
    assert status == 200, body
    assert body["id"] == op_id and body["done"] is True and body["error"]["message"] == CANCELLED
    assert state(api, op_id)["error"]["message"] == CANCELLED
    jobs.drain()  # the queued work sees the cancellation and starts nothing
    assert state(api, op_id)["error"]["message"] == CANCELLED


def test_a_plain_post_is_405_and_cancels_nothing(api: Api, jobs: Jobs) -> None:
    op_id = submit(api)
    status, headers, body = raw(api, "POST", f"/operations/{op_id}")
    assert status == 405 and headers["allow"] == "GET"
    assert body["error"]["httpCode"] == 405 and f"/operations/{op_id}:cancel" in body["error"]["message"]
    assert state(api, op_id)["done"] is False


def test_an_unknown_verb_is_404_and_a_bad_id_400(api: Api, jobs: Jobs) -> None:
    op_id = submit(api)
    assert raw(api, "POST", f"/operations/{op_id}:delete")[0] == 404
    assert raw(api, "GET", f"/operations/{op_id}%3Adelete")[0] == 404
    assert raw(api, "POST", "/operations/NOT-AN-ID:cancel")[0] == 400
    assert state(api, op_id)["done"] is False


def test_a_read_mis_tagged_as_cancel_by_the_gateway_still_only_reads(api: Api, jobs: Jobs) -> None:
    op_id = submit(api)
    cancel_route = next(r for r in routes.ROUTES if r.function == "operations" and r.operation == "cancel")
    event = gateway.build_event("GET", f"/operations/{op_id}", {}, b"", cancel_route, {"operationId": op_id},
                                api.payload_format)
    assert event["requestContext"]["apiGateway"]["operationContext"]["operation"] == "cancel"
    answer = functions.load("operations")(event, LocalContext("operations", timeout_s=30))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["done"] is False
    assert state(api, op_id)["done"] is False
