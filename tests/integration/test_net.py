"""Rill's own connections (``desktop_app.core.net``) over real sockets: plain and TLS, pacing,
timeouts, refusals, idle connections the server closed, and chunked bodies read a read at a
time."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from desktop_app.core.errors import ConnectionFailed, ConnectionRefused, ConnectTimeout
from desktop_app.core.events import Failed, Finished, TextDelta
from desktop_app.core.http import make_client
from desktop_app.core.net import SocketStream
from desktop_app.core.types import ChatRequest, Message
from desktop_app.simulator import Fault, Simulator
from tests.helpers import FAST, collect, engine_for, request_for

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients made from now on trust the test CA (as SSL_CERT_FILE makes them)."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def tls_sim(ca: trustme.CA) -> AsyncIterator[Simulator]:
    simulator = Simulator(tokens_per_s=0, tls=_server_context(ca))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def _serve(handler: Handler, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)


def _request(base_url: str) -> ChatRequest:
    return ChatRequest(
        provider="openai", base_url=base_url, model="m", messages=(Message("user", "Hi"),)
    )


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def test_the_shared_client_reads_through_rill_sockets(
    sim: Any, tls_sim: Simulator, trusted: None
) -> None:
    async with make_client() as client:
        for url in (sim.url, tls_sim.url):
            response = await client.get(url + "/v1/models")
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            assert isinstance(stream, SocketStream)
            secure = stream.get_extra_info("ssl_object")
            assert (secure is not None) == url.startswith("https://")
            assert stream.get_extra_info("server_addr")[1] == int(url.rsplit(":", 1)[1])


async def test_a_reply_over_tls_is_read_whole_and_at_most_once_a_frame(
    tls_sim: Simulator, trusted: None
) -> None:
    tls_sim.script(Fault(tokens=60, tokens_per_s=200.0))
    engine = engine_for()
    engine.read_interval_s = 0.05
    try:
        events = []
        async for event in engine.stream(request_for(tls_sim, "openai"), read_cache=False):
            events.append(event)
    finally:
        await engine.aclose()
    finished = events[-1]
    assert isinstance(finished, Finished)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in deltas) == finished.response.content
    assert sum(e.pieces for e in deltas) == 60
    assert len(deltas) <= 20  # about 7 reads of the socket over 0.3 s, a delta each


async def test_an_untrusted_certificate_is_refused_with_the_reason(tls_sim: Simulator) -> None:
    engine = engine_for()
    try:
        events = await collect(engine.stream(request_for(tls_sim, "openai"), read_cache=False))
    finally:
        await engine.aclose()
    failed = events[-1]
    assert isinstance(failed, Failed) and isinstance(failed.error, ConnectionFailed)
    assert "certificate verify failed" in (failed.error.detail or "").lower()


async def test_nothing_listening_here_is_said_at_once() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for()
    request = _request(f"http://127.0.0.1:{port}/v1")
    try:
        events = await collect(engine.stream(request, read_cache=False))
    finally:
        await engine.aclose()
    failed = events[-1]
    assert isinstance(failed, Failed) and isinstance(failed.error, ConnectionRefused)


async def test_a_name_is_connected_at_the_address_that_listens(sim: Any) -> None:
    async with make_client() as client:
        response = await client.get(f"http://localhost:{sim.port}/v1/models")
    assert response.status_code == 200


async def test_a_server_that_says_nothing_times_out_plain_and_over_tls(
    ca: trustme.CA, trusted: None
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the request, then nothing until the client gives up
        with contextlib.suppress(OSError):
            await reader.read()
        writer.close()

    timeout = httpx.Timeout(1.0, read=0.2)
    for tls in (None, _server_context(ca)):
        server = await _serve(silent, tls)
        scheme = "https" if tls else "http"
        try:
            async with make_client() as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(f"{scheme}://127.0.0.1:{_port(server)}/", timeout=timeout)
        finally:
            server.close()


async def test_a_server_that_never_answers_the_tls_handshake_is_a_connect_timeout(
    trusted: None,
) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # the client's hello, unanswered, until it gives up
        writer.close()

    server = await _serve(mute)
    engine = engine_for(FAST, client=make_client(connect_timeout_s=0.3))
    request = _request(f"https://127.0.0.1:{_port(server)}/v1")
    try:
        async with asyncio.timeout(10):
            events = await collect(engine.stream(request, read_cache=False))
    finally:
        await engine.aclose()
        server.close()
    failed = events[-1]
    assert isinstance(failed, Failed) and isinstance(failed.error, ConnectTimeout)


async def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    connections = 0
    closed = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # without saying so: the client must notice before reusing it
        await writer.wait_closed()
        closed.set()

    server = await _serve(once)
    try:
        async with make_client() as client:
            url = f"http://127.0.0.1:{_port(server)}/"
            assert (await client.get(url)).text == "ok"
            async with asyncio.timeout(5):
                await closed.wait()  # the server has closed the client's idle connection
            assert (await client.get(url)).text == "ok"
    finally:
        server.close()
    assert connections == 2


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)


async def _serve_body(
    *writes: bytes, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, list[int]]:
    """A server that answers each request on a connection with a chunked response's head
    and then ``writes``, one write each, all at once; it counts the requests of each
    connection. Over TLS, each write is a record of its own."""
    connections: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                connections[-1] += 1
                writer.write(head)
                for data in writes:
                    writer.write(data)
                await writer.drain()
        writer.close()

    return await _serve(answer, tls), connections


async def _pieces(url: str) -> list[bytes]:
    """The pieces of the body ``url`` answers, as the shared client reads them."""
    async with (
        make_client() as client,
        asyncio.timeout(10),
        client.stream("GET", url) as response,
    ):
        return [piece async for piece in response.aiter_raw()]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_chunks_one_read_brings_are_one_piece_of_the_body(
    scheme: str, ca: trustme.CA, trusted: None
) -> None:
    events = [b'data: {"n": %d}\n\n' % n for n in range(200)]
    writes = [_chunked(event) for event in events]  # an event a chunk (over TLS, a record)
    tls = _server_context(ca) if scheme == "https" else None
    server, _ = await _serve_body(*writes, b"0\r\n\r\n", tls=tls)
    try:
        pieces = await _pieces(f"{scheme}://127.0.0.1:{_port(server)}/")
    finally:
        server.close()
    assert b"".join(pieces) == b"".join(events)
    assert len(pieces) <= 4  # one per read of the socket, not one per chunk or record


async def test_a_body_that_ends_with_its_last_chunk_ends_and_its_connection_is_reused() -> None:
    body = _chunked(b"one ", b"two ", b"three") + b"0\r\nX-Checksum: 1\r\n\r\n"
    server, connections = await _serve_body(body)
    try:
        async with make_client() as client, asyncio.timeout(10):
            url = f"http://127.0.0.1:{_port(server)}/"
            texts = [(await client.get(url)).text for _ in range(3)]
    finally:
        server.close()
    assert texts == ["one two three"] * 3
    assert connections == [3]  # the end (and its trailer) was read, so the connection went on


async def test_the_data_before_a_broken_chunk_is_given_before_the_error() -> None:
    body = _chunked(b"kept ", b"and kept") + b"zz\r\nnot a chunk\r\n"
    server, _ = await _serve_body(body)
    pieces: list[bytes] = []
    try:
        async with make_client() as client, asyncio.timeout(10):
            url = f"http://127.0.0.1:{_port(server)}/"
            async with client.stream("GET", url) as response:
                with pytest.raises(httpx.RemoteProtocolError, match="chunk header"):
                    async for piece in response.aiter_raw():
                        pieces.append(piece)
    finally:
        server.close()
    assert b"".join(pieces) == b"kept and kept"
