"""What the native services (shared/native/services.py) promise, driven with a real Invocation against the
in-process FM emulator: which model URI reaches upstream (short names expanded with YC_FOLDER_ID, a full URI
as given), the 403 for a model outside FM_ALLOWED_MODELS or the caller key's allow-list (by exact entry, never
by a name that merely contains a listed one), what the caller gets back, the usage the request's summary line
carries, texts fanned out in input order on at most FM_MAX_CONCURRENCY connections, and calls paced to the
instance's per-second quotas (on the test's clock: sleeps are recorded, not taken)."""

from __future__ import annotations

import contextvars
import io
import json
import threading
from typing import Any

import pytest

from functions.completion import handler as completion_handler
from shared import config, errors, runtime
from shared.client import Call
from shared.jobs import limits
from shared.native import services
from shared.native.models import (
    CompletionRequest,
    EmbeddingRequest,
    FewShotClassificationRequest,
    TextClassificationRequest,
    TokenizeRequest,
    validate,
)
from shared.policy import KeyPolicy
from shared.responses import Reply
from tests.clock import ManualClock
from tests.conftest import FOLDER, Emulator, FakeContext

MESSAGES = [{"role": "user", "text": "hello there"}]
FEW_SHOT = {"taskDescription": "sort", "labels": ["spam", "ham"], "text": "buy cheap pills now"}


def _inv(policy: KeyPolicy | None = None) -> runtime.Invocation:
    return runtime.Invocation(config.settings(), Call.from_context(None), policy=policy)


def _tokenize(model: str, inv: runtime.Invocation | None = None) -> Reply:
    return services.tokenize(validate(TokenizeRequest, {"modelUri": model, "text": "a b"}), inv or _inv())


def _refused(call: Any, status: int) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value


def _upstream(emulator: Emulator) -> list[dict[str, Any]]:
    """Every Foundation Models call the emulator received."""
    return [call for call in emulator.calls() if call["path"].startswith("/foundationModels/")]


def _sent(emulator: Emulator, suffix: str) -> list[dict[str, Any]]:
    return [call["body"] for call in emulator.calls(suffix)]


# -- model resolution ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "sent"), [
    ("yandexgpt-lite", f"gpt://{FOLDER}/yandexgpt-lite/latest"),
    ("yandexgpt/rc", f"gpt://{FOLDER}/yandexgpt/rc"),
    ("yandexgpt-5.1_x/v2@ab-c", f"gpt://{FOLDER}/yandexgpt-5.1_x/v2@ab-c"),
    ("gpt://b1gother/yandexgpt/latest", "gpt://b1gother/yandexgpt/latest"),
    ("gpt://b1gother/yandexgpt", "gpt://b1gother/yandexgpt"),
    ("gpt://b1gother/my-model/v1/extra", "gpt://b1gother/my-model/v1/extra"),
])
def test_a_short_name_is_expanded_with_the_folder_and_a_full_uri_goes_as_given(
        stack_env: Emulator, given: str, sent: str) -> None:
    inv = _inv()
    reply = _tokenize(given, inv)
    assert [body["modelUri"] for body in _sent(stack_env, "/tokenize")] == [sent]
    assert inv.log_fields["model"] == sent
    assert [token["text"] for token in reply.body["tokens"]] == ["a", "b"]


def test_each_service_expands_a_short_name_in_its_own_scheme(stack_env: Emulator) -> None:
    services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "x"}), _inv())
    services.classify_few_shot(validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT}), _inv())
    services.classify_tuned(validate(TextClassificationRequest, {"modelUri": "mine/v1@tuned", "text": "x"}), _inv())
    services.tokenize_completion(validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES}),
                                 _inv())
    assert _sent(stack_env, "/textEmbedding")[0]["modelUri"] == f"emb://{FOLDER}/text-search-doc/latest"
    assert _sent(stack_env, "/fewShotTextClassification")[0]["modelUri"] == f"cls://{FOLDER}/yandexgpt/latest"
    assert _sent(stack_env, "/textClassification")[0]["modelUri"] == f"cls://{FOLDER}/mine/v1@tuned"
    assert _sent(stack_env, "/tokenizeCompletion")[0]["modelUri"] == f"gpt://{FOLDER}/yandexgpt/latest"


