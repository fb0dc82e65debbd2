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
import io
import json
import re
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from functions.operations.handler import handler
from local.aws import InProcessMoto
from shared import errors, policy
from shared.config import Settings
from shared.jobs import keys
from shared.jobs.store import JobStore
from shared.policy import KeyCache, KeyPolicy
from tests.clock import ManualClock
from tests.conftest import Aws, race, reset_caches
from tests.unit.test_promises_store import Cancel, Refuse

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


def logged(log: io.StringIO, message: str) -> list[dict[str, Any]]:
    """The key name and the caller of each INFO line with this message."""
    found = [json.loads(line) for line in log.getvalue().splitlines()]
    return [{"key_name": line["key_name"], "by": line["by"]} for line in found
            if line.get("msg") == message and line["level"] == "INFO"]


def view(name: str, created: int, **fields: Any) -> dict[str, Any]:
    return {"object": "api_key", "name": name, "status": "active", "redacted_value": None, "created_at": created,
            "expires_at": None, "revoked_at": None, "rotated_at": None, "models": None, "rpm": None, "tpm": None,
            "monthly_tokens": None, "monthly_budget": None, **fields}


# -- create -------------------------------------------------------------------------------------------------------

def test_a_created_key_is_shown_once_with_its_secret_and_the_authorizer_finds_its_policy(
        store: JobStore, clock: ManualClock, log_output: io.StringIO) -> None:
    now = int(clock.now())
    created = make("team-a", models=["yandexgpt-lite", "gpt://b1g/yandexgpt/latest", "yandexgpt-lite"], rpm=5,
                   tpm=1000, monthly_tokens=10**6, monthly_budget=12.3456789, expires_at=now + 3600)
    secret = created.pop("key")
    assert re.fullmatch(SECRET_RULE, secret)
    assert created == view("team-a", now, redacted_value=f"fmk_...{secret[-4:]}", expires_at=now + 3600,
                           models=["yandexgpt-lite", "gpt://b1g/yandexgpt/latest", "yandexgpt-lite"], rpm=5, tpm=1000,
                           monthly_tokens=10**6, monthly_budget=12.3456789)
    assert seen_by_authorizer(store, secret) == KeyPolicy(
        name="team-a", models=("gpt://b1g/yandexgpt/latest", "yandexgpt-lite"), rpm=5, tpm=1000,
        monthly_tokens=10**6, monthly_budget=12.345679)  # the allow-list a set, money kept to 6 decimal places
    status, read = call("GET", "/admin/keys/team-a")
    assert status == 200 and read["models"] == ["gpt://b1g/yandexgpt/latest", "yandexgpt-lite"]
    assert (read["monthly_budget"], read["expires_at"], read["rpm"]) == (12.345679, now + 3600, 5)
    everything = json.dumps([store.item(key) for key in (keys.name_key("team-a"), keys.NAMES_ITEM)], default=str)
    assert secret not in everything and secret not in log_output.getvalue()
    assert hashlib.sha256(secret.encode()).hexdigest() not in json.dumps(read) + log_output.getvalue()
    assert logged(log_output, "key created") == [{"key_name": "team-a", "by": ADMIN}]
    another = make("team-b")
    assert another["key"] != secret and seen_by_authorizer(store, another["key"]) == KeyPolicy(name="team-b")
    assert another == view("team-b", now, redacted_value=f"fmk_...{another['key'][-4:]}", key=another["key"])


def test_a_whole_budget_is_written_without_an_exponent_and_a_small_one_to_its_sixth_decimal(store: JobStore) -> None:
    big, small = make("big", monthly_budget=1e12), make("small", monthly_budget=0.0000015)
    assert seen_by_authorizer(store, big["key"]) == KeyPolicy(name="big", monthly_budget=1e12)
    assert seen_by_authorizer(store, small["key"]) == KeyPolicy(name="small", monthly_budget=0.000002)
    assert store.item(keys.name_key("big"))["monthly_budget"] == 10**12


