"""Logs are JSON lines with request ids and never hold secrets; every sample event works end to end;
handler imports stay lean."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.functions import load
from tests.conftest import API_KEY, ROOT, Emulator, FakeContext, event_names, load_event, reset_caches
from tests.keys import authorized_key

pytestmark = pytest.mark.integration

FUNCTION_OF = {"completion": "completion", "tokenize": "completion", "responses": "completion", "embedding": "embedding",
               "classification": "classification"}


def _function_for(event_name: str) -> str:
    return next(fn for key, fn in FUNCTION_OF.items() if key in event_name)


def _answer_is_what_the_route_promises(name: str, body: str) -> None:
    """The body has the shape of the event's route, not merely a 200."""
    if "stream" in name:
        chunks = [json.loads(line) for line in body.splitlines()]
        assert chunks[-1]["result"]["alternatives"][0]["status"] == "ALTERNATIVE_STATUS_FINAL"
        return
    answer = json.loads(body)
    if "responses" in name:
        assert answer["object"] == "response" and answer["status"] == "completed" and answer["store"] is False
        assert answer["output"][0]["content"][0]["text"].startswith("[emulated ")
        assert answer["usage"]["total_tokens"] > 0
    elif "chat-completions" in name:
        assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "stop"
        assert answer["choices"][0]["message"]["content"].startswith("[emulated ")
        assert answer["usage"]["total_tokens"] > 0
    elif "openai-embeddings" in name:
        import base64

        vector = answer["data"][0]["embedding"]  # base64 float32, the openai client's default
        assert answer["object"] == "list" and len(base64.b64decode(vector)) == 256 * 4
        assert answer["usage"]["prompt_tokens"] > 0
    elif "tokenize" in name:
        assert answer["tokens"] and all(t["text"] and t["id"].isdigit() for t in answer["tokens"])
    elif "completion" in name:
        assert answer["result"]["alternatives"][0]["message"]["text"].startswith("[emulated ")
        assert int(answer["result"]["usage"]["totalTokens"]) > 0
    elif "embedding-texts" in name:
        assert len(answer["embeddings"]) >= 2 and all(len(v) == 256 for v in answer["embeddings"])
    elif "embedding" in name:
        assert len(answer["embedding"]) == 256 and int(answer["numTokens"]) > 0
    elif "classification" in name:
        assert abs(sum(p["confidence"] for p in answer["predictions"]) - 1.0) < 1e-3
    else:
        raise AssertionError(f"no expectation for {name}")


@pytest.mark.parametrize("name", event_names("http-"))
def test_every_sample_event_succeeds(stack_env: Emulator, name: str) -> None:
    result = load(_function_for(name))(load_event(name), FakeContext())
    assert result["statusCode"] == 200, result["body"]
    assert result["headers"]["x-request-id"] == "req-test"
    assert result["isBase64Encoded"] is False
    _answer_is_what_the_route_promises(name, result["body"])


JWT_LIKE = "eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJjYWxsZXIifQ.c2lnbmF0dXJlLW9mLWNhbGxlcg"


def test_log_lines_are_json_with_ids_usage_and_no_secrets(stack_env: Emulator, monkeypatch: pytest.MonkeyPatch,
                                                         log_output: io.StringIO) -> None:
    key = authorized_key()
    stack_env.post("/_emulator/keys", {"id": key["id"], "public_key": key["public_key"],
                                       "service_account_id": key["service_account_id"]})
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LOG_PAYLOADS", "true")  # prompts and completions are logged: secrets in them must not be
    monkeypatch.setenv("YC_IAM_ENDPOINT", f"{stack_env.url}/iam/v1/tokens")
    event = load_event("http-v01-completion")
    body = json.loads(event["body"])
    body["messages"][-1]["text"] = f"remember {API_KEY} and {JWT_LIKE}"  # a caller pastes credentials into a prompt
    event["body"] = json.dumps(body)
    responses = []
    # API key, then an authorized key (JWT exchange), then a failing key, each through a full request
    for env in ({"YC_API_KEY": API_KEY}, {"YC_SA_KEY_JSON": json.dumps(key)}, {"YC_SA_KEY_JSON": json.dumps({**key, "id": "x"})}):
        monkeypatch.delenv("YC_API_KEY", raising=False)
        monkeypatch.delenv("YC_SA_KEY_JSON", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        stack_env.fault(path="/foundationModels/v1/completion", status=429, retryAfter=0, count=1)
        responses.append(load("completion")(event, FakeContext()))
    assert [r["statusCode"] for r in responses] == [200, 200, 500]
    text = log_output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["attempt"] for line in lines if line["msg"] == "retrying upstream call"] == [1, 1]
    summary = [line for line in lines if line["msg"] == "request handled"]
    assert len(summary) == 2
    assert all(line["request_id"] == "req-test" and line["function"] == "completion" for line in summary)
    assert all(line["total_tokens"] > 0 and line["model"].startswith("gpt://") and line["latency_ms"] > 0
               and line["attempts"] == 2 for line in summary)
    assert {line["level"] for line in lines} <= {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    payloads = [line for line in lines if line["msg"] == "completion payload"]
    assert len(payloads) == 2  # the secrets did reach the logger, through the prompt and the echoed answer
    assert all(line["messages"][-1]["text"] == "remember [REDACTED] and [REDACTED]" for line in payloads)
    assert all("[REDACTED]" in line["result"]["alternatives"][0]["message"]["text"] for line in payloads)
    private_body = key["private_key"].split("-----")[2].strip()[:40]
    assert len(private_body) == 40
    for secret in (API_KEY, JWT_LIKE, private_body, "t1.emulated.", "eyJ"):
        assert secret not in text, secret
    for secret in (private_body, "t1.emulated."):  # the caller's own prompt comes back to it; our secrets never
        assert secret not in json.dumps(responses), secret


def test_handler_import_is_lean() -> None:
    """A cold handler import must not pull in boto3, crypto or JWT code (used only where needed)."""
    for function in ("completion", "embedding", "classification", "operations", "batch_poller", "authorizer"):
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'functions' / function)!r});"
                "import handler; heavy = [m for m in ('boto3', 'botocore', 'cryptography', 'jwt', 'requests')"
                " if m in sys.modules]; print(','.join(heavy))")
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert output == "", f"{function} imports {output} at cold start"


@pytest.mark.parametrize("function,event_name", [("completion", "http-v01-completion"),
                                                 ("embedding", "http-v10-embedding-texts"),
                                                 ("classification", "http-v01-classification-fewshot")])
def test_the_packaged_zip_runs_as_the_platform_loads_it(stack_env: Emulator, tmp_path: Path, function: str,
                                                       event_name: str) -> None:
    """Unpack the archive `make package` builds and import handler.handler from its root, with only the
    archive (and the installed dependencies) on the path, as Cloud Functions does from /function/code."""
    import zipfile

    from deploy import package

    archive = tmp_path / f"{function}.zip"
    archive.write_bytes(package.build(function))
    code = tmp_path / "code"
    zipfile.ZipFile(archive).extractall(code)
    script = ("import json, sys\n"
              f"sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
              f"sys.path.insert(0, {str(code)!r})\n"
              "import handler\n"
              f"event = json.load(open({str(ROOT / 'events' / (event_name + '.json'))!r}))\n"
              "result = handler.handler(event, None)\n"
              "print(json.dumps({'status': result['statusCode'], 'shared': handler.runtime.__file__}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=code, env=env, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 200
    assert outcome["shared"].startswith(str(code))  # the archive's own shared/, not the repository's
