"""Batch poller: on each timer tick, within the invocation's remaining time, advance every active batch
(poll due upstream operations, record results, finish batches, cancel upstream work of cancelled ones)
and re-enqueue stuck jobs. Several pollers may run at once."""

from typing import Any

from shared import runtime


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.serve("batch_poller", {}, event, context, timer="shared.jobs.poller:poll")
