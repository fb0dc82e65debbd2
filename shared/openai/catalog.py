"""What /v1 offers: the models it names (GET /v1/models and /v1/models/{model}), how an OpenAI `model`
resolves to a native URI, and the 404 for a /v1 path it does not serve.

The list is FM_ALLOWED_MODELS when it is set, else the documented catalog (completion and embedding
models), each as a full URI for YC_FOLDER_ID: a full URI works in every client, and in upstream's own
OpenAI mode too. Plain data: no upstream call, no request model, nothing heavy imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from shared import errors, routes
from shared.native.services import key_allows, resolve_model
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.policy import KeyPolicy
    from shared.runtime import Invocation

# The documented models (reference: foundation-models-api.md §3) that the native calls serve.
COMPLETION_MODELS = ("yandexgpt", "yandexgpt-lite", "llama", "llama-lite")
EMBEDDING_MODELS = ("text-search-doc", "text-search-query")
SCHEMES = ("gpt", "emb")  # what /v1 can use; cls:// (classification) has no OpenAI route
OWNER = "yandex"
CREATED = 0  # OpenAI's `created` is a required integer; neither the catalog nor upstream gives a date
CATCH_ALL = f"{routes.OPENAI}/{{path+}}"


def resolve(model: str, scheme: str, config: Settings, policy: KeyPolicy | None = None) -> str:
    """`model` (a short name or a full URI) as the native URI, as the native routes resolve `modelUri`
    (FM_ALLOWED_MODELS included), with errors naming `model`, the field's name on /v1."""
    try:
        return resolve_model(model, scheme, config, policy)
    except errors.BadRequestError as err:
        rule = next((d["description"] for d in err.details if d.get("@type") == "field"), err.message)
        raise errors.BadRequestError.field("model", rule) from None
    except errors.ForbiddenError as err:
        message = err.message.removeprefix("modelUri: ")
        raise errors.ForbiddenError(f"model: {message}", details=[
            {"@type": "field", "field": "model", "description": message}]) from None


def model_ids(config: Settings, policy: KeyPolicy | None = None) -> list[str]:
    """The ids GET /v1/models lists, in order, without repeats: those the caller key may use."""
    if config.allowed_models:
        candidates = [_full_uri(entry, config.folder_id) for entry in config.allowed_models]
    else:
        completion = COMPLETION_MODELS + passthrough_models(config)
        names = [("gpt", name) for name in completion] + [("emb", name) for name in EMBEDDING_MODELS]
        candidates = [f"{scheme}://{config.folder_id}/{name}/latest" if config.folder_id else None
                      for scheme, name in names]
    served = dict.fromkeys(uri for uri in candidates if uri)
    return [uri for uri in served if policy is None or key_allows(uri, policy)]


def passthrough_models(config: Settings) -> tuple[str, ...]:
    """The models /v1/chat/completions passes through to upstream's OpenAI mode (Settings.passthrough_models:
    the defaults and FM_OPENAI_PASSTHROUGH_MODELS), in a stable order."""
    return tuple(sorted(config.passthrough_models))


def list_models(_: None, inv: Invocation) -> Reply:
    """GET /v1/models."""
    return Reply({"object": "list", "data": [_model(uri) for uri in model_ids(inv.settings, inv.policy)]})


def retrieve_model(_: None, inv: Invocation) -> Reply:
    """GET /v1/models/{model}: an id of the list, given as its full URI or its short name; else 404."""
    # the openai client percent-encodes the id into one segment (gpt:%2F%2Ffolder%2Fyandexgpt%2Flatest);
    # unquoting is safe whether or not the gateway already did, since no model id holds a '%'
    asked = unquote(inv.path_params.get("model", ""))
    ids = model_ids(inv.settings, inv.policy)
    wanted = {asked, _full_uri(asked, inv.settings.folder_id)}
    found = next((uri for uri in ids if uri in wanted), None)
    if found is None:
        raise errors.NotFoundError(f"The model {asked!r} does not exist or is not served here; "
                                   "GET /v1/models lists the models you can use",
                                   details=[{"@type": "field", "field": "model", "description": "is not served"}])
    return Reply(_model(found))


def not_found(_: None, inv: Invocation) -> Reply:
    """Any /v1 path without a route: OpenAI's 404, with what is served instead."""
    served = sorted({f"{r.method} {r.path.replace('+}', '}')}" for r in routes.ROUTES
                     if r.dialect == "openai" and r.path != CATCH_ALL})
    path = "/v1/" + inv.path_params.get("path", "")
    raise errors.NotFoundError(f"Invalid URL ({path}); the /v1 routes here are: {', '.join(served)}")


def _full_uri(entry: str, folder: str | None) -> str | None:
    """An allow-list entry or a requested id as a full gpt:// or emb:// URI; None when it cannot be one."""
    scheme, sep, rest = entry.partition("://")
    if sep:
        return entry if scheme in SCHEMES and rest else None
    if not folder or not entry or entry.count("/") > 1:
        return None
    name, _, version = entry.partition("/")
    scheme = "emb" if name in EMBEDDING_MODELS else "gpt"
    return f"{scheme}://{folder}/{name}/{version or 'latest'}"


def _model(uri: str) -> dict[str, Any]:
    # a tuned model (`…/<version>@<suffix>`) belongs to the folder that tuned it, the base models to Yandex
    folder = uri.partition("://")[2].split("/", 1)[0]
    return {"id": uri, "object": "model", "created": CREATED, "owned_by": folder if "@" in uri else OWNER}
