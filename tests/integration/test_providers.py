"""Each provider over real sockets against the simulator: text, usage, finish reasons, tool
calls, every fault as its typed error, and cancellation closing the connection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from desktop_app.core import errors
from desktop_app.core.events import (
    Cancelled,
    Failed,
    Finished,
    Stage,
    StageChanged,
    TextDelta,
    ToolCallDelta,
)
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import Tool
from desktop_app.simulator import Fault
from tests.helpers import collect, engine_for, request_for, text_of

PROVIDERS = ["openai", "ollama", "anthropic", "gemini"]
NO_RETRY = ResilienceSettings(max_retries=0, first_token_timeout_s=3.0, idle_timeout_s=0.5)


async def _run(
    sim: Any, provider: str, settings: ResilienceSettings = NO_RETRY, **kw: Any
) -> list[Any]:
    engine = engine_for(settings)
    try:
        return await collect(engine.stream(request_for(sim, provider, **kw)))
    finally:
        await engine.aclose()


def _failure(events: list[Any]) -> errors.RillError:
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed, f"expected a failure, got {events[-3:]!r}"
    return failed[-1].error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_long_reply_arrives_complete_and_in_order(sim: Any, provider: str) -> None:
    sim.default_tokens = 2000
    events = await _run(sim, provider)
    finished = events[-1]
    assert isinstance(finished, Finished)
    body = sim.chat_requests[-1].json
    expected = sim.reply_text(body, provider)
    assert text_of(events) == expected
    assert finished.response.content == expected
    assert finished.response.finish_reason == "stop"
    assert finished.response.usage is not None
    assert finished.response.usage.output_tokens == 2000
    assert finished.response.usage.input_tokens > 0
    assert finished.response.timing.ttft_s is not None
    assert finished.response.timing.total_s >= finished.response.timing.ttft_s
    stages = [e.stage for e in events if isinstance(e, StageChanged)]
    assert stages == [Stage.CONNECTING, Stage.WAITING, Stage.STREAMING]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_tokens_ends_with_length(sim: Any, provider: str) -> None:
    events = await _run(sim, provider, max_tokens=12)
    response = events[-1].response
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 12
    assert response.raw_finish_reason in ("length", "max_tokens", "MAX_TOKENS")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_calls_are_assembled(sim: Any, provider: str) -> None:
    tool = Tool(
        "search", "Search the web", {"type": "object", "properties": {"query": {"type": "string"}}}
    )
    ask = 'Please call search with {"query": "tides at Zürich"} and call search with {"query": "x"}'
    events = await _run(sim, provider, tools=(tool,), prompt=ask)
    response = events[-1].response
    assert response.finish_reason == "tool_calls"
    assert [c.name for c in response.tool_calls] == ["search", "search"]
    assert [json.loads(c.arguments) for c in response.tool_calls] == [
        {"query": "tides at Zürich"},
        {"query": "x"},
    ]
    assert any(isinstance(e, ToolCallDelta) for e in events)
    sent = sim.chat_requests[-1].json
    assert "search" in json.dumps(sent)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_offered_tools_are_not_called_unless_asked(sim: Any, provider: str) -> None:
    events = await _run(sim, provider, tools=(Tool("search"),))
    response = events[-1].response
    assert response.finish_reason == "stop" and not response.tool_calls
    assert response.content == sim.reply_text(sim.chat_requests[-1].json, provider)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, errors.BadRequest),
        (401, errors.AuthError),
        (403, errors.AuthError),
        (404, errors.NotFound),
        (422, errors.BadRequest),
        (429, errors.RateLimited),
        (500, errors.ServerError),
        (503, errors.ServerError),
        (529, errors.ServerError),
    ],
)
async def test_http_status_gives_typed_error(
    sim: Any, provider: str, status: int, error_class: type[errors.RillError]
) -> None:
    # Gemini's own 429 says its wait only in the body (RetryInfo); this test reads the header.
    header = {"Retry-After": "7"} if provider == "gemini" and status == 429 else {}
    sim.script(Fault(status=status, retry_after=7 if status == 429 else None, headers=header))
    error = _failure(await _run(sim, provider))
    assert type(error) is error_class
    assert error.retryable == (status in (429, 500, 503, 529))
    assert str(error).endswith(".")
    if status == 401:
        assert "API key was rejected (401)" in str(error)
    if status == 429:
        assert isinstance(error, errors.RateLimited)
        assert error.retry_after_s == pytest.approx(7, abs=1)
    assert len(sim.chat_requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        (Fault(drop_after=5), errors.ConnectionFailed),
        (Fault(truncate_after=5), errors.IncompleteStream),
        (Fault(malformed_after=5), errors.CorruptStream),
        (Fault(stall_after=5, stall_s=30), errors.StreamStalled),
        (Fault(error_event_after=5), errors.ServerError),
        (Fault(first_byte_delay=30), errors.FirstTokenTimeout),
        (Fault(drop_after=0), errors.ConnectionFailed),
    ],
    ids=["drop", "truncate", "malformed", "stall", "error-event", "no-first-byte", "drop-at-once"],
)
async def test_stream_faults_give_typed_errors(
    sim: Any, provider: str, fault: Fault, error_class: type[errors.RillError]
) -> None:
    sim.script(fault)
    settings = ResilienceSettings(max_retries=0, first_token_timeout_s=0.5, idle_timeout_s=0.3)
    events = await _run(sim, provider, settings)
    error = _failure(events)
    assert isinstance(error, error_class), repr(error)
    assert error.retryable
    assert not any(isinstance(e, Finished) for e in events)


async def test_dead_server_is_a_connection_failure() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Dead:
        def base_url(self, provider: str) -> str:
            return f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")

    error = _failure(await _run(Dead(), "openai"))
    assert isinstance(error, errors.ConnectionFailed)
    assert "Could not connect" in str(error)


async def test_wrong_url_is_a_clear_config_error() -> None:
    class Wrong:
        def base_url(self, provider: str) -> str:
            return "ftp://example.invalid/v1"

    error = _failure(await _run(Wrong(), "openai"))
    assert isinstance(error, errors.ConfigError)
    assert "not a valid http(s) address" in str(error)


async def test_missing_key_for_hosted_provider_is_reported_before_sending(sim: Any) -> None:
    from desktop_app.core.engine import Engine

    engine = Engine(resilience=NO_RETRY, api_key=lambda _r: None)
    try:
        events = await collect(engine.stream(request_for(sim, "anthropic")))
    finally:
        await engine.aclose()
    error = _failure(events)
    assert isinstance(error, errors.AuthError)
    assert "ANTHROPIC_API_KEY" in str(error)
    assert sim.chat_requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_closes_the_connection_and_returns_the_partial(
    sim: Any, provider: str
) -> None:
    sim.tokens_per_s = 200
    engine = engine_for(NO_RETRY)
    generation = engine.stream(request_for(sim, provider))
    events: list[Any] = []
    cancelled_at = 0.0
    try:
        async for event in generation:
            events.append(event)
            if isinstance(event, TextDelta) and len(text_of(events)) > 20 and not cancelled_at:
                cancelled_at = time.monotonic()
                generation.cancel()
        await sim.wait_for_disconnect(timeout=2.0)
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Cancelled)
    assert events[-1].partial == text_of(events)
    record = sim.chat_requests[-1]
    assert record.disconnected_at is not None
    assert record.disconnected_at - cancelled_at < 0.1
    assert not record.completed


async def test_cancelling_the_task_closes_the_connection(sim: Any) -> None:
    sim.tokens_per_s = 100
    engine = engine_for(NO_RETRY)
    seen = asyncio.Event()

    async def consume() -> None:
        async for event in engine.stream(request_for(sim, "openai")):
            if isinstance(event, TextDelta):
                seen.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(seen.wait(), 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.wait_for_disconnect(timeout=2.0)
    await engine.aclose()
    assert sim.chat_requests[-1].disconnected_at - cancelled_at < 0.1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_models_are_listed(sim: Any, provider: str) -> None:
    engine = engine_for(NO_RETRY)
    try:
        models = await engine.list_models(provider, sim.base_url(provider))
    finally:
        await engine.aclose()
    assert "sim-small" in models
