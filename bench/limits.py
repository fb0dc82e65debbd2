"""`make bench`, budgets and per-key limits (shared/jobs/limits.py): what a limited key's request adds on the local
store (moto server) over the same request from a key without limits (which already pays the usage ledger's one
transaction), the Document API round trips of each (counted on the wire: botocore's requests), and the admission
throughput of one key under concurrency with the local store answering write conflicts as the cloud's optimistic
concurrency does (local.aws.ConflictingWrites). Its own emulator and moto server, in this process. Printed as
Markdown; BENCH_LIMITS_REQUESTS sets the requests per measurement (default 300).

    .venv/bin/python -m bench.limits
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from typing import Any

REQUESTS = int(os.environ.get("BENCH_LIMITS_REQUESTS", "300"))
THREADS = 8


def _setup(write_conflicts: bool) -> tuple[Any, Any, Any]:
    import requests

    from local import emulator as emulator_module
    from local.aws import provision, start_moto
    from tests.conftest import reset_caches

    emulator = emulator_module.start()
    server, moto = start_moto(write_conflicts=write_conflicts)
    requests.post(f"{moto}/moto-api/reset", timeout=10).raise_for_status()
    os.environ.update(provision(moto).env())
    os.environ.update({"FM_BASE_URL": emulator.url, "FM_OPERATION_URL": emulator.url, "YC_API_KEY": "AQVNbench-key",
                       "YC_FOLDER_ID": "b1gbench", "YC_METADATA_ADDR": "127.0.0.1:9"})
    reset_caches()
    return emulator, server, moto


def _event(policy: Any) -> dict[str, Any]:
    from local.gateway import build_event
    from shared import routes

    path = "/foundationModels/v1/completion"
    route, params = routes.resolve("POST", path)
    body = {"modelUri": "yandexgpt-lite", "completionOptions": {"maxTokens": "50"},
            "messages": [{"role": "user", "text": "Tell me about the Volga"}]}
    event = build_event("POST", path, {"Content-Type": "application/json"}, json.dumps(body).encode(), route, params)
    event["requestContext"]["authorizer"] = {"caller": policy.name if policy else "bench",
                                             **({"policy": policy.to_context()} if policy else {})}
    return event


def latency() -> tuple[float, float, float, float, list[str], list[str]]:
    """(median and p90 without limits, with limits) of the whole handler, interleaved; the store requests of each."""
    from local.context import LocalContext
    from local.functions import load
    from shared import config
    from shared.jobs.store import job_store
    from shared.policy import KeyPolicy

    emulator, server, _ = _setup(write_conflicts=False)
    try:
        handler = load("completion")
        policy = KeyPolicy(name="bench-limited", rpm=10**6, tpm=10**9, monthly_tokens=10**12)
        plain, limited = _event(None), _event(policy)
        for event in (plain, limited):  # the table, the clients, the key's item exist before timing
            assert handler(event, LocalContext())["statusCode"] == 200
        store = job_store(config.settings())
        sent: list[str] = []

        def count(event_name: str, **_: Any) -> None:
            sent.append(event_name.split(".", 2)[2])

        store.db.meta.events.register("before-send", count)
        store._one_shot_client().meta.events.register("before-send", count)
        trips = []
        for event in (plain, limited):
            sent.clear()
            assert handler(event, LocalContext())["statusCode"] == 200
            trips.append(sorted(sent))
        without: list[float] = []
        with_limits: list[float] = []
        for _ in range(REQUESTS):
            for event, into in ((plain, without), (limited, with_limits)):
                began = time.perf_counter()
                assert handler(event, LocalContext())["statusCode"] == 200
                into.append(time.perf_counter() - began)
        return (statistics.median(without), _p90(without), statistics.median(with_limits), _p90(with_limits),
                trips[0], trips[1])
    finally:
        server.shutdown()
        emulator.shutdown()


def contention() -> tuple[float, float, int, int]:
    """THREADS threads sending one key's requests for REQUESTS in all, the store answering conflicts: (admissions per
    second, median latency, requests that failed, conflicts answered)."""
    from local.context import LocalContext
    from local.functions import load
    from shared.policy import KeyPolicy

    emulator, server, _ = _setup(write_conflicts=True)
    try:
        handler = load("completion")
        policy = KeyPolicy(name=f"bench-hot-{uuid.uuid4().hex[:6]}", rpm=10**6, monthly_tokens=10**12)
        event = _event(policy)
        assert handler(event, LocalContext())["statusCode"] == 200
        latencies: list[float] = []
        failed = [0]
        lock = threading.Lock()
        each = REQUESTS // THREADS
        start = threading.Barrier(THREADS)

        def worker() -> None:
            start.wait()
            for _ in range(each):
                began = time.perf_counter()
                status = handler(event, LocalContext())["statusCode"]
                with lock:
                    latencies.append(time.perf_counter() - began)
                    failed[0] += status != 200

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        conflicts = int(getattr(server, "conflicts", getattr(getattr(server, "app", None), "conflicts", -1)) or 0)
        return len(latencies) / elapsed, statistics.median(latencies), failed[0], conflicts
    finally:
        server.shutdown()
        emulator.shutdown()


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


def table() -> str:
    plain, plain90, limited, limited90, trips_plain, trips_limited = latency()
    rate, median, failed, _ = contention()
    return "\n".join([
        f"\nBudgets and per-key limits ({REQUESTS} interleaved native completions to the emulator, local store)\n",
        "| request | median | p90 | Document API requests |",
        "|---|---|---|---|",
        f"| key without limits (the usage ledger only) | {plain * 1000:.3f} ms | {plain90 * 1000:.3f} ms | "
        f"{len(trips_plain)} ({', '.join(trips_plain)}) |",
        f"| key with rpm, tpm and monthly_tokens | {limited * 1000:.3f} ms | {limited90 * 1000:.3f} ms | "
        f"{len(trips_limited)} ({', '.join(trips_limited)}) |",
        f"| **added by the limits** | **{(limited - plain) * 1000:.3f} ms** | "
        f"**{(limited90 - plain90) * 1000:.3f} ms** | **{len(trips_limited) - len(trips_plain)}** |",
        f"| one key, {THREADS} threads, the store answering write conflicts | {median * 1000:.3f} ms | | "
        f"{rate:.0f} requests/s, {failed} failed |",
    ])


if __name__ == "__main__":
    print(table())