@pytest.mark.parametrize("given", ["not a model", "gpt://b1gfolder", "gpt://b1gfolder/", "a/b/c", "-lite",
                                   "GPT://b1gfolder/yandexgpt/latest", "gpt://b1g folder/yandexgpt/latest"])
def test_what_is_neither_a_uri_nor_a_short_name_is_a_400_naming_model_uri(stack_env: Emulator, given: str) -> None:
    err = _refused(lambda: services.embed(validate(EmbeddingRequest, {"modelUri": given, "text": "x"}), _inv()), 400)
    assert err.message == ("modelUri: must be a model URI like emb://<folder>/<model>/latest or a short model name")
    assert err.details[0]["field"] == "modelUri"
    assert stack_env.calls("/foundationModels/v1/textEmbedding") == []


def test_a_short_name_without_a_folder_is_a_400_that_says_what_to_send(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YC_FOLDER_ID")
    config.reset_settings()
    err = _refused(lambda: services.classify_few_shot(
        validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT}), _inv()), 400)
    assert err.message == ("modelUri: short model name 'yandexgpt' needs YC_FOLDER_ID on the server; "
                           "send a full cls:// URI")
    assert err.details[0]["field"] == "modelUri"
    assert _tokenize("gpt://b1gother/yandexgpt/latest").status == 200  # a full URI needs no folder
    assert stack_env.calls("/fewShotTextClassification") == []


@pytest.mark.parametrize(("given", "name"), [
    ("yandexgpt-lite", "yandexgpt-lite"),
    (f"gpt://{FOLDER}/yandexgpt-lite/latest", "yandexgpt-lite"),  # contains the listed name
    (f"gpt://{FOLDER}/myyandexgpt/latest", "myyandexgpt"),
    ("gpt://yandexgpt/llama/latest", "llama"),  # a folder named like a listed model
    (f"gpt://{FOLDER}/llama/yandexgpt", "llama"),  # a version named like it
])
def test_a_model_outside_fm_allowed_models_is_a_403_and_never_sent(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, given: str, name: str) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt")
    config.reset_settings()
    err = _refused(lambda: _tokenize(given), 403)
    rule = f"model {name!r} is not allowed here (FM_ALLOWED_MODELS)"
    assert err.message == f"modelUri: {rule}"
    assert err.details == [{"@type": "field", "field": "modelUri", "description": rule}]
    assert stack_env.calls("/tokenize") == []


@pytest.mark.parametrize("given", ["yandexgpt", f"gpt://{FOLDER}/yandexgpt/latest", "gpt://b1gother/yandexgpt/rc",
                                   "yandexgpt/latest"])
