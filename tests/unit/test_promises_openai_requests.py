"""What the OpenAI request bodies promise a caller (shared/openai/models.py, response_request.py and the
embeddings request): a body is read as OpenAI's wire has it, and anything wrong is a 400 in OpenAI's error
shape whose `param` names the field where it is (input[2].role, tools[0].tools[1].name, tool_choice.mode),
never a 500. The parameter table's rule (only the no-op value of a parameter the native model cannot honour;
a 400 for what it cannot do at all) and the spec's descriptions of it. No sockets."""

from __future__ import annotations

from typing import Any

import pytest

from shared import errors
from shared.openai import chat, embeddings, response_request
from shared.openai.models import describe_rules, refuse_unsupported, validate
from shared.openai.response_request import (
    InputTokensRequest,
    ResponseCreateRequest,
    ResponseFunctionCallItem,
    ResponseFunctionCallOutputItem,
    ResponseFunctionTool,
    ResponseHostedTool,
    ResponseItemReference,
    ResponseMessageItem,
    ResponseNamespaceTool,
    ResponseReasoningItem,
)


def response(**fields: Any) -> ResponseCreateRequest:
    return validate(ResponseCreateRequest, {"model": "yandexgpt", **fields})


def refused(model: type, body: dict[str, Any]) -> tuple[str, str]:
    """(param, message) of the 400 the body gets, in OpenAI's error shape."""
    with pytest.raises(errors.BadRequestError) as caught:
        validate(model, body)
    error = caught.value.to_openai_body()["error"]
    assert error["type"] == "invalid_request_error" and caught.value.status == 400
    return error["param"], error["message"]


def refused_response(**fields: Any) -> tuple[str, str]:
    return refused(ResponseCreateRequest, {"model": "yandexgpt", **fields})


# -- function names and metadata (models.py's shared rules) ---------------------------------------------------

NAME_RULE = "must be 1-64 letters, digits, underscores or dashes"


@pytest.mark.parametrize("name", ["f", "a" * 64, "get_weather-2", "ABC_xyz-09", "_", "-"])
def test_a_function_name_of_1_to_64_letters_digits_underscores_or_dashes_is_taken(name: str) -> None:
    assert response(tools=[{"type": "function", "name": name}]).tools[0].name == name
    chat_tool = {"type": "function", "function": {"name": name}}
    assert validate(chat.ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                 "tools": [chat_tool]}).tools[0].function.name == name


@pytest.mark.parametrize("name", ["", "a" * 65, "a.b", "a b", "é", "ж", "٣", "a/b", "a:b", "名前"])
def test_any_other_function_name_is_a_400_naming_where_it_is(name: str) -> None:
    assert refused_response(tools=[{"type": "function", "name": "ok"}, {"type": "function", "name": name}]) == (
        "tools[1].name", f"tools[1].name: {NAME_RULE}")
    param, message = refused(chat.ChatCompletionRequest, {
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": name}}]})
    assert (param, message) == ("tools[0].function.name", f"tools[0].function.name: {NAME_RULE}")


def test_metadata_takes_16_pairs_with_keys_up_to_64_and_values_up_to_512_characters() -> None:
    most = {f"k{i}": "v" for i in range(16)}
    assert response(metadata=most).metadata == most
    longest = {"k" * 64: "v" * 512}
    assert response(metadata=longest).metadata == longest
    assert response(metadata={}).metadata == {}
    assert response(metadata=None).metadata is None
    assert refused_response(metadata={f"k{i}": "v" for i in range(17)}) == (
        "metadata", "metadata: must have at most 16 keys")
    key = "k" * 65
    assert refused_response(metadata={"a": "b", key: "v"}) == (
        f"metadata.{key}", f"metadata.{key}: keys are at most 64 characters, values at most 512")
    assert refused_response(metadata={"a": "b", "long": "v" * 513}) == (
        "metadata.long", "metadata.long: keys are at most 64 characters, values at most 512")


# -- the parameter table -------------------------------------------------------------------------------------

def test_a_default_only_parameter_is_taken_at_its_no_op_value_or_null_and_refused_at_any_other() -> None:
    table = response_request.DEFAULT_ONLY
    for name, default in table.items():
        refuse_unsupported(response(**{name: default}), table, response_request.REFUSED)
        refuse_unsupported(response(**{name: None}), table, response_request.REFUSED)
    refuse_unsupported(response(), table, response_request.REFUSED)
    for name, value, said in [("top_p", 0.5, "1"), ("top_logprobs", 3, "0"), ("truncation", "auto", '"disabled"')]:
        with pytest.raises(errors.BadRequestError) as caught:
            refuse_unsupported(response(**{name: value}), table, response_request.REFUSED)
        assert caught.value.to_openai_body()["error"]["param"] == name
        assert caught.value.message == (f"{name}: is not supported on this model (only {said}, which changes "
                                        "nothing, is accepted)")


def test_a_value_also_fine_is_taken_beside_the_default_and_nothing_else_is() -> None:
    request = validate(chat.ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                    "stop": ""})
    refuse_unsupported(request, chat.DEFAULT_ONLY, chat.REFUSED, also_fine={"stop": ""})
    with pytest.raises(errors.BadRequestError, match=r"^stop: is not supported on this model \(only \[\]"):
        refuse_unsupported(request, chat.DEFAULT_ONLY, chat.REFUSED)
    other = validate(chat.ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                  "n": 1, "stop": "END"})
    with pytest.raises(errors.BadRequestError, match=r"^stop: "):
        refuse_unsupported(other, chat.DEFAULT_ONLY, chat.REFUSED, also_fine={"stop": ""})
    # a value also fine for one parameter makes no other parameter's value fine
    with pytest.raises(errors.BadRequestError, match=r"^top_p: "):
        refuse_unsupported(response(top_p=0.5), response_request.DEFAULT_ONLY, {}, also_fine={"top_p": 1.5})
    refuse_unsupported(response(top_p=0.5), response_request.DEFAULT_ONLY, {}, also_fine={"top_p": 0.5})


