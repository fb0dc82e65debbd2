"""The operations function decides read or cancel from the real method and URL, never from the gateway's
integration context: a mis-tagged route cannot turn a read into a cancel (issue 11 item 2)."""

from __future__ import annotations

import json
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


def test_what_is_no_http_request_for_an_operation_is_handed_on_as_it_came() -> None:
    timer = {"messages": [{"event_metadata": {"event_type": "yandex.cloud.events.serverless.triggers.TimerMessage"}}]}
    assert operations.by_url(timer) is timer
    undecodable = {**_event("POST", f"/operations/{OP_ID}:cancel"), "isBase64Encoded": True, "body": "not base64!"}
    assert operations.by_url(undecodable) is undecodable  # the runtime answers its 400, with the request's ids
    files = _event("GET", "/v1/files")
    assert operations.by_url(files) is files  # another route of the function: the route table decides
    assert operations.by_url("not an event") == "not an event"


@pytest.mark.parametrize("url", ["/operations/", "/operations//", f"/operations/{OP_ID}/extra", "/operations/a/b/"])
def test_a_path_that_names_no_single_operation_is_404(url: str) -> None:
    with pytest.raises(errors.NotFoundError) as raised:
        operations.by_url(_event("GET", url))
    assert raised.value.message == f"no route for {url}"


def test_the_refusals_name_what_the_operation_service_does_instead() -> None:
    with pytest.raises(errors.NotFoundError) as unknown:
        operations.by_url(_event("POST", f"/operations/{OP_ID}%3Adelete"))
    assert unknown.value.message == (f"operations/{OP_ID}:delete: the operation service has no method 'delete'; "
                                     "use :cancel")
    for url in (f"/operations/{OP_ID}:cancelX", f"/operations/{OP_ID}:x:cancel", f"/operations/{OP_ID}%3Ax%3Acancel"):
        with pytest.raises(errors.NotFoundError):  # only the exact verb after the first colon cancels
            operations.by_url(_event("POST", url))
    with pytest.raises(errors.NotFoundError) as empty:
        operations.by_url(_event("GET", f"/operations/{OP_ID}:"))
    assert "has no method ''" in empty.value.message
    with pytest.raises(errors.MethodNotAllowedError) as plain:
        operations.by_url(_event("POST", f"/operations/{OP_ID}"))
    assert plain.value.message == (f"POST is not allowed on /operations/{OP_ID}; GET reads it, "
                                   f"POST /operations/{OP_ID}:cancel cancels it")
    assert plain.value.allow == ("GET",)
    with pytest.raises(errors.MethodNotAllowedError) as put:
        operations.by_url(_event("PUT", f"/operations/{OP_ID}:cancel"))
    assert put.value.message.startswith(f"PUT is not allowed on /operations/{OP_ID};") and put.value.allow == ("GET",)


@pytest.mark.parametrize("payload_format", ["0.1", "1.0"])
def test_the_routed_event_keeps_everything_else_and_the_original_is_untouched(payload_format: str) -> None:
    event = _event("POST", f"/operations/{OP_ID}:cancel?x=1", tagged="get", payload_format=payload_format)
    event["requestContext"]["authorizer"] = {"caller": "alice"}
    event["requestContext"]["apiGateway"]["other"] = "kept"
    own, other = ("pathParameters", "pathParams") if payload_format == "1.0" else ("pathParams", "pathParameters")
    event[own] = {"operationId": "fmo0000000000else", "extra": "dropped"}  # whatever the gateway matched
    before = json.loads(json.dumps(event))
    routed = operations.by_url(event)
    assert event == before
    assert routed[own] == {"operationId": OP_ID} and other not in routed
    assert routed["requestContext"] == {"requestId": "r1", "authorizer": {"caller": "alice"}, "apiGateway": {
        "other": "kept", "operationContext": {"operation": "cancel"}}}
    assert {k: v for k, v in routed.items() if k not in (own, "requestContext")} == {
        k: v for k, v in event.items() if k not in (own, "requestContext")}


def test_an_event_without_a_gateway_context_gets_one() -> None:
    event = _event("GET", f"/operations/{OP_ID}")
    del event["requestContext"]
    routed = operations.by_url(event)
    assert routed["requestContext"] == {"apiGateway": {"operationContext": {"operation": "get"}}}
    event["requestContext"] = {"apiGateway": None}
    assert operations.by_url(event)["requestContext"] == {"apiGateway": {"operationContext": {"operation": "get"}}}
