"""Masking secrets in any text: the one mechanism errors, logs and ``q`` share.

:func:`redact` masks, in this order:

- the user name and password of every URL (``http://user:pass@host`` → ``http://•••@host``),
- every given secret and every prefix of it at least :data:`MIN_SECRET_LENGTH` long, so a
  key that someone cut short (a server message clipped to 300 characters) still does not
  show,
- strings shaped like API keys (``sk-…``, ``sk-ant-…``, ``AIza…``).

Text is always masked before it is cut; masking the prefixes is what keeps a cut made
elsewhere from leaking the start of a key. This module imports nothing from Rill, so every
other module may use it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "known_secrets",
    "mask_url_credentials",
    "redact",
    "register_secret",
    "without_url_credentials",
]

MASK: Final = "•••"
MIN_SECRET_LENGTH: Final = 8
"""Shorter values are not treated as secrets, nor shorter prefixes of a secret: masking
them would garble ordinary text."""

_KEY_SHAPES: Final = re.compile(r"(?<![A-Za-z0-9_-])(sk-ant-|sk-proj-|sk-|AIza)([A-Za-z0-9_-]+)")
_MIN_SHAPE_BODY: Final = {"sk-ant-": 16, "sk-proj-": 16, "sk-": 16, "AIza": 30}
_PUBLIC_PREFIXES: Final = ("sk-ant-", "sk-proj-", "sk-", "AIza")
_URL_USERINFO: Final = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)([^\s/?#@\"'<>]+)@")

_registry_lock = threading.Lock()
_registry: set[str] = set()
_registry_sorted: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Add ``value`` to the process-wide secrets that :func:`redact` users mask.

    Values shorter than :data:`MIN_SECRET_LENGTH` (after stripping) are ignored.
    """
    global _registry_sorted
    if not value:
        return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _registry_lock:
        if value in _registry:
            return
        _registry.add(value)
        _registry_sorted = tuple(sorted(_registry, key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    """Every registered secret, longest first."""
    return _registry_sorted


def mask_url_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL masked."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


def without_url_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL taken out (for storing)."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: m.group(1), text)


def redact(text: str, secrets: Iterable[str | None] = (), *, prefixes: bool = True) -> str:
    """``text`` with URL credentials, secrets (and their prefixes) and key shapes masked.

    Each value of ``secrets`` at least :data:`MIN_SECRET_LENGTH` long is masked wherever it
    occurs whole, and wherever a prefix of it at least that long occurs (past any public
    prefix such as ``sk-proj-``). A well-known public prefix is kept so the reader can tell
    what kind of key was there: ``sk-•••``. With ``prefixes=False`` only whole secrets are
    masked.
    """
    if not text:
        return text
    text = mask_url_credentials(text)
    wanted = {s.strip() for s in secrets if s and len(s.strip()) >= MIN_SECRET_LENGTH}
    for secret in sorted(wanted, key=len, reverse=True):
        if prefixes:
            text = _mask_secret(text, secret)
        elif secret in text:
            text = text.replace(secret, _masked(secret))
    return _KEY_SHAPES.sub(_mask_shape, text)


def _mask_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` and each of its prefixes long enough to matter masked."""
    shortest = max(MIN_SECRET_LENGTH, len(_public_prefix(secret)) + 1)
    if len(secret) < shortest:
        return text.replace(secret, _masked(secret))
    head = secret[:shortest]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    masked = _masked(secret)
    while start >= 0:
        end = start + shortest
        limit = min(len(text), start + len(secret))
        while end < limit and text[end] == secret[end - start]:
            end += 1
        out.append(text[done:start])
        out.append(masked)
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)


def _public_prefix(secret: str) -> str:
    for prefix in _PUBLIC_PREFIXES:
        if secret.startswith(prefix):
            return prefix
    return ""


def _masked(secret: str) -> str:
    prefix = _public_prefix(secret)
    if prefix and len(secret) > len(prefix) + MIN_SECRET_LENGTH:
        return prefix + MASK
    return MASK


def _mask_shape(match: re.Match[str]) -> str:
    prefix, body = match.group(1), match.group(2)
    if len(body) < _MIN_SHAPE_BODY[prefix]:
        return match.group(0)
    return prefix + MASK
