"""What real servers send that a well-behaved simulator does not, over real sockets.

Each answer is what a real server was seen to send, scripted with the simulator's raw mode
(or, for a response with no Content-Type at all, which aiohttp will not send, a bare
socket server): streams without an event-stream type, JSON errors with 200, Gemini's
RetryInfo, non-streaming answers, streams without usage, stalls right after the content
began, refused local ports, wrong base URLs and odd model listings.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desktop_app.core import errors
from desktop_app.core.engine import Generation, _map_transport_error
from desktop_app.core.events import (
    Failed,
    Finished,
    Retrying,
    StreamEvent,
    UsageUpdate,
)
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import ChatRequest, Message, ProviderName, TokenUsage
from desktop_app.simulator import Fault, SimulatorThread, hostile
from desktop_app.simulator.server import RecordedRequest
from tests.helpers import FAST, collect, engine_for, request_for, text_of
from tests.integration.test_cli import q

PROTOCOLS: tuple[ProviderName, ...] = ("openai", "ollama", "anthropic", "gemini")
NO_RETRY = ResilienceSettings(
    max_retries=0, base_delay_s=0.01, connect_timeout_s=2.0, first_token_timeout_s=5.0
)


def _failure(events: list[StreamEvent]) -> errors.RillError:
    failed = [e for e in events if isinstance(e, Failed)]
    assert failed, f"expected a failure, got {events[-1]!r}"
    return failed[0].error


def _finished(events: list[StreamEvent]) -> Finished:
    done = [e for e in events if isinstance(e, Finished)]
    assert done, f"expected a finished reply, got {events[-1]!r}"
    return done[0]


async def _run(request: ChatRequest, settings: ResilienceSettings = FAST) -> list[StreamEvent]:
    engine = engine_for(settings)
    try:
        return await collect(engine.stream(request))
    finally:
        await engine.aclose()


def _sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def _openai_chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "sim-small",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


NO_USAGE_STREAM = _sse(
    {**_openai_chunk(), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    _openai_chunk("Rivers run "),
    _openai_chunk("to the sea."),
    _openai_chunk(finish="stop"),
)


# -- 1. a stream without text/event-stream is read by what it holds -----------------------


class BareServer:
    """A socket server that answers every request with exactly ``response`` (bytes)."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.requests += 1
        writer.write(self.response)
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_an_event_stream_without_a_content_type_is_read() -> None:
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + NO_USAGE_STREAM
    bare = BareServer(response)
    async with bare as base_url:
        request = ChatRequest("openai", base_url, "m", (Message("user", "hi"),))
        events = await _run(request)
    assert _finished(events).response.content == "Rivers run to the sea."
    assert bare.requests == 1


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "application/octet-stream"])
async def test_an_event_stream_sent_as_another_type_is_read(sim: Any, content_type: str) -> None:
    sim.script(
        hostile.pieces(
            "openai", lambda _r: [NO_USAGE_STREAM], headers={"Content-Type": content_type}
        )
    )
    events = await _run(request_for(sim, "openai"))
    assert text_of(events) == "Rivers run to the sea."
    assert len(sim.chat_requests) == 1


