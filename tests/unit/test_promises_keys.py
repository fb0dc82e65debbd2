"""What the admin API for caller keys (shared/jobs/keys.py) promises, in process: the operations function's handler
over the job store's in-process stand-in (local.aws.InProcessMoto), each test in milliseconds.

A key is created, listed, read, changed, rotated and revoked by the admin caller only (anyone else: the 404 of a path
that does not exist); its secret is shown once and never stored, listed or logged; what the authorizer reads for a
secret (shared.policy.lookup, one GetItem of its digest's record) carries the key's name, expiry and policy, follows
every change, and is gone once the key is revoked or rotated; a name is taken for good (a revoked key's too), and
the configured names are reserved. tests/integration/test_admin_keys.py proves the same end to end (the gateway, the
authorizer, a request made with the key); this file is what `make mutate` runs for the module.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from functions.operations.handler import handler
from local.aws import InProcessMoto
from shared import policy
from shared.config import Settings
from shared.jobs.store import JobStore
from shared.policy import KeyCache, KeyPolicy
from tests.clock import ManualClock
from tests.conftest import Aws, reset_caches

InProcessMoto.shared()  # made at import, so a process forked after collection (mutmut's forkserver) starts warm

ADMIN = "ops"
SECRET_RULE = r"fmk_[A-Za-z0-9_-]{43}"


@pytest.fixture
def store(aws: Aws, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    monkeypatch.setenv("FM_ADMIN_CALLER", ADMIN)
    monkeypatch.setenv("FM_CALLER_NAMES", "ops,boot")
    reset_caches()
    return JobStore(Settings.from_env())


def call(method: str, path: str, body: Any = None, caller: str = ADMIN) -> tuple[int, Any]:
    """One request to the operations function as the gateway hands it, with the authorizer's caller."""
    event = {"httpMethod": method, "url": path, "headers": {}, "body": json.dumps(body) if body is not None else None,
             "requestContext": {"authorizer": {"caller": caller}}}
    answer = handler(event, None)
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def make(name: str, **fields: Any) -> dict[str, Any]:
    status, body = call("POST", "/admin/keys", {"name": name, **fields})
    assert status == 201, body
    return body


def seen_by_authorizer(store: JobStore, secret: str) -> KeyPolicy | None:
    """What the authorizer lets through for this secret, read afresh (no instance cache)."""
    return policy.lookup(hashlib.sha256(secret.encode()).hexdigest(), store.item, KeyCache(0))


def error(body: dict[str, Any]) -> tuple[str, str | None]:
    """(what is wrong, the field named) of a native error answer about one field."""
    (detail,) = [d for d in body["error"]["details"] if d["@type"] == "field"]
    assert body["error"]["message"] == f"{detail['field']}: {detail['description']}"
    return detail["description"], detail["field"]


def view(name: str, created: int, **fields: Any) -> dict[str, Any]:
    return {"object": "api_key", "name": name, "status": "active", "redacted_value": None, "created_at": created,
            "expires_at": None, "revoked_at": None, "rotated_at": None, "models": None, "rpm": None, "tpm": None,
            "monthly_tokens": None, "monthly_budget": None, **fields}


class Before:
    """WSGI middleware: the first TransactWriteItems waits until `action` (another admin call) has run."""

    def __init__(self, app: Any, action: Any) -> None:
        self.app, self.action, self.done = app, action, False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.done and str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".TransactWriteItems"):
            self.done = True
            self.action()
        return self.app(environ, start_response)


@pytest.mark.parametrize("first", ["rotate", "patch"])
def test_a_rotate_racing_a_patch_leaves_both_records_agreeing(store: JobStore, aws: Aws, first: str) -> None:
    """Whichever of the two reads first and writes last, what the authorizer reads for the key's current secret is
    the key's policy."""
    make("k", rpm=1)
    patched: list[Any] = []
    if first == "rotate":  # the rotate has read the key; the patch lands before its write
        aws.wrap(lambda app: Before(app, lambda: patched.append(call("PATCH", "/admin/keys/k", {"rpm": 2}))))
        status, rotated = call("POST", "/admin/keys/k/rotate")
    else:  # the patch has read the key; the rotate lands before its write
        rotations: list[Any] = []
        aws.wrap(lambda app: Before(app, lambda: rotations.append(call("POST", "/admin/keys/k/rotate"))))
        patched.append(call("PATCH", "/admin/keys/k", {"rpm": 2}))
        status, rotated = rotations[0]
    assert status == 200 and patched[0][0] == 200
    assert call("GET", "/admin/keys/k")[1]["rpm"] == 2
    assert seen_by_authorizer(store, rotated["key"]) == KeyPolicy(name="k", rpm=2)


