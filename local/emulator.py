"""A Foundation Models emulator: an HTTP server on loopback that follows the documented REST contract.

Outputs are deterministic and say they are emulated. Completions honour the native request's
function tools (a tool the last user message names is called, with arguments built from its JSON
Schema; `toolChoice` NONE / AUTO / REQUIRED / functionName and `parallelToolCalls` are obeyed; tool
results are answered), `jsonObject` and `jsonSchema` (the answer is JSON that fits the schema) and
`reasoningOptions` (reasoning tokens in the usage). `POST /v1/chat/completions` is upstream's
OpenAI-compatible mode, for the models served only there (JSON or an SSE stream, `OpenAI-Project`
recorded), and `/v1/responses` (create, retrieve, delete, cancel, input_items) its own Responses API. Embeddings are real vectors (feature-hashed word
and character-trigram features, 256 dims, L2-normalised), so similar texts are close; few-shot
classification scores each label by the similarity of the text to the label and its samples.

Besides the Foundation Models paths it serves an IAM token exchange (`POST /iam/v1/tokens`, verifies
PS256 JWTs against registered public keys) and a metadata token endpoint, so the credential chain can
be tested end to end. Test switches live under `/_emulator/`: latency, injected faults (any status
with Retry-After, slow answers, malformed bodies, dropped connections, a stream that fails after its
first chunk: kind "midstream"; a 200 with an answer the test gives: kind "answer" (`data` text with its
`contentType`, `raw` text, or a JSON `body`); by path, and optionally only for requests whose body contains a text),
strict auth, and the calls received (with their bodies).

Run: python -m local.emulator --port 8765
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_VERSION = "emulated-2026-11"
DIM = 256
FM = "/foundationModels/v1"
OPENAI_CHAT = "/v1/chat/completions"
IAM_PATH = "/iam/v1/tokens"
METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# -- deterministic "models" --------------------------------------------------------------------

def tokens_of(text: str) -> list[str]:
    return _WORD.findall(text)


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


def embed(text: str, dim: int = DIM) -> list[float]:
    """Feature hashing of lower-cased words (weight 1) and character trigrams (weight 0.5), normalised."""
    vector = [0.0] * dim
    words = [w.lower() for w in tokens_of(text) if w.strip()]
    for word in words:
        index, sign = _bucket("w:" + word, dim)
        vector[index] += sign
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            index, sign = _bucket("c:" + padded[i:i + 3], dim)
            vector[index] += 0.5 * sign
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def classify(text: str, labels: list[str], samples: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Softmax over similarity of text to each label (its name and its samples); sums to 1."""
    target = embed(text)
    scores = []
    for label in labels:
        references = [label] + [s["text"] for s in samples if s.get("label") == label]
        scores.append(max(cosine(target, embed(ref)) for ref in references))
    exps = [math.exp(score * 8) for score in scores]
    total = sum(exps)
    predictions = [{"label": label, "confidence": round(e / total, 6)} for label, e in zip(labels, exps, strict=False)]
    return sorted(predictions, key=lambda p: -p["confidence"])


def complete_text(messages: list[dict[str, Any]], model: str) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]
    snippet = " ".join(last_user_text(messages).split())[:120]
    return f"[emulated {model}] Reply #{digest} to: {snippet}"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    return next((m["text"] for m in reversed(messages) if m.get("role") == "user" and isinstance(m.get("text"), str)),
                "")


def _message_text(message: dict[str, Any]) -> str:
    if isinstance(message.get("text"), str):
        return message["text"]
    return json.dumps(message.get("toolCallList") or message.get("toolResultList") or {}, ensure_ascii=False)


COMPLETION_FIELDS = {"modelUri", "completionOptions", "messages", "tools", "toolChoice", "parallelToolCalls",
                     "jsonObject", "jsonSchema"}