async def test_a_json_error_sent_with_200_is_that_error(sim: Any) -> None:
    body = {
        "error": {
            "message": "This model's maximum context length is 4096 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    sim.script(
        hostile.pieces(
            "openai",
            lambda _r: [json.dumps(body).encode()],
            headers={"Content-Type": "application/json"},
        )
    )
    error = _failure(await _run(request_for(sim, "openai")))
    assert isinstance(error, errors.BadRequest)
    assert "maximum context length is 4096 tokens" in error.message
    assert len(sim.chat_requests) == 1


async def test_an_html_page_is_a_wrong_server_saying_what_came_back(sim: Any) -> None:
    page = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body></body>"
    sim.script(hostile.pieces("openai", lambda _r: [page], headers={"Content-Type": "text/html"}))
    error = _failure(await _run(request_for(sim, "openai")))
    assert not error.retryable
    assert error.message.startswith("The OpenAI server at 127.0.0.1:")
    assert "HTML page" in error.message
    assert "Welcome to nginx!" in error.message
    assert "base URL" in error.action
    assert len(sim.chat_requests) == 1


async def test_other_content_is_a_wrong_server_quoting_it(sim: Any) -> None:
    sim.script(
        hostile.pieces(
            "anthropic",
            lambda _r: [b"Hello from the proxy"],
            headers={"Content-Type": "text/plain"},
        )
    )
    error = _failure(await _run(request_for(sim, "anthropic")))
    assert not error.retryable
    assert "Hello from the proxy" in error.message
    assert "Anthropic" in error.message
    assert len(sim.chat_requests) == 1


# -- 2. Gemini's RetryInfo ----------------------------------------------------------------


async def test_gemini_retry_info_sets_the_wait(sim: Any) -> None:
    sim.script(Fault(protocol="gemini", status=429, retry_after=5.0))
    engine = engine_for(FAST)
    generation: Generation = engine.stream(request_for(sim, "gemini"))
    retries: list[Retrying] = []
    try:
        async for event in generation:
            if isinstance(event, Retrying):
                retries.append(event)
                generation.cancel()  # the wait itself is not the test's business
    finally:
        await engine.aclose()
    assert "retry-after" not in {k.lower() for k in sim.chat_requests[0].headers}
    assert [r.delay_s for r in retries] == [5.0]


# -- 3. a non-streaming request, in all four protocols ------------------------------------


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_no_stream_sends_a_whole_request_and_reads_the_whole_answer(
    sim: Any, provider: ProviderName
) -> None:
    request = request_for(sim, provider, stream=False)
    events = await _run(request)
    response = _finished(events).response
    record = sim.chat_requests[-1]
    if provider == "gemini":
        assert record.path.endswith(":generateContent")
        assert "alt" not in record.query
    else:
        assert record.json["stream"] is False
        assert "stream_options" not in record.json
    assert response.content == sim.reply_text(record.json, provider)
    assert response.content
    assert response.usage is not None and not response.usage.estimated
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.finish_reason == "stop"


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_no_stream_error_is_read_at_once(sim: Any, provider: ProviderName) -> None:
    sim.script(hostile.error(provider, 400, "the prompt is longer than the context"))
    error = _failure(await _run(request_for(sim, provider, stream=False)))
    assert isinstance(error, errors.BadRequest)
    assert "longer than the context" in error.message
    assert len(sim.chat_requests) == 1
    record = sim.chat_requests[0]
    if provider == "gemini":
        assert record.path.endswith(":generateContent")
    else:
        assert record.json["stream"] is False


async def test_a_whole_answer_to_a_streaming_request_is_read(sim: Any) -> None:
    whole = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "sim-small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "All at once."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    sim.script(
        hostile.pieces(
            "openai",
            lambda _r: [json.dumps(whole).encode()],
            headers={"Content-Type": "application/json"},
        )
    )
    response = _finished(await _run(request_for(sim, "openai"))).response
    assert response.content == "All at once."
    assert response.usage == TokenUsage(7, 3)


# -- 4. a server that sends no usage ------------------------------------------------------


async def test_usage_a_server_does_not_send_is_estimated(sim: Any) -> None:
    sim.script(
        hostile.pieces(
            "openai", lambda _r: [NO_USAGE_STREAM], headers={"Content-Type": "text/event-stream"}
        )
    )
    events = await _run(request_for(sim, "openai", "Where do rivers go? " * 10))
    usage = _finished(events).response.usage
    assert usage is not None and usage.estimated
    assert usage.input_tokens > 10 and usage.output_tokens > 0
    assert [e.usage for e in events if isinstance(e, UsageUpdate)] == [usage]
    assert usage.to_dict()["estimated"] is True


async def test_reported_usage_is_not_marked_estimated(sim: Any) -> None:
    usage = _finished(await _run(request_for(sim, "openai"))).response.usage
    assert usage is not None and not usage.estimated
    assert usage.to_dict()["estimated"] is False


