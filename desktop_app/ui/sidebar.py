"""The conversation list: most recent first, grouped by date (Today, Yesterday, Previous
7 days, Older), full-text search, new chat, rename, delete, export and import.

Each row is painted by :class:`ConversationDelegate`: the title on one line, elided with
"…", and under it the time or, for a search hit, the excerpt with the matches highlighted.
A date group starts with a section row that cannot be selected. Titles and excerpts are
drawn as plain text runs, never parsed as markup.
"""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.history import Conversation, SearchHit
from desktop_app.core.text import valid_text
from desktop_app.ui.controller import SEARCH_MARKS
from desktop_app.ui.icons import tool_button
from desktop_app.ui.labels import PlainLabel, plain_tooltip

ID_ROLE = Qt.ItemDataRole.UserRole
TITLE_ROLE = Qt.ItemDataRole.UserRole + 1
LINE_ROLE = Qt.ItemDataRole.UserRole + 2
"""The second line: the time, or a search excerpt with each match between SEARCH_MARKS."""
SECTION_ROLE = Qt.ItemDataRole.UserRole + 3
"""Set (to the group's name) on the row that starts a date group."""

GROUPS = ("Today", "Yesterday", "Previous 7 days", "Older")


def date_group(timestamp: float, now: float | None = None) -> str:
    """The group a chat last changed at ``timestamp`` belongs to, by local calendar day."""
    today = dt.date.fromtimestamp(time.time() if now is None else now)
    days = (today - dt.date.fromtimestamp(timestamp)).days
    if days <= 0:
        return GROUPS[0]
    if days == 1:
        return GROUPS[1]
    if days <= 7:
        return GROUPS[2]
    return GROUPS[3]


SHOWN_CHARS = 400
"""Longest title or excerpt drawn (a row shows far less; a huge word is cut first)."""