def generate(body: dict[str, Any], messages: list[dict[str, Any]], model: str) -> tuple[str | None, list[Any] | None]:
    """The answer to a native completion body: (text, None), or (None, toolCalls) when a tool is called.

    A tool is called when the last user text names it (a word sharing its first six letters with a part
    of the tool's name, e.g. "weather" for get_weather, "calculate" for calculator), or always with
    toolChoice REQUIRED (the first tool if none is named) or functionName; never with NONE, and in AUTO
    mode not right after tool results, which are answered instead. Arguments fit the tool's parameters."""
    tools = _tools(body)
    json_schema = body.get("jsonSchema")
    if body.get("jsonObject") and json_schema is not None:
        raise _bad("set at most one of jsonObject and jsonSchema")
    if json_schema is not None and not isinstance((json_schema or {}).get("schema"), dict):
        raise _bad("jsonSchema.schema must be an object")
    hint = last_user_text(messages)
    calls = _tool_calls(body, tools, messages, hint)
    if calls:
        return None, calls
    results = (messages[-1].get("toolResultList") or {}).get("toolResults")
    if results:
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]
        said = "; ".join(f"{r['functionResult']['name']} returned {r['functionResult'].get('content', '')}"
                         for r in results)
        return f"[emulated {model}] Reply #{digest} from the tool results: {said}", None
    if json_schema is not None:
        return json.dumps(_fitting(json_schema["schema"], hint, "jsonSchema.schema"), ensure_ascii=False), None
    if body.get("jsonObject"):
        return json.dumps({"answer": complete_text(messages, model)}, ensure_ascii=False), None
    return complete_text(messages, model), None


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise _bad("tools must be a list")
    functions = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _bad(f"tools[{index}].function.name is required")
        functions.append(function)
    choice = body.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1:
            raise _bad("toolChoice must set exactly one of mode and functionName")
        if "mode" in choice and choice["mode"] not in ("NONE", "AUTO", "REQUIRED"):
            raise _bad(f"invalid toolChoice.mode {choice['mode']!r}")
        if "functionName" in choice and choice["functionName"] not in [f["name"] for f in functions]:
            raise _bad(f"toolChoice.functionName {choice['functionName']!r} is not one of the tools")
    return functions


def _tool_calls(body: dict[str, Any], tools: list[dict[str, Any]], messages: list[dict[str, Any]],
                hint: str) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    choice = body.get("toolChoice") or {}
    mode = "NAMED" if "functionName" in choice else choice.get("mode", "AUTO")
    if mode == "NONE" or (mode == "AUTO" and "toolResultList" in messages[-1]):
        return None
    if mode == "NAMED":
        chosen = [t for t in tools if t["name"] == choice["functionName"]]
    else:
        chosen = [t for t in tools if _names(hint, t["name"])] or (tools[:1] if mode == "REQUIRED" else [])
    if body.get("parallelToolCalls") is False:
        chosen = chosen[:1]
    return [{"functionCall": {"name": t["name"],
                              "arguments": _fitting(t.get("parameters") or {}, hint, f"tool {t['name']} parameters")}}
            for t in chosen] or None


def _fitting(schema: Any, hint: str, what: str) -> Any:
    """schema_instance, with a schema it cannot read refused as upstream would refuse it (400)."""
    try:
        return schema_instance(schema, hint)
    except (TypeError, ValueError, AttributeError) as err:
        raise _bad(f"{what} is not a usable JSON Schema ({err})") from None


def _names(text: str, name: str) -> bool:
    words = [w.lower() for w in re.findall(r"[^\W_]+", text)]
    parts = [p for p in re.split(r"[_\-]+", name.lower()) if len(p) >= 4]
    return name.lower() in text.lower() or any(w[:6] == p[:6] for p in parts for w in words if len(w) >= 4)


_ARITHMETIC = re.compile(r"\(?\d+(?:\.\d+)?\)?(?:\s*[-+*/^%]\s*\(?\d+(?:\.\d+)?\)?)+")


