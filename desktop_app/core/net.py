"""Connections that take what the kernel already holds without a turn of the event loop.

httpcore's default network backend reads through anyio's asyncio streams, and every read
costs a turn of the event loop, a timer for the read's timeout and (on Qt's event loop) a
socket notifier made and destroyed, whether or not the bytes are already there. A streamed
reply is many small reads, so that is most of what reading it costs. This backend keeps
each connection's socket itself: a read takes what the kernel holds at once, and only a
read that finds nothing waits, through the event loop, for the socket to become readable
(with the read's timeout). TLS is anyio's ``TLSStream`` over that socket, as in httpcore's
own backend. Connecting resolves the name off the loop and tries the addresses as anyio
does: IPv6 first, the next address after 250 ms ("happy eyeballs").

A connection can be *paced* (:meth:`SocketStream.pace`): it then reads its socket at most
once per interval, so what a fast server sends in the meantime waits in the kernel's buffer
and is read, decoded and shown at once, one wake-up per frame instead of one per token.
Bytes already read are never held back: the pause comes only before going to the socket.

What one read brings is handed on as one piece, however the server framed it: streaming
servers send each event in a chunk of its own (:class:`JoinedChunkReader` joins the chunks
a read holds) and, over TLS, in a record of its own (a read decrypts every record it holds).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import select
import socket
import ssl
from asyncio import staggered
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.abc
import h11
import h11._readers
import h11._receivebuffer
import httpcore
from anyio.streams.tls import TLSAttribute, TLSStream

HAPPY_EYEBALLS_S = 0.25
"""How long an address is given before the next one is tried too (anyio's and asyncio's)."""

READ_SIZE = 65536

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Socket(anyio.abc.ByteStream):
    """A connected non-blocking socket as an anyio byte stream (what ``TLSStream`` wraps).

    ``timeout`` bounds a wait for the socket (set by the caller before each operation);
    ``pace_s`` is the least time between two reads that go to the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.timeout: float | None = None
        self.pace_s = 0.0
        self.read_at = 0.0

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        loop = self.loop
        if self.pace_s:
            wait = self.read_at + self.pace_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            data = self.sock.recv(max_bytes)
        except (BlockingIOError, InterruptedError):
            try:
                async with asyncio.timeout(self.timeout):
                    data = await loop.sock_recv(self.sock, max_bytes)
            except TimeoutError:
                raise
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        self.read_at = loop.time()
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.loop.sock_sendall(self.sock, item)
        except TimeoutError:
            raise
        except OSError as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self.sock.close()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self.sock
        return {
            anyio.abc.SocketAttribute.raw_socket: lambda: sock,
            anyio.abc.SocketAttribute.family: lambda: sock.family,
            anyio.abc.SocketAttribute.local_address: sock.getsockname,
            anyio.abc.SocketAttribute.remote_address: sock.getpeername,
        }


def _readable(sock: socket.socket) -> bool:
    """Whether reading would not block (for an idle pooled connection: the server closed it
    or sent something unasked, so it cannot be used again)."""
    if sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


