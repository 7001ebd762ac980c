"""The log file: location, levels, rotation, idempotence, and no secret ever written."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core import logs, secrets
from desktop_app.core.logs import (
    LOG_FILE,
    register_secret,
    scrub,
    setup_logging,
    shutdown_logging,
)

PLANTED = "sk-test-PLANTED-0123456789abcdef"
UNSHAPED = "plain-PLANTED-secret-without-a-known-shape"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    yield
    shutdown_logging()


def rill_handlers() -> list[logging.Handler]:
    return list(logging.getLogger("rill").handlers)


def read_all(log_dir: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(log_dir.glob(f"{LOG_FILE}*")))


def test_register_secret_is_the_one_in_secrets() -> None:
    assert logs.register_secret is secrets.register_secret


def test_file_location_format_and_level(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    path = setup_logging(log_dir)
    assert path == log_dir / LOG_FILE
    log = logging.getLogger("rill.engine")
    log.info("hello %s", "world")
    log.debug("not at INFO")
    for handler in rill_handlers():
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "INFO" in text and "rill.engine: hello world" in text
    assert "not at INFO" not in text
    assert text[:4].isdigit()  # starts with the time


def test_debug_and_stream(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(tmp_path, debug=True, stream=stream)
    logging.getLogger("rill.cli").debug("details for q --debug")
    assert "details for q --debug" in stream.getvalue()
    assert logging.getLogger("rill").getEffectiveLevel() == logging.DEBUG


def test_planted_key_never_reaches_the_file_or_the_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    register_secret(PLANTED)
    register_secret(UNSHAPED)
    stream = io.StringIO()
    path = setup_logging(tmp_path, debug=True, stream=stream)
    log = logging.getLogger("rill.engine")
    with caplog.at_level(logging.DEBUG, logger="rill"):
        log.info(f"key in the message {PLANTED}")
        log.info("key in the arguments %s and %r", PLANTED, {"k": UNSHAPED})
        log.warning("header Authorization: Bearer %s", PLANTED)
        log.debug("headers %s", {"x-api-key": "anthropic-value-123", "x-goog-api-key": "g-456"})
        log.debug("url https://example.test/v1beta/models?alt=sse&key=querysecret99")
        try:
            raise RuntimeError(f"the server echoed {PLANTED} and {UNSHAPED}")
        except RuntimeError:
            log.exception("request failed")
        log.error("stack with %s", PLANTED, stack_info=True)
    for handler in rill_handlers():
        handler.flush()

    written = path.read_text(encoding="utf-8")
    shown = stream.getvalue()
    captured = "\n".join(caplog.text.splitlines())
    for text in (written, shown, captured):
        assert PLANTED not in text
        assert UNSHAPED not in text
        assert "anthropic-value-123" not in text
        assert "g-456" not in text
        assert "querysecret99" not in text
    assert "key in the message sk-•••" in written
    assert "Authorization: Bearer •••" in written
    assert "RuntimeError: the server echoed" in written  # the traceback is still there
    assert "request failed" in shown and "Traceback" in shown
    assert "request failed" in captured and "RuntimeError" in captured
    assert "Stack (most recent call last)" in written


def test_scrub_headers_and_keys() -> None:
    assert scrub("Authorization: Bearer abcdefghijklmnop") == "Authorization: Bearer •••"
    assert scrub("authorization=token xyz") == "authorization=token •••"
    assert scrub("{'X-Api-Key': 'abc123'}") == "{'X-Api-Key': '•••'}"
    assert scrub("x-goog-api-key: AIza-whatever") == "x-goog-api-key: •••"
    assert scrub("GET /v1/models?key=abc&alt=sse") == "GET /v1/models?key=•••&alt=sse"
    assert scrub("nothing secret here") == "nothing secret here"
    assert scrub(scrub("Authorization: Bearer abc")) == "Authorization: Bearer •••"


def test_rotation(tmp_path: Path) -> None:
    path = setup_logging(tmp_path, max_bytes=400, backup_count=2)
    log = logging.getLogger("rill.rotation")
    for n in range(60):
        log.info("line %03d %s", n, "x" * 40)
    for handler in rill_handlers():
        handler.flush()
    assert path.exists()
    assert (tmp_path / f"{LOG_FILE}.1").exists()
    assert (tmp_path / f"{LOG_FILE}.2").exists()
    assert not (tmp_path / f"{LOG_FILE}.3").exists()
    assert path.stat().st_size <= 400
    assert "line 059" in path.read_text(encoding="utf-8")


def test_setup_twice_does_not_double_handlers(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(tmp_path, stream=stream)
    setup_logging(tmp_path, stream=stream)
    assert len(rill_handlers()) == 2
    logging.getLogger("rill.x").info("once only")
    for handler in rill_handlers():
        handler.flush()
    assert stream.getvalue().count("once only") == 1
    assert read_all(tmp_path).count("once only") == 1
    # Calling again without a stream drops the stream handler.
    setup_logging(tmp_path)
    assert len(rill_handlers()) == 1


def test_other_handlers_are_left_alone(tmp_path: Path) -> None:
    foreign = logging.NullHandler()
    logger = logging.getLogger("rill")
    logger.addHandler(foreign)
    try:
        setup_logging(tmp_path)
        setup_logging(tmp_path)
        shutdown_logging()
        assert rill_handlers() == [foreign]
    finally:
        logger.removeHandler(foreign)


def test_shutdown_removes_and_closes(tmp_path: Path) -> None:
    setup_logging(tmp_path)
    handlers = rill_handlers()
    shutdown_logging()
    assert rill_handlers() == []
    assert logging.getLogger("rill").level == logging.NOTSET
    assert all(getattr(h, "stream", None) is None for h in handlers)
