"""What a key's budgets and per-minute limits (shared/jobs/limits.py) promise, in process: the limits module and the
usage ledger over the job store's in-process stand-in (local.aws.InProcessMoto), with the test's clock, each test in
milliseconds.

The worst case of a request (its body's UTF-8 bytes as JSON plus its maximum output, the default set when it has
none) is reserved before upstream in one conditional write, and the request is refused (429, before upstream)
exactly when a limit cannot cover it, whatever the interleaving; the reservation is settled to the real usage in the
ledger's own transaction (once per call), released when there is none, and released by whoever finds it expired;
rpm and tpm are counters of the UTC minute with OpenAI's headers; the 80% and 100% alerts are sent once per key,
threshold and month. tests/integration/test_budgets_and_limits.py proves the same end to end, at every door; this
file is what `make mutate` runs for the module.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from local.aws import InProcessMoto
from shared import errors
from shared.config import Settings
from shared.jobs import limits, usage
from shared.jobs.store import JobStore, StoreError
from shared.policy import KeyPolicy
from shared.prices import table
from tests.clock import ManualClock
from tests.conftest import FOLDER, Aws, counting, in_zone, logged, race, reset_caches
from tests.unit.test_promises_store import Refuse

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

LITE = f"gpt://{FOLDER}/yandexgpt-lite/latest"
PRO = f"gpt://{FOLDER}/yandexgpt/latest"
QWEN = f"gpt://{FOLDER}/qwen3-235b-a22b-fp8/latest"  # no price in any mode
EMB = f"emb://{FOLDER}/text-search-doc/latest"
CLS = f"cls://{FOLDER}/yandexgpt/latest"
# 1.5 billionths a token in sync mode for the lite model (0.0000015 per 1,000 tokens): rounding up shows
PRICES = json.dumps({"units": {"text_generation": 0.0000015, "text_generation_alt": 0.0012}})
MAX = 40


def body(text: str = "Tell me about the Volga", max_tokens: int | None = MAX) -> dict[str, Any]:
    out: dict[str, Any] = {"modelUri": LITE, "messages": [{"role": "user", "text": text}]}
    if max_tokens is not None:
        out["completionOptions"] = {"maxTokens": str(max_tokens)}
    return out


WORST = limits.input_bound(body()) + MAX  # the worst case of body(): its bytes as JSON plus its maximum output


@pytest.fixture
def store(aws: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("FM_PRICES", PRICES)
    reset_caches()
    return JobStore(Settings.from_env())


@pytest.fixture
def settings(store: JobStore) -> Settings:
    return Settings.from_env()


def inv(settings: Settings, caller: str = "alice", **limit: Any) -> Any:
    """What Invocation.admit hands the module for a key with these limits."""
    return SimpleNamespace(settings=settings, caller=caller, policy=KeyPolicy(name=caller, **limit), log_fields={},
                           reservation=None)


def item(store: JobStore, caller: str = "alice", at: float | None = None) -> dict[str, Any]:
    from shared import clock

    found = store.item(limits.item_key(caller, limits.month_of(clock.now() if at is None else at))) or {}
    return {name: (int(value) if not isinstance(value, str | set) else value) for name, value in found.items()}


def held(found: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, value in found.items() if name.startswith("v_")}


def settle(request: Any, input_tokens: int, output_tokens: int, request_id: str = "r1",
           operation: str = "completion", model: str = LITE) -> bool | None:
    """The usage ledger's hook after the request answered, as runtime calls it, then runtime's finish."""
    request.log_fields.update(model=model, input_tokens=input_tokens, completion_tokens=output_tokens)
    counted = usage.record_request(operation, request, request_id)
    limits.finish_request(request)
    return counted


def at(clock: ManualClock, when: float) -> None:
    clock.advance(when - clock.now())


# -- the worst case --------------------------------------------------------------------------------------------

def test_the_input_bound_is_the_bodys_utf8_bytes_as_compact_json() -> None:
    assert limits.input_bound({"t": "é ж", "n": [1, 2]}) == len('{"t":"é ж","n":[1,2]}'.encode())
    assert limits.input_bound("ab") == 4


@pytest.mark.parametrize(("given", "bound"), [
    ({"completionOptions": {"maxTokens": "30"}}, (30, True)),
    ({"max_completion_tokens": 6}, (6, True)), ({"max_tokens": 5}, (5, True)), ({"max_output_tokens": 7}, (7, True)),
    ({"completionOptions": {"maxTokens": "3"}, "max_tokens": 9}, (3, True)),  # the native option first
    ({"max_completion_tokens": 1, "max_tokens": 2, "max_output_tokens": 3}, (1, True)),
    ({"max_tokens": 2, "max_output_tokens": 3}, (2, True)),
    ({"max_tokens": -4}, (0, True)), ({"max_tokens": 0}, (0, True)),
    ({"max_tokens": "many", "max_output_tokens": 8}, (8, True)), ({"max_tokens": [1], "max_output_tokens": 8}, (8, True)),
    ({"max_tokens": None}, (99, False)), ({}, (99, False)), ({"completionOptions": None}, (99, False)),
    ({"completionOptions": "junk", "max_tokens": 2}, (2, True)), ({"completionOptions": {"temperature": 1}}, (99, False)),
])
def test_the_output_bound_is_the_bodys_maximum_else_the_default(given: dict[str, Any], bound: tuple[int, bool]) -> None:
    assert limits.output_bound(given, 99) == bound


def test_a_body_without_a_maximum_gets_the_default_in_its_own_dialect() -> None:
    native = {"modelUri": LITE, "completionOptions": {"temperature": 0.5}}
    assert limits.with_max_tokens(native, "completion", 77) == {
        "modelUri": LITE, "completionOptions": {"temperature": 0.5, "maxTokens": "77"}}
    assert limits.with_max_tokens({"modelUri": LITE}, "completion", 7) == {"modelUri": LITE,
                                                                          "completionOptions": {"maxTokens": "7"}}
    assert limits.with_max_tokens({"m": 1}, "chat", 77) == {"m": 1, "max_tokens": 77}
    assert limits.with_max_tokens({"m": 1}, "responses", 77) == {"m": 1, "max_output_tokens": 77}
    assert limits.with_max_tokens({"texts": ["a"]}, "embedding", 77) == {"texts": ["a"]}
    for kind in ("completion", "chat", "responses"):
        bounded = {"max_tokens": 5}
        assert limits.with_max_tokens(bounded, kind, 77) is bounded  # its own maximum kept, nothing added
    assert native == {"modelUri": LITE, "completionOptions": {"temperature": 0.5}}  # the caller's body untouched


def test_money_is_tokens_times_the_models_price_in_its_mode_rounded_up_to_a_billionth(settings: Settings) -> None:
    prices = table(settings.prices)
    assert limits.money(LITE, "sync", "completion", 3, 0, prices) == 5  # 4.5 billionths, rounded up
    assert limits.money(LITE, "sync", "completion", 4, 0, prices) == 6
    assert limits.money(LITE, "async", "completion", 4, 0, prices) == 3  # half the units in async mode
    assert limits.money(PRO, "sync", "completion", 1, 0, prices) == 9  # 6 units a token
    assert limits.money(f"gpt://{FOLDER}/llama/latest", "sync", "completion", 1, 0, prices) == 7200
    assert limits.money(EMB, "sync", "embedding", 10, 0, prices) == 800  # 0.00008 per 1,000 tokens
    assert limits.money(LITE, "batch", "completion", 4, 0, prices) is None  # no price in that mode
    assert limits.money(QWEN, "sync", "completion", 4, 0, prices) is None
    assert limits.money(f"gpt://{FOLDER}/unknown/latest", "sync", "completion", 4, 0, prices) is None
    assert limits.money(LITE, "sync", "completion", 4, 0, table()) is None  # the unit's price not confirmed
    assert limits.money(CLS, "sync", "classification", 10_000, 3, prices) == 3_600_000  # per billing unit
    assert limits.money(CLS, "sync", "completion", 10, 3, prices) is None  # a classifier has no per-token price
    assert limits.classifier_price(CLS, prices) == (1_200_000, 250)
    assert limits.classifier_price(LITE, prices) is None
    assert limits.classifier_price(f"cls://{FOLDER}/unknown/latest", prices) is None
    odd = table(json.dumps({"models": {"cls:odd": {"per_request": 0.5}}}))
    assert limits.classifier_price(f"cls://{FOLDER}/odd/latest", odd) == (500_000_000, 0)
    assert limits.per_token(LITE, "sync", table(json.dumps({"models": {"yandexgpt-lite": {"unit": "none"}}}))) is None
    per_unit = {"unit": "text_generation", "units_per_token": {"sync": 1}}
    both = table(json.dumps({"units": {"text_generation": 0.0012},
                             "models": {"cls:odd": {"per_request": 0.5, **per_unit}, "odd": per_unit}}))
    assert limits.per_token(f"gpt://{FOLDER}/odd/latest", "sync", both) == 1200  # 0.0012 a thousand tokens
    assert limits.per_token(f"cls://{FOLDER}/odd/latest", "sync", both) is None  # billed per request only


def test_the_worst_case_of_each_kind(settings: Settings) -> None:
    texts = {"modelUri": EMB, "texts": ["один", "two"]}
    assert limits.worst_case("embedding", texts, EMB, "sync", settings) == (
        limits.input_bound("один") + 5, (limits.input_bound("один") + 5) * 80)
    nested = {"requests": [{"texts": ["a", "bb"]}, {"texts": ["ccc"]}, {}]}
    assert limits.worst_case("embedding", nested, EMB, "sync", settings) == (3 + 4 + 5, 12 * 80)
    assert limits.worst_case("embedding", {"texts": [], "requests": [{"texts": ["a"]}]}, EMB, "sync", settings)[0] == 3
    small = {"modelUri": CLS, "text": "x" * 100}
    assert limits.worst_case("classification", small, CLS, "sync", settings) == (limits.input_bound(small), 1_200_000)
    large = {"modelUri": CLS, "text": "x" * 600}  # 600-odd bytes: 3 units of 250 tokens
    assert limits.worst_case("classification", large, CLS, "sync", settings) == (limits.input_bound(large), 3_600_000)
    unpriced = {"modelUri": "cls://f/unknown/latest", "text": "x"}
    assert limits.worst_case("classification", unpriced, "cls://f/unknown/latest", "sync", settings) == (
        limits.input_bound(unpriced), None)
    assert limits.worst_case("completion", body(), LITE, "sync", settings) == (WORST, math.ceil(WORST * 1.5))
    assert limits.worst_case("chat", {"messages": []}, LITE, "sync", settings)[0] == 15 + 2000  # the default output
    assert limits.worst_case("completion", body(), QWEN, "sync", settings) == (WORST, None)
    flat = settings.model_copy(update={"prices": json.dumps({"models": {"cls:odd": {"per_request": 0.5}}})})
    odd = {"modelUri": f"cls://{FOLDER}/odd/latest", "text": "x" * 600}  # no tokens_per_request: one unit a request
    assert limits.worst_case("classification", odd, odd["modelUri"], "sync", flat) == (limits.input_bound(odd),
                                                                                       500_000_000)


def test_the_real_usage_of_a_ledger_entry(settings: Settings) -> None:
    entry = usage.Entry("alice", LITE, "completion", "sync", "sync", "k", 10, 5, 3)
    assert limits.real_usage(entry, "completion", settings) == (15, 23)  # reasoning is part of the output
    cls_entry = usage.Entry("alice", CLS, "x", "sync", "sync", "k", 600, 0, units=3)
    assert limits.real_usage(cls_entry, "completion", settings) == (600, 3_600_000)  # billed as a classifier
    assert limits.real_usage(usage.Entry("a", QWEN, "x", "sync", "sync", "k", 2, 2), "chat", settings) == (4, 0)


# -- the month item ---------------------------------------------------------------------------------------------

def test_each_key_and_utc_month_has_its_own_item_which_outlives_its_month_by_forty_days(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    assert limits.month_of(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) == "202612"
    assert limits.month_of(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) == "202701"
    assert limits.item_key("team/a b#c", "202612") == "limits#team%2Fa%20b%23c#202612"
    for month_start, next_month in ((datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
                                    (datetime(2027, 2, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC))):
        at(clock, month_start.timestamp() + 3600)
        limits.admit(inv(settings, caller="team/x", monthly_tokens=10**6), body(), "completion", LITE)
        assert item(store, "team/x")["expires_at"] == next_month.timestamp() + 40 * 86400
        assert store.item(limits.item_key("team/x", month_start.strftime("%Y%m"))) is not None


def test_months_are_utc_months_whatever_the_servers_zone(store: JobStore, settings: Settings,
                                                         clock: ManualClock) -> None:
    at(clock, datetime(2026, 12, 31, 20, 0, tzinfo=UTC).timestamp())
    with in_zone("EAST-10"):  # already January ten hours east of UTC
        assert limits.month_of(clock.now()) == "202612"
        limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
        assert item(store)["expires_at"] == datetime(2027, 1, 1, tzinfo=UTC).timestamp() + 40 * 86400


# -- admission ------------------------------------------------------------------------------------------------------

def test_an_admission_reserves_the_worst_case_and_hands_back_the_bounded_body(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 15, tzinfo=UTC).timestamp())
    request = inv(settings, rpm=10, tpm=10_000, monthly_tokens=10**6, monthly_budget=1.0)
    unbounded = body(max_tokens=None)
    sent = limits.admit(request, unbounded, "completion", LITE)
    assert sent == {**unbounded, "completionOptions": {"maxTokens": "2000"}}
    worst = limits.input_bound(sent) + 2000
    cost = math.ceil(worst * 1.5)
    minute = int(clock.now() // 60)
    found = item(store)
    res = request.reservation
    assert {k: v for k, v in found.items() if not k.startswith("v_")} == {
        "id": limits.item_key("alice", "202612"), "used_t": worst, "used_m": cost, f"r{minute}": 1,
        f"k{minute}": worst, "expires_at": datetime(2027, 1, 1, tzinfo=UTC).timestamp() + 40 * 86400}
    assert held(found) == {f"v_{res.rid}_0": f"{worst} {cost} {int(clock.now() + 900)}"}
    assert len(res.rid) == 16 and set(res.rid) <= set("0123456789abcdef")  # 64 bits, hex
    assert (res.caller, res.month, res.minute, res.kind, res.model, res.mode) == (
        "alice", "202612", minute, "completion", LITE, "sync")
    assert request.log_fields == {"reserved_tokens": worst, "reserved_money": cost}
    assert res.headers == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
                           "x-ratelimit-reset-requests": "45s", "x-ratelimit-limit-tokens": "10000",
                           "x-ratelimit-remaining-tokens": str(10_000 - worst), "x-ratelimit-reset-tokens": "45s"}
    other = inv(settings, monthly_tokens=10**6)
    clock.advance(0.25)
    limits.admit(other, body(), "chat", LITE)
    assert other.log_fields == {"reserved_tokens": WORST} and other.reservation.headers == {}
    assert held(item(store))[f"v_{other.reservation.rid}_0"] == f"{WORST} {math.ceil(WORST * 1.5)} {int(clock.now() + 900)}"
    assert other.reservation.rid != res.rid


def test_a_synchronous_embedding_reserves_its_texts_and_no_output(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_tokens=10**6)
    texts = {"modelUri": EMB, "texts": ["один", "two"]}
    assert limits.admit(request, texts, "embedding", EMB) == texts  # no maximum output added
    assert request.reservation.parts["0"].tokens == limits.input_bound("один") + 5 == item(store)["used_t"]


def test_the_reset_header_is_the_time_to_the_next_minute_as_openai_writes_it(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    start = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp()
    for offset, reset in ((0.0, "60s"), (59.5, "0.5s"), (30.25, "29.75s"), (1.0006, "58.999s")):
        at(clock, start + offset)
        request = inv(settings, rpm=1000)
        limits.admit(request, body(), "completion", LITE)
        assert request.reservation.headers["x-ratelimit-reset-requests"] == reset


def test_requests_are_admitted_exactly_while_the_budget_covers_their_worst_case(
        store: JobStore, settings: Settings, log_output: io.StringIO) -> None:
    for _ in range(3):
        limits.admit(inv(settings, monthly_tokens=3 * WORST + 2), body(), "completion", LITE)
    refused = inv(settings, monthly_tokens=3 * WORST + 2)
    with pytest.raises(limits.QuotaExceededError) as caught:
        limits.admit(refused, body(), "completion", LITE)
    assert caught.value.message == (f"this key's monthly token budget cannot cover this request: {3 * WORST + 2} "
                                    f"tokens, 0 used and {3 * WORST} reserved by requests in flight, and this request "
                                    f"may use up to {WORST}")
    assert caught.value.status == 429 and caught.value.headers == {"x-should-retry": "false"}
    assert caught.value.to_openai_body() == {"error": {"message": caught.value.message, "type": "insufficient_quota",
                                                       "param": None, "code": "insufficient_quota"}}
    assert refused.reservation is None and item(store)["used_t"] == 3 * WORST
    exact = inv(settings, monthly_tokens=4 * WORST)  # a budget of exactly four worst cases fits a fourth
    limits.admit(exact, body(), "completion", LITE)
    assert item(store)["used_t"] == 4 * WORST


def test_a_settled_request_frees_what_it_did_not_use(store: JobStore, settings: Settings) -> None:
    first = inv(settings, monthly_tokens=2 * WORST)
    limits.admit(first, body(), "completion", LITE)
    limits.admit(inv(settings, monthly_tokens=2 * WORST), body(), "completion", LITE)
    assert settle(first, 10, 5) is True
    found = item(store)
    assert (found["used_t"], found["set_t"], len(held(found))) == (WORST + 15, 15, 1)
    limits.admit(inv(settings, monthly_tokens=2 * WORST), body(max_tokens=MAX - 15), "completion", LITE)  # the room left
    with pytest.raises(limits.QuotaExceededError):
        limits.admit(inv(settings, monthly_tokens=2 * WORST), body(max_tokens=1), "completion", LITE)


def test_concurrent_admissions_take_exactly_what_the_budget_covers(store: JobStore, settings: Settings) -> None:
    def one(n: int) -> bool:
        try:
            limits.admit(inv(settings, monthly_tokens=3 * WORST), body(), "completion", LITE)
            return True
        except limits.QuotaExceededError:
            return False
    assert sorted(race(8, one, timeout=30)) == [False] * 5 + [True] * 3
    assert item(store)["used_t"] == 3 * WORST and len(held(item(store))) == 3


def test_a_money_budget_refuses_what_it_cannot_cover_and_every_model_without_a_price(
        store: JobStore, settings: Settings) -> None:
    cost = math.ceil(WORST * 1.5)
    budget = (2 * cost + 1) / 10**9
    for _ in range(2):
        limits.admit(inv(settings, monthly_budget=budget), body(), "completion", LITE)
    with pytest.raises(limits.QuotaExceededError, match="^this key's monthly budget cannot cover this request's worst "
                       r"case \(what is used, plus what requests in flight have reserved\)$"):
        limits.admit(inv(settings, monthly_budget=budget), body(), "completion", LITE)
    assert item(store)["used_m"] == 2 * cost
    with pytest.raises(errors.ForbiddenError) as caught:
        limits.admit(inv(settings, monthly_budget=5.0), {**body(), "modelUri": QWEN}, "completion", QWEN)
    assert caught.value.message == (f"model {QWEN!r} has no price for its sync mode (FM_PRICES), so this key's "
                                    "monthly_budget cannot be checked: the request is refused; set the price, or use "
                                    "a priced model")
    tokens_only = inv(settings, caller="bob", monthly_tokens=10**6)
    qwen = {**body(), "modelUri": QWEN}
    limits.admit(tokens_only, qwen, "completion", QWEN)  # no money budget: no price needed
    assert tokens_only.log_fields == {"reserved_tokens": limits.input_bound(qwen) + MAX}
    assert item(store, "bob")["used_m"] == 0


@pytest.mark.parametrize(("limit", "message", "kind"), [
    ({"monthly_tokens": WORST - 1}, f"this request may use up to {WORST} tokens, more than the key's whole "
     f"monthly_tokens ({WORST - 1}); lower its maximum output tokens or its input", None),
    ({"monthly_budget": math.ceil(WORST * 1.5 - 1) / 10**9}, "this request may cost more than the key's whole "
     "monthly_budget; lower its maximum output tokens or its input", None),
    ({"tpm": WORST - 1, "rpm": 5}, f"this request may use up to {WORST} tokens, more than the key's tokens per minute "
     f"(tpm {WORST - 1}); lower its maximum output tokens or its input", "tokens"),
])
def test_a_request_larger_than_a_whole_limit_is_refused_at_once_without_a_write(
        store: JobStore, settings: Settings, limit: dict[str, Any], message: str, kind: str | None,
        clock: ManualClock) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 20, tzinfo=UTC).timestamp())
    with pytest.raises(errors.RateLimitedError) as caught:
        limits.admit(inv(settings, **limit), body(), "completion", LITE)
    assert caught.value.message == message and item(store) == {}
    if kind is None:
        assert isinstance(caught.value, limits.QuotaExceededError)
    else:
        assert isinstance(caught.value, limits.KeyRateLimitError) and caught.value.kind == kind
        assert caught.value.retry_after == 60.0
        assert caught.value.headers == {
            "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-reset-requests": "40s", "x-ratelimit-limit-tokens": str(WORST - 1),
            "x-ratelimit-remaining-tokens": str(WORST - 1), "x-ratelimit-reset-tokens": "40s"}
    for n, fits in enumerate(({"monthly_tokens": WORST}, {"tpm": WORST},
                              {"monthly_budget": math.ceil(WORST * 1.5) / 10**9})):
        limits.admit(inv(settings, caller=f"fits{n}", **fits), body(), "completion", LITE)  # exactly the whole limit


def test_requests_per_minute_refuse_with_retry_after_and_the_headers_until_the_next_minute(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    start = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp()
    at(clock, start + 12.5)
    for _ in range(2):
        limits.admit(inv(settings, rpm=2), body(), "completion", LITE)
    with pytest.raises(limits.KeyRateLimitError) as caught:
        limits.admit(inv(settings, rpm=2), body(), "completion", LITE)
    refusal = caught.value
    assert (refusal.status, refusal.kind, refusal.retry_after) == (429, "requests", 47.5)
    assert refusal.message == "this key's requests per minute are used up (rpm 2); try again in 48 s"
    assert refusal.headers == {"x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "0",
                               "x-ratelimit-reset-requests": "47.5s"}
    assert refusal.to_openai_body() == {"error": {"message": refusal.message, "type": "requests", "param": None,
                                                  "code": "rate_limit_exceeded"}}
    minute = int(clock.now() // 60)
    assert item(store)[f"r{minute}"] == 2
    at(clock, start + 60)
    admitted = inv(settings, rpm=2)
    limits.admit(admitted, body(), "completion", LITE)
    found = item(store)
    assert found[f"r{minute + 1}"] == 1 and f"r{minute}" not in found and f"k{minute}" not in found
    assert admitted.reservation.headers["x-ratelimit-remaining-requests"] == "1"


def test_tokens_per_minute_count_worst_cases_and_settle_to_the_real_usage_in_the_same_minute(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp())
    minute = int(clock.now() // 60)
    first = inv(settings, tpm=2 * WORST)
    limits.admit(first, body(), "completion", LITE)
    limits.admit(inv(settings, tpm=2 * WORST), body(), "completion", LITE)
    with pytest.raises(limits.KeyRateLimitError) as caught:
        limits.admit(inv(settings, tpm=2 * WORST), body(), "completion", LITE)
    assert (caught.value.kind, caught.value.retry_after) == ("tokens", 60.0) and caught.value.message == (
        f"this key's tokens per minute are used up (tpm {2 * WORST}: {2 * WORST} admitted this minute, this request "
        f"may use up to {WORST}); try again in 60 s")
    assert caught.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert settle(first, 3, 2) is True
    assert item(store)[f"k{minute}"] == WORST + 5  # the minute is still on: settled to the real usage
    third = inv(settings, tpm=2 * WORST)
    smaller = limits.input_bound(body("")) + MAX  # fits beside the settled one, not beside its worst case
    limits.admit(third, body(""), "completion", LITE)
    assert third.reservation.headers["x-ratelimit-remaining-tokens"] == str(2 * WORST - (WORST + 5) - smaller)
    clock.advance(60)
    assert settle(third, 1, 1, "r3") is True
    found = item(store)  # a settle after its minute leaves the counters alone
    assert f"k{minute + 1}" not in found and found[f"k{minute}"] == WORST + 5 + smaller
    assert (found["used_t"], found["set_t"]) == (WORST + 7, 7)  # the second one still held


class Late:
    """WSGI middleware: the clock moves on by `seconds` while the store applies the next UpdateItem."""

    def __init__(self, app: Any, clock: ManualClock, seconds: float) -> None:
        self.app, self.clock, self.seconds = app, clock, seconds

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        answer = self.app(environ, start_response)
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".UpdateItem") and self.seconds:
            self.clock.advance(self.seconds)
            self.seconds = 0
        return answer


def test_an_admission_whose_minute_ended_meanwhile_answers_a_reset_of_zero(
        store: JobStore, settings: Settings, aws: Aws, clock: ManualClock) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 59, tzinfo=UTC).timestamp())
    aws.wrap(lambda app: Late(app, clock, 2))
    request = inv(settings, rpm=3, tpm=10**5)
    limits.admit(request, body(), "completion", LITE)
    assert request.reservation.headers == {
        "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "0s",
        "x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": str(10**5 - WORST),
        "x-ratelimit-reset-tokens": "0s"}
    assert settle(request, 1, 2) is True  # settled in the next minute: its own minute's counter is left as it is
    assert item(store)[f"k{request.reservation.minute}"] == WORST


def test_a_part_that_reserved_no_tokens_settles_none_into_the_minute(store: JobStore, settings: Settings) -> None:
    request = inv(settings, tpm=10**5)
    limits.admit_job(request, "embedding", [{"modelUri": EMB, "text": "no texts"}])
    res = request.reservation
    assert res.parts["t0"].tokens == 0
    operation = {"id": "op1", "kind": "embedding", "created_by": "alice", "limits": res.to_record()}
    part = limits.for_part(operation, "t0", settings)
    assert part is not None
    usage.record_task(operation, 0, 1, {"modelUri": EMB, "text": "x"}, {"embeddings": [[0.5]], "numTokens": "3"},
                      SimpleNamespace(settings=settings), settle=part)
    found = item(store)
    assert (found["used_t"], found["set_t"], found[f"k{res.minute}"], held(found)) == (3, 3, 0, {})


def test_a_ledger_that_fails_leaves_the_settle_to_finish_with_the_real_usage(
        store: JobStore, settings: Settings, aws: Aws, log_output: io.StringIO) -> None:
    request = inv(settings, monthly_tokens=10**6)
    limits.admit_job(request, "completion", [body()])
    operation = {"id": "op1", "kind": "completion", "created_by": "alice", "limits": request.reservation.to_record()}
    part = limits.for_part(operation, "t0", settings)
    assert part is not None
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ValidationException"))
    assert usage.record_task(operation, 0, 1, body(), {"usage": {"inputTextTokens": "4", "completionTokens": "3"}},
                             SimpleNamespace(settings=settings), settle=part) is None
    assert len(logged(log_output, "usage not added to the totals (the log line is the record)")) == 1
    assert item(store)["used_t"] == WORST and not part.done
    aws.restore()
    part.finish(store)  # settles alone, to the usage the ledger was handed
    found = item(store)
    assert (found["used_t"], found["set_t"], held(found), part.done) == (7, 7, {}, True)


def test_a_key_without_per_minute_limits_keeps_no_per_minute_counters(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)
    settle(request, 3, 4)
    assert not [name for name in item(store) if name[:1] in "rk" and name[1:].isdigit()]
    assert item(store)["used_t"] == 7


def test_a_key_used_now_and_then_keeps_few_per_minute_counters(store: JobStore, settings: Settings,
                                                               clock: ManualClock, log_output: io.StringIO) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp())
    counts = []
    for _ in range(10):
        limits.admit(inv(settings, rpm=100), body(), "completion", LITE)
        clock.advance(120)  # a gap: the previous minute's counters are not the ones left behind
        counts.append(len([name for name in item(store) if name[:1] in "rk" and name[1:].isdigit()]))
    # this minute's two, and earlier ones until TIDY_AT of them are there: the admission that sees them removes them
    assert counts == [2 + 2 * (n % (limits.TIDY_AT // 2)) for n in range(10)]
    assert not logged(log_output, "stale per-minute counters not removed")


def test_stale_counters_not_removed_are_a_warning_not_a_failure(store: JobStore, settings: Settings, aws: Aws,
                                                                 clock: ManualClock, log_output: io.StringIO) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp())
    for _ in range(limits.TIDY_AT):
        limits.admit(inv(settings, rpm=100), body(), "completion", LITE)
        clock.advance(120)
    aws.wrap(lambda app: Second(app, "UpdateItem", "ValidationException"))  # the tidy write is the second
    request = inv(settings, rpm=100)
    limits.admit(request, body(), "completion", LITE)
    assert request.reservation is not None
    (line,) = logged(log_output, "stale per-minute counters not removed")
    assert (line["level"], line["limits_key"], line["error"]) == ("WARN", limits.item_key("alice", "202612"),
                                                                  "ClientError")


class Second(Refuse):
    """Refuse the second call of the operation only."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith("." + self.operation):
            self.seen = getattr(self, "seen", 0) + 1
            self.times, self.calls = (1, 0) if self.seen == 2 else (0, 0)
        return super().__call__(environ, start_response)


