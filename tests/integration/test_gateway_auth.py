"""The deployed gateway's API key scheme, locally: the authorizer function decides, over real HTTP.

With keys for alice, bob and an admin (FM_ADMIN_CALLER), every route that takes an operation id
answers bob 404 for alice's work, exactly as for an id that does not exist, and leaves it as it was;
the admin sees and cancels everything; presigned result URLs go to the owner only."""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from typing import Any

import pytest
import requests

from local import gateway
from local.functions import load
from local.triggers import timer_event
from tests.conftest import Emulator, FakeContext, Jobs, reset_caches

pytestmark = pytest.mark.integration

KEY = "fmk_alice-test-key-0123456789abcdef"
KEYS = {"alice": KEY, "bob": "fmk_bob-test-key-0123456789abcdef00", "ops": "fmk_ops-admin-key-0123456789abcdef0"}
FM = "/foundationModels/v1"


@pytest.fixture
def secured(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch,
            authorizing_gateway: gateway.GatewayServer) -> str:
    monkeypatch.setenv("CALLER_KEY_SHA256", ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"
                                                     for name, key in KEYS.items()))
    monkeypatch.setenv("FM_ADMIN_CALLER", "ops")
    reset_caches()
    return authorizing_gateway.url


BODY = {"modelUri": "yandexgpt-lite", "messages": [{"role": "user", "text": "hi"}]}
SECRET_PROMPT = "alice's private question about the Volga"


class Caller:
    """One API key's view of the gateway."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Api-Key {KEYS[name]}"

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=30)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=30)

    def operation(self, op_id: str) -> dict[str, Any]:
        answer = self.get(f"/operations/{op_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def id_routes(self, op_id: str) -> list[requests.Response]:
        """Every route that takes an operation id: GET, POST …:cancel and upstream's GET …:cancel."""
        return [self.get(f"/operations/{op_id}"), self.post(f"/operations/{op_id}:cancel"),
                self.get(f"/operations/{op_id}:cancel")]


def callers(url: str) -> tuple[Caller, Caller, Caller]:
    return Caller(url, "alice"), Caller(url, "bob"), Caller(url, "ops")


def _normalised(answer: requests.Response, op_id: str) -> tuple[int, str, dict[str, Any]]:
    """Status, content type and body with the id and our per-request ids taken out."""
    body = json.loads(answer.text.replace(op_id, "<id>"))
    body["error"]["details"] = [d for d in body["error"]["details"] if "requestId" not in d]
    return answer.status_code, answer.headers["Content-Type"], body


def _unknown_id(like: str) -> str:
    return "fmo" + uuid.uuid4().hex[:len(like) - 3]


def _refusals(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "access to another caller's work refused"]


def _poller() -> dict[str, Any]:
    return load("batch_poller")(timer_event(), FakeContext(60_000, request_id=str(uuid.uuid4())))


