"""Turns with real MCP servers over real sockets, in each protocol: the fault server (a tool
that hangs, reports progress, crashes mid-call) and ``mcp-server-time`` from PyPI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.chat import ChatService, Services
from desktop_app.core.config import Config
from desktop_app.core.events import (
    Cancelled,
    Finished,
    StreamEvent,
    ToolCallStarted,
    ToolFailed,
    ToolProgress,
    ToolResult,
)
from desktop_app.core.paths import app_paths
from desktop_app.core.tools.config import ServerConfig
from desktop_app.core.tools.mcp import McpHost
from desktop_app.core.types import PROVIDERS, ProviderName
from desktop_app.simulator import Simulator
from tests.helpers import wait_until
from tests.mcp_servers import time_server_config


def _always(server: ServerConfig, *tools: str) -> ServerConfig:
    return replace(server, policies=dict.fromkeys(tools, "always"))


@pytest.fixture
async def open_services(
    rill_home: Path, mcp_config: Callable[..., Config]
) -> AsyncIterator[Callable[..., Services]]:
    opened: list[Services] = []

    def make(*servers: ServerConfig) -> Services:
        services = Services.open(
            config=mcp_config(*servers), paths=app_paths(rill_home), api_key=lambda _r: "k"
        )
        opened.append(services)
        return services

    yield make
    for services in opened:
        await services.aclose()


async def _ask(
    services: Services, sim: Simulator, provider: ProviderName, prompt: str
) -> list[StreamEvent]:
    turn = ChatService(services).send(
        prompt, provider=provider, base_url=sim.base_url(provider), model="sim-small"
    )
    return [event async for event in turn]


def _final_text(events: list[StreamEvent]) -> str:
    last = events[-1]
    assert isinstance(last, Finished), events[-3:]
    return last.response.content


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_mcp_server_time_answers_through_the_loop(
    sim: Simulator, open_services: Callable[..., Services], provider: ProviderName
) -> None:
    services = open_services(_always(time_server_config(), "get_current_time"))
    events = await _ask(
        services, sim, provider, 'call get_current_time with {"timezone": "Europe/Paris"}'
    )
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert (result.server, result.name, result.is_error) == ("time", "get_current_time", False)
    assert json.loads(result.content)["timezone"] == "Europe/Paris"
    assert _final_text(events).startswith(f"Tool get_current_time said: {result.content[:200]}")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_hanging_tool_times_out_and_the_model_reads_why(
    sim: Simulator,
    open_services: Callable[..., Services],
    fault_stdio: ServerConfig,
    provider: ProviderName,
) -> None:
    services = open_services(_always(replace(fault_stdio, timeout_s=1.0), "hang"))
    events = await _ask(services, sim, provider, "call hang with {}")
    (failed,) = [e for e in events if isinstance(e, ToolFailed)]
    assert failed.name == "hang" and 0.9 <= failed.duration_s < 10
    assert _final_text(events).startswith(f"Tool hang said: {failed.reason[:200]}")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_stops_a_hanging_mcp_call_and_the_server_is_told(
    sim: Simulator,
    open_services: Callable[..., Services],
    fault_stdio: ServerConfig,
    fault_state: Path,
    provider: ProviderName,
) -> None:
    services = open_services(_always(replace(fault_stdio, timeout_s=60.0), "hang"))
    turn = ChatService(services).send(
        "call hang with {}", provider=provider, base_url=sim.base_url(provider), model="m"
    )
    events: list[StreamEvent] = []
    async for event in turn:
        events.append(event)
        if isinstance(event, ToolCallStarted):
            asyncio.get_running_loop().call_later(0.5, turn.cancel)
    assert isinstance(events[-1], Cancelled)
    wait_until(lambda: (fault_state / "cancelled").exists(), timeout=10)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_progress_is_shown_and_keeps_a_slow_tool_alive(
    sim: Simulator,
    open_services: Callable[..., Services],
    fault_stdio: ServerConfig,
    provider: ProviderName,
) -> None:
    # five steps 0.4 s apart outlast the 1 s timeout only because each one extends it
    services = open_services(_always(replace(fault_stdio, timeout_s=1.0), "progress"))
    events = await _ask(
        services, sim, provider, 'call progress with {"steps": 5, "interval_s": 0.4}'
    )
    progress = [e for e in events if isinstance(e, ToolProgress)]
    assert [(p.progress, p.total, p.message) for p in progress] == [
        (k, 5, f"{k} of 5") for k in range(1, 6)
    ]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.content == "done after 5 steps" and result.duration_s > 1.5


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_server_that_crashes_mid_call_is_restarted_and_the_call_retried(
    sim: Simulator,
    open_services: Callable[..., Services],
    fault_stdio: ServerConfig,
    provider: ProviderName,
) -> None:
    services = open_services(_always(fault_stdio, "crash"))
    events = await _ask(services, sim, provider, 'call crash with {"times": 1}')
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.content == "survived"
    assert _final_text(events).startswith("Tool crash said: survived")
    host = services.tools
    assert isinstance(host, McpHost) and host.state("fault").state == "ready"


async def test_a_server_that_crashes_twice_is_a_tool_error(
    sim: Simulator, open_services: Callable[..., Services], fault_stdio: ServerConfig
) -> None:
    services = open_services(_always(fault_stdio, "crash"))
    events = await _ask(services, sim, "openai", 'call crash with {"times": 2}')
    (failed,) = [e for e in events if isinstance(e, ToolFailed)]
    assert failed.reason and not failed.denied
    assert _final_text(events).startswith(f"Tool crash said: {failed.reason[:200]}")
