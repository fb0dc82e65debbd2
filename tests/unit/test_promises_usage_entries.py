"""The usage ledger's own promises (shared/jobs/usage.py), each in a fraction of a second: entries built from what
each door hands it (a synchronous route's summary fields, a task's upstream answer, a batch's item records), written
once per call key into the job store in the in-process stand-in (local.aws.InProcessMoto: moto's app without a socket), and read back exactly by day, by caller list and by (caller,
day) pair; a log line for every entry, store or not; nothing counted for a call that billed nothing; a broken input
or store never raises. tests/integration/test_usage_ledger.py proves the doors end to end; this file is what
`make mutate` runs for the module."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from local.aws import InProcessMoto
from shared.config import Settings
from shared.jobs import usage
from shared.jobs.store import JobStore
from tests.clock import ManualClock
from tests.conftest import FOLDER, Aws, reset_caches
from tests.unit.test_promises_store import Refuse

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

LITE = f"gpt://{FOLDER}/yandexgpt-lite/latest"
PRO = f"gpt://{FOLDER}/yandexgpt/latest"
EMB = f"emb://{FOLDER}/text-search-doc/latest"
CLS = f"cls://{FOLDER}/yandexgpt-lite/latest"
AT = datetime(2026, 12, 1, 13, 14, 15, 678_000, tzinfo=UTC).timestamp()
DAY = "20261201"
ZERO = dict.fromkeys(usage.COUNTERS, 0)


def lines(log: io.StringIO, message: str | None = None) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in log.getvalue().splitlines()]
    return [line for line in found if message is None or line.get("msg") == message]


def unbuilt(log: io.StringIO, **fields: Any) -> None:
    """The last line is the warning for an entry that could not be built, with its traceback and the given ids."""
    line = lines(log)[-1]
    assert (line["level"], line["msg"]) == ("WARN", "usage entry could not be built"), line
    assert line["exc_info"].startswith("Traceback") and line["exc_info"].splitlines()[-1].startswith(
        ("KeyError", "AttributeError", "TypeError")), line
    assert {name: line.get(name) for name in fields} == fields, line


def inv(settings: Settings, caller: str = "alice", **fields: Any) -> Any:
    return SimpleNamespace(settings=settings, caller=caller, log_fields=fields, reservation=None)


def counts(**given: int) -> dict[str, int]:
    return {**ZERO, **given}


@pytest.fixture
def store(aws: Aws, clock: ManualClock) -> JobStore:
    reset_caches()
    return JobStore(Settings.from_env())


@pytest.fixture
def settings(store: JobStore) -> Settings:
    return Settings.from_env()


# -- writing and reading the totals ------------------------------------------------------------------------------

def test_an_entry_is_counted_once_per_call_key_into_its_days_totals(store: JobStore, settings: Settings,
                                                                    log_output: io.StringIO) -> None:
    first = usage.Entry("alice", LITE, "completion", "sync", "sync", "sync#r1", 10, 5, 2, at=AT, request_id="up-1")
    assert usage.record(first, settings) is True
    assert usage.record(first, settings) is False  # the same call again: nothing added
    usage.record(usage.Entry("alice", LITE, "completionAsync", "async", "job", "op#0#1", 7, 3, at=AT), settings)
    usage.record(usage.Entry("alice", EMB, "textEmbedding", "sync", "sync", "sync#r2", 4, requests=3, units=3, at=AT),
                 settings)
    usage.record(usage.Entry("alice", LITE, "completion", "sync", "sync", "sync#r3", 1, 1, at=AT + 86_400), settings)
    assert usage.totals(store, "alice", DAY) == {
        LITE: {"sync": counts(input_tokens=10, output_tokens=5, reasoning_tokens=2, requests=1, units=1),
               "async": counts(input_tokens=7, output_tokens=3, requests=1, units=1)},
        EMB: {"sync": counts(input_tokens=4, requests=3, units=3)}}
    assert usage.days(store, "alice", [DAY, "20261202", "20261203"]) == {
        DAY: usage.totals(store, "alice", DAY),
        "20261202": {LITE: {"sync": counts(input_tokens=1, output_tokens=1, requests=1, units=1)}}}
    assert usage.totals(store, "bob", DAY) == {}
    logged = [line["usage"] for line in lines(log_output, "usage")]
    assert [line["counted"] for line in logged] == [True, False, True, True, True]
    assert logged[0] == {"caller": "alice", "model": LITE, "route": "completion", "mode": "sync", "door": "sync",
                         "key": "sync#r1", "input_tokens": 10, "output_tokens": 5, "reasoning_tokens": 2,
                         "requests": 1, "units": 1, "request_id": "up-1", "time": "2026-12-01T13:14:15.678+00:00",
                         "day": DAY, "counted": True}


def test_many_keys_of_one_caller_spread_over_shards_and_sum_exactly(store: JobStore, settings: Settings) -> None:
    for n in range(40):
        usage.record(usage.Entry("team/a:b", PRO, "completion", "sync", "sync", f"sync#{n}", n, 1, at=AT), settings)
    assert usage.totals(store, "team/a:b", DAY) == {
        PRO: {"sync": counts(input_tokens=sum(range(40)), output_tokens=40, requests=40, units=40)}}
    shards = store.records([usage.totals_key("team/a:b", DAY, n) for n in range(usage.USAGE_SHARDS)])
    assert len(shards) == usage.USAGE_SHARDS  # 40 keys reach every shard
    assert {r["caller"] for r in shards.values()} == {"team/a:b"} and {r["day"] for r in shards.values()} == {DAY}


def test_the_days_callers_and_any_caller_day_pairs_read_back_what_was_written(store: JobStore,
                                                                            settings: Settings) -> None:
    for n, (caller, at) in enumerate([("alice", AT), ("bob", AT), ("bob", AT + 86_400), ("carol", AT + 86_400)]):
        usage.record(usage.Entry(caller, LITE, "completion", "sync", "sync", f"sync#{n}", n + 1, at=at), settings)
    assert usage.callers(store, [DAY, "20261202", "20261203"]) == {DAY: {"alice", "bob"},
                                                                  "20261202": {"bob", "carol"}}
    assert usage.pair_totals(store, [("alice", DAY), ("bob", "20261202"), ("carol", DAY)]) == {
        ("alice", DAY): {LITE: {"sync": counts(input_tokens=1, requests=1, units=1)}},
        ("bob", "20261202"): {LITE: {"sync": counts(input_tokens=3, requests=1, units=1)}}}


def test_totals_are_kept_for_the_configured_days_from_their_day_and_a_call_key_for_seven(
        store: JobStore, monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    monkeypatch.setenv("FM_USAGE_TTL_DAYS", "2")
    settings = Settings.from_env()
    key = "sync#ttl"
    usage.record(usage.Entry("alice", LITE, "completion", "sync", "sync", key, 1, at=AT), settings)
    day_start = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    totals = store.records([usage.totals_key("alice", DAY, usage.shard(key))])
    assert [int(r["expires_at"]) for r in totals.values()] == [day_start + 2 * 86_400]
    callers = store.records([usage.callers_key(DAY, n) for n in range(usage.CALLER_SHARDS)])
    assert [int(r["expires_at"]) for r in callers.values()] == [day_start + 2 * 86_400]
    mark = store.item(usage.mark_key(key))
    assert mark is not None and mark["caller"] == "alice"
    assert int(mark["expires_at"]) == int(clock.now() + 7 * 86_400)


def test_without_the_store_an_entry_is_the_log_line_alone(monkeypatch: pytest.MonkeyPatch,
                                                          log_output: io.StringIO) -> None:
    for name in ("DOCAPI_ENDPOINT", "RESULTS_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    entry = usage.Entry("alice", LITE, "completion", "sync", "sync", "sync#x", 3, at=AT)
    assert usage.record(entry, settings, message="usage batch totals") is None
    (line,) = lines(log_output)
    assert line["msg"] == "usage batch totals" and line["usage"]["input_tokens"] == 3
    assert "counted" not in line["usage"] and "ledger_ms" not in line
    only_bucket = Settings(results_bucket="b")
    assert usage.record(entry, only_bucket) is None and len(lines(log_output)) == 2


def test_a_failing_store_is_a_warning_with_the_entry_and_never_an_exception(settings: Settings,
                                                                            log_output: io.StringIO) -> None:
    broken = settings.model_copy(update={"docapi_endpoint": "http://127.0.0.1:9"})
    reset_caches()
    entry = usage.Entry("alice", LITE, "completion", "sync", "sync", "sync#down", 3, at=AT)
    assert usage.record(entry, broken) is None
    (line,) = lines(log_output)
    assert line["level"] == "WARN" and line["msg"].startswith("usage not added to the totals")
    assert line["usage"]["key"] == "sync#down" and line["error"]
    reset_caches()


# -- what each door hands the ledger ---------------------------------------------------------------------------

def test_a_synchronous_route_is_counted_from_its_summary_fields(store: JobStore, settings: Settings,
                                                                log_output: io.StringIO) -> None:
    assert usage.record_request("completion", inv(settings, model=LITE, input_tokens="12", completion_tokens=4,
                                                  reasoning_tokens=2, upstream_request_id="up-9"), "req-1") is True
    assert usage.record_request("createEmbedding", inv(settings, model=EMB, input_tokens=9, texts=3), "req-2") is True
    assert usage.record_request("textEmbedding", inv(settings, model=EMB, input_tokens=1), "req-3") is True
    assert usage.record_request("textEmbedding", inv(settings, model=EMB, input_tokens=4, texts=2), "req-4") is True
    logged = {line["usage"]["key"]: line["usage"] for line in lines(log_output, "usage")}
    assert logged["sync#req-1"] | {"time": None} == {
        "caller": "alice", "model": LITE, "route": "completion", "mode": "sync", "door": "sync", "key": "sync#req-1",
        "input_tokens": 12, "output_tokens": 4, "reasoning_tokens": 2, "requests": 1, "units": 1,
        "request_id": "up-9", "time": None, "day": logged["sync#req-1"]["day"], "counted": True}
    assert (logged["sync#req-2"]["requests"], logged["sync#req-2"]["units"]) == (3, 3)  # one call per text
    assert (logged["sync#req-3"]["requests"], logged["sync#req-3"]["request_id"]) == (1, "req-3")
    assert (logged["sync#req-4"]["requests"], logged["sync#req-4"]["units"]) == (2, 2)  # the native route's texts


@pytest.mark.parametrize(("operation", "fields"), [
    ("tokenize", {"model": LITE, "input_tokens": 3}),  # free upstream
    ("listModels", {"model": LITE, "input_tokens": 3}),
    ("completion", {"input_tokens": 3}),  # no model: nothing reached upstream
    ("createResponse", {"model": LITE, "input_tokens": 3, "background": True}),  # its worker counts it
])
def test_routes_that_bill_nothing_here_record_nothing(settings: Settings, log_output: io.StringIO, operation: str,
                                                      fields: dict[str, Any]) -> None:
    assert usage.record_request(operation, inv(settings, **fields), "r") is None
    assert lines(log_output) == []


def test_an_answer_without_usage_is_a_warning_not_an_entry(settings: Settings, log_output: io.StringIO) -> None:
    assert usage.record_request("createChatCompletion", inv(settings, model=LITE), "r") is None
    (line,) = lines(log_output)
    assert line["level"] == "WARN" and line["msg"].startswith("upstream answered without usage")
    assert (line["operation"], line["model"]) == ("createChatCompletion", LITE)
    assert usage.record_request("createChatCompletion", inv(settings, model=LITE, completion_tokens=0), "r2") is True


def test_a_classification_counts_its_billing_units(settings: Settings, log_output: io.StringIO) -> None:
    assert usage.record_request("fewShotTextClassification", inv(settings, model=CLS, input_tokens=500), "c") is True
    line = lines(log_output, "usage")[0]["usage"]
    assert (line["requests"], line["units"], line["input_tokens"]) == (1, 1, 500)
    assert usage.record_request("textClassification", inv(settings, model=CLS), "d") is True  # no tokens: 1 unit


def test_an_entry_that_cannot_be_built_is_a_warning(settings: Settings, log_output: io.StringIO) -> None:
    broken = SimpleNamespace(settings=settings, caller="alice", log_fields=None, reservation=None)
    assert usage.record_request("completion", broken, "r") is None
    unbuilt(log_output, operation="completion")


def operation(kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": "op1", "kind": kind, "created_by": "bob"} | extra


def task_line(log: io.StringIO) -> dict[str, Any]:
    return lines(log, "usage")[-1]["usage"]


def test_a_task_counts_upstreams_answer_for_its_kind(store: JobStore, settings: Settings,
                                                     log_output: io.StringIO) -> None:
    s = inv(settings)
    usage.record_task(operation("completion"), 0, 1, {"modelUri": LITE}, {"usage": {
        "inputTextTokens": "11", "completionTokens": "6", "completionTokensDetails": {"reasoningTokens": "2"}}}, s)
    line = task_line(log_output)
    assert (line["key"], line["route"], line["door"], line["caller"], line["request_id"], line["model"]) == (
        "op1#0#1", "completionAsync", "job", "bob", "op1", LITE)
    assert (line["input_tokens"], line["output_tokens"], line["reasoning_tokens"], line["mode"]) == (11, 6, 2, "sync")
    usage.record_task(operation("classification"), 1, 2, {"modelUri": CLS}, {"inputTokens": "40"}, s)
    line = task_line(log_output)
    assert (line["route"], line["input_tokens"], line["units"], line["key"]) == (
        "fewShotTextClassificationAsync", 40, 1, "op1#1#2")
    usage.record_task(operation("embedding"), 2, 1, {"modelUri": EMB}, {"embeddings": [[1], [2]], "numTokens": "5"}, s)
    line = task_line(log_output)
    assert (line["route"], line["requests"], line["units"], line["input_tokens"]) == ("textEmbeddingAsync", 2, 2, 5)
    usage.record_task(operation("embedding", door="openai"), 3, 1, {"modelUri": EMB}, {"requests": [
        {"embeddings": [[1], [2], [3]], "numTokens": 4}, {"error": {"code": 3}}, {"embeddings": [[4]], "numTokens": "2"}]},
        s)
    line = task_line(log_output)
    assert (line["route"], line["door"], line["requests"], line["units"], line["input_tokens"]) == (
        "createBatch", "batch", 4, 4, 6)
    usage.record_task(operation("completion", description="Background Response"), 4, 1, {"modelUri": LITE},
                      {"usage": {"inputTextTokens": "1"}}, s)
    assert task_line(log_output)["route"] == "createResponse"
    anonymous = {"id": "op2", "kind": "completion"}
    usage.record_task(anonymous, 0, 1, {"modelUri": LITE}, {"usage": {}}, s)
    assert task_line(log_output)["caller"] == "anonymous"


def test_a_task_that_billed_nothing_or_cannot_be_read_records_nothing(settings: Settings,
                                                                      log_output: io.StringIO) -> None:
    s = inv(settings)
    assert usage.record_task(operation("embedding"), 0, 1, {"modelUri": EMB}, {"embeddings": []}, s) is None
    assert lines(log_output) == []
    assert usage.record_task({"kind": "completion"}, 0, 1, {}, {}, s) is None  # no id
    unbuilt(log_output, operation_id=None)
    assert usage.record_task({"id": "op7", "kind": "completion"}, 0, 1, {}, None, s) is None  # type: ignore[arg-type]
    unbuilt(log_output, operation_id="op7")


def test_a_batch_is_counted_once_from_its_finished_items_as_async(store: JobStore, settings: Settings,
                                                                  log_output: io.StringIO) -> None:
    op = operation("completion", model=LITE)
    records = {
        0: {"state": "done", "outcome": json.dumps({"usage": {"inputTextTokens": "3", "completionTokens": "4"}})},
        1: {"state": "done", "failed": True, "outcome": json.dumps({"usage": {"inputTextTokens": "100"}})},
        2: {"state": "running"},
        3: {"state": "done", "outcome": json.dumps({"usage": {"inputTextTokens": "5", "completionTokens": "6",
                                                               "completionTokensDetails": {"reasoningTokens": "1"}}})},
    }
    assert usage.record_batch(op, records, inv(settings)) is True
    assert usage.record_batch(op, records, inv(settings)) is False
    (line, again) = lines(log_output, "usage batch totals")
    assert line["usage"] | {"time": None, "day": None} == {
        "caller": "bob", "model": LITE, "route": "completionBatch", "mode": "async", "door": "batch",
        "key": "op1#batch", "input_tokens": 8, "output_tokens": 10, "reasoning_tokens": 1, "requests": 2, "units": 2,
        "request_id": "op1", "time": None, "day": None, "counted": True}
    assert again["usage"]["counted"] is False
    assert usage.record_batch(operation("completion", id="op2", door="openai"), {0: records[0]}, inv(settings))
    assert lines(log_output, "usage batch totals")[-1]["usage"]["route"] == "createBatch"
    assert usage.record_batch(operation("completion"), {1: records[1], 2: records[2]}, inv(settings)) is None
    assert usage.record_batch({"kind": "completion"}, records, inv(settings)) is None  # no id: a warning
    unbuilt(log_output, operation_id=None)
    assert usage.record_batch({"id": "op8"}, {0: {"state": "done", "outcome": "[]"}}, inv(settings)) is None
    unbuilt(log_output, operation_id="op8")


def test_a_batch_request_gets_its_own_line_counted_with_its_batch(log_output: io.StringIO) -> None:
    usage.log_item(operation("completion", model=LITE), 7, {"usage": {"inputTextTokens": "2", "completionTokens": "1"}})
    (line,) = lines(log_output, "usage")
    assert (line["usage"]["key"], line["usage"]["counted"], line["usage"]["input_tokens"], line["usage"]["model"],
            line["usage"]["mode"]) == ("op1#i7", "with its batch", 2, LITE, "async")
    usage.log_item({"kind": "completion"}, 1, {})
    unbuilt(log_output, operation_id=None)
    usage.log_item({"id": "op9"}, 1, None)  # type: ignore[arg-type]
    unbuilt(log_output, operation_id="op9")
    usage.log_item({"id": "op3"}, 0, {})
    assert (lines(log_output, "usage")[-1]["usage"]["model"], lines(log_output, "usage")[-1]["usage"]["caller"]) == (
        "unknown", "anonymous")


@pytest.mark.parametrize(("given", "expected"), [
    ({"prompt_tokens": 5, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 1}}, (5, 2, 1)),
    ({"input_tokens": "7", "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": "2"}}, (7, 3, 2)),
    ({"prompt_tokens": -4, "completion_tokens": "x", "completion_tokens_details": "odd"}, (0, 0, 0)),
    (None, (0, 0, 0)),
])
def test_openai_usage_of_chat_or_responses_becomes_the_counters(given: Any, expected: tuple[int, int, int]) -> None:
    got = usage.openai_usage(given)
    assert (got["input_tokens"], got["output_tokens"], got["reasoning_tokens"]) == expected


def test_native_usage_reads_int64_strings_and_tolerates_odd_shapes() -> None:
    assert usage.native_usage({"inputTextTokens": "9", "completionTokens": "4",
                               "completionTokensDetails": {"reasoningTokens": "3"}}) == {
        "input_tokens": 9, "output_tokens": 4, "reasoning_tokens": 3}
    assert usage.native_usage({"inputTextTokens": "2", "completionTokensDetails": "x"}) == {
        "input_tokens": 2, "output_tokens": 0, "reasoning_tokens": 0}
    assert usage.native_usage([1]) == {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}


def test_pairs_sum_every_mode_over_every_shard(store: JobStore, settings: Settings) -> None:
    for n in range(24):
        mode = ("sync", "async", "batch")[n % 3]
        usage.record(usage.Entry("alice", LITE, "x", mode, "job", f"k{n}", 1, 2, at=AT), settings)
    usage.record(usage.Entry("alice", EMB, "x", "batch", "batch", "only-batch", 5, at=AT), settings)
    each = counts(input_tokens=8, output_tokens=16, requests=8, units=8)
    assert usage.pair_totals(store, [("alice", DAY)]) == {("alice", DAY): {
        LITE: {"sync": each, "async": each, "batch": each}, EMB: {"batch": counts(input_tokens=5, requests=1, units=1)}}}
    assert usage.days(store, "alice", [DAY])[DAY] == usage.pair_totals(store, [("alice", DAY)])[("alice", DAY)]


class Settle:
    """What shared/jobs/limits.py hands the ledger: it commits the ledger's transaction with its own item added."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str]] = []

    def commit(self, store: JobStore, items: list[dict[str, Any]], mark: str, patient: bool, entry: Any) -> bool:
        self.seen.append((mark, patient, entry.key))
        return store.add_usage(items, mark, patient)