def test_requests_need_a_known_key(secured: str, stack_env: Emulator) -> None:
    url = f"{secured}/foundationModels/v1/completion"
    assert requests.post(url, json=BODY, timeout=10).status_code == 401
    assert requests.post(url, json=BODY, headers={"Authorization": f"Api-Key {KEY}x"}, timeout=10).status_code == 403
    assert len(stack_env.calls("/completion")) == 0
    answer = requests.post(url, json=BODY, headers={"Authorization": f"Api-Key {KEY}"}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_the_caller_named_by_the_authorizer_owns_the_operation(secured: str, jobs: Jobs) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completionAsync", json=BODY,
                           headers={"Authorization": f"Api-Key {KEY}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["createdBy"] == "alice"


def test_another_callers_operation_is_not_found_and_is_left_as_it_was(secured: str, jobs: Jobs,
                                                                       log_output: io.StringIO) -> None:
    alice, bob, ops = callers(secured)
    submitted = alice.post(f"{FM}/completionAsync", {**BODY, "messages": [{"role": "user", "text": SECRET_PROMPT}]})
    assert submitted.status_code == 200, submitted.text
    op_id = submitted.json()["id"]
    unknown = _unknown_id(op_id)

    for theirs, nobodys in zip(bob.id_routes(op_id), bob.id_routes(unknown), strict=True):
        assert theirs.status_code == 404
        assert _normalised(theirs, op_id) == _normalised(nobodys, unknown)  # the same answer, apart from the id
        assert "alice" not in theirs.text and "Volga" not in theirs.text
    assert _normalised(bob.get(f"/operations/{op_id}"), op_id)[2]["error"]["message"] == "operation <id> not found"

    still = alice.operation(op_id)  # bob's cancels changed nothing
    assert still["done"] is False and "error" not in still and still["createdBy"] == "alice"
    jobs.drain()
    finished = alice.operation(op_id)
    assert finished["done"] is True and "error" not in finished
    assert finished["response"]["alternatives"][0]["message"]["text"].endswith(SECRET_PROMPT)
    assert bob.get(f"/operations/{op_id}").status_code == 404  # done or not, it stays alice's

    seen_by_admin = ops.operation(op_id)
    assert seen_by_admin["createdBy"] == "alice" and seen_by_admin["response"] == finished["response"]

    refusals = _refusals(log_output)
    assert len(refusals) == 5 and {r["caller"] for r in refusals} == {"bob"}
    assert {r["id"] for r in refusals} == {op_id}  # the unknown id is not someone else's work: no line
    assert all("alice" not in json.dumps(r) and "Volga" not in json.dumps(r) for r in refusals)


def test_the_admin_caller_can_cancel_anyones_operation(secured: str, jobs: Jobs) -> None:
    alice, bob, ops = callers(secured)
    op_id = alice.post(f"{FM}/completionAsync", BODY).json()["id"]
    assert bob.post(f"/operations/{op_id}:cancel").status_code == 404
    cancelled = ops.post(f"/operations/{op_id}:cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["done"] is True and cancelled.json()["error"]["code"] == 1
    assert alice.operation(op_id)["error"]["message"] == "cancelled by the caller"
    jobs.drain()
    assert alice.operation(op_id)["error"]["code"] == 1  # the worker skips a cancelled operation


def test_presigned_result_urls_go_to_the_owner_only(secured: str, jobs: Jobs, stack_env: Emulator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "10")  # every result goes by URL
    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    reset_caches()
    stack_env.configure(asyncDelayMs=0)
    alice, bob, ops = callers(secured)
    op_id = alice.post(f"{FM}/completionAsync", BODY).json()["id"]
    batch = alice.post(f"{FM}/completionBatch", {"modelUri": "yandexgpt-lite", "requests": [
        {"customId": f"q{i}", "messages": [{"role": "user", "text": f"question {i}"}]} for i in range(3)]})
    assert batch.status_code == 200, batch.text
    batch_id = batch.json()["id"]
    for theirs in bob.id_routes(batch_id):  # the batch is running: bob can neither see nor cancel it
        assert theirs.status_code == 404
    for _ in range(20):
        jobs.drain()
        _poller()
        if alice.operation(batch_id)["done"]:
            break
    signed = re.compile(r"X-Amz-Signature|https?://[^\"]*" + re.escape(jobs.resources.bucket))

    for item_id in (op_id, batch_id):
        owner_view = alice.operation(item_id)
        assert owner_view["done"] is True and "error" not in owner_view, owner_view
        fetched = requests.get(owner_view["response"]["resultUrl"], timeout=30)
        assert fetched.status_code == 200 and fetched.content
        admin_answer = ops.get(f"/operations/{item_id}")
        assert admin_answer.status_code == 200
        assert "resultUrl" not in admin_answer.json()["response"] and not signed.search(admin_answer.text)
        assert admin_answer.json()["response"]["sizeBytes"] == owner_view["response"]["sizeBytes"]
        for theirs in bob.id_routes(item_id):
            assert theirs.status_code == 404 and not signed.search(theirs.text)
    assert alice.operation(batch_id)["response"]["succeeded"] == "3"
@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"},  # the openai client, LangChain, curl -H "Authorization: Bearer ..."
    {"Authorization": f"Api-Key {KEY}"},
    {"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY},  # an X-Api-Key beside it must carry the same key
])
def test_the_key_is_read_from_authorization(secured: str, jobs: Jobs, headers: dict[str, str]) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completionAsync", json=BODY, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["createdBy"] == "alice"
    op_id = answer.json()["id"]
    assert requests.get(f"{secured}/operations/{op_id}", headers=headers, timeout=10).status_code == 200


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),  # neither header: the gateway refuses before the authorizer runs
    ({"Authorization": ""}, 401),
    ({"X-Api-Key": KEY}, 401),  # the spec's one scheme is Authorization (the form the gateway docs describe)
    ({"Authorization": f"Basic {KEY}"}, 403),
    ({"Authorization": f"Bearer {KEY}x"}, 403),
    ({"Authorization": f"Bearer {KEY}", "X-Api-Key": KEY + "x"}, 403),
    ({"Authorization": f"Bearer {KEY}", "X-Api-Key": "fmk_someone-else"}, 403),
])
def test_a_missing_wrong_or_ambiguous_key_is_refused(secured: str, stack_env: Emulator, headers: dict[str, str],
                                                     status: int) -> None:
    answer = requests.post(f"{secured}/foundationModels/v1/completion", json=BODY, headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    assert len(stack_env.calls("/completion")) == 0


def _upload(caller: Caller, data: bytes) -> str:
    answer = caller.http.post(caller.url + "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"},
                              timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_a_large_files_presigned_link_goes_to_its_owner_only(secured: str, jobs: Jobs,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """/v1/files/{id}/content hands a large file over as a 307 to a presigned URL: a bearer link that escapes
    every later check, so, as for operation results, only the owner gets one. The admin caller may read the
    file's record (and its size), and gets a 403 saying why instead of a link; bob gets the 404 of an unknown id."""
    monkeypatch.setenv("RESULT_INLINE_MAX_BYTES", "10")
    reset_caches()
    alice, bob, ops = callers(secured)
    data = (json.dumps({"custom_id": "a", "secret": SECRET_PROMPT}) + "\n").encode()
    file_id = _upload(alice, data)
    signed = re.compile(r"X-Amz-Signature|" + re.escape(jobs.resources.bucket))

    owners = alice.http.get(f"{alice.url}/v1/files/{file_id}/content", allow_redirects=False, timeout=30)
    assert owners.status_code == 307 and requests.get(owners.headers["Location"], timeout=30).content == data

    admins = ops.http.get(f"{ops.url}/v1/files/{file_id}/content", allow_redirects=False, timeout=30)
    assert admins.status_code == 403, admins.text
    assert "Location" not in admins.headers and not signed.search(admins.text) and "Volga" not in admins.text
    assert admins.json()["error"]["type"] == "permission_error"
    assert ops.get(f"/v1/files/{file_id}").json()["bytes"] == len(data)  # the record stays the admin's to read

    theirs = bob.http.get(f"{bob.url}/v1/files/{file_id}/content", allow_redirects=False, timeout=30)
    assert theirs.status_code == 404 and "Location" not in theirs.headers and not signed.search(theirs.text)


def _header_names(answer: requests.Response) -> list[str]:
    """The answer's header names, less the per-request ones."""
    return sorted(k.lower() for k in answer.headers if k.lower() not in ("date", "x-request-id", "x-client-request-id",
                                                                          "content-length"))


def test_every_v1_route_that_takes_an_id_answers_bob_as_for_an_unknown_id(secured: str, jobs: Jobs,
                                                                            stack_env: Emulator,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            log_output: io.StringIO) -> None:
    """Alice's input file, her batch, the batch's output file and the batch's job id under /operations: for bob
    each answers exactly what an unknown id of the same form answers (status, headers, body), changes nothing,
    lists nothing, and leaves one refusal line per attempt."""
    monkeypatch.setenv("FM_ASYNC_START_RPS", "5000")  # the batch finishes in a few poller rounds, never paced
    monkeypatch.setenv("FM_OPERATION_GET_RPS", "5000")
    reset_caches()
    stack_env.configure(asyncDelayMs=0)
    alice, bob, _ = callers(secured)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "yandexgpt-lite", "messages": [{"role": "user", "content": SECRET_PROMPT}]}}
    file_id = _upload(alice, (json.dumps(line) + "\n").encode())
    batch = alice.post("/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                       "completion_window": "24h"}).json()
    for _ in range(20):
        jobs.drain()
        _poller()
        batch = alice.get(f"/v1/batches/{batch['id']}").json()
        if batch["status"] == "completed":
            break
    output = batch["output_file_id"]
    assert batch["status"] == "completed" and output, batch
    job = batch["id"].removeprefix("batch_")
    unknown_file, unknown_job = "file-" + "0" * 12 + uuid.uuid4().hex[:12], _unknown_id(job)

    def attempts(caller: Caller, file: str, other_file: str, job_id: str) -> list[requests.Response]:
        create = {"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        return [caller.get(f"/v1/files/{file}"), caller.get(f"/v1/files/{file}/content"),
                caller.get(f"/v1/files/{other_file}/content"), caller.get(f"/v1/files/{file}/"),
                caller.http.delete(f"{caller.url}/v1/files/{other_file}", timeout=30),
                caller.post("/v1/batches", create), caller.get(f"/v1/batches/batch_{job_id}"),
                caller.post(f"/v1/batches/batch_{job_id}/cancel"), caller.post(f"/v1/batches/batch_{job_id}/cancel/"),
                caller.get(f"/operations/{job_id}"), caller.post(f"/operations/{job_id}%3Acancel")]

    theirs = attempts(bob, file_id, output, job)
    nobodys = attempts(bob, unknown_file, unknown_file, unknown_job)
    for mine, unknown in zip(theirs, nobodys, strict=True):
        assert mine.status_code == 404, (mine.request.url, mine.text)
        assert "Location" not in mine.headers and "alice" not in mine.text and "Volga" not in mine.text
        norm = mine.text.replace(file_id, "<id>").replace(output, "<id>").replace(job, "<id>")
        unknown_norm = unknown.text.replace(unknown_file, "<id>").replace(unknown_job, "<id>")
        strip = re.compile(r'"requestId":"[^"]*"')
        assert strip.sub("", norm) == strip.sub("", unknown_norm), (mine.request.url, norm, unknown_norm)
        assert mine.status_code == unknown.status_code and _header_names(mine) == _header_names(unknown)
    for after in (file_id, output):
        assert bob.get(f"/v1/files?after={after}").json()["data"] == []
    assert bob.get(f"/v1/batches?after={batch['id']}").json()["data"] == []

    again = alice.get(f"/v1/batches/{batch['id']}").json()  # nothing bob did changed anything
    assert again["status"] == "completed" and again["output_file_id"] == output
    assert alice.get(f"/v1/files/{file_id}").status_code == 200 and alice.get(f"/v1/files/{output}").status_code == 200
    assert sorted(f["id"] for f in alice.get("/v1/files").json()["data"]) == sorted([file_id, output])

    refusals = _refusals(log_output)
    assert len(refusals) == len(theirs) and {r["caller"] for r in refusals} == {"bob"}
    assert {r["id"] for r in refusals} == {file_id, output, batch["id"], job}
    assert all("alice" not in json.dumps(r) and "Volga" not in json.dumps(r) for r in refusals)


def test_another_callers_native_job_through_the_batches_door_is_a_logged_404(secured: str, jobs: Jobs,
                                                                              log_output: io.StringIO) -> None:
    """/v1/batches/batch_<id> reads only OpenAI batches, so a native job's id is unknown there: for its owner
    (no refusal line: their own work), and for bob, as every attempt on another caller's work, a logged one."""
    alice, bob, _ = callers(secured)
    op_id = alice.post(f"{FM}/completionAsync", BODY).json()["id"]
    unknown = _unknown_id(op_id)
    for caller in (alice, bob):
        for path in (f"/v1/batches/batch_{op_id}", f"/v1/batches/batch_{op_id}/cancel"):
            answer = caller.get(path) if path.endswith(op_id) else caller.post(path)
            nobodys = caller.get(path.replace(op_id, unknown)) if path.endswith(op_id) else \
                caller.post(path.replace(op_id, unknown))
            assert answer.status_code == nobodys.status_code == 404, answer.text
            assert answer.json() == json.loads(nobodys.text.replace(unknown, op_id))
    assert alice.operation(op_id)["done"] is False  # bob's cancel through the other door changed nothing
    refusals = _refusals(log_output)
    assert [(r["caller"], r["id"]) for r in refusals] == [("bob", f"batch_{op_id}")] * 2


@pytest.mark.parametrize("forged", ["ops", "alice"])
def test_in_iam_mode_a_forged_authorizer_context_names_nobody(secured: str, jobs: Jobs, forged: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With auth_mode = iam there is no gateway: a direct invoker writes the whole event, authorizer context
    included. Claiming the admin key name, or the owner's, must not reach alice's work (made while the
    deployment had its gateway) through any operation the function serves."""
    alice, _, _ = callers(secured)
    op_id = alice.post(f"{FM}/completionAsync", BODY).json()["id"]
    monkeypatch.setenv("FM_AUTH_MODE", "iam")
    reset_caches()
    operations = load("operations")

    def direct(operation: str, path: str = "", method: str = "GET") -> dict[str, Any]:
        event = {"httpMethod": method, "headers": {}, "path": path, "url": path, "body": "", "isBase64Encoded": False,
                 "queryStringParameters": {} if path else {"operation": operation, "operationId": op_id},
                 "requestContext": {"identity": {"sourceIp": "203.0.113.7", "userAgent": "x"}, "httpMethod": method,
                                    "requestId": str(uuid.uuid4()), "authorizer": {"caller": forged}}}
        return operations(event, FakeContext(30_000, request_id=str(uuid.uuid4())))

    for answer in (direct("get"), direct("cancel"), direct("", f"/operations/{op_id}"),
                   direct("", f"/operations/{op_id}:cancel", "POST")):
        assert answer["statusCode"] == 404, answer
        assert "alice" not in answer["body"] and "hi" not in json.loads(answer["body"])["error"]["message"]
    monkeypatch.setenv("FM_AUTH_MODE", "api_key")
    reset_caches()
    assert alice.operation(op_id)["done"] is False  # no forged cancel went through
