"""Caller keys as data: the admin API (/admin/keys) and the authorizer's lookup.

A key is created, listed, changed, rotated and revoked through the API, with no redeploy; only its
SHA-256 is stored, and the secret (`fmk_` + 43 URL-safe characters, 256 random bits) is shown once, in
the answer to create or rotate. Keys configured through Terraform / Lockbox (CALLER_KEY_SHA256) keep
working beside them: the bootstrap keys, the admin key among them. Their names (FM_CALLER_NAMES),
FM_ADMIN_CALLER and "anonymous" cannot be taken by a stored key.

Items (the job table, key `id`; no TTL: a revoked key's record stays, so its name stays taken and its
usage stays attributable):
    apikey#<name>              the key: digest, created_at, key_expires_at, revoked_at, rotated_at, hint,
                               models, rpm, tpm, monthly_tokens, monthly_budget, revision (changes made)
    apikey#sha256#<digest>     what the authorizer reads, one GetItem: name, key_expires_at and the policy
                               (a copy, written in the same transaction as the key; gone once revoked)
    apikey#names               names: the string set of every key's name (the list's index)

Every change is one TransactWriteItems conditioned on the key's record being as it was read (its digest,
and its revision, which every change increments), so a rotate racing a PATCH or a revoke cannot leave the
two records disagreeing: one wins, the other is retried once on the new state or answered 409. Who may
call: the admin caller (FM_ADMIN_CALLER) only; for anyone else every admin route is a 404, as for a path
that does not exist.

Revocation, expiry and policy changes reach requests within KEY_CACHE_S (the authorizer instance's
cache, FM_KEY_CACHE_S, 10 s) + the API Gateway's result cache (authorizer_result_ttl_in_seconds,
Terraform's authorizer_cache_seconds, 30 s): 40 s by default.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import clock, errors, logs
from shared.policy import digest_key
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.jobs.store import JobStore
    from shared.runtime import Invocation

log = logs.get_logger("keys")

PREFIX = "fmk_"
NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RESERVED = "anonymous"
NAMES_ITEM = "apikey#names"
POLICY_FIELDS = ("models", "rpm", "tpm", "monthly_tokens", "monthly_budget")
MAX_MODELS = 50


def name_key(name: str) -> str:
    return f"apikey#{name}"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hint(secret: str) -> str:
    """What a listing shows of a key (as OpenAI's redacted_value): the prefix and the last four characters."""
    return f"{PREFIX}...{secret[-4:]}"


# -- request bodies ---------------------------------------------------------------------------------------

# a full URI (gpt://<folder>/yandexgpt-lite/latest, ...@<tuned suffix>), a name, or name/version; ASCII only,
# so the spec's pattern means the same in every regex dialect
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    models: list[ModelName] | None = Field(None, min_length=1, max_length=MAX_MODELS, description=(
        "Model allow-list (full URIs, names, or name/version, as FM_ALLOWED_MODELS takes them); absent: every model"))
    rpm: int | None = Field(None, ge=1, le=1_000_000, description="Requests per minute")
    tpm: int | None = Field(None, ge=1, le=1_000_000_000, description="Tokens per minute")
    monthly_tokens: int | None = Field(None, ge=1, le=10**15, description="Tokens per calendar month (UTC)")
    monthly_budget: float | None = Field(None, ge=1e-6, le=1e12, description="Money per calendar month, in the "
                                         "price table's currency (kept to 6 decimal places)")
    expires_at: int | None = Field(None, ge=0, le=32_503_680_000, description="Unix seconds, in the future; the "
                                   "key stops working then")


class KeyCreateRequest(_Limits):
    name: str = Field(pattern=NAME_RULE, description="The key's name: the caller its work and usage are kept under")


class KeyUpdateRequest(_Limits):
    """PATCH: the fields given are set; a field given as null is removed (no limit, every model, no expiry)."""

    model_config = ConfigDict(extra="forbid", defer_build=True, json_schema_extra={"minProperties": 1})


# -- the admin API ------------------------------------------------------------------------------------------

def _admin(inv: Invocation) -> None:
    admin = inv.settings.admin_caller
    if not admin or inv.caller != admin:
        path = inv.request.path if inv.request is not None else "/admin/keys"
        raise errors.NotFoundError(f"no route for {path}")


def _store(inv: Invocation) -> JobStore:
    from shared.jobs.store import job_store

    return job_store(inv.settings)


def reserved_names(settings: Settings) -> set[str]:
    return {RESERVED, *settings.caller_names, *([settings.admin_caller] if settings.admin_caller else [])}


def create(request: KeyCreateRequest, inv: Invocation) -> Reply:
    """POST /admin/keys: 201 with the secret, once; 409 when the name is taken (by a key, even a revoked one,
    or by a configured key)."""
    _admin(inv)
    if request.name in reserved_names(inv.settings):
        raise errors.ConflictError.field("name", f"{request.name!r} is reserved (a configured key, the admin "
                                         "caller, or anonymous)")
    _future(request.expires_at)
    store = _store(inv)
    secret = new_secret()
    digest = digest_of(secret)
    now = int(clock.now())
    record = {"name": request.name, "digest": digest, "created_at": now, "hint": hint(secret),
              **_policy_fields(request, request.model_fields_set | {"name"})}
    items = [
        {"Put": {"TableName": store.table, "Item": _item(name_key(request.name), record),
                 "ConditionExpression": "attribute_not_exists(id)"}},
        {"Put": {"TableName": store.table, "Item": _item(digest_key(digest), _lookup_fields(record)),
                 "ConditionExpression": "attribute_not_exists(id)"}},
        {"Update": {"TableName": store.table, "Key": {"id": {"S": NAMES_ITEM}}, "UpdateExpression": "ADD #n :n",
                    "ExpressionAttributeNames": {"#n": "names"},
                    "ExpressionAttributeValues": {":n": {"SS": [request.name]}}}},
    ]
    if not store.transact(items):
        if store.item(name_key(request.name)) is not None:
            raise errors.ConflictError.field("name", f"a key named {request.name!r} exists")
        raise store_error("creating the key")
    log.info("key created", extra={"key_name": request.name, "by": inv.caller})
    return Reply({**_view(record, now), "key": secret}, status=201)


def list_keys(_: None, inv: Invocation) -> Reply:
    """GET /admin/keys: every key (revoked and expired included), oldest first, never a secret or a digest."""
    _admin(inv)
    store = _store(inv)
    names = (store.item(NAMES_ITEM) or {}).get("names") or []
    found = store.records([name_key(name) for name in names])
    now = clock.now()
    data = sorted((_view(record, now) for record in found.values()), key=lambda v: (v["created_at"], v["name"]))
    return Reply({"object": "list", "data": data})


def retrieve(_: None, inv: Invocation) -> Reply:
    _admin(inv)
    return Reply(_view(_existing(inv), clock.now()))


def update(request: KeyUpdateRequest, inv: Invocation) -> Reply:
    """PATCH /admin/keys/{name}: the given fields set, null ones removed, in both records at once."""
    _admin(inv)
    given = request.model_fields_set
    if not given:
        raise errors.BadRequestError.field("body", "give at least one of models, rpm, tpm, monthly_tokens, "
                                           "monthly_budget, expires_at")
    _future(request.expires_at)
    store = _store(inv)
    for attempt in (1, 2):
        record = _existing(inv)
        if record.get("revoked_at"):
            raise errors.ConflictError(f"the key {record['name']!r} is revoked")
        changes = _policy_fields(request, given)
        removed = [name for name in _stored_names(given) if changes.get(name) is None]
        sets = {name: value for name, value in changes.items() if value is not None}
        items = [_change(store, name_key(record["name"]), sets, removed, record),
                 _change(store, digest_key(record["digest"]), _lookup_fields(sets, keep_name=False), removed, None)]
        if store.transact(items):
            updated = {k: v for k, v in {**record, **sets}.items() if k not in removed}
            log.info("key changed", extra={"key_name": record["name"], "by": inv.caller, "fields": sorted(given)})
            return Reply(_view(updated, clock.now()))
        if attempt == 2:
            raise errors.ConflictError(f"the key {record['name']!r} changed meanwhile; try again")
    raise AssertionError("unreachable")


def revoke(_: None, inv: Invocation) -> Reply:
    """DELETE /admin/keys/{name}: the key stops working (within the bound above); its record and name stay.
    Revoking a revoked key answers the same."""
    _admin(inv)
    store = _store(inv)
    for _attempt in (1, 2):
        record = _existing(inv)
        if record.get("revoked_at"):
            return Reply(_view(record, clock.now()))
        now = int(clock.now())
        items = [_change(store, name_key(record["name"]), {"revoked_at": now}, [], record),
                 {"Delete": {"TableName": store.table, "Key": {"id": {"S": digest_key(record["digest"])}}}}]
        if store.transact(items):
            log.info("key revoked", extra={"key_name": record["name"], "by": inv.caller})
            return Reply(_view({**record, "revoked_at": now}, now))
    raise errors.ConflictError("the key changed meanwhile; try again")


def rotate(_: None, inv: Invocation) -> Reply:
    """POST /admin/keys/{name}/rotate: a new secret for the same name, policy and usage; the old one stops
    working (within the bound above). The new secret is in the answer, once."""
    _admin(inv)
    store = _store(inv)
    for _attempt in (1, 2):
        record = _existing(inv)
        if record.get("revoked_at"):
            raise errors.ConflictError(f"the key {record['name']!r} is revoked; create a new one")
        secret = new_secret()
        digest = digest_of(secret)
        now = int(clock.now())
        changed = {**record, "digest": digest, "hint": hint(secret), "rotated_at": now}
        items = [_change(store, name_key(record["name"]), {"digest": digest, "hint": hint(secret), "rotated_at": now},
                         [], record),
                 {"Delete": {"TableName": store.table, "Key": {"id": {"S": digest_key(record["digest"])}}}},
                 {"Put": {"TableName": store.table, "Item": _item(digest_key(digest), _lookup_fields(changed)),
                          "ConditionExpression": "attribute_not_exists(id)"}}]
        if store.transact(items):
            log.info("key rotated", extra={"key_name": record["name"], "by": inv.caller})
            return Reply({**_view(changed, now), "key": secret})
    raise errors.ConflictError("the key changed meanwhile; try again")


# -- the authorizer's lookup --------------------------------------------------------------------------------

# -- helpers ------------------------------------------------------------------------------------------------

def _existing(inv: Invocation) -> dict[str, Any]:
    name = inv.path_params.get("name", "")
    record = _store(inv).item(name_key(name)) if re.match(NAME_RULE, name) else None
    if record is None:
        raise errors.NotFoundError(f"no key named {name!r}")
    return record


def _future(expires_at: int | None) -> None:
    if expires_at is not None and expires_at <= clock.now():
        raise errors.BadRequestError.field("expires_at", "must be in the future (unix seconds)")


def _stored_names(given: set[str]) -> list[str]:
    return ["key_expires_at" if name == "expires_at" else name for name in given if name != "name"]


def _policy_fields(request: _Limits, given: set[str]) -> dict[str, Any]:
    """The given fields as stored: expires_at as key_expires_at (the table's TTL attribute is expires_at,
    and a key must not vanish when it expires), None for a field given as null."""
    out: dict[str, Any] = {}
    for name in given:
        if name == "name":
            continue
        value = getattr(request, name)
        out["key_expires_at" if name == "expires_at" else name] = value
    return out


def _lookup_fields(record: dict[str, Any], keep_name: bool = True) -> dict[str, Any]:
    wanted = (*POLICY_FIELDS, "key_expires_at", *(("name",) if keep_name else ()))
    return {k: v for k, v in record.items() if k in wanted and v is not None}


def _item(key: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"id": {"S": key}, **{name: _typed(value) for name, value in fields.items() if value is not None}}


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple):  # the model allow-list: a string set (order and repeats do not matter)
        return {"SS": sorted({str(v) for v in value})}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):  # money: 6 decimal places, written out (no exponent)
        return {"N": f"{value:.6f}".rstrip("0").rstrip(".")}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": str(value)}


