"""API Gateway function authorizer: lets a request through when it carries one of the caller keys.

The key may come as `Authorization: Bearer <key>` (what every OpenAI client sends), `Authorization:
Api-Key <key>` (Yandex Cloud's own style), or `X-Api-Key: <key>`. The gateway spec's one security
scheme is `Authorization` (the form API Gateway's docs describe), so behind the gateway a request
without it is a 401 before this runs; API Gateway caches a verdict under that header's value, so an
X-Api-Key sent beside it must carry the same key, or the request is refused: a cached verdict can
then never have been earned by another key.

Two kinds of key, both kept only as SHA-256 hashes:
- configured keys (Terraform / Lockbox, delivered as CALLER_KEY_SHA256 = "name:hex,name:hex"): the
  bootstrap and admin keys; a presented key is hashed and compared with every one in constant time;
- keys stored as data (the admin API, shared/jobs/keys.py), read when no configured key matches: one
  consistent GetItem of `apikey#sha256#<digest>` in the job table, remembered by this instance for
  FM_KEY_CACHE_S (10 s; found or not). A revoked key's record is gone, an expired one is refused.
The key's name reaches the backend as requestContext.authorizer.caller and, for a stored key, its policy
(models, limits, budgets) as requestContext.authorizer.policy (shared/policy.py). So a revocation, an
expiry or a policy change reaches requests within FM_KEY_CACHE_S + the gateway's result cache
(authorizer_result_ttl_in_seconds, Terraform's authorizer_cache_seconds): 40 s by default.

The store is read only when it is configured (DOCAPI_ENDPOINT); if it fails, the invocation fails (the
gateway answers 500, a retryable server error) rather than refusing a key that may be valid.
"""

import hashlib
import hmac
import os
import threading
from typing import Any

from shared import clock, logs

log = logs.get_logger("authorizer")

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
    configured = _keys()
    for name, stored in configured:  # compare with every key, always: no early exit to time
        if hmac.compare_digest(digest, stored):
            caller = name
    if caller:
        return {"isAuthorized": True, "context": {"caller": caller}}
    policy = _stored(digest.hex())
    # a configured key's name belongs to it alone: a stored key made before a configured key took its name
    # (the admin API refuses the names it knows of) would otherwise act as the same caller
    if policy is None or policy.name == RESERVED or policy.name in {name for name, _ in configured}:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"caller": policy.name, "policy": policy.to_context()}}


_lock = threading.Lock()
_state: dict[str, Any] = {}


def _stored(digest: str) -> Any:
    """The policy of a key stored as data, or None (no store configured, no such key, or expired). The
    lookup (a hash of a 256-bit secret, so the read's timing tells nothing about other keys) is cached."""
    endpoint = os.environ.get("DOCAPI_ENDPOINT", "")
    if not endpoint:
        return None
    from shared import policy

    ttl_s = float(os.environ.get("FM_KEY_CACHE_S", "") or 10)
    with _lock:
        if _state.get("endpoint") != endpoint:
            _state.clear()
            _state.update(endpoint=endpoint, client=_client(endpoint))
        if _state.get("ttl_s") != ttl_s:
            _state.update(ttl_s=ttl_s, cache=policy.KeyCache(ttl_s))
        client, cache = _state["client"], _state["cache"]
    table = os.environ.get("JOBS_TABLE", "") or "jobs"
    try:
        return policy.lookup(digest, lambda key: _read(client, table, key), cache)
    except Exception as err:  # botocore's errors: the store could not say; never a verdict on the key
        log.error("stored key lookup failed", extra={"error": f"{type(err).__name__}: {err}"})
        raise RuntimeError("stored key lookup failed") from None


class _DocumentApi:
    """One signed GetItem over `requests` (botocore's SigV4 signer, as shared/jobs/queue.py signs): building a
    boto3 client costs a cold authorizer most of a second, which every cold instance would pay on its first
    stored key. Throttling, 5xx and connection errors are tried 3 times in all."""

    def __init__(self, endpoint: str) -> None:
        import requests

        self.endpoint = endpoint
        self.region = os.environ.get("YC_REGION") or "ru-central1"
        self.access_key = os.environ.get("AWS_ACCESS_KEY_ID") or ""
        self.secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY") or ""
        logs.register_secret(self.secret_key)
        self.session = requests.Session()

    def get_item(self, table: str, key: str) -> dict[str, Any] | None:
        import json

        import requests
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = json.dumps({"TableName": table, "Key": {"id": {"S": key}}, "ConsistentRead": True}).encode()
        for attempt in range(3):
            request = AWSRequest(method="POST", url=self.endpoint, data=body, headers={
                "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem"})
            SigV4Auth(Credentials(self.access_key, self.secret_key), "dynamodb", self.region).add_auth(request)
            try:
                answer = self.session.post(self.endpoint, data=body, headers=dict(request.headers.items()),
                                           timeout=(2, 4))
            except requests.RequestException as err:
                problem = type(err).__name__
            else:
                if answer.status_code == 200:
                    return answer.json().get("Item")
                kind = _error_name(answer)
                if kind == "ResourceNotFoundException":  # no job table yet: no stored keys
                    return None
                problem = f"HTTP {answer.status_code} {kind}".rstrip()
                if answer.status_code < 500 and "Throttl" not in kind:
                    break
            clock.sleep(0.05 * 2 ** attempt)
        raise RuntimeError(f"GetItem: {problem}")


def _error_name(answer: Any) -> str:
    """The error's name from the Document API's error body (`__type` = "<namespace>#<name>"); "" for any other
    body: a front proxy's page, or none."""
    try:
        body = answer.json()
    except ValueError:  # not JSON
        return ""
    return str(body.get("__type", "")).rsplit("#", 1)[-1] if isinstance(body, dict) else ""


def _client(endpoint: str) -> _DocumentApi:
    return _DocumentApi(endpoint)


def _read(client: _DocumentApi, table: str, key: str) -> dict[str, Any] | None:
    item = client.get_item(table, key)
    if not item:
        return None
    out: dict[str, Any] = {}
    for name, typed in item.items():
        (kind, value), = typed.items()
        out[name] = float(value) if kind == "N" else value  # SS (the model list) comes as a list
    return out
