"""Rill's one icon set: simple 24×24 line icons drawn in code, in the theme's colours.

Every icon is a few strokes of a ``QPainterPath`` on a 24-unit grid, drawn at each size a
widget asks for, so the set needs no image files and no Qt plugin. ``icon(name)`` paints in
the current theme's text colour (a muted colour when disabled). Buttons that keep an icon
across theme changes get it through :func:`set_icon`; :func:`refresh` (called when the
theme is applied) repaints all of them in the new colours.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QAbstractButton, QApplication, QToolButton, QWidget

from desktop_app.ui import theme

__all__ = ["NAMES", "icon", "refresh", "set_icon"]

SIZES = (16, 20, 24, 32, 48)
PROPERTY = "rillIcon"
COLOUR_PROPERTY = "rillIconColour"
STROKE = 1.8

Path = Callable[[QPainterPath], None]


def _send(p: QPainterPath) -> None:
    p.moveTo(12, 19)
    p.lineTo(12, 5)
    p.moveTo(6, 11)
    p.lineTo(12, 5)
    p.lineTo(18, 11)


def _stop(p: QPainterPath) -> None:
    p.addRoundedRect(QRectF(7, 7, 10, 10), 2, 2)


def _copy(p: QPainterPath) -> None:
    p.addRoundedRect(QRectF(9, 9, 11, 11), 2, 2)
    p.moveTo(15, 9)
    p.lineTo(15, 6)
    p.quadTo(15, 4, 13, 4)
    p.lineTo(6, 4)
    p.quadTo(4, 4, 4, 6)
    p.lineTo(4, 13)
    p.quadTo(4, 15, 6, 15)
    p.lineTo(9, 15)


def _regenerate(p: QPainterPath) -> None:
    p.arcMoveTo(QRectF(5, 5, 14, 14), 60)
    p.arcTo(QRectF(5, 5, 14, 14), 60, 300)
    p.moveTo(15.5, 3.9)
    p.lineTo(15.5, 7.9)
    p.lineTo(19.5, 7.9)


def _edit(p: QPainterPath) -> None:
    p.moveTo(4, 20)
    p.lineTo(5, 15.5)
    p.lineTo(15.5, 5)
    p.lineTo(19, 8.5)
    p.lineTo(8.5, 19)
    p.closeSubpath()
    p.moveTo(13, 7.5)
    p.lineTo(16.5, 11)


def _prev(p: QPainterPath) -> None:
    p.moveTo(15, 5)
    p.lineTo(8, 12)
    p.lineTo(15, 19)


def _next(p: QPainterPath) -> None:
    p.moveTo(9, 5)
    p.lineTo(16, 12)
    p.lineTo(9, 19)


def _sidebar(p: QPainterPath) -> None:
    p.addRoundedRect(QRectF(3.5, 4.5, 17, 15), 2.5, 2.5)
    p.moveTo(9.5, 4.5)
    p.lineTo(9.5, 19.5)


def _plus(p: QPainterPath) -> None:
    p.moveTo(12, 5)
    p.lineTo(12, 19)
    p.moveTo(5, 12)
    p.lineTo(19, 12)


def _settings(p: QPainterPath) -> None:
    # Three sliders: the chat's settings.
    for y, knob in ((6.0, 15.0), (12.0, 8.0), (18.0, 13.0)):
        p.moveTo(4, y)
        p.lineTo(knob - 2, y)
        p.moveTo(knob + 2, y)
        p.lineTo(20, y)
        p.addEllipse(QPointF(knob, y), 2, 2)


def _search(p: QPainterPath) -> None:
    p.addEllipse(QPointF(10.5, 10.5), 6, 6)
    p.moveTo(15, 15)
    p.lineTo(20, 20)


def _attach(p: QPainterPath) -> None:
    p.moveTo(18.5, 11.5)
    p.lineTo(12, 18)
    p.cubicTo(9.5, 20.5, 5.5, 20.5, 4.8, 17)
    p.cubicTo(4.2, 14.5, 5, 13.5, 6.5, 12)
    p.lineTo(13, 5.5)
    p.cubicTo(15, 3.5, 18.5, 5, 18, 7.5)
    p.cubicTo(17.8, 8.5, 17.2, 9.2, 16.5, 9.9)
    p.lineTo(10, 16.4)
    p.cubicTo(9, 17.4, 7.3, 16.2, 8.2, 15)
    p.lineTo(14.5, 8.7)


def _more(p: QPainterPath) -> None:
    for x in (6.0, 12.0, 18.0):
        p.addEllipse(QPointF(x, 12), 0.9, 0.9)


def _check(p: QPainterPath) -> None:
    p.moveTo(5, 12.5)
    p.lineTo(10, 17.5)
    p.lineTo(19.5, 7)


def _chevron_down(p: QPainterPath) -> None:
    p.moveTo(7, 10)
    p.lineTo(12, 15)
    p.lineTo(17, 10)


def _chevron_up(p: QPainterPath) -> None:
    p.moveTo(7, 14)
    p.lineTo(12, 9)
    p.lineTo(17, 14)


def _refresh(p: QPainterPath) -> None:
    _regenerate(p)


_PATHS: dict[str, Path] = {
    "send": _send,
    "stop": _stop,
    "copy": _copy,
    "regenerate": _regenerate,
    "edit": _edit,
    "prev": _prev,
    "next": _next,
    "sidebar": _sidebar,
    "plus": _plus,
    "settings": _settings,
    "search": _search,
    "attach": _attach,
    "more": _more,
    "check": _check,
    "chevron-down": _chevron_down,
    "chevron-up": _chevron_up,
    "refresh": _refresh,
}

NAMES: tuple[str, ...] = tuple(_PATHS)

# Icons that are drawn filled as well as stroked.
_FILLED = {"stop", "more"}


def _pixmap(name: str, size: int, colour: QColor, ratio: float) -> QPixmap:
    pixels = max(1, round(size * ratio))
    pixmap = QPixmap(pixels, pixels)
    pixmap.fill(Qt.GlobalColor.transparent)
    pixmap.setDevicePixelRatio(ratio)
    path = QPainterPath()
    _PATHS[name](path)
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        scale = size / 24.0
        painter.scale(scale, scale)
        pen = QPen(colour)
        pen.setWidthF(STROKE if size >= 20 else STROKE * 1.1)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if name in _FILLED:
            painter.setBrush(colour)
        else:
            painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
    finally:
        painter.end()
    return pixmap


_cache: dict[tuple[str, str, str, float], QIcon] = {}
_buttons: weakref.WeakSet[QAbstractButton] = weakref.WeakSet()
"""Every button given an icon by :func:`set_icon` (Rill's own, created from Python)."""


def icon(name: str, colour: str | None = None) -> QIcon:
    """The icon ``name`` (one of :data:`NAMES`) in ``colour`` or the theme's text colour.

    The disabled state is drawn in the theme's muted colour.
    """
    if name not in _PATHS:
        raise KeyError(f"no icon named {name!r}")
    t = theme.current()
    fg = colour or t.text
    app = QApplication.instance()
    ratio = 1.0
    if isinstance(app, QApplication):
        screen = app.primaryScreen()
        if screen is not None:
            ratio = max(1.0, screen.devicePixelRatio())
    key = (name, fg, t.muted, ratio)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_pixmap(name, size, QColor(fg), ratio), QIcon.Mode.Normal)
        result.addPixmap(_pixmap(name, size, QColor(t.muted), ratio), QIcon.Mode.Disabled)
    _cache[key] = result
    return result


