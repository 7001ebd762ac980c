"""A seeded byte-level fuzz of the stream readers and parsers.

Real captured streams (the golden fixtures) are mutated — bytes flipped, inserted,
deleted, duplicated, cut off, and hostile pieces spliced in (deep nesting, huge numbers,
lone surrogate escapes, NULs, bytes that are not UTF-8, wrong types) — and each mutant is
read the way the engine reads a body: thousands in-process through the engine's own
``_FrameReader`` and the provider's parser, a few dozen over a socket from the simulator.
Every one must end in a result or a typed :class:`RillError`, quickly, and whatever text
comes out must be valid.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from desktop_app.core.engine import _FrameReader
from desktop_app.core.errors import RillError
from desktop_app.core.events import Failed, Finished, StreamEvent, TextDelta, ToolCallDelta
from desktop_app.core.providers import get_provider
from desktop_app.core.providers.base import StreamParser
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import ChatRequest, Message
from desktop_app.simulator import Fault
from desktop_app.simulator.server import Raw
from tests.conftest import FIXTURES
from tests.helpers import collect, engine_for, request_for

SETTINGS = ResilienceSettings(
    max_retries=0, connect_timeout_s=2.0, first_token_timeout_s=5.0, idle_timeout_s=5.0
)
SPLICES: tuple[bytes, ...] = (
    b"[" * 50_000,
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 3000,
    b"1" * 5000,
    b"1e999",
    b"-1e999",
    b"NaN",
    b"\\ud83d",
    b"\\ude00",
    b"\\ud800\\ud800",
    b"\\u0000",
    b"\x00",
    b"\xff\xfe",
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8, which UTF-8 forbids
    b"\xf0\x9f",  # half of a 4-byte character
    b"\n",
    b"\r",
    b"\n\n",
    b"data: ",
    b"data: [DONE]\n\n",
    b"event: error\n",
    b'"content":5,',
    b'"content":{"a":[]},',
    b'"choices":7,',
    b'"index":"x",',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"',
    b"\\",
    "\u2028".encode(),
)


def _fixtures() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for path in sorted(Path(FIXTURES).iterdir()):
        if path.suffix in (".sse", ".ndjson"):
            out.append((path.name.partition("_")[0], path.read_bytes()))
    return out


VALUES: tuple[Any, ...] = (
    5,
    -1,
    1e308,
    10**40,
    True,
    None,
    "",
    "x",
    "\ud83d",
    "\udc00 lone",
    "\x00",
    [],
    [5],
    ["x"],
    {},
    {"a": 1},
    {"type": "text_delta", "text": 5},
)


def _swap_value(node: Any, rng: random.Random) -> Any:
    """``node`` with one value somewhere inside replaced by a value of another shape."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(list(node))
        return {**node, key: _swap_value(node[key], rng)}
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = rng.randrange(len(node))
        return [*node[:i], _swap_value(node[i], rng), *node[i + 1 :]]
    return rng.choice(VALUES)