@pytest.mark.parametrize("name", ["ops", "boot", "anonymous"])
def test_configured_names_the_admin_caller_and_anonymous_are_reserved(store: JobStore, name: str) -> None:
    status, body = call("POST", "/admin/keys", {"name": name})
    assert status == 409 and error(body) == (f"{name!r} is reserved (a configured key, the admin caller, or "
                                             "anonymous)", "name")
    assert store.item(keys.name_key(name)) is None


def test_without_an_admin_caller_only_anonymous_and_the_configured_names_are_reserved(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env().model_copy(update={"admin_caller": None})
    assert keys.reserved_names(settings) == {"anonymous", "ops", "boot"}
    other = settings.model_copy(update={"admin_caller": "root", "caller_names": ("boot",)})
    assert keys.reserved_names(other) == {"anonymous", "boot", "root"}  # an admin caller is reserved too


def test_a_name_is_taken_for_good_even_by_a_revoked_key(store: JobStore) -> None:
    make("once")
    assert call("DELETE", "/admin/keys/once")[0] == 200
    status, body = call("POST", "/admin/keys", {"name": "once", "rpm": 3})
    assert status == 409 and error(body) == ("a key named 'once' exists", "name")
    assert call("GET", "/admin/keys/once")[1]["rpm"] is None  # the first key's record, untouched


def test_concurrent_creates_of_one_name_make_exactly_one_key(store: JobStore) -> None:
    answers = race(6, lambda n: call("POST", "/admin/keys", {"name": "shared", "rpm": n + 1}), timeout=10)
    assert sorted(status for status, _ in answers) == [201] + [409] * 5
    (winner,) = [body for status, body in answers if status == 201]
    assert seen_by_authorizer(store, winner["key"]) == KeyPolicy(name="shared", rpm=winner["rpm"])
    assert [k["name"] for k in call("GET", "/admin/keys")[1]["data"]] == ["shared"]


@pytest.mark.parametrize("offset", [0, -1])
def test_an_expiry_not_in_the_future_is_a_400_naming_the_field(store: JobStore, clock: ManualClock,
                                                               offset: int) -> None:
    at = int(clock.now()) + offset
    clock.advance(at - clock.now())  # the clock exactly on a whole second
    status, body = call("POST", "/admin/keys", {"name": "late", "expires_at": at})
    assert status == 400 and error(body) == ("must be in the future (unix seconds)", "expires_at")
    assert store.item(keys.name_key("late")) is None
    make("fine", expires_at=at + 1)
    status, body = call("PATCH", "/admin/keys/fine", {"expires_at": at})
    assert status == 400 and error(body)[1] == "expires_at"


def test_a_store_that_fails_a_create_is_a_server_error_not_a_conflict(store: JobStore, aws: Aws) -> None:
    aws.wrap(lambda app: Cancel(app, times=1))
    status, body = call("POST", "/admin/keys", {"name": "unlucky"})
    assert status == 503 and body["error"]["message"] == "job store: creating the key did not complete; try again"
    assert make("unlucky")["name"] == "unlucky"  # nothing was taken


# -- who may call ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("operation", [keys.create, keys.list_keys, keys.retrieve, keys.update, keys.revoke,
                                       keys.rotate])
@pytest.mark.parametrize(("admin", "caller"), [("ops", "alice"), (None, "ops"), ("", "anonymous")])
def test_every_operation_is_a_404_for_anyone_but_the_admin_caller(store: JobStore, operation: Any,
                                                                  admin: str | None, caller: str) -> None:
    """Even handed a request directly (the runtime refuses such a caller before that)."""
    settings = Settings.from_env().model_copy(update={"admin_caller": admin})
    make("victim")
    request = SimpleNamespace(path="/admin/keys/victim")
    inv = SimpleNamespace(settings=settings, caller=caller, request=request, path_params={"name": "victim"})
    body = keys.KeyCreateRequest(name="intruder") if operation is keys.create else keys.KeyUpdateRequest(rpm=1)
    with pytest.raises(errors.NotFoundError, match="^no route for /admin/keys/victim$"):
        operation(body, inv)
    inv.request = None
    with pytest.raises(errors.NotFoundError, match="^no route for /admin/keys$"):
        operation(body, inv)
    assert call("GET", "/admin/keys/victim")[1]["rpm"] is None and store.item(keys.name_key("intruder")) is None


