"""The tool loop: a reply that ends with tool calls gets them run, and the model asked again.

:class:`ToolLoop` is used where :meth:`Engine.stream` would be: iterate it for
:class:`StreamEvent` records, ``cancel()`` stops it. Each model request is one engine
generation (resilience, the ledger's usage, the budget apply to each as to any reply).
Between two requests the loop looks up each call's tool, applies its policy (``never``
refuses, ``always`` runs, ``ask`` yields :class:`ToolApprovalNeeded` and awaits the
:class:`Approver`), runs the allowed calls concurrently, appends the calls and their
results to the conversation, and streams the next reply — at most ``max_rounds`` times.

A restart of a later request (an interrupted stream, a fallback) never runs a tool
again: the results are part of the request that is sent again. The consumer sees it as
any restart: :class:`Restarted` with the whole turn's text so far, then the turn again
from its start — the earlier rounds' text and tool events replayed from what was kept,
and the new answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from desktop_app.core.engine import Engine, Generation
from desktop_app.core.errors import RillError
from desktop_app.core.events import (
    Cancelled,
    Failed,
    Finished,
    Restarted,
    StreamEvent,
    TextDelta,
    ToolApprovalNeeded,
    ToolCallStarted,
    ToolFailed,
    ToolProgress,
    ToolResult,
    ToolRoundStarted,
    UsageUpdate,
)
from desktop_app.core.text import valid_text
from desktop_app.core.tools.base import (
    DEFAULT_MAX_ROUNDS,
    NEVER,
    RESULT_LIMIT_CHARS,
    STOPPED,
    Approver,
    Decision,
    ToolError,
    ToolHost,
    ToolInfo,
    ToolOutput,
)
from desktop_app.core.types import (
    ChatRequest,
    GenerationResponse,
    Message,
    Timing,
    TokenUsage,
    ToolCall,
    ToolPart,
)

_T = TypeVar("_T")
log = logging.getLogger("rill.tools")

NAME_LIMIT = 64
"""The longest tool name the providers accept (OpenAI, Anthropic)."""
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")

DECLINED = "The user declined to run this tool."


def limit_sentence(max_rounds: int) -> str:
    """What the reply says when the model still asks for tools after ``max_rounds``."""
    rounds = "round" if max_rounds == 1 else "rounds"
    return (
        f"Rill stopped here: the model asked for tools again after {max_rounds} {rounds} "
        "of tool calls, the most one reply may use (tools.max_rounds)."
    )


def expose(tools: Sequence[ToolInfo]) -> dict[str, ToolInfo]:
    """The name each tool goes by for the model: its own when that is a valid, unique
    function name, else one made valid, prefixed by its server when two servers share it,
    and numbered if it still clashes."""
    taken: dict[str, ToolInfo] = {}
    plain: dict[str, int] = {}
    for info in tools:
        key = _NOT_NAME.sub("_", info.name)[:NAME_LIMIT]
        plain[key] = plain.get(key, 0) + 1
    for info in tools:
        name = _NOT_NAME.sub("_", info.name)[:NAME_LIMIT] or "tool"
        if plain.get(name, 0) > 1:
            name = _NOT_NAME.sub("_", f"{info.server}_{info.name}")[:NAME_LIMIT]
        base, n = name, 2
        while name in taken:
            suffix = f"_{n}"
            name = base[: NAME_LIMIT - len(suffix)] + suffix
            n += 1
        taken[name] = info
    return taken


def part_events(part: ToolPart) -> list[StreamEvent]:
    """The events that showed a call (replayed after a restart): its start and result, or
    only its failure when it never ran."""
    if not part.ok:
        return [
            ToolFailed(
                part.call_id, part.exposed, part.server, part.result, part.denied, part.duration_s
            )
        ]
    return [
        ToolCallStarted(part.call_id, part.exposed, part.server, part.arguments),
        ToolResult(
            part.call_id, part.exposed, part.server, part.result, part.is_error, part.duration_s
        ),
    ]


class _Stop(Exception):
    """The user cancelled the turn (internal to the loop)."""


@dataclass(slots=True)
class _Call:
    call: ToolCall
    call_id: str
    info: ToolInfo | None
    arguments: dict[str, Any] | None
    problem: str | None = None
    denied: bool = False
    started: float = 0.0


class ToolLoop:
    """One turn with tools: the replies of the model and the tool calls between them."""

    def __init__(
        self,
        engine: Engine,
        request: ChatRequest,
        *,
        host: ToolHost,
        approver: Approver,
        servers: Collection[str] | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        fallbacks: Sequence[ChatRequest] = (),
        read_cache: bool = True,
        write_cache: bool = True,
        on_always: Callable[[ToolInfo], None] | None = None,
    ) -> None:
        self.engine = engine
        self.request = request
        self.host = host
        self.approver = approver
        self.servers = servers
        self.max_rounds = max(0, max_rounds)
        self.fallbacks = tuple(fallbacks)
        self.read_cache = read_cache
        self.write_cache = write_cache
        self.on_always = on_always
        self.trace_id = uuid.uuid4().hex
        self.cancelled = False
        self.records: list[ToolPart] = []
        """Every call of the turn so far, in the order the model asked for them."""
        self.always: list[ToolInfo] = []
        """Tools the user chose to always allow during this turn (to persist)."""
        self.rounds = 0
        """Tool rounds run (requests sent after tool results)."""
        self.generation: Generation | None = None
        self._shown: list[str] = []
        self._round_text: list[str] = []
        self._transcript: list[StreamEvent] = []
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply_began = 0.0

    @property
    def partial(self) -> str:
        """The turn's text shown so far (all rounds)."""
        return "".join(self._shown) + "".join(self._round_text)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._stop.set()
        if self.generation is not None:
            self.generation.cancel()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    # -- the turn ----------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[StreamEvent]:
        began = time.perf_counter()
        usage: TokenUsage | None = None
        costs: list[float | None] = []
        ttft: float | None = None
        try:
            tools = await self._until_stopped(self.host.list_tools(self.servers))
            exposed = expose(tools)
            offered = tuple(info.as_tool(name) for name, info in exposed.items())
            messages = list(self.request.messages)
            while True:
                request = replace(
                    self.request, messages=tuple(messages), tools=(*self.request.tools, *offered)
                )
                response: GenerationResponse | None = None
                async for event in self._reply(request, usage):
                    if isinstance(event, Finished):
                        response = event.response
                    else:
                        yield event
                if response is None:
                    return  # failed or cancelled: said by the events
                usage = _add(usage, response.usage)
                costs.append(response.cost)
                if ttft is None and response.timing.ttft_s is not None:
                    ttft = self._reply_began - began + response.timing.ttft_s
                round_text = "".join(self._round_text)
                self._shown.append(round_text)
                self._round_text = []
                if round_text:
                    self._transcript.append(TextDelta(round_text))
                calls = response.tool_calls if offered else ()
                if not calls:
                    yield self._finished(response, usage, costs, ttft, began)
                    return
                if self.rounds >= self.max_rounds:
                    for event in self._refuse_all(calls, exposed):
                        yield event
                    sentence = ("\n\n" if self.partial else "") + limit_sentence(self.max_rounds)
                    self._shown.append(sentence)
                    yield TextDelta(sentence)
                    yield self._finished(response, usage, costs, ttft, began)
                    return
                pending = self._resolve(calls, exposed)
                async for event in self._decide(pending):
                    yield event
                async for event in self._execute(pending):
                    yield event
                messages.append(
                    Message(
                        "assistant",
                        round_text,
                        tool_calls=tuple(replace(p.call, id=p.call_id) for p in pending),
                    )
                )
                done = {r.call_id: r for r in self.records[-len(pending) :]}
                for p in pending:
                    record = done[p.call_id]
                    messages.append(
                        Message(
                            "tool",
                            record.result,
                            tool_call_id=p.call_id,
                            name=p.call.name,
                            is_error=record.is_error,
                        )
                    )
                self.rounds += 1
                started = ToolRoundStarted(self.rounds, self.max_rounds)
                self._transcript.append(started)
                yield started
        except _Stop:
            yield Cancelled(self.partial)
        except RillError as exc:
            yield Failed(exc, self.partial)
        except Exception as exc:  # a tool host's own bug must not end a turn without a word
            log.exception("the tool loop failed")
            problem = RillError(
                "Rill could not finish this reply because of an unexpected problem with tools.",
                action="Try again; if it keeps happening, turn that tool server off and report it.",
                detail=type(exc).__name__,
            )
            yield Failed(problem, self.partial)
        finally:
            await self._cancel_tasks()

    async def _reply(
        self, request: ChatRequest, before: TokenUsage | None
    ) -> AsyncIterator[StreamEvent]:
        """One model request, its events passed on; usage counts the whole turn, and a
        restart after tool rounds replays the turn so far."""
        first = not self._shown
        read = self.read_cache and first and await self._cache_has_plain_answer(request)
        self._reply_began = time.perf_counter()
        generation = self.engine.stream(
            request,
            fallbacks=[
                replace(f, messages=request.messages, tools=request.tools) for f in self.fallbacks
            ],
            read_cache=read,
            write_cache=False,
        )
        self.generation = generation
        if self.cancelled:
            generation.cancel()
        async for event in generation:
            kind = type(event)
            if kind is TextDelta:
                assert isinstance(event, TextDelta)
                self._round_text.append(event.text)
                yield event
            elif isinstance(event, UsageUpdate):
                yield UsageUpdate(_add(before, event.usage) or event.usage)
            elif isinstance(event, Restarted):
                self._round_text = []
                earlier = "".join(self._shown)
                if not earlier and not self.records:
                    yield event
                    continue
                yield Restarted(event.reason, earlier + event.discarded)
                for replayed in self._transcript:
                    yield replayed
            elif isinstance(event, Cancelled):
                yield Cancelled(self.partial)
                return
            elif isinstance(event, Failed):
                yield Failed(event.error, self.partial)
                return
            elif isinstance(event, Finished):
                if first and self.write_cache and not event.response.tool_calls:
                    await self._cache_put(request, event.response)
                yield event
                return
            else:
                yield event

    # -- the cache: answers without tool calls only -------------------------------------------

    async def _cache_has_plain_answer(self, request: ChatRequest) -> bool:
        engine = self.engine
        if engine.cache is None or engine.cache_key is None:
            return False
        hit = await engine.cache.get(engine.cache_key(request))
        return hit is not None and not hit.tool_calls

    async def _cache_put(self, request: ChatRequest, response: GenerationResponse) -> None:
        engine = self.engine
        if engine.cache is not None and engine.cache_key is not None and not response.cached:
            await engine.cache.put(engine.cache_key(request), response)

    # -- the calls of one round ------------------------------------------------------------

    def _resolve(self, calls: Sequence[ToolCall], exposed: dict[str, ToolInfo]) -> list[_Call]:
        seen = {r.call_id for r in self.records}
        out: list[_Call] = []
        for index, call in enumerate(calls):
            call_id = call.id or ""
            if not call_id or call_id in seen:
                call_id = f"call_{self.rounds}_{index}"
            seen.add(call_id)
            info = exposed.get(call.name)
            pending = _Call(call, call_id, info, None)
            if info is None:
                pending.problem = (
                    f"There is no tool named {call.name[:NAME_LIMIT]!r} among the tools offered."
                )
            else:
                pending.arguments, pending.problem = _arguments(call.arguments)
            out.append(pending)
        return out

    def _refuse_all(
        self, calls: Sequence[ToolCall], exposed: dict[str, ToolInfo]
    ) -> list[StreamEvent]:
        """The calls of a reply past the round limit: none runs, each gets a sentence."""
        events: list[StreamEvent] = []
        for pending in self._resolve(calls, exposed):
            pending.problem = "Not run: the turn reached its limit of tool rounds."
            events.append(self._failed(pending))
        return events

    async def _decide(self, pending: list[_Call]) -> AsyncIterator[StreamEvent]:
        """Apply each call's policy; ask the user about those whose policy is "ask"."""
        allowed = {(t.server, t.name) for t in self.always}
        for p in pending:
            if p.problem is not None or p.info is None:
                continue
            info = p.info
            policy = "always" if (info.server, info.name) in allowed else None
            policy = policy or self.host.policy(info.server, info.name)
            if policy == "never":
                p.problem = NEVER
                continue
            if policy == "always":
                continue
            yield ToolApprovalNeeded(p.call_id, p.call.name, info.server, p.call.arguments)
            decision: Decision = await self._until_stopped(self.approver(info, p.call.arguments))
            if decision == "deny":
                p.problem, p.denied = DECLINED, True
            elif decision == "always":
                allowed.add((info.server, info.name))
                self.always.append(info)
                if self.on_always is not None:
                    try:
                        self.on_always(info)
                    except Exception:  # saving the choice failed: the call still runs
                        log.exception("saving 'always allow' for a tool failed")

    async def _execute(self, pending: list[_Call]) -> AsyncIterator[StreamEvent]:
        """Run the allowed calls at once; their events come as they happen, and every call
        ends with a result or a failure, in the order the model asked for them (records)."""
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        ends: dict[str, StreamEvent] = {}
        running: dict[str, asyncio.Task[None]] = {}
        for p in pending:
            if p.problem is not None or p.info is None:
                end = self._failed(p)
                ends[p.call_id] = end
                yield end
                continue
            p.started = time.perf_counter()
            task = asyncio.create_task(self._run_call(p, queue))
            self._tasks.add(task)
            running[p.call_id] = task
            yield ToolCallStarted(p.call_id, p.call.name, p.info.server, p.call.arguments)
        try:
            while len(ends) < len(pending):
                event = await self._until_stopped(queue.get())
                if isinstance(event, ToolResult | ToolFailed):
                    ends[event.call_id] = event
                yield event
        except _Stop:
            for p in pending:
                if p.call_id not in ends:
                    p.problem = STOPPED
                    yield self._failed(p)
            raise
        finally:
            for task in running.values():
                task.cancel()
        # the order the model asked in, whatever order they ended in
        by_id = {r.call_id: r for r in self.records}
        self.records[-len(pending) :] = [by_id[p.call_id] for p in pending]

    async def _run_call(self, p: _Call, queue: asyncio.Queue[StreamEvent]) -> None:
        assert p.info is not None and p.arguments is not None
        info = p.info

        def progress(value: float, total: float | None, message: str | None) -> None:
            elapsed = time.perf_counter() - p.started
            text = valid_text(message[:500]) if message else None
            queue.put_nowait(ToolProgress(p.call_id, value, total, text, elapsed))

        try:
            output: ToolOutput = await self.host.call_tool(
                info.server, info.name, p.arguments, on_progress=progress
            )
        except asyncio.CancelledError:
            raise
        except ToolError as exc:
            p.problem = str(exc) or "The tool call failed."
            queue.put_nowait(self._failed(p))
            return
        except Exception as exc:  # a host's own bug must not end the turn without a word
            p.problem = f"The tool call failed unexpectedly ({type(exc).__name__})."
            queue.put_nowait(self._failed(p))
            return
        duration = time.perf_counter() - p.started
        text = valid_text(output.text[:RESULT_LIMIT_CHARS])
        if not text and output.images:
            count = len(output.images)
            text = f"(The tool returned {count} image{'s' if count != 1 else ''}.)"
        record = self._record(p, ok=True, result=text, is_error=output.is_error, duration=duration)
        event = ToolResult(
            p.call_id,
            p.call.name,
            info.server,
            text,
            output.is_error,
            duration,
            tuple(output.images),
        )
        self._transcript.extend(part_events(record))
        queue.put_nowait(event)

    def _failed(self, p: _Call) -> ToolFailed:
        duration = time.perf_counter() - p.started if p.started else 0.0
        reason = p.problem or "The tool call failed."
        record = self._record(p, ok=False, result=reason, is_error=True, duration=duration)
        self._transcript.extend(part_events(record))
        server = p.info.server if p.info is not None else ""
        return ToolFailed(p.call_id, p.call.name, server, reason, p.denied, duration)

    def _record(
        self, p: _Call, *, ok: bool, result: str, is_error: bool, duration: float
    ) -> ToolPart:
        record = ToolPart(
            call_id=p.call_id,
            server=p.info.server if p.info is not None else "",
            name=p.info.name if p.info is not None else p.call.name,
            exposed=p.call.name,
            arguments=p.call.arguments,
            ok=ok,
            result=result,
            is_error=is_error,
            denied=p.denied,
            duration_s=duration,
            round=self.rounds,
            offset=len("".join(self._shown)),
        )
        self.records.append(record)
        return record

    # -- waiting, cancelling, finishing ------------------------------------------------------

    async def _until_stopped(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable`` unless the turn is cancelled first (then it is cancelled)."""
        if self.cancelled:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise _Stop
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled():
            raise _Stop
        return task.result()

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _finished(
        self,
        last: GenerationResponse,
        usage: TokenUsage | None,
        costs: list[float | None],
        ttft: float | None,
        began: float,
    ) -> Finished:
        known = [c for c in costs if c is not None]
        return Finished(
            replace(
                last,
                content=self.partial,
                usage=usage,
                cost=sum(known) if known else None,
                trace_id=self.trace_id,
                timing=Timing(ttft_s=ttft, total_s=time.perf_counter() - began),
                tool_calls=(),
                cached=last.cached and self.rounds == 0,
            )
        )


def _arguments(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """A call's arguments as an object, or the sentence saying why they are not one."""
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        return None, f"The arguments were not valid JSON ({exc.msg} at character {exc.pos})."
    except ValueError:
        return None, "The arguments were not valid JSON."
    if not isinstance(value, dict):
        return None, "The arguments were not a JSON object."
    return value, None


def _add(a: TokenUsage | None, b: TokenUsage | None) -> TokenUsage | None:
    if a is None:
        return b
    if b is None:
        return a
    return TokenUsage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.estimated or b.estimated,
    )
