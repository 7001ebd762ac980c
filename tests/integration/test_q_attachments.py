"""``q -f`` and ``q --image``: files read before anything is sent, refusals as a sentence
with exit code 2, ``--json`` listing what was sent, and ``-c`` keeping earlier files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread
from tests.attachment_files import bomb_png, pdf_bytes, png_bytes
from tests.integration.test_cli import q
from tests.llama_server import LlamaServer, llama_server

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "gemini-test-key"}


def run_q(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return q(*args, home=home, env=KEYS)


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0, models=("sim-small", "sim-vision")) as sim:
        yield sim


def _base(sim: SimulatorThread, provider: str = "openai") -> list[str]:
    # a model the simulator's Ollama lists with "vision" (q asks a local server first)
    return ["--provider", provider, "--base-url", sim.base_url(provider), "--model", "sim-vision"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "chart.png"
    image.write_bytes(png_bytes(320, 200))
    text = tmp_path / "main.py"
    text.write_text("import sys\nprint(sys.argv)\n")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(pdf_bytes(["one", "two"]))
    return {"image": image, "text": text, "pdf": pdf}


@pytest.mark.parametrize("provider", ["openai", "ollama", "anthropic", "gemini"])
def test_q_sends_files_and_lists_them_in_json(
    simt: SimulatorThread, rill_home: Path, files: dict[str, Path], provider: str
) -> None:
    image = files["image"].read_bytes()
    result = run_q(
        *_base(simt, provider),
        "--json",
        "--image",
        str(files["image"]),
        "-f",
        str(files["text"]),
        "--file",
        str(files["pdf"]),
        "What are these?",
        home=rill_home,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    answer = [
        f"I see an image of 320×200 pixels ({len(image)} bytes)",
        "I read main.py (2 lines)",
        "I read a PDF of 2 pages",
    ]
    assert shown["content"] == "\n".join(answer)
    assert shown["attachments"] == [
        {
            "name": "chart.png",
            "kind": "image",
            "mime": "image/png",
            "bytes": len(image),
            "sha256": hashlib.sha256(image).hexdigest(),
            "width": 320,
            "height": 200,
        },
        {
            "name": "main.py",
            "kind": "text",
            "mime": "text/x-python",
            "bytes": files["text"].stat().st_size,
            "sha256": hashlib.sha256(files["text"].read_bytes()).hexdigest(),
        },
        {
            "name": "paper.pdf",
            "kind": "pdf",
            "mime": "application/pdf",
            "bytes": files["pdf"].stat().st_size,
            "sha256": hashlib.sha256(files["pdf"].read_bytes()).hexdigest(),
            "pages": 2,
        },
    ]


def test_q_without_a_prompt_sends_the_files_alone(
    simt: SimulatorThread, rill_home: Path, files: dict[str, Path]
) -> None:
    result = run_q(*_base(simt, "anthropic"), "-f", str(files["text"]), home=rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "I read main.py (2 lines)"
    blocks = simt.sim.chat_requests[-1].json["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["text"]


def _refused(sim: SimulatorThread, home: Path, *args: str) -> str:
    result = run_q(*_base(sim), *args, "Look", home=home)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert sim.sim.chat_requests == []  # nothing was sent
    line = result.stderr.strip()
    assert line.startswith("q: ") and "\n" not in line
    return line


def test_q_refuses_before_sending(
    simt: SimulatorThread, rill_home: Path, tmp_path: Path, files: dict[str, Path]
) -> None:
    binary = tmp_path / "tool.exe"
    binary.write_bytes(b"MZ\x90\x00\x03")
    assert "tool.exe cannot be attached" in _refused(simt, rill_home, "-f", str(binary))
    assert "Rill can attach images (PNG, JPEG, WebP, GIF)" in _refused(
        simt, rill_home, "-f", str(binary)
    )
    assert _refused(simt, rill_home, "--image", str(files["text"])) == (
        "q: main.py is not an image: --image takes PNG, JPEG, WebP and GIF files "
        "(attach other files with -f)."
    )
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    assert "bomb.png is too large to attach" in _refused(simt, rill_home, "--image", str(bomb))
    big = tmp_path / "big.log"
    big.write_bytes(b"log line\n" * 700_000)  # 6.3 MB of text, past 5 MB
    assert "big.log is too large to attach" in _refused(simt, rill_home, "-f", str(big))
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert "pipe.txt cannot be attached: it is a pipe (FIFO)" in _refused(
        simt, rill_home, "-f", str(fifo)
    )
    assert "zero cannot be attached: it is a device" in _refused(simt, rill_home, "-f", "/dev/zero")
    assert "missing.txt cannot be attached: there is no such file" in _refused(
        simt, rill_home, "-f", str(tmp_path / "missing.txt")
    )


def test_q_shows_a_hostile_file_name_as_text(
    simt: SimulatorThread, rill_home: Path, tmp_path: Path
) -> None:
    hostile = tmp_path / "a\x1b]0;owned\x07b.exe"
    hostile.write_bytes(b"\x00\x01")
    line = _refused(simt, rill_home, "-f", str(hostile))
    assert "\x1b" not in line and "\x07" not in line
    assert "a?]0;owned?b.exe cannot be attached" in line


def test_q_continue_keeps_the_earlier_files_in_the_context(
    simt: SimulatorThread, rill_home: Path, files: dict[str, Path]
) -> None:
    first = run_q(
        *_base(simt, "ollama"), "--image", str(files["image"]), "What is it?", home=rill_home
    )
    assert first.returncode == 0, first.stderr
    second = run_q("-c", "And in more detail?", home=rill_home)
    assert second.returncode == 0, second.stderr
    messages = simt.sim.chat_requests[-1].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert base64.b64decode(messages[0]["images"][0]) == files["image"].read_bytes()
    assert "images" not in messages[2]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from llama_server("tiny.gguf", tmp_path_factory.mktemp("llama"))


def test_q_says_before_sending_that_a_model_takes_no_images(
    simt: SimulatorThread, rill_home: Path, files: dict[str, Path]
) -> None:
    url = simt.base_url("ollama")
    base = ["--provider", "ollama", "--base-url", url, "--model", "sim-small"]
    result = run_q(*base, "--image", str(files["image"]), "What is it?", home=rill_home)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "q: The model sim-small does not take images, as its server says (Ollama /api/show). "
        "Choose a model that can, or send the prompt without its images."
    )
    assert simt.sim.chat_requests == []
    assert [r.path for r in simt.sim.requests] == ["/api/show"]
    # files that are not images go to it as text
    text = run_q(*base, "-f", str(files["text"]), "Explain", home=rill_home)
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == "I read main.py (2 lines)"


def test_a_real_llama_cpp_server_without_vision_is_said_before_sending(
    llama: LlamaServer, rill_home: Path, files: dict[str, Path]
) -> None:
    at = ["--base-url", llama.base_url, "--model", llama.model, "--max-tokens", "5"]
    result = run_q(*at, "--image", str(files["image"]), "What is it?", home=rill_home)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"q: The model {llama.model} does not take images, as its server says "
        "(llama.cpp /props). Choose a model that can, or send the prompt without its images."
    )
    # the same server reads a text file and a PDF as the text in the prompt
    text = run_q(*at, "-f", str(files["text"]), "-f", str(files["pdf"]), "Sum up", home=rill_home)
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip()


async def test_a_real_llama_cpp_servers_refusal_of_an_image_is_said_once(
    llama: LlamaServer, files: dict[str, Path]
) -> None:
    """Sent anyway, an image gets llama.cpp's 500 for a text-only model; the engine shows
    it at once with the server's words, not tried again as a passing server fault."""
    from desktop_app.core.attachments import read_attachment
    from desktop_app.core.events import Failed, Retrying
    from desktop_app.core.types import ChatRequest, Message
    from tests.helpers import collect, engine_for

    image = read_attachment(files["image"])
    message = Message("user", "What is it?", attachments=(image,))
    request = ChatRequest("openai", llama.base_url, llama.model, (message,), max_tokens=5)
    engine = engine_for()
    try:
        events = await collect(engine.stream(request))
    finally:
        await engine.aclose()
    assert not any(isinstance(e, Retrying) for e in events)
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert str(failed.error).startswith(f"The model {llama.model} cannot read images.")
    assert "image input is not supported" in str(failed.error)
    assert str(failed.error).endswith(
        "Choose a model that can, or send the message without its images."
    )
