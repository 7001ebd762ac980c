"""Text from outside Rill made valid: what Rill keeps, shows or writes always encodes.

A JSON ``\\udxxx`` escape, a surrogate pair split across two chunks or a damaged file can
put halves of surrogate pairs into a Python string; such a string cannot be encoded as
UTF-8, so storing, printing or drawing it would fail.
"""

from __future__ import annotations

import re
from typing import Final

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with surrogate pairs joined and lone surrogates replaced by U+FFFD."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds any half of a surrogate pair."""
    return not text.isascii() and _SURROGATE.search(text) is not None
