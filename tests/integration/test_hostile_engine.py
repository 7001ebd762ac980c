"""The engine against a hostile server, over real sockets: whatever the server sends, a
generation ends in a typed result or a typed error with a sentence, within its size limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desktop_app.core.engine import Engine
from desktop_app.core.errors import ConfigError, ConnectionFailed, CorruptStream, RillError
from desktop_app.core.events import Failed, Finished, Retrying, StreamEvent, TextDelta
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.simulator import Fault, SimulatorThread, hostile
from desktop_app.simulator.protocols import ProtocolName
from desktop_app.simulator.server import Raw, RecordedRequest
from tests.helpers import FAST, collect, engine_for, request_for, text_of

PROTOCOLS: tuple[ProtocolName, ...] = ("openai", "ollama", "anthropic", "gemini")
SMALL = dataclasses.replace(FAST, max_delay_s=0.05, idle_timeout_s=5.0, max_reply_mb=0.2)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _run(
    sim: Any,
    protocol: ProtocolName,
    settings: ResilienceSettings = SMALL,
    *,
    time_limit_s: float = 20.0,
    **kwargs: Any,
) -> list[StreamEvent]:
    engine = engine_for(settings, **kwargs)
    try:
        return await asyncio.wait_for(
            collect(engine.stream(request_for(sim, protocol))), time_limit_s
        )
    finally:
        await engine.aclose()


def _failure(events: list[StreamEvent]) -> Failed:
    last = events[-1]
    assert isinstance(last, Failed), last
    return last


def _all_text_encodable(events: list[StreamEvent]) -> None:
    for event in events:
        if isinstance(event, TextDelta):
            event.text.encode("utf-8")
        if isinstance(event, Finished):
            event.response.content.encode("utf-8")
            event.response.model.encode("utf-8")
            for call in event.response.tool_calls:
                (call.arguments + call.name + (call.id or "")).encode("utf-8")


# -- case 6: surrogates ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_surrogate_pair_split_across_deltas_is_joined_and_lone_ones_replaced(
    sim: Any, protocol: ProtocolName
) -> None:
    sim.script(hostile.reply(protocol, ["smile \ud83d", "\ude00 lone \ud800 end"]))
    events = await _run(sim, protocol)
    last = events[-1]
    assert isinstance(last, Finished), last
    assert last.response.content == "smile \U0001f600 lone \ufffd end"
    assert text_of(events) == last.response.content
    _all_text_encodable(events)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_high_surrogate_at_the_very_end_becomes_a_replacement_character(
    sim: Any, protocol: ProtocolName
) -> None:
    sim.script(hostile.reply(protocol, ["abc\udbff", "\udc00\udc00"]))
    events = await _run(sim, protocol)
    last = events[-1]
    assert isinstance(last, Finished), last
    assert last.response.content == "abc\U0010fc00\ufffd"
    assert text_of(events) == last.response.content
    _all_text_encodable(events)


async def test_surrogates_in_tool_arguments_model_and_ids_are_made_valid(sim: Any) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"model": "m\ud800x", "choices": [{"delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    call = {
        "index": 0,
        "id": "c\udfff",
        "function": {"name": "f\ud83d", "arguments": '{"a":"\ud83d'},
    }
    more = {"index": 0, "function": {"arguments": '\ude00"}'}}
    body = (
        chunk({"tool_calls": [call]})
        + chunk({"tool_calls": [more]})
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    sim.script(Fault(raw=Raw(headers={"Content-Type": "text/event-stream"}, body=body)))
    events = await _run(sim, "openai")
    last = events[-1]
    assert isinstance(last, Finished), last
    _all_text_encodable(events)
    (tool,) = last.response.tool_calls
    assert tool.arguments == '{"a":"\U0001f600"}'
    assert (tool.name, tool.id, last.response.model) == ("f\ufffd", "c\ufffd", "m\ufffdx")


# -- case 8: chunks Rill cannot parse -------------------------------------------------------


def _sse(*events: tuple[str, str]) -> bytes:
    return "".join(
        (f"event: {name}\n" if name else "") + f"data: {data}\n\n" for name, data in events
    ).encode()


_OPENAI_END = ("", "[DONE]")
_ANTHROPIC_END = ("message_stop", '{"type":"message_stop"}')
_GEMINI_END = ("", '{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}')

BAD_CHUNKS: list[tuple[ProtocolName, bytes]] = [
    ("openai", _sse(("", '{"choices": 5}'), _OPENAI_END)),
    ("openai", _sse(("", '{"choices": [5]}'), _OPENAI_END)),
    ("openai", _sse(("", '{"choices": [{"delta": {"content": 7}}]}'), _OPENAI_END)),
    ("openai", _sse(("", '{"choices": [{"delta": "x"}]}'), _OPENAI_END)),
    (
        "openai",
        _sse(("", '{"choices": [{"delta": {}, "finish_reason": ["stop"]}]}'), _OPENAI_END),
    ),
    ("openai", _sse(("", '{"model": 5, "choices": []}'), _OPENAI_END)),
    (
        "openai",
        _sse(
            ("", '{"choices":[{"delta":{"tool_calls":[{"index":"a","function":{"name":"f"}}]}}]}'),
            _OPENAI_END,
        ),
    ),
    ("openai", _sse(("", '{"choices": [], "usage": {"prompt_tokens": "many"}}'), _OPENAI_END)),
    ("openai", _sse(("", '{"choices": [], "usage": {"prompt_tokens": 1e999}}'), _OPENAI_END)),
    ("openai", _sse(("", '{"x": ' + "1" * 5000 + "}"), _OPENAI_END)),
    (
        "anthropic",
        _sse(("content_block_delta", '{"type":"content_block_delta","delta":"x"}'), _ANTHROPIC_END),
    ),
    (
        "anthropic",
        _sse(
            (
                "content_block_delta",
                '{"type":"content_block_delta","delta":{"type":"text_delta","text":5}}',
            ),
            _ANTHROPIC_END,
        ),
    ),
    (
        "anthropic",
        _sse(("message_start", '{"type":"message_start","message":"x"}'), _ANTHROPIC_END),
    ),
    (
        "anthropic",
        _sse(
            ("message_delta", '{"type":"message_delta","delta":{"stop_reason":{"a":1}}}'),
            _ANTHROPIC_END,
        ),
    ),
    ("gemini", _sse(("", '{"candidates": 5}'), _GEMINI_END)),
    ("gemini", _sse(("", '{"candidates": [{"content": {"parts": [5]}}]}'), _GEMINI_END)),
    ("gemini", _sse(("", '{"candidates": [{"content": {"parts": [{"text": 5}]}}]}'), _GEMINI_END)),
    ("gemini", _sse(("", '{"candidates": [{"finishReason": 5}]}'), _GEMINI_END)),
    ("ollama", b'{"message": "x"}\n{"done": true, "done_reason": "stop"}\n'),
    ("ollama", b'{"message": {"content": 7}}\n{"done": true, "done_reason": "stop"}\n'),
    ("ollama", b'{"message": {"tool_calls": 5}}\n{"done": true, "done_reason": "stop"}\n'),
    ("ollama", b'{"done": true, "done_reason": []}\n'),
    ("ollama", b'{"model": ["m"], "done": true, "done_reason": "stop"}\n'),
]


def _raw_fault(protocol: ProtocolName, body: bytes) -> Fault:
    kind = "application/x-ndjson" if protocol == "ollama" else "text/event-stream"
    return Fault(protocol=protocol, raw=Raw(headers={"Content-Type": kind}, body=body))


@pytest.mark.parametrize(
    ("protocol", "body"), BAD_CHUNKS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_CHUNKS)]
)
async def test_a_chunk_of_the_wrong_shape_is_a_corrupt_stream_retried_once(
    sim: Any, protocol: ProtocolName, body: bytes
) -> None:
    sim.script(_raw_fault(protocol, body), _raw_fault(protocol, body))
    events = await _run(sim, protocol)
    failed = _failure(events)
    assert isinstance(failed.error, CorruptStream), failed.error
    assert "does not understand" in failed.error.message or "not valid" in failed.error.message
    assert len(sim.chat_requests) == 2
    assert sum(isinstance(e, Retrying) for e in events) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_nesting_bomb_is_a_corrupt_stream_retried_once(
    sim: Any, protocol: ProtocolName
) -> None:
    sim.script(hostile.nesting_bomb(protocol), hostile.nesting_bomb(protocol))
    events = await _run(sim, protocol)
    failed = _failure(events)
    assert isinstance(failed.error, CorruptStream), failed.error
    assert len(sim.chat_requests) == 2


async def test_a_corrupt_stream_then_a_good_one_finishes(sim: Any) -> None:
    sim.script(hostile.nesting_bomb("openai"))
    events = await _run(sim, "openai")
    assert isinstance(events[-1], Finished), events[-1]
    assert len(sim.chat_requests) == 2


# -- case 5: memory bounds ------------------------------------------------------------------


async def _bounded_run(sim: Any, protocol: ProtocolName, fault: Fault) -> tuple[Failed, float]:
    """Run ``fault`` and return the failure and the largest RSS growth seen meanwhile."""
    sim.script(fault)
    engine = engine_for(SMALL)
    base = _rss_mb()
    peak = base
    events: list[StreamEvent] = []

    async def consume() -> None:
        nonlocal peak
        async for event in engine.stream(request_for(sim, protocol)):
            events.append(event)
            if len(events) % 512 == 0:
                peak = max(peak, _rss_mb())

    try:
        await asyncio.wait_for(consume(), 20)
    finally:
        await engine.aclose()
    peak = max(peak, _rss_mb())
    return _failure(events), peak - base


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_endless_stream_ends_at_the_reply_limit_keeping_the_text(
    sim: Any, protocol: ProtocolName
) -> None:
    failed, growth = await _bounded_run(
        sim, protocol, hostile.endless(protocol, "spam ", time_limit_s=30)
    )
    assert "0.2 MB" in failed.error.message
    assert "kept" in str(failed.error)
    assert not failed.error.retryable
    assert 199_000 <= len(failed.partial) <= 200_000
    assert failed.partial.startswith("spam spam ")
    assert len(sim.chat_requests) == 1
    assert growth < 150, f"RSS grew {growth:.0f} MB"


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
async def test_an_endless_line_fails_fast_with_a_sentence(sim: Any, protocol: ProtocolName) -> None:
    failed, growth = await _bounded_run(sim, protocol, hostile.endless_line(protocol))
    assert "one event larger than" in failed.error.message, failed.error
    assert not failed.error.retryable
    assert len(sim.chat_requests) == 1
    assert growth < 150, f"RSS grew {growth:.0f} MB"


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
async def test_a_gzip_bomb_stops_at_the_limits(sim: Any, protocol: ProtocolName) -> None:
    failed, growth = await _bounded_run(
        sim, protocol, hostile.gzip_bomb(protocol, expanded=64 << 20)
    )
    assert not failed.error.retryable
    assert "MB" in failed.error.message, failed.error
    assert len(sim.chat_requests) == 1
    assert growth < 150, f"RSS grew {growth:.0f} MB"


def _bomb_of_tool_calls(_: RecordedRequest) -> Iterator[bytes]:
    args = {"arguments": "x" * 100}
    unit = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": args}]}}]}
    piece = (b"data: " + json.dumps(unit).encode() + b"\n\n") * 256
    while True:
        yield piece


async def test_endless_tool_arguments_count_toward_the_reply_limit(sim: Any) -> None:
    fault = hostile.pieces(
        "openai", _bomb_of_tool_calls, headers={"Content-Type": "text/event-stream"}
    )
    failed, growth = await _bounded_run(sim, "openai", fault)
    assert "0.2 MB" in failed.error.message
    assert growth < 150


async def test_the_read_loop_lets_the_event_loop_run_under_a_decompression_bomb(
    sim: Any,
) -> None:
    """A cancel (Ctrl+C) must get through within a second, whatever the body expands to."""
    sim.script(hostile.gzip_bomb("openai", expanded=64 << 20))
    settings = ResilienceSettings(max_retries=0, max_reply_mb=64.0)
    engine = engine_for(settings)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    last = loop.time()
    running = True

    def tick() -> None:
        nonlocal last
        now = loop.time()
        gaps.append(now - last)
        last = now
        if running:
            loop.call_later(0.005, tick)

    enough = asyncio.Event()

    async def consume() -> None:
        count = 0
        async for event in engine.stream(request_for(sim, "openai")):
            if isinstance(event, TextDelta):
                count += len(event.text)
                if count >= 300_000:
                    enough.set()

    tick()
    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(enough.wait(), 20)
        asked = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
        took = time.perf_counter() - asked
    finally:
        running = False
        task.cancel()
        await engine.aclose()
    assert took < 1.0, f"the cancel took {took:.2f} s"
    assert max(gaps) < 1.0, f"the event loop was blocked for {max(gaps):.2f} s"


def _long_event_body(protocol: ProtocolName, text: str, field: str, end: str) -> str:
    """An OpenAI stream with ``text`` in one event, closed by its finish chunk and
    ``[DONE]``; or a Gemini stream that is that one event, finishing, its last line not
    followed by the blank line (Gemini's streams end with the body, not with a marker)."""
    if protocol == "gemini":
        candidate = {"content": {"parts": [{"text": text}], "role": "model"}}
        event = {"candidates": [{**candidate, "finishReason": "STOP", "index": 0}]}
        return f"{field}{json.dumps(event, ensure_ascii=False)}{end}"
    events = [
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"{field}{json.dumps(e, ensure_ascii=False)}{end}{end}" for e in events)
    return body + f"data: [DONE]{end}{end}"


@pytest.mark.parametrize("field", ["data: ", "data:", "data:  "])
@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("protocol", ["openai", "gemini"])
async def test_a_long_data_line_in_many_reads_keeps_its_text(
    sim: Any, protocol: ProtocolName, field: str, end: str
) -> None:
    """A 1.4 MB event, two-byte characters cut across reads, its ``data`` field written
    every way the format allows."""
    text = "é" * 300_000 + "x" * 800_000
    body = _long_event_body(protocol, text, field, end).encode()
    sim.script(Fault(raw=Raw(headers={"Content-Type": "text/event-stream"}, body=body)))
    events = await _run(sim, protocol, FAST)
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    assert finished.response.content == text
    assert len(sim.chat_requests) == 1


# -- case 14: redirects and requests that cannot be built -----------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_redirect_with_an_event_stream_is_a_clear_failure_not_followed(
    sim: Any, protocol: ProtocolName
) -> None:
    target = sim.url + "/steal"
    body = hostile.stream_body(protocol, ["stolen"])
    sim.script(hostile.redirect(protocol, target, body=body))
    events = await _run(sim, protocol)
    failed = _failure(events)
    assert isinstance(failed.error, ConfigError), failed.error
    assert target in failed.error.message
    assert "stolen" not in text_of(events)
    assert len(sim.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 308])
