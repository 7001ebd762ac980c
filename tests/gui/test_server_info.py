"""Settings → Test connection says what the server is: its name, version and context."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile
from desktop_app.simulator import SimulatorThread, hostile
from desktop_app.simulator.protocols import CONTEXT_LENGTH
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.settings_dialog import SettingsDialog
from tests.gui.util import Windows, sim_config
from tests.llama_server import LlamaServer, llama_server


def _window(
    windows: Windows, sim: SimulatorThread, home: Path, provider: str, base_url: str, model: str
) -> MainWindow:
    config = sim_config(sim, home)
    config.profiles["Simulator"] = Profile(
        name="Simulator",
        provider=provider,  # type: ignore[arg-type]
        base_url=base_url,
        model=model,
    )
    return windows.make(config)


def _tested(qtbot: QtBot, window: MainWindow) -> SettingsDialog:
    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_result.text().startswith(("✓", "✗")), timeout=10_000)
    return dialog


def test_test_connection_names_ollama_its_version_and_context(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = _window(windows, sim, rill_home, "ollama", sim.base_url("ollama"), "sim-small")
    dialog = _tested(qtbot, window)
    text = dialog.test_result.text()
    assert text.startswith("✓ Connected. 2 models"), text
    assert text.endswith(f" · Ollama 0.12.0 · context {CONTEXT_LENGTH:,}")


def test_test_connection_shows_a_hostile_version_as_plain_text(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    def answer(body: object) -> None:
        raw = json.dumps(body).encode()
        sim.script(
            hostile.pieces("models", lambda _r: [raw], headers={"Content-Type": "application/json"})
        )

    window = _window(windows, sim, rill_home, "ollama", sim.base_url("ollama"), "sim-small")

    def answered(path: str) -> bool:
        return any(r.path == path and r.status for r in sim.sim.requests)

    # the window's own questions (its list of models, the model's context) have been
    # answered, so the answers scripted below go to Test alone
    qtbot.waitUntil(lambda: answered("/api/tags") and answered("/api/show"), timeout=5000)
    answer({"models": [{"name": "sim-small"}]})
    answer({"version": '<img src="file:///etc/passwd">\x1b[31m'})
    dialog = _tested(qtbot, window)
    assert isinstance(dialog.test_result, PlainLabel)
    assert dialog.test_result.textFormat() == Qt.TextFormat.PlainText
    text = dialog.test_result.text()
    assert '· Ollama <img src="file:///etc/passwd">' in text
    assert "\x1b" not in text


def test_test_connection_to_a_server_that_says_nothing_is_unchanged(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    dialog = _tested(qtbot, window)
    assert dialog.test_result.text() == "✓ Connected. 2 models: sim-large, sim-small"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama-info"), 4096)


def test_test_connection_names_llama_cpp_and_its_context(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, llama: LlamaServer, rill_home: Path
) -> None:
    window = _window(windows, sim, rill_home, "openai", llama.base_url, llama.model)
    dialog = _tested(qtbot, window)
    text = dialog.test_result.text()
    assert text.startswith("✓ Connected. 1 model:"), text
    assert " · llama.cpp " in text and text.endswith(" · context 4,096")
