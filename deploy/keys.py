"""Manage caller keys stored as data, through the admin API (standard library only: any python3 >= 3.9).

    export FM_URL=https://<gateway domain>  FM_ADMIN_KEY=<the admin caller's key>
    python -m deploy.keys create alice --rpm 60 --tpm 20000 --monthly-budget 500 --models yandexgpt-lite
    python -m deploy.keys list
    python -m deploy.keys show alice
    python -m deploy.keys update alice --rpm 120 --clear monthly_budget
    python -m deploy.keys rotate alice
    python -m deploy.keys revoke alice

`create` and `rotate` print the secret once; nothing else ever shows it. Answers are printed as JSON; an
error prints the API's message and exits 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

LIMITS = ("rpm", "tpm", "monthly_tokens", "monthly_budget")


def call(url: str, admin_key: str, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers={
        "Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (the user's own URL)
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            message = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = text[:300] or err.reason
        raise SystemExit(f"{method} {path}: {err.code} {message}") from None


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in LIMITS:
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.expires_in_days is not None:
        body["expires_at"] = int(time.time() + args.expires_in_days * 86400)
    for name in getattr(args, "clear", None) or []:
        body["expires_at" if name == "expires" else name] = None
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("FM_URL"), help="the API's base URL (FM_URL)")
    parser.add_argument("--admin-key", default=os.environ.get("FM_ADMIN_KEY"), help="the admin key (FM_ADMIN_KEY)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("create", "update"):
        sub = commands.add_parser(name)
        sub.add_argument("name")
        sub.add_argument("--models", help="comma-separated allow-list (names or full URIs)")
        sub.add_argument("--rpm", type=int)
        sub.add_argument("--tpm", type=int)
        sub.add_argument("--monthly-tokens", dest="monthly_tokens", type=int)
        sub.add_argument("--monthly-budget", dest="monthly_budget", type=float)
        sub.add_argument("--expires-in-days", dest="expires_in_days", type=float)
        if name == "update":
            sub.add_argument("--clear", action="append", choices=["models", *LIMITS, "expires"],
                             help="remove a limit, the allow-list or the expiry (repeatable)")
    commands.add_parser("list")
    for name in ("show", "rotate", "revoke"):
        commands.add_parser(name).add_argument("name")
    args = parser.parse_args(argv)
    if not args.url or not args.admin_key:
        parser.error("set FM_URL and FM_ADMIN_KEY (or --url and --admin-key)")
    path = "/admin/keys" + (f"/{quote(args.name, safe='')}" if getattr(args, "name", None) else "")
    if args.command == "create":
        answer = call(args.url, args.admin_key, "POST", "/admin/keys", {"name": args.name, **_fields(args)})
    elif args.command == "update":
        answer = call(args.url, args.admin_key, "PATCH", path, _fields(args))
    elif args.command == "list":
        answer = call(args.url, args.admin_key, "GET", path)
    elif args.command == "show":
        answer = call(args.url, args.admin_key, "GET", path)
    elif args.command == "rotate":
        answer = call(args.url, args.admin_key, "POST", path + "/rotate")
    else:
        answer = call(args.url, args.admin_key, "DELETE", path)
    if isinstance(answer, dict) and "key" in answer:
        print(f"The key for {answer['name']} is shown once, below (send it as Authorization: Bearer <key>).",
              file=sys.stderr)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