def test_a_listed_name_admits_the_model_in_any_folder_and_version(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt")
    config.reset_settings()
    assert _tokenize(given).status == 200
    assert len(stack_env.calls("/tokenize")) == 1


@pytest.mark.parametrize(("given", "allowed"), [
    ("yandexgpt/rc", True), ("yandexgpt", False), (f"gpt://{FOLDER}/yandexgpt/rc/more", False),
    ("llama", True), (f"gpt://{FOLDER}/llama/latest", True), ("gpt://b1gother/llama/latest", False),
    ("llama/rc", False), ("qwen", True), (f"gpt://{FOLDER}/qwen", True), ("qwen/rc", False),
])
def test_a_listed_version_or_full_uri_admits_only_that(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, given: str, allowed: bool) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", f"yandexgpt/rc, gpt://{FOLDER}/llama/latest, qwen/latest")
    config.reset_settings()
    if allowed:
        assert _tokenize(given).status == 200
    else:
        _refused(lambda: _tokenize(given), 403)
    assert len(stack_env.calls("/tokenize")) == int(allowed)


def test_a_keys_allow_list_is_enforced_as_the_deployments_with_its_own_message(stack_env: Emulator) -> None:
    key = KeyPolicy(name="alice", models=("yandexgpt", "gpt://b1gother/llama/rc"))
    for given in ("yandexgpt", "gpt://b1gother/yandexgpt/rc", "gpt://b1gother/llama/rc"):
        assert _tokenize(given, _inv(key)).status == 200
    for given, name in (("yandexgpt-lite", "yandexgpt-lite"), ("gpt://b1gother/llama/latest", "llama"),
                        ("llama/rc", "llama")):
        err = _refused(lambda g=given: _tokenize(g, _inv(key)), 403)
        rule = f"model {name!r} is not allowed for this key"
        assert err.message == f"modelUri: {rule}"
        assert err.details == [{"@type": "field", "field": "modelUri", "description": rule}]
    assert len(stack_env.calls("/tokenize")) == 3
    assert _tokenize("anything-at-all", _inv(KeyPolicy(name="bob"))).status == 200  # no list: any model


def test_every_service_asks_the_keys_allow_list(stack_env: Emulator) -> None:
    key = KeyPolicy(name="alice", models=("yandexgpt",))
    refusals = [
        lambda: services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "x"}), _inv(key)),
        lambda: services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "texts": ["x"]}),
                               _inv(key)),
        lambda: services.classify_tuned(validate(TextClassificationRequest, {"modelUri": "mine/v1@t", "text": "x"}),
                                        _inv(key)),
        lambda: services.complete(validate(CompletionRequest, {"modelUri": "llama", "messages": MESSAGES}), _inv(key)),
        lambda: services.tokenize_completion(validate(CompletionRequest, {"modelUri": "llama", "messages": MESSAGES}),
                                             _inv(key)),
    ]
    for refused in refusals:
        assert _refused(refused, 403).message.endswith("is not allowed for this key")
    assert _upstream(stack_env) == []
    services.embed(validate(EmbeddingRequest, {"modelUri": "yandexgpt", "text": "x"}), _inv(key))
    services.classify_few_shot(validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT}), _inv(key))
    assert len(_upstream(stack_env)) == 2


def test_the_deployments_list_is_asked_first_and_the_key_cannot_widen_it(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_ALLOWED_MODELS", "yandexgpt")
    config.reset_settings()
    key = KeyPolicy(name="alice", models=("yandexgpt-lite",))
    err = _refused(lambda: _tokenize("yandexgpt-lite", _inv(key)), 403)
    assert "(FM_ALLOWED_MODELS)" in err.message
    err = _refused(lambda: _tokenize("yandexgpt", _inv(key)), 403)
    assert err.message.endswith("is not allowed for this key")


def test_key_allows_reads_the_full_uri() -> None:
    key = KeyPolicy(name="alice", models=("yandexgpt/rc",))
    assert services.key_allows("gpt://f/yandexgpt/rc", key)
    assert not services.key_allows("gpt://f/yandexgpt/latest", key)
    assert not services.key_allows("gpt://f/yandexgpt", key)
    assert services.key_allows("gpt://f/yandexgpt", KeyPolicy(name="a", models=("yandexgpt/latest",)))
    assert not services.key_allows("yandexgpt/rc", key)  # not a URI: nothing to admit
    assert not services.key_allows("yandexgpt/rc", KeyPolicy(name="a"))


# -- completion -------------------------------------------------------------------------------------------

def test_a_completion_answers_upstreams_result_and_logs_its_usage(stack_env: Emulator) -> None:
    inv = _inv()
    request = validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES,
                                           "completionOptions": {"reasoningOptions": {"mode": "ENABLED_HIDDEN"}}})
    reply = services.complete(request, inv)
    [sent] = _sent(stack_env, "/completion")
    assert sent == {"modelUri": f"gpt://{FOLDER}/yandexgpt/latest", "messages": MESSAGES,
                    "completionOptions": {"reasoningOptions": {"mode": "ENABLED_HIDDEN"}}}
    result = reply.body["result"]
    assert not reply.ndjson and result["alternatives"][0]["message"]["text"]
    usage = result["usage"]
    assert usage["completionTokensDetails"]["reasoningTokens"] != "0"
    assert {k: inv.log_fields[k] for k in ("input_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")} \
        == {"input_tokens": int(usage["inputTextTokens"]), "completion_tokens": int(usage["completionTokens"]),
            "total_tokens": int(usage["totalTokens"]),
            "reasoning_tokens": int(usage["completionTokensDetails"]["reasoningTokens"])}
    assert inv.log_fields["model"] == f"gpt://{FOLDER}/yandexgpt/latest"
    assert inv.log_fields["attempts"] == 1 and len(inv.log_fields["upstream_request_id"]) == 36


