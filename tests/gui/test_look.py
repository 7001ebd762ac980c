"""The look: one icon set drawn in the theme's colours, the compact header, the composer's
embedded send/stop button."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QImage
from PySide6.QtWidgets import QApplication, QToolButton, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.ui import icons, theme
from desktop_app.ui.main_window import MainWindow


def _ink(image: QImage) -> set[str]:
    """The opaque colours in ``image`` (without anti-aliased edges)."""
    found: set[str] = set()
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            if pixel.alpha() == 255:
                found.add(QColor(pixel.red(), pixel.green(), pixel.blue()).name())
    return found


@pytest.fixture
def light(qapp: QApplication) -> Iterator[None]:
    theme.apply(qapp, "light")
    yield
    theme.apply(qapp, "light")


@pytest.mark.parametrize("name", icons.NAMES)
def test_every_icon_is_drawn_in_the_theme_text_colour(light: object, name: str) -> None:
    image = icons.icon(name).pixmap(QSize(24, 24)).toImage()
    assert _ink(image) == {theme.LIGHT.text}
    disabled = icons.icon(name).pixmap(QSize(24, 24), QIcon.Mode.Disabled).toImage()
    assert _ink(disabled) == {theme.LIGHT.muted}


def test_an_unknown_icon_name_is_an_error(light: object) -> None:
    with pytest.raises(KeyError):
        icons.icon("nosuch")


def test_icons_follow_the_theme(qtbot: QtBot, qapp: QApplication, light: object) -> None:
    button = QToolButton()
    qtbot.addWidget(button)
    icons.set_icon(button, "send")
    assert _ink(button.icon().pixmap(QSize(24, 24)).toImage()) == {theme.LIGHT.text}
    theme.apply(qapp, "dark")
    assert _ink(button.icon().pixmap(QSize(24, 24)).toImage()) == {theme.DARK.text}
    icons.set_icon(button, "send", "accent_text")
    assert _ink(button.icon().pixmap(QSize(24, 24)).toImage()) == {theme.DARK.accent_text}


def _visible_controls(window: MainWindow) -> list[QWidget]:
    header = window.header
    return [
        w
        for w in header.findChildren(QWidget)
        if w.isVisible() and w.window() is window and w.parent() is header
    ]


def test_the_header_is_one_compact_model_picker(window: MainWindow, qtbot: QtBot) -> None:
    header = window.header
    qtbot.waitUntil(lambda: header.picker.shown_text() == "Simulator · sim-small", timeout=2000)
    # The combo boxes and fields live in popovers, not in the header row.
    for field in (header.profile, header.model, header.temperature, header.system):
        assert not field.isVisible()
    assert header.provider_note.text() == "OpenAI API"
    qtbot.mouseClick(header.picker, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(header.picker_popup.isVisible, timeout=2000)
    assert header.profile.isVisible() and header.model.isVisible()
    assert header.profile.currentText() == "Simulator"
    header.picker_popup.close()
    header.set_models(["sim-small", "sim-large"], "sim-large")
    qtbot.waitUntil(lambda: header.picker.shown_text() == "Simulator · sim-large", timeout=2000)


def test_the_chat_settings_popover_holds_temperature_and_system_prompt(
    window: MainWindow, qtbot: QtBot
) -> None:
    header = window.header
    header.settings_button.setFocus()
    qtbot.keyClick(header.settings_button, Qt.Key.Key_Space)
    qtbot.waitUntil(header.settings_popup.isVisible, timeout=2000)
    assert header.temperature.isVisible() and header.system.isVisible()
    assert header.temperature.text() == "Default"
    assert not header.settings_button.property("active")
    with qtbot.waitSignal(header.temperature_changed, timeout=2000) as changed:
        header.temperature.setValue(0.7)
    assert changed.args == [pytest.approx(0.7)]
    # A chat with its own settings marks the button.
    assert header.settings_button.property("active")
    header.settings_popup.close()
    assert window.controller.settings.temperature == pytest.approx(0.7)
    # Closing the popover gives the keyboard back to the prompt.
    qtbot.waitUntil(lambda: window.focusWidget() is window.composer.edit, timeout=2000)


def test_the_header_fits_a_small_window(window: MainWindow, qtbot: QtBot) -> None:
    window.resize(500, 400)
    header = window.header
    header.set_models([], "a-model-with-a-rather-long-name-from-the-server-1.5b-q4")
    qtbot.waitUntil(lambda: window.width() <= 520, timeout=2000)
    qtbot.waitUntil(lambda: header.settings_button.isVisible(), timeout=2000)
    picker = header.picker.geometry()
    settings = header.settings_button.geometry()
    assert picker.right() < settings.left()
    assert settings.right() <= header.width()
    # The name is cut to the room it has, never clipped.
    shown = header.picker.shown_text()
    assert "…" in shown
    drawn = header.picker.fontMetrics().horizontalAdvance(shown)
    assert drawn + header.picker.iconSize().width() <= picker.width()
    for w in _visible_controls(window):
        assert header.rect().contains(w.geometry()), w


def test_a_hostile_model_name_is_shown_cut_and_as_text(window: MainWindow) -> None:
    header = window.header
    name = "<img src='file:///etc/passwd'>\x1b[31m" + "w" * 1_000_000 + "\ud800"
    header.set_models([name], name)
    text = header.picker.shown_text()
    assert len(text) < 200 and "…" in text
    assert "\x1b" not in text and "\ud800" not in text
    assert header.picker.sizeHint().width() < 500
    assert "<img" not in header.picker.toolTip()
    assert "&lt;img" in header.picker.toolTip()
    header.set_models(["R&D"], "R&D")
    assert header.picker.shown_text() == "Simulator · R&D"
    assert header.picker.text() == "Simulator · R&&D"


def test_the_send_button_sits_inside_the_prompt_box(window: MainWindow, qtbot: QtBot) -> None:
    composer = window.composer
    box = composer.box
    assert box.isAncestorOf(composer.edit)
    assert box.isAncestorOf(composer.send_button) and box.isAncestorOf(composer.stop_button)
    assert not composer.send_button.text()
    assert not composer.send_button.icon().isNull()
    assert not composer.send_button.isEnabled()
    composer.set_text("Hello")
    assert composer.send_button.isEnabled()
    composer.clear()
    assert not composer.send_button.isEnabled()
