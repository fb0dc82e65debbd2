"""Native request bodies (shared/native/models.py), checked in process as the runtime checks them: a bad body
is a 400 whose message names the field as the caller wrote it (camelCase, with its path) and the rule it
broke, with every problem in `details`; a good one goes upstream in camelCase with int64 as strings.
tests/integration/test_bad_input.py sends bodies like these through the local gateway."""

from __future__ import annotations

from typing import Any

import pytest

from shared import errors
from shared.native import models
from shared.native.models import validate

MSG = [{"role": "user", "text": "hi"}]
GOOD = {"modelUri": "yandexgpt-lite", "messages": MSG}
CLS = {"modelUri": "cls://f/yandexgpt/latest", "taskDescription": "t", "labels": ["a", "b"], "text": "x"}
TOOL = {"function": {"name": "weather", "parameters": {"type": "object"}}}


def _message(model: type[models.Body], body: Any) -> str:
    with pytest.raises(errors.BadRequestError) as raised:
        validate(model, body)
    assert raised.value.status == 400
    return raised.value.message


@pytest.mark.parametrize(("body", "kind"), [([GOOD], "an array"), ("hi", "a string"), (None, "null"), (True, "a boolean"),
                                             (3, "a number"), (2.5, "a number")])
def test_a_body_that_is_not_an_object_says_what_it_is(body: Any, kind: str) -> None:
    assert _message(models.CompletionRequest, body) == f"body: must be a JSON object, got {kind}"


def test_the_json_type_of_anything_else_is_its_python_name() -> None:
    assert models._json_type(b"x") == "bytes"


@pytest.mark.parametrize(("body", "message"), [
    ({"messages": MSG}, "modelUri: is required"),
    ({"modelUri": 5, "messages": MSG}, "modelUri: must be a valid string"),
    ({**GOOD, "completionOptions": {"temperature": 1.5}}, "completionOptions.temperature: must be between 0 and 1"),
    ({**GOOD, "completionOptions": {"temperature": -0.1}}, "completionOptions.temperature: must be between 0 and 1"),
    ({**GOOD, "completionOptions": {"maxTokens": 1.5}}, "completionOptions.maxTokens: must be a whole number"),
    ({**GOOD, "completionOptions": {"maxTokens": True}}, "completionOptions.maxTokens: must be a whole number"),
    ({**GOOD, "completionOptions": {"maxTokens": "1.5"}},
     "completionOptions.maxTokens: must be a whole number (a JSON number or a string of digits)"),
    ({**GOOD, "completionOptions": {"maxTokens": "0"}}, "completionOptions.maxTokens: must be greater than 0"),
    ({**GOOD, "completionOptions": {"maxTokens": -3}}, "completionOptions.maxTokens: must be greater than 0"),
    ({**GOOD, "messages": []}, "messages: must have at least 1 item, not 0"),
    ({**GOOD, "messages": [{"role": "bot", "text": "hi"}]}, "messages[0].role: must be 'system', 'user' or 'assistant'"),
    ({**GOOD, "messages": [MSG[0], {"role": "user", "text": " \n"}]}, "messages[1].text: must not be empty"),
    ({**GOOD, "messages": [{"role": "user"}]}, "messages[0].text: set exactly one of text, toolCallList, toolResultList"),
    ({**GOOD, "messages": [{"role": "user", "text": "a", "toolResultList": {"toolResults": [
        {"functionResult": {"name": "f", "content": "c"}}]}}]},
     "messages[0].text: set exactly one of text, toolCallList, toolResultList"),
    ({**GOOD, "temprature": 0.5}, "temprature: is not a known field"),
    ({**GOOD, "jsonObject": True, "jsonSchema": {"schema": {}}}, "jsonSchema: set at most one of jsonObject and jsonSchema"),
    ({**GOOD, "tools": [TOOL], "toolChoice": {"functionName": "news"}},
     "toolChoice.functionName: is not the name of one of tools"),
    ({**GOOD, "toolChoice": {"functionName": "weather"}}, "toolChoice.functionName: is not the name of one of tools"),
    ({**GOOD, "tools": [TOOL], "toolChoice": {}}, "toolChoice.mode: set exactly one of mode and functionName"),
    ({**GOOD, "tools": [TOOL], "toolChoice": {"mode": "AUTO", "functionName": "weather"}},
     "toolChoice.mode: set exactly one of mode and functionName"),
])
def test_a_bad_completion_names_the_field_and_the_rule(body: dict[str, Any], message: str) -> None:
    assert _message(models.CompletionRequest, body) == message