def test_a_streamed_completion_answers_every_chunk_and_logs_the_last_ones_usage(stack_env: Emulator) -> None:
    inv = _inv()
    words = " ".join(f"w{n}" for n in range(12))
    request = validate(CompletionRequest, {"modelUri": "yandexgpt", "completionOptions": {"stream": True},
                                           "messages": [{"role": "user", "text": words}]})
    reply = services.complete(request, inv)
    assert reply.ndjson and len(reply.body) > 1
    assert [c["result"]["alternatives"][0]["status"] for c in reply.body][-1] == "ALTERNATIVE_STATUS_FINAL"
    usage = reply.body[-1]["result"]["usage"]
    assert usage != reply.body[0]["result"]["usage"]
    assert (inv.log_fields["input_tokens"], inv.log_fields["completion_tokens"], inv.log_fields["total_tokens"],
            inv.log_fields["reasoning_tokens"]) == (int(usage["inputTextTokens"]), int(usage["completionTokens"]),
                                                    int(usage["totalTokens"]), 0)
    assert inv.log_fields["attempts"] == 1 and inv.log_fields["upstream_request_id"]


@pytest.mark.parametrize("raw", ["", "[1]\n", '{"result": null}\n', '{"other": 1}\n', '{"result": {"usage": 5}}\n'])
def test_a_stream_without_a_usage_in_its_last_chunk_logs_none(stack_env: Emulator, raw: str) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", kind="answer", raw=raw)
    inv = _inv()
    reply = services.complete(validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES,
                                                           "completionOptions": {"stream": True}}), inv)
    assert reply.ndjson and reply.body == [json.loads(line) for line in raw.splitlines()]
    assert not {"input_tokens", "completion_tokens", "total_tokens"} & set(inv.log_fields)


@pytest.mark.parametrize("body", [{"other": 1}, {"result": None}, {"result": []}, [1]])
def test_a_completion_answer_without_a_result_object_is_an_upstream_error(stack_env: Emulator, body: Any) -> None:
    stack_env.fault(path="/foundationModels/v1/completion", kind="answer", body=body)
    inv = _inv()
    err = _refused(lambda: services.complete(validate(CompletionRequest, {"modelUri": "yandexgpt",
                                                                          "messages": MESSAGES}), inv), 502)
    assert err.message == "upstream completion answer has no result object"
    assert inv.log_fields["upstream_request_id"] and inv.log_fields["attempts"] == 1


@pytest.mark.parametrize(("usage", "logged"), [
    (None, None),
    ({"inputTextTokens": "3", "completionTokens": "4", "totalTokens": "7"}, (3, 4, 7, None)),
    ({"inputTextTokens": "3", "completionTokens": "x", "totalTokens": None,
      "completionTokensDetails": "5"}, (3, None, None, None)),
    ({"inputTextTokens": 3.0, "completionTokens": "4", "totalTokens": "7",
      "completionTokensDetails": {"reasoningTokens": "2"}}, (3, 4, 7, 2)),
    ({"completionTokensDetails": {"reasoningTokens": []}}, (None, None, None, None)),
])
def test_the_usage_logged_is_upstreams_numbers_and_none_for_what_it_left_out(
        stack_env: Emulator, usage: Any, logged: tuple[Any, ...] | None) -> None:
    result: dict[str, Any] = {"alternatives": [], "modelVersion": "v"}
    if usage is not None:
        result["usage"] = usage
    stack_env.fault(path="/foundationModels/v1/completion", kind="answer", body={"result": result})
    inv = _inv()
    reply = services.complete(validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES}), inv)
    assert reply.body == {"result": result}
    names = ("input_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")
    if logged is None:
        assert not set(names) & set(inv.log_fields)
    else:
        assert tuple(inv.log_fields[name] for name in names) == logged