# -- the store's refusals ----------------------------------------------------------------------------------------

def test_a_refusal_the_state_does_not_explain_is_tried_again_then_answered_503(
        store: JobStore, settings: Settings, aws: Aws) -> None:
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "UpdateItem", "ConditionalCheckFailedException", times=1))
    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)  # refused once although it fits: tried again
    assert refusal.calls == 2 and item(store)["used_t"] == WORST
    refusal.calls, refusal.times = 0, 10**6
    with pytest.raises(errors.UpstreamUnavailableError) as caught:
        limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
    assert refusal.calls == limits.ADMIT_ATTEMPTS == 20
    assert caught.value.message == "the key's limits are being updated by many requests at once; try again"
    assert caught.value.retry_after == 1
    refusal.calls, refusal.times = 0, limits.ADMIT_ATTEMPTS - 1
    limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)


def test_a_refusal_while_exactly_the_room_is_left_is_tried_again_and_admitted(
        store: JobStore, settings: Settings, aws: Aws, clock: ManualClock) -> None:
    """Each limit admits a request whose worst case fills exactly what is left: a refusal the store answers at that
    state is not explained by it (the state moved meanwhile), so the admission tries again, in the current minute."""
    at(clock, datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC).timestamp())
    cost = math.ceil(WORST * 1.5)
    limited = {"monthly_tokens": 2 * WORST, "monthly_budget": 2 * cost / 10**9, "tpm": 2 * WORST, "rpm": 2}
    limits.admit(inv(settings, **limited), body(), "completion", LITE)
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "UpdateItem", "ConditionalCheckFailedException", times=1))
    clock.advance(15)
    second = inv(settings, **limited)
    limits.admit(second, body(), "completion", LITE)
    minute = int(clock.now() // 60)
    found = item(store)
    assert refusal.calls == 2 and second.reservation.minute == minute
    assert (found["used_t"], found["used_m"], found[f"r{minute}"], found[f"k{minute}"]) == (
        2 * WORST, 2 * cost, 2, 2 * WORST)


def test_a_refusal_names_what_is_used_and_reserved_and_alerts_only_when_the_used_alone_leaves_no_room(
        store: JobStore, settings: Settings, log_output: io.StringIO) -> None:
    cost = math.ceil(WORST * 1.5)
    for caller, limited in (("alice", {"monthly_tokens": 1 + WORST}), ("bob", {"monthly_budget": (2 + cost) / 10**9})):
        first = inv(settings, caller, **limited)
        limits.admit(first, body(), "completion", LITE)
        # 1 token used (2 billionths): what is left is exactly a worst case
        assert settle(first, 1, 0, f"{caller}-1") is True
        limits.admit(inv(settings, caller, **limited), body(), "completion", LITE)  # reserves it
        with pytest.raises(limits.QuotaExceededError) as caught:
            limits.admit(inv(settings, caller, **limited), body(), "completion", LITE)
        if caller == "alice":
            assert caught.value.message == (
                f"this key's monthly token budget cannot cover this request: {1 + WORST} tokens, 1 used and {WORST} "
                f"reserved by requests in flight, and this request may use up to {WORST}")
    assert alerts(log_output) == []  # what is used leaves room: the refusal is the reservation's, no 100% yet


def test_a_store_failure_is_a_store_error_and_write_conflicts_are_ridden_out(
        store: JobStore, settings: Settings, aws: Aws) -> None:
    aws.wrap(lambda app: Refuse(app, "UpdateItem", "ValidationException", times=1))
    with pytest.raises(StoreError, match="^job store: ValidationException$"):
        limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
    aws.restore()
    from shared.jobs.store import CONFLICT_ATTEMPTS

    aws.refuse_next("UpdateItem", CONFLICT_ATTEMPTS * (limits.CONFLICT_ROUNDS - 1))
    limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
    assert item(store)["used_t"] == WORST
    aws.refuse_next("UpdateItem", CONFLICT_ATTEMPTS * limits.CONFLICT_ROUNDS)
    with pytest.raises(StoreError):
        limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
    assert item(store)["used_t"] == WORST


# -- expiry and the sweep ----------------------------------------------------------------------------------------

def test_an_expired_reservation_is_released_by_the_admission_it_would_refuse(
        store: JobStore, settings: Settings, clock: ManualClock, log_output: io.StringIO) -> None:
    at(clock, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC).timestamp())
    crashed = inv(settings, monthly_tokens=2 * WORST)
    limits.admit(crashed, body(), "completion", LITE)  # never settled: its function died
    clock.advance(1)
    limits.admit(inv(settings, monthly_tokens=2 * WORST), body(), "completion", LITE)
    clock.advance(settings.limits_reservation_s - 1)  # the first one exactly at its expiry: still held
    with pytest.raises(limits.QuotaExceededError):
        limits.admit(inv(settings, monthly_tokens=2 * WORST), body(), "completion", LITE)
    assert logged(log_output, "expired budget reservations released (a request or job that reserved them never "
                             "settled)") == []
    clock.advance(1)
    later = inv(settings, monthly_tokens=2 * WORST)
    limits.admit(later, body(), "completion", LITE)
    found = item(store)
    assert found["used_t"] == 2 * WORST and f"v_{crashed.reservation.rid}_0" not in found
    (line,) = logged(log_output, "expired budget reservations released (a request or job that reserved them never "
                                "settled)")
    assert (line["level"], line["limits_key"], line["reservations"], line["tokens"]) == (
        "WARN", limits.item_key("alice", "202612"), 1, WORST)


