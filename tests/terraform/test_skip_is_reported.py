"""A skipped Terraform check must not read as a pass: without ../shared/reference/ the provider-schema test
skips, and the run ends with a banner that says so (tests/conftest.py, pytest_terminal_summary)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.terraform import hcl

HIDE_SCHEMA = '''
from pathlib import Path


def pytest_collection_modifyitems(items):
    import tests.terraform.conftest as checks

    checks.SCHEMA_PATH = Path("/nonexistent/reference/terraform-yandex-schema.json")
'''


def test_a_run_without_the_provider_schema_says_loudly_that_it_skipped_the_check(tmp_path: Path) -> None:
    (tmp_path / "hide_schema.py").write_text(HIDE_SCHEMA)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "hide_schema", "-p", "no:cacheprovider", "-q",
                          "tests/terraform/test_terraform.py::test_every_resource_matches_the_provider_schema"],
                         cwd=hcl.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 TERRAFORM CHECK(S) SKIPPED, NOT PASSED" in run.stdout
    assert "test_every_resource_matches_the_provider_schema: /nonexistent/reference/" in run.stdout
    assert "without it no resource was checked against the provider" in run.stdout
    assert "1 skipped" in run.stdout.splitlines()[-1]
