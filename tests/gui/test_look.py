"""The look: one icon set drawn in the theme's colours, the compact header, the composer's
embedded send/stop button."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QIcon, QImage
from PySide6.QtWidgets import QApplication, QToolButton
from pytestqt.qtbot import QtBot

from desktop_app.ui import icons, theme


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
