"""1. Engine throughput: one long stream read by Rill's engine, the openai SDK and a bare loop."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from importlib import metadata

import httpx
import httpx_sse
from openai import AsyncOpenAI

from benchmarks.common import Row, at_least, info, log, median, simulator_process, spread
from desktop_app.core.engine import Engine
from desktop_app.core.events import Finished
from desktop_app.core.providers import get_provider
from desktop_app.core.types import ChatRequest, Message

TOKENS = 50_000
ROUNDS = 21
SDK_EVERY = 3
QUICK_TOKENS = 5_000
QUICK_ROUNDS = 3
MODEL = "sim-small"
PROMPT = "Tell me about rivers"

METHOD = f"""\
The simulator runs as a separate process (`python -m desktop_app.simulator --tokens-per-s 0
--tokens {TOKENS}`), so it does not share a GIL with the client being measured. It streams
one OpenAI-style reply of {TOKENS:,} tokens as fast as it can: {TOKENS + 3:,} SSE chunks (the
role chunk, one chunk per token, the finish chunk and the usage chunk) plus `[DONE]`. The same
request (same prompt, model and `stream_options.include_usage`) is read three ways, each with
its own client kept open across runs:

- **engine**: `Engine(cache=None).stream(request, read_cache=False, write_cache=False)`,
  iterating every event to `Finished` (whose usage must say {TOKENS:,} output tokens);
- **SDK**: the official `openai` package, `AsyncOpenAI(base_url=…/v1).chat.completions
  .create(stream=True, …)`, iterating every chunk;
- **bare loop**: `httpx.AsyncClient` + `httpx_sse.aconnect_sse` posting the very request
  body the engine sends, `json.loads` of every event's data — the least work any Python
  client can do with this stream.

One warm-up run of each, then {ROUNDS} rounds. Each round runs the engine and the bare loop
one after the other, and every {SDK_EVERY}rd round the SDK too (it is about ten times slower;
{ROUNDS // SDK_EVERY} SDK runs in all), in an order that rotates from round to round. Chunks
per second is the stream's chunk count divided by the wall time from sending the request to
the last event. The figures are medians over the runs; each ratio is the median of the
per-round ratios, since both readers of a round see the same machine load."""

Reader = Callable[[], Awaitable[int]]


def _request(base_url: str) -> ChatRequest:
    return ChatRequest(
        provider="openai",
        base_url=base_url,
        model=MODEL,
        messages=(Message("user", PROMPT),),
    )


def _engine_reader(engine: Engine, request: ChatRequest, tokens: int) -> Reader:
    async def read() -> int:
        events = 0
        last: object = None
        async for event in engine.stream(request, read_cache=False, write_cache=False):
            events += 1
            last = event
        if not isinstance(last, Finished):
            raise RuntimeError(f"the engine's stream ended with {last!r}, not Finished")
        usage = last.response.usage
        if usage is None or usage.output_tokens != tokens:
            raise RuntimeError(f"the engine's reply reports {usage} instead of {tokens} tokens")
        return events

    return read


def _sdk_reader(client: AsyncOpenAI) -> Reader:
    async def read() -> int:
        chunks = 0
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _chunk in stream:
            chunks += 1
        return chunks

    return read


def _bare_reader(client: httpx.AsyncClient, url: str, body: bytes) -> Reader:
    headers = {"Content-Type": "application/json"}

    async def read() -> int:
        chunks = 0
        async with httpx_sse.aconnect_sse(
            client, "POST", url, content=body, headers=headers
        ) as source:
            async for sse in source.aiter_sse():
                if sse.data == "[DONE]":
                    continue
                json.loads(sse.data)
                chunks += 1
        return chunks

    return read


async def _timed(reader: Reader) -> tuple[float, int]:
    gc.collect()
    started = time.perf_counter()
    count = await reader()
    return time.perf_counter() - started, count


Runs = dict[str, dict[int, float]]
"""Seconds per run: reader name → round number → seconds."""


async def _measure(base_url: str, tokens: int, rounds: int) -> Runs:
    """Time every reader; checks that the SDK and the bare loop saw one and the same stream."""
    engine = Engine(api_key=lambda _request: "sk-bench", cache=None)
    sdk = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    bare = httpx.AsyncClient(timeout=httpx.Timeout(60.0, read=None))
    request = _request(base_url)
    body = get_provider("openai").encode_body(request)
    readers: dict[str, Reader] = {
        "engine": _engine_reader(engine, request, tokens),
        "bare": _bare_reader(bare, base_url + "/chat/completions", body),
        "sdk": _sdk_reader(sdk),
    }
    runs: Runs = {name: {} for name in readers}
    try:
        counts = {name: (await _timed(reader))[1] for name, reader in readers.items()}
        if counts["sdk"] != counts["bare"] or counts["bare"] != tokens + 3:
            raise RuntimeError(f"the readers saw different streams: {counts}")
        log(f"warm-up done: {counts['bare']:,} chunks per stream")
        for number in range(rounds):
            names = ["engine", "bare"] + (["sdk"] if number % SDK_EVERY == 0 else [])
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                runs[name][number] = (await _timed(readers[name]))[0]
            log(
                f"round {number + 1}/{rounds}: "
                + ", ".join(f"{name} {runs[name][number] * 1000:.0f} ms" for name in names)
            )
    finally:
        await engine.aclose()
        await sdk.close()
        await bare.aclose()
    return runs


def run(quick: bool) -> list[Row]:
    tokens = QUICK_TOKENS if quick else TOKENS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    chunks = tokens + 3
    with simulator_process(tokens=tokens, tokens_per_s=0) as sim:
        log(f"simulator process {sim.pid} on {sim.url}")
        runs = asyncio.run(_measure(sim.base_url("openai"), tokens, rounds))
    rates = {name: {n: chunks / s for n, s in by_round.items()} for name, by_round in runs.items()}

    def rate_row(name: str, label: str) -> Row:
        values = list(rates[name].values())
        per_chunk_us = median(list(runs[name].values())) / chunks * 1e6
        return info(
            label,
            median(values),
            "chunks/s",
            note=f"median of {len(values)} runs ({spread(values)}); "
            f"{per_chunk_us:.2f} µs per chunk",
        )

    def ratio_row(name: str, label: str, limit: float) -> Row:
        ratios = [rates["engine"][n] / rate for n, rate in rates[name].items()]
        return at_least(
            label,
            median(ratios),
            "×",
            limit,
            note=f"median of {len(ratios)} per-round ratios ({spread(ratios)})",
        )

    sdk_version = metadata.version("openai")
    return [
        rate_row("engine", f"Rill engine, {tokens:,}-token stream"),
        rate_row("sdk", f"openai SDK {sdk_version}, same stream"),
        rate_row("bare", "bare httpx + httpx-sse loop, same stream"),
        ratio_row("sdk", "engine ÷ SDK", 1.5),
        ratio_row("bare", "engine ÷ bare loop", 0.8),
    ]
