"""GET /v1/models and /v1/models/{model} through the local gateway with the real `openai` client, and the
OpenAI-shaped 404 for any /v1 path that has no route."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from shared.config import Settings
from tests.conftest import FOLDER, Api, Emulator, reset_caches

pytestmark = pytest.mark.integration

CALLER_KEY = "fmk_test-caller-key-0123456789"
CATALOG = [f"gpt://{FOLDER}/{name}/latest" for name in ("yandexgpt", "yandexgpt-lite", "llama", "llama-lite")]
EMBEDDINGS = [f"emb://{FOLDER}/text-search-doc/latest", f"emb://{FOLDER}/text-search-query/latest"]


def client_for(api: Api, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=CALLER_KEY, **{"max_retries": 0, **options})


def allow(monkeypatch: pytest.MonkeyPatch, models: str) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", models)
    reset_caches()


def test_list_is_the_documented_catalog_as_full_uris(api: Api, emulator: Emulator) -> None:
    models = list(client_for(api).models.list())
    ids = [m.id for m in models]
    assert ids[:4] == CATALOG and ids[-2:] == EMBEDDINGS
    assert all(m.object == "model" and m.owned_by == "yandex" and m.created == 0 for m in models)
    assert len(ids) == len(set(ids))
    assert emulator.calls() == []  # configuration, not an upstream call


def test_list_holds_the_pass_through_models(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    if "openai_passthrough_models" not in Settings.model_fields:
        pytest.skip("FM_OPENAI_PASSTHROUGH_MODELS arrives with /v1/chat/completions")
    monkeypatch.setenv("FM_OPENAI_PASSTHROUGH_MODELS", "my-openai-only-model")
    reset_caches()
    ids = [m.id for m in client_for(api).models.list()]
    for name in ("qwen3-235b-a22b-fp8", "gpt-oss-120b", "gpt-oss-20b", "gemma-3-27b-it", "my-openai-only-model"):
        assert f"gpt://{FOLDER}/{name}/latest" in ids


def test_list_is_the_allow_list_when_set(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    allow(monkeypatch, "yandexgpt-lite, text-search-doc, yandexgpt/rc, gpt://b1gother/llama/latest, "
                       "gpt://b1gother/yandexgpt-lite/latest@tuned1, cls://b1gother/yandexgpt/latest, yandexgpt-lite")
    models = list(client_for(api).models.list())
    assert [m.id for m in models] == [f"gpt://{FOLDER}/yandexgpt-lite/latest", f"emb://{FOLDER}/text-search-doc/latest",
                                      f"gpt://{FOLDER}/yandexgpt/rc", "gpt://b1gother/llama/latest",
                                      "gpt://b1gother/yandexgpt-lite/latest@tuned1"]  # no cls://: no /v1 route uses it
    assert [m.owned_by for m in models] == ["yandex"] * 4 + ["b1gother"]  # a tuned model is its folder's


def test_without_a_folder_only_full_uris_can_be_listed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_FOLDER_ID")
    reset_caches()
    assert list(client_for(api).models.list()) == []
    allow(monkeypatch, "yandexgpt-lite, gpt://b1gother/llama/latest")
    assert [m.id for m in client_for(api).models.list()] == ["gpt://b1gother/llama/latest"]


def test_retrieve_by_full_uri_which_the_client_percent_encodes(api: Api) -> None:
    paths: list[bytes] = []
    http = httpx.Client(event_hooks={"request": [lambda request: paths.append(request.url.raw_path)]})
    model = client_for(api, http_client=http).models.retrieve(CATALOG[1])
    assert paths == [f"/v1/models/gpt:%2F%2F{FOLDER}%2Fyandexgpt-lite%2Flatest".encode()]  # one segment on the wire
    assert model.id == CATALOG[1] and model.object == "model" and model.owned_by == "yandex"


def test_retrieve_by_short_name_answers_with_the_full_uri(api: Api) -> None:
    assert client_for(api).models.retrieve("yandexgpt-lite").id == CATALOG[1]
    assert client_for(api).models.retrieve("text-search-query").id == EMBEDDINGS[1]


def test_retrieve_with_slashes_unencoded(api: Api) -> None:
    response = api.http.get(f"{api.url}/v1/models/emb://{FOLDER}/text-search-doc/latest", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": EMBEDDINGS[0], "object": "model", "created": 0, "owned_by": "yandex"}


@pytest.mark.parametrize("model", ["gpt-4o", f"gpt://{FOLDER}/yandexgpt/rc", "cls://b1g/yandexgpt/latest", "%",
                                   "..%2F..%2Fetc", "x" * 3000, "yandexgpt-lite/latest/extra"])
def test_retrieve_unknown_is_a_404_in_openai_shape(api: Api, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(api).models.retrieve(model)
    assert caught.value.status_code == 404 and caught.value.type == "not_found_error"
    assert caught.value.param == "model" and "GET /v1/models" in caught.value.message


def test_retrieve_outside_the_allow_list_is_a_404(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    allow(monkeypatch, "yandexgpt-lite")
    assert client_for(api).models.retrieve("yandexgpt-lite").id == CATALOG[1]
    with pytest.raises(openai.NotFoundError):
        client_for(api).models.retrieve("yandexgpt")


# -- any other /v1 path --

def test_unknown_v1_paths_are_404_in_openai_shape(api: Api, emulator: Emulator) -> None:
    client = client_for(api)
    for attempt in (lambda: client.completions.create(model="yandexgpt-lite", prompt="hi"),  # legacy completions
                    lambda: client.get("/assistants", cast_to=object)):
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        error = caught.value
        assert error.status_code == 404 and error.type == "not_found_error" and error.code == "not_found"
        assert error.message.startswith("Error code: 404 - Invalid URL (/v1/")
        assert "POST /v1/embeddings" in error.message and "GET /v1/models" in error.message
        assert error.request_id
    assert emulator.calls() == []


def test_another_method_on_a_served_v1_path_is_405_in_openai_shape(api: Api, emulator: Emulator) -> None:
    """The path item first, then the method, as the deployed gateway chooses: a 405 naming what is allowed."""
    client = client_for(api)
    for attempt, allowed in ((lambda: client.models.delete("yandexgpt-lite"), "GET"),
                             (lambda: client.get("/embeddings", cast_to=object), "POST")):
        with pytest.raises(openai.APIStatusError) as caught:
            attempt()
        error = caught.value
        assert error.status_code == 405 and error.type == "invalid_request_error" and error.code == "unimplemented"
        assert error.message.endswith(f"use {allowed}")
    assert emulator.calls() == []


def test_native_paths_keep_the_native_error_shape(api: Api) -> None:
    response = api.post("/foundationModels/v1/textEmbedding", {"modelUri": "text-search-doc"})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"grpcCode", "httpCode", "httpStatus", "message", "details"}