class SocketStream(httpcore.AsyncNetworkStream):
    """One connection, plain or TLS, as httpcore uses it (see the module)."""

    def __init__(self, raw: _Socket, tls: TLSStream | None = None) -> None:
        self._raw = raw
        self._tls = tls
        self._stream: anyio.abc.ByteStream = tls if tls is not None else raw

    def pace(self, seconds: float) -> None:
        """Read the socket at most once every ``seconds`` from now on (0: as data comes)."""
        self._raw.pace_s = seconds

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self._raw.timeout = timeout
        try:
            data = await self._stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if _timed_out(exc):
                raise httpcore.ReadTimeout("timed out") from exc
            raise httpcore.ReadError(_reason(exc)) from exc
        if self._tls is not None and len(data) < max_bytes:
            data = self._decrypted(data, max_bytes)
        return data

    def _decrypted(self, data: bytes, max_bytes: int) -> bytes:
        """``data`` and what TLS can decrypt after it from the bytes already read.

        ``TLSStream`` gives one TLS record a call, and a streaming server sends each event
        in a record of its own: what one read of the socket brought would come out an event
        at a time. Anything but plain data (the peer closing, an error) is left for the next
        call to meet the usual way."""
        tls = self._tls
        assert tls is not None
        ssl_object = tls.extra(TLSAttribute.ssl_object)
        parts = [data]
        size = len(data)
        while size < max_bytes:
            try:
                more = ssl_object.read(max_bytes - size)
            except ssl.SSLError:  # nothing more decrypted yet (SSLWantReadError), or not data
                break
            if not more:
                break
            parts.append(more)
            size += len(more)
        return data if len(parts) == 1 else b"".join(parts)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        self._raw.timeout = timeout
        try:
            await self._stream.send(buffer)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if _timed_out(exc):
                raise httpcore.WriteTimeout("timed out") from exc
            raise httpcore.WriteError(_reason(exc)) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
    ) -> SocketStream:
        self._raw.timeout = None  # the handshake as a whole has the timeout
        try:
            async with asyncio.timeout(timeout):
                tls = await TLSStream.wrap(
                    self._stream,
                    server_side=False,
                    hostname=server_hostname,
                    ssl_context=ssl_context,
                    standard_compatible=False,
                )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError, OSError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(_reason(exc)) from exc
        except BaseException:
            await self.aclose()
            raise
        return SocketStream(self._raw, tls)

    def get_extra_info(self, info: str) -> Any:
        sock = self._raw.sock
        if info == "ssl_object":
            return None if self._tls is None else self._tls.extra(TLSAttribute.ssl_object, None)
        if info == "client_addr":
            return sock.getsockname()
        if info == "server_addr":
            return sock.getpeername()
        if info == "socket":
            return sock
        if info == "is_readable":
            return _readable(sock)
        return None


def _timed_out(exc: BaseException) -> bool:
    """Whether a failure was a wait that ran out of time (TLS reports it as a broken stream)."""
    return isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)


