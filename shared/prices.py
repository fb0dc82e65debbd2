"""Prices: what a day's usage costs, from a table kept as data (PRICES below, overridable by FM_PRICES).

Source: Yandex AI Studio's pricing page (https://yandex.cloud/en/docs/ai-studio/pricing), read in its source
repository yandex-cloud/docs on 2026-12-06: en/ai-studio/pricing.md (commit 0467ccde9fc147c08148e8a087d641682ded7880)
and the tables it includes, en/_pricing/yandexgpt/usd-generating_new.md (eb831971e91b), usd-generating-batch.md
(5ecd818fe360), usd-embedding.md (7875f063ade7), usd-classifier.md (1391a5e80bf6). USD, without VAT.

- Generation is billed in units: a model costs `units_per_token` x the unit's price per 1,000 tokens, the same for
  input and output tokens (the page bills their sum). The page renders the two generation unit prices from SKUs
  (`foundation_models.text_generation.v1` and `..._alt.v1`) whose values are not in its source, so they are None
  here: NOT CONFIRMED. FM_PRICES sets them (`{"units": {"text_generation": ...}}`); until then cost() reports a
  generation model as unpriced and counts only its tokens.
- Upstream's asynchronous mode (completionAsync) costs half its synchronous mode. Async jobs here call upstream's
  synchronous completion, so the ledger records them as `sync`; inline and OpenAI batches run on completionAsync
  and are recorded as `async`. Upstream's own batch mode (completionBatch over datasets) has its column, but the
  gateway records no usage for it (upstream reports none per request).
- The pass-through models have no synchronous or asynchronous price in the page's source: None (NOT CONFIRMED);
  gemma-3-27b-it's batch-mode ratio (2, the _alt unit) is listed there.
- Classifiers are billed per request: one unit per `tokens_per_request` tokens or part of it (1,000 for a
  classifier on YandexGPT Lite, 250 on YandexGPT Pro and for tuned classifiers).
- Tokenizer calls are free (the page's Tokenization section), so the tokenize routes are not in the ledger.
"""

from __future__ import annotations

import json
import math
from typing import Any

from shared import errors

MODES = ("sync", "async", "batch")

PRICES: dict[str, Any] = {
    "currency": "USD",
    "taken": "2026-12-06",
    "source": "yandex-cloud/docs en/ai-studio/pricing.md @ 0467ccde9fc147c08148e8a087d641682ded7880",
    # the price of 1,000 billing units (1,000 tokens at units_per_token 1); None: not confirmed from the source
    "units": {"text_generation": None, "text_generation_alt": None, "embedding": 0.00008},
    "models": {
        "yandexgpt-lite": {"unit": "text_generation", "units_per_token": {"sync": 1, "async": 0.5, "batch": None}},
        "yandexgpt": {"unit": "text_generation", "units_per_token": {"sync": 6, "async": 3, "batch": None}},
        "llama-lite": {"unit": "text_generation_alt", "units_per_token": {"sync": 1, "async": 0.5, "batch": None}},
        "llama": {"unit": "text_generation_alt", "units_per_token": {"sync": 6, "async": 3, "batch": None}},
        "qwen3-235b-a22b-fp8": {"unit": "text_generation_alt", "units_per_token": {"sync": None, "async": None, "batch": None}},
        "gpt-oss-120b": {"unit": "text_generation_alt", "units_per_token": {"sync": None, "async": None, "batch": None}},
        "gpt-oss-20b": {"unit": "text_generation_alt", "units_per_token": {"sync": None, "async": None, "batch": None}},
        "gemma-3-27b-it": {"unit": "text_generation_alt", "units_per_token": {"sync": None, "async": None, "batch": 2}},
        "text-search-doc": {"unit": "embedding", "units_per_token": {"sync": 1, "async": 1, "batch": 1}},
        "text-search-query": {"unit": "embedding", "units_per_token": {"sync": 1, "async": 1, "batch": 1}},
        # classifiers (cls://): few-shot on a base model by that model's name, a tuned one by "tuned"
        "cls:yandexgpt-lite": {"per_request": 0.0012, "tokens_per_request": 1000},
        "cls:yandexgpt": {"per_request": 0.0012, "tokens_per_request": 250},
        "cls:tuned": {"per_request": 0.0012, "tokens_per_request": 250},
    },
}


