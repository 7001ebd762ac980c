"""Settings → Tools: the MCP servers Rill runs, each with its switch, state, tools and
their policies; Add, Edit, Remove, Test, and "Import from Claude Desktop…".

Changes to servers are written to the config file at once (a server's switch, a tool's
policy, a saved server), on the I/O thread; a policy change never restarts a server.
Server states arrive from the MCP client through a plain callback, possibly from another
thread; :class:`StateRelay` carries them to the Qt thread as a queued signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable, Coroutine
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.chat import Services
from desktop_app.core.config import Config
from desktop_app.core.errors import RillError, human_seconds
from desktop_app.core.tools.base import DEFAULT_TIMEOUT_S, POLICIES, Policy, ToolInfo
from desktop_app.core.tools.config import (
    KEYCHAIN_REF,
    MAX_TIMEOUT_S,
    SERVER_NAME,
    ServerConfig,
    add_server,
    import_claude_desktop,
    remove_server,
    server_configs,
    set_server_enabled,
    set_tool_policy,
    unique_name,
)
from desktop_app.core.tools.mcp import McpHost, ServerState, test_server
from desktop_app.ui.icons import set_icon
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.tool_card import DetailText, one_line, shown_name
from desktop_app.ui.tool_picker import StateRelay

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]

SPACING = 8
POLICY_TEXT: dict[Policy, str] = {
    "ask": "Ask every time",
    "always": "Always allow",
    "never": "Never",
}
DESCRIPTION_SHOWN = 400
STDERR_LINES = 20
"""Lines of a failed server's error output shown under its state."""


def state_words(state: ServerState | None) -> tuple[str, str]:
    """(kind, sentence) of a server's state: "ready with 3 tools", "failed: …"."""
    kind = state.state if state is not None else "off"
    if state is None or kind == "off":
        return "off", "not started (it starts when a chat uses it, or with Test)"
    if kind == "ready":
        count = len(state.tools)
        return "ready", f"ready with {count} tool{'s' if count != 1 else ''}"
    if kind == "starting":
        return "starting", "starting…"
    reason = one_line(state.reason, 300)
    return "failed", f"failed: {reason}" if reason else "failed"


def stderr_of(state: ServerState | None) -> str:
    """The last lines a server wrote on its error output."""
    if state is None:
        return ""
    return "\n".join(line[:500] for line in state.stderr[-STDERR_LINES:])


