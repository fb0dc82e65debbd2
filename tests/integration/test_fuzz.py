"""A bounded schemathesis run against the whole local stack, with the spec deploy/openapi.py generates
(the in-suite step of `make fuzz`): every check, the auth ones included (the authorizer is in front),
and not one failure. Fixed seed, so a failure reproduces with `python -m local.fuzz --max-examples 5 --seed 20261125`."""

from __future__ import annotations

import pytest

from local import fuzz

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20261125


@pytest.mark.xdist_group("wall-clock")  # never beside the CPU burners (tests/conftest.py)
@pytest.mark.timeout(600)  # a hang guard, not a speed claim: seconds to minutes, by the machine's load
def test_schemathesis_finds_nothing_the_spec_does_not_say() -> None:
    with fuzz.local_stack() as url:
        result = fuzz.run(url, max_examples=5, seed=SEED)
    print(f"fuzz: {result.cases} cases, {result.failures} failures, {result.seconds:.1f} s")
    assert result.returncode == 0 and result.failures == 0, result.output[-6000:]
    assert result.cases >= 1000, result.output[-3000:]
