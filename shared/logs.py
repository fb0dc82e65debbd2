"""JSON logging: one line per event on stdout, Cloud Logging level names, request ids on every line.

Cloud Logging reads a single-line JSON object with `msg` and `level` (TRACE DEBUG INFO WARN ERROR
FATAL; Python's WARNING and CRITICAL are not accepted, so they are renamed). Every record passes a
redaction step: API keys, IAM tokens, JWTs, private keys and any secret value registered with
`register_secret` are replaced by "[REDACTED]" before the line is written.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import threading
from typing import Any

from pythonjsonlogger.json import JsonFormatter

LOGGER_NAME = "fm"
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVEL_NAMES = {TRACE: "TRACE", logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
                logging.ERROR: "ERROR", logging.CRITICAL: "FATAL"}
_LEVEL_VALUES = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
                 "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
                 "CRITICAL": logging.CRITICAL}

# Bound per invocation by the handler wrapper; copied into every line.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("fm_log_context", default={})  # noqa: B039 (never mutated; bind() sets a new dict)

REDACTED = "[REDACTED]"
_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    # a key cut off before its END line: its base64 body, with raw or JSON-escaped line breaks, and no further
    # (matching to the end of the text would swallow the rest of the JSON line and break it)
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:\\[rn]|[A-Za-z0-9+/=\s])*"),
    re.compile(r"(?i)\b(Api-Key|Bearer)\s+[^\s\"',]+"),
    re.compile(r"\bt1\.[A-Za-z0-9_\-.]{10,}"),  # IAM token shape: t1.<...>.<86 chars>
    re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),  # JWT
    re.compile(r"\bAQVN[A-Za-z0-9_\-]{20,}"),  # Yandex API key shape
    re.compile(r"\bfmk_[A-Za-z0-9_\-]{20,}"),  # our caller keys (make api-key)
]
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact this exact value from every later log line (for secrets of no recognisable shape)."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Remove anything that looks like a credential, and every registered secret, from text."""
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a secret that starts another leaves no tail
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def _mask(match: re.Match[str]) -> str:
    word = match.group(0).split(None, 1)[0]
    return f"{word} {REDACTED}" if word.lower() in ("api-key", "bearer") else REDACTED


class _Formatter(JsonFormatter):
    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["level"] = _LEVEL_NAMES.get(record.levelno, record.levelname)
        for key, value in _context.get().items():
            log_record.setdefault(key, value)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def get_logger(name: str | None = None) -> logging.Logger:
    """A child of the project logger, configured on first call."""
    configure()
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


_configured = False


def configure(level: str | None = None, stream: Any = None) -> None:
    """Install the JSON handler on the project logger (idempotent; `stream` replaces the output)."""
    global _configured
    logger = logging.getLogger(LOGGER_NAME)
    if _configured and stream is None and level is None:
        return
    if not _configured or stream is not None:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(_Formatter("{message}{name}", style="{", rename_fields={"message": "msg", "name": "logger"},
                                        json_ensure_ascii=False))
        logger.addHandler(handler)
        logger.propagate = False
    if level is not None or not _configured:
        logger.setLevel(_LEVEL_VALUES.get((level or "INFO").upper(), logging.INFO))
    _configured = True


def bind(**fields: Any) -> contextvars.Token[dict[str, Any]]:
    """Add fields (request_id, function, ...) to every line until `unbind(token)`."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: contextvars.Token[dict[str, Any]]) -> None:
    _context.reset(token)


def context_fields() -> dict[str, Any]:
    """The currently bound fields (threads in a fan-out copy them)."""
    return dict(_context.get())
