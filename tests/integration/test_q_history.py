"""``q --history`` and ``q --search`` list each conversation once, with titles cut between
words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread
from tests.integration.test_cli import base, q


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def test_search_lists_each_conversation_once(simt: SimulatorThread, rill_home: Path) -> None:
    prompt = "/echo Rivers: rivers carve canyons over millions of years of patient erosion"
    assert q(*base(simt), prompt, home=rill_home).returncode == 0
    assert q(*base(simt), "-c", "/echo more about rivers please", home=rill_home).returncode == 0
    assert q(*base(simt), "/echo lakes are not rivers", home=rill_home).returncode == 0
    found = q("--search", "rivers", home=rill_home)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert len(lines) == 2
    assert sorted(line.split()[0] for line in lines) == ["1", "2"]
    first = next(line for line in lines if line.split()[0] == "1")
    assert "/echo Rivers: rivers carve…" in first  # cut between words, within 30 characters
    assert "[rivers]" in first.lower()

    listing = q("--history", home=rill_home)
    assert "/echo Rivers: rivers carve canyons over millions of years…\n" in listing.stdout
