"""API Gateway function authorizer: lets a request through when its X-Api-Key is one of the caller keys.

Only SHA-256 hashes of the keys are stored (Lockbox, delivered as CALLER_KEY_SHA256 =
"name:hex,name:hex"); a presented key is hashed and compared with every stored hash in constant time.
The matching key's name reaches the backend as requestContext.authorizer.caller.
"""

import hashlib
import hmac
import os
from typing import Any


def _keys() -> list[tuple[str, bytes]]:
    keys = []
    for entry in os.environ.get("CALLER_KEY_SHA256", "").split(","):
        name, _, digest = entry.strip().rpartition(":")
        if len(digest) == 64:
            keys.append((name or "caller", bytes.fromhex(digest)))
    return keys


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    presented = headers.get("x-api-key", "")
    if not presented:
        return {"isAuthorized": False}
    digest = hashlib.sha256(presented.encode()).digest()
    caller = None
    for name, stored in _keys():  # compare with every key, always: no early exit to time
        if hmac.compare_digest(digest, stored):
            caller = name
    return {"isAuthorized": True, "context": {"caller": caller}} if caller else {"isAuthorized": False}
