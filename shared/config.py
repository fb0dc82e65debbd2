"""Settings: one typed object read from the environment on first use and cached per instance.

Explicit argument > environment > default. The environment variable names are the public interface
(listed in docs/configuration.md); a bad value fails with a ConfigError that names the variable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigError

DEFAULT_METADATA_ADDR = "169.254.169.254"
PUBLIC_BASE_URL = "https://llm.api.cloud.yandex.net"
PUBLIC_RESPONSES_URL = "https://rest-assistant.api.cloud.yandex.net/v1"  # AI Studio's Responses API
# Models upstream serves only in its OpenAI-compatible mode (no native completion): /v1/chat/completions
# passes them through to {FM_BASE_URL}/v1/chat/completions. FM_OPENAI_PASSTHROUGH_MODELS adds to the list.
OPENAI_PASSTHROUGH_MODELS = ("qwen3-235b-a22b-fp8", "gpt-oss-120b", "gpt-oss-20b", "gemma-3-27b-it")

# field name -> environment variable; the only list of public variable names in code.
ENV_NAMES: dict[str, str] = {
    "folder_id": "YC_FOLDER_ID",
    "api_key": "YC_API_KEY",
    "iam_token": "YC_IAM_TOKEN",
    "sa_key_json": "YC_SA_KEY_JSON",
    "sa_key_file": "YC_SA_KEY_FILE",
    "metadata_addr": "YC_METADATA_ADDR",
    "iam_endpoint": "YC_IAM_ENDPOINT",
    "base_url": "FM_BASE_URL",
    "operation_url": "FM_OPERATION_URL",
    "data_logging": "FM_DATA_LOGGING",
    "no_auth": "FM_NO_AUTH",
    "timeout_s": "FM_TIMEOUT_S",
    "connect_timeout_s": "FM_CONNECT_TIMEOUT_S",
    "max_retries": "FM_MAX_RETRIES",
    "retry_base_s": "FM_RETRY_BASE_S",
    "retry_max_s": "FM_RETRY_MAX_S",
    "max_concurrency": "FM_MAX_CONCURRENCY",
    "embedding_rps": "FM_EMBEDDING_RPS",
    "classification_rps": "FM_CLASSIFICATION_RPS",
    "allowed_models": "FM_ALLOWED_MODELS",
    "openai_passthrough_models": "FM_OPENAI_PASSTHROUGH_MODELS",
    "max_body_bytes": "FM_MAX_BODY_BYTES",
    "region": "YC_REGION",
    "ymq_endpoint": "YMQ_ENDPOINT",
    "completion_queue_url": "COMPLETION_QUEUE_URL",
    "embedding_queue_url": "EMBEDDING_QUEUE_URL",
    "classification_queue_url": "CLASSIFICATION_QUEUE_URL",
    "docapi_endpoint": "DOCAPI_ENDPOINT",
    "jobs_table": "JOBS_TABLE",
    "s3_endpoint": "S3_ENDPOINT",
    "results_bucket": "RESULTS_BUCKET",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "jobs_ttl_days": "JOBS_TTL_DAYS",
    "job_lease_s": "JOB_LEASE_S",
    "job_max_deliveries": "JOB_MAX_DELIVERIES",
    "job_queue_window_s": "JOB_QUEUE_WINDOW_S",
    "embedding_chunk_texts": "EMBEDDING_CHUNK_TEXTS",
    "result_inline_bytes": "RESULT_INLINE_MAX_BYTES",
    "presign_ttl_s": "RESULT_URL_TTL_S",
    "async_start_rps": "FM_ASYNC_START_RPS",
    "async_start_per_hour": "FM_ASYNC_START_PER_HOUR",
    "operation_get_rps": "FM_OPERATION_GET_RPS",
    "stuck_after_s": "JOBS_STUCK_AFTER_S",
    "admin_caller": "FM_ADMIN_CALLER",
    "caller_names": "FM_CALLER_NAMES",
    "key_cache_s": "FM_KEY_CACHE_S",
    "responses_ttl_days": "FM_RESPONSES_TTL_DAYS",
    "responses_url": "FM_RESPONSES_URL",
    "auth_mode": "FM_AUTH_MODE",
    "usage_ttl_days": "FM_USAGE_TTL_DAYS",
    "prices": "FM_PRICES",
    "budget_webhook_url": "FM_BUDGET_WEBHOOK_URL",
    "limits_default_max_tokens": "FM_LIMITS_DEFAULT_MAX_TOKENS",
    "limits_reservation_s": "FM_LIMITS_RESERVATION_S",
    "log_level": "LOG_LEVEL",
    "log_payloads": "LOG_PAYLOADS",
}


class Settings(BaseModel):
    """Everything configurable, typed and validated."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    folder_id: str | None = None
    api_key: str | None = Field(None, repr=False)  # secret: kept out of repr and logs
    iam_token: str | None = Field(None, repr=False)  # secret: kept out of repr and logs
    sa_key_json: str | None = Field(None, repr=False)  # secret: kept out of repr and logs
    sa_key_file: str | None = None
    metadata_addr: str | None = None  # unset: probe DEFAULT_METADATA_ADDR quietly
    iam_endpoint: str = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
    base_url: str = PUBLIC_BASE_URL
    operation_url: str = "https://operation.api.cloud.yandex.net"
    data_logging: bool = False
    no_auth: bool = False  # a Cloud AI Hybrid install on a private network may take no Authorization
    timeout_s: float = Field(60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(3.05, gt=0, le=60)
    max_retries: int = Field(4, ge=0, le=10)
    retry_base_s: float = Field(1.0, ge=0, le=60)
    retry_max_s: float = Field(10.0, ge=0, le=300)
    max_concurrency: int = Field(8, ge=1, le=64)
    embedding_rps: float = Field(10.0, gt=0, le=10_000)
    classification_rps: float = Field(1.0, gt=0, le=10_000)
    allowed_models: tuple[str, ...] = ()
    openai_passthrough_models: tuple[str, ...] = ()  # model names added to OPENAI_PASSTHROUGH_MODELS
    max_body_bytes: int = Field(2_500_000, ge=1024)  # API Gateway refuses requests over 2.5 MB (either MB)
    # async jobs: Message Queue, the job store (YDB Document API) and the results bucket
    region: str = "ru-central1"
    ymq_endpoint: str = "https://message-queue.api.cloud.yandex.net"
    completion_queue_url: str | None = None
    embedding_queue_url: str | None = None
    classification_queue_url: str | None = None
    docapi_endpoint: str | None = None
    jobs_table: str = "jobs"
    s3_endpoint: str = "https://storage.yandexcloud.net"
    results_bucket: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = Field(None, repr=False)  # secret
    jobs_ttl_days: float = Field(3.0, gt=0, le=365)  # upstream keeps async results 3 days
    job_lease_s: float = Field(660.0, ge=1, le=43_200)  # longer than a function may run (600 s)
    job_max_deliveries: int = Field(5, ge=1, le=1000)  # failed starts before a task fails (= maxReceiveCount)
    # how long a dead-lettered task that has not failed JOB_MAX_DELIVERIES times is sent round again, counted
    # from its last start (or its submission); then its operation fails with DEADLINE_EXCEEDED (docs/dead-letters.md)
    job_queue_window_s: float = Field(86_400.0, ge=60, le=1_209_600)
    embedding_chunk_texts: int = Field(100, ge=1, le=256)
    result_inline_bytes: int = Field(1_000_000, ge=0, le=2_000_000)  # API Gateway answers are capped at 2.5 MB
    presign_ttl_s: int = Field(3600, ge=60, le=604_800)
    # batches: upstream async quotas (10 starts/s, 5,000 starts/hour, 50 operation gets/s by default)
    async_start_rps: float = Field(10.0, gt=0, le=10_000)
    async_start_per_hour: int = Field(5000, ge=1)
    operation_get_rps: float = Field(50.0, gt=0, le=10_000)
    stuck_after_s: float = Field(300.0, ge=0)  # the poller re-enqueues tasks untouched this long
    admin_caller: str | None = None  # an authorizer key name that may see everyone's work
    caller_names: tuple[str, ...] = ()  # the configured keys' names (CALLER_KEY_SHA256): a stored key cannot take one
    key_cache_s: float = Field(10.0, ge=0, le=300)  # how long an authorizer instance remembers a stored key's lookup
    responses_ttl_days: float = Field(30.0, gt=0, le=365)  # stored /v1/responses (OpenAI keeps them 30 days)
    responses_url: str | None = None  # upstream's own Responses API; "off": none (see responses_endpoint)
    auth_mode: Literal["api_key", "iam"] = "api_key"  # iam: no gateway, so no authorizer context is trusted
    usage_ttl_days: float = Field(400.0, gt=0, le=3650)  # how long the usage ledger's daily totals are kept
    prices: str | None = None  # FM_PRICES: JSON merged over shared/prices.py's table
    # budgets and per-key limits (shared/jobs/limits.py, docs/budgets-and-limits.md)
    budget_webhook_url: str | None = None  # POSTed once per key, month and threshold (80%, 100% of a budget)
    limits_default_max_tokens: int = Field(2000, ge=1, le=1_000_000)  # maxTokens set for a limited key's request without one
    limits_reservation_s: float = Field(900.0, ge=10, le=86400)  # a synchronous request's reservation expires after this
    log_level: str = "INFO"
    log_payloads: bool = False

    @field_validator("allowed_models", "openai_passthrough_models", "caller_names", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"}:
            raise ValueError("must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL")
        return level

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: str | None) -> str | None:
        if value:
            from shared.prices import table

            try:
                table(value)
            except Exception as err:
                raise ValueError(str(getattr(err, "message", err)).removeprefix("FM_PRICES: ")) from None
        return value

    @field_validator("responses_url")
    @classmethod
    def _responses_url(cls, value: str | None) -> str | None:
        if value is not None and value != "off" and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, or be off")
        return value

    @field_validator("base_url", "operation_url", "iam_endpoint", "ymq_endpoint", "s3_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def passthrough_models(self) -> frozenset[str]:
        """Model names /v1/chat/completions sends to upstream's OpenAI-compatible mode as they are."""
        return frozenset(OPENAI_PASSTHROUGH_MODELS + self.openai_passthrough_models)

    @property
    def responses_endpoint(self) -> str | None:
        """Upstream's own Responses API, for what only it can do (pass-through models, hosted tools):
        FM_RESPONSES_URL, or AI Studio's when FM_BASE_URL is the public cloud's; None when there is none (a
        Hybrid install, the emulator unless a test sets it, or FM_RESPONSES_URL=off)."""
        if self.responses_url == "off":
            return None
        if self.responses_url:
            return self.responses_url.rstrip("/")
        return PUBLIC_RESPONSES_URL if self.base_url == PUBLIC_BASE_URL else None

    def queue_url(self, kind: str) -> str:
        """The queue a job kind is sent to; a ConfigError naming the variable when it is not set."""
        url = {"completion": self.completion_queue_url, "embedding": self.embedding_queue_url,
               "classification": self.classification_queue_url}.get(kind)
        if not url:
            raise ConfigError(f"{kind.upper()}_QUEUE_URL is not set: async {kind} jobs need their queue")
        return url

    def require_store(self) -> None:
        missing = [name for name, value in (("DOCAPI_ENDPOINT", self.docapi_endpoint),
                                            ("RESULTS_BUCKET", self.results_bucket)) if not value]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set: async jobs need the job store and results bucket")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from `environ` (default os.environ); keyword arguments win over it."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, env_name in ENV_NAMES.items():
            raw = environ.get(env_name)
            if raw is not None and raw.strip() != "":
                values[field] = raw.strip()
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            name = ENV_NAMES.get(field, field)
            raise ConfigError(f"{name}: {first['msg']}") from None


_lock = threading.Lock()
_cached: Settings | None = None


def settings() -> Settings:
    """The instance's settings, read once from the environment."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = Settings.from_env()
    return _cached


def reset_settings() -> None:
    """Forget cached settings (tests and the local stack change the environment)."""
    global _cached
    with _lock:
        _cached = None