def test_estimates_follow_the_documented_rule() -> None:
    assert TokenUsage.estimate_tokens("") == 0
    assert TokenUsage.estimate_tokens("abc") == 1
    assert TokenUsage.estimate_tokens("x" * 400) == 100


# -- 6 and 7. refused connections, addresses and names in the sentences --------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refused_local_port_fails_at_once_naming_address_and_profile(host: str) -> None:
    port = _closed_port()
    request = ChatRequest(
        "openai", f"http://{host}:{port}/v1", "m", (Message("user", "hi"),), profile="lab"
    )
    events = await _run(request)
    error = _failure(events)
    assert not [e for e in events if isinstance(e, Retrying)]
    assert isinstance(error, errors.ConnectionFailed)
    assert f"{host}:{port}" in error.message
    assert "'lab'" in str(error)
    assert "openai server" not in str(error)
    assert "Rill tries again" not in str(error)


def test_a_refused_remote_host_is_still_retried() -> None:
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    remote = _map_transport_error(
        refused, "http://192.0.2.7:8080/v1/chat/completions", "OpenAI", has_output=False
    )
    local = _map_transport_error(
        refused, "http://127.0.0.1:8080/v1/chat/completions", "OpenAI", has_output=False
    )
    assert remote.retryable and not local.retryable
    assert "192.0.2.7:8080" in remote.message


async def test_a_base_url_without_v1_gets_the_hint(sim: Any) -> None:
    base = sim.base_url("openai").removesuffix("/v1")
    request = ChatRequest("openai", base, "sim-small", (Message("user", "hi"),))
    error = _failure(await _run(request))
    assert isinstance(error, errors.NotFound)
    assert f"{base}/v1" in error.action


@pytest.mark.parametrize(
    ("provider", "name"),
    [("openai", "OpenAI"), ("ollama", "Ollama"), ("anthropic", "Anthropic"), ("gemini", "Gemini")],
)
async def test_sentences_name_providers_by_their_names(
    sim: Any, provider: ProviderName, name: str
) -> None:
    sim.script(Fault(protocol=provider, status=500))
    error = _failure(await _run(request_for(sim, provider), NO_RETRY))
    assert f"The {name} server" in error.message
    assert f"{provider} server" not in str(error)


async def test_the_final_error_after_retries_does_not_promise_another_try(sim: Any) -> None:
    for _ in range(4):
        sim.script(Fault(protocol="openai", status=503))
    events = await _run(request_for(sim, "openai"))
    error = _failure(events)
    assert len([e for e in events if isinstance(e, Retrying)]) == 3
    assert "tries again" not in str(error)
    assert error.action


# -- 8. q --list-models edge cases --------------------------------------------------------


async def test_a_model_list_without_data_says_what_came_back(sim: Any) -> None:
    sim.script(
        hostile.pieces(
            "models",
            lambda _r: [b'{"object":"list","models_here":[]}'],
            headers={"Content-Type": "application/json"},
        )
    )
    engine = engine_for()
    try:
        with pytest.raises(errors.RillError) as caught:
            await engine.list_models("openai", sim.base_url("openai"))
    finally:
        await engine.aclose()
    assert "models_here" in caught.value.message


async def test_a_model_list_answered_405_is_not_a_change_the_request(sim: Any) -> None:
    sim.script(
        hostile.pieces(
            "models",
            lambda _r: [b"405 method not allowed"],
            status=405,
            headers={"Content-Type": "text/plain"},
        )
    )
    engine = engine_for()
    try:
        with pytest.raises(errors.RillError) as caught:
            await engine.list_models("openai", sim.base_url("openai"), "lab")
    finally:
        await engine.aclose()
    text = str(caught.value)
    assert "405" in text and "method not allowed" in text
    assert "Change the request" not in text
    assert text.startswith("The OpenAI server at 127.0.0.1:")
    assert "does not list" in text


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def test_q_list_models_without_data_fails_saying_so(simt: SimulatorThread, rill_home: Path) -> None:
    simt.script(
        hostile.pieces(
            "models",
            lambda _r: [b'{"object":"list"}'],
            headers={"Content-Type": "application/json"},
        )
    )
    result = q("--base-url", simt.base_url("openai"), "--list-models", home=rill_home)
    assert result.returncode == 1
    assert result.stdout == ""
    assert '{"object":"list"}' in result.stderr


