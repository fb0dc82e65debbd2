"""Budgets and per-key limits: a key's monthly budgets (tokens, money) and its requests / tokens per minute,
kept in the job store so that they hold across instances and under concurrency (docs/budgets-and-limits.md).

Only a key with a policy that sets a limit (KeyPolicy.limited) ever gets here: Invocation.admit imports this
module by name, and for any other key does nothing (no import, no store round trip).

One item per key and UTC month, id limits#<caller>#<YYYYMM>:
    used_t, used_m      tokens / money (integer billionths of the price table's currency) settled so far PLUS
                        the worst cases of the reservations in flight: one counter each, so that a reservation
                        is ONE conditional UpdateItem comparing it with `limit - worst case` (computed here:
                        a condition expression cannot do arithmetic)
    set_t, set_m        settled only (what the alerts look at)
    v_<id>_<part>       one reservation in flight: "<tokens> <money> <expires_at>"
    r<minute>, k<minute>  requests and worst-case tokens admitted in that UTC minute (epoch minutes): the
                        per-minute limits (a fixed window); earlier minutes are REMOVEd by the next admission
    a80, a100           when the 80% / 100% alert was sent (0: not yet): set by the one conditional write
                        that wins it

Lifecycle of a reservation (a request's worst case: input bounded by the UTF-8 bytes of the upstream body,
plus its maximum output tokens, set to FM_LIMITS_DEFAULT_MAX_TOKENS when the request has none):
    admit   one UpdateItem: ADD the worst case to used_* and to this minute's counters, SET the reservation,
            on the condition that every limit still covers it; refused -> one consistent read says which
            limit (and sweeps expired reservations: then the admission is tried again)
    settle  folded into the usage ledger's TransactWriteItems (usage.add): ADD real - worst, REMOVE the
            reservation, on the condition that it is still there. So a settle happens exactly when its
            ledger entry is counted, and a redelivered task (whose call mark exists) settles nothing again.
            A reservation already swept (it expired) is settled by ADDing the real usage instead.
    release no usage (upstream refused, the job failed): ADD -worst, REMOVE the reservation, if still there
    sweep   a reservation past its expiry is released by whoever finds it: an admission refused while it is
            held, or the batch poller's timer for the keys of the jobs it settles (sweep_key)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared import clock, errors, logs
from shared.ids import uuid4 as new_id

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.jobs.store import JobStore
    from shared.policy import KeyPolicy
    from shared.runtime import Invocation

log = logs.get_logger("limits")

NANO = 10 ** 9  # money is kept in billionths of the currency, as integers: sums are exact
THRESHOLDS = (80, 100)  # percent of a budget: one alert each, per key and month
TIDY_AT = 8  # per-minute counters of earlier minutes (a key with gaps in its traffic) kept before they are removed
ADMIT_ATTEMPTS = 20  # an admission refused although a read shows it fits (room freed in between) is tried again
CONFLICT_ROUNDS = 3  # a reservation outlasting the store's conflict retries (6 attempts, ~0.6 s) tries this often
JOB_RESERVATION_S = 7 * 86400  # a job's reservation: longer than a job or batch can run (the jobs' TTL is longer)
OUTPUT_KEYS = ("maxTokens", "max_completion_tokens", "max_tokens", "max_output_tokens")


class QuotaExceededError(errors.RateLimitedError):
    """The key's monthly budget cannot cover the request's worst case: 429, OpenAI's insufficient_quota."""

    code = "RESOURCE_EXHAUSTED"
    retryable = False

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = {"x-should-retry": "false", **(headers or {})}

    def to_openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": "insufficient_quota", "param": None,
                          "code": "insufficient_quota"}}