async def test_every_redirect_status_fails_at_once(sim: Any, status: int) -> None:
    sim.script(hostile.redirect("openai", "https://elsewhere.example/v1", status=status))
    events = await _run(sim, "openai")
    failed = _failure(events)
    assert "https://elsewhere.example/v1" in failed.error.message
    assert f"({status})" in failed.error.message
    assert not any(isinstance(e, Retrying) for e in events)


async def test_a_redirected_model_listing_is_a_clear_failure(sim: Any) -> None:
    sim.script(hostile.redirect("models", "http://127.0.0.1:9/steal"))
    engine = engine_for(SMALL)
    try:
        with pytest.raises(ConfigError, match=re.escape("127.0.0.1:9/steal")):
            await engine.list_models("openai", sim.base_url("openai"))
    finally:
        await engine.aclose()
    assert len(sim.requests) == 1


async def test_an_endless_model_listing_is_cut(sim: Any) -> None:
    def endless(_: RecordedRequest) -> Iterator[bytes]:
        yield b'{"data": ['
        while True:
            yield b'{"id": "m"},' * 4096

    sim.script(hostile.pieces("models", endless, headers={"Content-Type": "application/json"}))
    engine = engine_for(SMALL)
    try:
        with pytest.raises(RillError, match="MB"):
            await asyncio.wait_for(engine.list_models("openai", sim.base_url("openai")), 20)
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    "base_url", ["http://[::1", "http://exa mple.com:port/v1", "http://\x00/v1", "ftp://x/v1"]
)
async def test_a_base_url_that_cannot_be_used_is_a_config_error(base_url: str) -> None:
    engine = engine_for(FAST)
    request = request_for(type("S", (), {"base_url": lambda self, p: base_url})(), "openai")
    try:
        events = await collect(engine.stream(request))
    finally:
        await engine.aclose()
    failed = _failure(events)
    assert isinstance(failed.error, ConfigError), failed.error