def test_the_pollers_sweep_releases_only_what_expired(store: JobStore, settings: Settings, clock: ManualClock) -> None:
    assert limits.sweep_key(store, "alice") is False  # no item
    first = inv(settings, monthly_budget=1.0)
    limits.admit(first, body(), "completion", LITE)
    clock.advance(100)
    second = inv(settings, monthly_budget=1.0)
    limits.admit(second, body(), "completion", LITE)
    assert limits.sweep_key(store, "alice") is False
    assert limits.sweep_key(store, "alice", at=clock.now() + settings.limits_reservation_s - 99) is True
    found = item(store)
    cost = math.ceil(WORST * 1.5)
    assert (found["used_t"], found["used_m"]) == (WORST, cost)
    assert list(held(found)) == [f"v_{second.reservation.rid}_0"]
    clock.advance(settings.limits_reservation_s + 1)
    assert limits.sweep_key(store, "alice") is True and item(store)["used_t"] == 0 and item(store)["used_m"] == 0
    assert limits.sweep_key(store, "alice") is False


def test_one_sweep_releases_every_expired_reservation_in_one_write(
        store: JobStore, settings: Settings, aws: Aws, clock: ManualClock, log_output: io.StringIO) -> None:
    for _ in range(3):
        limits.admit(inv(settings, monthly_budget=1.0), body(), "completion", LITE)
    clock.advance(settings.limits_reservation_s + 1)
    seen = counting(aws)
    assert limits.sweep_key(store, "alice") is True
    found = item(store)
    assert (seen.count("UpdateItem"), found["used_t"], found["used_m"], held(found)) == (1, 0, 0, {})
    (line,) = logged(log_output, "expired budget reservations released (a request or job that reserved them never "
                                "settled)")
    assert (line["reservations"], line["tokens"]) == (3, 3 * WORST)


