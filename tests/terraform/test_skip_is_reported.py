"""A skipped Terraform check must not read as a pass: without ../shared/reference/ the provider-schema test
skips, and the run ends with a banner that says so (tests/conftest.py, pytest_terminal_summary)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.terraform import hcl

COPIED = ("tests", "shared", "terraform", "local", "functions", "events", "deploy")


def test_a_run_without_the_provider_schema_says_loudly_that_it_skipped_the_check(tmp_path: Path) -> None:
    repo = tmp_path / "repo"  # a copy with no shared/reference/ beside it, as on a machine without it
    for name in COPIED:
        shutil.copytree(hcl.ROOT / name, repo / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".terraform", ".mutmut", "*.tfstate*"))
    shutil.copy2(hcl.ROOT / "pyproject.toml", repo / "pyproject.toml")
    assert not (tmp_path / "shared" / "reference").exists()
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "provider_schema",
                          "tests/terraform/test_terraform.py"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 TERRAFORM CHECK(S) SKIPPED, NOT PASSED" in run.stdout
    assert "SKIPPED tests/terraform/test_terraform.py::test_every_resource_matches_the_provider_schema" in run.stdout
    assert "without it no resource was checked against the provider" in run.stdout
    assert "1 skipped" in run.stdout.splitlines()[-1]