def drawable(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters on one line, lone surrogates replaced."""
    return valid_text(" ".join(text[: limit * 2].split())[:limit])


def match_runs(excerpt: str) -> list[tuple[str, bool]]:
    """An excerpt split into (text, is_match) runs at the search marks (marks dropped)."""
    start, end = SEARCH_MARKS
    runs: list[tuple[str, bool]] = []
    inside = False
    text = ""
    for ch in excerpt:
        if ch in (start, end):
            if text:
                runs.append((text, inside))
            text = ""
            inside = ch == start
        else:
            text += ch
    if text:
        runs.append((text, inside))
    return runs


def plain_excerpt(excerpt: str) -> str:
    return "".join(text for text, _match in match_runs(excerpt))


class ConversationDelegate(QStyledItemDelegate):
    """Paints a row: the title elided with "…", then the time or a highlighted excerpt."""

    PAD = 8

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        line = QFontMetrics(option.font).height()
        if index.data(SECTION_ROLE):
            return QSize(80, line + self.PAD + self.PAD // 2)
        return QSize(80, 2 * line + 2 * self.PAD)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        section = index.data(SECTION_ROLE)
        if section:
            self._paint_section(painter, option, str(section))
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget = opt.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        rect: QRect = opt.rect.adjusted(self.PAD, self.PAD // 2, -self.PAD, -self.PAD // 2)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        palette: QPalette = opt.palette
        # the theme keeps the text colour on a selected row (its background is a light tint)
        color = palette.color(QPalette.ColorRole.Text)
        font = QFont(opt.font)
        fm = QFontMetrics(font)
        line = fm.height()
        painter.save()
        painter.setClipRect(opt.rect)
        title = drawable(str(index.data(TITLE_ROLE) or ""))
        bold = QFont(font)
        bold.setWeight(QFont.Weight.DemiBold)
        painter.setFont(bold)
        painter.setPen(color)
        title_rect = QRect(rect.left(), rect.top(), rect.width(), line)
        shown = QFontMetrics(bold).elidedText(title, Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(
            title_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, shown
        )
        muted = QColor(color)
        muted.setAlphaF(0.65)
        self._draw_runs(
            painter,
            match_runs(drawable(str(index.data(LINE_ROLE) or ""))),
            QRect(rect.left(), rect.top() + line, rect.width(), line),
            font,
            muted,
            palette.color(QPalette.ColorRole.Highlight),
            selected,
        )
        painter.restore()

    def _paint_section(self, painter: QPainter, option: QStyleOptionViewItem, name: str) -> None:
        """A date group's name: small, muted, at the bottom of its row."""
        font = QFont(option.font)
        font.setWeight(QFont.Weight.DemiBold)
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        muted = QColor(option.palette.color(QPalette.ColorRole.Text))
        muted.setAlphaF(0.55)
        rect = option.rect.adjusted(self.PAD, 0, -self.PAD, -self.PAD // 2)
        painter.save()
        painter.setFont(font)
        painter.setPen(muted)
        painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, name)
        painter.restore()

    @staticmethod
    def _draw_runs(
        painter: QPainter,
        runs: list[tuple[str, bool]],
        rect: QRect,
        font: QFont,
        color: QColor,
        highlight: QColor,
        selected: bool,
    ) -> None:
        """Draw text runs left to right, matches bold on a tinted background, "…" at the end."""
        bold = QFont(font)
        bold.setWeight(QFont.Weight.Bold)
        x = rect.left()
        right = rect.right()
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        for text, match in runs:
            f = bold if match else font
            fm = QFontMetrics(f)
            room = right - x
            if room <= fm.horizontalAdvance("…"):
                break
            width = fm.horizontalAdvance(text)
            cut = width > room
            if cut:
                text = fm.elidedText(text, Qt.TextElideMode.ElideRight, room)
                width = fm.horizontalAdvance(text)
            box = QRect(x, rect.top(), width, rect.height())
            if match:
                tint = QColor(highlight)
                tint.setAlphaF(0.35 if not selected else 0.55)
                painter.fillRect(box.adjusted(-1, 1, 1, -1), tint)
            painter.setFont(f)
            painter.setPen(color)
            painter.drawText(box, align, text)
            x += width
            if cut:
                break


def section_item(name: str) -> QListWidgetItem:
    """The row that starts a date group: neither selectable nor editable."""
    item = QListWidgetItem()
    item.setData(SECTION_ROLE, name)
    item.setData(Qt.ItemDataRole.AccessibleTextRole, name)
    item.setFlags(Qt.ItemFlag.NoItemFlags)
    return item


def _when(timestamp: float) -> str:
    age = time.time() - timestamp
    if age < 60:
        return "just now"
    if age < 3600:
        return f"{int(age // 60)} min ago"
    if age < 86400:
        return time.strftime("%H:%M", time.localtime(timestamp))
    return time.strftime("%d %b", time.localtime(timestamp))


class Sidebar(QWidget):
    """Search box, New chat, and the list of conversations (or search hits)."""

    open_requested = Signal(int)
    new_requested = Signal()
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    export_requested = Signal(int, str)
    """A conversation id and the format, "markdown" or "json"."""
    import_requested = Signal()
    search_changed = Signal(str)
    collapse_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.current_id: int | None = None
        self._renaming: int | None = None
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)
        top = QHBoxLayout()
        top.setSpacing(4)
        self.collapse_button = tool_button(
            "sidebar", "Hide the chat list (Ctrl+B)", "Hide the chat list", "sidebarTool"
        )
        self.collapse_button.clicked.connect(self.collapse_requested)
        top.addWidget(self.collapse_button)
        top.addStretch(1)
        self.new_button = tool_button("plus", "New chat (Ctrl+N)", "New chat", "sidebarTool")
        self.new_button.setText("New chat")
        self.new_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.new_button.clicked.connect(self.new_requested)
        top.addWidget(self.new_button)
        layout.addLayout(top)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search all chats  (Ctrl+K)")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.heading = PlainLabel("")
        self.heading.setObjectName("muted")
        self.heading.hide()
        layout.addWidget(self.heading)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setWordWrap(False)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.delegate = ConversationDelegate(self.list)
        self.list.setItemDelegate(self.delegate)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        self.list.itemChanged.connect(self._item_changed)
        layout.addWidget(self.list, 1)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())

    @property
    def searching(self) -> bool:
        return bool(self.search.text().strip())

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def set_conversations(self, conversations: list[Conversation]) -> None:
        """Show ``conversations`` (most recent first) under their date groups."""
        if self.searching:
            return
        self._set_heading("" if conversations else "No chats yet")
        self._filling = True
        self.list.clear()
        now = time.time()
        group = ""
        for c in conversations:
            name = date_group(c.updated_at, now)
            if name != group:
                group = name
                self.list.addItem(section_item(name))
            title = c.title or "New chat"
            item = QListWidgetItem(drawable(title))
            item.setData(ID_ROLE, c.id)
            item.setData(TITLE_ROLE, title)
            item.setData(LINE_ROLE, _when(c.updated_at))
            item.setToolTip(plain_tooltip(title))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
            if c.id == self.current_id:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self._filling = False

    def _set_heading(self, text: str) -> None:
        self.heading.setText(text)
        self.heading.setVisible(bool(text))

    def sections(self) -> list[str]:
        """The date groups shown, in order."""
        return [
            str(item.data(SECTION_ROLE))
            for item in map(self.list.item, range(self.list.count()))
            if item.data(SECTION_ROLE)
        ]

    def item_for(self, conversation_id: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                return item
        return None

    def set_search_results(self, query: str, hits: list[SearchHit]) -> None:
        if query != self.search.text():
            return
        self._filling = True
        self.list.clear()
        seen: set[int] = set()
        for hit in hits:
            if hit.conversation_id in seen:
                continue
            seen.add(hit.conversation_id)
            excerpt = drawable(hit.snippet)
            title = hit.conversation_title or "New chat"
            item = QListWidgetItem(drawable(title))
            item.setData(ID_ROLE, hit.conversation_id)
            item.setData(TITLE_ROLE, title)
            item.setData(LINE_ROLE, excerpt)
            item.setToolTip(plain_tooltip(plain_excerpt(excerpt)))
            self.list.addItem(item)
        self._filling = False
        count = len(seen)
        self._set_heading(
            f"{count} chat{'s' if count != 1 else ''} match" if count else "Nothing found"
        )

    def select(self, conversation_id: int | None) -> None:
        self.current_id = conversation_id
        self.list.clearSelection()
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                self.list.setCurrentItem(item)
                item.setSelected(True)
                return

    def title_of(self, conversation_id: int) -> str:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                return str(item.data(TITLE_ROLE) or "")
        return ""

    def ids(self) -> list[int]:
        """The conversations listed, top to bottom (section rows left out)."""
        found = (self.list.item(i).data(ID_ROLE) for i in range(self.list.count()))
        return [int(cid) for cid in found if isinstance(cid, int)]

    def start_rename(self, conversation_id: int) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                self._renaming = conversation_id
                self._filling = True
                item.setText(str(item.data(TITLE_ROLE))[:1000])
                self._filling = False
                self.list.editItem(item)
                return

    def _activated(self, item: QListWidgetItem) -> None:
        cid = item.data(ID_ROLE)
        if isinstance(cid, int) and cid != self.current_id:
            self.open_requested.emit(cid)

    def _item_changed(self, item: QListWidgetItem) -> None:
        if self._filling or self._renaming is None:
            return
        cid = item.data(ID_ROLE)
        if cid != self._renaming:
            return
        self._renaming = None
        title = " ".join(item.text().split())
        if title and title != item.data(TITLE_ROLE):
            self._filling = True
            item.setData(TITLE_ROLE, title)
            item.setText(drawable(title))
            self._filling = False
            self.rename_requested.emit(int(cid), title)
        else:
            self._filling = True
            item.setText(drawable(str(item.data(TITLE_ROLE))))
            self._filling = False

    def context_menu(self, conversation_id: int | None) -> QMenu:
        """The menu of a conversation (or of the list, when ``conversation_id`` is None)."""
        menu = QMenu(self)
        if conversation_id is not None:
            cid = conversation_id
            rename = menu.addAction("Rename")
            rename.setEnabled(not self.searching)
            rename.triggered.connect(lambda: self.start_rename(cid))
            markdown = menu.addAction("Export as Markdown…")
            markdown.triggered.connect(lambda: self.export_requested.emit(cid, "markdown"))
            as_json = menu.addAction("Export as JSON…")
            as_json.triggered.connect(lambda: self.export_requested.emit(cid, "json"))
        imported = menu.addAction("Import a chat…")
        imported.triggered.connect(self.import_requested)
        if conversation_id is not None:
            menu.addSeparator()
            delete = menu.addAction("Delete…")
            delete.triggered.connect(lambda: self.delete_requested.emit(cid))
        return menu

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        data = item.data(ID_ROLE) if item is not None else None
        menu = self.context_menu(data if isinstance(data, int) else None)
        menu.popup(self.list.viewport().mapToGlobal(pos))