def test_payloads_are_logged_only_when_log_payloads_is_on(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    request = validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES})
    services.complete(request, _inv())
    assert "completion payload" not in log_output.getvalue()
    monkeypatch.setenv("LOG_PAYLOADS", "true")
    config.reset_settings()
    reply = services.complete(request, _inv())
    [line] = [json.loads(line) for line in log_output.getvalue().splitlines() if "completion payload" in line]
    assert line["msg"] == "completion payload" and line["level"] == "INFO"
    assert line["messages"] == MESSAGES and line["result"] == reply.body["result"]


def test_the_summary_line_of_a_completion_carries_the_model_and_usage(
        stack_env: Emulator, log_output: io.StringIO) -> None:
    event = {"httpMethod": "POST", "url": "/foundationModels/v1/completion", "headers": {},
             "body": json.dumps({"modelUri": "yandexgpt-lite", "messages": MESSAGES})}
    answer = completion_handler.handler(event, FakeContext())
    usage = json.loads(answer["body"])["result"]["usage"]
    [summary] = [json.loads(line) for line in log_output.getvalue().splitlines() if "request handled" in line]
    assert summary["status"] == 200 and summary["model"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert (summary["input_tokens"], summary["completion_tokens"], summary["total_tokens"]) == (
        int(usage["inputTextTokens"]), int(usage["completionTokens"]), int(usage["totalTokens"]))
    assert summary["attempts"] == 1 and summary["upstream_request_id"]


def test_tokenize_notes_each_upstream_attempt(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/tokenize", status=503)
    inv = _inv()
    reply = _tokenize("yandexgpt", inv)
    assert reply.body["modelVersion"] and inv.log_fields["attempts"] == 2
    assert len(stack_env.calls("/tokenize")) == 2 and inv.log_fields["upstream_request_id"]
    inv = _inv()
    reply = services.tokenize_completion(validate(CompletionRequest, {"modelUri": "yandexgpt",
                                                                      "messages": MESSAGES}), inv)
    assert [t["text"] for t in reply.body["tokens"]] == ["hello", "there"]
    assert inv.log_fields["attempts"] == 1 and inv.log_fields["upstream_request_id"]
    assert inv.log_fields["model"] == f"gpt://{FOLDER}/yandexgpt/latest"


# -- a limited key: its worst case is admitted before upstream is called -------------------------------

@pytest.fixture
def dead_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job store nobody answers at: a limited key's request that cannot fit is refused before it is used."""
    monkeypatch.setenv("DOCAPI_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("RESULTS_BUCKET", "results")
    config.reset_settings()


def _never_fits(call: Any, tokens: int) -> None:
    err = _refused(call, 429)
    assert f"up to {tokens} tokens" in err.message, err.message


def test_a_limited_keys_request_is_refused_for_its_worst_case_before_upstream(
        stack_env: Emulator, dead_store: None) -> None:
    key = KeyPolicy(name="alice", monthly_tokens=1)
    settings = config.settings()
    model = f"gpt://{FOLDER}/yandexgpt/latest"
    sent = {"modelUri": model, "messages": MESSAGES}
    bounded = limits.with_max_tokens(sent, "completion", settings.limits_default_max_tokens)
    _never_fits(lambda: services.complete(validate(CompletionRequest, {"modelUri": "yandexgpt", "messages": MESSAGES}),
                                          _inv(key)),
                limits.worst_case("completion", bounded, model, "sync", settings)[0])
    emb = f"emb://{FOLDER}/text-search-doc/latest"
    _never_fits(lambda: services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "abc"}),
                                       _inv(key)), limits.input_bound("abc"))
    _never_fits(lambda: services.embed(validate(EmbeddingRequest, {"modelUri": emb, "texts": ["a", "bcd"]}),
                                       _inv(key)), limits.input_bound("a") + limits.input_bound("bcd"))
    few_shot = {"modelUri": f"cls://{FOLDER}/yandexgpt/latest", **FEW_SHOT}
    _never_fits(lambda: services.classify_few_shot(validate(FewShotClassificationRequest, few_shot), _inv(key)),
                limits.input_bound(few_shot))
    tuned = {"modelUri": f"cls://{FOLDER}/mine/v1@t", "text": "some text"}
    _never_fits(lambda: services.classify_tuned(validate(TextClassificationRequest, tuned), _inv(key)),
                limits.input_bound(tuned))
    assert _upstream(stack_env) == []


