"""`make bench`: cold-import and per-request overhead measurements, printed as a Markdown table.

1. Cold import of each handler module in a fresh interpreter (median of RUNS), beside the import of the
   official SDK (`yandex_cloud_ml_sdk`, installed into the throwaway .bench-venv), as a ratio; plus the
   handler's whole cold invocation (import + first request to the emulator), which is what a caller waits.
2. Handler overhead per warm request against the emulator: median time of handler(event, context)
   minus the median of a bare `requests.post` of the same body over a keep-alive Session.
Targets (issue #2): handler import <= 0.4x the SDK's; overhead <= 1 ms median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import openai_batch

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
SDK_PIN = "yandex-cloud-ml-sdk==0.19.1"
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "400"))
FUNCTIONS = ("completion", "embedding", "classification")


def _seconds(python: str, code: str, env: dict[str, str] | None = None) -> float:
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def _interleaved_medians(jobs: dict[str, tuple[str, str, dict[str, str] | None]]) -> dict[str, float]:
    """Run every job once per round, RUNS rounds, so machine noise hits all of them alike; medians."""
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(RUNS):
        for name, (python, code, env) in jobs.items():
            samples[name].append(_seconds(python, code, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def _import_code(function: str, first_request: str | None = None) -> str:
    lines = [
        "import sys, time",
        f"sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT)!r}]",
        "t = time.perf_counter()",
        "import handler",
    ]
    if first_request:
        lines += [
            "import json",
            "from local.context import LocalContext",
            f"event = json.load(open({first_request!r}))",
            "r = handler.handler(event, LocalContext())",
            "assert r['statusCode'] == 200, r",
        ]
    lines.append("print(time.perf_counter() - t)")
    return "; ".join(lines) if not first_request else "\n".join(lines)


def sdk_python() -> str:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import yandex_cloud_ml_sdk"], capture_output=True)
    if probe.returncode != 0:
        print(f"installing {SDK_PIN} into {BENCH_VENV.name} (once) ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK_PIN],
                       check=True)
    return str(python)


def cold_starts(emulator_url: str, sdk: str) -> tuple[float, list[tuple[str, float, float]]]:
    env = {**os.environ, "FM_BASE_URL": emulator_url, "YC_API_KEY": "bench-key", "YC_FOLDER_ID": "b1gbench",
           "LOG_LEVEL": "WARN", "FM_EMBEDDING_RPS": "1000", "FM_CLASSIFICATION_RPS": "1000"}
    samples = {"completion": "http-v01-completion", "embedding": "http-v01-embedding",
               "classification": "http-v01-classification-fewshot"}
    jobs: dict[str, tuple[str, str, dict[str, str] | None]] = {
        "sdk": (sdk, "import time; t = time.perf_counter(); import yandex_cloud_ml_sdk; print(time.perf_counter() - t)",
                None)}
    for function in FUNCTIONS:
        event = str(ROOT / "events" / f"{samples[function]}.json")
        jobs[f"{function}:import"] = (sys.executable, _import_code(function), env)
        jobs[f"{function}:first"] = (sys.executable, _import_code(function, event), env)
    medians = _interleaved_medians(jobs)
    return medians["sdk"], [(f, medians[f"{f}:import"], medians[f"{f}:first"]) for f in FUNCTIONS]


def overhead(emulator_url: str) -> tuple[float, float, float, float]:
    import requests

    os.environ.update(FM_BASE_URL=emulator_url, YC_API_KEY="bench-key", YC_FOLDER_ID="b1gbench", LOG_LEVEL="WARN")
    sys.path.insert(0, str(ROOT))
    from local.context import LocalContext
    from local.functions import load

    handler = load("completion")
    event = json.loads((ROOT / "events" / "http-v01-completion.json").read_text())
    body = json.loads(event["body"])
    body["modelUri"] = "gpt://b1gbench/yandexgpt-lite/latest"
    event["body"] = json.dumps(body)
    data = json.dumps(body).encode()
    session = requests.Session()
    headers = {"Authorization": "Api-Key bench-key", "Content-Type": "application/json"}
    url = f"{emulator_url}/foundationModels/v1/completion"
    bare, ours = [], []
    for _ in range(20):  # warm both paths (connections, imports, caches)
        session.post(url, data=data, headers=headers, timeout=10).json()
        handler(event, LocalContext())
    for _ in range(REQUESTS):  # interleaved, so drift in the machine hits both equally
        t = time.perf_counter()
        session.post(url, data=data, headers=headers, timeout=10).json()
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = handler(event, LocalContext())
        ours.append(time.perf_counter() - t)
        assert result["statusCode"] == 200
    q = statistics.quantiles
    return statistics.median(bare), statistics.median(ours), q(bare, n=10)[-1], q(ours, n=10)[-1]


def main() -> int:
    emulator = subprocess.Popen([sys.executable, "-m", "local.emulator", "--port", "0"], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        sdk, rows = cold_starts(url, sdk_python())
        bare, ours, bare_p90, ours_p90 = overhead(url)
    finally:
        emulator.terminate()
        emulator.wait()
    print(f"\nCold start (median of {RUNS} fresh processes, Python {sys.version.split()[0]})\n")
    print("| handler | import | import ÷ SDK import | import + first request |")
    print("|---|---|---|---|")
    for function, imported, first in rows:
        print(f"| {function} | {imported * 1000:.1f} ms | {imported / sdk:.2f}× | {first * 1000:.1f} ms |")
    print(f"| `import yandex_cloud_ml_sdk` ({SDK_PIN.split('==')[1]}) | {sdk * 1000:.1f} ms | 1.00× | |")
    print(f"\nWarm request overhead (completion, {REQUESTS} interleaved requests to the emulator)\n")
    print("| path | median | p90 |")
    print("|---|---|---|")
    print(f"| bare `requests.post` | {bare * 1000:.3f} ms | {bare_p90 * 1000:.3f} ms |")
    print(f"| handler(event, context) | {ours * 1000:.3f} ms | {ours_p90 * 1000:.3f} ms |")
    print(f"| **overhead** | **{(ours - bare) * 1000:.3f} ms** | |")
    worst = max(imported for _, imported, _ in rows) / sdk
    ok = worst <= 0.4 and (ours - bare) <= 0.001
    print(f"\ntargets: import <= 0.4x SDK ({worst:.2f}x), overhead <= 1 ms ({(ours - bare) * 1000:.3f} ms): "
          f"{'met' if ok else 'NOT met'}")
    print(openai_batch.table())  # the OpenAI batch door beside the native batch (its own process and stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
