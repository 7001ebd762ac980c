"""The conversation: message cards in a scroll area, with a streaming reply at the bottom.

Streaming text is buffered and flushed at most once per frame (:data:`FRAME_MS`). A flush
appends newly finished Markdown segments to the reply's document and grows or re-renders
only the open tail at its end (see :mod:`desktop_app.ui.markdown`), so the work per flush
does not grow with the reply. The view follows the stream unless the user scrolled up; then
a "Jump to latest" button appears.

Text waits in a message's backlog until a :class:`RenderScheduler` turns it into document
content, at most :data:`SLICE_CHARS` characters (and about :data:`SLICE_S` seconds) per
event-loop turn across all messages. A stream arriving faster than it can be laid out, or a
long stored reply being opened, is therefore drawn over several turns, and the window keeps
answering in between.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QEvent,
    QMimeData,
    QObject,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QDesktopServices,
    QEnterEvent,
    QFocusEvent,
    QGuiApplication,
    QImage,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QTextCursor,
    QTextDocument,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.errors import human_seconds
from desktop_app.core.history import StoredMessage
from desktop_app.core.types import Attachment, GenerationResponse
from desktop_app.ui.attachment_chips import AttachmentStrip
from desktop_app.ui.icons import set_icon
from desktop_app.ui.labels import PlainLabel, WrapLabel
from desktop_app.ui.markdown import (
    CodeHighlighter,
    DocumentWriter,
    QuoteBars,
    SafeDocument,
    Segment,
    Segmenter,
    held_formula,
    placeholder_image,
    selection_text,
)

if TYPE_CHECKING:
    from desktop_app.ui.tool_card import ToolCard, ToolSteps

FRAME_MS = 40
"""A frame of a streaming reply: text is drawn as soon as it arrives after a quiet spell,
then at most once a frame (25 frames a second). Each frame lays out, paints and scrolls the
view once whatever it adds, so a fast stream costs per frame, not per token."""
FRAME_EARLY_MS = 10
"""Text arriving this close to the end of a frame is drawn at once: the connection is read
once a frame, so the text of the next read is drawn in the wake-up that read it, not in a
second one a few milliseconds later."""
SPARE_DELAY_MS = 500
"""A spare message widget is made after this much time without a new message or a reply."""
SPARE_NEXT_MS = 50
"""And the next one this much later (each is one short piece of work, not both at once)."""
LAYOUT_LEVELS = 5
"""Layouts between a reply's text and the scroll bar: the message, its block, the column,
the page and the scroll area's viewport."""
BLOCK_MESSAGES = 8
"""The column holds its first messages itself and the rest in blocks of this many, so a
frame of a streaming reply lays out and paints its own block and the column, whose items
are at most this many messages and the blocks: its cost does not grow with the number of
messages above it."""
USER_TEXT_SHOWN = 8000
"""A longer user message is shown cut to this many characters (copying gives all of it)."""
SAFE_SCHEMES = frozenset({"http", "https"})
SLICE_CHARS = 16_384
"""Most characters of text turned into document content in one event-loop turn."""
SLICE_S = 0.004
"""A slice stops taking new pieces of text after this long."""
PIECE_CHARS = 4_096
"""Text enters the segmenter this many characters at a time."""
BUBBLE_SHARE = 0.75
"""A prompt's bubble is at most this share of the conversation's width."""
BUBBLE_PAD_X = 12
BUBBLE_PAD_Y = 6
COLUMN_WIDTH = 860
"""The widest the conversation's column grows."""


@dataclass(slots=True)
class RenderStats:
    """Counters of rendering work, for tests and diagnostics."""

    full_renders: int = 0
    tail_renders: int = 0
    tail_extends: int = 0
    """Open tails drawn by appending plain text instead of rendering them again."""
    flushes: int = 0
    segments: int = 0
    max_tail_chars: int = 0
    max_flush_chars: int = 0
    slices: int = 0
    max_slice_chars: int = 0


_MATH_READY: list[bool] = []


def _prepare_math() -> None:
    """Load what drawing a formula needs (not ziamath: that runs in a process of its own)."""
    if not _MATH_READY:
        from desktop_app.ui.math_render import prepare

        prepare()
        _MATH_READY.append(True)


def open_link(url: QUrl) -> bool:
    """Open an http(s) link in the system browser; refuse every other scheme."""
    if url.scheme().lower() not in SAFE_SCHEMES or not url.isValid():
        return False
    return bool(QDesktopServices.openUrl(url))


