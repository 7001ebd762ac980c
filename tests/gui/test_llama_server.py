"""The window against a real llama.cpp server: first-run probe, streaming, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Config, Profile
from desktop_app.core.paths import app_paths
from desktop_app.ui.first_run import ProbeTarget
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows
from tests.helpers import wait_until
from tests.llama_server import LlamaServer, llama_server


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A model whose replies end by themselves (after about 5-800 tokens)."""
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama-gui"), 4096)


@pytest.fixture(scope="module")
def llama_long(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny-long.gguf", tmp_path_factory.mktemp("llama-gui-long"), 65536)


def ask(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=20_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def test_first_run_finds_llama_cpp_and_a_reply_streams(
    qtbot: QtBot, windows: Windows, llama: LlamaServer, rill_home: Path
) -> None:
    config = Config(path=app_paths(rill_home).config_file)
    window = windows.make(config, probes=(ProbeTarget("llama.cpp", "openai", llama.base_url),))
    qtbot.waitUntil(
        lambda: window.first_run_task is not None and window.first_run_task.done(), timeout=5000
    )
    assert window.welcome is not None and "llama.cpp" in window.welcome.text
    assert window.controller.settings.profile == "llama.cpp (local)"
    ask(qtbot, window, "Hello from the window")
    reply = window.view.widgets[-1]
    assert reply.state == "complete", reply.error_label.text()
    assert reply.text().strip()
    assert "tokens" in reply.details.text()


def test_escape_closes_the_request_on_the_server(
    qtbot: QtBot, windows: Windows, llama_long: LlamaServer, rill_home: Path
) -> None:
    config = Config(path=app_paths(rill_home).config_file)
    config.profiles["llama"] = Profile(
        name="llama", provider="openai", base_url=llama_long.base_url, model=llama_long.model
    )
    config.values["default_profile"] = "llama"
    window = windows.make(config)
    cancels = llama_long.log().count("cancel task")
    window.composer.set_text("Tell me a long story")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)

    def some_text() -> None:
        w = window.view.stream_widget
        assert w is not None and len(w.text()) > 20

    qtbot.waitUntil(some_text, timeout=10_000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.view.widgets[-1].state == "cancelled"
    wait_until(lambda: llama_long.log().count("cancel task") > cancels, timeout=10)
