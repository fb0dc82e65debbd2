"""Front doors: the same job, created through another API (the OpenAI Batch API), and finished with that
API's results as well as the native ones.

A job created through another door names it in its record (`door`). The engine does its work as for any
job of its kind (same records, same workers, same poller, same lease, same cancel) and calls the door at
two moments, from the poller only:

    advance(operation, store, inv) -> bool     each round while a job that is not a batch runs: keep its
                                               per-request progress current; True once every task is done
    settle(operation, store, inv, records) -> (result_key, size) | None
                                               once its work has ended (finished, cancelled, expired or
                                               failed): write the door's own results; idempotent

The door's module is named here and imported on first use, so the engine never imports a dialect.
"""

from __future__ import annotations

import importlib
from typing import Any

DOORS = {"openai": "shared.openai.batch_output"}


def door(operation: dict[str, Any]) -> Any | None:
    """The door module of a job created through another door; None for a native job."""
    name = operation.get("door")
    return importlib.import_module(DOORS[name]) if name in DOORS else None
