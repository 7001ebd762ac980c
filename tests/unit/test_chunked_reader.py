"""Rill's reader of chunked bodies against h11's own: the same bytes, the same end, the same
errors, however the body is cut into reads."""

from __future__ import annotations

import random

import h11
import h11._readers
import pytest
from h11._receivebuffer import ReceiveBuffer

from desktop_app.core import net
from desktop_app.core.net import JoinedChunkReader

Outcome = tuple[bytes, str]


def _read(reader: h11._readers.ChunkedReader, reads: list[bytes]) -> tuple[Outcome, int]:
    """Feed ``reads`` to ``reader`` as h11's connection does (one call per event, until it
    needs data); the data it gave and how it ended, and how many pieces of data it gave."""
    buf = ReceiveBuffer()
    data: list[bytes] = []
    for piece in reads:
        buf += piece
        while True:
            try:
                event = reader(buf)
            except h11.ProtocolError as exc:
                return (b"".join(data), f"error: {exc}"), len(data)
            if event is None:
                break
            if isinstance(event, h11.EndOfMessage):
                ending = f"end {event.headers!r}, left {bytes(buf)!r}"
                return (b"".join(data), ending), len(data)
            assert isinstance(event, h11.Data)
            data.append(bytes(event.data))
    return (b"".join(data), f"waiting, left {bytes(buf)!r}"), len(data)


def _header(rng: random.Random, size: int) -> bytes:
    hex_size = b"%x" % size
    if rng.random() < 0.2:
        hex_size = hex_size.upper()
    if rng.random() < 0.1:
        hex_size = b"00" + hex_size
    ext = rng.choice([b"", b"", b"", b";name=value", b';q="a;b"'])
    ws = rng.choice([b"", b"", b" ", b"\t "])
    return hex_size + ext + ws + b"\r\n"


def _body(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randint(0, 30)):
        size = rng.choice([1, 2, rng.randint(1, 200), rng.randint(200, 3000)])
        data = bytes(rng.randrange(256) for _ in range(size))
        out.append(_header(rng, size) + data + b"\r\n")
    trailer = rng.choice([b"", b"X-Checksum: 1\r\n"])
    out.append(b"0\r\n" + trailer + b"\r\n")
    if rng.random() < 0.3:
        out.append(b"HTTP/1.1 200 OK\r\n")  # the next response on the connection
    return b"".join(out)


def _broken(rng: random.Random, body: bytes) -> bytes:
    """``body`` with a fault put in at a random place."""
    at = rng.randrange(len(body))
    fault = rng.choice(
        [
            b"zz\r\n",
            b"\r\n",
            b"5\nhello\r\n",
            b"1" * 21 + b"\r\n",
            b"XX",
            b"-1\r\n",
            b"\n",
            b" 5\r\n",
        ]
    )
    return body[:at] + fault + body[at:]


def _cuts(rng: random.Random, body: bytes) -> list[bytes]:
    mode = rng.choice(["whole", "bytes", "random", "small"])
    if mode == "whole":
        return [body]
    if mode == "bytes":
        return [body[i : i + 1] for i in range(min(len(body), 4_000))] + [body[4_000:]]
    top = 64 if mode == "small" else max(1, len(body) // 3)
    reads, at = [], 0
    while at < len(body):
        step = rng.randint(1, top)
        reads.append(body[at : at + step])
        at += step
    return reads


@pytest.mark.parametrize("seed", range(200))
def test_any_body_cut_any_way_reads_as_h11_reads_it(seed: int) -> None:
    rng = random.Random(seed)
    body = _body(rng)
    if seed % 3 == 0:
        body = _broken(rng, body)
    reads = _cuts(rng, body)
    theirs, _ = _read(h11._readers.ChunkedReader(), reads)
    ours, _ = _read(JoinedChunkReader(), reads)
    assert ours == theirs


def test_the_whole_chunks_of_one_read_are_one_piece_and_the_rest_follows() -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"one ", b"two ", b"three "))
    reads = [chunks + b"9\r\nfour", b" five\r\n0\r\n\r\n"]
    (data, ending), pieces = _read(JoinedChunkReader(), reads)
    assert data == b"one two three four five"
    assert ending.startswith("end")
    assert pieces == 2  # the first read's whole chunks and the partial one; then the rest


def test_whole_chunks_are_taken_without_h11s_reader_going_chunk_by_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    per_chunk = h11._readers.ChunkedReader.__call__

    def counted(self: h11._readers.ChunkedReader, buf: ReceiveBuffer) -> object:
        calls.append(1)
        return per_chunk(self, buf)

    monkeypatch.setattr(h11._readers.ChunkedReader, "__call__", counted)
    events = [b'data: {"n": %d}\n\n' % n for n in range(40)]
    reads = [b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)]
    (data, _), pieces = _read(JoinedChunkReader(), reads)
    assert data == b"".join(events) and pieces == 1
    assert len(calls) <= 2  # not one call (and three cuts of the buffer) a chunk


def test_without_h11s_pattern_the_reader_leaves_every_chunk_to_h11(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(net, "_CHUNK_HEADER", None)
    reads = [b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"]
    assert _read(JoinedChunkReader(), reads)[0] == _read(h11._readers.ChunkedReader(), reads)[0]