# -- embeddings ---------------------------------------------------------------------------------------

def test_one_text_is_one_upstream_call_answered_as_upstream_answered(stack_env: Emulator) -> None:
    inv = _inv()
    reply = services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "one two three"}), inv)
    assert _sent(stack_env, "/textEmbedding") == [{"modelUri": f"emb://{FOLDER}/text-search-doc/latest",
                                                   "text": "one two three"}]
    assert set(reply.body) == {"embedding", "numTokens", "modelVersion"} and len(reply.body["embedding"]) == 256
    assert reply.body["numTokens"] == "3" and inv.log_fields["input_tokens"] == 3
    assert inv.log_fields["model"] == f"emb://{FOLDER}/text-search-doc/latest" and "texts" not in inv.log_fields
    services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "x", "dim": 8}), _inv())
    assert _sent(stack_env, "/textEmbedding")[1] == {"modelUri": f"emb://{FOLDER}/text-search-doc/latest",
                                                     "text": "x", "dim": "8"}


def test_texts_are_answered_in_input_order_with_their_tokens_summed(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "2")
    config.reset_settings()
    stack_env.configure(latencyMs=20)
    texts = ["alpha", "beta gamma", "delta epsilon zeta", "eta", "theta iota", "kappa"]
    inv = _inv()
    reply = services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "texts": texts, "dim": 16}),
                           inv)
    singles = [services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": t, "dim": 16}),
                              _inv()).body for t in texts]
    assert reply.body == {"embeddings": [s["embedding"] for s in singles], "numTokens": "10",
                          "modelVersion": singles[0]["modelVersion"]}
    assert sum(int(s["numTokens"]) for s in singles) == 10
    assert inv.log_fields["texts"] == 6 and inv.log_fields["input_tokens"] == 10
    sent = _sent(stack_env, "/textEmbedding")[:6]
    assert sorted(b["text"] for b in sent) == sorted(texts)
    assert all(b == {"modelUri": f"emb://{FOLDER}/text-search-doc/latest", "text": b["text"], "dim": "16"}
               for b in sent)
    assert stack_env.max_in_flight() <= 2  # never more than FM_MAX_CONCURRENCY calls at once


def test_a_text_whose_answer_lacks_a_count_or_version_counts_nothing_for_it(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="answer", bodyContains="first",
                    body={"embedding": [0.5], "numTokens": None})
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="answer", bodyContains="second",
                    body={"embedding": [0.25], "modelVersion": "v2"})
    inv = _inv()
    reply = services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc",
                                                       "texts": ["first", "second", "third one"]}), inv)
    assert reply.body["embeddings"][:2] == [[0.5], [0.25]] and len(reply.body["embeddings"][2]) == 256
    assert reply.body["numTokens"] == "2" and reply.body["modelVersion"] == ""  # the first text's
    assert inv.log_fields["input_tokens"] == 2
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="answer", body={"embedding": [1.0]})
    inv = _inv()
    assert services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "x"}), inv).body == {
        "embedding": [1.0]}
    assert inv.log_fields["input_tokens"] is None


@pytest.mark.parametrize("texts", [None, ["a", "b"]])
@pytest.mark.parametrize("body", [{"embedding": "0.5"}, {"numTokens": "1"}, [[0.5]]])
def test_an_embedding_answer_without_an_embedding_list_is_an_upstream_error(
        stack_env: Emulator, texts: list[str] | None, body: Any) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", kind="answer", body=body)
    request = {"modelUri": "text-search-doc", **({"texts": texts} if texts else {"text": "a"})}
    err = _refused(lambda: services.embed(validate(EmbeddingRequest, request), _inv()), 502)
    assert err.message == "upstream embedding answer has no embedding list"
    assert err.upstream_request_id and len(err.upstream_request_id) == 36


