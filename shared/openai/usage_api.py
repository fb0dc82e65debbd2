"""OpenAI's Usage and Costs API over the usage ledger (shared/jobs/usage.py):

    GET /v1/organization/usage/completions   gpt:// models: chat, completion, Responses, async jobs, batches
    GET /v1/organization/usage/embeddings    emb:// models
    GET /v1/organization/costs               every model in the ledger, priced by shared/prices.py

The answer is OpenAI's page of daily buckets ({"object": "page", "data": [bucket...], "has_more", "next_page"}),
each bucket {"object": "bucket", "start_time", "end_time", "results": [...]} one UTC day, since the ledger keeps
daily totals: `bucket_width` is `1d` or absent, and `start_time` / `end_time` are taken to the UTC days that
contain them (each bucket says the day it covers). A bucket holds one result per group (`group_by`), none when
nothing was used that day.

Who sees what: the admin caller (FM_ADMIN_CALLER, as for jobs: shared/jobs/access.py) sees every caller; any
other caller sees its own usage only. `api_key_ids` is a filter within what the caller may see, so a caller that
names another key gets buckets without results, the same answer whether that key exists, has usage or not.

The parsing, the paging and the grouping are plain functions of the query and the totals (unit-tested); the
handlers add the store reads: for a caller's own usage, one BatchGetItem of USAGE_SHARDS keys per day of the
page (100 keys a call); for the admin without `api_key_ids`, first the page's days' caller lists (CALLER_SHARDS
keys a day), then the shards of the (caller, day) pairs that had usage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import clock, errors
from shared.responses import Reply

if TYPE_CHECKING:
    from shared.runtime import Invocation

DAY = 86_400
MAX_SECONDS = 9_999_999_999  # start_time and end_time: whole seconds, at most 10 digits (to 2286-11-20)
MAX_FILTER_VALUES = 100  # values of one list filter (models, api_key_ids, line_items)
PAGE_PREFIX = "day_"


@dataclass(frozen=True)
class Kind:
    """What one route reports: its result object, the groups and filters it takes, its bucket limit."""

    name: str
    result: str
    schemes: tuple[str, ...]  # model URI schemes it covers; () for every model
    group_by: tuple[str, ...]
    filters: tuple[str, ...]  # list filters besides api_key_ids
    max_limit: int


COMPLETIONS = Kind("completions", "organization.usage.completions.result", ("gpt",), ("model", "api_key_id", "batch"),
                   ("models",), 31)
EMBEDDINGS = Kind("embeddings", "organization.usage.embeddings.result", ("emb",), ("model", "api_key_id"),
                  ("models",), 31)
COSTS = Kind("costs", "organization.costs.result", (), ("line_item", "api_key_id"), ("line_items",), 180)
DEFAULT_LIMIT = 7
# OpenAI's groups and filters that have nothing to stand for here: a 400 naming them, never ignored
NO_PROJECTS = "this gateway has no projects or users; its callers are API keys (api_key_id)"
UNSUPPORTED_FILTERS = ("project_ids", "user_ids")


@dataclass(frozen=True)
class Query:
    kind: Kind
    first_day: int  # the first bucket's day (days since 1970-01-01, UTC)
    end_day: int  # the day after the last bucket
    page_day: int  # this page's first day
    limit: int
    group_by: tuple[str, ...]
    models: frozenset[str] | None
    api_key_ids: frozenset[str] | None
    batch: bool | None
    line_items: frozenset[str] | None

    def page(self) -> tuple[list[int], str | None]:
        """The days of this page, and the cursor of the next page (None when this is the last)."""
        last = min(self.end_day, self.page_day + self.limit)
        days = list(range(self.page_day, max(self.page_day, last)))
        return days, (cursor(last) if last < self.end_day else None)


def cursor(day: int) -> str:
    return PAGE_PREFIX + day_name(day)


def day_name(day: int) -> str:
    """Days since 1970-01-01 -> YYYYMMDD, the ledger's name for a UTC day."""
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y%m%d")


