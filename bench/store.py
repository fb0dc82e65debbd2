"""`make bench`, the job store: submissions per second the local store sustains with 8 concurrent
submitters, the index of unsettled operations in one item ("before") and spread over
`ACTIVE_SHARDS` items ("after"): the same code, JobStore(active_shards=1) against the default.

The local Document API here is moto server behind local.aws.ConflictingWrites, which answers a write to
an item that another write is still applying with TransactionConflictException, as the cloud's optimistic
concurrency does; the store retries those with jittered backoff (shared/jobs/store.py). A submission is
what the API does (payload upload, the operation record, its index entry), and each submitter also
finishes what it submitted (the index entry removed), so the index stays small as in a steady state.
Printed as a Markdown table; BENCH_STORE_S sets the seconds per measurement (default 5), and the two
configurations alternate over BENCH_STORE_ROUNDS rounds (default 2).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMITTERS = 8
SECONDS = float(os.environ.get("BENCH_STORE_S", "5"))
ROUNDS = int(os.environ.get("BENCH_STORE_ROUNDS", "2"))


class Run:
    def __init__(self, rate: float, latencies: list[float], conflicts: int, failed: int) -> None:
        self.rate, self.latencies, self.conflicts, self.failed = rate, latencies, conflicts, failed


def measure(url: str, conflicts: object, shards: int, tag: str) -> Run:
    """One configuration for SECONDS: submissions per second, each submission's latency, write conflicts
    the store was answered, and submissions that failed (a conflict outlasted the store's retries)."""
    import requests

    from local.aws import provision
    from shared.config import Settings
    from shared.jobs.store import JobStore, StoreError

    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    os.environ.update(provision(url).env())
    stores = [JobStore(Settings.from_env(), active_shards=shards) for _ in range(SUBMITTERS)]
    counts, failures = [0] * SUBMITTERS, [0] * SUBMITTERS
    latencies: list[list[float]] = [[] for _ in range(SUBMITTERS)]
    start = threading.Barrier(SUBMITTERS + 1)
    stop = threading.Event()

    def submitter(i: int) -> None:
        store, n = stores[i], 0
        start.wait()
        while not stop.is_set():
            op_id = f"fmo{tag}{i:02d}{n:07d}"
            n += 1
            try:
                began = time.perf_counter()
                store.create(op_id, "completion", "bench", "bench", [b'{"messages": []}'])
                latencies[i].append(time.perf_counter() - began)
                store.finish(op_id, None, 0, {"code": 1, "message": "bench", "details": []})
                counts[i] += 1
            except StoreError:
                failures[i] += 1

    threads = [threading.Thread(target=submitter, args=(i,), daemon=True) for i in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    before = conflicts.conflicts  # type: ignore[attr-defined]
    start.wait()
    began = time.perf_counter()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    left = len(stores[0].active_ids())  # only a submission whose finish failed may have left its entry
    assert left <= sum(failures), f"{left} index entries left by {sum(failures)} failed submissions"
    answered = conflicts.conflicts - before  # type: ignore[attr-defined]
    return Run(sum(counts) / elapsed, [x for per in latencies for x in per], answered, sum(failures))


def main() -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import logging

    from local.aws import start_moto
    from shared.jobs.store import ACTIVE_SHARDS

    logging.getLogger("fm").setLevel(logging.ERROR)  # the store warns on every retry given up
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    server, url = start_moto(write_conflicts=True)
    configurations = {"one index item (before)": 1, f"{ACTIVE_SHARDS} index shards (after)": ACTIVE_SHARDS}
    results: dict[str, list[Run]] = {name: [] for name in configurations}
    try:
        for round_ in range(ROUNDS):
            for number, (name, shards) in enumerate(configurations.items()):
                results[name].append(measure(url, server.app, shards, f"{round_}{number}"))
    finally:
        server.shutdown()
    print(f"\nJob store: {SUBMITTERS} concurrent submitters against the local store (moto with write conflicts), "
          f"{ROUNDS} alternating runs of {SECONDS:g} s each\n")
    print("| active index | submissions/s (median) | runs | submission p50 | p99 | write conflicts | "
          "submissions failed |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rates = [run.rate for run in runs]
        latencies = sorted(x for run in runs for x in run.latencies)
        p50, p99 = (statistics.quantiles(latencies, n=100)[q] * 1000 for q in (49, 98))
        print(f"| {name} | {statistics.median(rates):.0f} | {', '.join(f'{r:.0f}' for r in rates)} | {p50:.0f} ms | "
              f"{p99:.0f} ms | {sum(run.conflicts for run in runs)} | {sum(run.failed for run in runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
