"""Attachments over real sockets: each protocol's own shape for images, text files and PDFs,
the simulator's answers to them, the providers' 400s for images past their limits, and the
engine fitting images before it sends them."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from desktop_app.core.attachments import fit_request, read_attachment
from desktop_app.core.events import Failed, Finished
from desktop_app.core.providers import get_provider
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import Attachment, ChatRequest, Message
from tests.attachment_files import pdf_bytes, png_bytes
from tests.helpers import collect, engine_for, request_for, text_of

PROVIDERS = ["openai", "ollama", "anthropic", "gemini"]
NO_RETRY = ResilienceSettings(max_retries=0, first_token_timeout_s=5.0, idle_timeout_s=2.0)
PROMPT = "What is in these files?"


def _files(tmp_path: Path) -> dict[str, Attachment]:
    image = tmp_path / "chart.png"
    image.write_bytes(png_bytes(640, 480))
    text = tmp_path / "notes.md"
    text.write_text("# Notes\n\nfirst\nsecond ``` fence\n")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(pdf_bytes(["Page one", "Page two", "Page three"]))
    return {k: read_attachment(p) for k, p in (("image", image), ("text", text), ("pdf", pdf))}


def _with(sim: Any, provider: str, *attachments: Attachment, prompt: str = PROMPT) -> ChatRequest:
    request = request_for(sim, provider, prompt)  # type: ignore[arg-type]
    return replace(request, messages=(Message("user", prompt, attachments=attachments),))


async def _run(request: ChatRequest) -> list[Any]:
    engine = engine_for(NO_RETRY)
    try:
        return await collect(engine.stream(request))
    finally:
        await engine.aclose()


def _answer(events: list[Any]) -> str:
    last = events[-1]
    assert isinstance(last, Finished), f"the reply failed: {last!r}"
    return text_of(events)


def _b64(att: Attachment) -> str:
    return base64.b64encode(att.data).decode()


def _line(kind: str, att: Attachment) -> str:
    """What the simulator answers for one of :func:`_files`."""
    if kind == "image":
        return f"I see an image of 640×480 pixels ({att.size} bytes)"
    return "I read notes.md (4 lines)" if kind == "text" else "I read a PDF of 3 pages"


@pytest.mark.parametrize("kind", ["image", "text", "pdf"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_kind_in_each_protocol(
    sim: Any, provider: str, kind: str, tmp_path: Path
) -> None:
    att = _files(tmp_path)[kind]
    events = await _run(_with(sim, provider, att))
    assert _answer(events) == _line(kind, att)
    body = sim.chat_requests[-1].json
    _check_shape(provider, kind, att, body)


def _check_shape(provider: str, kind: str, att: Attachment, body: dict[str, Any]) -> None:
    """The file is where and how the provider's documentation puts it."""
    if provider == "openai":
        parts = body["messages"][-1]["content"]
        assert parts[-1] == {"type": "text", "text": PROMPT}
        if kind == "image":
            url = f"data:image/png;base64,{_b64(att)}"
            assert parts[0] == {"type": "image_url", "image_url": {"url": url}}
        else:
            assert parts[0]["type"] == "text"
            assert parts[0]["text"].startswith(
                "File: notes.md\n```" if kind == "text" else "File: report.pdf (PDF, 3 pages)\n"
            )
    elif provider == "anthropic":
        blocks = body["messages"][-1]["content"]
        assert blocks[-1] == {"type": "text", "text": PROMPT}
        source = {"type": "base64", "media_type": att.mime, "data": _b64(att)}
        if kind == "image":
            assert blocks[0] == {"type": "image", "source": source}
        elif kind == "pdf":
            assert blocks[0] == {"type": "document", "source": source, "title": "report.pdf"}
        else:
            assert blocks[0]["type"] == "text" and "File: notes.md" in blocks[0]["text"]
    elif provider == "gemini":
        parts = body["contents"][-1]["parts"]
        assert parts[-1] == {"text": PROMPT}
        if kind == "text":
            assert parts[0]["text"].startswith("File: notes.md\n")
        else:
            assert parts[0] == {"inline_data": {"mime_type": att.mime, "data": _b64(att)}}
    else:
        message = body["messages"][-1]
        if kind == "image":
            assert message["images"] == [_b64(att)]
            assert message["content"] == PROMPT
        else:
            assert "images" not in message
            assert message["content"].endswith("```\n\n" + PROMPT)
            header = "File: notes.md\n" if kind == "text" else "File: report.pdf (PDF, 3 pages)\n"
            assert message["content"].startswith(header)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_several_files_are_answered_in_order(sim: Any, provider: str, tmp_path: Path) -> None:
    files = _files(tmp_path)
    second = tmp_path / "second.txt"
    second.write_text("one line")
    atts = (files["text"], files["image"], files["pdf"], read_attachment(second))
    lines = [
        "I read notes.md (4 lines)",
        _line("image", files["image"]),
        "I read a PDF of 3 pages",
        "I read second.txt (1 line)",
    ]
    if provider == "ollama":  # images travel apart from the text, before it
        lines.insert(0, lines.pop(1))
    assert _answer(await _run(_with(sim, provider, *atts))) == "\n".join(lines)


