"""The settings dialog as a person reads it: human names, units, live renames, and a form
that keeps its rows apart at any size the dialog allows."""

from __future__ import annotations

import contextlib
from pathlib import Path

from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile
from desktop_app.simulator import SimulatorThread
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.settings_dialog import SettingsDialog
from tests.gui.util import Windows, sim_config


def _dialog(window: MainWindow) -> SettingsDialog:
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    return dialog


def _items(combo: QComboBox) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_choices_show_human_names_and_keep_the_stored_values(
    qtbot: QtBot, window: MainWindow
) -> None:
    dialog = _dialog(window)
    theme = dialog.fields["ui.theme"]
    send_with = dialog.fields["ui.send_with"]
    mid_stream = dialog.fields["resilience.mid_stream"]
    assert isinstance(theme, QComboBox) and isinstance(send_with, QComboBox)
    assert isinstance(mid_stream, QComboBox)
    assert _items(theme) == ["System", "Light", "Dark"]
    assert _items(send_with) == ["Enter sends", "Ctrl+Enter sends"]
    assert "restart" not in _items(mid_stream)
    assert _items(dialog.p_provider) == ["OpenAI-compatible", "Ollama", "Anthropic", "Gemini"]
    assert dialog.p_provider.currentText() == "OpenAI-compatible"

    theme.setCurrentIndex(theme.findText("Dark"))
    send_with.setCurrentIndex(send_with.findText("Ctrl+Enter sends"))
    dialog.p_provider.setCurrentIndex(dialog.p_provider.findText("Ollama"))
    assert dialog.p_base_url.placeholderText() == "http://127.0.0.1:11434"
    config = dialog.build_config()
    assert config["ui.theme"] == "dark"
    assert config["ui.send_with"] == "ctrl+enter"
    assert config.profiles["Simulator"].provider == "ollama"
    dialog.close()


def test_numbers_show_units_and_none_instead_of_raw_decimals(
    qtbot: QtBot, window: MainWindow
) -> None:
    dialog = _dialog(window)
    spins = [w for w in dialog.fields.values() if isinstance(w, QAbstractSpinBox)]
    assert spins
    for spin in spins:
        assert not spin.text().endswith(".000"), spin.text()
    ttl = dialog.fields["cache.ttl_s"]
    size = dialog.fields["cache.size_limit_mb"]
    budget = dialog.fields["budget.monthly_usd"]
    idle = dialog.fields["resilience.idle_timeout_s"]
    assert isinstance(ttl, QDoubleSpinBox) and isinstance(budget, QDoubleSpinBox)
    assert isinstance(size, QSpinBox) and isinstance(idle, QDoubleSpinBox)
    assert ttl.text() == "24 h"
    assert size.text() == "256 MB"
    assert budget.text() == "None"
    assert idle.text() == f"{window.services.config['resilience.idle_timeout_s']:g} s"

    budget.setValue(25)
    ttl.setValue(2)
    assert budget.text() == "$25.00"
    config = dialog.build_config()
    assert config["budget.monthly_usd"] == 25.0
    assert config["cache.ttl_s"] == 7200.0
    dialog.close()


