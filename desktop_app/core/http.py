"""The one shared HTTP client: HTTP/1.1, pooled, connect timeout only (the engine times the
first token and the gaps between chunks itself).

Creating a client costs nothing: its connection pools are made on the first request that
needs them. Plain ``http://`` (a server on this computer) never loads the CA bundle; the TLS
context for ``https://`` (about 50 ms of CPU for certifi's file) is loaded on the first
``https://`` request, on a thread of its own, so neither the start of the app nor its event
loop waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import urllib.request

import httpx

from desktop_app import __version__

_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=8)


def make_client(connect_timeout_s: float = 10.0, *, tls: bool = True) -> httpx.AsyncClient:
    """The client every request goes through.

    With ``tls=False`` it speaks plain ``http://`` only (a probe of this computer's ports):
    an ``https://`` URL is refused with ``httpx.UnsupportedProtocol`` and no TLS context is
    ever made. Where a proxy is configured, httpx's own transport is used, so its proxy
    rules apply (and the TLS context is made at once).
    """
    return httpx.AsyncClient(
        http1=True,
        http2=False,
        timeout=httpx.Timeout(connect=connect_timeout_s, read=None, write=60.0, pool=60.0),
        limits=_LIMITS,
        # the engine decompresses bodies itself, in bounded pieces, and reads only these
        headers={"User-Agent": f"Rill/{__version__}", "Accept-Encoding": "gzip, deflate"},
        follow_redirects=False,
        trust_env=True,
        # httpx reads the proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY…) only for its
        # own transport: with a proxy configured, that is the one used
        transport=None if tls and urllib.request.getproxies() else LazyTransport(tls=tls),
    )


def _tls_context() -> ssl.SSLContext:
    """The verifying TLS context: certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


class LazyTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 connection pools made on first use: one for ``http://``, one for ``https://``."""

    def __init__(self, *, tls: bool = True, limits: httpx.Limits = _LIMITS) -> None:
        self.tls = tls
        self._limits = limits
        self._plain: httpx.AsyncHTTPTransport | None = None
        self._secure: httpx.AsyncHTTPTransport | None = None
        self._context: concurrent.futures.Future[ssl.SSLContext] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def tls_loaded(self) -> bool:
        """Whether the TLS context (the CA bundle) has been asked for."""
        return self._context is not None

    def _pool(self, verify: ssl.SSLContext | bool) -> httpx.AsyncHTTPTransport:
        # (imported with the first request: httpcore and anyio take about 60 ms to load,
        # which the window's start does not wait for)
        import httpcore

        from desktop_app.core.net import SocketBackend

        transport = httpx.AsyncHTTPTransport(
            verify=verify, trust_env=False, http1=True, http2=False, limits=self._limits
        )
        made = getattr(transport, "_pool", None)
        if isinstance(made, httpcore.AsyncConnectionPool):
            # the same pool, over Rill's sockets (httpx has no parameter for the backend)
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=verify if isinstance(verify, ssl.SSLContext) else None,
                max_connections=self._limits.max_connections,
                max_keepalive_connections=self._limits.max_keepalive_connections,
                keepalive_expiry=self._limits.keepalive_expiry,
                http1=True,
                http2=False,
                network_backend=SocketBackend(),
            )
        return transport

    def load_tls(self) -> concurrent.futures.Future[ssl.SSLContext]:
        """Start loading the TLS context on its own thread (once); its future."""
        with self._lock:
            if self._context is None:
                future: concurrent.futures.Future[ssl.SSLContext] = concurrent.futures.Future()

                def load() -> None:
                    try:
                        future.set_result(_tls_context())
                    except BaseException as exc:  # the request that waits raises it
                        future.set_exception(exc)

                self._context = future
                threading.Thread(target=load, name="rill-tls", daemon=True).start()
            return self._context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        scheme = request.url.scheme
        if scheme == "http":
            if self._plain is None:
                # only http:// URLs reach this pool, so it never opens a TLS connection
                self._plain = self._pool(verify=False)
            return await self._plain.handle_async_request(request)
        if scheme != "https" or not self.tls:
            raise httpx.UnsupportedProtocol(
                f"This connection speaks plain http:// only, not {scheme}://.", request=request
            )
        if self._secure is None:
            # shielded: a cancelled request leaves the shared load to the next one
            context = await asyncio.shield(asyncio.wrap_future(self.load_tls()))
            if self._closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            if self._secure is None:
                self._secure = self._pool(verify=context)
        return await self._secure.handle_async_request(request)

    async def aclose(self) -> None:
        self._closed = True
        plain, secure, self._plain, self._secure = self._plain, self._secure, None, None
        for pool in (plain, secure):
            if pool is not None:
                await pool.aclose()
