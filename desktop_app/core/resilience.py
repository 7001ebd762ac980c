"""Retry policy, server-requested waits, rate-limit headers and per-endpoint circuit breakers.

Classification lives in the error classes (``RillError.retryable``); this module decides
how long to wait and whether to send at all.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tenacity import RetryCallState, wait_exponential_jitter

MidStream = Literal["restart", "continue", "off"]


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    max_retries: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    wait_on_rate_limit: bool = True
    max_rate_limit_wait_s: float = 120.0
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float = 600.0
    idle_timeout_s: float = 60.0
    mid_stream: MidStream = "restart"
    failure_threshold: int = 5
    recovery_timeout_s: float = 300.0
    max_reply_mb: float = 8.0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ResilienceSettings:
        """From the config's flat ``resilience.*`` keys."""
        p = "resilience."
        return cls(
            max_retries=int(values[p + "max_retries"]),
            base_delay_s=float(values[p + "base_delay_s"]),
            max_delay_s=float(values[p + "max_delay_s"]),
            wait_on_rate_limit=bool(values[p + "wait_on_rate_limit"]),
            max_rate_limit_wait_s=float(values[p + "max_rate_limit_wait_s"]),
            connect_timeout_s=float(values[p + "connect_timeout_s"]),
            first_token_timeout_s=float(values[p + "first_token_timeout_s"]),
            idle_timeout_s=float(values[p + "idle_timeout_s"]),
            mid_stream=values[p + "mid_stream"],
            failure_threshold=int(values[p + "circuit_breaker.failure_threshold"]),
            recovery_timeout_s=float(values[p + "circuit_breaker.recovery_timeout_s"]),
            max_reply_mb=float(values.get(p + "max_reply_mb", 8.0)),
        )

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def max_reply_chars(self) -> int:
        """The most text (and tool-call arguments) one reply may hold, in characters."""
        return max(1, int(self.max_reply_mb * 1_000_000))

    @property
    def max_event_bytes(self) -> int:
        """The largest single SSE event or NDJSON line read: room for a reply at the limit
        in one event, with JSON escaping."""
        return 2 * self.max_reply_chars + 64 * 1024

    @property
    def max_body_bytes(self) -> int:
        """The most bytes one answer may hold once decompressed: wire formats spend up to
        about 50 bytes of JSON on a delta of a few characters, so a reply at the text limit
        still fits."""
        return 64 * self.max_reply_chars + (1 << 20)


class Backoff:
    """Exponential backoff with jitter, as tenacity computes it.

    The jitter is at most half the base delay, so each wait is longer than the one before
    until the cap.
    """

    def __init__(self, settings: ResilienceSettings) -> None:
        self._wait = wait_exponential_jitter(
            multiplier=settings.base_delay_s,
            max=settings.max_delay_s,
            exp_base=2,
            jitter=settings.base_delay_s / 2,
        )

    def delay(self, failed_attempt: int) -> float:
        """The wait after attempt number ``failed_attempt`` (1-based) failed."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = failed_attempt
        return float(self._wait(state))


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, or ``Retry-After`` (seconds or date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str, now: float) -> float | None:
    """A reset header as an absolute ``time.time()``: ``1s``, ``6m0s``, ``20ms``, seconds, or
    an RFC 3339 date (Anthropic)."""
    value = value.strip()
    if not value:
        return None
    try:
        return now + float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return now + sum(float(n) * scale[u] for n, u in parts)
    try:
        from datetime import datetime

        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def exhausted_until(headers: Mapping[str, str], now: float) -> float | None:
    """When nothing remains of a rate limit, the time it resets; else None."""
    until: float | None = None
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith("x-ratelimit-remaining-"):
            kind = lname.removeprefix("x-ratelimit-remaining-")
            reset_name = f"x-ratelimit-reset-{kind}"
        elif lname.startswith("anthropic-ratelimit-") and lname.endswith("-remaining"):
            kind = lname.removeprefix("anthropic-ratelimit-").removesuffix("-remaining")
            reset_name = f"anthropic-ratelimit-{kind}-reset"
        else:
            continue
        try:
            remaining = float(value)
        except ValueError:
            continue
        if remaining > 0:
            continue
        reset = headers.get(reset_name)
        when = parse_reset(reset, now) if reset else None
        if when is not None and when > now:
            until = when if until is None else max(until, when)
    return until


class RateLimitGate:
    """Holds the next request to an endpoint until its exhausted rate limit resets."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def observe(self, key: str, headers: Mapping[str, str]) -> None:
        until = exhausted_until(headers, self._clock())
        if until is not None:
            self._until[key] = until

    def hold_until(self, key: str) -> float | None:
        until = self._until.get(key)
        if until is None:
            return None
        if until <= self._clock():
            del self._until[key]
            return None
        return until


class CircuitBreaker:
    """One endpoint's breaker: closed → open after ``threshold`` consecutive failures →
    half-open after ``recovery_s`` (exactly one trial request) → closed on its success."""

    def __init__(self, threshold: int, recovery_s: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.recovery_s = recovery_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.recovery_s:
            return "half_open"
        return "open"

    @property
    def until(self) -> float:
        return (self.opened_at or self._clock()) + self.recovery_s

    def acquire(self) -> bool:
        """May a request go through now? In half-open state only the first caller may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def release(self) -> None:
        """The request ended without a verdict (cancelled, or failed in a way that doesn't
        count); let the next caller be the trial."""
        self.trial_in_flight = False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.threshold:
            self.opened_at = self._clock()
        self.trial_in_flight = False


class Breakers:
    """The circuit breakers of every endpoint (provider + base URL + model)."""

    def __init__(self, threshold: int, recovery_s: float, clock: Callable[[], float] = time.time):
        self.threshold = threshold
        self.recovery_s = recovery_s
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(self.threshold, self.recovery_s, self._clock)
            self._breakers[endpoint] = breaker
        return breaker