def test_a_value_finer_than_its_field_is_kept_unless_changed(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    config = sim_config(sim, rill_home)
    config.set("resilience.base_delay_s", 0.123)
    config.set("cache.ttl_s", 100.0)
    window = windows.make(config)
    dialog = _dialog(window)
    built = dialog.build_config()
    assert built["resilience.base_delay_s"] == 0.123
    assert built["cache.ttl_s"] == 100.0
    dialog.close()


def test_the_dialog_keeps_what_it_does_not_show_of_a_profile(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    config = sim_config(sim, rill_home)
    simulator = config.profiles["Simulator"]
    config.profiles["Simulator"] = Profile(
        name="Simulator",
        base_url=simulator.base_url,
        model=simulator.model,
        stream=False,
        accepts_prefill=True,
        price_input_per_mtok=0.0,
    )
    window = windows.make(config)
    dialog = _dialog(window)
    dialog.p_system.setPlainText("Be brief.")
    kept = dialog.build_config().profiles["Simulator"]
    assert (kept.stream, kept.accepts_prefill, kept.price_input_per_mtok) == (False, True, 0.0)
    assert kept.system_prompt == "Be brief."
    dialog.close()


def test_a_renamed_profile_shows_its_new_name_at_once(qtbot: QtBot, window: MainWindow) -> None:
    dialog = _dialog(window)
    dialog.add_profile()
    assert dialog.profile_list.currentItem().text() == "new profile"
    dialog.p_name.selectAll()
    qtbot.keyClicks(dialog.p_name, "work")
    assert dialog.profile_list.currentItem().text() == "work"
    assert "work" in _items(dialog.default_profile)
    assert "new profile" not in _items(dialog.default_profile)

    # a name another profile has is refused, saying so; the list keeps the last free name
    dialog.p_name.selectAll()
    qtbot.keyClicks(dialog.p_name, "Simulator")
    assert dialog.profile_list.currentItem().text() == "Simulato"
    note = dialog.name_note
    assert note.isVisibleTo(dialog) and "called “Simulator”" in note.text()
    assert "stays “Simulato”" in note.text()
    dialog.p_name.selectAll()
    qtbot.keyClicks(dialog.p_name, "<b>home</b>")
    assert dialog.profile_list.currentItem().text() == "<b>home</b>"
    assert not dialog.name_note.isVisibleTo(dialog)
    names = [dialog.profile_list.item(i).text() for i in range(dialog.profile_list.count())]
    assert names == ["Simulator", "<b>home</b>"]
    assert set(dialog.build_config().profiles) == {"Simulator", "<b>home</b>"}
    dialog.close()


_SHOWN = (QLabel, QLineEdit, QComboBox, QAbstractSpinBox, QPlainTextEdit, QAbstractButton)


def _overlaps(dialog: SettingsDialog, page: QWidget) -> list[str]:
    """Pairs of shown widgets of ``page`` that overlap, widgets squeezed below their
    minimum height (a wrapped label: below the height its text needs at its width), and
    widgets cut off at the right by the page or the scroll area they are in."""
    found: list[str] = []
    boxes: list[tuple[str, QRect]] = []
    for w in page.findChildren(QWidget):
        if not isinstance(w, _SHOWN) or not w.isVisibleTo(dialog):
            continue
        if isinstance(w.parentWidget(), QAbstractSpinBox | QComboBox):
            continue
        name = f"{type(w).__name__}({getattr(w, 'text', lambda: '')()[:30]!r})"
        need = w.minimumHeight() or w.minimumSizeHint().height()  # as layouts read it
        if isinstance(w, QLabel) and w.wordWrap() and w.text():
            need = w.heightForWidth(w.width())
        if w.height() < need:
            found.append(f"{name} is {w.height()} px high, needs {need}")
        clip = w.parentWidget()
        while clip is not None and clip is not page and not isinstance(clip, QScrollArea):
            clip = clip.parentWidget()
        frame = clip.viewport() if isinstance(clip, QScrollArea) else page
        right = w.mapTo(frame, w.rect().topRight()).x()
        if right >= frame.width():
            found.append(f"{name} is cut off at the right ({right} ≥ {frame.width()})")
        top_left = w.mapTo(page, w.rect().topLeft())
        boxes.append((name, QRect(top_left, w.size())))
    for i, (a, ra) in enumerate(boxes):
        for b, rb in boxes[i + 1 :]:
            if ra.intersects(rb):
                found.append(f"{a} overlaps {b}")
    return found


def test_no_row_overlaps_another_at_the_smallest_size_even_after_a_long_test_result(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    window.keys.available = False
    window.keys.reason = "No system keychain is available on this machine."
    dialog = _dialog(window)
    qtbot.waitExposed(dialog)
    dialog.resize(dialog.minimumSize().expandedTo(dialog.minimumSizeHint()))
    dialog.p_base_url.setText("http://127.0.0.1:9/v1")
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_result.text().startswith("✗"), timeout=10_000)
    for i in range(dialog.tabs.count()):
        dialog.tabs.setCurrentIndex(i)
        page = dialog.tabs.widget(i)
        assert page is not None
        # a wrapped label's height follows its width: the layout settles over a few passes
        with contextlib.suppress(qtbot.TimeoutError):
            qtbot.waitUntil(lambda p=page: not _overlaps(dialog, p), timeout=3_000)  # type: ignore[misc]
        assert _overlaps(dialog, page) == [], dialog.tabs.tabText(i)
    dialog.close()


def test_a_huge_test_result_stays_inside_the_dialog(qtbot: QtBot, window: MainWindow) -> None:
    dialog = _dialog(window)
    qtbot.waitExposed(dialog)
    dialog.resize(dialog.minimumSizeHint())
    dialog._test_done("✗ \ud800<img src='file:///etc/passwd'>\x1b[31m" + "x" * 1_000_000, [])
    QApplication.processEvents()
    assert dialog.width() < 2000 and dialog.height() < 2000
    assert dialog.test_result.textFormat() == Qt.TextFormat.PlainText
    shown = dialog.test_result.text()
    assert "\x1b" not in shown and "\ud800" not in shown and len(shown) <= 2000
    assert "<img src='file:///etc/passwd'>" in shown
    assert isinstance(dialog.profile_list, QListWidget)
    dialog.close()


def test_the_keychain_is_asked_about_only_once_settings_opens(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    import keyring.backends.fail

    windows.keyring = keyring.backends.fail.Keyring()
    window = windows.make(sim_config(sim, rill_home))
    assert window.keys.available is None  # the start did not touch the keychain
    dialog = _dialog(window)
    qtbot.waitUntil(lambda: not dialog.p_key.isEnabled(), timeout=5000)
    assert window.keys.available is False
    assert "OPENAI_API_KEY" in dialog.key_note.text()
    dialog.close()
