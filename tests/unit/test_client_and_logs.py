"""Retry policy, error parsing, model names and log redaction, without sockets."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared import client, errors, logs
from shared.config import Settings
from shared.native.services import resolve_model


class FakeResponse:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self) -> Any:
        return json.loads(self.text)


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = client.RetryPolicy(max_attempts=5, base_s=1.0, max_delay_s=10.0)
    delays = [policy.delay(n) for n in range(1, 5)]
    for n, delay in enumerate(delays, start=1):
        assert 1.5**n <= delay <= min(10.0, 1.5**n + 1.0)
    assert policy.delay(20) == 10.0
    assert 7.0 <= policy.delay(1, retry_after=7.0) <= 7.1


def test_gateway_error_shape() -> None:
    response = FakeResponse(400, {"error": {"grpcCode": 3, "httpCode": 400, "message": "invalid message role 'x'",
                                            "httpStatus": "Bad Request", "details": []}}, {"x-request-id": "up-1"})
    error = client.parse_error(response)  # type: ignore[arg-type]
    assert isinstance(error, errors.BadRequestError)
    assert error.upstream_grpc_code == 3 and error.upstream_request_id == "up-1" and "role" in error.message


def test_status_error_shape_and_retry_after() -> None:
    response = FakeResponse(429, {"code": 8, "message": "quota", "details": []}, {"Retry-After": "3"})
    error = client.parse_error(response)  # type: ignore[arg-type]
    assert isinstance(error, errors.RateLimitedError) and error.retryable and error.retry_after == 3.0


def test_plain_text_error_and_string_error() -> None:
    assert client.parse_error(FakeResponse(502, "<html>bad gateway</html>")).status == 502  # type: ignore[arg-type]
    error = client.parse_error(FakeResponse(404, {"error": "no such model"}))  # type: ignore[arg-type]
    assert isinstance(error, errors.NotFoundError) and error.message == "no such model"


def test_error_body_is_the_upstream_shape() -> None:
    body = errors.BadRequestError.field("completionOptions.temperature", "must be between 0 and 1").to_body("rid")
    assert body["error"]["grpcCode"] == 3 and body["error"]["httpCode"] == 400
    assert body["error"]["httpStatus"] == "Bad Request"
    assert body["error"]["message"] == "completionOptions.temperature: must be between 0 and 1"
    assert {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "rid"} in body["error"]["details"]


@pytest.mark.parametrize("uri,scheme,expected", [
    ("gpt://b1g/yandexgpt/latest", "gpt", "gpt://b1g/yandexgpt/latest"),
    ("yandexgpt-lite", "gpt", "gpt://fold/yandexgpt-lite/latest"),
    ("yandexgpt/rc", "gpt", "gpt://fold/yandexgpt/rc"),
    ("text-search-query", "emb", "emb://fold/text-search-query/latest"),
    ("cls://b1g/yandexgpt-lite/latest@tune1", "cls", "cls://b1g/yandexgpt-lite/latest@tune1"),
])
def test_model_names(uri: str, scheme: str, expected: str) -> None:
    assert resolve_model(uri, scheme, Settings(folder_id="fold")) == expected


def test_short_name_without_folder_and_allow_list() -> None:
    with pytest.raises(errors.BadRequestError, match="YC_FOLDER_ID"):
        resolve_model("yandexgpt", "gpt", Settings())
    config = Settings(folder_id="f", allowed_models=("yandexgpt-lite", "gpt://f/llama/rc"))
    assert resolve_model("yandexgpt-lite/rc", "gpt", config) == "gpt://f/yandexgpt-lite/rc"  # any version of a name
    assert resolve_model("yandexgpt-lite", "gpt", config) == "gpt://f/yandexgpt-lite/latest"
    assert resolve_model("llama/rc", "gpt", config) == "gpt://f/llama/rc"  # the exact URI listed
    with pytest.raises(errors.ForbiddenError, match="modelUri: model 'llama' is not allowed here"):
        resolve_model("llama", "gpt", config)  # llama/latest is not the listed llama/rc
    with pytest.raises(errors.ForbiddenError):
        resolve_model("gpt://other/yandexgpt/latest", "gpt", config)


SECRETS = ["Api-Key AQVN1234567890abcdefghijklmnop", "Bearer t1.9euelZqXyMnNy5KblpqRm5yOj5aPyu3rnpWak8",
           "t1.9euelZqXyMnNy5KblpqRm5yOj5aPyu3rnpWak8", "eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl",
           "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
           "fmk_AWbg-l3-kSj-K0NX_4yz5nPGmB9ykMGr61mhg40BlF8"]


@pytest.mark.parametrize("secret", SECRETS)
def test_redaction_removes_credential_shapes(secret: str) -> None:
    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    logs.get_logger("t").warning("oops %s", secret, extra={"detail": {"header": secret}})
    output = stream.getvalue()
    body = secret.split(" ", 1)[-1]
    assert body not in output and "[REDACTED]" in output
    assert json.loads(output)["level"] == "WARN"


def test_registered_secret_of_no_known_shape_is_redacted() -> None:
    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    logs.register_secret("plain-static-secret-xyz")
    logs.get_logger("t").error("leaked plain-static-secret-xyz here")
    assert "plain-static-secret-xyz" not in stream.getvalue()


def test_level_names_are_cloud_logging_names() -> None:
    stream = io.StringIO()
    logs.configure(level="TRACE", stream=stream)
    log = logs.get_logger("t")
    log.log(logs.TRACE, "a")
    log.critical("b")
    levels = [json.loads(line)["level"] for line in stream.getvalue().splitlines()]
    assert levels == ["TRACE", "FATAL"]


def test_ids_are_version_4_uuids() -> None:
    import uuid

    from shared.ids import uuid4

    values = {uuid4() for _ in range(1000)}
    assert len(values) == 1000
    assert all(uuid.UUID(v).version == 4 and uuid.UUID(v).variant == uuid.RFC_4122 and str(uuid.UUID(v)) == v
               for v in values)
