"""`make bench`, caller keys stored as data: what the authorizer pays to judge a key.

Cold: a fresh process imports the authorizer and judges one key: a configured key (CALLER_KEY_SHA256, no
store), and a stored key (one GetItem on the local Document API, moto server, with the boto3 client built
on first use). Warm: one verdict on a warm instance: a configured key, a stored key remembered by the
instance (FM_KEY_CACHE_S), and a stored key looked up (a cache miss: one consistent GetItem). In the cloud
API Gateway also caches a verdict (authorizer_cache_seconds), so most requests pay none of this.
Printed as a Markdown table; medians of BENCH_KEYS_RUNS fresh processes (default 7) and 300 warm verdicts.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_KEYS_RUNS", "7"))
CONFIGURED = "fmk_bench-configured-key-0123456789abcdef"

_COLD = """
import time
started = time.perf_counter()
from local.functions import load
verdict = load("authorizer")({{"headers": {{"Authorization": "Bearer {key}"}}}}, None)
assert verdict["isAuthorized"], verdict
print(time.perf_counter() - started)
"""


def _stored_key(env: dict[str, str]) -> str:
    """A key made through the store the admin API writes (shared/jobs/keys.py's records)."""
    os.environ.update(env)
    from shared.config import Settings
    from shared.jobs import keys
    from shared.jobs.store import JobStore

    store = JobStore(Settings.from_env())
    secret = keys.new_secret()
    digest = keys.digest_of(secret)
    record = {"name": "bench", "digest": digest, "created_at": int(time.time()), "rpm": 600}
    assert store.transact([{"Put": {"TableName": store.table, "Item": keys._item(keys.digest_key(digest),
                                                                                       keys._lookup_fields(record))}}])
    return secret


def main() -> int:
    import requests

    from local import aws

    moto, url = aws.start_moto(0)
    try:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        env = {**aws.provision(url).env(), "CALLER_KEY_SHA256": f"boot:{hashlib.sha256(CONFIGURED.encode()).hexdigest()}",
               "LOG_LEVEL": "ERROR"}
        stored = _stored_key(env)
        cold: dict[str, list[float]] = {"configured": [], "stored": []}
        for _ in range(RUNS):
            for kind, key in (("configured", CONFIGURED), ("stored", stored)):
                out = subprocess.run([sys.executable, "-c", _COLD.format(key=key)], cwd=ROOT, capture_output=True,
                                     text=True, check=True, env={**os.environ, **env}).stdout
                cold[kind].append(float(out.strip().splitlines()[-1]))
        warm = _warm(env, stored)
    finally:
        moto.shutdown()
    print(f"\nThe authorizer: judging a key (cold: median of {RUNS} fresh processes; warm: median of 300 verdicts; "
          "store: moto server on loopback)\n")
    print("| verdict | cold (import + first verdict) | warm |")
    print("|---|---|---|")
    print(f"| configured key (no store) | {statistics.median(cold['configured']) * 1000:.1f} ms | "
          f"{warm['configured'] * 1000:.3f} ms |")
    print(f"| stored key, remembered by the instance | | {warm['cached'] * 1000:.3f} ms |")
    print(f"| stored key, looked up (one GetItem) | {statistics.median(cold['stored']) * 1000:.1f} ms | "
          f"{warm['lookup'] * 1000:.3f} ms |")
    return 0


def _warm(env: dict[str, str], stored: str) -> dict[str, float]:
    os.environ.update(env)
    from local.functions import load

    authorizer = load("authorizer")

    def verdicts(key: str, cache_s: str) -> float:
        os.environ["FM_KEY_CACHE_S"] = cache_s
        event = {"headers": {"Authorization": f"Bearer {key}"}}
        authorizer(event, None)
        times = []
        for _ in range(300):
            started = time.perf_counter()
            assert authorizer(event, None)["isAuthorized"]
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    return {"configured": verdicts(CONFIGURED, "10"), "cached": verdicts(stored, "10"),
            "lookup": verdicts(stored, "0")}


if __name__ == "__main__":
    raise SystemExit(main())
