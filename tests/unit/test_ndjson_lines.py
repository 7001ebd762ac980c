"""The engine's NDJSON reader gives a body's lines, however the body is cut.

A line that comes in many pieces is joined once when the piece that ends it arrives; these
tests read random bodies, cut every way, and require exactly the body's own lines.
"""

from __future__ import annotations

import random

import httpx

from desktop_app.core.engine import _FrameReader
from desktop_app.core.providers import get_provider
from desktop_app.core.resilience import ResilienceSettings

SETTINGS = ResilienceSettings(max_retries=0)


def _body(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(1, 12)):
        size = rng.choice((0, 1, 5, 80, 3_000, 70_000))
        text = "".join(rng.choices('ab é€😀{}":,', k=size))
        lines.append(text.encode() + rng.choice((b"", b"\r")))
    body = b"\n".join(lines)
    return body + b"\n" if rng.random() < 0.7 else body


def _cuts(body: bytes, rng: random.Random) -> list[bytes]:
    way = rng.choice(("whole", "bytes", "random", "reads"))
    if way == "whole":
        return [body]
    if way == "bytes" and len(body) < 5_000:
        return [body[i : i + 1] for i in range(len(body))]
    pieces, at = [], 0
    while at < len(body):
        size = rng.randint(1, 9) if way == "bytes" else rng.randint(1, 70_000)
        if way == "reads":
            size = rng.choice((1, 7, 4_096, 65_536))
        pieces.append(body[at : at + size])
        at += size
    return pieces


def _lines(pieces: list[bytes]) -> list[str]:
    response = httpx.Response(200, headers={"Content-Type": "application/x-ndjson"})
    reader = _FrameReader(get_provider("ollama"), response, SETTINGS)
    out = []
    for piece in pieces:
        out += reader.decode(piece)
    out += reader.finish()
    assert all(name == "" for name, _ in out)
    return [data for _, data in out]


def test_the_lines_are_the_bodys_however_it_is_cut() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        body = _body(rng)
        expected = [line.decode().rstrip("\r") for line in body.split(b"\n") if line.strip()]
        assert _lines(_cuts(body, rng)) == expected, seed


def test_a_long_line_in_many_pieces_is_whole() -> None:
    line = b'{"message":{"content":"' + b"x" * 1_000_000 + b'"}}'
    body = line + b"\n" + b'{"done":true}\n'
    pieces = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    assert _lines(pieces) == [line.decode(), '{"done":true}']
