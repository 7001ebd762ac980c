"""The MCP client: Rill's :class:`ToolHost` over the servers of the config.

Built on the official ``mcp`` SDK (imported only when a server starts: it is heavy). Each
server runs in a task of its own that owns its connection (a stdio process in its own
process group, or a Streamable HTTP session); calls go through that connection from the
caller's task, so cancelling the caller cancels the call and the server is told
(``notifications/cancelled``).

- Servers start on first use (:meth:`McpHost.list_tools`, :meth:`McpHost.call_tool`) and keep
  running until :meth:`McpHost.aclose`, which stops every process group: a stdio server
  gets its stdin closed, a grace period, then SIGTERM and SIGKILL to the whole group, so its
  own children die with it.
- A server that exits, or whose transport breaks, is started again once and the call retried;
  a second failure is a :class:`ToolError` with a sentence.
- Each request has the server's timeout; each progress notification starts it again, up to
  :data:`ABSOLUTE_CAP_FACTOR` timeouts in all.
- A policy is read from the config on every call; changing it never touches a server.
- What a server sends is data: tool names are checked, descriptions, schemas, results and
  images are bounded, stderr keeps its last lines only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import desktop_app
from desktop_app.core.config import Config
from desktop_app.core.errors import ConfigError, RillError
from desktop_app.core.redaction import known_secrets, redact
from desktop_app.core.text import valid_text
from desktop_app.core.tools.base import (
    ABSOLUTE_CAP_FACTOR,
    RESULT_LIMIT_CHARS,
    Policy,
    ProgressCallback,
    ToolError,
    ToolInfo,
    ToolOutput,
)
from desktop_app.core.tools.config import ServerConfig, resolve_secrets, server_configs

if TYPE_CHECKING:
    from anyio.abc import Process
    from mcp.client import Client
    from mcp.client._transport import TransportStreams

    from desktop_app.core.secrets import Secrets

log = logging.getLogger("rill.mcp")

TOOL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""A tool name as the MCP specification allows it (the tool loop makes each one a function
name the provider accepts)."""
DESCRIPTION_LIMIT_CHARS = 4_000
SCHEMA_LIMIT_CHARS = 64_000
MAX_TOOLS_PER_SERVER = 256
IMAGE_LIMIT_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 8
STDERR_LINES = 20
STDERR_LINE_CHARS = 500
MESSAGE_LIMIT_BYTES = 64 * 1024 * 1024
"""The longest line a stdio server may send (one JSON-RPC message)."""
STDERR_NOTIFY_S = 0.25
STOP_GRACE_S = 2.0
"""How long a stdio server has to exit once its stdin is closed, before its group is killed."""
KILL_WAIT_S = 1.0
START_RETRY_S = 30.0
"""How long :meth:`McpHost.list_tools` leaves a server that failed to start alone (a call
of one of its tools, or :meth:`McpHost.start`, tries again at once)."""
START_TIMEOUT_S = 60.0
"""The least time a server has to start (a first ``npx`` or ``uvx`` run downloads it)."""

