"""Caller keys as data (shared/jobs/keys.py): the admin API over the local gateway with the authorizer in
front, moto as the job store, the emulator upstream. A key made through the API works at once, carries its
policy to every function, and stops working within the stated bound when it is revoked, rotated or expires."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local import gateway
from tests.clock import ManualClock
from tests.conftest import Emulator, Jobs

pytestmark = pytest.mark.integration

ADMIN_KEY = "fmk_ops-admin-key-0123456789abcdef0"
BOOT_KEY = "fmk_boot-caller-key-0123456789abcdef"
CHAT = {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": "hi"}]}
NATIVE = {"modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "hi"}]}


@pytest.fixture
def admin(jobs: Jobs, monkeypatch: pytest.MonkeyPatch, authorizing_gateway: gateway.GatewayServer) -> Client:
    """The gateway with two configured keys: `ops` (the admin caller) and `boot`; stored keys via the API."""
    monkeypatch.setenv("CALLER_KEY_SHA256", ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"
                                                     for name, key in (("ops", ADMIN_KEY), ("boot", BOOT_KEY))))
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    monkeypatch.setenv("FM_CALLER_NAMES", "ops,boot")
    monkeypatch.setenv("FM_KEY_CACHE_S", "10")
    from tests.conftest import reset_caches

    reset_caches()
    return Client(authorizing_gateway.url, ADMIN_KEY)


class Client:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(method, self.url + path, json=body, timeout=30)

    def as_key(self, key: str) -> Client:
        return Client(self.url, key)


def make(admin: Client, name: str, **fields: Any) -> dict[str, Any]:
    answer = admin.call("POST", "/admin/keys", {"name": name, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_created_key_works_at_once_and_its_work_is_its_own(admin: Client, clock: ManualClock) -> None:
    created = make(admin, "carol")
    secret = created["key"]
    assert secret.startswith("fmk_") and len(secret) >= 40
    assert created["status"] == "active" and created["redacted_value"] == f"fmk_...{secret[-4:]}"
    carol = admin.as_key(secret)
    answer = carol.call("POST", "/v1/chat/completions", CHAT)
    assert answer.status_code == 200, answer.text
    op = carol.call("POST", "/foundationModels/v1/completionAsync", NATIVE).json()
    assert op["createdBy"] == "carol"
    boot = admin.as_key(BOOT_KEY)
    assert boot.call("GET", f"/operations/{op['id']}").status_code == 404  # another caller's work
    assert admin.call("GET", f"/operations/{op['id']}").status_code == 200  # the admin sees everyone's


def test_listing_and_reading_never_show_a_secret_or_its_digest(admin: Client, log_output: io.StringIO) -> None:
    made = [make(admin, name, rpm=60) for name in ("dave", "erin")]
    rotated = admin.call("POST", "/admin/keys/erin/rotate").json()["key"]
    listed = admin.call("GET", "/admin/keys")
    one = admin.call("GET", "/admin/keys/dave")
    assert listed.status_code == one.status_code == 200
    assert [k["name"] for k in listed.json()["data"]] == ["dave", "erin"]
    assert listed.json()["data"][0]["rpm"] == 60 and one.json()["name"] == "dave"
    for secret in [m["key"] for m in made] + [rotated]:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        for text in (listed.text, one.text, log_output.getvalue()):
            assert secret not in text and digest not in text
    assert "key" not in listed.json()["data"][0] and "digest" not in one.json()


def test_names_are_unique_and_configured_names_are_reserved(admin: Client) -> None:
    make(admin, "frank")
    again = admin.call("POST", "/admin/keys", {"name": "frank"})
    assert again.status_code == 409 and "frank" in again.json()["error"]["message"]
    for taken in ("ops", "boot", "anonymous"):
        answer = admin.call("POST", "/admin/keys", {"name": taken})
        assert answer.status_code == 409, taken
        assert answer.json()["error"]["details"][0]["field"] == "name"
    admin.call("DELETE", "/admin/keys/frank")
    assert admin.call("POST", "/admin/keys", {"name": "frank"}).status_code == 409  # a revoked name stays taken


def test_only_the_admin_reaches_the_admin_routes(admin: Client) -> None:
    """Any other key, configured or stored, gets the same 404 as a path that does not exist."""
    stored = admin.as_key(make(admin, "gina")["key"])
    boot = admin.as_key(BOOT_KEY)
    routes = [("POST", "/admin/keys", {"name": "mallory"}), ("GET", "/admin/keys", None),
              ("GET", "/admin/keys/gina", None), ("PATCH", "/admin/keys/gina", {"rpm": 1}),
              ("DELETE", "/admin/keys/gina", None), ("POST", "/admin/keys/gina/rotate", None)]
    for caller in (stored, boot):
        for method, path, body in routes:
            answer = caller.call(method, path, body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "gina" not in answer.text.replace(path, "")
    assert admin.call("GET", "/admin/keys/gina").json()["status"] == "active"  # nothing changed
    assert admin.call("GET", "/admin/keys/mallory").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "bad name"}, "name"), ({"name": ""}, "name"), ({"name": "x" * 65}, "name"), ({}, "name"),
    ({"name": "h", "rpm": 0}, "rpm"), ({"name": "h", "tpm": -1}, "tpm"), ({"name": "h", "monthly_budget": 0}, "monthly_budget"),
    ({"name": "h", "models": []}, "models"), ({"name": "h", "models": ["a b"]}, "models[0]"),
    ({"name": "h", "expires_at": 1}, "expires_at"), ({"name": "h", "colour": "red"}, "colour"),
    ({"name": "h", "rpm": "ten"}, "rpm"),
])
def test_bad_input_is_a_400_naming_the_field(admin: Client, body: dict[str, Any], field: str) -> None:
    answer = admin.call("POST", "/admin/keys", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["details"][0]["field"] == field


def test_a_patch_sets_and_removes_policy_and_reaches_requests_within_the_bound(admin: Client,
                                                                               clock: ManualClock) -> None:
    hal = admin.as_key(make(admin, "hal")["key"])
    assert hal.call("POST", "/v1/chat/completions", CHAT).status_code == 200
    changed = admin.call("PATCH", "/admin/keys/hal", {"models": ["yandexgpt"], "tpm": 5000})
    assert changed.status_code == 200 and changed.json()["models"] == ["yandexgpt"]
    clock.advance(10.5)  # the authorizer instance's cache (FM_KEY_CACHE_S) has run out
    refused = hal.call("POST", "/v1/chat/completions", CHAT)
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "model", refused.text
    assert hal.call("POST", "/v1/chat/completions", {**CHAT, "model": "yandexgpt"}).status_code == 200
    assert [m["id"].split("/")[-2] for m in hal.call("GET", "/v1/models").json()["data"]] == ["yandexgpt"]
    native = hal.call("POST", "/foundationModels/v1/completion", NATIVE)
    assert native.status_code == 403 and "not allowed for this key" in native.text
    removed = admin.call("PATCH", "/admin/keys/hal", {"models": None})
    assert removed.json()["models"] is None and removed.json()["tpm"] == 5000
    clock.advance(10.5)
    assert hal.call("POST", "/v1/chat/completions", CHAT).status_code == 200
    assert admin.call("PATCH", "/admin/keys/hal", {}).status_code == 400


def test_revocation_stops_a_key_within_the_cache_bound(admin: Client, clock: ManualClock) -> None:
    """Within FM_KEY_CACHE_S an instance may still admit a revoked key (the bound the docs state, plus the
    gateway's own cache in the cloud); once it has passed, never."""
    ivan = admin.as_key(make(admin, "ivan")["key"])
    assert ivan.call("POST", "/v1/chat/completions", CHAT).status_code == 200  # now cached as valid
    revoked = admin.call("DELETE", "/admin/keys/ivan")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    clock.advance(9.0)
    assert ivan.call("POST", "/v1/chat/completions", CHAT).status_code == 200  # inside the bound: cached
    clock.advance(1.5)
    for _ in range(3):
        assert ivan.call("POST", "/v1/chat/completions", CHAT).status_code == 403
    assert admin.call("DELETE", "/admin/keys/ivan").json()["status"] == "revoked"  # idempotent
    assert admin.call("POST", "/admin/keys/ivan/rotate").status_code == 409
    assert admin.call("PATCH", "/admin/keys/ivan", {"rpm": 5}).status_code == 409


def test_a_key_never_used_before_its_revocation_is_refused_at_once(admin: Client) -> None:
    secret = make(admin, "judy")["key"]
    admin.call("DELETE", "/admin/keys/judy")
    assert admin.as_key(secret).call("POST", "/v1/chat/completions", CHAT).status_code == 403


def test_rotation_gives_a_new_secret_and_the_old_one_stops(admin: Client, clock: ManualClock) -> None:
    old = make(admin, "kate", rpm=7)["key"]
    assert admin.as_key(old).call("POST", "/v1/chat/completions", CHAT).status_code == 200
    answer = admin.call("POST", "/admin/keys/kate/rotate")
    assert answer.status_code == 200
    new = answer.json()["key"]
    assert new != old and answer.json()["rpm"] == 7 and answer.json()["rotated_at"] is not None
    kate = admin.as_key(new)
    op = kate.call("POST", "/foundationModels/v1/completionAsync", NATIVE).json()
    assert op["createdBy"] == "kate"  # the same caller: same work, same usage
    clock.advance(10.5)
    assert admin.as_key(old).call("POST", "/v1/chat/completions", CHAT).status_code == 403
    assert kate.call("GET", f"/operations/{op['id']}").status_code == 200


def test_an_expired_key_is_refused_and_listed_as_expired(admin: Client, clock: ManualClock) -> None:
    secret = make(admin, "liam", expires_at=int(clock.now()) + 60)["key"]
    liam = admin.as_key(secret)
    assert liam.call("POST", "/v1/chat/completions", CHAT).status_code == 200
    clock.advance(61)
    assert liam.call("POST", "/v1/chat/completions", CHAT).status_code == 403  # expiry is judged at every call
    assert admin.call("GET", "/admin/keys/liam").json()["status"] == "expired"
    extended = admin.call("PATCH", "/admin/keys/liam", {"expires_at": int(clock.now()) + 3600})
    assert extended.json()["status"] == "active"
    clock.advance(10.5)
    assert liam.call("POST", "/v1/chat/completions", CHAT).status_code == 200


def test_a_random_key_is_refused_and_configured_keys_still_work(admin: Client) -> None:
    assert admin.as_key("fmk_" + "x" * 43).call("POST", "/v1/chat/completions", CHAT).status_code == 403
    assert admin.as_key(BOOT_KEY).call("POST", "/v1/chat/completions", CHAT).status_code == 200


def test_concurrent_creates_of_one_name_make_exactly_one_key(admin: Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for round_number in range(5):
        name = f"race{round_number}"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: admin.call("POST", "/admin/keys", {"name": n}), [name] * 8))
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] + [409] * 7, codes
        winner = next(a.json()["key"] for a in answers if a.status_code == 201)
        assert admin.as_key(winner).call("POST", "/v1/chat/completions", CHAT).status_code == 200
    assert len(admin.call("GET", "/admin/keys").json()["data"]) == 5


