"""Least privilege, read from terraform/*.tf: every grant each service account holds, and on what; no
folder-level grant where the provider schema offers the same grant on the one resource; authoritative
bindings only where the schema has no additive member, and only on resources the bundle creates."""

from __future__ import annotations

import re
from typing import Any

from tests.terraform import hcl

IAM_SUFFIXES = ("_iam_member", "_iam_binding")
FOLDER = "folder"

# Every grant each account may hold: (where, role). `where` is "folder" or the resource granted on.
# Anything granted that is not listed here, or listed and not granted, fails.
ALLOWED_GRANTS = {
    "runtime": {
        (FOLDER, "ai.languageModels.user"),  # Foundation Models: no resource-level grant exists
        (FOLDER, "ymq.writer"),  # send job messages: the provider has no per-queue IAM
        ("yandex_lockbox_secret.runtime_keys", "lockbox.payloadViewer"),  # its own static key only
        ("yandex_ydb_database_serverless.jobs", "ydb.editor"),
        ("yandex_storage_bucket.results", "storage.editor"),
        ("yandex_kms_symmetric_key.results", "kms.keys.encrypterDecrypter"),
    },
    # the configured keys' hashes, its own static key, and a read of the jobs table (stored keys) only
    "authorizer": {("yandex_lockbox_secret.caller_keys", "lockbox.payloadViewer"),
                   ("yandex_lockbox_secret.authorizer_keys", "lockbox.payloadViewer"),
                   ("yandex_ydb_database_serverless.jobs", "ydb.viewer")},
    "invoker": {("yandex_function.this", "functions.functionInvoker")},  # gateway and triggers
    "queue_reader": {(FOLDER, "ymq.reader")},  # the queue triggers
    "queue_manager": {(FOLDER, "ymq.admin")},  # Terraform's own queue management
}

# How a role's service prefix is spelled in resource type names, where the two differ.
SERVICE_SPELLING = {"functions": "function", "serverless": "function", "ymq": "message_queue",
                    "api-gateway": "api_gateway"}


def resource_level_forms(role: str, schema: dict[str, Any]) -> list[str]:
    """The schema's resource types that grant `role` on a single resource (not a folder or cloud)."""
    service = role.split(".")[0] if "." in role else ""
    if not service:  # primitive roles (viewer, editor, admin) are judged elsewhere
        return []
    prefix = SERVICE_SPELLING.get(service, service).replace("-", "_")
    forms = []
    for rtype in schema:
        if not rtype.startswith("yandex_") or not rtype.endswith(IAM_SUFFIXES):
            continue
        target = rtype[len("yandex_"):].rsplit("_iam_", 1)[0]
        if target.startswith(("resourcemanager_", "organizationmanager_")):
            continue  # folder, cloud and organization grants are what we are trying to avoid
        if target == prefix or target.startswith(prefix + "_"):
            forms.append(rtype)
    return sorted(forms)


def _ref(text: str, local_values: dict[str, Any]) -> str:
    """The bundle resource (type.name) or service account an expression refers to, through locals."""
    for name in re.findall(r"local\.(\w+)", text):
        text = text + " " + str(local_values.get(name, ""))
    found = re.findall(r"(yandex_[a-z_]+)\.(\w+)", text)
    return f"{found[0][0]}.{found[0][1]}" if found else text


def _account(member: str, local_values: dict[str, Any]) -> str:
    ref = _ref(member, local_values)
    assert ref.startswith("yandex_iam_service_account."), f"member {member} is not one of the bundle's accounts"
    return ref.split(".", 1)[1]


def granted(resources: list[hcl.Resource]) -> dict[str, set[tuple[str, str]]]:
    """Every grant in the configuration (with default variables), as account -> {(where, role)}."""
    local_values = hcl.locals_()
    grants: dict[str, set[tuple[str, str]]] = {}
    for resource in resources:
        if not resource.type.endswith(IAM_SUFFIXES):
            continue
        args = resource.body.arguments
        if resource.type == "yandex_resourcemanager_folder_iam_member":
            assert args["for_each"] == "${local.folder_grants}" and "each.value.account" in args["member"]
            for account, roles in hcl.resolve(local_values["folder_roles"]).items():
                grants.setdefault(account, set()).update((FOLDER, role) for role in roles)
            continue
        role = hcl.resolve(args["role"])
        if resource.name == "iam_callers":  # auth_mode = iam: the members the user lists, invoke only
            assert role == "functions.functionInvoker" and args["member"] == "${each.value.member}"
            continue
        members = [args["member"]] if "member" in args else args["members"]
        target_arg = next(a for a in args if a not in ("role", "member", "members", "sleep_after"))
        target_text = args["for_each"] if "each.value" in args[target_arg] else args[target_arg]
        where = _ref(target_text, local_values)
        for member in members:
            grants.setdefault(_account(member, local_values), set()).add((where, role))
    return grants


