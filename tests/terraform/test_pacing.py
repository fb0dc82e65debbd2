"""Fleet-wide pacing: terraform itself evaluates terraform/modules/fleet (pure arithmetic, no provider,
so it runs offline) with the root module's own inputs, and the test recomputes from what it returns
the most calls per second the whole fleet can make upstream, which must stay within each quota."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.config import ENV_NAMES
from tests.terraform import hcl

MODULE = hcl.TERRAFORM / "modules" / "fleet"


def _terraform() -> str:
    found = shutil.which("terraform") or "/usr/local/bin/terraform"
    if not Path(found).exists():
        pytest.skip("terraform is not installed on this machine")
    return found


def root_inputs() -> dict[str, Any]:
    """The arguments terraform/scaling.tf passes to module.fleet, with the variables' defaults."""
    module = hcl.load_all()["scaling.tf"]["module"][0]['"fleet"']
    inputs = {name: hcl.resolve(value) for name, value in module.items() if name not in ("source", "__is_block__")}
    assert not [v for v in json.dumps(inputs).split('"') if v.startswith("${")], f"unresolved input: {inputs}"
    return inputs


def evaluate(inputs: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """`terraform apply` of the fleet module (outputs only) with these inputs: the outputs' values."""
    work = workdir / "fleet"
    shutil.copytree(MODULE, work)
    (work / "inputs.auto.tfvars.json").write_text(json.dumps(inputs))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    applied = subprocess.run([_terraform(), "apply", "-auto-approve", "-input=false", "-lock=false", "-no-color"],
                             cwd=work, capture_output=True, text=True, env=env, timeout=120)
    if applied.returncode != 0:
        raise RuntimeError(applied.stdout + applied.stderr)
    shown = subprocess.run([_terraform(), "output", "-json"], cwd=work, capture_output=True, text=True, env=env,
                           timeout=60, check=True)
    return {name: output["value"] for name, output in json.loads(shown.stdout).items()}


def fleet_rates(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per quota: (the fleet's worst-case sustained rate, the quota). Every instance of every function
    that reads the quota's pacing variable runs at once, in every zone, each at its own pace."""
    zones = inputs["zones"]
    rates: dict[str, tuple[float, float]] = {}
    for quota, info in outputs["fleet"].items():
        env = info["env"]
        total = 0.0
        for function, pacing in outputs["pacing_env"].items():
            if env in pacing:
                total += zones * outputs["scaling"][function]["zone_instances_limit"] * float(pacing[env])
        rates[quota] = (total, inputs["quotas"][quota])
    return rates


def assert_within_quotas(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    for quota, (worst, limit) in fleet_rates(inputs, outputs).items():
        assert 0 < worst <= limit, f"{quota}: the fleet can make {worst} calls, the quota is {limit}"
    generations = inputs["zones"] * outputs["scaling"]["completion"]["zone_instances_limit"]
    if inputs["quotas"]["sync_generations"] >= inputs["zones"]:  # below one instance per zone, nothing can cap it
        assert generations <= inputs["quotas"]["sync_generations"]
    per_zone = sum(s["zone_instances_limit"] for s in outputs["scaling"].values())
    assert per_zone <= inputs["zone_instance_quota"]
    for scaling in outputs["scaling"].values():
        assert 1 <= scaling["zone_instances_limit"] <= scaling["zone_requests_limit"]  # 0 would mean "no limit"


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    inputs = root_inputs()
    return inputs, evaluate(inputs, tmp_path_factory.mktemp("defaults"))


def test_the_fleet_stays_within_every_quota_with_the_default_values(defaults: tuple[dict[str, Any], dict[str, Any]]) -> None:
    inputs, outputs = defaults
    assert_within_quotas(inputs, outputs)
    rates = fleet_rates(inputs, outputs)
    assert rates["embedding_rps"] == (pytest.approx(9.999), 10)  # 3 zones x 1 instance x 3.333/s
    assert rates["classification_rps"] == (pytest.approx(0.999), 1)
    assert rates["async_start_per_hour"] == (4995, 5000)  # 9 completion instances x 555
    assert outputs["scaling"]["completion"]["zone_instances_limit"] == 3  # 9 concurrent generations of 10


def test_the_pacing_variables_are_the_ones_the_functions_read(defaults: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, outputs = defaults
    paced = {info["env"] for info in outputs["fleet"].values()}
    assert paced <= set(ENV_NAMES.values())
    assert paced == {"FM_EMBEDDING_RPS", "FM_CLASSIFICATION_RPS", "FM_ASYNC_START_RPS", "FM_ASYNC_START_PER_HOUR",
                     "FM_OPERATION_GET_RPS"}
    assert outputs["pacing_env"]["embedding"] == {"FM_EMBEDDING_RPS": "3.333"}
    assert outputs["pacing_env"]["completion"] == {"FM_ASYNC_START_RPS": "1.111", "FM_ASYNC_START_PER_HOUR": "555"}
    # the functions that do not spend a quota get none of its variables (their config default is never used)
    assert outputs["pacing_env"]["operations"] == {} and outputs["pacing_env"]["authorizer"] == {}


@pytest.mark.parametrize("change", [
    {"zones": 2},
    {"quotas": {"embedding_rps": 7, "classification_rps": 0.5, "async_start_rps": 100, "async_start_per_hour": 20000,
                "operation_get_rps": 1, "sync_generations": 4}},
    {"functions": {"completion": {"zone_instances": 2}, "embedding": {"zone_instances": 3},
                   "classification": {"zone_instances": 2}, "operations": {"zone_instances": 1},
                   "batch_poller": {"zone_instances": 1}, "authorizer": {"zone_instances": 1}}},
], ids=["two-zones", "other-quotas", "more-instances"])
def test_the_fleet_stays_within_every_quota_with_other_values(change: dict[str, Any], tmp_path: Path) -> None:
    inputs = {**root_inputs(), **change}
    assert_within_quotas(inputs, evaluate(inputs, tmp_path))


def test_plans_that_cannot_keep_the_quotas_fail(tmp_path: Path) -> None:
    crowded = {**root_inputs(), "zone_instance_quota": 5}
    with pytest.raises(RuntimeError, match="add up to more than zone_instance_quota"):
        evaluate(crowded, tmp_path / "crowded")
    starved = root_inputs()
    starved["quotas"] = {**starved["quotas"], "classification_rps": 0.001}
    with pytest.raises(RuntimeError, match="too small to share"):
        evaluate(starved, tmp_path / "starved")


def test_the_root_wires_the_module_into_every_function_and_its_scaling_policy(resources: list[hcl.Resource]) -> None:
    functions_local = hcl.locals_()["functions"]
    assert "merge(local.backend_env, module.fleet.pacing_env[name])" in functions_local
    assert not [name for name in hcl.locals_()["backend_env"] if name.endswith(("_RPS", "_PER_HOUR"))]
    policy = next(r for r in resources if r.type == "yandex_function_scaling_policy")
    assert policy.body.arguments["for_each"] == "${yandex_function.this}"
    block = policy.body.blocks["policy"][0].arguments
    assert hcl.plain(block["tag"]) == "$latest"
    assert block["zone_instances_limit"] == "${module.fleet.scaling[each.key].zone_instances_limit}"
    assert block["zone_requests_limit"] == "${module.fleet.scaling[each.key].zone_requests_limit}"


def test_the_gateway_waits_as_long_as_the_longest_function_and_no_longer_than_its_ceiling(
        resources: list[hcl.Resource]) -> None:
    gateway = next(r for r in resources if r.type == "yandex_api_gateway")
    assert gateway.body.arguments["execution_timeout"] == "${tostring(local.gateway_timeout_s)}"
    ceiling = hcl.locals_()["gateway_timeout_s"]
    assert ceiling == 600  # API Gateway's maximum: 10 minutes
    functions = hcl.resolve(hcl.variables()["functions"]["default"])
    assert max(f["timeout"] for f in functions.values()) == ceiling
    assert all(functions[name]["timeout"] == 600 for name in ("completion", "embedding", "classification"))
    conditions = [v["condition"] for v in hcl.variables()["functions"]["validation"]]
    assert any("f.timeout <= 600" in condition for condition in conditions)  # no function may outlast the gateway


def test_the_body_limit_fits_api_gateways() -> None:
    """API Gateway refuses requests over 2.5 MB; FM_MAX_BODY_BYTES is within it whichever MB is meant."""
    from shared.config import Settings

    assert Settings().max_body_bytes == 2_500_000
