"""Auto in the window: the stages in the status bar, the route in the reply's details,
and each escalated attempt as a version of the reply."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QSpinBox,
    QToolButton,
)
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile, load_config
from desktop_app.core.routing.cache import CachedRoute
from desktop_app.core.routing.profile import AutoSettings, AutoTarget
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.main_window import MainWindow
from tests.gui.test_settings import _overlaps
from tests.gui.util import Windows, sim_config


@pytest.fixture
def judged(sim: SimulatorThread) -> Iterator[SimulatorThread]:
    sim.sim.judge_scores = {"sim-small": 3, "sim-large": 9}
    try:
        yield sim
    finally:
        sim.sim.judge_scores = {}


@pytest.fixture
def auto_window(windows: Windows, judged: SimulatorThread, rill_home: Path) -> MainWindow:
    config = sim_config(judged, rill_home)
    small = config.profiles["Simulator"]
    config.profiles["Strong"] = Profile(
        name="Strong", provider="openai", base_url=small.base_url, model="sim-large"
    )
    config.profiles["Auto"] = Profile(
        name="Auto",
        auto=AutoSettings(
            targets=(AutoTarget("Simulator", 1), AutoTarget("Strong", 3)),
            validate=True,
            judge="Simulator",
        ),
    )
    config.values["default_profile"] = "Auto"
    return windows.make(config)


def test_the_status_bar_shows_each_stage_with_its_progress_and_the_details_the_route(
    qtbot: QtBot, auto_window: MainWindow
) -> None:
    window = auto_window
    assert window.header.profile.currentText() == "Auto"
    seen: list[tuple[str, str, int, bool]] = []
    status = window.status

    def record(stage: str, _progress: float, _message: str, _attempt: int) -> None:
        seen.append((stage, status.text, status.auto.value(), status.auto.isVisible()))

    window.controller.auto_stage.connect(record)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        window.composer.set_text("hello there")
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    texts = {stage: text for stage, text, _, _ in seen}
    assert texts["analysing"] == "Auto · analysing"
    assert texts["analysed"] == "Auto · chat, complexity 1/10"
    assert texts["routed"] == "Auto · → sim-small, fast"
    assert texts["validating"] == "Auto · validating"
    assert texts["failed check"] == "Auto · quality 3/10 — retrying with a stronger model"
    assert texts["verified"] == "Auto · quality 9/10"
    values = [value for _, _, value, _ in seen]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 100
    assert all(visible for _, _, _, visible in seen)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=5000)
    assert not status.auto.isVisible()
    assert status.text.startswith("Done in ") and status.text.endswith(" s with Auto · 2 attempts")

    reply = window.view.widgets[-1]
    details = reply.details.text()
    assert "sim-large" in details
    assert "Auto: chat, complexity 1/10 · → Simulator (sim-small, fast)" in details
    assert "attempts: 1. sim-small 3/10, 2. sim-large 9/10 kept" in details
    assert "all attempts free" in details
    assert "Analysed by the heuristic" in reply.details.toolTip()

    # the failed attempt is the earlier version of the same reply
    assert reply.version_label.isVisible() and reply.version_label.text() == "2/2"
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.mouseClick(reply.prev_button, Qt.MouseButton.LeftButton)
    earlier = window.view.widgets[-1]
    qtbot.waitUntil(lambda: earlier.version_label.text() == "1/2", timeout=5000)
    assert "Auto: attempt 1 of 2 · sim-small · quality 3/10" in earlier.details.text()
    assert "the answer of sim-large was kept" in earlier.details.text()


def test_the_model_picker_offers_auto_without_asking_a_server(
    qtbot: QtBot, auto_window: MainWindow, judged: SimulatorThread
) -> None:
    window = auto_window
    qtbot.waitUntil(lambda: window.header.model.currentText() == "Auto", timeout=5000)
    assert not window.header.models_error.isVisible()
    assert not [r for r in judged.sim.requests if r.path.endswith("/models")]


def test_settings_add_an_auto_profile_with_targets_and_show_the_route_cache(
    qtbot: QtBot, window: MainWindow, rill_home: Path
) -> None:
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    actions = [a.text() for a in dialog.add_menu.actions()]
    assert actions == ["Server profile", "Auto profile"]
    dialog.add_auto_profile()
    assert dialog.profile_list.currentItem().text() == "Auto"
    assert dialog.auto_editor.isVisibleTo(dialog)
    assert not dialog.p_provider.isVisibleTo(dialog)
    assert not dialog.test_button.isVisibleTo(dialog)
    editor = dialog.auto_editor
    assert editor.table.rowCount() == 1
    editor.add_target()
    strengths = editor.table.cellWidget(1, 3)
    tier = editor.table.cellWidget(1, 2)
    assert isinstance(strengths, QLineEdit) and isinstance(tier, QComboBox)
    tier.setCurrentIndex(tier.findText("strong"))
    qtbot.keyClicks(strengths, "code, poetry")
    assert editor.note.isVisibleTo(dialog) and "poetry is not a strength" in editor.note.text()
    editor.validate.setChecked(True)
    editor.threshold.setValue(7)
    qtbot.waitExposed(dialog)
    dialog.resize(dialog.minimumSize().expandedTo(dialog.minimumSizeHint()))
    titles = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
    for title in ("Profiles", "Auto"):  # the Auto editor, and the Auto tab
        index = titles.index(title)
        dialog.tabs.setCurrentIndex(index)
        page = dialog.tabs.widget(index)
        # a wrapped label's height follows its width: the layout settles over a few passes
        with contextlib.suppress(qtbot.TimeoutError):
            qtbot.waitUntil(lambda p=page: not _overlaps(dialog, p), timeout=3_000)  # type: ignore[misc]
        assert _overlaps(dialog, page) == [], title
    dialog.save()
    path = window.services.paths.config_file
    qtbot.waitUntil(lambda: path.exists() and "Auto" in load_config(path).profiles, timeout=5000)
    assert load_config(path).problems == []
    saved = load_config(path).profiles["Auto"].auto
    assert saved == AutoSettings(
        targets=(AutoTarget("Simulator", 1), AutoTarget("Simulator", 3, "", ("code",))),
        validate=True,
        threshold=7,
    )

    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    items = [dialog.profile_list.item(i).text() for i in range(dialog.profile_list.count())]
    dialog.profile_list.setCurrentRow(items.index("Auto"))
    assert dialog.auto_editor.table.rowCount() == 2 and dialog.auto_editor.validate.isChecked()
    dialog.profile_list.setCurrentRow(items.index("Simulator"))
    dialog.p_name.selectAll()
    qtbot.keyClicks(dialog.p_name, "Local")  # an Auto profile's targets follow a rename
    auto = dialog.build_config().profiles["Auto"].auto
    assert auto is not None and [t.profile for t in auto.targets] == ["Local", "Local"]
    cache = window.services.route_cache()
    cache.put("k", CachedRoute("Simulator", "sim-small", 1, "cheapest"))
    cache.get("k")
    panel = dialog.route_cache
    panel.refresh()
    qtbot.waitUntil(lambda: panel.stats.text().startswith("1 routes. 1 hits"), timeout=3000)
    assert "Hits by model: sim-small 1." in panel.stats.text()
    qtbot.mouseClick(panel.clear_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: panel.stats.text().startswith("Removed 1 routes. 0 routes."), timeout=3000
    )
    dialog.close()


def test_stop_during_an_auto_stage_cancels_the_turn(
    qtbot: QtBot, auto_window: MainWindow, judged: SimulatorThread
) -> None:
    window = auto_window
    judged.script(Fault(), Fault(first_byte_delay=30.0))  # the answer, then a judge that hangs
    window.composer.set_text("hello there")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.status.text == "Auto · validating", timeout=10_000)
    with qtbot.waitSignal(window.controller.cancelled, timeout=5000):
        window.controller.stop()
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=5000)
    assert not window.status.auto.isVisible()
    assert "sim-large" not in [r.json["model"] for r in judged.chat_requests]  # no escalation


def test_the_auto_editor_removes_the_target_whose_button_is_pressed(
    qtbot: QtBot, auto_window: MainWindow
) -> None:
    window = auto_window
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    editor = dialog.auto_editor
    assert [editor.settings().targets[i].profile for i in range(2)] == ["Simulator", "Strong"]
    first = editor.table.cellWidget(0, 4)
    assert isinstance(first, QToolButton) and first.toolTip() == "Remove this target"
    qtbot.mouseClick(first, Qt.MouseButton.LeftButton)
    assert [t.profile for t in editor.settings().targets] == ["Strong"]
    last = editor.table.cellWidget(0, 4)
    assert isinstance(last, QToolButton)
    qtbot.mouseClick(last, Qt.MouseButton.LeftButton)
    assert editor.settings().targets == ()
    assert "needs at least one target" in editor.note.text()
    dialog.close()


def test_the_auto_tab_shows_the_route_cache_limits_in_minutes_and_routes(
    qtbot: QtBot, window: MainWindow
) -> None:
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    ttl = dialog.fields["auto.route_cache_ttl_s"]
    entries = dialog.fields["auto.route_cache_entries"]
    assert isinstance(ttl, QDoubleSpinBox) and isinstance(entries, QSpinBox)
    assert (ttl.text(), entries.text()) == ("60 min", "100 routes")
    ttl.setValue(90)
    entries.setValue(20)
    config = dialog.build_config()
    assert config["auto.route_cache_ttl_s"] == 5400.0
    assert config["auto.route_cache_entries"] == 20
    dialog.close()
