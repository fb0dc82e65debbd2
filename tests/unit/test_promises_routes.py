"""The route table's promises, as the gateway and the handlers use it: which path reaches which operation,
the 404 and 405 a path without a route gets (in the dialect's shape), and where a greedy `{name+}` yields."""

from __future__ import annotations

import pytest

from shared import errors, routes
from shared.routes import Route


def _route(method: str, path: str, operation: str, function: str = "f") -> Route:
    return Route(method, path, function, operation, None, "R", "summary")


@pytest.mark.parametrize(("path", "dialect"), [
    ("/v1", "openai"), ("/v1/", "openai"), ("/v1/chat/completions", "openai"), ("/v1/no/such/route", "openai"),
    ("/v1x", "native"), ("/v2/chat", "native"), ("/foundationModels/v1/completion", "native"),
    ("/operations/abc", "native"), ("", "native"), ("/", "native"),
])
def test_errors_on_v1_paths_speak_openai_and_every_other_path_native(path: str, dialect: str) -> None:
    assert routes.dialect_of(path) == dialect


def test_a_greedy_parameter_takes_the_rest_of_the_path_slashes_included() -> None:
    model = _route("GET", "/v1/models/{model+}", "retrieve")
    assert model.greedy and not _route("GET", "/v1/models/{model}", "one").greedy
    assert model.match("/v1/models/gpt://b1g/yandexgpt/latest") == {"model": "gpt://b1g/yandexgpt/latest"}
    assert model.match("/v1/models/yandexgpt") == {"model": "yandexgpt"}
    assert model.match("/v1/models/") is None and model.match("/v1/other/x") is None
    table = (model,)
    assert routes.resolve("GET", "/v1/models/a/b/c", table) == (model, {"model": "a/b/c"})


def test_a_concrete_route_wins_over_a_greedy_one_listed_before_it() -> None:
    anything = _route("GET", "/v1/{path+}", "notFound")
    models = _route("GET", "/v1/models", "list")
    one = _route("GET", "/v1/models/{model}", "retrieve")
    table = (anything, models, one)
    assert routes.resolve("GET", "/v1/models", table) == (models, {})
    assert routes.resolve("GET", "/v1/models/", table) == (models, {})  # a trailing slash is the same path
    assert routes.resolve("GET", "/v1/models/x", table) == (one, {"model": "x"})
    assert routes.resolve("GET", "/v1/files/x/y", table) == (anything, {"path": "files/x/y"})


def test_the_query_string_never_decides_the_route() -> None:
    route, params = routes.resolve("GET", "/v1/models?after=a?b=/v1/files")
    assert (route.operation, params) == ("listModels", {})
    route, params = routes.resolve("GET", "/v1/files/file-1/content?x=?y")
    assert (route.operation, params) == ("downloadFile", {"file_id": "file-1"})


def test_a_path_without_a_route_is_a_404_naming_the_path() -> None:
    with pytest.raises(errors.NotFoundError) as raised:
        routes.resolve("POST", "/foundationModels/v1/nope?x=1")
    assert raised.value.message == "no route for /foundationModels/v1/nope"
    with pytest.raises(errors.NotFoundError) as raised:
        routes.resolve("GET", "?operation=get")  # nothing but a query: the root path, which has no route
    assert raised.value.message == "no route for /"


def test_a_path_served_for_other_methods_is_a_405_naming_them() -> None:
    with pytest.raises(errors.MethodNotAllowedError) as raised:
        routes.resolve("put", "/v1/responses/resp_1")
    assert raised.value.message == "PUT is not allowed on /v1/responses/resp_1; use DELETE, GET"
    assert raised.value.allow == ("DELETE", "GET") and raised.value.status == 405
    route, params = routes.resolve("delete", "/v1/responses/resp_1")  # the method's case does not matter
    assert (route.operation, params) == ("deleteResponse", {"response_id": "resp_1"})


def test_each_function_serves_its_own_routes_in_table_order() -> None:
    a, b, c = _route("GET", "/a", "a", "one"), _route("GET", "/b", "b", "two"), _route("POST", "/c", "c", "one")
    assert routes.for_function("one", (a, b, c)) == (a, c)
    assert routes.for_function("three", (a, b, c)) == ()
    assert routes.functions((a, b, c)) == ("one", "two")
    own = routes.for_function("operations")
    assert own and all(route.function == "operations" for route in own)
    assert [r.operation for r in own][:2] == ["get", "cancel"]


def test_a_route_without_a_request_model_says_so() -> None:
    listing = next(r for r in routes.ROUTES if r.operation == "listModels")
    with pytest.raises(ValueError, match=r"^GET /v1/models has no request model$"):
        routes.model(listing)
    assert routes.model(listing, "response").__name__ == "OpenAIModelList"
    chat = next(r for r in routes.ROUTES if r.operation == "createChatCompletion")
    assert routes.model(chat).__name__ == "ChatCompletionRequest"  # the default is the request model
