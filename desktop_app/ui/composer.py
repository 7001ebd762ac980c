"""The composer: where the prompt is typed, in one rounded box with its send button inside.
Enter sends (or Ctrl+Enter, a setting); the stop button takes the send button's place while
a reply streams. The draft is saved as you type."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics, QKeyEvent, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui import icons
from desktop_app.ui.controller import MAX_PROMPT_CHARS
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.tool_picker import ToolPicker

DRAFT_DELAY_MS = 400
LONG_LINE = 5000
MAX_LINES = 10
BUTTON_SIZE = 32


class PromptEdit(QPlainTextEdit):
    """The text field. Enter (or Ctrl+Enter) emits ``submit``; Shift+Enter breaks the line."""

    submit = Signal()
    paste_refused = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.send_with = "enter"
        self.setPlaceholderText("Ask anything…  (Enter sends, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)

    def set_send_with(self, mode: str) -> None:
        self.send_with = mode
        if mode == "ctrl+enter":
            self.setPlaceholderText("Ask anything…  (Ctrl+Enter sends)")
        else:
            self.setPlaceholderText("Ask anything…  (Enter sends, Shift+Enter for a new line)")

    def insertFromMimeData(self, source: QMimeData) -> None:
        """Paste or drop text, unless the result could never be sent (it is left out whole)."""
        if source.hasText():
            text = source.text()
            if len(text) + self.document().characterCount() - 1 > MAX_PROMPT_CHARS:
                self.paste_refused.emit(len(text))
                return
            self.prepare_for(text)
        super().insertFromMimeData(source)

    def prepare_for(self, text: str) -> None:
        """Wrap anywhere while a line is very long (word wrapping one is quadratic in Qt)."""
        if len(text) > LONG_LINE and any(len(line) > LONG_LINE for line in text.split("\n")):
            self.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)

    def reset_wrap(self) -> None:
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
            shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            if ctrl or (self.send_with == "enter" and not shift):
                self.submit.emit()
                event.accept()
                return
            if shift or self.send_with == "ctrl+enter":
                self.insertPlainText("\n")
                event.accept()
                return
        super().keyPressEvent(event)


class Composer(QWidget):
    """Prompt box with its send/stop button, a warning line, and the edit-mode bar."""

    send_requested = Signal(str)
    stop_requested = Signal()
    draft_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editing = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)

        self.edit_bar = QWidget()
        bar = QHBoxLayout(self.edit_bar)
        bar.setContentsMargins(12, 0, 0, 0)
        edit_label = PlainLabel("Editing the last prompt: sending replaces it and asks again.")
        edit_label.setObjectName("muted")
        bar.addWidget(edit_label, 1)
        cancel_edit = QPushButton("Cancel editing")
        cancel_edit.clicked.connect(self.cancel_edit)
        bar.addWidget(cancel_edit)
        self.edit_bar.hide()
        outer.addWidget(self.edit_bar)

        self.box = QFrame()
        self.box.setObjectName("composerBox")
        self.box.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        row = QHBoxLayout(self.box)
        row.setContentsMargins(12, 8, 8, 8)
        row.setSpacing(8)
        self.edit = PromptEdit(self)
        self.edit.setObjectName("promptEdit")
        self.edit.setFrameShape(QFrame.Shape.NoFrame)
        self.edit.submit.connect(self.submit)
        self.edit.paste_refused.connect(self._paste_refused)
        self.edit.installEventFilter(self)
        row.addWidget(self.edit, 1)
        self.tools = ToolPicker()
        row.addWidget(self.tools, 0, Qt.AlignmentFlag.AlignBottom)
        self.send_button = QToolButton()
        self.send_button.setObjectName("sendButton")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.setAccessibleName("Send")
        self.send_button.clicked.connect(self.submit)
        self.stop_button = QToolButton()
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.setAccessibleName("Stop")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.hide()
        for button, name, colour in (
            (self.send_button, "send", "accent_text"),
            (self.stop_button, "stop", "base"),
        ):
            button.setFixedSize(QSize(BUTTON_SIZE, BUTTON_SIZE))
            button.setIconSize(QSize(18, 18))
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            icons.set_icon(button, name, colour)
        buttons = QVBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        outer.addWidget(self.box)

        self.warning = PlainLabel()
        self.warning.setObjectName("composerWarning")
        self.warning.setWordWrap(True)
        self.warning.setContentsMargins(12, 0, 12, 0)
        self.warning.hide()
        outer.addWidget(self.warning)

        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_DELAY_MS)
        self._draft_timer.timeout.connect(self._emit_draft)
        self._restoring = False
        self.edit.document().contentsChanged.connect(self._changed)
        self.edit.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()
        self._update_send()

    # -- state -------------------------------------------------------------------------------

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str, *, restoring: bool = False) -> None:
        self._restoring = restoring
        self.edit.reset_wrap()
        self.edit.prepare_for(text)
        try:
            self.edit.setPlainText(text)
        finally:
            self._restoring = False
        cursor = self.edit.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.edit.setTextCursor(cursor)

    def clear(self) -> None:
        self.edit.clear()
        self.edit.reset_wrap()
        self.warning.hide()

    def set_busy(self, busy: bool) -> None:
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def show_warning(self, text: str) -> None:
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def begin_edit(self, text: str) -> None:
        """Put the last prompt in the field; sending replaces it."""
        self.editing = True
        self.edit_bar.show()
        self.set_text(text)
        self.edit.setFocus()

    def cancel_edit(self) -> None:
        if self.editing:
            self.editing = False
            self.edit_bar.hide()
            self.clear()

    def end_edit(self) -> None:
        self.editing = False
        self.edit_bar.hide()

    def submit(self) -> None:
        if self.stop_button.isVisible():
            return
        self.send_requested.emit(self.text())

    def flush_draft(self) -> None:
        """Emit the draft now if a save is pending."""
        if self._draft_timer.isActive():
            self._draft_timer.stop()
            self._emit_draft()

    # -- internals ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self._update_send()
        count = self.edit.document().characterCount() - 1
        if count > MAX_PROMPT_CHARS:
            self.show_warning(
                f"This message has {count:,} characters, more than the {MAX_PROMPT_CHARS:,} "
                "Rill sends at once. Shorten it or send it in parts."
            )
        elif self.warning.isVisible():
            self.warning.hide()
        if not self._restoring:
            self._draft_timer.start()

    def _paste_refused(self, size: int) -> None:
        self.show_warning(
            f"That text has {size:,} characters. Rill sends at most {MAX_PROMPT_CHARS:,} "
            "in one message, so it was not pasted; it is still on the clipboard. "
            "Paste a shorter part."
        )

    def _update_send(self) -> None:
        empty = self.edit.document().isEmpty()
        if self.send_button.isEnabled() == empty:
            self.send_button.setEnabled(not empty)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.edit and event.type() in (QEvent.Type.FocusIn, QEvent.Type.FocusOut):
            focused = event.type() == QEvent.Type.FocusIn
            self.box.setProperty("focused", focused)
            self.box.style().unpolish(self.box)
            self.box.style().polish(self.box)
        return super().eventFilter(watched, event)

    def _emit_draft(self) -> None:
        self.draft_changed.emit(self.text())

    def _fit(self, *_args: object) -> None:
        lines = int(self.edit.document().documentLayout().documentSize().height())
        lines = max(2, min(MAX_LINES, lines))
        metrics = QFontMetrics(self.edit.font())
        margins = self.edit.contentsMargins()
        height = (
            lines * metrics.lineSpacing()
            + int(self.edit.document().documentMargin() * 2)
            + margins.top()
            + margins.bottom()
            + 6
        )
        if self.edit.height() != height:
            self.edit.setFixedHeight(height)


def read_draft(path: Path) -> str:
    """The saved draft, or an empty string."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def write_draft(path: Path, text: str) -> None:
    """Save the draft atomically (an empty draft removes the file)."""
    if not text:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".draft-", suffix=".txt", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
