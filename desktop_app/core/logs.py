"""Rill's log file: ``rill.log`` in the log folder, rotated, with every secret masked.

:func:`setup_logging` gives the ``rill`` logger hierarchy a rotating UTF-8 file handler and,
when asked (``q --debug``), a stream handler. Each of these handlers masks, before anything
is written:

- every value given to :func:`register_secret` (``Secrets`` registers each key it hands
  out or stores),
- every prefix of those values at least eight characters long (a key cut short),
- the user name and password of a URL (``http://user:pass@host``),
- strings shaped like API keys (``sk-…``, ``sk-ant-…``, ``AIza…``),
- the values of ``Authorization``, ``x-api-key`` and ``x-goog-api-key`` headers and of a
  ``key=`` URL parameter.

The masking rewrites the log record itself (message, arguments, exception and stack text),
so handlers further up the logger tree, such as the root logger's, receive it masked too.
"""

from __future__ import annotations

import logging
import re
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Final, TextIO

from desktop_app.core.redaction import MASK, known_secrets, redact, register_secret

__all__ = [
    "LOGGER",
    "LOG_FILE",
    "RedactingFilter",
    "RedactingFormatter",
    "register_secret",
    "scrub",
    "setup_logging",
    "shutdown_logging",
]

LOGGER: Final = "rill"
LOG_FILE: Final = "rill.log"
MAX_BYTES: Final = 1_000_000
BACKUP_COUNT: Final = 5
FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"

_HEADER_VALUES: Final = (
    re.compile(
        r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
        r"([^\s\"',;}\]]+)"
    ),
    re.compile(
        r"(?i)(\b(?:x-goog-api-key|x-api-key|api[-_]?key)[\"']?\s*[:=]\s*[\"']?)"
        r"([^\s\"',;}\]&]+)"
    ),
    re.compile(r"(?i)([?&]key=)([^\s\"'&#]+)"),
)

_setup_lock = threading.Lock()


def scrub(text: str) -> str:
    """``text`` with registered secrets, key-shaped strings and credential headers masked."""
    if not text:
        return text
    for pattern in _HEADER_VALUES:
        text = pattern.sub(_mask_value, text)
    return redact(text, known_secrets())


def _mask_value(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(0) if value == MASK else match.group(1) + MASK


class RedactingFilter(logging.Filter):
    """Rewrites each record so its message, exception and stack text are :func:`scrub`-bed.

    The formatted message replaces ``msg`` (and ``args`` is emptied), and the exception
    text is formatted and masked once, so every handler after this one sees the masked
    record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what logging itself would show
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output line goes through :func:`scrub` once more."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _RillFileHandler(RotatingFileHandler):
    """The file handler :func:`setup_logging` installs (so it can find it again)."""

    def handleError(self, record: logging.LogRecord) -> None:
        """A line that cannot be written (a full disk, a folder gone) is dropped silently:
        the log never disturbs what Rill shows, and it writes again once it can."""


class _RillStreamHandler(logging.StreamHandler[TextIO]):
    """The stream handler :func:`setup_logging` installs (so it can find it again)."""


def setup_logging(
    log_dir: Path,
    *,
    debug: bool = False,
    stream: TextIO | None = None,
    max_bytes: int = MAX_BYTES,
    backup_count: int = BACKUP_COUNT,
) -> Path:
    """Send the ``rill`` loggers to ``log_dir/rill.log`` (and ``stream``, if given).

    The level is INFO, or DEBUG with ``debug``. The file rotates at ``max_bytes`` and keeps
    ``backup_count`` old files. Calling again replaces the handlers an earlier call
    installed, so they are never doubled. Returns the log file's path.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    formatter = RedactingFormatter(FORMAT)
    redacting = RedactingFilter()

    file_handler = _RillFileHandler(
        path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
    )
    handlers: list[logging.Handler] = [file_handler]
    if stream is not None:
        handlers.append(_RillStreamHandler(stream))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redacting)

    logger = logging.getLogger(LOGGER)
    with _setup_lock:
        _remove_handlers(logger)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
    return path


def shutdown_logging() -> None:
    """Remove and close the handlers :func:`setup_logging` installed; reset the level."""
    logger = logging.getLogger(LOGGER)
    with _setup_lock:
        _remove_handlers(logger)
        logger.setLevel(logging.NOTSET)


def _remove_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, _RillFileHandler | _RillStreamHandler):
            logger.removeHandler(handler)
            handler.close()
