"""Rill's application icon, drawn at run time (the same design as resources/rill.svg)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QLinearGradient, QPainter, QPainterPath, QPen, QPixmap


def _draw(size: int) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 64.0
    gradient = QLinearGradient(QPointF(0, 0), QPointF(0, size))
    gradient.setColorAt(0.0, QColor("#3b82f6"))
    gradient.setColorAt(1.0, QColor("#1e40af"))
    p.setBrush(gradient)
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(2 * s, 2 * s, 60 * s, 60 * s), 14 * s, 14 * s)
    pen = QPen(QColor("#ffffff"))
    pen.setWidthF(5 * s)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    for i, y in enumerate((22.0, 33.0, 44.0)):
        path = QPainterPath(QPointF(14 * s, y * s))
        path.cubicTo(
            QPointF(22 * s, (y - 6) * s), QPointF(28 * s, (y + 6) * s), QPointF(36 * s, y * s)
        )
        end = 50.0 - i * 6
        path.cubicTo(
            QPointF(42 * s, (y - 5) * s), QPointF(46 * s, (y + 3) * s), QPointF(end * s, y * s)
        )
        p.drawPath(path)
    p.end()
    return pixmap


def app_icon() -> QIcon:
    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256):
        icon.addPixmap(_draw(size))
    return icon
