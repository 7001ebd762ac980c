"""What ``q`` bills: a server on this computer costs nothing unless its profile sets prices,
and a cached answer costs nothing and says what it saved (``q --json``, ``q --usage``).

The simulator listens on 127.0.0.1. To stand for a server elsewhere, ``q`` reaches it as
``http://api.priced.example`` through the simulator acting as the HTTP proxy, so the base
URL Rill prices by is not a local one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_app.simulator import SimulatorThread

REMOTE = "http://api.priced.example/v1"


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0, default_tokens=40) as sim:
        yield sim


def q(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "desktop_app.cli", *args],
        input="",
        capture_output=True,
        text=True,
        env={**clean, "RILL_HOME": str(home), **(env or {})},
        timeout=60,
    )


def answer(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def through_proxy(sim: SimulatorThread) -> dict[str, str]:
    return {"HTTP_PROXY": sim.url, "http_proxy": sim.url, "NO_PROXY": "", "no_proxy": ""}


def test_a_server_on_this_computer_costs_nothing_and_the_cache_saves_nothing(
    simt: SimulatorThread, rill_home: Path
) -> None:
    local = ["--provider", "openai", "--base-url", simt.base_url("openai"), "--model", "gpt-4o"]
    first = answer(q(*local, "--json", "a local question", home=rill_home))
    assert first["cost"] == 0.0 and first["cached"] is False
    assert first["usage"]["output_tokens"] > 0
    again = answer(q(*local, "--json", "a local question", home=rill_home))
    assert again["cached"] is True
    assert again["cost"] == 0.0 and again["saved"] == 0.0
    for n in range(3):
        answer(q(*local, "--json", f"question {n}", home=rill_home))
    report = q("--usage", home=rill_home)
    assert report.returncode == 0, report.stderr
    assert "This month: $0.00 on 5 requests." in report.stdout
    assert "unknown" not in report.stdout


def test_a_profile_with_its_own_prices_is_billed_with_them(
    simt: SimulatorThread, rill_home: Path
) -> None:
    config = rill_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[profiles.lab]\n"
        'provider = "openai"\n'
        f'base_url = "{simt.base_url("openai")}"\n'
        'model = "sim-small"\n'
        "price_input_per_mtok = 1000.0\n"
        "price_output_per_mtok = 4000.0\n",
        encoding="utf-8",
    )
    first = answer(q("--profile", "lab", "--json", "a priced question", home=rill_home))
    usage = first["usage"]
    expected = (usage["input_tokens"] * 1000.0 + usage["output_tokens"] * 4000.0) / 1e6
    assert first["cost"] == pytest.approx(expected)
    assert first["saved"] is None
    again = answer(q("--profile", "lab", "--json", "a priced question", home=rill_home))
    assert again["cached"] is True
    assert again["cost"] == 0.0
    assert again["saved"] == pytest.approx(expected)
    report = q("--usage", home=rill_home).stdout
    money = f"${expected:.4f}"
    assert f"This month: {money} on 2 requests." in report
    assert f"The cache answered 1 request and saved {money}." in report


def test_a_server_elsewhere_is_billed_from_the_price_list(
    simt: SimulatorThread, rill_home: Path
) -> None:
    remote = ["--provider", "openai", "--base-url", REMOTE]
    env = through_proxy(simt)
    first = answer(
        q(*remote, "--model", "gpt-4o", "--json", "far question", home=rill_home, env=env)
    )
    assert simt.sim.chat_requests[-1].headers["host"] == "api.priced.example"
    usage = first["usage"]
    expected = (usage["input_tokens"] * 2.50 + usage["output_tokens"] * 10.00) / 1e6
    assert first["cost"] == pytest.approx(expected)
    again = answer(
        q(*remote, "--model", "gpt-4o", "--json", "far question", home=rill_home, env=env)
    )
    assert again["cached"] is True and again["cost"] == 0.0
    assert again["saved"] == pytest.approx(expected)
    mystery = answer(
        q(*remote, "--model", "mystery-model-9000", "--json", "hi", home=rill_home, env=env)
    )
    assert mystery["cost"] is None
    report = q("--usage", home=rill_home).stdout
    assert "(1 of unknown cost)" in report
    assert "The cache answered 1 request and saved" in report
