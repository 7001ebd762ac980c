"""Requests and responses: the plain records every layer passes around."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ProviderName = Literal["openai", "ollama", "anthropic", "gemini"]
PROVIDERS: tuple[ProviderName, ...] = ("openai", "ollama", "anthropic", "gemini")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for; ``arguments`` is the JSON text it produced."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call, described by a JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything that decides an answer. The API key is never part of it."""

    provider: ProviderName
    base_url: str
    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[Tool, ...] = ()
    stream: bool = True
    options: tuple[tuple[str, Any], ...] = ()
    """Provider-specific extra body fields, as sorted (key, value) pairs."""
    profile: str = "default"

    @property
    def endpoint(self) -> str:
        """The circuit-breaker key: provider, base URL and model."""
        return f"{self.provider}|{self.base_url.rstrip('/')}|{self.model}"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class Timing:
    ttft_s: float | None = None
    total_s: float | None = None


@dataclass(frozen=True, slots=True)
class GenerationResponse:
    content: str
    model: str
    provider: str
    usage: TokenUsage | None
    finish_reason: FinishReason
    raw_finish_reason: str | None
    trace_id: str
    timing: Timing
    tool_calls: tuple[ToolCall, ...] = ()
    cost: float | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "tool_calls": [asdict(tc) for tc in self.tool_calls],
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict() if self.usage is not None else None,
            "cost": self.cost,
            "finish_reason": self.finish_reason,
            "raw_finish_reason": self.raw_finish_reason,
            "trace_id": self.trace_id,
            "timing": {"ttft_s": self.timing.ttft_s, "total_s": self.timing.total_s},
            "cached": self.cached,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
