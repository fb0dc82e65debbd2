"""What handlers call: completion, tokenize, embeddings (with the batched `texts` extension), classification.

Each takes a validated request model and an Invocation and returns a Reply. Model names are
resolved here (short names expanded with YC_FOLDER_ID, FM_ALLOWED_MODELS enforced), calls are paced
to the per-second quotas of this instance, and usage is added to the request's summary log line.
"""

from __future__ import annotations

import contextvars
import re
import threading
from typing import TYPE_CHECKING, Any

from shared import errors, logs
from shared.client import Pacer
from shared.config import Settings
from shared.native.models import (
    CompletionRequest,
    EmbeddingRequest,
    FewShotClassificationRequest,
    TextClassificationRequest,
    TokenizeRequest,
)
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.policy import KeyPolicy
    from shared.runtime import Invocation

log = logs.get_logger("services")

_URI = re.compile(r"^(?P<scheme>[a-z]+)://(?P<folder>[^/\s]+)/(?P<name>[^/\s@]+)(?P<rest>(/[^\s]*)?)$")
_SHORT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._\-]*)(/(?P<version>[A-Za-z0-9._\-@]+))?$")


def resolve_model(uri: str, scheme: str, config: Settings, policy: KeyPolicy | None = None) -> str:
    """A full URI as given, or a short name ('yandexgpt-lite', 'yandexgpt/rc') expanded with YC_FOLDER_ID;
    a 403 when the deployment's allow-list (FM_ALLOWED_MODELS) or the caller key's own does not admit it."""
    full = _URI.match(uri)
    if full is None:
        short = _SHORT.match(uri)
        if short is None:
            raise errors.BadRequestError.field(
                "modelUri", f"must be a model URI like {scheme}://<folder>/<model>/latest or a short model name")
        if not config.folder_id:
            raise errors.BadRequestError.field(
                "modelUri", f"short model name {uri!r} needs YC_FOLDER_ID on the server; send a full {scheme}:// URI")
        uri = f"{scheme}://{config.folder_id}/{short['name']}/{short['version'] or 'latest'}"
        full = _URI.match(uri)
        assert full is not None
    if config.allowed_models and not _allowed(uri, full["name"], full["rest"], config.allowed_models):
        raise _forbidden(f"model {full['name']!r} is not allowed here (FM_ALLOWED_MODELS)")
    if policy is not None and not key_allows(uri, policy):
        raise _forbidden(f"model {full['name']!r} is not allowed for this key")
    return uri


def _forbidden(rule: str) -> errors.ForbiddenError:
    return errors.ForbiddenError(f"modelUri: {rule}", details=[{"@type": "field", "field": "modelUri", "description": rule}])


def key_allows(uri: str, policy: KeyPolicy) -> bool:
    """Whether the caller key's allow-list admits the full model URI."""
    full = _URI.match(uri)
    return full is not None and policy.allows(uri, full["name"], _versioned(full["name"], full["rest"]))


def _versioned(name: str, rest: str) -> str:
    return f"{name}{rest}" if rest else f"{name}/latest"


def _allowed(uri: str, name: str, rest: str, allowed: tuple[str, ...]) -> bool:
    return any(entry in (uri, name, _versioned(name, rest)) for entry in allowed)


def upstream_body(request: Any, scheme: str, inv: Invocation) -> dict[str, Any]:
    """The validated request as upstream expects it, with its model resolved and logged."""
    body = request.upstream()
    body["modelUri"] = resolve_model(request.model_uri, scheme, inv.settings, inv.policy)
    inv.log_fields["model"] = body["modelUri"]
    return body


# -- completion --

def complete(request: CompletionRequest, inv: Invocation) -> Reply:
    body = upstream_body(request, "gpt", inv)
    body = inv.admit(body, "completion", body["modelUri"])  # a key's budget and limits (nothing without them)
    answer = inv.client.completion(body, inv.call)
    _note(inv, answer)
    if request.stream:
        last = answer.body[-1] if answer.body else {}
        _usage(inv, (last.get("result") or {}).get("usage") if isinstance(last, dict) else None)
        return Reply(answer.body, ndjson=True)
    if not isinstance(answer.body, dict) or not isinstance(answer.body.get("result"), dict):
        raise errors.UpstreamError("upstream completion answer has no result object")
    _usage(inv, answer.body["result"].get("usage"))
    if inv.settings.log_payloads:
        log.info("completion payload", extra={"messages": body["messages"], "result": answer.body["result"]})
    return Reply(answer.body)


def tokenize(request: TokenizeRequest, inv: Invocation) -> Reply:
    answer = inv.client.tokenize(upstream_body(request, "gpt", inv), inv.call)
    _note(inv, answer)
    return Reply(answer.body)


