"""The ``q`` command as a user runs it: a real process against the simulator."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_app.simulator import Fault, SimulatorThread
from tests.helpers import wait_until

PLANTED = "sk-test-PLANTED-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def q(
    *args: str,
    home: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RILL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "desktop_app.cli", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def base(sim: SimulatorThread, provider: str = "openai") -> list[str]:
    return ["--provider", provider, "--base-url", sim.base_url(provider)]


def expected_text(sim: SimulatorThread, index: int = -1, provider: str = "openai") -> str:
    record = sim.sim.chat_requests[index]
    return sim.sim.reply_text(record.json, provider)


@pytest.mark.parametrize("provider", ["openai", "ollama", "anthropic", "gemini"])
def test_streams_the_answer_and_exits_0(
    simt: SimulatorThread, rill_home: Path, provider: str
) -> None:
    env = {"ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"}
    result = q(
        *base(simt, provider),
        "--model",
        "sim-small",
        "Tell me about rivers",
        home=rill_home,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_text(simt, provider=provider) + "\n"
    assert result.stderr == ""


def test_no_stream_json_and_stdin(simt: SimulatorThread, rill_home: Path) -> None:
    result = q(
        *base(simt),
        "--no-stream",
        "--json",
        "--max-tokens",
        "9",
        home=rill_home,
        stdin="Summarise this\n",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["content"] == expected_text(simt)
    assert data["finish_reason"] == "length"
    assert data["raw_finish_reason"] == "length"
    assert data["usage"] == {
        "input_tokens": 2,
        "output_tokens": 9,
        "total_tokens": 11,
        "estimated": False,
    }
    assert set(data) >= {
        "content",
        "tool_calls",
        "model",
        "provider",
        "usage",
        "cost",
        "finish_reason",
        "raw_finish_reason",
        "trace_id",
        "timing",
        "cached",
    }
    assert data["timing"]["ttft_s"] > 0
    assert simt.sim.chat_requests[-1].json["messages"][-1]["content"] == "Summarise this\n"


def test_arguments_and_stdin_are_joined(simt: SimulatorThread, rill_home: Path) -> None:
    result = q(*base(simt), "Summarise:", home=rill_home, stdin="a long text")
    assert result.returncode == 0
    assert simt.sim.chat_requests[-1].json["messages"][-1]["content"] == "Summarise:\n\na long text"


def test_no_prompt_is_a_usage_error(rill_home: Path) -> None:
    result = q(home=rill_home)
    assert result.returncode == 2
    assert "no prompt" in result.stderr


def test_fatal_error_is_one_sentence_without_traceback(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(Fault(status=401))
    result = q(*base(simt), "hi", home=rill_home)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "The API key was rejected (401)" in lines[0]
    assert "Traceback" not in result.stderr


def test_dead_server(rill_home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = q(
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--set",
        "resilience.max_retries=0",
        "hi",
        home=rill_home,
    )
    assert result.returncode == 1
    assert f"Could not connect to the OpenAI server at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_retries_print_one_line_each_and_succeed(simt: SimulatorThread, rill_home: Path) -> None:
    simt.script(Fault(status=503), Fault(status=429, retry_after_ms=50))
    result = q(*base(simt), "--set", "resilience.base_delay_s=0.05", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert (
        lines[0].startswith("q: retrying in")
        and "(attempt 2 of 4)" in lines[0]
        and "(503)" in lines[0]
    )
    assert "(attempt 3 of 4)" in lines[1] and "429" in lines[1]
    assert result.stdout == expected_text(simt) + "\n"


def test_piped_stdout_holds_exactly_the_final_answer_after_a_restart(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(Fault(drop_after=20))
    result = q(*base(simt), "--set", "resilience.base_delay_s=0.01", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_text(simt) + "\n"
    assert "starting it again" in result.stderr


def test_set_overrides_config_and_bad_set_is_refused(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(Fault(status=503))
    result = q(*base(simt), "--set", "resilience.max_retries=0", "hi", home=rill_home)
    assert result.returncode == 1
    assert len(simt.sim.chat_requests) == 1
    bad = q(*base(simt), "--set", "resilience.max_retries=lots", "hi", home=rill_home)
    assert bad.returncode == 2
    assert "resilience.max_retries" in bad.stderr and "expected int" in bad.stderr


def test_broken_config_is_reported_and_defaults_used(
    simt: SimulatorThread, rill_home: Path
) -> None:
    config = rill_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[resilience]\nidle_timeout_s = "soon"\n')
    result = q(*base(simt), "hi", home=rill_home)
    assert result.returncode == 0
    assert f"{config}, line 2: resilience.idle_timeout_s" in result.stderr


def _history(home: Path) -> list[tuple[int, str, str, str]]:
    with sqlite3.connect(home / "data" / "history.sqlite3") as conn:
        return conn.execute(
            "SELECT conversation_id, role, status, content FROM messages ORDER BY id"
        ).fetchall()


def test_history_records_each_invocation_and_continue(
    simt: SimulatorThread, rill_home: Path
) -> None:
    assert q(*base(simt), "--max-tokens", "5", "first question", home=rill_home).returncode == 0
    assert q(*base(simt), "--max-tokens", "5", "second question", home=rill_home).returncode == 0
    assert q(*base(simt), "--max-tokens", "5", "-c", "follow up", home=rill_home).returncode == 0
    assert (
        q(
            *base(simt), "--max-tokens", "5", "--no-log", "secret question", home=rill_home
        ).returncode
        == 0
    )
    rows = _history(rill_home)
    assert [(r[1], r[2]) for r in rows] == [("user", "complete"), ("assistant", "complete")] * 3
    conversations = [r[0] for r in rows]
    assert conversations[0] != conversations[2] == conversations[4]
    assert all("secret" not in r[3] for r in rows)
    sent = simt.sim.chat_requests[2].json["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["second question", "follow up"]


def test_cache_serves_a_repeated_question_and_no_cache_skips_it(
    simt: SimulatorThread, rill_home: Path
) -> None:
    first = q(*base(simt), "--json", "same question", home=rill_home)
    second = q(*base(simt), "--json", "same question", home=rill_home)
    assert json.loads(second.stdout)["cached"] is True
    assert json.loads(second.stdout)["content"] == json.loads(first.stdout)["content"]
    assert len(simt.sim.chat_requests) == 1
    third = q(*base(simt), "--json", "--no-cache", "same question", home=rill_home)
    assert json.loads(third.stdout)["cached"] is False
    assert len(simt.sim.chat_requests) == 2
    stats = q("--cache-stats", home=rill_home)
    assert "hits:      1" in stats.stdout
    cleared = q("--clear-cache", home=rill_home)
    assert "1 answers removed" in cleared.stdout


def test_debug_shows_attempts_and_never_the_key(simt: SimulatorThread, rill_home: Path) -> None:
    simt.script(Fault(status=503, message=f"echo {PLANTED} back"))
    env = {"OPENAI_API_KEY": PLANTED}
    result = q(
        *base(simt),
        "--debug",
        "--set",
        "resilience.base_delay_s=0.01",
        "hi",
        home=rill_home,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "attempt 1: POST" in result.stderr and "-> 503" in result.stderr
    assert "attempt 2: POST" in result.stderr and "-> 200" in result.stderr
    assert simt.sim.chat_requests[-1].headers["authorization"] == f"Bearer {PLANTED}"
    assert PLANTED not in result.stderr + result.stdout
    for path in rill_home.rglob("*"):
        if path.is_file():
            assert PLANTED.encode() not in path.read_bytes(), path


def test_ctrl_c_keeps_the_partial_closes_the_request_and_exits_130(rill_home: Path) -> None:
    with SimulatorThread(tokens_per_s=40) as sim:
        env = {**os.environ, "RILL_HOME": str(rill_home)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "desktop_app.cli",
                *base(sim),
                "--debug",
                "Tell me a long story",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_until(
                lambda: bool(sim.sim.chat_requests) and sim.sim.chat_requests[-1].tokens_sent >= 10
            )
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
        sim.wait_for_disconnect(timeout=2)
        assert proc.returncode == 130, err
        assert "cancelled" in err
        assert out.strip()
        full = sim.sim.reply_text(sim.sim.chat_requests[-1].json, "openai")
        assert full.startswith(out.rstrip("\n"))
        assert len(out.rstrip("\n")) < len(full)
        record: Any = sim.sim.chat_requests[-1]
        assert not record.completed
    rows = _history(rill_home)
    assert rows[-1][1:3] == ("assistant", "cancelled")
    assert rows[-1][3] == out.rstrip("\n")


def test_kill_9_mid_stream_leaves_the_reply_in_history_marked_interrupted(rill_home: Path) -> None:
    with SimulatorThread(tokens_per_s=40) as sim:
        env = {**os.environ, "RILL_HOME": str(rill_home)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "desktop_app.cli", *base(sim), "Tell me a long story"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            db = rill_home / "data" / "history.sqlite3"

            def streamed_something() -> bool:
                if not db.exists():
                    return False
                try:
                    rows = _history(rill_home)
                except sqlite3.Error:
                    return False
                return len(rows) == 2 and len(rows[1][3]) > 20

            wait_until(streamed_something, timeout=10)
            sent_before_kill = sim.sim.chat_requests[-1].tokens_sent
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=5)
        finally:
            proc.kill()
        full = sim.sim.reply_text(sim.sim.chat_requests[-1].json, "openai")
    # the next start (here: the next q) finds the reply and marks it interrupted
    from desktop_app.core.history import History

    with History(rill_home / "data" / "history.sqlite3") as history:
        messages = history.messages(history.latest_conversation().id)  # type: ignore[union-attr]
    reply = messages[-1]
    assert reply.status == "interrupted"
    assert reply.content and full.startswith(reply.content)
    assert sent_before_kill > 0


def test_costs_are_recorded_and_the_budget_refuses_before_sending(
    simt: SimulatorThread, rill_home: Path
) -> None:
    budget = ["--set", "budget.monthly_usd=0.000001"]
    # the simulator is on this computer, so only a profile's own prices make it cost
    budget += ["--set", "profiles.default.price_input_per_mtok=2.5"]
    first = q(
        *base(simt), "--model", "gpt-4o", *budget, "--json", "priced question", home=rill_home
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["cost"] > 0
    second = q(*base(simt), "--model", "gpt-4o", *budget, "another question", home=rill_home)
    assert second.returncode == 1
    assert "has reached the monthly budget" in second.stderr
    assert len(simt.sim.chat_requests) == 1  # refused before anything was sent
    report = q("--usage", home=rill_home)
    assert report.returncode == 0
    assert "gpt-4o" in report.stdout
    assert "$0.000001" in report.stdout or "budget" in report.stdout.lower()


def test_unknown_model_cost_is_unknown_not_zero(simt: SimulatorThread, rill_home: Path) -> None:
    # reached as a server elsewhere (the simulator as the proxy): one on this computer is free
    far = ["--provider", "openai", "--base-url", "http://api.priced.example/v1"]
    proxy = {"HTTP_PROXY": simt.url, "http_proxy": simt.url, "NO_PROXY": "", "no_proxy": ""}
    hi = ["--model", "mystery-model-9000", "--json", "hi"]
    result = q(*far, *hi, home=rill_home, env=proxy)
    assert json.loads(result.stdout)["cost"] is None
    report = q("--usage", home=rill_home)
    assert "unknown" in report.stdout


def test_history_list_search_export_import(simt: SimulatorThread, rill_home: Path) -> None:
    assert (
        q(*base(simt), "--max-tokens", "5", "Where do rivers begin?", home=rill_home).returncode
        == 0
    )
    listing = q("--history", home=rill_home)
    assert "Where do rivers begin?" in listing.stdout
    conversation_id = listing.stdout.split()[0]
    found = q("--search", "rivers", home=rill_home)
    assert "[rivers]" in found.stdout
    markdown = q("--export", conversation_id, home=rill_home)
    assert "Where do rivers begin?" in markdown.stdout
    exported = q("--export", conversation_id, "--format", "json", home=rill_home)
    path = rill_home / "export.json"
    path.write_text(exported.stdout)
    imported = q("--import", str(path), home=rill_home)
    assert imported.returncode == 0 and "Imported as conversation" in imported.stdout
    assert q("--history", home=rill_home).stdout.count("Where do rivers begin?") == 2
    missing = q("--export", "999", home=rill_home)
    assert missing.returncode == 1 and "no conversation 999" in missing.stderr
    bad = rill_home / "bad.json"
    bad.write_text("{not json")
    refused = q("--import", str(bad), home=rill_home)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr


def test_a_history_from_an_earlier_version_is_updated_with_a_note(
    simt: SimulatorThread, rill_home: Path
) -> None:
    data = rill_home / "data"
    data.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "history_v7.sqlite3", data / "history.sqlite3")
    result = q("--search", "bri", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "updating the conversation history for this version of Rill" in result.stderr
    again = q("--history", home=rill_home)
    assert again.returncode == 0
    assert "updating" not in again.stderr


def test_corrupt_history_and_cache_are_set_aside_with_a_message(
    simt: SimulatorThread, rill_home: Path
) -> None:
    data = rill_home / "data"
    (data / "response-cache").mkdir(parents=True)
    (data / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    (data / "response-cache" / "cache.db").write_bytes(b"garbage" * 100)
    result = q(*base(simt), "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "conversation history could not be opened" in result.stderr
    assert "cache" in result.stderr.split("history.sqlite3.corrupt-")[1]
    assert "history.sqlite3.corrupt-" in result.stderr
    assert any(p.name.startswith("history.sqlite3.corrupt-") for p in data.iterdir())
    again = q(*base(simt), "hi", home=rill_home)
    assert again.returncode == 0
    assert "could not be opened" not in again.stderr


def test_fallback_to_another_profile_on_another_provider(
    simt: SimulatorThread, rill_home: Path
) -> None:
    config = rill_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        'default_profile = "main"\n'
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
    simt.script(Fault(protocol="openai", status=503), Fault(protocol="openai", status=503))
    result = q(
        "--set",
        "resilience.max_retries=1",
        "--set",
        "resilience.base_delay_s=0.01",
        "--json",
        "hi",
        home=rill_home,
        env={"ANTHROPIC_API_KEY": "k"},
    )
    assert result.returncode == 0, result.stderr
    assert "falling back from sim-large to sim-small" in result.stderr
    assert [r.protocol for r in simt.sim.chat_requests] == ["openai", "openai", "anthropic"]
    assert json.loads(result.stdout)["provider"] == "anthropic"
