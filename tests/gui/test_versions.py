"""Versions in the window: each prompt version keeps its own replies, Regenerate adds to
the shown prompt's replies, and `q` follows the path last shown."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton
from pytestqt.qtbot import QtBot

from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.chat_view import MessageWidget
from desktop_app.ui.main_window import MainWindow
from tests.gui.test_chat import send, stored
from tests.integration.test_cli import q


def shown(window: MainWindow) -> list[tuple[str, str]]:
    """Each message widget's text and version label ("" when it has one version)."""
    return [
        (w.text(), w.version_label.text() if w.version_label.isVisibleTo(window) else "")
        for w in window.view.widgets
    ]


def click(qtbot: QtBot, window: MainWindow, button: QAbstractButton) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_prompt_versions_keep_their_own_replies(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, rill_home: Path
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about lakes")
    lakes = window.view.widgets[-1].text()
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about mountains")
    mountains = window.view.widgets[-1].text()
    assert mountains != lakes
    assert shown(window) == [("Tell me about mountains", "2/2"), (mountains, "")]

    prompt: MessageWidget = window.view.widgets[0]
    click(qtbot, window, prompt.prev_button)  # ◀ on the prompt: its own reply comes back
    assert shown(window) == [("Tell me about lakes", "1/2"), (lakes, "")]

    sim.script(Fault(tokens=7))
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    asked = sim.chat_requests[-1].json["messages"]
    assert [m["content"] for m in asked] == ["Tell me about lakes"]
    again = window.view.widgets[-1].text()
    assert again != lakes
    assert shown(window) == [("Tell me about lakes", "1/2"), (again, "2/2")]

    click(qtbot, window, window.view.widgets[-1].prev_button)
    assert shown(window) == [("Tell me about lakes", "1/2"), (lakes, "1/2")]

    click(qtbot, window, window.view.widgets[0].next_button)  # ▶: prompt 2 and its reply
    assert shown(window) == [("Tell me about mountains", "2/2"), (mountains, "")]
    assert [m.content for m in stored(qtbot, window)] == ["Tell me about mountains", mountains]

    # q follows the path last shown
    conversation = window.controller.conversation_id
    exported = q("--export", str(conversation), home=rill_home)
    assert exported.returncode == 0, exported.stderr
    body = exported.stdout.split("\n", 1)[1]  # after the title (the first prompt's)
    assert "Tell me about mountains" in body and mountains in body
    assert "Tell me about lakes" not in body and lakes not in body
    as_json = json.loads(
        q("--export", str(conversation), "--format", "json", home=rill_home).stdout
    )
    assert len(as_json["messages"]) == 5  # every version is kept

    answered = q("-c", "And then?", home=rill_home)
    assert answered.returncode == 0, answered.stderr
    asked = sim.chat_requests[-1].json["messages"]
    assert [m["content"] for m in asked] == ["Tell me about mountains", mountains, "And then?"]
