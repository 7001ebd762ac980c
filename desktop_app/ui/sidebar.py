"""The conversation list: most recent first, full-text search, new chat, rename, delete."""

from __future__ import annotations

import time

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.history import Conversation, SearchHit
from desktop_app.ui.labels import PlainLabel, plain_tooltip

ID_ROLE = Qt.ItemDataRole.UserRole
TITLE_ROLE = Qt.ItemDataRole.UserRole + 1


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
    search_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.current_id: int | None = None
        self._renaming: int | None = None
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.setSpacing(6)
        top = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search all chats  (Ctrl+K)")
        self.search.setClearButtonEnabled(True)
        top.addWidget(self.search, 1)
        layout.addLayout(top)
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        layout.addWidget(self.new_button)
        self.heading = PlainLabel("Recent")
        self.heading.setObjectName("muted")
        layout.addWidget(self.heading)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setWordWrap(True)
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
        if self.searching:
            return
        self.heading.setText("Recent" if conversations else "No chats yet")
        self._filling = True
        self.list.clear()
        for c in conversations:
            title = c.title or "New chat"
            item = QListWidgetItem(f"{title}\n{_when(c.updated_at)}")
            item.setData(ID_ROLE, c.id)
            item.setData(TITLE_ROLE, title)
            item.setToolTip(plain_tooltip(title))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
            if c.id == self.current_id:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self._filling = False

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
            snippet = " ".join(hit.snippet.split())
            title = hit.conversation_title or "New chat"
            item = QListWidgetItem(f"{title}\n{snippet}")
            item.setData(ID_ROLE, hit.conversation_id)
            item.setData(TITLE_ROLE, title)
            item.setToolTip(plain_tooltip(snippet))
            self.list.addItem(item)
        self._filling = False
        count = len(seen)
        self.heading.setText(
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

    def ids(self) -> list[int]:
        return [int(self.list.item(i).data(ID_ROLE)) for i in range(self.list.count())]

    def start_rename(self, conversation_id: int) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conversation_id:
                self._renaming = conversation_id
                self._filling = True
                item.setText(str(item.data(TITLE_ROLE)))
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
            self.rename_requested.emit(int(cid), title)
        else:
            self._filling = True
            item.setText(f"{item.data(TITLE_ROLE)}")
            self._filling = False

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        cid = int(item.data(ID_ROLE))
        menu = QMenu(self)
        rename = menu.addAction("Rename")
        rename.setEnabled(not self.searching)
        rename.triggered.connect(lambda: self.start_rename(cid))
        delete = menu.addAction("Delete…")
        delete.triggered.connect(lambda: self.delete_requested.emit(cid))
        menu.popup(self.list.viewport().mapToGlobal(pos))
