"""Hostile answers: what a server Rill does not control may send, as :class:`Fault` values.

Each function returns a :class:`Fault` (or bytes for one) whose :class:`Raw` answer ignores
the protocol's rules where the case needs it, so tests and people can point Rill at the
simulator and see it hold::

    sim.script(hostile.reply("openai", "![x](file:///dev/zero)"))
    sim.script(hostile.endless("ollama", "x" * 100))

``python -m desktop_app.simulator --hostile NAME`` serves one of :data:`CASES` for every
chat request.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from desktop_app.simulator.protocols import (
    ChatInput,
    Encoder,
    ProtocolName,
    Reply,
    error_body,
    json_content_type,
    make_encoder,
    stream_content_type,
)
from desktop_app.simulator.server import Fault, FaultTarget, Raw, RecordedRequest


def _encoder_for(protocol: ProtocolName, chunks: Sequence[str], model: str) -> Encoder:
    inp = ChatInput(
        protocol=protocol,
        model=model,
        stream=True,
        last_user="",
        input_tokens=1,
        max_tokens=None,
        include_usage=True,
        seed_model=model,
    )
    return make_encoder(inp, Reply(chunks=list(chunks), finish="stop"))


def stream_body(
    protocol: ProtocolName,
    chunks: Sequence[str],
    *,
    finish: bool = True,
    model: str = "sim-small",
) -> bytes:
    """A well-formed stream in ``protocol`` whose text deltas are exactly ``chunks``.

    Chunks may hold anything a JSON string can, lone surrogates included (they are sent
    as ``\\udxxx`` escapes). Without ``finish`` the finish marker is left off.
    """
    stand_ins = [_SURROGATE.sub(lambda m: chr(_PUA + ord(m.group()) - 0xD800), c) for c in chunks]
    enc = _encoder_for(protocol, stand_ins, model)
    parts = [enc.head(), enc.lead()]
    parts += [enc.token(i) for i in range(len(chunks))]
    if finish:
        parts.append(enc.tail(len(chunks)))
    body = b"".join(parts)
    if stand_ins != list(chunks):  # the encoders write raw UTF-8: put the escapes back
        text = body.decode()
        text = _STAND_IN.sub(lambda m: f"\\u{ord(m.group()) - _PUA + 0xD800:04x}", text)
        body = text.encode()
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")
_PUA = 0xF0000
"""Surrogates travel through the encoders as plane-15 private-use characters."""
_STAND_IN = re.compile("[\U000f0000-\U000f07ff]")


def _stream_headers(protocol: ProtocolName) -> dict[str, str]:
    return {"Content-Type": stream_content_type(protocol), "Cache-Control": "no-cache"}


def reply(
    protocol: ProtocolName,
    text: str | Sequence[str],
    *,
    finish: bool = True,
    piece_delay_s: float = 0.0,
) -> Fault:
    """A streamed reply carrying ``text`` (one delta, or the given deltas) verbatim."""
    chunks = [text] if isinstance(text, str) else list(text)
    return Fault(
        protocol=protocol,
        raw=Raw(
            headers=_stream_headers(protocol),
            body=stream_body(protocol, chunks, finish=finish),
            piece_delay_s=piece_delay_s,
        ),
    )


def pieces(
    protocol: FaultTarget | None,
    body: Callable[[RecordedRequest], Iterable[bytes]],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    piece_delay_s: float = 0.0,
    time_limit_s: float = 120.0,
) -> Fault:
    """An answer whose body comes piece by piece from ``body`` (which may never end)."""
    return Fault(
        protocol=protocol,
        raw=Raw(
            status=status,
            headers=headers or {},
            body=body,
            piece_delay_s=piece_delay_s,
            time_limit_s=time_limit_s,
        ),
    )


def endless(
    protocol: ProtocolName, delta: str, *, per_piece: int = 64, time_limit_s: float = 120.0
) -> Fault:
    """Valid text deltas at full speed that never finish (``per_piece`` deltas per write)."""
    enc = _encoder_for(protocol, [delta], "sim-small")
    first = enc.head() + enc.lead()
    one = enc.token(0)
    batch = one * per_piece

    def body(_: RecordedRequest) -> Iterator[bytes]:
        yield first + batch
        yield from itertools.repeat(batch)

    return pieces(protocol, body, headers=_stream_headers(protocol), time_limit_s=time_limit_s)


def endless_line(protocol: ProtocolName, *, piece: int = 64 * 1024) -> Fault:
    """One event (SSE: ``data:`` lines with no blank line; NDJSON: a line with no end)."""
    if protocol == "ollama":
        first, filler = b'{"message":{"role":"assistant","content":"', b"x" * piece
    else:
        first, filler = b"", b"data: x\n" * (piece // 8)

    def body(_: RecordedRequest) -> Iterator[bytes]:
        yield first
        yield from itertools.repeat(filler)

    return pieces(protocol, body, headers=_stream_headers(protocol))


def gzip_bomb(protocol: ProtocolName, *, expanded: int = 1 << 30) -> Fault:
    """A small gzip body (about 1 KB per MB) that expands to ``expanded`` bytes of deltas."""
    if protocol == "ollama":
        unit = b'{"message":{"role":"assistant","content":"x"},"done":false}\n'
    else:
        unit = b"data: " + json.dumps({"choices": [{"delta": {"content": "x"}}]}).encode()
        unit += b"\n\n"
    body = _gzip_repeat(unit * ((1 << 20) // len(unit) + 1), expanded)
    headers = _stream_headers(protocol) | {"Content-Encoding": "gzip"}
    return Fault(protocol=protocol, raw=Raw(headers=headers, body=body))


@functools.lru_cache(maxsize=4)
def _gzip_repeat(block: bytes, total: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: with a gzip header
    out = [comp.compress(block)]
    written = len(block)
    while written < total:
        out.append(comp.compress(block))
        written += len(block)
    out.append(comp.flush())
    return b"".join(out)


def error(
    protocol: FaultTarget,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> Fault:
    """The provider's own error body for ``status`` with ``message`` (any text) inside."""
    shape: ProtocolName = "openai" if protocol == "models" else protocol
    return Fault(
        protocol=protocol,
        raw=Raw(
            status=status,
            headers={"Content-Type": json_content_type(shape)} | (headers or {}),
            body=error_body(shape, status, message),
        ),
    )


