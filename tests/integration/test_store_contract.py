"""The job store's contract tests (tests/unit/test_promises_store.py) against moto server on loopback: the
same tests, the `aws` fixture parametrized "loopback" instead of "in-process". Both passing is what shows the
in-process stand-in (local.aws.InProcessMoto, the fast layer the unit tests and `make mutate` use) behaves as
moto server does for everything the store promises."""

from __future__ import annotations

import pytest

from tests.unit import test_promises_store as contract

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("aws", ["loopback"], indirect=True)]

# every contract test that uses the stand-in (but the one about the in-process layer itself), collected here under the loopback parametrization
globals().update({name: test for name, test in vars(contract).items()
                  if name.startswith("test_") and "in_process" not in name and "aws" in test.__code__.co_varnames[:test.__code__.co_argcount]})
