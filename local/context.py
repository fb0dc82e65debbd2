"""A stand-in for the Cloud Functions `context` object (reference §1.3), for local runs and tests."""

from __future__ import annotations

import time
import uuid
from typing import Any


class LocalContext:
    def __init__(self, function_name: str = "local", timeout_s: float = 300.0, memory_mb: int = 256,
                 token: dict[str, Any] | None = None, request_id: str | None = None) -> None:
        self.request_id = request_id or str(uuid.uuid4())
        self.aws_request_id = self.request_id
        self.function_name = function_name
        self.function_version = "local"
        self.invoked_function_arn = function_name
        self.memory_limit_in_mb = memory_mb
        self.token = token
        self._deadline = time.monotonic() + timeout_s
        self.deadline_ms = int((time.time() + timeout_s) * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)
