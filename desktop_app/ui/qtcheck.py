"""A check for a Qt binding Rill cannot run on.

PySide6 6.12.0 on CPython 3.11 gives back ``True`` from every ``SignalInstance.emit()``
without owning a reference to it, so each emit lowers the interpreter's count of ``True``
by one, and after some thousands of emits the interpreter aborts ("bool_dealloc"). Rill's
requirements exclude that release; this check turns an installation that has it anyway
into a clear message instead of a crash in the middle of a reply.
"""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def emit_leaks_bools() -> bool:
    """Whether ``emit()`` lowers the reference count of ``True`` in this interpreter."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(10):
        probe.ping.emit()
    return sys.getrefcount(True) < before


def binding_problem() -> str | None:
    """A sentence saying why this Qt binding cannot run Rill, or None when it can."""
    if not emit_leaks_bools():
        return None
    return (
        f"PySide6 {PySide6.__version__} has a bug that crashes Rill on Python "
        f"{sys.version_info.major}.{sys.version_info.minor} (each Qt signal loses a "
        "reference to True). Install another version: pip install 'PySide6-Essentials<6.12'."
    )
