"""What /v1 offers (shared/openai/catalog.py): GET /v1/models lists the models a caller may use as full URIs
(the deployment's allow-list and the caller key's both applied), GET /v1/models/{model} finds one by URI or
short name (percent-encoded or not), a /v1 path without a route is OpenAI's 404 listing the routes, and a
model that cannot be used is refused naming `model`, the field's name on /v1."""

from __future__ import annotations

from typing import Any

import pytest

from shared import errors
from shared.client import Call
from shared.config import Settings
from shared.openai import catalog
from shared.policy import KeyPolicy
from shared.runtime import Invocation


def _inv(settings: Settings, policy: KeyPolicy | None = None, **params: str) -> Invocation:
    return Invocation(settings, Call(deadline=0.0), path_params=params, caller=policy.name if policy else "anonymous",
                      policy=policy)


def _ids(settings: Settings, policy: KeyPolicy | None = None) -> list[str]:
    body = catalog.list_models(None, _inv(settings, policy)).body
    assert body["object"] == "list"
    return [model["id"] for model in body["data"]]


def test_the_list_is_the_catalog_as_full_uris_each_an_openai_model_object() -> None:
    settings = Settings(folder_id="b1g")
    body = catalog.list_models(None, _inv(settings)).body
    assert body["data"][0] == {"id": "gpt://b1g/yandexgpt/latest", "object": "model", "created": 0, "owned_by": "yandex"}
    ids = [model["id"] for model in body["data"]]
    assert ids[:4] == ["gpt://b1g/yandexgpt/latest", "gpt://b1g/yandexgpt-lite/latest", "gpt://b1g/llama/latest",
                       "gpt://b1g/llama-lite/latest"]
    assert ids[-2:] == ["emb://b1g/text-search-doc/latest", "emb://b1g/text-search-query/latest"]
    assert "gpt://b1g/gpt-oss-20b/latest" in ids  # the models passed through to upstream's OpenAI mode too
    assert len(ids) == len(set(ids))


def test_the_allow_list_is_the_list_and_only_what_can_be_a_full_uri_is_in_it() -> None:
    settings = Settings(folder_id="b1g", allowed_models="yandexgpt, gpt://other/tuned/v1@abc, text-search-doc/rc, "
                                                         "cls://b1g/classifier, gpt://, a/b/c, yandexgpt/latest")
    assert _ids(settings) == ["gpt://b1g/yandexgpt/latest", "gpt://other/tuned/v1@abc", "emb://b1g/text-search-doc/rc"]
    body = catalog.list_models(None, _inv(settings)).body
    assert body["data"][1]["owned_by"] == "other"  # a tuned model belongs to the folder that tuned it
    assert body["data"][0]["owned_by"] == "yandex"
    no_folder = Settings(allowed_models="yandexgpt, gpt://f/yandexgpt-lite/latest")
    assert _ids(no_folder) == ["gpt://f/yandexgpt-lite/latest"]  # a short name needs YC_FOLDER_ID


def test_a_caller_key_lists_only_the_models_it_may_use() -> None:
    policy = KeyPolicy(name="alice", models=("yandexgpt-lite", "emb://b1g/text-search-doc/latest"))
    assert _ids(Settings(folder_id="b1g"), policy) == ["gpt://b1g/yandexgpt-lite/latest",
                                                       "emb://b1g/text-search-doc/latest"]
    assert _ids(Settings(folder_id="b1g"), KeyPolicy(name="bob")) == _ids(Settings(folder_id="b1g"))


@pytest.mark.parametrize("asked", ["gpt://b1g/yandexgpt-lite/latest", "gpt:%2F%2Fb1g%2Fyandexgpt-lite%2Flatest",
                                   "yandexgpt-lite", "yandexgpt-lite/latest"])
def test_one_model_is_found_by_uri_or_short_name(asked: str) -> None:
    found = catalog.retrieve_model(None, _inv(Settings(folder_id="b1g"), model=asked)).body
    assert found == {"id": "gpt://b1g/yandexgpt-lite/latest", "object": "model", "created": 0, "owned_by": "yandex"}