def test_store_failure_is_a_server_error_not_a_refusal(admin: Client, emulator: Emulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With the store unreachable the authorizer cannot judge a stored key: the gateway answers 500 (its
    answer to a failed authorizer), so a client retries, rather than 403, which it would not."""
    monkeypatch.setenv("DOCAPI_ENDPOINT", "http://127.0.0.1:9")
    answer = admin.as_key("fmk_" + "y" * 43).call("POST", "/v1/chat/completions", CHAT)
    assert answer.status_code == 500
    assert admin.as_key(BOOT_KEY).call("POST", "/v1/chat/completions", CHAT).status_code == 200


def test_the_keys_cli_and_make_api_key_drive_the_admin_api(admin: Client, clock: ManualClock) -> None:
    """deploy/keys.py (standard library only) over a real socket, as a user runs it; `make api-key` uses it
    when FM_URL and FM_ADMIN_KEY are set."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ["PATH"], "FM_URL": admin.url, "FM_ADMIN_KEY": ADMIN_KEY}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deploy.keys", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=60)

    made = cli("create", "mona", "--rpm", "30", "--models", "yandexgpt-lite,yandexgpt", "--expires-in-days", "30")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["rpm"] == 30 and sorted(created["models"]) == ["yandexgpt", "yandexgpt-lite"]
    assert admin.as_key(created["key"]).call("POST", "/v1/chat/completions", CHAT).status_code == 200
    changed = json.loads(cli("update", "mona", "--tpm", "900", "--clear", "rpm", "--clear", "expires").stdout)
    assert changed["tpm"] == 900 and changed["rpm"] is None and changed["expires_at"] is None
    assert [k["name"] for k in json.loads(cli("list").stdout)["data"]] == ["mona"]
    assert "key" not in json.loads(cli("show", "mona").stdout)
    rotated = json.loads(cli("rotate", "mona").stdout)["key"]
    assert rotated != created["key"]
    assert json.loads(cli("revoke", "mona").stdout)["status"] == "revoked"
    again = cli("create", "mona")
    assert again.returncode == 1 and "409" in again.stderr and "exists" in again.stderr
    made_by_make = subprocess.run(["make", "-s", "api-key", "NAME=nina", "PYTHON=" + sys.executable], cwd=root,
                                  env=env, capture_output=True, text=True, timeout=60)
    assert made_by_make.returncode == 0, made_by_make.stderr
    assert json.loads(made_by_make.stdout)["name"] == "nina"
    assert admin.call("GET", "/admin/keys/nina").json()["status"] == "active"


