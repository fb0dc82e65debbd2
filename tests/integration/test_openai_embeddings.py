"""POST /v1/embeddings through the local gateway to the emulator, with the real `openai` client and LangChain's
OpenAIEmbeddings: the vectors are the native textEmbedding ones, base64 or float, in input order; bad input
and upstream failures come back as the client's own exception classes, never as a 5xx for bad input."""

from __future__ import annotations

import io
import json
import struct
import time
from array import array
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import FOLDER, Api, Emulator, reset_caches

pytestmark = pytest.mark.integration

FM = "/foundationModels/v1"
CALLER_KEY = "fmk_test-caller-key-0123456789"  # what an OpenAI client sends as its Bearer key
TEXTS = ["The Volga is the longest river in Europe.", "Байкал — самое глубокое озеро.", "a", "Moscow",
         "The Volga flows into the Caspian Sea."]


def client_for(api: Api, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/v1", api_key=CALLER_KEY, **{"max_retries": 0, **options})


def native(api: Api, text: str, dim: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"modelUri": "text-search-doc", "text": text}
    if dim is not None:
        body["dim"] = dim
    response = api.post(f"{FM}/textEmbedding", body)
    assert response.status_code == 200, response.text
    return response.json()


def as_float32(vector: list[float]) -> list[float]:
    """What a little-endian float32 round trip gives: the openai client's base64 decoding, exactly."""
    return array("f", struct.pack(f"<{len(vector)}f", *vector)).tolist()


def embedding_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.calls(f"{FM}/textEmbedding")


# -- the happy paths --

def test_client_default_is_base64_float32_that_decodes_to_the_native_vector(api: Api, emulator: Emulator) -> None:
    raw = client_for(api).embeddings.with_raw_response.create(model="text-search-doc", input=TEXTS[0])
    assert json.loads(raw.http_request.content)["encoding_format"] == "base64"  # the client's silent default
    wire = raw.http_response.json()
    assert isinstance(wire["data"][0]["embedding"], str)  # base64 on the wire
    result = raw.parse()  # the client decodes it, as it does for every caller that did not choose
    calls = embedding_calls(emulator)
    assert [c["body"] for c in calls] == [{"modelUri": f"emb://{FOLDER}/text-search-doc/latest", "text": TEXTS[0]}]
    assert calls[0]["auth"] == "Api-Key"  # our credentials upstream, never the caller's key
    expected = native(api, TEXTS[0])
    assert result.data[0].embedding == as_float32(expected["embedding"])
    assert len(result.data[0].embedding) == 256
    assert result.object == "list" and result.data[0].object == "embedding" and result.data[0].index == 0
    assert result.model == f"emb://{FOLDER}/text-search-doc/latest"
    assert result.usage.prompt_tokens == int(expected["numTokens"]) == result.usage.total_tokens
    assert raw.headers["x-request-id"]


def test_base64_is_little_endian_float32_with_padding(api: Api) -> None:
    response = api.post("/v1/embeddings", {"model": "text-search-doc", "input": "Moscow", "encoding_format": "base64"})
    assert response.status_code == 200, response.text
    encoded = response.json()["data"][0]["embedding"]
    import base64

    decoded = base64.b64decode(encoded, validate=True)  # standard alphabet, padded: strict decoding accepts it
    vector = native(api, "Moscow")["embedding"]
    assert decoded == struct.pack(f"<{len(vector)}f", *vector)


def test_float_format_returns_the_native_vectors_unchanged(api: Api) -> None:
    result = client_for(api).embeddings.create(model="text-search-doc", input=TEXTS[1], encoding_format="float")
    assert result.data[0].embedding == native(api, TEXTS[1])["embedding"]


def test_list_input_comes_back_in_order_with_its_index(api: Api, emulator: Emulator) -> None:
    emulator.fault(path=f"{FM}/textEmbedding", kind="delay", delayMs=300, count=2)  # two early calls finish last
    result = client_for(api).embeddings.create(model="text-search-doc", input=TEXTS, encoding_format="float")
    assert sorted(c["body"]["text"] for c in embedding_calls(emulator)) == sorted(TEXTS)  # one call per text
    assert [item.index for item in result.data] == list(range(len(TEXTS)))
    expected = [native(api, text) for text in TEXTS]
    assert [item.embedding for item in result.data] == [e["embedding"] for e in expected]
    assert result.usage.prompt_tokens == sum(int(e["numTokens"]) for e in expected)


def test_dimensions_is_sent_as_dim(api: Api, emulator: Emulator) -> None:
    result = client_for(api).embeddings.create(model="text-search-doc", input=TEXTS[0], dimensions=32)
    assert embedding_calls(emulator)[0]["body"]["dim"] == "32"
    assert result.data[0].embedding == as_float32(native(api, TEXTS[0], dim=32)["embedding"])
    assert len(result.data[0].embedding) == 32


def test_full_uri_is_used_as_given(api: Api, emulator: Emulator) -> None:
    uri = "emb://b1gotherfolder/text-search-query/latest"
    result = client_for(api).embeddings.create(model=uri, input="query")
    assert embedding_calls(emulator)[0]["body"]["modelUri"] == uri
    assert result.model == uri


def test_256_inputs_are_one_request_and_257_are_refused(api_v01: Api, emulator: Emulator) -> None:
    texts = [f"text number {i}" for i in range(256)]
    result = client_for(api_v01).embeddings.create(model="text-search-doc", input=texts)
    assert len(result.data) == 256 and len(embedding_calls(emulator)) == 256
    assert result.data[255].embedding == as_float32(native(api_v01, texts[255])["embedding"])
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(api_v01).embeddings.create(model="text-search-doc", input=[*texts, "one more"])
    assert caught.value.param == "input" and "at most 256" in caught.value.message


@pytest.mark.xdist_group("wall-clock")  # see tests/conftest.py: never beside the CPU-burning test
def test_fan_out_is_bounded_and_paced_as_the_texts_extension(api_v01: Api, emulator: Emulator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "3")
    reset_caches()
    emulator.configure(latencyMs=50)
    result = client_for(api_v01).embeddings.create(model="text-search-doc", input=[f"t {i}" for i in range(24)])
    assert len(result.data) == 24
    assert emulator.max_in_flight() == 3  # fanned out, never past FM_MAX_CONCURRENCY
    emulator.post("/_emulator/reset", {})
    monkeypatch.setenv("FM_EMBEDDING_RPS", "20")
    reset_caches()
    client_for(api_v01).embeddings.create(model="text-search-doc", input=[f"t {i}" for i in range(30)])
    times = sorted(c["t"] for c in embedding_calls(emulator))
    assert len(times) == 30
    for start in range(len(times) - 20):  # no 1-second window holds more than 20 calls (+1 for clock edges)
        assert len([t for t in times if times[start] <= t < times[start] + 1.0]) <= 21
    assert times[-1] - times[0] >= 1.3  # 30 calls at 20/s need ~1.45 s


# -- LangChain --

def test_langchain_embed_documents_and_query(api_v01: Api, emulator: Emulator) -> None:
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="text-search-doc", base_url=f"{api_v01.url}/v1", api_key=CALLER_KEY,
                                  check_embedding_ctx_length=False, max_retries=0)
    documents = embeddings.embed_documents(TEXTS)
    sent = [c["body"]["text"] for c in embedding_calls(emulator)]
    query = embeddings.embed_query("Where does the Volga flow?")
    assert sorted(sent) == sorted(TEXTS)
    assert documents == [as_float32(native(api_v01, text)["embedding"]) for text in TEXTS]  # base64, decoded
    assert query == as_float32(native(api_v01, "Where does the Volga flow?")["embedding"])


