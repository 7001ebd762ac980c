"""MCP servers for tests: the fault server (see :mod:`tests.mcp_servers.fault_server` for its
tools) over stdio or Streamable HTTP, and ``mcp-server-time``.

The pytest fixtures here are loaded for every test (``pytest_plugins`` in
``tests/conftest.py``):

- ``fault_state``: the folder the fault server writes its marks to.
- ``fault_stdio``: a :class:`ServerConfig` named ``fault`` that runs the fault server over stdio
  (timeout 5 s).
- ``fault_http``: a :class:`ServerConfig` named ``fault`` for a fault server already running
  over Streamable HTTP on a free port of 127.0.0.1 (stopped after the test).
- ``mcp_config``: a function that makes a :class:`Config` (saved in ``RILL_HOME``) holding
  the given servers.

Outside pytest, :func:`fault_server_config` and :func:`running_http_fault_server` do the same.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.config import Config
from desktop_app.core.paths import app_paths
from desktop_app.core.tools.config import ServerConfig, server_table

REPO = Path(__file__).resolve().parents[2]


def fault_server_config(
    state: Path, *, name: str = "fault", timeout_s: float = 5.0, **changes: object
) -> ServerConfig:
    """The fault server over stdio, writing its marks to ``state``."""
    server = ServerConfig(
        name=name,
        command=sys.executable,
        args=("-m", "tests.mcp_servers.fault_server", "--state", str(state)),
        env={"PYTHONPATH": str(REPO)},
        timeout_s=timeout_s,
    )
    return replace(server, **changes)  # type: ignore[arg-type]


def time_server_config(name: str = "time") -> ServerConfig:
    """``mcp-server-time`` from PyPI, the executable next to this Python."""
    executable = Path(sys.executable).with_name("mcp-server-time")
    if executable.exists():
        return ServerConfig(name=name, command=str(executable))
    return ServerConfig(name=name, command=sys.executable, args=("-m", "mcp_server_time"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_http_fault_server(state: Path, *, timeout_s: float = 5.0) -> Iterator[ServerConfig]:
    """Run the fault server over Streamable HTTP for the length of the block."""
    port = free_port()
    command = [sys.executable, "-m", "tests.mcp_servers.fault_server", "--state", str(state)]
    process = subprocess.Popen(
        [*command, "--http", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fault server did not start listening")
            time.sleep(0.05)
        yield ServerConfig(name="fault", url=f"http://127.0.0.1:{port}/mcp", timeout_s=timeout_s)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def config_with(*servers: ServerConfig, path: Path | None = None) -> Config:
    """A config holding ``servers`` (saved to ``path`` when given)."""
    config = Config(path=path)
    config.mcp = {"servers": {s.name: server_table(s) for s in servers}}
    return config


@pytest.fixture
def fault_state(tmp_path: Path) -> Path:
    state = tmp_path / "fault-state"
    state.mkdir()
    return state


@pytest.fixture
def fault_stdio(fault_state: Path) -> ServerConfig:
    return fault_server_config(fault_state)


@pytest.fixture
def fault_http(fault_state: Path) -> Iterator[ServerConfig]:
    with running_http_fault_server(fault_state) as server:
        yield server


@pytest.fixture
def mcp_config(rill_home: Path) -> Callable[..., Config]:
    def make(*servers: ServerConfig) -> Config:
        return config_with(*servers, path=app_paths().config_file)

    return make
