"""`make bench`, /v1/responses: the handler's overhead over the bare native call it becomes (store: false), the
time a stored response adds on the local store (moto server), and the store round trips of continuing a
conversation at turn 2, 10 and 50 (counted on the wire: botocore's requests). Printed as Markdown rows.

Run inside bench.run (the emulator is running; the handler modules are importable).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TURNS = (2, 10, 50)


def overhead(emulator_url: str, interleaved: Any) -> tuple[float, float]:
    """(bare median, handler median) for the sample store: false request against the same emulator."""
    import requests

    from local.context import LocalContext
    from local.functions import load
    from shared.openai.responses_api import ResponseCreateRequest, plan_request

    handler = load("completion")
    event = json.loads((ROOT / "events" / "http-v01-responses.json").read_text())
    request = ResponseCreateRequest.model_validate(json.loads(event["body"]))
    data = json.dumps(plan_request(request, "gpt://b1gbench/yandexgpt-lite/latest", None, "resp_bench").body).encode()
    session = requests.Session()
    headers = {"Authorization": "Api-Key bench-key", "Content-Type": "application/json"}
    url = f"{emulator_url}/foundationModels/v1/completion"

    def bare() -> None:
        session.post(url, data=data, headers=headers, timeout=10).json()

    def ours() -> None:
        assert handler(event, LocalContext())["statusCode"] == 200

    bare_times, our_times = interleaved([(bare, ours)])
    return statistics.median(bare_times), statistics.median(our_times)


def stored(interleaved: Any) -> tuple[float, float, dict[int, list[str]]]:
    """(store: false median, store: true median, store requests per continued turn) on moto server."""
    import requests

    from local.aws import provision, start_moto
    from local.context import LocalContext
    from local.functions import load
    from shared import config
    from shared.jobs import store as store_module

    server, moto = start_moto()
    try:
        requests.post(f"{moto}/moto-api/reset", timeout=10).raise_for_status()
        os.environ.update(provision(moto).env())
        config.reset_settings()
        store_module.reset_job_store()
        handler = load("completion")
        base = json.loads((ROOT / "events" / "http-v01-responses.json").read_text())

        def event(**fields: Any) -> dict[str, Any]:
            body = {**json.loads(base["body"]), **fields}
            return {**base, "body": json.dumps(body)}

        unstored, kept = event(store=False), event(store=True)
        handler(kept, LocalContext())  # the table exists before timing

        def without() -> None:
            assert handler(unstored, LocalContext())["statusCode"] == 200

        def with_store() -> None:
            assert handler(kept, LocalContext())["statusCode"] == 200

        plain, saved = interleaved([(without, with_store)])
        job_store = store_module.job_store(config.settings())
        sent: list[str] = []

        def count(event_name: str, **_: Any) -> None:
            sent.append(event_name.split(".", 2)[2])

        job_store.db.meta.events.register("before-send", count)
        job_store.s3.meta.events.register("before-send", count)
        per_turn: dict[int, list[str]] = {}
        previous = None
        for turn in range(1, max(TURNS) + 1):
            sent.clear()
            answer = handler(event(store=True, input=f"question {turn}", previous_response_id=previous),
                             LocalContext())
            assert answer["statusCode"] == 200, answer["body"]
            previous = json.loads(answer["body"])["id"]
            if turn in TURNS:
                per_turn[turn] = sorted(sent)
        return statistics.median(plain), statistics.median(saved), per_turn
    finally:
        server.shutdown()


def rows(emulator_url: str, interleaved: Any) -> tuple[list[str], float]:
    """The Markdown rows, and the handler's overhead (for the 1 ms target)."""
    bare, ours = overhead(emulator_url, interleaved)
    plain, saved, per_turn = stored(interleaved)
    out = [
        f"| bare `requests.post` (the native body a Responses request becomes) | {bare * 1000:.3f} ms | |",
        f"| handler(event, context) on /v1/responses, `store: false` | {ours * 1000:.3f} ms | |",
        f"| **overhead of /v1/responses** | **{(ours - bare) * 1000:.3f} ms** | |",
        f"| /v1/responses with `store: true` on the local store, minus `store: false` | "
        f"{(saved - plain) * 1000:.3f} ms | |",
    ]
    for turn, requests in per_turn.items():
        out.append(f"| store round trips continuing a conversation at turn {turn} | {len(requests)} "
                   f"({', '.join(requests)}) | |")
    return out, ours - bare
