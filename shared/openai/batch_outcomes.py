"""The lines of an OpenAI batch's output and error files, from what the engine recorded: plain data in and
out (no store, no clock), so every promise about a line is checked in milliseconds; batch_output.py reads
the records and writes the files.

One outcome per request, in input order, each {"index", "ok" (its line goes to the output file),
"failed" (upstream refused or failed it), "ran", "line", "body" (a success's answer, for the usage sum),
"native" (the native door's result line)}. A line:
    success: {"id": "batch_req_<job>_<n>", "custom_id", "response": {"status_code": 200, "request_id": <the
        upstream operation's id for a chat request>, "body": <what the sync route returns>}, "error": null}
    refused or failed upstream: "response": {"status_code": <the sync route's>, "request_id", "body":
        {"error": {"message", "type", "param", "code"}}}, "error": null
    never run: "response": null, "error": {"code": "batch_cancelled" | "batch_expired" | "batch_failed", "message"}
"""

from __future__ import annotations

import json
from typing import Any

from shared import errors
from shared.jobs.store import item_id
from shared.openai import batch_lines

STOPPED = {1: ("batch_cancelled", "This request was not run: the batch was cancelled."),
           4: ("batch_expired", "This request could not be executed before the completion window expired.")}
FAILED = ("batch_failed", "This request was not run: the batch failed ({reason}).")


def chat_outcomes(op_id: str, total: int, records: dict[int, dict[str, Any]], requests: dict[int, dict[str, Any]],
                  door: dict[str, Any], stop: int | None, error: Any, created: int) -> list[dict[str, Any]]:
    """A chat or Responses batch: `records` are the engine's item records by index, `requests` the requests as
    their chunks hold them (needed for a request without a record, and for a Responses line's skeleton);
    `stop` the job's error code when it was stopped (cancelled, expired, failed), `created` the answers' time."""
    responses = door.get("endpoint") == batch_lines.RESPONSES
    custom_ids = {index: str(item["customId"]) for index, item in requests.items()}
    outcomes = []
    for index in range(total):
        record = records.get(index) or {}
        custom_id = record.get("custom_id") or custom_ids.get(index, str(index))
        request_id = record.get("upstream_id") or item_id(op_id, index)
        if record.get("state") != "done":
            outcomes.append(not_run(op_id, index, custom_id, stop, error))
            continue
        outcome = json.loads(record.get("outcome") or "{}")
        if not record.get("failed"):
            if responses:
                body = batch_lines.responses_answer(outcome, requests[index]["response"], created)
            else:
                body = batch_lines.chat_answer(outcome, door.get("model", ""), f"chatcmpl-{op_id}-{index}", created)
            outcomes.append(success(op_id, index, custom_id, request_id, body, {"customId": custom_id,
                                                                                  "response": outcome}))
        elif stop is not None and outcome.get("code") in (1, stop):  # stopped by the cancel, expiry or failure
            outcomes.append(not_run(op_id, index, custom_id, stop, error))
        else:
            outcomes.append(failure(op_id, index, custom_id, request_id, outcome))
    return outcomes


def embedding_outcomes(op_id: str, tasks: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]],
                       door: dict[str, Any], stop: int | None, error: Any) -> list[dict[str, Any]]:
    """An embeddings batch: for each task, its requests and (when it finished) its answers in the same order."""
    outcomes = []
    for requests, answers in tasks:
        for position, request in enumerate(requests):
            index, custom_id = int(request["index"]), str(request["customId"])
            answer = answers[position] if answers is not None and position < len(answers) else None
            request_id = f"{op_id}-{index}"
            if answer is None:
                outcomes.append(not_run(op_id, index, custom_id, stop, error))
            elif "error" in answer:
                outcomes.append(failure(op_id, index, custom_id, request_id, answer["error"]))
            else:
                body = batch_lines.embeddings_answer(answer, door.get("model", ""), request.get("encodingFormat", "float"))
                outcomes.append(success(op_id, index, custom_id, request_id, body,
                                        {"customId": custom_id, "response": answer}))
    return sorted(outcomes, key=lambda o: o["index"])


def success(op_id: str, index: int, custom_id: str, request_id: str, body: dict[str, Any],
            native: dict[str, Any]) -> dict[str, Any]:
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": None}
    return {"index": index, "ok": True, "failed": False, "ran": True, "line": line, "body": body, "native": native}


def failure(op_id: str, index: int, custom_id: str, request_id: str, status: Any) -> dict[str, Any]:
    """A request upstream refused or failed: the error the sync route would have answered, in OpenAI's shape."""
    status = status if isinstance(status, dict) else {}
    grpc = int(status.get("code", 2) or 2)
    http = errors.GRPC_TO_HTTP.get(grpc, 500)
    err = errors.from_upstream(http, grpc, str(status.get("message", "")), None)
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id,
            "response": {"status_code": err.status, "request_id": request_id, "body": err.to_openai_body()},
            "error": None}
    return {"index": index, "ok": False, "failed": True, "ran": True, "line": line, "body": None,
            "native": {"customId": custom_id, "error": status}}


def not_run(op_id: str, index: int, custom_id: str, stop: int | None, error: Any) -> dict[str, Any]:
    if stop in STOPPED:
        code, message = STOPPED[stop]
    else:
        reason = error.get("message", "") if isinstance(error, dict) else "unknown"
        code, message = FAILED[0], FAILED[1].format(reason=reason)
    line = {"id": f"batch_req_{op_id}_{index}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}
    return {"index": index, "ok": False, "failed": False, "ran": False, "line": line, "body": None,
            "native": {"customId": custom_id, "error": {"code": stop or 2, "message": message, "details": []}}}


def usage(bodies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Token usage summed over the answers, in the Batch object's shape."""
    if not bodies:
        return None

    def total(body: dict[str, Any], chat: str, responses: str) -> int:  # a chat answer's usage name, or a Response's
        usage = body.get("usage") or {}
        return int(usage.get(chat, usage.get(responses, 0)) or 0)

    prompt = sum(total(b, "prompt_tokens", "input_tokens") for b in bodies)
    output = sum(total(b, "completion_tokens", "output_tokens") for b in bodies)
    reasoning = sum(int(((b.get("usage") or {}).get("completion_tokens_details")
                         or (b.get("usage") or {}).get("output_tokens_details") or {}).get("reasoning_tokens", 0)
                        or 0) for b in bodies)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": prompt + output}
