"""The usage ledger's logic with fakes (which routes count, what one entry writes) and the price table: every
model the gateway names has a price entry, and a day's totals turn into cost as the pricing page says."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared import errors, logs, prices
from shared.config import OPENAI_PASSTHROUGH_MODELS, Settings
from shared.jobs import usage
from shared.openai import catalog

LITE = "gpt://b1gf/yandexgpt-lite/latest"


# -- prices ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*catalog.COMPLETION_MODELS, *OPENAI_PASSTHROUGH_MODELS, *catalog.EMBEDDING_MODELS])
def test_every_model_in_the_catalog_has_a_price_entry_for_every_mode(name: str) -> None:
    entry = prices.PRICES["models"][prices.price_key(f"gpt://b1gf/{name}/latest")]
    assert entry["unit"] in prices.PRICES["units"]
    assert set(entry["units_per_token"]) == set(prices.MODES)


def test_classifiers_have_a_price_per_request() -> None:
    for uri in ("cls://b1gf/yandexgpt-lite/latest", "cls://b1gf/yandexgpt/latest", "cls://b1gf/x/latest@tuned1"):
        entry = prices.PRICES["models"][prices.price_key(uri)]
        assert entry["per_request"] == 0.0012 and entry["tokens_per_request"] in (250, 1000)


def test_price_keys() -> None:
    assert prices.price_key("gpt://f/yandexgpt-lite/latest") == "yandexgpt-lite"
    assert prices.price_key("gpt://f/yandexgpt-lite/latest@tuned") == "yandexgpt-lite"  # billed as its base model
    assert prices.price_key("emb://f/text-search-doc/latest") == "text-search-doc"
    assert prices.price_key("cls://f/yandexgpt/latest") == "cls:yandexgpt"
    assert prices.price_key("cls://f/yandexgpt-lite/latest@abc") == "cls:tuned"


def test_classifier_units_follow_the_pricing_pages_example() -> None:
    table = prices.table()
    # "a text of 770 tokens with YandexGPT Lite is one request; with YandexGPT Pro or a tuned classifier, four"
    assert prices.classifier_units("cls://f/yandexgpt-lite/latest", 770, table) == 1
    assert prices.classifier_units("cls://f/yandexgpt/latest", 770, table) == 4
    assert prices.classifier_units("cls://f/x/latest@t", 770, table) == 4
    assert prices.classifier_units("cls://f/yandexgpt/latest", None, table) == 1


def test_cost_of_a_day_prices_what_is_known_and_lists_what_is_not() -> None:
    totals = {LITE: {"sync": {"input_tokens": 1500, "output_tokens": 500, "requests": 3, "units": 3},
                     "async": {"input_tokens": 1000, "output_tokens": 1000, "requests": 2, "units": 2}},
              "emb://f/text-search-doc/latest": {"sync": {"input_tokens": 2000, "output_tokens": 0, "requests": 1,
                                                          "units": 1}},
              "cls://f/yandexgpt/latest": {"sync": {"input_tokens": 770, "output_tokens": 0, "requests": 1, "units": 4}},
              "gpt://f/gpt-oss-20b/latest": {"sync": {"input_tokens": 10, "output_tokens": 10, "requests": 1, "units": 1}}}
    unconfirmed = prices.cost(totals, prices.table())
    assert unconfirmed["unpriced"] == [f"{LITE} async", f"{LITE} sync", "gpt://f/gpt-oss-20b/latest sync"]
    assert unconfirmed["models"] == {"emb://f/text-search-doc/latest": {"sync": 0.00016},
                                     "cls://f/yandexgpt/latest": {"sync": 0.0048}}
    assert unconfirmed["total"] == pytest.approx(0.00496)
    table = prices.table('{"units": {"text_generation": 0.002}, "currency": "USD"}')
    priced = prices.cost(totals, table)
    # Lite: 1 unit a token synchronously, 0.5 asynchronously; 2,000 tokens each -> 2 x 0.002 and 1 x 0.002
    assert priced["models"][LITE] == {"sync": pytest.approx(0.004), "async": pytest.approx(0.002)}
    assert priced["total"] == pytest.approx(0.004 + 0.002 + 0.00016 + 0.0048)


@pytest.mark.parametrize("value", ["[1]", "{not json", '{"units": []}', '{"models": 3}'])
def test_a_bad_fm_prices_is_a_config_error_naming_it(value: str) -> None:
    with pytest.raises(errors.ConfigError, match="^FM_PRICES: "):
        Settings.from_env({"FM_PRICES": value})


# -- the ledger's logic ---------------------------------------------------------------------------------------

class FakeInvocation:
    def __init__(self, fields: dict[str, Any], settings: Settings | None = None, caller: str = "alice") -> None:
        self.log_fields, self.caller = fields, caller
        self.settings = settings or Settings()


@pytest.fixture
def lines() -> Any:
    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    import sys

    logs.configure(level="INFO", stream=sys.stdout)


def test_only_billed_routes_that_answered_with_usage_are_recorded(lines: Any) -> None:
    tokens = {"model": LITE, "input_tokens": 5, "completion_tokens": 7, "reasoning_tokens": 2}
    assert usage.record_request("tokenize", FakeInvocation(dict(tokens)), "r1") is None  # free upstream
    assert usage.record_request("createResponse", FakeInvocation({**tokens, "background": True}), "r2") is None
    assert usage.record_request("completion", FakeInvocation({"model": LITE}), "r3") is None  # no usage: warned
    assert usage.record_request("completion", FakeInvocation(dict(tokens)), "r4") is None  # no store: logged only
    records = [line for line in lines() if line["msg"] == "usage"]
    assert len(records) == 1
    assert records[0]["usage"] == {**records[0]["usage"], "caller": "alice", "model": LITE, "route": "completion",
                                   "mode": "sync", "door": "sync", "key": "sync#r4", "input_tokens": 5,
                                   "output_tokens": 7, "reasoning_tokens": 2, "requests": 1}
    assert any(line["msg"].startswith("upstream answered without usage") for line in lines())


def test_a_classification_counts_billing_units_per_request(lines: Any) -> None:
    usage.record_request("fewShotTextClassification",
                         FakeInvocation({"model": "cls://b1gf/yandexgpt/latest", "input_tokens": 770}), "r5")
    (line,) = [line["usage"] for line in lines() if line["msg"] == "usage"]
    assert (line["requests"], line["units"], line["input_tokens"]) == (1, 4, 770)


class FakeStore:
    table = "jobs"

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], str, bool]] = []

    def add_usage(self, items: list[dict[str, Any]], mark: str, patient: bool) -> bool:
        self.calls.append((items, mark, patient))
        return True


def test_one_entry_is_one_transaction_a_mark_put_once_and_an_add_to_one_shard() -> None:
    store = FakeStore()
    entry = usage.Entry("team/a#1", LITE, "completion", "sync", "sync", "op#0#2", input_tokens=3, output_tokens=4,
                        at=1_700_000_000.0)
    assert usage.add(store, entry, Settings(), patient=False) is True  # type: ignore[arg-type]
    ((put, update, _callers), mark, patient), = store.calls  # the third: the day's caller list (test_usage_api.py)
    assert mark == "usage#call#op#0#2" and patient is False
    assert put["Put"]["ConditionExpression"] == "attribute_not_exists(id)" and put["Put"]["Item"]["id"]["S"] == mark
    key = update["Update"]["Key"]["id"]["S"]
    assert key == f"usage#20231114#team%2Fa%231#{usage.shard('op#0#2')}"  # the caller quoted: no '#' of its own
    assert update["Update"]["UpdateExpression"].startswith("ADD ") and "ConditionExpression" not in update["Update"]
    names, values = update["Update"]["ExpressionAttributeNames"], update["Update"]["ExpressionAttributeValues"]
    counters = {names[f"#c{n}"]: int(values[f":c{n}"]["N"]) for n in range(len(usage.COUNTERS))}
    prefix = usage.attribute_prefix(LITE, "sync")
    assert counters == {f"{prefix}_in": 3, f"{prefix}_out": 4, f"{prefix}_rsn": 0, f"{prefix}_req": 1,
                        f"{prefix}_units": 1}


def test_call_keys_spread_over_every_shard() -> None:
    assert {usage.shard(f"sync#{n}") for n in range(200)} == set(range(usage.USAGE_SHARDS))


def test_a_failing_store_never_fails_the_caller(lines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise errors.UpstreamUnavailableError("job store: down")

    monkeypatch.setattr(usage, "add", broken)
    monkeypatch.setattr("shared.jobs.store.job_store", lambda settings: None)
    settings = Settings(docapi_endpoint="http://127.0.0.1:9", results_bucket="b")
    assert usage.record_request("completion", FakeInvocation({"model": LITE, "input_tokens": 1}, settings), "r6") is None
    (warning,) = [line for line in lines() if line["msg"].startswith("usage not added")]
    assert warning["level"] == "WARN" and warning["usage"]["key"] == "sync#r6"
