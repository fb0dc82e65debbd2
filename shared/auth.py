"""The credential chain: what authenticates us to Foundation Models, cached across warm invocations.

Modelled on google-auth: a `Credentials` object holds a token and an expiry and knows how to
`refresh(http)` itself. `default_credentials(context)` tries providers from explicit to ambient:

    YC_API_KEY -> YC_IAM_TOKEN -> YC_SA_KEY_JSON / YC_SA_KEY_FILE (PS256 JWT -> IAM token)
    -> the function's context.token -> the metadata service

A provider that is not configured yields None; one that is configured but broken raises
CredentialsError (it is never skipped silently). The winner is cached at module level and refreshed
lazily before expiry under a lock, so threads in a fan-out refresh once. Tokens never appear in
repr(), errors or logs. Network access goes through an injected `http` callable and time through
`clock` (by default shared.clock's wall time), so unit tests open no sockets and move time at will.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import logs
from shared.clock import now as current_time
from shared.config import DEFAULT_METADATA_ADDR, Settings
from shared.errors import CredentialsError, CredentialsUnavailableError

if TYPE_CHECKING:
    import requests

Http = Callable[..., "requests.Response"]
Clock = Callable[[], float]

REFRESH_MARGIN_S = 300.0  # refresh when less than this much lifetime is left
EXCHANGED_TOKEN_MAX_AGE_S = 3600.0  # the docs advise renewing exchanged IAM tokens hourly
JWT_LIFETIME_S = 3600  # exp - iat must be <= 3600 (reference §7.2)
METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
TRY_AGAIN_S = 1.0  # Retry-After when the token service is down or busy (the call itself made two tries)

log = logs.get_logger("auth")


def default_http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """A plain request that ignores proxy variables (the metadata service must be reached directly)."""
    import requests

    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, **kwargs)


class Credentials:
    """A token with an expiry; `header()` is what goes into Authorization."""

    scheme = "Bearer"
    refreshable = False
    sends_folder = False  # only a user's IAM token may carry x-folder-id (reference §4)

    def __init__(self, source: str, token: str | None = None, expiry: float | None = None,
                 clock: Clock = current_time) -> None:
        self.source = source
        self._token = token
        self.expiry = expiry  # epoch seconds; None = never expires (or unknown)
        self.clock = clock
        self._lock = threading.Lock()
        if token:
            logs.register_secret(token)

    @property
    def token(self) -> str | None:
        return self._token

    def _set_token(self, token: str, expiry: float | None) -> None:
        logs.register_secret(token)
        self._token, self.expiry = token, expiry

    @property
    def state(self) -> str:
        """fresh, stale (usable, refresh due) or expired (or never fetched)."""
        if not self._token:
            return "expired"
        if self.expiry is None:
            return "fresh"
        left = self.expiry - self.clock()
        if left <= 0:
            return "expired"
        return "stale" if left <= REFRESH_MARGIN_S else "fresh"

    def refresh(self, http: Http) -> None:
        """Fetch a new token; kinds without a source of new tokens keep theirs."""

    def invalidate(self) -> None:
        """Forget the token after upstream rejected it, so the next use refreshes."""
        if self.refreshable:
            self.expiry = self.clock() - 1

    def ensure_fresh(self, http: Http | None = None) -> None:
        """Refresh if due; threads share one refresh. A failed refresh of a still-valid token is logged."""
        if self.state == "fresh" or not self.refreshable:
            if not self._token:
                raise CredentialsError(f"{self.source} has no token")
            return
        with self._lock:
            state = self.state
            if state == "fresh":
                return
            try:
                self.refresh(http or default_http)
            except CredentialsError:
                if state == "stale":
                    log.warning("token refresh failed; using the current token until it expires",
                                extra={"source": self.source})
                    return
                raise

    def header(self) -> dict[str, str]:
        if not self._token:
            raise CredentialsError(f"{self.source} has no token")
        return {"Authorization": f"{self.scheme} {self._token}"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, state={self.state!r})"


class ApiKey(Credentials):
    scheme = "Api-Key"


class NoCredentials(Credentials):
    """FM_NO_AUTH: send no Authorization header (a Cloud AI Hybrid server on a private network)."""

    def __init__(self) -> None:
        super().__init__("FM_NO_AUTH")

    @property
    def state(self) -> str:
        return "fresh"

    def ensure_fresh(self, http: Http | None = None) -> None:
        return None

    def header(self) -> dict[str, str]:
        return {}


class IamToken(Credentials):
    sends_folder = True


class ServiceAccountKey(Credentials):
    """An authorized key: sign a PS256 JWT, exchange it for an IAM token at YC_IAM_ENDPOINT."""

    refreshable = True

    def __init__(self, source: str, key_id: str, service_account_id: str, private_key: Any,
                 iam_endpoint: str, clock: Clock = current_time) -> None:
        super().__init__(source, clock=clock)
        self.key_id = key_id
        self.service_account_id = service_account_id
        self._private_key = private_key
        self.iam_endpoint = iam_endpoint

    @classmethod
    def from_json(cls, text: str, source: str, iam_endpoint: str, clock: Clock = current_time) -> ServiceAccountKey:
        try:
            data = json.loads(text)
        except ValueError:
            raise CredentialsError(f"{source}: not valid JSON") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{source}: expected a JSON object")
        key = data.get("key") if isinstance(data.get("key"), dict) else data  # REST keys.create shape
        key_id = key.get("id")
        sa_id = key.get("service_account_id") or key.get("serviceAccountId")
        pem = data.get("private_key") or data.get("privateKey")
        missing = [name for name, value in (("id", key_id), ("service_account_id", sa_id), ("private_key", pem))
                   if not isinstance(value, str) or not value]
        if missing:
            raise CredentialsError(f"{source}: missing {', '.join(missing)}")
        logs.register_secret(pem)
        return cls(source, key_id, sa_id, load_private_key(pem, source), iam_endpoint, clock)

    def signed_jwt(self) -> str:
        import jwt

        issued = int(self.clock())
        claims = {"iss": self.service_account_id, "aud": self.iam_endpoint, "iat": issued,
                  "exp": issued + JWT_LIFETIME_S}
        token = jwt.encode(claims, self._private_key, algorithm="PS256", headers={"kid": self.key_id})
        logs.register_secret(token)
        return token

    def refresh(self, http: Http) -> None:
        body = _call(http, "POST", self.iam_endpoint, self.source, json={"jwt": self.signed_jwt()},
                     timeout=(3.05, 10))
        token = body.get("iamToken")
        if not isinstance(token, str) or not token:
            raise CredentialsError(f"{self.source}: IAM token exchange answered without iamToken")
        expires = parse_rfc3339(body.get("expiresAt")) if body.get("expiresAt") else None
        now = self.clock()
        cap = now + EXCHANGED_TOKEN_MAX_AGE_S
        self._set_token(token, min(expires, cap) if expires else cap)
        log.info("exchanged service-account key for an IAM token", extra={"source": self.source})


class ContextToken(Credentials):
    """The function's own IAM token from `context.token` (present when the version has a service account)."""

    refreshable = True

    def __init__(self, context: Any, clock: Clock = current_time) -> None:
        super().__init__("function context.token", clock=clock)
        self.context = context
        self.refresh(None)

    def use_context(self, context: Any) -> None:
        """Take the token the platform hands this invocation (it refreshes them for us)."""
        if context is not None and context is not self.context and _context_token(context):
            self.context = context
            self.refresh(None)

    def refresh(self, http: Http | None) -> None:
        data = _context_token(self.context)
        if not data:
            raise CredentialsError("function context.token is no longer present")
        expires_in = _number(data.get("expires_in"))
        self._set_token(data["access_token"], self.clock() + expires_in if expires_in else None)


