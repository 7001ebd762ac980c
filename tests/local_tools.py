"""Tools run in the test process, for the tool loop's tests (a ToolHost and an Approver)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from desktop_app.core.tools.base import Decision, Policy, ProgressCallback, ToolInfo, ToolOutput

Handler = Callable[[dict[str, Any], ProgressCallback | None], Awaitable[ToolOutput]]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}


async def echo(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
    return ToolOutput(str(args.get("text", "")))


class LocalHost:
    """Tools run in this process: each a coroutine; every call is counted."""

    def __init__(
        self, handlers: dict[str, Handler], policies: dict[str, Policy] | None = None
    ) -> None:
        self.handlers = handlers
        self.policies = policies or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.running = 0
        self.most_running = 0
        self.cancelled: list[str] = []

    async def list_tools(self, servers: Collection[str] | None = None) -> list[ToolInfo]:
        return [ToolInfo("local", name, f"The {name} tool", SCHEMA) for name in self.handlers]

    async def call_tool(
        self,
        server: str,
        name: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> ToolOutput:
        self.calls.append((name, arguments))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            return await self.handlers[name](arguments, on_progress)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.running -= 1

    def policy(self, server: str, name: str) -> Policy:
        return self.policies.get(name, "always")

    async def aclose(self) -> None:
        return None


class Answers:
    """An approver that answers from a list and remembers what it was asked."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.asked: list[str] = []

    async def __call__(self, info: ToolInfo, arguments: str) -> Decision:
        self.asked.append(info.name)
        return self.decisions.pop(0)


def results_sent(provider: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(call id or name, text) of the tool results a request carries, read the way the
    provider's API reads them."""
    if provider == "openai":
        return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m["role"] == "tool"]
    if provider == "ollama":
        return [(m["tool_name"], m["content"]) for m in body["messages"] if m["role"] == "tool"]
    if provider == "anthropic":
        last = body["messages"][-1]
        assert last["role"] == "user"
        return [(b["tool_use_id"], b["content"]) for b in last["content"]]
    parts = body["contents"][-1]["parts"]
    return [
        (p["functionResponse"]["name"], p["functionResponse"]["response"]["result"]) for p in parts
    ]
