"""Fixtures the Terraform checks share: the provider schema (with its documented corrections) and the
parsed resources."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.terraform import hcl

SCHEMA_PATH = hcl.ROOT.parent / "shared" / "reference" / "terraform-yandex-schema.json"

# Where the schema file's own _notes say the generated docs disagree with the provider's Go schema,
# the Go schema wins (yandex_iam_service_account: name Required, description Optional+Computed).
SCHEMA_CORRECTIONS = {"yandex_iam_service_account": {"name": "required", "description": "optional"}}


@pytest.fixture(scope="session")
def schema() -> dict[str, Any]:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"{SCHEMA_PATH} is not beside the repository")
    loaded = json.loads(SCHEMA_PATH.read_text())
    for resource, corrections in SCHEMA_CORRECTIONS.items():
        assert any("Go schema" in note for note in loaded[resource].get("_notes", [])), resource
        loaded[resource]["arguments"].update(corrections)
    return loaded


@pytest.fixture(scope="session")
def resources() -> list[hcl.Resource]:
    return hcl.resources()