def test_a_sweep_that_loses_to_a_settle_changes_nothing_and_says_read_again(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)
    key = limits.item_key("alice", limits.month_of(clock.now()))
    stale = store.item(key)
    settle(request, 1, 1)
    assert limits.sweep_item(store, key, stale, clock.now() + 10**6) is True
    assert (item(store)["used_t"], item(store)["set_t"]) == (2, 2)


def test_a_settle_after_its_reservation_was_swept_adds_the_real_usage(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    request = inv(settings, monthly_tokens=10**6, tpm=10**5)
    limits.admit(request, body(), "completion", LITE)
    clock.advance(settings.limits_reservation_s + 1)
    assert limits.sweep_key(store, "alice") is True and item(store)["used_t"] == 0
    assert settle(request, 6, 4) is True
    found = item(store)
    assert (found["used_t"], found["set_t"], held(found)) == (10, 10, {})
    assert settle(request, 6, 4) is False  # the same call again: nothing more


def test_a_request_finished_without_usage_releases_its_reservation(store: JobStore, settings: Settings,
                                                                   clock: ManualClock) -> None:
    request = inv(settings, monthly_tokens=10**6, rpm=5)
    limits.admit(request, body(), "completion", LITE)
    limits.finish_request(request)
    found = item(store)
    assert (found["used_t"], found["set_t"], held(found)) == (0, 0, {})
    assert request.reservation.open == set()
    limits.finish_request(request)  # twice: nothing more
    assert item(store)["used_t"] == 0
    swept = inv(settings, monthly_tokens=10**6)
    limits.admit(swept, body(), "completion", LITE)
    clock.advance(settings.limits_reservation_s + 1)
    limits.sweep_key(store, "alice")
    limits.finish_request(swept)  # swept meanwhile and no usage: nothing to add, and nothing left to do
    assert (item(store)["used_t"], item(store)["used_m"], item(store)["set_t"], swept.reservation.open) == (0, 0, 0, set())
    limits.finish_request(SimpleNamespace(reservation=None))


def test_a_request_whose_ledger_failed_and_whose_reservation_was_swept_still_counts_its_usage(
        store: JobStore, settings: Settings, aws: Aws, clock: ManualClock, log_output: io.StringIO) -> None:
    request = inv(settings, monthly_tokens=10**6, monthly_budget=1.0)
    limits.admit(request, body(), "completion", LITE)
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ValidationException"))
    request.log_fields.update(model=LITE, input_tokens=6, completion_tokens=4)
    assert usage.record_request("completion", request, "r1") is None  # the ledger failed: logged, not raised
    aws.restore()
    clock.advance(settings.limits_reservation_s + 1)
    assert limits.sweep_key(store, "alice") is True and item(store)["used_t"] == 0
    limits.finish_request(request)  # settles alone: its reservation is gone, so the real usage is added
    found = item(store)
    assert (found["used_t"], found["set_t"], found["used_m"], found["set_m"], held(found)) == (10, 10, 15, 15, {})
    assert request.reservation.open == set()
    assert not logged(log_output, "budget reservation not settled (it is released when it expires)")


def test_a_finish_that_cannot_write_is_a_warning(store: JobStore, settings: Settings, aws: Aws,
                                                 log_output: io.StringIO) -> None:
    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)
    aws.wrap(lambda app: Refuse(app, "UpdateItem", "Validation" + "x" * 400))  # a long error: cut to 300 characters
    limits.finish_request(request)
    for line in logged(log_output, "budget reservation not settled (it is released when it expires)"):
        assert (line["level"], line["limits_key"], line["part"]) == ("WARN", request.reservation.key, "0")
        assert line["error"].startswith("ClientError: ") and len(line["error"]) == 300
    assert logged(log_output, "budget reservation not settled (it is released when it expires)")
    assert request.reservation.open == {"0"}
    aws.restore()
    limits.finish_request(request)
    assert item(store)["used_t"] == 0 and request.reservation.open == set()