class MetadataToken(Credentials):
    """The metadata service's token for the attached service account (`Metadata-Flavor: Google`)."""

    refreshable = True

    def __init__(self, addr: str, timeout: tuple[float, float] = (1.0, 2.0), clock: Clock = current_time) -> None:
        super().__init__(f"metadata service {addr}", clock=clock)
        self.url = f"http://{addr}{METADATA_PATH}"
        self.timeout = timeout

    def refresh(self, http: Http) -> None:
        body = _call(http, "GET", self.url, self.source, headers={"Metadata-Flavor": "Google"},
                     timeout=self.timeout)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise CredentialsError(f"{self.source}: answer has no access_token")
        expires_in = _number(body.get("expires_in"))
        self._set_token(token, self.clock() + expires_in if expires_in else None)


def load_private_key(pem: str, source: str) -> Any:
    """Load a PEM private key, dropping the 'PLEASE DO NOT REMOVE THIS LINE' prefix newer keys carry."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    start = pem.find("-----BEGIN")
    if start < 0:
        raise CredentialsError(f"{source}: private_key has no PEM block")
    try:
        return load_pem_private_key(pem[start:].replace("\\n", "\n").encode(), password=None)
    except (ValueError, TypeError):
        raise CredentialsError(f"{source}: private_key is not a readable PEM private key") from None


def parse_rfc3339(value: Any) -> float | None:
    """'2025-01-01T12:00:00.123456789Z' -> epoch seconds. Python 3.11's fromisoformat reads the `Z` and
    drops fractional digits past the microsecond, so IAM's nanosecond timestamps need no rewriting."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _context_token(context: Any) -> dict[str, Any] | None:
    token = getattr(context, "token", None) if context is not None else None
    if isinstance(token, dict) and isinstance(token.get("access_token"), str) and token["access_token"]:
        return token
    return None