State = Literal["off", "starting", "ready", "failed"]


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the window and ``q --list-tools`` show of one server."""

    name: str
    state: State = "off"
    reason: str = ""
    """Why the server failed (or, when ready, which of its tools Rill left out)."""
    stderr: tuple[str, ...] = ()
    """Its last lines on stderr (at most :data:`STDERR_LINES`)."""
    tools: tuple[ToolInfo, ...] = ()
    transport: Literal["stdio", "http"] = "stdio"


Listener = Callable[[ServerState], None]


# -- one running server ---------------------------------------------------------------


def _import_sdk() -> None:
    """Load the SDK (about half a second of imports) off the event loop, so the first
    server to start never freezes the window."""
    import httpx2  # noqa: F401
    import mcp_types  # noqa: F401
    from mcp.client import Client  # noqa: F401
    from mcp.client.stdio import stdio_client  # noqa: F401
    from mcp.client.streamable_http import streamable_http_client  # noqa: F401
    from mcp.shared.exceptions import MCPError  # noqa: F401


class _TransportBroken(Exception):
    """The connection to a server ended (it exited, or its transport broke)."""


class _Connection:
    """One started server: a task that holds the SDK client open until told to stop."""

    def __init__(
        self,
        config: ServerConfig,
        env: dict[str, str],
        headers: dict[str, str],
        on_stderr: Callable[[str], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.config = config
        self._env = env
        self._headers = headers
        self._on_stderr = on_stderr
        self._on_lost = on_lost
        self.client: Client | None = None
        self.pgid: int | None = None
        self.lost = False
        self.stopping = False
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp server {self.config.name}")
        limit = max(self.config.timeout_s, START_TIMEOUT_S)
        try:
            async with asyncio.timeout(limit):
                await asyncio.shield(self._ready)
        except TimeoutError:
            await self.stop()
            raise ToolError(
                f"The MCP server '{self.config.name}' did not start within {limit:g} s."
            ) from None
        except asyncio.CancelledError:
            await self.stop()
            task = asyncio.current_task()
            if self._ready.cancelled() and task is not None and not task.cancelling():
                name = self.config.name
                raise ToolError(f"The MCP server '{name}' stopped while starting.") from None
            raise
        except BaseException:
            await self.stop()
            raise

    async def _run(self) -> None:
        await asyncio.to_thread(_import_sdk)
        from mcp.client import Client
        from mcp_types import Implementation

        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = Client(
                    transport,
                    cache=None,
                    client_info=Implementation(name="Rill", version=desktop_app.__version__),
                )
                self.client = await stack.enter_async_context(client)
                self._ready.set_result(None)
                await self._stop.wait()
        except asyncio.CancelledError:
            if not self._ready.done():
                self._ready.cancel()
        except Exception as exc:  # the reason reaches the caller through _ready
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                log.info("MCP server %r ended: %s", self.config.name, exc)
        finally:
            self.client = None
            self.transport_lost("its connection ended")

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        if self.config.url:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            read_s = max(300.0, self.config.timeout_s * ABSOLUTE_CAP_FACTOR)
            http = httpx2.AsyncClient(
                headers=self._headers, timeout=httpx2.Timeout(30.0, read=read_s)
            )
            await stack.enter_async_context(http)
            return streamable_http_client(self.config.url, http_client=http)
        if sys.platform == "win32":  # a Job Object ends the whole tree there
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=self.config.command,
                args=list(self.config.args),
                env=self._env,
                cwd=self.config.cwd or None,
            )
            return stdio_client(params)
        return _stdio_transport(self)

    def transport_lost(self, why: str) -> None:
        if not self.stopping and not self.lost:
            self.lost = True
            self._on_lost(why)

    def stderr_line(self, line: str) -> None:
        self._on_stderr(line)

    @property
    def env(self) -> dict[str, str]:
        return self._env

    async def stop(self) -> None:
        """Stop the server (bounded: a server that ignores everything is killed)."""
        self.stopping = True
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        if not self._ready.done():  # still starting: nothing to wind down gracefully
            task.cancel()
        try:
            async with asyncio.timeout(STOP_GRACE_S + 3 * KILL_WAIT_S + 1.0):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if self.pgid is not None:
                _kill_group(self.pgid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; whether anything of it was still there."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.asynccontextmanager
async def _stdio_transport(conn: _Connection) -> AsyncIterator[TransportStreams]:
    """A stdio server in a process group of its own, with its stderr kept line by line."""
    import subprocess

    import anyio
    import mcp_types
    from mcp.client.stdio import get_default_environment
    from mcp.shared.message import SessionMessage

    config = conn.config
    if config.cwd and not await anyio.Path(config.cwd).is_dir():
        raise ToolError(
            f"The working folder '{config.cwd}' of the MCP server '{config.name}' does not exist."
        )
    try:
        process = await anyio.open_process(
            [config.command, *config.args],
            env=get_default_environment() | conn.env,
            cwd=config.cwd or None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ToolError(
            f"The command '{config.command}' of the MCP server '{config.name}' was not found."
        ) from None
    except PermissionError:
        raise ToolError(
            f"The command '{config.command}' of the MCP server '{config.name}' cannot be run "
            "(no permission)."
        ) from None
    except OSError as exc:
        raise ToolError(
            f"The MCP server '{config.name}' could not be started: {exc.strerror or exc}."
        ) from None
    conn.pgid = process.pid
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    assert process.stdout and process.stdin and process.stderr

    async def stdout_reader() -> None:
        assert process.stdout
        buffer = b""
        try:
            async with read_writer:
                async for chunk in process.stdout:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) > MESSAGE_LIMIT_BYTES:
                        await read_writer.send(ValueError("the server sent a message too long"))
                        break
                    for line in lines:
                        if not line.strip():
                            continue
                        item: SessionMessage | Exception
                        try:
                            message = mcp_types.jsonrpc_message_adapter.validate_json(
                                line, by_name=False
                            )
                            item = SessionMessage(message)
                        except ValueError as exc:
                            item = exc
                        await read_writer.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        finally:
            conn.transport_lost("its output ended")

    async def stdin_writer() -> None:
        assert process.stdin
        try:
            async with write_reader:
                async for message in write_reader:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send((text + "\n").encode("utf-8"))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()

    async def stderr_reader() -> None:
        assert process.stderr
        pending = b""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for chunk in process.stderr:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > STDERR_LINE_CHARS * 4:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    conn.stderr_line(line.decode("utf-8", "replace"))
        if pending:
            conn.stderr_line(pending.decode("utf-8", "replace"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        tg.start_soon(stderr_reader)
        try:
            yield read_stream, write_stream
        finally:
            conn.stopping = True
            with anyio.CancelScope(shield=True):
                await _stop_process(process)
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    await stream.aclose()
            tg.cancel_scope.cancel()


async def _stop_process(process: Process) -> None:
    """Close stdin, give the server :data:`STOP_GRACE_S` to exit, then end its whole group
    (SIGTERM, then SIGKILL): whatever it started dies with it."""
    import anyio

    assert process.stdin
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()
    await _wait_exit(process, STOP_GRACE_S)
    pgid = process.pid
    if _kill_group(pgid, signal.SIGTERM):
        with anyio.move_on_after(KILL_WAIT_S):
            while _kill_group(pgid, 0):
                _ = process.returncode
                await anyio.sleep(0.01)
        _kill_group(pgid, signal.SIGKILL)
    await _wait_exit(process, KILL_WAIT_S)
    transport = getattr(getattr(process, "_process", None), "_transport", None)
    close = getattr(transport, "close", None)
    if callable(close):
        with contextlib.suppress(OSError):
            close()


async def _wait_exit(process: Process, limit_s: float) -> bool:
    """Whether the process ended within ``limit_s`` (its return code, polled: waiting on the
    process would also wait for pipes a surviving child may hold open)."""
    import anyio

    with anyio.move_on_after(limit_s):
        while process.returncode is None:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return process.returncode is not None


# -- the host -------------------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    """What the host knows of one server of the config."""

    state: ServerState
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_LINES))
    connection: _Connection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tools: dict[str, ToolInfo] = field(default_factory=dict)
    failed_at: float | None = None
    """When the server last failed to start (event-loop time)."""
    failed_config: ServerConfig | None = None
    """The config it failed to start with (a changed one is tried at once)."""
    stderr_pending: bool = False
    """A change of stderr not yet told to the listeners (told at most every
    :data:`STDERR_NOTIFY_S`, so a chatty server cannot flood the window)."""

    def current(self) -> ServerState:
        return replace(self.state, stderr=tuple(self.stderr))


class McpHost:
    """Rill's tools: the MCP servers of ``config`` (a :class:`Config`, read again on each use,
    or a callable that returns the current one)."""

    def __init__(
        self,
        config: Config | Callable[[], Config],
        *,
        secrets: Secrets | None = None,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[Listener] = []
        self._closed = False

    # -- config and state -------------------------------------------------------------

    def config(self) -> Config:
        return self._config() if callable(self._config) else self._config

    def servers(self) -> list[ServerConfig]:
        return server_configs(self.config())

    def _server(self, name: str) -> ServerConfig | None:
        return next((s for s in self.servers() if s.name == name), None)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with a server's new state each time it changes (on the event
        loop's thread). Returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def states(self) -> list[ServerState]:
        """Every server of the config, in its order ("off" for those not started)."""
        out: list[ServerState] = []
        for server in self.servers():
            slot = self._slots.get(server.name)
            if slot is None or not server.enabled:
                state = ServerState(server.name, transport=server.transport)
                out.append(replace(state, stderr=tuple(slot.stderr)) if slot else state)
            else:
                out.append(slot.current())
        return out

    def state(self, name: str) -> ServerState:
        slot = self._slots.get(name)
        if slot is not None:
            return slot.current()
        server = self._server(name)
        return ServerState(name, transport=server.transport if server else "stdio")

    def _slot(self, server: ServerConfig) -> _Slot:
        slot = self._slots.get(server.name)
        if slot is None:
            slot = self._slots[server.name] = _Slot(
                ServerState(server.name, transport=server.transport)
            )
        return slot

    def _set(self, slot: _Slot, **changes: Any) -> None:
        slot.state = replace(slot.state, **changes)
        slot.stderr_pending = False
        state = slot.current()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("A listener of the MCP server states failed")

    def _stderr_changed(self, slot: _Slot) -> None:
        if slot.stderr_pending:
            return
        slot.stderr_pending = True

        def tell() -> None:
            if slot.stderr_pending:
                self._set(slot)

        asyncio.get_running_loop().call_later(STDERR_NOTIFY_S, tell)

    def policy(self, server: str, name: str) -> Policy:
        found = self._server(server)
        return found.policy(name) if found is not None else "ask"

    # -- starting and stopping -------------------------------------------------------

    async def _ensure(self, server: ServerConfig) -> _Connection:
        slot = self._slot(server)
        async with slot.lock:
            conn = slot.connection
            if conn is not None and not conn.lost and conn.config == _without_policies(server):
                return conn
            if conn is not None:
                slot.connection = None
                await conn.stop()
            if self._closed:
                raise ToolError("Rill is stopping its tools.")
            return await self._start(server, slot)

    async def _start(self, server: ServerConfig, slot: _Slot) -> _Connection:
        slot.stderr.clear()
        self._set(slot, state="starting", reason="", tools=(), transport=server.transport)
        try:
            env, headers = resolve_secrets(server, self._secrets)
        except ConfigError as exc:
            slot.failed_at = asyncio.get_running_loop().time()
            slot.failed_config = _without_policies(server)
            self._set(slot, state="failed", reason=str(exc))
            raise ToolError(str(exc)) from None

        def on_stderr(line: str) -> None:
            text = redact(valid_text(line.rstrip("\r")), known_secrets(), prefixes=False)
            slot.stderr.append(text[:STDERR_LINE_CHARS])
            self._stderr_changed(slot)

        def on_lost(why: str) -> None:
            if slot.connection is conn:
                self._set(slot, state="failed", reason=f"The server stopped ({why}).")

        conn = _Connection(_without_policies(server), env, headers, on_stderr, on_lost)
        try:
            await conn.start()
            tools, skipped = await self._fetch_tools(server, conn)
        except asyncio.CancelledError:
            await conn.stop()
            self._set(slot, state="off", reason="")
            raise
        except BaseException as exc:
            await conn.stop()
            slot.failed_at = asyncio.get_running_loop().time()
            slot.failed_config = _without_policies(server)
            reason = _start_failure(server, exc, slot.stderr)
            self._set(slot, state="failed", reason=reason)
            raise ToolError(reason) from None
        slot.connection = conn
        slot.failed_at = None
        slot.tools = {t.name: t for t in tools}
        note = ""
        if skipped:
            note = "Rill left out tools it cannot offer to a model: " + "; ".join(skipped[:5])
        self._set(slot, state="ready", reason=note, tools=tuple(tools))
        return conn

    async def _fetch_tools(
        self, server: ServerConfig, conn: _Connection
    ) -> tuple[list[ToolInfo], list[str]]:
        client = conn.client
        assert client is not None
        tools: list[ToolInfo] = []
        skipped: list[str] = []
        cursor: str | None = None
        async with asyncio.timeout(max(server.timeout_s, START_TIMEOUT_S)):
            for _page in range(50):
                page = await client.list_tools(cursor=cursor)
                for tool in page.tools:
                    info, why = _tool_info(server, tool.name, tool.description, tool.input_schema)
                    if info is None:
                        skipped.append(why)
                    elif len(tools) < MAX_TOOLS_PER_SERVER:
                        tools.append(info)
                    else:
                        skipped.append(f"more than {MAX_TOOLS_PER_SERVER} tools")
                        break
                cursor = page.next_cursor
                if not cursor or len(tools) >= MAX_TOOLS_PER_SERVER:
                    break
        return tools, skipped

    async def start(self, servers: Collection[str] | None = None) -> None:
        """Start the enabled servers (of ``servers`` only, when given) that are not running,
        all at once, those that failed a moment ago too; a server that fails shows it in
        its state."""
        await self._list(servers, retry=True)

    async def stop_server(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is None:
            return
        async with slot.lock:
            conn, slot.connection = slot.connection, None
            if conn is not None:
                await conn.stop()
            self._set(slot, state="off", reason="", tools=())

    async def apply_config(self) -> None:
        """Stop the running servers the config no longer runs as they are: removed, turned
        off, or changed (a changed one starts again on its next use). A tool's policy is
        not part of that: changing it never stops a server."""
        wanted = {s.name: s for s in self.servers() if s.enabled}
        stale = [
            name
            for name, slot in self._slots.items()
            if slot.connection is not None
            and (name not in wanted or slot.connection.config != _without_policies(wanted[name]))
        ]
        await asyncio.gather(*(self.stop_server(name) for name in stale), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        await asyncio.gather(
            *(self.stop_server(name) for name in list(self._slots)), return_exceptions=True
        )

    # -- ToolHost ---------------------------------------------------------------------

    async def list_tools(self, servers: Collection[str] | None = None) -> list[ToolInfo]:
        return await self._list(servers, retry=False)

    async def _list(self, servers: Collection[str] | None, *, retry: bool) -> list[ToolInfo]:
        now = asyncio.get_running_loop().time()
        chosen = [
            s
            for s in self.servers()
            if s.enabled
            and (servers is None or s.name in servers)
            and (retry or not self._failed_lately(s, now))
        ]
        results = await asyncio.gather(*(self._ensure(s) for s in chosen), return_exceptions=True)
        tools: list[ToolInfo] = []
        for server, result in zip(chosen, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                continue
            slot = self._slots[server.name]
            tools.extend(replace(t, policy=server.policy(t.name)) for t in slot.tools.values())
        return tools

    def _failed_lately(self, server: ServerConfig, now: float) -> bool:
        slot = self._slots.get(server.name)
        return (
            slot is not None
            and slot.connection is None
            and slot.failed_at is not None
            and now - slot.failed_at < START_RETRY_S
            and slot.failed_config == _without_policies(server)
        )

    async def call_tool(
        self,
        server: str,
        name: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressCallback | None = None,
    ) -> ToolOutput:
        config = self._server(server)
        if config is None:
            raise ToolError(f"There is no MCP server '{server}' in the config.")
        if not config.enabled:
            raise ToolError(f"The MCP server '{server}' is turned off.")
        for attempt in (1, 2):
            conn = await self._ensure(config)
            try:
                return await self._call(conn, config, name, arguments, on_progress)
            except _TransportBroken as exc:
                log.info("MCP server %r broke during %s (%s)", server, name, exc)
                slot = self._slots[server]
                async with slot.lock:
                    if slot.connection is conn:
                        slot.connection = None
                        await conn.stop()
                if attempt == 2:
                    sentence = (
                        f"The MCP server '{server}' stopped twice while running {name}; "
                        "Rill gave up on this call."
                    )
                    self._set(slot, state="failed", reason=sentence)
                    raise ToolError(sentence) from None
        raise AssertionError("unreachable")

    async def _call(
        self,
        conn: _Connection,
        server: ServerConfig,
        name: str,
        arguments: dict[str, Any],
        on_progress: ProgressCallback | None,
    ) -> ToolOutput:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        client = conn.client
        if client is None or conn.lost:
            raise _TransportBroken("not connected")
        loop = asyncio.get_running_loop()
        timeout = server.timeout_s
        cap = loop.time() + timeout * ABSOLUTE_CAP_FACTOR

        deadline = asyncio.timeout_at(min(loop.time() + timeout, cap))

        async def report(progress: float, total: float | None, message: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # a late notification, after the call
                deadline.reschedule(min(loop.time() + timeout, cap))
            if on_progress is not None:
                on_progress(progress, total, _bounded(message, 500) if message else None)

        try:
            async with deadline:
                result = await client.call_tool(name, arguments, progress_callback=report)
        except TimeoutError:
            if not deadline.expired():
                raise _TransportBroken("the transport timed out") from None
            capped = loop.time() >= cap - 0.05
            raise ToolError(_timeout_sentence(server, name, capped)) from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED or conn.lost:
                raise _TransportBroken(exc.message) from None
            raise ToolError(
                f"The MCP server '{server.name}' refused {name}: {_bounded(exc.message, 500)}"
            ) from None
        except (RillError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if conn.lost or _is_transport_error(exc):
                raise _TransportBroken(str(exc)) from None
            raise ToolError(
                f"The MCP server '{server.name}' answered {name} with something Rill "
                f"cannot read ({_bounded(str(exc), 300)})."
            ) from None
        return _output(result)


def _timeout_sentence(server: ServerConfig, name: str, capped: bool) -> str:
    if capped:
        return (
            f"{name} (MCP server '{server.name}') was still running after "
            f"{server.timeout_s * ABSOLUTE_CAP_FACTOR:g} s, the most any call may take; "
            "Rill stopped it."
        )
    return (
        f"{name} (MCP server '{server.name}') did not answer within {server.timeout_s:g} s; "
        "Rill stopped it."
    )


def _without_policies(server: ServerConfig) -> ServerConfig:
    """The part of a server's config that a running server depends on."""
    return replace(server, policies={}, enabled=True)


