"""What every wire protocol module provides, and the state a stream parser keeps."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from desktop_app.core.errors import CorruptStream, IncompleteStream, RillError, error_for_status
from desktop_app.core.events import StreamEvent, TextDelta, ToolCallDelta
from desktop_app.core.types import (
    ChatRequest,
    FinishReason,
    Message,
    ProviderName,
    TokenUsage,
    ToolCall,
)

Framing = Literal["sse", "ndjson"]


def dumps(value: Any) -> str:
    """Compact JSON, as the request body is sent (byte-identical across retries)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads_chunk(data: str | bytes, provider: str) -> Any:
    """Parse one chunk of a stream; anything that is not JSON is a corrupt stream."""
    try:
        return json.loads(data)
    except ValueError as exc:
        shown = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise CorruptStream(
            f"The {provider} server sent a chunk that is not valid JSON.",
            action="Rill tries again.",
            detail=shown[:200],
        ) from exc


def raw_json(line: str, value: Any, *, compact: bool) -> str:
    """The JSON text of ``value`` exactly as the server wrote it in ``line``.

    Servers that send tool arguments as an object write it compactly (Ollama) or with
    spaces (Gemini); whichever form stands in the line is the one returned, else the
    provider's usual form (``compact`` or not).
    """
    tight = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    spaced = json.dumps(value, ensure_ascii=False)
    if tight in line:
        return tight
    if spaced in line:
        return spaced
    return tight if compact else spaced


def corrupt_chunk(provider: str, data: str) -> CorruptStream:
    return CorruptStream(
        f"The {provider} server sent a chunk Rill does not understand.",
        action="Rill tries again.",
        detail=data[:200],
    )


def in_stream_error(err: Any, provider: str, status: int | None = None) -> RillError:
    """An error object sent inside a stream that began with 200 OK."""
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        etype = str(err.get("type") or err.get("status") or "")
        code = err.get("code")
        if not etype and isinstance(code, str):
            etype = code
    else:
        message, etype, code = str(err), "", None
    if status is None:
        status = code if isinstance(code, int) and 400 <= code < 600 else status_for_type(etype)
    return error_for_status(status, message, provider=provider, error_type=etype)


def status_for_type(etype: str) -> int:
    """The HTTP status an error type name stands for (server errors when unknown)."""
    etype = etype.lower()
    table = (
        ("rate_limit", 429),
        ("resource_exhausted", 429),
        ("overload", 529),
        ("unavailable", 503),
        ("auth", 401),
        ("unauthenticated", 401),
        ("permission", 403),
        ("not_found", 404),
        ("request_too_large", 413),
        ("invalid", 400),
        ("failed_precondition", 400),
        ("deadline", 504),
    )
    for word, status in table:
        if word in etype:
            return status
    return 500


class _ToolAcc:
    __slots__ = ("args", "id", "name")

    def __init__(self, id: str | None, name: str) -> None:
        self.id = id
        self.name = name
        self.args: list[str] = []


class StreamParser(ABC):
    """Turns one attempt's stream into events and keeps what it has seen.

    ``feed`` takes one SSE event (name and data) or one NDJSON line (name "") and returns
    the events it produced. ``end`` is called at end of stream and raises
    :class:`IncompleteStream` when the protocol's finish marker never came.
    """

    provider: ClassVar[str] = ""
    finish_map: ClassVar[Mapping[str, FinishReason]] = {}

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.text_parts: list[str] = []
        self._tools: dict[int, _ToolAcc] = {}
        self.usage: TokenUsage | None = None
        self.raw_finish: str | None = None
        self.model: str = request.model
        self.done = False

    @abstractmethod
    def feed(self, event: str, data: str) -> list[StreamEvent]:
        """Parse one event or line."""

    def end(self) -> None:
        if not self.done:
            raise IncompleteStream(
                f"The {self.provider} stream ended before the answer was complete.",
                action="Rill tries again.",
            )

    # helpers for subclasses -------------------------------------------------------------

    def _text(self, text: str) -> list[StreamEvent]:
        self.text_parts.append(text)
        return [TextDelta(text)]

    def _tool_start(self, index: int, id: str | None, name: str, args: str = "") -> ToolCallDelta:
        acc = self._tools.get(index)
        if acc is None:
            acc = self._tools[index] = _ToolAcc(id, name)
        else:
            acc.id = acc.id or id
            acc.name = acc.name or name
        if args:
            acc.args.append(args)
        return ToolCallDelta(index, id, name or None, args)

    def _tool_args(self, index: int, args: str) -> ToolCallDelta:
        acc = self._tools.get(index)
        if acc is None:
            acc = self._tools[index] = _ToolAcc(None, "")
        acc.args.append(args)
        return ToolCallDelta(index, None, None, args)

    # results ---------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(acc.id, acc.name, "".join(acc.args)) for _, acc in sorted(self._tools.items())
        )

    @property
    def has_output(self) -> bool:
        return bool(self.text_parts) or bool(self._tools)

    @property
    def finish_reason(self) -> FinishReason:
        normal: FinishReason = self.finish_map.get(self.raw_finish or "", "stop")
        if normal == "stop" and self._tools:
            return "tool_calls"
        return normal


class Provider(ABC):
    """One wire protocol: how to build its request, read its stream and its errors."""

    name: ClassVar[ProviderName]
    framing: ClassVar[Framing]
    key_env: ClassVar[str | None] = None
    needs_key: ClassVar[bool] = False
    default_base_url: ClassVar[str]
    accepts_prefill: ClassVar[bool] = False

    @abstractmethod
    def url(self, request: ChatRequest) -> str: ...

    @abstractmethod
    def headers(self, api_key: str | None) -> dict[str, str]: ...

    @abstractmethod
    def body(self, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def parser(self, request: ChatRequest) -> StreamParser: ...

    @abstractmethod
    def models_url(self, base_url: str) -> str: ...

    @abstractmethod
    def parse_models(self, body: Any) -> list[str]: ...

    def error_message(self, body: Any) -> tuple[str, str]:
        """The server's own message and error type from an error body."""
        if isinstance(body, dict):
            err = body.get("error", body)
            if isinstance(err, dict):
                return str(err.get("message") or ""), str(
                    err.get("type") or err.get("status") or ""
                )
            if isinstance(err, str):
                return err, ""
        return "", ""

    def parse_error(
        self,
        status: int,
        content: bytes,
        *,
        profile: str = "default",
        retry_after_s: float | None = None,
    ) -> RillError:
        try:
            body: Any = json.loads(content) if content else None
        except ValueError:
            body = content.decode("utf-8", "replace").strip()[:300]
        message, error_type = self.error_message(body) if not isinstance(body, str) else (body, "")
        return error_for_status(
            status,
            message,
            provider=self.name,
            profile=profile,
            retry_after_s=retry_after_s,
            error_type=error_type,
        )

    def encode_body(self, request: ChatRequest) -> bytes:
        return dumps(self.body(request)).encode("utf-8")

    @staticmethod
    def join_url(base_url: str, path: str) -> str:
        return base_url.rstrip("/") + path


def openai_style_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """Tools as OpenAI and Ollama take them."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in request.tools
    ]


def openai_style_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages as OpenAI and Ollama take them (system prompt first)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_openai_message(m))
    return out


def _openai_message(m: Message) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        msg["tool_calls"] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments},
            }
            for tc in m.tool_calls
        ]
    if m.tool_call_id:
        msg["tool_call_id"] = m.tool_call_id
    if m.name:
        msg["name"] = m.name
    return msg
