"""The Usage and Costs routes' own promises (shared/openai/usage_api.py's handlers), each in a fraction of a second:
the operations function invoked directly with a gateway event (the authorizer's verdict in its context) over a
ledger written straight into the job store in the in-process stand-in (local.aws.InProcessMoto: moto's app without a socket). Who sees what (the admin every caller, anyone else only
itself, whatever it names), which days are read, the summary line's fields, and the 404 a deployment without the
job store gives — but only when there is something to read. tests/integration/test_usage_api.py proves the same
routes end to end through the gateway with real calls; this file is what `make mutate` runs for them."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from local.aws import InProcessMoto
from local.functions import load
from shared.config import Settings
from shared.jobs import usage
from shared.jobs.store import JobStore
from tests.clock import ManualClock
from tests.conftest import FOLDER, Aws, Emulator, FakeContext, reset_caches

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

LITE = f"gpt://{FOLDER}/yandexgpt-lite/latest"
EMB = f"emb://{FOLDER}/text-search-doc/latest"
PRICES = '{"units": {"text_generation": 0.002, "text_generation_alt": 0.001}}'
DAY = 86_400


def ask(path: str, caller: str | None, **params: Any) -> tuple[int, dict[str, Any]]:
    event = {"httpMethod": "GET", "url": f"/v1/organization/{path}?{urlencode(params, doseq=True)}", "headers": {},
             "body": None, "requestContext": {"authorizer": {"caller": caller} if caller else {}}}
    answer = load("operations")(event, FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


def summary(log: io.StringIO) -> dict[str, Any]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return next(line for line in reversed(lines) if line.get("msg") == "request handled")


def tokens(page: dict[str, Any]) -> list[list[tuple[Any, int]]]:
    """Per bucket: (api_key_id, input_tokens) of each result."""
    return [[(r["api_key_id"], r["input_tokens"]) for r in bucket["results"]] for bucket in page["data"]]


@pytest.fixture
def ledgered(aws: Aws, stack_env: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> int:
    """alice and bob used models yesterday and today; the admin is ops. The start of yesterday (UTC)."""
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    monkeypatch.setenv("FM_PRICES", PRICES)
    reset_caches()
    settings = Settings.from_env()
    store = JobStore(settings)
    today = int(clock.now() // DAY) * DAY
    for n, (caller, at, model, inp) in enumerate([
            ("alice", today - DAY + 60, LITE, 10), ("alice", today + 60, LITE, 20), ("alice", today + 90, EMB, 7),
            ("bob", today - DAY + 60, LITE, 100), ("bob", today + 60, LITE, 200)]):
        assert usage.add(store, usage.Entry(caller, model, "completion", "sync", "sync", f"sync#{n}",
                                            input_tokens=inp, output_tokens=1, at=at), settings, patient=True)
    return today - DAY


def test_a_caller_sees_only_itself_whatever_it_names_and_the_admin_sees_everyone(ledgered: int) -> None:
    query = {"start_time": ledgered, "group_by": "api_key_id"}
    assert tokens(ask("usage/completions", "alice", **query)[1]) == [[("alice", 10)], [("alice", 20)]]
    assert tokens(ask("usage/completions", "bob", **query)[1]) == [[("bob", 100)], [("bob", 200)]]
    named = ask("usage/completions", "bob", **query, api_key_ids=["alice", "bob"])[1]
    assert tokens(named) == [[("bob", 100)], [("bob", 200)]]  # its own, never alice's
    assert tokens(ask("usage/completions", "bob", **query, api_key_ids="alice")[1]) == [[], []]
    everyone = ask("usage/completions", "ops", **query)[1]
    assert tokens(everyone) == [[("alice", 10), ("bob", 100)], [("alice", 20), ("bob", 200)]]
    assert tokens(ask("usage/completions", "ops", **query, api_key_ids="bob")[1]) == [[("bob", 100)], [("bob", 200)]]
    assert tokens(ask("usage/completions", "ops", **query, api_key_ids="carol")[1]) == [[], []]
    assert tokens(ask("usage/completions", None, **query)[1]) == [[], []]  # anonymous: nobody's usage
    assert tokens(ask("usage/embeddings", "alice", **query)[1]) == [[], [("alice", 7)]]


def test_without_an_admin_caller_configured_nobody_sees_the_others(ledgered: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_ADMIN_CALLER")
    reset_caches()
    assert tokens(ask("usage/completions", "ops", start_time=ledgered, group_by="api_key_id")[1]) == [[], []]


def test_a_model_named_by_its_short_name_is_found_in_the_deployments_folder(ledgered: int) -> None:
    page = ask("usage/completions", "alice", start_time=ledgered, models="yandexgpt-lite")[1]
    assert tokens(page) == [[(None, 10)], [(None, 20)]]
    assert tokens(ask("usage/completions", "alice", start_time=ledgered, models="yandexgpt")[1]) == [[], []]


def test_costs_price_the_ledger_for_the_caller(ledgered: int) -> None:
    status, page = ask("costs", "alice", start_time=ledgered, group_by="line_item")
    assert status == 200
    today = {r["line_item"]: r["amount"] for r in page["data"][1]["results"]}
    assert today[f"{LITE}, sync"] == {"value": pytest.approx(21 / 1000 * 0.002, abs=1e-12), "currency": "usd"}
    assert set(today) == {f"{LITE}, sync", f"{EMB}, sync"}


def test_the_summary_line_says_which_report_how_many_days_and_ledger_keys(ledgered: int,
                                                                         log_output: io.StringIO) -> None:
    ask("usage/completions", "alice", start_time=ledgered)
    line = summary(log_output)
    assert (line["report"], line["days"], line["sees_all"], line["ledger_keys"]) == (
        "completions", 2, False, 2 * usage.USAGE_SHARDS)
    ask("costs", "ops", start_time=ledgered, limit=1)
    line = summary(log_output)
    assert (line["report"], line["days"], line["sees_all"], line["ledger_keys"]) == (
        "costs", 1, True, 2 * usage.USAGE_SHARDS)  # yesterday's two callers
    ask("usage/embeddings", "ops", start_time=ledgered, api_key_ids=["alice", "bob", "carol"])
    line = summary(log_output)
    assert (line["report"], line["sees_all"], line["ledger_keys"]) == ("embeddings", True, 6 * usage.USAGE_SHARDS)


def test_without_the_job_store_only_a_read_that_has_something_to_read_is_refused(
        ledgered: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCAPI_ENDPOINT")
    reset_caches()
    status, body = ask("usage/completions", "alice", start_time=ledgered)
    assert status == 404 and body["error"]["message"] == (
        "the usage API needs the job store (DOCAPI_ENDPOINT), where the usage ledger keeps its totals"), body
    # nothing to read: a caller naming another key, or days after today, answers at once without the store
    assert ask("usage/completions", "alice", start_time=ledgered, api_key_ids="bob") == (200, {
        "object": "page", "data": [
            {"object": "bucket", "start_time": ledgered, "end_time": ledgered + DAY, "results": []},
            {"object": "bucket", "start_time": ledgered + DAY, "end_time": ledgered + 2 * DAY, "results": []}],
        "has_more": False, "next_page": None})
    assert ask("costs", "alice", start_time=ledgered + 5 * DAY) == (200, {
        "object": "page", "data": [], "has_more": False, "next_page": None})
    monkeypatch.setenv("DOCAPI_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("RESULTS_BUCKET")
    reset_caches()
    assert ask("usage/embeddings", "ops", start_time=ledgered)[0] == 404


def test_a_bad_query_is_a_400_naming_it_before_the_store_is_read(ledgered: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCAPI_ENDPOINT")
    reset_caches()
    status, body = ask("usage/completions", "alice", start_time=ledgered, bucket_width="1h")
    assert status == 400 and body["error"]["param"] == "bucket_width"