class KeyRateLimitError(errors.RateLimitedError):
    """The key's requests or tokens per minute are used up: 429 with Retry-After and x-ratelimit-* headers."""

    def __init__(self, message: str, kind: str, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.kind = kind  # "requests" or "tokens": OpenAI's error type for a rate limit
        self.headers = headers

    def to_openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": "rate_limit_exceeded"}}


# -- worst cases and prices ----------------------------------------------------------------------------------

def input_bound(value: Any) -> int:
    """An upper bound of the input tokens of an upstream body: its UTF-8 bytes as JSON. A token is at least one
    byte of the text it stands for (a tokenizer's byte fallback spends one token per byte at worst), and the
    JSON around the texts (roles, field names) is longer than the few tokens a chat template adds per message."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def output_bound(body: dict[str, Any], default: int) -> tuple[int, bool]:
    """(the body's maximum output tokens, whether it named one); native maxTokens or OpenAI's names."""
    for holder in (body.get("completionOptions") or {}, body):
        for name in OUTPUT_KEYS:
            value = holder.get(name) if isinstance(holder, dict) else None
            if value is not None:
                try:
                    return max(0, int(value)), True
                except (TypeError, ValueError):
                    pass
    return default, False


def with_max_tokens(body: dict[str, Any], kind: str, default: int) -> dict[str, Any]:
    """The body with its output bounded: a limited key's request without a maximum gets the default set, so
    the reserved worst case is one upstream keeps to."""
    if output_bound(body, default)[1]:
        return body
    if kind == "completion":
        return {**body, "completionOptions": {**(body.get("completionOptions") or {}), "maxTokens": str(default)}}
    if kind == "chat":
        return {**body, "max_tokens": default}
    if kind == "responses":
        return {**body, "max_output_tokens": default}
    return body


def per_token(model: str, mode: str, prices: dict[str, Any]) -> Decimal | None:
    """Money (billionths) per token of a generation or embedding model in `mode`; None: unpriced."""
    from shared.prices import price_key

    entry = prices["models"].get(price_key(model))
    if not entry or "per_request" in entry:
        return None
    unit = prices["units"].get(entry.get("unit"))
    ratio = (entry.get("units_per_token") or {}).get(mode)
    if unit is None or ratio is None:
        return None
    return Decimal(str(unit)) * Decimal(str(ratio)) * NANO / 1000


def classifier_price(model: str, prices: dict[str, Any]) -> tuple[Decimal, int] | None:
    """(money per billing unit, tokens per unit) of a classifier; None: unpriced."""
    from shared.prices import price_key

    entry = prices["models"].get(price_key(model)) or {}
    if entry.get("per_request") is None:
        return None
    return Decimal(str(entry["per_request"])) * NANO, int(entry.get("tokens_per_request") or 0)


def money(model: str, mode: str, kind: str, tokens: int, units: int, prices: dict[str, Any]) -> int | None:
    """What `tokens` (or, for a classifier, `units` billing units) cost, in billionths, rounded up; None: unpriced."""
    if kind == "classification":
        price = classifier_price(model, prices)
        return None if price is None else int(math.ceil(price[0] * units))
    rate = per_token(model, mode, prices)
    return None if rate is None else int(math.ceil(rate * tokens))


@dataclass
class Part:
    """A share of a reservation settled on its own: a synchronous request, a job's task, a whole batch."""

    name: str
    tokens: int
    money: int


def worst_case(kind: str, body: dict[str, Any], model: str, mode: str, settings: Settings) -> tuple[int, int | None]:
    """(tokens, money or None when unpriced) of one upstream body at worst."""
    from shared.prices import table

    prices = table(settings.prices)
    if kind == "embedding":  # a list of texts, or requests each with its texts
        texts = body.get("texts") or [t for r in body.get("requests", []) for t in r.get("texts", [])]
        tokens = sum(input_bound(t) for t in texts)
        return tokens, money(model, mode, kind, tokens, 0, prices)
    tokens = input_bound(body)
    if kind == "classification":
        units = 1
        price = classifier_price(model, prices)
        if price is not None and price[1]:
            units = max(1, math.ceil(tokens / price[1]))
        return tokens, money(model, mode, kind, tokens, units, prices)
    tokens += output_bound(body, settings.limits_default_max_tokens)[0]
    return tokens, money(model, mode, kind, tokens, 0, prices)


def real_usage(entry: Any, kind: str, settings: Settings) -> tuple[int, int]:
    """(tokens, money) of a ledger entry: input + output tokens (reasoning is part of the output), money as
    the price table bills it (0 when unpriced: a key with a money budget never gets an unpriced model)."""
    from shared.prices import table

    tokens = int(entry.input_tokens) + int(entry.output_tokens)
    kind = "classification" if entry.model.startswith("cls://") else kind
    cost = money(entry.model, entry.mode, kind, tokens, int(entry.units), table(settings.prices))
    return tokens, cost or 0


# -- keys ----------------------------------------------------------------------------------------------------

def month_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m")


def item_key(caller: str, month: str) -> str:
    return f"limits#{quote(caller, safe='')}#{month}"


def _month_end(month: str) -> float:
    year, number = int(month[:4]), int(month[4:])
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC).timestamp()


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(int(value))}