def parse_pairs(text: str, sep: str) -> dict[str, str]:
    """``NAME=value`` (or ``Name: value``) lines as a table; raises ValueError naming a bad
    line."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, found, value = line.partition(sep)
        name = name.strip()
        if not found or not name:
            raise ValueError(f"line {number} is not NAME{sep}value")
        pairs[name] = value.strip() if sep == ":" else value
    return pairs


def pairs_text(values: dict[str, str] | Any, sep: str) -> str:
    joiner = ": " if sep == ":" else "="
    return "\n".join(f"{k}{joiner}{v}" for k, v in dict(values).items())


class ToolRow(QFrame):
    """One tool: its name, its description and its policy."""

    policy_changed = Signal(str, str)

    def __init__(self, info: ToolInfo, policy: Policy, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolRow")
        self.name = info.name
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(SPACING)
        text = QVBoxLayout()
        text.setSpacing(0)
        title = PlainLabel(shown_name(info.name, 80))
        title.setObjectName("toolName")
        text.addWidget(title)
        description = PlainLabel(one_line(info.description, DESCRIPTION_SHOWN))
        description.setObjectName("muted")
        description.setWordWrap(True)
        description.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        description.setVisible(bool(info.description.strip()))
        text.addWidget(description)
        row.addLayout(text, 1)
        self.policy = QComboBox()
        self.policy.setAccessibleName(f"Policy of {shown_name(info.name, 80)}")
        for value in POLICIES:
            self.policy.addItem(POLICY_TEXT[value], value)
        self.policy.setCurrentIndex(POLICIES.index(policy))
        self.policy.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.policy.setMinimumContentsLength(10)
        self.policy.currentIndexChanged.connect(
            lambda _i: self.policy_changed.emit(self.name, str(self.policy.currentData()))
        )
        row.addWidget(self.policy, 0, Qt.AlignmentFlag.AlignTop)


class ToolsPage(QWidget):
    """The Tools tab of the settings dialog."""

    servers_changed = Signal()
    """The config's servers changed (saved): the window refreshes what depends on them."""

    def __init__(
        self,
        services: Services,
        spawn: Spawn,
        host: McpHost | None = None,
        saving: Callable[[], Config] | None = None,
        extra: QWidget | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.saving: Callable[[], Config] = saving or (lambda: services.config)
        """The config as written to the file (its ``[mcp]`` tables those in use)."""
        self.spawn = spawn
        self.host = host
        self.states: dict[str, ServerState] = {}
        self.tools: dict[str, list[ToolInfo]] = {}
        self.current: str | None = None
        self.adding = False
        self.relay = StateRelay(self)
        self.relay.changed.connect(self._state_changed, Qt.ConnectionType.QueuedConnection)
        self._unlisten: Callable[[], None] | None = None
        if host is not None:
            unlisten = host.add_listener(self.relay)
            self._unlisten = unlisten
            # however the page goes, the client stops calling it
            self.destroyed.connect(lambda *_a: unlisten())

        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 2 * SPACING, 0, 0)
        outer.setSpacing(2 * SPACING)

        left = QVBoxLayout()
        left.setSpacing(SPACING)
        self.server_list = QListWidget()
        self.server_list.setObjectName("profileList")
        self.server_list.setAccessibleName("MCP servers")
        self.server_list.currentItemChanged.connect(self._selected)
        left.addWidget(self.server_list, 1)
        buttons = QHBoxLayout()
        buttons.setSpacing(SPACING)
        self.add_button = QPushButton("Add")
        set_icon(self.add_button, "plus")
        self.add_button.setToolTip("Add an MCP server")
        self.add_button.clicked.connect(self.add_server)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected server")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        left.addLayout(buttons)
        self.import_button = QPushButton("Import from Claude Desktop…")
        self.import_button.setToolTip("Add the servers of a claude_desktop_config.json file")
        self.import_button.clicked.connect(self.choose_import)
        left.addWidget(self.import_button)
        side = QWidget()
        side.setLayout(left)
        side.setFixedWidth(max(24 * SPACING, self.import_button.sizeHint().width()))
        left.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(side)

        content = QWidget()
        right = QVBoxLayout(content)
        right.setContentsMargins(0, 0, SPACING, SPACING)
        right.setSpacing(2 * SPACING)
        head = QHBoxLayout()
        self.enabled = QCheckBox("On")
        self.enabled.setToolTip("Offer this server's tools in chats")
        self.enabled.toggled.connect(self._enabled_toggled)
        self.state_label = PlainLabel("")
        self.state_label.setObjectName("toolState")
        self.state_label.setWordWrap(True)
        self.state_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Start the server and list its tools")
        self.test_button.clicked.connect(self.test_selected)
        head.addWidget(self.enabled)
        head.addWidget(self.state_label, 1)
        head.addWidget(self.test_button)
        right.addLayout(head)
        self.stderr = DetailText()
        self.stderr.setAccessibleName("The server's last error output")
        self.stderr.hide()
        right.addWidget(self.stderr)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(2 * SPACING)
        form.setVerticalSpacing(SPACING)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.f_name = QLineEdit()
        self.f_name.setPlaceholderText("letters, digits, - and _")
        self.f_kind = QComboBox()
        self.f_kind.addItem("Command (stdio)", "stdio")
        self.f_kind.addItem("URL (Streamable HTTP)", "http")
        self.f_kind.currentIndexChanged.connect(self._kind_changed)
        self.f_kind.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.f_kind.setMinimumContentsLength(12)
        self.f_command = QLineEdit()
        self.f_command.setPlaceholderText("for example uvx mcp-server-time")
        self.f_args = QLineEdit()
        self.f_args.setPlaceholderText('as in a shell: --root "My files"')
        self.f_env = QPlainTextEdit()
        self.f_env.setPlaceholderText("NAME=value, one a line (secrets go to the keychain)")
        self.f_env.setFixedHeight(7 * SPACING)
        self.f_cwd = QLineEdit()
        self.f_cwd.setPlaceholderText("the folder it starts in (optional)")
        self.f_url = QLineEdit()
        self.f_url.setPlaceholderText("http://127.0.0.1:9000/mcp")
        self.f_headers = QPlainTextEdit()
        self.f_headers.setPlaceholderText("Name: value, one a line (secrets go to the keychain)")
        self.f_headers.setFixedHeight(7 * SPACING)
        self.f_timeout = QDoubleSpinBox()
        self.f_timeout.setRange(1.0, MAX_TIMEOUT_S)
        self.f_timeout.setDecimals(0)
        self.f_timeout.setSuffix(" s")
        self.f_timeout.setToolTip(
            "How long one request may take; each progress report from the server extends it"
        )
        self.f_timeout.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        form.addRow("Name", self.f_name)
        form.addRow("Kind", self.f_kind)
        form.addRow("Command", self.f_command)
        form.addRow("Arguments", self.f_args)
        form.addRow("Environment", self.f_env)
        form.addRow("Working folder", self.f_cwd)
        form.addRow("URL", self.f_url)
        form.addRow("Headers", self.f_headers)
        form.addRow("Timeout", self.f_timeout)
        self.form = form
        right.addLayout(form)
        save_row = QHBoxLayout()
        self.save_button = QPushButton("Save server")
        self.save_button.clicked.connect(self.save_server)
        save_row.addWidget(self.save_button)
        save_row.addStretch(1)
        right.addLayout(save_row)
        self.message = PlainLabel("")
        self.message.setWordWrap(True)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.message.hide()
        right.addWidget(self.message)

        self.tools_title = PlainLabel("Tools")
        self.tools_title.setObjectName("popoverTitle")
        right.addWidget(self.tools_title)
        self.tools_box = QVBoxLayout()
        self.tools_box.setSpacing(SPACING)
        right.addLayout(self.tools_box)
        self.tools_note = PlainLabel("")
        self.tools_note.setObjectName("muted")
        self.tools_note.setWordWrap(True)
        right.addWidget(self.tools_note)
        if extra is not None:
            extra_form = extra.layout()
            if isinstance(extra_form, QFormLayout):
                extra_form.setContentsMargins(0, SPACING, 0, 0)
                extra_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
            right.addWidget(extra)
        right.addStretch(1)
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(content)
        outer.addWidget(area, 1)
        self.tool_rows: dict[str, ToolRow] = {}
        self._kind_changed()
        self._load_states()
        self.refresh()

    # -- the list ------------------------------------------------------------------------------

    def servers(self) -> list[ServerConfig]:
        return server_configs(self.services.config)

    def server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers() if s.name == name), None)

    def refresh(self, select: str | None = None) -> None:
        """Show the config's servers (selecting ``select``, or keeping the selection)."""
        wanted = select or self.current
        self.server_list.blockSignals(True)
        self.server_list.clear()
        for server in self.servers():
            item = QListWidgetItem(self._item_text(server))
            item.setData(Qt.ItemDataRole.UserRole, server.name)
            self.server_list.addItem(item)
        self.server_list.blockSignals(False)
        row = 0
        for i in range(self.server_list.count()):
            item = self.server_list.item(i)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == wanted:
                row = i
        if self.server_list.count():
            self.server_list.setCurrentRow(row)
            self._show(self.server_list.currentItem())
        else:
            self.current = None
            self.begin_add()
        self.remove_button.setEnabled(self.server_list.count() > 0)

    def _item_text(self, server: ServerConfig) -> str:
        name = shown_name(server.name, 40)
        if not server.enabled:
            return f"{name} — off"
        _kind, words = state_words(self.states.get(server.name))
        return f"{name} — {words.split(':')[0]}"

    def _selected(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        self._show(item)

    def _show(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        name = str(item.data(Qt.ItemDataRole.UserRole))
        server = self.server(name)
        if server is None:
            return
        self.adding = False
        self.current = name
        self.f_name.setText(server.name)
        self.f_kind.setCurrentIndex(1 if server.transport == "http" else 0)
        self.f_command.setText(server.command)
        self.f_args.setText(shlex.join(server.args))
        self.f_env.setPlainText(pairs_text(server.env, "="))
        self.f_cwd.setText(server.cwd)
        self.f_url.setText(server.url)
        self.f_headers.setPlainText(pairs_text(server.headers, ":"))
        self.f_timeout.setValue(server.timeout_s)
        self.enabled.blockSignals(True)
        self.enabled.setChecked(server.enabled)
        self.enabled.blockSignals(False)
        self.enabled.setEnabled(True)
        self.test_button.setEnabled(True)
        self.save_button.setText("Save server")
        self._show_state()
        self._show_tools()

    def begin_add(self) -> None:
        """An empty form for a new server."""
        self.adding = True
        self.current = None
        self.server_list.clearSelection()
        for edit in (self.f_name, self.f_command, self.f_args, self.f_cwd, self.f_url):
            edit.clear()
        self.f_env.clear()
        self.f_headers.clear()
        self.f_kind.setCurrentIndex(0)
        self.f_timeout.setValue(DEFAULT_TIMEOUT_S)
        self.enabled.blockSignals(True)
        self.enabled.setChecked(True)
        self.enabled.blockSignals(False)
        self.enabled.setEnabled(False)
        self.test_button.setEnabled(False)
        self.save_button.setText("Add server")
        self.state_label.setText("New server: fill in its command or URL, then Add server.")
        self._set_state_kind("")
        self.stderr.hide()
        self._clear_tools()
        self.tools_note.setText("")

    def add_server(self) -> None:
        self.begin_add()
        self.f_name.setFocus()

    def _kind_changed(self, *_args: object) -> None:
        http = self.f_kind.currentData() == "http"
        for widget in (self.f_command, self.f_args, self.f_env, self.f_cwd):
            self.form.setRowVisible(widget, not http)
        for widget in (self.f_url, self.f_headers):
            self.form.setRowVisible(widget, http)

    # -- saving -------------------------------------------------------------------------------

    def form_server(self) -> ServerConfig:
        """The server the form describes (raises ValueError with a sentence)."""
        name = self.f_name.text().strip()
        if not SERVER_NAME.fullmatch(name):
            raise ValueError("A server's name is 1 to 64 letters, digits, - or _.")
        taken = {s.name for s in self.servers()}
        if name in taken and name != self.current:
            raise ValueError(f"There is already a server named {name}.")
        old = self.server(self.current) if self.current else None
        policies = dict(old.policies) if old is not None else {}
        enabled = old.enabled if old is not None else True
        timeout = float(self.f_timeout.value())
        if self.f_kind.currentData() == "http":
            url = self.f_url.text().strip()
            if not url:
                raise ValueError("Enter the server's URL.")
            try:
                headers = parse_pairs(self.f_headers.toPlainText(), ":")
            except ValueError as exc:
                raise ValueError(f"Headers: {exc}.") from None
            return ServerConfig(
                name=name,
                url=url,
                headers=headers,
                timeout_s=timeout,
                enabled=enabled,
                policies=policies,
            )
        command = self.f_command.text().strip()
        if not command:
            raise ValueError("Enter the command that starts the server.")
        try:
            args = tuple(shlex.split(self.f_args.text()))
        except ValueError as exc:
            raise ValueError(f"Arguments: {exc}.") from None
        try:
            env = parse_pairs(self.f_env.toPlainText(), "=")
        except ValueError as exc:
            raise ValueError(f"Environment: {exc}.") from None
        if old is not None:  # a secret shown as <keychain> stays in the keychain
            for key, value in old.env.items():
                if env.get(key) == value == KEYCHAIN_REF:
                    env[key] = KEYCHAIN_REF
        return ServerConfig(
            name=name,
            command=command,
            args=args,
            env=env,
            cwd=self.f_cwd.text().strip(),
            timeout_s=timeout,
            enabled=enabled,
            policies=policies,
        )

    def save_server(self) -> asyncio.Future[Any] | None:
        """Add the new server or save the edited one (written at once)."""
        try:
            server = self.form_server()
        except ValueError as exc:
            self.show_message(f"Not saved: {exc}", error=True)
            return None
        renamed_from = self.current if self.current and self.current != server.name else None
        return self.spawn(self._save(server, renamed_from))

    async def _save(self, server: ServerConfig, renamed_from: str | None) -> None:
        services = self.services
        try:
            await services.run_io(
                partial(add_server, replacing=renamed_from),
                self.saving(),
                server,
                services.secrets,
            )
        except (RillError, OSError) as exc:
            self.show_message(f"Not saved: {exc}", error=True)
            return
        self.states.pop(renamed_from or "", None)
        self.show_message(f"Saved {server.name}.")
        self.refresh(select=server.name)
        self.servers_changed.emit()
        await self._host_changed()

    def remove_selected(self) -> asyncio.Future[Any] | None:
        name = self.current
        if name is None:
            return None
        return self.spawn(self._remove(name))

    async def _remove(self, name: str) -> None:
        services = self.services
        try:
            await services.run_io(remove_server, self.saving(), name, services.secrets)
        except (RillError, OSError) as exc:
            self.show_message(f"Not removed: {exc}", error=True)
            return
        self.states.pop(name, None)
        self.current = None
        self.show_message(f"Removed {name}.")
        self.refresh()
        self.servers_changed.emit()
        await self._host_changed()

    def choose_import(self) -> None:
        dialog = QFileDialog(self, "Import MCP servers from Claude Desktop")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilter("Claude Desktop config (claude_desktop_config.json *.json)")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        default = claude_config_folder()
        if default is not None:
            dialog.setDirectory(str(default))
        dialog.fileSelected.connect(lambda path: self.import_from(Path(path)))
        dialog.open()

    def import_from(self, path: Path) -> asyncio.Future[Any]:
        """Add the servers of a Claude Desktop config file (names made unique)."""
        return self.spawn(self._import(path))

    async def _import(self, path: Path) -> None:
        services = self.services
        try:
            found = await services.run_io(import_claude_desktop, path)
        except RillError as exc:
            self.show_message(str(exc), error=True)
            return
        added: list[str] = []
        taken = {s.name for s in self.servers()}
        for server in found:
            name = unique_name(server.name, taken)
            taken.add(name)
            renamed = replace(server, name=name)
            try:
                await services.run_io(add_server, self.saving(), renamed, services.secrets)
            except (RillError, OSError) as exc:
                self.show_message(f"Imported {len(added)}; stopped at {name}: {exc}", error=True)
                break
            added.append(name)
        else:
            if added:
                self.show_message(f"Imported {len(added)} server(s): {', '.join(added)}.")
            else:
                self.show_message("That file names no MCP server.")
        self.refresh(select=added[0] if added else None)
        self.servers_changed.emit()
        await self._host_changed()

    def _enabled_toggled(self, on: bool) -> None:
        name = self.current
        if name is None:
            return
        self.spawn(self._set_enabled(name, on))

    async def _set_enabled(self, name: str, on: bool) -> None:
        services = self.services
        try:
            await services.run_io(set_server_enabled, self.saving(), name, on)
        except (RillError, OSError) as exc:
            self.show_message(f"Not saved: {exc}", error=True)
            return
        self.refresh(select=name)
        self.servers_changed.emit()
        await self._host_changed()

    def set_policy(self, tool: str, policy: str) -> asyncio.Future[Any] | None:
        name = self.current
        if name is None or policy not in POLICIES:
            return None
        return self.spawn(self._set_policy(name, tool, policy))

    async def _set_policy(self, server: str, tool: str, policy: str) -> None:
        services = self.services
        try:
            await services.run_io(set_tool_policy, self.saving(), server, tool, policy)
        except (RillError, OSError, ValueError) as exc:
            self.show_message(f"Not saved: {exc}", error=True)
            return
        self.show_message(f"{tool}: {POLICY_TEXT.get(policy, policy)}.")  # type: ignore[call-overload]

    async def _host_changed(self) -> None:
        """Stop the servers removed, turned off or changed (a changed one starts again with
        its new settings when next used); a policy change touches no server."""
        if self.host is not None:
            await self.host.apply_config()

    # -- state ---------------------------------------------------------------------------------

    def test_selected(self) -> asyncio.Future[Any] | None:
        """Start the selected server on its own and list its tools; the state shows the
        outcome (ready with its tools, or failed with the reason and its last stderr)."""
        server = self.server(self.current) if self.current else None
        if server is None:
            return None
        self.states[server.name] = ServerState(server.name, "starting")
        self._show_state()
        self.test_button.setEnabled(False)
        return self.spawn(self._test(server))

    async def _test(self, server: ServerConfig) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        state = await test_server(server, secrets=self.services.secrets)
        took = human_seconds(loop.time() - started)
        with contextlib.suppress(RuntimeError):
            self.test_button.setEnabled(True)
            if state.state == "ready":
                count = len(state.tools)
                self.show_message(f"{server.name} answered in {took} with {count} tool(s).")
            else:
                self.show_message(f"{server.name} did not start.", error=True)
            self._state_changed(state)

    def _load_states(self) -> None:
        host = self.host
        if host is None:
            return
        for server in self.servers():
            state = host.state(server.name)
            self.states[server.name] = state
            if state.tools:
                self.tools[server.name] = list(state.tools)

    def _state_changed(self, state: ServerState) -> None:
        name = state.name
        if state.state == "off" and self.states.get(name) is not None:
            # a server stopped: keep what its last test or start showed of its tools
            state = ServerState(name, "off", stderr=state.stderr, transport=state.transport)
        self.states[name] = state
        if state.tools:
            self.tools[name] = list(state.tools)
        for i in range(self.server_list.count()):
            item = self.server_list.item(i)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                server = self.server(name)
                if server is not None:
                    item.setText(self._item_text(server))
        if name == self.current:
            self._show_state()
            self._show_tools()

    def _show_state(self) -> None:
        name = self.current
        if name is None:
            return
        server = self.server(name)
        state = self.states.get(name)
        kind, words = state_words(state)
        if server is not None and not server.enabled:
            kind, words = "off", "off: its tools are not offered in chats"
        self.state_label.setText(words[:1].upper() + words[1:])
        self.state_label.setToolTip(state.reason if state is not None else "")
        self._set_state_kind(kind)
        err = stderr_of(state) if kind == "failed" else ""
        self.stderr.set_text(err)
        self.stderr.setVisible(bool(err))

    def _set_state_kind(self, kind: str) -> None:
        self.state_label.setProperty("state", kind)
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)

    def _clear_tools(self) -> None:
        for row in self.tool_rows.values():
            self.tools_box.removeWidget(row)
            row.deleteLater()
        self.tool_rows = {}

    def _show_tools(self) -> None:
        self._clear_tools()
        name = self.current
        server = self.server(name) if name else None
        if server is None:
            return
        tools = self.tools.get(server.name, [])
        for info in tools:
            row = ToolRow(info, server.policy(info.name))
            row.policy_changed.connect(self.set_policy)
            self.tools_box.addWidget(row)
            self.tool_rows[info.name] = row
        if tools:
            self.tools_note.setText("A policy applies to the next call; the server keeps running.")
        else:
            self.tools_note.setText("Its tools are listed once the server has started (Test).")

    def show_message(self, text: str, *, error: bool = False) -> None:
        with contextlib.suppress(RuntimeError):
            self.message.setObjectName("errorText" if error else "muted")
            self.message.style().unpolish(self.message)
            self.message.style().polish(self.message)
            self.message.setText(text)
            self.message.setVisible(bool(text))

    def detach(self) -> None:
        """Stop listening to the MCP client (the dialog closes)."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None


def claude_config_folder() -> Path | None:
    """Where Claude Desktop keeps its config on this system, when that folder exists."""
    import os
    import sys

    home = Path.home()
    if sys.platform == "darwin":
        folder = home / "Library" / "Application Support" / "Claude"
    elif sys.platform == "win32":
        folder = Path(os.environ.get("APPDATA", home)) / "Claude"
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "Claude"
    return folder if folder.is_dir() else None
