"""The local gateway answers a method the route table lacks with a JSON 405 and `Allow`, on every path,
in the path's dialect (native error shape, or OpenAI's on /v1), as the spec's any-method answers when deployed."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from shared import routes
from tests.conftest import Api

pytestmark = pytest.mark.integration

METHODS = ("TRACE", "PATCH", "OPTIONS", "HEAD", "PUT", "DELETE", "CONNECT", "PROPFIND")
PATHS = sorted({r.path.replace("{operationId}", "d7qabc0123456789") for r in routes.ROUTES})


def send(api: Api, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    split = urlsplit(api.url)
    connection = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", PATHS)
def test_every_other_method_is_a_json_405_with_allow(api_v01: Api, path: str) -> None:
    # the path item first (a concrete template before a greedy one), then its methods, as API Gateway chooses
    item = next(r for r in sorted(routes.ROUTES, key=lambda r: r.greedy) if r.match(path) is not None).path
    allowed = sorted({r.method for r in routes.ROUTES if r.path == item})
    for method in METHODS:
        if method in allowed:
            continue
        status, headers, body = send(api_v01, method, path)
        assert status == 405, (method, path, body)
        assert headers["allow"] == ", ".join(allowed) and headers["content-type"] == "application/json"
        if method == "HEAD":
            assert body == b"" and int(headers["content-length"]) > 0
            continue
        error = json.loads(body)["error"]
        if routes.dialect_of(path) == "openai":
            assert error["type"] == "invalid_request_error" and error["code"] == "unimplemented"
        else:
            assert error["httpCode"] == 405 and method in error["message"]


def test_an_unknown_path_is_404_in_its_dialect(api_v01: Api) -> None:
    status, _, body = send(api_v01, "GET", "/v1/no-such-thing")
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    status, _, body = send(api_v01, "TRACE", "/foundationModels/v1/no-such-thing")
    assert status == 404 and json.loads(body)["error"]["httpCode"] == 404
