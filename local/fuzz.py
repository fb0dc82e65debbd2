"""`make fuzz`: schemathesis against the whole local stack, with the spec `deploy.openapi` generates.

Starts the Foundation Models emulator, moto server (queues, jobs table, results bucket) and the local
gateway on free loopback ports in this process, with the authorizer in front (one caller key, sent as
`Authorization: Bearer ...`), writes the spec for that gateway (no `x-yc-*` extensions, so no
Terraform placeholders) to a temporary file, and runs `schemathesis run` on it with every check.
Prints what schemathesis prints, then one line: cases, failures, seconds. Exit status: schemathesis's.

    python -m local.fuzz [--max-examples N] [--seed S] [--workers W] [--exclude-checks ignored_auth]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLER_KEY = "fmk_fuzz-caller-key-0123456789abcdef"
PHASES = "examples,coverage,fuzzing,stateful"


@dataclass
class FuzzResult:
    returncode: int
    cases: int
    failures: int
    seconds: float
    output: str


@contextmanager
def local_stack() -> Iterator[str]:
    """The whole API on loopback (emulator, moto, gateway with the authorizer), in this process; its URL."""
    import requests

    from local import aws, emulator, gateway

    fm = emulator.start()
    moto, moto_url = aws.start_moto()
    # moto's backends are per process, shared with any other moto server here (a test session's): start clean
    requests.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()
    resources = aws.provision(moto_url)
    saved = dict(os.environ)
    os.environ.update(resources.env())
    os.environ.update({
        "FM_BASE_URL": fm.url, "FM_OPERATION_URL": fm.url, "YC_API_KEY": "local-emulator-key",
        "YC_FOLDER_ID": "b1glocalfolder", "FM_EMBEDDING_RPS": "10000", "FM_CLASSIFICATION_RPS": "10000",
        "FM_RETRY_BASE_S": "0.01", "LOG_LEVEL": "ERROR",
        "CALLER_KEY_SHA256": f"fuzz:{hashlib.sha256(CALLER_KEY.encode()).hexdigest()}",
        "FM_ADMIN_CALLER": "fuzz",  # so the admin API (/admin/keys) is fuzzed too, not only its 404
    })
    server = gateway.start(authorize=True)
    try:
        yield server.url
    finally:
        server.shutdown()
        moto.shutdown()
        fm.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def run(base_url: str, max_examples: int, seed: int | None = None, workers: int = 1,
        exclude_checks: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> FuzzResult:
    """Run schemathesis (as a subprocess: it talks to the stack over HTTP) on the spec for base_url."""
    from deploy import openapi

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        spec_path = Path(tmp) / "openapi.json"
        spec_path.write_text(json.dumps(openapi.local(base_url)), encoding="utf-8")
        command = [sys.executable, "-m", "schemathesis.cli", "run", str(spec_path), "--url", base_url,
                   "--checks", "all", "--phases", PHASES, "--max-examples", str(max_examples),
                   "--workers", str(workers), "--header", f"Authorization: Bearer {CALLER_KEY}",
                   "--request-timeout", "30", "--no-color", "--suppress-health-check", "all",
                   "--generation-database", "none", *extra]
        if exclude_checks:
            command += ["--exclude-checks", ",".join(exclude_checks)]
        if seed is not None:
            command += ["--seed", str(seed)]
        started = time.monotonic()
        env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": "local.fuzz_hooks",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp)  # its caches go with tmp
        seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    return FuzzResult(done.returncode, _count(output, r"(\d[\d,]*) generated"), _failures(output), seconds, output)


def _count(output: str, pattern: str) -> int:
    found = re.findall(pattern, output)
    return int(found[-1].replace(",", "")) if found else 0


def _failures(output: str) -> int:
    """Failures and errors, from the closing line ("=== 10 failures, 1 error, 1 warning in 4.92s ===")."""
    closing = [line for line in output.splitlines() if line.startswith("=") and " in " in line]
    counts = re.findall(r"(\d+) (?:failures?|errors?)\b", closing[-1]) if closing else []
    return sum(int(count) for count in counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100, help="cases per operation and phase (default 100)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="1: Python 3.11's ast.parse is not thread-safe, which hypothesis uses")
    parser.add_argument("--exclude-checks", default="", help="comma-separated checks to skip")
    args, extra = parser.parse_known_args()
    excluded = tuple(c for c in args.exclude_checks.split(",") if c)
    with local_stack() as url:
        result = run(url, args.max_examples, args.seed, args.workers, excluded, tuple(extra))
    print(result.output)
    print(f"fuzz: {result.cases} cases, {result.failures} failures, {result.seconds:.1f} s "
          f"(schemathesis exit {result.returncode})", flush=True)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
