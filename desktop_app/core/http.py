"""The one shared HTTP client: HTTP/1.1, pooled, connect timeout only (the engine times the
first token and the gaps between chunks itself)."""

from __future__ import annotations

import httpx

from desktop_app import __version__


def make_client(connect_timeout_s: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        http1=True,
        http2=False,
        timeout=httpx.Timeout(connect=connect_timeout_s, read=None, write=60.0, pool=60.0),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        # the engine decompresses bodies itself, in bounded pieces, and reads only these
        headers={"User-Agent": f"Rill/{__version__}", "Accept-Encoding": "gzip, deflate"},
        follow_redirects=False,
        trust_env=True,
    )
