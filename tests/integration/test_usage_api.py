"""The Usage and Costs API end to end over real HTTP: the local gateway with the authorizer in front, the handlers,
the emulator and the job store in moto server. Two callers (alice, bob) and the admin (ops) make real calls through
several doors (sync native and /v1 chat, embeddings, an async job, an OpenAI batch, an inline batch); then the
reports, read with the `openai` client's own methods and types, equal the ledger's totals and upstream's usage
exactly; a caller sees only its own usage, whatever it names; the admin sees both; groups, paging and costs hold;
bad queries are 400s in OpenAI's shape naming the parameter."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
import requests
from openai.types.admin.organization.usage_completions_response import UsageCompletionsResponse
from openai.types.admin.organization.usage_costs_response import UsageCostsResponse
from openai.types.admin.organization.usage_embeddings_response import UsageEmbeddingsResponse

from local import gateway
from local.functions import load
from local.triggers import timer_event
from shared import prices
from tests.conftest import FOLDER, Emulator, FakeContext, Jobs, reset_caches
from tests.integration.test_usage_ledger import ledger

pytestmark = pytest.mark.integration

KEYS = {"alice": "fmk_alice-usage-key-0123456789abcdef", "bob": "fmk_bob-usage-key-0123456789abcdef00",
        "ops": "fmk_ops-usage-admin-key-0123456789abc"}
FM = "/foundationModels/v1"
LITE = f"gpt://{FOLDER}/yandexgpt-lite/latest"
EMB = f"emb://{FOLDER}/text-search-doc/latest"
PRICES = '{"units": {"text_generation": 0.002, "text_generation_alt": 0.001}}'
USAGE = "/v1/organization/usage"


@pytest.fixture
def secured(jobs: Jobs, fast: Emulator, monkeypatch: pytest.MonkeyPatch,
            authorizing_gateway: gateway.GatewayServer) -> str:
    monkeypatch.setenv("CALLER_KEY_SHA256", ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"
                                                     for name, key in KEYS.items()))
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    monkeypatch.setenv("FM_PRICES", PRICES)
    reset_caches()
    return authorizing_gateway.url


def client(url: str, name: str) -> openai.OpenAI:
    """The openai client as a caller: its usage methods send the admin_api_key, its other methods the api_key."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[name], admin_api_key=KEYS[name], max_retries=0)


def http(url: str, name: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEYS[name]}"
    session.base_url = url  # type: ignore[attr-defined]
    return session


def get(session: requests.Session, path: str, **params: Any) -> requests.Response:
    return session.get(session.base_url + path, params=params, timeout=30)  # type: ignore[attr-defined]


def poller() -> None:
    load("batch_poller")(timer_event(), FakeContext(60_000, request_id=str(uuid.uuid4())))


def start_of_yesterday() -> int:
    """Yesterday 00:00 UTC: the reports cover yesterday and today, so a run across midnight still sees it all."""
    now = datetime.now(UTC)
    return int(datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()) - 86_400


def summed(page: Any, *keys: str) -> dict[tuple[Any, ...], dict[str, int]]:
    """A report's results summed over its buckets, by the given group fields."""
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for bucket in page.data:
        for result in bucket.results:
            sums = out.setdefault(tuple(getattr(result, k) for k in keys), {})
            for field in ("input_tokens", "output_tokens", "num_model_requests"):
                if hasattr(result, field):
                    sums[field] = sums.get(field, 0) + getattr(result, field)
    return out


