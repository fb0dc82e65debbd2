"""The generated spec's query parameters say what the handlers take (shared/openai/batch_schemas.py,
response_schemas.py and usage_schemas.py build them; deploy/openapi.py merges them by operation id): every one
is a query parameter, optional except the usage reports' start_time, described; the usage reports' list filters
come in both spellings the handler reads (`name` and `name[]`, repeated), each bounded as usage_api.parse bounds
it. The schema modules are imported afresh for each test, so their builders run inside it."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from deploy import openapi
from shared import errors
from shared.openai import batch_schemas, response_schemas, usage_api, usage_schemas

LISTS = {"usageCompletions": {"api_key_ids": 100, "models": 100, "group_by": None},
         "usageEmbeddings": {"api_key_ids": 100, "models": 100, "group_by": None},
         "usageCosts": {"api_key_ids": 100, "line_items": 100, "group_by": None}}
KINDS = {"usageCompletions": usage_api.COMPLETIONS, "usageEmbeddings": usage_api.EMBEDDINGS,
         "usageCosts": usage_api.COSTS}


@pytest.fixture
def spec() -> dict[str, Any]:
    for module in (batch_schemas, response_schemas, usage_schemas):  # in import order: the responses' use batch's
        importlib.reload(module)
    return openapi.spec()


def _query_parameters(spec: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    found = [op for item in spec["paths"].values() for op in item.values()
             if isinstance(op, dict) and op.get("operationId") == operation]
    assert len(found) == 1, operation
    return [p for p in found[0].get("parameters", []) if p["in"] != "path"]


@pytest.mark.parametrize(("operation", "names"), [
    ("listFiles", ["limit", "after", "order", "purpose"]),
    ("listBatches", ["limit", "after"]),
    ("listResponseInputItems", ["limit", "after", "order"]),
])
def test_the_list_routes_query_parameters_are_optional_and_described(
        spec: dict[str, Any], operation: str, names: list[str]) -> None:
    parameters = _query_parameters(spec, operation)
    assert [p["name"] for p in parameters] == names
    for parameter in parameters:
        assert set(parameter) == {"name", "in", "required", "schema", "description"}, parameter
        assert parameter["in"] == "query" and parameter["required"] is False
        assert parameter["schema"]["type"] == "string" and len(parameter["description"]) > 5
    limit = parameters[0]["schema"]["pattern"]
    assert limit == (batch_schemas._LIMIT_10000 if operation == "listFiles" else batch_schemas._LIMIT_100)["pattern"]


def test_the_upload_and_download_are_documented(spec: dict[str, Any]) -> None:
    operations = {op["operationId"]: op for item in spec["paths"].values() for op in item.values()
                  if isinstance(op, dict) and "operationId" in op}
    form = operations["createFile"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file", "purpose"] and "batch" in form["properties"]["purpose"]["enum"]
    assert "application/octet-stream" in operations["downloadFile"]["responses"]["200"]["content"]
    assert "307" in operations["downloadFile"]["responses"]


@pytest.mark.parametrize("operation", sorted(LISTS))
def test_the_usage_reports_take_start_time_and_each_list_in_both_spellings(spec: dict[str, Any], operation: str) -> None:
    parameters = _query_parameters(spec, operation)
    assert [p["name"] for p in parameters if p["required"]] == ["start_time"]
    assert all(p["required"] is False for p in parameters if p["name"] != "start_time")
    assert all(p["in"] == "query" and p["description"] and p["schema"] for p in parameters)
    lists = {p["name"]: p for p in parameters if p["schema"].get("type") == "array"}
    assert sorted(lists) == sorted([*LISTS[operation], *(f"{name}[]" for name in LISTS[operation])])
    for name, most in LISTS[operation].items():
        plain, bracketed = lists[name], lists[f"{name}[]"]
        assert {k: v for k, v in plain.items() if k != "name"} == {k: v for k, v in bracketed.items() if k != "name"}
        assert plain["style"] == "form" and plain["explode"] is True
        assert plain["schema"]["items"]["type"] == "string"
        assert plain["schema"].get("maxItems") == most and ("maxItems" in plain["schema"]) == (most is not None)
        scalar = {p["name"] for p in parameters if p["schema"].get("type") != "array"}
        assert "style" not in parameters[0] and "explode" not in parameters[0] and "start_time" in scalar


@pytest.mark.parametrize("operation", sorted(LISTS))
def test_a_filter_list_is_bounded_where_the_handler_bounds_it(spec: dict[str, Any], operation: str) -> None:
    kind = KINDS[operation]
    for name, most in LISTS[operation].items():
        if most is None:
            continue
        for spelling in (name, f"{name}[]"):
            taken = {"start_time": ["0"], spelling: [f"v{n}" for n in range(most)]}
            usage_api.parse(kind, taken, 10 * usage_api.DAY)
            too_many = {"start_time": ["0"], spelling: [f"v{n}" for n in range(most + 1)]}
            with pytest.raises(errors.BadRequestError):
                usage_api.parse(kind, too_many, 10 * usage_api.DAY)