def test_every_problem_is_in_the_details_and_the_message_counts_the_rest() -> None:
    with pytest.raises(errors.BadRequestError) as raised:
        validate(models.CompletionRequest, {"messages": [], "x": 1})
    assert raised.value.message == "modelUri: is required (and 2 more problems)"
    assert raised.value.details == [
        {"@type": "field", "field": "modelUri", "description": "is required"},
        {"@type": "field", "field": "messages", "description": "must have at least 1 item, not 0"},
        {"@type": "field", "field": "x", "description": "is not a known field"}]
    assert _message(models.CompletionRequest, {"messages": []}) == "modelUri: is required (and 1 more problem)"
    many = {f"unknown{n}": n for n in range(25)}
    with pytest.raises(errors.BadRequestError) as raised:
        validate(models.TokenizeRequest, many)
    assert raised.value.message == "modelUri: is required (and 26 more problems)"
    assert len(raised.value.details) == 20  # the first twenty


def test_a_good_completion_goes_upstream_in_camel_case_with_int64_as_strings() -> None:
    body = {"model_uri": "yandexgpt-lite", "completionOptions": {"max_tokens": " 12 ", "temperature": 0,
                                                                 "reasoningOptions": {"mode": "DISABLED"}},
            "messages": [{"role": "system", "text": "be brief"}, {"role": "user", "text": "hi"}],
            "tools": [TOOL], "toolChoice": {"functionName": "weather"}, "parallelToolCalls": False}
    request = validate(models.CompletionRequest, body)
    assert request.upstream() == {
        "modelUri": "yandexgpt-lite",
        "completionOptions": {"maxTokens": "12", "temperature": 0.0, "reasoningOptions": {"mode": "DISABLED"}},
        "messages": [{"role": "system", "text": "be brief"}, {"role": "user", "text": "hi"}],
        "tools": [{"function": {"name": "weather", "parameters": {"type": "object"}}}],
        "toolChoice": {"functionName": "weather"}, "parallelToolCalls": False}
    assert request.stream is False
    assert validate(models.CompletionRequest, {**GOOD, "completionOptions": {"stream": True}}).stream is True
    assert validate(models.CompletionRequest, GOOD).stream is False
    for temperature in (0, 1, 0.5):
        validate(models.CompletionRequest, {**GOOD, "completionOptions": {"temperature": temperature}})
    assert validate(models.CompletionRequest, {**GOOD, "completionOptions": {"maxTokens": 1}}).upstream()[
        "completionOptions"] == {"maxTokens": "1"}
    assert validate(models.CompletionRequest, {**GOOD, "jsonObject": True}).upstream()["jsonObject"] is True
    assert validate(models.CompletionRequest, {**GOOD, "tools": [TOOL], "toolChoice": {"mode": "AUTO"}}).tool_choice


def test_tool_calls_and_results_pass_through_with_unknown_upstream_fields() -> None:
    calls = {"role": "assistant", "toolCallList": {"toolCalls": [
        {"functionCall": {"name": "weather", "arguments": {"city": "Riga"}}, "id": "c1"}]}}
    results = {"role": "user", "toolResultList": {"toolResults": [
        {"functionResult": {"name": "weather", "content": "sunny"}}]}}
    request = validate(models.CompletionRequest, {**GOOD, "messages": [*MSG, calls, results], "tools": [TOOL]})
    assert request.upstream()["messages"][1:] == [calls, results]


@pytest.mark.parametrize(("body", "message"), [
    ({"modelUri": "m", "requests": [{"messages": MSG}], "sourceDatasetId": "d"},
     "requests: set exactly one of sourceDatasetId and requests"),
    ({"modelUri": "m"}, "requests: set exactly one of sourceDatasetId and requests"),
    ({"modelUri": "m", "requests": []}, "requests: must have at least 1 item, not 0"),
    ({"modelUri": "m", "sourceDatasetId": "d", "completionOptions": {"stream": True}},
     "completionOptions.stream: is not available in batch mode"),
    ({"modelUri": "m", "requests": [{"messages": MSG, "completionOptions": {"stream": True}}]},
     "requests[0].completionOptions.stream: is not available in batch mode"),
    ({"modelUri": "m", "requests": [{"messages": MSG, "customId": "a"}, {"messages": MSG, "customId": "b"},
                                    {"messages": MSG, "customId": "a"}]},
     "requests[2].customId: repeats requests[0].customId"),
    ({"modelUri": "m", "requests": [{"messages": MSG, "customId": "x" * 129}]},
     "requests[0].customId: must have at most 128 characters"),
])
def test_a_bad_batch_names_the_request_and_field(body: dict[str, Any], message: str) -> None:
    assert _message(models.BatchCompletionRequest, body) == message