class DocView(QTextBrowser):
    """A read-only rich-text view as tall as its document, for use inside a scroll area.

    Links are never followed by the widget itself: ``anchorClicked`` goes to the owner.
    Resources (images) are never loaded.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.viewport().setAutoFillBackground(False)
        # growing (text appended) repaints the new lines, not the text already drawn
        self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self.viewport().setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self._safe = SafeDocument(self)
        self.setDocument(self._safe)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.document().setDocumentMargin(4)
        layout = self.document().documentLayout()
        layout.documentSizeChanged.connect(self._fit)
        # What the layout reports as changed is repainted through _repaint (see there),
        # in place of QTextEdit's own forwarding, its only other receiver.
        layout.update.disconnect()
        layout.update.connect(self._repaint)
        self.document().contentsChange.connect(self._changed)
        self._changed_at = -1
        """Where the edit being laid out began (-1: no edit, or not one to narrow)."""
        self._held = False
        self.setFixedHeight(8)
        self.quotes: QuoteBars | None = None
        """The quotes of the document, drawn with a bar at their left."""

    def _changed(self, position: int, _removed: int, _added: int) -> None:
        # the layout reports this edit's changed area right after this signal, when it has
        # a page size to lay out at; without one it reports nothing, so nothing is noted
        self._changed_at = -1 if self.document().pageSize().isNull() else position

    def _repaint(self, rect: QRectF) -> None:
        """Repaint ``rect`` of the document (what QTextEdit does with the layout's report),
        from no higher than the top of the block an edit changed.

        QTextDocumentLayout lays an edit out from its last checkpoint before it (one every
        2,000 px of document) and reports as changed everything from the first block it
        laid out. When the edit is in the very block the checkpoint is at (a streamed
        paragraph, for a frame or two every 2,000 px), that is from the document's top:
        the whole visible reply would be painted again, 4-5 ms at the window's size. The
        blocks before the edited one did not change, so the repaint starts where it does.
        """
        changed, self._changed_at = self._changed_at, -1
        viewport = self.viewport()
        if not rect.isValid():
            viewport.update()
            return
        if changed > 0 and rect.top() <= 0:
            block = self.document().findBlock(changed).previous()
            if block.isValid():
                top = self.document().documentLayout().blockBoundingRect(block).bottom()
                rect = QRectF(rect.left(), top, rect.width(), rect.bottom() - top)
        bar = self.horizontalScrollBar()
        x = bar.maximum() - bar.value() if self.isRightToLeft() else bar.value()
        y = self.verticalScrollBar().value()
        shown = rect.intersected(QRectF(x, y, viewport.width(), viewport.height()))
        area = shown.toAlignedRect()
        if not area.isEmpty():
            viewport.update(area.translated(-x, -y))

    def resizeEvent(self, event: QResizeEvent) -> None:
        if event.size().width() != event.oldSize().width():
            self._changed_at = -1  # a new width lays out (and reports) the whole document
        super().resizeEvent(event)

    def _fit(self, size: Any) -> None:
        if self._held:
            return
        height = math.ceil(size.height()) + 2
        if height != self.height():
            self.setFixedHeight(height)

    @contextmanager
    def holding_height(self) -> Iterator[None]:
        """Keep this height while the document is laid out at trial widths; fit it after."""
        self._held = True
        try:
            yield
        finally:
            self._held = False
            self._fit(self.document().size())

    def sizeHint(self) -> QSize:
        return QSize(400, self.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.quotes is not None and self.quotes.runs:
            painter = QPainter(self.viewport())
            self.quotes.paint(painter, self.document(), QRectF(event.rect()))
            painter.end()

    def loadResource(self, type: int, name: QUrl | str) -> Any:
        if type == QTextDocument.ResourceType.ImageResource.value:
            return placeholder_image()
        return None

    def createMimeDataFromSelection(self) -> QMimeData:
        """What copying the selection gives: each formula as its LaTeX."""
        text = selection_text(self.textCursor())
        if text is None:
            return super().createMimeDataFromSelection()
        mime = QMimeData()
        mime.setText(text)
        return mime


class MessageColumn(QVBoxLayout):
    """A column of messages (or of blocks of them), placed only in a rect that holds them all.

    When a message grows (a reply streaming in), Qt lays out the column before its parents
    have made it taller, in the height it had: a box layout then squeezes the messages
    above, and places them again moments later when the column has grown. Each squeeze
    moves every message below it and repaints them; a prompt in a bubble would also lay
    its text out again. That first placement is skipped: the column's own growth comes
    straight after it and places everything once, where it belongs. A column that cannot
    grow that tall (its widget's maximum height) is placed as it is.
    """

    def setGeometry(self, rect: QRect) -> None:
        needed = self.minimumSize().height()
        column = self.parentWidget()
        if rect.height() < needed and (column is None or needed <= column.maximumHeight()):
            return
        super().setGeometry(rect)


def _set_text_width(doc: QTextDocument, width: float) -> None:
    """Lay ``doc`` out at ``width`` unless it already is (setting a width lays it all out)."""
    if doc.textWidth() != width:
        doc.setTextWidth(width)


def _wraps(doc: QTextDocument) -> bool:
    """Whether a paragraph of ``doc`` is laid out on more than one line."""
    block = doc.begin()
    while block.isValid():
        layout = block.layout()
        if layout is not None and layout.lineCount() > 1:
            return True
        block = block.next()
    return False


class PageRow(QHBoxLayout):
    """The row across the chat's page, laid out as wide as it is with the scroll bar shown.

    The bar is shown once the chat is taller than the view: the page then narrows by the
    bar's width, and every message would be laid out again at the new width in the frame
    where a streaming reply first reaches the bottom (15-25 ms at the window's size, the
    longest frame of a reply). Keeping the bar's room free while it is hidden gives the
    messages the same width either way.
    """

    def __init__(self, view: QScrollArea, page: QWidget) -> None:
        super().__init__(page)
        self._view = view

    def setGeometry(self, rect: QRect) -> None:
        room = self._view.maximumViewportSize().width()
        room -= self._view.verticalScrollBar().sizeHint().width()
        if 0 < room < rect.width():
            rect = QRect(rect.x(), rect.y(), room, rect.height())
        super().setGeometry(rect)


class RenderScheduler(QObject):
    """Turns the messages' backlogs into document content, a bounded slice per turn.

    Each slice takes pieces of text from the waiting messages in order until it has taken
    :data:`SLICE_CHARS` characters or run for :data:`SLICE_S`; what is left waits for the
    next turn of the event loop.
    """

    def __init__(self, stats: RenderStats, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.stats = stats
        self._waiting: list[MessageWidget] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.run)

    def want(self, widget: MessageWidget) -> None:
        """Render ``widget``'s backlog soon (in the next slice)."""
        if widget not in self._waiting:
            self._waiting.append(widget)
        if not self._timer.isActive():
            self._timer.start()

    def drop(self, widget: MessageWidget) -> None:
        if widget in self._waiting:
            self._waiting.remove(widget)

    def run(self) -> None:
        """Render one slice now."""
        self._timer.stop()
        deadline = time.perf_counter() + SLICE_S
        budget = SLICE_CHARS
        used = 0
        while self._waiting and used < budget:
            widget = self._waiting[0]
            used += widget.render_some(budget - used, deadline)
            if not widget.rendering:
                self._waiting.pop(0)
            if time.perf_counter() >= deadline:
                break  # (after one step at least: a slow machine still gets on)
        self.stats.slices += 1
        self.stats.max_slice_chars = max(self.stats.max_slice_chars, used)
        if self._waiting:
            self._timer.start()


class ActionButton(QToolButton):
    """A small icon button acting on a message.

    An ``on_hover`` button is drawn only while its message shows its actions (see
    :meth:`MessageWidget.actions_shown`), but it stays in the layout and in the Tab order,
    so the message does not move when the pointer passes and the keyboard reaches it.
    """

    def __init__(self, owner: MessageWidget, name: str, tip: str, *, on_hover: bool = True) -> None:
        super().__init__(owner)
        self._owner = owner
        self._on_hover = on_hover
        self.setObjectName("msgTool")
        set_icon(self, name, "muted")
        self.setIconSize(QSize(16, 16))
        self.setToolTip(tip)
        self.setAccessibleName(tip)
        self.setAutoRaise(True)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def paintEvent(self, event: QPaintEvent) -> None:
        if not self._on_hover or self._owner.actions_shown():
            super().paintEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self._owner._actions_changed()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self._owner._actions_changed()


class MessageWidget(QFrame):
    """One message: the prompt in a bubble or the reply as full-width text, then notices,
    Continue/Retry, and a row of versions, actions, the state badge and details."""

    link_clicked = Signal(QUrl)
    retry_clicked = Signal()
    continue_clicked = Signal()
    regenerate_clicked = Signal()
    edit_clicked = Signal()
    copy_clicked = Signal()
    version_clicked = Signal(int)
    tool_decided = Signal(str, str)
    attachment_opened = Signal(object)
    """A prompt's :class:`Attachment` was clicked (or Enter on it)."""
    thumbnails_wanted = Signal(list)
    """Hashes of a prompt's images whose thumbnails are not decoded yet."""

    def __init__(
        self,
        role: str,
        stats: RenderStats,
        parent: QWidget | None = None,
        scheduler: RenderScheduler | None = None,
    ) -> None:
        super().__init__(parent)
        self.role = role
        self.stats = stats
        self.message: StoredMessage | None = None
        self.state = "complete"
        self.cached = False
        self.known: dict[str, Any] = {}
        """Numbers the stream gave this window that the stored message may lack."""
        self.routes: dict[int, tuple[str, str]] = {}
        """Auto's route (a line and why) for the replies it chose, by message id."""
        self.route = ("", "")
        self._parts: list[str] = []
        self._full_text: str | None = None
        self._segmenter: Segmenter | None = None
        self._backlog: deque[str] = deque()
        """Text received but not yet rendered (the first entry from ``_backlog_at`` on)."""
        self._backlog_at = 0
        self._tail_before = ""
        """The open tail as it was at the frame before (see :func:`held_formula`)."""
        self._release_timer: QTimer | None = None
        self._segments: deque[Segment] = deque()
        """Finished segments not yet written to the document."""
        self._live = False
        """A stream is arriving."""
        self._ending = False
        """The text is whole: once the backlog is rendered, the open tail is committed."""
        self._scheduler = scheduler if scheduler is not None else RenderScheduler(stats, self)
        self.steps: ToolSteps | None = None
        """The text and tool cards a reply showed before its last text (None without tools)."""
        self.setObjectName("message")
        self.setProperty("role", role)
        self.setAccessibleName("Your message" if role == "user" else "Reply")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self._hovered = False
        self._pinned = False
        """The actions stay shown (the last reply's)."""
        self._beside_shown: tuple[bool, ...] = ()
        self._bubble_fit: tuple[int, int] | None = None
        """The row width and the room beside the prompt its bubble was last fitted to."""

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)

        self.body = DocView(self)
        self.body.anchorClicked.connect(self._anchor)
        self.writer = DocumentWriter(self.body.document())
        self.body.quotes = self.writer.quotes
        self.highlighter = CodeHighlighter(self.body.document())
        self.bubble: QFrame | None = None
        self.thumbs: dict[str, QImage] = {}
        """Decoded thumbnails by hash (the view's, shared by its messages)."""
        self.strip: AttachmentStrip | None = None
        """The prompt's attachments, above its bubble (made for the first one)."""
        if role == "user":
            # the prompt: a tinted bubble at the right, as wide as its text up to a share
            self.bubble = QFrame(self)
            self.bubble.setObjectName("userBubble")
            self.bubble.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Maximum)
            inner = QVBoxLayout(self.bubble)
            inner.setContentsMargins(BUBBLE_PAD_X, BUBBLE_PAD_Y, BUBBLE_PAD_X, BUBBLE_PAD_Y)
            inner.addWidget(self.body)
            self._bubble_row = QHBoxLayout()
            self._bubble_row.setContentsMargins(0, 0, 0, 0)
            self._bubble_row.setSpacing(2)
            self._bubble_row.addStretch(1)
            self._bubble_row.addWidget(self.bubble)
            outer.addLayout(self._bubble_row)
        else:
            outer.addWidget(self.body)

        self.notice = WrapLabel()
        self.notice.setObjectName("noticeText")
        self.notice.hide()
        outer.addWidget(self.notice)

        self.error_label = WrapLabel()
        self.error_label.setObjectName("errorText")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        outer.addWidget(self.error_label)
        recover_row = QHBoxLayout()
        recover_row.setSpacing(8)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setObjectName("recoverButton")
        self.continue_button.setToolTip("Continue this reply from where it stopped")
        self.continue_button.clicked.connect(self.continue_clicked)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setObjectName("recoverButton")
        self.retry_button.setToolTip("Ask again; the new answer becomes a new version")
        self.retry_button.clicked.connect(self.retry_clicked)
        for button in (self.continue_button, self.retry_button):
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.hide()
            recover_row.addWidget(button)
        recover_row.addStretch(1)
        outer.addLayout(recover_row)

        # versions, actions (drawn on hover or focus), the state badge and the details: a
        # reply's in a row under it, a prompt's at the left of its bubble
        self.badge = PlainLabel()
        self.badge.setObjectName("badge")
        # as wide as its words: with the details hidden (while streaming) it must not
        # stretch across the row
        self.badge.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        self.badge.hide()
        self.prev_button = ActionButton(self, "prev", "Previous version", on_hover=False)
        self.version_label = PlainLabel()
        self.version_label.setObjectName("muted")
        self.next_button = ActionButton(self, "next", "Next version", on_hover=False)
        self.prev_button.clicked.connect(lambda: self._step_version(-1))
        self.next_button.clicked.connect(lambda: self._step_version(1))
        for w in (self.prev_button, self.version_label, self.next_button):
            w.hide()
        self.copy_button = self._tool("copy", "Copy this message as Markdown")
        self.copy_button.clicked.connect(self.copy_clicked)
        self.regen_button = self._tool("regenerate", "Write a new version of this reply")
        self.regen_button.clicked.connect(self.regenerate_clicked)
        self.regen_button.hide()
        self.edit_button = self._tool("edit", "Edit this prompt and send it again")
        self.edit_button.clicked.connect(self.edit_clicked)
        self.edit_button.hide()
        self.action_buttons: tuple[ActionButton, ...] = (
            self.copy_button,
            self.regen_button,
            self.edit_button,
        )
        self.details = WrapLabel()
        self.details.setObjectName("details")
        self.details.hide()
        versions = (self.prev_button, self.version_label, self.next_button)
        if role == "user":
            at = 1
            for w in (self.badge, self.edit_button, self.copy_button, *versions):
                self._bubble_row.insertWidget(at, w, 0, Qt.AlignmentFlag.AlignBottom)
                at += 1
            self._bubble_row.insertSpacing(at, 6)
        else:
            meta = QHBoxLayout()
            meta.setContentsMargins(0, 0, 0, 0)
            meta.setSpacing(2)
            # the badge keeps to the left when it is alone in the row (while streaming)
            meta.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignLeft)
            for w in (*versions, self.copy_button, self.regen_button):
                meta.addWidget(w)
            meta.addSpacing(8)
            self.details.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            meta.addWidget(self.details, 1)
            outer.addLayout(meta)

    def _tool(self, name: str, tip: str) -> ActionButton:
        return ActionButton(self, name, tip)

    # -- actions shown on hover --------------------------------------------------------------

    def actions_shown(self) -> bool:
        """The action buttons are drawn: the pointer is over the message, one of them has
        the keyboard focus, or the message is the last reply."""
        if self._hovered or self._pinned:
            return True
        focus = QApplication.focusWidget()
        return focus is not None and focus in self.action_buttons

    def _actions_changed(self) -> None:
        for button in self.action_buttons:
            button.update()

    def enterEvent(self, event: QEnterEvent) -> None:
        super().enterEvent(event)
        self._hovered = True
        self._actions_changed()

    def leaveEvent(self, event: QEvent) -> None:
        super().leaveEvent(event)
        self._hovered = False
        self._actions_changed()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_bubble()

    def _beside_bubble(self) -> tuple[QWidget, ...]:
        return (
            self.badge,
            self.edit_button,
            self.copy_button,
            self.prev_button,
            self.version_label,
            self.next_button,
        )

    def _refit_if_beside_changed(self) -> None:
        if self.bubble is None:
            return
        shown = tuple(w.isVisibleTo(self) for w in self._beside_bubble())
        if shown != self._beside_shown:
            self._beside_shown = shown
            self._fit_bubble()

    def _fit_bubble(self, *, text_changed: bool = False) -> None:
        """Make the prompt's bubble as wide as its longest line, up to a share of the row.

        The text is laid out again only when the row's width, the room beside the bubble or
        the text changed: a change of height alone (the reply growing below) leaves it be.
        """
        if self.bubble is None:
            return
        beside = 8 + sum(
            w.sizeHint().width() + 2 for w in self._beside_bubble() if w.isVisibleTo(self)
        )
        key = (self.width(), beside)
        if key == self._bubble_fit and not text_changed:
            return
        self._bubble_fit = key
        limit = self._bubble_limit(beside)
        doc = self.body.document()
        # the text at the widest the bubble may be; the body keeps its height meanwhile, so
        # this trial width never reaches the layout. A text that wraps there keeps that
        # width (as a web page's bubble does); a shorter one gets a bubble as wide as its
        # longest line. Each width set lays all of the text out, so a width already set
        # is not set again: a long prompt is laid out once, at the width it is shown at.
        with self.body.holding_height():
            _set_text_width(doc, limit - 2 * BUBBLE_PAD_X)
            width = limit
            if not _wraps(doc):
                width = min(limit, math.ceil(doc.idealWidth()) + 2 * BUBBLE_PAD_X + 2)
            # lay the text out at the width it is shown at (the view keeps it there on resize)
            _set_text_width(doc, width - 2 * BUBBLE_PAD_X)
        if self.bubble.minimumWidth() != width or self.bubble.maximumWidth() != width:
            self.bubble.setFixedWidth(width)

    def _bubble_limit(self, beside: int) -> int:
        """The widest the prompt's bubble may be, with ``beside`` pixels next to it."""
        return max(160, min(int(self.width() * BUBBLE_SHARE), self.width() - beside))

    # -- content ---------------------------------------------------------------------------

    @property
    def message_id(self) -> int | None:
        return None if self.message is None else self.message.id

    @property
    def streaming(self) -> bool:
        return self._live

    @property
    def rendering(self) -> bool:
        """Some of the text is still waiting to be drawn."""
        return bool(self._backlog) or bool(self._segments) or self._ending

    def text(self) -> str:
        """The whole text of the message as Markdown."""
        if self._full_text is not None:
            return self._full_text
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def code_block(self, index: int) -> str:
        blocks = self.writer.code_blocks
        return "\n".join(blocks[index]) if 0 <= index < len(blocks) else ""

    def set_message(self, message: StoredMessage) -> None:
        """Show a stored message: renders its whole content."""
        self.message = message
        self.known = {}
        self.clear_steps()
        from desktop_app.ui.tool_card import show_stored_tools

        text = show_stored_tools(self, message)
        self.render_text(text)
        self.show_attachments(message.attachments)
        self.update_meta(message)

    def show_attachments(self, attachments: tuple[Attachment, ...]) -> None:
        """Show a prompt's attachments above it (thumbnails for images)."""
        if self.role != "user" or (self.strip is None and not attachments):
            return
        if self.strip is None:
            self.strip = AttachmentStrip(self)
            self.strip.opened.connect(self.attachment_opened)
            layout = self.layout()
            assert isinstance(layout, QVBoxLayout)
            layout.insertWidget(0, self.strip, 0, Qt.AlignmentFlag.AlignRight)
        missing = self.strip.set_attachments(attachments, self.thumbs)
        if self.bubble is not None:  # files sent without words show no empty bubble
            self.bubble.setVisible(bool(self.text().strip()) or not attachments)
        if missing:
            self.thumbnails_wanted.emit(missing)

    def set_thumbnail(self, sha256: str, image: QImage) -> None:
        if self.strip is not None:
            self.strip.set_image(sha256, image)

    # -- tool calls --------------------------------------------------------------------------

    def tool_steps(self) -> ToolSteps:
        """The reply's earlier text and tool cards, shown above its last text."""
        if self.steps is None:
            from desktop_app.ui.tool_card import ToolSteps

            self.steps = ToolSteps(self)
            self.steps.decided.connect(self.tool_decided)
            self.steps.link_clicked.connect(self.link_clicked)
            layout = self.layout()
            assert isinstance(layout, QVBoxLayout)
            layout.insertWidget(0, self.steps)
        return self.steps

    def clear_steps(self) -> None:
        if self.steps is not None:
            self.steps.clear()

    def full_text(self) -> str:
        """The reply's text across its tool rounds, as Markdown."""
        earlier = self.steps.texts if self.steps is not None else []
        return "".join([*earlier, self.text()]) if earlier else self.text()

    def render_text(self, text: str) -> None:
        """Render the whole text from scratch (the one full render of a message)."""
        self.stats.full_renders += 1
        self._end_tail()
        self._stop_rendering()
        self._live = False
        self.writer.clear()
        if self.role == "user":
            self._full_text = text
            self._parts = []
            if self.bubble is not None and self._bubble_fit is not None:
                # the text is laid out as it is set: at the bubble's widest, where a long
                # prompt stays, not at the width of the text it replaces
                limit = self._bubble_limit(self._bubble_fit[1])
                _set_text_width(self.body.document(), limit - 2 * BUBBLE_PAD_X)
            self._render_plain(text)
            self._show_body()
            self._fit_bubble(text_changed=True)
            return
        self._full_text = None
        self._parts = [text] if text else []
        self._segmenter = Segmenter()
        self._ending = True
        if text:
            self._backlog.append(text)
        if len(text) <= PIECE_CHARS:
            self.render_some(PIECE_CHARS, time.perf_counter() + SLICE_S)
        if self.rendering:  # (a short text whose slice ran out of time too)
            self._scheduler.want(self)
        self._show_body()

    def _stop_rendering(self) -> None:
        self._scheduler.drop(self)
        self._backlog.clear()
        self._backlog_at = 0
        self._segments.clear()
        self._ending = False
        self._segmenter = None

    def render_some(self, budget: int, deadline: float) -> int:
        """Render up to ``budget`` characters of the backlog, one segment at a time.

        Stops once ``deadline`` has passed (after doing at least one step). Returns how
        many characters of the backlog it took; once everything is written, re-renders
        the open tail of a stream, or commits all of a finished text.
        """
        seg = self._segmenter
        if seg is None:
            self._backlog.clear()
            self._segments.clear()
            self._ending = False
            return 0
        # A frame of a stream (a few hundred characters: often the end of one paragraph
        # and the start of the next) is written as one edit, laid out once. More text than
        # a piece is written edit by edit, so that the slice's deadline sees the layout.
        small = self._live and sum(map(len, self._backlog)) - self._backlog_at <= PIECE_CHARS
        with self.writer.one_edit() if small else nullcontext():
            used = self._write_some(seg, budget, deadline)
        self._show_body()
        return used

    def _write_some(self, seg: Segmenter, budget: int, deadline: float) -> int:
        used = 0
        did = False
        while True:
            if did and time.perf_counter() >= deadline:
                break
            if self._segments:
                self.stats.segments += 1
                self.writer.write(self._segments.popleft())
            elif self._backlog and used < budget:
                first = self._backlog[0]
                take = min(PIECE_CHARS, budget - used, len(first) - self._backlog_at)
                piece = first[self._backlog_at : self._backlog_at + take]
                self._backlog_at += take
                if self._backlog_at >= len(first):
                    self._backlog.popleft()
                    self._backlog_at = 0
                self._segments.extend(seg.feed(piece))
                used += take
            else:
                break
            did = True
        if not self._backlog and not self._segments:
            if self._ending and not (did and time.perf_counter() >= deadline):
                for segment in seg.finish():
                    self.stats.segments += 1
                    self.writer.write(segment)
                self._segmenter = None
                self._ending = False
                self._end_tail()
            elif self._live:
                self._render_tail(seg)
        return used

    def _render_plain(self, text: str) -> None:
        doc = self.body.document()
        shown = text
        if len(text) > USER_TEXT_SHOWN:
            shown = text[:USER_TEXT_SHOWN]
        doc.setPlainText(shown)
        if len(text) > USER_TEXT_SHOWN:
            cursor = QTextCursor(doc)
            cursor.movePosition(QTextCursor.MoveOperation.End)
            more = len(text) - USER_TEXT_SHOWN
            cursor.insertBlock()
            fmt = cursor.charFormat()
            fmt.setFontItalic(True)
            cursor.insertText(f"… and {more:,} more characters (Copy gives the whole message)", fmt)

    def update_meta(self, message: StoredMessage) -> None:
        """Take a stored message's state, versions and details without re-rendering."""
        self.message = message
        self.cached = message.cached
        self.set_state(message.status, message.error)
        count = message.version_count
        for w in (self.prev_button, self.version_label, self.next_button):
            w.setVisible(count > 1)
        if count > 1:
            self.version_label.setText(f"{message.version}/{count}")
            self.prev_button.setEnabled(message.version > 1)
            self.next_button.setEnabled(message.version < count)
        self._refit_if_beside_changed()
        if self.role == "assistant":
            # what the stream told this window and the record lacks (a reply still being
            # settled: its tokens and time, whether the counts were estimated)
            known = self.known
            tokens = message.output_tokens
            estimated = message.estimated or (
                bool(known.get("estimated")) and tokens in (None, known.get("tokens"))
            )
            if tokens is None:
                tokens = known.get("tokens")
            self.route = self.routes.get(message.id, self.route if self.streaming else ("", ""))
            ttft = message.ttft_s if message.ttft_s is not None else known.get("ttft_s")
            total = message.total_s if message.total_s is not None else known.get("total_s")
            self.set_details(
                model=message.model,
                output_tokens=tokens,
                ttft_s=ttft,
                total_s=total,
                cost=message.cost,
                estimated=estimated,
            )

    def set_details(
        self,
        *,
        model: str | None,
        output_tokens: int | None,
        ttft_s: float | None,
        total_s: float | None,
        cost: float | None,
        estimated: bool = False,
    ) -> None:
        """Model, tokens (≈ when estimated), speed, times and cost, as far as known."""
        parts: list[str] = []
        if model:
            parts.append(model)
        about = "≈" if estimated else ""
        if output_tokens:
            parts.append(f"{about}{output_tokens:,} token{'s' if output_tokens != 1 else ''}")
            if total_s and ttft_s is not None and total_s - ttft_s > 0.05 and not self.cached:
                parts.append(f"{about}{output_tokens / (total_s - ttft_s):.1f} tok/s")
        elif output_tokens == 0 and estimated:
            parts.append("≈0 tokens")
        if ttft_s is not None and not self.cached:
            parts.append(f"first token {human_seconds(ttft_s)}")
        if total_s is not None and not self.cached:
            parts.append(f"total {human_seconds(max(total_s, ttft_s or 0.0))}")
        if cost is not None:
            parts.append("free" if cost == 0 else f"${cost:.4f}")
        route, why = self.route
        if route:
            parts.append(route)
        self.details.setText(" · ".join(parts))
        self.details.setToolTip(why)
        self.details.setVisible(bool(parts))

    def set_state(self, state: str, error: str | None = None) -> None:
        """Show the message's state: streaming, complete, cancelled, interrupted or failed."""
        self.state = state
        label = {
            "streaming": "● streaming",
            "cancelled": "cancelled",
            "interrupted": "interrupted",
            "failed": "failed",
        }.get(state, "")
        badge_state = state
        if state == "complete" and self.cached:
            label, badge_state = "from cache", "cache"
        self._set_badge(label, badge_state)
        failed = state in ("failed", "interrupted")
        if failed and error:
            prefix = "Interrupted: " if state == "interrupted" else ""
            self.error_label.setText(prefix + error)
        self.error_label.setVisible(failed and bool(error))

    def _set_badge(self, label: str, state: str) -> None:
        self.badge.setText(label)
        self.badge.setProperty("state", state)
        self.badge.style().unpolish(self.badge)
        self.badge.style().polish(self.badge)
        self.badge.setVisible(bool(label))

    def set_waiting(self, waiting: bool) -> None:
        """While a failed attempt waits to be tried again the badge says so, not streaming."""
        if self.state == "streaming":
            if waiting:
                self._set_badge("waiting to retry", "waiting")
            else:
                self._set_badge("● streaming", "streaming")

    def set_actions(self, *, last: bool, busy: bool) -> None:
        """Show the actions that apply to this message where it stands in the conversation."""
        assistant = self.role == "assistant"
        settled = not self.streaming and self.message is not None
        self.regen_button.setVisible(
            assistant and last and settled and not busy and self.state != "failed"
        )
        self.continue_button.setVisible(
            assistant
            and last
            and settled
            and not busy
            and self.state in ("cancelled", "interrupted")
            and bool(self.text().strip())
        )
        self.retry_button.setVisible(
            assistant and last and settled and not busy and self.state in ("failed", "interrupted")
        )
        self.edit_button.setVisible(self.role == "user" and last and settled and not busy)
        self._refit_if_beside_changed()
        pinned = assistant and last and settled
        if pinned != self._pinned:
            self._pinned = pinned
            self._actions_changed()
        message = self.message
        if message is not None and message.version_count > 1:
            self.prev_button.setEnabled(not busy and message.version > 1)
            self.next_button.setEnabled(not busy and message.version < message.version_count)

    def set_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    # -- streaming -------------------------------------------------------------------------

    def begin_stream(self, *, keep: bool = False) -> None:
        """Start receiving a reply (``keep``: continue after the text already shown)."""
        if not _MATH_READY:
            # load the math renderer in a turn of its own, not in the middle of drawing text
            QTimer.singleShot(0, _prepare_math)
        kept = self.text().rstrip() if keep else ""
        if not keep:
            self.message = None
            self.clear_steps()
        self.known = {}
        self._stop_rendering()
        self._end_tail()
        self.writer.clear()
        self._parts = []
        self._full_text = None
        self._segmenter = Segmenter()
        self._live = True
        self._show_body()
        if kept:
            self.feed(kept)
        self.cached = False
        self.set_notice("")
        self.details.hide()
        self.set_state("streaming")
        for w in (self.prev_button, self.version_label, self.next_button):
            w.hide()

    def feed(self, text: str) -> None:
        """Render newly arrived text: append finished segments, re-render the open tail."""
        if not self._live or not text:
            return
        self._parts.append(text)
        self.stats.flushes += 1
        self.stats.max_flush_chars = max(self.stats.max_flush_chars, len(text))
        self._backlog.append(text)
        self._scheduler.want(self)

    def end_stream(self) -> None:
        """The reply ended: commit the open tail (once all the text is drawn)."""
        if not self._live:
            return
        self._live = False
        self._ending = True
        self._scheduler.want(self)

    def reset_stream(self) -> None:
        """Drop what was shown (the answer starts again)."""
        self._stop_rendering()
        self.writer.clear()
        self._parts = []
        self._segmenter = Segmenter()
        self._live = True
        self._end_tail()
        self._show_body()

    def _show_body(self) -> None:
        self.body.setVisible(not self.body.document().isEmpty())

    def _render_tail(self, seg: Segmenter) -> None:
        """Show the open tail at the end of the body: the paragraph still arriving, or the
        open line of a code block."""
        tail = seg.tail
        if seg.in_code:
            # inside a code fence the open line is written in place, in the code's frame
            self.writer.drop_open()
            self.stats.tail_renders += 1
            self.stats.max_tail_chars = max(self.stats.max_tail_chars, len(tail))
            self.writer.set_partial_code_line(tail, seg.lang)
            return
        if not tail:
            self.writer.drop_open()
            return
        before, self._tail_before = self._tail_before, tail
        held = held_formula(tail, len(before) if tail.startswith(before) else 0)
        if held >= 0:
            tail = tail[:held]  # the formula begun comes whole at the next frame
            self._release_later()
        elif self._release_timer is not None:
            self._release_timer.stop()
        if tail == self.writer.open_text:
            return
        if self.writer.show_open(tail):
            # plain text (the paragraph grew, or a new one began): written in place, not read
            self.stats.tail_extends += 1
        else:
            self.stats.tail_renders += 1
            self.stats.max_tail_chars = max(self.stats.max_tail_chars, len(tail))

    def _release_later(self) -> None:
        """Show a held formula's text as it is if no text comes for two frames (a server
        that pauses inside a formula, or a dollar that ends what it sent for now): drawn
        again with nothing new, the tail is not held (its dollar is no longer new)."""
        timer = self._release_timer
        if timer is None:
            timer = self._release_timer = QTimer(self)
            timer.setSingleShot(True)
            timer.setInterval(2 * FRAME_MS)
            timer.timeout.connect(self._release_held)
        timer.start()

    def _release_held(self) -> None:
        if self._live:
            self._scheduler.want(self)

    def _end_tail(self) -> None:
        """Show no open tail."""
        self.writer.drop_open()

    # -- interaction -----------------------------------------------------------------------

    def _anchor(self, url: QUrl) -> None:
        if url.scheme() == "rill" and url.path().startswith("copy-code/"):
            try:
                index = int(url.path().rsplit("/", 1)[1])
            except ValueError:
                return
            QGuiApplication.clipboard().setText(self.code_block(index))
            return
        self.link_clicked.emit(url)

    def _step_version(self, delta: int) -> None:
        if self.message is not None:
            self.version_clicked.emit(self.message.version + delta)

    def refresh_theme(self) -> None:
        """Re-render with the current theme's colours."""
        self.highlighter.refresh_colours()
        if not self.streaming:
            self.render_text(self.text())
        if self.steps is not None:
            self.steps.refresh_theme()
        self.style().unpolish(self)
        self.style().polish(self)


