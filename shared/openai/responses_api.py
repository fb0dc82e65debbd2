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

The parameter table (the README's Responses section shows the same) follows chat.py: DEFAULT_ONLY are
accepted at the value that changes nothing, REFUSED are a 400 whenever set, IGNORED are accepted and
echoed or dropped.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from shared import clock, errors, logs
from shared.native.models import NonEmptyStr, StrictBool, StrictStr, model_uri_pattern, validate
from shared.openai import response_object, response_store, responses_upstream, translate
from shared.openai.chat import resolve_model
from shared.openai.models import OpenAIBody, check_function_name, check_metadata, describe_rules, refuse_unsupported
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("openai.responses")

DEFAULT_ONLY: dict[str, Any] = {"top_p": 1, "top_logprobs": 0, "truncation": "disabled"}
REFUSED: dict[str, str] = {
    "conversation": "the Conversations API is not available here; chain responses with previous_response_id",
    "prompt": "stored prompt templates are not available here; send instructions and input",
    "moderation": "OpenAI moderation is not available on this model",
    "context_management": "server-side compaction is not available on this model",
}
IGNORED = ("include", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
           "service_tier", "max_tool_calls", "stream_options", "client_metadata", "background_options",
           "reasoning.summary")
HOSTED = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
          "mcp", "code_interpreter", "image_generation", "computer_use_preview", "computer", "local_shell", "shell",
          "apply_patch", "custom", "tool_search")