def _swap_in_json(data: bytes, rng: random.Random) -> bytes:
    """Replace one value of one JSON chunk with a value of the wrong shape or type."""
    lines = data.split(b"\n")
    chunks = [i for i, line in enumerate(lines) if line.lstrip(b"data: ").startswith(b"{")]
    if not chunks:
        return data
    i = rng.choice(chunks)
    prefix = b"data: " if lines[i].startswith(b"data: ") else b""
    value = _swap_value(json.loads(lines[i][len(prefix) :]), rng)
    lines[i] = prefix + json.dumps(value).encode()
    return b"\n".join(lines)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits of ``data``."""
    if rng.random() < 0.4:
        data = _swap_in_json(data, rng)
        if rng.random() < 0.7:
            return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(buf))
        op = rng.randrange(7)
        if op == 0 and buf:  # flip bits of one byte
            i = min(at, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:  # delete a run
            del buf[at : at + rng.randint(1, 32)]
        elif op == 3:  # duplicate a run
            end = min(len(buf), at + rng.randint(1, 200))
            buf[end:end] = buf[at:end]
        elif op == 4:  # cut off
            del buf[at:]
        else:  # splice in something hostile
            buf[at:at] = rng.choice(SPLICES)
    return bytes(buf)


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    at = 0
    while at < len(data):
        size = rng.choice((1, 2, 3, 7, 64, 500, 4096, 1 << 20))
        out.append(data[at : at + size])
        at += size
    return out


def _check(events: Sequence[StreamEvent]) -> None:
    for event in events:
        if isinstance(event, TextDelta):
            assert type(event.text) is str
            event.text.encode("utf-8")
        elif isinstance(event, ToolCallDelta):
            assert type(event.index) is int
            (event.arguments + (event.name or "") + (event.id or "")).encode("utf-8")


def _check_result(parser: StreamParser) -> None:
    (parser.text + parser.model + (parser.raw_finish or "")).encode("utf-8")
    assert parser.finish_reason in ("stop", "length", "tool_calls", "content_filter")
    for call in parser.tool_calls:
        (call.arguments + call.name + (call.id or "")).encode("utf-8")


async def read_in_process(provider_name: str, body: bytes, pieces: Sequence[bytes]) -> str:
    """Read ``body`` as the engine does; return "ok" or the error's class name."""
    provider = get_provider(provider_name)
    kind = "text/event-stream" if provider.framing == "sse" else "application/x-ndjson"
    response = httpx.Response(200, headers={"Content-Type": kind}, stream=_Pieces(pieces))
    request = ChatRequest(
        provider=provider.name, base_url="http://x", model="m", messages=(Message("user", "q"),)
    )
    parser = provider.parser(request)
    parser.max_chars = SETTINGS.max_reply_chars
    shown: list[str] = []
    try:
        reader = _FrameReader(provider, response, SETTINGS)
        try:
            async for piece in reader.pieces:
                for name, data in reader.decode(piece):
                    events = parser.feed(name, data)
                    _check(events)
                    shown += [e.text for e in events if isinstance(e, TextDelta)]
            for name, data in reader.finish():
                events = parser.feed(name, data)
                _check(events)
                shown += [e.text for e in events if isinstance(e, TextDelta)]
            events = parser.end()
            _check(events)
            shown += [e.text for e in events if isinstance(e, TextDelta)]
        finally:
            await reader.aclose()
    except RillError as exc:
        assert exc.message and str(exc)
        "".join(shown).encode("utf-8")
        return type(exc).__name__
    _check_result(parser)
    assert "".join(shown) == parser.text
    return "ok"


async def test_thousands_of_mutated_streams_read_in_process() -> None:
    rng = random.Random(20240611)
    fixtures = _fixtures()
    assert len(fixtures) >= 10
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for i in range(5000):
        provider, original = fixtures[i % len(fixtures)]
        body = mutate(original, rng)
        started = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(
                read_in_process(provider, body, _split(body, rng)), 5.0
            )
        except Exception as exc:
            raise AssertionError(f"mutant {i} of a {provider} stream: {body[:300]!r}") from exc
        slowest = max(slowest, time.perf_counter() - started)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # the mutants reach every way a stream can end, not only the first check
    assert outcomes.get("ok", 0) > 500, outcomes
    assert outcomes.get("CorruptStream", 0) > 500, outcomes
    assert outcomes.get("IncompleteStream", 0) > 100, outcomes
    assert slowest < 5.0


async def test_the_untouched_fixtures_read_cleanly() -> None:
    for provider, body in _fixtures():
        assert await read_in_process(provider, body, [body]) == "ok", provider


@pytest.mark.parametrize("seed", range(4))
async def test_mutated_streams_over_a_socket(sim: Any, seed: int) -> None:
    rng = random.Random(seed)
    fixtures = _fixtures()
    engine = engine_for(SETTINGS)
    try:
        for i in range(12):
            provider, original = fixtures[(seed * 12 + i) % len(fixtures)]
            body = mutate(original, rng)
            kind = "application/x-ndjson" if provider == "ollama" else "text/event-stream"
            sim.script(Fault(raw=Raw(headers={"Content-Type": kind}, body=body)))
            request = request_for(sim, provider)  # type: ignore[arg-type]
            try:
                events = await asyncio.wait_for(collect(engine.stream(request)), 5.0)
            except Exception as exc:
                raise AssertionError(f"{provider} mutant: {body[:300]!r}") from exc
            last = events[-1]
            assert isinstance(last, Finished | Failed), last
            _check(events)
            if isinstance(last, Finished):
                last.response.content.encode("utf-8")
    finally:
        await engine.aclose()