def table(override: str | None = None) -> dict[str, Any]:
    """PRICES with FM_PRICES (a JSON object of the same shape) merged over it: `units` and `models` entry by entry.

    Raises:
        ConfigError naming FM_PRICES when the override is not such an object.
    """
    merged = {**PRICES, "units": dict(PRICES["units"]), "models": dict(PRICES["models"])}
    if not override:
        return merged
    try:
        extra = json.loads(override)
        if not isinstance(extra, dict):
            raise ValueError("not an object")
        for key in ("units", "models"):
            part = extra.get(key, {})
            if not isinstance(part, dict):
                raise ValueError(f"{key} is not an object")
            merged[key].update(part)
        for key in ("currency", "taken", "source"):
            if key in extra:
                merged[key] = str(extra[key])
    except ValueError as err:
        raise errors.ConfigError(f"FM_PRICES: must be a JSON object like the price table ({err})") from None
    return merged


def price_key(model_uri: str) -> str:
    """The table's name for a model URI: gpt://f/yandexgpt-lite/latest -> yandexgpt-lite, a tuned gpt://f/x@s -> x
    (a tuned model is billed as its base model), cls://f/yandexgpt-lite/latest -> cls:yandexgpt-lite, a tuned
    classifier (cls://f/x@suffix) -> cls:tuned."""
    scheme, _, rest = model_uri.partition("://")
    name = rest.split("/")[1] if rest.count("/") >= 1 else rest
    if scheme == "cls":
        return "cls:tuned" if "@" in rest else f"cls:{name}"
    return name.split("@", 1)[0]


def classifier_units(model_uri: str, input_tokens: int | None, prices: dict[str, Any]) -> int:
    """Billing units of one classification request: one per tokens_per_request tokens or part (at least one)."""
    entry = prices["models"].get(price_key(model_uri)) or {}
    size = int(entry.get("tokens_per_request") or 0)
    if not size or not input_tokens:
        return 1
    return max(1, math.ceil(input_tokens / size))


def cost(totals: dict[str, dict[str, dict[str, int]]], prices: dict[str, Any]) -> dict[str, Any]:
    """What a day's totals (model URI -> mode -> {"input_tokens", "output_tokens", "requests", "units"}) cost.

    Returns {"currency", "total", "models": {uri: {mode: amount}}, "unpriced": [uri/mode whose price is unknown]};
    `total` adds up the priced ones only, so an unpriced model is reported, never silently costed at zero."""
    out: dict[str, Any] = {"currency": prices["currency"], "total": 0.0, "models": {}, "unpriced": []}
    for model, modes in sorted(totals.items()):
        entry = prices["models"].get(price_key(model))
        for mode, counts in sorted(modes.items()):
            amount = _amount(entry, mode, counts, prices["units"])
            if amount is None:
                out["unpriced"].append(f"{model} {mode}")
                continue
            out["models"].setdefault(model, {})[mode] = amount
            out["total"] += amount
    out["total"] = round(out["total"], 10)
    return out


def _amount(entry: dict[str, Any] | None, mode: str, counts: dict[str, int], units: dict[str, Any]) -> float | None:
    if entry is None:
        return None
    if "per_request" in entry:  # a classifier: per billing unit, counted for each request when it was recorded
        if entry["per_request"] is None:
            return None
        return round(int(counts.get("units", counts.get("requests", 0))) * float(entry["per_request"]), 10)
    if units.get(entry.get("unit")) is None:
        return None
    unit_price = float(units[entry["unit"]])
    ratio = (entry.get("units_per_token") or {}).get(mode)
    if ratio is None:
        return None
    tokens = int(counts.get("input_tokens", 0)) + int(counts.get("output_tokens", 0))
    return round(tokens / 1000 * float(ratio) * unit_price, 10)
