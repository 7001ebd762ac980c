"""The main window: conversations on the left, header, chat, retry banner and composer in
the middle, status bar below. Every signal of the window is connected in ``_wire``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import shiboken6
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.attachments import estimate_tokens
from desktop_app.core.chat import Services
from desktop_app.core.config import Config, Profile, save_config
from desktop_app.core.errors import RillError
from desktop_app.core.history import Conversation, History, StoredMessage
from desktop_app.core.text import valid_text
from desktop_app.core.tools.config import server_configs
from desktop_app.core.tools.mcp import McpHost
from desktop_app.core.types import Attachment, GenerationResponse
from desktop_app.ui import theme
from desktop_app.ui.attachment_chips import ImageViewer
from desktop_app.ui.auto_view import AutoPresenter
from desktop_app.ui.chat_view import ChatView
from desktop_app.ui.composer import Composer, local_files, read_draft, remote_sentence, write_draft
from desktop_app.ui.controller import ChatController
from desktop_app.ui.first_run import (
    LOCAL_SERVERS,
    LocalServer,
    ProbeTarget,
    WelcomeCard,
    probe,
)
from desktop_app.ui.header import ChatHeader
from desktop_app.ui.icons import tool_button
from desktop_app.ui.keys import KeyStore
from desktop_app.ui.retry_banner import Countdown, RetryBanner
from desktop_app.ui.shortcuts import ReservedKeys, ShortcutsDialog, sequence
from desktop_app.ui.sidebar import Sidebar
from desktop_app.ui.status_bar import StatusPanel
from desktop_app.ui.tool_picker import ServerChoice, StateRelay

if TYPE_CHECKING:
    from desktop_app.core.context_window import ModelLimits

    # imported where the dialog is opened: the first frame does not need it
    from desktop_app.ui.settings_dialog import SettingsDialog

log = logging.getLogger("rill.ui")

SIMULATOR_PROFILE = "Simulator"
_SIMULATOR_REPLIES = (
    "made-up text streamed at about 50 tokens a second, so you can see how Rill works; "
    "nothing leaves this computer. To talk to a real model, add an API key or start Ollama, "
    "LM Studio or a llama.cpp server, then pick its profile."
)
SIMULATOR_NOTE = "Replies come from the built-in simulator (the profile “Simulator”): " + (
    _SIMULATOR_REPLIES
)
STARTED_NOTE = (
    "So Rill started its built-in simulator and selected the profile “Simulator”. "
    "Its replies are " + _SIMULATOR_REPLIES
)


class SimulatorControl(Protocol):
    """Starts the built-in simulator on demand (provided by the application)."""

    @property
    def running(self) -> bool: ...

    def start(self) -> str:
        """Start it (if needed) and return its OpenAI-compatible base URL."""
        ...


NARROW_WIDTH = 700
"""Below this window width the chat list hides itself (and comes back when wider)."""
TITLE_CHARS = 80
"""Longest chat name shown in the window title."""
APP_TITLE = "Rill"


def window_title(chat_title: str | None) -> str:
    """The window title for a chat: "Name — Rill", the name as plain text on one line.

    Control and format characters (escapes, bidi overrides, zero-width marks) are dropped,
    lone surrogates replaced, whitespace collapsed, the name cut to TITLE_CHARS with "…",
    and Qt's "[*]" modified-marker doubled so it shows as written.
    """
    kept: list[str] = []
    for ch in valid_text((chat_title or "")[: TITLE_CHARS * 8]):
        kind = unicodedata.category(ch)
        if kind in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif kind not in ("Cf", "Co", "Cn"):
            kept.append(ch)
    name = " ".join("".join(kept).split())
    if len(name) > TITLE_CHARS:
        name = name[: TITLE_CHARS - 1].rstrip() + "…"
    if not name:
        return APP_TITLE
    return f"{name.replace('[*]', '[*][*]')} — {APP_TITLE}"


def simulator_profile(base_url: str) -> Profile:
    return Profile(
        name=SIMULATOR_PROFILE,
        provider="openai",
        base_url=base_url,
        model="sim-small",
        accepts_prefill=True,
    )


def config_for_saving(config: Config, ephemeral: set[str], fallback_default: str) -> Config:
    """``config`` without the session-only profiles (and not defaulting to one of them).

    Its ``[mcp]`` tables are those of ``config`` itself (not a copy): a server added or a
    policy changed through it is in use at once."""
    out = Config(
        values=dict(config.values),
        profiles={k: v for k, v in config.profiles.items() if k not in ephemeral},
        path=config.path,
        mcp=config.mcp,
    )
    if out.values["default_profile"] in ephemeral:
        out.values["default_profile"] = (
            fallback_default if fallback_default not in ephemeral else "default"
        )
    return out


def export_file_name(title: str, suffix: str) -> str:
    """A file name made of a chat's title: letters, digits, spaces, dashes; at most 60."""
    kept = "".join(ch if ch.isalnum() or ch in " -_" else " " for ch in title[:200])
    name = " ".join(kept.split())[:60].strip() or "chat"
    return name + suffix


def write_export(history: History, conversation_id: int, path: Path, fmt: str) -> None:
    """Export a conversation as Markdown or JSON to ``path``, readable by the user only."""
    if fmt == "markdown":
        text = history.export_markdown(conversation_id)
    else:
        text = json.dumps(history.export_json(conversation_id), ensure_ascii=False, indent=2)
    data = valid_text(text).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


