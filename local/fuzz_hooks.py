"""schemathesis hooks for `make fuzz`: keep schema-valid cases within the rules OpenAPI 3.0 cannot say.

The spec carries every rule JSON Schema can express. These few relate one field to another, or are
upstream's per model, so the spec says them in a `description` only; a positive (schema-valid) case
that breaks one would be refused with a 400 naming the rule and count as a false failure. Each is
repaired here, for positive cases only: negative cases go out as generated.

- fewShotTextClassification: each `samples[].label` is one of `labels`.
- completionBatch: `requests[].customId` is unique within the batch.
- textEmbedding (and /v1/embeddings' `dimensions`): `dim` is at most the model's output size (the emulator's model has 256).
"""

from __future__ import annotations

from typing import Any

import schemathesis

EMULATOR_DIM = 256


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    path, body = case.operation.path, case.body
    if path.endswith("/fewShotTextClassification") or path.endswith("/fewShotTextClassificationAsync"):
        labels = body.get("labels")
        if isinstance(labels, list) and labels and isinstance(body.get("samples"), list):
            for index, sample in enumerate(body["samples"]):
                if isinstance(sample, dict) and sample.get("label") not in labels:
                    sample["label"] = labels[index % len(labels)]
    elif path.endswith("/completionBatch") and isinstance(body.get("requests"), list):
        seen: set[str] = set()
        for index, item in enumerate(body["requests"]):
            if isinstance(item, dict) and isinstance(item.get("customId"), str):
                if item["customId"] in seen:
                    item["customId"] = _fresh(seen, index)
                seen.add(item["customId"])
    elif path.endswith("/textEmbedding") and body.get("dim") is not None:
        if _int(body["dim"]) > EMULATOR_DIM:
            body["dim"] = EMULATOR_DIM
    elif path == "/v1/embeddings" and body.get("dimensions") is not None:
        if _int(body["dimensions"]) > EMULATOR_DIM:
            body["dimensions"] = EMULATOR_DIM
    return case


def _fresh(seen: set[str], index: int) -> str:
    candidate = f"request-{index}"
    while candidate in seen:
        candidate += "-"
    return candidate


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
