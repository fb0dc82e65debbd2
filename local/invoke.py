"""Invoke one handler with an event file, as the platform would: python -m local.invoke FUNCTION EVENT.json"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from local import functions
from local.context import LocalContext
from local.stack import upstream


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("function", choices=functions.names())
    parser.add_argument("event", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the invocation may run")
    args = parser.parse_args()
    event = json.loads(args.event.read_text(encoding="utf-8"))
    print(f"upstream: {upstream()}", file=sys.stderr)
    result = functions.load(args.function)(event, LocalContext(args.function, timeout_s=args.timeout))
    if isinstance(result, dict) and isinstance(result.get("body"), str):
        try:
            result = {**result, "body": json.loads(result["body"])}
        except ValueError:
            pass
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
