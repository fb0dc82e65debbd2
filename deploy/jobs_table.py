"""Create the jobs document table (key `id`, TTL on `expires_at`) once, at deploy time.

The provider has no resource for Document API tables, so `terraform apply` runs this as a one-shot
step (terraform_data.jobs_table in terraform/storage.tf) and `make jobs-table` runs it by hand. The
functions then assume the table exists and never spend the database's schema-operation quota
(DescribeTable: 30 a minute) on a cold start.

Standard library only (Python 3.9+), so the python3 at hand runs it, no virtualenv needed. It speaks the Document API's DynamoDB JSON protocol
with the IAM token of whoever deploys (the documented `Authorization: Bearer` form), found as the
provider finds its credentials (yandex/config.go, Config.credentials): YC_SERVICE_ACCOUNT_KEY_FILE (a
path or the key's JSON; a PS256 JWT exchanged for an IAM token), YC_TOKEN (an OAuth token there is
exchanged), then YC_IAM_TOKEN, `yc iam create-token`, and last the VM's metadata service (the
instance's service account; YC_METADATA_ADDR overrides the address). `--static-key` signs with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
(SigV4) instead, as the functions do. It is idempotent: an existing table is checked, not replaced.
Credentials never reach its output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KEY_ATTRIBUTE = "id"  # every item's key: operations, tasks, batch items, the active index (shared/jobs.py)
TTL_ATTRIBUTE = "expires_at"  # epoch seconds after which the Document API may delete the item
DEFAULT_TABLE = "jobs"
REGION = "ru-central1"
IAM_ENDPOINT = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
METADATA_ADDR = "169.254.169.254"
METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
RETRYABLE = {"InternalServerError", "InternalFailure", "ServiceUnavailable", "ThrottlingException",
             "LimitExceededException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}


class TableError(Exception):
    """The table could not be created or is not what the functions need; the message says why."""


@dataclass
class Bearer:
    token: str

    def headers(self, url: str, body: bytes, target: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class StaticKey:
    """AWS Signature Version 4 for the dynamodb service, as boto3 signs the functions' calls."""

    access_key: str
    secret_key: str
    region: str = REGION
    now: Callable[[], float] = time.time

    def headers(self, url: str, body: bytes, target: str) -> dict[str, str]:
        parts = urllib.parse.urlsplit(url)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now()))
        day = stamp[:8]
        signed = {"content-type": "application/x-amz-json-1.0", "host": parts.netloc, "x-amz-date": stamp,
                  "x-amz-target": target}
        names = ";".join(sorted(signed))
        canonical = "\n".join([
            "POST", urllib.parse.quote(parts.path or "/", safe="/~"), parts.query,
            "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)), names,
            hashlib.sha256(body).hexdigest()])
        scope = f"{day}/{self.region}/dynamodb/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "dynamodb", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {"X-Amz-Date": stamp, "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                                      f"SignedHeaders={names}, Signature={signature}"}