def _num(item: dict[str, Any], name: str) -> int:
    """A number attribute of a raw (typed) or plain item; 0 when absent."""
    value = item.get(name)
    if isinstance(value, dict):
        value = value.get("N")
    try:
        return int(Decimal(str(value))) if value is not None else 0
    except ArithmeticError:
        return 0


# -- the reservation -------------------------------------------------------------------------------------------

@dataclass
class Reservation:
    """A request's (or a job's) reservation against its key's month item."""

    caller: str
    month: str
    rid: str
    parts: dict[str, Part]
    minute: int
    expires_at: float
    model: str
    mode: str
    kind: str
    policy: KeyPolicy | None = None
    seen: dict[str, Any] = field(default_factory=dict)  # the item's counters right after the admission
    headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-* for the answer
    open: set[str] = field(default_factory=set)  # parts not settled or released yet (by this process)
    handed: bool = False  # to a job: its worker or poller settles it, not the request that submitted it

    @property
    def key(self) -> str:
        return item_key(self.caller, self.month)

    def attribute(self, part: str) -> str:
        return f"v_{self.rid}_{part}"

    def to_record(self) -> str:
        """What a job's operation record keeps, so that its worker and poller can settle it."""
        return json.dumps({"caller": self.caller, "month": self.month, "rid": self.rid, "minute": self.minute,
                           "model": self.model, "mode": self.mode, "kind": self.kind,
                           "parts": {p.name: [p.tokens, p.money] for p in self.parts.values()},
                           "limits": _policy_limits(self.policy)}, separators=(",", ":"))

    @classmethod
    def from_record(cls, text: str) -> Reservation:
        data = json.loads(text)
        parts = {name: Part(name, int(t), int(m)) for name, (t, m) in data["parts"].items()}
        from shared.policy import KeyPolicy

        policy = KeyPolicy(name=data["caller"], **(data.get("limits") or {}))
        return cls(data["caller"], data["month"], data["rid"], parts, int(data["minute"]), 0.0, data["model"],
                   data["mode"], data["kind"], policy=policy, open=set(parts))


