"""The exception tree every handler renders, and the one place that maps it to HTTP and gRPC codes.

    ApiError                       status, code (gRPC name), grpc_code, retryable
    ├── BadRequestError            400 INVALID_ARGUMENT   (names the field and the rule)
    │   └── PayloadTooLargeError   413 INVALID_ARGUMENT
    ├── UnauthorizedError          401 UNAUTHENTICATED
    ├── ForbiddenError             403 PERMISSION_DENIED  (e.g. a model outside FM_ALLOWED_MODELS)
    ├── NotFoundError              404 NOT_FOUND
    ├── MethodNotAllowedError      405 UNIMPLEMENTED
    ├── ConflictError              409 ALREADY_EXISTS     (e.g. a key name that is taken)
    ├── RateLimitedError           429 RESOURCE_EXHAUSTED  retryable
    ├── UpstreamError              502 (upstream 5xx or a body we could not parse)
    │   ├── UpstreamUnavailableError  503 UNAVAILABLE   retryable
    │   └── UpstreamTimeoutError      504 DEADLINE_EXCEEDED
    ├── CredentialsError           500 UNAUTHENTICATED  (configured credentials that do not work)
    │   └── CredentialsUnavailableError  503 UNAVAILABLE  retryable (the token service is down or busy)
    └── ConfigError                500 FAILED_PRECONDITION (a bad environment variable)

Errors raised from an upstream answer carry what upstream said (status, gRPC code, message,
request id) so that logs and callers can quote it to support. Messages never contain secrets.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ApiError(Exception):
    """Base of every error we render; subclasses fix status and gRPC code."""

    status: int = 500
    code: str = "INTERNAL"
    grpc_code: int = 13
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        upstream_grpc_code: int | None = None,
        upstream_request_id: str | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status
        self.upstream_grpc_code = upstream_grpc_code
        self.upstream_request_id = upstream_request_id
        self.retry_after = retry_after
        self.details = details or []

    def to_body(self, request_id: str | None = None) -> dict[str, Any]:
        """The error in the upstream gateway shape: {"error": {grpcCode, httpCode, httpStatus, message, details}}."""
        details = list(self.details)
        if request_id:
            details.append({"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id})
        if self.upstream_request_id:
            details.append({"@type": "upstream", "requestId": self.upstream_request_id})
        return {
            "error": {
                "grpcCode": self.grpc_code,
                "httpCode": self.status,
                "httpStatus": HTTPStatus(self.status).phrase,
                "message": self.message,
                "details": details,
            }
        }

    def to_openai_body(self) -> dict[str, Any]:
        """The error in OpenAI's shape: {"error": {message, type, param, code}} (the request id is a header)."""
        param = next((d.get("field") for d in self.details if d.get("@type") == "field"), None)
        kind = OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": param, "code": self.code.lower()}}

    def to_status(self) -> dict[str, Any]:
        """The error as a google.rpc.Status, the shape Operation.error uses."""
        return {"code": self.grpc_code, "message": self.message, "details": list(self.details)}


class BadRequestError(ApiError):
    status, code, grpc_code = 400, "INVALID_ARGUMENT", 3

    @classmethod
    def field(cls, field: str, rule: str) -> BadRequestError:
        return cls(f"{field}: {rule}", details=[{"@type": "field", "field": field, "description": rule}])


class PayloadTooLargeError(BadRequestError):
    status = 413


class UnauthorizedError(ApiError):
    status, code, grpc_code = 401, "UNAUTHENTICATED", 16


class ForbiddenError(ApiError):
    status, code, grpc_code = 403, "PERMISSION_DENIED", 7


class NotFoundError(ApiError):
    status, code, grpc_code = 404, "NOT_FOUND", 5


class MethodNotAllowedError(ApiError):
    status, code, grpc_code = 405, "UNIMPLEMENTED", 12
    allow: tuple[str, ...] = ()  # the methods the path does serve: rendered as the Allow header

    @classmethod
    def allowing(cls, message: str, methods: list[str] | tuple[str, ...]) -> MethodNotAllowedError:
        err = cls(message)
        err.allow = tuple(sorted(set(methods)))
        return err


class ConflictError(ApiError):
    status, code, grpc_code = 409, "ALREADY_EXISTS", 6

    @classmethod
    def field(cls, field: str, rule: str) -> ConflictError:
        return cls(f"{field}: {rule}", details=[{"@type": "field", "field": field, "description": rule}])


class RateLimitedError(ApiError):
    status, code, grpc_code, retryable = 429, "RESOURCE_EXHAUSTED", 8, True


class UpstreamError(ApiError):
    status, code, grpc_code = 502, "UNKNOWN", 2


class UpstreamUnavailableError(UpstreamError):
    status, code, grpc_code, retryable = 503, "UNAVAILABLE", 14, True


class UpstreamTimeoutError(UpstreamError):
    status, code, grpc_code = 504, "DEADLINE_EXCEEDED", 4


class CredentialsError(ApiError):
    status, code, grpc_code = 500, "UNAUTHENTICATED", 16


class CredentialsUnavailableError(CredentialsError):
    """The token service did not answer, or answered 429/5xx, on every try: the credentials may be fine and
    a retry in a moment may work, so the caller sees a 503 with Retry-After rather than a 500."""

    status, code, grpc_code, retryable = 503, "UNAVAILABLE", 14, True


class ConfigError(ApiError):
    status, code, grpc_code = 500, "FAILED_PRECONDITION", 9


# HTTP status -> OpenAI's error `type` (others: invalid_request_error below 500, server_error from 500)
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}

# gRPC code -> HTTP status, from the Yandex Cloud error table (reference §6).
GRPC_TO_HTTP = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409,
    11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}


def from_upstream(
    status: int, grpc_code: int | None, message: str, request_id: str | None, retry_after: float | None = None
) -> ApiError:
    """Map an upstream HTTP answer to our error type; the only place that does."""
    cls: type[ApiError]
    if status == 400 or status == 422:
        cls = BadRequestError
    elif status == 401:
        cls = UnauthorizedError
    elif status == 403:
        cls = ForbiddenError
    elif status == 404:
        cls = NotFoundError
    elif status == 413:
        cls = PayloadTooLargeError
    elif status == 429:
        cls = RateLimitedError
    elif status == 503:
        cls = UpstreamUnavailableError
    elif status == 504:
        cls = UpstreamTimeoutError
    else:
        cls = UpstreamError
    return cls(
        message or f"upstream answered HTTP {status}",
        upstream_status=status,
        upstream_grpc_code=grpc_code,
        upstream_request_id=request_id,
        retry_after=retry_after,
    )
