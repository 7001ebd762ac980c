"""What a server says about itself (``Engine.server_info``): Ollama's version and a model's
context length, llama.cpp's build and context, Gemini's input limit; nothing, never an
error, for a server that says nothing, answers badly or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desktop_app.core.engine import ServerInfo
from desktop_app.simulator import Fault, SimulatorThread, hostile
from desktop_app.simulator.protocols import CONTEXT_LENGTH
from tests.helpers import FAST, engine_for
from tests.integration.test_cli import q
from tests.llama_server import CONTEXT, LlamaServer, llama_server

NOTHING = ServerInfo()


async def _info(provider: str, base_url: str, model: str = "", **kwargs: Any) -> ServerInfo:
    engine = engine_for(FAST)
    try:
        return await engine.server_info(provider, base_url, "default", model=model, **kwargs)
    finally:
        await engine.aclose()


def _json(body: Any) -> Fault:
    raw = json.dumps(body).encode()
    return hostile.pieces("models", lambda _r: [raw], headers={"Content-Type": "application/json"})


async def test_ollama_says_its_version_and_the_models_context(sim: Any) -> None:
    info = await _info("ollama", sim.base_url("ollama"), "sim-small")
    assert info == ServerInfo("Ollama", "0.12.0", CONTEXT_LENGTH)
    assert info.summary() == f"Ollama 0.12.0 · context {CONTEXT_LENGTH:,}"
    show = [r for r in sim.requests if r.path == "/api/show"]
    assert [r.json for r in show] == [{"model": "sim-small"}]


async def test_ollama_without_a_model_says_only_its_version(sim: Any) -> None:
    info = await _info("ollama", sim.base_url("ollama"))
    assert info == ServerInfo("Ollama", "0.12.0", None)
    assert info.summary() == "Ollama 0.12.0"


async def test_ollama_num_ctx_is_the_context_the_model_runs_with(sim: Any) -> None:
    sim.script(_json({"version": "0.12.0"}))
    sim.script(
        _json(
            {
                "parameters": 'num_ctx                        8192\nstop "<|eot_id|>"',
                "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
            }
        )
    )
    info = await _info("ollama", sim.base_url("ollama"), "sim-small")
    assert info.summary() == "Ollama 0.12.0 · context 8,192"


async def test_gemini_says_the_models_input_limit(sim: Any) -> None:
    info = await _info("gemini", sim.base_url("gemini"), "sim-small")
    assert info == ServerInfo(None, None, 1_048_576)
    assert info.summary() == "context 1,048,576"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_servers_that_say_nothing_give_nothing(sim: Any, provider: str) -> None:
    info = await _info(provider, sim.base_url(provider), "sim-small")
    assert info == NOTHING and info.summary() == ""


async def test_a_refused_port_gives_nothing() -> None:
    assert await _info("ollama", "http://127.0.0.1:9", "sim-small") == NOTHING
    assert await _info("openai", "http://127.0.0.1:9/v1", "sim-small") == NOTHING


HOSTILE_VERSION = "<b>1.0</b>\x1b[2J\x1b]8;;file:///etc/passwd\x07\ud800 " + "x" * 5000


@pytest.mark.parametrize(
    "answers",
    [
        [hostile.error("models", 500, "broken"), hostile.error("models", 404, "no such page")],
        [_json(["0.12.0"]), _json({"model_info": []})],
        [_json({"version": 12}), _json({"model_info": {"general.architecture": 7}})],
        [
            _json({"version": ""}),
            _json(
                {
                    "model_info": {
                        "general.architecture": "llama",
                        "llama.context_length": -5,
                    }
                }
            ),
        ],
        [
            _json({"version": None}),
            _json({"model_info": {"general.architecture": "llama", "llama.context_length": True}}),
        ],
        [
            hostile.pieces("models", lambda _r: [b"<html><title>Router</title></html>"]),
            _json({"model_info": {"general.architecture": "llama", "llama.context_length": 1e300}}),
        ],
        [
            hostile.pieces("models", lambda _r: [b'{"version": "' + b"9" * 2_000_000 + b'"}']),
            _json({"parameters": "num_ctx 99999999999999999999999", "model_info": {}}),
        ],
    ],
)
async def test_odd_answers_give_nothing(sim: Any, answers: list[Fault]) -> None:
    for answer in answers:
        sim.script(answer)
    info = await _info("ollama", sim.base_url("ollama"), "sim-small")
    assert info == NOTHING


async def test_outside_text_is_cleaned_and_clipped(sim: Any) -> None:
    sim.script(_json({"version": HOSTILE_VERSION}))
    info = await _info("ollama", sim.base_url("ollama"))
    assert info.version is not None
    assert info.version.startswith("<b>1.0</b>")  # plain text: shown, never rendered
    assert len(info.version) <= 40
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in info.version)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in info.version)
    info.summary().encode("utf-8")


async def test_a_server_that_never_answers_gives_nothing_in_time(sim: Any) -> None:
    sim.script(hostile.pieces("models", lambda _r: [b""], piece_delay_s=60, time_limit_s=60))
    info = await _info("ollama", sim.base_url("ollama"), timeout_s=0.5)
    assert info == NOTHING


# -- q --list-models ------------------------------------------------------------------------


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def test_q_list_models_says_what_the_server_is(simt: SimulatorThread, rill_home: Path) -> None:
    args = ["--provider", "ollama", "--base-url", simt.base_url("ollama"), "--model", "sim-small"]
    result = q(*args, "--list-models", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["sim-large", "sim-small"]
    assert result.stderr == f"q: Ollama 0.12.0 · context {CONTEXT_LENGTH:,}\n"


def test_q_list_models_of_a_server_that_says_nothing(
    simt: SimulatorThread, rill_home: Path
) -> None:
    result = q("--base-url", simt.base_url("openai"), "--list-models", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["sim-large", "sim-small"]
    assert result.stderr == ""


# -- a real llama.cpp server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama"))


async def test_llama_cpp_says_its_build_and_context(llama: LlamaServer) -> None:
    async with httpx.AsyncClient() as client:
        build = (await client.get(llama.url + "/props", timeout=5)).json()["build_info"]
    info = await _info("openai", llama.base_url, llama.model)
    assert info == ServerInfo("llama.cpp", build, CONTEXT)
    assert info.summary() == f"llama.cpp {build} · context {CONTEXT}"


def test_q_list_models_of_llama_cpp(llama: LlamaServer, rill_home: Path) -> None:
    result = q("--base-url", llama.base_url, "--list-models", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [llama.model]
    assert result.stderr.startswith("q: llama.cpp ")
    assert result.stderr.endswith(f" · context {CONTEXT}\n")
