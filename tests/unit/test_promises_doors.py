"""Front doors (shared/jobs/doors.py): a job created through the OpenAI Batch API names its door in its record,
and the poller finishes it through that door's module (advance and settle); a native job, or a record naming a
door this deployment does not have, has none, and nothing of another dialect is imported for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.jobs import doors


def test_a_job_of_the_openai_door_is_finished_by_the_openai_batch_output() -> None:
    from shared.openai import batch_output

    hook = doors.door({"id": "op1", "kind": "completion", "door": "openai"})
    assert hook is batch_output
    assert callable(hook.advance) and callable(hook.settle)


@pytest.mark.parametrize("operation", [{"id": "op1", "kind": "completion"}, {"door": None}, {"door": ""},
                                       {"door": "OPENAI"}, {"door": "anthropic"}, {"door": "shared.openai.batch_output"}])
def test_a_native_job_or_an_unknown_door_has_none(operation: dict[str, object]) -> None:
    assert doors.door(operation) is None


def test_asking_for_a_native_jobs_door_imports_no_dialect() -> None:
    code = ("import sys; from shared.jobs import doors; assert doors.door({'kind': 'completion'}) is None; "
            "print(sorted(m for m in sys.modules if m.startswith('shared.openai')))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=__file__.rsplit("/tests/", 1)[0])
    assert shown.stdout.strip() == "[]"