def test_langchain_default_token_ids_get_a_400_that_says_what_to_set(api_v01: Api, emulator: Emulator,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """LangChain's default path sends tiktoken ids. tiktoken downloads its BPE file on first use and there is
    no network here, so a byte-level encoding built locally stands in for cl100k_base; LangChain's own code
    then builds the request, which has the same shape: a list of token-id lists."""
    import tiktoken
    from langchain_openai import OpenAIEmbeddings

    local = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                              special_tokens={})
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda name: local)
    sent: list[Any] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(json.loads(request.content))]})
    embeddings = OpenAIEmbeddings(model="text-search-doc", base_url=f"{api_v01.url}/v1", api_key=CALLER_KEY,
                                  max_retries=0, http_client=http)
    with pytest.raises(openai.BadRequestError) as caught:
        embeddings.embed_documents(["hello", "world"])
    assert sent[0]["input"] == [list(b"hello"), list(b"world")]  # token ids, as LangChain sends by default
    assert caught.value.status_code == 400 and caught.value.param == "input"
    assert "check_embedding_ctx_length=False" in caught.value.message
    assert embedding_calls(emulator) == []


def test_langchain_more_documents_than_one_request_takes_need_chunk_size(api_v01: Api) -> None:
    from langchain_openai import OpenAIEmbeddings

    texts = [f"document {i}" for i in range(300)]
    options = {"model": "text-search-doc", "base_url": f"{api_v01.url}/v1", "api_key": CALLER_KEY,
               "check_embedding_ctx_length": False, "max_retries": 0}
    with pytest.raises(openai.BadRequestError, match="at most 256"):
        OpenAIEmbeddings(**options).embed_documents(texts)  # LangChain's chunk_size is 1000
    vectors = OpenAIEmbeddings(**options, chunk_size=256).embed_documents(texts)
    assert len(vectors) == 300 and vectors[299] == as_float32(native(api_v01, texts[299])["embedding"])