async def test_a_key_that_cannot_be_sent_is_a_typed_error(sim: Any) -> None:
    engine = Engine(resilience=FAST, api_key=lambda _r: "sk-\u043a\u043b\u044e\u0447")
    try:
        events = await collect(engine.stream(request_for(sim, "openai")))
    finally:
        await engine.aclose()
    failed = _failure(events)
    assert "\u043a\u043b\u044e\u0447" not in str(failed.error)


class _GroupTransport(httpx.AsyncBaseTransport):
    """A transport that fails the way a task group inside one does: with an ExceptionGroup."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise ExceptionGroup("connect", [OSError("unreachable"), OSError("refused")])


async def test_an_exception_group_from_the_transport_is_a_typed_error(sim: Any) -> None:
    client = httpx.AsyncClient(transport=_GroupTransport())
    engine = engine_for(FAST, client=client)
    try:
        events = await collect(engine.stream(request_for(sim, "openai")))
    finally:
        await engine.aclose()
    failed = _failure(events)
    assert isinstance(failed.error, ConnectionFailed), failed.error


# -- through q, as a separate process ------------------------------------------------------


def _q(sim: SimulatorThread, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "desktop_app.cli",
            "--provider",
            "openai",
            "--base-url",
            sim.base_url("openai"),
            "--model",
            "sim-small",
            *args,
            "Hello",
        ],
        capture_output=True,
        encoding="utf-8",
        errors="backslashreplace",
        env={**os.environ, "RILL_HOME": str(home), "PYTHONIOENCODING": "utf-8"},
        timeout=60,
    )


def test_q_prints_a_split_surrogate_pair_and_exits_0(rill_home: Path) -> None:
    with SimulatorThread(tokens_per_s=0) as sim:
        sim.script(hostile.reply("openai", ["smile \ud83d", "\ude00 lone \ud800 end"]))
        result = _q(sim, rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "smile \U0001f600 lone \ufffd end\n"


def test_q_ends_an_endless_reply_at_the_limit_with_the_sentence(rill_home: Path) -> None:
    with SimulatorThread(tokens_per_s=0) as sim:
        sim.script(hostile.endless("openai", "spam ", time_limit_s=30))
        result = _q(sim, rill_home, "--set", "resilience.max_reply_mb=0.05")
    assert result.returncode != 0
    assert "limit of 0.05 MB of text" in result.stderr
    assert result.stdout.startswith("spam spam ")
    assert 49_000 <= len(result.stdout.strip()) <= 50_000


def test_q_names_the_redirect_target_and_does_not_retry(rill_home: Path) -> None:
    with SimulatorThread(tokens_per_s=0) as sim:
        sim.script(hostile.redirect("openai", "http://127.0.0.1:9/steal"))
        result = _q(sim, rill_home)
        requests = len(sim.sim.requests)
    assert result.returncode != 0
    assert "http://127.0.0.1:9/steal" in result.stderr
    assert "Retrying" not in result.stderr and requests == 1