def _reason(exc: BaseException) -> str:
    """What went wrong, from an exception or the one it came from."""
    while not str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Addresses in the order to try them: the first IPv6 one, the first IPv4 one, the rest."""
    ordered: list[tuple[Any, ...]] = []
    v6 = v4 = False
    for info in infos:
        if info[0] == socket.AF_INET6 and not v6:
            v6 = True
            ordered.insert(0, info)
        elif info[0] == socket.AF_INET and not v4 and v6:
            v4 = True
            ordered.insert(1, info)
        else:
            ordered.append(info)
    return ordered


async def _connect(
    host: str,
    port: int,
    local_address: str | None,
    options: Iterable[SocketOption],
) -> socket.socket:
    loop = asyncio.get_running_loop()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        infos = _addresses(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    else:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    options = list(options)
    errors: list[OSError] = []
    won: list[socket.socket] = []

    async def attempt(info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto, _name, address = info
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in options:
                sock.setsockopt(*option)
            if local_address:
                sock.bind((local_address, 0))
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            raise
        except BaseException:
            sock.close()
            raise
        if won:  # another address answered first
            sock.close()
            raise OSError("another address answered first")
        won.append(sock)
        return sock

    def starter(info: tuple[Any, ...]) -> Callable[[], Any]:
        return lambda: attempt(info)

    try:
        await staggered.staggered_race([starter(info) for info in infos], HAPPY_EYEBALLS_S)
    except BaseException:
        for sock in won:
            sock.close()
        raise
    if won:
        return won[0]
    cause: BaseException = (
        errors[0] if len(errors) == 1 else ExceptionGroup("every address failed", errors)
    )
    raise OSError("All connection attempts failed") from cause


class SocketBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for Rill's connection pools (see the module)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> SocketStream:
        try:
            async with asyncio.timeout(timeout):
                sock = await _connect(host, port, local_address, socket_options or ())
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return SocketStream(_Socket(sock))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[SocketOption] | None = None,
    ) -> SocketStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            for option in socket_options or ():
                sock.setsockopt(*option)
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:
            sock.close()
            raise
        return SocketStream(_Socket(sock))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_CHUNK_HEADER: re.Pattern[bytes] | None = getattr(h11._readers, "chunk_header_re", None)
"""h11's pattern of a chunk's header line (its size, extensions, CRLF)."""


class JoinedChunkReader(h11._readers.ChunkedReader):
    """h11's reader of a chunked body, giving every chunk its buffer holds as one piece.

    Streaming servers (llama.cpp, Ollama, the hosted APIs) send each event as a chunk of its
    own, and h11 gives each chunk as an event of its own, which httpcore and httpx then hand
    on one at a time through their generators: per event, that cost more than decoding the
    event. This reader joins the data of the chunks the buffer holds, so what one read of the
    socket brings (a frame's worth, on a paced connection) is one piece. Chunk boundaries
    mean nothing in HTTP.

    The whole chunks at the front of the buffer are taken in one pass: each header checked
    with h11's own pattern, each chunk's data followed by its CRLF, the buffer cut once
    (h11 cuts it three times a chunk). Anything else (a chunk not all here yet, the last
    chunk and its trailer, a header or an ending h11 would refuse) is read by h11's reader,
    as before, which gives its data or its error.

    What comes after the joined data (the body's end, or a framing error) is given at the
    next call, so data that arrived before an error is never dropped with it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._held: h11.EndOfMessage | BaseException | None = None

    def __call__(self, buf: Any) -> h11.Data | h11.EndOfMessage | None:
        held = self._held
        if held is not None:
            self._held = None
            if isinstance(held, BaseException):
                raise held
            return held
        parts = self._whole_chunks(buf)
        if not parts:
            first = super().__call__(buf)
            if type(first) is not h11.Data or not buf:
                return first
            parts = [first.data]
        while buf:
            try:
                event = super().__call__(buf)
            except h11.ProtocolError as exc:
                self._held = exc
                break
            if event is None:
                break
            if not isinstance(event, h11.Data):
                self._held = event
                break
            parts.append(event.data)
        return h11.Data(data=parts[0] if len(parts) == 1 else b"".join(parts))

    def _whole_chunks(self, buf: Any) -> list[bytes]:
        """The data of the whole chunks at the front of ``buf``, taken out of it (none
        unless the reader is between two chunks)."""
        if self._bytes_in_chunk or self._bytes_to_discard or self._reading_trailer:
            return []
        data = getattr(buf, "_data", None)
        if type(data) is not bytearray or _CHUNK_HEADER is None:
            return []  # (an h11 of another shape: its reader reads it all)
        header = _CHUNK_HEADER.fullmatch
        size = len(data)
        parts: list[bytes] = []
        at = 0
        while (line_end := data.find(b"\r\n", at)) >= 0:
            match = header(data, at, line_end + 2)
            if match is None:
                break
            start = line_end + 2
            end = start + int(match["chunk_size"], 16)
            if end == start or end + 2 > size or data[end : end + 2] != b"\r\n":
                break  # the last chunk, one not all here, or a bad ending: h11's to read
            parts.append(bytes(data[start:end]))
            at = end + 2
        if at:
            buf._extract(at)
        return parts


def _join_chunks() -> None:
    """Have h11 read chunked bodies with :class:`JoinedChunkReader` (if its readers are the
    table this was written for; otherwise h11 is left as it is)."""
    readers = h11._readers.READERS.get(h11.SEND_BODY)
    if (
        isinstance(readers, dict)
        and readers.get("chunked") is h11._readers.ChunkedReader
        and _CHUNK_HEADER is not None
        and callable(getattr(h11._receivebuffer.ReceiveBuffer, "_extract", None))
    ):
        readers["chunked"] = JoinedChunkReader


_join_chunks()