def test_a_good_batch_keeps_its_requests_in_order() -> None:
    body = {"modelUri": "m", "requests": [{"messages": MSG, "customId": "a"}, {"messages": MSG},
                                          {"messages": MSG}, {"messages": MSG, "customId": "b",
                                                              "completionOptions": {"stream": False}}]}
    request = validate(models.BatchCompletionRequest, body)
    assert [item.custom_id for item in request.requests] == ["a", None, None, "b"]
    assert validate(models.BatchCompletionRequest, {"modelUri": "m", "sourceDatasetId": "d",
                                                    "completionOptions": {"stream": False}}).source_dataset_id == "d"


@pytest.mark.parametrize(("model", "body", "message"), [
    (models.TokenizeRequest, {"modelUri": "yandexgpt-lite"}, "text: is required"),
    (models.FewShotClassificationRequest, {**CLS, "labels": ["a"]}, "labels: must have at least 2 items, not 1"),
    (models.FewShotClassificationRequest, {**CLS, "labels": [f"l{i}" for i in range(21)]},
     "labels: must have at most 20 items, not 21"),
    (models.FewShotClassificationRequest, {**CLS, "labels": ["a", "b", "a"]}, "labels: must not repeat a label"),
    (models.FewShotClassificationRequest, {**CLS, "samples": [{"text": "q", "label": "a"}, {"text": "q", "label": "c"}]},
     "samples[1].label: 'c' is not one of labels"),
    (models.FewShotClassificationRequest, {k: v for k, v in CLS.items() if k != "taskDescription"},
     "taskDescription: is required"),
    (models.TextClassificationRequest, {"modelUri": "cls://f/m/latest@x"}, "text: is required"),
    (models.EmbeddingRequest, {"modelUri": "e", "texts": ["t"] * 257}, "texts: must have at most 256 items, not 257"),
    (models.EmbeddingRequest, {"modelUri": "e", "texts": []}, "texts: must have at least 1 item, not 0"),
    (models.EmbeddingRequest, {"modelUri": "e", "text": "a", "texts": ["b"]}, "text: set exactly one of text and texts"),
    (models.EmbeddingRequest, {"modelUri": "e"}, "text: set exactly one of text and texts"),
    (models.EmbeddingRequest, {"modelUri": "e", "texts": ["a", 3]}, "texts[1]: must be a valid string"),
    (models.EmbeddingRequest, {"modelUri": "e", "text": "a", "dim": -1}, "dim: must be greater than 0"),
    (models.EmbeddingRequest, {"modelUri": "e", "text": "a", "dim": 0}, "dim: must be greater than 0"),
    (models.EmbeddingRequest, {"modelUri": "e", "text": "a", "dim": "x1"},
     "dim: must be a whole number (a JSON number or a string of digits)"),
    (models.EmbeddingAsyncRequest, {"modelUri": "e", "texts": ["t"] * 10_001}, "texts: must have at most 10000 items, not 10001"),
])
def test_a_bad_embedding_or_classification_names_the_field(model: type[models.Body], body: dict[str, Any],
                                                           message: str) -> None:
    assert _message(model, body) == message


def test_good_embeddings_and_classifications_go_upstream_as_given() -> None:
    assert validate(models.EmbeddingRequest, {"modelUri": "e", "text": "a", "dim": "-0256"[1:]}).upstream() == {
        "modelUri": "e", "text": "a", "dim": "256"}
    assert validate(models.EmbeddingRequest, {"modelUri": "e", "texts": ["a"], "dim": 1}).upstream()["dim"] == "1"
    assert len(validate(models.EmbeddingAsyncRequest, {"modelUri": "e", "texts": ["t"] * 10_000}).texts) == 10_000
    cls = validate(models.FewShotClassificationRequest, {**CLS, "samples": [{"text": "q", "label": "b"}]})
    assert cls.upstream()["samples"] == [{"text": "q", "label": "b"}]


