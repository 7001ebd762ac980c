"""Helpers for the GUI tests: an in-memory keychain, windows over fresh services, and
running coroutines on the qasync loop from sync tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import keyring.backend
from PySide6.QtCore import QEvent, QObject, QPoint, QRect
from PySide6.QtGui import QPaintEvent, QTextCursor
from PySide6.QtWidgets import QTextBrowser
from pytestqt.qtbot import QtBot

from desktop_app.core.chat import Services
from desktop_app.core.config import Config, Profile
from desktop_app.core.paths import app_paths
from desktop_app.core.secrets import Secrets
from desktop_app.simulator import SimulatorThread
from desktop_app.ui.chat_view import MessageWidget, RenderStats
from desktop_app.ui.first_run import ProbeTarget
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.markdown import fragments

_T = TypeVar("_T")


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keychain in memory, so tests never touch the real one."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class EventCounter(QObject):
    """Counts the events of one type a widget receives (install it as an event filter).

    With ``within``, only paint events whose region meets that rectangle (in the watched
    widget's coordinates) are counted: a paint elsewhere in a window is not this one's."""

    def __init__(self, kind: QEvent.Type, within: QRect | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.within = within
        self.count = 0
        self.rects: list[QRect] = []

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != self.kind:
            return False
        if isinstance(event, QPaintEvent):
            if self.within is not None and not event.region().intersects(self.within):
                return False
            self.rects.append(QRect(event.rect()))
        self.count += 1
        return False


def anchor_point(view: QTextBrowser, href: str) -> QPoint:
    """Where the link to ``href`` is drawn in ``view`` (viewport coordinates)."""
    doc = view.document()
    for fragment in fragments(doc):
        fmt = fragment.charFormat()
        if fmt.isAnchor() and fmt.anchorHref() == href:
            cursor = QTextCursor(doc)
            cursor.setPosition(fragment.position() + fragment.length() // 2)
            return view.cursorRect(cursor).center()
    raise AssertionError(f"no link to {href!r}")


def streaming_reply(qtbot: QtBot) -> MessageWidget:
    """A reply's widget on screen (600 x 400), its stream begun: fed and rendered by hand."""
    widget = MessageWidget("assistant", RenderStats())
    qtbot.addWidget(widget)
    widget.resize(600, 400)
    widget.show()
    widget.begin_stream()
    return widget


def run(qtbot: QtBot, coro: Coroutine[Any, Any, _T], timeout: int = 10_000) -> _T:
    """Run a coroutine on the qasync loop from a sync test and return its result."""
    future = asyncio.ensure_future(coro)
    qtbot.waitUntil(future.done, timeout=timeout)
    return future.result()


def sim_config(sim: SimulatorThread, home: Path, **values: Any) -> Config:
    """A config whose default profile is the simulator, with short retry delays."""
    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    config.profiles["Simulator"] = Profile(
        name="Simulator",
        provider="openai",
        base_url=sim.base_url("openai"),
        model="sim-small",
        accepts_prefill=True,
    )
    config.values["default_profile"] = "Simulator"
    config.values["resilience.base_delay_s"] = 0.4
    config.values["resilience.max_delay_s"] = 0.6
    config.values["resilience.first_token_timeout_s"] = 10.0
    config.values["resilience.idle_timeout_s"] = 5.0
    config.values.update(values)
    return config


class Windows:
    """Makes windows over fresh services and closes them cleanly at the end of a test."""

    def __init__(self, qtbot: QtBot, home: Path) -> None:
        self.qtbot = qtbot
        self.home = home
        self.keyring = MemoryKeyring()
        self.open: list[tuple[MainWindow, Services]] = []

    def services(self, config: Config) -> Services:
        secrets = Secrets(backend=self.keyring, environ={})
        # as the app opens them: the stores' integrity check runs once the window is shown
        return Services.open(
            config=config, paths=app_paths(self.home), secrets=secrets, check_stores=False
        )

    def make(
        self,
        config: Config,
        *,
        probes: tuple[ProbeTarget, ...] = (),
        simulator: Any = None,
        start: bool = True,
        **kwargs: Any,
    ) -> MainWindow:
        services = self.services(config)
        window = MainWindow(services, probes=probes, simulator=simulator, **kwargs)
        self.open.append((window, services))
        window.show()
        self.qtbot.waitExposed(window)
        window.activateWindow()
        if start:
            task = window.start()
            self.qtbot.waitUntil(task.done, timeout=5000)
            task.result()
        return window

    def close(self, window: MainWindow) -> None:
        """Close a window the way the app does: cancel, record, close the services."""
        for i, (w, services) in enumerate(self.open):
            if w is window:
                del self.open[i]
                self._close(w, services)
                return

    def _close(self, window: MainWindow, services: Services) -> None:
        window.close()
        self.qtbot.waitUntil(
            lambda: window.shutdown_task is not None and window.shutdown_task.done(),
            timeout=10_000,
        )
        run(self.qtbot, services.aclose())
        window.deleteLater()

    def close_all(self) -> None:
        while self.open:
            window, services = self.open.pop()
            self._close(window, services)


def wait_reply(
    qtbot: QtBot, window: MainWindow, trigger: Callable[[], object], timeout: int = 10_000
) -> Any:
    """Trigger a turn and wait for its final state to be recorded and shown."""
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=timeout) as blocker:
        trigger()
    return blocker.args
