"""/v1/responses: OpenAI's Responses API on the native completion, with stored conversations (the job store and
the results bucket) and background runs (the async engine's queue, store, leases, retries and DLQ).

A request is read into the translation core (translate.py) exactly as a chat request is: `instructions` is
the first system message (never carried over from a previous response), then the stored conversation of
`previous_response_id`, then `input`: messages (developer -> system; string or text parts), function calls
and their outputs (a result is named by the call with its call_id anywhere in the conversation; an unknown
call_id is a 400), `item_reference`s (resolved from the caller's stored items), reasoning items (dropped:
native reasoning is hidden). Images and files are a 400 naming the part. Function tools, tool_choice,
parallel_tool_calls, text.format, temperature (0-1), max_output_tokens and reasoning.effort map as on chat.

Tools the native model cannot run (hosted: web_search, file_search, mcp, code_interpreter, ...; client-run
non-function kinds: local_shell, shell, apply_patch, custom, ...) are not offered to it, and the echoed
`tools` shows what was: an agent that sends them (Codex) keeps working with the function tools. A function
tool inside a `namespace` group is offered as <namespace>__<name> and its calls come back with `namespace`.
A tool_choice that forces a tool that is not offered is a 400 naming it.

The request model and the parameter table are in response_request.py; the answer's side (Response, output
items, stream events) in response_object.py; storage in response_store.py; pass-through in
responses_upstream.py.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared import clock, errors, logs
from shared.openai import response_object, response_store, responses_upstream, translate
from shared.openai.chat import resolve_model
from shared.openai.models import refuse_unsupported
from shared.openai.response_request import (
    DEFAULT_ONLY,
    NAMESPACE_SEPARATOR,
    REFUSED,
    InputTokensRequest,
    ResponseCreateRequest,
    ResponseFunctionTool,
    ResponseItemReference,
    ResponseMessageItem,
    ResponseNamespaceTool,
    ResponseReasoningItem,
)
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("openai.responses")


# -- POST /v1/responses ---------------------------------------------------------------------------------------

def create(request: ResponseCreateRequest, inv: Invocation) -> Reply:
    store_it = request.store is not False
    if request.background and not store_it:
        raise errors.BadRequestError.field("store", "background responses must be stored (store: true)")
    if request.background and request.stream:
        raise errors.BadRequestError.field(
            "stream", "is not available with background here (a function answers in one body): create it, then poll "
                      "GET /v1/responses/{id}")
    model_uri = resolve_model(request.model, inv)
    name = model_uri.split("://", 1)[1].split("/")[1]
    if inv.settings.responses_endpoint and responses_upstream.needed(request, name, inv.settings.passthrough_models):
        references = [i for i, item in enumerate(request.input if isinstance(request.input, list) else [])
                      if isinstance(item, ResponseItemReference)]
        return responses_upstream.create(request, model_uri, inv, references)
    if name in inv.settings.passthrough_models:
        raise errors.BadRequestError.field("model", f"{name} is served only through upstream's Responses API, "
                                                    "which this deployment does not reach (FM_RESPONSES_URL)")
    response_id = response_store.new_response_id()
    inv.log_fields["response_id"] = response_id
    plan = plan_request(request, model_uri, inv, response_id)
    head = skeleton(request, model_uri, response_id, plan.offered)
    store = _store(inv) if store_it else None
    if request.background:
        return _background(plan, head, store, inv)  # type: ignore[arg-type]
    plan.body = inv.admit(plan.body, "completion", model_uri)  # a key's budget and limits (nothing without them)
    answer = inv.client.completion(plan.body, inv.call)
    inv.log_fields.update(upstream_request_id=answer.request_id, attempts=answer.attempts)
    first = len(plan.input_items)
    now = int(clock.now())
    if request.stream:
        events, last = response_object.stream_events(answer.body, head, first, now)
        final = events[-1]["response"]
        if last is not None:
            inv.log_fields.update(response_object.log_fields(final["usage"]))
        if store is not None:
            _save(store, inv, final, plan)
        return Reply(events, sse=True)
    result = answer.body.get("result") if isinstance(answer.body, dict) else None
    if not isinstance(result, dict):
        raise errors.UpstreamError("upstream completion answer has no result object", upstream_request_id=answer.request_id)
    response = response_object.finished(head, result, first, now)
    inv.log_fields.update(response_object.log_fields(response["usage"]))
    if store is not None:
        _save(store, inv, response, plan)
    return Reply(response)


class Plan:
    """What a request becomes: the native body, the tools offered, this turn's input items (with ids, as
    stored) and the conversation before them."""

    def __init__(self, body: dict[str, Any], offered: list[dict[str, Any]], input_items: list[dict[str, Any]],
                 context: list[dict[str, Any]]) -> None:
        self.body, self.offered, self.input_items, self.context = body, offered, input_items, context


def plan_request(request: ResponseCreateRequest, model_uri: str, inv: Invocation | None, response_id: str,
                 stream: bool | None = None) -> Plan:
    """Translate a request (with its stored chain and references, when `inv` can reach the store) into the
    native body; a 400 naming the parameter for what cannot be honoured."""
    _refuse_unsupported(request)
    context: list[dict[str, Any]] = []
    if request.previous_response_id is not None:
        context = _chain(request.previous_response_id, inv)
    input_items = _input_items(request.input, inv, response_id)
    turns: list[translate.Turn] = []
    if request.instructions is not None and request.instructions.strip():
        turns.append(translate.Turn("system", request.instructions, "instructions"))
    turns += _turns(context, "previous_response_id")
    turns += _turns(input_items, "input")
    if not any(turn.role != "system" for turn in turns):
        raise errors.BadRequestError.field("input", "is required: the conversation has nothing to answer")
    fmt = request.text.format if request.text is not None else None
    functions, offered = _offered(request.tools or [])
    choice = _choice(request.tool_choice, offered)
    effort = request.reasoning.effort if request.reasoning is not None else None
    options = translate.completion_options(stream=request.stream if stream is None else stream,
                                           temperature=request.temperature, max_tokens=request.max_output_tokens,
                                           reasoning_effort=effort)
    body = translate.body(model_uri, options, translate.native_messages(turns),
                          translate.response_format(fmt.type if fmt is not None else None,
                                                    fmt.schema_ if fmt is not None else None),
                          translate.native_tools(functions, choice, request.parallel_tool_calls))
    return Plan(body, offered, input_items, context)


def _refuse_unsupported(request: ResponseCreateRequest) -> None:
    refuse_unsupported(request, DEFAULT_ONLY, REFUSED)
    if request.text is not None and request.text.verbosity not in (None, "medium"):
        raise errors.BadRequestError.field("text.verbosity", 'is not supported on this model (only "medium", which '
                                                             "changes nothing, is accepted)")
    fmt = request.text.format if request.text is not None else None
    if fmt is not None and fmt.type == "json_schema" and not fmt.name:
        raise errors.BadRequestError.field("text.format.name", "is required with type json_schema")


# -- input items -> turns ----------------------------------------------------------------------------------

def _input_items(value: Any, inv: Invocation | None, response_id: str) -> list[dict[str, Any]]:
    """This turn's input as stored items: every item with an id and a status, references resolved, reasoning
    dropped. Each keeps `_where` (its place in the request) until it is stored."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [ResponseMessageItem(role="user", content=value)]
    documents: dict[str, dict[str, Any]] = {}  # the responses references named, each read once
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if isinstance(item, ResponseReasoningItem):
            continue
        if isinstance(item, ResponseItemReference):
            found = _referenced(item.id, inv, documents)
            out.append({**found, "_where": where})
            continue
        data = item.model_dump(exclude_none=True)
        data["type"] = data.get("type") or "message"
        if isinstance(item, ResponseMessageItem) and isinstance(item.content, str):
            part = "output_text" if item.role == "assistant" else "input_text"
            data["content"] = [{"type": part, "text": item.content}]
        data.setdefault("id", response_object.item_id(data["type"], response_id, len(out)))
        data.setdefault("status", "completed")
        data["_where"] = where
        out.append(data)
    return out