@pytest.mark.parametrize(
    ("provider", "size"),
    [
        ("anthropic", (1568, 1176)),
        ("openai", (2048, 1536)),
        ("gemini", (3072, 2304)),
        ("ollama", (2048, 1536)),
    ],
)
async def test_a_large_photo_is_downscaled_for_each_provider(
    sim: Any, provider: str, size: tuple[int, int]
) -> None:
    from desktop_app.core.attachments import attachment_from_bytes

    photo = attachment_from_bytes(png_bytes(4000, 3000), "photo.png")
    answer = _answer(await _run(_with(sim, provider, photo)))
    width, height = size
    assert answer.startswith(f"I see an image of {width}×{height} pixels (")
    sent = _sent_images(provider, sim.chat_requests[-1].json)
    assert len(sent) == 1
    with Image.open(io.BytesIO(sent[0])) as img:
        assert img.size == size and img.format == "JPEG"
    assert answer == f"I see an image of {width}×{height} pixels ({len(sent[0])} bytes)"


def _sent_images(provider: str, body: dict[str, Any]) -> list[bytes]:
    if provider == "openai":
        urls = [
            p["image_url"]["url"]
            for p in body["messages"][-1]["content"]
            if p["type"] == "image_url"
        ]
        return [base64.b64decode(u.partition(",")[2]) for u in urls]
    if provider == "anthropic":
        blocks = body["messages"][-1]["content"]
        return [base64.b64decode(b["source"]["data"]) for b in blocks if b["type"] == "image"]
    if provider == "gemini":
        parts = body["contents"][-1]["parts"]
        return [base64.b64decode(p["inline_data"]["data"]) for p in parts if "inline_data" in p]
    return [base64.b64decode(i) for i in body["messages"][-1].get("images", [])]


async def _post_unfitted(sim: Any, request: ChatRequest) -> httpx.Response:
    """The request exactly as the provider's body shapes it, with no fitting: as a client
    that does not downscale would send it."""
    provider = get_provider(request.provider)
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            provider.url(request),
            content=provider.encode_body(request),
            headers=provider.headers("sk-test-key", stream=request.stream),
        )


async def test_anthropic_refuses_an_image_over_5_mb_and_rill_fits_it(sim: Any) -> None:
    from desktop_app.core.attachments import attachment_from_bytes

    noisy = attachment_from_bytes(png_bytes(1500, 1500, noise=True), "noise.png")
    assert noisy.size > 5 * 1024 * 1024
    request = _with(sim, "anthropic", noisy)
    response = await _post_unfitted(sim, request)
    assert response.status_code == 400
    err = response.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["message"] == (
        f"messages.0.content.0.image.source.base64: image exceeds 5 MB maximum: "
        f"{noisy.size} bytes > 5242880 bytes"
    )
    answer = _answer(await _run(request))
    sent = _sent_images("anthropic", sim.chat_requests[-1].json)[0]
    assert len(sent) <= 5 * 1024 * 1024
    assert answer == f"I see an image of 1500×1500 pixels ({len(sent)} bytes)"


async def test_anthropic_refuses_a_side_over_8000_px_and_rill_fits_it(sim: Any) -> None:
    from desktop_app.core.attachments import attachment_from_bytes

    strip = attachment_from_bytes(png_bytes(9000, 40), "strip.png")
    request = _with(sim, "anthropic", strip)
    response = await _post_unfitted(sim, request)
    assert response.status_code == 400
    assert "exceed max allowed size: 8000 pixels" in response.json()["error"]["message"]
    answer = _answer(await _run(request))
    assert answer.startswith("I see an image of 1568×7 pixels (")


