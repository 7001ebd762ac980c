"""Smaller behaviours: following the stream, the banner's Cancel, header choices reaching
the request, the model list, the token bar, the budget line and the colour scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QStyleHints
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui import theme
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, sim_config


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def test_the_view_follows_the_stream_until_the_user_scrolls_up(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    window.resize(760, 420)
    sim.tokens_per_s = 120
    sim.default_tokens = 600
    send(qtbot, window, "A long answer please")
    bar = window.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 200, timeout=10_000)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)
    assert window.view.following
    assert not window.view.jump_button.isVisible()

    bar.setValue(0)
    assert not window.view.following
    assert window.view.jump_button.isVisible()
    grown = bar.maximum()
    qtbot.waitUntil(lambda: bar.maximum() > grown + 50, timeout=10_000)
    assert bar.value() == 0

    qtbot.mouseClick(window.view.jump_button, Qt.MouseButton.LeftButton)
    assert window.view.following and not window.view.jump_button.isVisible()
    grown = bar.maximum()
    qtbot.waitUntil(lambda: bar.maximum() > grown + 50, timeout=10_000)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)
    window.controller.stop()
    qtbot.waitUntil(lambda: not window.controller.busy)


def test_the_banner_cancel_stops_the_wait(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=503))
    send(qtbot, window, "Anyone there?")
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
    with qtbot.waitSignal(window.controller.cancelled, timeout=5000):
        qtbot.mouseClick(window.banner.cancel_button, Qt.MouseButton.LeftButton)
    assert not window.banner.isVisible()
    qtbot.waitUntil(lambda: not window.controller.busy)
    assert window.view.widgets[-1].state == "cancelled"
    assert len(sim.chat_requests) == 1


def test_system_prompt_temperature_and_model_reach_the_request(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    qtbot.waitUntil(lambda: window.header.model.count() == 2, timeout=5000)
    assert {window.header.model.itemText(i) for i in range(2)} == {"sim-small", "sim-large"}
    window.header.system.setText("Answer like a sailor.")
    window.header.system.editingFinished.emit()
    window.header.temperature.setValue(0.7)
    window.header.model.setCurrentText("sim-large")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Ahoy")
    body = sim.chat_requests[-1].json
    assert body["model"] == "sim-large"
    assert body["temperature"] == pytest.approx(0.7)
    assert body["messages"][0] == {"role": "system", "content": "Answer like a sailor."}
    assert "sim-large" in window.view.widgets[-1].details.text()


def test_a_server_that_cannot_list_models_says_so_inline(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    config = sim_config(sim, rill_home)
    config.profiles["Broken"] = Profile(
        name="Broken", provider="openai", base_url=sim.url + "/nowhere/v1", model="x"
    )
    window = windows.make(config)
    window.select_profile("Broken")
    qtbot.waitUntil(lambda: window.header.models_error.isVisible(), timeout=5000)
    assert "404" in window.header.models_error.text()
    window.select_profile("Simulator")
    qtbot.waitUntil(lambda: not window.header.models_error.isVisible(), timeout=5000)


def test_the_token_bar_shows_progress_against_max_tokens(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    config = sim_config(sim, rill_home)
    profile = config.profiles["Simulator"]
    config.profiles["Simulator"] = Profile(
        name=profile.name,
        provider=profile.provider,
        base_url=profile.base_url,
        model=profile.model,
        max_tokens=400,
    )
    window = windows.make(config)
    sim.tokens_per_s = 60
    sim.default_tokens = 400
    send(qtbot, window, "Count to many")
    bar = window.status.progress
    qtbot.waitUntil(lambda: bar.isVisible() and 0 < bar.value() < 400, timeout=5000)
    assert bar.maximum() == 400
    qtbot.waitUntil(lambda: "tok/s" in window.status.text, timeout=5000)
    window.controller.stop()
    qtbot.waitUntil(lambda: not window.controller.busy)
    assert not bar.isVisible()


def test_settings_show_the_months_spending_and_clear_the_cache(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Cache me")
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: "spent" in dialog.spend.text(), timeout=3000)
    assert "$0.00 spent" in dialog.spend.text()
    qtbot.waitUntil(lambda: dialog.cache_stats.text().startswith("1 answers"), timeout=3000)
    dialog.clear_cache()
    qtbot.waitUntil(lambda: dialog.cache_stats.text().startswith("0 answers"), timeout=3000)
    dialog.close()


def test_the_colour_scheme_follows_the_system(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    assert window.services.config["ui.theme"] == "system"
    hints = QGuiApplication.styleHints()
    scheme = [Qt.ColorScheme.Dark]
    monkeypatch.setattr(QStyleHints, "colorScheme", lambda _self: scheme[0])
    try:
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
        assert theme.current().mode == "dark"
        assert app.palette().window().color().name() == theme.DARK.window
        scheme[0] = Qt.ColorScheme.Light
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert theme.current().mode == "light"
        window.services.config.values["ui.theme"] = "dark"
        window.apply_theme()
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert theme.current().mode == "dark"
    finally:
        window.services.config.values["ui.theme"] = "system"
        theme.apply(app, "light")
