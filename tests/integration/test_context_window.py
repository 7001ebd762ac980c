"""A model's context length and whether it takes images, as its server says: Ollama's
``/api/show``, llama.cpp's ``/props``, an OpenAI-compatible model list, Gemini's model;
asked once per endpoint and model; nothing (never an error) where a server says nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from desktop_app.core.context_window import ContextWindows, ModelLimits
from desktop_app.simulator import Fault, hostile
from desktop_app.simulator.protocols import CONTEXT_LENGTH
from tests.helpers import FAST, engine_for
from tests.llama_server import CONTEXT, LlamaServer, llama_server


async def _limits(provider: str, base_url: str, model: str) -> tuple[ModelLimits, ModelLimits]:
    engine = engine_for(FAST)
    windows = ContextWindows(engine, timeout_s=2.0)
    try:
        first = await windows.limits(provider, base_url, model)
        again = await windows.limits(provider, base_url, model)
        return first, again
    finally:
        await engine.aclose()


def _json(body: Any) -> Fault:
    raw = json.dumps(body).encode()
    return hostile.pieces("models", lambda _r: [raw], headers={"Content-Type": "application/json"})


async def test_ollama_gives_the_context_and_no_vision_once(sim: Any) -> None:
    first, again = await _limits("ollama", sim.base_url("ollama"), "sim-small")
    assert first == ModelLimits(CONTEXT_LENGTH, False, "Ollama /api/show")
    assert again == first
    assert len([r for r in sim.requests if r.path == "/api/show"]) == 1


async def test_an_ollama_vision_model_takes_images(sim: Any) -> None:
    sim.script(
        _json(
            {
                "parameters": "num_ctx 8192",
                "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072},
                "capabilities": ["completion", "vision"],
            }
        )
    )
    first, _again = await _limits("ollama", sim.base_url("ollama"), "gemma3")
    assert first == ModelLimits(8192, True, "Ollama /api/show")


async def test_an_openai_compatible_model_list_gives_the_context(sim: Any) -> None:
    sim.script(_json({"error": "no such page"}))  # /props: not llama.cpp
    listed = {
        "data": [
            {"id": "other", "max_model_len": 4096},
            {"id": "qwen-vl", "object": "model", "max_model_len": 32768},
        ]
    }
    sim.script(_json(listed))
    first, _again = await _limits("openai", sim.base_url("openai"), "qwen-vl")
    assert first == ModelLimits(32768, None, "the server's model list")
    asked = [r.path for r in sim.requests]
    assert asked == ["/props", "/v1/models"]


async def test_lm_studio_context_length_field(sim: Any) -> None:
    sim.script(_json({}))
    sim.script(_json({"data": [{"id": "m", "context_length": 8192}]}))
    first, _again = await _limits("openai", sim.base_url("openai"), "m")
    assert first.context_length == 8192


async def test_a_server_that_says_nothing_gives_nothing(sim: Any) -> None:
    first, _again = await _limits("openai", sim.base_url("openai"), "sim-small")
    assert first == ModelLimits()
    # asked once: the second lookup within a few minutes does not ask again
    assert [r.path for r in sim.requests] == ["/props", "/v1/models"]
    first, _again = await _limits("anthropic", sim.base_url("anthropic"), "sim-small")
    assert first == ModelLimits()


async def test_a_refused_port_gives_nothing() -> None:
    first, _again = await _limits("ollama", "http://127.0.0.1:9", "m")
    assert first == ModelLimits()


async def test_forgetting_asks_again(sim: Any) -> None:
    engine = engine_for(FAST)
    windows = ContextWindows(engine)
    try:
        await windows.limits("openai", sim.base_url("openai"), "sim-small")
        windows.forget(sim.base_url("openai"))
        await windows.limits("openai", sim.base_url("openai"), "sim-small")
        await windows.limits("ollama", sim.base_url("ollama"), "sim-small")
        windows.forget()
        await windows.limits("ollama", sim.base_url("ollama"), "sim-small")
    finally:
        await engine.aclose()
    assert [r.path for r in sim.requests].count("/props") == 2
    assert [r.path for r in sim.requests].count("/api/show") == 2


async def test_lookups_at_once_ask_once(sim: Any) -> None:
    engine = engine_for(FAST)
    windows = ContextWindows(engine)
    try:
        found = await asyncio.gather(
            *(windows.limits("ollama", sim.base_url("ollama"), "sim-small") for _ in range(5))
        )
    finally:
        await engine.aclose()
    assert {f.context_length for f in found} == {CONTEXT_LENGTH}
    assert len([r for r in sim.requests if r.path == "/api/show"]) == 1
    assert windows.known("ollama", sim.base_url("ollama") + "/", "sim-small") == found[0]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama"))


async def test_llama_cpp_says_its_context_and_that_it_takes_no_images(llama: LlamaServer) -> None:
    first, _again = await _limits("openai", llama.base_url, llama.model)
    assert first == ModelLimits(CONTEXT, False, "llama.cpp /props")
