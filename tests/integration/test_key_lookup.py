"""When the engine asks for an API key: a local server's model list first goes without one,
and the key is looked up off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import pytest

from desktop_app.core.engine import Engine
from desktop_app.core.errors import AuthError
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import ChatRequest

SETTINGS = ResilienceSettings(max_retries=0)
KEY = "sk-local-0123456789"


class KeyServer:
    """An OpenAI-compatible model list on 127.0.0.1 that wants ``KEY``, or no key at all."""

    def __init__(self, *, wants_key: bool) -> None:
        self.wants_key = wants_key
        self.authorizations: list[str | None] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        auth = next(
            (
                v.strip()
                for k, _, v in (h.partition(":") for h in lines[1:])
                if k.lower() == "authorization"
            ),
            None,
        )
        self.authorizations.append(auth)
        if self.wants_key and auth != f"Bearer {KEY}":
            status, body = "401 Unauthorized", {"error": {"message": "Invalid API key"}}
        else:
            status, body = "200 OK", {"object": "list", "data": [{"id": "local-model"}]}
        data = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
async def key_server(request: pytest.FixtureRequest) -> AsyncIterator[KeyServer]:
    server = KeyServer(wants_key=request.param)
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.server.close()
        await server.server.wait_closed()


class Lookups:
    def __init__(self, key: str | None) -> None:
        self.key = key
        self.threads: list[str] = []

    def __call__(self, request: ChatRequest) -> str | None:
        self.threads.append(threading.current_thread().name)
        return self.key


@pytest.mark.parametrize("key_server", [False], indirect=True)
async def test_a_local_server_that_needs_no_key_is_listed_without_a_lookup(
    key_server: KeyServer,
) -> None:
    lookups = Lookups(KEY)
    engine = Engine(resilience=SETTINGS, api_key=lookups)
    try:
        assert await engine.list_models("openai", key_server.url) == ["local-model"]
    finally:
        await engine.aclose()
    assert lookups.threads == []
    assert key_server.authorizations == [None]


@pytest.mark.parametrize("key_server", [True], indirect=True)
async def test_a_local_server_that_refuses_is_asked_again_with_the_key(
    key_server: KeyServer,
) -> None:
    lookups = Lookups(KEY)
    engine = Engine(resilience=SETTINGS, api_key=lookups)
    try:
        assert await engine.list_models("openai", key_server.url) == ["local-model"]
    finally:
        await engine.aclose()
    assert key_server.authorizations == [None, f"Bearer {KEY}"]
    assert len(lookups.threads) == 1
    assert lookups.threads[0] != threading.main_thread().name  # never on the event loop


@pytest.mark.parametrize("key_server", [True], indirect=True)
async def test_a_local_server_that_refuses_without_a_stored_key_says_so(
    key_server: KeyServer,
) -> None:
    engine = Engine(resilience=SETTINGS, api_key=Lookups(None))
    try:
        with pytest.raises(AuthError):
            await engine.list_models("openai", key_server.url)
    finally:
        await engine.aclose()
    assert key_server.authorizations == [None]


async def test_a_reply_looks_the_key_up_off_the_event_loop(sim: object) -> None:
    from tests.helpers import collect, request_for

    lookups = Lookups("sk-test-key")
    engine = Engine(resilience=SETTINGS, api_key=lookups)
    try:
        events = await collect(engine.stream(request_for(sim, "openai", prompt="/echo hi")))
    finally:
        await engine.aclose()
    assert events and lookups.threads
    assert all(name != threading.main_thread().name for name in lookups.threads)


@pytest.mark.parametrize("key_server", [False], indirect=True)
async def test_a_local_servers_context_is_asked_without_a_lookup(key_server: KeyServer) -> None:
    from desktop_app.core.context_window import ContextWindows

    lookups = Lookups(KEY)
    engine = Engine(resilience=SETTINGS, api_key=lookups)
    try:
        await ContextWindows(engine).limits("openai", key_server.url, "local-model")
        await engine.server_info("openai", key_server.url, model="local-model")
    finally:
        await engine.aclose()
    assert lookups.threads == []
    assert key_server.authorizations and set(key_server.authorizations) == {None}