@pytest.mark.parametrize("name,value", [("conversation", "conv_1"), ("conversation", {"id": "conv_1"}),
                                        ("prompt", {"id": "p"}), ("moderation", {}), ("context_management", [])])
def test_a_refused_parameter_is_a_400_whenever_it_is_set(name: str, value: Any) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        refuse_unsupported(response(**{name: value}), response_request.DEFAULT_ONLY, response_request.REFUSED)
    assert caught.value.to_openai_body()["error"]["param"] == name
    assert caught.value.message == f"{name}: {response_request.REFUSED[name]}"
    refuse_unsupported(response(**{name: None}), response_request.DEFAULT_ONLY, response_request.REFUSED)


def test_the_spec_says_what_depends_on_the_model() -> None:
    for model, module in [(ResponseCreateRequest, response_request), (chat.ChatCompletionRequest, chat)]:
        props = model.model_json_schema()["properties"]
        for name, default in module.DEFAULT_ONLY.items():
            assert props[name]["description"] == (f"Native models accept only {__import__('json').dumps(default)} "
                                                  "(changes nothing); pass-through models take any value.")
        for name, reason in module.REFUSED.items():
            assert props[name]["description"] == (f"Native models: a 400 when set ({reason}); pass-through models "
                                                  "take it.")
        assert props["temperature"]["description"] == ("0-1 on native models (above 1 is a 400); 0-2 on "
                                                       "pass-through models.")
    # a table may name a parameter a schema does not have: it is skipped, and the rest still described
    schema: dict[str, Any] = {"properties": {"temperature": {}, "b": {}}}
    describe_rules(schema, {"a": 1, "b": 2}, {"c": "no"})
    assert schema == {"properties": {"temperature": {"description": "0-1 on native models (above 1 is a 400); 0-2 "
                                                                    "on pass-through models."},
                                     "b": {"description": "Native models accept only 2 (changes nothing); "
                                                          "pass-through models take any value."}}}
    describe_rules({}, {"a": 1}, {"c": "no"})  # a schema without properties gets nothing and is no error


# -- POST /v1/responses: input --------------------------------------------------------------------------------

def test_input_is_a_string_or_a_list_of_typed_items_each_read_by_its_own_model() -> None:
    assert response(input="hello").input == "hello"
    assert response().input is None and response(input=None).input is None
    items = response(input=[
        {"type": "message", "role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},  # no type: a message
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "3"},
        {"type": "reasoning", "summary": [], "encrypted_content": "x"},  # its other keys are let through
        {"type": "item_reference", "id": "msg_1"},
        {"id": "msg_2"},  # no type and no role: a reference
    ]).input
    assert [type(item) for item in items] == [ResponseMessageItem, ResponseMessageItem, ResponseFunctionCallItem,
                                              ResponseFunctionCallOutputItem, ResponseReasoningItem,
                                              ResponseItemReference, ResponseItemReference]
    assert items[1].role == "developer" and items[1].content[0].text == "be brief"
    assert (items[2].call_id, items[2].name, items[2].arguments) == ("c1", "f", "{}")
    assert items[3].output == "3" and items[5].id == "msg_1" and items[6].id == "msg_2"


