"""The Usage and Costs API's pure parts (shared/openai/usage_api.py): the query's rules (a 400 naming the
parameter), the day buckets and their paging, grouping and filters over given totals, costs from the price
table (an unpriced part makes a total unknown, never zero), answers that the `openai` client's own types parse
strictly; and the ledger's day list of callers, written in the ledger's one transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.admin.organization.usage_completions_response import UsageCompletionsResponse
from openai.types.admin.organization.usage_costs_response import UsageCostsResponse
from openai.types.admin.organization.usage_embeddings_response import UsageEmbeddingsResponse

from shared import errors, events, prices
from shared.config import Settings
from shared.jobs import usage
from shared.openai import usage_api as api

LITE = "gpt://b1gf/yandexgpt-lite/latest"
PRO = "gpt://b1gf/yandexgpt/latest"
OSS = "gpt://b1gf/gpt-oss-20b/latest"
EMB = "emb://b1gf/text-search-doc/latest"
CLS = "cls://b1gf/yandexgpt/latest"
DAY0 = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())  # a Tuesday, 00:00 UTC
NOW = DAY0 + 5 * 86_400 + 3600  # 2026-12-06 01:00 UTC
PRICED = prices.table('{"units": {"text_generation": 0.002, "text_generation_alt": 0.001}}')


def q(kind: api.Kind = api.COMPLETIONS, **params: Any) -> api.Query:
    query = {name: value if isinstance(value, list) else [str(value)] for name, value in params.items()}
    return api.parse(kind, {"start_time": [str(DAY0)], **query}, NOW)


def refused(field: str, kind: api.Kind = api.COMPLETIONS, **params: Any) -> str:
    with pytest.raises(errors.BadRequestError) as caught:
        api.parse(kind, {name: value if isinstance(value, list) else [str(value)] for name, value in params.items()},
                  NOW)
    assert caught.value.to_openai_body()["error"]["param"] == field, caught.value.message
    assert caught.value.status == 400
    return caught.value.message


def counts(inp: int, out: int = 0, req: int = 1, units: int | None = None) -> dict[str, int]:
    return {"input_tokens": inp, "output_tokens": out, "reasoning_tokens": 0, "requests": req,
            "units": req if units is None else units}


# -- the query ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "params", "says"), [
    ("start_time", {}, "required"),
    ("start_time", {"start_time": ""}, "required"),
    ("start_time", {"start_time": "-1"}, "Unix seconds"),
    ("start_time", {"start_time": "1.5"}, "Unix seconds"),
    ("start_time", {"start_time": "12345678901"}, "Unix seconds"),
    ("start_time", {"start_time": "１２"}, "Unix seconds"),  # full-width digits: isdigit() but not ASCII
    ("end_time", {"start_time": DAY0, "end_time": DAY0}, "after start_time"),
    ("end_time", {"start_time": DAY0, "end_time": "soon"}, "Unix seconds"),
    ("bucket_width", {"start_time": DAY0, "bucket_width": "1h"}, "only 1d"),
    ("bucket_width", {"start_time": DAY0, "bucket_width": "1m"}, "only 1d"),
    ("limit", {"start_time": DAY0, "limit": "0"}, "1 to 31"),
    ("limit", {"start_time": DAY0, "limit": "32"}, "1 to 31"),
    ("limit", {"start_time": DAY0, "limit": "seven"}, "1 to 31"),
    ("group_by", {"start_time": DAY0, "group_by": "project_id"}, "no projects"),
    ("group_by", {"start_time": DAY0, "group_by[]": ["model", "line_item"]}, "model, api_key_id, batch"),
    ("group_by", {"start_time": DAY0, "group_by": "model,api_key_id"}, "not a group"),
    ("project_ids", {"start_time": DAY0, "project_ids[]": "p1"}, "no projects"),
    ("user_ids", {"start_time": DAY0, "user_ids": "u1"}, "no projects"),
    ("batch", {"start_time": DAY0, "batch": "yes"}, "true or false"),
    ("page", {"start_time": DAY0, "page": "AAAAAGdGxdEiJdKO"}, "next_page"),
    ("page", {"start_time": DAY0, "page": "day_20261399"}, "next_page"),
    ("page", {"start_time": DAY0, "page": "day_20261130"}, "outside"),  # before start_time's day
    ("page", {"start_time": DAY0, "page": "day_20261207"}, "outside"),  # after today
    ("models", {"start_time": DAY0, "models": [f"m{n}" for n in range(101)]}, "at most 100"),
])
def test_bad_queries_are_400s_naming_the_parameter(field: str, params: dict[str, Any], says: str) -> None:
    assert says in refused(field, **params)


def test_each_report_takes_its_own_groups_filters_and_limits() -> None:
    assert "line_item, api_key_id" in refused("group_by", api.COSTS, start_time=DAY0, group_by="model")
    assert "model, api_key_id" in refused("group_by", api.EMBEDDINGS, start_time=DAY0, group_by="batch")
    assert "not a filter" in refused("batch", api.COSTS, start_time=DAY0, batch="true")
    assert q(api.COSTS, limit="180").limit == 180 and q(api.COSTS).limit == 7
    assert "1 to 180" in refused("limit", api.COSTS, start_time=DAY0, limit="181")
    assert "not a filter of the costs" in refused("models", api.COSTS, start_time=DAY0, models="x")  # OpenAI's: none
    assert "not a filter of the embeddings" in refused("line_items", api.EMBEDDINGS, start_time=DAY0, line_items="x")


def test_lists_come_repeated_with_or_without_brackets_and_defaults_hold() -> None:
    query = q(group_by=["model", "batch"], **{"group_by[]": ["model", "api_key_id"]}, api_key_ids="a",
              **{"api_key_ids[]": ["b", ""]}, batch="false", bucket_width="1d", limit="007")
    assert query.group_by == ("model", "batch", "api_key_id")  # once each, in the order asked
    assert query.api_key_ids == {"a", "b"} and query.batch is False and query.limit == 7
    plain = q()
    assert (plain.group_by, plain.models, plain.api_key_ids, plain.batch, plain.limit) == ((), None, None, None, 7)


def test_buckets_are_whole_utc_days_from_start_times_day_to_end_time_and_never_past_today() -> None:
    query = q(start_time=DAY0 + 7200, end_time=DAY0 + 2 * 86_400 + 1)  # mid-day to just past day 2's start
    assert (query.first_day, query.end_day) == (DAY0 // 86_400, DAY0 // 86_400 + 3)
    assert q(end_time=DAY0 + 2 * 86_400).end_day == DAY0 // 86_400 + 2  # exclusive: a day that starts at it is out
    assert q().end_day == NOW // 86_400 + 1  # default end: now, so today is the last bucket
    assert q(end_time=NOW + 400 * 86_400).end_day == NOW // 86_400 + 1
    future = q(start_time=NOW + 3 * 86_400)
    assert future.page() == ([], None)


def test_paging_walks_the_days_limit_at_a_time_and_the_last_page_says_so() -> None:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        days, cursor = q(limit="4", **({"page": cursor} if cursor else {})).page()
        seen += days
        pages += 1
        if cursor is None:
            break
        assert cursor.startswith("day_")
    assert seen == list(range(DAY0 // 86_400, NOW // 86_400 + 1)) and pages == 2  # 6 days: 4 + 2


# -- grouping, filters and shapes ----------------------------------------------------------------------------

D1, D2 = api.day_name(DAY0 // 86_400), api.day_name(DAY0 // 86_400 + 1)
TOTALS: api.Totals = {
    ("alice", D1): {LITE: {"sync": counts(10, 5), "async": counts(100, 50, 2)}, EMB: {"sync": counts(7, 0, 3)},
                    CLS: {"sync": counts(300, 0, 1, 2)}},
    ("bob", D1): {LITE: {"sync": counts(1, 2)}, PRO: {"sync": counts(20, 10)}},
    ("bob", D2): {EMB: {"sync": counts(4, 0, 2)}, OSS: {"sync": counts(8, 8)}},
}


def test_completions_without_groups_sum_every_gpt_model_of_the_day_and_empty_days_have_no_results() -> None:
    page = api.report(q(end_time=DAY0 + 3 * 86_400), None, TOTALS, PRICED)
    first, second, third = page["data"]
    assert first["results"] == [{"object": "organization.usage.completions.result", "input_tokens": 131,
                                 "output_tokens": 67, "input_cached_tokens": 0, "input_audio_tokens": 0,
                                 "output_audio_tokens": 0, "num_model_requests": 5, "project_id": None,
                                 "user_id": None, "api_key_id": None, "model": None, "batch": None}]
    assert (second["results"][0]["input_tokens"], second["results"][0]["num_model_requests"]) == (8, 1)
    assert third == {"object": "bucket", "start_time": DAY0 + 2 * 86_400, "end_time": DAY0 + 3 * 86_400,
                     "results": []}
    assert page["has_more"] is False and page["next_page"] is None
    UsageCompletionsResponse.model_validate(page, strict=True)


def test_grouping_by_model_key_and_batch_splits_exactly() -> None:
    page = api.report(q(group_by=["api_key_id", "model", "batch"], limit=1), None, TOTALS, PRICED)
    rows = [(r["api_key_id"], r["model"], r["batch"], r["input_tokens"], r["output_tokens"], r["num_model_requests"])
            for r in page["data"][0]["results"]]
    assert rows == [("alice", LITE, False, 10, 5, 1), ("alice", LITE, True, 100, 50, 2),
                    ("bob", LITE, False, 1, 2, 1), ("bob", PRO, False, 20, 10, 1)]  # sorted by the groups' values
    assert page["has_more"] is True and page["next_page"] == f"day_{D2}"
    parsed = UsageCompletionsResponse.model_validate(page, strict=True)
    assert parsed.data[0].results[1].batch is True  # type: ignore[union-attr]


def test_filters_narrow_and_a_callers_view_is_only_its_own() -> None:
    only_batch = api.report(q(batch="true", limit=1), None, TOTALS, PRICED)["data"][0]["results"]
    assert [(r["input_tokens"], r["num_model_requests"]) for r in only_batch] == [(100, 2)]
    by_name = api.report(q(models=["yandexgpt", LITE], group_by="model", limit=1), None, TOTALS, PRICED, "b1gf")
    assert {r["model"] for r in by_name["data"][0]["results"]} == {PRO, LITE}  # a short name or the URI
    bobs = api.report(q(group_by="api_key_id", limit=1), {"bob"}, TOTALS, PRICED)["data"][0]["results"]
    assert [r["api_key_id"] for r in bobs] == ["bob"]
    asked = api.report(q(api_key_ids="alice", limit=1), {"bob"}, TOTALS, PRICED)["data"][0]["results"]
    assert asked == []  # bob naming alice: nothing, as for a key that does not exist


def test_embeddings_count_texts_as_requests_and_leave_other_models_out() -> None:
    page = api.report(q(api.EMBEDDINGS, group_by="api_key_id", limit=2), None, TOTALS, PRICED)
    assert [r for bucket in page["data"] for r in bucket["results"]] == [
        {"object": "organization.usage.embeddings.result", "input_tokens": 7, "num_model_requests": 3,
         "project_id": None, "user_id": None, "api_key_id": "alice", "model": None},
        {"object": "organization.usage.embeddings.result", "input_tokens": 4, "num_model_requests": 2,
         "project_id": None, "user_id": None, "api_key_id": "bob", "model": None}]
    UsageEmbeddingsResponse.model_validate(page, strict=True)


# -- costs ----------------------------------------------------------------------------------------------------

def test_costs_are_tokens_times_prices_per_line_item_in_lowercase_currency() -> None:
    page = api.report(q(api.COSTS, group_by=["line_item"], limit=1), {"alice"}, TOTALS, PRICED)
    lines = {r["line_item"]: r for r in page["data"][0]["results"]}
    assert set(lines) == {f"{CLS}, sync", f"{EMB}, sync", f"{LITE}, async", f"{LITE}, sync"}
    assert lines[f"{LITE}, sync"]["amount"] == {"value": pytest.approx(15 / 1000 * 1 * 0.002, abs=1e-12),
                                                "currency": "usd"}
    assert lines[f"{LITE}, async"]["amount"]["value"] == pytest.approx(150 / 1000 * 0.5 * 0.002, abs=1e-12)
    assert lines[f"{EMB}, sync"]["amount"]["value"] == pytest.approx(7 / 1000 * 0.00008, abs=1e-12)
    assert (lines[f"{CLS}, sync"]["amount"]["value"], lines[f"{CLS}, sync"]["quantity"],
            lines[f"{CLS}, sync"]["quantity_unit"]) == (pytest.approx(2 * 0.0012), 2.0, "billing_units")
    assert (lines[f"{LITE}, async"]["quantity"], lines[f"{LITE}, async"]["quantity_unit"]) == (150.0, "tokens")
    UsageCostsResponse.model_validate(page, strict=True)
    total = api.report(q(api.COSTS, limit=1), {"alice"}, TOTALS, PRICED)["data"][0]["results"]
    assert len(total) == 1 and total[0]["amount"]["value"] == pytest.approx(
        sum(line["amount"]["value"] for line in lines.values()), abs=1e-9)
    assert total[0]["quantity"] is None and total[0]["line_item"] is None


def test_a_total_with_an_unpriced_part_is_null_never_zero_and_line_items_show_which() -> None:
    bob_day2 = api.report(q(api.COSTS, group_by="line_item", limit=2), {"bob"}, TOTALS, PRICED)["data"][1]["results"]
    by_line = {r["line_item"]: r["amount"] for r in bob_day2}
    assert by_line[f"{OSS}, sync"] is None  # gpt-oss-20b has no synchronous price
    assert by_line[f"{EMB}, sync"]["value"] > 0
    total = api.report(q(api.COSTS, limit=2), {"bob"}, TOTALS, PRICED)["data"][1]["results"]
    assert total == [{"object": "organization.costs.result", "amount": None, "line_item": None, "project_id": None,
                      "api_key_id": None, "quantity": None, "quantity_unit": None}]
    unpriced_default = api.report(q(api.COSTS, limit=1), {"bob"}, TOTALS, prices.table())["data"][0]["results"]
    assert unpriced_default[0]["amount"] is None  # by default generation's unit price is not confirmed: unknown
    filtered = api.report(q(api.COSTS, line_items=f"{EMB}, sync", limit=2), {"bob"}, TOTALS, PRICED)
    assert filtered["data"][1]["results"][0]["amount"]["value"] == pytest.approx(4 / 1000 * 0.00008, abs=1e-12)
    UsageCostsResponse.model_validate(filtered, strict=True)


# -- the ledger's day list of callers, and the query string's repeated values ----------------------------------

class FakeStore:
    table = "jobs"

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def add_usage(self, items: list[dict[str, Any]], mark: str, patient: bool) -> bool:
        self.calls.append(items)
        return True


def test_the_ledgers_one_transaction_also_adds_the_caller_to_its_days_list_spread_by_call() -> None:
    store = FakeStore()
    keys = [f"sync#{n}" for n in range(300)]
    for key in keys:
        usage.add(store, usage.Entry("team/a", LITE, "completion", "sync", "sync", key, at=1_700_000_000.0),  # type: ignore[arg-type]
                  Settings(), patient=False)
    assert all(len(items) == 3 for items in store.calls)  # still one transaction per entry
    lists = [items[2]["Update"] for items in store.calls]
    assert {u["Key"]["id"]["S"] for u in lists} == {f"usage#20231114#:callers#{n}" for n in range(usage.CALLER_SHARDS)}
    first = lists[0]
    assert first["UpdateExpression"].startswith("ADD #callers :caller") and "ConditionExpression" not in first
    assert first["ExpressionAttributeValues"][":caller"] == {"SS": ["team/a"]}
    assert first["ExpressionAttributeValues"][":exp"] == store.calls[0][1]["Update"]["ExpressionAttributeValues"][":exp"]


@pytest.mark.parametrize("caller", ["callers", ":callers", "a#b", "x/y:z"])
def test_no_callers_totals_item_is_ever_a_days_caller_list(caller: str) -> None:
    """One transaction may not touch an item twice, and a caller's totals must never land in the list."""
    store = FakeStore()
    for n in range(64):
        usage.add(store, usage.Entry(caller, LITE, "completion", "sync", "sync", f"k{n}", at=1_700_000_000.0),  # type: ignore[arg-type]
                  Settings(), patient=False)
    totals = {items[1]["Update"]["Key"]["id"]["S"] for items in store.calls}
    lists = {items[2]["Update"]["Key"]["id"]["S"] for items in store.calls}
    assert totals and lists and not totals & lists
    assert not totals & {usage.callers_key("20231114", n) for n in range(usage.CALLER_SHARDS)}


def test_the_query_strings_repeated_values_are_kept_in_every_envelope() -> None:
    base = {"httpMethod": "GET", "headers": {}, "body": ""}
    gateway = events.parse_http({**base, "url": "/v1/x?group_by[]=model&group_by[]=batch",
                                 "queryStringParameters": {"group_by[]": "batch"},
                                 "multiValueQueryStringParameters": {"group_by[]": ["model", "batch"]}})
    assert gateway.query_lists == {"group_by[]": ["model", "batch"]} and gateway.query == {"group_by[]": "batch"}
    url_only = events.parse_http({**base, "url": "/v1/x?a=1&a=2&b="})
    assert url_only.query_lists == {"a": ["1", "2"], "b": [""]}
    single = events.parse_http({**base, "queryStringParameters": {"a": "1"}})
    assert single.query_lists == {"a": ["1"]}
