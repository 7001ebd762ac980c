"""The tool loop over real sockets against the simulator, in each of the four protocols,
with tools run by an in-process ToolHost (the MCP client has tests of its own)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.cache import AsyncResponseCache, cache_key
from desktop_app.core.events import (
    CacheHit,
    Cancelled,
    Failed,
    Finished,
    Restarted,
    StreamEvent,
    TextDelta,
    ToolApprovalNeeded,
    ToolCallDelta,
    ToolCallStarted,
    ToolFailed,
    ToolProgress,
    ToolResult,
    ToolRoundStarted,
)
from desktop_app.core.tools.base import (
    Decision,
    ProgressCallback,
    ToolError,
    ToolInfo,
    ToolOutput,
)
from desktop_app.core.tools.loop import DECLINED, NEVER, ToolLoop, expose, limit_sentence
from desktop_app.core.types import PROVIDERS, ProviderName
from desktop_app.simulator import Fault, Simulator
from desktop_app.simulator.protocols import thought_signature
from tests.helpers import engine_for, request_for
from tests.local_tools import Answers, LocalHost, echo, results_sent


def _loop(
    sim: Simulator,
    provider: ProviderName,
    prompt: str,
    host: LocalHost,
    approver: Answers | None = None,
    **kwargs: Any,
) -> ToolLoop:
    engine = kwargs.pop("engine", None) or engine_for()
    return ToolLoop(
        engine,
        request_for(sim, provider, prompt),
        host=host,
        approver=approver or Answers(),
        **kwargs,
    )


async def _events(loop: ToolLoop) -> list[StreamEvent]:
    try:
        return [event async for event in loop]
    finally:
        await loop.engine.aclose()


def _final(events: list[StreamEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished), events[-3:]
    return last


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_single_call_runs_and_the_model_answers_with_its_result(
    sim: Simulator, provider: ProviderName
) -> None:
    host = LocalHost({"echo": echo})
    loop = _loop(sim, provider, 'Please call echo with {"text": "hello from a tool"}', host)
    events = await _events(loop)

    assert host.calls == [("echo", {"text": "hello from a tool"})]
    started = next(e for e in events if isinstance(e, ToolCallStarted))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (started.name, started.server, json.loads(started.arguments)) == (
        "echo",
        "local",
        {"text": "hello from a tool"},
    )
    assert (result.call_id, result.content, result.is_error) == (
        started.call_id,
        "hello from a tool",
        False,
    )
    assert [e for e in events if isinstance(e, ToolRoundStarted)] == [ToolRoundStarted(1, 10)]
    final = _final(events)
    assert final.response.content.startswith("Tool echo said: hello from a tool\n\n")
    assert final.response.content == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert final.response.trace_id == loop.trace_id and not final.response.tool_calls
    timing = final.response.timing
    assert timing.ttft_s is not None and timing.total_s is not None
    assert 0 < timing.ttft_s < timing.total_s
    # the usage of both requests is the turn's
    first, second = sim.chat_requests[-2:]
    assert final.response.usage is not None
    assert final.response.usage.output_tokens >= second.tokens_sent + first.tokens_sent
    # the second request carries the call and its result in the protocol's own shape
    sent = results_sent(provider, second.json)
    key = "echo" if provider in ("ollama", "gemini") else started.call_id
    assert sent == [(key, "hello from a tool")]
    assert loop.records[0].ok and loop.records[0].result == "hello from a tool"


async def test_gemini_3_gets_its_thought_signature_back_with_the_calls(sim: Simulator) -> None:
    host = LocalHost({"echo": echo})
    request = replace(request_for(sim, "gemini", 'call echo with {"text": "s"}'), model="gemini-3")
    loop = ToolLoop(engine_for(), request, host=host, approver=Answers())
    events = await _events(loop)

    assert _final(events).response.content.startswith("Tool echo said: s")
    first, second = sim.chat_requests
    assert first.status == second.status == 200
    (call_part,) = second.json["contents"][1]["parts"]
    assert call_part["functionCall"] == {"name": "echo", "args": {"text": "s"}}
    assert call_part["thoughtSignature"] == thought_signature((("echo", '{"text":"s"}'),))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_calls_run_at_once_each_with_its_own_result(
    sim: Simulator, provider: ProviderName
) -> None:
    both = asyncio.Event()

    async def slow(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
        if host.running == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)
        return ToolOutput(f"done {args['text']}")

    host = LocalHost({"slow": slow})
    prompt = 'call slow with {"text": "a"} then call slow with {"text": "b"}'
    events = await _events(_loop(sim, provider, prompt, host))

    assert host.most_running == 2
    results = [e for e in events if isinstance(e, ToolResult)]
    assert sorted(r.content for r in results) == ["done a", "done b"]
    assert len({r.call_id for r in results}) == 2
    content = _final(events).response.content
    assert content.startswith("Tool slow said: done a\n\nTool slow said: done b\n\n")
    assert [text for _, text in results_sent(provider, sim.chat_requests[-1].json)] == [
        "done a",
        "done b",
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_denied_call_does_not_run_and_the_model_reads_that_the_user_declined(
    sim: Simulator, provider: ProviderName
) -> None:
    host = LocalHost({"echo": echo}, {"echo": "ask"})
    approver = Answers("deny")
    events = await _events(_loop(sim, provider, 'call echo with {"text": "x"}', host, approver))

    assert host.calls == [] and approver.asked == ["echo"]
    asked = next(i for i, e in enumerate(events) if isinstance(e, ToolApprovalNeeded))
    failed = next(e for e in events[asked:] if isinstance(e, ToolFailed))
    assert failed.denied and failed.reason == DECLINED
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    assert _final(events).response.content.startswith(f"Tool echo said: {DECLINED}")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_always_allow_is_asked_once_and_passed_back(
    sim: Simulator, provider: ProviderName
) -> None:
    host = LocalHost({"echo": echo}, {"echo": "ask"})
    approver = Answers("always")
    remembered: list[ToolInfo] = []
    prompt = 'call echo with {"text": "1"} and call echo with {"text": "2"}'
    loop = _loop(sim, provider, prompt, host, approver, on_always=remembered.append)
    await _events(loop)

    assert approver.asked == ["echo"]
    assert [name for name, _ in host.calls] == ["echo", "echo"]
    assert [(t.server, t.name) for t in remembered] == [("local", "echo")]
    assert loop.always == remembered


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_never_policy_and_tool_errors_reach_the_model_as_errors(
    sim: Simulator, provider: ProviderName
) -> None:
    async def broken(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
        raise ToolError("The server time stopped answering.")

    async def refused(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
        return ToolOutput("no such file", is_error=True)

    host = LocalHost(
        {"broken": broken, "forbidden": echo, "refused": refused}, {"forbidden": "never"}
    )
    prompt = 'call broken with {} call forbidden with {} call refused with {"text": "x"}'
    events = await _events(_loop(sim, provider, prompt, host))

    assert [name for name, _ in host.calls] == ["broken", "refused"]
    failures = {e.name: e.reason for e in events if isinstance(e, ToolFailed)}
    assert failures == {"broken": "The server time stopped answering.", "forbidden": NEVER}
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error and result.content == "no such file"
    content = _final(events).response.content
    assert content.startswith(
        "Tool broken said: The server time stopped answering.\n\n"
        f"Tool forbidden said: {NEVER}\n\nTool refused said: no such file\n\n"
    )
    if provider == "anthropic":  # its API marks a failed call's result as an error
        blocks = sim.chat_requests[-1].json["messages"][-1]["content"]
        assert [b.get("is_error", False) for b in blocks] == [True, True, True]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_arguments_that_are_not_json_are_an_error_the_model_sees(
    sim: Simulator, provider: ProviderName
) -> None:
    host = LocalHost({"echo": echo})
    events = await _events(_loop(sim, provider, 'call echo with {"text": unquoted', host))

    assert host.calls == []
    (failed,) = [e for e in events if isinstance(e, ToolFailed)]
    assert failed.reason.startswith("The arguments were not valid JSON")
    assert _final(events).response.content.startswith("Tool echo said: The arguments were not")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_progress_is_passed_on_while_the_tool_runs(
    sim: Simulator, provider: ProviderName
) -> None:
    async def files(args: dict[str, Any], progress: ProgressCallback | None) -> ToolOutput:
        assert progress is not None
        for n in (1, 2, 3):
            progress(n, 3, f"{n} of 3 files")
            await asyncio.sleep(0)
        return ToolOutput("3 files")

    host = LocalHost({"files": files})
    events = await _events(_loop(sim, provider, "call files with {}", host))

    progress = [e for e in events if isinstance(e, ToolProgress)]
    assert [(p.progress, p.total, p.message) for p in progress] == [
        (1, 3, "1 of 3 files"),
        (2, 3, "2 of 3 files"),
        (3, 3, "3 of 3 files"),
    ]
    result = next(i for i, e in enumerate(events) if isinstance(e, ToolResult))
    assert all(events.index(p) < result for p in progress)
    assert progress[0].elapsed_s <= progress[-1].elapsed_s


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_loop_stops_after_max_rounds_with_a_sentence(
    sim: Simulator, provider: ProviderName
) -> None:
    async def again(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
        return ToolOutput('Not yet: call again with {"n": 1}')

    host = LocalHost({"again": again})
    events = await _events(_loop(sim, provider, "call again with {}", host, max_rounds=2))

    assert len(host.calls) == 2
    rounds = [e for e in events if isinstance(e, ToolRoundStarted)]
    assert rounds == [ToolRoundStarted(1, 2), ToolRoundStarted(2, 2)]
    assert len(sim.chat_requests) == 3
    unrun = [e for e in events if isinstance(e, ToolFailed)]
    assert len(unrun) == 1 and "limit" in unrun[0].reason
    assert _final(events).response.content.endswith(limit_sentence(2))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_while_a_tool_hangs_cancels_the_tool_and_ends_the_turn(
    sim: Simulator, provider: ProviderName
) -> None:
    async def hang(args: dict[str, Any], _: ProgressCallback | None) -> ToolOutput:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    host = LocalHost({"hang": hang})
    loop = _loop(sim, provider, "call hang with {}", host)
    events: list[StreamEvent] = []
    async for event in loop:
        events.append(event)
        if isinstance(event, ToolCallStarted):
            await asyncio.sleep(0.05)
            loop.cancel()
    await loop.engine.aclose()

    assert host.cancelled == ["hang"]
    assert isinstance(events[-1], Cancelled)
    stopped = [e for e in events if isinstance(e, ToolFailed)]
    assert len(stopped) == 1 and stopped[0].reason == "The tool call was stopped."
    assert len(sim.chat_requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_while_waiting_for_approval(sim: Simulator, provider: ProviderName) -> None:
    never_answered = asyncio.Event()

    async def approver(info: ToolInfo, arguments: str) -> Decision:
        await never_answered.wait()
        return "once"

    host = LocalHost({"echo": echo}, {"echo": "ask"})
    loop = ToolLoop(
        engine_for(),
        request_for(sim, provider, "call echo with {}"),
        host=host,
        approver=approver,
    )
    events: list[StreamEvent] = []
    async for event in loop:
        events.append(event)
        if isinstance(event, ToolApprovalNeeded):
            asyncio.get_running_loop().call_later(0.05, loop.cancel)
    await loop.engine.aclose()

    assert isinstance(events[-1], Cancelled) and host.calls == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_cancel_while_the_arguments_stream(sim: Simulator, provider: ProviderName) -> None:
    sim.script(Fault(tokens_per_s=20))
    host = LocalHost({"echo": echo})
    long_text = "x" * 200
    loop = _loop(sim, provider, f'call echo with {{"text": "{long_text}"}}', host)
    events: list[StreamEvent] = []
    async for event in loop:
        events.append(event)
        if isinstance(event, ToolCallDelta) and event.arguments:
            loop.cancel()
    await loop.engine.aclose()

    assert isinstance(events[-1], Cancelled)
    assert host.calls == []
    await sim.wait_for_disconnect(1, timeout=5)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_restart_after_a_tool_round_sends_the_result_again_without_running_the_tool(
    sim: Simulator, provider: ProviderName
) -> None:
    sim.default_tokens = 40
    sim.script(Fault(), Fault(drop_after=25))
    host = LocalHost({"echo": echo})
    loop = _loop(sim, provider, 'call echo with {"text": "once only"}', host)
    events = await _events(loop)

    assert host.calls == [("echo", {"text": "once only"})]
    assert len(sim.chat_requests) == 3
    assert results_sent(provider, sim.chat_requests[1].json) == results_sent(
        provider, sim.chat_requests[2].json
    )
    restart = next(i for i, e in enumerate(events) if isinstance(e, Restarted))
    # the turn is shown again from its start: its tool call (not run again), then the answer
    replayed = events[restart + 1 :]
    assert [type(e) for e in replayed[:2]] == [ToolCallStarted, ToolResult]
    assert isinstance(replayed[2], ToolRoundStarted)
    after = "".join(e.text for e in replayed if isinstance(e, TextDelta))
    final = _final(events).response
    assert after == final.content
    assert final.content.startswith("Tool echo said: once only")
    assert final.content == sim.reply_text(sim.chat_requests[2])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_replies_that_use_tools_are_not_cached(
    sim: Simulator, provider: ProviderName, tmp_path: Path
) -> None:
    cache = AsyncResponseCache(tmp_path / "cache", ttl_s=3600, size_limit_bytes=10_000_000)
    try:
        for _ in range(2):
            engine = engine_for(cache=cache, cache_key=cache_key)
            host = LocalHost({"echo": echo})
            loop = _loop(sim, provider, 'call echo with {"text": "t"}', host, engine=engine)
            events = await _events(loop)
            assert not any(isinstance(e, CacheHit) for e in events)
            assert len(host.calls) == 1
        assert len(sim.chat_requests) == 4
        # a reply that used no tool is cached as usual
        for _ in range(2):
            engine = engine_for(cache=cache, cache_key=cache_key)
            loop = _loop(sim, provider, "No tools today", LocalHost({"echo": echo}), engine=engine)
            events = await _events(loop)
        assert any(isinstance(e, CacheHit) for e in events)
        assert len(sim.chat_requests) == 5
    finally:
        await cache.aclose()


def test_exposed_names_are_valid_and_unique() -> None:
    tools = [
        ToolInfo("a", "read.file"),
        ToolInfo("b", "read.file"),
        ToolInfo("c", "search"),
        ToolInfo("d", "x" * 100),
    ]
    exposed = expose(tools)
    assert list(exposed) == ["a_read_file", "b_read_file", "search", "x" * 64]
    assert [info.server for info in exposed.values()] == ["a", "b", "c", "d"]


async def test_a_tool_host_that_breaks_ends_the_turn_with_a_sentence(sim: Simulator) -> None:
    class Broken(LocalHost):
        async def list_tools(self, servers: Collection[str] | None = None) -> list[ToolInfo]:
            raise KeyError("oops")

    events = await _events(_loop(sim, "openai", "hello", Broken({})))
    (failed,) = events
    assert isinstance(failed, Failed)
    assert "unexpected problem with tools" in str(failed.error)
    assert failed.error.detail == "KeyError"
