"""``q`` and the engine against a real llama.cpp server: what the simulator agrees with us
on, checked against software nobody here wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.events import Finished, TextDelta
from desktop_app.core.types import ChatRequest, Message
from tests.helpers import collect, engine_for, wait_until
from tests.integration.test_cli import q
from tests.llama_server import CONTEXT, LlamaServer, llama_server


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def llama_long(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A model that (almost) never ends its reply by itself, with room for a long one."""
    yield from llama_server("tiny-long.gguf", tmp_path_factory.mktemp("llama-long"), 65536)


def at(server: LlamaServer) -> list[str]:
    return ["--base-url", server.base_url, "--model", server.model]


def test_streams_a_reply(llama: LlamaServer, rill_home: Path) -> None:
    result = q(*at(llama), "--max-tokens", "40", "hello there", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stderr == ""


@pytest.mark.parametrize("stream", [True, False])
def test_json_reports_usage_length_and_timing(
    llama_long: LlamaServer, rill_home: Path, stream: bool
) -> None:
    # the model that (almost) never ends by itself: tiny.gguf sometimes ends within 5 tokens
    llama = llama_long
    args = [*at(llama), "--json", "--max-tokens", "5", "--no-cache"]
    if not stream:
        args.append("--no-stream")
    result = q(*args, "hello", home=rill_home)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["content"]
    assert answer["finish_reason"] == "length"
    assert answer["usage"]["output_tokens"] == 5
    assert answer["usage"]["input_tokens"] > 0
    assert answer["model"] == llama.model
    assert answer["timing"]["total_s"] > 0
    assert answer["timing"]["ttft_s"] is not None


def test_lists_its_models(llama: LlamaServer, rill_home: Path) -> None:
    result = q("--base-url", llama.base_url, "--list-models", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert llama.model in result.stdout.splitlines()


def test_a_prompt_longer_than_the_context_is_one_sentence_and_not_retried(
    llama: LlamaServer, rill_home: Path
) -> None:
    before = llama.log().count("exceeds the available context size")
    result = q(*at(llama), "--no-cache", stdin="word " * (CONTEXT * 4), home=rill_home)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert "refused the request (400)" in err
    assert "exceeds the available context size" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert llama.log().count("exceeds the available context size") == before + 1


def test_no_stream_on_a_prompt_longer_than_the_context_is_the_400_at_once(
    llama: LlamaServer, rill_home: Path
) -> None:
    before = llama.log().count("exceeds the available context size")
    args = [*at(llama), "--no-cache", "--no-stream"]
    result = q(*args, stdin="word " * (CONTEXT * 4), home=rill_home)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert "The OpenAI server refused the request (400)" in err
    assert "exceeds the available context size" in err
    assert "retrying" not in err and len(err.splitlines()) == 1
    assert llama.log().count("exceeds the available context size") == before + 1


def test_ctrl_c_closes_the_request_on_the_server(llama_long: LlamaServer, rill_home: Path) -> None:
    streamed = llama_long.log().count("streamed chunk")
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *at(llama_long), "--no-cache", "tell me"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RILL_HOME": str(rill_home)},
    )
    try:
        # q writes a piped answer only at the end: the server's log shows the reply started.
        wait_until(lambda: llama_long.log().count("streamed chunk") > streamed + 20, timeout=20)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out.strip()  # the partial answer is kept
    wait_until(lambda: "cancel task" in llama_long.log(), timeout=10)


async def test_a_paced_read_hands_on_the_events_it_brings_as_one_delta(
    llama_long: LlamaServer,
) -> None:
    # llama.cpp sends each event in an HTTP chunk of its own (its log: "streamed chunk")
    engine = engine_for()
    engine.read_interval_s = 0.04  # as while the window shows a stream
    request = ChatRequest(
        provider="openai",
        base_url=llama_long.base_url,
        model=llama_long.model,
        messages=(Message("user", "hello"),),
        max_tokens=400,
    )
    try:
        events = await collect(engine.stream(request, read_cache=False, write_cache=False))
    finally:
        await engine.aclose()
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(e.text for e in deltas) == finished.response.content
    pieces = sum(e.pieces for e in deltas)
    usage = finished.response.usage
    assert usage is not None and 200 <= pieces <= usage.output_tokens == 400
    assert len(deltas) <= pieces // 2  # a read brings several events, handed on together
