"""The installed Qt binding must not be one that crashes Rill."""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_app.ui.qtcheck import binding_problem


class _Emitter(QObject):
    text = Signal(str)


def test_emitting_many_signals_keeps_the_interpreter_whole(qapp: Any) -> None:
    emitter = _Emitter()
    received: list[str] = []
    emitter.text.connect(received.append)
    before = sys.getrefcount(True)
    for _ in range(500):
        emitter.text.emit("token")
    assert len(received) == 500
    assert sys.getrefcount(True) >= before
    assert binding_problem() is None
