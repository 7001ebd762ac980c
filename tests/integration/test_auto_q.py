"""``q --profile auto``: the stages on stderr, the answer on stdout, the route in --json,
and the route cache commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.history import History
from desktop_app.core.paths import app_paths
from desktop_app.core.terminal import for_terminal
from desktop_app.simulator import SimulatorThread
from tests.helpers import run_q
from tests.integration.test_q_terminal import Screen, _no_space, q_on_terminal


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(
        tokens_per_s=0, default_tokens=20, judge_scores={"sim-small": 3, "sim-large": 9}
    ) as sim:
        yield sim


q = run_q


def configure(home: Path, sim: SimulatorThread) -> None:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = sim.base_url("openai")
    path.write_text(
        f'[profiles.fast]\nprovider = "openai"\nbase_url = "{url}"\nmodel = "sim-small"\n'
        f'[profiles.strong]\nprovider = "openai"\nbase_url = "{url}"\nmodel = "sim-large"\n'
        '[profiles.auto]\nkind = "auto"\nvalidate = true\njudge = "fast"\n'
        'targets = [{ profile = "fast", tier = 1 }, { profile = "strong", tier = 3 }]\n',
        encoding="utf-8",
    )


def test_q_shows_the_stages_on_stderr_and_the_kept_answer_on_stdout(
    simt: SimulatorThread, rill_home: Path
) -> None:
    configure(rill_home, simt)
    result = q("--profile", "auto", "hello there", home=rill_home)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        "q: auto: analysing",
        "q: auto: chat, complexity 1/10",
        "q: auto: routing",
        "q: auto: → sim-small, fast",
    ]
    assert "q: auto: quality 3/10 — retrying with a stronger model" in lines
    assert "q: auto: quality 9/10" in lines
    assert lines[-1].startswith("q: auto: ") and lines[-1].endswith(" s")
    history = History(app_paths().history_db)
    try:
        (conversation,) = history.list_conversations()
        _, reply = history.messages(conversation.id)
        versions = history.versions(reply.reply_group)
    finally:
        history.close()
    assert [(v.model, v.active) for v in versions] == [("sim-small", False), ("sim-large", True)]
    assert result.stdout == reply.content + "\n"  # the kept answer, once


def test_q_json_has_the_route_and_the_route_cache_commands_work(
    simt: SimulatorThread, rill_home: Path
) -> None:
    configure(rill_home, simt)
    first = q("--profile", "auto", "--json", "hello there", home=rill_home)
    assert first.returncode == 0, first.stderr
    route = json.loads(first.stdout)["route"]
    assert (route["category"], route["complexity"], route["target"]) == ("chat", 1, "fast")
    assert route["cached"] is False
    assert [(a["profile"], a["model"], a["score"], a["cost"]) for a in route["attempts"]] == [
        ("fast", "sim-small", 3, 0.0),
        ("strong", "sim-large", 9, 0.0),
    ]
    again = q("--profile", "auto", "--json", "Hello, there!", home=rill_home)
    assert json.loads(again.stdout)["route"]["cached"] is True
    assert "q: auto: using cached route" in again.stderr

    stats = q("--route-stats", "--json", home=rill_home)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout) == {
        "size": 1,
        "hits": 1,
        "misses": 1,
        "hit_rate": 0.5,
        "hits_by_model": {"sim-small": 1},
    }
    text = q("--route-stats", home=rill_home).stdout
    assert "hit rate:  50%" in text and "sim-small: 1 hits" in text
    cleared = q("--clear-route-cache", home=rill_home)
    assert cleared.stdout == "Cleared the route cache (1 routes removed).\n"
    assert json.loads(q("--route-stats", "--json", home=rill_home).stdout)["size"] == 0


def test_q_list_models_on_an_auto_profile_names_its_targets(
    simt: SimulatorThread, rill_home: Path
) -> None:
    configure(rill_home, simt)
    result = q("--profile", "auto", "--list-models", home=rill_home)
    assert result.returncode == 2
    assert "'auto' is an Auto profile" in result.stderr and "(fast, strong)" in result.stderr
    assert simt.sim.requests == []


def test_on_a_terminal_the_escalated_answer_is_on_screen_once_with_the_verdicts(
    simt: SimulatorThread, rill_home: Path
) -> None:
    configure(rill_home, simt)
    code, output = q_on_terminal(["--profile", "auto", "hello there"], home=rill_home, cols=120)
    assert code == 0, output
    screen = Screen(cols=120, rows=200)
    screen.feed(output)
    lines = screen.text().splitlines()
    assert "q: auto: quality 3/10 — retrying with a stronger model" in lines
    assert "q: auto: quality 9/10" in lines
    small, large = (
        r for r in simt.chat_requests if r.json["messages"][0]["content"] == "hello there"
    )
    kept = _no_space(for_terminal(simt.sim.reply_text(large.json, "openai")))
    dropped = _no_space(for_terminal(simt.sim.reply_text(small.json, "openai")))
    flat = _no_space(screen.text())
    assert flat.count(kept) == 1 and dropped[:40] not in flat


def test_q_says_which_targets_it_skipped_and_why(simt: SimulatorThread, rill_home: Path) -> None:
    configure(rill_home, simt)
    path = rill_home / "config" / "config.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('provider = "openai"\nbase_url', 'provider = "anthropic"\nbase_url', 1),
        encoding="utf-8",
    )
    result = q("--profile", "auto", "hello there", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "q: auto: fast skipped: no API key (There is no API key for Anthropic" in result.stderr
    assert "q: auto: → sim-large, strong" in result.stderr


def test_q_no_log_escalates_without_recording(simt: SimulatorThread, rill_home: Path) -> None:
    configure(rill_home, simt)
    result = q("--profile", "auto", "--no-log", "--json", "hello there", home=rill_home)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "sim-large"
    assert [a["score"] for a in answer["route"]["attempts"]] == [3, 9]
    history = History(app_paths().history_db)
    try:
        assert history.list_conversations() == []
    finally:
        history.close()
