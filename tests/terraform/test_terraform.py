"""Offline checks of terraform/: formatting, every resource against the provider schema, the wiring
between functions, routes, queues and triggers, least-privilege roles, no secrets in the open,
the generated gateway spec, reproducible packages, and checkov."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared import routes
from tests.terraform import hcl

ROOT = hcl.ROOT
BUILTIN = {"terraform_data"}


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform") or "/usr/local/bin/terraform"
    if not Path(terraform).exists():
        pytest.skip("terraform is not installed on this machine")
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(hcl.TERRAFORM)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _check_block(path: str, block: hcl.Block, spec: dict[str, Any], problems: list[str]) -> None:
    arguments, blocks = spec.get("arguments", {}), spec.get("blocks", {})
    for name in block.arguments:
        if name in hcl.META_ARGUMENTS:
            continue
        if name not in arguments:
            problems.append(f"{path}: unknown argument {name}")
        elif arguments[name] == "computed":
            problems.append(f"{path}: {name} is read-only")
    for name, required in arguments.items():
        if required == "required" and name not in block.arguments:
            problems.append(f"{path}: missing required argument {name}")
    for name, children in block.blocks.items():
        if name == "lifecycle":
            continue
        if name not in blocks:
            problems.append(f"{path}: unknown block {name}")
            continue
        for child in children:
            _check_block(f"{path}.{name}", child, blocks[name], problems)


def test_every_resource_matches_the_provider_schema(schema: dict[str, Any], resources: list[hcl.Resource]) -> None:
    problems: list[str] = []
    for resource in resources:
        if resource.type in BUILTIN:
            continue
        spec = schema.get(resource.type)
        if spec is None:
            problems.append(f"{resource.file}: {resource.type} is not in the provider schema")
            continue
        _check_block(f"{resource.type}.{resource.name}", resource.body, spec, problems)
    assert not problems, "\n".join(problems)
    assert len(resources) >= 15


def test_every_reference_names_something_declared(resources: list[hcl.Resource]) -> None:
    """What `terraform validate` would check first, offline: var., local., module. and resource
    references all name a declaration (and the fleet module declares every input it is given)."""
    text = hcl.text()
    declared = {f"{r.type}.{r.name}" for r in resources}
    variables, local_names = set(hcl.variables()), set(hcl.locals_())
    modules = {hcl._key(name): body for entry in hcl.load_all()["scaling.tf"]["module"] for name, body in entry.items()}
    problems = [f"var.{n}" for n in set(re.findall(r"\bvar\.(\w+)", text)) - variables]
    problems += [f"local.{n}" for n in set(re.findall(r"\blocal\.(\w+)", text)) - local_names]
    problems += [f"module.{n}" for n in set(re.findall(r"\bmodule\.(\w+)", text)) - set(modules)]
    problems += [ref for ref in {".".join(m) for m in re.findall(r"\b((?:yandex|terraform)_[a-z_]+)\.(\w+)", text)}
                 if ref not in declared]
    assert not problems, problems
    fleet_inputs = {name for name in modules["fleet"] if name not in ("source", "__is_block__")}
    module_vars = {hcl._key(name) for entry in hcl2_load(hcl.TERRAFORM / "modules" / "fleet" / "main.tf").get("variable", [])
                   for name in entry}
    assert fleet_inputs == module_vars


def hcl2_load(path: Path) -> dict[str, Any]:
    import hcl2

    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle)


def test_provider_and_versions_are_pinned() -> None:
    parsed = hcl.load_all()["versions.tf"]
    terraform = parsed["terraform"][0]
    assert terraform["required_version"].strip("\"").startswith(">=")
    provider = terraform["required_providers"][0]["yandex"]
    assert provider["source"].strip("\"") == "yandex-cloud/yandex" and provider["version"].strip("\"").startswith(">=")


def _function_names() -> set[str]:
    default = hcl.variables()["functions"]["default"]
    return {hcl._key(name) for name in default}


def test_every_function_has_a_handler_and_every_route_a_function() -> None:
    names = _function_names()
    for name in names:
        assert (ROOT / "functions" / name / "handler.py").is_file(), name
    on_disk = {p.parent.name for p in (ROOT / "functions").glob("*/handler.py")}
    assert on_disk == names, "a handler exists that Terraform does not deploy (or the reverse)"
    assert {route.function for route in routes.ROUTES} <= names


def test_every_job_queue_has_a_dlq_and_every_queue_exactly_one_trigger(resources: list[hcl.Resource]) -> None:
    queues = {r.name: r for r in resources if r.type == "yandex_message_queue"}
    assert set(queues) == {"jobs", "jobs_dlq"}
    policy = queues["jobs"].body.arguments["redrive_policy"]
    assert "yandex_message_queue.jobs_dlq[each.key].arn" in policy and "maxReceiveCount" in policy
    assert queues["jobs"].body.arguments["for_each"] == queues["jobs_dlq"].body.arguments["for_each"]
    locals_text = (hcl.TERRAFORM / "locals.tf").read_text()
    trigger_map = locals_text[locals_text.index("queue_triggers = merge("):]
    trigger_map = trigger_map[:trigger_map.index("\n  )") + 4]
    assert trigger_map.count("yandex_message_queue.jobs[kind].arn") == 1
    assert trigger_map.count("yandex_message_queue.jobs_dlq[kind].arn") == 1
    triggers = {r.name: r for r in resources if r.type == "yandex_function_trigger"}
    assert set(triggers) == {"queues", "poller"}
    assert triggers["queues"].body.arguments["for_each"] == "${local.queue_triggers}"
    block = triggers["queues"].body.blocks["message_queue"][0]
    assert block.arguments["queue_id"] == "${each.value.arn}"  # the ARN, as the trigger wants


def test_the_batch_poller_runs_on_a_six_field_timer(resources: list[hcl.Resource]) -> None:
    poller = next(r for r in resources if r.type == "yandex_function_trigger" and r.name == "poller")
    assert poller.body.blocks["timer"][0].arguments["cron_expression"] == "${var.poller_schedule}"
    assert 'yandex_function.this["batch_poller"].id' in poller.body.blocks["function"][0].arguments["id"]
    schedule = hcl.variables()["poller_schedule"]["default"]
    assert len(schedule.split()) == 6 and "?" in schedule  # Quartz-style, one of the day fields is ?


def test_no_secret_in_environment_variables_or_outputs(resources: list[hcl.Resource]) -> None:
    locals_text = (hcl.TERRAFORM / "locals.tf").read_text()
    env_block = locals_text[locals_text.index("backend_env = {"):locals_text.index("# The function map")]
    for forbidden in ("secret", "SECRET", "ACCESS_KEY", "API_KEY", "TOKEN", "text_value"):
        assert forbidden not in env_block, forbidden
    for name, output in hcl.outputs().items():
        value = json.dumps(output)
        for forbidden in ("secret_key", "access_key", "text_value", "lockbox", "static_access_key"):
            assert forbidden not in value, f"output {name} exposes {forbidden}"
        assert not output.get("sensitive")
    for variable in hcl.variables().values():  # nothing secret is asked for
        assert "sensitive" not in variable
    runtime_key = next(r for r in resources if r.type == "yandex_iam_service_account_static_access_key" and r.name == "runtime")
    assert "output_to_lockbox" in runtime_key.body.blocks  # the runtime key never lands in the state


def test_functions_deploy_new_versions_on_change_and_disable_imdsv1(resources: list[hcl.Resource]) -> None:
    function = next(r for r in resources if r.type == "yandex_function")
    assert function.body.arguments["runtime"] == '"python312"'
    assert "filesha256" in function.body.arguments["user_hash"]
    assert function.body.blocks["metadata_options"][0].arguments["aws_v1_http_endpoint"] == 2
    assert "secrets" in function.body.blocks and "log_options" in function.body.blocks


def test_gateway_spec_is_generated_from_the_route_table() -> None:
    result = subprocess.run([sys.executable, "-m", "deploy.openapi", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import yaml

    template = (hcl.TERRAFORM / "openapi.yaml.tftpl").read_text()
    spec = yaml.safe_load(template)
    for route in routes.ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        integration = operation["x-yc-apigateway-integration"]
        assert integration["function_id"] == f'${{function_ids["{route.function}"]}}'
        assert integration["context"] == {"operation": route.operation}
        assert operation["security"] == [{"callerKey": []}]  # never open by default
    schemes = spec["components"]["securitySchemes"]
    assert [scheme["name"] for scheme in schemes.values()] == ["Authorization"]
    assert all(scheme["x-yc-apigateway-authorizer"]["type"] == "function" for scheme in schemes.values())
    placeholders = set(re.findall(r"\$\{([^}]*)\}", template.split("\n", 2)[2]))
    assert {p.split("[")[0] for p in placeholders} == {"function_ids", "invoker_service_account_id",
                                                       "authorizer_function_id", "authorizer_cache_seconds"}


def test_packages_are_reproducible(tmp_path: Path) -> None:
    from deploy import package

    first = {name: hashlib.sha256(package.build(name)).hexdigest() for name in package.functions()}
    second = {name: hashlib.sha256(package.build(name)).hexdigest() for name in package.functions()}
    assert first == second
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(package.build("completion"))).namelist()
    assert "handler.py" in names and "requirements.txt" in names and "shared/runtime.py" in names
    assert not any(name.startswith(("local/", "tests/", "functions/")) for name in names)
    assert all(len(package.build(name)) < package.DIRECT_UPLOAD_LIMIT for name in package.functions())


def test_checkov_passes_with_no_failed_checks() -> None:
    checkov = ROOT / ".checkov-venv" / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail("checkov is not installed: run `make test` (it installs .checkov-venv)")
    result = subprocess.run([str(checkov), "-d", str(hcl.TERRAFORM), "--framework", "terraform", "--skip-download",
                             "--compact", "-o", "json"], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(result.stdout or "{}")
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    passed = sum(len(r.get("results", {}).get("passed_checks", [])) for r in reports)
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed)
    assert passed > 0


def _variable_block(name: str) -> str:
    """One `variable` block of terraform/variables.tf, as written."""
    text = (hcl.TERRAFORM / "variables.tf").read_text()
    start = text.index(f'variable "{name}" {{')
    depth, end = 0, start
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0 and text[end] == "}":
            break
    return text[start:end + 1]


def _plan_variable(name: str, value: Any, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """terraform itself evaluates one variable's validation (a module of only that block: offline)."""
    terraform = shutil.which("terraform") or "/usr/local/bin/terraform"
    if not Path(terraform).exists():
        pytest.skip("terraform is not installed on this machine")
    (tmp_path / "main.tf").write_text(_variable_block(name))
    (tmp_path / "values.auto.tfvars.json").write_text(json.dumps({name: value}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
           "TF_CLI_CONFIG_FILE": "/dev/null"}
    return subprocess.run([terraform, "plan", "-input=false", "-lock=false", "-no-color"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(("names", "accepted"), [
    (["alice", "ops", "bob.smith", "Anonymous"], True),
    (["alice", "anonymous"], False),  # the caller nothing names: it would share the work of every IAM invoker
    (["alice", "a b"], False),
])
def test_caller_key_names_are_checked_by_terraform(names: list[str], accepted: bool, tmp_path: Path) -> None:
    planned = _plan_variable("caller_api_key_sha256",
                             {name: hashlib.sha256(name.encode()).hexdigest() for name in names}, tmp_path)
    assert (planned.returncode == 0) is accepted, planned.stdout + planned.stderr
    assert accepted or "key names must be" in planned.stderr


@pytest.mark.parametrize(("admin", "accepted"), [("", True), ("ops", True), ("anonymous", False), ("a,b", False)])
def test_the_admin_caller_is_a_key_name_terraform_checks(admin: str, accepted: bool, tmp_path: Path) -> None:
    planned = _plan_variable("admin_caller", admin, tmp_path)
    assert (planned.returncode == 0) is accepted, planned.stdout + planned.stderr
    assert accepted or "admin_caller must be" in planned.stderr


def test_the_admin_caller_reaches_the_backends_as_fm_admin_caller() -> None:
    assert hcl.locals_()["backend_env"]["FM_ADMIN_CALLER"] == "${var.admin_caller}"


@pytest.mark.parametrize(("name", "status"), [("alice", 0), ("anonymous", 2), ("a b", 2)])
def test_make_api_key_refuses_the_names_terraform_refuses(name: str, status: int) -> None:
    made = subprocess.run([sys.executable, "-m", "deploy.api_key", name], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == status, made.stderr
    assert (f"{name} = " in made.stdout) is (status == 0)


# -- issue 18 item 13: plan noise and fragility ---------------------------------------------------------

def test_the_provider_version_has_an_upper_bound() -> None:
    provider = hcl.load_all()["versions.tf"]["terraform"][0]["required_providers"][0]["yandex"]
    constraint = provider["version"].strip("\"")
    assert re.fullmatch(r">= 0\.222\.0, < 1\.0\.0", constraint), constraint


def test_no_empty_environment_value_reaches_a_function() -> None:
    """The service may drop an empty value, and then every plan shows a diff: the function map leaves
    empty values out, and the functions read an unset variable exactly as an empty one."""
    from shared.config import Settings

    env = hcl.locals_()["functions"]
    assert 'if value != ""' in str(env)
    for name in ("FM_ADMIN_CALLER", "FM_ALLOWED_MODELS"):  # empty by default (admin_caller, allowed_models)
        assert Settings.from_env({name: ""}) == Settings.from_env({})


@pytest.mark.parametrize(("drop", "add", "accepted"), [
    ((), (), True),
    (("batch_poller",), (), False),  # once an invalid index in triggers.tf at plan time
    (("authorizer",), (), False),
    ((), ("extra",), False),  # no handler, no package
])
def test_a_functions_override_must_size_every_function(drop: tuple[str, ...], add: tuple[str, ...], accepted: bool,
                                                       tmp_path: Path) -> None:
    functions = {name: {"memory": 256, "timeout": 60, "zone_instances": 1} for name in _function_names()
                 if name not in drop}
    functions.update({name: {"memory": 256} for name in add})
    planned = _plan_variable("functions", functions, tmp_path)
    assert (planned.returncode == 0) is accepted, planned.stdout + planned.stderr
    assert accepted or "functions must size exactly" in planned.stderr


# -- issue 18 item 9: the caller keys reach the authorizer through its 4 KB environment ------------------

CALLER_KEYS_MAX = 3600


def _named_keys(count: int, name_length: int) -> dict[str, str]:
    """`count` keys whose names are all `name_length` characters (letters and digits)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names = []
    for i in range(count):
        name, n = "", i
        for _ in range(name_length):
            name, n = alphabet[n % 36] + name, n // 36
        names.append(name)
    assert len(set(names)) == count
    return {name: hashlib.sha256(name.encode()).hexdigest() for name in names}


# The longest value each of the authorizer's other variables can take: the Document API endpoint is
# https://docapi.serverless.yandexcloud.net/ru-central1/<cloud id, 20>/<database id, 20> (95 characters;
# 128 allowed), a static access key id is 25 characters (40 allowed) and its secret 40 (64 allowed).
AUTHORIZER_VALUE_MAX = {"DOCAPI_ENDPOINT": 128, "JOBS_TABLE": len("jobs"), "FM_KEY_CACHE_S": len("300.5"),
                        "AWS_ACCESS_KEY_ID": 40, "AWS_SECRET_ACCESS_KEY": 64}


def test_the_largest_caller_key_list_fits_the_authorizers_environment() -> None:
    """What Terraform lets through, in the authorizer's environment with every other variable and secret at
    its longest value, stays within the 4 KB (names and values, Lockbox secrets included) even if 4 KB
    means 4,000 bytes."""
    levels = hcl.plain(hcl.variables()["log_level"]["validation"][0]["condition"])
    longest_level = max(len(level) for level in re.findall(r'"([A-Z]+)"', levels))
    env = set(hcl.locals_()["authorizer_env"]) | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert env == {"LOG_LEVEL", *AUTHORIZER_VALUE_MAX}, "a new variable: give its longest value here"
    total = len("LOG_LEVEL=") + longest_level + len("CALLER_KEY_SHA256=") + CALLER_KEYS_MAX
    total += sum(len(name) + 1 + longest for name, longest in AUTHORIZER_VALUE_MAX.items())
    assert total <= 4000
    assert f"<= {CALLER_KEYS_MAX}" in str(hcl.variables()["caller_api_key_sha256"]["validation"])


@pytest.mark.parametrize(("count", "name_length", "accepted"), [
    (33, 40, True), (34, 40, False), (52, 2, True), (53, 2, False),
])
def test_terraform_refuses_more_caller_keys_than_the_environment_holds(count: int, name_length: int,
                                                                       accepted: bool, tmp_path: Path) -> None:
    keys = _named_keys(count, name_length)
    size = len(",".join(f"{name}:{digest}" for name, digest in keys.items()))
    assert (size <= CALLER_KEYS_MAX) is accepted
    planned = _plan_variable("caller_api_key_sha256", keys, tmp_path)
    assert (planned.returncode == 0) is accepted, planned.stdout + planned.stderr
    assert accepted or "must fit in 3,600 bytes" in " ".join(planned.stderr.split())


def test_the_revocation_bound_the_docs_state_is_what_the_defaults_make() -> None:
    """A revoked, rotated or expired key (or an old policy) works at most for the gateway's verdict cache plus
    the authorizer instance's lookup cache; the module docstring and the variables say 40 s, and the function
    default equals Terraform's."""
    from shared.config import Settings
    from shared.jobs import keys

    gateway_s = hcl.variables()["authorizer_cache_seconds"]["default"]
    instance_s = hcl.variables()["key_cache_seconds"]["default"]
    assert Settings().key_cache_s == instance_s
    assert f"{gateway_s + instance_s} s by default" in " ".join(keys.__doc__.split())
    assert "authorizer_cache_seconds   = var.authorizer_cache_seconds" in (hcl.TERRAFORM / "gateway.tf").read_text()
    assert hcl.locals_()["authorizer_env"]["FM_KEY_CACHE_S"] == "${tostring(var.key_cache_seconds)}"