def test_a_batch_and_a_task_settle_their_budget_in_the_ledgers_transaction_patiently(
        store: JobStore, settings: Settings) -> None:
    settle = Settle()
    done = {0: {"state": "done", "outcome": json.dumps({"usage": {"inputTextTokens": "3"}})}}
    assert usage.record_batch(operation("completion", model=LITE), done, inv(settings), settle=settle) is True
    assert usage.record_task(operation("completion", id="op5"), 0, 1, {"modelUri": LITE},
                             {"usage": {"inputTextTokens": "1"}}, inv(settings), settle=settle) is True
    assert settle.seen == [("usage#call#op1#batch", True, "op1#batch"), ("usage#call#op5#0#1", True, "op5#0#1")]


def test_the_engines_writes_ride_out_throttling_and_a_callers_request_does_not_wait_for_it(
        aws: Aws, store: JobStore, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        log_output: io.StringIO) -> None:
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=lambda s: None, time=__import__("time").time))
    refusal: Refuse = aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ThrottlingException", times=1))
    done = {0: {"state": "done", "outcome": json.dumps({"usage": {"inputTextTokens": "3"}})}}
    assert usage.record_batch(operation("completion", model=LITE), done, inv(settings)) is True
    refusal.calls = 0
    assert usage.record_task(operation("completion", id="op6"), 0, 1, {"modelUri": LITE},
                             {"usage": {"inputTextTokens": "1"}}, inv(settings)) is True
    refusal.calls = 0
    assert usage.record_request("completion", inv(settings, model=LITE, input_tokens=1), "r-throttled") is None
    assert lines(log_output)[-1]["msg"].startswith("usage not added to the totals")


def test_a_finished_request_without_an_outcome_counts_as_a_request_of_no_tokens(store: JobStore,
                                                                              settings: Settings) -> None:
    assert usage.record_batch({"id": "op4", "kind": "completion"}, {0: {"state": "done"}}, inv(settings)) is True
    assert usage.totals(store, "anonymous", usage.Entry("a", LITE, "r", "async", "batch", "k").day) == {
        "unknown": {"async": counts(requests=1, units=1)}}