# -- list and read --------------------------------------------------------------------------------------------------

def test_the_list_has_every_key_oldest_first_with_its_status_and_never_a_secret(store: JobStore, clock: ManualClock,
                                                                                 log_output: io.StringIO) -> None:
    assert call("GET", "/admin/keys") == (200, {"object": "list", "data": []})
    start = int(clock.now()) + 1
    clock.advance(start - clock.now())  # on a whole second, so b's expiry comes exactly
    b = make("b", expires_at=start + 10)
    a = make("a")
    clock.advance(5)
    c = make("c", monthly_tokens=7)
    call("DELETE", "/admin/keys/a")
    clock.advance(5)  # b's expiry: now exactly
    status, listing = call("GET", "/admin/keys")
    assert status == 200 and listing["object"] == "list"
    assert [(k["name"], k["status"], k["created_at"]) for k in listing["data"]] == [
        ("a", "revoked", start), ("b", "expired", start), ("c", "active", start + 5)]
    text = json.dumps(listing) + log_output.getvalue()
    for secret in (a["key"], b["key"], c["key"]):
        assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() not in text
    assert call("GET", "/admin/keys/b")[1]["status"] == "expired"
    clock.advance(-1)
    assert call("GET", "/admin/keys/b")[1]["status"] == "active"


@pytest.mark.parametrize("name", ["nobody", "bad%20name", "-x"])
def test_reading_a_key_that_does_not_exist_is_a_404_naming_it(store: JobStore, name: str) -> None:
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/rotate")):
        status, body = call(method, f"/admin/keys/{name}{path}")
        assert status == 404 and body["error"]["message"].startswith("no key named "), (method, body)
    status, body = call("PATCH", "/admin/keys/nobody", {"rpm": 1})
    assert status == 404 and body["error"]["message"] == "no key named 'nobody'"


def test_a_name_that_breaks_the_rule_is_not_looked_up(store: JobStore, aws: Aws) -> None:
    """A record whose id merely looks like a key's is never answered for a name the rule refuses."""
    store._write("put_item", TableName=store.table, Item={"id": {"S": "apikey#-x"}, "name": {"S": "-x"},
                                                         "digest": {"S": "d"}})
    assert keys.name_key("-x") == "apikey#-x"
    status, body = call("GET", "/admin/keys/-x")
    assert status == 404 and body["error"]["message"] == "no key named '-x'"


# -- change ---------------------------------------------------------------------------------------------------------

def test_a_patch_sets_the_given_fields_removes_the_null_ones_and_the_authorizer_sees_it(
        store: JobStore, clock: ManualClock, log_output: io.StringIO) -> None:
    now = int(clock.now())
    key = make("k", models=["yandexgpt"], rpm=5, tpm=100, monthly_budget=2.5, expires_at=now + 100)["key"]
    status, changed = call("PATCH", "/admin/keys/k", {"rpm": 7, "models": None, "expires_at": None,
                                                      "monthly_tokens": 1000})
    assert status == 200
    assert changed == view("k", now, redacted_value=f"fmk_...{key[-4:]}", rpm=7, tpm=100, monthly_tokens=1000,
                           monthly_budget=2.5)
    assert call("GET", "/admin/keys/k")[1] == changed
    assert seen_by_authorizer(store, key) == KeyPolicy(name="k", rpm=7, tpm=100, monthly_tokens=1000,
                                                       monthly_budget=2.5)
    record = store.item(keys.name_key("k"))
    assert "models" not in record and "key_expires_at" not in record
    status, changed = call("PATCH", "/admin/keys/k", {"expires_at": now + 50})
    assert status == 200 and changed["expires_at"] == now + 50 and changed["rpm"] == 7
    clock.advance(50)
    assert seen_by_authorizer(store, key) is None  # expired
    line = [x for x in map(json.loads, log_output.getvalue().splitlines()) if x["msg"] == "key changed"][0]
    assert (line["key_name"], line["by"], line["fields"]) == ("k", ADMIN, ["expires_at", "models", "monthly_tokens",
                                                                           "rpm"])


