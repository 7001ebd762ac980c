"""Labels that show text, never markup.

A ``QLabel`` guesses whether its text is rich text (``Qt.AutoText``) and, if it looks like
HTML, renders it — images from local files and links included. Text from a server, a model,
a stored chat or a file must never be read as markup, so every label in Rill is a
:class:`PlainLabel`, and tooltips (always rich text in Qt) go through :func:`plain_tooltip`.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

from desktop_app.ui.markdown import plain_tooltip

__all__ = ["PlainLabel", "WrapLabel", "plain_tooltip"]


class PlainLabel(QLabel):
    """A label whose text is always shown literally (``Qt.PlainText``), tooltip too."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        super().setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setTextFormat(self, format: Qt.TextFormat) -> None:
        """Plain text is the only format a label in Rill takes."""
        super().setTextFormat(Qt.TextFormat.PlainText)

    def setToolTip(self, text: str) -> None:
        super().setToolTip(plain_tooltip(text))


class WrapLabel(PlainLabel):
    """A word-wrapped :class:`PlainLabel` that keeps the height its text needs at its width.

    A word-wrapped ``QLabel`` tells layouts that its height depends on its width, and such
    an item makes every layout above it ask each of its items their height for a width at
    every pass. In the chat that is every message's details, each time a reply grows. This
    label answers with one height instead, worked out again only when its width, its text or
    its font changes.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        self._height = -1
        super().__init__(text, parent)
        self.setWordWrap(True)

    def hasHeightForWidth(self) -> bool:
        return False

    def setText(self, text: str) -> None:
        if text != self.text():
            super().setText(text)
            self._refit()

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(hint.width(), self._height) if self._height > 0 else hint

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(hint.width(), self._height) if self._height > 0 else hint

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._refit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._refit()  # a new font or style sheet (a theme) changes the lines' height

    def _refit(self) -> None:
        height = self.heightForWidth(self.width()) if self.width() > 0 else -1
        if height != self._height:
            self._height = height
            self.updateGeometry()
