"""Labels that show text, never markup.

A ``QLabel`` guesses whether its text is rich text (``Qt.AutoText``) and, if it looks like
HTML, renders it — images from local files and links included. Text from a server, a model,
a stored chat or a file must never be read as markup, so every label in Rill is a
:class:`PlainLabel`, and tooltips (always rich text in Qt) go through :func:`plain_tooltip`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from desktop_app.ui.markdown import plain_tooltip

__all__ = ["PlainLabel", "plain_tooltip"]


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