def _referenced(item: str, inv: Invocation | None, documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A stored item by its id, from the caller's stored response it belongs to."""
    owner = response_object.response_of(item)
    missing = errors.BadRequestError.field("input", f"Item with id '{item}' not found. Items are not persisted when "
                                                    "`store` is set to false.")
    if owner is None or inv is None:
        raise missing
    if owner not in documents:
        store = _store(inv)
        found = response_store.record(store, owner, inv)
        ours = found is not None and not found.get("upstream")
        documents[owner] = response_store.document(store, found) if ours else {}
    for stored in documents[owner].get("context", []):
        if stored.get("id") == item:
            return dict(stored)
    raise missing


def _chain(previous: str, inv: Invocation | None) -> list[dict[str, Any]]:
    """The stored conversation a response continues: its items (the chain's, its input, its output), in order."""
    missing = errors.BadRequestError.field("previous_response_id", f"Previous response with id '{previous}' not found.")
    missing.code = "previous_response_not_found"  # what Codex-style clients match on
    if inv is None:
        raise missing
    store = _store(inv)
    found = response_store.record(store, previous, inv)
    if found is None:
        raise missing
    if found.get("upstream"):
        raise errors.BadRequestError.field("previous_response_id", "continues a conversation upstream's Responses "
                                                                   "API answered (a pass-through model or a hosted "
                                                                   "tool); continue it with the same model and tools")
    document = response_store.document(store, found)
    if found.get("status") in response_store.PENDING:
        document = settle(store, found, document, inv)
    if document["response"]["status"] in response_store.PENDING:
        raise errors.BadRequestError.field("previous_response_id", f"Response '{previous}' is still "
                                                                   f"{document['response']['status']}: wait until it "
                                                                   "has finished before continuing it")
    return document["context"]


def _turns(items: list[dict[str, Any]], label: str) -> list[translate.Turn]:
    """Stored items -> turns: consecutive function calls become one assistant turn with several calls."""
    turns: list[translate.Turn] = []
    for item in items:
        where = item.get("_where", label)
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] in ("system", "developer") else item["role"]
            turns.append(translate.Turn(role, _text(item["content"], f"{where}.content", item["role"]),
                                        f"{where}.content"))
        elif kind == "function_call":
            name = item["name"] if not item.get("namespace") else f"{item['namespace']}{NAMESPACE_SEPARATOR}{item['name']}"
            call = translate.ToolCall(item["call_id"], name, item["arguments"], f"{where}.arguments",
                                      f"{where}.call_id")
            if turns and turns[-1].role == "assistant" and turns[-1].calls:
                turns[-1].calls.append(call)
            else:
                turns.append(translate.Turn("assistant", "", where, calls=[call]))
        elif kind == "function_call_output":
            output = item["output"]
            text = output if isinstance(output, str) else _text(output, f"{where}.output", "tool")
            turns.append(translate.Turn("tool", text, f"{where}.output", call_id=item["call_id"],
                                        call_id_where=f"{where}.call_id"))
    return turns