def _call(http: Http, method: str, url: str, source: str, **kwargs: Any) -> dict[str, Any]:
    """One token request, retried once on a connection error or 5xx/429; the answer as a dict."""
    last = ""
    for _attempt in range(2):
        try:
            response = http(method, url, **kwargs)
        except Exception as err:  # requests.RequestException, or a fake's error
            last = f"{type(err).__name__}"
            continue
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                raise CredentialsError(f"{source}: answer is not JSON") from None
            if isinstance(body, dict):
                return body
            raise CredentialsError(f"{source}: answer is not a JSON object")
        last = f"HTTP {response.status_code}"
        if response.status_code < 500 and response.status_code != 429:  # the credentials themselves are refused
            raise CredentialsError(f"{source}: token request to {url} failed ({last})")
    raise CredentialsUnavailableError(f"{source}: token request to {url} failed ({last})", retry_after=TRY_AGAIN_S)


# -- the chain ---------------------------------------------------------------------------------

_chain_lock = threading.Lock()
_cached: Credentials | None = None


def find_credentials(settings: Settings, context: Any = None, http: Http | None = None,
                     clock: Clock = current_time) -> Credentials:
    """Walk the chain once and return the first configured provider (not cached)."""
    if settings.no_auth:
        return NoCredentials()
    if settings.api_key is not None:
        return ApiKey("env YC_API_KEY", settings.api_key, clock=clock)
    if settings.iam_token is not None:
        return IamToken("env YC_IAM_TOKEN", settings.iam_token, clock=clock)
    if settings.sa_key_json is not None:
        return ServiceAccountKey.from_json(settings.sa_key_json, "env YC_SA_KEY_JSON",
                                           settings.iam_endpoint, clock)
    if settings.sa_key_file:
        try:
            text = Path(settings.sa_key_file).read_text(encoding="utf-8")
        except OSError as err:
            raise CredentialsError(f"YC_SA_KEY_FILE: cannot read {settings.sa_key_file} ({err.strerror})") from None
        return ServiceAccountKey.from_json(text, "file YC_SA_KEY_FILE", settings.iam_endpoint, clock)
    if _context_token(context):
        return ContextToken(context, clock)
    explicit = settings.metadata_addr is not None
    metadata = MetadataToken(settings.metadata_addr or DEFAULT_METADATA_ADDR,
                             timeout=(1.0, 2.0) if explicit else (0.2, 1.0), clock=clock)
    try:
        metadata.refresh(http or default_http)
        return metadata
    except CredentialsError as err:
        reason = f" ({err.message})" if explicit else ""
    raise CredentialsError(
        "no credentials found: tried YC_API_KEY, YC_IAM_TOKEN, YC_SA_KEY_JSON, YC_SA_KEY_FILE, the function's "
        f"context.token (give the function a service account) and the metadata service{reason}; set one of them"
    )


def default_credentials(settings: Settings, context: Any = None, http: Http | None = None) -> Credentials:
    """The instance's credentials: chosen once, then reused and refreshed across warm invocations."""
    global _cached
    creds = _cached
    if creds is None:
        with _chain_lock:
            if _cached is None:
                _cached = find_credentials(settings, context, http)
                log.info("credentials chosen", extra={"source": _cached.source})
            creds = _cached
    if isinstance(creds, ContextToken):
        creds.use_context(context)
    return creds


def reset_credentials() -> None:
    """Forget the cached credentials (tests, or after the configuration changed)."""
    global _cached
    with _chain_lock:
        _cached = None
