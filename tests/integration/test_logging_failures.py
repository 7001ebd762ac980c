"""``rill.log`` holds one line for every failed attempt, retry, open circuit, fallback and
failed reply, with the key masked: a ``q`` process against scripted faults."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import Fault, SimulatorThread
from tests.integration.test_cli import PLANTED, base, q

FAST = ["--set", "resilience.base_delay_s=0.01"]


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def log_lines(home: Path) -> list[str]:
    text = (home / "logs" / "rill.log").read_text(encoding="utf-8")
    assert PLANTED not in text
    return text.splitlines()


def having(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(word in line for word in words)]


def test_a_rejected_key_is_logged_masked(simt: SimulatorThread, rill_home: Path) -> None:
    simt.script(Fault(status=401, message=f"key {PLANTED} is wrong"))
    result = q(*base(simt), "hi", home=rill_home, env={"OPENAI_API_KEY": PLANTED})
    assert result.returncode == 1
    lines = log_lines(rill_home)
    assert len(having(lines, "WARNING", "attempt 1 of 4", "401")) == 1
    assert len(having(lines, "ERROR", "reply failed", "401")) == 1


def test_retries_are_logged_one_line_each(simt: SimulatorThread, rill_home: Path) -> None:
    simt.script(Fault(status=503), Fault(status=429, retry_after_ms=50))
    result = q(*base(simt), *FAST, "hi", home=rill_home, env={"OPENAI_API_KEY": PLANTED})
    assert result.returncode == 0, result.stderr
    lines = log_lines(rill_home)
    assert len(having(lines, "attempt 1 of 4", "failed", "503")) == 1
    assert len(having(lines, "attempt 2 of 4", "failed", "429")) == 1
    assert len(having(lines, "retrying", "attempt 2 of 4")) == 1
    assert len(having(lines, "retrying", "attempt 3 of 4")) == 1
    assert not having(lines, "reply failed")


def test_a_refused_connection_is_logged(rill_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = q("--base-url", url, "--set", "resilience.max_retries=0", "hi", home=rill_home)
    assert result.returncode == 1
    lines = log_lines(rill_home)
    assert having(lines, "attempt 1 of 1", f"127.0.0.1:{port}")
    assert having(lines, "ERROR", "reply failed", "Could not connect")


def test_an_open_circuit_and_a_fallback_are_logged(simt: SimulatorThread, rill_home: Path) -> None:
    config = rill_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        'default_profile = "main"\n'
        "[resilience.circuit_breaker]\n"
        "failure_threshold = 1\n"
        "[profiles.main]\n"
        'provider = "openai"\n'
        f'base_url = "{simt.base_url("openai")}"\n'
        'model = "sim-large"\n'
        'fallbacks = ["backup"]\n'
        "[profiles.backup]\n"
        'provider = "anthropic"\n'
        f'base_url = "{simt.base_url("anthropic")}"\n'
        'model = "sim-small"\n'
    )
    simt.script(Fault(protocol="openai", status=503))
    result = q(*FAST, "hi", home=rill_home, env={"ANTHROPIC_API_KEY": PLANTED})
    assert result.returncode == 0, result.stderr
    lines = log_lines(rill_home)
    assert len(having(lines, "attempt 1 of 4", "503")) == 1
    assert len(having(lines, "circuit", "open", "sim-large")) == 1
    assert len(having(lines, "falling back from sim-large to sim-small")) == 1


def test_a_servers_message_cannot_forge_log_lines(simt: SimulatorThread, rill_home: Path) -> None:
    forged = "bad\n2026-01-01 00:00:00,000 ERROR    rill.engine: forged\x1b[2J" + "x" * 100_000
    simt.script(Fault(status=400, message=forged))
    result = q(*base(simt), "hi", home=rill_home)
    assert result.returncode == 1
    lines = log_lines(rill_home)
    assert not having(lines, "forged") or all(not line.startswith("2026-01-01") for line in lines)
    text = "\n".join(lines)
    assert "\x1b" not in text and "\\n2026-01-01" in text
    assert max(len(line) for line in lines) < 2_000
