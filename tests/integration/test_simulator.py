"""The simulator over real sockets: wire formats, limits, echo, and scripted faults."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from desktop_app.simulator import Fault, Simulator, SimulatorThread
from tests.helpers import wait_until

PROTOCOLS = ("openai", "anthropic", "gemini", "ollama")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(tokens_per_s=0, default_tokens=40) as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def chat_request(
    sim: Simulator,
    protocol: str,
    text: str = "Tell me about rivers.",
    *,
    max_tokens: int | None = None,
    stream: bool = True,
) -> tuple[str, dict[str, Any]]:
    """URL and body of a chat request in ``protocol``'s own request format."""
    if protocol == "openai":
        body: dict[str, Any] = {
            "model": "sim-small",
            "stream": stream,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": text},
            ],
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return sim.base_url("openai") + "/chat/completions", body
    if protocol == "anthropic":
        body = {
            "model": "sim-small",
            "stream": stream,
            "system": "Be brief.",
            "max_tokens": 4096 if max_tokens is None else max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
        return sim.url + "/v1/messages", body
    if protocol == "gemini":
        body = {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": text}]}],
        }
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{sim.url}/v1beta/models/sim-small:{method}", body
    body = {
        "model": "sim-small",
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }
    if max_tokens is not None:
        body["options"] = {"num_predict": max_tokens}
    return sim.url + "/api/chat", body


def parse_stream(protocol: str, raw: bytes) -> list[tuple[str, Any]]:
    """(event name, parsed data) for each SSE event or NDJSON line."""
    text = raw.decode("utf-8")
    if protocol == "ollama":
        assert text.endswith("\n")
        return [("", json.loads(line)) for line in text.split("\n")[:-1]]
    separator = "\r\n\r\n" if protocol == "gemini" else "\n\n"
    assert text.endswith(separator)
    events: list[tuple[str, Any]] = []
    for block in text.split(separator)[:-1]:
        name = ""
        data = ""
        for line in block.split("\n" if protocol != "gemini" else "\r\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        events.append((name, None if data == "[DONE]" else json.loads(data)))
    return events


def summarize(protocol: str, events: list[tuple[str, Any]]) -> tuple[list[str], str | None]:
    """The text pieces in order and the finish reason as the provider spells it."""
    pieces: list[str] = []
    finish: str | None = None
    if protocol == "openai":
        assert events[0][1]["choices"][0]["delta"] == {
            "role": "assistant",
            "content": "",
            "refusal": None,
        }
        assert events[-1][1] is None  # data: [DONE]
        for _, data in events[1:-1]:
            for choice in data["choices"]:
                if "content" in choice["delta"]:
                    pieces.append(choice["delta"]["content"])
                finish = choice["finish_reason"] or finish
    elif protocol == "anthropic":
        names = [name for name, _ in events]
        assert names[:3] == ["message_start", "content_block_start", "ping"]
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        pieces = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
        finish = events[-2][1]["delta"]["stop_reason"]
    elif protocol == "gemini":
        for _, data in events:
            candidate = data["candidates"][0]
            pieces += [part["text"] for part in candidate["content"]["parts"]]
            finish = candidate.get("finishReason", finish)
    else:
        for _, data in events:
            if data["done"]:
                finish = data["done_reason"]
            else:
                pieces.append(data["message"]["content"])
    return pieces, finish


async def fetch(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> bytes:
    response = await client.post(url, json=body)
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stream_sends_every_token_then_the_finish_marker(
    sim: Simulator, client: httpx.AsyncClient, protocol: str
) -> None:
    url, body = chat_request(sim, protocol)
    raw = await fetch(client, url, body)

    pieces, finish = summarize(protocol, parse_stream(protocol, raw))
    assert len(pieces) == 40
    assert finish == {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP"}.get(
        protocol, "stop"
    )
    text = "".join(pieces)
    assert text == sim.reply_text(body, protocol)
    assert any(ord(ch) > 127 for ch in text)  # multi-byte UTF-8 is exercised
    record = sim.chat_requests[-1]
    assert (record.protocol, record.status, record.tokens_sent) == (protocol, 200, 40)
    assert record.completed and record.disconnected_at is None
    # The same request again (a regenerate) gets new words, which reply_text predicts.
    again = "".join(summarize(protocol, parse_stream(protocol, await fetch(client, url, body)))[0])
    assert again != text
    assert again == sim.reply_text(body, protocol) == sim.reply_text(sim.chat_requests[-1])
    assert sim.reply_text(sim.chat_requests[0]) == text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_tokens_cuts_the_reply_with_the_length_reason(
    sim: Simulator, client: httpx.AsyncClient, protocol: str
) -> None:
    url, body = chat_request(sim, protocol, max_tokens=7)
    pieces, finish = summarize(protocol, parse_stream(protocol, await fetch(client, url, body)))

    assert len(pieces) == 7
    expected = {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}
    assert finish == expected.get(protocol, "length")


async def test_usage_counts_words_in_and_tokens_out(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url, body = chat_request(sim, "openai", "one two three")
    events = parse_stream("openai", await fetch(client, url, body))

    usage_chunk = events[-2][1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 40, "total_tokens": 45}


async def test_echo_repeats_the_message_in_four_code_point_tokens(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    said = "naïve café\u2028🌊 line"
    url, body = chat_request(sim, "anthropic", "/echo " + said)
    pieces, finish = summarize(
        "anthropic", parse_stream("anthropic", await fetch(client, url, body))
    )

    assert "".join(pieces) == said
    assert pieces[:3] == ["naïv", "e ca", "fé\u2028🌊"]
    assert finish == "end_turn"


async def test_trailing_assistant_message_is_continued(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url, body = chat_request(sim, "anthropic")
    full = sim.reply_text(body, "anthropic")
    prefill = full[:23]  # may end inside a word
    body["messages"].append({"role": "assistant", "content": prefill})
    pieces, finish = summarize(
        "anthropic", parse_stream("anthropic", await fetch(client, url, body))
    )

    assert prefill + "".join(pieces) == full
    assert finish == "end_turn"


async def test_a_prompt_asking_for_a_tool_streams_a_call_to_it(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url, body = chat_request(sim, "openai")
    body["messages"][-1]["content"] = 'call search with {"query": "tides"}'
    body["tools"] = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    events = parse_stream("openai", await fetch(client, url, body))

    first = events[0][1]["choices"][0]["delta"]["tool_calls"][0]
    assert first["id"].startswith("call_") and first["function"]["name"] == "search"
    fragments = [
        data["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for _, data in events[1:-3]
    ]
    assert len(fragments) >= 3
    assert list(json.loads("".join(fragments))) == ["query"]
    assert events[-3][1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_parallel_calls_stream_as_each_protocol_streams_them(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    ask = 'call a with {"x": 1} and call b with {"y": "two"}'
    shapes: dict[str, list[Any]] = {}
    for protocol in ("openai", "anthropic", "gemini", "ollama"):
        url, body = chat_request(sim, protocol, ask)
        if protocol == "gemini":
            body["tools"] = [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]
        elif protocol == "anthropic":
            body["tools"] = [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]
        else:
            body["tools"] = [
                {"type": "function", "function": {"name": n, "parameters": {}}} for n in "ab"
            ]
        shapes[protocol] = parse_stream(protocol, await fetch(client, url, body))

    # OpenAI: each call opens with its index, id and name, then its arguments in fragments
    deltas = [d["choices"][0]["delta"] for _, d in shapes["openai"][:-1] if d["choices"]]
    calls = [c for d in deltas for c in d.get("tool_calls", ())]
    opened = [c for c in calls if "id" in c]
    assert [(c["index"], c["function"]["name"]) for c in opened] == [(0, "a"), (1, "b")]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in opened)
    args = {
        i: "".join(c["function"]["arguments"] for c in calls if c["index"] == i) for i in (0, 1)
    }
    assert args == {0: '{"x":1}', 1: '{"y":"two"}'}
    assert len(calls) > 4  # in fragments

    # Anthropic: one tool_use block per call, each started, filled by input_json_delta, stopped
    names = [(name, d.get("index")) for name, d in shapes["anthropic"] if name != "ping"]
    assert names[0] == ("message_start", None) and names[-2:] == [
        ("message_delta", None),
        ("message_stop", None),
    ]
    blocks = [(n, i) for n, i in names if n in ("content_block_start", "content_block_stop")]
    assert blocks == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
    ]
    partial = {
        i: "".join(
            d["delta"]["partial_json"]
            for n, d in shapes["anthropic"]
            if n == "content_block_delta" and d["index"] == i
        )
        for i in (0, 1)
    }
    assert partial == {0: '{"x": 1}', 1: '{"y": "two"}'}
    assert shapes["anthropic"][-2][1]["delta"]["stop_reason"] == "tool_use"

    # Gemini: the calls as functionCall parts of one chunk
    (chunk,) = [d for _, d in shapes["gemini"]]
    parts = chunk["candidates"][0]["content"]["parts"]
    signature = parts[0].pop("thoughtSignature")  # the step's, on its first call only
    assert isinstance(signature, str) and len(signature) > 40
    assert parts == [
        {"functionCall": {"name": "a", "args": {"x": 1}}},
        {"functionCall": {"name": "b", "args": {"y": "two"}}},
    ]
    assert chunk["candidates"][0]["finishReason"] == "STOP"

    # Ollama: the calls in one message, arguments as objects, then the done line
    first, done = shapes["ollama"]
    assert first[1]["message"]["tool_calls"] == [
        {"function": {"name": "a", "arguments": {"x": 1}}},
        {"function": {"name": "b", "arguments": {"y": "two"}}},
    ]
    assert done[1]["done"] is True and done[1]["done_reason"] == "stop"


async def test_gemini_3_refuses_calls_sent_back_without_their_thought_signature(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = sim.base_url("gemini") + "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"
    call = {"functionCall": {"name": "a", "args": {}}}
    result = {"functionResponse": {"name": "a", "response": {"result": "r"}}}
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "call a with {}"}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [result]},
        ],
        "tools": [{"functionDeclarations": [{"name": "a"}]}],
    }
    refused = await client.post(url, json=body, headers={"x-goog-api-key": "k"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "Function call `a` in the `2.` content block is missing a `thought_signature`."
    )
    body["contents"][1]["parts"][0] = {**call, "thoughtSignature": "c2lnbmVk"}
    answered = await client.post(url, json=body, headers={"x-goog-api-key": "k"})
    assert answered.status_code == 200
    pieces, _ = summarize("gemini", parse_stream("gemini", answered.content))
    assert "".join(pieces).startswith("Tool a said: r")


async def test_a_call_to_a_tool_not_offered_is_not_made(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url, body = chat_request(sim, "openai", 'call missing with {"x": 1}')
    body["tools"] = [{"type": "function", "function": {"name": "other", "parameters": {}}}]
    pieces, finish = summarize("openai", parse_stream("openai", await fetch(client, url, body)))
    assert finish == "stop" and "".join(pieces) == sim.reply_text(body, "openai")


async def test_rate_limit_fault_carries_retry_after_headers(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(
        Fault(protocol="anthropic", status=429, retry_after=1.2, retry_after_ms=1200),
        Fault(protocol="openai", status=429, retry_after=3, retry_after_http_date=True),
    )
    url, body = chat_request(sim, "openai")
    response = await client.post(url, json=body)
    assert response.status_code == 429
    retry_at = httpx.Headers(response.headers)["retry-after"]
    assert retry_at.endswith(" GMT")
    assert response.json()["error"]["code"] == "rate_limit_exceeded"

    url, body = chat_request(sim, "anthropic")
    response = await client.post(url, json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1200"
    assert response.json()["error"]["type"] == "rate_limit_error"

    response = await client.post(url, json=body)  # faults apply to one request only
    assert response.status_code == 200


async def test_body_that_is_not_json_gets_a_provider_shaped_400(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    response = await client.post(sim.url + "/v1beta/models/sim-small:generateContent", content=b"{")
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_drop_after_breaks_the_connection_mid_stream(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.script(Fault(drop_after=5))
    url, body = chat_request(sim, "ollama")
    received = b""
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        async with client.stream("POST", url, json=body) as response:
            async for chunk in response.aiter_bytes():
                received += chunk

    assert received.count(b'"done":false') == 5
    record = sim.chat_requests[-1]
    assert record.tokens_sent == 5
    assert not record.completed and record.disconnected_at is None


async def test_client_closing_the_stream_is_seen_at_once(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.tokens_per_s = 20.0
    url, body = chat_request(sim, "openai")
    async with client.stream("POST", url, json=body) as response:
        async for _ in response.aiter_raw():
            break
        closed_at = time.monotonic()
        await response.aclose()

    await sim.wait_for_disconnect(timeout=2.0)
    record = sim.disconnects[0]
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 0.1
    assert not record.completed and record.tokens_sent < 40


def test_a_request_is_listed_once_its_body_has_been_read() -> None:
    """A test reading the list from its own thread never sees a request without its body."""
    body = {"model": "sim-small", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    payload = json.dumps(body).encode()
    half = len(payload) // 2
    with (
        SimulatorThread(tokens_per_s=0, default_tokens=5) as thread_sim,
        socket.create_connection(("127.0.0.1", thread_sim.port), timeout=5.0) as conn,
    ):
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload[:half]
        )
        wait_until(lambda: thread_sim.sim._active)  # the server is reading the body
        assert thread_sim.requests == []
        conn.sendall(payload[half:])
        wait_until(lambda: thread_sim.chat_requests)
        assert thread_sim.chat_requests[0].json == body
        assert conn.recv(64).startswith(b"HTTP/1.1 200")


async def test_replay_serves_the_exact_bytes(sim: Simulator, client: httpx.AsyncClient) -> None:
    captured = (
        'data: {"choices":[{"index":0,"delta":{"content":"Grüße 🌊"}}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    ).encode()
    sim.script(Fault(replay=captured, replay_piece_delay_s=0.0))
    url, body = chat_request(sim, "openai")
    response = await client.post(url, json=body)

    assert response.content == captured
    assert response.headers["content-type"].startswith("text/event-stream")


def test_thread_simulator_serves_sync_clients() -> None:
    with SimulatorThread(tokens_per_s=0, default_tokens=5) as thread_sim:
        thread_sim.script(Fault(status=503))
        with httpx.Client(timeout=5.0) as http:
            assert http.get(thread_sim.url + "/api/tags").json()["models"][0]["name"] == "sim-small"
            url = thread_sim.url + "/api/chat"
            body = {
                "model": "sim-small",
                "stream": False,
                "messages": [{"role": "user", "content": "hi"}],
            }
            assert http.post(url, json=body).status_code == 503
            reply = http.post(url, json=body).json()
        assert reply["done_reason"] == "stop" and reply["eval_count"] == 5
        assert [r.status for r in thread_sim.chat_requests] == [503, 200]
