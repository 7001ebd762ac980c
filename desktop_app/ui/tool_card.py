"""Tool calls inside a reply: one card per call, and the text the reply streamed before them.

A card shows the tool's name as soon as the call starts streaming and its arguments as
they fill in; then, for a tool whose policy is "ask", a row asking the user (Allow once,
Always allow this tool, Deny; the keys Y, A and N, or Tab and Enter); then a spinner with
the time it has run and any progress the server reports; then its result, collapsed to
one line and expandable (text, images as thumbnails, errors styled as errors).

Everything on a card comes from outside Rill (a model's arguments, a server's output and
names): it is shown as plain text, cut to a size, and images are decoded only after their
header says they are small enough.
"""

from __future__ import annotations

import json
import time

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QFocusEvent, QGuiApplication, QImageReader, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextDocumentLayout,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.errors import human_seconds
from desktop_app.core.history import StoredMessage
from desktop_app.core.text import valid_text
from desktop_app.core.tools.base import NEVER, STOPPED
from desktop_app.ui import icons
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.markdown import (
    CodeHighlighter,
    DocumentWriter,
    SafeDocument,
    Segmenter,
    monospace_font,
)

NAME_SHOWN = 120
"""Characters of a tool or server name shown on a card."""
ARGUMENTS_SHOWN = 20_000
"""Characters of a call's arguments the card holds (the model gets them all)."""
RESULT_SHOWN = 50_000
"""Characters of a tool's text result the card shows."""
PREVIEW_CHARS = 160
"""Characters of the one-line preview of arguments or a result."""
IMAGE_BYTES = 8 * 1024 * 1024
"""The largest image a card decodes."""
IMAGE_PIXELS = 6000
"""The widest or tallest image a card decodes."""
IMAGES_SHOWN = 6
THUMBNAIL = 160
"""A thumbnail fits in a square this many pixels wide."""
IMAGE_FORMATS = frozenset({b"png", b"jpeg", b"jpg", b"gif", b"webp", b"bmp"})
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
DETAIL_LINES = 14
"""The details of a card (arguments, result) scroll past this many lines."""

STATES = ("streaming", "approval", "running", "done", "error", "denied", "stopped")


