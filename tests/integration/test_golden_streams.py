"""Streams captured from the real APIs (and Ollama's documented examples), served verbatim
over a socket in small uneven pieces, parsed by the engine field by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.errors import IncompleteStream
from desktop_app.core.events import Failed, Finished
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.simulator import Fault
from tests.conftest import FIXTURES
from tests.helpers import collect, engine_for, request_for

NO_RETRY = ResilienceSettings(max_retries=0, first_token_timeout_s=5, idle_timeout_s=5)

STREAMS = (
    sorted(p for p in FIXTURES.glob("*") if p.suffix in (".sse", ".ndjson"))
    if FIXTURES.is_dir()
    else []
)

pytestmark = pytest.mark.skipif(
    not STREAMS, reason=f"golden streams not found at {FIXTURES} (shared fixtures absent)"
)


def _provider(path: Path) -> Any:
    return path.name.split("_", 1)[0]


def _expected(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    return data


def _cut_before_finish(path: Path, raw: bytes) -> bytes:
    provider = _provider(path)
    if provider == "openai":
        return raw[: raw.index(b"data: [DONE]")]
    if provider == "anthropic":
        return raw[: raw.index(b"event: message_stop")]
    if provider == "gemini":
        return raw[: raw.rindex(b"data: ")]
    lines = raw.splitlines(keepends=True)
    return b"".join(line for line in lines if b'"done":true' not in line)


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("pieces", "delay"), [((7, 1, 13, 3, 29, 2), 0.0005), ((1,), 0.0)], ids=["uneven", "bytewise"]
)
async def test_golden_stream_parses_every_field(
    sim: Any, path: Path, pieces: tuple[int, ...], delay: float
) -> None:
    raw = path.read_bytes()
    expected = _expected(path)
    provider = _provider(path)
    sim.script(Fault(replay=raw, replay_pieces=pieces, replay_piece_delay_s=delay))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, provider, model=expected["model"])))
    finally:
        await engine.aclose()
    finished = [e for e in events if isinstance(e, Finished)]
    assert finished, f"no Finished event: {events[-1]!r}"
    response = finished[0].response
    assert response.content == expected["text"]
    assert response.raw_finish_reason == expected["finish_reason"]
    assert response.model == expected["model"]
    if expected["usage"] is None:
        assert response.usage is None
    else:
        assert response.usage is not None
        assert response.usage.input_tokens == expected["usage"]["input_tokens"]
        assert response.usage.output_tokens == expected["usage"]["output_tokens"]
    got_calls = [
        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
    ]
    assert got_calls == expected["tool_calls"]
    if expected["tool_calls"]:
        assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
async def test_golden_stream_cut_before_finish_marker_fails(sim: Any, path: Path) -> None:
    cut = _cut_before_finish(path, path.read_bytes())
    sim.script(Fault(replay=cut, replay_pieces=(64, 5, 31), replay_piece_delay_s=0.0))
    engine = engine_for(NO_RETRY)
    try:
        events = await collect(engine.stream(request_for(sim, _provider(path))))
    finally:
        await engine.aclose()
    assert not any(isinstance(e, Finished) for e in events)
    failed = [e for e in events if isinstance(e, Failed)]
    assert len(failed) == 1
    assert isinstance(failed[0].error, IncompleteStream)