def run_calls(url: str, jobs: Jobs) -> dict[str, Any]:
    """alice: sync native, /v1 chat, /v1 embeddings (2 texts), an async job, an OpenAI chat batch (3 lines);
    bob: /v1 chat, native embeddings (3 texts), an inline batch (2 requests). What upstream said of each."""
    alice, bob = client(url, "alice"), client(url, "bob")
    alice_http, bob_http = http(url, "alice"), http(url, "bob")
    native = alice_http.post(f"{url}{FM}/completion", json={
        "modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "Tell me about the Volga"}]}, timeout=30)
    assert native.status_code == 200, native.text
    chat = alice.chat.completions.create(model="yandexgpt-lite", messages=[{"role": "user", "content": "Hello"}])
    embedded = alice.embeddings.create(model="text-search-doc", input=["first text", "second text here"])
    job = alice_http.post(f"{url}{FM}/completionAsync", json={
        "modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "An async question"}]}, timeout=30).json()
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": f"question {i}"}]}}
             for i in range(3)]
    uploaded = alice.files.create(file=("in.jsonl", io.BytesIO("".join(json.dumps(x) + "\n" for x in lines).encode())),
                                  purpose="batch")
    batch = alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    bob_chat = bob.chat.completions.create(model="yandexgpt-lite", messages=[{"role": "user", "content": "Hi there"}])
    bob_emb = bob_http.post(f"{url}{FM}/textEmbedding", json={"modelUri": "text-search-doc",
                                                             "texts": ["a b", "c d e", "f"]}, timeout=30)
    inline = bob_http.post(f"{url}{FM}/completionBatch", json={"modelUri": "yandexgpt-lite", "requests": [
        {"messages": [{"role": "user", "text": f"inline {i}"}]} for i in range(2)]}, timeout=30).json()
    for _ in range(20):
        jobs.drain()
        poller()
        done = alice.batches.retrieve(batch.id)
        inline_done = get(bob_http, f"/operations/{inline['id']}").json()
        if done.status == "completed" and inline_done["done"]:
            break
    poller()
    job_done = get(alice_http, f"/operations/{job['id']}").json()
    assert job_done["done"] and done.status == "completed" and inline_done["done"]
    return {"native": native.json()["result"]["usage"], "chat": chat.usage, "embedded": embedded.usage,
            "job": job_done["response"]["usage"], "batch": done.usage, "bob_chat": bob_chat.usage,
            "bob_emb": bob_emb.json()}


@pytest.fixture
def calls(secured: str, jobs: Jobs) -> dict[str, Any]:
    return run_calls(secured, jobs)


def test_each_callers_reports_equal_the_ledger_and_upstreams_usage_and_show_only_its_own(
        secured: str, calls: dict[str, Any]) -> None:
    alice = client(secured, "alice")
    start = start_of_yesterday()
    report = alice.admin.organization.usage.completions(start_time=start, group_by=["model", "batch", "api_key_id"])
    assert isinstance(report, UsageCompletionsResponse) and report.has_more is False and len(report.data) == 2
    rows = summed(report, "api_key_id", "model", "batch")
    sync_in = int(calls["native"]["inputTextTokens"]) + calls["chat"].prompt_tokens + \
        int(calls["job"]["inputTextTokens"])
    sync_out = int(calls["native"]["completionTokens"]) + calls["chat"].completion_tokens + \
        int(calls["job"]["completionTokens"])
    assert rows == {
        ("alice", LITE, False): {"input_tokens": sync_in, "output_tokens": sync_out, "num_model_requests": 3},
        ("alice", LITE, True): {"input_tokens": calls["batch"].input_tokens,
                                "output_tokens": calls["batch"].output_tokens, "num_model_requests": 3}}
    totals = ledger("alice")[LITE]
    assert (totals["sync"]["input_tokens"], totals["sync"]["output_tokens"], totals["sync"]["requests"]) == (
        sync_in, sync_out, 3)
    assert (totals["async"]["input_tokens"], totals["async"]["requests"]) == (calls["batch"].input_tokens, 3)

    embeddings = alice.admin.organization.usage.embeddings(start_time=start, group_by=["model"])
    assert isinstance(embeddings, UsageEmbeddingsResponse)
    assert summed(embeddings, "model") == {(EMB,): {"input_tokens": calls["embedded"].prompt_tokens,
                                                    "num_model_requests": 2}}  # one upstream call per text

    bob = client(secured, "bob")
    bobs = summed(bob.admin.organization.usage.completions(start_time=start, group_by=["api_key_id", "batch"]),
                  "api_key_id", "batch")
    bob_ledger = ledger("bob")[LITE]
    assert bobs == {("bob", False): {"input_tokens": calls["bob_chat"].prompt_tokens,
                                     "output_tokens": calls["bob_chat"].completion_tokens, "num_model_requests": 1},
                    ("bob", True): {"input_tokens": bob_ledger["async"]["input_tokens"],
                                    "output_tokens": bob_ledger["async"]["output_tokens"], "num_model_requests": 2}}
    bob_emb = summed(bob.admin.organization.usage.embeddings(start_time=start), "api_key_id")
    assert bob_emb == {(None,): {"input_tokens": int(calls["bob_emb"]["numTokens"]), "num_model_requests": 3}}

    # naming the other key reveals nothing: the same answer as for a key that does not exist
    for name, other in (("alice", "bob"), ("bob", "alice")):
        raw = [get(http(secured, name), f"{USAGE}/completions", start_time=start, **{"api_key_ids[]": key}).json()
               for key in (other, "nobody")]
        assert raw[0] == raw[1] and all(bucket["results"] == [] for bucket in raw[0]["data"])
        costs = get(http(secured, name), "/v1/organization/costs", start_time=start, api_key_ids=other).json()
        assert all(bucket["results"] == [] for bucket in costs["data"])


def test_the_admin_sees_every_caller_and_each_share_equals_that_callers_own_report(
        secured: str, calls: dict[str, Any]) -> None:
    start = start_of_yesterday()
    admin = client(secured, "ops")
    everyone = summed(admin.admin.organization.usage.completions(start_time=start, group_by=["api_key_id"]),
                      "api_key_id")
    for name in ("alice", "bob"):
        own = summed(client(secured, name).admin.organization.usage.completions(start_time=start), "api_key_id")
        assert everyone[(name,)] == own[(None,)]
    assert set(everyone) == {("alice",), ("bob",)}  # the admin itself made no calls
    total = summed(admin.admin.organization.usage.completions(start_time=start), "model")
    assert total[(None,)]["num_model_requests"] == 3 + 3 + 1 + 2
    only_bob = summed(admin.admin.organization.usage.completions(start_time=start, api_key_ids=["bob"],
                                                                 group_by=["api_key_id"]), "api_key_id")
    assert only_bob == {("bob",): everyone[("bob",)]}
    batch_only = summed(admin.admin.organization.usage.completions(start_time=start, batch=True), "batch")
    assert batch_only[(None,)]["num_model_requests"] == 3 + 2  # the OpenAI batch and the inline batch


def test_costs_are_the_ledgers_tokens_times_the_price_table_per_line_item(secured: str, calls: dict[str, Any]) -> None:
    start = start_of_yesterday()
    table = prices.table(PRICES)
    admin = client(secured, "ops")
    costs = admin.admin.organization.usage.costs(start_time=start, group_by=["line_item", "api_key_id"])
    assert isinstance(costs, UsageCostsResponse)
    got: dict[tuple[str, str], float] = {}
    for bucket in costs.data:
        for result in bucket.results:
            assert result.amount is not None and result.amount.currency == "usd"
            key = (str(result.api_key_id), str(result.line_item))
            got[key] = got.get(key, 0.0) + float(result.amount.value or 0)
    expected: dict[tuple[str, str], float] = {}
    for name in ("alice", "bob"):
        for model, amounts in prices.cost(ledger(name), table)["models"].items():
            for mode, amount in amounts.items():
                expected[(name, f"{model}, {mode}")] = amount
    assert got.keys() == expected.keys() and {(n, line.rsplit(", ", 1)[1]) for n, line in got} >= {
        ("alice", "sync"), ("alice", "async"), ("bob", "async")}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9)
    alice_lite_sync = ledger("alice")[LITE]["sync"]
    assert expected[("alice", f"{LITE}, sync")] == pytest.approx(
        (alice_lite_sync["input_tokens"] + alice_lite_sync["output_tokens"]) / 1000 * 1 * 0.002, abs=1e-12)
    # a deployment without generation prices (the table's default): the generation totals are unknown, not zero
    unpriced = get(http(secured, "alice"), "/v1/organization/costs", start_time=start, group_by="line_item")
    assert unpriced.status_code == 200
    UsageCostsResponse.model_validate(unpriced.json(), strict=True)


def test_paging_walks_day_by_day_to_the_same_totals_and_the_raw_answers_parse_strictly(
        secured: str, calls: dict[str, Any]) -> None:
    start = start_of_yesterday() - 3 * 86_400  # five days: three empty ones, yesterday and today
    alice = http(secured, "alice")
    pages, cursor, buckets = 0, None, []
    while True:
        answer = get(alice, f"{USAGE}/completions", start_time=start, limit=2, **({"page": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        page = UsageCompletionsResponse.model_validate(answer.json(), strict=True)
        pages += 1
        buckets += page.data
        if not page.has_more:
            assert page.next_page is None
            break
        cursor = page.next_page
    assert pages == 3 and [b.start_time for b in buckets] == [start + n * 86_400 for n in range(5)]
    assert all(b.end_time == b.start_time + 86_400 for b in buckets)
    assert sum(r.num_model_requests for b in buckets for r in b.results) == 6  # type: ignore[union-attr]
    for path, model in (("/usage/embeddings", UsageEmbeddingsResponse), ("/costs", UsageCostsResponse)):
        raw = get(alice, f"/v1/organization{path}", start_time=start, limit=5)
        model.model_validate(raw.json(), strict=True)


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/usage/completions", {}, "start_time"),
    ("/usage/completions", {"start_time": "yesterday"}, "start_time"),
    ("/usage/completions", {"start_time": "100", "end_time": "100"}, "end_time"),
    ("/usage/completions", {"start_time": "100", "bucket_width": "1h"}, "bucket_width"),
    ("/usage/embeddings", {"start_time": "100", "limit": "32"}, "limit"),
    ("/costs", {"start_time": "100", "limit": "181"}, "limit"),
    ("/usage/completions", {"start_time": "100", "group_by[]": "project_id"}, "group_by"),
    ("/costs", {"start_time": "100", "group_by": "model"}, "group_by"),
    ("/usage/embeddings", {"start_time": "100", "project_ids[]": "proj_1"}, "project_ids"),
    ("/usage/completions", {"start_time": "100", "page": "AAAAAGdGxdEiJdKO"}, "page"),
    ("/usage/completions", {"start_time": "100", "batch": "maybe"}, "batch"),
])
def test_bad_queries_are_400s_in_openais_shape_naming_the_parameter(
        secured: str, path: str, params: dict[str, str], param: str) -> None:
    answer = get(http(secured, "alice"), f"/v1/organization{path}", **params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]


def test_the_openai_clients_bad_query_surfaces_as_its_bad_request_error(secured: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(secured, "ops").admin.organization.usage.completions(start_time=100, bucket_width="1h")
    assert caught.value.status_code == 400 and "bucket_width" in str(caught.value)
    empty = client(secured, "ops").admin.organization.usage.costs(start_time=start_of_yesterday())
    assert [bucket.results for bucket in empty.data] == [[], []]  # no usage yet: every day, no results


def test_without_the_job_store_the_routes_say_the_ledger_is_in_the_logs_only(api_v01: Any) -> None:
    answer = api_v01.http.get(f"{api_v01.url}{USAGE}/completions", params={"start_time": "100"}, timeout=30)
    assert answer.status_code == 404 and "job store" in answer.json()["error"]["message"]
    assert api_v01.http.get(f"{api_v01.url}{USAGE}/completions", timeout=30).status_code == 400  # the query first


def test_both_payload_formats_keep_every_value_of_a_repeated_parameter(api: Any, jobs: Jobs) -> None:
    """Without the authorizer every caller is `anonymous`, and sees anonymous usage (as for jobs)."""
    chat = api.post("/v1/chat/completions", {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "Hi"}]})
    assert chat.status_code == 200, chat.text
    answer = api.http.get(f"{api.url}{USAGE}/completions?start_time={start_of_yesterday()}"
                          "&group_by[]=model&group_by[]=api_key_id", timeout=30)
    assert answer.status_code == 200, answer.text
    results = [r for bucket in answer.json()["data"] for r in bucket["results"]]
    assert [(r["model"], r["api_key_id"], r["input_tokens"], r["num_model_requests"]) for r in results] == [
        (LITE, "anonymous", chat.json()["usage"]["prompt_tokens"], 1)]
