"""2. Added latency: from the simulator's flush of a first chunk to the engine's first TextDelta."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from types import TracebackType

import httpx
import httpx_sse

from benchmarks.common import Row, below, info, log, median, percentile
from desktop_app.core.engine import Engine
from desktop_app.core.events import Finished, TextDelta
from desktop_app.core.providers import get_provider
from desktop_app.core.types import ChatRequest, Message
from desktop_app.simulator import SimulatorThread

REQUESTS = 200
WARM_UP = 20
QUICK_REQUESTS = 30
QUICK_WARM_UP = 5
TOKENS = 3
CLOCK_CHECKS = 20
PER_CONNECTION = 10
TOKENS_PER_S = 200.0
MODEL = "sim-small"
PROMPT = "Tell me about rivers"

METHOD = f"""\
`RecordedRequest.first_chunk_at` is the simulator's `time.perf_counter()` right after it has
written the first chunk of a reply to the socket, so the client's timestamp must come from the
same clock. On Linux `perf_counter()` is `clock_gettime(CLOCK_MONOTONIC)`, one clock for every
process on the machine, so the simulator can still run in its own process and keep its own
GIL: a `multiprocessing` child runs a `SimulatorThread` and answers the benchmark over a pipe
(its port once it listens; the `first_chunk_at` of each request, asked between requests). Before
measuring, the benchmark checks the clocks really agree: {CLOCK_CHECKS} times it reads its own
`perf_counter()`, asks the child for its reading, and reads its own again; the child's reading
must fall between the two. (Running the simulator as a thread of the benchmark's process would
also share the clock, but then the simulator thread and the engine compete for one GIL at
exactly the moment measured, which can delay the simulator's timestamp past the engine's
reaction and make the interval look shorter than it is.) For the same reason the benchmark
pins itself and the simulator's process to different CPUs when it has two: on one shared
CPU the client, woken by the first chunk, can preempt the simulator between its write and its
timestamp (unpinned, a few percent of the samples came out negative here).

Each of {REQUESTS} requests (after {WARM_UP} warm-up requests) asks for a {TOKENS}-token reply
paced at {TOKENS_PER_S:.0f} tokens/s: the first chunk (role chunk plus first token) is flushed at
once, the next one {1000 / TOKENS_PER_S:.0f} ms later. The added latency of one request is
`perf_counter()` in the consumer's loop when the first `TextDelta` arrives, minus that
request's `first_chunk_at`: what httpx (reading the response head and the chunk), SSE
decoding, JSON parsing and the engine's events add on top of the network. It also includes
the kernel's loopback delivery and the wake-up of the client's idle event loop — on this
virtual machine, of its idle virtual CPU too — which is most of it. For comparison the same
interval is measured for the bare httpx + httpx-sse loop (first `json.loads`-ed chunk with
content), sending the very bytes the engine sends as its request body, alternating with the
engine request by request.