async def test_openai_refuses_an_image_over_20_mb_and_rill_fits_it(sim: Any) -> None:
    from desktop_app.core.attachments import AttachmentLimits, attachment_from_bytes

    # past Rill's own 20 MB per image file too: attached here under a higher limit
    limits = AttachmentLimits(image_bytes=30 * 1024 * 1024)
    huge = attachment_from_bytes(png_bytes(2700, 2700, noise=True), "huge.png", limits=limits)
    assert huge.size > 20 * 1024 * 1024
    request = _with(sim, "openai", huge)
    response = await _post_unfitted(sim, request)
    assert response.status_code == 400
    err = response.json()["error"]
    assert err["type"] == "invalid_request_error" and "20 MB" in err["message"]
    answer = _answer(await _run(request))
    assert answer.startswith("I see an image of 2048×2048 pixels (")


async def test_gemini_refuses_more_than_20_mb_inline_and_rill_fits_them(sim: Any) -> None:
    from desktop_app.core.attachments import attachment_from_bytes

    images = tuple(
        attachment_from_bytes(png_bytes(1200, 1200, noise=True), f"n{i}.png") for i in range(5)
    )
    request = _with(sim, "gemini", *images)
    response = await _post_unfitted(sim, request)
    assert response.status_code == 400
    err = response.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["message"] == "Request payload size exceeds the limit: 20971520 bytes."
    answer = _answer(await _run(request))
    lines = answer.split("\n")
    assert len(lines) == 5
    assert all(line.startswith("I see an image of 1200×1200 pixels (") for line in lines)
    sent = _sent_images("gemini", sim.chat_requests[-1].json)
    assert sum(len(base64.b64encode(s)) for s in sent) <= 20 * 1024 * 1024


async def test_anthropic_refuses_over_100_pdf_pages_a_request_and_rill_sends_older_ones_as_text(
    sim: Any,
) -> None:
    from desktop_app.core.attachments import attachment_from_bytes

    old = attachment_from_bytes(pdf_bytes([f"Old page {i}" for i in range(80)]), "old.pdf")
    new = attachment_from_bytes(pdf_bytes([f"New page {i}" for i in range(60)]), "new.pdf")
    request = replace(
        request_for(sim, "anthropic", "and this one?"),
        messages=(
            Message("user", "read this", attachments=(old,)),
            Message("assistant", "I read a PDF of 80 pages"),
            Message("user", "and this one?", attachments=(new,)),
        ),
    )
    response = await _post_unfitted(sim, request)
    assert response.status_code == 400
    err = response.json()["error"]
    assert err == {
        "type": "invalid_request_error",
        "message": "A maximum of 100 PDF pages may be provided.",
    }
    # the newest PDF stays a document; the older one goes as its text, which still fits
    assert _answer(await _run(request)) == "I read a PDF of 60 pages"
    sent = sim.chat_requests[-1].json["messages"]
    assert sent[2]["content"][0]["type"] == "document"
    first = sent[0]["content"][0]
    assert first["type"] == "text"
    assert first["text"].startswith("File: old.pdf (PDF, 80 pages)")
    assert "--- page 80 ---" in first["text"] and "Old page 79" in first["text"]


def test_a_request_keeps_the_newest_pdfs_as_documents_within_each_providers_pages() -> None:
    from desktop_app.core.attachments import documents_for

    def pdf(name: str, pages: int) -> Attachment:
        return Attachment("0" * 64, name, "pdf", "application/pdf", 1000, pages=pages)

    files = (pdf("a", 30), pdf("b", 50), pdf("c", 40), pdf("d", 20))
    as_text = {a.name for a in documents_for(files, "anthropic") if a.as_text}
    # newest first: d and c (60 pages) stay; b would make 110 and goes as text; a still fits
    assert as_text == {"b"}
    assert not any(a.as_text for a in documents_for(files, "gemini"))  # 1,000 pages
    assert documents_for(files, "openai") == files  # PDFs go as text there anyway
    assert documents_for((pdf("big", 101),), "anthropic")[0].as_text


async def test_a_file_without_its_content_fails_with_a_sentence(sim: Any) -> None:
    att = Attachment(sha256="0" * 64, name="gone.png", kind="image", mime="image/png", size=10)
    events = await _run(_with(sim, "openai", att))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert str(failed.error).startswith("gone.png cannot be sent: Rill no longer has its content")
    assert sim.chat_requests == []


async def test_only_user_messages_carry_files_and_earlier_ones_stay_in_context(
    sim: Any, tmp_path: Path
) -> None:
    files = _files(tmp_path)
    request = request_for(sim, "anthropic", "and now?")
    history = (
        Message("user", "look", attachments=(files["image"],)),
        Message("assistant", "I see an image"),
        Message("user", "and this?", attachments=(files["text"],)),
    )
    request = replace(request, messages=history)
    assert _answer(await _run(request)) == "I read notes.md (4 lines)"
    first = sim.chat_requests[-1].json["messages"][0]["content"]
    assert first[0]["type"] == "image" and first[-1] == {"type": "text", "text": "look"}


