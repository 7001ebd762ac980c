from __future__ import annotations

import email.utils
import itertools

import pytest

from desktop_app.core.resilience import (
    Backoff,
    Breakers,
    RateLimitGate,
    ResilienceSettings,
    exhausted_until,
    retry_after_seconds,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_is_jittered_and_capped() -> None:
    backoff = Backoff(ResilienceSettings(base_delay_s=1.0, max_delay_s=10.0))
    for _ in range(50):
        delays = [backoff.delay(n) for n in range(1, 7)]
        assert 1.0 <= delays[0] <= 1.5
        assert all(later > earlier for earlier, later in itertools.pairwise(delays[:4]))
        assert max(delays) <= 10.0
    samples = {round(backoff.delay(2), 6) for _ in range(20)}
    assert len(samples) > 1  # jittered


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds({"retry-after": "garbage"}) is None
    assert retry_after_seconds({}) is None


def test_rate_limit_headers_hold_the_next_request() -> None:
    now = 1_000.0
    assert (
        exhausted_until(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, now
        )
        == now + 360
    )
    assert exhausted_until(
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, now
    ) == pytest.approx(now + 0.02)
    assert (
        exhausted_until(
            {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}, now
        )
        is None
    )
    reset = "2026-11-21T10:00:30Z"
    from datetime import datetime

    t = datetime.fromisoformat("2026-11-21T10:00:00+00:00").timestamp()
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    assert exhausted_until(headers, t) == t + 30
    clock = Clock()
    gate = RateLimitGate(clock)
    gate.observe("a", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    assert gate.hold_until("a") == clock.now + 2
    clock.now += 2.5
    assert gate.hold_until("a") is None


def test_breaker_opens_fails_fast_lets_one_trial_and_closes() -> None:
    clock = Clock()
    breaker = Breakers(threshold=3, recovery_s=60, clock=clock).get("openai|x|m")
    for _ in range(2):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.state == "closed"
    assert breaker.acquire()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.acquire()
    assert breaker.until == clock.now + 60
    clock.now += 61
    assert breaker.state == "half_open"
    assert breaker.acquire()  # the one trial
    assert not breaker.acquire()  # everyone else still fails fast
    breaker.failure()  # the trial failed: open again
    assert breaker.state == "open"
    clock.now += 61
    assert breaker.acquire()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.acquire() and breaker.acquire()


def test_breaker_release_does_not_count() -> None:
    clock = Clock()
    breaker = Breakers(threshold=1, recovery_s=10, clock=clock).get("e")
    assert breaker.acquire()
    breaker.release()
    assert breaker.state == "closed"


def test_max_reply_mb_from_the_config_sets_every_size_limit() -> None:
    from desktop_app.core.config import Config

    config = Config()
    assert ResilienceSettings.from_values(config.values).max_reply_chars == 8_000_000
    config.set("resilience.max_reply_mb", "0.5")
    settings = ResilienceSettings.from_values(config.values)
    assert settings.max_reply_chars == 500_000
    assert settings.max_event_bytes >= 2 * settings.max_reply_chars
    assert settings.max_body_bytes >= 50 * settings.max_reply_chars
