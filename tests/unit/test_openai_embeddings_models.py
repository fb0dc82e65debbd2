"""The /v1 embeddings and models translation as plain data: no sockets."""

from __future__ import annotations

import pytest

from shared import errors, routes
from shared.config import Settings
from shared.openai import catalog, embeddings
from shared.openai.models import validate


def test_base64_is_float32_little_endian_standard_alphabet_padded() -> None:
    assert embeddings._base64([0.5, -1.25, 3.0]) == "AAAAPwAAoL8AAEBA"  # the reference's worked example
    assert embeddings._base64([1.0]) == "AACAPw=="


def test_a_vector_that_is_not_numbers_is_an_upstream_error() -> None:
    for vector in (["x"], [1e39], [None]):
        with pytest.raises(errors.UpstreamError):
            embeddings._base64(vector)
    with pytest.raises(errors.UpstreamError):
        embeddings._floats([0.1, "0.2"])


@pytest.mark.parametrize("value,texts", [("one", ["one"]), (["a", "b"], ["a", "b"]), (["x"] * 256, ["x"] * 256)])
def test_input_becomes_a_list_of_texts(value: object, texts: list[str]) -> None:
    request = validate(embeddings.EmbeddingsRequest, {"model": "text-search-doc", "input": value})
    assert request.texts == texts


@pytest.mark.parametrize("value,message", [
    ([1, 2, 3], "input: token ids are not accepted"),
    ([[1, 2], [3]], "input: token ids are not accepted"),
    ([], "input: must have at least 1 item"),
    (["ok", 7], "input[1]: must be a string"),
    (["ok", ""], "input[1]: must not be empty"),
    ([True], "input[0]: must be a string"),
    ("", "input: must not be empty"),
])
def test_bad_input_names_the_item(value: object, message: str) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        validate(embeddings.EmbeddingsRequest, {"model": "text-search-doc", "input": value})
    assert caught.value.message.startswith(message)
    assert caught.value.to_openai_body()["error"]["param"] == message.split(":")[0]


def test_greedy_parameter_takes_the_rest_of_the_path_and_yields_to_specific_routes() -> None:
    route, params = routes.resolve("GET", "/v1/models/gpt:%2F%2Fb1g%2Fyandexgpt%2Flatest")
    assert route.operation == "retrieveModel" and params == {"model": "gpt:%2F%2Fb1g%2Fyandexgpt%2Flatest"}
    route, params = routes.resolve("GET", "/v1/models/gpt://b1g/yandexgpt/latest/")
    assert route.operation == "retrieveModel" and params == {"model": "gpt://b1g/yandexgpt/latest"}
    assert routes.resolve("GET", "/v1/models")[0].operation == "listModels"
    assert routes.resolve("POST", "/v1/embeddings")[0].operation == "createEmbedding"
    # a path not served: the /v1 catch-all; another method on a served path: that path item's 405, as the
    # deployed gateway answers it (its path item is chosen before the method)
    assert routes.resolve("GET", "/v1/x")[1] == {"path": "x"}
    assert routes.resolve("POST", "/v1/a/b")[1] == {"path": "a/b"}
    with pytest.raises(errors.MethodNotAllowedError, match="use POST"):
        routes.resolve("GET", "/v1/embeddings")
    with pytest.raises(errors.MethodNotAllowedError, match="use GET"):
        routes.resolve("DELETE", "/v1/models/yandexgpt-lite")
    with pytest.raises(errors.MethodNotAllowedError):  # the native routes keep their 405
        routes.resolve("GET", "/foundationModels/v1/textEmbedding")


def test_catalog_ids_are_full_uris_for_the_folder() -> None:
    ids = catalog.model_ids(Settings(folder_id="b1g"))
    assert ids[0] == "gpt://b1g/yandexgpt/latest" and "emb://b1g/text-search-query/latest" in ids
    assert all(uri.startswith(("gpt://b1g/", "emb://b1g/")) and uri.endswith("/latest") for uri in ids)
    assert catalog.model_ids(Settings()) == []  # no folder: nothing can be named


def test_allow_list_entries_become_full_uris() -> None:
    config = Settings(folder_id="b1g", allowed_models="text-search-query, yandexgpt/rc, cls://b1g/yandexgpt, a/b/c")
    assert catalog.model_ids(config) == ["emb://b1g/text-search-query/latest", "gpt://b1g/yandexgpt/rc"]


def test_model_errors_name_model_not_model_uri() -> None:
    with pytest.raises(errors.BadRequestError) as bad:
        catalog.resolve("not a model", "emb", Settings(folder_id="b1g"))
    assert bad.value.message.startswith("model: ") and bad.value.to_openai_body()["error"]["param"] == "model"
    with pytest.raises(errors.ForbiddenError) as forbidden:
        catalog.resolve("text-search-query", "emb", Settings(folder_id="b1g", allowed_models="text-search-doc"))
    assert forbidden.value.message.startswith("model: ") and "FM_ALLOWED_MODELS" in forbidden.value.message
    assert catalog.resolve("text-search-doc", "emb", Settings(folder_id="b1g")) == "emb://b1g/text-search-doc/latest"