# -- settling in the ledger's transaction -------------------------------------------------------------------------

def test_a_request_is_settled_in_the_ledgers_transaction_once(store: JobStore, settings: Settings, aws: Aws) -> None:
    request = inv(settings, monthly_tokens=10**6, monthly_budget=1.0)
    limits.admit(request, body(), "completion", LITE)
    assert limits.for_request(request) is limits.for_request(request)  # one settle per request
    assert settle(request, 10, 5) is True
    found = item(store)
    assert (found["used_t"], found["set_t"], found["used_m"], found["set_m"], held(found)) == (15, 15, 23, 23, {})
    assert limits.for_request(request) is None  # settled: nothing left for the ledger
    assert usage.totals(store, "alice", usage.Entry("a", LITE, "r", "sync", "sync", "k").day)[LITE]["sync"][
        "input_tokens"] == 10
    request.reservation.open.add("0")  # as if it were not known to be settled
    assert usage.record_request("completion", request, "r1") is False  # counted before: settles nothing again
    assert item(store)["used_t"] == 15
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "TransactionCanceledException"))
    request.reservation.open.add("0")  # once more, and the store cancels it without naming a reason
    assert usage.record_request("completion", request, "r1") is False  # judged by its call's mark: counted before
    assert refusal.calls == 1 and item(store)["used_t"] == 15


