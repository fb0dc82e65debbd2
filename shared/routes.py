"""The route table: the single source of truth for which HTTP path reaches which function and operation.

The local gateway routes from it, handlers resolve their operation from it, and the API Gateway
OpenAPI spec is generated from it and the pydantic models. Paths mirror Foundation Models REST, so a
client written for upstream works by changing only the base URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared.errors import MethodNotAllowedError, NotFoundError


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI-style template; {name} matches one segment
    function: str  # the function (functions/<name>/handler.py) that serves it
    operation: str  # the operation inside that function
    request: str | None  # request model: "Class" in the dialect's MODEL_MODULES module, or "module:Class"
    response: str  # response model: "Class" in the dialect's SCHEMA_MODULES module, or "module:Class"
    summary: str
    dialect: str = "native"  # "native" (Foundation Models REST) or "openai" (/v1): models and error shape
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}/?$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None


FM = "/foundationModels/v1"
OPENAI = "/v1"
MODEL_MODULES = {"native": "shared.native.models", "openai": "shared.openai.models"}
SCHEMA_MODULES = {"native": "shared.native.schemas", "openai": "shared.openai.schemas"}


def dialect_of(path: str) -> str:
    """Which dialect a path speaks, before (or without) a route: errors then come in its shape."""
    return "openai" if path == OPENAI or path.startswith(OPENAI + "/") else "native"


ROUTES: tuple[Route, ...] = (
    Route("POST", f"{FM}/completion", "completion", "completion", "CompletionRequest", "CompletionResponse",
          "Generate a completion (stream: true returns the NDJSON chunks in one body)"),
    Route("POST", f"{FM}/tokenize", "completion", "tokenize", "TokenizeRequest", "TokenizeResponse",
          "Split text into the model's tokens"),
    Route("POST", f"{FM}/tokenizeCompletion", "completion", "tokenizeCompletion", "CompletionRequest",
          "TokenizeResponse", "Tokenize a whole completion request"),
    Route("POST", f"{FM}/textEmbedding", "embedding", "textEmbedding", "EmbeddingRequest", "EmbeddingResponse",
          "Embed one text, or up to 256 texts with the `texts` extension"),
    Route("POST", f"{FM}/fewShotTextClassification", "classification", "fewShotTextClassification",
          "FewShotClassificationRequest", "ClassificationResponse", "Zero- or few-shot classification (2-20 labels)"),
    Route("POST", f"{FM}/textClassification", "classification", "textClassification",
          "TextClassificationRequest", "ClassificationResponse", "Classify with a tuned classifier"),
    Route("POST", f"{FM}/completionAsync", "completion", "completionAsync", "CompletionRequest", "Operation",
          "Start a completion in the background; poll GET /operations/{operationId}"),
    Route("POST", f"{FM}/textEmbeddingAsync", "embedding", "textEmbeddingAsync", "EmbeddingAsyncRequest",
          "Operation", "Embed up to 10,000 texts in the background"),
    Route("POST", f"{FM}/fewShotTextClassificationAsync", "classification", "fewShotTextClassificationAsync",
          "FewShotClassificationRequest", "Operation", "Few-shot classification in the background"),
    Route("POST", f"{FM}/completionBatch", "completion", "completionBatch", "BatchCompletionRequest", "Operation",
          "Start a batch: an upstream batch task (sourceDatasetId) or up to 10,000 inline requests"),
    Route("POST", f"{OPENAI}/chat/completions", "completion", "createChatCompletion",
          "shared.openai.chat:ChatCompletionRequest", "ChatCompletion",
          "OpenAI-compatible chat completion on the native completion (stream: true returns the whole event "
          "stream in one body)", dialect="openai"),
    Route("GET", "/operations/{operationId}", "operations", "get", None, "Operation",
          "An operation's state; when done, its response or error"),
    Route("POST", "/operations/{operationId}:cancel", "operations", "cancel", None, "Operation",
          "Cancel an operation: no further work starts, upstream work is cancelled where it can be"),
    Route("GET", "/operations/{operationId}:cancel", "operations", "cancelGet", None, "Operation",
          "The same as POST …:cancel (the upstream operation service's GET form)"),
)


def model(route: Route, which: str = "request") -> type:
    """The route's request or response model class (imported on first use: a cold start pays only for its own)."""
    import importlib

    ref = route.request if which == "request" else route.response
    if not ref:
        raise ValueError(f"{route.method} {route.path} has no {which} model")
    default = (MODEL_MODULES if which == "request" else SCHEMA_MODULES)[route.dialect]
    module, _, name = ref.rpartition(":")
    return getattr(importlib.import_module(module or default), name)


def resolve(method: str, path: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, dict[str, str]]:
    """The route for a request, with its path parameters; 404 or 405 when there is none."""
    path = path.split("?", 1)[0] or "/"
    allowed = []
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        if route.method == method.upper():
            return route, params
        allowed.append(route.method)
    if allowed:
        raise MethodNotAllowedError(f"{method.upper()} is not allowed on {path}; use {', '.join(sorted(set(allowed)))}")
    raise NotFoundError(f"no route for {path}")


def for_function(function: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, ...]:
    return tuple(route for route in routes if route.function == function)


def functions(routes: tuple[Route, ...] = ROUTES) -> tuple[str, ...]:
    return tuple(dict.fromkeys(route.function for route in routes))
