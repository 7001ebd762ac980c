"""Keyboard shortcuts: one table used by the window's actions and by Help → Keyboard Shortcuts.

Sequences are written with "Ctrl"; on macOS Qt maps it to the Command key.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


@dataclass(frozen=True, slots=True)
class Shortcut:
    name: str
    keys: str
    description: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("send", "", "Send the prompt: Enter (or Ctrl+Enter, see Settings → Appearance)"),
    Shortcut("newline", "", "New line in the prompt: Shift+Enter"),
    Shortcut("stop", "Esc", "Stop the reply"),
    Shortcut("new_chat", "Ctrl+N", "New chat"),
    Shortcut("regenerate", "Ctrl+R", "Regenerate the last reply as a new version"),
    Shortcut("edit_last", "Ctrl+E", "Edit the last prompt and send it again"),
    Shortcut("search", "Ctrl+K", "Search conversations"),
    Shortcut("toggle_sidebar", "Ctrl+B", "Show or hide the chat list"),
    Shortcut("focus_composer", "Ctrl+L", "Focus the prompt field"),
    Shortcut("copy_last", "Ctrl+Shift+C", "Copy the last reply"),
    Shortcut("attach", "Ctrl+O", "Attach files"),
    Shortcut("settings", "Ctrl+,", "Settings"),
    Shortcut("shortcuts", "F1", "Keyboard shortcuts"),
    Shortcut("quit", "Ctrl+Q", "Quit"),
)
BY_NAME = {s.name: s for s in SHORTCUTS}

RESERVED: frozenset[str] = frozenset(s.keys for s in SHORTCUTS if s.keys.startswith("Ctrl"))
"""Sequences text fields must leave to the window (Ctrl+K deletes a line in some of them)."""


class ReservedKeys(QObject):
    """Event filter that lets the window's shortcuts win over a text field's own bindings."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            pressed = QKeySequence(event.keyCombination()).toString(
                QKeySequence.SequenceFormat.PortableText
            )
            if pressed in RESERVED:
                event.ignore()
                return True
        return False


def sequence(name: str) -> QKeySequence:
    return QKeySequence(BY_NAME[name].keys)


def display(keys: str) -> str:
    """How a sequence is written on this platform (Ctrl+K, or ⌘K on macOS)."""
    if not keys:
        return ""
    return QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)


class ShortcutsDialog(QDialog):
    """A non-modal table of every shortcut."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.setModal(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(12)
        rows = list(SHORTCUTS)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for row, s in enumerate(rows):
            keys = display(s.keys)
            if s.name == "send":
                keys = "Enter"
            elif s.name == "newline":
                keys = "Shift+Enter"
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(s.description))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setWordWrap(False)
        self.table.resizeRowsToContents()
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        # tall enough for every row: the table asks for its header, rows and frame
        self.table.setMinimumHeight(self.rows_height())
        self.resize(max(560, self.sizeHint().width()), self.sizeHint().height())

    def rows_height(self) -> int:
        """The table's height with every row shown, header and frame included."""
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        header = self.table.horizontalHeader().sizeHint().height()
        return rows + header + 2 * self.table.frameWidth()

    def rows(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for row in range(self.table.rowCount()):
            keys = self.table.item(row, 0)
            action = self.table.item(row, 1)
            out.append((keys.text() if keys else "", action.text() if action else ""))
        return out