@pytest.mark.parametrize("value,param,rule", [
    (5, "input", "must be a string or an array of input items"),
    ({"role": "user", "content": "x"}, "input", "must be a string or an array of input items"),
    (["hi"], "input[0]", "must be an object"),
    ([{"role": "user", "content": "x"}, 7], "input[1]", "must be an object"),
    ([{"content": "x"}], "input[0].type", None),
    ([{"type": "web_search_call", "id": "w"}], "input[0].type", None),
    ([{"type": 5, "role": "user", "content": "x"}], "input[0].type", None),
    ([{"type": None, "status": "x"}], "input[0].type", None),
    ([{"role": "user", "content": "x"}, {"type": "message", "role": "bot", "content": "x"}], "input[1].role",
     "must be 'user', 'assistant', 'system' or 'developer'"),
    ([{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}], "input[0].call_id",
     "must have at least 1 character"),
    ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "extra": 1}], "input[0].extra",
     "is not a known field"),
    ([{"type": "function_call_output", "call_id": "c"}], "input[0].output", "is required"),
    ([{"id": ""}], "input[0].id", "must have at least 1 character"),
    ([{"type": "item_reference"}], "input[0].id", "is required"),
])
def test_a_bad_input_item_is_a_400_naming_where_it_is(value: Any, param: str, rule: str | None) -> None:
    rule = rule or ("must be one of message, function_call, function_call_output, reasoning, item_reference "
                    "(hosted tool items are not available on this model)")
    assert refused_response(input=value) == (param, f"{param}: {rule}")


def test_a_bad_part_inside_an_item_is_named_under_the_item() -> None:
    param, _ = refused_response(input=[{"type": "message", "role": "user", "content": [{"type": "video"}]}])
    assert param.startswith("input[0].content")
    param, _ = refused_response(input=[{"role": "user", "content": "x"},
                                       {"type": "function_call_output", "call_id": "c", "output": 5}])
    assert param.startswith("input[1].output")


# -- tools ----------------------------------------------------------------------------------------------------

HOSTED_RULE = ("must be function, namespace or a hosted tool type (web_search, web_search_preview, "
               "web_search_2025_08_26, web_search_preview_2025_03_11, file_search, mcp, code_interpreter, "
               "image_generation, computer_use_preview, computer, local_shell, shell, apply_patch, custom, "
               "tool_search)")


def test_tools_are_functions_namespaces_or_hosted_kinds_each_read_by_its_own_model() -> None:
    assert response().tools is None and response(tools=None).tools is None and response(tools=[]).tools == []
    tools = response(tools=[
        {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        {"type": "namespace", "name": "crm", "description": "CRM", "tools": [
            {"type": "function", "name": "find", "async": True}, {"type": "custom", "name": "x y"}, {"name": "no type"}]},
        {"type": "web_search", "search_context_size": "low"},
        {"type": "custom", "name": "apply"},
    ]).tools
    assert [type(tool) for tool in tools] == [ResponseFunctionTool, ResponseNamespaceTool, ResponseHostedTool,
                                              ResponseHostedTool]
    assert tools[0].name == "f" and tools[0].parameters == {"type": "object"} and tools[0].strict is True
    assert tools[1].name == "crm" and tools[1].tools[0] == {"type": "function", "name": "find", "async": True}
    assert tools[2].type == "web_search"


@pytest.mark.parametrize("value,param,rule", [
    ({"type": "function", "name": "f"}, "tools", "must be an array of tools"),
    ("f", "tools", "must be an array of tools"),
    ([{"type": "function", "name": "f"}, "f"], "tools[1].type", HOSTED_RULE),
    ([{"name": "f"}], "tools[0].type", HOSTED_RULE),
    ([{"type": 1, "name": "f"}], "tools[0].type", HOSTED_RULE),
    ([{"type": "retrieval"}], "tools[0].type", HOSTED_RULE),
    ([{"type": "function"}], "tools[0].name", "is required"),
    ([{"type": "function", "name": "f", "strict": "yes"}], "tools[0].strict", "must be a valid boolean"),
    ([{"type": "function", "name": "f", "color": "red"}], "tools[0].color", "is not a known field"),
    ([{"type": "namespace", "name": "n"}], "tools[0].tools", "is required"),
])
def test_a_bad_tool_is_a_400_naming_where_it_is(value: Any, param: str, rule: str) -> None:
    assert refused_response(tools=value) == (param, f"{param}: {rule}")


NAMESPACE_RULE = "must be 1-64 letters, digits, dashes or single underscores"


@pytest.mark.parametrize("name", ["a", "n" * 64, "crm_tools", "my-ns", "a_b_c", "x_", "_x", "A9"])
def test_a_namespace_name_of_letters_digits_dashes_and_single_underscores_is_taken(name: str) -> None:
    assert response(tools=[{"type": "namespace", "name": name, "tools": []}]).tools[0].name == name


@pytest.mark.parametrize("name,rule", [("a__b", NAMESPACE_RULE), ("__", NAMESPACE_RULE), ("a.b", NAMESPACE_RULE),
                                       ("é", NAMESPACE_RULE), ("٣", NAMESPACE_RULE), ("a b", NAMESPACE_RULE),
                                       ("", "must have at least 1 character"),
                                       ("n" * 65, "must have at most 64 characters")])
def test_any_other_namespace_name_is_a_400_naming_it(name: str, rule: str) -> None:
    tools = [{"type": "function", "name": "f"}, {"type": "namespace", "name": name, "tools": []}]
    assert refused_response(tools=tools) == ("tools[1].name", f"tools[1].name: {rule}")


def test_a_bad_function_inside_a_namespace_is_named_inside_it() -> None:
    tools = [{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "ok"},
                                                          {"type": "function", "name": "bad name"}]}]
    assert refused_response(tools=tools) == ("tools[0].tools[1].name", f"tools[0].tools[1].name: {NAME_RULE}")
    tools = [{"type": "function", "name": "f"},
             {"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "g", "strict": 1}]}]
    assert refused_response(tools=tools) == ("tools[1].tools[0].strict",
                                             "tools[1].tools[0].strict: must be a valid boolean")


# -- tool_choice ----------------------------------------------------------------------------------------------

CHOICE_RULE = "must be 'none', 'auto', 'required' or a tool choice object"


def test_tool_choice_is_a_mode_a_named_function_allowed_tools_or_another_kind() -> None:
    assert response().tool_choice is None
    for mode in ("none", "auto", "required"):
        assert response(tool_choice=mode).tool_choice == mode
    assert response(tool_choice={"type": "function", "name": "f"}).tool_choice == {"type": "function", "name": "f"}
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"},
                                                                      {"type": "web_search"}], "extra": 1}
    assert response(tool_choice=allowed).tool_choice == allowed
    assert response(tool_choice={"type": "web_search_preview"}).tool_choice == {"type": "web_search_preview"}


