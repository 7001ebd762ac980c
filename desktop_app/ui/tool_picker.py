"""The composer's "Tools: N" button: which MCP servers' tools this chat offers the model.

The popover lists the enabled servers with a switch each; turning one off leaves its tools
out of this chat's requests (the server keeps running for other chats). The button reads
"Tools: N" with the number of tools on, or "Tools: off".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QToolButton, QWidget

from desktop_app.ui.header import Popover
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.tool_card import shown_name

if TYPE_CHECKING:
    from desktop_app.core.tools.mcp import ServerState


class StateRelay(QObject):
    """Carries MCP server states from the client's plain callback to the Qt thread (the
    callback may run on any thread; the signal is delivered queued)."""

    changed = Signal(object)

    def __call__(self, state: ServerState) -> None:
        with contextlib.suppress(RuntimeError):  # the receiver was closed meanwhile
            self.changed.emit(state)


@dataclass(frozen=True, slots=True)
class ServerChoice:
    """One server as the picker shows it."""

    name: str
    tools: int | None
    """How many tools it has, or None while that is not known (not started yet)."""
    state: str = ""
    """"ready", "starting", "failed", "stopped" or ""."""


class ToolPicker(QToolButton):
    """A compact button that opens the per-chat tools popover."""

    changed = Signal(object)
    """The set of servers turned off for this chat."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolsButton")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setAccessibleName("Tools for this chat")
        self.setToolTip("Choose which tool servers this chat may use")
        self.servers: list[ServerChoice] = []
        self.off: set[str] = set()
        self.boxes: dict[str, QCheckBox] = {}
        self.popover = Popover(self)
        self.popover.setAccessibleName("Tools for this chat")
        self.title = PlainLabel("Tools for this chat")
        self.title.setObjectName("popoverTitle")
        self.popover.body.addWidget(self.title)
        self.empty = PlainLabel("No tool servers are on. Add them in Settings → Tools.")
        self.empty.setObjectName("muted")
        self.empty.setWordWrap(True)
        self.popover.body.addWidget(self.empty)
        self.clicked.connect(self.open)
        self.hide()

    def set_servers(self, servers: list[ServerChoice], off: set[str] | None = None) -> None:
        """Show ``servers`` (the enabled ones); ``off`` are those turned off for this chat."""
        self.servers = list(servers)
        if off is not None:
            self.off = set(off)
        names = {s.name for s in servers}
        for name in list(self.boxes):
            if name not in names:
                gone = self.boxes.pop(name)
                self.popover.body.removeWidget(gone)
                gone.deleteLater()
        for server in servers:
            box = self.boxes.get(server.name)
            if box is None:
                box = QCheckBox()
                box.toggled.connect(lambda on, n=server.name: self._toggled(n, on))
                self.boxes[server.name] = box
                self.popover.body.addWidget(box)
            box.blockSignals(True)
            box.setChecked(server.name not in self.off)
            box.blockSignals(False)
            box.setText(_describe(server))
            box.setAccessibleName(shown_name(server.name, 60))
        self.empty.setVisible(not servers)
        self.setVisible(bool(servers))
        self._label()

    def set_off(self, off: set[str]) -> None:
        """The servers turned off for the chat now shown."""
        self.set_servers(self.servers, off)

    @property
    def count(self) -> int:
        """Tools on for this chat (as far as known)."""
        return sum(s.tools or 0 for s in self.servers if s.name not in self.off)

    def open(self) -> None:
        self.popover.open_under(self, align_right=True)

    def _toggled(self, name: str, on: bool) -> None:
        if on:
            self.off.discard(name)
        else:
            self.off.add(name)
        self._label()
        self.changed.emit(set(self.off))

    def _label(self) -> None:
        on = [s for s in self.servers if s.name not in self.off]
        if not on:
            text = "Tools: off"
        elif any(s.tools is None for s in on):
            known = self.count
            text = f"Tools: {known}+" if known else "Tools: on"
        else:
            text = f"Tools: {self.count}"
        self.setText(text)


def _describe(server: ServerChoice) -> str:
    name = shown_name(server.name, 60)
    if server.state == "failed":
        return f"{name} (failed to start)"
    if server.tools is None:
        return f"{name} (starts when used)" if server.state != "starting" else f"{name} (starting)"
    return f"{name} ({server.tools} tool{'s' if server.tools != 1 else ''})"