class DocumentApi:
    """The few Document API calls this step makes, with bounded retries of transient failures."""

    def __init__(self, endpoint: str, auth: Bearer | StaticKey, timeout_s: float = 30.0, attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not endpoint.startswith(("https://", "http://")):
            raise TableError(f"the Document API endpoint must be a URL, got {endpoint[:80]!r}")
        self.endpoint, self.auth, self.timeout_s, self.attempts, self.sleep = endpoint, auth, timeout_s, attempts, sleep

    def call(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        target = f"DynamoDB_20120810.{action}"
        data = json.dumps(body).encode()
        for attempt in range(1, self.attempts + 1):
            headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target,
                       **self.auth.headers(self.endpoint, data, target)}
            request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310 (URL checked above)
                    raw = answer.read()
                    return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as err:
                code, message = _error(err)
                if (code in RETRYABLE or err.code >= 500) and attempt < self.attempts:
                    self.sleep(min(2.0 * attempt, 10.0))
                    continue
                raise DocumentApiError(action, err.code, code, message) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt < self.attempts:
                    self.sleep(min(2.0 * attempt, 10.0))
                    continue
                reason = getattr(err, "reason", err)
                raise TableError(f"{action}: cannot reach the Document API endpoint ({type(reason).__name__})") from None
        raise AssertionError("unreachable")


class DocumentApiError(TableError):
    def __init__(self, action: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{action}: HTTP {status} {code}: {message}")
        self.status, self.code = status, code


def _error(err: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        body = json.loads(err.read() or b"{}")
    except ValueError:
        body = {}
    code = str(body.get("__type", "")).rpartition("#")[2] or f"HTTP{err.code}"
    message = str(body.get("message") or body.get("Message") or err.reason or "")[:300]
    return code, message


# What a database answers in the first moments after its create operation is done, before its Document
# API endpoint serves it: it is not found (the docs document no code for this; these are what a missing
# database path gives). Retried for `settle_s` only; any other 4xx is the caller's and fails at once.
NOT_READY = {"ResourceNotFoundException", "HTTP404"}


def ensure_table(api: DocumentApi, table: str, wait_s: float = 180.0, poll_s: float = 3.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, settle_s: float = 120.0) -> dict[str, Any]:
    """Create `table` with the functions' key and TTL unless it exists; wait until it is ACTIVE.

    Each poll is a schema operation (a database allows 30 a minute), so polls are `poll_s` apart. While
    a table is being created, DescribeTable answers ResourceNotFoundException (400), as the Document API
    reference says (ydb/docapi/api-ref/actions/describeTable.md), so that answer is waited out too."""
    created = True
    settle_deadline = clock() + settle_s
    while True:
        try:
            api.call("CreateTable", {
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            })
            break
        except DocumentApiError as err:
            if err.code == "ResourceInUseException":  # it exists already (or is being created)
                created = False
                break
            if err.code not in NOT_READY or clock() >= settle_deadline:
                raise
            sleep(poll_s)  # the new database is not serving yet
    deadline = clock() + wait_s
    while True:
        try:
            description = api.call("DescribeTable", {"TableName": table}).get("Table", {})
        except DocumentApiError as err:
            if err.code != "ResourceNotFoundException":
                raise
            description = {}  # still being created: the documented answer
        status = description.get("TableStatus", "")
        if status == "ACTIVE":
            break
        if status not in ("CREATING", "UPDATING", ""):
            raise TableError(f"table {table} is {status}, not ACTIVE")
        if clock() >= deadline:
            raise TableError(f"table {table} is still {status or 'being created'} after {wait_s:.0f} s; run again later")
        sleep(poll_s)
    key = [(k.get("AttributeName"), k.get("KeyType")) for k in description.get("KeySchema", [])]
    if key != [(KEY_ATTRIBUTE, "HASH")]:
        raise TableError(f"table {table} exists with key {key}, but the functions need ({KEY_ATTRIBUTE!r}, HASH) "
                         f"alone: drop it or set JOBS_TABLE to another name")
    ttl = api.call("DescribeTimeToLive", {"TableName": table}).get("TimeToLiveDescription", {})
    ttl_status, ttl_attribute = ttl.get("TimeToLiveStatus", "DISABLED"), ttl.get("AttributeName")
    if ttl_status in ("ENABLED", "ENABLING"):
        if ttl_attribute != TTL_ATTRIBUTE:
            raise TableError(f"table {table} expires items by {ttl_attribute!r}, but the functions write {TTL_ATTRIBUTE!r}")
        ttl_changed = False
    else:
        api.call("UpdateTimeToLive", {"TableName": table, "TimeToLiveSpecification": {
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE}})
        ttl_changed = True
    return {"table": table, "created": created, "ttl_enabled_now": ttl_changed}


# -- credentials -------------------------------------------------------------------------------------

def _looks_like_oauth(token: str) -> bool:
    return token.startswith(("y0_", "y1_", "y2_", "y3_", "AQAAAA"))


def iam_token(environ: Mapping[str, str] | None = None,
              run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> str:
    """The deployer's IAM token, in the provider's order: YC_SERVICE_ACCOUNT_KEY_FILE, YC_TOKEN (exchanged
    if it is an OAuth token); then YC_IAM_TOKEN, `yc iam create-token`, the metadata service."""
    environ = os.environ if environ is None else environ
    key = (environ.get("YC_SERVICE_ACCOUNT_KEY_FILE") or "").strip()
    if key:
        return _exchange_key(_read_key(key), environ.get("YC_IAM_ENDPOINT") or IAM_ENDPOINT)
    token = (environ.get("YC_TOKEN") or "").strip()
    if token and _looks_like_oauth(token):
        return _exchange_oauth(token, environ.get("YC_IAM_ENDPOINT") or IAM_ENDPOINT)
    token = token or (environ.get("YC_IAM_TOKEN") or "").strip()
    if token:
        return token
    yc = shutil.which("yc", path=environ.get("PATH"))
    if yc:
        result = run([yc, "iam", "create-token"], capture_output=True, text=True, timeout=60, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().splitlines()[-1]
        raise TableError("`yc iam create-token` failed: log in with `yc init`, or set YC_TOKEN")
    token = _metadata_token(environ.get("YC_METADATA_ADDR") or METADATA_ADDR)
    if token:
        return token
    raise TableError("no credentials: set YC_TOKEN=$(yc iam create-token) or YC_SERVICE_ACCOUNT_KEY_FILE (as for "
                     "Terraform), install the yc CLI, or run on a VM with a service account")


def _metadata_token(addr: str) -> str | None:
    """The instance service account's token from the metadata service, or None when none answers."""
    request = urllib.request.Request(f"http://{addr}{METADATA_PATH}", headers={"Metadata-Flavor": "Google"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(request, timeout=2) as answer:
            token = json.loads(answer.read()).get("access_token", "")
    except (urllib.error.URLError, ValueError, TimeoutError, OSError):
        return None
    return token if isinstance(token, str) and token else None


@dataclass
class ServiceAccountKey:
    key_id: str
    service_account_id: str
    private_key: str


def _read_key(path_or_content: str) -> ServiceAccountKey:
    """YC_SERVICE_ACCOUNT_KEY_FILE as the provider reads it: a file's path, or the JSON itself."""
    text = path_or_content
    if not path_or_content.lstrip().startswith("{"):
        try:
            with open(os.path.expanduser(path_or_content), encoding="utf-8") as file:
                text = file.read()
        except OSError as err:
            raise TableError(f"YC_SERVICE_ACCOUNT_KEY_FILE: cannot read the key file ({type(err).__name__})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise TableError("YC_SERVICE_ACCOUNT_KEY_FILE: not a key's JSON") from None
    fields = {name: data.get(name) if isinstance(data, dict) else None
              for name in ("id", "service_account_id", "private_key")}
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        raise TableError(f"YC_SERVICE_ACCOUNT_KEY_FILE: missing {', '.join(missing)}")
    return ServiceAccountKey(fields["id"], fields["service_account_id"], fields["private_key"])


def signed_jwt(key: ServiceAccountKey, audience: str, now: float | None = None) -> str:
    """The PS256 JWT the IAM service exchanges for a token (iam/operations/iam-token/create-for-sa)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    issued = int(time.time() if now is None else now)
    header = {"typ": "JWT", "alg": "PS256", "kid": key.key_id}
    claims = {"iss": key.service_account_id, "aud": audience, "iat": issued, "exp": issued + 3600}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(pss_sign(rsa_private_numbers(key.private_key), signing_input.encode()))}"


def _exchange_key(key: ServiceAccountKey, endpoint: str) -> str:
    return _exchange({"jwt": signed_jwt(key, endpoint)}, endpoint, "the service account key in YC_SERVICE_ACCOUNT_KEY_FILE")


# -- RSASSA-PSS with SHA-256 (PS256), standard library only: RFC 8017 sections 8.1.1 and 9.1.1 --

def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """One DER element at `at`: (tag, contents, where the next element starts)."""
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(data[at:at + size], "big"), at + size
    return tag, data[at:at + length], at + length


def _der_sequence(data: bytes) -> list[tuple[int, bytes]]:
    tag, body, _ = _der(data, 0)
    if tag != 0x30:
        raise TableError("YC_SERVICE_ACCOUNT_KEY_FILE: the private key is not a DER sequence")
    items, at = [], 0
    while at < len(body):
        item_tag, contents, at = _der(body, at)
        items.append((item_tag, contents))
    return items


def rsa_private_numbers(pem: str) -> tuple[int, int]:
    """(modulus, private exponent) of a PEM RSA key, PKCS#8 (`PRIVATE KEY`, what Yandex keys are) or PKCS#1."""
    found = re.search(r"-----BEGIN (RSA )?PRIVATE KEY-----(.+?)-----END", pem, re.S)
    if not found:
        raise TableError("YC_SERVICE_ACCOUNT_KEY_FILE: private_key is not a PEM RSA private key")
    try:
        der = base64.b64decode("".join(found.group(2).split()), validate=True)
        items = _der_sequence(der)
        if not found.group(1):  # PKCS#8: version, algorithm, OCTET STRING holding the PKCS#1 key
            items = _der_sequence(next(contents for tag, contents in items if tag == 0x04))
        numbers = [int.from_bytes(contents, "big") for tag, contents in items if tag == 0x02]
        return numbers[1], numbers[3]  # version, n, e, d, p, q, ...
    except (ValueError, IndexError, StopIteration):
        raise TableError("YC_SERVICE_ACCOUNT_KEY_FILE: the private key cannot be read") from None


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(-(-length // 32)))
    return out[:length]


def pss_sign(key: tuple[int, int], message: bytes, salt: bytes | None = None) -> bytes:
    """RSASSA-PSS signature, SHA-256 and MGF1-SHA-256, salt as long as the hash (as JWA's PS256 says)."""
    modulus, exponent = key
    em_bits = modulus.bit_length() - 1
    em_len = -(-em_bits // 8)
    salt = os.urandom(32) if salt is None else salt
    digest = hashlib.sha256(b"\0" * 8 + hashlib.sha256(message).digest() + salt).digest()
    db = b"\0" * (em_len - len(salt) - 32 - 2) + b"\x01" + salt
    masked = bytearray((int.from_bytes(db, "big") ^ int.from_bytes(_mgf1(digest, len(db)), "big")).to_bytes(len(db), "big"))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    encoded = int.from_bytes(bytes(masked) + digest + b"\xbc", "big")
    return pow(encoded, exponent, modulus).to_bytes(-(-modulus.bit_length() // 8), "big")


def _exchange_oauth(oauth: str, endpoint: str) -> str:
    return _exchange({"yandexPassportOauthToken": oauth}, endpoint, "the OAuth token in YC_TOKEN")


def _exchange(body: dict[str, str], endpoint: str, what: str) -> str:
    request = urllib.request.Request(endpoint, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (a fixed https URL)
            token = json.loads(answer.read()).get("iamToken", "")
    except (urllib.error.URLError, ValueError, TimeoutError) as err:
        raise TableError(f"could not exchange {what} for an IAM token ({type(err).__name__})") from None
    if not token:
        raise TableError("the IAM service answered without an iamToken")
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.jobs_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("DOCAPI_ENDPOINT", ""),
                        help="the database's Document API endpoint (default: $DOCAPI_ENDPOINT)")
    parser.add_argument("--table", default=os.environ.get("JOBS_TABLE") or DEFAULT_TABLE,
                        help="table name (default: $JOBS_TABLE or jobs)")
    parser.add_argument("--static-key", action="store_true",
                        help="sign with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY instead of an IAM token")
    parser.add_argument("--region", default=os.environ.get("YC_REGION") or REGION)
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the table to be ACTIVE")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds a just-created database may answer 'not found' before CreateTable succeeds")
    args = parser.parse_args(argv)
    try:
        if not args.endpoint:
            raise TableError("no endpoint: pass --endpoint or set DOCAPI_ENDPOINT")
        if args.static_key:
            key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            if not key_id or not secret:
                raise TableError("--static-key needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            auth: Bearer | StaticKey = StaticKey(key_id, secret, args.region)
        else:
            auth = Bearer(iam_token())
        summary = ensure_table(DocumentApi(args.endpoint, auth), args.table, wait_s=args.wait,
                               settle_s=args.settle)
    except TableError as err:
        print(f"jobs table: {err}", file=sys.stderr)
        return 1
    state = "created" if summary["created"] else "already there"
    ttl = "TTL enabled now" if summary["ttl_enabled_now"] else "TTL already on"
    print(f"jobs table {summary['table']}: {state}, ACTIVE, key {KEY_ATTRIBUTE}, {ttl} ({TTL_ATTRIBUTE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
