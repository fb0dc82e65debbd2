"""What only upstream's own Responses API can do, passed through to it (Settings.responses_endpoint): models
upstream serves only in its OpenAI mode, and requests that need a hosted tool it runs (file_search, mcp,
code_interpreter, image_generation, or a tool_choice that forces web_search). The caller's body goes as it
came, with the model's full URI, our credential and the model's folder as the OpenAI project.

Upstream's response ids are shared by the whole folder, so the gateway records which caller owns each one it
stored (a record like a translated response's, marked `upstream`): retrieve, delete, cancel and input_items
on it are checked as for our own before they are forwarded, and another caller's id is unknown. Continuing
across the two kinds (a translated request with an upstream response's id, or the reverse) is refused with a
400 that says so, never answered with half the history; an `item_reference` in a passed-through request is
refused too, since upstream would resolve any item of the folder, whoever made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import clock, errors
from shared.openai import response_object, response_store
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.runtime import Invocation

ResponseCreateRequest = Any  # responses_api's request model (imported from there, never the other way)

FORCING = ("file_search", "mcp", "code_interpreter", "image_generation")  # a tool only upstream runs
WEB_SEARCH = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11")


def needed(request: ResponseCreateRequest, model_name: str, passthrough_models: frozenset[str]) -> bool:
    """Whether the request needs upstream's Responses API: a pass-through model, or a hosted tool only it runs."""
    if model_name in passthrough_models:
        return True
    kinds = {getattr(tool, "type", None) for tool in request.tools or []}
    choice = request.tool_choice
    forced = choice.get("type") if isinstance(choice, dict) else None
    return bool(kinds & set(FORCING)) or forced in WEB_SEARCH or forced in FORCING


def create(request: ResponseCreateRequest, model_uri: str, inv: Invocation, references: list[int]) -> Reply:
    """Pass the request through; `references`: the input positions of item_reference items (refused)."""
    if references:
        raise errors.BadRequestError.field(f"input[{references[0]}]", "item_reference is not available for a model "
                                                                      "or tool served by upstream's Responses API: "
                                                                      "send the item itself")
    if not inv.settings.responses_endpoint:
        name = model_uri.split("://", 1)[1].split("/")[1]
        raise errors.BadRequestError.field(
            "model" if name in inv.settings.passthrough_models else "tools",
            f"{name} is served only through upstream's Responses API, which this deployment does not reach "
            "(FM_RESPONSES_URL)" if name in inv.settings.passthrough_models else
            "a hosted tool (file_search, mcp, code_interpreter, image_generation, or a forced web_search) needs "
            "upstream's Responses API, which this deployment does not reach (FM_RESPONSES_URL)")
    folder = model_uri.split("://", 1)[1].split("/")[0]
    store = None
    if request.previous_response_id is not None or request.store is not False:
        from shared.jobs.store import job_store

        store = job_store(inv.settings)
    if request.previous_response_id is not None:
        assert store is not None
        found = response_store.record(store, request.previous_response_id, inv)
        if found is None:
            missing = errors.BadRequestError.field(
                "previous_response_id", f"Previous response with id '{request.previous_response_id}' not found.")
            missing.code = "previous_response_not_found"
            raise missing
        if not found.get("upstream"):
            raise errors.BadRequestError.field(
                "previous_response_id", "continues a conversation this gateway translated for a native model; "
                                        "upstream's Responses API (needed for this model or tool) cannot see it: "
                                        "send its items as input instead")
    body = request.model_dump(by_alias=True, exclude_unset=True, mode="json")
    body["model"] = model_uri
    inv.log_fields["passthrough"] = True
    body = inv.admit(body, "responses", model_uri)  # a background run's usage is not charged (docs/budgets-and-limits.md)
    answer = inv.client.responses("POST", "", body, inv.call, folder, stream=bool(request.stream))
    inv.log_fields.update(upstream_request_id=answer.request_id, attempts=answer.attempts)
    if request.background:
        inv.log_fields["background"] = True  # upstream runs it: counted when its finished answer is read (forward)
    if request.stream:
        events = [_json(event) for event in answer.body or []]
        first = next((e.get("response") for e in events if isinstance(e.get("response"), dict)), None)
        last = next((e["response"] for e in reversed(events) if isinstance(e.get("response"), dict)
                     and isinstance(e["response"].get("usage"), dict)), None)
        if last is not None:
            inv.log_fields.update(response_object.log_fields(last["usage"]))
        if store is not None and first is not None and first.get("id"):
            _own(store, inv, str(first["id"]), bool(request.background), folder)
        return Reply([event for event in answer.body or []], sse=True)
    if not isinstance(answer.body, dict) or not answer.body.get("id"):
        raise errors.UpstreamError("upstream's Responses API answered without a response id",
                                   upstream_request_id=answer.request_id)
    if store is not None:
        _own(store, inv, str(answer.body["id"]), bool(request.background), folder)
    inv.log_fields.update(response_object.log_fields(answer.body.get("usage")))
    return Reply(answer.body)


def _own(store: Any, inv: Invocation, response_id: str, background: bool, folder: str) -> None:
    """Record that this caller owns the upstream response (an id it cannot use was never ours to record)."""
    if not response_store.well_formed(response_id):
        return
    now = int(clock.now())
    store.put_record(response_id, {"kind": "response", "upstream": True, "created_by": inv.caller, "created_at": now,
                                   "expires_at": int(now + inv.settings.responses_ttl_days * 86400),
                                   "status": "upstream", "background": background, "folder": folder})


def forward(method: str, found: dict[str, Any], action: str, inv: Invocation) -> Reply:
    """A route on the caller's upstream response, forwarded; upstream's answer as it is."""
    if not inv.settings.responses_endpoint:
        raise errors.UpstreamUnavailableError("this response was made by upstream's Responses API, which this "
                                              "deployment no longer reaches (FM_RESPONSES_URL)")
    from urllib.parse import urlencode

    query = urlencode(inv.request.query) if inv.request is not None and action == "/input_items" else ""
    path = f"/{found['id']}{action}" + (f"?{query}" if query else "")
    answer = inv.client.responses(method, path, None, inv.call, found.get("folder") or inv.settings.folder_id)
    if method == "GET" and not action and found.get("background"):
        _count_background(found, answer.body, inv)
    if method == "DELETE":
        _store(inv).delete_record(found["id"])
    return Reply(answer.body)


def _count_background(found: dict[str, Any], body: Any, inv: Invocation) -> None:
    """A background response upstream ran: its usage enters the ledger the first time its finished answer is
    read here (keyed by the response id, so reading it again counts nothing); one nobody reads is not counted."""
    if not isinstance(body, dict) or body.get("status") not in ("completed", "incomplete") or not isinstance(
            body.get("usage"), dict):
        return
    from shared.jobs import usage

    entry = usage.Entry(caller=str(found.get("created_by") or inv.caller), model=str(body.get("model") or ""),
                        route="createResponse", mode="sync", door="job", key=f"resp#{found['id']}",
                        request_id=str(found["id"]), **usage.openai_usage(body["usage"]))
    usage.record(entry, inv.settings)


def _store(inv: Invocation) -> Any:
    from shared.jobs.store import job_store

    return job_store(inv.settings)


def _json(text: Any) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
