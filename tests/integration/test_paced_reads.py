"""Reading a stream at most once per frame (``Engine.read_interval_s``), against the simulator."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from desktop_app.core.events import Cancelled, Finished, TextDelta
from desktop_app.simulator import Fault
from tests.helpers import engine_for, request_for

INTERVAL_S = 0.05
TOKENS = 60
RATE = 200.0  # a token every 5 ms: far more often than the interval


async def _arrivals(engine: Any, sim: Any) -> tuple[list[float], int, str, str]:
    """When each text delta reached the consumer, the stream events they joined, the text,
    and the finished content."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    parts: list[str] = []
    pieces = 0
    content = ""
    async for event in engine.stream(request_for(sim, "openai"), read_cache=False):
        if isinstance(event, TextDelta):
            times.append(loop.time())
            parts.append(event.text)
            pieces += event.pieces
        elif isinstance(event, Finished):
            content = event.response.content
    return times, pieces, "".join(parts), content


def _wake_ups(times: list[float]) -> int:
    """Bursts of deltas: a new one starts after a gap of more than 2 ms."""
    return 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > 0.002)


async def test_a_paced_stream_is_read_in_a_few_bursts_with_all_its_text(sim: Any) -> None:
    sim.script(Fault(tokens=TOKENS, tokens_per_s=RATE))
    engine = engine_for()
    engine.read_interval_s = INTERVAL_S
    try:
        times, pieces, text, content = await _arrivals(engine, sim)
    finally:
        await engine.aclose()
    assert text == content and pieces == TOKENS
    # about 0.3 s of stream read every 50 ms: about 7 reads, each given as one delta, not
    # one per token (60); the bound leaves room for a busy machine splitting a read now and then
    assert len(times) <= TOKENS // 3


async def test_without_an_interval_each_token_is_read_as_it_arrives(sim: Any) -> None:
    sim.script(Fault(tokens=TOKENS, tokens_per_s=RATE))
    engine = engine_for()
    try:
        times, pieces, text, content = await _arrivals(engine, sim)
    finally:
        await engine.aclose()
    assert text == content and pieces == TOKENS
    assert _wake_ups(times) > 30


async def test_a_cancel_while_waiting_for_the_next_frame_ends_at_once(sim: Any) -> None:
    sim.script(Fault(tokens=2_000, tokens_per_s=RATE))
    engine = engine_for()
    engine.read_interval_s = 5.0  # the stream waits between reads far longer than the test
    try:
        generation = engine.stream(request_for(sim, "openai"), read_cache=False)
        events = []
        async with asyncio.timeout(3):
            async for event in generation:
                events.append(event)
                if isinstance(event, TextDelta):
                    asyncio.get_running_loop().call_later(0.05, generation.cancel)
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Cancelled)
    assert events[-1].partial == "".join(e.text for e in events if isinstance(e, TextDelta))