# -- errors, as the client's exception classes --

BAD: list[tuple[str, Any, str, str]] = [
    # (id, body (str = raw), param, text in the message)
    ("not-json", "{not json", "body", "is not valid JSON"),
    ("json-array", [{"model": "text-search-doc", "input": "x"}], "body", "must be a JSON object"),
    ("no-model", {"input": "x"}, "model", "is required"),
    ("empty-model", {"model": "", "input": "x"}, "model", "at least 1 character"),
    ("model-number", {"model": 5, "input": "x"}, "model", "must be a valid string"),
    ("model-garbage", {"model": "emb:/ broken", "input": "x"}, "model", "must be a model URI"),
    ("no-input", {"model": "text-search-doc"}, "input", "is required"),
    ("empty-string", {"model": "text-search-doc", "input": ""}, "input", "must not be empty"),
    ("empty-list", {"model": "text-search-doc", "input": []}, "input", "at least 1 item"),
    ("empty-item", {"model": "text-search-doc", "input": ["a", ""]}, "input[1]", "must not be empty"),
    ("number-item", {"model": "text-search-doc", "input": ["a", 3]}, "input[1]", "must be a string"),
    ("null-item", {"model": "text-search-doc", "input": ["a", None]}, "input[1]", "must be a string"),
    ("token-ids", {"model": "text-search-doc", "input": [15339, 1917]}, "input", "check_embedding_ctx_length=False"),
    ("token-id-lists", {"model": "text-search-doc", "input": [[15339], [1917]]}, "input",
     "check_embedding_ctx_length=False"),
    ("input-number", {"model": "text-search-doc", "input": 5}, "input", "must be a string or a list of strings"),
    ("input-bool", {"model": "text-search-doc", "input": True}, "input", "must be a string or a list of strings"),
    ("input-null", {"model": "text-search-doc", "input": None}, "input", "must be a string or a list of strings"),
    ("input-object", {"model": "text-search-doc", "input": {"text": "x"}}, "input", "must be a string or a list"),
    ("257-items", {"model": "text-search-doc", "input": ["x"] * 257}, "input", "at most 256 items"),
    ("format-int8", {"model": "text-search-doc", "input": "x", "encoding_format": "int8"}, "encoding_format",
     "'float' or 'base64'"),
    ("dimensions-zero", {"model": "text-search-doc", "input": "x", "dimensions": 0}, "dimensions", "greater than 0"),
    ("dimensions-string", {"model": "text-search-doc", "input": "x", "dimensions": "8"}, "dimensions",
     "valid integer"),
    ("dimensions-float", {"model": "text-search-doc", "input": "x", "dimensions": 1.5}, "dimensions", "valid integer"),
    ("dimensions-bool", {"model": "text-search-doc", "input": "x", "dimensions": True}, "dimensions", "valid integer"),
    ("user-number", {"model": "text-search-doc", "input": "x", "user": 5}, "user", "must be a valid string"),
    ("unknown-field", {"model": "text-search-doc", "input": "x", "truncate": "END"}, "truncate", "not a known field"),
]