def _text(content: Any, where: str, role: str) -> str:
    """A content list as one text: text parts joined (refusal parts of assistant messages count as text);
    images and files are a 400 naming the part."""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            texts.append(part["text"])
        elif kind == "refusal" and role == "assistant":
            texts.append(part["refusal"])
        else:
            raise errors.BadRequestError.field(f"{where}[{index}]", f"a {kind!r} part is not supported: this model "
                                                                    "takes text parts only")
    return "".join(texts)


# -- tools ------------------------------------------------------------------------------------------------

def _offered(tools: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(native function definitions, the tools as echoed): function tools and namespaced functions are offered;
    hosted and other non-function tools are not (this model cannot run them)."""
    functions: list[dict[str, Any]] = []
    offered: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, ResponseFunctionTool):
            functions.append(_definition(tool.name, tool.description, tool.parameters))
            offered.append({"type": "function", "name": tool.name, "description": tool.description,
                            "parameters": tool.parameters, "strict": tool.strict})
        elif isinstance(tool, ResponseNamespaceTool):
            inner = [t for t in tool.tools if isinstance(t, dict) and t.get("type") == "function"]
            for function in inner:
                functions.append(_definition(f"{tool.name}{NAMESPACE_SEPARATOR}{function['name']}",
                                             function.get("description"), function.get("parameters")))
            if inner:
                offered.append({"type": "namespace", "name": tool.name, "description": tool.description,
                                "tools": inner})
    return functions, offered


def _definition(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if description is not None:
        out["description"] = description
    if parameters is not None:
        out["parameters"] = parameters
    return out


def _choice(choice: Any, offered: list[dict[str, Any]]) -> translate.ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return translate.ToolChoice(mode=choice)
    if choice["type"] == "function":
        return translate.ToolChoice(function=choice["name"], where="tool_choice.name")
    if choice["type"] == "allowed_tools":
        names = []
        for index, tool in enumerate(choice["tools"]):
            if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
                raise errors.BadRequestError.field(f"tool_choice.tools[{index}]", "only function tools are offered "
                                                                                  "on this model")
            names.append(tool["name"])
        return translate.ToolChoice(mode=choice["mode"], allowed=names, where="tool_choice.tools")
    raise errors.BadRequestError.field("tool_choice.type", f"{choice['type']!r} tools are not offered on this model "
                                                           "(it runs function tools only)")


# -- the rest of the answer ------------------------------------------------------------------------------

def skeleton(request: ResponseCreateRequest, model_uri: str, response_id: str,
              offered: list[dict[str, Any]]) -> dict[str, Any]:
    """The Response with the request's settings echoed (defaults applied), before any answer."""
    fmt = request.text.format if request.text is not None and request.text.format is not None else None
    text_format = fmt.model_dump(by_alias=True, exclude_none=True) if fmt is not None else {"type": "text"}
    reasoning = request.reasoning
    return {
        "id": response_id, "object": "response", "created_at": int(clock.now()), "status": "in_progress",
        "background": bool(request.background), "completed_at": None, "error": None, "incomplete_details": None,
        "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls, "model": model_uri, "output": [],
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id, "conversation": None,
        "reasoning": {"effort": reasoning.effort if reasoning else None,
                      "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None},
        "safety_identifier": request.safety_identifier, "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": None, "service_tier": "default", "store": request.store is not False,
        "temperature": request.temperature, "text": {"format": text_format, "verbosity": "medium"},
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto", "tools": offered,
        "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled", "usage": None, "user": request.user,
        "metadata": request.metadata or {},
    }


def _save(store: JobStore, inv: Invocation, response: dict[str, Any], plan: Plan, job: str | None = None) -> None:
    """Store a response and its conversation. A store failure after upstream answered does not cost the
    caller the answer: it is logged, and the id is then unknown to every later request."""
    inputs = [{k: v for k, v in item.items() if k != "_where"} for item in plan.input_items]
    document = {"response": response, "context": [*plan.context, *inputs, *response["output"]],
                "input_start": len(plan.context), "input_count": len(inputs)}
    try:
        response_store.save(store, inv, document, job)
    except errors.ApiError as err:
        if job is not None:
            raise
        log.error("response not stored: the store failed after upstream answered", extra={
            "response_id": response["id"], "error": err.message})


def _background(plan: Plan, skeleton: dict[str, Any], store: JobStore, inv: Invocation) -> Reply:
    """Queue the native completion on the async engine (a completion job like completionAsync's) and answer
    at once with the stored response, status queued."""
    from shared.jobs.submit import new_operation_id, submit_tasks

    op_id = new_operation_id()
    queued = {**skeleton, "status": "queued"}
    _save(store, inv, queued, plan, job=op_id)
    submit_tasks("completion", [plan.body], inv, op_id=op_id, description="Background Response")
    inv.log_fields.update(operation_id=op_id, background=True)
    return Reply(queued)


def settle(store: JobStore, found: dict[str, Any], document: dict[str, Any], inv: Invocation) -> dict[str, Any]:
    """A background response's document brought up to its job's state; stored once the job has ended."""
    response = document["response"]
    job = store.item(str(found.get("job") or "")) if found.get("job") else None
    if job is None:  # its run's records expired (JOBS_TTL_DAYS) before anyone read the answer
        final = response_object.failed(response, "server_error", "the background run's result expired before the "
                                                                 "response was read (JOBS_TTL_DAYS)")
        settled = {**document, "response": final}
        response_store.replace(store, found, settled)
        return settled
    if job.get("state") != "done":
        state = "queued" if job.get("state") == "queued" else "in_progress"
        return {**document, "response": {**response, "status": state}}
    if job.get("error"):
        error = json.loads(job["error"])
        if error.get("code") == 1:
            final = response_object.failed(response, "", "", state="cancelled")
        else:
            code = {3: "invalid_prompt", 8: "rate_limit_exceeded"}.get(error.get("code"), "server_error")
            final = response_object.failed(response, code, str(error.get("message", "")))
    else:
        result = json.loads(store.get_object(job["result_key"]))
        final = response_object.finished(response, result, document["input_count"],
                                          int(float(job.get("modified_at") or clock.now())))
    settled = {**document, "response": final, "context": [*document["context"], *final["output"]]}
    response_store.replace(store, found, settled)
    return settled


# -- GET / DELETE / cancel / input_items / input_tokens ---------------------------------------------------

class _Upstream(Exception):
    """The caller's response was made by upstream's Responses API: the route is forwarded there."""

    def __init__(self, found: dict[str, Any]) -> None:
        self.found = found


def _current(inv: Invocation) -> tuple[JobStore, dict[str, Any], dict[str, Any]]:
    store = _store(inv)
    found = response_store.owned(inv.path_params.get("response_id", ""), inv, store)
    if found.get("upstream"):
        raise _Upstream(found)
    document = response_store.document(store, found)
    if found.get("status") in response_store.PENDING:
        document = settle(store, found, document, inv)
    return store, found, document


def _forwarded(method: str, action: str) -> Any:
    """The route's operation, forwarded to upstream's Responses API for a response that upstream made."""

    def wrap(operation: Any) -> Any:
        def run(body: None, inv: Invocation) -> Reply:
            try:
                return operation(body, inv)
            except _Upstream as upstream:
                return responses_upstream.forward(method, upstream.found, action, inv)

        run.__doc__ = operation.__doc__
        return run

    return wrap


@_forwarded("GET", "")
def retrieve(_: None, inv: Invocation) -> Reply:
    query = inv.request.query if inv.request is not None else {}
    if query.get("stream") in ("true", "1", "True"):
        raise errors.BadRequestError.field("stream", "replaying a stream is not available here: GET the response")
    return Reply(_current(inv)[2]["response"])


@_forwarded("DELETE", "")
def delete(_: None, inv: Invocation) -> Reply:
    store, found, document = _current(inv)
    if document["response"]["status"] in response_store.PENDING and found.get("job"):
        _cancel_job(store, str(found["job"]))  # nothing keeps running for a response that is gone
    response_store.delete(store, found)
    return Reply({"id": found["id"], "object": "response", "deleted": True})


@_forwarded("POST", "/cancel")
def cancel(_: None, inv: Invocation) -> Reply:
    """Stop a background response (queued or in progress): cancelled, and stays so. A finished one is returned
    as it is; a response that was not created in background cannot be cancelled (OpenAI's answer)."""
    store, found, document = _current(inv)
    if not found.get("background"):
        raise errors.BadRequestError("Cannot cancel a synchronous response.")
    if document["response"]["status"] in response_store.PENDING:
        _cancel_job(store, str(found["job"]))
        document = settle(store, found, document, inv)
        inv.log_fields["cancelled"] = True
    return Reply(document["response"])


def _cancel_job(store: JobStore, op_id: str) -> None:
    if store.finish(op_id, None, 0, {"code": 1, "message": "cancelled by the caller", "details": []}):
        job = store.item(op_id) or {}
        if job.get("limits"):  # what the run reserved of its key's budget (a run still going adds its real usage)
            from shared.config import settings
            from shared.jobs import limits

            limits.release_job(job, settings())


@_forwarded("GET", "/input_items")
def input_items(_: None, inv: Invocation) -> Reply:
    from shared.openai.files import list_body, query_limit

    query = inv.request.query if inv.request is not None else {}
    limit = query_limit(query, 20, 100)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise errors.BadRequestError.field("order", "must be asc or desc")
    _, _, document = _current(inv)
    start = document["input_start"]
    items = document["context"][start:start + document["input_count"]]
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise errors.BadRequestError.field("after", f"{after!r} is not an input item of this response")
        items = items[ids.index(after) + 1:]
    return Reply(list_body(items[:limit], len(items) > limit))


def input_tokens(request: InputTokensRequest, inv: Invocation) -> Reply:
    """POST /v1/responses/input_tokens: the translated request through the native tokenizeCompletion."""
    model_uri = resolve_model(request.model, inv)
    plan = plan_request(request, model_uri, inv, response_store.new_response_id(), stream=False)
    answer = inv.client.tokenize_completion(plan.body, inv.call)
    tokens = answer.body.get("tokens") if isinstance(answer.body, dict) else None
    if not isinstance(tokens, list):
        raise errors.UpstreamError("upstream tokenizeCompletion answer has no tokens", upstream_request_id=answer.request_id)
    return Reply({"object": "response.input_tokens", "input_tokens": len(tokens)})


# -- helpers -------------------------------------------------------------------------------------------

def _store(inv: Invocation) -> JobStore:
    from shared.jobs.store import job_store

    return job_store(inv.settings)
