"""Make a caller API key: print the key (give it to the caller, once) and its SHA-256 for terraform.tfvars."""

from __future__ import annotations

import hashlib
import re
import secrets
import sys


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "caller"
    if not re.match(r"^[A-Za-z0-9_.-]{1,40}$", name):
        print("the name must be 1-40 letters, digits, dots, dashes or underscores", file=sys.stderr)
        return 2
    if name == "anonymous":  # the caller nothing names (auth_mode = iam, or no gateway): its work is shared
        print("anonymous is the name of callers nothing names; a key by that name would share their work",
              file=sys.stderr)
        return 2
    key = "fmk_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    print(f"API key for {name} (shown once; send it as Authorization: Api-Key <key> or Bearer <key>):\n  {key}\n")
    print(f"Add to caller_api_key_sha256 in terraform/terraform.tfvars, then make deploy:\n  {name} = \"{digest}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
