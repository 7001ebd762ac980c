"""The retry policy, rate limits, timeouts, circuit breaker, fallback and mid-stream
recovery, over real sockets against the simulator."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from typing import Any

import pytest

from desktop_app.core import errors
from desktop_app.core.engine import Engine
from desktop_app.core.events import (
    Cancelled,
    CircuitOpen,
    Failed,
    FallingBack,
    Finished,
    RateLimitWait,
    Restarted,
    Resumed,
    Retrying,
    StreamEvent,
    TextDelta,
)
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.simulator import Fault
from tests.helpers import FAST, collect, engine_for, request_for, text_of

PROVIDERS = ["openai", "ollama", "anthropic", "gemini"]


async def _run(
    sim: Any, provider: str, settings: ResilienceSettings = FAST, **kw: Any
) -> list[StreamEvent]:
    engine = engine_for(settings)
    try:
        return await collect(engine.stream(request_for(sim, provider, **kw)))
    finally:
        await engine.aclose()


def _displayed(events: list[StreamEvent]) -> str:
    """What a consumer shows: text, where a restart replaces what came before."""
    shown: list[str] = []
    for event in events:
        if isinstance(event, Restarted):
            assert "".join(shown) == event.discarded
            shown = []
        elif isinstance(event, TextDelta):
            shown.append(event.text)
    return "".join(shown)


def _gaps(sim: Any) -> list[float]:
    times = [r.received_at for r in sim.chat_requests]
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "least_wait"),
    [
        (Fault(status=429, retry_after=1), 1.0),
        (Fault(status=429, retry_after_ms=400), 0.4),
        (Fault(status=429, retry_after=2, retry_after_http_date=True), 1.0),
    ],
    ids=["seconds", "ms", "http-date"],
)
async def test_rate_limit_wait_is_honoured(
    sim: Any, provider: str, fault: Fault, least_wait: float
) -> None:
    if provider == "gemini":  # Gemini's own 429 says its wait only in the body (RetryInfo)
        fault = replace(fault, headers={"Retry-After": str(least_wait)})
    sim.script(fault)
    events = await _run(sim, provider)
    assert isinstance(events[-1], Finished)
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.delay_s >= least_wait - 0.05
    assert len(sim.chat_requests) == 2
    assert _gaps(sim)[0] >= least_wait - 0.05


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_503_twice_then_success_backs_off_more_each_time(sim: Any, provider: str) -> None:
    settings = replace(FAST, base_delay_s=0.1, max_delay_s=0.35)
    sim.script(Fault(status=503), Fault(status=503))
    events = await _run(sim, provider, settings)
    assert isinstance(events[-1], Finished)
    delays = [e.delay_s for e in events if isinstance(e, Retrying)]
    assert len(delays) == 2
    assert 0.1 <= delays[0] <= 0.15
    assert delays[1] > delays[0]
    assert delays[1] <= 0.35
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [2, 3]
    assert all(e.max_attempts == 4 for e in events if isinstance(e, Retrying))
    bodies = {r.body for r in sim.chat_requests}
    assert len(sim.chat_requests) == 3
    assert len(bodies) == 1  # byte-identical across retries
    gaps = _gaps(sim)
    assert gaps[0] >= delays[0] - 0.02 and gaps[1] >= delays[1] - 0.02


def test_backoff_is_jittered_across_calls() -> None:
    from desktop_app.core.resilience import Backoff

    backoff = Backoff(replace(FAST, base_delay_s=1.0, max_delay_s=60))
    assert len({backoff.delay(1) for _ in range(10)}) > 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_fatal_statuses_are_sent_exactly_once(sim: Any, provider: str, status: int) -> None:
    sim.script(Fault(status=status))
    events = await _run(sim, provider)
    assert isinstance(events[-1], Failed)
    assert not any(isinstance(e, Retrying) for e in events)
    assert len(sim.chat_requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "fault",
    [
        Fault(truncate_after=0),
        Fault(malformed_after=0),
        Fault(drop_after=0),
        Fault(error_event_after=0),
        Fault(status=529),
    ],
    ids=["truncated", "corrupt", "dropped", "error-event", "overloaded"],
)
async def test_failure_before_any_text_is_retried_transparently(
    sim: Any, provider: str, fault: Fault
) -> None:
    sim.script(fault)
    events = await _run(sim, provider)
    assert isinstance(events[-1], Finished), events[-1]
    assert not any(isinstance(e, Restarted | Resumed) for e in events)
    assert sum(isinstance(e, Retrying) for e in events) == 1
    expected = sim.reply_text(sim.chat_requests[-1].json, provider)
    assert text_of(events) == expected == events[-1].response.content


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "fault",
    [
        Fault(drop_after=7),
        Fault(truncate_after=7),
        Fault(malformed_after=7),
        Fault(error_event_after=7),
        Fault(stall_after=7, stall_s=30),
    ],
    ids=["drop", "truncate", "corrupt", "error-event", "stall"],
)
async def test_interruption_after_text_restarts_without_duplicates(
    sim: Any, provider: str, fault: Fault
) -> None:
    sim.script(fault)
    settings = replace(FAST, idle_timeout_s=0.3)
    events = await _run(sim, provider, settings)
    assert isinstance(events[-1], Finished), events[-1]
    restarts = [e for e in events if isinstance(e, Restarted)]
    assert len(restarts) == 1
    assert restarts[0].discarded  # the interrupted text is handed over as an earlier version
    assert restarts[0].reason
    expected = sim.reply_text(sim.chat_requests[-1].json, provider)
    assert _displayed(events) == expected == events[-1].response.content
    if fault.stall_after is not None:
        assert "stalled" in restarts[0].reason


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_continue_mode_appends_only_the_continuation(sim: Any, provider: str) -> None:
    sim.script(Fault(drop_after=9))
    settings = replace(FAST, mid_stream="continue")
    options = (("rill_accepts_prefill", True),) if provider == "openai" else ()
    events = await _run(sim, provider, settings, options=options)
    assert isinstance(events[-1], Finished), events[-1]
    assert not any(isinstance(e, Restarted) for e in events)
    resumed = [e for e in events if isinstance(e, Resumed)]
    assert len(resumed) == 1
    first_body = sim.chat_requests[0].json
    expected = sim.reply_text(first_body, provider)
    assert text_of(events) == expected == events[-1].response.content
    second = sim.chat_requests[1].json
    assert second["messages"][-1]["role"] == "assistant"
    assert expected.startswith(second["messages"][-1]["content"])


async def test_mid_stream_off_keeps_the_partial_and_stops(sim: Any) -> None:
    sim.script(Fault(drop_after=6))
    events = await _run(sim, "openai", replace(FAST, mid_stream="off"))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.partial == text_of(events) != ""
    assert failed.error.retryable
    assert len(sim.chat_requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_slow_first_token_within_its_timeout_is_accepted(sim: Any, provider: str) -> None:
    sim.script(Fault(first_token_delay=0.8))
    # Anthropic starts its content block before the first token: from there the gap is
    # timed by the idle timeout (see test_real_servers), so it gets room for the wait
    idle = 2.0 if provider == "anthropic" else 0.2
    settings = replace(FAST, first_token_timeout_s=5.0, idle_timeout_s=idle)
    events = await _run(sim, provider, settings)
    assert isinstance(events[-1], Finished)
    assert len(sim.chat_requests) == 1
    assert events[-1].response.timing.ttft_s >= 0.75


async def test_first_token_timeout_is_retried(sim: Any) -> None:
    sim.script(Fault(first_byte_delay=30))
    events = await _run(sim, "openai", replace(FAST, first_token_timeout_s=0.3))
    assert isinstance(events[-1], Finished)
    retry = next(e for e in events if isinstance(e, Retrying))
    assert "No answer came" in retry.reason
    await sim.wait_for_disconnect(timeout=2)


async def test_long_rate_limit_fails_with_the_wait_when_not_allowed(sim: Any) -> None:
    sim.script(Fault(status=429, retry_after=600))
    settings = replace(FAST, wait_on_rate_limit=False, max_rate_limit_wait_s=30)
    events = await _run(sim, "openai", settings)
    error = events[-1].error
    assert isinstance(error, errors.RateLimitTooLong)
    assert "10 min" in str(error)
    assert len(sim.chat_requests) == 1


async def test_long_rate_limit_shows_a_countdown_that_cancel_stops(sim: Any) -> None:
    sim.script(Fault(status=429, retry_after=600))
    settings = replace(FAST, wait_on_rate_limit=True, max_rate_limit_wait_s=30)
    engine = engine_for(settings)
    generation = engine.stream(request_for(sim, "openai"))
    events: list[StreamEvent] = []
    cancelled_at = 0.0
    async for event in generation:
        events.append(event)
        if isinstance(event, RateLimitWait):
            assert event.until - time.time() == pytest.approx(600, abs=5)
            cancelled_at = time.monotonic()
            generation.cancel()
    await engine.aclose()
    assert isinstance(events[-1], Cancelled)
    assert time.monotonic() - cancelled_at < 0.2
    assert len(sim.chat_requests) == 1


async def test_cancel_during_backoff_stops_at_once_and_sends_nothing_more(sim: Any) -> None:
    sim.script(Fault(status=503))
    engine = engine_for(replace(FAST, base_delay_s=5.0, max_delay_s=10.0))
    generation = engine.stream(request_for(sim, "openai"))
    cancelled_at = 0.0
    events: list[StreamEvent] = []
    async for event in generation:
        events.append(event)
        if isinstance(event, Retrying):
            cancelled_at = time.monotonic()
            generation.cancel()
    ended = time.monotonic()
    await engine.aclose()
    assert isinstance(events[-1], Cancelled)
    assert ended - cancelled_at < 0.2
    assert len(sim.chat_requests) == 1


async def test_exhausted_rate_limit_headers_hold_the_next_request(sim: Any) -> None:
    sim.script(
        Fault(
            headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "600ms"}
        )
    )
    engine = engine_for(FAST)
    try:
        await engine.complete(request_for(sim, "openai"))
        finished_first = time.monotonic()
        events = await collect(engine.stream(request_for(sim, "openai", "another question")))
    finally:
        await engine.aclose()
    assert any(isinstance(e, RateLimitWait) for e in events)
    assert isinstance(events[-1], Finished)
    assert sim.chat_requests[1].received_at - finished_first >= 0.45


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_circuit_breaker_opens_fails_fast_admits_one_trial_and_closes(sim: Any) -> None:
    clock = FakeClock()
    settings = replace(FAST, max_retries=0, failure_threshold=2, recovery_timeout_s=60)
    engine = Engine(resilience=settings, api_key=lambda _r: "k", clock=clock)
    request = request_for(sim, "openai")
    try:
        sim.script(Fault(status=503), Fault(status=503))
        for _ in range(2):
            events = await collect(engine.stream(request))
            assert isinstance(events[-1].error, errors.ServerError)
        assert len(sim.chat_requests) == 2
        # open: fails fast, nothing sent, says when it will try again
        events = await collect(engine.stream(request))
        assert any(isinstance(e, CircuitOpen) for e in events)
        error = events[-1].error
        assert isinstance(error, errors.CircuitOpenError)
        assert "try it again in 1 min" in str(error)
        assert len(sim.chat_requests) == 2
        # half-open: of three concurrent callers exactly one goes through
        clock.now += 61
        sim.tokens_per_s = 400
        results = await asyncio.gather(*(collect(engine.stream(request)) for _ in range(3)))
        outcomes = sorted(type(r[-1]).__name__ for r in results)
        assert outcomes == ["Failed", "Failed", "Finished"]
        assert len(sim.chat_requests) == 3
        # closed again after the trial's success
        events = await collect(engine.stream(request))
        assert isinstance(events[-1], Finished)
    finally:
        await engine.aclose()


async def test_fatal_errors_do_not_open_the_circuit(sim: Any) -> None:
    settings = replace(FAST, max_retries=0, failure_threshold=1)
    engine = Engine(resilience=settings, api_key=lambda _r: "k")
    try:
        sim.script(Fault(status=400))
        await collect(engine.stream(request_for(sim, "openai")))
        events = await collect(engine.stream(request_for(sim, "openai")))
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Finished)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fallback_to_a_second_model(sim: Any, provider: str) -> None:
    settings = replace(FAST, max_retries=1)
    sim.script(Fault(status=503), Fault(status=503))
    engine = engine_for(settings)
    primary = request_for(sim, provider, model="sim-large")
    fallback = replace(primary, model="sim-small")
    try:
        events = await collect(engine.stream(primary, fallbacks=[fallback]))
    finally:
        await engine.aclose()
    falling = [e for e in events if isinstance(e, FallingBack)]
    assert len(falling) == 1
    assert (falling[0].from_model, falling[0].to_model) == ("sim-large", "sim-small")
    assert isinstance(events[-1], Finished)
    assert len(sim.chat_requests) == 3
    assert "sim-small" in (sim.chat_requests[-1].path + str(sim.chat_requests[-1].json))


async def test_new_settings_apply_to_the_next_request(sim: Any) -> None:
    engine = engine_for(replace(FAST, max_retries=0))
    try:
        sim.script(Fault(status=503))
        assert isinstance((await collect(engine.stream(request_for(sim, "openai"))))[-1], Failed)
        engine.apply_settings(replace(FAST, max_retries=2, base_delay_s=0.01))
        sim.script(Fault(status=503), Fault(status=503))
        events = await collect(engine.stream(request_for(sim, "openai")))
    finally:
        await engine.aclose()
    assert isinstance(events[-1], Finished)
    assert [e.max_attempts for e in events if isinstance(e, Retrying)] == [3, 3]
