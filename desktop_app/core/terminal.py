"""Text from outside Rill, made safe to write to a terminal.

A reply, a server's error, a model name or a stored title may carry control characters: an
escape sequence that sets the window title, clears the screen or writes the clipboard
(OSC 52), a carriage return that overwrites a line, or a bidi override that reorders what
is shown. :func:`for_terminal` makes each of them visible instead: C0 controls become
their Unicode control pictures (ESC → ``␛``, BEL → ``␇``), DEL becomes ``␡``, C1 controls,
bidi overrides and lone surrogates become U+FFFD. Newline and tab stay; a carriage return
is dropped. :func:`json_for_terminal` escapes the same characters inside JSON text, which
keeps the data exactly and the bytes harmless.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["for_terminal", "json_for_terminal"]

_BIDI: Final = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_JSON_UNSAFE: Final = re.compile(f"[\x7f-\x9f{_BIDI}\ud800-\udfff]")

_VISIBLE: Final[dict[int, str]] = {
    **{c: chr(0x2400 + c) for c in range(0x20) if chr(c) not in "\t\n\r"},
    ord("\r"): "",
    0x7F: "\u2421",
    **{c: "\ufffd" for c in range(0x80, 0xA0)},
    **{ord(c): "\ufffd" for c in _BIDI},
}


def for_terminal(text: str) -> str:
    """``text`` with every control but newline and tab made visible (see the module)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _VISIBLE.get(ord(char), "\ufffd")


def json_for_terminal(text: str) -> str:
    """JSON ``text`` with DEL, C1 controls, bidi overrides and lone surrogates written as
    ``\\uXXXX`` escapes (JSON writers escape the C0 controls already)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