def shown_name(text: str, limit: int = NAME_SHOWN) -> str:
    """A name from a model or a server as a card shows it: one line, at most ``limit``."""
    text = valid_text(text[: limit + 1])
    text = "".join(" " if ord(ch) < 32 or ch == "\x7f" else ch for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` with its whitespace runs made single spaces, cut to ``limit`` characters."""
    head = valid_text(text[: limit * 4])
    flat = " ".join(head.split())
    return flat if len(flat) <= limit and len(head) == len(text) else flat[: limit - 1] + "…"


def pretty_arguments(text: str, limit: int = ARGUMENTS_SHOWN) -> str:
    """A call's arguments (or a result) as indented JSON when they parse, else as they came."""
    text = valid_text(text[:limit])
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(value, indent=2, ensure_ascii=False)


def thumbnail(data: bytes, mime: str = "", size: int = THUMBNAIL) -> QPixmap | None:
    """A thumbnail of an image a tool returned, or None when it is not one Rill shows.

    The header is read first; an image too large in bytes or in pixels, or in a format
    not on the list, is never decoded.
    """
    if not data or len(data) > IMAGE_BYTES:
        return None
    raw = QByteArray(data)
    buffer = QBuffer(raw)
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setAutoTransform(True)
    if bytes(reader.format().data()).lower() not in IMAGE_FORMATS:
        return None
    full = reader.size()
    if not full.isValid() or full.width() > IMAGE_PIXELS or full.height() > IMAGE_PIXELS:
        return None
    if full.width() < 1 or full.height() < 1:
        return None
    reader.setScaledSize(full.scaled(QSize(size, size), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    buffer.close()
    if image.isNull():
        return None
    return QPixmap.fromImage(image)


def render_markdown(view_doc: SafeDocument, text: str, *, highlight: bool = True) -> DocumentWriter:
    """Render all of ``text`` (Markdown) into ``view_doc`` at once (``highlight``: and give
    the document its code highlighter)."""
    writer = DocumentWriter(view_doc)
    if highlight:
        CodeHighlighter(view_doc)
    segmenter = Segmenter()
    for segment in segmenter.feed(text):
        writer.write(segment)
    for segment in segmenter.finish():
        writer.write(segment)
    return writer


class DetailText(QPlainTextEdit):
    """Read-only plain text inside a card (arguments, a result), scrolling past a few lines."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        doc = SafeDocument(self)
        doc.setDocumentLayout(QPlainTextDocumentLayout(doc))
        self.setDocument(doc)
        self.setReadOnly(True)
        self.setObjectName("toolDetail")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setTabChangesFocus(True)
        self.setFont(monospace_font())
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def set_text(self, text: str) -> None:
        self.setPlainText(text)
        self._fit()

    def _fit(self, *_args: object) -> None:
        lines = max(1, min(DETAIL_LINES, self.document().blockCount()))
        if self.document().blockCount() < DETAIL_LINES:
            lines = max(1, min(DETAIL_LINES, int(self.document().size().height())))
        height = lines * self.fontMetrics().lineSpacing() + 12
        if self.height() != height:
            self.setFixedHeight(height)


class ApprovalRow(QFrame):
    """Allow once · Always allow this tool · Deny. Y, A and N choose; Tab and Enter too."""

    decided = Signal(str)

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolApproval")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 4, 0, 0)
        row.setSpacing(8)
        self.question = PlainLabel(f"Run {name}?")
        self.question.setObjectName("toolQuestion")
        row.addWidget(self.question)
        row.addStretch(1)
        self.once = QPushButton("Allow once")
        self.once.setObjectName("toolAllow")
        self.once.setToolTip("Run this call (Y)")
        self.always = QPushButton("Always allow")
        self.always.setToolTip("Run this call and never ask again for this tool (A)")
        self.deny = QPushButton("Deny")
        self.deny.setToolTip("Do not run it; the model is told you declined (N)")
        for button, decision in ((self.once, "once"), (self.always, "always"), (self.deny, "deny")):
            button.setAccessibleName(button.text())
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _c=False, d=decision: self.choose(d))
            row.addWidget(button)
        self.setFocusProxy(self.once)

    def choose(self, decision: str) -> None:
        if not self.isEnabled():
            return
        self.setEnabled(False)
        self.decided.emit(decision)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self.once.setFocus(Qt.FocusReason.OtherFocusReason)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        chosen = {Qt.Key.Key_Y: "once", Qt.Key.Key_A: "always", Qt.Key.Key_N: "deny"}.get(
            Qt.Key(key)
        )
        if chosen is not None and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self.choose(chosen)
            event.accept()
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            focused = QGuiApplication.focusObject()
            for button in (self.once, self.always, self.deny):
                if focused is button:
                    button.click()
                    event.accept()
                    return
        super().keyPressEvent(event)


class ToolCard(QFrame):
    """One tool call: name and arguments, approval, progress, then the result."""

    decided = Signal(str, str)
    """(call id, decision) when the user answers the approval row."""

    def __init__(self, name: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolCard")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.call_id = ""
        self.name = ""
        self.server = ""
        self.arguments = ""
        self.state = ""
        self.result = ""
        self.is_error = False
        self.images: list[QPixmap] = []
        self.started: float | None = None
        self.duration_s: float | None = None
        self.progress_text = ""
        self._frame = 0
        self._expanded = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 8, 8, 8)
        outer.setSpacing(4)

        head = QHBoxLayout()
        head.setSpacing(8)
        self.glyph = PlainLabel("⚙")
        self.glyph.setObjectName("toolGlyph")
        self.glyph.setFixedWidth(16)
        head.addWidget(self.glyph)
        self.name_label = PlainLabel()
        self.name_label.setObjectName("toolName")
        head.addWidget(self.name_label)
        self.server_label = PlainLabel()
        self.server_label.setObjectName("muted")
        head.addWidget(self.server_label)
        self.status_label = PlainLabel()
        self.status_label.setObjectName("toolStatus")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        head.addWidget(self.status_label, 1)
        self.toggle = QToolButton()
        self.toggle.setObjectName("msgTool")
        self.toggle.setAutoRaise(True)
        self.toggle.setCheckable(True)
        self.toggle.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.setIconSize(QSize(16, 16))
        icons.set_icon(self.toggle, "chevron-down", "muted")
        self.toggle.toggled.connect(self.set_expanded)
        head.addWidget(self.toggle)
        outer.addLayout(head)

        self.preview = PlainLabel()
        self.preview.setObjectName("toolPreview")
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        outer.addWidget(self.preview)

        self.approval: ApprovalRow | None = None

        self.details = QWidget()
        detail_box = QVBoxLayout(self.details)
        detail_box.setContentsMargins(0, 4, 0, 0)
        detail_box.setSpacing(4)
        self.arguments_title = PlainLabel("Arguments")
        self.arguments_title.setObjectName("toolSection")
        detail_box.addWidget(self.arguments_title)
        self.arguments_view = DetailText()
        self.arguments_view.setAccessibleName("Arguments")
        detail_box.addWidget(self.arguments_view)
        self.result_title = PlainLabel("Result")
        self.result_title.setObjectName("toolSection")
        detail_box.addWidget(self.result_title)
        self.result_view = DetailText()
        self.result_view.setAccessibleName("Result")
        detail_box.addWidget(self.result_view)
        self.image_row = QHBoxLayout()
        self.image_row.setSpacing(8)
        self.image_row.addStretch(1)
        detail_box.addLayout(self.image_row)
        self.result_title.hide()
        self.result_view.hide()
        self.details.hide()
        outer.addWidget(self.details)

        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._tick)
        self.set_name(name)
        self._set_state("streaming")

    # -- what the stream tells ---------------------------------------------------------------

    def set_name(self, name: str) -> None:
        if name:
            self.name = name
        self.name_label.setText(shown_name(self.name) or "tool")
        self.toggle.setToolTip(f"Show or hide the details of {shown_name(self.name) or 'the call'}")
        self.toggle.setAccessibleName("Details")
        self.setAccessibleName(f"Tool call {shown_name(self.name)}")

    def set_server(self, server: str) -> None:
        self.server = server
        self.server_label.setText(f"· {shown_name(server, 60)}" if server else "")

    def append_arguments(self, text: str) -> None:
        """More of the arguments streamed in."""
        if text and len(self.arguments) < ARGUMENTS_SHOWN:
            self.set_arguments(self.arguments + text)

    def set_arguments(self, text: str) -> None:
        self.arguments = text[:ARGUMENTS_SHOWN]
        if not self.result and self.state not in ("error", "denied"):
            self.preview.setText(one_line(self.arguments))
        if self.details.isVisible():
            self.arguments_view.set_text(pretty_arguments(self.arguments))

    def ask(self, server: str, arguments: str) -> ApprovalRow:
        """Show the approval row; the keyboard focus moves to it."""
        self.set_server(server)
        if arguments:
            self.set_arguments(arguments)
        self._set_state("approval")
        if self.approval is None:
            self.approval = ApprovalRow(shown_name(self.name))
            self.approval.decided.connect(self._decided)
            layout = self.layout()
            assert isinstance(layout, QVBoxLayout)
            layout.insertWidget(2, self.approval)
        self.approval.setEnabled(True)
        self.approval.show()
        self.approval.once.setFocus(Qt.FocusReason.OtherFocusReason)
        return self.approval

    def start(self, server: str, arguments: str) -> None:
        """The call runs now."""
        self.set_server(server)
        if arguments:
            self.set_arguments(arguments)
        self._drop_approval()
        self.started = time.monotonic()
        self._set_state("running")
        self._timer.start()
        self._tick()

    def set_progress(self, progress: float, total: float | None, message: str | None) -> None:
        if message:
            self.progress_text = one_line(message, 80)
        elif total:
            self.progress_text = f"{_number(progress)} of {_number(total)}"
        else:
            self.progress_text = _number(progress)
        self._tick()

    def finish(
        self,
        content: str,
        *,
        is_error: bool,
        duration_s: float,
        images: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """The tool returned ``content`` (an error the tool reported when ``is_error``)."""
        self._timer.stop()
        self._drop_approval()
        self.duration_s = duration_s
        self.result = valid_text(content[:RESULT_SHOWN])
        if len(content) > RESULT_SHOWN:
            self.result += f"\n… and {len(content) - RESULT_SHOWN:,} more characters"
        self.is_error = is_error
        self.images = []
        for mime, data in images[:IMAGES_SHOWN]:
            pixmap = thumbnail(data, mime)
            if pixmap is not None:
                self.images.append(pixmap)
        self.result_view.set_text(pretty_arguments(self.result, RESULT_SHOWN + 100))
        self._show_images(len(images))
        took = human_seconds(duration_s)
        if is_error:
            self._set_state("error", f"error · {took}")
        else:
            self._set_state("done", f"done · {took}")
        preview = one_line(self.result) if self.result.strip() else ""
        if not preview and self.images:
            preview = f"{len(self.images)} image{'s' if len(self.images) != 1 else ''}"
        self.preview.setText(preview or "(no output)")
        self.result_title.setText("Error" if is_error else "Result")
        self.result_title.show()
        self.result_view.show()

    def fail(self, reason: str, *, denied: bool = False, duration_s: float = 0.0) -> None:
        """The call produced no result: ``reason`` says why (declined, timed out, …)."""
        if reason == STOPPED:
            self.stop()
            return
        self._timer.stop()
        self._drop_approval()
        self.duration_s = duration_s
        self.result = valid_text(reason[:RESULT_SHOWN])
        self.is_error = True
        if reason == NEVER:
            self._set_state("denied", "not allowed (policy: never)")
        else:
            self._set_state("denied" if denied else "error", "denied" if denied else "failed")
        self.preview.setText(one_line(self.result))
        self.result_title.setText("Not run" if self.state == "denied" else "Error")
        self.result_view.set_text(self.result)
        self.result_title.show()
        self.result_view.show()

    def stop(self) -> None:
        """The turn ended before this call did (Esc, a failure)."""
        if self.state in ("done", "error", "denied", "stopped"):
            return
        self._timer.stop()
        self._drop_approval()
        if self.started is not None:
            self.duration_s = time.monotonic() - self.started
        self.result = STOPPED
        self.preview.setText(STOPPED)
        self._set_state("stopped", "stopped")

    @property
    def settled(self) -> bool:
        return self.state in ("done", "error", "denied", "stopped")

    # -- showing -------------------------------------------------------------------------------

    def set_expanded(self, expanded: bool) -> None:
        self._expanded = expanded
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)
        if expanded:
            self.arguments_view.set_text(pretty_arguments(self.arguments))
        self.arguments_title.setVisible(bool(self.arguments.strip()))
        self.arguments_view.setVisible(bool(self.arguments.strip()))
        self.details.setVisible(expanded)
        self.preview.setVisible(not expanded)
        icons.set_icon(self.toggle, "chevron-up" if expanded else "chevron-down", "muted")

    @property
    def expanded(self) -> bool:
        return self._expanded

    def status_text(self) -> str:
        return self.status_label.text()

    def _set_state(self, state: str, text: str = "") -> None:
        self.state = state
        if not text:
            text = {
                "streaming": "preparing…",
                "approval": "waiting for your approval",
                "running": "running…",
                "stopped": "stopped",
            }.get(state, "")
        self.status_label.setText(text)
        for widget in (self, self.status_label, self.preview):
            widget.setProperty("state", state)
            widget.style().unpolish(widget)
            widget.style().polish(widget)

    def _drop_approval(self) -> None:
        if self.approval is not None:
            had_focus = self.approval.isAncestorOf(QGuiApplication.focusObject())  # type: ignore[arg-type]
            self.approval.hide()
            self.approval.setParent(None)
            self.approval.deleteLater()
            self.approval = None
            if had_focus:
                self.toggle.setFocus(Qt.FocusReason.OtherFocusReason)

    def _decided(self, decision: str) -> None:
        self.decided.emit(self.call_id, decision)

    def _tick(self) -> None:
        if self.state != "running" or self.started is None:
            return
        self._frame = (self._frame + 1) % len(SPINNER)
        elapsed = time.monotonic() - self.started
        parts = [f"{SPINNER[self._frame]} running {int(elapsed)} s"]
        if self.progress_text:
            parts.append(self.progress_text)
        self.status_label.setText(" · ".join(parts))

    def _show_images(self, offered: int) -> None:
        while self.image_row.count() > 1:
            item = self.image_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for pixmap in self.images:
            label = PlainLabel()
            label.setObjectName("toolImage")
            label.setPixmap(pixmap)
            label.setFixedSize(pixmap.size())
            self.image_row.insertWidget(self.image_row.count() - 1, label)
        skipped = offered - len(self.images)
        if skipped > 0:
            note = PlainLabel(
                f"{skipped} image{'s' if skipped != 1 else ''} not shown "
                "(too large or not a picture)"
            )
            note.setObjectName("muted")
            self.image_row.insertWidget(self.image_row.count() - 1, note)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


class ToolSteps(QWidget):
    """What a reply showed before its last text: earlier text and tool cards, in order."""

    decided = Signal(str, str)
    link_clicked = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolSteps")
        self.box = QVBoxLayout(self)
        self.box.setContentsMargins(0, 0, 0, 0)
        self.box.setSpacing(8)
        self.cards: list[ToolCard] = []
        self.texts: list[str] = []
        self._round: dict[int, ToolCard] = {}
        """This round's cards by their index in the stream."""

    def clear(self) -> None:
        while self.box.count():
            item = self.box.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self.cards = []
        self.texts = []
        self._round = {}

    @property
    def round_open(self) -> bool:
        """Cards of the current round are showing (text that follows is a continuation)."""
        return bool(self._round)

    def new_round(self) -> None:
        self._round = {}

    def add_text(self, markdown: str) -> None:
        """Text of the reply that came before the next tool calls."""
        if not markdown:
            return
        self.texts.append(markdown)
        if not markdown.strip():
            return
        from desktop_app.ui.chat_view import DocView

        view = DocView(self)
        writer = render_markdown(view.document(), markdown)  # type: ignore[arg-type]
        view.quotes = writer.quotes
        view.anchorClicked.connect(self.link_clicked)
        view.setProperty("markdown", markdown)
        self.box.addWidget(view)

    def add_card(self, name: str = "", call_id: str = "") -> ToolCard:
        card = ToolCard(name, self)
        card.call_id = call_id
        card.decided.connect(self.decided)
        self.box.addWidget(card)
        self.cards.append(card)
        return card

    def delta(self, index: int, call_id: str | None, name: str | None, arguments: str) -> ToolCard:
        """A piece of a streaming call: its card appears at once and fills in."""
        card = self._round.get(index)
        if card is None:
            card = self.add_card(name or "", call_id or "")
            self._round[index] = card
        if call_id and not card.call_id:
            card.call_id = call_id
        if name and name != card.name:
            card.set_name(name)
        card.append_arguments(arguments)
        return card

    def card_for(self, call_id: str, name: str = "") -> ToolCard:
        """The card of ``call_id``: the one that streamed (matched by id, or the first of
        this round with that name and no id yet), or a new one."""
        for card in self.cards:
            if card.call_id == call_id:
                return card
        for card in self._round.values():
            if not card.call_id and (not name or card.name == name):
                card.call_id = call_id
                return card
        for card in self._round.values():
            if card.name == name and card.state == "streaming":
                card.call_id = call_id
                return card
        card = self.add_card(name, call_id)
        self._round[-len(self.cards)] = card
        return card

    def refresh_theme(self) -> None:
        """Draw the earlier text again in the current theme's colours."""
        from desktop_app.ui.chat_view import DocView

        for view in self.findChildren(DocView):
            markdown = view.property("markdown")
            if isinstance(markdown, str):
                doc = view.document()
                for highlighter in doc.findChildren(CodeHighlighter):
                    highlighter.refresh_colours()
                doc.clear()
                writer = render_markdown(doc, markdown, highlight=False)  # type: ignore[arg-type]
                view.quotes = writer.quotes

    def stop_all(self) -> None:
        for card in self.cards:
            card.stop()

    def card_with(self, call_id: str) -> ToolCard | None:
        return next((c for c in self.cards if c.call_id == call_id), None)


def show_stored_tools(widget: QWidget, message: StoredMessage) -> str:
    """Rebuild the tool cards of a stored reply in ``widget`` (a message widget, through its
    ``tool_steps()``), each after the text that came before it; return the text after the
    last call (the part the widget shows as its body)."""
    parts = sorted(message.tool_parts, key=lambda p: (p.offset, p.round))
    content = message.content
    if not parts:
        return content
    steps: ToolSteps = widget.tool_steps()  # type: ignore[attr-defined]
    at = 0
    last_round: int | None = None
    for part in parts:
        offset = max(at, min(part.offset, len(content)))
        if part.round != last_round:
            steps.new_round()
            steps.add_text(content[at:offset])
            at = offset
            last_round = part.round
        card = steps.add_card(part.exposed or part.name, part.call_id)
        card.set_server(part.server)
        card.set_arguments(part.arguments)
        if part.ok:
            card.finish(part.result, is_error=part.is_error, duration_s=part.duration_s)
        else:
            card.fail(part.result, denied=part.denied, duration_s=part.duration_s)
    steps.new_round()
    return content[at:]