def _policy_limits(policy: KeyPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    return {k: getattr(policy, k) for k in ("rpm", "tpm", "monthly_tokens", "monthly_budget")
            if getattr(policy, k) is not None}


def budget_nano(policy: KeyPolicy) -> int | None:
    return None if policy.monthly_budget is None else int(Decimal(str(policy.monthly_budget)) * NANO)


def admit(inv: Invocation, body: dict[str, Any], kind: str, model: str, mode: str = "sync") -> dict[str, Any]:
    """Invocation.admit: reserve one synchronous request's worst case; the body to send upstream (its output
    bounded). Raises QuotaExceededError / KeyRateLimitError (429) when a limit cannot cover it."""
    settings = inv.settings
    body = with_max_tokens(body, kind, settings.limits_default_max_tokens)
    tokens, cost = worst_case(kind, body, model, mode, settings)
    reservation = reserve(inv, {"0": (tokens, cost)}, model, mode, kind, settings.limits_reservation_s)
    inv.reservation = reservation
    return body


def admit_job(inv: Invocation, kind: str, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Before a job is submitted (submit_tasks): its worst case reserved, one part per task, or one part for a
    batch of requests (settled by the poller with the batch's usage); the payloads to store."""
    settings = inv.settings
    default = settings.limits_default_max_tokens
    parts: dict[str, tuple[int, int | None]] = {}
    model = ""
    if kind == "batch":
        mode, total_t, total_m, out = "async", 0, 0, []
        for chunk in payloads:
            items = []
            for item in chunk.get("items", []):
                body = with_max_tokens(item["body"], "completion", default)
                model = model or str(body.get("modelUri", ""))
                t, m = worst_case("completion", body, str(body.get("modelUri", "")), mode, settings)
                total_t += t
                total_m = None if m is None or total_m is None else total_m + m
                items.append({**item, "body": body})
            out.append({**chunk, "items": items})
        parts["b"] = (total_t, total_m)
        payloads = out
    else:
        mode = "sync"
        out = []
        for number, payload in enumerate(payloads):
            job_kind = "completion" if kind == "completion" else kind
            body = with_max_tokens(payload, job_kind, default) if kind == "completion" else payload
            model = model or str(body.get("modelUri", ""))
            parts[f"t{number}"] = worst_case(job_kind, body, str(body.get("modelUri", "")), mode, settings)
            out.append(body)
        payloads = out
    inv.reservation = reserve(inv, parts, model, mode, "batch" if kind == "batch" else kind, JOB_RESERVATION_S)
    return payloads


def reserve(inv: Invocation, parts: dict[str, tuple[int, int | None]], model: str, mode: str, kind: str,
            hold_s: float) -> Reservation:
    from shared.jobs.store import job_store

    policy = inv.policy
    assert policy is not None
    store = job_store(inv.settings)
    limit_m = budget_nano(policy)
    if limit_m is not None and any(m is None for _, m in parts.values()):
        raise errors.ForbiddenError(
            f"model {model!r} has no price for its {mode} mode (FM_PRICES), so this key's monthly_budget cannot be "
            "checked: the request is refused; set the price, or use a priced model")
    now = clock.now()
    reservation = Reservation(inv.caller, month_of(now), new_id().replace("-", "")[:16],
                              {name: Part(name, t, m or 0) for name, (t, m) in parts.items()}, int(now // 60),
                              now + hold_s, model, mode, kind, policy=policy, open=set(parts))
    wt = sum(p.tokens for p in reservation.parts.values())
    wm = sum(p.money for p in reservation.parts.values())
    never = _never_fits(policy, wt, wm, limit_m)
    if never:
        raise QuotaExceededError(never) if "tpm" not in never else KeyRateLimitError(
            never, "tokens", 60.0, _headers(policy, {}, reservation.minute, now))
    for _ in range(ADMIT_ATTEMPTS):
        seen = _try_reserve(store, reservation, wt, wm, limit_m)
        if seen is not None:
            reservation.seen = seen
            reservation.headers = _headers(policy, seen, reservation.minute, clock.now())
            inv.log_fields.update(reserved_tokens=wt, **({"reserved_money": wm} if limit_m is not None else {}))
            _alert_from(store, reservation, seen, 0, 0, inv.settings)
            return reservation
        item = store.item(reservation.key) or {}
        now = clock.now()
        if sweep_item(store, reservation.key, item, now):
            continue
        _explain_refusal(policy, item, reservation, wt, wm, limit_m, now, store, inv.settings)
        reservation.minute = int(now // 60)  # a new minute began: try in it
    raise errors.UpstreamUnavailableError("the key's limits are being updated by many requests at once; try again",
                                          retry_after=1)


def _never_fits(policy: KeyPolicy, wt: int, wm: int, limit_m: int | None) -> str | None:
    if policy.monthly_tokens is not None and wt > policy.monthly_tokens:
        return (f"this request may use up to {wt} tokens, more than the key's whole monthly_tokens "
                f"({policy.monthly_tokens}); lower its maximum output tokens or its input")
    if limit_m is not None and wm > limit_m:
        return ("this request may cost more than the key's whole monthly_budget; lower its maximum output tokens "
                "or its input")
    if policy.tpm is not None and wt > policy.tpm:
        return (f"this request may use up to {wt} tokens, more than the key's tokens per minute (tpm "
                f"{policy.tpm}); lower its maximum output tokens or its input")
    return None


def _try_reserve(store: JobStore, res: Reservation, wt: int, wm: int, limit_m: int | None) -> dict[str, Any] | None:
    """The one conditional UpdateItem; the item's updated counters, or None when a limit did not hold."""
    from botocore.exceptions import ClientError

    policy = res.policy
    assert policy is not None
    minute = res.minute
    per_minute = policy.rpm is not None or policy.tpm is not None
    names = {"#ut": "used_t", "#um": "used_m", "#exp": "expires_at"}
    values: dict[str, Any] = {":wt": _n(wt), ":wm": _n(wm), ":exp": _n(_month_end(res.month) + 40 * 86400)}
    sets = ["#exp = if_not_exists(#exp, :exp)"]
    for number, part in enumerate(res.parts.values()):
        names[f"#v{number}"] = res.attribute(part.name)
        values[f":v{number}"] = _s(f"{part.tokens} {part.money} {int(res.expires_at)}")
        sets.append(f"#v{number} = :v{number}")
    adds = ["#ut :wt", "#um :wm"]
    expression_tail = ""
    if per_minute:  # this minute's counters; the previous minute's are removed (older ones: see _tidy)
        names.update({"#r": f"r{minute}", "#k": f"k{minute}", "#or": f"r{minute - 1}", "#ok": f"k{minute - 1}"})
        values[":one"] = _n(1)
        adds += ["#r :one", "#k :wt"]
        expression_tail = " REMOVE #or, #ok"
    conditions = []
    if policy.monthly_tokens is not None:
        conditions.append("(attribute_not_exists(#ut) OR #ut <= :roomt)")
        values[":roomt"] = _n(policy.monthly_tokens - wt)
    if limit_m is not None:
        conditions.append("(attribute_not_exists(#um) OR #um <= :roomm)")
        values[":roomm"] = _n(limit_m - wm)
    if policy.rpm is not None:
        conditions.append("(attribute_not_exists(#r) OR #r < :rpm)")
        values[":rpm"] = _n(policy.rpm)
    if policy.tpm is not None:
        conditions.append("(attribute_not_exists(#k) OR #k <= :roomk)")
        values[":roomk"] = _n(policy.tpm - wt)
    request = {"TableName": store.table, "Key": {"id": _s(res.key)},
               "UpdateExpression": f"SET {', '.join(sets)} ADD {', '.join(adds)}{expression_tail}",
               "ExpressionAttributeNames": names, "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW"}
    if conditions:
        request["ConditionExpression"] = " AND ".join(conditions)
    from shared.jobs.store import StoreError

    for round_ in range(1, CONFLICT_ROUNDS + 1):
        try:
            answer = store._write("update_item", **request)
            break
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise StoreError(f"job store: {err.response['Error']['Code']}") from None
        except StoreError:  # write conflicts outlasted the store's retries: the key's item is busy
            if round_ == CONFLICT_ROUNDS:
                raise
    attributes = answer.get("Attributes", {})
    if per_minute:
        _tidy(store, res.key, attributes, minute)
    return {"used_t": _num(attributes, "used_t"), "used_m": _num(attributes, "used_m"),
            "set_t": _num(attributes, "set_t"), "set_m": _num(attributes, "set_m"),
            "r": _num(attributes, f"r{minute}"), "k": _num(attributes, f"k{minute}"),
            "a80": _num(attributes, "a80"), "a100": _num(attributes, "a100")}


def _stale_minutes(item: dict[str, Any], minute: int) -> list[str]:
    return [name for name in item if name[:1] in "rk" and name[1:].isdigit() and int(name[1:]) < minute]


def _tidy(store: JobStore, key: str, item: dict[str, Any], minute: int) -> None:
    """An admission removes the previous minute's counters; a key used now and then leaves older ones. Once
    TIDY_AT of them are there, the admission that sees them removes them (one more write, unconditional, rare)."""
    stale = _stale_minutes(item, minute)
    if len(stale) < TIDY_AT:
        return
    try:
        names = {f"#s{i}": name for i, name in enumerate(stale)}
        store._write("update_item", TableName=store.table, Key={"id": _s(key)},
                     UpdateExpression="REMOVE " + ", ".join(names), ExpressionAttributeNames=names)
    except Exception as err:  # housekeeping: the next one does it
        log.warning("stale per-minute counters not removed", extra={"limits_key": key, "error": type(err).__name__})


def _seen(item: dict[str, Any]) -> dict[str, Any]:
    return {"set_t": _num(item, "set_t"), "set_m": _num(item, "set_m"), "a80": _num(item, "a80"),
            "a100": _num(item, "a100")}


def _reset_s(now: float) -> float:
    return max(0.001, 60 - (now % 60))


def _headers(policy: KeyPolicy, seen: dict[str, Any], minute: int, now: float) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the key's per-minute limits (only those it has)."""
    reset = f"{_reset_s(now):.3f}".rstrip("0").rstrip(".") + "s" if int(now // 60) == minute else "0s"
    headers: dict[str, str] = {}
    if policy.rpm is not None:
        headers.update({"x-ratelimit-limit-requests": str(policy.rpm),
                        "x-ratelimit-remaining-requests": str(max(0, policy.rpm - int(seen.get("r", 0)))),
                        "x-ratelimit-reset-requests": reset})
    if policy.tpm is not None:
        headers.update({"x-ratelimit-limit-tokens": str(policy.tpm),
                        "x-ratelimit-remaining-tokens": str(max(0, policy.tpm - int(seen.get("k", 0)))),
                        "x-ratelimit-reset-tokens": reset})
    return headers


def _explain_refusal(policy: KeyPolicy, item: dict[str, Any], res: Reservation, wt: int, wm: int,
                     limit_m: int | None, now: float, store: JobStore, settings: Settings) -> None:
    """Raise the refusal the item's state explains; return when it explains none (the state moved: try again)."""
    minute = int(now // 60)
    used_t, used_m = _num(item, "used_t"), _num(item, "used_m")
    seen = {"r": _num(item, f"r{minute}"), "k": _num(item, f"k{minute}"), "set_t": _num(item, "set_t"),
            "set_m": _num(item, "set_m"), "a80": _num(item, "a80"), "a100": _num(item, "a100")}
    if policy.monthly_tokens is not None and used_t > policy.monthly_tokens - wt:
        _alert_from(store, res, seen, 0, 0, settings, exhausted=seen["set_t"] > policy.monthly_tokens - wt)
        raise QuotaExceededError(
            f"this key's monthly token budget cannot cover this request: {policy.monthly_tokens} tokens, "
            f"{_num(item, 'set_t')} used and {used_t - _num(item, 'set_t')} reserved by requests in flight, and this "
            f"request may use up to {wt}")
    if limit_m is not None and used_m > limit_m - wm:
        _alert_from(store, res, seen, 0, 0, settings, exhausted=seen["set_m"] > limit_m - wm)
        raise QuotaExceededError(
            "this key's monthly budget cannot cover this request's worst case (what is used, plus what requests in "
            "flight have reserved)")
    headers = _headers(policy, seen, minute, now)
    retry = _reset_s(now)
    if policy.rpm is not None and seen["r"] >= policy.rpm:
        raise KeyRateLimitError(f"this key's requests per minute are used up (rpm {policy.rpm}); "
                                f"try again in {math.ceil(retry)} s", "requests", retry, headers)
    if policy.tpm is not None and seen["k"] > policy.tpm - wt:
        raise KeyRateLimitError(f"this key's tokens per minute are used up (tpm {policy.tpm}: {seen['k']} admitted "
                                f"this minute, this request may use up to {wt}); try again in {math.ceil(retry)} s",
                                "tokens", retry, headers)


def sweep_item(store: JobStore, key: str, item: dict[str, Any], now: float) -> bool:
    """Release the reservations in `item` past their expiry, in one conditional UpdateItem (on all of them still
    being there). True when it released some (the caller tries its admission again)."""
    from botocore.exceptions import ClientError

    expired = []
    for name, value in item.items():
        if name.startswith("v_") and isinstance(value, str):
            tokens, cost, expires = (int(x) for x in value.split())
            if expires < now:
                expired.append((name, tokens, cost))
    if not expired:
        return False
    names = {f"#x{i}": name for i, (name, _, _) in enumerate(expired)}
    names.update({"#ut": "used_t", "#um": "used_m"})
    request = {"TableName": store.table, "Key": {"id": _s(key)},
               "UpdateExpression": f"ADD #ut :t, #um :m REMOVE {', '.join(f'#x{i}' for i in range(len(expired)))}",
               "ConditionExpression": " AND ".join(f"attribute_exists(#x{i})" for i in range(len(expired))),
               "ExpressionAttributeNames": names,
               "ExpressionAttributeValues": {":t": _n(-sum(t for _, t, _ in expired)),
                                             ":m": _n(-sum(m for _, _, m in expired))}}
    try:
        store._write("update_item", **request)
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return True  # settled or swept by someone else meanwhile: the caller reads again
    log.warning("expired budget reservations released (a request or job that reserved them never settled)",
                extra={"limits_key": key, "reservations": len(expired), "tokens": sum(t for _, t, _ in expired)})
    return True


def sweep_key(store: JobStore, caller: str, at: float | None = None) -> bool:
    """The poller's sweep of one key's current month (a read, and a write only when something expired)."""
    now = clock.now() if at is None else at
    key = item_key(caller, month_of(now))
    item = store.item(key)
    return bool(item) and sweep_item(store, key, item, now)


# -- settling ----------------------------------------------------------------------------------------------------

class Settle:
    """One part of a reservation, settled in the usage ledger's transaction (usage.add calls commit)."""

    def __init__(self, reservation: Reservation, part: str, settings: Settings) -> None:
        self.res, self.part, self.settings = reservation, part, settings
        self.done = False
        self.real: tuple[int, int] | None = None

    def _update(self, real: tuple[int, int], held: bool) -> dict[str, Any]:
        """ADD real - worst and REMOVE the reservation if it is still held; else (swept) ADD the real usage."""
        part = self.res.parts[self.part]
        names = {"#ut": "used_t", "#um": "used_m", "#st": "set_t", "#sm": "set_m"}
        delta_t, delta_m = (real[0] - part.tokens, real[1] - part.money) if held else real
        values = {":dt": _n(delta_t), ":dm": _n(delta_m), ":rt": _n(real[0]), ":rm": _n(real[1])}
        expression = "ADD #ut :dt, #um :dm, #st :rt, #sm :rm"
        update: dict[str, Any] = {"TableName": "", "Key": {"id": _s(self.res.key)}}
        if held:
            names["#v"] = self.res.attribute(self.part)
            update["ConditionExpression"] = "attribute_exists(#v)"
            limited = self.res.policy is not None and (self.res.policy.tpm is not None or self.res.policy.rpm is not None)
            if limited and int(clock.now() // 60) == self.res.minute and self.res.parts[self.part].tokens:
                names["#k"] = f"k{self.res.minute}"  # the minute is still on: its tokens counter settles too
                values[":dk"] = _n(real[0] - part.tokens)
                expression += ", #k :dk"
            expression += " REMOVE #v"
        update.update(UpdateExpression=expression, ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        return update

    def commit(self, store: JobStore, items: list[dict[str, Any]], mark: str, patient: bool, entry: Any) -> bool:
        """The ledger's transaction with this settle in it. True: counted and settled; False: the call was counted
        before (and settled with it). A cancellation because the reservation was swept is done again with the
        real usage ADDed; any other failure raises (the ledger logs it; finish() settles alone)."""
        from shared.jobs.store import StoreError

        self.real = real_usage(entry, self.res.kind, self.settings)
        held = True
        while True:
            update = {**self._update(self.real, held), "TableName": store.table}
            try:
                counted = store.add_usage([*items, {"Update": update}], mark, patient)
            except StoreError:
                if held and not self._held(store):  # swept meanwhile: settle by adding the real usage
                    held = False
                    continue
                if patient:
                    raise
                # a write conflict on the key's item (its other requests write it too) or a transient refusal:
                # once more, patiently (conflicts retried with backoff), off the one-round-trip path
                patient = True
                continue
            self.done = True
            self.res.open.discard(self.part)
            if counted:
                if self.res.seen:  # a synchronous request: what it saw at admission, plus its own usage
                    _alert_from(store, self.res, self.res.seen, *self.real, self.settings)
                else:  # a job's worker or poller (no caller waits): the settled totals, read
                    _alert_from(store, self.res, _seen(store.item(self.res.key) or {}), 0, 0, self.settings)
            return counted

    def _held(self, store: JobStore) -> bool:
        item = store.item(self.res.key) or {}
        return self.res.attribute(self.part) in item

    def finish(self, store: JobStore) -> None:
        """After the ledger: if this part was not settled with it (no usage, or the ledger failed), settle it alone:
        to the real usage when known, else release it. Never raises (logged)."""
        if self.done:
            return
        real = self.real or (0, 0)
        try:
            try:
                store._write("update_item", **{**self._update(real, True), "TableName": store.table})
            except Exception as err:
                if "ConditionalCheckFailed" not in str(getattr(err, "response", {}).get("Error", {}).get("Code", "")):
                    raise
                if real != (0, 0):  # swept meanwhile: the real usage still counts
                    store._write("update_item", **{**self._update(real, False), "TableName": store.table})
            self.done = True
            self.res.open.discard(self.part)
        except Exception as err:
            log.warning("budget reservation not settled (it is released when it expires)",
                        extra={"limits_key": self.res.key, "part": self.part, "error": f"{type(err).__name__}: {err}"[:300]})


def for_request(inv: Invocation) -> Settle | None:
    """The settle of a synchronous request's reservation, for the usage ledger (usage.record_request)."""
    res = getattr(inv, "reservation", None)
    if res is None or res.handed or "0" not in res.open:
        return None
    settle = getattr(inv, "_settle", None)
    if settle is None:
        settle = Settle(res, "0", inv.settings)
        inv._settle = settle  # type: ignore[attr-defined]
    return settle


def finish_request(inv: Invocation) -> None:
    """runtime's hook after a request (answered or failed): a reservation not settled by the ledger is settled
    alone or released; one handed to a job stays for the job. Never raises."""
    res = getattr(inv, "reservation", None)
    if res is None or res.handed or not res.open:
        return
    from shared.jobs.store import job_store

    try:
        store = job_store(inv.settings)
        settle = for_request(inv)
        if settle is not None:
            settle.finish(store)
        for part in list(res.open):  # a job's reservation whose submission failed: released
            Settle(res, part, inv.settings).finish(store)
    except Exception as err:
        log.warning("budget reservation not settled", extra={"error": f"{type(err).__name__}: {err}"[:300]})


# -- jobs: the worker and the poller settle what the submission reserved ------------------------------------------

def job_reservation(operation: dict[str, Any]) -> Reservation | None:
    text = operation.get("limits")
    if not text:
        return None
    try:
        return Reservation.from_record(str(text))
    except (ValueError, KeyError, TypeError):
        log.warning("a job's budget reservation is unreadable", extra={"operation_id": operation.get("id")})
        return None


def for_part(operation: dict[str, Any], part: str, settings: Settings) -> Settle | None:
    res = job_reservation(operation)
    if res is None or part not in res.parts:
        return None
    return Settle(res, part, settings)


def release_job(operation: dict[str, Any], settings: Settings) -> None:
    """A job that ended without (all) its usage: every part still held is released. Never raises."""
    res = job_reservation(operation)
    if res is None:
        return
    from shared.jobs.store import job_store

    store = job_store(settings)
    for part in res.parts:
        Settle(res, part, settings).finish(store)


# -- alerts --------------------------------------------------------------------------------------------------------

def _alert_from(store: JobStore, res: Reservation, seen: dict[str, Any], add_t: int, add_m: int,
                settings: Settings, exhausted: bool = False) -> None:
    """Send each threshold this key has reached and not yet sent: 80% when what is settled (`seen` at admission
    plus this call's own usage, or read) reaches 80% of a budget; 100% when it reaches the budget, or (`exhausted`)
    when what is settled alone leaves no room for a refused request's worst case. The conditional write that sets a<threshold> decides who sends it,
    so each is sent once per key and month. Never raises."""
    policy = res.policy
    if policy is None or (policy.monthly_tokens is None and policy.monthly_budget is None) or not seen:
        return
    try:
        fractions = []
        if policy.monthly_tokens:
            fractions.append(Decimal(int(seen.get("set_t", 0)) + add_t) / policy.monthly_tokens)
        limit_m = budget_nano(policy)
        if limit_m:
            fractions.append(Decimal(int(seen.get("set_m", 0)) + add_m) / limit_m)
        reached = max(fractions, default=Decimal(0)) * 100
        for threshold in THRESHOLDS:
            if (reached >= threshold or (exhausted and threshold == 100)) and not int(seen.get(f"a{threshold}", 0)):
                if claim_alert(store, res.key, threshold):
                    send_alert(res, threshold, seen, add_t, add_m, settings)
                seen[f"a{threshold}"] = 1  # claimed (by us or another): not tried again by this request
    except Exception as err:
        log.warning("budget alert not sent", extra={"limits_key": res.key, "error": f"{type(err).__name__}: {err}"[:300]})


def claim_alert(store: JobStore, key: str, threshold: int) -> bool:
    """SET a<threshold> = now, only if it is not set: exactly one writer per key, month and threshold wins."""
    return store._update(key, f"SET a{threshold} = :now", {":now": _n(clock.now()), ":zero": _n(0)},
                         f"attribute_exists(id) AND (attribute_not_exists(a{threshold}) OR a{threshold} = :zero)")


def send_alert(res: Reservation, threshold: int, seen: dict[str, Any], add_t: int, add_m: int,
               settings: Settings) -> None:
    policy = res.policy
    assert policy is not None
    event = {"event": "budget_threshold", "caller": res.caller, "month": res.month, "threshold_percent": threshold,
             "monthly_tokens": policy.monthly_tokens, "monthly_budget": policy.monthly_budget,
             "tokens_used": int(seen.get("set_t", 0)) + add_t,
             "money_used": float(Decimal(int(seen.get("set_m", 0)) + add_m) / NANO)}
    log.warning("budget threshold reached", extra={"budget_alert": event})
    if settings.budget_webhook_url:
        _post(settings.budget_webhook_url, event)


def _post(url: str, event: dict[str, Any]) -> None:
    """POST the alert as JSON (5 s timeout); a failure is logged, never raised, never retried."""
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (the admin's URL)
            answer.read()
    except Exception as err:
        log.warning("budget alert webhook failed", extra={"error": f"{type(err).__name__}"[:100]})
