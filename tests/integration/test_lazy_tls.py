"""The shared HTTP client loads the CA bundle only for the first https:// request, off the
event loop; the first-run probe of this computer's ports never loads it."""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

import httpx
import pytest

from desktop_app.core.engine import Engine
from desktop_app.core.http import make_client
from desktop_app.ui.first_run import ProbeTarget, probe


@pytest.fixture
def tls_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that made a verifying TLS context (loaded a CA bundle)."""
    loads: list[str] = []
    original = ssl.create_default_context

    def recording(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        loads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", recording)
    return loads


async def test_an_engine_is_made_without_loading_the_ca_bundle(tls_loads: list[str]) -> None:
    engine = Engine()
    try:
        assert tls_loads == []
    finally:
        await engine.aclose()


async def test_the_probe_finds_a_local_server_without_tls(sim: Any, tls_loads: list[str]) -> None:
    target = ProbeTarget("Simulator", "openai", str(sim.base_url("openai")))
    found = await probe((target,), wait_s=5.0)
    assert [server.name for server in found] == ["Simulator"]
    assert found[0].models
    assert tls_loads == []


async def test_a_plain_http_client_refuses_https(tls_loads: list[str]) -> None:
    async with make_client(tls=False) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("https://127.0.0.1:1/v1/models")
    assert tls_loads == []


async def test_the_first_https_requests_load_the_bundle_once_off_the_loop(
    tls_loads: list[str],
) -> None:
    async with make_client(connect_timeout_s=2.0) as client:
        # nothing listens on port 1: each request fails to connect, after the TLS context
        results = await asyncio.gather(
            *(client.get("https://127.0.0.1:1/") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, httpx.ConnectError) for result in results), results
        await asyncio.gather(client.get("https://127.0.0.1:1/"), return_exceptions=True)
    assert len(tls_loads) == 1
    assert tls_loads[0] != threading.current_thread().name


async def test_a_request_cancelled_while_the_bundle_loads_leaves_it_to_the_next(
    tls_loads: list[str],
) -> None:
    async with make_client(connect_timeout_s=2.0) as client:
        first = asyncio.create_task(client.get("https://127.0.0.1:1/"))
        await asyncio.sleep(0)  # the request is now waiting for the TLS context
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(httpx.ConnectError):
            await client.get("https://127.0.0.1:1/")
    assert len(tls_loads) == 1