def test_a_reservation_handed_to_a_job_is_left_to_the_job(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)
    request.reservation.handed = True
    assert limits.for_request(request) is None
    limits.finish_request(request)
    assert item(store)["used_t"] == WORST
    assert limits.for_request(SimpleNamespace(reservation=None)) is None


def test_a_write_conflict_at_settle_is_ridden_out_patiently(store: JobStore, settings: Settings, aws: Aws) -> None:
    from shared.jobs.store import CONFLICT_ATTEMPTS

    request = inv(settings, monthly_tokens=10**6)
    limits.admit(request, body(), "completion", LITE)
    aws.refuse_next("TransactWriteItems", CONFLICT_ATTEMPTS)  # more than the impatient write rides out
    assert settle(request, 2, 3) is True
    assert (item(store)["used_t"], item(store)["set_t"]) == (5, 5)


# -- jobs ------------------------------------------------------------------------------------------------------------

def test_a_job_reserves_a_part_per_task_and_its_worker_settles_each(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_tokens=10**6)
    payloads = limits.admit_job(request, "completion", [body(max_tokens=None), body("two")])
    assert payloads[0]["completionOptions"] == {"maxTokens": "2000"} and payloads[1] == body("two")
    res = request.reservation
    worst = [limits.input_bound(payloads[0]) + 2000, limits.input_bound(body("two")) + MAX]
    cost = [math.ceil(w * 1.5) for w in worst]
    assert {n: (p.tokens, p.money) for n, p in res.parts.items()} == {"t0": (worst[0], cost[0]),
                                                                      "t1": (worst[1], cost[1])}
    assert (res.kind, res.mode, res.model, res.open) == ("completion", "sync", LITE, {"t0", "t1"})
    assert held(item(store)) == {res.attribute("t0"): f"{worst[0]} {cost[0]} {int(res.expires_at)}",
                                 res.attribute("t1"): f"{worst[1]} {cost[1]} {int(res.expires_at)}"}
    from shared import clock

    assert int(res.expires_at) == int(clock.now() + 7 * 86400)
    operation = {"id": "op1", "kind": "completion", "created_by": "alice", "limits": res.to_record()}
    part = limits.for_part(operation, "t0", settings)
    assert part is not None
    assert usage.record_task(operation, 0, 1, payloads[0], {"usage": {"inputTextTokens": "4", "completionTokens": "6"}},
                             SimpleNamespace(settings=settings), settle=part) is True
    found = item(store)
    assert (found["used_t"], found["set_t"], list(held(found))) == (10 + worst[1], 10, [res.attribute("t1")])
    part.finish(store)  # the worker's finish after the ledger settled the task: nothing more
    assert item(store) == found
    assert limits.for_part(operation, "t9", settings) is None
    reset_caches()  # a fresh instance (the poller's, say)
    limits.release_job(operation, settings)  # the job failed: what it still holds is released
    assert (item(store)["used_t"], held(item(store))) == (10, {})


def test_a_job_whose_submission_failed_is_released_when_its_request_finishes(
        store: JobStore, settings: Settings, clock: ManualClock) -> None:
    request = inv(settings, monthly_tokens=10**6, tpm=10**6)
    limits.admit_job(request, "completion", [body(), body("two")])
    minute = request.reservation.minute
    assert item(store)[f"k{minute}"] == item(store)["used_t"] > 0
    limits.finish_request(request)  # submit_tasks failed: the reservation was never handed to a job
    found = item(store)
    assert (found["used_t"], found[f"k{minute}"], held(found), request.reservation.open) == (0, 0, {}, set())


def test_a_batch_reserves_the_sum_of_its_requests_in_one_part(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_budget=1.0)
    chunks = [{"n": 0, "items": [{"i": 0, "body": body(max_tokens=None)}, {"i": 1, "body": body()}]},
              {"n": 1, "items": [{"i": 2, "body": {**body(), "modelUri": PRO}}]}, {"n": 2}]
    out = limits.admit_job(request, "batch", chunks)
    assert out[0]["items"][0] == {"i": 0, "body": {**body(max_tokens=None), "completionOptions": {"maxTokens": "2000"}}}
    assert out[0]["items"][1] == {"i": 1, "body": body()} and out[1]["n"] == 1 and out[2] == {"n": 2, "items": []}
    worst = [limits.input_bound(out[0]["items"][0]["body"]) + 2000, WORST, limits.input_bound(out[1]["items"][0]["body"])
             + MAX]
    money = [math.ceil(worst[0] * 0.75), math.ceil(worst[1] * 0.75), math.ceil(worst[2] * 4.5)]  # async prices
    res = request.reservation
    assert {n: (p.tokens, p.money) for n, p in res.parts.items()} == {"b": (sum(worst), sum(money))}
    assert (res.kind, res.mode, res.model) == ("batch", "async", LITE)
    unpriced = [{"items": [{"body": body()}, {"body": {**body(), "modelUri": QWEN}}, {"body": body()}]}]
    with pytest.raises(errors.ForbiddenError):
        limits.admit_job(inv(settings, monthly_budget=1.0), "batch", unpriced)
    tokens_only = inv(settings, monthly_tokens=10**6)
    limits.admit_job(tokens_only, "batch", unpriced)
    assert tokens_only.reservation.parts["b"].money == 0


