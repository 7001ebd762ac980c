"""GUI fixtures: offscreen Qt, one session-wide qasync loop, a simulator, and windows.

The qasync loop is created once with ``already_running=True`` and never stopped (stopping
it would call ``QApplication.exit()``). It is marked as the running loop only while a GUI
test runs, so the async tests elsewhere in the session keep their own loops. Tests are
plain sync functions: they drive the loop through ``qtbot.waitSignal`` / ``waitUntil``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.simulator import SimulatorThread
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, sim_config


@pytest.fixture(scope="session")
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    from desktop_app.ui.event_loop import qt_event_loop, restore_asyncgen_hooks

    qapp.setQuitOnLastWindowClosed(False)
    loop = qt_event_loop(qapp, already_running=True)
    asyncio.events._set_running_loop(None)
    yield loop
    restore_asyncgen_hooks()
    loop.stop()
    loop.close()


@pytest.fixture(autouse=True)
def _qloop_running(qloop: asyncio.AbstractEventLoop) -> Iterator[None]:
    asyncio.set_event_loop(qloop)
    asyncio.events._set_running_loop(qloop)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(None)


@pytest.fixture(scope="session")
def sim_thread() -> Iterator[SimulatorThread]:
    sim = SimulatorThread(tokens_per_s=0, default_tokens=40).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(sim_thread: SimulatorThread) -> Iterator[SimulatorThread]:
    sim_thread.clear()
    sim_thread.tokens_per_s = 0
    sim_thread.default_tokens = 40
    yield sim_thread
    sim_thread.clear()
    sim_thread.tokens_per_s = 0


@pytest.fixture
def windows(qtbot: QtBot, rill_home: Path, qloop: asyncio.AbstractEventLoop) -> Iterator[Windows]:
    made = Windows(qtbot, rill_home)
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def window(windows: Windows, sim: SimulatorThread, rill_home: Path) -> MainWindow:
    return windows.make(sim_config(sim, rill_home))


@pytest.fixture
def themed(window: MainWindow) -> Iterator[None]:
    """The window as the app shows it, with the theme's style sheet; the app's own after."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    sheet, palette = app.styleSheet(), app.palette()
    window.apply_theme()
    yield
    app.setStyleSheet(sheet)
    app.setPalette(palette)
