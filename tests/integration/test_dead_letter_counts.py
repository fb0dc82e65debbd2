"""The dead-letter queue means "failed", not "was delivered often" (issue 18, item 11): the queue counts
every delivery, also those that were no failure of the task's own (a deferral near the deadline, another
worker's lease, a batch-mate's crash, the scaling policy's 429 before the function runs). A task started
fewer times than JOB_MAX_DELIVERIES when its message reaches the dead-letter queue gets one fresh copy;
one started that often, or already given its fresh copy, fails its operation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import Settings
from shared.jobs import store as store_module
from tests.conftest import FOLDER, Api, Jobs

pytestmark = pytest.mark.integration

COMPLETION = {"modelUri": f"gpt://{FOLDER}/yandexgpt-lite/latest",
              "messages": [{"role": "user", "text": "Tell me about the Volga"}]}


def _submit_and_dead_letter(api: Api, jobs: Jobs, starts: int, requeued: bool = False) -> str:
    """Submit a completion, start its task `starts` times (each start given back with an error, as a
    transient failure does), then move its message to the dead-letter queue as the redrive policy would."""
    op_id = api.post("/foundationModels/v1/completionAsync", COMPLETION).json()["id"]
    store = store_module.JobStore(Settings.from_env())
    for start in range(starts):
        assert store.claim(op_id, 0, f"w{start}", 60).outcome == "claimed"
        store.release(op_id, 0, f"w{start}", "UNAVAILABLE: overloaded")
    queue, dead = jobs.resources.queues["completion"], jobs.resources.queues["completion-dlq"]
    [message] = jobs.queues.receive(queue, 10)
    body = json.loads(message.body)
    jobs.queues.send(dead, json.dumps({**body, **({"requeued": 1} if requeued else {})}))
    jobs.queues.delete(queue, message.receipt_handle)
    return op_id


def _operation(api: Api, op_id: str) -> dict[str, Any]:
    answer = api.http.get(f"{api.url}/operations/{op_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_task_started_fewer_times_than_delivered_gets_a_fresh_copy(api: Api, jobs: Jobs) -> None:
    assert Settings.from_env().job_max_deliveries == 3  # the local queues' maxReceiveCount (tests/conftest.py)
    op_id = _submit_and_dead_letter(api, jobs, starts=1)  # one real failure, the other deliveries were not
    jobs.drain()
    finished = _operation(api, op_id)
    assert finished["done"] is True and "response" in finished, finished
    assert jobs.triggers["completion-dlq"].invocations == 1


@pytest.mark.parametrize(("starts", "requeued"), [(3, False), (1, True), (0, True)])
def test_a_task_started_as_often_as_delivered_or_already_requeued_fails(api: Api, jobs: Jobs, starts: int,
                                                                       requeued: bool) -> None:
    op_id = _submit_and_dead_letter(api, jobs, starts=starts, requeued=requeued)
    jobs.drain()
    finished = _operation(api, op_id)
    assert finished["done"] is True and "dead-letter queue" in finished["error"]["message"], finished
    assert jobs.triggers["completion"].invocations == 0  # nothing sent back to the job queue
