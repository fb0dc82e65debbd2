"""What the platform's documentation says a first apply needs (issue 11): the bucket names its folder,
results are encrypted with a key the bundle makes (or the user names) and the runtime may use, every
named resource carries the prefix so a second deployment fits beside the first, and docs/deploying.md's
resource counts are the configuration's."""

from __future__ import annotations

import re
from typing import Any

from tests.terraform import hcl

NAME_ARGUMENTS = ("name", "bucket_prefix")


def _one(resources: list[hcl.Resource], rtype: str, name: str) -> hcl.Resource:
    return next(r for r in resources if r.type == rtype and r.name == name)


def test_the_bucket_names_its_folder(schema: dict[str, Any], resources: list[hcl.Resource]) -> None:
    assert "folder_id" in schema["yandex_storage_bucket"]["arguments"]
    bucket = _one(resources, "yandex_storage_bucket", "results")
    assert bucket.body.arguments["folder_id"] == "${var.folder_id}"


def test_results_are_encrypted_with_the_bundles_own_rotating_key_unless_one_is_given(
        resources: list[hcl.Resource]) -> None:
    key = _one(resources, "yandex_kms_symmetric_key", "results")
    assert key.body.arguments["count"] == '${var.results_kms_key_id == "" ? 1 : 0}'
    assert hcl.plain(key.body.arguments["rotation_period"]) == "8760h"
    assert hcl.plain(hcl.variables()["results_kms_key_id"]["default"]) == ""  # a new user needs no `yc kms` step
    chosen = hcl.locals_()["results_kms_key_id"]
    assert "var.results_kms_key_id" in chosen and "yandex_kms_symmetric_key.results[0].id" in chosen
    bucket = _one(resources, "yandex_storage_bucket", "results")
    sse = bucket.body.blocks["server_side_encryption_configuration"][0].blocks["rule"][0]
    by_default = sse.blocks["apply_server_side_encryption_by_default"][0].arguments
    assert by_default["kms_master_key_id"] == "${local.results_kms_key_id}"
    grant = _one(resources, "yandex_kms_symmetric_key_iam_member", "results").body.arguments
    assert grant["symmetric_key_id"] == "${local.results_kms_key_id}"  # the same key, whichever it is
    assert hcl.plain(grant["role"]) == "kms.keys.encrypterDecrypter"


def test_every_named_resource_carries_the_prefix(schema: dict[str, Any], resources: list[hcl.Resource]) -> None:
    unprefixed = []
    for resource in resources:
        spec = schema.get(resource.type, {}).get("arguments", {})
        names = [a for a in NAME_ARGUMENTS if a in spec]
        if not names:
            continue
        given = [resource.body.arguments[a] for a in names if a in resource.body.arguments]
        if not any("${var.name_prefix}" in str(value) for value in given):
            unprefixed.append(f"{resource.type}.{resource.name}")
    assert not unprefixed, f"a second deployment would collide on: {unprefixed}"
    prefix = hcl.variables()["name_prefix"]
    assert "not ending with a dash" in prefix["validation"][0]["error_message"]


def counts() -> dict[str, int]:
    """What one deployment takes from the cloud's quotas, with the default variables."""
    functions = hcl.resolve(hcl.variables()["functions"]["default"])
    kinds = re.search(r"job_kinds\s*=\s*toset\(\[([^\]]*)\]\)", (hcl.TERRAFORM / "locals.tf").read_text())
    assert kinds
    job_kinds = len(re.findall(r'"(\w+)"', kinds.group(1)))
    return {"functions": len(functions), "queues": 2 * job_kinds, "triggers": 2 * job_kinds + 1,
            "serverless database": 1, "service accounts": 5}


def test_the_readme_counts_what_a_deployment_uses(resources: list[hcl.Resource]) -> None:
    by_type: dict[str, int] = {}
    for resource in resources:
        by_type[resource.type] = by_type.get(resource.type, 0) + 1
    assert by_type["yandex_ydb_database_serverless"] == 1 and by_type["yandex_iam_service_account"] == 5
    assert by_type["yandex_function_trigger"] == 2  # the queue triggers (one per queue) and the timer
    page = (hcl.ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    section = page[page.index("## What one deployment takes from the cloud"):page.index("## Timeouts and sizes")]
    for what, number in counts().items():
        assert f"{number} {what}" in section, f"docs/deploying.md should say {number} {what}"
