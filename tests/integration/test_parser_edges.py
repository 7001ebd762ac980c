"""Wire-format edge cases, served over a socket one byte at a time (so every event, line
and UTF-8 character is split across network reads)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from desktop_app.core.events import Failed, Finished
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.simulator import Fault
from tests.helpers import collect, engine_for, request_for

NO_RETRY = ResilienceSettings(max_retries=0, first_token_timeout_s=5, idle_timeout_s=5)


def _openai_chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    delta = {"content": content} if content is not None else {}
    return json.dumps(
        {
            "id": "c1",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        },
        ensure_ascii=False,
    )


async def _serve(sim: Any, provider: str, raw: bytes, pieces: tuple[int, ...] = (1,)) -> Any:
    sim.script(Fault(replay=raw, replay_pieces=pieces, replay_piece_delay_s=0.0))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, provider)))
    finally:
        await engine.aclose()
    last = events[-1]
    assert isinstance(last, Finished), getattr(last, "error", last)
    return last.response


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
async def test_openai_sse_line_endings_comments_unknown_fields(sim: Any, newline: str) -> None:
    nl = newline
    raw = (
        f": this is a comment{nl}"
        f"retry: 1000{nl}"
        f"id: 1{nl}"
        f"data: {_openai_chunk('Héllo', unknown_field={'x': 1})}{nl}{nl}"
        f": keep-alive{nl}{nl}"
        f"data: {_openai_chunk(' wörld 🌊')}{nl}{nl}"
        f"data: {_openai_chunk(None, 'stop')}{nl}{nl}"
        f"data: [DONE]{nl}{nl}"
    ).encode()
    response = await _serve(sim, "openai", raw)
    assert response.content == "Héllo wörld 🌊"
    assert response.raw_finish_reason == "stop"


async def test_sse_multi_line_data_is_joined(sim: Any) -> None:
    raw = (
        'data: {"id":"c1","choices":[{"index":0,\n'
        'data: "delta":{"content":"two lines"},"finish_reason":null}]}\n\n'
        f"data: {_openai_chunk(None, 'stop')}\n\n"
        "data: [DONE]\n\n"
    ).encode()
    response = await _serve(sim, "openai", raw)
    assert response.content == "two lines"


async def test_anthropic_crlf_events_split_everywhere(sim: Any) -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"model": "claude-x", "usage": {"input_tokens": 3, "output_tokens": 1}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Grüße — "},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "日本語"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    raw = "".join(
        f"event: {name}\r\ndata: {json.dumps(data, ensure_ascii=False)}\r\n\r\n"
        for name, data in events
    ).encode()
    response = await _serve(sim, "anthropic", raw)
    assert response.content == "Grüße — 日本語"
    assert response.usage.output_tokens == 4
    assert response.finish_reason == "stop"


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
async def test_ndjson_splits_on_newline_only_and_keeps_u2028(sim: Any, newline: str) -> None:
    lines = [
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "line\u2028sep"},
            "done": False,
        },
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": " and\u2029para é"},
            "done": False,
        },
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 5,
            "eval_count": 2,
        },
    ]
    raw = "".join(json.dumps(line, ensure_ascii=False) + newline for line in lines).encode()
    assert "\u2028".encode() in raw
    response = await _serve(sim, "ollama", raw)
    assert response.content == "line\u2028sep and\u2029para é"
    assert response.usage.output_tokens == 2


async def test_sse_u2028_inside_json_is_not_a_line_break(sim: Any) -> None:
    chunk = _openai_chunk("a\u2028b")
    raw = (f"data: {chunk}\n\ndata: {_openai_chunk(None, 'stop')}\n\ndata: [DONE]\n\n").encode()
    response = await _serve(sim, "openai", raw)
    assert response.content == "a\u2028b"


async def test_ollama_error_line_on_http_200_is_an_error(sim: Any) -> None:
    raw = (
        json.dumps({"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False})
        + "\n"
        + json.dumps({"error": "model runner has unexpectedly stopped"})
        + "\n"
    ).encode()
    sim.script(Fault(replay=raw))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, "ollama")))
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Failed)
    assert "model runner has unexpectedly stopped" in str(events[-1].error)
    assert events[-1].partial == "Hi"


async def test_openai_in_stream_error_object_is_an_error_not_text(sim: Any) -> None:
    raw = (
        f"data: {_openai_chunk('Hi')}\n\n"
        'data: {"error":{"message":"The server had an error","type":"server_error"}}\n\n'
    ).encode()
    sim.script(Fault(replay=raw))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, "openai")))
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Failed)
    assert events[-1].error.retryable
    assert "The server had an error" in str(events[-1].error)


async def test_anthropic_error_event_is_overloaded_not_text(sim: Any) -> None:
    raw = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"c","usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    sim.script(Fault(replay=raw))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, "anthropic")))
    finally:
        await engine.aclose()
    error = events[-1].error
    assert error.retryable
    assert error.status == 529
    assert "overloaded" in str(error)
