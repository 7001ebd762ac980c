"""The composer: where the prompt is typed, in one rounded box with its send button inside.
Enter sends (or Ctrl+Enter, a setting); the stop button takes the send button's place while
a reply streams. The draft is saved as you type. Files attached (the "+" button, Ctrl+O,
pasting, dropping) show as chips above the prompt with the total against the model's
context; a warning before sending asks "Send anyway" or "Cancel" without blocking."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics, QImage, QKeyEvent, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.types import CHARS_PER_TOKEN, Attachment
from desktop_app.ui import icons
from desktop_app.ui.attachment_chips import AttachmentTray
from desktop_app.ui.controller import MAX_PROMPT_CHARS
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.tool_picker import ToolPicker

DRAFT_DELAY_MS = 400
LONG_LINE = 5000
MAX_LINES = 10
BUTTON_SIZE = 32


def local_files(source: QMimeData) -> tuple[list[str], list[str]]:
    """The files on this computer in ``source``'s ``text/uri-list`` (a file manager's copy
    or drag), and the addresses that are not such files."""
    if not source.hasUrls():
        return [], []
    files: list[str] = []
    other: list[str] = []
    for url in source.urls():
        if url.isLocalFile() and url.toLocalFile():
            files.append(url.toLocalFile())
        else:
            other.append(url.toDisplayString()[:200])
    return files, other


def remote_sentence(urls: list[str]) -> str:
    """Why addresses dropped or pasted were not attached."""
    shown = ", ".join(urls[:3]) + (f" and {len(urls) - 3} more" if len(urls) > 3 else "")
    return (
        f"Rill attaches files from this computer only, so {shown} was not attached. "
        "Save it first, then attach the file."
    )


class PromptEdit(QPlainTextEdit):
    """The text field. Enter (or Ctrl+Enter) emits ``submit``; Shift+Enter breaks the line.

    Pasting or dropping files from a file manager attaches them (``files_given``); an image
    alone on the clipboard is attached as a PNG (``image_given``); text pastes as text."""

    submit = Signal()
    paste_refused = Signal(int)
    files_given = Signal(list)
    image_given = Signal(QImage)
    refused = Signal(str)

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

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return source.hasUrls() or source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        """Attach files or an image; paste or drop text, unless the result could never be
        sent (it is left out whole)."""
        files, other = local_files(source)
        if files:
            self.files_given.emit(files)
            if other:
                self.refused.emit(remote_sentence(other))
            return
        text = source.text() if source.hasText() else ""
        has_text = bool(text) and not text.isspace()
        if not has_text and source.hasImage():
            image = source.imageData()
            if isinstance(image, QImage) and not image.isNull():
                self.image_given.emit(image)
                return
        if not has_text and other:
            self.refused.emit(remote_sentence(other))
            return
        if text:
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
    attach_requested = Signal()
    """The "+" button (or Ctrl+O): choose files to attach."""
    confirmed = Signal()
    """"Send anyway" on the warning before sending."""
    attachments_changed = Signal()

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
        inside = QVBoxLayout(self.box)
        inside.setContentsMargins(8, 8, 8, 8)
        inside.setSpacing(6)
        self.tray = AttachmentTray()
        self.tray.changed.connect(self._attachments_changed)
        inside.addWidget(self.tray)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        inside.addLayout(row)
        self.attach_button = icons.tool_button(
            "plus", "Attach files (Ctrl+O)", "Attach files", "attachButton"
        )
        self.attach_button.setFixedSize(QSize(BUTTON_SIZE, BUTTON_SIZE))
        self.attach_button.setIconSize(QSize(18, 18))
        self.attach_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.attach_button.clicked.connect(self.attach_requested)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.edit = PromptEdit(self)
        self.edit.setObjectName("promptEdit")
        self.edit.setFrameShape(QFrame.Shape.NoFrame)
        self.edit.submit.connect(self.submit)
        self.edit.paste_refused.connect(self._paste_refused)
        self.edit.refused.connect(self.show_warning)
        self.edit.installEventFilter(self)
        self.tray.focus_target = self.edit
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

        # the warning before sending: it waits for an answer without blocking anything
        self.confirm_bar = QWidget()
        self.confirm_bar.setObjectName("confirmBar")
        confirm = QHBoxLayout(self.confirm_bar)
        confirm.setContentsMargins(12, 0, 0, 0)
        self.confirm_label = PlainLabel()
        self.confirm_label.setObjectName("composerWarning")
        self.confirm_label.setWordWrap(True)
        confirm.addWidget(self.confirm_label, 1)
        self.send_anyway = QPushButton("Send anyway")
        self.send_anyway.clicked.connect(self._confirm)
        self.cancel_send = QPushButton("Cancel")
        self.cancel_send.clicked.connect(self.dismiss_confirm)
        confirm.addWidget(self.send_anyway)
        confirm.addWidget(self.cancel_send)
        self.confirm_bar.hide()
        outer.addWidget(self.confirm_bar)

        self.context_length: int | None = None
        """The model's context in tokens, where its server says."""
        self.history_tokens = 0
        """An estimate of the conversation sent along with the prompt (shown beside the
        total; a long chat is the server's to shorten, so it is not warned about)."""
        self.token_counts: dict[str, int] = {}
        """Each attachment's token estimate, by hash."""
        self._pasted = 0
        self._held: list[int] = []
        """Keys of the chips sent with the prompt being stored."""

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
        self.confirm_bar.hide()

    # -- attachments -------------------------------------------------------------------------

    def attachments(self) -> tuple[Attachment, ...]:
        return self.tray.attachments()

    def clear_attachments(self) -> None:
        self.tray.clear()
        self.tray.setEnabled(True)
        self._held = []

    def hold_attachments(self, held: bool) -> None:
        """While a prompt with attachments is being stored, its chips cannot be changed."""
        self._held = list(self.tray.chips) if held else []
        self.tray.setEnabled(not held)

    def release_sent(self) -> None:
        """The prompt is stored: its chips go (any attached since stay)."""
        for key in self._held:
            self.tray.discard(key)
        self._held = []
        self.tray.setEnabled(True)

    def set_dropping(self, dropping: bool) -> None:
        """Outline the prompt box while files are dragged over the window."""
        if bool(self.box.property("dropping")) != dropping:
            self.box.setProperty("dropping", dropping)
            self.box.style().unpolish(self.box)
            self.box.style().polish(self.box)

    def pasted_name(self, how: str = "Pasted") -> str:
        """A name for an image pasted (or dropped) without a file: "Pasted image 1.png", …"""
        self._pasted += 1
        return f"{how} image {self._pasted}.png"

    def set_context(self, context_length: int | None) -> None:
        self.context_length = context_length
        self._show_total()

    def set_history_tokens(self, tokens: int) -> None:
        self.history_tokens = tokens
        self._show_total()

    def estimated_tokens(self) -> int:
        """The prompt and its attachments, in tokens (estimated)."""
        chars = self.edit.document().characterCount() - 1
        total = -(-chars // CHARS_PER_TOKEN)
        return total + sum(self.token_counts.get(a.sha256, 0) for a in self.attachments())

    def over_context(self) -> bool:
        """The prompt and its attachments alone are more than the model reads."""
        return self.context_length is not None and self.estimated_tokens() > self.context_length

    def _show_total(self) -> None:
        if not self.tray.chips and not self.over_context():
            self.tray.set_total("")
            return
        total = self.estimated_tokens()
        text = f"~{total:,} tokens"
        if self.context_length is not None:
            text = f"~{total:,} of {self.context_length:,} tokens"
        if self.history_tokens:
            text += f" (and ~{self.history_tokens:,} for the chat so far)"
        self.tray.set_total(text, over=self.over_context())
        if not self.tray.chips:
            self.tray.show()

    def _attachments_changed(self) -> None:
        self._update_send()
        self._show_total()
        self.confirm_bar.hide()
        self.attachments_changed.emit()

    # -- warning before sending --------------------------------------------------------------

    def ask_confirm(self, text: str) -> None:
        """Say why the prompt may not go well, with "Send anyway" and "Cancel"."""
        self.confirm_label.setText(text)
        self.confirm_bar.show()
        self.send_anyway.setFocus(Qt.FocusReason.OtherFocusReason)

    def dismiss_confirm(self) -> None:
        if self.confirm_bar.isVisible():
            self.confirm_bar.hide()
            self.edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def _confirm(self) -> None:
        self.confirm_bar.hide()
        self.edit.setFocus(Qt.FocusReason.OtherFocusReason)
        self.confirmed.emit()

    def set_busy(self, busy: bool) -> None:
        """Stop in place of Send while a reply is on its way, and back. The outgoing button
        is hidden before the other is shown: showing a widget lays its parents out at once,
        and with both shown the composer would grow for a moment and the whole chat be laid
        out again twice."""
        outgoing, incoming = (
            (self.send_button, self.stop_button) if busy else (self.stop_button, self.send_button)
        )
        outgoing.hide()
        incoming.show()

    def show_warning(self, text: str) -> None:
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def begin_edit(self, text: str) -> None:
        """Put the last prompt in the field; sending replaces it (its attachments are put
        back as chips by the window)."""
        self.clear_attachments()
        self.editing = True
        self.edit_bar.show()
        self.set_text(text)
        self.edit.setFocus()

    def cancel_edit(self) -> None:
        if self.editing:
            self.editing = False
            self.edit_bar.hide()
            self.clear()
            self.clear_attachments()

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
        if self.tray.chips or self.context_length is not None:
            self._show_total()
        if not self._restoring:
            self._draft_timer.start()

    def _paste_refused(self, size: int) -> None:
        self.show_warning(
            f"That text has {size:,} characters. Rill sends at most {MAX_PROMPT_CHARS:,} "
            "in one message, so it was not pasted; it is still on the clipboard. "
            "Paste a shorter part."
        )

    def _update_send(self) -> None:
        empty = self.edit.document().isEmpty() and not self.tray.chips
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
