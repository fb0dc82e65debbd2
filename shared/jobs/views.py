"""What a caller sees of a job: the Operation JSON (native shape) for async operations and batches.

Done -> exactly one of `response` (inline, or a presigned URL when large) and `error`; progress in
`metadata`. Reads only what it is given (the item, and the store when a result must be loaded).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings

TYPE_PREFIX = "type.googleapis.com/yandex.cloud.ai.foundation_models.v1."
RESPONSE_TYPES = {
    "completion": TYPE_PREFIX + "CompletionResponse",
    "embedding": TYPE_PREFIX + "TextEmbeddingBatchResponse",  # our extension: many texts in one operation
    "classification": TYPE_PREFIX + "FewShotTextClassificationResponse",
}
BATCH_RESPONSE_TYPE = "type.googleapis.com/yandex.cloud.ai.foundation_models.v1.BatchCompletionResponse"


def view(item: dict[str, Any], store: Any = None, settings: Settings | None = None, *,
         owner: bool = False) -> dict[str, Any]:
    """The Operation JSON. A result is loaded only when `store` and `settings` are given; a presigned
    result URL is minted only when `owner` (the caller created the job), never for anyone else."""
    if item.get("kind") in ("batch", "batch-native") or item.get("door"):  # another door's job reads as a batch
        return batch_view(item, store, settings, owner=owner)
    return operation_view(item, store, settings, owner=owner)


def operation_view(item: dict[str, Any], store: Any = None, settings: Settings | None = None, *,
                   owner: bool = False) -> dict[str, Any]:
    """The Operation JSON: done -> exactly one of response (inline, or a presigned URL when large) and error."""
    done = item.get("state") == "done"
    total, finished = int(item.get("tasks_total", 1)), int(item.get("tasks_done", 0))
    view: dict[str, Any] = {
        "id": item["id"], "description": item.get("description", ""),
        "createdAt": _rfc3339(item.get("created_at")), "createdBy": item.get("created_by", ""),
        "modifiedAt": _rfc3339(item.get("modified_at")), "done": done,
        "metadata": {"state": item.get("state"), "completedTasks": str(finished), "totalTasks": str(total)},
    }
    if not done:
        if item.get("last_error"):
            view["metadata"]["lastError"] = item["last_error"]
        return view
    if item.get("error"):
        view["error"] = json.loads(item["error"])
        return view
    size, key = int(item.get("result_size", 0)), item.get("result_key", "")
    if store is not None and settings is not None:
        if size <= settings.result_inline_bytes:
            view["response"] = json.loads(store.get_object(key))
        else:
            view["response"] = {"@type": RESPONSE_TYPES.get(item.get("kind", ""), ""), "sizeBytes": str(size)}
            if owner:
                view["response"].update(resultUrl=store.presign(key, settings.presign_ttl_s),
                                        urlExpiresInSeconds=str(settings.presign_ttl_s))
    return view


def _rfc3339(epoch: Any) -> str:
    if epoch in (None, ""):
        return ""
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_status(item: dict[str, Any]) -> str:
    if item.get("kind") == "batch-native":
        return item.get("task_status", "CREATED")
    if item.get("state") == "queued":
        return "PENDING"
    if item.get("state") != "done":
        return "IN_PROGRESS"
    if item.get("error"):
        return "CANCELED" if json.loads(item["error"]).get("code") == 1 else "FAILED"
    return "COMPLETED"


def batch_view(item: dict[str, Any], store: Any = None, settings: Settings | None = None, *,
               owner: bool = False) -> dict[str, Any]:
    base = operation_view(item)  # without a store: no result is loaded; the batch response is built below
    native = item.get("kind") == "batch-native"
    base["metadata"] = {
        "taskId": item.get("task_id") or item["id"], "taskStatus": task_status(item),
        "completedBatches": str(item.get("completed_batches" if native else "items_done", 0)),
        "totalBatches": str(item.get("total_batches" if native else "items_total", 0)),
    }
    if not native:
        base["metadata"]["failedRequests"] = str(item.get("items_failed", 0))
    if item.get("state") == "done" and not item.get("error"):
        response: dict[str, Any] = {"@type": BATCH_RESPONSE_TYPE, "taskId": base["metadata"]["taskId"],
                                    "taskStatus": "COMPLETED"}
        if native:
            response["resultDatasetId"] = item.get("result_dataset_id", "")
        else:
            response.update(succeeded=str(int(item.get("items_total", 0)) - int(item.get("items_failed", 0))),
                            failed=str(item.get("items_failed", 0)), sizeBytes=str(item.get("result_size", 0)))
            if owner and store is not None and settings is not None and item.get("result_key"):
                response["resultUrl"] = store.presign(item["result_key"], settings.presign_ttl_s)
                response["urlExpiresInSeconds"] = str(settings.presign_ttl_s)
        base["response"] = response
    return base


