"""The window's flow: what --demo chats with, where the keyboard goes after an action,
the welcome card, the simulator offered after a profile exists, export and import."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Config, Profile
from desktop_app.core.history import Conversation
from desktop_app.core.paths import app_paths
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.first_run import ProbeTarget
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.sidebar import LINE_ROLE, match_runs
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


def ask(qtbot: QtBot, window: MainWindow, text: str) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, text)


def test_file_menu_and_context_menu_offer_export_and_import(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    texts = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "&Export the chat as Markdown…" in texts and "&Import a chat…" in texts
    assert not window.actions_["export_json"].isEnabled()  # nothing to export yet
    ask(qtbot, window, "Tell me about harbours")
    assert window.actions_["export_json"].isEnabled()
    cid = window.controller.conversation_id
    assert cid is not None
    menu = [a.text() for a in window.sidebar.context_menu(cid).actions()]
    assert {"Rename", "Export as Markdown…", "Export as JSON…", "Import a chat…"} <= set(menu)
    window.actions_["export_json"].trigger()
    dialog = window._dialogs[-1]
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    dialog.reject()
    qtbot.waitUntil(lambda: dialog not in window._dialogs, timeout=2000)


def test_export_then_import_makes_a_new_chat(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, tmp_path: Path
) -> None:
    ask(qtbot, window, "Tell me about harbours")
    cid = window.controller.conversation_id
    assert cid is not None
    reply = window.view.widgets[-1].text()
    md, js = tmp_path / "chat.md", tmp_path / "chat.json"
    assert run(qtbot, window.export_to(cid, md, "markdown"))
    assert run(qtbot, window.export_to(cid, js, "json"))
    assert "Tell me about harbours" in md.read_text() and reply in md.read_text()
    assert json.loads(js.read_text())["format"] == "rill.conversation"
    assert stat.S_IMODE(js.stat().st_mode) == 0o600
    assert "Exported" in window.status.text

    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=5000):
        new_id = run(qtbot, window.import_from(js))
    assert new_id is not None and new_id != cid
    assert window.controller.conversation_id == new_id
    assert [w.text() for w in window.view.widgets] == ["Tell me about harbours", reply]
    qtbot.waitUntil(lambda: set(window.sidebar.ids()) == {cid, new_id}, timeout=3000)


def test_importing_a_file_that_is_not_an_export_says_why(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"<b>hi</b>": 1}')
    assert run(qtbot, window.import_from(bad)) is None
    assert "notes.json" in window.status.text
    assert window.sidebar.ids() == []


def test_search_highlights_matches_and_long_titles_are_elided(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    ask(qtbot, window, "Where do rivers «meet» the sea?")
    window.sidebar.search.setText("rivers")
    qtbot.waitUntil(lambda: "match" in window.sidebar.heading.text(), timeout=3000)
    item = window.sidebar.list.item(0)
    runs = match_runs(str(item.data(LINE_ROLE)))
    assert ("rivers", True) in runs
    assert all(not match for text, match in runs if text != "rivers")
    assert "«meet»" in "".join(text for text, _m in runs)  # the text's own marks stay text
    assert "«rivers»" not in item.text() + item.toolTip()
    window.sidebar.list.viewport().grab()  # paints without error

    huge = "w" * 1_000_000 + " <b>bold</b>"
    window.sidebar.search.clear()
    window.sidebar.set_conversations(
        [Conversation(7, huge, 0.0, 0.0, "Simulator", "openai", "sim-small", None)]
    )
    item = window.sidebar.item_for(7)
    assert item is not None and len(item.text()) <= 400
    assert window.sidebar.list.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    image = window.sidebar.list.viewport().grab()
    assert not image.isNull()


class FakeSimulator:
    def __init__(self, sim: SimulatorThread) -> None:
        self.sim = sim
        self.running = False

    def start(self) -> str:
        self.running = True
        return self.sim.base_url("openai")


def test_welcome_card_shows_one_state_after_looking_again(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(
        Config(path=app_paths(rill_home).config_file),
        probes=(ProbeTarget("llama.cpp", "openai", DEAD_URL),),
        simulator=FakeSimulator(sim),
    )
    qtbot.waitUntil(
        lambda: window.first_run_task is not None and window.first_run_task.done(), timeout=5000
    )
    card = window.welcome
    assert card is not None
    assert window.controller.settings.profile == "Simulator"
    assert card.text.count("✓") == 1 and "✓ Using the built-in simulator" in card.text

    window.probes = (ProbeTarget("llama.cpp", "openai", sim.base_url("openai")),)
    qtbot.mouseClick(card.again_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "✓ Using llama.cpp" in card.text, timeout=5000)
    qtbot.waitUntil(lambda: window.first_run_task is not None and window.first_run_task.done())
    assert card.text.count("✓") == 1, card.text
    assert "No model server answered" not in card.text
    assert card.sim_button.text() == "Try the built-in simulator"

    # picking the simulator again moves the one ✓ there
    qtbot.mouseClick(card.sim_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "✓ Using the built-in simulator" in card.text, timeout=5000)
    assert card.text.count("✓") == 1, card.text


def test_the_simulator_stays_on_offer_once_a_profile_exists(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    config = Config(path=app_paths(rill_home).config_file)
    config.profiles["Work"] = Profile(name="Work", provider="openai", base_url=DEAD_URL)
    config.values["default_profile"] = "Work"
    window = windows.make(config, simulator=FakeSimulator(sim))
    assert window.welcome is None
    action = window.actions_["simulator"]
    assert action.isEnabled()
    assert action in window.menuBar().actions()[0].menu().actions()
    action.trigger()
    qtbot.waitUntil(lambda: window.controller.settings.profile == "Simulator", timeout=5000)
    assert "Simulator" in [
        window.header.profile.itemText(i) for i in range(window.header.profile.count())
    ]
    with qtbot.waitSignal(window.controller.finished, timeout=10_000):
        send(qtbot, window, "Hello simulator")


def test_add_a_key_without_a_keychain_offers_the_environment_variable(
    qtbot: QtBot, windows: Windows, rill_home: Path
) -> None:
    window = windows.make(Config(path=app_paths(rill_home).config_file))
    window.keys.available = False
    window.keys.reason = "No system keychain is available on this machine."
    window.add_key()
    assert "OPENAI_API_KEY" in window.status.text
    assert "keychain" in window.status.text
    dialog = window.settings_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.p_key.isEnabled() and "OPENAI_API_KEY" in dialog.key_note.text()
