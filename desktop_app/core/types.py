"""Requests and responses: the plain records every layer passes around."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
ProviderName = Literal["openai", "ollama", "anthropic", "gemini"]
PROVIDERS: tuple[ProviderName, ...] = ("openai", "ollama", "anthropic", "gemini")
PROVIDER_TITLES: dict[str, str] = {
    "openai": "OpenAI",
    "ollama": "Ollama",
    "anthropic": "Anthropic",
    "gemini": "Gemini",
}
"""How sentences for people name each wire protocol's servers."""


def provider_title(name: str) -> str:
    """The name a person knows a provider by (``OpenAI`` for ``openai``)."""
    return PROVIDER_TITLES.get(name, name)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for; ``arguments`` is the JSON text it produced."""

    id: str | None
    name: str
    arguments: str
    signature: str | None = None
    """An opaque token the provider wants back with the call in the next request (Gemini's
    ``thoughtSignature``); never shown, never stored."""


@dataclass(frozen=True, slots=True)
class ToolPart:
    """One tool call of a reply and what came of it, as the history keeps it: what the
    model received and the user saw."""

    call_id: str
    server: str
    name: str
    """The tool's own name on its server."""
    exposed: str
    """The name the model called it by."""
    arguments: str
    ok: bool
    """It ran and returned a result (which the tool itself may mark an error)."""
    result: str
    """The text the model received: the result, or the sentence saying why there is none."""
    is_error: bool
    denied: bool
    duration_s: float
    round: int
    """The request of the turn (from 0) whose reply asked for the call."""
    offset: int
    """How many characters of the reply's text came before the call."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AttachmentKind = Literal["image", "text", "pdf"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a prompt. Its bytes are stored once under the data folder, named by
    their SHA-256; a message refers to them by ``sha256``.

    ``data`` holds the bytes when they have been read (a file just attached, or a stored
    message whose request is being built); a message read back from the history carries the
    description only, with ``data`` empty. ``data`` takes no part in equality."""

    sha256: str
    name: str
    """The file's own name (no folder), as the user sees it."""
    kind: AttachmentKind
    mime: str
    size: int
    """Bytes of the file as attached."""
    width: int = 0
    """Pixels, for an image."""
    height: int = 0
    pages: int = 0
    """Pages, for a PDF."""
    data: bytes = field(default=b"", compare=False, repr=False)
    as_text: bool = field(default=False, compare=False)
    """A PDF sent as its text to a provider that otherwise reads the PDF itself, because the
    request's documents would pass what it takes (set per request, never stored)."""


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    """A tool result that is an error (the call failed, was refused, or the tool said so)."""
    attachments: tuple[Attachment, ...] = ()
    """Files sent with a user message, in the order they were attached."""


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


CHARS_PER_TOKEN = 4
"""The estimate's rule: about four characters of text per token (English prose with the
common BPE vocabularies), rounded up."""
MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens a chat template adds around each message (role markers, separators)."""


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    """True when the server did not report usage and Rill estimated it from the text."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }

    @staticmethod
    def estimate_tokens(text: str) -> int:
        """Tokens in ``text`` by the rule of :data:`CHARS_PER_TOKEN` (0 for no text)."""
        return -(-len(text) // CHARS_PER_TOKEN)

    @classmethod
    def estimate(
        cls, request: ChatRequest, reply: str, tool_calls: tuple[ToolCall, ...] = ()
    ) -> TokenUsage:
        """Usage estimated from the text: the prompt (system prompt, messages, their
        attached files and tool definitions, plus :data:`MESSAGE_OVERHEAD_TOKENS` per
        message) and the reply (its text and tool-call arguments), marked ``estimated``."""
        from desktop_app.core.attachments import estimate_tokens

        prompt = [request.system or ""]
        prompt += [m.content for m in request.messages]
        prompt += [tc.name + tc.arguments for m in request.messages for tc in m.tool_calls]
        prompt += [t.name + t.description + json.dumps(t.parameters) for t in request.tools]
        messages = len(request.messages) + (1 if request.system else 0)
        files = sum(estimate_tokens(a) for m in request.messages for a in m.attachments)
        input_tokens = (
            sum(map(cls.estimate_tokens, prompt)) + files + MESSAGE_OVERHEAD_TOKENS * messages
        )
        output = cls.estimate_tokens(reply) + sum(
            cls.estimate_tokens(tc.name + tc.arguments) for tc in tool_calls
        )
        return cls(input_tokens, output, estimated=True)


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
