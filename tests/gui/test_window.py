"""The window around the chat: shortcuts, conversation list, settings, first run, draft,
theme and the unhandled-exception dialog."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import tomllib
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressDialog,
)
from pytestqt.qtbot import QtBot

from desktop_app import app as app_module
from desktop_app.app import (
    UPGRADING_TEXT,
    ExceptionReporter,
    after_first_frame,
    build_parser,
    open_services,
)
from desktop_app.core.config import Config
from desktop_app.core.paths import app_paths
from desktop_app.simulator import SimulatorThread
from desktop_app.ui import theme
from desktop_app.ui.first_run import ProbeTarget
from desktop_app.ui.main_window import SIMULATOR_PROFILE, MainWindow
from desktop_app.ui.shortcuts import SHORTCUTS
from tests.gui.util import Windows, run, sim_config

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


def ask(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def test_enter_sends_and_shift_enter_breaks_the_line(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    edit = window.composer.edit
    edit.setFocus()
    qtbot.keyClicks(edit, "first line")
    qtbot.keyClick(edit, Qt.Key.Key_Return, SHIFT)
    qtbot.keyClicks(edit, "second line")
    assert window.composer.text() == "first line\nsecond line"
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert window.composer.text() == ""
    assert window.view.widgets[0].text() == "first line\nsecond line"


def test_ctrl_enter_mode(qtbot: QtBot, window: MainWindow, sim: SimulatorThread) -> None:
    edit = window.composer.edit
    edit.set_send_with("ctrl+enter")
    edit.setFocus()
    qtbot.keyClicks(edit, "one")
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.keyClicks(edit, "two")
    assert window.composer.text() == "one\ntwo"
    assert not window.controller.busy
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(edit, Qt.Key.Key_Return, CTRL)
    assert window.view.widgets[0].text() == "one\ntwo"


def test_each_shortcut_does_its_job(qtbot: QtBot, window: MainWindow, sim: SimulatorThread) -> None:
    ask(qtbot, window, "Hello river")
    reply = window.view.widgets[-1].text()

    # Ctrl+Shift+C copies the last reply
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_C, CTRL | SHIFT)
    assert QGuiApplication.clipboard().text() == reply

    # Ctrl+K searches (even from the prompt field, where Ctrl+K deletes to the line end)
    window.composer.edit.setFocus()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_K, CTRL)
    assert window.sidebar.search.hasFocus()
    qtbot.keyClicks(window.sidebar.search, "river")
    qtbot.waitUntil(lambda: "match" in window.sidebar.heading.text(), timeout=3000)
    assert window.sidebar.ids() == [window.controller.conversation_id]

    # Ctrl+L focuses the prompt
    qtbot.keyClick(window.sidebar.search, Qt.Key.Key_L, CTRL)
    assert window.composer.edit.hasFocus()

    # Ctrl+R regenerates
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_R, CTRL)
    assert window.view.widgets[-1].version_label.text() == "2/2"

    # Ctrl+N starts a new chat
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_N, CTRL)
    qtbot.waitUntil(lambda: not window.view.widgets)
    assert window.controller.conversation_id is None
    assert window.composer.edit.hasFocus()

    # Ctrl+, opens the settings, not modal
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Comma, CTRL)
    dialog = window.settings_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    dialog.close()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)

    # F1 lists every shortcut, not modal
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_F1)
    shortcuts = window.shortcuts_dialog
    assert shortcuts is not None and shortcuts.isVisible() and not shortcuts.isModal()
    listed = [action for _keys, action in shortcuts.rows()]
    assert listed == [s.description for s in SHORTCUTS]
    assert ("Ctrl+Shift+C", "Copy the last reply") in shortcuts.rows()
    shortcuts.close()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)

    # Ctrl+Q closes the window (the app then quits)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Q, CTRL)
    qtbot.waitUntil(lambda: not window.isVisible())
    assert window.shutdown_task is not None


def test_help_menu_lists_the_shortcuts(qtbot: QtBot, window: MainWindow) -> None:
    menus: dict[str, QMenu] = {}
    for action in window.menuBar().actions():
        menu = action.menu()
        assert isinstance(menu, QMenu)
        menus[action.text().replace("&", "")] = menu
    help_items = [a.text().replace("&", "") for a in menus["Help"].actions()]
    assert "Keyboard Shortcuts" in help_items
    chat_items = [a.text().replace("&", "") for a in menus["Chat"].actions() if a.text()]
    assert "Stop the reply" in chat_items and "Regenerate the last reply" in chat_items
    assert window.actions_["quit"].shortcut().toString() == "Ctrl+Q"
    assert window.actions_["settings"].shortcut().toString() == "Ctrl+,"


def test_search_rename_and_delete_conversations(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    ask(qtbot, window, "Tell me about harbours")
    first = window.controller.conversation_id
    assert first is not None
    window.new_chat()
    ask(qtbot, window, "Tell me about mountains")
    second = window.controller.conversation_id
    qtbot.waitUntil(lambda: window.sidebar.ids() == [second, first], timeout=3000)

    window.sidebar.search.setText("harbours")
    qtbot.waitUntil(lambda: window.sidebar.ids() == [first], timeout=3000)
    window.sidebar.search.clear()
    qtbot.waitUntil(lambda: window.sidebar.ids() == [second, first], timeout=3000)

    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=3000):
        window.sidebar.open_requested.emit(first)
    assert window.view.widgets[0].text() == "Tell me about harbours"

    window.sidebar.start_rename(first)
    item = window.sidebar.item_for(first)
    assert item is not None
    with qtbot.waitSignal(window.controller.conversations_listed, timeout=3000):
        item.setText("Ports of call")
    renamed = window.sidebar.item_for(first)
    assert renamed is not None and "Ports of call" in renamed.text()
    assert window.sidebar.ids() == [second, first]  # renaming keeps the chat's place

    history = window.services.history
    assert history is not None
    window.confirm_delete(first)
    box = window._dialogs[-1]
    assert isinstance(box, QMessageBox) and box.isVisible()
    with qtbot.waitSignal(window.controller.conversations_listed, timeout=3000):
        yes = box.button(QMessageBox.StandardButton.Yes)
        assert yes is not None
        qtbot.mouseClick(yes, Qt.MouseButton.LeftButton)
    assert window.sidebar.ids() == [second]
    assert window.controller.conversation_id is None
    assert run(qtbot, window.services.run_io(history.get_conversation, first)) is None


def test_the_draft_survives_a_restart(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    window.composer.edit.setFocus()
    qtbot.keyClicks(window.composer.edit, "half-written thought")
    draft = window.draft_path
    qtbot.waitUntil(lambda: draft.exists(), timeout=3000)
    windows.close(window)
    assert draft.read_text(encoding="utf-8") == "half-written thought"
    again = windows.make(sim_config(sim, rill_home))
    assert again.composer.text() == "half-written thought"


def test_a_damaged_history_is_checked_after_the_window_shows_and_set_aside_next_start(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    """The window opens its history without SQLite's whole-file check, runs the check once
    it is shown, and says what it found; the next start moves the damaged file aside."""
    config = sim_config(sim, rill_home)
    window = windows.make(config)
    history = window.services.history
    assert history is not None
    conversation = history.create_conversation(title="kept")
    for number in range(300):
        history.add_message(conversation.id, "user", f"message number {number} " * 20)
    windows.close(window)
    path = app_paths(rill_home).history_db
    with path.open("r+b") as file:
        file.seek(4096 * 5)
        file.write(b"\xff" * 4096)

    window = windows.make(config)
    assert window.services.history is not None
    assert window.services.history.recovered_from is None  # opened without the check
    label = window.status.label
    qtbot.waitUntil(
        lambda: "found damage in its conversation history" in label.text(), timeout=10_000
    )
    assert "Export the conversations you need now" in label.text()
    windows.close(window)

    window = windows.make(config)
    moved = window.services.history.recovered_from if window.services.history else None
    assert moved is not None and moved.name.startswith("history.sqlite3.corrupt-")
    assert any("a new one was started" in w for w in window.services.warnings)


def _progress_dialogs() -> list[QProgressDialog]:
    return [
        w
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QProgressDialog) and w.isVisible()
    ]


def test_a_slow_open_shows_what_is_happening_until_it_is_done(qtbot: QtBot) -> None:
    """Opening the stores runs in a thread; past PROGRESS_AFTER_S a window says what is
    happening (Esc does not hide it), and it goes when the stores are open."""
    assert run(qtbot, open_services(lambda: "quick", upgrading=True)) == "quick"
    assert _progress_dialogs() == []

    release = threading.Event()

    def slow() -> str:
        release.wait(20)
        return "opened"

    task = asyncio.ensure_future(open_services(slow, upgrading=True))
    try:
        qtbot.waitUntil(lambda: len(_progress_dialogs()) == 1, timeout=5000)
        dialog = _progress_dialogs()[0]
        assert dialog.labelText().startswith(UPGRADING_TEXT)
        seconds = re.compile(r"\n\n(\d+) s$")

        def counted() -> int:
            found = seconds.search(dialog.labelText())
            return int(found.group(1)) if found else -1

        assert counted() >= 0  # the seconds are counted from the start
        qtbot.waitUntil(lambda: counted() >= 2, timeout=5000)
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: len(_progress_dialogs()) == 1, timeout=2000)
        assert not task.done()
    finally:
        release.set()
    qtbot.waitUntil(task.done, timeout=5000)
    assert task.result() == "opened"
    assert _progress_dialogs() == []


def test_settings_test_connection_save_and_theme(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_result.text().startswith("✓"), timeout=5000)
    assert "2 models" in dialog.test_result.text() and "sim-small" in dialog.test_result.text()
    qtbot.waitUntil(lambda: "answers" in dialog.cache_stats.text(), timeout=3000)

    dialog.p_base_url.setText("http://127.0.0.1:9/v1")
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_result.text().startswith("✗"), timeout=10_000)
    assert "connect" in dialog.test_result.text().lower()
    dialog.p_base_url.setText(sim.base_url("openai"))

    dialog.p_key.setText("sk-test-key-1234567890")
    scheme = dialog.fields["ui.theme"]
    assert isinstance(scheme, QComboBox)
    scheme.setCurrentIndex(scheme.findData("dark"))
    dialog.fields["resilience.max_retries"].setValue(5)  # type: ignore[attr-defined]
    config_file = window.services.paths.config_file
    with qtbot.waitSignal(window.status.label.windowTitleChanged, timeout=100, raising=False):
        pass
    dialog.save()
    qtbot.waitUntil(lambda: window.status.text == "Settings saved", timeout=5000)
    saved = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert saved["ui"]["theme"] == "dark"
    assert saved["resilience"]["max_retries"] == 5
    assert "sk-test" not in config_file.read_text(encoding="utf-8")
    assert window.services.engine.settings.max_retries == 5
    assert theme.current().mode == "dark"
    secrets = window.services.secrets
    assert secrets is not None
    assert secrets.get("Simulator", "openai") == "sk-test-key-1234567890"
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    theme.apply(app, "light")


def test_session_profiles_are_not_written_unless_kept(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(Config(path=app_paths(rill_home).config_file), start=False)
    window.add_session_profile(
        sim_config(sim, rill_home).profiles["Simulator"],
    )
    window.select_profile(SIMULATOR_PROFILE)
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    items = [dialog.profile_list.item(i).text() for i in range(dialog.profile_list.count())]
    assert SIMULATOR_PROFILE in items
    dialog.profile_list.setCurrentRow(items.index(SIMULATOR_PROFILE))
    assert dialog.keep_box.isVisible()
    dialog.save()
    config_file = window.services.paths.config_file
    qtbot.waitUntil(config_file.exists, timeout=3000)
    saved = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert SIMULATOR_PROFILE not in saved.get("profiles", {})
    assert saved.get("default_profile", "default") != SIMULATOR_PROFILE
    assert SIMULATOR_PROFILE in window.services.config.profiles

    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    items = [dialog.profile_list.item(i).text() for i in range(dialog.profile_list.count())]
    dialog.profile_list.setCurrentRow(items.index(SIMULATOR_PROFILE))
    dialog.keep_box.setChecked(True)
    config_file.unlink()
    dialog.save()
    qtbot.waitUntil(config_file.exists, timeout=3000)
    saved = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert saved["profiles"][SIMULATOR_PROFILE]["base_url"] == sim.base_url("openai")


def test_first_run_finds_a_server_posing_as_ollama(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    probes = (
        ProbeTarget("Ollama", "ollama", sim.url),
        ProbeTarget("LM Studio", "openai", f"http://127.0.0.1:{free_port()}/v1"),
    )
    window = windows.make(Config(path=app_paths(rill_home).config_file), probes=probes)
    qtbot.waitUntil(
        lambda: window.first_run_task is not None and window.first_run_task.done(), timeout=5000
    )
    card = window.welcome
    assert card is not None and card.isVisible()
    assert "Ollama" in card.text and "LM Studio" not in card.text
    assert window.controller.settings.profile == "Ollama (local)"
    assert window.header.profile.currentText() == "Ollama (local)"
    ask(qtbot, window, "Hello from the first run")
    assert window.view.widgets[-1].state == "complete"
    assert sim.chat_requests[-1].protocol == "ollama"
    assert window.welcome is None


def test_first_run_with_nothing_found_starts_the_simulator(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    class FakeSimulator:
        running = False

        def start(self) -> str:
            self.running = True
            return sim.base_url("openai")

    fake = FakeSimulator()
    probes = (ProbeTarget("Ollama", "ollama", f"http://127.0.0.1:{free_port()}"),)
    window = windows.make(
        Config(path=app_paths(rill_home).config_file), probes=probes, simulator=fake
    )
    qtbot.waitUntil(
        lambda: window.first_run_task is not None and window.first_run_task.done(), timeout=5000
    )
    assert fake.running
    card = window.welcome
    assert card is not None
    assert "no API key" in card.status.text()
    assert "simulator" in card.note.text() and "Simulator" in card.note.text()
    assert window.header.profile.currentText() == SIMULATOR_PROFILE
    assert SIMULATOR_PROFILE in window.ephemeral
    ask(qtbot, window, "Hello simulator")
    assert window.view.widgets[-1].state == "complete"


def test_an_unhandled_exception_is_logged_and_shown_without_blocking(
    qtbot: QtBot, window: MainWindow, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = ExceptionReporter()
    try:
        raise RuntimeError("boom in a slot")
    except RuntimeError as exc:
        reporter.excepthook(RuntimeError, exc, exc.__traceback__)
    dialog = reporter.dialog
    assert isinstance(dialog, QMessageBox)
    assert dialog.isVisible() and not dialog.isModal()
    assert "boom in a slot" in dialog.text()
    assert "boom in a slot" in caplog.text
    window.composer.set_text("still alive")
    assert window.composer.text() == "still alive"
    dialog.close()


def test_the_command_line() -> None:
    args = build_parser().parse_args(["--demo", "--home", "/tmp/x"])
    assert args.demo and args.home == "/tmp/x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_after_the_first_frame_runs_once_the_window_has_painted(qtbot: QtBot) -> None:
    label = QLabel("first frame")
    qtbot.addWidget(label)
    seen: list[bool] = []
    painted: list[bool] = []
    original = label.paintEvent

    def paint(event: object) -> None:
        painted.append(True)
        original(event)  # type: ignore[arg-type]

    label.paintEvent = paint  # type: ignore[method-assign, assignment]
    after_first_frame(label, lambda: seen.append(bool(painted)))
    assert seen == []
    label.show()
    qtbot.waitUntil(lambda: seen == [True], timeout=5000)
    label.update()
    qtbot.waitUntil(lambda: len(painted) >= 2, timeout=5000)
    assert seen == [True]


def test_after_the_first_frame_runs_anyway_when_no_frame_comes(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "FIRST_FRAME_WAIT_S", 0.05)
    hidden = QLabel("never shown")
    qtbot.addWidget(hidden)
    seen: list[str] = []
    after_first_frame(hidden, lambda: seen.append("ran"))
    qtbot.waitUntil(lambda: seen == ["ran"], timeout=5000)
