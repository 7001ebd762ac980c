"""8. Hostile input: how the engine's reading time grows with the size of one huge event."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import NamedTuple

from benchmarks.common import Row, below, info, log, median, spread
from desktop_app.core.engine import Engine
from desktop_app.core.errors import ReplyTooLarge
from desktop_app.core.events import Failed, Finished
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import ChatRequest, Message, ProviderName
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.simulator.server import Raw

SIZES_MB = (20, 40, 80)
QUICK_SIZES_MB = (2, 4, 8)
ROUNDS = 5
REJECT_MB = 80
RAISED = ResilienceSettings(max_retries=0, idle_timeout_s=120.0, max_reply_mb=100.0)
DEFAULT = ResilienceSettings(max_retries=0, idle_timeout_s=120.0)

METHOD = f"""\
One reply whose text arrives as a single event of {", ".join(map(str, SIZES_MB))} MB: an
Ollama NDJSON line (`{{"message":{{"content":"xxx…"}}}}` with no newline until its end,
then the `done` line) and, for comparison, one OpenAI SSE `data:` event of the same size
followed by the finish chunk and `[DONE]`. A `SimulatorThread` (its own thread and event
loop) serves each body raw, handing it to its socket 1 MB at a time as a server does; the
engine reads it over a socket to `Finished`, and the time is from sending the request to
the last event (median of {ROUNDS} rounds).
Such events are over the per-event limit at the default `resilience.max_reply_mb` (8 MB of
text, so 16 MB per event), so these rows raise it to 100 MB: they measure how reading cost
grows with an event's size, which must be linear: the 80/20 ratio is 4 for linear work and
16 for quadratic work; it is held under 8, since work over buffers far larger than the CPU
caches costs somewhat more per byte as they grow. One
more row sends an {REJECT_MB} MB line at the default limit and times how long the engine takes to
stop it with its sentence (it reads only up to the limit)."""


def _kind(event: object) -> str:
    error = getattr(event, "error", None)
    return f"{type(event).__name__} {error or ''}"


def _body(protocol: ProviderName, size: int) -> tuple[bytes, str]:
    text = "x" * size
    if protocol == "ollama":
        line = json.dumps({"model": "m", "message": {"role": "assistant", "content": text}})
        done = json.dumps({"model": "m", "done": True, "done_reason": "stop"})
        return (line + "\n" + done + "\n").encode(), "application/x-ndjson"
    chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})
    finish = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = f"data: {chunk}\n\ndata: {finish}\n\ndata: [DONE]\n\n"
    return body.encode(), "text/event-stream"


class _Timed(NamedTuple):
    took: float
    last: object

    def __repr__(self) -> str:
        # asyncio.run, on leaving, formats its task with its result (Python 3.11's signal
        # module puts the SIGINT handler it restores in an error message): a repr of a
        # reply of 80 MB, seconds of the run for nothing
        return f"_Timed({self.took:.3f} s, {type(self.last).__name__})"


async def _time_one(
    sim: SimulatorThread,
    protocol: ProviderName,
    body: bytes,
    kind: str,
    settings: ResilienceSettings,
) -> _Timed:
    sim.script(Fault(raw=Raw(headers={"Content-Type": kind}, body=body)))
    engine = Engine(resilience=settings, api_key=lambda _r: None)
    request = ChatRequest(
        provider=protocol,
        base_url=sim.base_url(protocol),
        model="m",
        messages=(Message("user", "q"),),
    )
    try:
        gc.collect()
        started = time.perf_counter()
        last: object = None
        async for event in engine.stream(request, read_cache=False, write_cache=False):
            last = event
        took = time.perf_counter() - started
    finally:
        await engine.aclose()
    return _Timed(took, last)


def run(quick: bool) -> list[Row]:
    sizes = QUICK_SIZES_MB if quick else SIZES_MB
    rounds = 1 if quick else ROUNDS
    rows: list[Row] = []
    sim = SimulatorThread(tokens_per_s=0).start()
    try:
        cases: tuple[tuple[ProviderName, str], ...] = (
            ("ollama", "NDJSON line"),
            ("openai", "SSE event"),
        )
        for protocol, label in cases:
            times: dict[int, float] = {}
            for mb in sizes:
                body, kind = _body(protocol, mb * 1_000_000)
                runs = []
                for _ in range(rounds):
                    took, last = asyncio.run(_time_one(sim, protocol, body, kind, RAISED))
                    if not isinstance(last, Finished) or len(last.response.content) != mb * 10**6:
                        raise RuntimeError(f"{label} of {mb} MB did not finish: {_kind(last)}")
                    runs.append(took)
                times[mb] = median(runs)
                log(f"{label} {mb} MB: {times[mb]:.2f} s")
                rows.append(
                    info(
                        f"one {label} of {mb} MB, read to Finished",
                        times[mb],
                        "s",
                        note=f"median of {rounds} ({spread(runs)}); cap raised to 100 MB",
                    )
                )
            small, big = sizes[0], sizes[-1]
            rows.append(
                below(
                    f"{label}: time for {big} MB ÷ time for {small} MB",
                    times[big] / times[small],
                    "×",
                    8.0,
                    note=f"linear growth gives {big // small}×, quadratic {(big // small) ** 2}×; "
                    f"{big} MB ÷ {sizes[1]} MB: {times[big] / times[sizes[1]]:.2f}×",
                )
            )
        body, kind = _body("ollama", REJECT_MB * 1_000_000)
        took, last = asyncio.run(_time_one(sim, "ollama", body, kind, DEFAULT))
        if not (isinstance(last, Failed) and isinstance(last.error, ReplyTooLarge)):
            raise RuntimeError(f"the {REJECT_MB} MB line was not stopped: {_kind(last)}")
        rows.append(
            info(
                f"one NDJSON line of {REJECT_MB} MB at the default limit: time to stop it",
                took,
                "s",
                note=str(last.error.message),
            )
        )
    finally:
        sim.stop()
    return rows
