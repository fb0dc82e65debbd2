"""One line of an OpenAI batch, both ways: an input line's body -> the native request the engine runs, and
the native answer -> the body the sync /v1 route would have returned. Nothing of its own: the chat and
embeddings translations do the work (chat.py, chat_response.py, embeddings.py), so a batch line is read
and answered exactly as the same request sent to /v1/chat/completions or /v1/embeddings.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

from shared import errors

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.policy import KeyPolicy

CHAT, EMBEDDINGS, RESPONSES = "/v1/chat/completions", "/v1/embeddings", "/v1/responses"


def chat_request(body: dict[str, Any], settings: Settings, policy: KeyPolicy | None = None) -> tuple[dict[str, Any], str]:
    """A chat line's body -> (the native completion body, the model as the answer names it);
    a BadRequestError naming the parameter when the sync route would refuse it too."""
    from shared.openai import chat
    from shared.openai.models import validate

    request = validate(chat.ChatCompletionRequest, body)
    if request.stream:
        raise errors.BadRequestError.field("stream", "is not available in a batch (its answers are files)")
    model_uri = _resolve(request.model, "gpt", settings, policy)
    name = model_uri.split("://", 1)[1].split("/")[1]
    if name in _passthrough(settings):
        raise errors.BadRequestError.field("model", f"{name} is served only through upstream's OpenAI mode, "
                                                    "which has no batch; send its requests to /v1/chat/completions")
    return chat.native_body(request, model_uri), model_uri


def chat_answer(result: dict[str, Any], model: str, answer_id: str, created: int) -> dict[str, Any]:
    """A native completion result -> the `chat.completion` the sync route returns for it."""
    from shared.openai import chat_response

    return chat_response.chat_completion(result, {"id": answer_id, "created": created, "model": model})


def responses_request(body: dict[str, Any], settings: Settings, policy: KeyPolicy | None = None) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A Responses line's body -> (the native completion body, the model, the Response skeleton its answer fills);
    a BadRequestError as the sync route's, and for what a batch line cannot do (stream, background, continuing
    a stored conversation). A batch's responses are its output file's lines: they are not stored (store: false)."""
    from shared.openai import response_store, responses_api
    from shared.openai.models import validate

    request = validate(responses_api.ResponseCreateRequest, body)
    for name in ("stream", "background"):
        if getattr(request, name):
            raise errors.BadRequestError.field(name, "is not available in a batch (its answers are files)")
    if request.previous_response_id is not None:
        raise errors.BadRequestError.field("previous_response_id", "is not available in a batch: send the "
                                                                   "conversation's items as input")
    model_uri = _resolve(request.model, "gpt", settings, policy)
    name = model_uri.split("://", 1)[1].split("/")[1]
    if name in _passthrough(settings):
        raise errors.BadRequestError.field("model", f"{name} is served only through upstream's OpenAI mode, "
                                                    "which has no batch; send its requests to /v1/responses")
    response_id = response_store.new_response_id()
    plan = responses_api.plan_request(request, model_uri, None, response_id, stream=False)
    skeleton = {**responses_api.skeleton(request, model_uri, response_id, plan.offered), "store": False}
    return plan.body, model_uri, {"skeleton": skeleton, "first": len(plan.input_items)}


def responses_answer(result: dict[str, Any], line: dict[str, Any], created: int) -> dict[str, Any]:
    """A native completion result -> the Response the sync route returns for the line's request."""
    from shared.openai import response_object

    return response_object.finished(line["skeleton"], result, int(line["first"]), created)


def embeddings_request(body: dict[str, Any], settings: Settings, policy: KeyPolicy | None = None) -> dict[str, Any]:
    """An embeddings line's body -> {"model", "texts", "dim", "encodingFormat"}; a 400 as the sync route's."""
    from shared.openai import embeddings
    from shared.openai.models import validate

    request = validate(embeddings.EmbeddingsRequest, body)
    return {"model": _resolve(request.model, "emb", settings, policy), "texts": request.texts, "dim": request.dimensions,
            "encodingFormat": request.encoding_format or "float"}


def embeddings_answer(result: dict[str, Any], model: str, encoding_format: str) -> dict[str, Any]:
    """A task's answer to one embeddings request ({"embeddings", "numTokens"}) -> the sync route's list object."""
    tokens = int(result.get("numTokens", 0) or 0)
    encode = _base64 if encoding_format == "base64" else list
    data = [{"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(result.get("embeddings") or [])]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _base64(vector: list[float]) -> str:
    """As embeddings.py encodes it for the sync route: little-endian float32, standard base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _resolve(model: str, scheme: str, settings: Settings, policy: KeyPolicy | None = None) -> str:
    from shared.openai import catalog

    return catalog.resolve(model, scheme, settings, policy)


def _passthrough(settings: Settings) -> tuple[str, ...]:
    from shared.openai import catalog

    return tuple(catalog.passthrough_models(settings))
