"""Every name the bundle gives a resource, rendered by terraform itself with the default variables and
with the longest `name_prefix` the variable allows, against each service's own name rule (issue 18,
item 1). The provider checks few names (only queues and buckets), so a name the API refuses fails only
at apply, after part of the bundle exists; this test makes that class of failure impossible to land.

Rules, with their source:
- functions, triggers, service accounts: `[a-z][-a-z0-9]{1,61}[a-z0-9]` (the docs'
  functions/api-ref/Function/create.md, functions/triggers/api-ref/Trigger/create.md,
  iam/api-ref/ServiceAccount/create.md);
- API gateway: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?` (api-gateway/apigateway/api-ref/ApiGateway/create.md);
- queues: at most 80 letters, digits, `-` or `_` (the provider's validateQueueName,
  yandex/resource_yandex_message_queue.go);
- bucket: the provider appends a 26-character unique id to `bucket_prefix` (PrefixedUniqueId,
  resource_yandex_storage_bucket.go) and checks 3-63 characters; the bucket naming rules also want
  lower case and a letter or digit at each end;
- Lockbox secrets, KMS keys, the YDB database: their API references state no pattern (the provider
  checks a secret's name only for at most 100 characters), so the strictest common rule,
  `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`, which every other name here also meets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.terraform import hcl
from tests.terraform.test_pacing import _terraform

NAME_ARGUMENTS = ("name", "bucket_prefix")
STRICT = r"[a-z][-a-z0-9]{1,61}[a-z0-9]"
COMMON = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
RULES: dict[str, str] = {
    "yandex_function": STRICT,
    "yandex_function_trigger": STRICT,
    "yandex_iam_service_account": STRICT,
    "yandex_api_gateway": COMMON,
    "yandex_message_queue": r"[0-9A-Za-z_-]{1,80}",
    "yandex_storage_bucket": r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",  # with the provider's 26-character suffix
    "yandex_lockbox_secret": COMMON,
    "yandex_kms_symmetric_key": COMMON,
    "yandex_ydb_database_serverless": COMMON,
}
BUCKET_SUFFIX = "2026120617555100000000000a"  # what PrefixedUniqueId appends: 18 digits of time, 8 hex digits
LONGEST_PREFIX = "a" + "b2" * 9 + "cd"  # 21 characters: the most name_prefix's validation allows


def for_each_keys() -> dict[str, list[str]]:
    """The keys of every collection a named resource is created for, with the default variables."""
    functions = sorted(hcl.resolve(hcl.variables()["functions"]["default"]))
    kinds = re.search(r"job_kinds\s*=\s*toset\(\[([^\]]*)\]\)", (hcl.TERRAFORM / "locals.tf").read_text())
    assert kinds
    job_kinds = re.findall(r'"(\w+)"', kinds.group(1))
    return {
        "${local.functions}": functions,
        "${local.job_kinds}": job_kinds,
        "${local.queue_triggers}": job_kinds + [f"{kind}-dlq" for kind in job_kinds],
    }


def named_resources() -> list[tuple[str, str, str, list[str]]]:
    """(type, label, name expression, keys) of every resource that carries a name."""
    keys = for_each_keys()
    found = []
    for resource in hcl.resources():
        for argument in NAME_ARGUMENTS:
            if argument not in resource.body.arguments:
                continue
            expression = hcl.plain(resource.body.arguments[argument])
            collection = resource.body.arguments.get("for_each")
            assert collection is None or collection in keys, (
                f"{resource.type}.{resource.name}: teach this test the keys of {collection}")
            found.append((resource.type, resource.name, expression, keys[collection] if collection else [""]))
    return found


def render(prefix: str, workdir: Path) -> dict[str, dict[str, str]]:
    """Terraform's own rendering of every name expression: {type.label: {key: name}}."""
    outputs = []
    for index, (rtype, label, expression, keys) in enumerate(named_resources()):
        assert "each.value" not in expression, f"{rtype}.{label}: a name should depend on the key only"
        template = expression.replace("each.key", "k")
        outputs.append(f'output "n{index}" {{\n  value = {{ for k in {json.dumps(keys)} : k => "{template}" }}\n}}\n')
    work = workdir / prefix
    work.mkdir()
    (work / "main.tf").write_text('variable "name_prefix" {\n  type = string\n}\n' + "".join(outputs))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    applied = subprocess.run([_terraform(), "apply", "-auto-approve", "-input=false", "-lock=false", "-no-color",
                              f"-var=name_prefix={prefix}"], cwd=work, capture_output=True, text=True, env=env,
                             timeout=120)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    shown = subprocess.run([_terraform(), "output", "-json"], cwd=work, capture_output=True, text=True, env=env,
                           timeout=60, check=True)
    values = json.loads(shown.stdout)
    return {f"{rtype}.{label}": values[f"n{index}"]["value"]
            for index, (rtype, label, _, _) in enumerate(named_resources())}


def violations(rendered: dict[str, dict[str, str]]) -> list[str]:
    bad = []
    for address, names in rendered.items():
        rtype = address.split(".")[0]
        assert rtype in RULES, f"{address}: add the service's name rule to RULES, with its source"
        for name in names.values():
            full = name + BUCKET_SUFFIX if rtype == "yandex_storage_bucket" else name
            if not re.fullmatch(RULES[rtype], full):
                bad.append(f"{address}: {full!r} does not match {RULES[rtype]}")
    return bad


def test_the_longest_prefix_is_the_longest_the_variable_allows() -> None:
    rule = re.search(r'regex\("(.*?)", var\.name_prefix\)', (hcl.TERRAFORM / "variables.tf").read_text())
    assert rule
    pattern = rule.group(1).replace("\\\\", "\\")
    assert re.fullmatch(pattern, LONGEST_PREFIX) and not re.fullmatch(pattern, LONGEST_PREFIX + "e")


@pytest.mark.parametrize("prefix", ["fm", LONGEST_PREFIX])
def test_every_resource_name_meets_its_services_rule(prefix: str, tmp_path: Path) -> None:
    rendered = render(prefix, tmp_path)
    assert "yandex_function.this" in rendered and "yandex_storage_bucket.results" in rendered
    assert rendered["yandex_function.this"]["batch_poller"] == f"{prefix}-batch-poller"
    assert not violations(rendered)


def test_the_check_refuses_the_name_that_broke_the_first_apply() -> None:
    rendered: dict[str, Any] = {"yandex_function.this": {"batch_poller": "fm-batch_poller"},
                                "yandex_storage_bucket.results": {"": "fm-results-" + "x" * 40}}
    assert len(violations(rendered)) == 2
