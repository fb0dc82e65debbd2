"""Response bodies and query parameters of the Usage and Costs API (shared/openai/usage_api.py), for the
generated OpenAPI spec only (the handlers build plain dicts; nothing at run time imports this module). Fields as
the `openai` client's UsageCompletionsResponse, UsageEmbeddingsResponse and UsageCostsResponse have them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)


class UsageCompletionsResult(_Response):
    object: Literal["organization.usage.completions.result"]
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int
    input_audio_tokens: int
    output_audio_tokens: int
    num_model_requests: int
    project_id: str | None = None  # always null: no projects here
    user_id: str | None = None  # always null: no users here
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None


class UsageEmbeddingsResult(_Response):
    object: Literal["organization.usage.embeddings.result"]
    input_tokens: int
    num_model_requests: int
    project_id: str | None = None  # always null: no projects here
    user_id: str | None = None  # always null: no users here
    api_key_id: str | None = None
    model: str | None = None


class CostsAmount(_Response):
    value: float
    currency: str


class CostsResult(_Response):
    object: Literal["organization.costs.result"]
    amount: CostsAmount | None
    line_item: str | None = None
    project_id: str | None = None  # always null: no projects here
    api_key_id: str | None = None
    quantity: float | None = None
    quantity_unit: Literal["tokens", "billing_units"] | None = None


class UsageCompletionsBucket(_Response):
    object: Literal["bucket"]
    start_time: int
    end_time: int
    results: list[UsageCompletionsResult]


class UsageEmbeddingsBucket(_Response):
    object: Literal["bucket"]
    start_time: int
    end_time: int
    results: list[UsageEmbeddingsResult]


class CostsBucket(_Response):
    object: Literal["bucket"]
    start_time: int
    end_time: int
    results: list[CostsResult]


class UsageCompletionsPage(_Response):
    object: Literal["page"]
    data: list[UsageCompletionsBucket]
    has_more: bool
    next_page: str | None


class UsageEmbeddingsPage(_Response):
    object: Literal["page"]
    data: list[UsageEmbeddingsBucket]
    has_more: bool
    next_page: str | None


class CostsPage(_Response):
    object: Literal["page"]
    data: list[CostsBucket]
    has_more: bool
    next_page: str | None


# What the routes take, for the spec (deploy/openapi.py merges it by operation id), exactly as usage_api.parse
# checks it. Lists come as repeated parameters, `name=a&name=b` or `name[]=a&name[]=b` (the openai client's form).
def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _list(name: str, items: dict[str, Any], description: str, most: int | None = 100) -> list[dict[str, Any]]:
    """A list parameter in both spellings; `most` values in each (group_by: any number, each counted once)."""
    schema: dict[str, Any] = {"type": "array", "items": items, **({"maxItems": most} if most else {})}
    return [{**_query(spelling, schema, description), "style": "form", "explode": True}
            for spelling in (name, f"{name}[]")]


_SECONDS = {"type": "string", "pattern": "^[0-9]{1,10}$"}
_COMMON = [
    _query("start_time", _SECONDS, "Unix seconds, inclusive: the first bucket is the UTC day that holds it",
           required=True),
    _query("end_time", {"type": "string", "pattern": "^([0-9]{1,10})?$"},
           "Unix seconds, exclusive, after start_time (default: now); the last bucket is the UTC day that holds "
           "end_time - 1, and never a day after today"),
    _query("bucket_width", {"type": "string", "pattern": "^(1d)?$"}, "1d, the only width (the ledger keeps days)"),
    _query("page", {"type": "string", "pattern": "^(day_[0-9]{8})?$"}, "the next_page of an earlier answer to the "
                                                                        "same query"),
]
_LIMIT_31 = _query("limit", {"type": "string", "pattern": "^(0*(3[01]|[12][0-9]|[1-9]))?$"},
                   "buckets per page: 1-31 (default 7)")
_LIMIT_180 = _query("limit", {"type": "string", "pattern": "^(0*(180|1[0-7][0-9]|[1-9][0-9]?))?$"},
                    "buckets per page: 1-180 (default 7)")
_STRING = {"type": "string"}
_API_KEYS = _list("api_key_ids", _STRING, "only these callers (key names); a caller other than the admin sees "
                                          "only its own, whatever it names")
_MODELS = _list("models", _STRING, "only these models, by full URI or short name")

SPEC_EXTRAS: dict[str, dict[str, Any]] = {
    "usageCompletions": {"parameters": [
        *_COMMON, _LIMIT_31, *_API_KEYS, *_MODELS,
        *_list("group_by", {"type": "string", "enum": ["model", "api_key_id", "batch"]}, "fields to group by", most=None),
        _query("batch", {"type": "string", "pattern": "^(true|false)?$"},
               "true: only usage billed as upstream's async or batch mode; false: only the synchronous")]},
    "usageEmbeddings": {"parameters": [
        *_COMMON, _LIMIT_31, *_API_KEYS, *_MODELS,
        *_list("group_by", {"type": "string", "enum": ["model", "api_key_id"]}, "fields to group by", most=None)]},
    "usageCosts": {"parameters": [
        *_COMMON, _LIMIT_180, *_API_KEYS,
        *_list("line_items", _STRING, "only these line items (`<model URI>, <mode>`)"),
        *_list("group_by", {"type": "string", "enum": ["line_item", "api_key_id"]}, "fields to group by", most=None)]},
}