def test_one_texts_failure_fails_the_request_with_its_error(stack_env: Emulator) -> None:
    stack_env.fault(path="/foundationModels/v1/textEmbedding", status=400, bodyContains="broken",
                    message="this text is broken")
    err = _refused(lambda: services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc",
                                                                      "texts": ["fine", "broken", "fine too"]}),
                                          _inv()), 400)
    assert "this text is broken" in err.message


# -- fan_out on its own ----------------------------------------------------------------------------------

def test_fan_out_runs_the_items_at_once_and_answers_in_input_order() -> None:
    arrived = threading.Barrier(4, timeout=10)  # passes only when four items run at the same time

    def work(item: int) -> int:
        arrived.wait()
        return item * 10

    assert services.fan_out(work, [3, 1, 4, 2], 4) == [30, 10, 40, 20]
    assert services.fan_out(lambda item: item + 1, [7], 4) == [8]
    two = threading.Barrier(2, timeout=10)
    assert services.fan_out(lambda item: (two.wait(), item)[1], ["a", "b"], 8) == ["a", "b"]


def test_two_texts_get_two_embeddings(stack_env: Emulator) -> None:
    reply = services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "texts": ["a b", "c"]}), _inv())
    assert len(reply.body["embeddings"]) == 2 and reply.body["numTokens"] == "3"
    assert sorted(body["text"] for body in _sent(stack_env, "/textEmbedding")) == ["a b", "c"]


def test_fan_out_keeps_the_callers_context_and_at_most_concurrency_threads() -> None:
    seen = contextvars.ContextVar("seen", default="unset")
    seen.set("caller")
    threads: set[str] = set()
    lock = threading.Lock()
    pair = threading.Barrier(2, timeout=10)  # a pool of two threads passes it two by two

    def work(item: int) -> str:
        with lock:
            threads.add(threading.current_thread().name)
        pair.wait()
        return f"{seen.get()}-{item}"

    assert services.fan_out(work, list(range(6)), 2) == [f"caller-{n}" for n in range(6)]
    assert len(threads) == 2 and all(name.startswith("fm-fanout") for name in threads)
    assert services.fan_out(lambda item: seen.get(), ["x"], 2) == ["caller"]


def test_fan_out_raises_the_items_own_failure() -> None:
    def work(item: int) -> int:
        if item == 1:
            raise errors.BadRequestError("item 1 is bad")
        return item

    with pytest.raises(errors.BadRequestError, match="item 1 is bad"):
        services.fan_out(work, list(range(5)), 2)


def test_fan_out_with_only_failures_raises_one_of_them() -> None:
    def work(item: int) -> int:
        raise ValueError(f"bad {item}")

    with pytest.raises(ValueError, match="bad [0-9]"):
        services.fan_out(work, [0, 1, 2], 3)


# -- classification ---------------------------------------------------------------------------------------

def test_a_few_shot_classification_sends_the_request_and_logs_its_input_tokens(stack_env: Emulator) -> None:
    inv = _inv()
    samples = [{"text": "win money", "label": "spam"}, {"text": "lunch at noon", "label": "ham"}]
    reply = services.classify_few_shot(validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT,
                                                                               "samples": samples}), inv)
    assert _sent(stack_env, "/fewShotTextClassification") == [
        {"modelUri": f"cls://{FOLDER}/yandexgpt/latest", **FEW_SHOT, "samples": samples}]
    assert sorted(p["label"] for p in reply.body["predictions"]) == ["ham", "spam"]
    assert inv.log_fields["input_tokens"] == int(reply.body["inputTokens"]) == 9
    assert inv.log_fields["attempts"] == 1 and inv.log_fields["upstream_request_id"]
    assert inv.log_fields["model"] == f"cls://{FOLDER}/yandexgpt/latest"
    assert stack_env.calls("/textClassification") == []