Number = Annotated[float, Field(strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
NAME_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
NAMESPACE_PATTERN = "^[A-Za-z0-9-]*(_[A-Za-z0-9-]+)*_?$"  # 1-64; no "__": that joins a namespace to its functions


# -- the request, as the wire has it -----------------------------------------------------------------------

class _ResponseOpen(OpenAIBody):
    model_config = ConfigDict(extra="allow", defer_build=True)


class ResponseTextPart(OpenAIBody):
    type: Literal["input_text", "output_text", "text"]
    text: StrictStr
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class ResponseRefusalPart(OpenAIBody):
    type: Literal["refusal"]
    refusal: StrictStr


class ResponseMediaPart(_ResponseOpen):
    """input_image / input_file: a 400 on this model, named by where it is."""

    type: Literal["input_image", "input_file"]


ResponsePart = ResponseTextPart | ResponseRefusalPart | ResponseMediaPart


class ResponseMessageItem(OpenAIBody):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ResponsePart]
    id: StrictStr | None = None
    status: StrictStr | None = None
    phase: StrictStr | None = None


class ResponseFunctionCallItem(OpenAIBody):
    type: Literal["function_call"]
    call_id: NonEmptyStr
    name: NonEmptyStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None
    namespace: StrictStr | None = None


class ResponseFunctionCallOutputItem(OpenAIBody):
    type: Literal["function_call_output"]
    call_id: NonEmptyStr
    output: str | list[ResponsePart]
    id: StrictStr | None = None
    status: StrictStr | None = None


class ResponseReasoningItem(_ResponseOpen):
    """Dropped: native reasoning is hidden, so there is nothing to give back to the model. Codex sends no id."""

    type: Literal["reasoning"]


class ResponseItemReference(OpenAIBody):
    type: Literal["item_reference"] | None = None
    id: NonEmptyStr


ITEMS: dict[str, type[OpenAIBody]] = {"message": ResponseMessageItem, "function_call": ResponseFunctionCallItem,
                                      "function_call_output": ResponseFunctionCallOutputItem, "reasoning": ResponseReasoningItem,
                                      "item_reference": ResponseItemReference}
ResponseInputItem = ResponseMessageItem | ResponseFunctionCallItem | ResponseFunctionCallOutputItem | ResponseReasoningItem | ResponseItemReference


def _sub(model: type[OpenAIBody], value: Any, where: str) -> OpenAIBody:
    """A nested object checked by its model; its first problem named under `where` (the '@' path convention)."""
    try:
        return validate(model, value)
    except errors.BadRequestError as err:
        detail = err.details[0] if err.details else {"field": "", "description": err.message}
        field = detail.get("field", "")
        field = "" if field == "body" else field
        joined = where + ("" if not field or field.startswith("[") or not where else ".") + field
        rule = detail.get("description", err.message)
        raise ValueError(f"@{joined}: {rule}" if joined else rule) from None


def _items(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError("must be a string or an array of input items")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"@[{index}]: must be an object")
        kind = item.get("type")
        if kind is None:
            kind = "message" if "role" in item else "item_reference" if "id" in item else None
        if not isinstance(kind, str) or kind not in ITEMS:
            raise ValueError(f"@[{index}].type: must be one of {', '.join(ITEMS)} (hosted tool items are not "
                             "available on this model)")
        items.append(_sub(ITEMS[kind], item, f"[{index}]"))
    return items


class ResponseFunctionTool(OpenAIBody):
    type: Literal["function"]
    name: StrictStr = Field(json_schema_extra={"pattern": NAME_PATTERN})
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None
    # newer keys clients may send; nothing on the native side uses them
    defer_loading: StrictBool | None = None
    output_schema: dict[str, Any] | None = None
    allowed_callers: list[StrictStr] | None = None

    _name = field_validator("name")(classmethod(lambda cls, value: check_function_name(value)))


class ResponseNamespaceFunction(ResponseFunctionTool):
    model_config = ConfigDict(extra="allow", defer_build=True)  # `async` and whatever a namespace adds


class ResponseNamespaceTool(_ResponseOpen):
    type: Literal["namespace"]
    name: StrictStr = Field(min_length=1, max_length=64, json_schema_extra={"pattern": NAMESPACE_PATTERN})
    description: StrictStr | None = None
    tools: list[dict[str, Any]]


class ResponseHostedTool(_ResponseOpen):
    type: Literal[HOSTED]  # type: ignore[valid-type]


def _tools(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("must be an array of tools")
    tools = []
    for index, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str) or kind not in ("function", "namespace", *HOSTED):
            raise ValueError(f"@[{index}].type: must be function, namespace or a hosted tool type "
                             f"({', '.join(HOSTED)})")
        model = {"function": ResponseFunctionTool, "namespace": ResponseNamespaceTool}.get(kind, ResponseHostedTool)
        checked = _sub(model, tool, f"[{index}]")
        if isinstance(checked, ResponseNamespaceTool):
            if not 1 <= len(checked.name) <= 64 or NAMESPACE_SEPARATOR in checked.name or not all(
                    c.isascii() and (c.isalnum() or c in "_-") for c in checked.name):
                raise ValueError(f"@[{index}].name: must be 1-64 letters, digits, dashes or single underscores")
            for number, inner in enumerate(checked.tools):
                if isinstance(inner, dict) and inner.get("type") == "function":
                    _sub(ResponseNamespaceFunction, inner, f"[{index}].tools[{number}]")
        tools.append(checked)
    return tools


NAMESPACE_SEPARATOR = response_object.NAMESPACE_SEPARATOR


class ResponseNamedFunction(OpenAIBody):
    type: Literal["function"]
    name: NonEmptyStr


class ResponseAllowedTools(_ResponseOpen):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class ResponseHostedChoice(_ResponseOpen):
    type: StrictStr


def _tool_choice(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value in translate.TOOL_CHOICE_MODES):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError("must be 'none', 'auto', 'required' or a tool choice object")
    if value["type"] == "function":
        return _sub(ResponseNamedFunction, value, "").model_dump()
    if value["type"] == "allowed_tools":
        checked = _sub(ResponseAllowedTools, value, "")
        for index, tool in enumerate(checked.tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise ValueError(f"@tools[{index}]: must be a tool object with a type")
        return value
    return value  # a hosted or other tool kind: refused in translation, since it is never offered


class ResponseTextFormat(OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = Field(None, json_schema_extra={"pattern": NAME_PATTERN})
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None
    description: StrictStr | None = None


class ResponseTextConfig(OpenAIBody):
    format: ResponseTextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponseReasoningConfig(OpenAIBody):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None
    mode: Literal["standard", "pro"] | None = None


class ResponseStreamOptions(OpenAIBody):
    include_obfuscation: StrictBool | None = None


class ResponseCreateRequest(OpenAIBody):
    """The body of POST /v1/responses (openai 3.57.0's parameters; unknown ones are refused by name)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: describe_rules(schema, DEFAULT_ONLY, REFUSED))

    model: NonEmptyStr = Field(json_schema_extra={"pattern": model_uri_pattern("gpt")})
    input: Any = None  # a string or a list of input items (validated by _items)
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = None
    store: StrictBool | None = None
    background: StrictBool | None = None
    stream: StrictBool | None = None
    stream_options: ResponseStreamOptions | None = None
    tools: Any = None  # validated by _tools
    tool_choice: Any = None  # validated by _tool_choice
    parallel_tool_calls: StrictBool | None = None
    max_output_tokens: StrictInt | None = Field(None, ge=16)
    max_tool_calls: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    text: ResponseTextConfig | None = None
    reasoning: ResponseReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, StrictStr] | None = None
    include: list[StrictStr] | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    prompt_cache_retention: StrictStr | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: StrictStr | None = None
    client_metadata: dict[str, Any] | None = None  # Codex sends it
    background_options: dict[str, Any] | None = None
    conversation: StrictStr | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    context_management: list[Any] | None = None

    @field_validator("input", mode="plain", json_schema_input_type=str | list[ResponseInputItem] | None)
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        return None if value is None else _items(value)

    @field_validator("tools", mode="plain", json_schema_input_type=list[ResponseFunctionTool | ResponseNamespaceTool | ResponseHostedTool] | None)
    @classmethod
    def _check_tools(cls, value: Any) -> Any:
        return _tools(value)

    @field_validator("tool_choice", mode="plain", json_schema_input_type=(
        Literal["none", "auto", "required"] | ResponseNamedFunction | ResponseAllowedTools | ResponseHostedChoice | None))
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        return _tool_choice(value)

    _metadata = field_validator("metadata")(classmethod(lambda cls, value: check_metadata(value)))


class InputTokensRequest(ResponseCreateRequest):
    """The body of POST /v1/responses/input_tokens: the create body's fields, `model` required here too."""


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
    answer = inv.client.completion(plan.body, inv.call)
    inv.log_fields.update(upstream_request_id=answer.request_id, attempts=answer.attempts)
    first = len(plan.input_items)
    now = int(clock.now())
    if request.stream:
        events, last = response_object.stream_events(answer.body, head, first, now)
        final = events[-1]["response"]
        if last is not None:
            _log_usage(inv, final["usage"])
        if store is not None:
            _save(store, inv, final, plan)
        return Reply(events, sse=True)
    result = answer.body.get("result") if isinstance(answer.body, dict) else None
    if not isinstance(result, dict):
        raise errors.UpstreamError("upstream completion answer has no result object", upstream_request_id=answer.request_id)
    response = response_object.finished(head, result, first, now)
    _log_usage(inv, response["usage"])
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
    input_items = _input_items(request.input, inv, response_id, len(context))
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

def _input_items(value: Any, inv: Invocation | None, response_id: str, first: int) -> list[dict[str, Any]]:
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
        data.setdefault("id", response_object.item_id(data["type"], response_id, first + len(out)))
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
            final = response_object.failed(response, "server_error" if error.get("code") in (13, 14, 2, 4)
                                           else "invalid_prompt", str(error.get("message", "")))
    else:
        result = json.loads(store.get_object(job["result_key"]))
        final = response_object.finished(response, result, document["input_start"] + document["input_count"],
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
    store.finish(op_id, None, 0, {"code": 1, "message": "cancelled by the caller", "details": []})


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


def _log_usage(inv: Invocation, usage: Any) -> None:
    if isinstance(usage, dict):
        details = usage.get("output_tokens_details")
        inv.log_fields.update(input_tokens=usage.get("input_tokens"), completion_tokens=usage.get("output_tokens"),
                              total_tokens=usage.get("total_tokens"),
                              reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None)
