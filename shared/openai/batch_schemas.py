"""Response bodies of /v1/files and /v1/batches, for documentation and the generated OpenAPI spec only
(the handlers build plain dicts; nothing at run time imports this module). Fields as the `openai`
client's FileObject, FileDeleted and Batch types have them."""

from __future__ import annotations

from typing import Any, Literal

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


# What the routes without a JSON body take, for the spec (deploy/openapi.py merges it by operation id):
# the upload's form, and the lists' query parameters, as files.py and batches.py check them.
def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# 1-100 and 1-10,000 as query strings (leading zeros read as the number; empty means the default)
_LIMIT_100 = {"type": "string", "pattern": "^(0*(100|[1-9][0-9]?))?$"}
_LIMIT_10000 = {"type": "string", "pattern": "^(0*(10000|[1-9][0-9]{0,3}))?$"}
SPEC_EXTRAS: dict[str, dict[str, Any]] = {
    "createFile": {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "purpose"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the file; a batch's input is JSON Lines"},
            "purpose": {"type": "string", "enum": ["assistants", "batch", "fine-tune", "vision", "user_data",
                                                   "evals"]},
            "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
            "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000}},
        # (a oneOf for "both or neither" crashes schemathesis 4.32.5's multipart coverage phase)
        "description": "expires_after[anchor] and expires_after[seconds] come together, or not at all"}}}}},
    "downloadFile": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "redirect": True},
    "listFiles": {"parameters": [
        _query("limit", _LIMIT_10000, "1-10,000 (default 10,000)"), _query("after", {"type": "string"}, "a file id"),
        _query("order", {"type": "string", "enum": ["asc", "desc"]}, "by creation time (default desc)"),
        _query("purpose", {"type": "string"}, "only files of this purpose")]},
    "listBatches": {"parameters": [
        _query("limit", _LIMIT_100, "1-100 (default 20)"), _query("after", {"type": "string"}, "a batch id")]},
}