@pytest.fixture
def caching_gateway(admin: Client) -> Iterator[Client]:
    """A gateway that caches verdicts as API Gateway does, for Terraform's default authorizer_cache_seconds."""
    from tests.terraform import hcl

    server = gateway.start(authorize=True, verdict_ttl_s=hcl.variables()["authorizer_cache_seconds"]["default"])
    yield Client(server.url, ADMIN_KEY)
    server.shutdown()


def test_the_worst_case_of_both_caches_is_the_stated_bound(caching_gateway: Client, clock: ManualClock) -> None:
    """The gateway's verdict cache (30 s) can take in a verdict the authorizer made from its own cached record
    (10 s): revoked at t=1, the key still works on a path first asked at t=9 until t=39, 38 s after the
    revocation, within the 40 s bound, and never after."""
    admin = caching_gateway
    key = admin.as_key(make(admin, "olga")["key"])
    assert key.call("POST", "/v1/chat/completions", CHAT).status_code == 200  # t=0: both caches take it
    clock.advance(1)
    assert admin.call("DELETE", "/admin/keys/olga").status_code == 200  # t=1: revoked
    clock.advance(8)
    assert key.call("GET", "/v1/models").status_code == 200  # t=9: a new path; the instance still remembers
    clock.advance(22)
    assert key.call("POST", "/v1/chat/completions", CHAT).status_code == 403  # t=31: both caches ran out
    clock.advance(7)
    assert key.call("GET", "/v1/models").status_code == 200  # t=38: the gateway's verdict of t=9
    clock.advance(1.5)
    assert key.call("GET", "/v1/models").status_code == 403  # t=39.5, and from then on
    clock.advance(100)
    assert key.call("GET", "/v1/models").status_code == 403


def test_a_non_admin_learns_nothing_from_a_bad_body_either(admin: Client) -> None:
    """The admin check comes before the body is read: a bad body from another key is the same 404."""
    boot = admin.as_key(BOOT_KEY)
    for method, path, body in (("POST", "/admin/keys", {"name": "bad name", "rpm": 0}),
                               ("PATCH", "/admin/keys/x", {"colour": 1}), ("POST", "/admin/keys", [1])):
        answer = boot.call(method, path, body)
        assert answer.status_code == 404 and "name" not in answer.text.replace(path, ""), answer.text
