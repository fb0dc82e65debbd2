"""`make bench`, the OpenAI Batch door: a 2,000-request batch through /v1/files + /v1/batches beside the native
inline completionBatch of the same size, on the local stack (emulator, moto server, trigger runners, the
timer poller, the local gateway), one after the other in one run.

Both are paced by the same quota, FM_ASYNC_START_RPS (BENCH_START_RPS here, by default the setting's own
default, 10/s), so the floor for each is requests / rate: 200 s, and the whole run about 7 minutes.
Each time runs from the first byte sent (the upload, for the OpenAI door) to the moment a client polling
every 0.2 s sees the batch finished with every result written.
Target (issue #9): the OpenAI batch within 1.1x of the quota's floor, i.e. the door adds no measurable cost.

    python -m bench.openai_batch        (what bench/run.py calls, in a fresh process)
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = int(os.environ.get("BENCH_BATCH_REQUESTS", "2000"))
START_RPS = float(os.environ.get("BENCH_START_RPS", "10"))  # FM_ASYNC_START_RPS's default, the quota
POLLER_INTERVAL_S = os.environ.get("BENCH_POLLER_INTERVAL_S", "2")  # make run's default is 10 s; the cloud's 60 s


def _stack() -> str:
    """The local stack as `make run` starts it, except that the emulator and moto server run in processes of
    their own (as upstream and the store are other machines in the cloud), so the functions' process does not
    share its interpreter lock with them; the gateway's URL."""
    os.environ.update(FM_ASYNC_START_RPS=str(START_RPS), FM_OPERATION_GET_RPS="5000", LOG_LEVEL="WARN",
                      POLLER_INTERVAL_S=POLLER_INTERVAL_S, FM_ASYNC_START_PER_HOUR="100000",
                      YC_API_KEY="bench-key", YC_FOLDER_ID="b1gbench")
    os.environ.pop("DOCAPI_ENDPOINT", None)
    sys.path.insert(0, str(ROOT))
    emulator = _serve([sys.executable, "-m", "local.emulator", "--port", "0"])
    os.environ["FM_BASE_URL"] = os.environ["FM_OPERATION_URL"] = emulator.rsplit(" ", 1)[-1]
    moto = _serve([sys.executable, "-c", "import time; from local.aws import start_moto; "
                                         "print(start_moto(0)[1], flush=True); time.sleep(86400)"])
    from local import aws, gateway, triggers
    from shared.jobs.queue import QueueClient

    resources = aws.provision(moto)
    os.environ.update(resources.env())
    queues = QueueClient(moto, aws.REGION, aws.ACCESS_KEY, aws.SECRET_KEY)
    for trigger in triggers.queue_triggers(queues, resources, 10, 0.2):
        trigger.start()
    triggers.TimerTrigger("batch_poller", float(POLLER_INTERVAL_S)).start()
    import requests

    requests.post(os.environ["FM_BASE_URL"] + "/_emulator/config", json={"asyncDelayMs": 0}, timeout=5)
    return gateway.start().url


_children: list[subprocess.Popen[str]] = []


def _serve(command: list[str]) -> str:
    """Start a server process (ended when this one ends) and return the last word of its first line: its URL."""
    import atexit

    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    _children.append(child)
    atexit.register(child.terminate)
    assert child.stdout is not None
    return child.stdout.readline().strip().rsplit(" ", 1)[-1]


def _native(url: str) -> dict[str, float]:
    import requests

    body = {"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"n{i}", "messages": [{"role": "user", "text": f"question {i}"}]} for i in range(REQUESTS)]}
    started = time.perf_counter()
    operation = requests.post(f"{url}/foundationModels/v1/completionBatch", json=body, timeout=120).json()
    marks = {"accepted": time.perf_counter() - started}
    while not operation.get("done"):
        time.sleep(0.2)
        operation = requests.get(f"{url}/operations/{operation['id']}", timeout=30).json()
        if "settled" not in marks and operation["metadata"]["completedBatches"] == str(REQUESTS):
            marks["settled"] = time.perf_counter() - started
    marks["done"] = time.perf_counter() - started
    assert operation["response"]["succeeded"] == str(REQUESTS), operation
    return marks


def _openai(url: str) -> dict[str, float]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)
    data = "".join(json.dumps({"custom_id": f"o{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "yandexgpt-lite", "messages": [{"role": "user",
                                                                                 "content": f"question {i}"}]}}) + "\n"
                   for i in range(REQUESTS)).encode()
    started = time.perf_counter()
    uploaded = client.files.create(file=("bench.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    marks = {"accepted": time.perf_counter() - started}
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
        counts = batch.request_counts
        if "settled" not in marks and counts is not None and counts.completed + counts.failed == REQUESTS:
            marks["settled"] = time.perf_counter() - started
    marks["done"] = time.perf_counter() - started
    assert batch.status == "completed" and batch.request_counts.completed == REQUESTS, batch
    assert len(client.files.content(batch.output_file_id).text.splitlines()) == REQUESTS
    return marks


def _start_span(since: float) -> float:
    """Seconds from the first to the last upstream completionAsync the emulator saw since `since`."""
    import requests

    calls = requests.get(os.environ["FM_BASE_URL"] + "/_emulator/calls", timeout=30).json()["calls"]
    starts = sorted(c["t"] for c in calls if c["path"].endswith("/completionAsync") and c["t"] >= since)
    return starts[-1] - starts[0] if len(starts) > 1 else 0.0


def measure() -> dict[str, Any]:
    url = _stack()
    times: dict[str, Any] = {"floor": REQUESTS / START_RPS}
    for name, run in (("native", _native), ("openai", _openai)):
        since = time.time()
        times[name] = run(url)
        times[name]["starts"] = _start_span(since)
    return times


def table() -> str:
    """Run the measurement in a fresh process (it starts its own stack) and format the rows."""
    out = subprocess.run([sys.executable, "-m", "bench.openai_batch", "--json"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    times = json.loads(out.strip().splitlines()[-1])
    floor = times["floor"]
    rows = [f"\nOpenAI batch door ({REQUESTS} chat requests, FM_ASYNC_START_RPS={START_RPS:g}: the quota's floor "
            f"is {floor:.1f} s)\n", "| batch | accepted | upstream starts took | all settled | done | "
            "done ÷ quota floor |", "|---|---|---|---|---|---|"]
    for name, label in (("native", "native inline `completionBatch`"),
                        ("openai", "OpenAI `/v1/files` + `/v1/batches` (upload to output file)")):
        m = times[name]
        rows.append(f"| {label} | {m['accepted']:.1f} s | {m['starts']:.1f} s ({REQUESTS / max(m['starts'], 1e-9):.0f}/s) "
                    f"| {m.get('settled', m['done']):.1f} s | {m['done']:.1f} s | {m['done'] / floor:.2f}× |")
    openai_s, native_s = times["openai"]["done"], times["native"]["done"]
    ok = openai_s <= 1.1 * floor
    rows.append(f"\ntarget: OpenAI batch <= 1.1x the quota's floor ({openai_s / floor:.2f}x; "
                f"{openai_s / native_s:.2f}x the native batch): {'met' if ok else 'NOT met'}")
    return "\n".join(rows)


if __name__ == "__main__":
    if "--json" in sys.argv:
        print(json.dumps(measure()))
    else:
        print(table())