def _change(store: JobStore, key: str, sets: dict[str, Any], removed: list[str],
            read: dict[str, Any] | None) -> dict[str, Any]:
    """An Update of the key's record (`read`: as it was read, whose digest and revision the write is conditioned on,
    and whose revision it increments) or, with `read` None, of its digest record (conditioned on existing only)."""
    names = {f"#f{i}": name for i, name in enumerate([*sets, *removed])}
    values = {f":v{i}": _typed(value) for i, value in enumerate(sets.values())}
    parts = []
    if sets:
        parts.append("SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(sets))))
    if removed:
        parts.append("REMOVE " + ", ".join(f"#f{len(sets) + i}" for i in range(len(removed))))
    condition = "attribute_exists(id)"
    if read is not None:
        names["#d"], values[":d"] = "digest", {"S": read["digest"]}
        names["#r"], values[":one"] = "revision", {"N": "1"}
        condition += " AND #d = :d AND "
        if read.get("revision") is None:
            condition += "attribute_not_exists(#r)"
        else:
            values[":r"] = _typed(int(read["revision"]))
            condition += "#r = :r"
        parts.append("ADD #r :one")
    update: dict[str, Any] = {"TableName": store.table, "Key": {"id": {"S": key}}, "UpdateExpression": " ".join(parts),
                              "ConditionExpression": condition, "ExpressionAttributeNames": names}
    if values:
        update["ExpressionAttributeValues"] = values
    return {"Update": update}


def store_error(what: str) -> errors.ApiError:
    from shared.jobs.store import StoreError

    return StoreError(f"job store: {what} did not complete; try again")


def _view(record: dict[str, Any], now: float) -> dict[str, Any]:
    """A key as the admin API shows it: never its secret or digest."""
    expires = record.get("key_expires_at")
    status = ("revoked" if record.get("revoked_at") else
              "expired" if expires is not None and float(expires) <= now else "active")
    return {"object": "api_key", "name": record["name"], "status": status, "redacted_value": record.get("hint"),
            "created_at": int(record.get("created_at", 0)), "expires_at": _int(expires),
            "revoked_at": _int(record.get("revoked_at")), "rotated_at": _int(record.get("rotated_at")),
            "models": record.get("models"), "rpm": _int(record.get("rpm")), "tpm": _int(record.get("tpm")),
            "monthly_tokens": _int(record.get("monthly_tokens")), "monthly_budget": record.get("monthly_budget")}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


# -- answer schemas (the generated gateway spec) -------------------------------------------------------------

class ApiKey(BaseModel):
    """A key as the admin API shows it: never its secret or digest."""

    object: Literal["api_key"]
    name: str
    status: Literal["active", "expired", "revoked"]
    redacted_value: str | None = Field(description="fmk_... and the secret's last four characters")
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    rotated_at: int | None
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    monthly_tokens: int | None
    monthly_budget: float | None


class ApiKeyWithSecret(ApiKey):
    key: str = Field(description="The secret: shown in this answer only")


class ApiKeyList(BaseModel):
    object: Literal["list"]
    data: list[ApiKey]