def test_other_jobs_reserve_their_payloads_as_they_are(store: JobStore, settings: Settings) -> None:
    request = inv(settings, monthly_tokens=10**6)
    texts = [{"modelUri": EMB, "texts": ["abc"]}, {"modelUri": EMB, "text": "x"}]
    assert limits.admit_job(request, "embedding", texts) == texts
    assert {n: p.tokens for n, p in request.reservation.parts.items()} == {"t0": 5, "t1": 0}
    assert (request.reservation.kind, request.reservation.model) == ("embedding", EMB)
    chat = inv(settings, monthly_tokens=10**6)
    assert limits.admit_job(chat, "chat", [{"messages": []}]) == [{"messages": []}]
    assert chat.reservation.parts["t0"].tokens == 15 + 2000 and chat.reservation.model == ""


def test_a_jobs_record_carries_its_reservation_and_an_unreadable_one_is_a_warning(
        store: JobStore, settings: Settings, log_output: io.StringIO) -> None:
    request = inv(settings, caller="team/a", rpm=3, tpm=10**6, monthly_tokens=10**7, monthly_budget=2.5,
                  models=("x",))
    limits.admit_job(request, "completion", [body()])
    res = request.reservation
    back = limits.job_reservation({"limits": res.to_record()})
    assert back is not None
    assert (back.caller, back.month, back.rid, back.minute, back.model, back.mode, back.kind) == (
        res.caller, res.month, res.rid, res.minute, res.model, res.mode, res.kind)
    assert back.parts == res.parts and back.open == {"t0"} and back.key == res.key
    assert back.policy == KeyPolicy(name="team/a", rpm=3, tpm=10**6, monthly_tokens=10**7, monthly_budget=2.5)
    assert json.loads(res.to_record())["limits"] == {"rpm": 3, "tpm": 10**6, "monthly_tokens": 10**7,
                                                     "monthly_budget": 2.5}  # the allow-list is not a limit
    plain = limits.Reservation("a", "202612", "r", {}, 0, 0.0, "", "sync", "completion")
    assert json.loads(plain.to_record())["limits"] == {}
    assert limits.job_reservation({"id": "op1"}) is None and limits.job_reservation({"limits": ""}) is None
    assert logged(log_output, "a job's budget reservation is unreadable") == []
    for broken in ("{", '{"caller": "a"}', '{"parts": {"t0": 3}}'):
        assert limits.job_reservation({"id": "op7", "limits": broken}) is None
    unreadable = logged(log_output, "a job's budget reservation is unreadable")
    assert [(x["level"], x["operation_id"]) for x in unreadable] == [("WARN", "op7")] * 3
    limits.release_job({"id": "op8"}, settings)  # no reservation: nothing to do


# -- alerts ------------------------------------------------------------------------------------------------------

