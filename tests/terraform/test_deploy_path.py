"""The deploy path needs only what it uses (issue 18, item 3): `make package`, `plan`, `deploy`,
`jobs-table`, `destroy` and `api-key` run the deploy/ scripts with the machine's python3, never the dev
virtualenv (whose pins need Python 3.11+), and those scripts use the standard library only, in syntax
Python 3.9 reads (Ubuntu 22.04 ships 3.10, RHEL 9 3.9)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.terraform import hcl

DEPLOY_TARGETS = ("package", "plan", "deploy", "jobs-table", "destroy", "api-key", "keys", "validate")
DEPLOY_SCRIPTS = ("package", "jobs_table", "api_key", "keys")
OLDEST_PYTHON = (3, 9)


@pytest.mark.parametrize("target", DEPLOY_TARGETS)
def test_deploy_targets_never_build_the_dev_virtualenv(target: str) -> None:
    """`make -n` with no .venv: what the target would run, which must not create or use the virtualenv."""
    dry = subprocess.run(["make", "-n", target, "VENV=/nonexistent-venv", "NAME=alice"], cwd=hcl.ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "pip install" not in dry.stdout and "/nonexistent-venv" not in dry.stdout, dry.stdout


@pytest.mark.parametrize("script", DEPLOY_SCRIPTS)
def test_deploy_scripts_use_the_standard_library_in_python_3_9_syntax(script: str) -> None:
    source = (hcl.ROOT / "deploy" / f"{script}.py").read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=OLDEST_PYTHON)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"__future__", "deploy"}
    assert not outside, f"deploy/{script}.py imports {outside}: the deploy path would need the dev set"
    for node in ast.walk(tree):  # names added after 3.9 that the parser does not catch
        if isinstance(node, ast.Attribute) and node.attr == "UTC" and getattr(node.value, "id", "") == "datetime":
            pytest.fail(f"deploy/{script}.py uses datetime.UTC (3.11+)")
        if isinstance(node, ast.Match):
            pytest.fail(f"deploy/{script}.py uses match (3.10+)")


def test_the_check_sees_a_dev_dependency_and_a_virtualenv_target() -> None:
    """The two checks above can fail: a target that builds .venv shows pip install under `make -n`."""
    dry = subprocess.run(["make", "-n", "lint", "VENV=/nonexistent-venv"], cwd=hcl.ROOT, capture_output=True,
                         text=True, timeout=60)
    assert "pip install" in dry.stdout and "/nonexistent-venv" in dry.stdout
    assert "requests" not in sys.stdlib_module_names and "urllib" in sys.stdlib_module_names
