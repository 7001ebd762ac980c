"""A reopened chat shows what was known of each reply: estimated counts marked with ≈, and
a cancelled reply's tokens so far and its times."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.simulator import SimulatorThread, hostile
from tests.gui.util import Windows, sim_config
from tests.integration.test_real_servers import NO_USAGE_STREAM


def test_reopened_replies_keep_estimates_and_a_cancelled_replys_stats(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    sim.script(
        hostile.pieces(
            "openai", lambda _r: [NO_USAGE_STREAM], headers={"Content-Type": "text/event-stream"}
        )
    )
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        window.composer.set_text("Where do rivers go?")
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    sim.tokens_per_s = 40
    sim.default_tokens = 400
    window.composer.set_text("Tell me a long story")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 30, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    windows.close(window)

    again = windows.make(sim_config(sim, rill_home))
    qtbot.waitUntil(lambda: len(again.view.widgets) == 4, timeout=5000)
    estimated = again.view.widgets[1].details.text()
    assert re.search(r"≈\d+ tokens", estimated), estimated
    cancelled = again.view.widgets[3]
    assert cancelled.state == "cancelled"
    text = cancelled.details.text()
    assert re.search(r"≈\d+ tokens", text), text
    assert "first token" in text and "total" in text, text
