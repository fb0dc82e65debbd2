"""Response bodies of /v1/files and /v1/batches, for documentation and the generated OpenAPI spec only
(the handlers build plain dicts; nothing at run time imports this module). Fields as the `openai`
client's FileObject, FileDeleted and Batch types have them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class FileObject(_Response):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None


class FileList(_Response):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(_Response):
    id: str
    object: Literal["file"]
    deleted: bool


class FileContent(_Response):
    """The file's bytes as uploaded (any content type); above RESULT_INLINE_MAX_BYTES a 307 to a presigned URL."""


class BatchError(_Response):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Response):
    object: Literal["list"]
    data: list[BatchError]


class BatchRequestCounts(_Response):
    total: int
    completed: int
    failed: int


class Batch(_Response):
    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                    "cancelled"]
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts | None = None
    metadata: dict[str, str] | None = None
    model: str | None = None


class BatchList(_Response):
    object: Literal["list"]
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool
