"""The window's flow: what --demo chats with, where the keyboard goes after an action,
the welcome card, the simulator offered after a profile exists, export and import."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, run, sim_config

DEAD_URL = "http://127.0.0.1:9/v1"


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def focused_on_prompt(window: MainWindow) -> None:
    assert QApplication.focusWidget() is window.composer.edit


def test_demo_chats_with_the_simulator_whatever_the_last_chat_used(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    def config() -> object:
        c = sim_config(sim, rill_home)
        c.profiles["Dead"] = Profile(name="Dead", provider="openai", base_url=DEAD_URL)
        c.values["default_profile"] = "Dead"
        return c

    first = windows.make(config())  # type: ignore[arg-type]
    history = first.services.history
    assert history is not None
    old = run(qtbot, first.services.run_io(history.create_conversation, profile="Dead"))
    run(qtbot, first.services.run_io(history.add_message, old.id, "user", "Hello dead server"))
    with qtbot.waitSignal(first.controller.conversation_loaded, timeout=5000):
        first.controller.open_conversation(old.id)
    assert first.controller.settings.profile == "Dead"
    windows.close(first)

    demo = windows.make(config(), demo=True)  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: not demo.controller._background, timeout=5000)  # loads settled
    assert demo.controller.settings.profile == "Simulator"
    assert demo.header.profile.currentText() == "Simulator"
    assert demo.controller.conversation_id is None
    with qtbot.waitSignal(demo.controller.finished, timeout=10_000):
        send(qtbot, demo, "Hello simulator")
    assert sim.chat_requests, "the question went to the simulator"


def test_focus_returns_to_the_prompt_after_retry(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=400, message="Bad parameter."))
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Bad request please")
    reply = window.view.widgets[-1]
    assert reply.retry_button.isVisible()
    reply.retry_button.setFocus()
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(reply.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: focused_on_prompt(window), timeout=2000)
    qtbot.keyClicks(window.composer.edit, "next")
    assert window.sidebar.search.text() == ""
    assert window.composer.text() == "next"


def test_focus_returns_to_the_prompt_after_continue(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 40
    sim.default_tokens = 80
    send(qtbot, window, "Tell me about bridges")
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 30, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        window.controller.stop()
    sim.tokens_per_s = 0
    reply = window.view.widgets[-1]
    reply.continue_button.setFocus()
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(reply.continue_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: focused_on_prompt(window), timeout=2000)


def test_focus_returns_to_the_prompt_after_regenerate_and_opening_a_chat(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Name a river")
    reply = window.view.widgets[-1]
    reply.regen_button.setFocus()
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(reply.regen_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: focused_on_prompt(window), timeout=2000)
    window.sidebar.list.setFocus()
    window.sidebar.open_requested.emit(window.controller.conversation_id)
    qtbot.waitUntil(lambda: focused_on_prompt(window), timeout=2000)
