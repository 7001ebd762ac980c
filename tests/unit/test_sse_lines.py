"""Rill's SSE line decoder gives what httpx-sse's gives, however the text is cut.

The engine's decoder differs from the library's only in how a long line is put together
(once, not three times); these tests feed both the same event streams, cut into pieces
every way, and require the same events from the library's field reader.
"""

from __future__ import annotations

import random

from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from desktop_app.core.engine import _line_end, _SSELines

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
    events = SSEDecoder()
    out = []
    for piece in pieces:
        if not piece:
            continue
        for line in lines.decode(piece):
            sse = events.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data, sse.id))
    for line in [*lines.flush(), ""]:
        sse = events.decode(line)
        if sse is not None:
            out.append((sse.event, sse.data, sse.id))
    return out


def test_the_events_are_the_librarys_however_the_text_is_cut() -> None:
    for seed in range(400):
        rng = random.Random(seed)
        text = _stream(rng)
        pieces = _cuts(text, rng)
        assert _events(_SSELines(), pieces) == _events(SSELineDecoder(), pieces), seed


def test_a_long_data_line_keeps_its_value_exactly() -> None:
    for value in ("{" + "x" * 200_000 + "}", " " + "y" * 100_000, "  two spaces", ""):
        text = f"data: {value}\n\n"
        pieces = [text[i : i + 65_536] for i in range(0, len(text), 65_536)]
        assert _events(_SSELines(), pieces) == [("message", value, "")]


def test_the_first_line_break_is_found() -> None:
    assert _line_end("abc") == -1
    assert _line_end("") == -1
    assert _line_end("ab\ncd\r") == 2
    assert _line_end("ab\rcd\n") == 2
    assert _line_end("ab\r\ncd") == 2
    assert _line_end("\n") == 0
