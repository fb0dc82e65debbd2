"""The operations function decides read or cancel from the real method and URL, never from the gateway's
integration context: a mis-tagged route cannot turn a read into a cancel (issue 11 item 2)."""

from __future__ import annotations

from typing import Any

import pytest

from shared import errors
from shared.jobs import operations

OP_ID = "d7qabc0123456789"


def _event(method: str, url: str, tagged: str | None = None, payload_format: str = "0.1") -> dict[str, Any]:
    event: dict[str, Any] = {"httpMethod": method, "headers": {}, "body": "", "isBase64Encoded": False,
                             "requestContext": {"requestId": "r1"}}
    if tagged:
        event["requestContext"]["apiGateway"] = {"operationContext": {"operation": tagged}}
    param = url.rsplit("/", 1)[-1]
    if payload_format == "1.0":
        event.update(version="1.0", path=url, resource="/operations/{operationId}",
                     pathParameters={"operationId": param})
    else:
        event.update(url=url, path="/operations/{operationId}", pathParams={"operationId": param})
    return event


def _decided(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    routed = operations.by_url(event)
    operation = routed["requestContext"]["apiGateway"]["operationContext"]["operation"]
    params = routed.get("pathParameters") if routed.get("version") == "1.0" else routed.get("pathParams")
    return operation, params


@pytest.mark.parametrize("payload_format", ["0.1", "1.0"])
@pytest.mark.parametrize(("method", "url", "expected"), [
    ("GET", f"/operations/{OP_ID}", "get"),
    ("GET", f"/operations/{OP_ID}/", "get"),
    ("GET", f"/operations/{OP_ID}:cancel", "cancel"),  # the upstream operation service's GET form
    ("GET", f"/operations/{OP_ID}%3Acancel", "cancel"),
    ("POST", f"/operations/{OP_ID}:cancel", "cancel"),
    ("POST", f"/operations/{OP_ID}%3Acancel", "cancel"),
    ("POST", f"/operations/{OP_ID}%3acancel", "cancel"),
])
def test_the_real_url_decides(method: str, url: str, expected: str, payload_format: str) -> None:
    for tagged in (None, "get", "cancel", "cancelGet", "completion"):  # whatever the gateway's context says
        assert _decided(_event(method, url, tagged, payload_format)) == (expected, {"operationId": OP_ID})


def test_a_read_tagged_as_cancel_still_reads() -> None:
    assert _decided(_event("GET", f"/operations/{OP_ID}", tagged="cancel"))[0] == "get"


def test_a_plain_post_is_405_and_an_unknown_verb_404() -> None:
    with pytest.raises(errors.MethodNotAllowedError):
        operations.by_url(_event("POST", f"/operations/{OP_ID}", tagged="cancel"))
    with pytest.raises(errors.NotFoundError):
        operations.by_url(_event("POST", f"/operations/{OP_ID}:delete"))
    with pytest.raises(errors.NotFoundError):
        operations.by_url(_event("GET", f"/operations/{OP_ID}%3Adelete"))
    with pytest.raises(errors.MethodNotAllowedError):
        operations.by_url(_event("DELETE", f"/operations/{OP_ID}:cancel"))


def test_a_direct_invocation_keeps_the_operation_it_names() -> None:
    event = {"httpMethod": "POST", "url": "", "path": "", "queryStringParameters": {"operation": "cancel"},
             "headers": {}, "body": ""}
    assert operations.by_url(event) is event