def set_icon(button: QAbstractButton, name: str, colour_role: str | None = None) -> None:
    """Give ``button`` the icon ``name``; it is repainted whenever the theme changes.

    ``colour_role`` names a :class:`~desktop_app.ui.theme.Theme` field (for example
    ``"accent_text"`` on an accent-coloured button); the text colour by default.
    """
    button.setProperty(PROPERTY, name)
    button.setProperty(COLOUR_PROPERTY, colour_role or "")
    button.setIcon(icon(name, _colour(colour_role)))
    _buttons.add(button)


def tool_button(icon_name: str, tip: str, accessible: str, object_name: str) -> QToolButton:
    """A tool button showing the icon ``icon_name``, with a tooltip and an accessible name."""
    button = QToolButton()
    button.setObjectName(object_name)
    set_icon(button, icon_name)
    button.setToolTip(tip)
    button.setAccessibleName(accessible)
    return button


def _colour(role: str | None) -> str | None:
    if not role:
        return None
    value = getattr(theme.current(), role, None)
    return value if isinstance(value, str) else None


def refresh(root: QWidget | None = None) -> None:
    """Repaint every button's icon set through :func:`set_icon` in the current theme
    (below ``root`` only, when given).

    Only the buttons :func:`set_icon` saw are visited, never ``QApplication.allWidgets()``:
    that would wrap Qt's own inner widgets, whose wrappers can outlive them and crash.
    """
    _cache.clear()
    for widget in list(_buttons):
        if not shiboken6.isValid(widget):
            continue
        if root is not None and widget is not root and not root.isAncestorOf(widget):
            continue
        name = widget.property(PROPERTY)
        if isinstance(name, str) and name in _PATHS:
            role = widget.property(COLOUR_PROPERTY)
            widget.setIcon(icon(name, _colour(role if isinstance(role, str) else None)))
