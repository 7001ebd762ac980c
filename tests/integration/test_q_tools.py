"""``q`` with tools, as a user runs it: a real process, the simulator, real MCP servers."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.config import Config, load_config, save_config
from desktop_app.core.paths import app_paths
from desktop_app.core.tools.config import ServerConfig, server_config
from desktop_app.core.tools.loop import DECLINED
from desktop_app.simulator import SimulatorThread
from tests.integration.test_cli import base, q
from tests.mcp_servers import time_server_config


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def _configure(mcp_config: Callable[..., Config], *servers: ServerConfig) -> None:
    """Write the config file ``q`` reads, holding ``servers``."""
    save_config(mcp_config(*servers))


def _tool_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("q: tool ")]


def test_list_tools_shows_each_server_and_its_tools(
    rill_home: Path, mcp_config: Callable[..., Config], fault_stdio: ServerConfig
) -> None:
    broken = ServerConfig(name="broken", command=str(rill_home / "no-such-program"))
    _configure(
        mcp_config, replace(fault_stdio, policies={"echo": "always"}), time_server_config(), broken
    )
    result = q("--list-tools", home=rill_home)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    fault_tools = [line for line in lines if line.startswith("  fault/")]
    assert lines[0] == f"fault\tready\t{len(fault_tools)} tools" and len(fault_tools) > 5
    assert "  fault/echo\talways\tReturn the text unchanged." in lines
    assert "  fault/hang\task\tNever return." in lines
    assert "time\tready\t2 tools" in lines
    assert any(line.startswith("  time/get_current_time\task\t") for line in lines)
    (failed,) = [line for line in lines if line.startswith("broken\t")]
    assert failed.startswith("broken\tfailed\t0 tools  ") and "no-such-program" in failed


def test_list_tools_without_servers_says_how_to_add_one(rill_home: Path) -> None:
    result = q("--list-tools", home=rill_home)
    assert result.returncode == 0
    assert (
        result.stdout == "No MCP servers are configured (add [mcp.servers.NAME] to the config).\n"
    )


def test_a_tool_call_runs_and_json_lists_it(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    _configure(mcp_config, replace(fault_stdio, policies={"echo": "always"}))
    result = q(*base(simt), "--json", 'call echo with {"text": "from q"}', home=rill_home)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["content"].startswith("Tool echo said: from q")
    (call,) = shown["tool_calls_run"]
    assert {k: call[k] for k in ("server", "tool", "arguments", "ok", "result")} == {
        "server": "fault",
        "tool": "echo",
        "arguments": {"text": "from q"},
        "ok": True,
        "result": "from q",
    }
    assert 0 <= call["duration_s"] < 30
    (line,) = _tool_lines(result.stderr)
    assert line.startswith("q: tool fault/echo: ok in ") and line.endswith(": from q")


def test_without_a_terminal_calls_needing_approval_are_denied_unless_yes(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    _configure(mcp_config, fault_stdio)  # every tool: ask
    denied = q(*base(simt), "--json", 'call echo with {"text": "x"}', home=rill_home)
    assert denied.returncode == 0, denied.stderr
    (call,) = json.loads(denied.stdout)["tool_calls_run"]
    assert (call["ok"], call["result"]) == (False, DECLINED)
    assert _tool_lines(denied.stderr) == ["q: tool fault/echo: declined."]
    assert "q: fault/echo asks for approval and there is no terminal to ask on; --yes " in (
        denied.stderr
    )

    allowed = q(*base(simt), "--json", "--yes", 'call echo with {"text": "x"}', home=rill_home)
    assert allowed.returncode == 0, allowed.stderr
    (call,) = json.loads(allowed.stdout)["tool_calls_run"]
    assert (call["ok"], call["result"]) == (True, "x")
    # --yes allows once: nothing is saved as "always"
    saved = server_config(load_config(app_paths(rill_home).config_file), "fault")
    assert saved is not None and saved.policy("echo") == "ask"


def test_tool_errors_are_one_line_each_and_the_answer_goes_on(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    _configure(mcp_config, replace(fault_stdio, policies={"fail": "always", "echo": "never"}))
    prompt = 'call fail with {"message": "disk on fire"} and call echo with {"text": "y"}'
    result = q(*base(simt), prompt, home=rill_home)

    assert result.returncode == 0, result.stderr
    # each line as its call ends: the refused one at once, the failing one when it is done
    never, error = _tool_lines(result.stderr)
    assert never == "q: tool fault/echo: failed: This tool is set never to run."
    assert error.startswith("q: tool fault/fail: error in ") and "disk on fire" in error
    assert result.stdout.startswith(
        "Tool fail said: Error executing tool fail: disk on fire\n\n"
        "Tool echo said: This tool is set never to run.\n\n"
    )


def test_a_tools_hostile_result_never_reaches_the_terminal_as_control(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    """A result carrying a title-setting OSC, a colour and a bell is shown, never obeyed."""
    _configure(mcp_config, replace(fault_stdio, policies={"echo": "always"}))
    hostile = "\\u001b]0;pwned\\u0007\\u001b[31mred\\u001b[0m <b>bold</b>"
    result = q(*base(simt), f'call echo with {{"text": "{hostile}"}}', home=rill_home)

    assert result.returncode == 0, result.stderr
    (line,) = _tool_lines(result.stderr)
    for shown in (line, result.stdout):
        assert "\x1b" not in shown and "\x07" not in shown
        assert "pwned" in shown and "red" in shown and "<b>bold</b>" in shown


def test_a_server_that_cannot_start_is_named_and_the_answer_comes_without_it(
    simt: SimulatorThread, rill_home: Path, mcp_config: Callable[..., Config]
) -> None:
    _configure(mcp_config, ServerConfig(name="broken", command=str(rill_home / "missing")))
    result = q(*base(simt), "Tell me about rivers", home=rill_home)

    assert result.returncode == 0, result.stderr
    assert result.stdout == simt.sim.reply_text(simt.sim.chat_requests[-1].json, "openai") + "\n"
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("q: tool server ")]
    assert line.startswith("q: tool server broken failed: ") and "missing" in line


def test_tools_none_offers_no_tools_and_unknown_servers_are_refused(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    _configure(mcp_config, replace(fault_stdio, policies={"echo": "always"}))
    result = q(*base(simt), "--tools", "none", 'call echo with {"text": "x"}', home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "tools" not in simt.sim.chat_requests[-1].json
    assert _tool_lines(result.stderr) == []

    chosen = q(*base(simt), "--tools", "fault", 'call echo with {"text": "x"}', home=rill_home)
    assert chosen.returncode == 0 and chosen.stdout.startswith("Tool echo said: x")

    unknown = q(*base(simt), "--tools", "fault,nope", "hi", home=rill_home)
    assert unknown.returncode == 2
    assert "no MCP server named 'nope' in the config (its servers: fault)" in unknown.stderr


QUESTION = b'q: run fault/echo {"text":"t"}? [y]es once, [a]lways, [n]o: '


def _q_on_a_terminal(
    simt: SimulatorThread, home: Path, answer: Callable[[int, subprocess.Popen[bytes]], None]
) -> tuple[int, str]:
    """Run q on a pty; when it asks about the call, ``answer`` (given the pty's master side
    and the process) replies. Returns the exit status and everything q showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *base(simt), 'call echo with {"text": "t"}'],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "RILL_HOME": str(home), "TERM": "dumb"},
        close_fds=True,
    )
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while QUESTION not in screen and time.monotonic() < deadline:
            screen += _read(master, deadline)
        assert QUESTION in screen, screen
        answer(master, process)
        while process.poll() is None and time.monotonic() < deadline:
            screen += _read(master, deadline)
        screen += _read(master, time.monotonic() + 0.2)
        return process.wait(5), screen.decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
