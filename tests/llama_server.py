"""A real llama.cpp server (``../shared/servers/llama-server``) for tests, on a free port.

It is llama.cpp's own OpenAI-compatible server with a tiny random-weight model: it answers
with fast gibberish, which is all a client test needs, and it behaves as the real thing
does where the simulator cannot prove anything (its own usage reporting, its own 400 for a
prompt longer than the context, its own handling of a closed connection). Tests using it are
skipped, saying why, where the servers folder is absent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

SERVERS = Path(os.environ.get("RILL_SERVERS", REPO.parent / "shared" / "servers"))
BINARY = SERVERS / "llama-server"
CONTEXT = 512
"""The context length the server runs with (``-c``): small, so a long prompt overflows it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One running ``llama-server`` with its log (``-v``) in a file."""

    def __init__(self, model: str, log: Path, context: int = CONTEXT) -> None:
        self.model_file = SERVERS / model
        self.context = context
        self.log_path = log
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def model(self) -> str:
        """The model id the server lists: the path it was given."""
        return str(self.model_file)

    def start(self, timeout: float = 30.0) -> LlamaServer:
        args = [str(BINARY), "-m", str(self.model_file), "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "-c", str(self.context), "-t", "1", "-np", "1"]
        args += ["--jinja", "-v"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited at start:\n{self.log()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama-server not ready in {timeout} s:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def llama_server(model: str, tmp: Path, context: int = CONTEXT) -> Iterator[LlamaServer]:
    """Start a server for ``model`` (skipping where there is none) and stop it after."""
    if not BINARY.exists():
        pytest.skip(f"no llama.cpp server at {BINARY} (the shared servers folder is absent)")
    server = LlamaServer(model, tmp / f"llama-{model}.log", context).start()
    try:
        yield server
    finally:
        server.stop()