@pytest.mark.parametrize("value,param,rule", [
    ("bogus", "tool_choice", CHOICE_RULE), ("AUTO", "tool_choice", CHOICE_RULE), (1, "tool_choice", CHOICE_RULE),
    ({"name": "f"}, "tool_choice", CHOICE_RULE), ({"type": 5}, "tool_choice", CHOICE_RULE),
    ({"type": "function"}, "tool_choice.name", "is required"),
    ({"type": "function", "name": ""}, "tool_choice.name", "must have at least 1 character"),
    ({"type": "function", "name": "f", "function": {}}, "tool_choice.function", "is not a known field"),
    ({"type": "allowed_tools", "mode": "any", "tools": []}, "tool_choice.mode", "must be 'auto' or 'required'"),
    ({"type": "allowed_tools", "mode": "auto"}, "tool_choice.tools", "is required"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}, {"name": "g"}]},
     "tool_choice.tools[1]", "must be a tool object with a type"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": 3}]}, "tool_choice.tools[0]",
     "must be a tool object with a type"),
])
def test_a_bad_tool_choice_is_a_400_naming_where_it_is(value: Any, param: str, rule: str) -> None:
    assert refused_response(tool_choice=value) == (param, f"{param}: {rule}")


def test_the_input_tokens_body_is_the_create_body() -> None:
    request = validate(InputTokensRequest, {"model": "m", "input": [{"role": "user", "content": "x"}],
                                            "tools": [{"type": "function", "name": "f"}], "tool_choice": "auto"})
    assert isinstance(request.input[0], ResponseMessageItem) and request.tools[0].name == "f"
    assert refused(InputTokensRequest, {"model": "m", "input": 3}) == (
        "input", "input: must be a string or an array of input items")


# -- POST /v1/embeddings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,param,rule", [
    ("", "input", "must not be empty"),
    ([""], "input[0]", "must not be empty"),
    (["a", "b", ""], "input[2]", "must not be empty"),
    (["a", None], "input[1]", "must be a string"),
    ([{"text": "a"}], "input[0]", "must be a string"),
    (["a", 1.5], "input[1]", "must be a string"),
    (7, "input", "must be a string or a list of strings"),
    (None, "input", "must be a string or a list of strings"),
    (["x"] * 257, "input", "must have at most 256 items (send more in several requests, or use "
                           "POST /foundationModels/v1/textEmbeddingAsync for up to 10,000)"),
])
def test_bad_embeddings_input_is_a_400_naming_the_item(value: Any, param: str, rule: str) -> None:
    assert refused(embeddings.EmbeddingsRequest, {"model": "text-search-doc", "input": value}) == (
        param, f"{param}: {rule}")