def parse(kind: Kind, query: dict[str, list[str]], now: float) -> Query:
    """The query string (every value of each parameter) as a Query; a 400 naming the parameter otherwise.

    Lists come as repeated parameters, with or without `[]` (the openai client sends `group_by[]=model`)."""
    for name in UNSUPPORTED_FILTERS:
        if _values(query, name):
            raise errors.BadRequestError.field(name, f"is not supported: {NO_PROJECTS}")
    for name in ("models", "line_items"):
        if name not in kind.filters and _values(query, name):
            raise errors.BadRequestError.field(name, f"is not a filter of the {kind.name} report")
    start = _seconds(query, "start_time", required=True)
    assert start is not None
    end = _seconds(query, "end_time", required=False)
    if end is not None and end <= start:
        raise errors.BadRequestError.field("end_time", "must be after start_time (start_time is inclusive, end_time "
                                                       "exclusive)")
    width = _one(query, "bucket_width")
    if width not in (None, "", "1d"):
        raise errors.BadRequestError.field("bucket_width", "only 1d is supported here: the usage ledger keeps daily "
                                                           "totals (UTC days)")
    limit = _limit(query, kind.max_limit)
    first_day = start // DAY
    today = int(now // DAY)
    end_day = min(today + 1, math.ceil(end / DAY)) if end is not None else today + 1
    end_day = max(end_day, first_day)  # a range after today: no buckets
    page_day = _page(query, first_day, end_day)
    group_by = _group_by(kind, query)
    batch = _one(query, "batch")
    if batch not in (None, "") and (kind is not COMPLETIONS or batch not in ("true", "false")):
        raise errors.BadRequestError.field("batch", "must be true or false" if kind is COMPLETIONS else
                                           f"is not a filter of the {kind.name} report")
    return Query(kind, first_day, end_day, page_day, limit, group_by,
                 _filter(query, "models") if "models" in kind.filters else None, _filter(query, "api_key_ids"),
                 None if batch in (None, "") else batch == "true",
                 _filter(query, "line_items") if "line_items" in kind.filters else None)


def _values(query: dict[str, list[str]], name: str) -> list[str]:
    return [*query.get(name, []), *query.get(f"{name}[]", [])]


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = _values(query, name)
    return values[-1] if values else None


def _seconds(query: dict[str, list[str]], name: str, required: bool) -> int | None:
    raw = _one(query, name)
    if raw is None or raw == "":
        if required:
            raise errors.BadRequestError.field(name, "is required: Unix seconds (UTC)")
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise errors.BadRequestError.field(name, f"must be Unix seconds: a whole number from 0 to {MAX_SECONDS}")
    return int(raw)


def _limit(query: dict[str, list[str]], most: int) -> int:
    raw = _one(query, "limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= most):
        raise errors.BadRequestError.field("limit", f"must be a whole number of buckets from 1 to {most}")
    return int(raw)


def _page(query: dict[str, list[str]], first_day: int, end_day: int) -> int:
    raw = _one(query, "page")
    if raw is None or raw == "":
        return first_day
    rule = "must be the next_page of an earlier answer to this query"
    digits = raw[len(PAGE_PREFIX):]
    if not (raw.startswith(PAGE_PREFIX) and len(digits) == 8 and digits.isascii() and digits.isdigit()):
        raise errors.BadRequestError.field("page", rule)
    try:
        day = int(datetime.strptime(digits, "%Y%m%d").replace(tzinfo=UTC).timestamp() // DAY)
    except ValueError:
        raise errors.BadRequestError.field("page", rule) from None
    if not first_day <= day < end_day:
        raise errors.BadRequestError.field("page", f"{rule} (its day is outside start_time..end_time)")
    return day


def _group_by(kind: Kind, query: dict[str, list[str]]) -> tuple[str, ...]:
    chosen: list[str] = []
    for value in _values(query, "group_by"):
        if value not in kind.group_by:
            why = f" ({NO_PROJECTS})" if value in ("project_id", "user_id") else ""
            raise errors.BadRequestError.field("group_by", f"{value!r} is not a group of the {kind.name} report here"
                                                           f"{why}; use {', '.join(kind.group_by)}")
        if value not in chosen:
            chosen.append(value)
    return tuple(chosen)


def _filter(query: dict[str, list[str]], name: str) -> frozenset[str] | None:
    """A list filter's values (None: no filter; empty values are left out)."""
    for spelling in (name, f"{name}[]"):
        if len(query.get(spelling, [])) > MAX_FILTER_VALUES:
            raise errors.BadRequestError.field(name, f"at most {MAX_FILTER_VALUES} values")
    values = [v for v in _values(query, name) if v != ""]
    return frozenset(values) if values else None


# -- the report: pure functions of the query and the totals ------------------------------------------------------

Totals = dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]]  # (caller, YYYYMMDD) -> model -> mode -> counts


def model_matches(uri: str, wanted: frozenset[str] | None, folder: str | None) -> bool:
    """A `models` filter value names a model by its full URI (as /v1/models lists it) or by its short name."""
    if wanted is None:
        return True
    from shared.openai.catalog import _full_uri  # what GET /v1/models/{model} resolves a short name with

    return uri in wanted or any(_full_uri(value, folder) == uri for value in wanted)


def line_item(model: str, mode: str) -> str:
    """A cost's line item: the model's URI and the mode upstream bills it in (sync, async or batch)."""
    return f"{model}, {mode}"


def report(query: Query, callers: set[str] | None, totals: Totals, prices: dict[str, Any],
           folder: str | None = None) -> dict[str, Any]:
    """The page: one bucket per day of it, each with one result per group of what `callers` used that day
    (None: every caller in `totals`)."""
    days, next_page = query.page()
    data = []
    for day in days:
        name = day_name(day)
        lines = _lines(query, name, callers, totals, prices, folder)
        data.append({"object": "bucket", "start_time": day * DAY, "end_time": (day + 1) * DAY,
                     "results": _results(query, lines, prices)})
    return {"object": "page", "data": data, "has_more": next_page is not None, "next_page": next_page}


@dataclass
class _Line:
    caller: str
    model: str
    mode: str
    counts: dict[str, int]
    amount: float | None = None  # costs only: None when this model and mode have no price


def _lines(query: Query, day: str, callers: set[str] | None, totals: Totals, prices: dict[str, Any],
           folder: str | None) -> list[_Line]:
    from shared.prices import cost

    out = []
    for (caller, pair_day), models in sorted(totals.items()):
        if pair_day != day or (callers is not None and caller not in callers):
            continue
        if query.api_key_ids is not None and caller not in query.api_key_ids:
            continue
        amounts = cost(models, prices)["models"] if query.kind is COSTS else {}
        for model, modes in sorted(models.items()):
            if query.kind.schemes and model.partition("://")[0] not in query.kind.schemes:
                continue
            if not model_matches(model, query.models, folder):
                continue
            for mode, counts in sorted(modes.items()):
                if query.batch is not None and (mode != "sync") != query.batch:
                    continue
                if query.line_items is not None and line_item(model, mode) not in query.line_items:
                    continue
                out.append(_Line(caller, model, mode, counts, amounts.get(model, {}).get(mode)))
    return out


def _group_key(query: Query, line: _Line) -> tuple[Any, ...]:
    fields = {"model": line.model, "api_key_id": line.caller, "batch": line.mode != "sync",
              "line_item": line_item(line.model, line.mode)}
    return tuple(fields[name] for name in query.group_by)


def _results(query: Query, lines: list[_Line], prices: dict[str, Any]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[_Line]] = {}
    for line in lines:
        groups.setdefault(_group_key(query, line), []).append(line)
    results = []
    for key in sorted(groups, key=lambda k: tuple(str(part) for part in k)):
        grouped = dict(zip(query.group_by, key, strict=True))
        members = groups[key]
        if query.kind is COSTS:
            results.append(_cost_result(grouped, members, prices))
        else:
            results.append(_usage_result(query.kind, grouped, members))
    return results


def _sum(lines: list[_Line], counter: str) -> int:
    return sum(int(line.counts.get(counter, 0)) for line in lines)


def _usage_result(kind: Kind, grouped: dict[str, Any], lines: list[_Line]) -> dict[str, Any]:
    result: dict[str, Any] = {"object": kind.result, "input_tokens": _sum(lines, "input_tokens")}
    if kind is COMPLETIONS:
        # upstream reports no cached or audio tokens and bills none: zero is the billed truth
        result.update(output_tokens=_sum(lines, "output_tokens"), input_cached_tokens=0, input_audio_tokens=0,
                      output_audio_tokens=0)
    result.update(num_model_requests=_sum(lines, "requests"), project_id=None, user_id=None,
                  api_key_id=grouped.get("api_key_id"), model=grouped.get("model"))
    if kind is COMPLETIONS:
        result["batch"] = grouped.get("batch")
    return result


def _cost_result(grouped: dict[str, Any], lines: list[_Line], prices: dict[str, Any]) -> dict[str, Any]:
    """A total with an unpriced part is unknown: `amount` is null then (group_by=line_item shows which)."""
    unpriced = any(line.amount is None for line in lines)
    value = round(sum(line.amount or 0.0 for line in lines), 10)
    result: dict[str, Any] = {
        "object": COSTS.result,
        "amount": None if unpriced else {"value": value, "currency": str(prices["currency"]).lower()},
        "line_item": grouped.get("line_item"), "project_id": None, "api_key_id": grouped.get("api_key_id"),
        "quantity": None, "quantity_unit": None}
    if "line_item" in grouped:
        # a line item is one model in one mode (of one caller, or of several summed)
        per_request = "per_request" in (prices["models"].get(_price_key(lines[0].model)) or {})
        result["quantity"] = float(_sum(lines, "units") if per_request else
                                   _sum(lines, "input_tokens") + _sum(lines, "output_tokens"))
        result["quantity_unit"] = "billing_units" if per_request else "tokens"
    return result


def _price_key(model: str) -> str:
    from shared.prices import price_key

    return price_key(model)


# -- the routes ----------------------------------------------------------------------------------------------

def completions(_: None, inv: Invocation) -> Reply:
    return _serve(COMPLETIONS, inv)


def embeddings(_: None, inv: Invocation) -> Reply:
    return _serve(EMBEDDINGS, inv)


def costs(_: None, inv: Invocation) -> Reply:
    return _serve(COSTS, inv)


def _serve(kind: Kind, inv: Invocation) -> Reply:
    from shared.jobs import usage
    from shared.jobs.store import job_store
    from shared.prices import table

    query = parse(kind, inv.request.query_lists if inv.request is not None else {}, clock.now())
    admin = inv.settings.admin_caller is not None and inv.caller == inv.settings.admin_caller
    days = [day_name(day) for day in query.page()[0]]
    if admin:
        callers = set(query.api_key_ids) if query.api_key_ids is not None else None
    else:
        callers = {inv.caller} if query.api_key_ids is None or inv.caller in query.api_key_ids else set()
    inv.log_fields.update(report=kind.name, days=len(days), sees_all=admin)
    totals: Totals = {}
    if days and (callers is None or callers):
        if not (inv.settings.docapi_endpoint and inv.settings.results_bucket):
            raise errors.NotFoundError("the usage API needs the job store (DOCAPI_ENDPOINT), where the usage "
                                       "ledger keeps its totals")
        store = job_store(inv.settings)
        if callers is None:
            pairs = [(caller, day) for day, names in usage.callers(store, days).items() for caller in names]
        else:
            pairs = [(caller, day) for caller in sorted(callers) for day in days]
        inv.log_fields["ledger_keys"] = len(pairs) * usage.USAGE_SHARDS
        totals = usage.pair_totals(store, pairs) if pairs else {}
    return Reply(report(query, callers, totals, table(inv.settings.prices), inv.settings.folder_id))
