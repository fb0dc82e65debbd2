"""Submit a JSON Lines file as a batch, watch its progress, write the results: the way to drive a batch.

    python -m local.batch_cli requests.jsonl --url http://127.0.0.1:8080 --model yandexgpt-lite --out results.jsonl

Each input line is one request: {"customId": "...", "messages": [...], "completionOptions": {...}} (customId
and completionOptions optional), or the upstream dataset form {"request": [messages]}. The output has one
line per request, in input order: {"customId", "response"} or {"customId", "error"}.
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
    parser.add_argument("--model", required=True, help="model URI or short name, e.g. yandexgpt-lite")
    parser.add_argument("--api-key", help="caller key, sent as X-Api-Key")
    parser.add_argument("--out", type=Path, help="results file (default: <input>.results.jsonl)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between progress checks")
    parser.add_argument("--timeout", type=float, default=86_400.0, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)
    out = args.out or args.input.with_suffix(".results.jsonl")
    session = requests.Session()
    if args.api_key:
        session.headers["X-Api-Key"] = args.api_key
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


if __name__ == "__main__":
    raise SystemExit(main())
