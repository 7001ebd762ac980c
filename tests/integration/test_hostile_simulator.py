"""The simulator's hostile mode over real sockets: raw answers on any route, exact bytes."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from desktop_app.simulator import Simulator, hostile


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def test_reply_sends_lone_surrogates_as_json_escapes(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(hostile.reply("ollama", ["smile \ud83d", "\ude00 end"]))
    r = await client.post(sim.url + "/api/chat", json={"model": "m", "messages": []})
    lines = r.content.split(b"\n")
    assert b'"content":"smile \\ud83d"' in lines[0]
    assert b'"content":"\\ude00 end"' in lines[1]
    assert json.loads(lines[-2])["done"] is True
    assert r.headers["content-type"] == "application/x-ndjson"


async def test_reply_without_finish_leaves_the_marker_off(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(hostile.reply("openai", "hi", finish=False))
    r = await client.post(sim.url + "/v1/chat/completions", json={})
    assert b'"content":"hi"' in r.content
    assert b"[DONE]" not in r.content


async def test_model_listing_takes_a_models_fault_once(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(hostile.error("models", 500, '<img src="file:///dev/zero">'))
    first = await client.get(sim.url + "/v1/models")
    assert first.status_code == 500
    assert first.json()["error"]["message"] == '<img src="file:///dev/zero">'
    second = await client.get(sim.url + "/v1/models")
    assert second.status_code == 200
    # A chat request never takes a models fault.
    sim.script(hostile.error("models", 500, "x"))
    chat = await client.post(sim.url + "/api/chat", json={"model": "m", "messages": []})
    assert chat.status_code == 200
    assert len(sim.pending_faults) == 1


async def test_endless_stream_stops_when_the_client_goes_away(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(hostile.endless("openai", "spam "))
    received = 0
    async with client.stream("POST", sim.url + "/v1/chat/completions", json={}) as r:
        async for piece in r.aiter_bytes():
            received += len(piece)
            if received > 5_000_000:
                break
    await sim.wait_for_disconnect(1, timeout=5)
    assert received > 5_000_000


async def test_gzip_bomb_is_small_on_the_wire(sim: Simulator, client: httpx.AsyncClient) -> None:
    fault = hostile.gzip_bomb("openai", expanded=64 << 20)
    assert fault.raw is not None and isinstance(fault.raw.body, bytes)
    assert len(fault.raw.body) < 1 << 20
    assert len(gzip.decompress(fault.raw.body)) >= 64 << 20
    sim.script(fault)
    async with client.stream("POST", sim.url + "/v1/chat/completions", json={}) as r:
        assert r.headers["content-encoding"] == "gzip"
        raw = b"".join([piece async for piece in r.aiter_raw()])
    assert raw == fault.raw.body


async def test_redirect_and_echoed_key(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.script(hostile.redirect("openai", "http://127.0.0.1:9/steal"))
    r = await client.post(sim.url + "/v1/chat/completions", json={})
    assert r.status_code == 307
    assert r.headers["location"] == "http://127.0.0.1:9/steal"
    sim.script(hostile.echo_key_error("openai"))
    r = await client.post(
        sim.url + "/v1/chat/completions", json={}, headers={"Authorization": "Bearer sk-abc"}
    )
    assert r.status_code == 401
    assert "sk-abc" in r.json()["error"]["message"]


async def test_every_named_case_answers_every_protocol(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    paths = {
        "openai": "/v1/chat/completions",
        "ollama": "/api/chat",
        "anthropic": "/v1/messages",
        "gemini": "/v1beta/models/m:streamGenerateContent?alt=sse",
    }
    for name, case in hostile.CASES.items():
        if name in ("endless", "endless-line", "gzip-bomb"):
            continue  # covered above; they never end
        for protocol, path in paths.items():
            sim.script(case(protocol))  # type: ignore[arg-type]
            r = await client.post(sim.url + path, json={})
            assert r.status_code in (200, 307, 401), (name, protocol)
            assert r.content or r.status_code == 307, (name, protocol)