def echo_key_error(protocol: FaultTarget, status: int = 401, *, pad: int = 0) -> Fault:
    """An error whose message quotes the request's API key back (after ``pad`` characters)."""
    shape: ProtocolName = "openai" if protocol == "models" else protocol

    def body(record: RecordedRequest) -> Iterator[bytes]:
        h = record.headers
        key = (
            h.get("authorization", "").removeprefix("Bearer ")
            or h.get("x-api-key", "")
            or h.get("x-goog-api-key", "")
            or record.query.partition("key=")[2].partition("&")[0]
        )
        yield error_body(shape, status, "x" * pad + f"Incorrect API key provided: {key}.")

    return pieces(protocol, body, status=status, headers={"Content-Type": json_content_type(shape)})


def redirect(
    protocol: FaultTarget, location: str, *, status: int = 307, body: bytes = b""
) -> Fault:
    """A redirect to ``location`` (optionally with a body, e.g. an event stream)."""
    shape: ProtocolName = "openai" if protocol == "models" else protocol
    headers = {"Location": location}
    if body:
        headers["Content-Type"] = stream_content_type(shape)
    return Fault(protocol=protocol, raw=Raw(status=status, headers=headers, body=body))


def nesting_bomb(protocol: ProtocolName, depth: int = 100_000) -> Fault:
    """A chunk whose JSON nests ``depth`` arrays deep."""
    bomb = b"[" * depth + b"]" * depth
    if protocol == "ollama":
        data = b'{"message":{"role":"assistant","content":"hi"},"x":' + bomb + b"}\n"
    else:
        data = b'data: {"x":' + bomb + b"}\n\n"
    return Fault(protocol=protocol, raw=Raw(headers=_stream_headers(protocol), body=data))


CASES: dict[str, Callable[[ProtocolName], Fault]] = {
    "image-file": lambda p: reply(p, "Look: ![x](file:///dev/zero) and ![y](/etc/hostname)"),
    "html-error": lambda p: error(
        p,
        401,
        '<h1 style="color:red">Session expired</h1><a href="https://x">paste your '
        'API key here</a><img src="file:///dev/zero">',
    ),
    "escapes": lambda p: reply(p, "title\x1b]0;pwned\x07 clear\x1b[2J clip\x1b]52;c;aGk=\x07 end"),
    "long-word": lambda p: reply(p, ["x" * 65536] * 16),
    "table": lambda p: reply(
        p, "| a | b |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(5000))
    ),
    "split-surrogate": lambda p: reply(p, ["smile \ud83d", "\ude00 lone \ud800 end"]),
    "endless": lambda p: endless(p, "spam "),
    "endless-line": endless_line,
    "gzip-bomb": gzip_bomb,
    "nesting": nesting_bomb,
    "echo-key": lambda p: echo_key_error(p),
    "redirect": lambda p: redirect(p, "http://127.0.0.1:9/steal"),
}
"""Named hostile answers, each for any chat protocol."""
