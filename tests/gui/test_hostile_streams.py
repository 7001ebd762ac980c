"""Hostile streams in the window: a split surrogate pair, an echoed key, an endless reply,
a nesting bomb and a redirect each end the turn with a state and a sentence, and nothing
the server sent becomes markup or leaks the key.

Everything goes over real sockets to the simulator's hostile mode and into the real
``MainWindow``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop_app.core.secrets import SERVICE
from desktop_app.simulator import SimulatorThread, hostile
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, sim_config, wait_reply

KEY = "sk-window-PLANTED-0123456789abcdefghij"


def _labels(window: MainWindow) -> str:
    return "\n".join(label.text() + label.toolTip() for label in window.findChildren(QLabel))


def ask(qtbot: QtBot, window: MainWindow, text: str, timeout: int = 10_000) -> None:
    """Send ``text`` and wait until the turn is recorded and its task, the HTTP response's
    closing included, has ended."""
    wait_reply(qtbot, window, lambda: window.send(text), timeout=timeout)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=timeout)


def _stored(home: Path) -> str:
    """Every text column of the history, as one string."""
    path = home / "data" / "history.sqlite3"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT content, COALESCE(error, '') FROM messages").fetchall()
    return "\n".join(a + b for a, b in rows)


def test_a_split_surrogate_pair_finishes_the_reply_with_the_emoji(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, rill_home: Path
) -> None:
    sim.script(hostile.reply("openai", ["smile \ud83d", "\ude00 lone \ud800 end"]))
    ask(qtbot, window, "hi")
    reply = window.view.widgets[-1]
    assert reply.state == "complete"
    assert reply.text() == "smile \U0001f600 lone \ufffd end"
    assert "smile \U0001f600 lone \ufffd end" in _stored(rill_home)


def test_an_echoed_key_is_never_shown_or_stored(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    windows.keyring.set_password(SERVICE, "Simulator", KEY)
    window = windows.make(sim_config(sim, rill_home))
    for pad in (0, 250, 280):  # the key whole, and across the cut of a long message
        sim.script(hostile.echo_key_error("openai", 401, pad=pad))
        ask(qtbot, window, "hi")
        reply = window.view.widgets[-1]
        assert reply.state == "failed"
        shown = _labels(window) + reply.error_label.text()
        assert "Incorrect API key" in shown or "rejected" in shown
        for text in (shown, _stored(rill_home)):
            assert KEY[:12] not in text and KEY[-12:] not in text


def test_an_endless_reply_ends_at_the_limit_keeping_its_text(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home, **{"resilience.max_reply_mb": 0.05}))
    sim.script(hostile.endless("openai", "spam "))
    ask(qtbot, window, "hi", 20_000)
    reply = window.view.widgets[-1]
    assert reply.state in ("failed", "interrupted")
    assert "limit" in reply.error_label.text()
    assert reply.text().startswith("spam spam")
    assert 40_000 <= len(reply.text()) <= 60_000
    assert reply.text() in _stored(rill_home)


def test_a_nesting_bomb_and_a_redirect_each_end_in_one_sentence(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(hostile.nesting_bomb("openai"), hostile.nesting_bomb("openai"))
    ask(qtbot, window, "hi", 20_000)
    reply = window.view.widgets[-1]
    assert reply.state == "failed"
    assert reply.error_label.text()
    assert len(sim.chat_requests) == 2  # retried once, then failed

    sim.script(hostile.redirect("openai", "http://127.0.0.1:9/steal"))
    ask(qtbot, window, "again")
    reply = window.view.widgets[-1]
    assert reply.state == "failed"
    assert "http://127.0.0.1:9/steal" in reply.error_label.text()
    assert len(sim.chat_requests) == 3  # not retried, not followed
