"""5. Memory: how much the resident set grows while the engine reads a 10,000-token reply."""

from __future__ import annotations

import asyncio
import gc

import psutil

from benchmarks.common import Row, below, info, log, simulator_process
from desktop_app.core.engine import Engine
from desktop_app.core.events import Finished
from desktop_app.core.types import ChatRequest, Message

TOKENS = 10_000
REPEATS = 10
SETTLE = 5
QUICK_REPEATS = 3
QUICK_SETTLE = 1
SAMPLE_EVERY = 250
MB = 1024 * 1024

METHOD = f"""\
The simulator runs as a separate process streaming {TOKENS:,}-token OpenAI-style replies at
full speed, so only the client's memory is measured. In a fresh worker process (imports done,
one `Engine` created, nothing sent yet) the engine reads one reply to `Finished`; the resident
set size (`psutil.Process().memory_info().rss`) is read before the reply and every
{SAMPLE_EVERY} events during it, and the figure is the peak minus the value before. That first
reply includes one-time costs (modules httpx imports on first use, the connection). A second
reply is measured the same way for the steady state. Then, after {SETTLE} more replies to let
the allocator settle, {REPEATS} replies run back to back, and the growth of RSS from before
them to after them (after `gc.collect()`), divided by {REPEATS}, shows whether anything is
kept per reply. The consumer keeps nothing; the engine
itself keeps the reply's text (for `Finished` and the partial text on cancel)."""


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def _reply(engine: Engine, request: ChatRequest) -> tuple[int, int]:
    """Read one reply; RSS before it and the peak RSS while it streamed."""
    gc.collect()
    before = peak = _rss()
    events = 0
    last: object = None
    async for event in engine.stream(request, read_cache=False, write_cache=False):
        events += 1
        last = event
        if events % SAMPLE_EVERY == 0:
            peak = max(peak, _rss())
    peak = max(peak, _rss())
    if not isinstance(last, Finished) or last.response.usage is None:
        raise RuntimeError(f"the reply did not finish: {last!r}")
    if last.response.usage.output_tokens != TOKENS:
        raise RuntimeError(f"the reply had {last.response.usage.output_tokens} tokens")
    return before, peak


async def _measure(base_url: str, repeats: int, settle: int) -> dict[str, float]:
    engine = Engine(api_key=lambda _request: "sk-bench", cache=None)
    request = ChatRequest(
        provider="openai",
        base_url=base_url,
        model="sim-small",
        messages=(Message("user", "Tell me about rivers"),),
    )
    try:
        first_before, first_peak = await _reply(engine, request)
        second_before, second_peak = await _reply(engine, request)
        for _ in range(settle):
            await _reply(engine, request)
        gc.collect()
        start = _rss()
        for _ in range(repeats):
            await _reply(engine, request)
        gc.collect()
        end = _rss()
    finally:
        await engine.aclose()
    return {
        "first": (first_peak - first_before) / MB,
        "second": (second_peak - second_before) / MB,
        "per_reply_kb": (end - start) / repeats / 1024,
        "baseline": first_before / MB,
        "end": end / MB,
    }


def run(quick: bool) -> list[Row]:
    repeats = QUICK_REPEATS if quick else REPEATS
    settle = QUICK_SETTLE if quick else SETTLE
    with simulator_process(tokens=TOKENS, tokens_per_s=0) as sim:
        log(f"simulator process {sim.pid} on {sim.url}")
        figures = asyncio.run(_measure(sim.base_url("openai"), repeats, settle))
    return [
        below(
            f"RSS growth over the first {TOKENS:,}-token reply (peak − before)",
            figures["first"],
            "MB",
            50.0,
            note=f"fresh process, RSS {figures['baseline']:.0f} MB before; "
            "includes one-time first-use costs",
        ),
        below(
            f"RSS growth over a later {TOKENS:,}-token reply (peak − before)",
            figures["second"],
            "MB",
            50.0,
        ),
        info(
            f"RSS growth per reply over {repeats} further replies",
            figures["per_reply_kb"],
            "KB",
            note=f"RSS {figures['end']:.0f} MB at the end",
        ),
    ]
