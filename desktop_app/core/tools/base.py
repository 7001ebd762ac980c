"""What the tool loop, the MCP client and the two front ends agree on.

The loop (:mod:`desktop_app.core.tools.loop`) sees tools only through a :class:`ToolHost`
and asks the user only through an :class:`Approver`; the MCP client implements the first,
``q`` and the window each implement the second.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from desktop_app.core.errors import RillError
from desktop_app.core.types import Tool

Policy = Literal["ask", "always", "never"]
POLICIES: tuple[Policy, ...] = ("ask", "always", "never")
Decision = Literal["once", "always", "deny"]

DEFAULT_TIMEOUT_S = 60.0
"""Per-request timeout of a server; each progress notification starts it again."""
ABSOLUTE_CAP_FACTOR = 10
"""However much progress a call reports, it ends after this many timeouts."""
DEFAULT_MAX_ROUNDS = 10
RESULT_LIMIT_CHARS = 100_000
"""The most of a tool's text result kept and sent to the model."""


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One tool of one server, as the model and the user see it."""

    server: str
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    policy: Policy = "ask"

    def as_tool(self, exposed_name: str | None = None) -> Tool:
        """The definition sent to the model (``exposed_name`` when two servers share a name)."""
        return Tool(exposed_name or self.name, self.description, self.parameters)


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What one call returned: its text (every text block, joined), whether the tool marked
    it an error, and its images as (MIME type, bytes)."""

    text: str
    is_error: bool = False
    images: tuple[tuple[str, bytes], ...] = ()


class ToolError(RillError):
    """A call produced no result (timeout, a server that failed twice, a closed server).

    Its message is the sentence the model receives as the tool's error and the user reads.
    """


ProgressCallback = Callable[[float, float | None, str | None], None]
"""(progress, total, message) of an MCP progress notification."""


class ToolHost(Protocol):
    """The tools Rill can run (the MCP servers of the config)."""

    async def list_tools(self, servers: Collection[str] | None = None) -> list[ToolInfo]:
        """Tools of the enabled servers (of ``servers`` only, when given), starting any server
        not yet running. A server that cannot start contributes no tools (its state says why)."""
        ...

    async def call_tool(
        self,
        server: str,
        name: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> ToolOutput:
        """Run one tool. Raises :class:`ToolError` when there is no result; cancelling the
        awaiting task cancels the call (the server is told)."""
        ...

    def policy(self, server: str, name: str) -> Policy:
        """The tool's policy now (read on every call; changing it never restarts a server)."""
        ...

    async def aclose(self) -> None:
        """Stop every server (whole process groups; no orphans)."""
        ...


class Approver(Protocol):
    """Asks the user about one call whose policy is "ask"."""

    async def __call__(self, info: ToolInfo, arguments: str) -> Decision: ...


NEVER = "This tool is set never to run."
STOPPED = "The tool call was stopped."


async def deny_all(info: ToolInfo, arguments: str) -> Decision:
    """The approver where there is no one to ask: every call that needs approval is denied."""
    return "deny"
