"""Shared fixtures: every test gets its own RILL_HOME; integration tests get a simulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest_plugins = ("tests.mcp_servers",)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("RILL_FIXTURES", REPO.parent / "shared" / "fixtures" / "streams"))


@pytest.fixture(autouse=True)
def rill_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "rill-home"
    monkeypatch.setenv("RILL_HOME", str(home))
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture
async def sim() -> AsyncIterator[object]:
    from desktop_app.simulator import Simulator

    simulator = Simulator(tokens_per_s=0)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