def test_a_patch_that_only_removes_keeps_the_rest(store: JobStore) -> None:
    key = make("k", rpm=5, tpm=9)["key"]
    status, changed = call("PATCH", "/admin/keys/k", {"rpm": None})
    assert status == 200 and (changed["rpm"], changed["tpm"]) == (None, 9)
    assert seen_by_authorizer(store, key) == KeyPolicy(name="k", tpm=9)
    status, changed = call("PATCH", "/admin/keys/k", {"tpm": 4})
    assert status == 200 and seen_by_authorizer(store, key) == KeyPolicy(name="k", tpm=4)


def test_an_empty_patch_is_a_400_and_a_revoked_key_cannot_be_changed(store: JobStore) -> None:
    make("k")
    status, body = call("PATCH", "/admin/keys/k", {})
    assert status == 400 and "body" in body["error"]["message"]  # the request model's own minProperties
    inv = SimpleNamespace(settings=Settings.from_env(), caller=ADMIN, request=None, path_params={"name": "k"})
    with pytest.raises(errors.BadRequestError) as refused:  # handed one anyway: the operation says the same
        keys.update(keys.KeyUpdateRequest(), inv)
    assert refused.value.details == [{"@type": "field", "field": "body", "description": (
        "give at least one of models, rpm, tpm, monthly_tokens, monthly_budget, expires_at")}]
    call("DELETE", "/admin/keys/k")
    status, body = call("PATCH", "/admin/keys/k", {"rpm": 1})
    assert status == 409 and body["error"]["message"] == "the key 'k' is revoked"


def test_a_change_that_loses_a_race_is_tried_once_more_on_the_new_state_then_answered_409(
        store: JobStore, aws: Aws) -> None:
    key = make("k", rpm=1)["key"]
    aws.wrap(lambda app: Cancel(app, times=1))
    assert call("PATCH", "/admin/keys/k", {"rpm": 2})[0] == 200
    assert seen_by_authorizer(store, key) == KeyPolicy(name="k", rpm=2)
    aws.restore()
    aws.wrap(lambda app: Cancel(app, times=2))
    status, body = call("PATCH", "/admin/keys/k", {"rpm": 3})
    assert status == 409 and body["error"]["message"] == "the key 'k' changed meanwhile; try again"
    assert seen_by_authorizer(store, key) == KeyPolicy(name="k", rpm=2)
    for method, path in (("POST", "/admin/keys/k/rotate"), ("DELETE", "/admin/keys/k")):
        aws.restore()
        aws.wrap(lambda app: Cancel(app, times=2))
        status, body = call(method, path)
        assert status == 409 and body["error"]["message"] == "the key changed meanwhile; try again"
        aws.restore()
        aws.wrap(lambda app: Cancel(app, times=1))
        assert call(method, path)[0] == 200


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


def test_a_revoke_racing_a_rotate_leaves_no_secret_working(store: JobStore, aws: Aws) -> None:
    """The revoke has read the key; the rotate lands before its write: the revoke is tried again on the new state."""
    old = make("k", rpm=1)["key"]
    rotations: list[Any] = []
    aws.wrap(lambda app: Before(app, lambda: rotations.append(call("POST", "/admin/keys/k/rotate"))))
    status, revoked = call("DELETE", "/admin/keys/k")
    ((rotated_status, rotated),) = rotations
    assert (status, rotated_status, revoked["status"]) == (200, 200, "revoked")
    assert seen_by_authorizer(store, old) is None and seen_by_authorizer(store, rotated["key"]) is None
    assert revoked["redacted_value"] == rotated["redacted_value"]  # the rotated key is the one revoked