class ChatView(QScrollArea):
    """The messages of one conversation, the streaming reply, and "Jump to latest"."""

    retry_requested = Signal(int)
    continue_requested = Signal(int)
    regenerate_requested = Signal()
    edit_requested = Signal(str)
    version_requested = Signal(int, int)
    link_refused = Signal(str)
    copied = Signal(str)
    cost_changed = Signal(object)
    tool_decided = Signal(str, str)
    """(call id, "once" | "always" | "deny") from a tool card's approval row."""
    attachment_opened = Signal(object)
    """An :class:`Attachment` of a prompt to open (an image full size, a file in its viewer)."""
    thumbnails_wanted = Signal(list)
    """Hashes of stored images whose thumbnails are to be decoded (``set_thumbnail``)."""
    frame_drawn = Signal()
    """A frame of streamed text was drawn (what else moves while a reply streams can move
    with it, in the same wake-up and the same paint)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatScroll")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.stats = RenderStats()
        self.scheduler = RenderScheduler(self.stats, self)
        self.widgets: list[MessageWidget] = []
        self.routes: dict[int, tuple[str, str]] = {}
        """Auto's route for each reply it chose, by message id (the replies' details)."""
        self.thumbs: dict[str, QImage] = {}
        """Thumbnails of the prompts' images, by hash, decoded once."""
        self.conversation_id: int | None = None
        self.busy = False
        self._stream_widget: MessageWidget | None = None
        self._pending: list[str] = []
        self._follow = True
        self._welcome: QWidget | None = None
        self._blocks: list[MessageColumn] = []
        """The layouts of the column's blocks of at most :data:`BLOCK_MESSAGES` messages, in
        order (after the first messages, which the column holds itself)."""
        self._drawn_at = -math.inf
        """When the last frame was drawn (``time.monotonic``)."""

        page = QWidget()
        # The page fills its background from the palette (the theme's window colour), not
        # from the style sheet: a widget with a style-sheet background is not opaque, and Qt
        # scrolls only an opaque widget by copying what is drawn.
        page.setObjectName("chatPage")
        row = PageRow(self, page)
        row.setContentsMargins(24, 16, 24, 16)
        row.addStretch(1)
        self.column = QWidget()
        self.column.setObjectName("chatColumn")
        self.column.setMaximumWidth(COLUMN_WIDTH)
        self.column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        row.addWidget(self.column, 40)
        row.addStretch(1)
        self.layout_ = MessageColumn(self.column)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setSpacing(16)
        self.layout_.addStretch(1)
        # growing (a reply streaming in) repaints only the new area, not what is drawn
        for static in (page, self.column):
            static.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        self.setWidget(page)

        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush)
        self._spares: dict[str, MessageWidget] = {}
        """A prompt's and a reply's widget made ahead of need (see ``_make_spare``)."""
        self._spare_timer = QTimer(self)
        self._spare_timer.setSingleShot(True)
        self._spare_timer.setInterval(SPARE_DELAY_MS)
        self._spare_timer.timeout.connect(self._make_spare)
        # (the first spares are made once the first message is shown: an idle window
        # that never sends keeps its memory)

        self.jump_button = QPushButton("↓ Jump to latest", self)
        self.jump_button.setObjectName("jumpButton")
        self.jump_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.jump_button.clicked.connect(self.jump_to_latest)
        self.jump_button.hide()

        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range)
        bar.valueChanged.connect(self._on_value)
        # The bar's track is transparent: its container fills the window colour, as the view
        # does, so that redrawing the bar (every frame of a stream) does not redraw the
        # window, the splitter and the view under it.
        track = bar.parentWidget()
        if track is not None:
            track.setBackgroundRole(QPalette.ColorRole.Window)
            track.setAutoFillBackground(True)

    # -- conversation ----------------------------------------------------------------------

    def set_welcome(self, widget: QWidget | None) -> None:
        """Show a card above the messages (the welcome card), or remove it."""
        if self._welcome is not None:
            self._welcome.hide()
            self._welcome.setParent(None)
            self._welcome.deleteLater()
        self._welcome = widget
        if widget is not None:
            self.layout_.insertWidget(0, widget)
            widget.setVisible(not self.widgets)

    def clear(self) -> None:
        self._flush_timer.stop()
        self._pending = []
        self._stream_widget = None
        for w in self.widgets:
            self.scheduler.drop(w)
            w.hide()
            w.setParent(None)
            w.deleteLater()
        self.widgets = []
        self._drop_empty_blocks()
        if self._welcome is not None:
            self._welcome.show()

    def show_messages(self, conversation_id: int | None, messages: list[StoredMessage]) -> None:
        """Replace the view with a conversation (every message is rendered once)."""
        self.clear()
        self.conversation_id = conversation_id
        for message in messages:
            if message.role in ("user", "assistant"):
                widget = self._add(message.role)
                widget.set_message(message)
        self._after_change()
        self._follow = True
        QTimer.singleShot(0, self.jump_to_latest)

    def sync(self, conversation_id: int, messages: list[StoredMessage]) -> None:
        """Bring the view in line with the stored conversation, re-rendering only changes."""
        if self._stream_widget is not None:
            return
        if conversation_id != self.conversation_id:
            self.show_messages(conversation_id, messages)
            return
        shown = [m for m in messages if m.role in ("user", "assistant")]
        for index, message in enumerate(shown):
            if index < len(self.widgets):
                widget = self.widgets[index]
                if widget.role != message.role:
                    self.show_messages(conversation_id, messages)
                    return
                if widget is self._stream_widget:
                    continue
                same_text = widget.full_text() == message.content
                if widget.message_id == message.id or (widget.message_id is None and same_text):
                    if same_text:
                        widget.update_meta(message)
                    else:
                        widget.set_message(message)
                else:
                    widget.set_message(message)
            else:
                self._add(message.role).set_message(message)
        for widget in self.widgets[len(shown) :]:
            if widget is not self._stream_widget:
                self.scheduler.drop(widget)
                self.widgets.remove(widget)
                widget.hide()
                widget.setParent(None)
                widget.deleteLater()
        self._drop_empty_blocks()
        self._after_change()

    def _add(self, role: str) -> MessageWidget:
        widget = self._spares.pop(role, None) or self._message(role)
        home = self._home()
        if home is self.layout_:
            self.layout_.insertWidget(self.layout_.count() - 1, widget)
        else:
            (home or self._new_block()).addWidget(widget)
        self.widgets.append(widget)
        if self._welcome is not None:
            self._welcome.hide()
        self._spare_timer.start(SPARE_DELAY_MS)
        return widget

    def _home(self) -> MessageColumn | None:
        """The layout the next message goes in: the column's while it holds fewer than
        :data:`BLOCK_MESSAGES` messages itself, else the last block's while it has room;
        ``None`` when it needs a new block."""
        if not self._blocks:
            return self.layout_ if len(self.widgets) < BLOCK_MESSAGES else None
        last = self._blocks[-1]
        return last if last.count() < BLOCK_MESSAGES else None

    def _new_block(self) -> MessageColumn:
        """A new, empty block at the end of the column; its layout."""
        block = QWidget(self.column)
        block.setObjectName("chatBlock")
        block.setAttribute(Qt.WidgetAttribute.WA_StaticContents)
        layout = MessageColumn(block)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(self.layout_.spacing())
        self.layout_.insertWidget(self.layout_.count() - 1, block)
        self._blocks.append(layout)
        return layout

    def _drop_empty_blocks(self) -> None:
        """Remove the blocks whose messages have all been removed (an empty block would still
        take the column's spacing)."""
        for layout in [b for b in self._blocks if not b.count()]:
            block = layout.parentWidget()
            for spare in self._spares.values():
                if spare.parentWidget() is block:
                    spare.setParent(self.column)
            self._blocks.remove(layout)
            if block is not None:
                block.hide()
                block.setParent(None)
                block.deleteLater()

    def _message(self, role: str) -> MessageWidget:
        # made in the widget it will be shown in, when that is known: moving a polished
        # widget to another parent polishes it again (about a millisecond)
        home = self._home()
        parent = self.column if home is None else home.parentWidget()
        widget = MessageWidget(role, self.stats, parent, self.scheduler)
        widget.routes = self.routes
        widget.thumbs = self.thumbs
        widget.attachment_opened.connect(self.attachment_opened)
        widget.thumbnails_wanted.connect(self.thumbnails_wanted)
        widget.link_clicked.connect(self._link)
        widget.copy_clicked.connect(lambda w=widget: self._copy(w))
        widget.retry_clicked.connect(lambda w=widget: self._retry(w))
        widget.continue_clicked.connect(lambda w=widget: self._continue(w))
        widget.regenerate_clicked.connect(self.regenerate_requested)
        widget.edit_clicked.connect(lambda w=widget: self.edit_requested.emit(w.text()))
        widget.version_clicked.connect(lambda v, w=widget: self._version(w, v))
        widget.tool_decided.connect(self.tool_decided)
        return widget

    def _make_spare(self) -> None:
        """Make a message widget ahead of need, one per idle moment: Enter then shows the
        prompt and the empty reply without building them (about 4 ms each). The first
        are made after the first message is shown."""
        if self.busy:
            return  # made once the reply has ended (``set_busy``)
        if self._stream_widget is not None:
            self._spare_timer.start(SPARE_DELAY_MS)
            return
        for role in ("user", "assistant"):
            if role not in self._spares:
                spare = self._message(role)
                spare.ensurePolished()
                self._spares[role] = spare
                if len(self._spares) < 2:
                    self._spare_timer.start(SPARE_NEXT_MS)
                return

    def _drop_spares(self) -> None:
        for spare in self._spares.values():
            spare.setParent(None)
            spare.deleteLater()
        self._spares = {}
        if self.widgets:
            self._spare_timer.start(SPARE_DELAY_MS)

    def _after_change(self) -> None:
        self.refresh_actions()
        total: float | None = None
        for w in self.widgets:
            if w.message is not None and w.message.cost is not None:
                total = (total or 0.0) + w.message.cost
        self.cost_changed.emit(total)

    def refresh_actions(self) -> None:
        last_user = max((i for i, w in enumerate(self.widgets) if w.role == "user"), default=-1)
        last = len(self.widgets) - 1
        for i, w in enumerate(self.widgets):
            is_last = i == last if w.role == "assistant" else i == last_user and last - i <= 1
            w.set_actions(last=is_last, busy=self.busy)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.refresh_actions()
        if not busy and self.widgets and len(self._spares) < 2:
            # the reply has just ended and is being settled: the spares wait for the pause
            self._spare_timer.start(SPARE_DELAY_MS)

    def last_assistant(self) -> MessageWidget | None:
        for w in reversed(self.widgets):
            if w.role == "assistant":
                return w
        return None

    def last_user(self) -> MessageWidget | None:
        for w in reversed(self.widgets):
            if w.role == "user":
                return w
        return None

    def refresh_theme(self) -> None:
        for w in self.widgets:
            w.refresh_theme()
        self._drop_spares()  # made with the old theme's colours

    def set_thumbnail(self, sha256: str, image: QImage) -> None:
        """A stored image's thumbnail is decoded: show it wherever that image is."""
        self.thumbs[sha256] = image
        for w in self.widgets:
            if w.role == "user":
                w.set_thumbnail(sha256, image)

    def show_sent_attachments(
        self, attachments: tuple[Attachment, ...], images: dict[str, QImage]
    ) -> None:
        """The prompt just sent shows its attachments (with the thumbnails already made)."""
        self.thumbs.update(images)
        user = self.last_user()
        if user is not None:
            user.show_attachments(attachments)

    # -- streaming -------------------------------------------------------------------------

    def begin_turn(self, mode: str, prompt: str) -> None:
        """A reply starts: add the prompt and an empty reply, or reuse the reply being redone."""
        self._flush_timer.stop()
        self._pending = []
        widget: MessageWidget | None = None
        if mode == "new":
            user = self._add("user")
            user.render_text(prompt)
            user.set_state("complete")
            widget = self._add("assistant")
            widget.begin_stream()
        else:
            widget = self.last_assistant()
            if widget is None:
                widget = self._add("assistant")
            if mode == "regenerate" and prompt:
                asked = self.last_user()
                if asked is not None and asked.text() != prompt:
                    asked.render_text(prompt)
            widget.begin_stream(keep=mode == "continue")
        self._stream_widget = widget
        self._follow = True
        self.busy = True
        self.refresh_actions()
        self.jump_to_latest()

    def append_text(self, text: str) -> None:
        """Buffer streamed text; it is drawn at the next frame."""
        if self._stream_widget is None:
            return
        self._pending.append(text)
        if not self._flush_timer.isActive():
            wait_ms = (self._drawn_at - time.monotonic()) * 1000 + FRAME_MS
            self._flush_timer.start(math.ceil(wait_ms) if wait_ms > FRAME_EARLY_MS else 0)

    def flush(self) -> None:
        """Draw the buffered text now."""
        self._flush_timer.stop()
        if not self._pending or self._stream_widget is None:
            self._pending = []
            return
        self._drawn_at = time.monotonic()
        self._take_pending()
        self.scheduler.run()
        # The new text changed the reply's height: lay that out now, up to the page and the
        # scroll bar, so the frame is painted once. Left to the event loop, the change climbs
        # one posted event per level (message, column, page, view), and the window is
        # painted between two of them.
        for _ in range(LAYOUT_LEVELS):
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        self.frame_drawn.emit()
        # ...and paint it now, with what moved beside it (the scroll bar, the status bar):
        # the frame is whole when the flush returns, and costs what it costs in the flush.
        QApplication.sendPostedEvents(self.window(), QEvent.Type.UpdateRequest)

    def _take_pending(self) -> None:
        """Hand the buffered text to the streaming message (it is drawn by the scheduler)."""
        if self._pending and self._stream_widget is not None:
            text = "".join(self._pending)
            self._pending = []
            self._stream_widget.feed(text)

    def set_waiting(self, waiting: bool) -> None:
        """A retry is waiting (True) or the next attempt has started (False)."""
        if self._stream_widget is not None:
            self._stream_widget.set_waiting(waiting)

    def end_turn(
        self,
        state: str,
        *,
        error: str = "",
        response: GenerationResponse | None = None,
        known: dict[str, Any] | None = None,
    ) -> None:
        """The reply ended (complete, cancelled, interrupted or failed).

        ``known``: what the window measured when the engine had no response to give
        (``tokens``, ``estimated``, ``ttft_s``, ``total_s``), shown in the details.
        """
        self._flush_timer.stop()
        self._take_pending()
        self._pending = []
        widget = self._stream_widget
        if widget is None:
            return
        widget.end_stream()
        if widget.steps is not None:
            widget.steps.stop_all()
        self.scheduler.run()
        if response is not None:
            widget.cached = response.cached
            usage = response.usage
            estimated = usage is not None and usage.estimated
            widget.known = {"estimated": estimated}
            if usage is not None:
                widget.known["tokens"] = usage.output_tokens
            widget.set_details(
                model=response.model,
                output_tokens=usage.output_tokens if usage else None,
                ttft_s=response.timing.ttft_s,
                total_s=response.timing.total_s,
                cost=response.cost,
                estimated=estimated,
            )
        elif known:
            widget.known = dict(known)
            widget.set_details(
                model=None,
                output_tokens=known.get("tokens"),
                ttft_s=known.get("ttft_s"),
                total_s=known.get("total_s"),
                cost=None,
                estimated=bool(known.get("estimated")),
            )
        widget.set_state(state, error or None)
        self._stream_widget = None

    def set_route(
        self, message_id: int | None, text: str, why: str = "", *, streaming: bool = False
    ) -> None:
        """Show Auto's route in a reply's details: the message ``message_id`` whenever it
        is shown, and (``streaming``) the reply streaming now."""
        if message_id is not None:
            self.routes[message_id] = (text, why)
        stream = self._stream_widget
        if stream is not None and streaming:
            stream.route = (text, why)
        for widget in self.widgets:
            shown = widget.message
            if widget is not stream and shown is not None and shown.id == message_id:
                widget.update_meta(shown)

    def restart_stream(self, reason: str) -> None:
        """The answer starts again; the interrupted text becomes an earlier version."""
        self.flush()
        if self._stream_widget is not None:
            self._stream_widget.reset_stream()
            self._stream_widget.clear_steps()  # the turn so far is shown again
            self._stream_widget.set_notice(
                f"Restarted after an interruption ({reason}). "
                "The interrupted text is kept as an earlier version."
            )

    def resume_stream(self, reason: str) -> None:
        self.flush()
        if self._stream_widget is not None:
            self._stream_widget.set_notice(f"Resumed after an interruption ({reason}).")

    def mark_cache_hit(self) -> None:
        if self._stream_widget is not None:
            self._stream_widget.cached = True

    @property
    def stream_widget(self) -> MessageWidget | None:
        return self._stream_widget

    # -- tool calls ------------------------------------------------------------------------

    def tool_call_delta(self, index: int, call_id: str, name: str, arguments: str) -> None:
        """A tool call streams in: its card appears with the name, the arguments fill in.

        The text the reply streamed before it stays above the cards; what the model writes
        after the tools ran continues below them.
        """
        widget = self._stream_widget
        if widget is None:
            return
        steps = widget.tool_steps()
        if not steps.round_open:
            self.flush()
            earlier = widget.text()
            if earlier:
                steps.add_text(earlier)
                widget.reset_stream()
        steps.delta(index, call_id or None, name or None, arguments)

    def tool_card(self, call_id: str, name: str = "") -> ToolCard | None:
        """The card of a call in the streaming reply (made if the call did not stream)."""
        widget = self._stream_widget
        if widget is None:
            return None
        steps = widget.tool_steps()
        if not steps.round_open:
            self.tool_call_delta(-1, call_id, name, "")
        return steps.card_for(call_id, name)

    def tool_approval(self, call_id: str, name: str, server: str, arguments: str) -> None:
        """A call waits for the user: its card shows the approval row, focused."""
        card = self.tool_card(call_id, name)
        if card is not None:
            row = card.ask(server, arguments)
            self.ensureWidgetVisible(row, 16, 16)

    def tool_started(self, call_id: str, name: str, server: str, arguments: str) -> None:
        card = self.tool_card(call_id, name)
        if card is not None:
            card.start(server, arguments)

    def tool_progress(self, call_id: str, progress: float, total: Any, message: str) -> None:
        card = self.tool_card(call_id)
        if card is not None:
            card.set_progress(progress, total, message or None)

    def tool_result(self, event: Any) -> None:
        """A :class:`~desktop_app.core.events.ToolResult`: the card shows it, collapsed."""
        card = self.tool_card(event.call_id, event.name)
        if card is not None:
            card.set_server(event.server)
            card.finish(
                event.content,
                is_error=event.is_error,
                duration_s=event.duration_s,
                images=event.images,
            )

    def tool_failed(self, event: Any) -> None:
        """A :class:`~desktop_app.core.events.ToolFailed`: the card says why."""
        card = self.tool_card(event.call_id, event.name)
        if card is not None:
            if event.server:
                card.set_server(event.server)
            card.fail(event.reason, denied=event.denied, duration_s=event.duration_s)

    def tool_round(self) -> None:
        """Tool results went back to the model; its next answer continues below the cards."""
        widget = self._stream_widget
        if widget is not None and widget.steps is not None:
            widget.steps.new_round()

    # -- following the stream ------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self._follow

    def jump_to_latest(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
        self.jump_button.hide()

    def _on_range(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            bar = self.verticalScrollBar()
            if bar.value() != maximum:
                # Paint what changed where it is now, so that scrolling copies the pixels
                # already drawn (Qt copies only a clean area) and paints just the strip
                # scrolled into view, not the whole conversation. The bar itself is not
                # painted here: it changes again in a moment, and is painted once, after.
                bar.setUpdatesEnabled(False)
                try:
                    QApplication.sendPostedEvents(self.window(), QEvent.Type.UpdateRequest)
                finally:
                    bar.setUpdatesEnabled(True)
            bar.setValue(maximum)

    def _on_value(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 8
        self.jump_button.setVisible(not self._follow)
        if not self._follow:
            self._place_jump_button()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_jump_button()
        if self._follow:
            QTimer.singleShot(0, self.jump_to_latest)

    def _place_jump_button(self) -> None:
        self.jump_button.adjustSize()
        size = self.jump_button.sizeHint()
        viewport = self.viewport().geometry()
        self.jump_button.setGeometry(
            viewport.x() + (viewport.width() - size.width()) // 2,
            viewport.bottom() - size.height() - 12,
            size.width(),
            size.height(),
        )
        self.jump_button.raise_()

    # -- actions -----------------------------------------------------------------------------

    def _link(self, url: QUrl) -> None:
        if not open_link(url):
            self.link_refused.emit(url.toString())

    def _copy(self, widget: MessageWidget) -> None:
        QGuiApplication.clipboard().setText(widget.full_text())
        self.copied.emit("message")

    def _retry(self, widget: MessageWidget) -> None:
        if widget.message is not None:
            self.retry_requested.emit(widget.message.reply_group)

    def _continue(self, widget: MessageWidget) -> None:
        if widget.message is not None:
            self.continue_requested.emit(widget.message.id)

    def _version(self, widget: MessageWidget, version: int) -> None:
        if widget.message is not None:
            self.version_requested.emit(widget.message.reply_group, version)
