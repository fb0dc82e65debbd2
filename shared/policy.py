"""What a caller key allows: the policy the authorizer hands to every backend function with the caller's name.

A key stored as data (shared/jobs/keys.py, the admin API) carries an optional model allow-list, limits
per minute and monthly budgets. The authorizer looks the key up and puts its policy in the API Gateway
authorizer context as one compact JSON string under `policy` (beside `caller`); the runtime reads it
back into Invocation.policy. A key configured in the environment (Terraform / Lockbox, `make api-key`)
has no policy: no limits, every model the deployment allows.

The gateway caches a verdict, context included, for the authorizer's result TTL, so a PATCHed policy
reaches requests within the same bound as a revocation (see functions/authorizer).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Any

from shared import clock

LIMIT_FIELDS = ("rpm", "tpm", "monthly_tokens", "monthly_budget")


@dataclass(frozen=True)
class KeyPolicy:
    name: str  # the key's name: the caller every record, ledger entry and limit is kept under
    models: tuple[str, ...] | None = None  # allow-list (entries as FM_ALLOWED_MODELS takes them); None: any
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (worst case when admitted, settled to upstream's count)
    monthly_tokens: int | None = None  # tokens per calendar month (UTC)
    monthly_budget: float | None = None  # money per calendar month, in shared/prices.py's currency

    @property
    def limited(self) -> bool:
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS)

    def allows(self, uri: str, name: str, versioned: str) -> bool:
        """Whether the allow-list admits the model (named as its full URI, its name, or name/version)."""
        return self.models is None or any(entry in (uri, name, versioned) for entry in self.models)

    def to_context(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        if self.models is not None:
            data["models"] = list(self.models)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> KeyPolicy:
        """From a stored key record (or the admin API's body); unknown fields ignored."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in record.items() if k in known and v is not None}
        if "models" in data:
            data["models"] = tuple(str(m) for m in data["models"])
        for name in ("rpm", "tpm", "monthly_tokens"):
            if name in data:
                data[name] = int(data[name])
        if "monthly_budget" in data:
            data["monthly_budget"] = float(data["monthly_budget"])
        return cls(**data)

    @classmethod
    def from_context(cls, authorizer: dict[str, Any], caller: str) -> KeyPolicy | None:
        """The policy the authorizer sent for `caller`, or None (no policy, or not one for this caller)."""
        raw = authorizer.get("policy")
        if not isinstance(raw, str) or not raw:
            return None
        try:
            data = json.loads(raw)
            policy = cls.from_record(data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None
        return policy if policy is not None and policy.name == caller else None


# -- the authorizer's lookup of a stored key (no pydantic, no boto3: a cold authorizer imports only this) --

def digest_key(digest: str) -> str:
    """The record the authorizer reads for a key's SHA-256 (hex): `apikey#sha256#<digest>` (shared/jobs/keys.py)."""
    return f"apikey#sha256#{digest}"


class KeyCache:
    """The authorizer instance's memory of lookups (found or not), for `ttl_s`; at most `size` digests, the
    least recently used dropped first, so random keys cannot grow it without bound."""

    def __init__(self, ttl_s: float, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[str, tuple[float, dict[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, dict[str, Any] | None]:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[0] <= clock.now():
                return False, None
            self._entries.move_to_end(digest)
            return True, entry[1]

    def put(self, digest: str, record: dict[str, Any] | None) -> None:
        with self._lock:
            self._entries[digest] = (clock.now() + self.ttl_s, record)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def lookup(digest: str, read: Any, cache: KeyCache) -> KeyPolicy | None:
    """The policy of the stored key with this digest, if it exists and has not expired; `read(key)` is one
    consistent GetItem (None when absent). Expiry is judged at every call, cached record or not."""
    hit, record = cache.get(digest)
    if not hit:
        record = read(digest_key(digest))
        cache.put(digest, record)
    if record is None or not record.get("name"):
        return None
    expires = record.get("key_expires_at")
    if expires is not None and float(expires) <= clock.now():
        return None
    return KeyPolicy.from_record(record)