def schema_instance(schema: Any, hint: str, name: str = "value", root: Any = None, depth: int = 0,
                    seen: tuple[str, ...] = ()) -> Any:
    """A value that fits a JSON Schema (the subset tools and structured output use), drawn from the hint
    text where it can be: a capitalised word for strings, a number for numbers, an arithmetic expression
    for a property named like one. A reference that repeats on its own path is null; nothing goes below
    depth 8."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return None
    depth += 1
    if isinstance(schema.get("$ref"), str):
        if schema["$ref"] in seen:  # a recursive schema: stop where a reference repeats on the path
            return None
        seen = (*seen, schema["$ref"])
        target: Any = root
        for part in [p for p in schema["$ref"].lstrip("#").split("/") if p]:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return schema_instance(target, hint, name, root, depth, seen)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return schema_instance(options[0], hint, name, root, depth, seen)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: schema_instance(sub, hint, key, root, depth, seen) for key, sub in properties.items()}
    if kind == "array":
        item = schema_instance(schema.get("items") or {}, hint, name, root, depth, seen)
        return [item] * max(int(schema.get("minItems", 1)), 1)
    if kind in ("integer", "number"):
        found = re.search(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", hint)
        value: float = float(found.group(0)) if found else 42.0
        if "minimum" in schema:
            value = max(value, float(schema["minimum"]))
        if "maximum" in schema:
            value = min(value, float(schema["maximum"]))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, hint, name)


def _string(schema: dict[str, Any], hint: str, name: str) -> str:
    formats = {"date": "2026-01-01", "date-time": "2026-01-01T00:00:00Z", "email": "user@example.com",
               "uuid": "00000000-0000-4000-8000-000000000000", "uri": "https://example.com/"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    expression = _ARITHMETIC.search(hint)
    if expression and any(word in name.lower() for word in ("expr", "formula", "calc", "math", "input", "query")):
        value = expression.group(0).strip()
    else:
        words = re.findall(r"[^\W\d_][\w'-]*", hint)
        capitalised = [w for w in words[1:] if w[0].isupper()]
        value = capitalised[0] if capitalised else f"emulated {name}"
    if "maxLength" in schema:
        value = value[:int(schema["maxLength"])]
    return value.ljust(int(schema.get("minLength", 0)), ".")


def openai_chat(body: dict[str, Any], project: str | None) -> Any:
    """Upstream's OpenAI-compatible POST /v1/chat/completions (for the models served only there): text
    answers, JSON or an SSE stream with deltas, the usage chunk on stream_options.include_usage."""
    model = body.get("model")
    match = re.match(r"^gpt://([^/]+)/([^/@]+)", str(model))
    if not match:
        raise _bad(f"model must be a gpt://<folder>/<model> URI, not {model!r}")
    folder, name = match.groups()
    if project is not None and project != folder:
        raise ApiFailure(403, 7, f"OpenAI-Project {project!r} is not the model's folder")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _bad("messages must be a non-empty list of objects")
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise _bad("temperature must be between 0 and 2")
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "") or ""
    if isinstance(user, list):
        user = "".join(p.get("text", "") for p in user if isinstance(p, dict))
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:8]
    words = f"[emulated {name} via the OpenAI API] Reply #{digest} to: {' '.join(str(user).split())[:120]}".split(" ")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or 2000
    finish = "stop"
    if len(words) > int(limit):
        words, finish = words[:int(limit)], "length"
    prompt = sum(len(tokens_of(str(m.get("content") or ""))) for m in messages)
    usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
    head = {"id": "chatcmpl-" + uuid.uuid4().hex, "created": int(time.time()), "model": model}
    if not body.get("stream"):
        return {**head, "object": "chat.completion", "usage": usage,
                "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                             "message": {"role": "assistant", "content": " ".join(words), "refusal": None}}]}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

    events: list[Any] = [chunk({"role": "assistant", "content": ""})]
    step = max(1, len(words) // 3)
    for start in range(0, len(words), step):
        events.append(chunk({"content": ("" if start == 0 else " ") + " ".join(words[start:start + step])}))
    events.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    events.append("[DONE]")
    return _Sse(events)


OPENAI_RESPONSES = "/v1/responses"


def openai_responses(method: str, rest: str, body: Any, project: str | None, query: str, state: State) -> Any:
    """Upstream's own Responses API (the AI Studio endpoint, for models served only in its OpenAI mode and for
    hosted tools): create (JSON or an SSE stream of typed events), retrieve, delete, cancel and input_items over
    responses kept per folder, `previous_response_id` chaining, hosted tools echoed. Answers say they are
    emulated."""
    if method == "POST" and rest == "":
        return _create_response(body if isinstance(body, dict) else {}, project, state)
    response_id, _, action = rest.lstrip("/").partition("/")
    with state.lock:
        stored = state.responses.get(response_id)
    if stored is None or stored["project"] != project:
        raise ApiFailure(404, 5, f"Response with id '{response_id}' not found.")
    if method == "GET" and action == "":
        return stored["response"]
    if method == "DELETE" and action == "":
        with state.lock:
            state.responses.pop(response_id, None)
        return {"id": response_id, "object": "response", "deleted": True}
    if method == "POST" and action == "cancel":
        raise _bad("Cannot cancel a synchronous response.")
    if method == "GET" and action == "input_items":
        items = stored["input"]
        return {"object": "list", "data": items[::-1] if "order=asc" not in query else items,
                "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None,
                "has_more": False}
    raise ApiFailure(404, 5, f"no such method {OPENAI_RESPONSES}/{rest}")


def _create_response(body: dict[str, Any], project: str | None, state: State) -> Any:
    match = re.match(r"^gpt://([^/]+)/([^/@]+)", str(body.get("model")))
    if not match:
        raise _bad(f"model must be a gpt://<folder>/<model> URI, not {body.get('model')!r}")
    folder, name = match.groups()
    if project is not None and project != folder:
        raise ApiFailure(403, 7, f"OpenAI-Project {project!r} is not the model's folder")
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    previous = body.get("previous_response_id")
    history: list[Any] = []
    if previous is not None:
        with state.lock:
            earlier = state.responses.get(previous)
        if earlier is None or earlier["project"] != project:
            raise ApiFailure(400, 3, f"Previous response with id '{previous}' not found.")
        history = earlier["context"]
    said = next((str(i.get("content")) for i in reversed(items) if isinstance(i, dict) and i.get("role") == "user"), "")
    response_id = "resp_up" + uuid.uuid4().hex
    text = (f"[emulated {name} via the Responses API] Reply #{len(history) // 2 + 1} to: "
            f"{' '.join(said.split())[:120]}")
    message = {"id": "msg_up" + uuid.uuid4().hex, "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    words = len(text.split())
    response = {"id": response_id, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": body["model"], "output": [message], "tools": body.get("tools") or [],
                "previous_response_id": previous, "error": None, "incomplete_details": None,
                "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": words,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 5 + words}}
    inputs = [{"id": f"msg_in{n}", "type": "message", **i} for n, i in enumerate(items) if isinstance(i, dict)]
    if body.get("store", True):
        with state.lock:
            state.responses[response_id] = {"project": project, "response": response, "input": inputs,
                                            "context": [*history, *inputs, message]}
    if not body.get("stream"):
        return response
    running = {**response, "status": "in_progress", "output": [], "usage": None}
    added = {**message, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": running}, {"type": "response.in_progress", "response": running},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.content_part.added", "item_id": message["id"], "output_index": 0, "content_index": 0,
         "part": part}]
    for index, word in enumerate(text.split(" ")):
        events.append({"type": "response.output_text.delta", "item_id": message["id"], "output_index": 0,
                       "content_index": 0, "delta": word if index == 0 else " " + word, "logprobs": []})
    events += [{"type": "response.output_text.done", "item_id": message["id"], "output_index": 0, "content_index": 0,
                "text": text, "logprobs": []},
               {"type": "response.content_part.done", "item_id": message["id"], "output_index": 0,
                "content_index": 0, "part": message["content"][0]},
               {"type": "response.output_item.done", "output_index": 0, "item": message},
               {"type": "response.completed", "response": response}]
    return _Sse([{**event, "sequence_number": n} for n, event in enumerate(events)])


def token_ids(text: str) -> list[dict[str, Any]]:
    out = []
    for token in tokens_of(text):
        ident = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=3).digest(), "little")
        out.append({"id": str(ident), "text": token, "special": False})
    return out


# -- state ---------------------------------------------------------------------------------------

class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.faults: list[dict[str, Any]] = []
            self.calls: list[dict[str, Any]] = []
            self.latency_ms = 0.0
            self.api_keys: list[str] | None = None  # None: any non-empty key is accepted
            self.strict_bearer = False  # True: only tokens this emulator issued (and not expired)
            self.token_ttl_s = 43_200
            self.issued: dict[str, float] = {}
            self.public_keys: dict[str, dict[str, str]] = {}  # key id -> {public_key, service_account_id}
            self.operations: dict[str, dict[str, Any]] = {}  # upstream async operations and batch tasks
            self.responses: dict[str, dict[str, Any]] = {}  # upstream's own Responses API, per folder
            self.async_delay_ms = 1000.0  # how long an async operation takes to finish
            self.in_flight = 0
            self.max_in_flight = 0  # the most Foundation Models calls being served at once

    def take_fault(self, path: str, body: bytes = b"") -> dict[str, Any] | None:
        """The first fault matching the path (and, with `bodyContains`, only requests whose body holds that text)."""
        with self.lock:
            for fault in self.faults:
                target = fault.get("path", "*")
                if fault.get("bodyContains") and str(fault["bodyContains"]).encode() not in body:
                    continue
                if fault.get("count", 1) != 0 and (target == "*" or path.startswith(target)):
                    if fault.get("after", 0) > 0:  # let this many matching requests through first
                        fault["after"] -= 1
                        return None
                    if fault.get("count", 1) > 0:
                        fault["count"] = fault.get("count", 1) - 1
                    return dict(fault)
        return None

    def issue_token(self) -> tuple[str, float]:
        token = "t1.emulated." + uuid.uuid4().hex
        expires = time.time() + self.token_ttl_s
        with self.lock:
            self.issued[token] = expires
        return token, expires


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiFailure(Exception):
    def __init__(self, status: int, grpc_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.grpc_code, self.message = status, grpc_code, message


def _bad(message: str) -> ApiFailure:
    return ApiFailure(400, 3, message)


# -- HTTP ------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes; avoid the 40 ms delayed-ACK stall
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.startswith("/_emulator/"):
            return self._control(method, path, raw)
        request_id = str(uuid.uuid4())
        with state.lock:
            state.calls.append({"path": path, "method": method, "t": time.time(),
                                "query": self.path.partition("?")[2] if "?" in self.path else None,
                                "clientRequestId": self.headers.get("x-client-request-id"),
                                "folderId": self.headers.get("x-folder-id"),
                                "dataLogging": self.headers.get("x-data-logging-enabled"),
                                "auth": (self.headers.get("Authorization") or "").split(" ", 1)[0],
                                 "project": self.headers.get("OpenAI-Project"),
                                 "body": None if path == IAM_PATH else _recorded(raw)})  # never a JWT
        counted = path.startswith(FM) or path == OPENAI_CHAT
        if counted:
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            fault = state.take_fault(path, raw)
            if state.latency_ms and counted:
                time.sleep(state.latency_ms / 1000)
            if fault and fault.get("kind") != "midstream" and self._apply_fault(fault, path, request_id):
                return
            try:
                body = self._route(method, path, raw)
            except ApiFailure as failure:
                return self._error(path, failure.status, failure.grpc_code, failure.message, request_id)
            except Exception as err:  # an emulator bug: answer as upstream's gateway would, never drop the line
                return self._error(path, 500, 13, f"emulator error: {type(err).__name__}: {err}", request_id)
            if fault and fault.get("kind") == "midstream" and isinstance(body, _NdJson):  # first chunk, then an error
                body.chunks = body.chunks[:1] + [{"error": {
                    "grpcCode": 14, "httpCode": 503, "httpStatus": "Service Unavailable", "details": [],
                    "message": fault.get("message", "emulated failure in the middle of the stream")}}]
            self._send(200, body, request_id)
        finally:
            if counted:
                with state.lock:
                    state.in_flight -= 1

    def _apply_fault(self, fault: dict[str, Any], path: str, request_id: str) -> bool:
        kind = fault.get("kind", "status")
        if kind == "delay":
            time.sleep(float(fault.get("delayMs", 1000)) / 1000)
            return False
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if kind == "malformed":
            self._raw(200, b'{"result": {"alternatives": [', "application/json", request_id)
            return True
        if kind == "answer":  # a 200 upstream should not send: `data` or `raw` text (a cut stream), or a JSON `body`
            if "data" in fault or "raw" in fault:
                data = str(fault["data"] if "data" in fault else fault["raw"]).encode()
            else:
                data = json.dumps(fault.get("body")).encode()
            self._raw(200, data, fault.get("contentType", "application/json"), request_id)
            return True
        status = int(fault.get("status", 503))
        headers = {}
        if fault.get("retryAfter") is not None:
            headers["Retry-After"] = str(fault["retryAfter"])
        grpc = {400: 3, 401: 16, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}.get(status, 2)
        self._error(path, status, grpc, fault.get("message", f"emulated fault {status}"), request_id, headers,
                    shape=fault.get("shape"))
        return True

    def _route(self, method: str, path: str, raw: bytes) -> Any:
        state = self.server.state
        if path == METADATA_PATH and method == "GET":
            if self.headers.get("Metadata-Flavor") != "Google":
                raise ApiFailure(403, 7, "Metadata-Flavor: Google header is required")
            token, expires = state.issue_token()
            return {"access_token": token, "expires_in": int(expires - time.time()), "token_type": "Bearer"}
        if path == IAM_PATH and method == "POST":
            return self._exchange(_json(raw))
        if path.startswith("/operations/"):
            self._authenticate()
            return self._operation(path[len("/operations/"):], method)
        if path == OPENAI_CHAT and method == "POST":
            self._authenticate()
            return openai_chat(_json(raw), self.headers.get("OpenAI-Project"))
        if path == OPENAI_RESPONSES or path.startswith(OPENAI_RESPONSES + "/"):
            self._authenticate()
            return openai_responses(method, path[len(OPENAI_RESPONSES):], _json(raw) if raw else None,
                                    self.headers.get("OpenAI-Project"), self.path.partition("?")[2], state)
        if not path.startswith(FM):
            raise ApiFailure(404, 5, f"no such method {path}")
        if method != "POST":
            raise ApiFailure(405, 12, f"{method} is not supported on {path}")
        self._authenticate()
        body = _json(raw)
        name = path[len(FM) + 1:]
        if name == "completion":
            return self._completion(body)
        if name == "completionAsync":
            if (body.get("completionOptions") or {}).get("stream"):
                raise _bad("stream is not available in async mode")
            result = self._completion(body)["result"]
            texts = [str(m.get("text", "")) for m in body.get("messages", [])]
            failing = any("EMULATOR_FAIL" in text for text in texts)
            internal = any("EMULATOR_INTERNAL" in text for text in texts)  # the operation ends with INTERNAL (13)
            outcome = ({"error": {"code": 13, "message": "emulated internal error", "details": []}} if internal
                       else {"error": {"code": 3, "message": "emulated failure of this request", "details": []}}
                       if failing else {"response": {"@type": "type.googleapis.com/yandex.cloud.ai.foundation_models.v1."
                                                              "CompletionResponse", **result}})
            return self._new_operation("Async GPT Completion", outcome, None)
        if name == "completionBatch":
            _require(body, "modelUri", "sourceDatasetId")
            _scheme(body["modelUri"], ("gpt",))
            task = "cbt" + uuid.uuid4().hex[:17]
            outcome = {"response": {"taskId": task, "taskStatus": "COMPLETED",
                                    "resultDatasetId": "fds" + hashlib.sha256(task.encode()).hexdigest()[:17]}}
            if "EMULATOR_FAIL" in str(body["sourceDatasetId"]):  # a batch task that fails upstream
                outcome = {"error": {"code": 3, "message": "emulated failure of this batch task", "details": []}}
            return self._new_operation("Batch Completion", outcome, task)
        if name == "tokenize":
            _require(body, "modelUri", "text")
            return {"tokens": token_ids(body["text"]), "modelVersion": MODEL_VERSION}
        if name == "tokenizeCompletion":
            messages = _messages(body)
            text = "\n".join(m.get("text", "") for m in messages)
            return {"tokens": token_ids(text), "modelVersion": MODEL_VERSION}
        if name == "textEmbedding":
            _require(body, "modelUri", "text")
            _scheme(body["modelUri"], ("emb", "gpt"))
            dim = int(body.get("dim") or DIM)
            if not 1 <= dim <= DIM:
                raise _bad(f"dim must be between 1 and {DIM}")
            return {"embedding": embed(body["text"], dim), "numTokens": str(len(tokens_of(body["text"]))),
                    "modelVersion": MODEL_VERSION}
        if name == "fewShotTextClassification":
            _require(body, "modelUri", "text", "labels")
            _scheme(body["modelUri"], ("cls",))
            labels = body["labels"]
            if not isinstance(labels, list) or not 2 <= len(labels) <= 20:
                raise _bad("labels must contain from 2 to 20 items")
            samples = body.get("samples") or []
            predictions = classify(body["text"], labels, samples)
            used = len(tokens_of(body["text"])) + sum(len(tokens_of(s.get("text", ""))) for s in samples)
            return {"predictions": predictions, "modelVersion": MODEL_VERSION, "inputTokens": str(used)}
        if name == "textClassification":
            _require(body, "modelUri", "text")
            _scheme(body["modelUri"], ("cls",))
            if "@" not in body["modelUri"]:
                raise _bad("textClassification needs a tuned classifier URI (cls://<folder>/<model>/<version>@<suffix>)")
            labels = ["negative", "neutral", "positive"]
            return {"predictions": classify(body["text"], labels, []), "modelVersion": MODEL_VERSION,
                    "inputTokens": str(len(tokens_of(body["text"])))}
        raise ApiFailure(404, 5, f"no such method {path}")

    def _completion(self, body: dict[str, Any]) -> Any:
        _require(body, "modelUri", "messages")
        unknown = sorted(set(body) - COMPLETION_FIELDS)
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r} in the completion request")
        model = _scheme(body["modelUri"], ("gpt",))
        messages = _messages(body)
        options = body.get("completionOptions") or {}
        unknown = sorted(set(options) - {"stream", "temperature", "maxTokens", "reasoningOptions"})
        if unknown:
            raise _bad(f"unknown field completionOptions.{unknown[0]}")
        temperature = options.get("temperature", 0.3)
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
            raise _bad("completionOptions.temperature must be between 0 and 1")
        max_tokens = int(options.get("maxTokens") or 2000)
        reasoning_mode = (options.get("reasoningOptions") or {}).get("mode", "REASONING_MODE_UNSPECIFIED")
        if reasoning_mode not in ("REASONING_MODE_UNSPECIFIED", "DISABLED", "ENABLED_HIDDEN"):
            raise _bad(f"invalid completionOptions.reasoningOptions.mode {reasoning_mode!r}")
        text, calls = generate(body, messages, model)
        input_tokens = sum(len(tokens_of(_message_text(m))) for m in messages)
        reasoning = len(tokens_of(last_user_text(messages))) if reasoning_mode == "ENABLED_HIDDEN" else 0

        def result(message: dict[str, Any], count: int, alt_status: str) -> dict[str, Any]:
            return {"result": {"alternatives": [{"message": {"role": "assistant", **message}, "status": alt_status}],
                               "usage": {"inputTextTokens": str(input_tokens),
                                         "completionTokens": str(count + reasoning),
                                         "totalTokens": str(input_tokens + count + reasoning),
                                         "completionTokensDetails": {"reasoningTokens": str(reasoning)}},
                               "modelVersion": MODEL_VERSION}}

        if calls:
            answer = result({"toolCallList": {"toolCalls": calls}}, len(tokens_of(json.dumps(calls))),
                            "ALTERNATIVE_STATUS_TOOL_CALLS")
            return _NdJson([answer]) if options.get("stream") else answer
        words = (text or "").split(" ")
        status = "ALTERNATIVE_STATUS_FINAL"
        if len(words) > max_tokens:
            words, status = words[:max_tokens], "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
        if options.get("stream"):
            step = max(1, len(words) // 3)
            chunks = [result({"text": " ".join(words[:n])}, n, "ALTERNATIVE_STATUS_PARTIAL")
                      for n in range(step, len(words), step)]
            chunks.append(result({"text": " ".join(words)}, len(words), status))
            return _NdJson(chunks)
        return result({"text": " ".join(words)}, len(words), status)

    def _new_operation(self, description: str, outcome: dict[str, Any], batch_task: str | None) -> dict[str, Any]:
        state = self.server.state
        op_id = "d7q" + uuid.uuid4().hex[:17]
        now = time.time()
        with state.lock:
            state.operations[op_id] = {"id": op_id, "description": description, "created": now,
                                       "done_at": now + state.async_delay_ms / 1000, "outcome": outcome,
                                       "task": batch_task}
            return self._operation_body(state.operations[op_id], now)

    def _operation_body(self, op: dict[str, Any], now: float) -> dict[str, Any]:
        done = now >= op["done_at"] or op.get("cancelled", False)
        body: dict[str, Any] = {"id": op["id"], "description": op["description"], "createdAt": _rfc3339(op["created"]),
                                "createdBy": "emulator", "modifiedAt": _rfc3339(min(now, op["done_at"])), "done": done,
                                "metadata": None}
        if op["task"]:
            span = max(op["done_at"] - op["created"], 1e-9)
            completed = 10 if done else int(10 * min(max((now - op["created"]) / span, 0), 1))
            status = "COMPLETED" if done else ("IN_PROGRESS" if completed else "PENDING")
            if op.get("cancelled"):
                status = "CANCELED"
            elif done and "error" in op["outcome"]:
                status = "FAILED"
            body["metadata"] = {"taskId": op["task"], "taskStatus": status, "completedBatches": str(completed),
                                "totalBatches": "10"}
        if done:
            body.update(op["outcome"])
        return body

    def _operation(self, rest: str, method: str) -> dict[str, Any]:
        state = self.server.state
        op_id, _, action = rest.partition(":")
        with state.lock:
            op = state.operations.get(op_id)
            if op is None:
                raise ApiFailure(404, 5, f"operation {op_id} not found")
            now = time.time()
            if action == "cancel":
                if now < op["done_at"] and not op.get("cancelled"):
                    op["cancelled"] = True
                    op["outcome"] = {"error": {"code": 1, "message": "operation cancelled", "details": []}}
                    op["done_at"] = now
            elif action or method != "GET":
                raise ApiFailure(404, 5, f"no such method {method} /operations/{rest}")
            return self._operation_body(op, now)

    def _authenticate(self) -> None:
        state = self.server.state
        header = self.headers.get("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        if scheme not in ("Api-Key", "Bearer") or not credential.strip():
            raise ApiFailure(401, 16, "Unauthenticated: an Authorization header (Api-Key or Bearer) is required")
        if scheme == "Api-Key" and state.api_keys is not None and credential not in state.api_keys:
            raise ApiFailure(401, 16, "Unknown api key")
        if scheme == "Bearer" and state.strict_bearer:
            expires = state.issued.get(credential)
            if expires is None or expires < time.time():
                raise ApiFailure(401, 16, "The token is invalid or has expired.")

    def _exchange(self, body: dict[str, Any]) -> dict[str, Any]:
        import jwt

        state = self.server.state
        token = body.get("jwt")
        if not isinstance(token, str):
            raise _bad("jwt is required")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise _bad(f"malformed jwt: {err}") from None
        key = state.public_keys.get(str(header.get("kid")))
        if key is None:
            raise ApiFailure(401, 16, f"unknown key id {header.get('kid')}")
        if header.get("alg") != "PS256":
            raise ApiFailure(401, 16, "only PS256 is accepted")
        audience = f"http://{self.headers.get('Host')}{IAM_PATH}"
        try:
            claims = jwt.decode(token, key["public_key"], algorithms=["PS256"],
                                audience=[audience, "https://iam.api.cloud.yandex.net/iam/v1/tokens"])
        except jwt.PyJWTError as err:
            raise ApiFailure(401, 16, f"jwt rejected: {err}") from None
        if claims.get("iss") != key["service_account_id"]:
            raise ApiFailure(401, 16, "iss does not match the key's service account")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            raise ApiFailure(401, 16, "exp - iat must not exceed 3600 seconds")
        iam_token, expires = state.issue_token()
        return {"iamToken": iam_token, "expiresAt": _rfc3339(expires)}

    # -- control plane for tests and `make run` --
    def _control(self, method: str, path: str, raw: bytes) -> None:
        state = self.server.state
        body = _json(raw) if raw else {}
        if path == "/_emulator/health":
            return self._send(200, {"ok": True, "emulator": True})
        if path == "/_emulator/reset" and method == "POST":
            state.reset()
            return self._send(200, {"ok": True})
        if path == "/_emulator/faults" and method == "POST":
            with state.lock:
                state.faults.extend(body.get("faults", [body]))
            return self._send(200, {"ok": True})
        if path == "/_emulator/config" and method == "POST":
            with state.lock:
                state.latency_ms = float(body.get("latencyMs", state.latency_ms))
                state.api_keys = body.get("apiKeys", state.api_keys)
                state.strict_bearer = bool(body.get("strictBearer", state.strict_bearer))
                state.token_ttl_s = int(body.get("tokenTtlS", state.token_ttl_s))
                state.async_delay_ms = float(body.get("asyncDelayMs", state.async_delay_ms))
                if body.get("revokeTokens"):
                    state.issued.clear()
            return self._send(200, {"ok": True})
        if path == "/_emulator/keys" and method == "POST":
            with state.lock:
                state.public_keys[body["id"]] = {"public_key": body["public_key"],
                                                 "service_account_id": body["service_account_id"]}
            return self._send(200, {"ok": True})
        if path == "/_emulator/calls" and method == "GET":
            with state.lock:
                calls, peak = list(state.calls), state.max_in_flight
            return self._send(200, {"calls": calls, "maxInFlight": peak})
        self._send(404, {"error": "unknown control path"})

    # -- output --
    def _error(self, path: str, status: int, grpc_code: int, message: str, request_id: str,
               headers: dict[str, str] | None = None, shape: str | None = None) -> None:
        shape = shape or ("gateway" if path.startswith(FM) else "openai" if path.startswith("/v1/") else "status")
        if shape == "openai":
            kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(status)
            kind = kind or ("invalid_request_error" if status < 500 else "server_error")
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        elif shape == "gateway":
            body = {"error": {"grpcCode": grpc_code, "httpCode": status,
                                              "httpStatus": HTTPStatus(status).phrase, "details": [],
                                              "message": f"Error in session request_id={request_id}: {message}"}}
        else:
            body = {"code": grpc_code, "message": message,
                    "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}]}
        self._send(status, body, request_id, headers)

    def _send(self, status: int, body: Any, request_id: str = "", headers: dict[str, str] | None = None) -> None:
        if isinstance(body, _Sse):
            data = "".join(f"data: {e if isinstance(e, str) else json.dumps(e, ensure_ascii=False)}\n\n"
                           for e in body.events).encode()
            return self._raw(status, data, "text/event-stream", request_id, headers)
        if isinstance(body, _NdJson):
            data = "".join(json.dumps(chunk, ensure_ascii=False) + "\n" for chunk in body.chunks).encode()
        else:
            data = json.dumps(body, ensure_ascii=False).encode()
        self._raw(status, data, "application/json", request_id, headers)

    def _raw(self, status: int, data: bytes, content_type: str, request_id: str,
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", request_id)
        self.send_header("x-server-trace-id", request_id[:8])
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _NdJson:
    def __init__(self, chunks: list[Any]) -> None:
        self.chunks = chunks


class _Sse:
    def __init__(self, events: list[Any]) -> None:
        self.events = events


def _recorded(raw: bytes) -> Any:
    """The request body as the call log keeps it (parsed JSON; None when it is not JSON)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _json(raw: bytes) -> Any:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _bad("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    return body


def _recorded(raw: bytes) -> Any:
    """A call's body as the tests read it from /_emulator/calls: parsed JSON, else None."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _require(body: dict[str, Any], *fields: str) -> None:
    for name in fields:
        if body.get(name) in (None, "", []):
            raise _bad(f"{name} is required")


def _scheme(uri: str, schemes: tuple[str, ...]) -> str:
    match = re.match(r"^([a-z]+)://([^/]+)/([^/@]+)", str(uri))
    if not match or match.group(1) not in schemes:
        raise _bad(f"invalid model uri {uri!r}; expected {' or '.join(s + '://' for s in schemes)}<folder>/<model>")
    return match.group(3)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must not be empty")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise _bad(f"invalid message role {message.get('role') if isinstance(message, dict) else message!r}")
        present = [k for k in ("text", "toolCallList", "toolResultList") if message.get(k) is not None]
        if len(present) != 1:
            raise _bad(f"messages[{index}] must carry exactly one of text, toolCallList and toolResultList")
        if "toolCallList" in present and not all(
                isinstance((c or {}).get("functionCall"), dict) and isinstance(c["functionCall"].get("name"), str)
                and isinstance(c["functionCall"].get("arguments", {}), dict)
                for c in (message["toolCallList"] or {}).get("toolCalls") or [None]):
            raise _bad(f"messages[{index}].toolCallList.toolCalls[].functionCall needs a name and object arguments")
        if "toolResultList" in present and not all(
                isinstance((r or {}).get("functionResult"), dict) and isinstance(r["functionResult"].get("name"), str)
                and isinstance(r["functionResult"].get("content"), str)
                for r in (message["toolResultList"] or {}).get("toolResults") or [None]):
            raise _bad(f"messages[{index}].toolResultList.toolResults[].functionResult needs a name and content")
    return messages


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.state = State()
        self.verbose = verbose

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start(port: int = 0, host: str = "127.0.0.1") -> EmulatorServer:
    """Start on a background thread (port 0 = any free port); stop with server.shutdown()."""
    server = EmulatorServer((host, port))
    threading.Thread(target=server.serve_forever, name="fm-emulator", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    server = EmulatorServer((args.host, args.port), verbose=args.verbose)
    print(f"Foundation Models emulator on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