class Webhook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.status = status
        self.posts: list[tuple[str, dict[str, Any]]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: Webhook

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.headers.get("Content-Type", ""), json.loads(data)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.shutdown()
    server.server_close()


def alerts(log: io.StringIO) -> list[dict[str, Any]]:
    return [x["budget_alert"] for x in logged(log, "budget threshold reached")]


def test_the_80_and_100_percent_alerts_are_sent_once_each(store: JobStore, settings: Settings, webhook: Webhook,
                                                          log_output: io.StringIO, clock: ManualClock,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    timeouts = []
    post = urllib.request.urlopen

    def timed(request: Any, *args: Any, **kwargs: Any) -> Any:  # the real call, its timeout noted
        timeouts.append(kwargs.get("timeout", args[1] if len(args) > 1 else None))
        return post(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", timed)
    at(clock, datetime(2026, 12, 3, tzinfo=UTC).timestamp())
    hooked = settings.model_copy(update={"budget_webhook_url": webhook.url})
    budget = 10 * WORST

    def one(input_tokens: int, n: int) -> None:
        request = inv(hooked, monthly_tokens=budget, monthly_budget=1.0)
        limits.admit(request, body(), "completion", LITE)
        assert settle(request, input_tokens, 0, f"r{n}") is True

    one(8 * WORST - 1, 1)  # just under 80%: nothing yet
    assert alerts(log_output) == []
    one(1, 2)  # 80% reached by what it settled
    event = {"event": "budget_threshold", "caller": "alice", "month": "202612", "threshold_percent": 80,
             "monthly_tokens": budget, "monthly_budget": 1.0, "tokens_used": 8 * WORST,
             "money_used": math.ceil((8 * WORST - 1) * 1.5 + 2) / 10**9}
    assert alerts(log_output) == [event] and webhook.posts == [("application/json", event)]
    assert logged(log_output, "budget threshold reached")[0]["level"] == "WARN"
    one(WORST, 3)  # 90%: sent once already
    assert len(alerts(log_output)) == 1
    with pytest.raises(limits.QuotaExceededError):  # what is settled leaves no room for a worst case: 100%
        limits.admit(inv(hooked, monthly_tokens=budget, monthly_budget=1.0), body(max_tokens=MAX + 1), "completion",
                     LITE)
    assert [a["threshold_percent"] for a in alerts(log_output)] == [80, 100]
    assert alerts(log_output)[1]["tokens_used"] == 9 * WORST
    with pytest.raises(limits.QuotaExceededError):
        limits.admit(inv(hooked, monthly_tokens=budget, monthly_budget=1.0), body(max_tokens=MAX + 1), "completion",
                     LITE)
    assert len(alerts(log_output)) == 2 and len(webhook.posts) == 2
    assert timeouts == [5, 5]  # a webhook that hangs holds the request 5 s at most


def test_a_refusal_while_reservations_hold_the_room_sends_no_alert(store: JobStore, settings: Settings,
                                                                   log_output: io.StringIO) -> None:
    for _ in range(2):
        limits.admit(inv(settings, monthly_tokens=2 * WORST), body(), "completion", LITE)
    with pytest.raises(limits.QuotaExceededError):
        limits.admit(inv(settings, monthly_tokens=2 * WORST), body(), "completion", LITE)
    assert alerts(log_output) == []


def test_a_money_budget_alerts_on_money(store: JobStore, settings: Settings, log_output: io.StringIO) -> None:
    budget = 1000 / 10**9  # a thousand billionths
    request = inv(settings, monthly_budget=budget)
    limits.admit(request, body("x"), "completion", LITE)
    settle(request, 400, 134)  # 801 billionths: 80.1%
    (event,) = alerts(log_output)
    assert (event["threshold_percent"], event["money_used"], event["monthly_tokens"]) == (80, 801 / 10**9, None)
    money = [limits.money(LITE, "sync", "completion", WORST, 0, table(settings.prices))]
    with pytest.raises(limits.QuotaExceededError):
        limits.admit(inv(settings, monthly_budget=budget), body(), "completion", LITE)
    assert money[0] is not None and [a["threshold_percent"] for a in alerts(log_output)] == [80, 100]


def test_the_alert_is_seen_by_the_admission_after_the_job_that_reached_it(
        store: JobStore, settings: Settings, log_output: io.StringIO) -> None:
    """A job's worker settles without what the request saw: it reads the settled totals."""
    request = inv(settings, monthly_tokens=100 * WORST)
    limits.admit_job(request, "completion", [body()])
    operation = {"id": "op1", "kind": "completion", "created_by": "alice", "limits": request.reservation.to_record()}
    part = limits.for_part(operation, "t0", settings)
    assert part is not None
    usage.record_task(operation, 0, 1, body(), {"usage": {"inputTextTokens": str(90 * WORST)}},
                      SimpleNamespace(settings=settings), settle=part)
    assert [a["threshold_percent"] for a in alerts(log_output)] == [80]
    assert alerts(log_output)[0]["tokens_used"] == 90 * WORST


def test_a_jobs_money_reaching_80_percent_alerts_from_the_settled_totals(
        store: JobStore, settings: Settings, log_output: io.StringIO, webhook: Webhook) -> None:
    hooked = settings.model_copy(update={"budget_webhook_url": webhook.url})
    request = inv(hooked, monthly_budget=10**6 / 10**9)  # a million billionths
    limits.admit_job(request, "completion", [body()])
    operation = {"id": "op1", "kind": "completion", "created_by": "alice", "limits": request.reservation.to_record()}
    part = limits.for_part(operation, "t0", hooked)  # the worker's settings
    assert part is not None
    usage.record_task(operation, 0, 1, body(), {"usage": {"inputTextTokens": str(540_000)}},  # 810,000 billionths
                      SimpleNamespace(settings=hooked), settle=part)
    (event,) = alerts(log_output)
    assert (event["threshold_percent"], event["money_used"], event["tokens_used"]) == (80, 0.00081, 540_000)
    assert webhook.posts == [("application/json", event)]


def test_a_refusal_that_leaves_no_room_posts_the_100_percent_alert_with_what_is_settled(
        store: JobStore, settings: Settings, webhook: Webhook, clock: ManualClock) -> None:
    hooked = settings.model_copy(update={"budget_webhook_url": webhook.url})
    cost = math.ceil(WORST * 1.5)
    used = (WORST + 1, math.ceil((WORST + 1) * 1.5))  # more than a worst case short of the budget is left
    for caller, limited in (("alice", {"monthly_tokens": 2 * WORST, "monthly_budget": 1.0}),
                            ("bob", {"monthly_budget": 2 * cost / 10**9})):
        first = inv(hooked, caller, **limited)
        limits.admit(first, body(), "completion", LITE)
        assert settle(first, used[0], 0, f"{caller}-1") is True
        with pytest.raises(limits.QuotaExceededError):
            limits.admit(inv(hooked, caller, **limited), body(), "completion", LITE)
    events = [{"event": "budget_threshold", "caller": caller, "month": limits.month_of(clock.now()),
               "threshold_percent": 100, "monthly_tokens": tokens, "monthly_budget": budget, "tokens_used": used[0],
               "money_used": used[1] / 10**9}
              for caller, tokens, budget in (("alice", 2 * WORST, 1.0), ("bob", None, 2 * cost / 10**9))]
    assert webhook.posts == [("application/json", event) for event in events]


def test_an_alert_whose_claim_failed_is_sent_by_the_next_request_at_its_admission(
        store: JobStore, settings: Settings, aws: Aws, webhook: Webhook, log_output: io.StringIO,
        clock: ManualClock) -> None:
    """The request that reached 80% could not claim it: the next one sees 80% at its admission and sends it; its own
    usage then reaches 100%, sent from what it saw (no read) with the one write of the claim."""
    hooked = settings.model_copy(update={"budget_webhook_url": webhook.url})
    limited = {"monthly_tokens": 10 * WORST, "monthly_budget": 1.0}
    first = inv(hooked, **limited)
    limits.admit(first, body(), "completion", LITE)
    aws.wrap(lambda app: Refuse(app, "UpdateItem", "ValidationException", times=1))  # the 80% claim
    assert settle(first, 8 * WORST, 0) is True
    assert len(logged(log_output, "budget alert not sent")) == 1 and webhook.posts == []
    aws.restore()
    second = inv(hooked, **limited)
    limits.admit(second, body(), "completion", LITE)
    month = limits.month_of(clock.now())
    event = {"event": "budget_threshold", "caller": "alice", "month": month, "threshold_percent": 80,
             "monthly_tokens": 10 * WORST, "monthly_budget": 1.0, "tokens_used": 8 * WORST,
             "money_used": 12 * WORST / 10**9}
    assert webhook.posts == [("application/json", event)]
    seen = counting(aws)
    assert settle(second, 2 * WORST, 0, "r2") is True
    assert webhook.posts[1:] == [("application/json", {**event, "threshold_percent": 100, "tokens_used": 10 * WORST,
                                                       "money_used": 15 * WORST / 10**9})]
    assert (seen.count("GetItem"), seen.count("UpdateItem")) == (0, 1)  # the 100% claim; 80% is known claimed, the totals known


def test_an_admission_that_sees_an_alert_sent_claims_it_no_more(store: JobStore, settings: Settings, aws: Aws,
                                                                 log_output: io.StringIO) -> None:
    first = inv(settings, monthly_tokens=10 * WORST)
    limits.admit(first, body(), "completion", LITE)
    assert settle(first, 8 * WORST, 0) is True and [a["threshold_percent"] for a in alerts(log_output)] == [80]
    seen = counting(aws)
    limits.admit(inv(settings, monthly_tokens=10 * WORST), body(), "completion", LITE)  # sees 80%, and its claim
    assert seen.count("UpdateItem") == 1 and len(alerts(log_output)) == 1  # the reservation's write only


def test_an_alert_is_claimed_by_exactly_one_of_racing_writers(store: JobStore, settings: Settings) -> None:
    limits.admit(inv(settings, monthly_tokens=10**6), body(), "completion", LITE)
    key = limits.item_key("alice", limits.month_of(__import__("time").time()))
    assert limits.claim_alert(store, "limits#nobody#202612", 80) is False  # no item: no alert
    assert sorted(race(5, lambda n: limits.claim_alert(store, key, 80), timeout=10)) == [False] * 4 + [True]
    assert limits.claim_alert(store, key, 100) is True and limits.claim_alert(store, key, 100) is False
    assert item(store)["a80"] > 0


def test_a_failing_webhook_is_logged_and_the_alert_still_counts(store: JobStore, settings: Settings,
                                                                log_output: io.StringIO) -> None:
    broken = Webhook(status=500)
    try:
        hooked = settings.model_copy(update={"budget_webhook_url": broken.url})
        request = inv(hooked, monthly_tokens=WORST)
        limits.admit(request, body(), "completion", LITE)
        settle(request, WORST, 0)
    finally:
        broken.shutdown()
        broken.server_close()
    assert [a["threshold_percent"] for a in alerts(log_output)] == [80, 100] and len(broken.posts) == 2
    assert [x["error"] for x in logged(log_output, "budget alert webhook failed")] == ["HTTPError", "HTTPError"]
    assert item(store)["a80"] > 0 and item(store)["a100"] > 0


def test_an_alert_that_cannot_be_claimed_is_a_warning_and_the_request_goes_on(
        store: JobStore, settings: Settings, aws: Aws, log_output: io.StringIO) -> None:
    request = inv(settings, monthly_tokens=WORST)
    limits.admit(request, body(), "completion", LITE)
    aws.wrap(lambda app: Refuse(app, "UpdateItem", "Validation" + "x" * 400))  # a long error: cut to 300 characters
    request.log_fields.update(model=LITE, input_tokens=WORST, completion_tokens=0)
    assert usage.record_request("completion", request, "r1") is True
    (line,) = logged(log_output, "budget alert not sent")
    assert line["level"] == "WARN" and line["limits_key"] == request.reservation.key
    assert line["error"].startswith(("StoreError: ", "ClientError: ")) and len(line["error"]) == 300
