"""Promises of the Usage and Costs API's query and report (shared/openai/usage_api.py) that
tests/unit/test_usage_api.py leaves open: each 400's words, the empty values a client sends for "not set",
the exact bounds (100 filter values, the first day's cursor), cursors that only look like ours, days that stay
UTC days whatever the server's zone, and filters that skip one line without losing the ones after it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared import errors, prices
from shared.openai import usage_api as api
from tests.conftest import in_zone
from tests.unit.test_usage_api import CLS, DAY0, EMB, LITE, NOW, OSS, PRICED, PRO, counts, q, refused

FIRST = DAY0 // 86_400
D1 = api.day_name(FIRST)


def results(query: api.Query, totals: api.Totals, callers: set[str] | None = None,
            folder: str | None = None) -> list[dict[str, Any]]:
    return api.report(query, callers, totals, PRICED, folder)["data"][0]["results"]


# -- the query's words and bounds -------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "params", "message"), [
    ("start_time", {}, "is required: Unix seconds (UTC)"),
    ("end_time", {"start_time": DAY0, "end_time": DAY0 - 1},
     "must be after start_time (start_time is inclusive, end_time exclusive)"),
    ("bucket_width", {"start_time": DAY0, "bucket_width": "1h"},
     "only 1d is supported here: the usage ledger keeps daily totals (UTC days)"),
    ("batch", {"start_time": DAY0, "batch": "1"}, "must be true or false"),
    ("page", {"start_time": DAY0, "page": "day_x"}, "must be the next_page of an earlier answer to this query"),
    ("group_by", {"start_time": DAY0, "group_by": "user_id"},
     "'user_id' is not a group of the completions report here (this gateway has no projects or users; its callers "
     "are API keys (api_key_id)); use model, api_key_id, batch"),
    ("group_by", {"start_time": DAY0, "group_by": "day"},
     "'day' is not a group of the completions report here; use model, api_key_id, batch"),
])
def test_each_refusal_says_exactly_what_the_parameter_must_be(field: str, params: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        api.parse(api.COMPLETIONS, {k: v if isinstance(v, list) else [str(v)] for k, v in params.items()}, NOW)
    body = caught.value.to_openai_body()["error"]
    assert body["param"] == field and body["message"] == f"{field}: {message}", body


@pytest.mark.parametrize("name", ["bucket_width", "limit", "page", "batch", "end_time"])
def test_an_empty_value_is_the_parameter_not_given(name: str) -> None:
    """`?limit=` and friends are what a client sends for an unset option: the default, never a 400."""
    given, plain = q(**{name: ""}), q()
    assert given == plain
    assert (given.limit, given.page_day, given.batch, given.end_day) == (7, FIRST, None, NOW // 86_400 + 1)


def test_a_list_filter_takes_exactly_a_hundred_values_under_each_spelling() -> None:
    names = [f"m{n}" for n in range(100)]
    assert q(models=names).models == frozenset(names)
    assert q(**{"api_key_ids[]": names}).api_key_ids == frozenset(names)
    assert "at most 100" in refused("api_key_ids", start_time=DAY0, **{"api_key_ids[]": [*names, "x"]})


@pytest.mark.parametrize("page", [
    "day_2026120",  # seven digits
    "day_202612011",  # nine
    "abc_20261201",  # another prefix, the right length
    "day-20261201",
    "day_\u0662\u0660\u0662\u0666\u0661\u0662\u0660\u0661",  # Arabic-Indic digits: isdigit(), strptime reads them
    "day_2026 201",
])
def test_only_our_own_cursors_are_pages(page: str) -> None:
    assert "must be the next_page" in refused("page", start_time=DAY0, page=page)


def test_the_first_days_cursor_is_a_page_and_walks_from_that_day() -> None:
    query = q(page=api.cursor(FIRST), limit="2")
    assert query.page_day == FIRST and query.page()[0] == [FIRST, FIRST + 1]
    last = q(page=api.cursor(NOW // 86_400))
    assert last.page() == ([NOW // 86_400], None)


def test_filters_a_report_has_not_are_refused_even_when_empty() -> None:
    """An empty `models=` on costs is still a filter costs does not take: refused, not read as unset."""
    assert "not a filter of the costs" in refused("models", api.COSTS, start_time=DAY0, models="")
    assert "not a filter of the completions" in refused("line_items", start_time=DAY0, line_items="")


@pytest.fixture(params=["WEST+12", "EAST-14"])  # POSIX zones: UTC-12 and UTC+14
def far_zone(request: pytest.FixtureRequest) -> Iterator[None]:
    """The process far from UTC (the cloud runs in UTC; a laptop running `make run` may not)."""
    with in_zone(request.param):
        yield


def test_days_and_cursors_are_utc_days_whatever_the_servers_zone(far_zone: None) -> None:
    assert time.localtime(DAY0).tm_hour in (12, 14)  # the zone took
    assert api.day_name(FIRST) == "20261201" and api.cursor(FIRST + 1) == "day_20261202"
    query = q(page="day_20261203", limit="1")
    assert query.page_day == FIRST + 2 and query.page() == ([FIRST + 2], "day_20261204")
    page = api.report(q(limit="1"), None, {("a", "20261201"): {LITE: {"sync": counts(3, 4)}}}, PRICED)
    assert page["data"][0]["start_time"] == DAY0 and page["data"][0]["results"][0]["input_tokens"] == 3


# -- the report: one skipped line never hides the lines after it --------------------------------------------------

def test_each_filter_skips_only_the_lines_it_names() -> None:
    day = {
        ("a", D1): {LITE: {"async": counts(1), "batch": counts(2), "sync": counts(4)},
                    PRO: {"sync": counts(8)}},
        ("b", D1): {LITE: {"sync": counts(16)}},
        ("c", D1): {LITE: {"sync": counts(32)}},
    }
    # api_key_ids: a, skipped, comes before b and c
    assert results(q(api_key_ids=["b", "c"], limit="1"), day)[0]["input_tokens"] == 48
    # models: gpt://…/yandexgpt-lite sorts before gpt://…/yandexgpt/, and only the latter is asked
    only_pro = results(q(models="yandexgpt", group_by="model", limit="1"), day, folder="b1gf")
    assert [(r["model"], r["input_tokens"]) for r in only_pro] == [(PRO, 8)]
    by_uri = results(q(models=PRO, limit="1"), day)
    assert by_uri[0]["input_tokens"] == 8
    # batch=false: async and batch come before sync in each model
    assert results(q(batch="false", limit="1"), day)[0]["input_tokens"] == 4 + 8 + 16 + 32
    assert results(q(batch="true", limit="1"), day)[0]["input_tokens"] == 3
    # line_items: the async line is skipped, the sync one after it kept
    costs = results(q(api.COSTS, line_items=f"{LITE}, sync", group_by="line_item", limit="1"), day)
    assert [(r["line_item"], r["quantity"]) for r in costs] == [(f"{LITE}, sync", 4.0 + 16 + 32)]


def test_a_models_filter_keeps_out_every_model_it_does_not_name() -> None:
    day = {("a", D1): {PRO: {"sync": counts(1)}, LITE: {"sync": counts(2)}, OSS: {"sync": counts(4)}}}
    assert results(q(models=LITE, limit="1"), day)[0]["input_tokens"] == 2
    assert results(q(models=["yandexgpt-lite"], limit="1"), day, folder="b1gf")[0]["input_tokens"] == 2
    assert results(q(models=["gpt-oss-20b", PRO], limit="1"), day, folder="b1gf")[0]["input_tokens"] == 5


def test_counters_missing_from_the_ledger_count_as_zero() -> None:
    """A ledger item only holds the counters its writes added: an embeddings-only day has no output_tokens."""
    day = {("a", D1): {LITE: {"sync": {"input_tokens": 5}}}, ("b", D1): {LITE: {"sync": {"output_tokens": 7}}}}
    row = results(q(limit="1"), day)[0]
    assert (row["input_tokens"], row["output_tokens"], row["num_model_requests"]) == (5, 7, 0)
    quantity = results(q(api.COSTS, group_by="line_item", limit="1"), day)[0]["quantity"]
    assert quantity == 12.0


def test_costs_grouped_by_key_name_the_key_and_a_free_line_adds_nothing() -> None:
    day = {("alice", D1): {LITE: {"sync": counts(1000, 0)}, EMB: {"sync": counts(0, 0, 0)}},
           ("bob", D1): {EMB: {"sync": counts(2000, 0)}}}
    rows = results(q(api.COSTS, group_by="api_key_id", limit="1"), day)
    assert [(r["api_key_id"], r["amount"]["value"]) for r in rows] == [
        ("alice", pytest.approx(0.002, abs=1e-12)), ("bob", pytest.approx(2 * 0.00008, abs=1e-12))]
    assert rows[0]["line_item"] is None and rows[0]["quantity"] is None
    classifier = results(q(api.COSTS, group_by=["line_item", "api_key_id"], limit="1"),
                         {("c", D1): {CLS: {"sync": counts(10, 0, 3)}}})
    assert classifier == [{"object": "organization.costs.result", "amount": {"value": pytest.approx(3 * 0.0012),
                                                                              "currency": "usd"},
                           "line_item": f"{CLS}, sync", "project_id": None, "api_key_id": "c", "quantity": 3.0,
                           "quantity_unit": "billing_units"}]


def test_a_total_is_given_to_ten_decimal_places_without_binary_noise() -> None:
    """Three lines of 10 decimals each add up, in binary floating point, to 416273.79798964795: the answer says
    416273.797989648, the sum to the ten places every amount has."""
    table = prices.table('{"units": {"text_generation": 0.342288}}')
    day = {("a", D1): {LITE: {"sync": {"input_tokens": 104307984}}, PRO: {"sync": {"input_tokens": 145442778}}},
           ("b", D1): {LITE: {"sync": {"input_tokens": 239186069}}}}
    value = api.report(q(api.COSTS, limit="1"), None, day, table)["data"][0]["results"][0]["amount"]["value"]
    assert value == 416273.797989648 and value == round(value, 10)


def test_a_model_is_in_the_report_of_its_scheme_even_with_a_second_scheme_marker_in_its_uri() -> None:
    """resolve_model passes a URI's tail as given, so gpt://f/m/latest://x is a gpt:// model: a completion."""
    odd = "gpt://b1gf/yandexgpt/latest://x"
    day = {("a", D1): {odd: {"sync": counts(9, 1)}}}
    assert results(q(limit="1"), day)[0]["input_tokens"] == 9
    assert results(q(api.EMBEDDINGS, limit="1"), day) == []