# -- revoke and rotate ----------------------------------------------------------------------------------------------

def test_a_revoked_key_stops_at_once_keeps_its_record_and_revoking_it_again_answers_the_same(
        store: JobStore, clock: ManualClock, log_output: io.StringIO) -> None:
    created = make("k", tpm=5)
    clock.advance(3)
    status, revoked = call("DELETE", "/admin/keys/k")
    now = int(clock.now())
    assert status == 200 and revoked == view("k", now - 3, status="revoked", revoked_at=now, tpm=5,
                                             redacted_value=created["redacted_value"])
    assert seen_by_authorizer(store, created["key"]) is None
    clock.advance(3)
    assert call("DELETE", "/admin/keys/k") == (200, revoked)
    assert call("GET", "/admin/keys/k") == (200, revoked)
    status, body = call("POST", "/admin/keys/k/rotate")
    assert status == 409 and body["error"]["message"] == "the key 'k' is revoked; create a new one"
    assert seen_by_authorizer(store, created["key"]) is None
    assert logged(log_output, "key revoked") == [{"key_name": "k", "by": ADMIN}]  # once


def test_a_rotated_key_has_a_new_secret_the_same_policy_and_the_old_secret_stops(
        store: JobStore, clock: ManualClock, log_output: io.StringIO) -> None:
    start = int(clock.now())
    old = make("k", models=["yandexgpt"], monthly_tokens=50, expires_at=start + 99)
    clock.advance(2)
    status, rotated = call("POST", "/admin/keys/k/rotate")
    secret = rotated.pop("key")
    assert status == 200 and re.fullmatch(SECRET_RULE, secret) and secret != old["key"]
    assert rotated == view("k", start, redacted_value=f"fmk_...{secret[-4:]}", rotated_at=start + 2,
                           models=["yandexgpt"], monthly_tokens=50, expires_at=start + 99)
    assert call("GET", "/admin/keys/k")[1] == rotated
    assert seen_by_authorizer(store, old["key"]) is None
    assert seen_by_authorizer(store, secret) == KeyPolicy(name="k", models=("yandexgpt",), monthly_tokens=50)
    clock.advance(97)
    assert seen_by_authorizer(store, secret) is None  # the expiry came along
    assert secret not in log_output.getvalue()
    assert logged(log_output, "key rotated") == [{"key_name": "k", "by": ADMIN}]


def test_the_records_a_key_leaves_are_its_own_and_the_names_index(store: JobStore) -> None:
    """Only the name record (digest, never the secret), the digest record and the names' set: nothing else."""
    created = make("k", rpm=2)
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    assert store.item(keys.NAMES_ITEM)["names"] == {"k"} or store.item(keys.NAMES_ITEM)["names"] == ["k"]
    record = store.item(keys.name_key("k"))
    assert record["digest"] == digest and record["name"] == "k" and int(record["rpm"]) == 2
    assert store.item(policy.digest_key(digest)) == {"id": policy.digest_key(digest), "name": "k", "rpm": 2}
    call("PATCH", "/admin/keys/k", {"rpm": 3})
    assert store.item(policy.digest_key(digest)) == {"id": policy.digest_key(digest), "name": "k", "rpm": 3}


def test_a_store_refusal_is_a_server_error(store: JobStore, aws: Aws) -> None:
    make("k")
    aws.wrap(lambda app: Refuse(app, "TransactWriteItems", "ValidationException"))
    for method, path, body in (("PATCH", "/admin/keys/k", {"rpm": 1}), ("DELETE", "/admin/keys/k", None),
                               ("POST", "/admin/keys/k/rotate", None), ("POST", "/admin/keys", {"name": "n"})):
        status, answer = call(method, path, body)
        assert status >= 500 and status != 500, (method, path, answer)


def test_threads_do_not_share_a_secret(store: JobStore) -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    def one(n: int) -> None:
        secret = make(f"t{n}")["key"]
        with lock:
            seen.add(secret)
    race(4, one, timeout=10)
    assert len(seen) == 4
