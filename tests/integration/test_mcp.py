"""The MCP client against real servers: ``mcp-server-time`` and the fault server, over stdio
(real processes) and Streamable HTTP (a real socket)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import keyring
import pytest

from desktop_app.core.config import Config, load_config
from desktop_app.core.secrets import Secrets
from desktop_app.core.tools.base import ABSOLUTE_CAP_FACTOR, ToolError
from desktop_app.core.tools.config import (
    KEYCHAIN_REF,
    ServerConfig,
    add_server,
    set_server_enabled,
    set_tool_policy,
)
from desktop_app.core.tools.mcp import STDERR_LINES, McpHost, ServerState
from desktop_app.core.tools.mcp import test_server as probe_server
from tests.mcp_servers import fault_server_config, running_http_fault_server, time_server_config
from tests.unit.test_secrets import MemoryKeyring

MakeConfig = Callable[..., Config]


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait for state in another process (a file it writes, a process it ends)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit_s} s")
        await asyncio.sleep(0.02)


def pid_of(state: Path) -> int:
    return int((state / "pid").read_text(encoding="utf-8"))


@pytest.fixture
async def host_for(mcp_config: MakeConfig) -> Callable[..., McpHost]:
    hosts: list[McpHost] = []

    def make(*servers: ServerConfig, secrets: Secrets | None = None) -> McpHost:
        host = McpHost(mcp_config(*servers), secrets=secrets)
        hosts.append(host)
        return host

    yield make  # type: ignore[misc]
    for host in hosts:
        await host.aclose()


# -- real servers ---------------------------------------------------------------------


async def test_mcp_server_time_lists_and_calls_get_current_time(
    host_for: Callable[..., McpHost],
) -> None:
    host = host_for(time_server_config())
    tools = {t.name: t for t in await host.list_tools()}
    assert "get_current_time" in tools
    assert tools["get_current_time"].server == "time"
    assert "timezone" in tools["get_current_time"].parameters["properties"]
    out = await host.call_tool("time", "get_current_time", {"timezone": "Europe/Paris"})
    assert not out.is_error
    assert "Europe/Paris" in out.text
    assert host.state("time").state == "ready"


async def test_stdio_lists_and_calls_text_errors_and_images(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig
) -> None:
    host = host_for(fault_stdio)
    names = {t.name for t in await host.list_tools()}
    assert {"echo", "fail", "hang", "progress", "crash", "image", "spawn_child"} <= names
    assert (await host.call_tool("fault", "echo", {"text": "héllo"})).text == "héllo"
    failed = await host.call_tool("fault", "fail", {"message": "no such file"})
    assert failed.is_error and "no such file" in failed.text
    image = await host.call_tool("fault", "image", {})
    assert image.text == "a red dot"
    assert [mime for mime, _ in image.images] == ["image/png"]
    assert image.images[0][1].startswith(b"\x89PNG")


async def test_streamable_http_lists_and_calls(
    host_for: Callable[..., McpHost], fault_http: ServerConfig
) -> None:
    host = host_for(fault_http)
    names = {t.name for t in await host.list_tools()}
    assert "echo" in names
    assert host.state("fault").transport == "http"
    assert (await host.call_tool("fault", "echo", {"text": "over http"})).text == "over http"
    failed = await host.call_tool("fault", "fail", {"message": "refused"})
    assert failed.is_error and "refused" in failed.text


async def test_http_progress_extends_the_timeout(
    host_for: Callable[..., McpHost], fault_http: ServerConfig
) -> None:
    host = host_for(replace(fault_http, timeout_s=1.0))
    seen: list[str | None] = []
    out = await host.call_tool(
        "fault",
        "progress",
        {"steps": 4, "interval_s": 0.4},
        on_progress=lambda _p, _t, message: seen.append(message),
    )
    assert out.text == "done after 4 steps"
    assert seen == ["1 of 4", "2 of 4", "3 of 4", "4 of 4"]


# -- timeouts and cancellation ------------------------------------------------------


async def test_a_hung_tool_times_out_and_the_server_is_told(
    host_for: Callable[..., McpHost], fault_state: Path
) -> None:
    host = host_for(fault_server_config(fault_state, timeout_s=0.5))
    await host.list_tools()
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"did not answer within 0\.5 s"):
        await host.call_tool("fault", "hang", {})
    assert time.monotonic() - started < 2.0
    await until(lambda: (fault_state / "cancelled").exists())
    # The server is still there for the next call.
    assert (await host.call_tool("fault", "echo", {"text": "still here"})).text == "still here"


async def test_progress_notifications_extend_the_timeout(
    host_for: Callable[..., McpHost], fault_state: Path
) -> None:
    host = host_for(fault_server_config(fault_state, timeout_s=1.0))
    progress: list[tuple[float, float | None, str | None]] = []
    started = time.monotonic()
    out = await host.call_tool(
        "fault",
        "progress",
        {"steps": 5, "interval_s": 0.4},
        on_progress=lambda *p: progress.append(p),
    )
    assert time.monotonic() - started > 2.0  # twice one timeout
    assert out.text == "done after 5 steps"
    assert progress[-1] == (5.0, 5.0, "5 of 5")
    assert len(progress) == 5


async def test_progress_does_not_extend_past_the_absolute_cap(
    host_for: Callable[..., McpHost], fault_state: Path
) -> None:
    timeout = 0.4
    host = host_for(fault_server_config(fault_state, timeout_s=timeout))
    await host.list_tools()
    started = time.monotonic()
    with pytest.raises(ToolError, match="the most any call may take"):
        await host.call_tool("fault", "progress", {"steps": 1000, "interval_s": 0.05})
    took = time.monotonic() - started
    assert timeout * ABSOLUTE_CAP_FACTOR - 0.1 < took < timeout * ABSOLUTE_CAP_FACTOR + 1.5


async def test_cancelling_the_caller_returns_at_once_and_sends_the_cancellation(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    host = host_for(replace(fault_stdio, timeout_s=60))
    call = asyncio.create_task(host.call_tool("fault", "hang", {}))
    await until(lambda: (fault_state / "hanging").exists())
    started = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - started < 1.0
    await until(lambda: (fault_state / "cancelled").exists(), 5)
    assert host.state("fault").state == "ready"


# -- a server that dies -----------------------------------------------------------------


async def test_a_server_that_crashes_mid_call_is_restarted_and_the_call_retried(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    host = host_for(fault_stdio)
    await host.list_tools()
    first = pid_of(fault_state)
    out = await host.call_tool("fault", "crash", {"times": 1})
    assert out.text == "survived"
    assert (fault_state / "crashes").read_text(encoding="utf-8") == "1"
    assert pid_of(fault_state) != first
    assert host.state("fault").state == "ready"


async def test_a_second_crash_is_a_tool_error_with_a_sentence(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    host = host_for(fault_stdio)
    with pytest.raises(ToolError, match="stopped twice while running crash"):
        await host.call_tool("fault", "crash", {"times": 2})
    assert (fault_state / "crashes").read_text(encoding="utf-8") == "2"
    state = host.state("fault")
    assert state.state == "failed"
    assert "stopped twice" in state.reason
    assert any("crashing (2 of 2)" in line for line in state.stderr)
    # The next call starts the server afresh.
    assert (await host.call_tool("fault", "echo", {"text": "back"})).text == "back"


async def test_a_server_killed_while_idle_shows_failed_and_restarts_on_the_next_call(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    host = host_for(fault_stdio)
    states: list[ServerState] = []
    host.add_listener(states.append)
    await host.list_tools()
    first = pid_of(fault_state)
    os.kill(first, signal.SIGKILL)
    await until(lambda: host.state("fault").state == "failed")
    assert "stopped" in host.state("fault").reason
    assert (await host.call_tool("fault", "echo", {"text": "again"})).text == "again"
    assert pid_of(fault_state) != first
    assert [s.state for s in states if s.state != "starting"][-1] == "ready"


async def test_aclose_kills_the_whole_process_group(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    host = host_for(fault_stdio)
    child = int((await host.call_tool("fault", "spawn_child", {})).text)
    server = pid_of(fault_state)
    assert alive(child) and alive(server)
    started = time.monotonic()
    await host.aclose()
    assert time.monotonic() - started < 6
    await until(lambda: not alive(server) and not alive(child), 5)
    assert host.state("fault").state == "off"
    with pytest.raises(ToolError, match="stopping"):
        await host.call_tool("fault", "echo", {"text": "x"})


async def test_changing_a_policy_or_turning_another_server_off_never_restarts_a_server(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig, fault_state: Path
) -> None:
    other = time_server_config()
    host = host_for(fault_stdio, other)
    config = host.config()
    await host.list_tools()
    pid = pid_of(fault_state)
    assert host.policy("fault", "echo") == "ask"
    set_tool_policy(config, "fault", "echo", "always")
    set_server_enabled(config, "time", False)
    assert host.policy("fault", "echo") == "always"
    assert load_config(config.path).mcp == config.mcp  # type: ignore[arg-type]
    tools = {(t.server, t.name): t for t in await host.list_tools()}
    assert tools[("fault", "echo")].policy == "always"
    assert not any(server == "time" for server, _ in tools)
    assert (await host.call_tool("fault", "echo", {"text": "same"})).text == "same"
    assert pid_of(fault_state) == pid


async def test_stderr_keeps_only_the_last_lines(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig
) -> None:
    host = host_for(fault_stdio)
    await host.call_tool("fault", "shout", {"lines": 50})
    await until(lambda: host.state("fault").stderr[-1:] == ("line 50",))
    assert len(host.state("fault").stderr) == STDERR_LINES


async def test_two_servers_with_the_same_tool_name(
    host_for: Callable[..., McpHost], tmp_path: Path
) -> None:
    a = fault_server_config(tmp_path / "a", name="a")
    b = fault_server_config(tmp_path / "b", name="b")
    host = host_for(a, b)
    echoes = [t.server for t in await host.list_tools() if t.name == "echo"]
    assert echoes == ["a", "b"]
    assert (await host.call_tool("b", "echo", {"text": "from b"})).text == "from b"
    assert pid_of(tmp_path / "a") != pid_of(tmp_path / "b")


# -- starting ---------------------------------------------------------------------------


async def test_a_server_that_cannot_start_says_why_with_its_stderr() -> None:
    code = "import sys; sys.stderr.write('missing --root\\n'); sys.exit(2)"
    state = await probe_server(ServerConfig("broken", command=sys.executable, args=("-c", code)))
    assert state.state == "failed"
    assert "broken" in state.reason
    assert state.stderr == ("missing --root",)


async def test_a_missing_command_is_a_sentence() -> None:
    state = await probe_server(ServerConfig("nothing", command="no-such-mcp-server-here"))
    assert state.state == "failed"
    assert state.reason == (
        "The command 'no-such-mcp-server-here' of the MCP server 'nothing' was not found."
    )


async def test_test_server_lists_the_tools_and_stops_the_server(
    fault_stdio: ServerConfig, fault_state: Path
) -> None:
    state = await probe_server(fault_stdio)
    assert state.state == "ready"
    assert "echo" in {t.name for t in state.tools}
    await until(lambda: not alive(pid_of(fault_state)), 5)


async def test_a_server_that_is_off_offers_no_tools(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig
) -> None:
    host = host_for(replace(fault_stdio, enabled=False))
    assert await host.list_tools() == []
    assert host.states()[0].state == "off"
    with pytest.raises(ToolError, match="turned off"):
        await host.call_tool("fault", "echo", {"text": "x"})


async def test_a_secret_env_value_comes_from_the_keychain(
    mcp_config: MakeConfig, fault_stdio: ServerConfig
) -> None:
    secrets = Secrets(backend=MemoryKeyring(), environ={})
    config = mcp_config()
    server = replace(fault_stdio, env={**fault_stdio.env, "SERVICE_API_TOKEN": "tok-123456789"})
    stored = add_server(config, server, secrets)
    assert stored.env["SERVICE_API_TOKEN"] == KEYCHAIN_REF
    assert "tok-123456789" not in config.path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    host = McpHost(load_config(config.path), secrets=secrets)  # type: ignore[arg-type]
    try:
        out = await host.call_tool("fault", "env", {"name": "SERVICE_API_TOKEN"})
        assert out.text == "tok-123456789"
        # The server does not inherit Rill's own environment beyond the basics.
        assert (await host.call_tool("fault", "env", {"name": "RILL_HOME"})).text == ""
    finally:
        await host.aclose()


async def test_a_secret_missing_from_the_keychain_fails_the_server_with_a_sentence(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig
) -> None:
    server = replace(fault_stdio, env={"SERVICE_API_TOKEN": KEYCHAIN_REF})
    host = host_for(server, secrets=Secrets(backend=MemoryKeyring(), environ={}))
    assert await host.list_tools() == []
    state = host.state("fault")
    assert state.state == "failed"
    assert "SERVICE_API_TOKEN" in state.reason and "keychain" in state.reason
    assert keyring.get_keyring() is not None


async def test_an_http_server_that_goes_away_is_a_tool_error_not_a_hang(
    host_for: Callable[..., McpHost], fault_state: Path
) -> None:
    with running_http_fault_server(fault_state) as server:
        host = host_for(server)
        assert (await host.call_tool("fault", "echo", {"text": "up"})).text == "up"
    started = time.monotonic()
    with pytest.raises(ToolError, match="Rill could not reach the MCP server 'fault' at http"):
        await host.call_tool("fault", "echo", {"text": "down"})
    assert time.monotonic() - started < 5
    assert host.state("fault").state == "failed"


async def test_a_server_that_never_answers_at_start_fails_in_time_and_is_killed(
    host_for: Callable[..., McpHost], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("desktop_app.core.tools.mcp.START_TIMEOUT_S", 1.5)
    marks = tmp_path / "pid"
    code = f"import os, time; open({str(marks)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    host = host_for(ServerConfig("mute", command=sys.executable, args=("-c", code), timeout_s=0.5))
    started = time.monotonic()
    assert await host.list_tools() == []
    assert time.monotonic() - started < 4
    assert host.state("mute").reason == "The MCP server 'mute' did not start within 1.5 s."
    await until(lambda: marks.exists() and not alive(int(marks.read_text(encoding="utf-8"))), 5)
    # The next turns do not wait for it again (for a while); starting it on purpose does.
    marks.unlink()
    started = time.monotonic()
    assert await host.list_tools() == []
    assert time.monotonic() - started < 0.2
    assert not marks.exists()
    await host.start()
    assert marks.exists()
    assert host.state("mute").state == "failed"
    # A server whose config changed is tried at once.
    config = host.config()
    config.mcp["servers"]["mute"]["timeout_s"] = 0.4
    marks.unlink()
    await host.list_tools()
    assert marks.exists()


async def test_apply_config_stops_servers_turned_off_or_changed_but_not_for_a_policy(
    host_for: Callable[..., McpHost], tmp_path: Path
) -> None:
    a = fault_server_config(tmp_path / "a", name="a")
    b = fault_server_config(tmp_path / "b", name="b")
    host = host_for(a, b)
    config = host.config()
    await host.list_tools()
    pid_a, pid_b = pid_of(tmp_path / "a"), pid_of(tmp_path / "b")
    set_tool_policy(config, "a", "echo", "never")
    set_server_enabled(config, "b", False)
    await host.apply_config()
    assert host.state("b").state == "off"
    await until(lambda: not alive(pid_b), 5)
    assert host.state("a").state == "ready" and alive(pid_a)
    assert pid_of(tmp_path / "a") == pid_a


async def test_lines_on_stdout_that_are_not_json_rpc_do_not_break_the_server(
    host_for: Callable[..., McpHost], fault_state: Path
) -> None:
    code = (
        "print('starting up...', flush=True); print('{not json', flush=True)\n"
        "from tests.mcp_servers.fault_server import main\n"
        f"main(['--state', {str(fault_state)!r}])"
    )
    server = fault_server_config(fault_state, args=("-c", code))
    host = host_for(server)
    assert (await host.call_tool("fault", "echo", {"text": "fine"})).text == "fine"


async def test_a_missing_working_folder_is_a_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    state = await probe_server(ServerConfig("w", command=sys.executable, cwd=str(folder)))
    assert state.reason == f"The working folder '{folder}' of the MCP server 'w' does not exist."


async def test_a_server_flooding_stderr_does_not_flood_the_listeners(
    host_for: Callable[..., McpHost], fault_stdio: ServerConfig
) -> None:
    host = host_for(fault_stdio)
    told: list[ServerState] = []
    await host.list_tools()
    host.add_listener(told.append)
    await host.call_tool("fault", "shout", {"lines": 2000})
    await until(lambda: bool(told) and told[-1].stderr[-1:] == ("line 2000",))
    assert len(told) < 50
    assert len(told[-1].stderr) == STDERR_LINES


async def test_cancelling_an_http_call_returns_at_once_and_the_server_stops_the_tool(
    host_for: Callable[..., McpHost], fault_http: ServerConfig, fault_state: Path
) -> None:
    host = host_for(replace(fault_http, timeout_s=60))
    call = asyncio.create_task(host.call_tool("fault", "hang", {}))
    await until(lambda: (fault_state / "hanging").exists())
    started = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - started < 1.0
    await until(lambda: (fault_state / "cancelled").exists(), 5)
    assert (await host.call_tool("fault", "echo", {"text": "next"})).text == "next"
