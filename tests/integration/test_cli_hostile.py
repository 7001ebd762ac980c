"""``q`` against a hostile server, a hostile terminal input and hostile numbers: a real
process, real sockets, the simulator's hostile mode."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread, hostile
from desktop_app.simulator.server import RecordedRequest

KEY = "pRoXy0123456789abcdefghijKLMNOPQRSTUV"
"""An API key not shaped like any provider's, so only Rill's own masking can hide it."""


@pytest.fixture(scope="module")
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _fresh(simt: SimulatorThread) -> None:
    simt.clear()


def q(
    *args: str,
    home: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, "RILL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "desktop_app.cli", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )


def q_on_a_terminal(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """Run q with stdout and stderr on a pseudo-terminal; its exit code and all it wrote."""
    full_env = {**os.environ, "RILL_HOME": str(home), "COLUMNS": "80", **(env or {})}
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=full_env,
    )
    os.close(slave)
    shown = _drain(master, proc, timeout)
    os.close(master)
    return proc.returncode, shown


def _drain(master: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=5)
    return b"".join(chunks)


def base(sim: SimulatorThread, provider: str = "openai") -> list[str]:
    return ["--provider", provider, "--base-url", sim.base_url(provider)]


def leaked(secret: str, text: str, window: int = 8) -> list[str]:
    """Every piece of ``secret`` at least ``window`` characters long found in ``text``."""
    return [
        secret[i : i + window]
        for i in range(len(secret) - window + 1)
        if secret[i : i + window] in text
    ]


def files_under(home: Path) -> Iterable[Path]:
    return (p for p in home.rglob("*") if p.is_file())


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [240, 250, 259, 262])
def test_an_echoed_key_cut_at_300_never_leaks(
    simt: SimulatorThread, rill_home: Path, pad: int
) -> None:
    simt.script(hostile.echo_key_error("openai", 401, pad=pad))
    env = {"OPENAI_API_KEY": KEY}
    result = q(*base(simt), "--debug", "--no-cache", "hi", home=rill_home, env=env)
    assert result.returncode == 1
    assert simt.sim.chat_requests[-1].headers["authorization"] == f"Bearer {KEY}"
    err = result.stderr.decode()
    assert "The API key was rejected (401)" in err
    assert "Incorrect API key provided" in err
    markdown = q("--export", "1", home=rill_home)
    exported = q("--export", "1", "--format", "json", home=rill_home)
    assert exported.returncode == 0, exported.stderr
    assert "rejected" in exported.stdout.decode()  # messages.error in history
    seen = {"stdout": result.stdout.decode(), "stderr": err}
    seen |= {"md": markdown.stdout.decode(), "json": exported.stdout.decode()}
    for path in files_under(rill_home):
        seen[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for where, text in seen.items():
        assert leaked(KEY, text) == [], where


@pytest.mark.parametrize("pad", [180, 188, 192])
def test_a_key_in_a_corrupt_chunk_cut_at_200_never_leaks_under_debug(
    simt: SimulatorThread, rill_home: Path, pad: int
) -> None:
    def body(record: RecordedRequest) -> Iterator[bytes]:
        key = record.headers.get("authorization", "").removeprefix("Bearer ")
        yield b"data: " + ("y" * pad + key + "}").encode() + b"\n\n"

    simt.script(hostile.pieces("openai", body, headers={"Content-Type": "text/event-stream"}))
    env = {"OPENAI_API_KEY": KEY}
    args = ("--debug", "--no-cache", "--set", "resilience.max_retries=0", "hi")
    result = q(*base(simt), *args, home=rill_home, env=env)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "CorruptStream: yyyy" in err
    assert leaked(KEY, err) == []
    log = (rill_home / "logs" / "rill.log").read_text(encoding="utf-8")
    assert leaked(KEY, log) == []


def test_a_password_in_the_base_url_is_never_printed_or_logged(
    simt: SimulatorThread, rill_home: Path
) -> None:
    url = simt.base_url("openai").replace("http://", "http://alice:Pa55w0rdPa55w0rd@")
    result = q("--base-url", url, "--debug", "--no-cache", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "attempt 1: POST http://•••@" in err
    seen = [result.stdout.decode(), err]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in files_under(rill_home)]
    for text in seen:
        assert "Pa55w0rd" not in text and "alice" not in text
