"""What every wire protocol module provides, and the state a stream parser keeps."""

from __future__ import annotations

import base64
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from desktop_app.core.attachments import pdf_block, text_block
from desktop_app.core.errors import (
    CorruptStream,
    IncompleteStream,
    ReplyTooLarge,
    RillError,
    error_for_status,
)
from desktop_app.core.events import StreamEvent, TextDelta, ToolCallDelta
from desktop_app.core.text import has_surrogates, valid_text
from desktop_app.core.types import (
    Attachment,
    ChatRequest,
    FinishReason,
    Message,
    ProviderName,
    TokenUsage,
    ToolCall,
)

Framing = Literal["sse", "ndjson"]

WHOLE_BODY = "\n"
"""The event name under which a whole JSON answer (not a stream) reaches ``feed``: no SSE
event can carry it, since a newline ends every field."""


def dumps(value: Any) -> str:
    """Compact JSON, as the request body is sent (byte-identical across retries)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


UNPARSABLE: tuple[type[BaseException], ...] = (
    ValueError,  # not JSON, numbers too long to convert, UnicodeError
    TypeError,  # a value of the wrong type where a parser needs another
    AttributeError,  # a list or a number where an object belongs
    LookupError,  # an index or key that is not there
    ArithmeticError,  # an overflow converting a huge number
    RecursionError,  # nesting deeper than the parser goes
    MemoryError,
)
"""What reading a chunk Rill cannot make sense of raises; each becomes a corrupt stream."""


class TextJoiner:
    """Makes a stream of text pieces valid text: a high surrogate that ends one piece waits
    for the low surrogate that may begin the next; what stays lone becomes U+FFFD."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        if self.held:
            text, self.held = self.held + text, ""
        elif not has_surrogates(text):
            return text
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self.held = text[:-1], text[-1]
        return valid_text(text)

    def flush(self) -> str:
        """What is held at the end of the stream (a lone high surrogate, as U+FFFD)."""
        if not self.held:
            return ""
        self.held = ""
        return "\ufffd"


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The scanner ``json.loads`` ends in (json's C one), called for a chunk without the two
layers of Python above it, which check the argument's type and skip whitespace around it."""


def loads_chunk(data: str | bytes, provider: str) -> Any:
    """Parse one chunk of a stream; anything that is not JSON is a corrupt stream.

    A chunk is a JSON text with nothing around it, so it is read with one call of json's
    scanner; one it does not read whole (whitespace around it, an error) goes through
    ``json.loads``, which gives the same value or the same error as ever."""
    if type(data) is str:
        try:
            value, end = _scan_json(data, 0)
        except (StopIteration, ValueError):
            pass
        else:
            if end == len(data):
                return value
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


def in_stream_error(
    err: Any, provider: str, status: int | None = None, retry_after_s: float | None = None
) -> RillError:
    """An error object sent inside a stream that began with 200 OK; ``retry_after_s`` is
    the wait it asks for (a rate limit's, read from the error by the provider)."""
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
    return error_for_status(
        status,
        valid_text(message[:_MESSAGE_LIMIT]),
        provider=provider,
        retry_after_s=retry_after_s,
        error_type=valid_text(etype[:200]),
    )


_MESSAGE_LIMIT = 4000
"""The most of a server's own error message kept (the sentence shows less)."""


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
    __slots__ = ("args", "id", "joiner", "name", "signature")

    def __init__(self, id: str | None, name: str) -> None:
        self.id = id
        self.name = name
        self.args: list[str] = []
        self.joiner = TextJoiner()
        self.signature: str | None = None


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return valid_text(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _str_raw(value: Any) -> str:
    """A string piece of a longer text, checked but not yet made valid (see TextJoiner)."""
    if type(value) is not str:
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


class StreamParser(ABC):
    """Turns one attempt's stream into events and keeps what it has seen.

    ``feed`` takes one SSE event (name and data) or one NDJSON line (name "") and returns
    the events it produced. Whatever a chunk holds, ``feed`` returns events whose text is
    valid (encodable) and of the right types, or raises a :class:`RillError`: a chunk that
    cannot be read (not JSON, too deep, the wrong shape or types anywhere) is a
    :class:`CorruptStream`, and text past ``max_chars`` is :class:`ReplyTooLarge`. ``end``
    is called at end of stream: it returns the events still held back and raises
    :class:`IncompleteStream` when the protocol's finish marker never came.
    """

    provider: ClassVar[str] = ""
    title: ClassVar[str] = ""
    """How sentences name the provider's servers (``OpenAI``)."""
    finish_map: ClassVar[Mapping[str, FinishReason]] = {}

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.text_parts: list[str] = []
        self._tools: dict[int, _ToolAcc] = {}
        self.usage: TokenUsage | None = None
        self.raw_finish: str | None = None
        self.model: str = request.model
        self.done = False
        self.max_chars = sys.maxsize
        """The most characters of text and tool-call arguments this reply may hold."""
        self.size = 0
        self.begun = False
        """The reply's content has begun (a content block, a role chunk, a candidate): from
        here on the gaps between chunks are timed as a stall, not as the first token."""
        self._joiner = TextJoiner()

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        """Parse one event or line (the one boundary where unreadable chunks are caught);
        under the event name :data:`WHOLE_BODY`, a whole JSON answer."""
        try:
            if event == WHOLE_BODY:
                return self.parse_whole(data)
            return self.parse(event, data)
        except RillError:
            raise
        except UNPARSABLE as exc:
            raise corrupt_chunk(self.title, data) from exc

    @abstractmethod
    def parse(self, event: str, data: str) -> list[StreamEvent]:
        """Parse one event or line; any exception of :data:`UNPARSABLE` means corrupt."""

    def parse_whole(self, data: str) -> list[StreamEvent]:
        """Parse a whole JSON answer: the protocol's non-streaming reply, or an error.

        By default it is read as one chunk of the stream (Gemini and Ollama answer a
        non-streaming request with what would be their only chunk)."""
        return self.parse("", data)

    def end(self) -> list[StreamEvent]:
        if not self.done:
            raise IncompleteStream(
                f"The {self.title} stream ended before the answer was complete.",
                action="Rill tries again.",
            )
        out: list[StreamEvent] = []
        tail = self._joiner.flush()
        if tail:
            self.text_parts.append(tail)
            out.append(TextDelta(tail))
        for index, acc in sorted(self._tools.items()):
            tail = acc.joiner.flush()
            if tail:
                acc.args.append(tail)
                out.append(ToolCallDelta(index, None, None, tail))
        return out

    # helpers for subclasses -------------------------------------------------------------

    def _count(self, size: int) -> None:
        self.size += size
        if self.size > self.max_chars:
            mb = f"{self.max_chars / 1_000_000:g}"
            raise ReplyTooLarge(
                f"The reply passed Rill's limit of {mb} MB of text, so it was stopped there; "
                "the text that arrived is kept.",
                action="If replies this long are expected, raise resilience.max_reply_mb.",
            )

    def _text(self, text: Any) -> list[StreamEvent]:
        if type(text) is not str:
            raise TypeError(f"text is {type(text).__name__}")
        text = self._joiner.feed(text)
        if not text:
            return []
        self._count(len(text))
        self.text_parts.append(text)
        return [TextDelta(text)]

    def _set_model(self, model: Any) -> None:
        if model:
            self.model = _str(model)[:256]

    def _set_finish(self, finish: Any) -> None:
        self.raw_finish = _str(finish)[:256]

    def _tool_start(self, index: Any, id: Any, name: Any, args: Any = "") -> ToolCallDelta:
        if type(index) is not int:
            raise TypeError(f"tool index is {type(index).__name__}")
        id, name, args = _opt_str(id), _str(name), _str_raw(args)
        acc = self._tools.get(index)
        if acc is None:
            acc = self._tools[index] = _ToolAcc(id, name)
        else:
            acc.id = acc.id or id
            acc.name = acc.name or name
        self._count(len(name) + len(id or "") + len(args))
        if args:
            args = acc.joiner.feed(args)
            acc.args.append(args)
        return ToolCallDelta(index, id, name or None, args)

    def _tool_signature(self, index: int, signature: Any) -> None:
        """Keep the opaque token a provider sent with call ``index`` (to send it back)."""
        acc = self._tools.get(index)
        if acc is not None and signature is not None:
            token = _str(signature)
            self._count(len(token))
            acc.signature = token

    def _tool_args(self, index: Any, args: Any) -> ToolCallDelta:
        if type(index) is not int:
            raise TypeError(f"tool index is {type(index).__name__}")
        args = _str_raw(args)
        acc = self._tools.get(index)
        if acc is None:
            acc = self._tools[index] = _ToolAcc(None, "")
        self._count(len(args))
        args = acc.joiner.feed(args)
        acc.args.append(args)
        return ToolCallDelta(index, None, None, args)

    # results ---------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(acc.id, acc.name, "".join(acc.args), acc.signature)
            for _, acc in sorted(self._tools.items())
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
    title: ClassVar[str]
    """How sentences name the provider's servers (``OpenAI``), never the internal id."""
    framing: ClassVar[Framing]
    key_env: ClassVar[str | None] = None
    needs_key: ClassVar[bool] = False
    default_base_url: ClassVar[str]
    accepts_prefill: ClassVar[bool] = False

    @abstractmethod
    def url(self, request: ChatRequest) -> str: ...

    @abstractmethod
    def headers(self, api_key: str | None, *, stream: bool = True) -> dict[str, str]: ...

    @abstractmethod
    def body(self, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def parser(self, request: ChatRequest) -> StreamParser: ...

    @abstractmethod
    def models_url(self, base_url: str) -> str: ...

    @abstractmethod
    def parse_models(self, body: Any) -> list[str]: ...

    def retry_delay(self, body: Any) -> float | None:
        """The wait an error body asks for (Gemini says it there, not in a header)."""
        return None

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
        text = content.decode("utf-8", "replace").strip()[:300]
        try:
            body: Any = json.loads(content) if content else None
            message, error_type = (
                self.error_message(body) if not isinstance(body, str) else (body, "")
            )
            if retry_after_s is None:
                retry_after_s = self.retry_delay(body)
        except UNPARSABLE:
            message, error_type = text, ""
        return error_for_status(
            status,
            valid_text(message[:_MESSAGE_LIMIT]),
            provider=self.title,
            profile=profile,
            retry_after_s=retry_after_s,
            error_type=valid_text(error_type[:200]),
        )

    def encode_body(self, request: ChatRequest) -> bytes:
        return dumps(self.body(request)).encode("utf-8")

    @staticmethod
    def join_url(base_url: str, path: str) -> str:
        return base_url.rstrip("/") + path


class NoModelList(LookupError):
    """A listing of models without the list itself; ``field`` names what was missing."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def model_list(body: Any, field: str) -> list[Any]:
    """The list of models under ``field`` of a listing, or :class:`NoModelList`."""
    if not isinstance(body, dict) or not isinstance(body.get(field), list):
        raise NoModelList(field)
    return [m for m in body[field] if isinstance(m, dict)]


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
    """Messages as OpenAI and Ollama take them (system prompt first); a user message's
    attachments as OpenAI's content parts (Ollama's provider rewrites them)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_openai_message(m))
    return out


def b64(data: bytes) -> str:
    """``data`` in standard base64, as every protocol carries a file inline."""
    return base64.b64encode(data).decode("ascii")


def attached(m: Message) -> bool:
    """Whether ``m`` is a user message with files to send."""
    return bool(m.attachments) and m.role == "user"


def file_text(a: Attachment) -> str:
    """A text file or a PDF as the fenced block a model reads: :func:`text_block` or
    :func:`pdf_block` (the PDF's text, page by page)."""
    return text_block(a) if a.kind == "text" else pdf_block(a)


def sent_as_text(a: Attachment) -> bool:
    """Whether ``a`` goes to a provider that reads documents as text rather than itself."""
    return a.kind == "text" or a.as_text


def text_with_files(m: Message) -> str:
    """A user message's text with its text files and PDFs before it, each as a fenced
    block headed by its name (a PDF as its text, page by page), for a protocol that takes
    no documents; its images are left to the caller."""
    blocks = [file_text(a) for a in m.attachments if a.kind != "image"]
    return "\n\n".join([*blocks, m.content] if m.content else blocks)


def openai_content_parts(m: Message) -> list[dict[str, Any]]:
    """A user message with files as OpenAI content parts, in the order they were attached
    and the text last: an image as an ``image_url`` holding a ``data:`` URL, a text file
    and a PDF (its text, page by page) as ``text``."""
    parts: list[dict[str, Any]] = []
    for a in m.attachments:
        if a.kind == "image":
            url = f"data:{a.mime};base64,{b64(a.data)}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append({"type": "text", "text": file_text(a)})
    if m.content:
        parts.append({"type": "text", "text": m.content})
    return parts


def _openai_message(m: Message) -> dict[str, Any]:
    content: Any = openai_content_parts(m) if attached(m) else m.content
    msg: dict[str, Any] = {"role": m.role, "content": content}
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
    if m.name and m.role != "tool":
        msg["name"] = m.name
    return msg


def tool_arguments(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object the protocols that send objects need (empty
    when the model wrote something else)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def grouped_tool_results(messages: tuple[Message, ...]) -> list[list[Message]]:
    """The messages with each run of consecutive tool results as one group (Anthropic and
    Gemini answer all the calls of a reply in one message)."""
    out: list[list[Message]] = []
    for m in messages:
        if m.role == "tool" and out and out[-1][-1].role == "tool":
            out[-1].append(m)
        else:
            out.append([m])
    return out
