"""First run: look for model servers on this computer, and the welcome card.

The probe goes through the engine (``Engine.list_models``) with a short timeout and no API
key, so no key is ever sent to whatever answers on a local port. Its client speaks plain
``http://`` only (the servers it looks for are on 127.0.0.1), so it never loads a CA bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.types import ProviderName
from desktop_app.ui.labels import PlainLabel


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    name: str
    provider: ProviderName
    base_url: str


@dataclass(frozen=True, slots=True)
class LocalServer:
    """A model server that answered the probe."""

    name: str
    provider: ProviderName
    base_url: str
    models: tuple[str, ...]

    @property
    def profile_name(self) -> str:
        return f"{self.name} (local)"


LOCAL_SERVERS: tuple[ProbeTarget, ...] = (
    ProbeTarget("Ollama", "ollama", "http://127.0.0.1:11434"),
    ProbeTarget("LM Studio", "openai", "http://127.0.0.1:1234/v1"),
    ProbeTarget("llama.cpp", "openai", "http://127.0.0.1:8080/v1"),
)

PROBE_TIMEOUT_S = 1.5


async def probe(
    targets: tuple[ProbeTarget, ...] = LOCAL_SERVERS, wait_s: float = PROBE_TIMEOUT_S
) -> list[LocalServer]:
    """The targets that list their models within ``wait_s``, in the order given."""
    from desktop_app.core.engine import Engine
    from desktop_app.core.http import make_client
    from desktop_app.core.resilience import ResilienceSettings

    engine = Engine(
        resilience=ResilienceSettings(connect_timeout_s=wait_s),
        api_key=lambda _r: None,
        client=make_client(wait_s, tls=False),
    )

    async def one(target: ProbeTarget) -> LocalServer | None:
        try:
            models = await asyncio.wait_for(
                engine.list_models(target.provider, target.base_url, "first-run"), wait_s
            )
        except (Exception, TimeoutError):
            return None
        return LocalServer(target.name, target.provider, target.base_url, tuple(models))

    try:
        found = await asyncio.gather(*(one(t) for t in targets))
    finally:
        with contextlib.suppress(Exception):
            await engine.aclose()
    return [s for s in found if s is not None]


class WelcomeCard(QFrame):
    """What Rill found on first run, and the ways to start chatting."""

    use_server = Signal(object)
    add_key = Signal()
    try_simulator = Signal()
    look_again = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomeCard")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.setSpacing(8)
        title = PlainLabel("Welcome to Rill")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        self.status = PlainLabel("Looking for model servers on this computer…")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.status)
        self.servers_row = QVBoxLayout()
        layout.addLayout(self.servers_row)
        self.note = PlainLabel()
        self.note.setObjectName("muted")
        self.note.setWordWrap(True)
        self.note.hide()
        layout.addWidget(self.note)
        buttons = QHBoxLayout()
        self.key_button = QPushButton("Add an API key…")
        self.key_button.clicked.connect(self.add_key)
        buttons.addWidget(self.key_button)
        self.sim_button = QPushButton("Try the built-in simulator")
        self.sim_button.clicked.connect(self.try_simulator)
        buttons.addWidget(self.sim_button)
        self.again_button = QPushButton("Look again")
        self.again_button.clicked.connect(self.look_again)
        buttons.addWidget(self.again_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self._server_buttons: list[QPushButton] = []

    def set_looking(self) -> None:
        self.status.setText("Looking for model servers on this computer…")
        self._clear_servers()
        self.note.hide()

    def set_servers(self, servers: list[LocalServer], using: LocalServer | None) -> None:
        self._clear_servers()
        if not servers:
            return
        names = ", ".join(f"{s.name} ({s.base_url})" for s in servers)
        self.status.setText(f"Found on this computer: {names}.")
        for server in servers:
            models = list(server.models)
            what = models[0] if models else "no models yet"
            if len(models) > 1:
                what += f" and {len(models) - 1} more"
            button = QPushButton()
            button.setProperty("server", server.profile_name)
            button.setProperty("what", f"{server.name}: {what}")
            button.clicked.connect(lambda _c=False, s=server: self.use_server.emit(s))
            self.servers_row.addWidget(button)
            self._server_buttons.append(button)
        self.set_using(using.profile_name if using is not None else "")

    def set_using(self, profile: str, simulator_profile: str = "Simulator") -> None:
        """Mark the one way of chatting in use (a found server or the simulator): one ✓."""
        for button in self._server_buttons:
            current = button.property("server") == profile
            button.setText(f"{'✓ Using' if current else 'Use'} {button.property('what')}")
            button.setEnabled(not current)
        simulating = profile == simulator_profile
        self.sim_button.setText(
            "✓ Using the built-in simulator" if simulating else "Try the built-in simulator"
        )
        self.sim_button.setEnabled(not simulating)

    def set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def _clear_servers(self) -> None:
        for b in self._server_buttons:
            b.hide()
            b.setParent(None)
            b.deleteLater()
        self._server_buttons = []

    @property
    def text(self) -> str:
        """Everything the card says (for tests and accessibility)."""
        parts = [self.status.text(), *(b.text() for b in self._server_buttons)]
        if not self.sim_button.isHidden():
            parts.append(self.sim_button.text())
        if self.note.isVisible() or self.note.text():
            parts.append(self.note.text())
        return "\n".join(parts)
