"""`make bench`: cold-import and per-request overhead measurements, printed as Markdown tables.

1. Cold import of each handler module in a fresh interpreter (median of RUNS), beside the import of the
   official SDK (`yandex_ai_studio_sdk` 0.22.1, the current one, and `yandex_cloud_ml_sdk` 0.19.1, both
   installed into the throwaway .bench-venv), as a ratio to the current SDK; plus the handler's whole cold
   invocation (import + first request to the emulator), which is what a caller waits.
2. Handler overhead per warm request against the emulator: median time of handler(event, context)
   minus the median of a bare `requests.post` of the same body over a keep-alive Session; for
   /v1/chat/completions, minus a bare post of the native body it translates to; the same for /v1/responses
   (store: false), plus what store: true adds on the local store and the store round trips of continuing
   a conversation at turns 2, 10 and 50 (bench/responses.py).
3. LiteLLM, the gateway users would otherwise put in front of an OpenAI-compatible upstream (in
   .bench-venv too, never in requirements): `import litellm`, and `litellm.completion` ("openai/"
   provider) to the emulator's /v1/chat/completions minus a bare post of the same body there.
Targets (issue #8): handler import <= 0.35x the current SDK's; overhead <= 1 ms median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import openai_batch, responses

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
# module -> pin, all installed (in one resolve) into .bench-venv; the first is the SDK the ratios are to
SDKS = {"yandex_ai_studio_sdk": "yandex-ai-studio-sdk==0.22.1", "yandex_cloud_ml_sdk": "yandex-cloud-ml-sdk==0.19.1"}
LITELLM_PIN = "litellm==1.110.2"  # a fixed release (1.82.7, 1.82.8 and 1.107.0 were compromised and pulled)
THIRD_PARTY = {**SDKS, "litellm": LITELLM_PIN}
STUDIO_SDK_PIN = SDKS["yandex_ai_studio_sdk"]
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "400"))
FUNCTIONS = ("completion", "embedding", "classification")


def _seconds(python: str, code: str, env: dict[str, str] | None = None) -> float:
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def _interleaved_medians(jobs: dict[str, tuple[str, str, dict[str, str] | None]]) -> dict[str, float]:
    """Run every job once per round, RUNS rounds, so machine noise hits all of them alike; medians. The order
    is shuffled each round (fixed seed), so no job always runs right after the same one (LiteLLM's import
    takes seconds and leaves the machine busy)."""
    import random

    samples: dict[str, list[float]] = {name: [] for name in jobs}
    order = list(jobs)
    shuffle = random.Random(8).shuffle
    for _ in range(RUNS):
        shuffle(order)
        for name in order:
            python, code, env = jobs[name]
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


def bench_python() -> str:
    """.bench-venv's python, with every THIRD_PARTY pin installed (missing ones in one pip resolve)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    code = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
    missing = [pin for pin in THIRD_PARTY.values()
               if subprocess.run([str(python), "-c", code, pin.split("==")[0]], capture_output=True,
                                 text=True).stdout.strip() != pin.split("==")[1]]
    if missing:
        print(f"installing {', '.join(missing)} into {BENCH_VENV.name} (once) ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *THIRD_PARTY.values()], check=True)
    return str(python)


def _third_party_imports(python: str) -> dict[str, tuple[str, str, dict[str, str] | None]]:
    """Cold-import jobs for the SDKs and LiteLLM, run in .bench-venv (LiteLLM told not to fetch its cost map)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return {module: (python, f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)",
                     env) for module in THIRD_PARTY}


def cold_starts(emulator_url: str, bench: str) -> tuple[dict[str, float], list[tuple[str, float, float]]]:
    env = {**os.environ, "FM_BASE_URL": emulator_url, "YC_API_KEY": "bench-key", "YC_FOLDER_ID": "b1gbench",
           "LOG_LEVEL": "WARN", "FM_EMBEDDING_RPS": "1000", "FM_CLASSIFICATION_RPS": "1000"}
    samples = {"completion": "http-v01-completion", "embedding": "http-v01-embedding",
               "classification": "http-v01-classification-fewshot"}
    jobs = _third_party_imports(bench)
    for function in FUNCTIONS:
        event = str(ROOT / "events" / f"{samples[function]}.json")
        jobs[f"{function}:import"] = (sys.executable, _import_code(function), env)
        jobs[f"{function}:first"] = (sys.executable, _import_code(function, event), env)
    jobs.update(_chat_first_request(env))
    medians = _interleaved_medians(jobs)
    rows = [(f, medians[f"{f}:import"], medians[f"{f}:first"]) for f in FUNCTIONS]
    rows.append(("completion, first request on /v1/chat/completions", medians["completion:import"],
                 medians["chat:first"]))
    return {module: medians[module] for module in THIRD_PARTY}, rows


def _chat_first_request(env: dict[str, str]) -> dict[str, tuple[str, str, dict[str, str] | None]]:
    """The completion handler's cold invocation when its first request is an OpenAI chat request (it also
    imports and builds the OpenAI request model and translation)."""
    event = str(ROOT / "events" / "http-v01-chat-completions.json")
    return {"chat:first": (sys.executable, _import_code("completion", event), env)}


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


def openai_embeddings(emulator_url: str, sdk: str) -> list[str]:
    """POST /v1/embeddings (one string, base64: the openai client's default) against the emulator.

    Cold: the embedding handler's import, and its import + first /v1 request, beside `import
    yandex_ai_studio_sdk` (interleaved, median of RUNS). Warm: handler(event) minus a bare `requests.post`
    of the native textEmbedding body that the handler sends upstream, interleaved over REQUESTS.
    Targets (issue #8): overhead <= 1 ms median; import <= 0.35x the SDK's. Returns the Markdown lines.
    """
    import requests

    sample = ROOT / "events" / "http-v01-openai-embeddings.json"  # one string, as the openai client sends it
    event = json.loads(sample.read_text())
    body = json.loads(event["body"])
    env = {**os.environ, "FM_BASE_URL": emulator_url, "YC_API_KEY": "bench-key", "YC_FOLDER_ID": "b1gbench",
           "LOG_LEVEL": "WARN", "FM_EMBEDDING_RPS": "1000"}
    cold = _interleaved_medians({
        "sdk": (sdk, "import time; t = time.perf_counter(); import yandex_ai_studio_sdk; print(time.perf_counter() - t)",
                None),
        "import": (sys.executable, _import_code("embedding"), env),
        "first": (sys.executable, _import_code("embedding", str(sample)), env)})

    os.environ.update(FM_BASE_URL=emulator_url, YC_API_KEY="bench-key", YC_FOLDER_ID="b1gbench", LOG_LEVEL="WARN",
                      FM_EMBEDDING_RPS="10000")  # the highest allowed; a call takes longer than 0.1 ms
    sys.path.insert(0, str(ROOT))
    from local.context import LocalContext
    from local.functions import load
    from shared.config import reset_settings

    reset_settings()  # the environment above, even if an earlier measurement read the settings
    handler = load("embedding")
    data = json.dumps({"modelUri": body["model"], "text": body["input"]}).encode()  # what the handler sends
    session = requests.Session()
    headers = {"Authorization": "Api-Key bench-key", "Content-Type": "application/json"}
    url = f"{emulator_url}/foundationModels/v1/textEmbedding"
    bare, ours = [], []
    for _ in range(20):  # warm both paths (connections, imports, the pydantic validators)
        session.post(url, data=data, headers=headers, timeout=10).json()
        assert handler(event, LocalContext())["statusCode"] == 200
    for _ in range(REQUESTS):  # interleaved, so drift in the machine hits both equally
        t = time.perf_counter()
        session.post(url, data=data, headers=headers, timeout=10).json()
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = handler(event, LocalContext())
        ours.append(time.perf_counter() - t)
        assert result["statusCode"] == 200
    b, o = statistics.median(bare), statistics.median(ours)
    b90, o90 = statistics.quantiles(bare, n=10)[-1], statistics.quantiles(ours, n=10)[-1]
    ratio = cold["import"] / cold["sdk"]
    ok = ratio <= 0.35 and (o - b) <= 0.001
    return [
        f"\nOpenAI embeddings: POST /v1/embeddings, one string, base64 ({REQUESTS} interleaved requests; "
        f"cold: median of {RUNS} fresh processes)\n",
        "| path | median | p90 |",
        "|---|---|---|",
        f"| bare `requests.post` of the native textEmbedding | {b * 1000:.3f} ms | {b90 * 1000:.3f} ms |",
        f"| embedding handler(event, context) on /v1/embeddings | {o * 1000:.3f} ms | {o90 * 1000:.3f} ms |",
        f"| **overhead** | **{(o - b) * 1000:.3f} ms** | |",
        "",
        "| cold | time | ÷ SDK import |",
        "|---|---|---|",
        f"| embedding handler import | {cold['import'] * 1000:.1f} ms | {ratio:.2f}× |",
        f"| import + first /v1/embeddings request | {cold['first'] * 1000:.1f} ms | {cold['first'] / cold['sdk']:.2f}× |",
        f"| `import yandex_ai_studio_sdk` ({STUDIO_SDK_PIN.split('==')[1]}) | {cold['sdk'] * 1000:.1f} ms | 1.00× |",
        f"\ntargets: overhead <= 1 ms ({(o - b) * 1000:.3f} ms), import <= 0.35x SDK ({ratio:.2f}x): "
        f"{'met' if ok else 'NOT met'}",
    ]


def _interleaved(pairs: list[tuple[Any, Any]], warm: int = 20) -> tuple[list[float], list[float]]:
    """Time each (a, b) pair of calls REQUESTS times, interleaved so machine drift hits both alike."""
    a_times, b_times = [], []
    for _ in range(warm):
        for a, b in pairs:
            a()
            b()
    for _ in range(REQUESTS):
        for a, b in pairs:
            t = time.perf_counter()
            a()
            a_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            b()
            b_times.append(time.perf_counter() - t)
    return a_times, b_times


def chat_overhead(emulator_url: str) -> tuple[float, float, float, float]:
    """/v1/chat/completions through handler(event, context) against a bare post of the native body it
    becomes, to the same emulator: (bare median, ours median, bare p90, ours p90)."""
    import requests

    os.environ.update(FM_BASE_URL=emulator_url, YC_API_KEY="bench-key", YC_FOLDER_ID="b1gbench", LOG_LEVEL="WARN")
    sys.path.insert(0, str(ROOT))
    from local.context import LocalContext
    from local.functions import load
    from shared.openai.chat import ChatCompletionRequest, native_body

    handler = load("completion")
    event = json.loads((ROOT / "events" / "http-v01-chat-completions.json").read_text())
    request = ChatCompletionRequest.model_validate(json.loads(event["body"]))
    data = json.dumps(native_body(request, "gpt://b1gbench/yandexgpt-lite/latest")).encode()
    session = requests.Session()
    headers = {"Authorization": "Api-Key bench-key", "Content-Type": "application/json"}
    url = f"{emulator_url}/foundationModels/v1/completion"

    def bare() -> None:
        session.post(url, data=data, headers=headers, timeout=10).json()

    def ours() -> None:
        assert handler(event, LocalContext())["statusCode"] == 200

    bare_times, our_times = _interleaved([(bare, ours)])
    q = statistics.quantiles
    return (statistics.median(bare_times), statistics.median(our_times), q(bare_times, n=10)[-1],
            q(our_times, n=10)[-1])


LITELLM_CODE = """
import json, statistics, sys, time
import requests, litellm
from bench.run import _interleaved
url, requests_count = sys.argv[1], sys.argv[2]
litellm.suppress_debug_info = True
model, messages = "gpt://b1gbench/yandexgpt-lite/latest", [{"role": "user", "content": "Name three rivers in Russia."}]
body = json.dumps({"model": model, "messages": messages}).encode()
session = requests.Session()
headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
def bare():
    session.post(url + "/v1/chat/completions", data=body, headers=headers, timeout=10).json()
def lite():
    answer = litellm.completion(model="openai/" + model, messages=messages, api_base=url + "/v1", api_key="bench-key")
    assert answer.choices[0].message.content
bare_times, lite_times = _interleaved([(bare, lite)])
print(json.dumps([statistics.median(bare_times), statistics.median(lite_times)]))
"""


def litellm_overhead(emulator_url: str, bench: str) -> tuple[float, float]:
    """litellm.completion to the emulator's /v1/chat/completions against a bare post of the same body there
    (run in .bench-venv, with this repository on the path for _interleaved)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT),
           "BENCH_REQUESTS": str(REQUESTS)}
    out = subprocess.run([bench, "-c", LITELLM_CODE, emulator_url, str(REQUESTS)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"the LiteLLM run failed:\n{out.stderr[-2000:]}")
    bare, lite = json.loads(out.stdout.strip().splitlines()[-1])
    return bare, lite


def main() -> int:
    emulator = subprocess.Popen([sys.executable, "-m", "local.emulator", "--port", "0"], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().strip().rsplit(" ", 1)[-1]
        bench = bench_python()
        imports, rows = cold_starts(url, bench)
        bare, ours, bare_p90, ours_p90 = overhead(url)
        chat = chat_overhead(url)
        responses_rows, responses_overhead = responses.rows(url, _interleaved)
        lite_bare, lite = litellm_overhead(url, bench)
        embeddings_v1 = openai_embeddings(url, bench)
    finally:
        emulator.terminate()
        emulator.wait()
    sdk = imports[next(iter(SDKS))]
    print(f"\nCold start (median of {RUNS} fresh processes, interleaved, Python {sys.version.split()[0]})\n")
    print("| handler | import | import ÷ SDK import | import + first request |")
    print("|---|---|---|---|")
    for function, imported, first in rows:
        print(f"| {function} | {imported * 1000:.1f} ms | {imported / sdk:.2f}× | {first * 1000:.1f} ms |")
    for module, pin in THIRD_PARTY.items():
        print(f"| `import {module}` ({pin.split('==')[1]}, .bench-venv) | {imports[module] * 1000:.1f} ms | "
              f"{imports[module] / sdk:.2f}× | |")
    print(f"\nWarm request overhead ({REQUESTS} interleaved requests each to the emulator)\n")
    print("| path | median | p90 |")
    print("|---|---|---|")
    print(f"| bare `requests.post` (native completion) | {bare * 1000:.3f} ms | {bare_p90 * 1000:.3f} ms |")
    print(f"| handler(event, context) | {ours * 1000:.3f} ms | {ours_p90 * 1000:.3f} ms |")
    print(f"| **overhead** | **{(ours - bare) * 1000:.3f} ms** | |")
    print(f"| bare `requests.post` (the native body a chat request becomes) | {chat[0] * 1000:.3f} ms | "
          f"{chat[2] * 1000:.3f} ms |")
    print(f"| handler(event, context) on /v1/chat/completions | {chat[1] * 1000:.3f} ms | {chat[3] * 1000:.3f} ms |")
    print(f"| **overhead of /v1/chat/completions** | **{(chat[1] - chat[0]) * 1000:.3f} ms** | |")
    print("\n".join(responses_rows))
    print(f"| bare `requests.post` to the emulator's /v1/chat/completions | {lite_bare * 1000:.3f} ms | |")
    print(f"| `litellm.completion` (openai/ provider) to the same | {lite * 1000:.3f} ms | |")
    print(f"| **LiteLLM's overhead** | **{(lite - lite_bare) * 1000:.3f} ms** | |")
    worst = max(imported for _, imported, _ in rows) / sdk
    worst_overhead = max(ours - bare, chat[1] - chat[0], responses_overhead)
    ok = worst <= 0.35 and worst_overhead <= 0.001
    print(f"\ntargets: import <= 0.35x the current SDK ({worst:.2f}x), overhead <= 1 ms "
          f"({worst_overhead * 1000:.3f} ms): {'met' if ok else 'NOT met'}")
    print("\n".join(embeddings_v1))
    __import__("bench.store", fromlist=["main"]).main()  # the job store's submission rate (bench/store.py)
    print(openai_batch.table())  # the OpenAI batch door beside the native batch (its own process and stack)
    __import__("bench.keys", fromlist=["main"]).main()  # the authorizer's verdict on stored keys (bench/keys.py)
    print(__import__("bench.limits", fromlist=["table"]).table())  # budgets and per-key limits (bench/limits.py)
    print(__import__("bench.ledger_contention", fromlist=["table"]).table())  # one caller's requests racing in the ledger
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
