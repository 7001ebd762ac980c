"""Rill's MCP client against a server nobody here wrote in another language:
``@modelcontextprotocol/server-everything`` from npm (the reference server of the MCP
project, in TypeScript), over stdio, on its own and through a whole turn.

The package is installed with npm into the session's temporary folder; without node and
npm the tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.chat import ChatService, Services
from desktop_app.core.config import Config
from desktop_app.core.events import Finished, StreamEvent, ToolProgress, ToolResult
from desktop_app.core.paths import app_paths
from desktop_app.core.tools.config import ServerConfig
from desktop_app.core.tools.mcp import McpHost
from desktop_app.core.types import PROVIDERS, ProviderName
from desktop_app.simulator import Simulator

PACKAGE = "@modelcontextprotocol/server-everything"


@pytest.fixture(scope="session")
def everything_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("node and npm are needed to install the reference MCP server")
    prefix = tmp_path_factory.mktemp("npm")
    done = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), PACKAGE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    executable = prefix / "node_modules" / ".bin" / "mcp-server-everything"
    if done.returncode != 0 or not executable.exists():
        pytest.skip(f"npm could not install {PACKAGE}: {done.stderr.strip()[-400:]}")
    return executable


@pytest.fixture
def everything(everything_bin: Path) -> ServerConfig:
    return ServerConfig(name="everything", command=str(everything_bin), args=("stdio",))


@pytest.fixture
async def host(
    everything: ServerConfig, mcp_config: Callable[..., Config]
) -> AsyncIterator[Callable[..., McpHost]]:
    hosts: list[McpHost] = []

    def make(server: ServerConfig = everything) -> McpHost:
        hosts.append(McpHost(mcp_config(server)))
        return hosts[-1]

    yield make
    for made in hosts:
        await made.aclose()


async def test_its_tools_are_listed_with_descriptions_and_schemas(
    host: Callable[..., McpHost],
) -> None:
    tools = {tool.name: tool for tool in await host().list_tools()}
    assert {"echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"} <= set(tools)
    assert tools["echo"].description
    assert tools["get-sum"].parameters["properties"].keys() >= {"a", "b"}
    assert {tool.server for tool in tools.values()} == {"everything"}


async def test_calls_return_its_text_and_its_image(host: Callable[..., McpHost]) -> None:
    tools = host()
    echoed = await tools.call_tool("everything", "echo", {"message": "héllo ✓"})
    assert (echoed.text, echoed.is_error) == ("Echo: héllo ✓", False)
    total = await tools.call_tool("everything", "get-sum", {"a": 2, "b": 40})
    assert "42" in total.text
    image = await tools.call_tool("everything", "get-tiny-image", {})
    ((mime, data),) = image.images
    assert mime == "image/png" and data.startswith(b"\x89PNG\r\n\x1a\n")


async def test_its_progress_notifications_extend_the_timeout(
    host: Callable[..., McpHost], everything: ServerConfig
) -> None:
    """Three steps of 0.6 s each outlast a 1 s timeout only because each step reports."""
    tools = host(replace(everything, timeout_s=1.0))
    seen: list[tuple[float, float | None]] = []
    output = await tools.call_tool(
        "everything",
        "trigger-long-running-operation",
        {"duration": 1.8, "steps": 3},
        on_progress=lambda progress, total, _message: seen.append((progress, total)),
    )
    assert "completed" in output.text and not output.is_error
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def test_cancelling_a_call_returns_at_once_and_the_server_keeps_serving(
    host: Callable[..., McpHost],
) -> None:
    tools = host()
    running = asyncio.Event()
    call = asyncio.create_task(
        tools.call_tool(
            "everything",
            "trigger-long-running-operation",
            {"duration": 60, "steps": 120},
            on_progress=lambda *_: running.set(),
        )
    )
    async with asyncio.timeout(10):
        await running.wait()  # the server reported its first step; then Esc
    call.cancel()
    async with asyncio.timeout(2):
        with pytest.raises(asyncio.CancelledError):
            await call
    echoed = await tools.call_tool("everything", "echo", {"message": "still here"})
    assert echoed.text == "Echo: still here"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_whole_turn_calls_it_and_the_model_reads_the_result(
    sim: Simulator,
    rill_home: Path,
    everything: ServerConfig,
    mcp_config: Callable[..., Config],
    provider: ProviderName,
) -> None:
    server = replace(everything, policies={"get-sum": "always"})
    services = Services.open(
        config=mcp_config(server), paths=app_paths(rill_home), api_key=lambda _r: "k"
    )
    try:
        turn = ChatService(services).send(
            'call get-sum with {"a": 19, "b": 23}',
            provider=provider,
            base_url=sim.base_url(provider),
            model="sim-small",
        )
        events: list[StreamEvent] = [event async for event in turn]
    finally:
        await services.aclose()
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.server, result.name, result.is_error) == ("everything", "get-sum", False)
    assert "42" in result.content
    assert not [e for e in events if isinstance(e, ToolProgress)]
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.response.content.startswith(f"Tool get-sum said: {result.content[:200]}")
