"""The Rill window: PySide6 widgets and the one Qt-facing controller. No HTTP here."""

from __future__ import annotations

import sys
from types import ModuleType

import PySide6.QtCore  # noqa: F401  (loads PySide's import hook, made cheaper below)


def _cheaper_feature_scan() -> None:
    """Make PySide's question about each newly imported module cheap.

    PySide asks of every module imported after it whether its source mentions ``PySide6``
    (so that ``from __feature__ import`` can apply per module). It answers with
    ``inspect.getsource``, which keeps every line of every module in ``linecache`` (some
    megabytes) and costs tens of milliseconds at start. The same question is answered here
    from the file's bytes; modules without a ``.py`` file still get PySide's own answer.
    """
    feature = sys.modules.get("shibokensupport.feature")
    upstream = getattr(feature, "_mod_uses_pyside", None)
    if feature is None or upstream is None or getattr(upstream, "from_bytes", False):
        return

    def uses_pyside(module: ModuleType) -> bool:
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            try:
                with open(path, "rb") as source:
                    return b"PySide6" in source.read()
            except OSError:
                pass
        return bool(upstream(module))

    uses_pyside.from_bytes = True  # type: ignore[attr-defined]
    setattr(feature, "_mod_uses_pyside", uses_pyside)  # noqa: B010


_cheaper_feature_scan()
