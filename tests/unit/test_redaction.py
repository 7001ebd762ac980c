"""Secrets are masked before any text is cut, and so are their prefixes and URL passwords."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.errors import AuthError, ConfigError, CorruptStream, error_for_status, scrub
from desktop_app.core.logs import setup_logging, shutdown_logging
from desktop_app.core.secrets import MASK, redact, register_secret

KEY = "pRoXy0123456789abcdefghijKLMNOPQRSTUV"  # not shaped like any provider's key


def leaked(secret: str, text: str, window: int = 8) -> list[str]:
    """Every piece of ``secret`` at least ``window`` characters long found in ``text``."""
    return [
        secret[i : i + window]
        for i in range(len(secret) - window + 1)
        if secret[i : i + window] in text
    ]


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = setup_logging(tmp_path / "logs")
    try:
        yield path
    finally:
        shutdown_logging()


@pytest.mark.parametrize("kept", [8, 9, 12, 21, 30, len(KEY) - 1])
def test_a_prefix_of_a_key_cut_short_is_masked(kept: int) -> None:
    text = f"Incorrect API key provided: {KEY[:kept]}…"
    masked = redact(text, (KEY,))
    assert leaked(KEY, masked) == []
    assert masked == f"Incorrect API key provided: {MASK}…"


def test_shorter_prefixes_and_other_text_are_left_alone() -> None:
    assert redact(f"see {KEY[:7]} here", (KEY,)) == f"see {KEY[:7]} here"
    assert redact("nothing secret here", (KEY,)) == "nothing secret here"
    assert redact(f"{KEY} and {KEY}", (KEY,)) == f"{MASK} and {MASK}"


def test_a_public_prefix_alone_is_not_a_secret_prefix() -> None:
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
    assert redact("models start with sk-proj-", (key,)) == "models start with sk-proj-"
    assert redact(f"key {key[:12]}", (key,)) == f"key sk-proj-{MASK}"


@pytest.mark.parametrize("pad", [234, 240, 250, 259, 262])
def test_error_for_status_masks_before_it_clips(pad: int) -> None:
    register_secret(KEY)
    message = "x" * pad + f"Incorrect API key provided: {KEY}."
    error = error_for_status(401, message, provider="openai")
    assert isinstance(error, AuthError)
    for text in (str(error), error.message, error.detail):
        assert leaked(KEY, text) == [], text


@pytest.mark.parametrize("pad", [170, 185, 192])
def test_scrub_masks_a_prefix_left_by_a_cut_detail(pad: int) -> None:
    other = "QwErTy9876543210zyxwvutsrqponmLKJIHGFE"  # never registered
    detail = ("y" * pad + other + "}")[:200]
    error = scrub(CorruptStream("The server sent a chunk.", detail=detail), (other,))
    assert leaked(other, error.detail) == []
    assert error.detail.endswith(MASK)


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:s3cretPassw0rd@example.com/v1",
        "https://alice:s3cretPassw0rd@example.com:8443/v1/chat/completions",
        "http://alice:s3cretPassw0rd@[::1]:8080",
    ],
)
def test_url_credentials_are_masked(url: str) -> None:
    masked = redact(f"POST {url} -> 200", ())
    assert "s3cretPassw0rd" not in masked and "alice" not in masked
    assert f"://{MASK}@" in masked


def test_an_error_never_carries_url_credentials() -> None:
    error = ConfigError("The base URL 'http://bob:hunter2hunter2@host/v1' is not valid.")
    assert "hunter2" not in str(error)
    assert "hunter2" not in str(scrub(error, ()))


def test_the_log_masks_url_credentials_and_key_prefixes(log_file: Path) -> None:
    register_secret(KEY)
    log = logging.getLogger("rill.test")
    log.warning("POST %s failed", "http://carol:Pa55w0rdPa55w0rd@host:1/v1/chat")
    log.warning("detail: %s", ("z" * 190 + KEY)[:200])
    for handler in logging.getLogger("rill").handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "Pa55w0rd" not in text and "carol" not in text
    assert leaked(KEY, text) == []


def test_without_url_credentials_takes_the_user_and_password_out() -> None:
    from desktop_app.core.redaction import without_url_credentials

    assert without_url_credentials("http://alice:pw@host:8/v1") == "http://host:8/v1"
    assert without_url_credentials("https://token@host/v1 and http://x/") == (
        "https://host/v1 and http://x/"
    )
    assert without_url_credentials("http://host/v1") == "http://host/v1"
