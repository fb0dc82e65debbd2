"""`make bench`, the usage ledger under contention: one caller's synchronous requests from THREADS threads at once,
the local Document API answering write conflicts as the cloud's optimistic concurrency does (local.aws
ConflictingWrites). Every request is one log line; what this measures is how many of them the store's totals
count (each call is one TransactWriteItems; a conflict is tried again, see JobStore.add_usage)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import UTC, datetime

from bench.limits import _event, _setup

THREADS = 8
REQUESTS = int(os.environ.get("BENCH_LEDGER_REQUESTS", "96"))


def measure() -> tuple[int, int, float]:
    """(requests answered 200, requests the store's totals count, median latency)."""
    from local.context import LocalContext
    from local.functions import load
    from shared.config import Settings
    from shared.jobs import usage
    from shared.jobs.store import JobStore

    emulator, server, _ = _setup(write_conflicts=True)
    try:
        handler = load("completion")
        event = _event(None)
        ok, latencies, lock = [0], [], threading.Lock()
        start = threading.Barrier(THREADS)

        def worker() -> None:
            start.wait()
            for _ in range(REQUESTS // THREADS):
                began = time.perf_counter()
                status = handler(event, LocalContext())["statusCode"]
                with lock:
                    latencies.append(time.perf_counter() - began)
                    ok[0] += status == 200

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        totals = usage.totals(JobStore(Settings.from_env()), "bench", datetime.now(UTC).strftime("%Y%m%d"))
        counted = sum(c["requests"] for modes in totals.values() for c in modes.values())
        return ok[0], counted, statistics.median(latencies)
    finally:
        server.shutdown()
        emulator.shutdown()


def table() -> str:
    ok, counted, median = measure()
    return (f"\nThe usage ledger under contention ({THREADS} threads, one caller, {REQUESTS} synchronous requests, the "
            "local store answering write conflicts)\n\n| answered | counted in the totals | median latency |\n"
            f"|---|---|---|\n| {ok} | {counted} | {median * 1000:.1f} ms |")


if __name__ == "__main__":
    print(table())
