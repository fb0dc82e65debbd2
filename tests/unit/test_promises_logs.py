"""The logging promises: one JSON line per event, Cloud Logging level names, ids on every line, and no
credential in any line, whatever its shape and whether or not it carries its `Api-Key `/`Bearer ` prefix."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared import logs


@pytest.fixture
def lines() -> Iterator[Any]:
    stream = io.StringIO()
    logs.configure(level="TRACE", stream=stream)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    read.text = stream.getvalue  # type: ignore[attr-defined]
    yield read
    logs.configure(level="INFO", stream=sys.stdout)


# Credentials of every shape we know, written as they may show up: bare, with their header word, in JSON.
BARE = {
    "Yandex API key": "AQVNbare-api-key-without-prefix-0123456789",
    "IAM token": "t1.9euelZqXyMnNy5KblpqRm5yOj5aPyu3rnpWak8barevalue",
    "JWT": "eyJhbGciOiJQUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJzYTEifQ.c2lnbmF0dXJlLWJ5dGVz",
    "caller key": "fmk_AWbg-l3-kSj-K0NX_4yz5nPGmB9ykMGr61mhg40BlF8",
}


@pytest.mark.parametrize("kind", sorted(BARE))
def test_a_credential_without_its_prefix_is_redacted(lines: Any, kind: str) -> None:
    secret = BARE[kind]
    logs.get_logger("t").warning("saw %s in a body", secret, extra={"echo": {"nested": [secret]}})
    (line,) = lines()
    assert secret not in lines.text()
    assert line["msg"] == "saw [REDACTED] in a body" and line["echo"] == {"nested": ["[REDACTED]"]}


@pytest.mark.parametrize("header", ["Api-Key", "Bearer", "api-key", "bearer"])
def test_a_header_keeps_its_word_and_loses_its_value(lines: Any, header: str) -> None:
    logs.get_logger("t").info(f"Authorization: {header} short-opaque-value, then more")
    assert lines()[0]["msg"] == f"Authorization: {header} [REDACTED], then more"


def test_private_keys_are_redacted_even_when_cut_off(lines: Any) -> None:
    whole = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    cut = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtruncatedhere"
    log = logs.get_logger("t")
    log.error("key: %s; after", whole)
    log.error("key: %s", cut)
    first, second = lines()
    assert first["msg"] == "key: [REDACTED]; after" and second["msg"] == "key: [REDACTED]"


def test_registered_secrets_of_no_known_shape_are_redacted_from_six_characters() -> None:
    six, five = uuid.uuid4().hex[:6], uuid.uuid4().hex[:5]  # values no earlier test can have registered
    logs.register_secret(six)
    logs.register_secret(five)  # too short to tell from ordinary text: not registered
    logs.register_secret(None)
    logs.register_secret("")
    assert logs.redact(f"a {six} b") == "a [REDACTED] b"
    assert logs.redact(f"a {five} b") == f"a {five} b"
    assert logs.redact("nothing secret here") == "nothing secret here"


def test_a_secret_inside_another_does_not_break_it() -> None:
    core = "m" + uuid.uuid4().hex[:8]
    nested = ["a" * n + core + "a" * n for n in range(12)]  # each holds all the shorter ones
    for secret in nested:
        logs.register_secret(secret)
    # only longest-first replaces every one whole: any other order of the 12 leaves a's behind somewhere
    # (reverse alphabetical order, in particular, is shortest-first here)
    assert logs.redact(" ".join(nested)) == " ".join([logs.REDACTED] * 12)


def test_short_lookalikes_are_left_alone() -> None:
    text = "AQVNshort t1.short eyJ.x fmk_short ordinary words"
    assert logs.redact(text) == text


def test_lines_are_json_with_cloud_logging_levels(lines: Any) -> None:
    log = logs.get_logger("levels")
    for level in (logs.TRACE, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL, 25):
        log.log(level, "x")
    assert [line["level"] for line in lines()] == ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "Level 25"]
    assert {line["logger"] for line in lines()} == {"fm.levels"}


def test_bound_fields_are_on_every_line_until_unbound(lines: Any) -> None:
    log = logs.get_logger("ctx")
    outer = logs.bind(request_id="req-1", function="completion", empty=None)
    inner = logs.bind(task=3)
    assert logs.context_fields() == {"request_id": "req-1", "function": "completion", "task": 3}
    log.info("inside", extra={"request_id": "explicit-wins"})
    logs.unbind(inner)
    log.info("outer only")
    logs.unbind(outer)
    log.info("outside")
    inside, outer_line, outside = lines()
    assert inside["request_id"] == "explicit-wins" and inside["task"] == 3 and inside["function"] == "completion"
    assert outer_line["request_id"] == "req-1" and "task" not in outer_line and "empty" not in outer_line
    assert "request_id" not in outside and logs.context_fields() == {}


def test_text_is_written_as_is_not_escaped(lines: Any) -> None:
    logs.get_logger("t").info("привет")
    assert '"msg": "привет"' in lines.text()


def test_the_first_configure_sets_info_and_a_new_stream_replaces_the_old(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger(logs.LOGGER_NAME)
    monkeypatch.setattr(logs, "_configured", False)  # as in a fresh instance
    logger.setLevel(logging.NOTSET)
    first, second = io.StringIO(), io.StringIO()
    try:
        logs.configure(stream=first)
        assert logger.level == logging.INFO
        logs.get_logger("t").info("to the first")
        logs.configure(stream=second)  # a stream alone: the handler moves, the level stays
        logs.get_logger("t").info("to the second")
        assert logger.level == logging.INFO and len(logger.handlers) == 1
        assert [json.loads(x)["msg"] for x in first.getvalue().splitlines()] == ["to the first"]
        assert [json.loads(x)["msg"] for x in second.getvalue().splitlines()] == ["to the second"]
    finally:
        logs.configure(level="INFO", stream=sys.stdout)


def test_configure_installs_one_handler_and_keeps_lines_to_itself() -> None:
    stream = io.StringIO()
    logs.configure(level="WARN", stream=stream)
    logs.configure()  # a second call without arguments changes nothing
    logs.configure(level="bogus")  # an unknown name falls back to INFO
    logger = logging.getLogger(logs.LOGGER_NAME)
    try:
        assert len(logger.handlers) == 1 and logger.propagate is False and logger.level == logging.INFO
        logs.configure(level="error")
        assert logger.level == logging.ERROR
        logs.get_logger("t").warning("dropped")
        logs.get_logger("t").error("kept")
        assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["kept"]
        assert logs.get_logger().name == "fm" and logs.get_logger("x").name == "fm.x"
    finally:
        logs.configure(level="INFO", stream=sys.stdout)
