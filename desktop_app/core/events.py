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
    """Text of the reply. The engine gives one per read of the body: ``text`` joins the
    text of the ``pieces`` events (chunks, lines) of the stream that read brought."""

    text: str
    pieces: int = 1


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
class ToolApprovalNeeded:
    """A tool call waits for the user's decision (its policy is "ask").

    The turn's :class:`~desktop_app.core.tools.base.Approver` is asked right after this
    event is consumed; nothing runs until it answers.
    """

    call_id: str
    name: str
    server: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """A tool call was allowed and runs now (parallel calls each have their own)."""

    call_id: str
    name: str
    server: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolProgress:
    """A running tool reported progress (an MCP progress notification)."""

    call_id: str
    progress: float
    total: float | None
    message: str | None
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call ran to its end. ``is_error`` is a result the tool itself marked as an
    error; the model sees it either way."""

    call_id: str
    name: str
    server: str
    content: str
    is_error: bool
    duration_s: float
    images: tuple[tuple[str, bytes], ...] = ()
    """(MIME type, bytes) of each image the tool returned, for the card only."""


@dataclass(frozen=True, slots=True)
class ToolFailed:
    """A tool call did not produce a result: denied, never-policy, timed out, cancelled,
    server failed twice, unknown tool. ``reason`` is the sentence the model and the user
    both read."""

    call_id: str
    name: str
    server: str
    reason: str
    denied: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolRoundStarted:
    """Tool results were appended; the model is asked again (``round`` counts from 1 for
    the first request after tools ran)."""

    round: int
    max_rounds: int


class AutoStageName(StrEnum):
    """The stages of an Auto turn, in the order they happen."""

    ANALYSING = "analysing"
    ANALYSED = "analysed"
    ROUTING = "routing"
    CACHED_ROUTE = "using cached route"
    ROUTED = "routed"
    GENERATING = "generating"
    VALIDATING = "validating"
    VERIFIED = "verified"
    FAILED_CHECK = "failed check"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class AutoStage:
    """An Auto turn moved to ``stage``: ``progress`` (0 to 1) and ``message`` are what the
    status bar and ``q`` show ("code, complexity 8/10", "→ sim-large, strong")."""

    stage: AutoStageName
    progress: float
    message: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class AutoAttempt:
    """One answer an Auto turn asked for: which target, what the judge gave it, its cost."""

    profile: str
    model: str
    tier: int
    score: int | None = None
    """The judge's score (1 to 10); None when not validated (or the judge failed)."""
    cost: float | None = None
    passed: bool | None = None


@dataclass(frozen=True, slots=True)
class AutoRoute:
    """Where an Auto turn sent the question and why; sent again whenever it changes."""

    category: str
    complexity: int
    source: str
    """How the question was analysed: "heuristic" or "classifier"."""
    profile: str
    model: str
    tier: int
    cached: bool
    reason: str
    skipped: tuple[str, ...] = ()
    """Sentences for the targets passed over (circuit open, no key, budget)."""
    attempts: tuple[AutoAttempt, ...] = ()
    kept: int | None = None
    """The index in ``attempts`` of the answer kept, once decided."""
    overhead_cost: float | None = 0.0
    """What the classifier and the judge cost (None when unknown)."""

    @property
    def total_cost(self) -> float | None:
        """What every attempt, the classifier and the judge cost together (None when any
        of them is unknown)."""
        costs = [a.cost for a in self.attempts] + [self.overhead_cost]
        if any(c is None for c in costs):
            return None
        return sum(c for c in costs if c is not None)

    def to_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "complexity": self.complexity,
            "source": self.source,
            "target": self.profile,
            "model": self.model,
            "tier": self.tier,
            "cached": self.cached,
            "reason": self.reason,
            "skipped": list(self.skipped),
            "attempts": [
                {
                    "profile": a.profile,
                    "model": a.model,
                    "tier": a.tier,
                    "score": a.score,
                    "cost": a.cost,
                    "passed": a.passed,
                }
                for a in self.attempts
            ],
            "kept": self.kept,
            "total_cost": self.total_cost,
        }


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
    | ToolApprovalNeeded
    | ToolCallStarted
    | ToolProgress
    | ToolResult
    | ToolFailed
    | ToolRoundStarted
    | AutoStage
    | AutoRoute
    | Finished
    | Failed
    | Cancelled
)