def _is_transport_error(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, OSError | anyio.ClosedResourceError | anyio.BrokenResourceError):
        return True
    return type(exc).__module__.startswith(("httpx2", "httpcore"))


def _bounded(text: str, limit: int) -> str:
    text = valid_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_info(
    server: ServerConfig, name: Any, description: Any, schema: Any
) -> tuple[ToolInfo | None, str]:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        shown = _bounded(repr(name), 80)
        return None, f"{shown}: a tool name is 1 to 128 letters, digits, '.', '-' or '_'"
    if not isinstance(schema, dict) or len(json.dumps(schema)) > SCHEMA_LIMIT_CHARS:
        return None, f"{name}: its parameters are not a JSON schema of a sensible size"
    text = _bounded(description, DESCRIPTION_LIMIT_CHARS) if isinstance(description, str) else ""
    return ToolInfo(server.name, name, text, schema, server.policy(name)), ""


def _output(result: Any) -> ToolOutput:
    """A ``CallToolResult`` as Rill keeps it: bounded text, bounded images."""
    import base64
    import binascii

    texts: list[str] = []
    images: list[tuple[str, bytes]] = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        elif kind == "image":
            mime = _bounded(str(block.mime_type), 100)
            encoded = block.data
            if not mime.startswith("image/"):
                texts.append(f"[content of type {mime} left out]")
            elif len(encoded) * 3 // 4 > IMAGE_LIMIT_BYTES:
                texts.append(f"[an image left out ({mime}, over {IMAGE_LIMIT_BYTES:,} bytes)]")
            elif len(images) >= MAX_IMAGES:
                texts.append(f"[an image left out: more than {MAX_IMAGES}]")
            else:
                try:
                    images.append((mime, base64.b64decode(encoded, validate=True)))
                except (binascii.Error, ValueError):
                    texts.append(f"[an image Rill could not decode ({mime})]")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            texts.append(text if isinstance(text, str) else f"[resource {resource.uri}]")
        elif kind == "resource_link":
            texts.append(f"[resource {block.uri}]")
        else:
            texts.append(f"[{_bounded(str(kind), 40)} content]")
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = valid_text("\n".join(texts))
    if len(text) > RESULT_LIMIT_CHARS:
        text = text[:RESULT_LIMIT_CHARS] + f"\n[cut at {RESULT_LIMIT_CHARS:,} characters]"
    return ToolOutput(text, bool(result.is_error), tuple(images))


def _start_failure(server: ServerConfig, exc: BaseException, stderr: Sequence[str]) -> str:
    if isinstance(exc, RillError):
        return str(exc)
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _start_failure(server, inner, stderr)
    if server.url:
        return (
            f"Rill could not reach the MCP server '{server.name}' at {server.url} "
            f"({_describe(exc)})."
        )
    what = f"The MCP server '{server.name}' could not start"
    tail = f" Its last words: {stderr[-1]}" if stderr else ""
    return f"{what}: {_describe(exc)}.{tail}"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return _bounded(text, 300)


async def test_server(server: ServerConfig, *, secrets: Secrets | None = None) -> ServerState:
    """Start ``server`` on its own, list its tools and stop it again: the state that
    Settings' Test button shows (ready with its tools, or failed with the reason)."""
    from desktop_app.core.tools.config import server_table

    config = Config()
    config.mcp = {"servers": {server.name: server_table(replace(server, enabled=True))}}
    host = McpHost(config, secrets=secrets)
    try:
        await host.list_tools()
        return host.state(server.name)
    finally:
        await host.aclose()


test_server.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest to collect
