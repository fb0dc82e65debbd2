"""The generated API Gateway spec: valid OpenAPI 3.0, and it says what the handlers enforce (issue 10 §3,
issue 11 items 2, 3, 5). The spec is built from the route table and the models, so these hold for every
dialect's routes, the /v1 ones included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from deploy import openapi
from shared import routes
from shared.native import models


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi.spec()


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def test_the_spec_is_valid_openapi_3_0(spec: dict[str, Any]) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    assert spec["openapi"].startswith("3.0.")
    assert any("+}" in path for path in spec["paths"])  # greedy parameters are the platform's one extension
    validate(openapi.standard(spec), cls=OpenAPIV30SpecValidator)
    validate(openapi.local("http://127.0.0.1:8080"), cls=OpenAPIV30SpecValidator)


def test_no_json_schema_keyword_openapi_3_0_lacks(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for where, node in walk(schemas):
        if isinstance(node, dict):
            assert node.get("type") != "null" and not isinstance(node.get("type"), list), where
            assert not {"const", "examples", "$defs", "prefixItems"} & set(node), where
            for bound in ("exclusiveMinimum", "exclusiveMaximum"):
                assert not isinstance(node.get(bound), (int, float)) or isinstance(node.get(bound), bool), where
            if "$ref" in node:
                assert set(node) == {"$ref"}, f"{where}: siblings of $ref are ignored in OpenAPI 3.0"


def test_null_is_said_with_nullable() -> None:
    converted = openapi.openapi30({"anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}], "default": None})
    assert converted == {"default": None, "nullable": True, "type": "string", "minLength": 1}
    converted = openapi.openapi30({"anyOf": [{"$ref": "#/components/schemas/X"}, {"type": "null"}]})
    assert converted == {"nullable": True, "allOf": [{"$ref": "#/components/schemas/X"}]}
    assert openapi.openapi30({"const": "a"}) == {"enum": ["a"]}
    assert openapi.openapi30({"exclusiveMinimum": 0}) == {"minimum": 0, "exclusiveMinimum": True}
    with pytest.raises(ValueError, match="prefixItems"):
        openapi.openapi30({"prefixItems": [{"type": "string"}]})


def test_operations_are_one_path_item_for_get_and_post(spec: dict[str, Any]) -> None:
    assert not [path for path in spec["paths"] if ":" in path]
    item = spec["paths"]["/operations/{operationId}"]
    assert {"get", "post"} <= set(item)
    get_id = item["get"]["parameters"][0]["schema"]["pattern"]
    post_id = item["post"]["parameters"][0]["schema"]["pattern"]
    for value, read, cancel in [("d7qabc0123456789", True, False), ("d7qabc0123456789:cancel", True, True),
                                ("NOT-AN-ID", False, False), ("d7qabc0123456789:delete", False, False)]:
        assert bool(re.search(get_id, value)) is read and bool(re.search(post_id, value)) is cancel, value
    assert item["get"]["x-yc-apigateway-integration"]["function_id"] == \
        item["post"]["x-yc-apigateway-integration"]["function_id"]


def test_the_caller_key_is_one_documented_requirement_on_authorization(spec: dict[str, Any]) -> None:
    """Issue 18 item 7: the gateway docs show one security requirement per operation and no alternatives,
    so every operation has exactly one, an apiKey scheme in Authorization with the function authorizer."""
    schemes = spec["components"]["securitySchemes"]
    assert schemes["callerKey"] == {**schemes["callerKey"], "type": "apiKey", "in": "header", "name": "Authorization"}
    assert list(schemes) == ["callerKey"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                assert operation["security"] == [{"callerKey": []}], (path, method)


def test_every_path_answers_other_methods_with_a_json_405(spec: dict[str, Any]) -> None:
    import json

    for path, item in spec["paths"].items():
        integration = item["x-yc-apigateway-any-method"]["x-yc-apigateway-integration"]
        allowed = sorted({r.method for r in routes.ROUTES if r.path == path})
        assert integration["type"] == "dummy" and integration["http_code"] == 405
        assert integration["http_headers"]["Allow"] == ", ".join(allowed)
        body = json.loads(integration["content"]["*"])
        assert ("type" in body["error"]) if routes.dialect_of(path) == "openai" else body["error"]["httpCode"] == 405


def test_errors_are_documented_in_each_routes_dialect(spec: dict[str, Any]) -> None:
    for route in routes.ROUTES:
        ref = spec["paths"][route.path][route.method.lower()]["responses"]["default"]["content"][
            "application/json"]["schema"]["$ref"]
        assert ref.endswith("/OpenAIError" if route.dialect == "openai" else "/Error")


def schema_of(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]


def test_the_validators_rules_are_in_the_spec(spec: dict[str, Any]) -> None:
    message = schema_of(spec, "Message")
    assert [branch["required"] for branch in message["oneOf"]] == [["text"], ["toolCallList"], ["toolResultList"]]
    embedding = schema_of(spec, "EmbeddingRequest")
    assert [branch["required"] for branch in embedding["oneOf"]] == [["text"], ["texts"]]
    assert embedding["properties"]["texts"]["maxItems"] == models.MAX_SYNC_TEXTS
    assert schema_of(spec, "EmbeddingAsyncRequest")["properties"]["texts"]["maxItems"] == models.MAX_ASYNC_TEXTS
    batch = schema_of(spec, "BatchCompletionRequest")
    assert [branch["required"] for branch in batch["oneOf"]] == [["sourceDatasetId"], ["requests"]]
    assert batch["properties"]["requests"]["maxItems"] == models.MAX_BATCH_REQUESTS
    assert batch["properties"]["completionOptions"]["not"] == models.NOT_STREAMING["not"]
    assert schema_of(spec, "CompletionAsyncRequest")["properties"]["completionOptions"]["not"] == \
        models.NOT_STREAMING["not"]
    labels = schema_of(spec, "FewShotClassificationRequest")["properties"]["labels"]
    assert labels["uniqueItems"] is True and (labels["minItems"], labels["maxItems"]) == (2, 20)
    assert schema_of(spec, "CompletionRequest")["not"]["required"] == ["jsonObject", "jsonSchema"]
    options = schema_of(spec, "CompletionOptions")["properties"]
    assert options["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 1}
    assert options["maxTokens"]["anyOf"][0] == {"type": "integer", "minimum": 1}


@pytest.mark.parametrize(("model", "value"), [
    ("TextClassificationRequest", "cls://b1gfolder/classifier/latest@abc123"),
    ("TextClassificationRequest", "classifier/latest@abc123"),
    ("FewShotClassificationRequest", "cls://b1gfolder/yandexgpt/latest"),
    ("CompletionRequest", "gpt://b1gfolder/yandexgpt-lite/latest"),
    ("CompletionRequest", "yandexgpt/rc"),
    ("EmbeddingRequest", "emb://b1gfolder/text-search-doc/latest"),
    ("EmbeddingRequest", "gpt://b1gfolder/text-embeddings/latest@tuned"),
])
def test_model_uri_patterns_take_what_upstream_takes(spec: dict[str, Any], model: str, value: str) -> None:
    assert re.search(schema_of(spec, model)["properties"]["modelUri"]["pattern"], value)


@pytest.mark.parametrize(("model", "value"), [
    ("TextClassificationRequest", "cls://b1gfolder/classifier/latest"),  # a tuned classifier needs @suffix
    ("TextClassificationRequest", "classifier"),
    ("CompletionRequest", "emb://b1gfolder/text-search-doc/latest"),
    ("CompletionRequest", "gpt://b1gfolder"),
    ("CompletionRequest", "yandex gpt"),
    ("FewShotClassificationRequest", "gpt://b1gfolder/yandexgpt/latest"),
])
def test_model_uri_patterns_refuse_what_the_stack_refuses(spec: dict[str, Any], model: str, value: str) -> None:
    assert not re.search(schema_of(spec, model)["properties"]["modelUri"]["pattern"], value)


@pytest.mark.parametrize("text", ["hi", " x ", "\u00a0y", "\ufeff"])
def test_the_not_blank_pattern_agrees_with_the_validator(spec: dict[str, Any], text: str) -> None:
    pattern = schema_of(spec, "Message")["properties"]["text"]["pattern"]
    accepted = models.Message.model_validate({"role": "user", "text": text}) is not None
    assert bool(re.search(pattern, text)) is accepted


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u2028\u3000", "\x1c"])
def test_blank_text_is_outside_the_pattern_and_refused(spec: dict[str, Any], text: str) -> None:
    from pydantic import ValidationError

    assert not re.search(schema_of(spec, "Message")["properties"]["text"]["pattern"], text)
    with pytest.raises(ValidationError):
        models.Message.model_validate({"role": "user", "text": text})


def test_the_any_method_operations_declare_their_path_parameters(spec: dict[str, Any]) -> None:
    """Issue 18 item 8: as the docs' example of x-yc-apigateway-any-method does; undeclared, a strict
    validator refuses the spec."""
    import re

    templated = 0
    for path, item in spec["paths"].items():
        names = [name.rstrip("+") for name in re.findall(r"\{([^}]+)\}", path)]
        declared = item["x-yc-apigateway-any-method"].get("parameters", [])
        assert [(p["name"], p["in"], p["required"]) for p in declared] == [(n, "path", True) for n in names], path
        templated += bool(names)
    assert templated >= 7