Requests reuse a keep-alive connection, as the app does: both readers read each stream to its
end, so the connection goes back to the pool (a reader that stopped at `[DONE]` would leave the
chunked body unfinished, lose its connection and pay for a new one on every request — which
also changes how idle the machine is when the first chunk arrives). Every {PER_CONNECTION}
requests both are replaced, so the samples of each spread over {REQUESTS // PER_CONNECTION}
connections. The interval varies with how deeply the client's CPU was idle when the chunk
arrived — by a few hundred µs here — which is why p99 is well above p50. Should a sample
still come out negative (the simulator's process descheduled between its write and its
timestamp), it is kept and counted in the note."""


def _request(base_url: str) -> ChatRequest:
    return ChatRequest(
        provider="openai", base_url=base_url, model=MODEL, messages=(Message("user", PROMPT),)
    )


# --------------------------------------------------------------------------------------------
# The simulator in a child process that reports its flush times
# --------------------------------------------------------------------------------------------


def _serve(conn: Connection, tokens_per_s: float, tokens: int) -> None:
    """The child: a SimulatorThread, and answers to the parent's questions over ``conn``.

    ``"clock"`` → this process's ``perf_counter()``; ``"flushes"`` → ``first_chunk_at`` of
    every chat request that came since the last such question; anything else stops the
    simulator.
    """
    with SimulatorThread(tokens_per_s=tokens_per_s, default_tokens=tokens) as sim:
        conn.send(sim.port)
        reported = 0
        while True:
            command = conn.recv()
            if command == "clock":
                conn.send(time.perf_counter())
            elif command == "flushes":
                records = sim.chat_requests
                conn.send([record.first_chunk_at for record in records[reported:]])
                reported = len(records)
            else:
                break
    conn.close()


class SimulatorChild:
    """A multiprocessing child running the simulator; it says its port once it listens."""

    def __init__(self, *, tokens_per_s: float, tokens: int, timeout_s: float = 30.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, tokens_per_s, tokens), name="rill-simulator"
        )
        self._child_end = child_end
        self.timeout_s = timeout_s
        self.port = 0

    def __enter__(self) -> SimulatorChild:
        self._process.start()
        self._child_end.close()
        if not self._conn.poll(self.timeout_s):
            self._stop()
            raise RuntimeError(f"the simulator process did not listen within {self.timeout_s} s")
        self.port = int(self._conn.recv())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=10)
        self._conn.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def base_url(self, provider: str) -> str:
        url = f"http://127.0.0.1:{self.port}"
        return url + "/v1" if provider == "openai" else url

    def flushes(self) -> list[float | None]:
        self._conn.send("flushes")
        return list(self._conn.recv())

    def check_clock(self, times: int) -> float:
        """Check that the child's ``perf_counter()`` reads between two of ours; the widest gap."""
        widest = 0.0
        for _ in range(times):
            before = time.perf_counter()
            self._conn.send("clock")
            theirs = float(self._conn.recv())
            after = time.perf_counter()
            if not before <= theirs <= after:
                raise RuntimeError(
                    "the simulator process's perf_counter() is not this process's clock: "
                    f"{theirs} is not between {before} and {after}"
                )
            widest = max(widest, after - before)
        return widest


def _pin_apart(child: int | None) -> str:
    """Put this process and the simulator's on different CPUs, where there are two to use.

    On one CPU, the client woken by the first chunk can preempt the simulator between its
    write and its timestamp, which makes the interval look shorter than it is.
    """
    if child is None or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    os.sched_setaffinity(0, {cpus[0]})
    os.sched_setaffinity(child, {cpus[1]})
    return f"pinned: benchmark on CPU {cpus[0]}, simulator on CPU {cpus[1]}"


def _flushed_at(sim: SimulatorChild) -> float:
    flushes = sim.flushes()
    if len(flushes) != 1 or flushes[0] is None:
        raise RuntimeError(f"expected one request with a first chunk, got {flushes}")
    return flushes[0]


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


async def _engine_first_text(engine: Engine, request: ChatRequest) -> float:
    """``perf_counter()`` when the first TextDelta of one reply reached the consumer."""
    first: float | None = None
    last: object = None
    async for event in engine.stream(request, read_cache=False, write_cache=False):
        if first is None and type(event) is TextDelta:
            first = time.perf_counter()
        last = event
    if not isinstance(last, Finished) or first is None:
        raise RuntimeError(f"the engine's reply did not finish with text: {last!r}")
    return first


async def _bare_first_text(client: httpx.AsyncClient, url: str, body: bytes) -> float:
    """The same moment for the bare httpx + httpx-sse loop."""
    first: float | None = None
    headers = {"Content-Type": "application/json"}
    async with httpx_sse.aconnect_sse(client, "POST", url, content=body, headers=headers) as source:
        async for sse in source.aiter_sse():
            if sse.data == "[DONE]":
                continue
            chunk = json.loads(sse.data)
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
    if first is None:
        raise RuntimeError("the bare loop saw no text")
    return first


async def _measure(
    sim: SimulatorChild, requests: int, warm_up: int
) -> tuple[list[float], list[float]]:
    base_url = sim.base_url("openai")
    request = _request(base_url)
    url = base_url + "/chat/completions"
    body = get_provider("openai").encode_body(request)
    engine_s: list[float] = []
    bare_s: list[float] = []
    engine: Engine | None = None
    client: httpx.AsyncClient | None = None
    try:
        for index in range(warm_up + requests):
            if index % PER_CONNECTION == 0:
                if engine is not None and client is not None:
                    await engine.aclose()
                    await client.aclose()
                engine = Engine(api_key=lambda _request: "sk-bench", cache=None)
                client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
            assert engine is not None and client is not None
            engine_at = await _engine_first_text(engine, request)
            engine_gap = engine_at - _flushed_at(sim)
            bare_at = await _bare_first_text(client, url, body)
            bare_gap = bare_at - _flushed_at(sim)
            if index >= warm_up:
                engine_s.append(engine_gap)
                bare_s.append(bare_gap)
                done = index + 1 - warm_up
                if done % 50 == 0:
                    log(f"{done}/{requests} requests")
    finally:
        if engine is not None:
            await engine.aclose()
        if client is not None:
            await client.aclose()
    return engine_s, bare_s


def run(quick: bool) -> list[Row]:
    requests = QUICK_REQUESTS if quick else REQUESTS
    warm_up = QUICK_WARM_UP if quick else WARM_UP
    with SimulatorChild(tokens_per_s=TOKENS_PER_S, tokens=TOKENS) as sim:
        pinned = _pin_apart(sim.pid)
        widest = sim.check_clock(CLOCK_CHECKS)
        log(
            f"simulator process {sim.pid} on port {sim.port}; {pinned}; its clock agrees with "
            f"ours (widest round trip {widest * 1e6:.0f} µs)"
        )
        engine_s, bare_s = asyncio.run(_measure(sim, requests, warm_up))
    engine_ms = [s * 1000 for s in engine_s]
    bare_ms = [s * 1000 for s in bare_s]

    def note(samples: list[float]) -> str:
        text = f"{requests} requests over {requests // PER_CONNECTION} connections"
        early = sum(ms < 0 for ms in samples)
        if early:
            text += f"; {early} sample(s) < 0 (simulator's timestamp taken late)"
        return text

    return [
        below(
            "engine: first flush → first TextDelta, p50",
            median(engine_ms),
            "ms",
            1.0,
            note=note(engine_ms),
        ),
        info(
            "engine: first flush → first TextDelta, p99",
            percentile(engine_ms, 99),
            "ms",
            note=f"max {max(engine_ms):.2f} ms",
        ),
        info(
            "bare httpx + httpx-sse loop: same interval, p50",
            median(bare_ms),
            "ms",
            note=note(bare_ms),
        ),
        info(
            "bare httpx + httpx-sse loop: same interval, p99",
            percentile(bare_ms, 99),
            "ms",
            note=f"max {max(bare_ms):.2f} ms",
        ),
    ]
