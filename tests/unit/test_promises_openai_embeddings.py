"""What POST /v1/embeddings promises (shared/openai/embeddings.py), driven as the embedding function drives it,
against the in-process FM emulator: one textEmbedding call per input text with the full model URI (and `dim`
when `dimensions` is set), the vectors in input order in OpenAI's list shape (floats, or little-endian float32
in standard base64), the usage as upstream counted it, and the model and counts in the request's log fields
(what the summary line and the usage ledger read). The pinned `openai` package's types accept the answer."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse

from local.emulator import embed, tokens_of
from shared import errors, runtime
from shared.client import Call
from shared.config import settings
from shared.openai import embeddings
from shared.openai.models import validate
from shared.policy import KeyPolicy
from tests.conftest import FOLDER, Emulator, reset_caches

DOC = f"emb://{FOLDER}/text-search-doc/latest"


def create(policy: KeyPolicy | None = None, **fields: Any) -> tuple[dict[str, Any], runtime.Invocation]:
    request = validate(embeddings.EmbeddingsRequest, {"model": "text-search-doc", **fields})
    inv = runtime.Invocation(settings(), Call.from_context(None, default_s=30), policy=policy)
    reply = embeddings.create(request, inv)
    assert reply.status == 200 and not reply.sse
    return reply.body, inv


def sent(emulator: Emulator) -> list[dict[str, Any]]:
    return [call["body"] for call in emulator.calls("/foundationModels/v1/textEmbedding")]


def test_each_text_is_embedded_and_the_vectors_come_in_input_order(stack_env: Emulator) -> None:
    texts = ["first text here", "second", "a third, longer text to embed"]
    body, inv = create(input=texts, user="u1")
    answer = CreateEmbeddingResponse.model_validate(body)
    assert answer.object == "list" and answer.model == DOC
    assert [item.index for item in answer.data] == [0, 1, 2] and all(i.object == "embedding" for i in answer.data)
    assert [item.embedding for item in answer.data] == [embed(text) for text in texts]
    assert sorted(call["text"] for call in sent(stack_env)) == sorted(texts)
    assert all(call == {"modelUri": DOC, "text": call["text"]} for call in sent(stack_env))
    tokens = sum(len(tokens_of(text)) for text in texts)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens} and tokens > 3
    assert inv.log_fields == {"model": DOC, "texts": 3, "input_tokens": tokens}


def test_one_string_is_one_text(stack_env: Emulator) -> None:
    body, inv = create(input="only one", model="text-search-query")
    query = f"emb://{FOLDER}/text-search-query/latest"
    assert body["model"] == query and [d["embedding"] for d in body["data"]] == [embed("only one")]
    assert sent(stack_env) == [{"modelUri": query, "text": "only one"}]
    assert inv.log_fields["texts"] == 1 and body["usage"]["prompt_tokens"] == 2


def test_dimensions_are_sent_as_dim(stack_env: Emulator) -> None:
    body, _ = create(input=["a b", "c"], dimensions=8)
    assert all(len(item["embedding"]) == 8 for item in body["data"])
    assert body["data"][0]["embedding"] == embed("a b", 8)
    assert sorted(sent(stack_env), key=lambda c: c["text"]) == [{"modelUri": DOC, "text": "a b", "dim": "8"},
                                                                {"modelUri": DOC, "text": "c", "dim": "8"}]


@pytest.mark.parametrize("fmt", [None, "float"])
def test_floats_are_the_default(stack_env: Emulator, fmt: str | None) -> None:
    body, _ = create(input=["x y"], **({"encoding_format": fmt} if fmt else {}))
    assert body["data"][0]["embedding"] == embed("x y")


def test_base64_is_little_endian_float32_of_the_vector(stack_env: Emulator) -> None:
    body, _ = create(input=["one two", "three"], encoding_format="base64")
    for item, text in zip(body["data"], ["one two", "three"], strict=True):
        raw = base64.b64decode(item["embedding"], validate=True)
        vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert vector == pytest.approx(embed(text), abs=1e-6) and len(vector) == len(embed(text))


def test_the_model_is_resolved_as_on_the_native_routes_and_errors_name_model(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    body, _ = create(input="x", model=f"emb://{FOLDER}/text-search-doc/rc")
    assert body["model"] == f"emb://{FOLDER}/text-search-doc/rc"
    with pytest.raises(errors.BadRequestError) as bad:
        create(input="x", model="no such model!")
    assert bad.value.to_openai_body()["error"]["param"] == "model"
    monkeypatch.setenv("FM_ALLOWED_MODELS", "text-search-query")
    reset_caches()
    with pytest.raises(errors.ForbiddenError):
        create(input="x")
    assert not sent(stack_env)[1:]


def test_an_upstream_failure_on_any_text_fails_the_request(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, count=-1)
    with pytest.raises(errors.ApiError) as caught:
        create(input=["a", "b"])
    assert caught.value.status == 400


def test_the_caller_keys_models_are_the_only_ones_it_may_use(stack_env: Emulator) -> None:
    key = KeyPolicy(name="k1", models=("text-search-query",))
    with pytest.raises(errors.ForbiddenError) as forbidden:
        create(key, input="x")
    assert forbidden.value.to_openai_body()["error"]["param"] == "model" and not sent(stack_env)
    body, _ = create(key, input="x", model="text-search-query")
    assert body["model"] == f"emb://{FOLDER}/text-search-query/latest"


NOT_A_NUMBER = "upstream embedding holds a value that is not a number"


@pytest.mark.parametrize("vector,encode", [
    (["x"], embeddings._floats), ([None], embeddings._floats), ([0.5, True], embeddings._floats),
    (["x"], embeddings._base64), ([None], embeddings._base64), ([1e39], embeddings._base64),  # beyond float32
])
def test_an_upstream_vector_that_is_not_numbers_is_a_502_saying_so(vector: list[Any], encode: Any) -> None:
    with pytest.raises(errors.UpstreamError) as caught:
        encode(vector)
    assert caught.value.status == 502 and caught.value.message == NOT_A_NUMBER


@pytest.mark.parametrize("answer", ['{"embedding": [0.5, 0.25]}', '{"embedding": [0.5, 0.25], "numTokens": "many"}',
                                    '{"embedding": [0.5, 0.25], "numTokens": null}'])
def test_a_token_count_upstream_does_not_give_as_a_number_counts_as_none(stack_env: Emulator, answer: str) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="answer", data=answer, count=1)
    body, inv = create(input="three words here")
    assert body["data"][0]["embedding"] == [0.5, 0.25]
    assert body["usage"] == {"prompt_tokens": 0, "total_tokens": 0} and inv.log_fields["input_tokens"] == 0