# -- 3 and 4 in q -------------------------------------------------------------------------


def test_q_no_stream_sends_stream_false(simt: SimulatorThread, rill_home: Path) -> None:
    base = ["--base-url", simt.base_url("openai"), "--model", "sim-small", "--no-cache"]
    result = q(*base, "--no-stream", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert simt.sim.chat_requests[-1].json["stream"] is False
    assert result.stdout.strip()


def test_a_profile_that_does_not_stream(simt: SimulatorThread, rill_home: Path) -> None:
    rill_home.mkdir(parents=True, exist_ok=True)
    config = rill_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[profiles.lab]\nbase_url = "{simt.base_url("openai")}"\nmodel = "sim-small"\n'
        "stream = false\n"
    )
    result = q("--profile", "lab", "--no-cache", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert simt.sim.chat_requests[-1].json["stream"] is False


def test_q_marks_estimated_usage(simt: SimulatorThread, rill_home: Path) -> None:
    for _ in range(2):
        simt.script(
            hostile.pieces(
                "openai",
                lambda _r: [NO_USAGE_STREAM],
                headers={"Content-Type": "text/event-stream"},
            )
        )
    base = ["--base-url", simt.base_url("openai"), "--model", "sim-small", "--no-cache"]
    result = q(*base, "--json", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    usage = json.loads(result.stdout)["usage"]
    assert usage["estimated"] is True and usage["output_tokens"] > 0
    result = q(*base, "--debug", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "≈" in result.stderr


# -- 9. a stall right after the content began ---------------------------------------------

_BEGUN: dict[ProviderName, list[bytes]] = {
    "anthropic": [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"type":"message","role":"assistant","model":"sim-small","content":[],'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
    ],
    "openai": [
        _sse(
            {
                **_openai_chunk(),
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            },
            done=False,
        )
    ],
    "gemini": [
        b'data: {"candidates": [{"content": {"parts": [{"text": "Let me think.", '
        b'"thought": true}],"role": "model"},"index": 0}],"modelVersion": "sim-small"}\r\n\r\n'
    ],
    "ollama": [
        b'{"model":"sim-small","created_at":"2025-01-01T00:00:00Z","message":{"role":'
        b'"assistant","content":"","thinking":"Hmm"},"done":false}\n'
    ],
}


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_stall_after_the_content_began_is_timed_by_the_idle_timeout(
    sim: Any, provider: ProviderName
) -> None:
    def body(_r: RecordedRequest) -> Iterator[bytes]:
        yield from _BEGUN[provider]
        yield from itertools.repeat(b"")  # silence, with the connection open

    content_type = "application/x-ndjson" if provider == "ollama" else "text/event-stream"
    sim.script(
        hostile.pieces(
            provider,
            body,
            headers={"Content-Type": content_type},
            piece_delay_s=0.02,
            time_limit_s=4.0,
        )
    )
    settings = ResilienceSettings(
        max_retries=0, first_token_timeout_s=30.0, idle_timeout_s=0.3, connect_timeout_s=2.0
    )
    error = _failure(await _run(request_for(sim, provider), settings))
    assert isinstance(error, errors.StreamStalled), error


async def test_before_the_content_begins_the_first_token_timeout_applies(sim: Any) -> None:
    def body(_r: RecordedRequest) -> Iterator[bytes]:
        yield _BEGUN["anthropic"][0]
        yield from itertools.repeat(b"")

    sim.script(
        hostile.pieces(
            "anthropic",
            body,
            headers={"Content-Type": "text/event-stream"},
            piece_delay_s=0.02,
            time_limit_s=4.0,
        )
    )
    settings = ResilienceSettings(
        max_retries=0, first_token_timeout_s=0.6, idle_timeout_s=0.2, connect_timeout_s=2.0
    )
    error = _failure(await _run(request_for(sim, "anthropic"), settings))
    assert isinstance(error, errors.FirstTokenTimeout), error