@pytest.mark.parametrize(("settings", "policy", "asked"), [
    (Settings(folder_id="b1g"), None, "yandexgpt-pro"),
    (Settings(folder_id="b1g"), None, "gpt://other/yandexgpt/latest"),
    (Settings(folder_id="b1g"), None, ""),
    (Settings(folder_id="b1g", allowed_models="yandexgpt"), None, "yandexgpt-lite"),
    (Settings(folder_id="b1g"), KeyPolicy(name="alice", models=("llama",)), "yandexgpt"),
])
def test_a_model_not_served_to_this_caller_is_a_404_naming_model(settings: Settings, policy: KeyPolicy | None,
                                                                  asked: str) -> None:
    with pytest.raises(errors.NotFoundError) as raised:
        catalog.retrieve_model(None, _inv(settings, policy, model=asked))
    assert raised.value.message == (f"The model {asked!r} does not exist or is not served here; GET /v1/models "
                                    "lists the models you can use")
    assert raised.value.details == [{"@type": "field", "field": "model", "description": "is not served"}]
    assert raised.value.to_openai_body()["error"]["param"] == "model"


def test_a_v1_path_without_a_route_is_a_404_listing_the_routes() -> None:
    with pytest.raises(errors.NotFoundError) as raised:
        catalog.not_found(None, _inv(Settings(), path="chat/complete"))
    message = raised.value.message
    assert message.startswith("Invalid URL (/v1/chat/complete); the /v1 routes here are: DELETE /v1/files/{file_id}, ")
    assert "GET /v1/models/{model}, " in message and "POST /v1/chat/completions, " in message
    assert "{path}" not in message and "+}" not in message  # the catch-all is not a route to offer
    routes = message.split(": ", 1)[1].split(", ")
    assert routes == sorted(routes) and len(routes) == len(set(routes))
    with pytest.raises(errors.NotFoundError, match=r"^Invalid URL \(/v1/\);"):
        catalog.not_found(None, _inv(Settings()))


def test_a_model_that_is_not_a_model_is_a_400_naming_model() -> None:
    with pytest.raises(errors.BadRequestError) as raised:
        catalog.resolve("not a model", "emb", Settings(folder_id="b1g"))
    rule = "must be a model URI like emb://<folder>/<model>/latest or a short model name"
    assert raised.value.message == f"model: {rule}"
    assert raised.value.details == [{"@type": "field", "field": "model", "description": rule}]


@pytest.mark.parametrize(("settings", "policy", "reason"), [
    (Settings(folder_id="b1g", allowed_models="yandexgpt-lite"), None, "is not allowed here (FM_ALLOWED_MODELS)"),
    (Settings(folder_id="b1g"), KeyPolicy(name="alice", models=("yandexgpt-lite",)), "is not allowed for this key"),
])
def test_a_model_this_caller_may_not_use_is_a_403_naming_model(settings: Settings, policy: KeyPolicy | None,
                                                                reason: str) -> None:
    with pytest.raises(errors.ForbiddenError) as raised:
        catalog.resolve("yandexgpt", "gpt", settings, policy)
    assert raised.value.message == f"model: model 'yandexgpt' {reason}"
    assert raised.value.details == [{"@type": "field", "field": "model", "description": f"model 'yandexgpt' {reason}"}]
    assert catalog.resolve("yandexgpt-lite", "gpt", settings, policy) == "gpt://b1g/yandexgpt-lite/latest"


def test_the_passthrough_models_are_listed_in_a_stable_order() -> None:
    settings = Settings(folder_id="b1g", openai_passthrough_models="zeta, alpha")
    names = catalog.passthrough_models(settings)
    assert list(names) == sorted(names) and {"alpha", "zeta", "gpt-oss-20b"} <= set(names)
    ids: list[Any] = _ids(settings)
    assert ids.index("gpt://b1g/alpha/latest") < ids.index("gpt://b1g/zeta/latest")


def test_a_model_request_that_names_no_model_is_a_404_not_a_500() -> None:
    """A direct invocation (?operation=retrieveModel) can leave the path parameter out altogether."""
    with pytest.raises(errors.NotFoundError) as raised:
        catalog.retrieve_model(None, _inv(Settings(folder_id="b1g")))
    assert raised.value.message.startswith("The model '' does not exist or is not served here")
