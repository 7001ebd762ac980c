"""A server that reports no usage: q records the estimate as one in the ledger and the
cache, so ``q --usage`` and a cached answer still mark the counts with ≈."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.ledger import Ledger, ledger_path
from desktop_app.core.paths import app_paths
from desktop_app.simulator import SimulatorThread, hostile
from tests.integration.test_cli import q
from tests.integration.test_real_servers import NO_USAGE_STREAM


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def test_an_estimate_stays_marked_in_the_ledger_and_the_cache(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(
        hostile.pieces(
            "openai", lambda _r: [NO_USAGE_STREAM], headers={"Content-Type": "text/event-stream"}
        )
    )
    base = ["--base-url", simt.base_url("openai"), "--model", "sim-small"]
    first = q(*base, "--json", "Where do rivers go?", home=rill_home)
    assert first.returncode == 0, first.stderr
    fresh = json.loads(first.stdout)
    assert fresh["usage"]["estimated"] is True and not fresh["cached"]

    again = q(*base, "--json", "Where do rivers go?", home=rill_home)
    assert again.returncode == 0, again.stderr
    cached = json.loads(again.stdout)
    assert cached["cached"] is True
    assert cached["usage"] == fresh["usage"]
    assert len(simt.sim.chat_requests) == 1

    noted = q(*base, "--debug", "Where do rivers go?", home=rill_home)
    assert noted.returncode == 0, noted.stderr
    assert "≈" in noted.stderr

    with Ledger(ledger_path(app_paths())) as ledger:
        assert [(e.cached, e.estimated) for e in ledger.entries()] == [
            (True, True),
            (True, True),
            (False, True),
        ]

    report = q("--usage", home=rill_home)
    assert report.returncode == 0, report.stderr
    model_line = next(
        line for line in report.stdout.split("By model")[1].splitlines() if "sim-small" in line
    )
    assert "≈" in model_line
    assert "reported no usage for 3 requests" in " ".join(report.stdout.split())
