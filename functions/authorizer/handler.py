"""API Gateway function authorizer: lets a request through when it carries one of the caller keys.

The key may come as `Authorization: Bearer <key>` (what every OpenAI client sends), `Authorization:
Api-Key <key>` (Yandex Cloud's own style), or `X-Api-Key: <key>`. The gateway spec's one security
scheme is `Authorization` (the form API Gateway's docs describe), so behind the gateway a request
without it is a 401 before this runs; API Gateway caches a verdict under that header's value, so an
X-Api-Key sent beside it must carry the same key, or the request is refused: a cached verdict can
then never have been earned by another key.

Only SHA-256 hashes of the keys are stored (Lockbox, delivered as CALLER_KEY_SHA256 =
"name:hex,name:hex"); a presented key is hashed and compared with every stored hash in constant time.
The matching key's name reaches the backend as requestContext.authorizer.caller.
"""

import hashlib
import hmac
import os
from typing import Any

SCHEMES = ("bearer", "api-key")  # Authorization: <scheme> <key>, scheme names case-insensitive (RFC 9110 §11.1)


RESERVED = "anonymous"  # the name of every caller with no key (auth_mode iam, no authorizer): never a key's


def _keys() -> list[tuple[str, bytes]]:
    """The stored keys; an entry that is not `name:<64 hex digits>`, or is named "anonymous", lets nobody in
    (Terraform and `make api-key` refuse both, so only a hand-written value can have one)."""
    keys = []
    for entry in os.environ.get("CALLER_KEY_SHA256", "").split(","):
        name, _, digest = entry.strip().rpartition(":")
        if len(digest) != 64 or name == RESERVED:
            continue
        try:
            keys.append((name or "caller", bytes.fromhex(digest)))
        except ValueError:  # not hex
            continue
    return keys


def presented_key(headers: dict[str, Any]) -> str | None:
    """The one key the request presents, or None: no key, an unknown Authorization scheme, or two different keys."""
    lower = {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}
    found = []
    authorization = lower.get("authorization", "")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() not in SCHEMES or not credentials.strip():
            return None
        found.append(credentials.strip())
    if lower.get("x-api-key"):
        found.append(lower["x-api-key"])
    return found[0] if found and len(set(found)) == 1 else None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    presented = presented_key(event.get("headers") or {})
    if not presented:
        return {"isAuthorized": False}
    digest = hashlib.sha256(presented.encode()).digest()
    caller = None
    for name, stored in _keys():  # compare with every key, always: no early exit to time
        if hmac.compare_digest(digest, stored):
            caller = name
    return {"isAuthorized": True, "context": {"caller": caller}} if caller else {"isAuthorized": False}