def tokenize_completion(request: CompletionRequest, inv: Invocation) -> Reply:
    answer = inv.client.tokenize_completion(upstream_body(request, "gpt", inv), inv.call)
    _note(inv, answer)
    return Reply(answer.body)


# -- embeddings --

_pacers: dict[tuple[str, float], Pacer] = {}
_pacers_lock = threading.Lock()


def reset_pacers() -> None:
    """Forget every pacer (tests; a new rate setting makes a new pacer anyway)."""
    with _pacers_lock:
        _pacers.clear()


def pacer(name: str, rate: float) -> Pacer:
    """The instance-wide pacer for one quota (shared across warm invocations and threads)."""
    key = (name, rate)
    with _pacers_lock:
        if key not in _pacers:
            _pacers[key] = Pacer(rate)
        return _pacers[key]


def embed(request: EmbeddingRequest, inv: Invocation) -> Reply:
    model_uri = resolve_model(request.model_uri, "emb", inv.settings, inv.policy)
    inv.log_fields["model"] = model_uri
    inv.admit({"texts": [request.text] if request.text is not None else request.texts or []}, "embedding", model_uri)
    if request.text is not None:
        result = embed_one(model_uri, request.text, request.dim, inv)
        inv.log_fields["input_tokens"] = _int(result.get("numTokens"))
        return Reply(result)
    texts = request.texts or []
    results = fan_out(lambda text: embed_one(model_uri, text, request.dim, inv), texts, inv.settings.max_concurrency)
    tokens = sum(int(result.get("numTokens", 0) or 0) for result in results)
    inv.log_fields.update(texts=len(texts), input_tokens=tokens)
    return Reply({"embeddings": [result["embedding"] for result in results], "numTokens": str(tokens),
                  "modelVersion": results[0].get("modelVersion", "")})


def embed_one(model_uri: str, text: str, dim: int | None, inv: Invocation) -> dict[str, Any]:
    body: dict[str, Any] = {"modelUri": model_uri, "text": text}
    if dim is not None:
        body["dim"] = str(dim)
    pacer("embedding", inv.settings.embedding_rps).acquire(inv.call)
    answer = inv.client.text_embedding(body, inv.call)
    result = answer.body
    if not isinstance(result, dict) or not isinstance(result.get("embedding"), list):
        raise errors.UpstreamError("upstream embedding answer has no embedding list",
                                   upstream_request_id=answer.request_id)
    return result


def fan_out(work: Any, items: list[Any], concurrency: int) -> list[Any]:
    """Run work(item) for every item on a bounded pool; results in input order; first error wins."""
    if len(items) == 1:
        return [work(items[0])]
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
    stop = threading.Event()

    def guarded(item: Any) -> Any:
        if stop.is_set():
            raise errors.UpstreamError("cancelled after another item failed")
        return work(item)

    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="fm-fanout") as pool:
        futures = [pool.submit(contextvars.copy_context().run, guarded, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            stop.set()
            for future in futures:
                future.cancel()
            raise failed.exception()  # type: ignore[misc]
        return [future.result() for future in futures]


# -- classification --

def classify_few_shot(request: FewShotClassificationRequest, inv: Invocation) -> Reply:
    return _classify(upstream_body(request, "cls", inv), inv, tuned=False)


def classify_tuned(request: TextClassificationRequest, inv: Invocation) -> Reply:
    return _classify(upstream_body(request, "cls", inv), inv, tuned=True)


def _classify(body: dict[str, Any], inv: Invocation, tuned: bool) -> Reply:
    inv.admit(body, "classification", body["modelUri"])
    pacer("classification", inv.settings.classification_rps).acquire(inv.call)
    client = inv.client
    answer = (client.text_classification if tuned else client.few_shot_classification)(body, inv.call)
    _note(inv, answer)
    if isinstance(answer.body, dict) and answer.body.get("inputTokens") is not None:
        inv.log_fields["input_tokens"] = _int(answer.body["inputTokens"])
    return Reply(answer.body)


# -- helpers --

def _note(inv: Invocation, answer: Any) -> None:
    inv.log_fields["upstream_request_id"] = answer.request_id
    inv.log_fields["attempts"] = answer.attempts


def _usage(inv: Invocation, usage: Any) -> None:
    if isinstance(usage, dict):
        details = usage.get("completionTokensDetails") if isinstance(usage.get("completionTokensDetails"), dict) else {}
        inv.log_fields.update(input_tokens=_int(usage.get("inputTextTokens")),
                              completion_tokens=_int(usage.get("completionTokens")),
                              total_tokens=_int(usage.get("totalTokens")),
                              reasoning_tokens=_int(details.get("reasoningTokens")))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
