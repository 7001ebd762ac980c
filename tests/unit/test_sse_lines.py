"""Rill's SSE line decoder gives what httpx-sse's gives, however the text is cut.

The engine's decoder differs from the library's only in how a long line is put together
(once, not three times, and a ``data`` line as its value, without the field's name); these
tests feed both the same event streams, cut into pieces every way, and require the same
events from the field reader (httpx-sse's, which `_SSEEvents` only adds to).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from desktop_app.core.engine import _FrameReader, _line_end, _SSEEvents, _SSELines
from desktop_app.core.providers import get_provider
from desktop_app.core.resilience import ResilienceSettings

FIELDS = ("data: ", "data:", "data:  ", "data:   ", "event: ", "event:", "id: ", ": ", "retry: ")
VALUES = ("", " ", "x", " x", '{"a": 1}', "data: y", "ü€😀", "a:b")
ENDS = ("\n", "\r", "\r\n")


def _stream(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 12)):
        for _ in range(rng.randint(0, 4)):
            field = rng.choice(FIELDS)
            value = rng.choice(VALUES) * rng.choice((1, 1, 3, 500))
            out.append(field + value + rng.choice(ENDS))
        out.append(rng.choice(ENDS))  # the blank line that ends an event
    text = "".join(out)
    return text[: rng.randint(0, len(text))] if rng.random() < 0.2 else text


def _cuts(text: str, rng: random.Random) -> list[str]:
    way = rng.choice(("whole", "chars", "random", "small"))
    if way == "whole":
        return [text]
    if way == "chars":
        return list(text)
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(1, 8) if way == "small" else rng.randint(1, 700)
        pieces.append(text[at : at + size])
        at += size
    return pieces


def _events(lines: SSELineDecoder, pieces: list[str]) -> list[tuple[str, str, str]]:
    events = _SSEEvents()
    out = []

    def read(got: list[str]) -> None:
        for i, line in enumerate(got):
            if i == 0 and isinstance(lines, _SSELines) and lines.value_first:
                events.data(line)
                continue
            sse = events.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data, sse.id))

    for piece in pieces:
        if piece:
            read(lines.decode(piece))
    read([*lines.flush(), ""])
    return out


def _agree_however_cut(
    ours: Callable[[list[str]], object], library: Callable[[list[str]], object]
) -> None:
    """``ours`` and ``library`` read 400 random streams, each cut at random, alike."""
    for seed in range(400):
        rng = random.Random(seed)
        pieces = _cuts(_stream(rng), rng)
        assert ours(pieces) == library(pieces), seed


def test_the_events_are_the_librarys_however_the_text_is_cut() -> None:
    _agree_however_cut(
        lambda pieces: _events(_SSELines(), pieces),
        lambda pieces: _events(SSELineDecoder(), pieces),
    )


def test_a_long_data_line_keeps_its_value_exactly() -> None:
    for value in ("{" + "x" * 200_000 + "}", " " + "y" * 100_000, "  two spaces", ""):
        for field in ("data: ", "data:"):
            text = f"{field}{value}\n\n"
            pieces = [text[i : i + 65_536] for i in range(0, len(text), 65_536)]
            want = value[1:] if field == "data:" and value.startswith(" ") else value
            assert _events(_SSELines(), pieces) == [("message", want, "")]


def test_a_long_data_line_is_joined_as_its_value() -> None:
    lines = _SSELines()
    assert lines.decode("event: x\ndata: {" + "a" * 10) == ["event: x"]
    assert lines.decode("b" * 10) == []
    got = lines.decode("}\n\ndata: [DONE]")
    assert lines.value_first
    assert got == ["{" + "a" * 10 + "b" * 10 + "}", ""]
    assert lines.flush() == ["[DONE]"]
    assert lines.value_first
    assert lines.decode("id: 7\n") == ["id: 7"]
    assert not lines.value_first


def test_the_first_line_break_is_found() -> None:
    assert _line_end("abc") == -1
    assert _line_end("") == -1
    assert _line_end("ab\ncd\r") == 2
    assert _line_end("ab\rcd\n") == 2
    assert _line_end("ab\r\ncd") == 2
    assert _line_end("\n") == 0


def _library_frames(pieces: list[str]) -> list[tuple[str, str]]:
    """The (event, data) pairs httpx-sse's own decoders give, an event without data left
    out (as the engine leaves it out)."""
    lines, events = SSELineDecoder(), SSEDecoder()
    out = []
    for piece in pieces:
        for line in lines.decode(piece) if piece else ():
            sse = events.decode(line)
            if sse is not None and sse.data:
                out.append((sse.event, sse.data))
    return out


def _engine_frames(pieces: list[str]) -> list[tuple[str, str]]:
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=b"")
    reader = _FrameReader(get_provider("anthropic"), response, ResilienceSettings())
    out = []
    for piece in pieces:
        out += reader.decode(piece.encode("utf-8", "surrogatepass"))
    return out


def test_the_engines_frames_are_the_librarys_however_the_text_is_cut() -> None:
    _agree_however_cut(_engine_frames, _library_frames)