def test_the_int64_reader_takes_numbers_and_digit_strings_only() -> None:
    assert models._int64(" -12 ") == -12 and models._int64(7) == 7 and models._int64(None) is None
    for bad in (True, 1.0, "1e3", "", "--1"):
        with pytest.raises(ValueError):
            models._int64(bad)


def test_a_rule_with_a_colon_in_it_keeps_its_field() -> None:
    body = {**CLS, "labels": ["x: y", "b"], "samples": [{"text": "q", "label": "b: c"}]}
    with pytest.raises(errors.BadRequestError) as raised:
        validate(models.FewShotClassificationRequest, body)
    assert raised.value.details == [{"@type": "field", "field": "samples[0].label",
                                     "description": "'b: c' is not one of labels"}]
    assert raised.value.to_openai_body()["error"]["param"] == "samples[0].label"
    assert _message(models.CompletionRequest, {**GOOD, "completionOptions": {"maxTokens": "X5"}}) == \
        "completionOptions.maxTokens: must be a whole number (a JSON number or a string of digits)"


def test_an_item_of_a_list_is_named_by_its_index_under_its_field() -> None:
    from shared.openai.response_request import ResponseCreateRequest

    body = {"model": "m", "input": [{"type": "message", "role": "user", "content": 5}]}
    assert _message(ResponseCreateRequest, body) == "input[0].content.str: must be a valid string"


def test_pydantics_own_location_tags_never_reach_the_field_name() -> None:
    """Whatever pydantic puts in an error's location besides fields and indexes (validator and union tags), the
    caller is named only the field: errors made here as pydantic makes them, with such tags in them."""
    from pydantic_core import ValidationError

    def error(kind: str, loc: tuple[Any, ...], message: str | None = None) -> dict[str, Any]:
        line: dict[str, Any] = {"type": kind, "loc": loc, "input": None}
        if message is not None:
            line["ctx"] = {"error": (AssertionError if kind == "assertion_error" else ValueError)(message)}
        return line

    raised = ValidationError.from_exception_data("Body", [
        error("value_error", ("texts", "function-after[_check(), list[str]]", 2), "must be one of: a, b"),
        error("assertion_error", ("json-or-python", "messages", 0, "text"), "must not be empty"),
        error("missing", ("function-before", "modelUri")),
        error("value_error", (), "the body is odd"),
        error("value_error", ("function-plain[f()]", "options"), "@[1]: repeats"),
    ])
    bad = models._bad_request(raised)
    assert [(d["field"], d["description"]) for d in bad.details] == [
        ("texts[2]", "must be one of: a, b"), ("messages[0].text", "must not be empty"), ("modelUri", "is required"),
        ("body", "the body is odd"), ("options[1]", "repeats")]
    assert bad.message == "texts[2]: must be one of: a, b (and 4 more problems)"


def test_the_specs_rules_say_what_the_validators_enforce() -> None:
    import re

    import jsonschema

    from shared.config import Settings
    from shared.native.services import resolve_model

    one = {"type": "object", **models.exactly_one_of(text="string", texts="array")}
    for body, valid in (({"text": "a"}, True), ({"texts": ["a"]}, True), ({}, False),
                        ({"text": "a", "texts": ["b"]}, False), ({"text": ["a"]}, False)):
        assert jsonschema.Draft7Validator(one).is_valid(body) is valid, body
    generated = {"type": "number", "minimum": 0}
    models._replaced({"type": "string"})(generated)
    assert generated == {"type": "string"}
    settings = Settings(folder_id="b1g")
    for uri in ("gpt://b1g/yandexgpt/latest", "gpt://b1g/yandexgpt", "yandexgpt", "yandexgpt-lite/rc", "llama/7@x",
                "gpt:/b1g/yandexgpt", "emb://b1g/text-search-doc/latest", "gpt://b1g/", "two words", "a/b/c"):
        try:
            resolve_model(uri, "gpt", settings)
            resolves = True
        except errors.ApiError:
            resolves = False
        if uri.startswith("emb://"):
            resolves = False  # a gpt route's pattern names its own scheme only
        assert bool(re.match(models.model_uri_pattern("gpt"), uri)) is resolves, uri
    tuned = models.model_uri_pattern("cls", tuned=True)
    assert re.match(tuned, "cls://b1g/classifier/latest@suffix") and not re.match(tuned, "cls://b1g/classifier/latest")