@pytest.mark.parametrize("body,param,text", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_a_400_in_openai_shape_naming_the_param(api: Api, emulator: Emulator, body: Any, param: str,
                                                             text: str) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = api.post("/v1/embeddings", data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == "invalid_argument"
    assert text in error["message"] and error["message"].startswith(param)
    assert response.headers["x-request-id"]
    assert emulator.calls() == []  # nothing bad reaches upstream


def test_bad_input_raises_bad_request_error_with_param(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(api).embeddings.create(model="text-search-doc", input=["fine", ""])
    assert caught.value.param == "input[1]" and caught.value.type == "invalid_request_error"
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]


def test_upstream_400_stays_a_400(api: Api, emulator: Emulator) -> None:
    with pytest.raises(openai.BadRequestError, match="dim must be between"):
        client_for(api).embeddings.create(model="text-search-doc", input="x", dimensions=1000)
    assert len(embedding_calls(emulator)) == 1


def test_model_outside_the_allow_list_is_permission_denied(api: Api, emulator: Emulator,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "text-search-doc")
    reset_caches()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client_for(api).embeddings.create(model="text-search-query", input="x")
    assert caught.value.status_code == 403 and caught.value.param == "model"
    assert caught.value.type == "permission_error" and "FM_ALLOWED_MODELS" in caught.value.message
    assert embedding_calls(emulator) == []
    assert client_for(api).embeddings.create(model="text-search-doc", input="x").data


def test_rate_limit_raises_rate_limit_error_with_retry_after(api: Api, emulator: Emulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    reset_caches()
    emulator.fault(path=f"{FM}/textEmbedding", status=429, retryAfter=7, count=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client_for(api).embeddings.create(model="text-search-doc", input="x")
    assert caught.value.status_code == 429 and caught.value.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "7"


def test_the_client_honours_retry_after_and_then_succeeds(api_v01: Api, emulator: Emulator,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")  # we give up at once, so the 429 reaches the client
    reset_caches()
    emulator.fault(path=f"{FM}/textEmbedding", status=429, retryAfter=1, count=1)
    sent: list[float] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(time.monotonic())]})
    result = client_for(api_v01, max_retries=2, http_client=http).embeddings.create(model="text-search-doc", input="x")
    assert result.data[0].embedding
    assert len(sent) == 2 and len(embedding_calls(emulator)) == 2
    # without Retry-After the client would wait 0.5 s less up to 25 % jitter; it waited the 1 s we asked for
    assert sent[1] - sent[0] >= 0.95


@pytest.mark.parametrize("upstream,status", [(500, 502), (504, 504)])
def test_upstream_failure_is_internal_server_error_that_the_client_does_not_retry(
        api: Api, emulator: Emulator, upstream: int, status: int) -> None:
    emulator.fault(path=f"{FM}/textEmbedding", status=upstream, count=1)
    with pytest.raises(openai.InternalServerError) as caught:
        client_for(api, max_retries=2).embeddings.create(model="text-search-doc", input="x")
    assert caught.value.status_code == status and caught.value.type == "server_error"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(embedding_calls(emulator)) == 1  # one attempt: neither we nor the client sent it again


def test_upstream_503_is_left_to_the_client_to_retry(api: Api, emulator: Emulator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_RETRIES", "0")
    reset_caches()
    emulator.fault(path=f"{FM}/textEmbedding", status=503, count=1)
    result = client_for(api, max_retries=2).embeddings.create(model="text-search-doc", input="x")
    assert result.data and len(embedding_calls(emulator)) == 2


def test_the_callers_key_never_reaches_a_log_line_or_upstream(api: Api, emulator: Emulator,
                                                              log_output: io.StringIO) -> None:
    client_for(api).embeddings.create(model="text-search-doc", input="x")
    with pytest.raises(openai.BadRequestError):
        client_for(api).embeddings.create(model="text-search-doc", input=[1, 2])
    text = log_output.getvalue()
    assert "request handled" in text and "request failed" in text
    assert CALLER_KEY not in text
    assert CALLER_KEY not in json.dumps(emulator.calls())


def test_handlers_never_import_the_openai_package_and_load_the_translation_on_first_use(stack_env: Emulator) -> None:
    """The translation is plain data: a cold import of the embedding handler holds no /v1 module, and a
    /v1/embeddings request (the sample event) loads ours, never the `openai` package."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = "\n".join([
        "import json, sys",
        f"sys.path[:0] = [{str(ROOT / 'functions' / 'embedding')!r}, {str(ROOT)!r}]",
        "import handler",
        "cold = sorted(m for m in sys.modules if m.startswith(('shared.openai', 'openai')))",
        f"event = json.load(open({str(ROOT / 'events' / 'http-v01-openai-embeddings.json')!r}))",
        "from local.context import LocalContext",
        "result = handler.handler(event, LocalContext())",
        "warm = sorted(m for m in sys.modules if m.startswith(('shared.openai', 'openai')))",
        "print(json.dumps({'status': result['statusCode'], 'cold': cold, 'warm': warm}))",
    ])
    env = {**os.environ, "LOG_LEVEL": "WARN"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 200
    assert outcome["cold"] == []
    assert "shared.openai.embeddings" in outcome["warm"] and "openai" not in outcome["warm"]