def test_a_tuned_classification_goes_to_text_classification(stack_env: Emulator) -> None:
    inv = _inv()
    reply = services.classify_tuned(validate(TextClassificationRequest, {"modelUri": "mine/v1@t",
                                                                         "text": "good day"}), inv)
    assert _sent(stack_env, "/textClassification") == [{"modelUri": f"cls://{FOLDER}/mine/v1@t", "text": "good day"}]
    assert sorted(p["label"] for p in reply.body["predictions"]) == ["negative", "neutral", "positive"]
    assert inv.log_fields["input_tokens"] == 2 and inv.log_fields["attempts"] == 1
    assert stack_env.calls("/fewShotTextClassification") == []


@pytest.mark.parametrize(("body", "logged"), [({"predictions": []}, "absent"), ({"inputTokens": None}, "absent"),
                                              ({"inputTokens": "many"}, None), ({"inputTokens": 0}, 0), ([1], "absent")])
def test_a_classification_without_an_input_count_logs_none(stack_env: Emulator, body: Any, logged: Any) -> None:
    stack_env.fault(path="/foundationModels/v1/fewShotTextClassification", kind="answer", body=body)
    inv = _inv()
    reply = services.classify_few_shot(validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT}),
                                       inv)
    assert reply.body == body
    assert inv.log_fields.get("input_tokens", "absent") == logged


# -- pacing -------------------------------------------------------------------------------------------------

def _sleeps(clock: ManualClock) -> list[float]:
    return [round(s, 3) for s in clock.sleeps if s > 0]


def test_classifications_are_paced_to_fm_classification_rps_across_invocations(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_CLASSIFICATION_RPS", "2")
    monkeypatch.setenv("FM_EMBEDDING_RPS", "2")
    config.reset_settings()
    few_shot = validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT})
    tuned = validate(TextClassificationRequest, {"modelUri": "mine/v1@t", "text": "x"})
    services.classify_few_shot(few_shot, _inv())
    assert _sleeps(clock) == []
    services.classify_tuned(tuned, _inv())  # another invocation, the same instance-wide quota
    assert _sleeps(clock) == [0.5]
    services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "x"}), _inv())
    assert _sleeps(clock) == [0.5]  # the embedding quota is another one
    services.classify_few_shot(few_shot, _inv())
    assert _sleeps(clock) == [0.5, 0.5]
    services.reset_pacers()
    services.classify_few_shot(few_shot, _inv())
    assert _sleeps(clock) == [0.5, 0.5]  # a forgotten pacer starts afresh


def test_async_classification_tasks_share_the_synchronous_quota(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    from shared.jobs import worker

    monkeypatch.setenv("FM_CLASSIFICATION_RPS", "4")
    config.reset_settings()
    services.classify_few_shot(validate(FewShotClassificationRequest, {"modelUri": "yandexgpt", **FEW_SHOT}), _inv())
    task = {"modelUri": f"cls://{FOLDER}/yandexgpt/latest", **FEW_SHOT}
    assert worker.execute("classification", task, _inv())["predictions"]  # a queued task, on the same instance
    assert _sleeps(clock) == [0.25]
    services.classify_tuned(validate(TextClassificationRequest, {"modelUri": "mine/v1@t", "text": "x"}), _inv())
    assert _sleeps(clock) == [0.25, 0.25]


def test_embeddings_are_paced_to_fm_embedding_rps(
        stack_env: Emulator, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_EMBEDDING_RPS", "4")
    monkeypatch.setenv("FM_MAX_CONCURRENCY", "1")
    config.reset_settings()
    services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "texts": ["a", "b", "c"]}), _inv())
    assert _sleeps(clock) == [0.25, 0.25]
    services.embed(validate(EmbeddingRequest, {"modelUri": "text-search-doc", "text": "d"}), _inv())
    assert _sleeps(clock) == [0.25, 0.25, 0.25]
    assert len(stack_env.calls("/textEmbedding")) == 4


def test_a_pacer_is_one_per_quota_and_rate() -> None:
    first = services.pacer("embedding", 5.0)
    assert services.pacer("embedding", 5.0) is first
    assert services.pacer("embedding", 6.0) is not first and services.pacer("other", 5.0) is not first
    assert first.interval == 0.2
    services.reset_pacers()
    assert services.pacer("embedding", 5.0) is not first
