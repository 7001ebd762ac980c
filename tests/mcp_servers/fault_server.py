"""An MCP server for tests, written with the ``mcp`` SDK, whose tools misbehave on request.

Run it over stdio (the default) or Streamable HTTP::

    python -m tests.mcp_servers.fault_server --state DIR
    python -m tests.mcp_servers.fault_server --state DIR --http PORT   # http://127.0.0.1:PORT/mcp

``DIR`` is a folder the server writes its marks to, so a test can see what happened inside
the server (and a restarted server can know what its predecessor did). At start it writes
one line, ``fault server ready``, to stderr, and its process id to ``DIR/pid``.

Tools:

- ``echo(text)``: returns ``text``.
- ``fail(message)``: a tool error (``isError``) whose text is ``message``.
- ``hang()``: never returns. It writes ``DIR/hanging`` when it starts and, when the client
  cancels the call (the MCP cancellation notification), ``DIR/cancelled``.
- ``progress(steps, interval_s)``: sends ``steps`` progress notifications (``k of steps``),
  ``interval_s`` apart, then returns ``done after N steps``.
- ``crash(times)``: the process exits mid-call (status 3) as long as fewer than ``times``
  crashes are counted in ``DIR/crashes``; after that it returns ``survived``. ``times=1``:
  the first call crashes, a retry on the restarted server succeeds; ``times=2``: the retry
  crashes too.
- ``image()``: one text block, ``a red dot``, and a small PNG image.
- ``spawn_child()``: starts a grandchild process that sleeps for ten minutes and returns its
  process id (also written to ``DIR/child``), to prove that stopping the server stops it too.
- ``env(name)``: the value of the environment variable ``name`` in the server (empty if unset).
- ``shout(lines)``: writes ``lines`` numbered lines (``line 1`` …) to stderr, returns ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image

RED_DOT_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def build(state: Path) -> MCPServer:
    server = MCPServer("rill-fault", version="1.0", log_level="WARNING")

    @server.tool(description="Return the text unchanged.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Fail with a tool error.")
    def fail(message: str = "the tool failed") -> str:
        raise ToolError(message)

    @server.tool(description="Never return.")
    async def hang() -> str:
        (state / "hanging").write_text("hanging", encoding="utf-8")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            (state / "cancelled").write_text("cancelled", encoding="utf-8")
            raise
        return "woke up"

    @server.tool(description="Report progress, then finish.")
    async def progress(ctx: Context, steps: int = 3, interval_s: float = 0.1) -> str:
        for k in range(1, steps + 1):
            await asyncio.sleep(interval_s)
            await ctx.report_progress(k, steps, f"{k} of {steps}")
        return f"done after {steps} steps"

    @server.tool(description="Exit the process mid-call, a given number of times.")
    def crash(times: int = 1) -> str:
        marks = state / "crashes"
        count = int(marks.read_text(encoding="utf-8")) if marks.exists() else 0
        if count < times:
            marks.write_text(str(count + 1), encoding="utf-8")
            sys.stderr.write(f"crashing ({count + 1} of {times})\n")
            sys.stderr.flush()
            os._exit(3)
        return "survived"

    @server.tool(description="Return a small image.", structured_output=False)
    def image() -> list[object]:
        return ["a red dot", Image(data=RED_DOT_PNG, format="png")]

    @server.tool(description="Start a grandchild process that sleeps.")
    def spawn_child() -> str:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (state / "child").write_text(str(child.pid), encoding="utf-8")
        return str(child.pid)

    @server.tool(description="Read an environment variable.")
    def env(name: str) -> str:
        return os.environ.get(name, "")

    @server.tool(description="Write numbered lines to stderr.")
    def shout(lines: int = 1) -> str:
        for k in range(1, lines + 1):
            sys.stderr.write(f"line {k}\n")
        sys.stderr.flush()
        return "ok"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--http", type=int, default=None, help="serve Streamable HTTP on this port")
    args = parser.parse_args(argv)
    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True)
    (state / "pid").write_text(str(os.getpid()), encoding="utf-8")
    sys.stderr.write("fault server ready\n")
    sys.stderr.flush()
    server = build(state)
    if args.http is None:
        asyncio.run(server.run_stdio_async())
    else:
        asyncio.run(server.run_streamable_http_async(host="127.0.0.1", port=args.http))


if __name__ == "__main__":
    main()
