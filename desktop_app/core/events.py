"""The stream of events one reply produces.

The CLI, the GUI, the tests and the benchmarks all consume this same closed set of
immutable records. ``StreamEvent`` is their union.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from desktop_app.core.errors import RillError
from desktop_app.core.types import GenerationResponse, TokenUsage


class Stage(StrEnum):
    CONNECTING = "connecting"
    WAITING = "waiting for the first token"
    STREAMING = "streaming"


@dataclass(frozen=True, slots=True)
class StageChanged:
    stage: Stage
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    usage: TokenUsage


@dataclass(frozen=True, slots=True)
class Retrying:
    """A failed attempt will be tried again after ``delay_s``."""

    attempt: int
    """The attempt that is about to start (2 for the first retry)."""
    max_attempts: int
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class RateLimitWait:
    """The server asked us to wait; nothing is sent before ``until`` (a ``time.time()``)."""

    until: float
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class CircuitOpen:
    endpoint: str
    until: float


@dataclass(frozen=True, slots=True)
class FallingBack:
    from_model: str
    to_model: str
    to_profile: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Restarted:
    """Shown text was interrupted; the request starts again and its new answer replaces it.

    ``discarded`` is the interrupted text, kept by the consumer as an earlier version.
    """

    reason: str
    discarded: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """Shown text was interrupted; the answer continues after ``kept`` without repeating it."""

    reason: str
    kept: str


@dataclass(frozen=True, slots=True)
class CacheHit:
    key: str


@dataclass(frozen=True, slots=True)
class Finished:
    response: GenerationResponse


@dataclass(frozen=True, slots=True)
class Failed:
    error: RillError
    partial: str = ""


@dataclass(frozen=True, slots=True)
class Cancelled:
    partial: str


StreamEvent = (
    StageChanged
    | TextDelta
    | ToolCallDelta
    | UsageUpdate
    | Retrying
    | RateLimitWait
    | CircuitOpen
    | FallingBack
    | Restarted
    | Resumed
    | CacheHit
    | Finished
    | Failed
    | Cancelled
)