def test_fit_request_changes_nothing_without_files() -> None:
    request = ChatRequest("openai", "http://x", "m", (Message("user", "hi"),))
    assert fit_request(request, "openai") is request


async def test_the_official_openai_sdk_sends_files_the_simulator_reads(
    sim: Any, tmp_path: Path
) -> None:
    import openai

    files = _files(tmp_path)
    att, pdf = files["image"], files["pdf"]
    client = openai.AsyncOpenAI(base_url=sim.base_url("openai"), api_key="sk-test-key")
    try:
        reply = await client.chat.completions.create(
            model="sim-small",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{_b64(att)}"},
                        },
                        {
                            "type": "file",
                            "file": {
                                "filename": "report.pdf",
                                "file_data": f"data:application/pdf;base64,{_b64(pdf)}",
                            },
                        },
                    ],
                }
            ],
        )
    finally:
        await client.close()
    assert reply.choices[0].message.content == _line("image", att) + "\nI read a PDF of 3 pages"
    sent = json.loads(sim.chat_requests[-1].body)
    assert sent["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png")


async def test_a_reply_continued_after_a_drop_sends_the_fitted_image_again(sim: Any) -> None:
    from desktop_app.core.attachments import attachment_from_bytes
    from desktop_app.core.events import Resumed
    from desktop_app.simulator import Fault

    noisy = attachment_from_bytes(png_bytes(1500, 1500, noise=True), "noise.png")
    sim.script(Fault(drop_after=5))
    engine = engine_for(replace(NO_RETRY, max_retries=2, mid_stream="continue"))
    try:
        events = await collect(engine.stream(_with(sim, "anthropic", noisy)))
    finally:
        await engine.aclose()
    assert any(isinstance(e, Resumed) for e in events)
    first, second = (
        base64.b64decode(r.json["messages"][0]["content"][0]["source"]["data"])
        for r in sim.chat_requests
    )
    assert first == second and len(second) <= 5 * 1024 * 1024
    assert sim.chat_requests[1].json["messages"][-1]["role"] == "assistant"
    assert _answer(events) == f"I see an image of 1500×1500 pixels ({len(second)} bytes)"


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "image_url", "image_url": "data:image/png;base64,!!!"}],
        [{"type": "image_url", "image_url": {"url": 5}}],
        [{"type": "image", "source": "x"}, {"type": "document", "source": {"type": "base64"}}],
        [{"type": "file", "file": ["x"]}, 7, None, "text"],
        [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}],
    ],
)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_simulator_reads_broken_files_as_a_400_or_nothing(
    provider: str, content: list[Any]
) -> None:
    """Whatever shape a client sends, the simulator answers lines or a provider's 400, and
    never fails itself."""
    from desktop_app.simulator.attachments import attachment_lines
    from desktop_app.simulator.protocols import BadRequest

    if provider == "gemini":
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": content}]}
    elif provider == "ollama":
        body = {"messages": [{"role": "user", "content": "hi", "images": content}]}
    else:
        body = {"messages": [{"role": "user", "content": content}]}
    try:
        lines = attachment_lines(provider, body)
    except BadRequest as exc:
        assert str(exc)
    else:
        assert isinstance(lines, tuple)


@pytest.mark.parametrize(
    ("model", "vision"),
    [("sim-small", False), ("sim-vision", True), ("qwen2.5-vl", True), ("llava:7b", True)],
)
async def test_the_simulators_ollama_lists_vision_for_vision_models(
    model: str, vision: bool
) -> None:
    from desktop_app.core.context_window import ContextWindows
    from desktop_app.simulator import Simulator

    engine = engine_for(NO_RETRY)
    async with Simulator(tokens_per_s=0, models=(model,)) as sim:
        try:
            limits = await ContextWindows(engine).limits("ollama", sim.base_url("ollama"), model)
        finally:
            await engine.aclose()
    assert limits.vision is vision


def test_the_simulator_serves_the_models_it_is_told() -> None:
    from desktop_app.simulator.__main__ import _parser

    assert _parser().parse_args([]).models == ("sim-small", "sim-large")
    args = _parser().parse_args(["--models", "sim-small, sim-vision"])
    assert args.models == ("sim-small", "sim-vision")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--models", " , "])
