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
    path: str  # OpenAPI-style template; {name} matches one whole segment (as API Gateway's do), {name+} the rest
    function: str  # the function (functions/<name>/handler.py) that serves it
    operation: str  # the operation inside that function
    request: str | None  # request model: "Class" in the dialect's MODEL_MODULES module, or "module:Class"
    response: str  # response model: "Class" in the dialect's SCHEMA_MODULES module, or "module:Class"
    summary: str
    dialect: str = "native"  # "native" (Foundation Models REST) or "openai" (/v1): models and error shape
    admin: bool = False  # the admin caller's only: anyone else gets 404 before the body is even read
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+?)", re.escape(self.path))
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}/?$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None

    @property
    def greedy(self) -> bool:
        """Whether a parameter takes the rest of the path: such a route yields to every other one."""
        return "+}" in self.path


FM = "/foundationModels/v1"
OPENAI = "/v1"
MODEL_MODULES = {"native": "shared.native.models", "openai": "shared.openai.models"}
SCHEMA_MODULES = {"native": "shared.native.schemas", "openai": "shared.openai.schemas"}
OA_SCHEMAS = "shared.openai.batch_schemas"
RESPONSES = "shared.openai.response_request"
RESPONSE_SCHEMAS = "shared.openai.response_schemas"
KEYS = "shared.jobs.keys"
USAGE_SCHEMAS = "shared.openai.usage_schemas"


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
    Route("POST", f"{FM}/textEmbedding", "embedding", "textEmbedding", "EmbeddingRequest", "TextEmbeddingResponse",
          "Embed one text, or up to 256 texts with the `texts` extension"),
    Route("POST", f"{FM}/fewShotTextClassification", "classification", "fewShotTextClassification",
          "FewShotClassificationRequest", "ClassificationResponse", "Zero- or few-shot classification (2-20 labels)"),
    Route("POST", f"{FM}/textClassification", "classification", "textClassification",
          "TextClassificationRequest", "ClassificationResponse", "Classify with a tuned classifier"),
    Route("POST", f"{FM}/completionAsync", "completion", "completionAsync", "CompletionAsyncRequest", "Operation",
          "Start a completion in the background; poll GET /operations/{operationId}"),
    Route("POST", f"{FM}/textEmbeddingAsync", "embedding", "textEmbeddingAsync", "EmbeddingAsyncRequest",
          "Operation", "Embed up to 10,000 texts in the background"),
    Route("POST", f"{FM}/fewShotTextClassificationAsync", "classification", "fewShotTextClassificationAsync",
          "FewShotClassificationRequest", "Operation", "Few-shot classification in the background"),
    Route("POST", f"{FM}/completionBatch", "completion", "completionBatch", "BatchCompletionRequest", "Operation",
          "Start a batch: an upstream batch task (sourceDatasetId) or up to 10,000 inline requests"),
    # One path item for an operation: API Gateway documents {param} (a whole segment) and {param+}, nothing
    # for a parameter plus literal text, so `X:cancel` (or `X%3Acancel`) arrives as the segment and the
    # operations function decides from the method and the real URL, never from the integration's context.
    Route("GET", "/operations/{operationId}", "operations", "get", None, "Operation",
          "An operation's state; when done, its response or error. `GET /operations/{id}:cancel` cancels "
          "(the upstream operation service's GET form)"),
    Route("POST", "/operations/{operationId}", "operations", "cancel", None, "Operation",
          "Cancel an operation: `POST /operations/{id}:cancel` (the colon may be sent as %3A). No further work "
          "starts; upstream work is cancelled where it can be. A POST without `:cancel` is 405"),
    # -- the OpenAI dialect (/v1) --
    Route("POST", f"{OPENAI}/chat/completions", "completion", "createChatCompletion",
          "shared.openai.chat:ChatCompletionRequest", "ChatCompletion",
          "OpenAI-compatible chat completion on the native completion (stream: true returns the whole event "
          "stream in one body)", dialect="openai"),
    Route("POST", f"{OPENAI}/embeddings", "embedding", "createEmbedding", "shared.openai.embeddings:EmbeddingsRequest",
          "OpenAIEmbeddingList", "OpenAI embeddings: one string or up to 256, as float or base64 (float32 LE)",
          dialect="openai"),
    # The model list is configuration (FM_ALLOWED_MODELS or the catalog), no upstream call, so any function
    # could answer it. The completion function does, because OpenAI clients (chat UIs, LiteLLM, agent
    # frameworks) list or check models right before they chat: the instance this warms is the one the chat
    # request needs next, while the embedding function stays as lean as its native route.
    Route("GET", f"{OPENAI}/models", "completion", "listModels", None, "OpenAIModelList",
          "The models this gateway serves, as full URIs for the folder", dialect="openai"),
    # {model+}: the openai client sends an id as one segment with its slashes as %2F; a gateway that decodes
    # them first, or a caller typing slashes, still lands here.
    Route("GET", f"{OPENAI}/models/{{model+}}", "completion", "retrieveModel", None, "OpenAIModel",
          "One model of the list, by full URI (percent-encoded) or short name", dialect="openai"),
    # OpenAI Responses API: the completion function serves every route, so a conversation's turns, its
    # retrieval and its background runs warm one instance; the store and queue grants it has for
    # completionAsync are all these need. /input_tokens comes before {response_id}: the concrete path wins.
    Route("POST", f"{OPENAI}/responses", "completion", "createResponse", f"{RESPONSES}:ResponseCreateRequest",
          f"{RESPONSE_SCHEMAS}:Response", "A response (stored for 30 days unless store is false; background: true "
          "runs it on the async engine; stream: true returns the whole typed event stream in one body)",
          dialect="openai"),
    Route("POST", f"{OPENAI}/responses/input_tokens", "completion", "countResponseInputTokens",
          f"{RESPONSES}:InputTokensRequest", f"{RESPONSE_SCHEMAS}:ResponseInputTokens",
          "How many input tokens a response request would use (the native tokenizeCompletion)", dialect="openai"),
    Route("GET", f"{OPENAI}/responses/{{response_id}}", "completion", "retrieveResponse", None,
          f"{RESPONSE_SCHEMAS}:Response", "A stored response (a background one: its current status)",
          dialect="openai"),
    Route("DELETE", f"{OPENAI}/responses/{{response_id}}", "completion", "deleteResponse", None,
          f"{RESPONSE_SCHEMAS}:ResponseDeleted", "Delete a stored response (a background one still running is "
          "cancelled)", dialect="openai"),
    Route("POST", f"{OPENAI}/responses/{{response_id}}/cancel", "completion", "cancelResponse", None,
          f"{RESPONSE_SCHEMAS}:Response", "Cancel a background response", dialect="openai"),
    Route("GET", f"{OPENAI}/responses/{{response_id}}/input_items", "completion", "listResponseInputItems", None,
          f"{RESPONSE_SCHEMAS}:ResponseItemList", "A stored response's input items (after, limit, order)",
          dialect="openai"),
    # OpenAI Files and Batch API: served by the operations function, which already reads and cancels jobs
    # and holds the store and bucket grants; a batch is a job (same record), and files are what its
    # results are made of. A function of their own would duplicate that wiring for no gain, and uploads
    # are rare enough that its cold start (python-multipart, imported on the upload route only) is not felt.
    Route("POST", f"{OPENAI}/files", "operations", "createFile", None, f"{OA_SCHEMAS}:FileObject",
          "Upload a file (multipart/form-data: file, purpose), e.g. a batch's JSON Lines input", dialect="openai"),
    Route("GET", f"{OPENAI}/files", "operations", "listFiles", None, f"{OA_SCHEMAS}:FileList",
          "The caller's files, newest first (limit, after, order, purpose)", dialect="openai"),
    Route("GET", f"{OPENAI}/files/{{file_id}}", "operations", "retrieveFile", None, f"{OA_SCHEMAS}:FileObject",
          "A file's object", dialect="openai"),
    Route("DELETE", f"{OPENAI}/files/{{file_id}}", "operations", "deleteFile", None, f"{OA_SCHEMAS}:FileDeleted",
          "Delete a file", dialect="openai"),
    Route("GET", f"{OPENAI}/files/{{file_id}}/content", "operations", "downloadFile", None,
          f"{OA_SCHEMAS}:FileContent", "A file's bytes (large ones: a 307 to a presigned URL)", dialect="openai"),
    Route("POST", f"{OPENAI}/batches", "operations", "createBatch", "shared.openai.batches:BatchCreateRequest",
          f"{OA_SCHEMAS}:Batch", "Start a batch from an uploaded JSON Lines file (chat completions or embeddings)",
          dialect="openai"),
    Route("GET", f"{OPENAI}/batches", "operations", "listBatches", None, f"{OA_SCHEMAS}:BatchList",
          "The caller's batches, newest first (limit, after)", dialect="openai"),
    Route("GET", f"{OPENAI}/batches/{{batch_id}}", "operations", "retrieveBatch", None, f"{OA_SCHEMAS}:Batch",
          "A batch: status, request counts, output and error files", dialect="openai"),
    Route("POST", f"{OPENAI}/batches/{{batch_id}}/cancel", "operations", "cancelBatch", None, f"{OA_SCHEMAS}:Batch",
          "Cancel a batch: nothing new starts, what finished is kept", dialect="openai"),
    # Caller keys as data (shared/jobs/keys.py): the admin caller only; anyone else gets 404. The operations
    # function serves them: it holds the store grant, and key changes are rare.
    Route("POST", "/admin/keys", "operations", "createKey", f"{KEYS}:KeyCreateRequest", f"{KEYS}:ApiKeyWithSecret",
          "Create a caller key (admin only): 201 with the secret, shown once; 409 when the name is taken", admin=True),
    Route("GET", "/admin/keys", "operations", "listKeys", None, f"{KEYS}:ApiKeyList",
          "Every caller key, revoked and expired included (admin only; no secrets)", admin=True),
    Route("GET", "/admin/keys/{name}", "operations", "retrieveKey", None, f"{KEYS}:ApiKey", "A caller key (admin only)", admin=True),
    Route("PATCH", "/admin/keys/{name}", "operations", "updateKey", f"{KEYS}:KeyUpdateRequest", f"{KEYS}:ApiKey",
          "Change a key's models, limits, budgets or expiry (admin only); null removes one", admin=True),
    Route("DELETE", "/admin/keys/{name}", "operations", "revokeKey", None, f"{KEYS}:ApiKey",
          "Revoke a key (admin only): it stops working within the revocation bound; its name stays taken", admin=True),
    Route("POST", "/admin/keys/{name}/rotate", "operations", "rotateKey", None, f"{KEYS}:ApiKeyWithSecret",
          "A new secret for the key (admin only); the old one stops working within the revocation bound", admin=True),
    # OpenAI's Usage and Costs API over the usage ledger: the operations function has the store grants, and
    # nothing on a request's path waits for it. Any key may call them; a key other than the admin sees its own.
    Route("GET", f"{OPENAI}/organization/usage/completions", "operations", "usageCompletions", None,
          f"{USAGE_SCHEMAS}:UsageCompletionsPage", "Token usage of the completion models (chat, completion, "
          "Responses, async jobs, batches) per UTC day, grouped by model, api_key_id and/or batch", dialect="openai"),
    Route("GET", f"{OPENAI}/organization/usage/embeddings", "operations", "usageEmbeddings", None,
          f"{USAGE_SCHEMAS}:UsageEmbeddingsPage", "Token usage of the embedding models per UTC day, grouped by "
          "model and/or api_key_id", dialect="openai"),
    Route("GET", f"{OPENAI}/organization/costs", "operations", "usageCosts", None, f"{USAGE_SCHEMAS}:CostsPage",
          "What the usage cost per UTC day at the price table's prices, grouped by line_item and/or api_key_id",
          dialect="openai"),
    # Any other /v1 path: a 404 in OpenAI's shape from a function, not the gateway's own 404 body.
    *(Route(method, f"{OPENAI}/{{path+}}", "completion", f"notFound{method.title()}", None, "OpenAIErrorResponse",
            "Not a /v1 route here: 404 in OpenAI's error shape", dialect="openai")
      for method in ("GET", "POST", "DELETE")),
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
    """The route for a request, with its path parameters; 404 or 405 when there is none.

    As API Gateway does, the path item is chosen first (a concrete template before a greedy one), then
    the method within it: `GET /v1/embeddings` is a 405 naming POST, not a match of `/v1/{path+}`."""
    path = path.split("?", 1)[0] or "/"
    for route in sorted(routes, key=lambda r: r.greedy):  # stable: table order, greedy routes last
        params = route.match(path)
        if params is None:
            continue
        item = [r for r in routes if r.path == route.path]
        chosen = next((r for r in item if r.method == method.upper()), None)
        if chosen is not None:
            return chosen, params
        allowed = sorted({r.method for r in item})
        raise MethodNotAllowedError.allowing(f"{method.upper()} is not allowed on {path}; use {', '.join(allowed)}",
                                             allowed)
    raise NotFoundError(f"no route for {path}")


def for_function(function: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, ...]:
    return tuple(route for route in routes if route.function == function)


def functions(routes: tuple[Route, ...] = ROUTES) -> tuple[str, ...]:
    return tuple(dict.fromkeys(route.function for route in routes))