@pytest.mark.parametrize(("answer", "outcome"), [("y", "ok"), ("a", "ok"), ("n", "declined")])
def test_on_a_terminal_each_call_needing_approval_is_asked_on_one_line(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
    answer: str,
    outcome: str,
) -> None:
    _configure(mcp_config, fault_stdio)  # every tool: ask
    code, text = _q_on_a_terminal(
        simt, rill_home, lambda master, _: os.write(master, answer.encode() + b"\n")
    )
    assert code == 0, text
    assert text.count("[y]es once, [a]lways, [n]o:") == 1
    if outcome == "ok":
        assert "q: tool fault/echo: ok in " in text and "Tool echo said: t" in text
    else:
        assert "q: tool fault/echo: declined." in text
    saved = server_config(load_config(app_paths(rill_home).config_file), "fault")
    assert saved is not None
    assert saved.policy("echo") == ("always" if answer == "a" else "ask")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_ctrl_c_at_the_question_cancels_the_turn(
    simt: SimulatorThread,
    rill_home: Path,
    mcp_config: Callable[..., Config],
    fault_stdio: ServerConfig,
) -> None:
    _configure(mcp_config, fault_stdio)

    def interrupt(_: int, process: subprocess.Popen[bytes]) -> None:
        # let q finish writing the question: Ctrl+C during a write abandons the terminal
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)

    code, text = _q_on_a_terminal(simt, rill_home, interrupt)
    assert code == 130, text
    assert "[n]o: \r\nq: cancelled." in text
    assert "q: tool" not in text and len(simt.sim.chat_requests) == 1


def _read(fd: int, deadline: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # the other side closed
        return b""
