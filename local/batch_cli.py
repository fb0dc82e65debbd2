"""Submit a JSON Lines file as a batch, watch its progress, write the results: the way to drive a batch.

    python -m local.batch_cli requests.jsonl --url http://127.0.0.1:8080 --model yandexgpt-lite --out results.jsonl

Each input line is one request: {"customId": "...", "messages": [...], "completionOptions": {...}} (customId
and completionOptions optional), or the upstream dataset form {"request": [messages]}. The output has one
line per request, in input order: {"customId", "response"} or {"customId", "error"}.

With --format openai the file is an OpenAI Batch API input file ({"custom_id", "method", "url", "body"} per
line, chat completions or embeddings): it is uploaded to /v1/files, run as a /v1/batches batch, and the
output is OpenAI's output and error lines together, in input order.

    python -m local.batch_cli batch.jsonl --format openai --out results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests


def read_requests(path: Path) -> list[dict[str, Any]]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as err:
            raise SystemExit(f"{path}:{number}: not JSON ({err})") from None
        if isinstance(data, dict) and "request" in data and "messages" not in data:
            data = {"messages": data["request"]}
        items.append(data)
    return items


def bar(done: int, total: int, failed: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}" + (f" ({failed} failed)" if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="API base URL (the gateway)")
    parser.add_argument("--model", help="model URI or short name, e.g. yandexgpt-lite (native format)")
    parser.add_argument("--format", choices=["native", "openai"], default="native",
                        help="native: our request lines and completionBatch; openai: an OpenAI Batch API file")
    parser.add_argument("--api-key", help="caller key, sent as Authorization: Api-Key <key>")
    parser.add_argument("--out", type=Path, help="results file (default: <input>.results.jsonl)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between progress checks")
    parser.add_argument("--timeout", type=float, default=86_400.0, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    out = args.out or args.input.with_suffix(".results.jsonl")
    session = requests.Session()
    if args.api_key:
        session.headers["Authorization"] = f"Api-Key {args.api_key}"
    if args.format == "openai":
        return run_openai(session, args.url, args.input, out, args.interval, args.timeout)
    if not args.model:
        parser.error("--model is required with --format native")
    body = {"modelUri": args.model, "requests": read_requests(args.input)}
    answer = session.post(f"{args.url}/foundationModels/v1/completionBatch", json=body, timeout=120)
    if answer.status_code != 200:
        print(f"submission refused: HTTP {answer.status_code}: {answer.text[:500]}", file=sys.stderr)
        return 2
    operation = answer.json()
    print(f"batch {operation['id']}: {len(body['requests'])} requests", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    last = -1
    while not operation.get("done"):
        if time.monotonic() > deadline:
            print(f"\ngave up waiting; the batch goes on: GET {args.url}/operations/{operation['id']}", file=sys.stderr)
            return 3
        time.sleep(args.interval)
        operation = session.get(f"{args.url}/operations/{operation['id']}", timeout=60).json()
        meta = operation.get("metadata") or {}
        done, total = int(meta.get("completedBatches", 0)), int(meta.get("totalBatches", 0))
        if done < last:
            print("\nwarning: progress went backwards", file=sys.stderr)
        last = done
        print(f"\r{bar(done, total, int(meta.get('failedRequests', 0)))} {meta.get('taskStatus', '')}   ",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if "error" in operation:
        print(f"batch ended: {operation['error'].get('message')}", file=sys.stderr)
        return 1
    response = operation["response"]
    results = session.get(response["resultUrl"], timeout=600)
    results.raise_for_status()
    out.write_bytes(results.content)
    print(f"{response.get('succeeded')} succeeded, {response.get('failed')} failed; results in {out}", file=sys.stderr)
    return 0



TERMINAL = ("completed", "failed", "cancelled", "expired")


def run_openai(session: requests.Session, url: str, path: Path, out: Path, interval: float, timeout: float) -> int:
    """Upload an OpenAI batch file, create the batch, show its progress, write its output and error lines."""
    data = path.read_bytes()
    order: list[str] = []
    endpoint = ""
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            try:
                request = json.loads(line)
            except ValueError:
                continue  # the batch reports it, with its line number
            if isinstance(request, dict):
                order.append(str(request.get("custom_id")))
                endpoint = endpoint or str(request.get("url", ""))
    uploaded = session.post(f"{url}/v1/files", files={"file": (path.name, data, "application/jsonl")},
                            data={"purpose": "batch"}, timeout=120)
    if uploaded.status_code != 200:
        print(f"upload refused: HTTP {uploaded.status_code}: {uploaded.text[:500]}", file=sys.stderr)
        return 2
    created = session.post(f"{url}/v1/batches", json={"input_file_id": uploaded.json()["id"], "completion_window": "24h",
                                                      "endpoint": endpoint or "/v1/chat/completions"}, timeout=120)
    if created.status_code != 200:
        print(f"batch refused: HTTP {created.status_code}: {created.text[:500]}", file=sys.stderr)
        return 2
    batch = created.json()
    print(f"batch {batch['id']}: {batch['request_counts']['total']} requests", file=sys.stderr)
    deadline = time.monotonic() + timeout
    while batch["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            print(f"\ngave up waiting; the batch goes on: GET {url}/v1/batches/{batch['id']}", file=sys.stderr)
            return 3
        time.sleep(interval)
        batch = session.get(f"{url}/v1/batches/{batch['id']}", timeout=60).json()
        counts = batch["request_counts"]
        print(f"\r{bar(counts['completed'] + counts['failed'], counts['total'], counts['failed'])} "
              f"{batch['status'].upper()}   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if batch["status"] == "failed":
        for error in (batch.get("errors") or {}).get("data") or []:
            where = f"{path}:{error['line']}: " if error.get("line") else ""
            print(f"{where}{error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 1
    lines: dict[str, bytes] = {}
    for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
        if file_id:
            content = session.get(f"{url}/v1/files/{file_id}/content", timeout=600)
            content.raise_for_status()
            for line in content.content.splitlines():
                lines[str(json.loads(line).get("custom_id"))] = line
    out.write_bytes(b"".join(lines[c] + b"\n" for c in order if c in lines))
    counts = batch["request_counts"]
    print(f"{counts['completed']} succeeded, {counts['failed'] + counts['total'] - counts['completed'] - counts['failed']}"
          f" failed or not run ({batch['status']}); results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