class MainWindow(QMainWindow):
    """One Rill window over the process's services."""

    closed = Signal()

    def __init__(
        self,
        services: Services,
        *,
        keys: KeyStore | None = None,
        simulator: SimulatorControl | None = None,
        demo: bool = False,
        probes: tuple[ProbeTarget, ...] = LOCAL_SERVERS,
        ephemeral: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.keys = keys or KeyStore(services.secrets)
        self.simulator = simulator
        self.demo = demo
        self.probes = probes
        self.ephemeral: set[str] = set(ephemeral or ())
        self.file_default = str(services.config["default_profile"])
        self.controller = ChatController(services, self)
        self.controller.saving_config = self.config_for_saving
        self.tool_host = self._tool_host()
        self.tool_relay = StateRelay(self)
        self.tool_relay.changed.connect(
            lambda _state: self.refresh_tools(), Qt.ConnectionType.QueuedConnection
        )
        if self.tool_host is not None:
            unlisten = self.tool_host.add_listener(self.tool_relay)
            self.destroyed.connect(lambda *_a: unlisten())
        self.qsettings = QSettings(
            str(services.paths.config_dir / "window.ini"), QSettings.Format.IniFormat
        )
        self.draft_path = services.paths.data_dir / "draft.txt"
        self.welcome: WelcomeCard | None = None
        self.found_servers: list[LocalServer] = []
        self.settings_dialog: SettingsDialog | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.shutdown_task: asyncio.Future[Any] | None = None
        self.startup_task: asyncio.Future[Any] | None = None
        self.first_run_task: asyncio.Future[Any] | None = None
        self._closing = False
        self._dialogs: list[QWidget] = []
        self._narrow = False
        self.sidebar_wanted = True
        """Whether the user wants the chat list (it also hides while the window is narrow)."""
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.viewers: list[ImageViewer] = []
        """Images open in windows of their own."""
        self._build()
        self._make_actions()
        self._wire()
        self._restore_window()
        if demo and SIMULATOR_PROFILE in services.config.profiles:
            self.controller.settings.profile = SIMULATOR_PROFILE
        self._fill_profiles()
        self.composer.edit.set_send_with(str(services.config["ui.send_with"]))
        self.refresh_tools()

    # -- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.sidebar = Sidebar()
        self.header = ChatHeader()
        self.view = ChatView()
        self.countdown = Countdown(self)
        self.banner = RetryBanner(self.countdown)
        self.composer = Composer()

        middle = QWidget()
        column = QVBoxLayout(middle)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.header)
        column.addWidget(self.view, 1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(16, 8, 16, 8)
        bottom_layout.setSpacing(8)
        bottom_layout.addWidget(self.banner)
        bottom_layout.addWidget(self.composer)
        column.addWidget(bottom)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(middle)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(1)

        # while the chat list is hidden, a slim rail keeps its button and New chat in reach
        self.rail = QWidget()
        self.rail.setObjectName("sidebarRail")
        rail_layout = QVBoxLayout(self.rail)
        rail_layout.setContentsMargins(8, 8, 0, 8)
        rail_layout.setSpacing(8)
        self.expand_button = tool_button(
            "sidebar", "Show the chat list (Ctrl+B)", "Show the chat list", "sidebarTool"
        )
        rail_layout.addWidget(self.expand_button)
        self.rail_new_button = tool_button("plus", "New chat (Ctrl+N)", "New chat", "sidebarTool")
        rail_layout.addWidget(self.rail_new_button)
        rail_layout.addStretch(1)
        self.rail.hide()

        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.rail)
        row.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        # the window decides its smallest size; the chat list hides itself below NARROW_WIDTH
        self.setMinimumSize(480, 360)

        self.status = StatusPanel(lambda: self.controller.stats, self.countdown)
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().setSizeGripEnabled(True)

        self._reserved = ReservedKeys(self)
        for w in (self.composer.edit, self.sidebar.search, self.header.system):
            w.installEventFilter(self._reserved)

    def _make_actions(self) -> None:
        self.actions_: dict[str, QAction] = {}

        def action(name: str, text: str, slot: Any, keys: str | None = None) -> QAction:
            act = QAction(text, self)
            act.setShortcut(sequence(keys or name))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            act.triggered.connect(slot)
            self.addAction(act)
            self.actions_[name] = act
            return act

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(action("new_chat", "&New chat", self.new_chat))
        file_menu.addSeparator()
        for name, text, fmt in (
            ("export_markdown", "&Export the chat as Markdown…", "markdown"),
            ("export_json", "Export the chat as &JSON…", "json"),
        ):
            act = QAction(text, self)
            act.triggered.connect(lambda _c=False, f=fmt: self.export_current(f))
            act.setEnabled(False)
            self.actions_[name] = act
            file_menu.addAction(act)
        imported = QAction("&Import a chat…", self)
        imported.triggered.connect(self.choose_import)
        self.actions_["import"] = imported
        file_menu.addAction(imported)
        file_menu.addSeparator()
        simulator = QAction("&Try the built-in simulator", self)
        simulator.setToolTip("Chat with Rill's built-in simulator (the profile “Simulator”)")
        simulator.triggered.connect(lambda: self.start_simulator())
        simulator.setEnabled(self.simulator is not None)
        self.actions_["simulator"] = simulator
        file_menu.addAction(simulator)
        file_menu.addAction(action("settings", "&Settings…", self.open_settings))
        file_menu.addSeparator()
        quit_action = action("quit", "&Quit", self.close)
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        file_menu.addAction(quit_action)
        self.actions_["settings"].setMenuRole(QAction.MenuRole.PreferencesRole)

        chat = self.menuBar().addMenu("&Chat")
        chat.addAction(action("stop", "&Stop the reply", self.controller.stop))
        chat.addAction(action("regenerate", "&Regenerate the last reply", self.regenerate))
        chat.addAction(action("edit_last", "&Edit the last prompt", self.edit_last))
        cont = QAction("C&ontinue the reply", self)
        cont.triggered.connect(lambda: self.controller.continue_reply())
        self.actions_["continue"] = cont
        chat.addAction(cont)
        chat.addAction(action("copy_last", "&Copy the last reply", self.copy_last_reply))
        chat.addAction(action("attach", "&Attach files…", self.choose_files))
        chat.addSeparator()
        chat.addAction(action("search", "Search &conversations", self.sidebar.focus_search))
        chat.addAction(action("focus_composer", "&Focus the prompt", self.focus_composer))

        view_menu = self.menuBar().addMenu("&View")
        toggle = action("toggle_sidebar", "Show the &chat list", self.toggle_sidebar)
        toggle.setCheckable(True)
        toggle.setChecked(True)
        view_menu.addAction(toggle)

        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(action("shortcuts", "&Keyboard Shortcuts", self.show_shortcuts))
        about = QAction("&About Rill", self)
        about.triggered.connect(self.show_about)
        about.setMenuRole(QAction.MenuRole.AboutRole)
        help_menu.addAction(about)
        self.actions_["stop"].setEnabled(False)
        help_keys = QKeySequence(QKeySequence.StandardKey.HelpContents)
        if not help_keys.isEmpty() and help_keys != QKeySequence("F1"):
            self.actions_["shortcuts"].setShortcuts([QKeySequence("F1"), help_keys])

    def _wire(self) -> None:
        c = self.controller
        view = self.view
        status = self.status
        banner = self.banner

        c.turn_started.connect(self._turn_started)
        c.text_appended.connect(view.append_text)
        c.stage_changed.connect(self._stage_changed)
        c.retrying.connect(banner.show_retry)
        c.retrying.connect(status.show_retry)
        c.rate_limit_wait.connect(banner.show_rate_limit)
        c.rate_limit_wait.connect(lambda until, _r: status.show_rate_limit(until))
        c.retrying.connect(lambda *_a: view.set_waiting(True))
        c.rate_limit_wait.connect(lambda *_a: view.set_waiting(True))
        c.circuit_open.connect(
            lambda _e, _u: status.show_message(
                "This endpoint failed several times in a row; Rill is not sending to it for now."
            )
        )
        c.falling_back.connect(
            lambda target, reason: status.show_message(f"Falling back to {target}: {reason}")
        )
        c.restarted.connect(view.restart_stream)
        c.restarted.connect(lambda r: status.show_message(f"Starting the answer again: {r}"))
        c.resumed.connect(view.resume_stream)
        c.cache_hit.connect(view.mark_cache_hit)
        c.cache_hit.connect(lambda: status.show_message("Served from cache"))
        c.finished.connect(self._finished)
        c.failed.connect(self._failed)
        c.cancelled.connect(self._cancelled)
        c.turn_ended.connect(self._turn_ended)
        c.busy_changed.connect(self._busy_changed)
        c.conversation_changed.connect(self._conversation_changed)
        c.conversation_loaded.connect(self._conversation_loaded)
        c.conversation_synced.connect(view.sync)
        c.conversations_listed.connect(self.sidebar.set_conversations)
        c.search_results.connect(self.sidebar.set_search_results)
        c.history_changed.connect(self._history_changed)
        c.models_listed.connect(self._models_listed)
        c.models_failed.connect(self._models_failed)
        c.notice.connect(status.show_error)
        c.tool_call_delta.connect(view.tool_call_delta)
        c.tool_approval_needed.connect(view.tool_approval)
        c.tool_started.connect(view.tool_started)
        c.tool_progress.connect(view.tool_progress)
        c.tool_result.connect(view.tool_result)
        c.tool_failed.connect(view.tool_failed)
        c.tool_round.connect(lambda *_a: view.tool_round())
        for signal in (c.tool_approval_needed, c.tool_started, c.tool_result, c.tool_failed):
            signal.connect(lambda *_a: status.refresh())
        view.tool_decided.connect(self._tool_decided)
        self.composer.tools.changed.connect(self.controller.set_tools_off)
        c.conversation_changed.connect(lambda _cid: self.refresh_tools())
        c.conversation_loaded.connect(lambda *_a: self.refresh_tools())

        view.retry_requested.connect(lambda group: c.regenerate(group))
        view.continue_requested.connect(lambda mid: c.continue_reply(mid))
        # after an action that is not typing somewhere else, the next keys go to the prompt
        for signal in (
            view.retry_requested,
            view.continue_requested,
            view.regenerate_requested,
            view.version_requested,
            view.copied,
            banner.retry_now,
            banner.cancel,
            self.sidebar.open_requested,
            self.header.profile_changed,
            self.header.refresh_models,
            self.header.popover_closed,
        ):
            signal.connect(self._focus_prompt)
        view.regenerate_requested.connect(self.regenerate)
        view.edit_requested.connect(self.begin_edit)
        view.version_requested.connect(c.switch_version)
        view.link_refused.connect(
            lambda url: status.show_message(
                f"Rill opens only http and https links; this one was not opened: {url[:120]}"
            )
        )
        view.copied.connect(lambda _what: status.show_message("Copied the message"))
        view.cost_changed.connect(status.set_cost)
        view.frame_drawn.connect(status.on_frame)

        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(c.stop)
        self._wire_attachments()
        self.auto = AutoPresenter(c, view, status)
        self.composer.draft_changed.connect(self._save_draft)

        banner.retry_now.connect(c.retry_now)
        banner.cancel.connect(c.stop)

        self.sidebar.open_requested.connect(c.open_conversation)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.rename_requested.connect(c.rename_conversation)
        self.sidebar.delete_requested.connect(self.confirm_delete)
        self.sidebar.export_requested.connect(self.choose_export)
        self.sidebar.import_requested.connect(self.choose_import)
        self.sidebar.search_changed.connect(self._search_changed)
        self.sidebar.collapse_requested.connect(self.toggle_sidebar)
        self.expand_button.clicked.connect(self.toggle_sidebar)
        self.rail_new_button.clicked.connect(self.new_chat)
        c.conversations_listed.connect(lambda _c: self._show_title())
        c.conversation_changed.connect(lambda _cid: self._show_title())

        self.header.profile_changed.connect(self.select_profile)
        self.header.model_changed.connect(self._model_changed)
        self.header.system_changed.connect(self._system_changed)
        self.header.temperature_changed.connect(self._temperature_changed)
        self.header.refresh_models.connect(self.refresh_models)

        QGuiApplication.styleHints().colorSchemeChanged.connect(self._scheme_changed)

    def _wire_attachments(self) -> None:
        c = self.controller
        composer = self.composer
        composer.attach_requested.connect(self.choose_files)
        composer.confirmed.connect(lambda: self.send(composer.text(), confirmed=True))
        composer.edit.files_given.connect(self.attach_files)
        composer.edit.image_given.connect(self.attach_image)
        c.attachment_read.connect(self._attachment_read)
        c.attachment_refused.connect(self._attachment_refused)
        c.prompt_stored.connect(composer.release_sent)
        c.turn_ended.connect(lambda: composer.hold_attachments(False))
        c.limits_known.connect(self._limits_known)
        c.thumbnail_ready.connect(self.view.set_thumbnail)
        c.thumbnail_ready.connect(composer.tray.set_image)
        c.image_ready.connect(self.show_image)
        c.file_ready.connect(self._open_file)
        c.conversation_loaded.connect(lambda *_a: self._history_tokens())
        c.conversation_synced.connect(lambda *_a: self._history_tokens())
        # the refresh button asks the server again what its model reads, too
        self.header.refresh_models.connect(lambda: c.windows.forget(c.profile.resolved_base_url))
        self.view.attachment_opened.connect(self.open_attachment)
        self.view.thumbnails_wanted.connect(self._load_thumbnails)

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> asyncio.Future[Any]:
        """Load the draft, the conversation list and the last conversation; run first-run."""
        self.startup_task = self.controller.spawn(self._startup())
        return self.startup_task

    async def _startup(self) -> None:
        services = self.services
        draft = await services.run_io(read_draft, self.draft_path)
        if draft and not self.composer.text():
            self.composer.set_text(draft, restoring=True)
        conversations: list[Conversation] = []
        if services.history is not None:
            try:
                conversations = await services.run_io(services.history.list_conversations)
            except RillError as exc:  # a damaged file: say so, and start all the same
                self.status.show_error(str(exc))
        self.sidebar.set_conversations(conversations)
        last = self.qsettings.value("last_conversation")
        try:
            last_id = int(str(last)) if last not in (None, "") else None
        except ValueError:
            last_id = None
        if self.demo and SIMULATOR_PROFILE in services.config.profiles:
            # a demo starts a new chat with the simulator, whatever the last chat used
            self.select_profile(SIMULATOR_PROFILE)
        elif last_id is not None and any(c.id == last_id for c in conversations):
            self.controller.open_conversation(last_id)
        configured = set(services.config.profiles) - self.ephemeral
        if self.demo:
            self._show_demo_card()
        elif not conversations and not configured:
            self.first_run_task = self.controller.spawn(self.first_run())
        self.refresh_models()
        self.composer.edit.setFocus()
        self.controller.spawn(self._start_tools())
        self.controller.spawn(self._verify_stores())

    async def _verify_stores(self) -> None:
        """Check the history and ledger files in a thread of their own (a save does not
        wait for it) and say what is damaged."""
        for problem in await asyncio.to_thread(self.services.verify_stores):
            self.status.show_error(problem)

    def _show_demo_card(self) -> None:
        card = self._make_welcome()
        card.set_status("Demo mode: Rill started its built-in simulator.")
        card.set_note(SIMULATOR_NOTE)
        card.sim_button.hide()
        card.again_button.hide()

    def _make_welcome(self) -> WelcomeCard:
        card = WelcomeCard()
        card.use_server.connect(self.use_server)
        card.add_key.connect(self.add_key)
        card.try_simulator.connect(lambda: self.start_simulator())
        for signal in (card.use_server, card.try_simulator):
            signal.connect(self._focus_prompt)
        card.look_again.connect(
            lambda: setattr(self, "first_run_task", self.controller.spawn(self.look_for_servers()))
        )
        self.view.set_welcome(card)
        self.welcome = card
        return card

    async def first_run(self) -> None:
        """No conversations and no profile yet: find a server, or start the simulator."""
        self._make_welcome()
        await self.look_for_servers()

    async def look_for_servers(self) -> None:
        card = self.welcome
        if card is None:
            return
        card.set_looking()
        servers = await probe(self.probes)
        self.found_servers = servers
        default = self.services.config.profile(None)
        source = await self.services.run_io(self.keys.source, default)
        has_key = source != "none"
        using: LocalServer | None = None
        current = self.controller.settings.profile
        if servers and not has_key and current not in {s.profile_name for s in servers}:
            using = servers[0]
            self.use_server(using)
        elif servers:
            using = next((s for s in servers if s.profile_name == current), None)
        card.set_servers(servers, using)
        card.set_using(self.controller.settings.profile, SIMULATOR_PROFILE)
        if servers:
            card.set_note("")
            card.sim_button.setVisible(True)
            return
        where = ", ".join(f"{t.name} on {urlsplit(t.base_url).netloc}" for t in self.probes)
        nothing = f"No model server answered on this computer ({where})" if where else ""
        if has_key:
            card.set_status(
                f"{nothing or 'Ready'}. Rill uses the API key from the {source} with the "
                f"profile “{default.name}” ({default.provider}, {default.resolved_model})."
            )
            return
        card.set_status(
            f"{nothing or 'No local model server was looked for'} and no API key is set."
        )
        if self.simulator is not None:
            await self._start_simulator()

    def use_server(self, server: LocalServer) -> None:
        """Chat with a local server found by the probe (a profile for this session)."""
        model = server.models[0] if server.models else ""
        profile = Profile(
            name=server.profile_name,
            provider=server.provider,
            base_url=server.base_url,
            model=model,
        )
        self.add_session_profile(profile)
        self.select_profile(profile.name)
        if self.welcome is not None:
            self.welcome.set_servers(self.found_servers or [server], server)
            self.welcome.set_note(
                f"Using {server.name} at {server.base_url} as the profile “{profile.name}”. "
                "Settings → Profiles can save it for next time."
            )

    def start_simulator(self) -> None:
        self.controller.spawn(self._start_simulator())

    async def _start_simulator(self) -> None:
        if self.simulator is None:
            self.status.show_error("The built-in simulator is not available in this window.")
            return
        loop = asyncio.get_running_loop()
        base_url = await loop.run_in_executor(None, self.simulator.start)
        self.add_session_profile(simulator_profile(base_url))
        self.select_profile(SIMULATOR_PROFILE)
        if self.welcome is not None:
            self.welcome.set_note(STARTED_NOTE)
            self.welcome.set_using(SIMULATOR_PROFILE)
        self.status.show_message("Using the built-in simulator (profile “Simulator”)")

    def add_key(self) -> None:
        """Open Settings → Profiles for a key; without a keychain, say so and what to do."""
        if self.keys.available is None and self.keys.secrets is not None:
            self.controller.spawn(self._add_key_once_checked())
            return
        if not self.keys.supported:
            text = (
                f"{self.keys.reason} Rill can read the key from an environment variable "
                "instead: set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY and start "
                "Rill again."
            )
            if self.welcome is not None:
                self.welcome.set_note(text)
            self.status.show_message(text)
        self.open_settings(tab="Profiles")

    async def _add_key_once_checked(self) -> None:
        await self.services.run_io(self.keys.check_available)
        self.add_key()

    async def _check_keychain(self, dialog: SettingsDialog) -> None:
        """Whether keys can be stored, asked once Settings is open: the keychain is never
        touched at start (its libraries are large, and it may ask to be unlocked)."""
        available = await self.services.run_io(self.keys.check_available)
        if not available and shiboken6.isValid(dialog):
            dialog.keychain_missing()

    def add_session_profile(self, profile: Profile) -> None:
        """Add a profile for this session only (saved only if the user asks in Settings)."""
        if profile.name not in self.services.config.profiles:
            self.ephemeral.add(profile.name)
        self.services.config.profiles[profile.name] = profile
        self._fill_profiles()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing:
            self._closing = True
            self._save_window()
            self.composer.flush_draft()
            for dialog in (self.settings_dialog, self.shortcuts_dialog, *self._dialogs):
                if dialog is not None:
                    dialog.close()
            with contextlib.suppress(RuntimeError, TypeError):
                QGuiApplication.styleHints().colorSchemeChanged.disconnect(self._scheme_changed)
            self.shutdown_task = asyncio.ensure_future(self.controller.shutdown())
            self.closed.emit()
        event.accept()

    async def wait_closed(self) -> None:
        """Wait until a close has cancelled any reply and its partial text is recorded."""
        if self.shutdown_task is not None:
            await self.shutdown_task

    def _restore_window(self) -> None:
        geometry = self.qsettings.value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1180, 780)
        splitter = self.qsettings.value("splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([260, 920])
        self.sidebar_wanted = str(self.qsettings.value("sidebar_shown", "true")) != "false"
        self._narrow = self.width() < NARROW_WIDTH
        self._show_sidebar(self.sidebar_wanted and not self._narrow)

    def _save_window(self) -> None:
        self.qsettings.setValue("geometry", self.saveGeometry())
        if self.sidebar.isVisible():
            self.qsettings.setValue("splitter", self.splitter.saveState())
        self.qsettings.setValue("sidebar_shown", "true" if self.sidebar_wanted else "false")
        cid = self.controller.conversation_id
        self.qsettings.setValue("last_conversation", "" if cid is None else cid)
        self.qsettings.sync()

    # -- the chat list and the title ----------------------------------------------------------

    def toggle_sidebar(self) -> None:
        """Show or hide the chat list (Ctrl+B); the choice is kept for the next start."""
        self.sidebar_wanted = self.sidebar.isHidden()
        self._show_sidebar(self.sidebar_wanted)
        if not self.sidebar_wanted:
            self._focus_prompt()

    def _show_sidebar(self, shown: bool) -> None:
        if shown and self.sidebar.isHidden():
            self.sidebar.show()
        elif not shown and not self.sidebar.isHidden():
            focus = QApplication.focusWidget()
            if focus is not None and self.sidebar.isAncestorOf(focus):
                self._focus_prompt()
            self.sidebar.hide()
        self.rail.setVisible(not shown)
        self.actions_["toggle_sidebar"].setChecked(shown)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        narrow = event.size().width() < NARROW_WIDTH
        if narrow != self._narrow:
            self._narrow = narrow
            self._show_sidebar(self.sidebar_wanted and not narrow)

    def _show_title(self) -> None:
        cid = self.controller.conversation_id
        if cid is None:
            self.setWindowTitle(APP_TITLE)
            return
        title = self.sidebar.title_of(cid)
        if title:
            self.setWindowTitle(window_title(title))

    # -- turns ---------------------------------------------------------------------------------

    def send(self, text: str, *, confirmed: bool = False) -> None:
        composer = self.composer
        attachments = composer.attachments()
        if not text.strip() and not attachments:
            return
        if composer.tray.pending:
            composer.show_warning(
                "An attached file is still being read; it is sent once it shows in its chip. "
                "Send again in a moment."
            )
            return
        reason = self.controller.check_prompt(text, attachments)
        if reason is not None:
            composer.show_warning(reason)
            return
        if not confirmed:
            doubt = self.send_doubts(attachments)
            if doubt:
                composer.ask_confirm(doubt)
                return
        composer.dismiss_confirm()
        images = composer.tray.images()
        if composer.editing:
            ok = self.controller.edit_and_resend(text, attachments)
            composer.end_edit()
        else:
            ok = self.controller.send(text, attachments)
        if ok:
            composer.clear()
            composer.flush_draft()
            if attachments:
                # the chips go once the prompt is stored; a turn that fails before keeps them
                composer.hold_attachments(True)
                self.view.show_sent_attachments(attachments, images)
            if self.welcome is not None:
                self.view.set_welcome(None)
                self.welcome = None

    def regenerate(self) -> None:
        if not self.controller.regenerate():
            self.status.show_message("There is no reply to regenerate yet.")

    def edit_last(self) -> None:
        user = self.view.last_user()
        if user is None or self.controller.busy:
            return
        self.begin_edit(user.text())

    def begin_edit(self, text: str) -> None:
        """Edit the last prompt: its text in the field, its attachments as chips again."""
        self.composer.begin_edit(text)
        user = self.view.last_user()
        strip = user.strip if user is not None else None
        attachments = strip.attachments if strip is not None else ()
        tray = self.composer.tray
        for att in attachments:
            key = tray.add_pending(att.name)
            tokens = estimate_tokens(att)
            self.composer.token_counts[att.sha256] = tokens
            tray.fill(key, att, self.view.thumbs.get(att.sha256), tokens)

    # -- attachments ---------------------------------------------------------------------------

    def choose_files(self) -> None:
        """Ask for files to attach (several at once), without blocking the window."""
        dialog = QFileDialog(self, "Attach files", str(Path.home()))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilters(
            [
                "Images, text, code and PDFs (*.png *.jpg *.jpeg *.webp *.gif *.pdf *.txt *.md "
                "*.py *.json *.csv *.log *.*)",
                "All files (*)",
            ]
        )
        dialog.filesSelected.connect(self.attach_files)
        self._open_dialog(dialog)

    def attach_files(self, paths: list[str]) -> None:
        """Read files to attach off the UI thread; each shows as a chip at once."""
        for path in paths:
            key = self.composer.tray.add_pending(Path(path).name)
            self.controller.read_file(key, path)
        if paths and self.controller.known_limits() is None:
            self.controller.look_up_limits()

    def attach_image(self, image: QImage, how: str = "Pasted") -> None:
        """Attach an image from the clipboard (or dropped) as a PNG ("Pasted image 1.png")."""
        name = self.composer.pasted_name(how)
        key = self.composer.tray.add_pending(name)
        self.controller.read_image(key, image, name)

    def attach_mime(self, mime: Any) -> bool:
        """Attach what was dropped: files from this computer, or an image; say why an
        address from elsewhere was not attached. False when there was nothing to take."""
        files, other = local_files(mime)
        if not files and mime.hasImage():  # an image dragged from a page brings its pixels
            image = mime.imageData()
            if isinstance(image, QImage) and not image.isNull():
                self.attach_image(image, "Dropped")
                return True
        if files:
            self.attach_files(files)
        if other:
            self.composer.show_warning(remote_sentence(other))
        return bool(files or other)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()
            self.composer.set_dropping(True)
            return
        super().dragEnterEvent(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.composer.set_dropping(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.composer.set_dropping(False)
        if self.attach_mime(event.mimeData()):
            event.acceptProposedAction()
            self._focus_prompt()
            return
        super().dropEvent(event)

    def _attachment_read(
        self, key: int, att: Attachment, image: QImage | None, tokens: int
    ) -> None:
        self.composer.token_counts[att.sha256] = tokens
        if self.composer.tray.fill(key, att, image, tokens) and image is not None:
            self.view.thumbs.setdefault(att.sha256, image)

    def _attachment_refused(self, key: int, sentence: str) -> None:
        self.composer.tray.discard(key)
        self.composer.show_warning(sentence)

    def _load_thumbnails(self, hashes: list[str]) -> None:
        for sha in hashes:
            self.controller.load_thumbnail(sha)

    def open_attachment(self, att: Attachment) -> None:
        """Open a prompt's attachment: an image full size, a file with the system viewer."""
        screen = self.screen().availableGeometry().size()
        self.controller.open_attachment(att, QSize(screen.width(), screen.height()))

    def show_image(self, name: str, image: QImage) -> None:
        viewer = ImageViewer(name, image, self)
        self.viewers.append(viewer)
        viewer.destroyed.connect(lambda *_a, v=viewer: self._viewer_closed(v))
        viewer.show()
        viewer.activateWindow()

    def _viewer_closed(self, viewer: ImageViewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)

    def _open_file(self, path: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.status.show_error(
                f"No program opened {Path(path).name}; Rill's copy is at {path}."
            )

    # -- context and images --------------------------------------------------------------------

    def _limits_known(self, profile: str, model: str, limits: ModelLimits) -> None:
        settings = self.controller.settings
        current = self.controller.profile
        if profile != current.name or model != (settings.model or current.resolved_model):
            return
        self.composer.set_context(limits.context_length)

    def _history_tokens(self) -> None:
        self.composer.set_history_tokens(self.controller.history_tokens())

    def send_doubts(self, attachments: tuple[Attachment, ...]) -> str:
        """Why sending now may not go well (too much for the model's context, images to a
        model that takes none), as the model's server says; "" when nothing is known
        against it."""
        limits = self.controller.known_limits()
        if limits is None:
            return ""
        doubts: list[str] = []
        model = self.controller.settings.model or self.controller.profile.resolved_model
        context = limits.context_length
        total = self.composer.estimated_tokens()
        if context is not None and total > context:
            doubts.append(
                f"This message comes to about {total:,} tokens, more than the {context:,} "
                f"{model} reads; the server may refuse it or drop the start."
            )
        images = sum(1 for a in attachments if a.kind == "image")
        if images and limits.vision is False:
            which = "the image" if images == 1 else f"the {images} images"
            doubts.append(
                f"{model} does not take images (its server says so in {limits.source}), so "
                f"{which} may be refused or ignored."
            )
        return " ".join(doubts)

    def copy_last_reply(self) -> None:
        last = self.view.last_assistant()
        if last is None or not last.text():
            self.status.show_message("There is no reply to copy yet.")
            return
        QGuiApplication.clipboard().setText(last.text())
        self.status.show_message("Copied the last reply")

    def focus_composer(self) -> None:
        self.composer.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _focus_prompt(self, *_args: object) -> None:
        """Give the prompt the keyboard after a click that did not mean to type elsewhere."""
        if not self.composer.edit.isReadOnly():
            self.composer.edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def new_chat(self) -> None:
        self.controller.new_conversation()
        self.composer.end_edit()
        self.focus_composer()

    def _tool_decided(self, call_id: str, decision: str) -> None:
        """The user answered a call's approval row; the keyboard goes back to the prompt
        once no other call waits."""
        self.controller.decide(call_id, decision)
        self.status.refresh()
        if not self.controller.waiting_for_approval:
            self.composer.edit.setFocus()

    # -- tools -------------------------------------------------------------------------------

    def _tool_host(self) -> McpHost | None:
        """The MCP servers of the config, shared by this window's turns and its settings."""
        services = self.services
        if services.tools is None:
            services.tools = McpHost(lambda: self.services.config, secrets=services.secrets)
        return services.tools if isinstance(services.tools, McpHost) else None

    def config_for_saving(self) -> Config:
        """The config as the file gets it (no session-only profile; the same servers)."""
        return config_for_saving(self.services.config, self.ephemeral, self.file_default)

    def refresh_tools(self) -> None:
        """Show the enabled servers and their tools in the composer's Tools button."""
        host = self.tool_host
        choices: list[ServerChoice] = []
        for server in server_configs(self.services.config):
            if not server.enabled:
                continue
            state = host.state(server.name) if host is not None else None
            kind = state.state if state is not None else ""
            count: int | None = None  # not known before the server has started
            if state is not None and kind in ("ready", "failed"):
                count = len(state.tools)
            choices.append(ServerChoice(server.name, count, kind))
        off = self.controller.tools_off.get(self.controller.conversation_id, set())
        self.composer.tools.set_servers(choices, off)

    async def _start_tools(self) -> None:
        """Start the enabled servers in the background (a chat then has their tools at once;
        one that fails says why in Settings → Tools)."""
        host = self.tool_host
        if host is not None and any(s.enabled for s in server_configs(self.services.config)):
            await host.start()

    def _turn_started(self, mode: str, prompt: str) -> None:
        self.banner.clear()
        self.view.begin_turn(mode, prompt)
        self.status.show_stage("starting", 1)

    def _stage_changed(self, stage: str, attempt: int) -> None:
        self.status.show_stage(stage, attempt)
        self.view.set_waiting(False)
        if stage == "streaming":
            self.banner.clear()

    def _finished(self, response: GenerationResponse) -> None:
        self.banner.clear()
        self.view.end_turn("complete", response=response)
        self.status.show_finished(response)

    def _failed(self, message: str, _kind: str) -> None:
        self.banner.clear()
        widget = self.view.stream_widget
        self.view.flush()
        partial = widget is not None and bool(widget.text().strip())
        self.view.end_turn("interrupted" if partial else "failed", error=message)
        self.status.show_error(message)

    def _cancelled(self, _partial: str) -> None:
        self.banner.clear()
        widget = self.view.stream_widget
        if widget is None:
            return
        self.view.flush()
        kept = bool(widget.text().strip())
        self.view.end_turn("cancelled", known=self._measured())
        self.status.show_message(
            "Stopped. The partial reply is kept." if kept else "Stopped before any reply arrived."
        )

    def _measured(self) -> dict[str, Any]:
        """What the window counted of the reply in flight: tokens so far and times."""
        stats = self.controller.stats
        now = time.monotonic()
        known: dict[str, Any] = {
            "tokens": stats.tokens,
            "estimated": stats.output_tokens is None,
            "total_s": now - stats.started if stats.started else None,
        }
        if stats.first_token is not None and stats.started:
            known["ttft_s"] = stats.first_token - stats.started
        return known

    def _turn_ended(self) -> None:
        self.banner.clear()
        if self.view.stream_widget is not None:
            self.view.end_turn("cancelled", known=self._measured())

    def _busy_changed(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.status.set_busy(busy)
        self.view.set_busy(busy)
        self.actions_["stop"].setEnabled(busy)
        for name in ("regenerate", "edit_last", "continue"):
            self.actions_[name].setEnabled(not busy)

    def _conversation_changed(self, conversation_id: int) -> None:
        self.view.conversation_id = conversation_id
        self.sidebar.select(conversation_id)
        self._export_enabled(True)

    def _export_enabled(self, enabled: bool) -> None:
        for name in ("export_markdown", "export_json"):
            self.actions_[name].setEnabled(enabled)

    def _conversation_loaded(
        self, conversation: Conversation | None, messages: list[StoredMessage]
    ) -> None:
        self.composer.end_edit()
        self.banner.clear()
        self.setWindowTitle(window_title(conversation.title if conversation else None))
        self.view.show_messages(conversation.id if conversation else None, messages)
        self._export_enabled(conversation is not None)
        self.sidebar.select(conversation.id if conversation else None)
        self.header.set_system((conversation.system_prompt or "") if conversation else "")
        if conversation is not None:
            self.header.set_profile(self.controller.settings.profile)
        self.status.show_message("Ready" if conversation is None else "")
        self.status.set_cost(
            sum(m.cost for m in messages if m.cost is not None)
            if any(m.cost is not None for m in messages)
            else None
        )

    def _history_changed(self) -> None:
        if self.sidebar.searching:
            self.controller.search(self.sidebar.search.text())
        else:
            self.controller.refresh_conversations()

    def _search_changed(self, query: str) -> None:
        if query.strip():
            self.controller.search(query)
        else:
            self.controller.refresh_conversations()

    def confirm_delete(self, conversation_id: int) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Delete conversation",
            "Delete this conversation and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.accepted.connect(lambda: self.controller.delete_conversation(conversation_id))
        box.finished.connect(lambda _r: self._forget(box))
        self._dialogs.append(box)
        box.open()

    # -- export and import ---------------------------------------------------------------

    def export_current(self, fmt: str) -> None:
        cid = self.controller.conversation_id
        if cid is None:
            self.status.show_message("There is no chat to export yet.")
            return
        self.choose_export(cid, fmt)

    def choose_export(self, conversation_id: int, fmt: str) -> None:
        """Ask where to save a conversation, then export it there."""
        markdown = fmt == "markdown"
        title = self.sidebar.title_of(conversation_id) or "chat"
        name = export_file_name(title, ".md" if markdown else ".json")
        dialog = QFileDialog(
            self,
            "Export as Markdown" if markdown else "Export as JSON",
            str(Path.home() / name),
            "Markdown (*.md)" if markdown else "JSON (*.json)",
        )
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("md" if markdown else "json")
        dialog.fileSelected.connect(
            lambda path: self.controller.spawn(self.export_to(conversation_id, Path(path), fmt))
        )
        self._open_dialog(dialog)

    def choose_import(self) -> None:
        """Ask for a JSON export and import it as a new chat."""
        dialog = QFileDialog(self, "Import a chat", str(Path.home()), "Rill JSON export (*.json)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(
            lambda path: self.controller.spawn(self.import_from(Path(path)))
        )
        self._open_dialog(dialog)

    def _open_dialog(self, dialog: QFileDialog) -> None:
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.finished.connect(lambda _r: self._forget(dialog))
        dialog.finished.connect(self._focus_prompt)
        self._dialogs.append(dialog)
        dialog.open()

    async def export_to(self, conversation_id: int, path: Path, fmt: str) -> bool:
        """Write one conversation to ``path`` (on the I/O thread); say how it went."""
        history = self.services.history
        if history is None:
            self.status.show_error("The history is not available, so nothing can be exported.")
            return False
        try:
            await self.services.run_io(write_export, history, conversation_id, path, fmt)
        except LookupError:
            self.status.show_error("That chat no longer exists.")
            return False
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            self.status.show_error(f"The chat could not be exported to {path} ({reason}).")
            return False
        except RillError as exc:
            self.status.show_error(str(exc))
            return False
        self.status.show_message(f"Exported the chat to {path}")
        return True

    async def import_from(self, path: Path) -> int | None:
        """Import a JSON export (on the I/O thread) as a new chat and open it."""
        history = self.services.history
        if history is None:
            self.status.show_error("The history is not available, so nothing can be imported.")
            return None
        try:
            cid: int = await self.services.run_io(history.import_file, path)
        except RillError as exc:
            self.status.show_error(str(exc))
            return None
        if self.sidebar.searching:
            self.sidebar.search.clear()
        self.controller.history_changed.emit()
        self.controller.open_conversation(cid)
        self.status.show_message(f"Imported {path.name} as a new chat")
        return cid

    def _forget(self, widget: QWidget) -> None:
        if widget in self._dialogs:
            self._dialogs.remove(widget)

    def _save_draft(self, text: str) -> None:
        self.services.submit_io(write_draft, self.draft_path, text)

    # -- profiles and models -------------------------------------------------------------------

    def _fill_profiles(self) -> None:
        config = self.services.config
        names = list(config.profiles) or [self.controller.profile.name]
        current = self.controller.settings.profile
        if current not in names:
            current = names[0]
            self.controller.settings.profile = current
        providers = {name: p.provider for name, p in config.profiles.items()}
        self.header.set_profiles(names, current, providers)
        profile = self.controller.profile
        self.header.set_models([], self.controller.settings.model or profile.resolved_model)
        chosen = self.controller.settings.temperature
        self.header.set_temperature(chosen if chosen is not None else profile.temperature)
        self.header.system.setPlaceholderText(
            f"System prompt (profile default: {profile.system_prompt[:80]})"
            if profile.system_prompt
            else "System prompt for this chat (optional)"
        )

    def select_profile(self, name: str) -> None:
        settings = self.controller.settings
        if name == settings.profile and self.header.profile.currentText() == name:
            return
        settings.profile = name
        settings.model = ""
        settings.temperature = None
        self._fill_profiles()
        self.refresh_models()
        if self.welcome is not None:
            self.welcome.set_using(name, SIMULATOR_PROFILE)

    def refresh_models(self) -> None:
        self.header.models_error.hide()
        self.controller.list_models(self.controller.settings.profile)
        self.composer.set_context(None)
        self.controller.look_up_limits()

    def _models_listed(self, profile: str, models: list[str]) -> None:
        if profile != self.controller.profile.name:
            return
        current = self.controller.settings.model or self.controller.profile.resolved_model
        self.header.set_models(models, current)

    def _models_failed(self, profile: str, text: str) -> None:
        if profile == self.controller.profile.name:
            self.header.set_models_error(text)

    def _model_changed(self, name: str) -> None:
        profile = self.controller.profile
        self.controller.settings.model = "" if name == profile.resolved_model else name
        limits = self.controller.known_limits()
        self.composer.set_context(limits.context_length if limits is not None else None)
        if limits is None:
            self.controller.look_up_limits()

    def _system_changed(self, text: str) -> None:
        self.controller.settings.system = text if text.strip() else None

    def _temperature_changed(self, value: float | None) -> None:
        self.controller.settings.temperature = value

    # -- dialogs -------------------------------------------------------------------------------

    def open_settings(self, tab: str = "") -> None:
        if self.settings_dialog is not None and self.settings_dialog.isVisible():
            self.settings_dialog.raise_()
            self.settings_dialog.activateWindow()
            return
        from desktop_app.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(
            self.services.config,
            keys=self.keys,
            services=self.services,
            spawn=self.controller.spawn,
            ephemeral=self.ephemeral,
            tool_host=self.tool_host,
            tools_config=self.config_for_saving,
            parent=self,
        )
        dialog.tools_page.servers_changed.connect(self.refresh_tools)
        dialog.saved.connect(self.apply_settings)
        if self.keys.available is None and self.keys.secrets is not None:
            self.controller.spawn(self._check_keychain(dialog))
        if tab:
            for i in range(dialog.tabs.count()):
                if dialog.tabs.tabText(i) == tab:
                    dialog.tabs.setCurrentIndex(i)
        self.settings_dialog = dialog
        dialog.show()

    def apply_settings(self, config: Config, new_keys: dict[str, str], ephemeral: set[str]) -> None:
        """Use the saved settings now, and write them (without session-only profiles)."""
        services = self.services
        self.ephemeral = set(ephemeral)
        services.config = config
        self.file_default = str(config["default_profile"])
        from desktop_app.core.resilience import ResilienceSettings

        services.engine.apply_settings(ResilienceSettings.from_values(config.values))
        self.composer.edit.set_send_with(str(config["ui.send_with"]))
        self.apply_theme()
        self._fill_profiles()
        self.refresh_models()
        self.refresh_tools()
        to_save = config_for_saving(config, self.ephemeral, self.file_default)
        self.controller.spawn(self._write_settings(to_save, new_keys))

    async def _write_settings(self, config: Config, new_keys: dict[str, str]) -> None:
        try:
            await self.services.run_io(save_config, config)
        except OSError as exc:
            self.status.show_error(f"The settings could not be saved: {exc}")
            return
        for name, key in new_keys.items():
            profile = self.services.config.profiles.get(name)
            if profile is None:
                continue
            try:
                await self.services.run_io(self.keys.store, profile, key)
            except RillError as exc:
                self.status.show_error(f"The key for “{name}” was not stored: {exc}")
                return
            except Exception as exc:
                log.warning("storing a key failed: %s", type(exc).__name__)
                self.status.show_error(
                    f"The key for “{name}” could not be stored in the keychain "
                    f"({type(exc).__name__})."
                )
                return
        self.status.show_message("Settings saved")

    @Slot(Qt.ColorScheme)
    def _scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if not self._closing and self.services.config["ui.theme"] == "system":
            self.apply_theme()

    def apply_theme(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            theme.apply(app, str(self.services.config["ui.theme"]))
            self.view.refresh_theme()

    def show_shortcuts(self) -> None:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def show_about(self) -> None:
        from desktop_app import __version__

        box = QMessageBox(
            QMessageBox.Icon.Information,
            "About Rill",
            f"Rill {__version__}\nA desktop chat client for large language models.\n\n"
            f"Data: {self.services.paths.data_dir}\nLogs: {self.services.paths.log_file}",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setModal(False)
        box.finished.connect(lambda _r: self._forget(box))
        self._dialogs.append(box)
        box.show()
