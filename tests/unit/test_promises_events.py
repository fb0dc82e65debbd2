"""The envelope parser's promises: whatever the platform's envelope (API Gateway 0.1 or 1.0, a direct call,
a queue or timer trigger), an operation sees one request: the real path, lower-case headers, the query, the
body as bytes, the ids; and a body that is not what it claims is a 400 (413 past the limit) naming `body`."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared import errors, events


def _queue(event_type: Any) -> dict[str, Any]:
    return {"messages": [{"event_metadata": {"event_type": event_type}, "details": {}}]}


@pytest.mark.parametrize(("event", "kind"), [
    ({"httpMethod": "GET"}, "http"),
    ({"httpMethod": None, "messages": []}, "http"),  # the key decides: a request may carry anything else
    (_queue("yandex.cloud.events.messagequeue.QueueMessage"), "queue"),
    (_queue("yandex.cloud.events.serverless.triggers.TimerMessage"), "timer"),
    (_queue("yandex.cloud.events.messagequeue.QueueMessage.v2"), "unknown"),  # the type's last part decides
    (_queue("yandex.cloud.events.serverless.triggers.TimerMessageX"), "unknown"),
    (_queue(None), "unknown"),
    ({"messages": [{"event_metadata": None}]}, "unknown"),
    ({"messages": [{}]}, "unknown"),
    ({"messages": []}, "unknown"),
    ({"messages": ["yandex.cloud.events.messagequeue.QueueMessage"]}, "unknown"),
    ({"messages": {"event_metadata": {"event_type": "x.QueueMessage"}}}, "unknown"),
    ([{"httpMethod": "GET"}], "unknown"),
    ("httpMethod", "unknown"),
    (None, "unknown"),
])
def test_an_event_is_known_by_its_shape(event: Any, kind: str) -> None:
    assert events.kind(event) == kind


def test_a_queue_event_is_known_by_its_first_message() -> None:
    first = _queue("yandex.cloud.events.messagequeue.QueueMessage")["messages"][0]
    assert events.kind({"messages": [first, {"event_metadata": {"event_type": "TimerMessage"}}]}) == "queue"


def test_a_gateway_request_arrives_whole() -> None:
    event = {
        "httpMethod": "post", "url": "/v1/files/file-1/content", "path": "/v1/files/{file_id}/content",
        "pathParams": {"file_id": "file-1", "n": 7}, "queryStringParameters": {"limit": 5, "after": "x"},
        "headers": {"Content-Type": "application/json", "X-Api-Key": "k", "X-Number": 3},
        "multiValueHeaders": {"X-Api-Key": ["other"], "Accept": ["text/html", "text/plain", "application/json"],
                              "X-Empty": []},
        "requestContext": {"requestId": "req-1", "authorizer": {"caller": "alice"},
                           "apiGateway": {"operationContext": {"operation": "downloadFile"}}},
        "body": '{"a": "b"}',
    }
    request = events.parse_http(event)
    assert request.method == "POST" and request.path == "/v1/files/file-1/content" and request.envelope == "0.1"
    assert request.headers == {"content-type": "application/json", "x-api-key": "k", "x-number": "3",
                               "accept": "application/json"}  # a single header wins over its multi-value twin
    assert request.header("X-API-KEY") == "k" and request.header("x-missing") is None
    assert request.header("x-missing", "fallback") == "fallback"
    assert request.query == {"limit": "5", "after": "x"}
    assert request.path_params == {"file_id": "file-1", "n": "7"}
    assert request.request_id == "req-1" and request.operation == "downloadFile"
    assert request.authorizer == {"caller": "alice"}
    assert request.body == b'{"a": "b"}' and request.json(100) == {"a": "b"}


def test_the_query_in_the_url_counts_only_when_the_gateway_sent_none() -> None:
    request = events.parse_http({"httpMethod": "GET", "url": "/v1/files?limit=2&after=a%2Fb&x=1=2&q=?"})
    assert request.path == "/v1/files" and request.query == {"limit": "2", "after": "a/b", "x": "1=2", "q": "?"}
    request = events.parse_http({"httpMethod": "GET", "url": "/v1/files?limit=2", "queryStringParameters": {"o": "1"}})
    assert request.path == "/v1/files" and request.query == {"o": "1"}


def test_payload_format_1_0_reads_the_real_path_and_its_parameters() -> None:
    event = {"version": "1.0", "httpMethod": "DELETE", "resource": "/v1/files/{file_id}", "path": "/v1/files/f-1",
             "url": "/somewhere/else", "pathParameters": {"file_id": "f-1"}, "pathParams": {"file_id": "wrong"},
             "headers": {"Host": "h"}}
    request = events.parse_http(event)
    assert (request.envelope, request.method, request.path) == ("1.0", "DELETE", "/v1/files/f-1")
    assert request.path_params == {"file_id": "f-1"} and request.headers == {"host": "h"}
    bare = events.parse_http({"version": "1.0", "httpMethod": "GET"})
    assert (bare.envelope, bare.path, bare.path_params) == ("1.0", "", {})


def test_a_direct_invocation_has_no_path_and_defaults_everywhere() -> None:
    request = events.parse_http({"httpMethod": None})
    assert request.envelope == "direct" and request.path == "" and request.method == "GET"
    assert request.headers == {} and request.query == {} and request.body == b"" and request.path_params == {}
    assert request.request_id is None and request.operation is None and request.authorizer == {}
    odd = events.parse_http({"httpMethod": "GET", "headers": ["x"], "pathParams": ["x"], "requestContext": "ctx"})
    assert odd.headers == {} and odd.path_params == {} and odd.request_id is None and odd.authorizer == {}
    empty_ids = events.parse_http({"httpMethod": "GET", "requestContext": {"requestId": "", "authorizer": None,
                                                                           "apiGateway": {"operationContext": "x"}}})
    assert empty_ids.request_id is None and empty_ids.operation is None and empty_ids.authorizer == {}
    named = events.parse_http({"httpMethod": "GET", "requestContext": {"apiGateway": {"operationContext": {}}}})
    assert named.operation is None


def test_a_body_arrives_as_the_bytes_that_were_sent() -> None:
    raw = bytes(range(256))
    assert events.parse_http({"httpMethod": "POST", "body": base64.b64encode(raw).decode(),
                              "isBase64Encoded": True}).body == raw
    assert events.parse_http({"httpMethod": "POST", "body": "aGk=", "isBase64Encoded": False}).body == b"aGk="
    assert events.parse_http({"httpMethod": "POST", "body": "héllo"}).body == "héllo".encode()
    assert events.parse_http({"httpMethod": "POST", "body": "\udcff"}).body == b"\xed\xb3\xbf"  # a lone surrogate
    parsed = events.parse_http({"httpMethod": "POST", "body": {"a": [1, "é"]}})
    assert json.loads(parsed.body) == {"a": [1, "é"]}
    assert json.loads(events.parse_http({"httpMethod": "POST", "body": [1, 2]}).body) == [1, 2]
    assert events.parse_http({"httpMethod": "POST", "body": ""}).body == b""
    assert events.parse_http({"httpMethod": "POST", "body": 12}).body == b"12"


@pytest.mark.parametrize("body", ["not base64!", "aGk", "aG k="])
def test_a_body_marked_base64_that_is_not_is_a_400(body: str) -> None:
    with pytest.raises(errors.BadRequestError) as raised:
        events.parse_http({"httpMethod": "POST", "body": body, "isBase64Encoded": True})
    assert raised.value.status == 400
    assert raised.value.message == "body: isBase64Encoded is true but the body is not valid base64"


def _request(body: bytes) -> events.HttpRequest:
    return events.HttpRequest("POST", "/x", {}, {}, body, None, "direct")


def test_a_body_up_to_the_limit_is_read_and_one_byte_more_is_a_413() -> None:
    body = b'{"text": "' + b"a" * 90 + b'"}'
    assert _request(body).json(len(body)) == {"text": "a" * 90}
    with pytest.raises(errors.PayloadTooLargeError) as raised:
        _request(body).json(len(body) - 1)
    assert raised.value.status == 413
    assert raised.value.message == f"body: is {len(body)} bytes, more than the {len(body) - 1}-byte limit"


@pytest.mark.parametrize(("body", "message"), [
    (b"", "body: is empty; send a JSON object"),
    (b" \n\t", "body: is empty; send a JSON object"),
    (b"{\"a\": \"\xff\"}", "body: is not UTF-8 text"),
    (b'{"a": 1,}', "body: is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 9)"),
    (b'{\n"a": }', "body: is not valid JSON (Expecting value at line 2 column 6)"),
    # a number past Python's 4,300-digit limit: a ValueError with no position, still a 400 and not a 500
    (b'{"n": ' + b"9" * 5000 + b"}", "body: is not valid JSON (syntax error)"),
])
def test_a_body_that_is_not_json_is_a_400_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(errors.BadRequestError) as raised:
        _request(body).json(10_000)
    assert raised.value.status == 400 and raised.value.message == message
    assert raised.value.details[0]["field"] == "body"