def test_each_account_holds_exactly_its_grants_each_on_its_one_resource(resources: list[hcl.Resource]) -> None:
    assert granted(resources) == ALLOWED_GRANTS


def test_no_folder_grant_has_a_resource_level_form_in_the_schema(schema: dict[str, Any],
                                                                 resources: list[hcl.Resource]) -> None:
    folder_roles = {role for grants in granted(resources).values() for where, role in grants if where == FOLDER}
    offenders = {role: resource_level_forms(role, schema) for role in folder_roles}
    assert not {role: forms for role, forms in offenders.items() if forms}, \
        "granted on the folder although the provider can grant it on the resource"


def test_the_resource_level_check_reads_the_schema(schema: dict[str, Any]) -> None:
    """The check above can fail: the schema offers these grants per resource, and not these."""
    assert resource_level_forms("lockbox.payloadViewer", schema) == ["yandex_lockbox_secret_iam_binding",
                                                                     "yandex_lockbox_secret_iam_member"]
    assert resource_level_forms("ydb.editor", schema) == ["yandex_ydb_database_iam_binding"]
    assert resource_level_forms("storage.uploader", schema) == ["yandex_storage_bucket_iam_binding"]
    assert resource_level_forms("kms.keys.encrypterDecrypter", schema) == ["yandex_kms_symmetric_key_iam_binding",
                                                                           "yandex_kms_symmetric_key_iam_member"]
    assert resource_level_forms("functions.functionInvoker", schema) == ["yandex_function_iam_binding",
                                                                         "yandex_function_iam_member"]
    assert resource_level_forms("ymq.reader", schema) == [] and resource_level_forms("ai.languageModels.user", schema) == []
    for spelled in SERVICE_SPELLING.values():  # the spellings name real resource types
        assert any(t.startswith(f"yandex_{spelled}") for t in schema), spelled


def test_authoritative_bindings_only_where_no_member_form_exists_and_on_the_bundles_own_resources(
        schema: dict[str, Any], resources: list[hcl.Resource]) -> None:
    declared = {f"{r.type}.{r.name}" for r in resources}
    local_values = hcl.locals_()
    bindings = [r for r in resources if r.type.endswith("_iam_binding")]
    assert bindings, "expected the database and bucket bindings"
    for binding in bindings:
        assert binding.type.replace("_iam_binding", "_iam_member") not in schema, \
            f"{binding.type}: the additive member form exists; use it"
        assert not binding.type.startswith("yandex_resourcemanager_"), "never an authoritative folder binding"
        target_arg = next(a for a in binding.body.arguments if a not in ("role", "members", "sleep_after"))
        assert _ref(binding.body.arguments[target_arg], local_values) in declared, \
            f"{binding.type}.{binding.name} governs a resource the bundle does not create"
        assert len(binding.body.arguments["members"]) == 1


def test_nothing_is_editor_or_admin_by_default_and_the_trigger_role_is_a_variable(resources: list[hcl.Resource]) -> None:
    roles = {role for grants in granted(resources).values() for _, role in grants}
    assert not {role for role in roles if role in ("editor", "admin") or role.endswith(".admin")} - {"ymq.admin"}
    trigger_role = hcl.variables()["queue_trigger_role"]
    assert hcl.plain(trigger_role["default"]) == "ymq.reader"
    assert "editor" in trigger_role["validation"][0]["condition"]  # what the trigger docs ask for, opt-in
    assert hcl.locals_()["folder_roles"]["queue_reader"] == ["${var.queue_trigger_role}"]


def test_functions_wait_for_every_grant_they_use(resources: list[hcl.Resource]) -> None:
    function = next(r for r in resources if r.type == "yandex_function")
    waits = set(function.body.arguments["depends_on"])
    grants = {f"${{{r.type}.{r.name}}}" for r in resources if r.type.endswith(IAM_SUFFIXES)
              and r.type != "yandex_function_iam_member"}
    assert grants <= waits, grants - waits
    assert "${terraform_data.jobs_table}" in waits


def test_every_grant_waits_for_iam_to_propagate_where_the_provider_can(schema: dict[str, Any],
                                                                        resources: list[hcl.Resource]) -> None:
    """Issue 18 item 6: queues are created with a key minted right after ymq.admin is granted, function
    versions read Lockbox right after the grant, triggers invoke right after theirs. Every grant whose
    resource has the provider's sleep_after ("to compensate IAM operations delay") sets it; the one that
    cannot (the bucket binding has none) is used by requests only, never during the apply."""
    grants = [r for r in resources if r.type.endswith(IAM_SUFFIXES)]
    assert grants
    without = []
    for grant in grants:
        if "sleep_after" in schema[grant.type]["arguments"]:
            assert grant.body.arguments.get("sleep_after") == "${var.iam_propagation_s}", f"{grant.type}.{grant.name}"
        else:
            without.append(f"{grant.type}.{grant.name}")
    assert without == ["yandex_storage_bucket_iam_binding.results"]
    default = hcl.variables()["iam_propagation_s"]["default"]
    assert 0 < default <= 120
