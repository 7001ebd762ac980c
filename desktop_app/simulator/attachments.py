"""Files in a chat request, in each protocol's own shape, and the simulator's answer to them.

The simulator reads the last user message's files and answers one line for each, in the
order the request holds them (Ollama's ``images`` come before the text of its message):

- an image: ``I see an image of W×H pixels (N bytes)`` (its header read, N the bytes
  decoded from base64),
- a text file sent as a block ``File: NAME`` and a fenced body: ``I read NAME (N lines)``,
- a PDF, as a document or as such a block with ``--- page N ---`` markers:
  ``I read a PDF of N pages``.

An image past what the provider documents (Anthropic: 5 MB and 8000 px a side; OpenAI:
20 MB; Gemini: 20 MB of inline data in one request) is refused with the provider's own
400, so a client that does not fit its images fails here as it would there.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any, Final

from desktop_app.simulator.protocols import BadRequest

MB: Final = 1024 * 1024
ANTHROPIC_IMAGE_BYTES: Final = 5 * MB
ANTHROPIC_IMAGE_EDGE: Final = 8000
ANTHROPIC_PDF_PAGES: Final = 100
OPENAI_IMAGE_BYTES: Final = 20 * MB
GEMINI_INLINE_BYTES: Final = 20 * MB

_BLOCK: Final = re.compile(
    r"^File: (?P<name>[^\n]*)\n(?P<fence>`{3,})[^\n`]*\n(?P<body>.*?)\n?(?P=fence)$",
    re.MULTILINE | re.DOTALL,
)
_PDF_HEADER: Final = re.compile(r" \(PDF, \d+ pages?\)$")
_PAGE: Final = re.compile(r"^--- page \d+ ---$", re.MULTILINE)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def text_lines(text: str) -> list[str]:
    """The answer lines for the file blocks in ``text``."""
    out: list[str] = []
    for match in _BLOCK.finditer(text):
        name, body = match["name"], match["body"]
        if _PDF_HEADER.search(name):
            out.append(f"I read a PDF of {_plural(len(_PAGE.findall(body)), 'page')}")
        else:
            out.append(f"I read {name} ({_plural(len(body.splitlines()), 'line')})")
    return out


def _decoded(data: Any, refuse: str) -> bytes:
    if not isinstance(data, str):
        raise BadRequest(refuse)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(refuse) from None


def image_size(data: bytes, refuse: str) -> tuple[int, int]:
    """Width and height from an image's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP", "GIF")) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise BadRequest(refuse) from None


def pdf_pages(data: bytes, refuse: str) -> int:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError):
        raise BadRequest(refuse) from None


def _image_line(data: bytes, refuse: str) -> str:
    width, height = image_size(data, refuse)
    return f"I see an image of {width}×{height} pixels ({len(data)} bytes)"


def _last_user(messages: list[Any], role_key: str = "role") -> tuple[int, dict[str, Any]]:
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get(role_key, "user") == "user":
            return index, message
    return -1, {}


def attachment_lines(protocol: str, body: Any) -> tuple[str, ...]:
    """The answer lines for the files of the last user message of a chat request body;
    raises :class:`BadRequest` (the provider's words) for one it would refuse."""
    if not isinstance(body, dict):
        return ()
    if protocol == "gemini":
        return _gemini(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ()
    index, message = _last_user(messages)
    content = message.get("content")
    if protocol == "ollama":
        return _ollama(message)
    if not isinstance(content, list):
        return tuple(text_lines(content)) if isinstance(content, str) else ()
    if protocol == "anthropic":
        _anthropic_pages(messages)
        return _anthropic(index, content)
    return _openai(content)


def _openai(content: list[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            out += text_lines(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url.startswith("data:"):
                continue  # a web address: the simulator fetches nothing
            unsupported = (
                "You uploaded an unsupported image. Please make sure your image has of one "
                "the following formats: ['png', 'jpeg', 'gif', 'webp']."
            )
            _, _, encoded = url.partition(";base64,")
            data = _decoded(encoded, unsupported)
            if len(data) > OPENAI_IMAGE_BYTES:
                raise BadRequest(
                    f"Invalid image: the image is {len(data)} bytes, and the limit is "
                    f"{OPENAI_IMAGE_BYTES} bytes (20 MB) per image."
                )
            out.append(_image_line(data, unsupported))
        elif kind == "file":
            file = part.get("file")
            url = file.get("file_data") if isinstance(file, dict) else None
            if isinstance(url, str) and url.startswith("data:application/pdf;base64,"):
                refuse = "The file could not be parsed as a PDF."
                data = _decoded(url.partition(";base64,")[2], refuse)
                out.append(f"I read a PDF of {_plural(pdf_pages(data, refuse), 'page')}")
    return tuple(out)


def _anthropic_pages(messages: list[Any]) -> None:
    """Anthropic reads at most :data:`ANTHROPIC_PDF_PAGES` pages of PDF documents in one
    request, over all its messages."""
    pages = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict) or block.get("type") != "document":
                continue
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "base64":
                refuse = "The PDF specified was not valid."
                pages += pdf_pages(_decoded(source.get("data"), refuse), refuse)
    if pages > ANTHROPIC_PDF_PAGES:
        raise BadRequest(f"A maximum of {ANTHROPIC_PDF_PAGES} PDF pages may be provided.")


def _anthropic(message_index: int, content: list[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        where = f"messages.{message_index}.content.{index}"
        if kind == "text" and isinstance(block.get("text"), str):
            out += text_lines(block["text"])
        elif kind in ("image", "document"):
            source = block.get("source") or {}
            if not isinstance(source, dict) or source.get("type") != "base64":
                continue
            if kind == "document":
                refuse = f"{where}.pdf.source.base64.data: The PDF specified was not valid."
                data = _decoded(source.get("data"), refuse)
                out.append(f"I read a PDF of {_plural(pdf_pages(data, refuse), 'page')}")
                continue
            refuse = f"{where}.image.source.base64.data: Could not process image"
            data = _decoded(source.get("data"), refuse)
            if len(data) > ANTHROPIC_IMAGE_BYTES:
                raise BadRequest(
                    f"{where}.image.source.base64: image exceeds 5 MB maximum: "
                    f"{len(data)} bytes > {ANTHROPIC_IMAGE_BYTES} bytes"
                )
            width, height = image_size(data, refuse)
            if max(width, height) > ANTHROPIC_IMAGE_EDGE:
                raise BadRequest(
                    f"{where}.image.source.base64.data: At least one of the image dimensions "
                    f"exceed max allowed size: {ANTHROPIC_IMAGE_EDGE} pixels"
                )
            out.append(f"I see an image of {width}×{height} pixels ({len(data)} bytes)")
    return tuple(out)


def _inline(part: dict[str, Any]) -> dict[str, Any] | None:
    inline = part.get("inline_data", part.get("inlineData"))
    return inline if isinstance(inline, dict) else None


def _gemini(body: dict[str, Any]) -> tuple[str, ...]:
    contents = body.get("contents")
    if not isinstance(contents, list):
        return ()
    inline_total = 0
    for content in contents:
        for part in (content.get("parts") if isinstance(content, dict) else None) or ():
            inline = _inline(part) if isinstance(part, dict) else None
            if inline is not None and isinstance(inline.get("data"), str):
                inline_total += len(inline["data"])
    if inline_total > GEMINI_INLINE_BYTES:
        raise BadRequest(f"Request payload size exceeds the limit: {GEMINI_INLINE_BYTES} bytes.")
    _, message = _last_user(contents)
    parts = message.get("parts")
    out: list[str] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            out += text_lines(part["text"])
            continue
        inline = _inline(part)
        if inline is None:
            continue
        mime = inline.get("mime_type", inline.get("mimeType"))
        refuse = "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
        if mime == "application/pdf":
            refuse = "The document has no pages."
            data = _decoded(inline.get("data"), refuse)
            out.append(f"I read a PDF of {_plural(pdf_pages(data, refuse), 'page')}")
        elif isinstance(mime, str) and mime.startswith("image/"):
            out.append(_image_line(_decoded(inline.get("data"), refuse), refuse))
        else:
            raise BadRequest(f"Unsupported MIME type: {mime}")
    return tuple(out)


def _ollama(message: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    images = message.get("images")
    for encoded in images if isinstance(images, list) else ():
        refuse = "illegal base64 data at input byte 0"
        data = _decoded(encoded, refuse)
        out.append(_image_line(data, "image: unknown format"))
    content = message.get("content")
    if isinstance(content, str):
        out += text_lines(content)
    return tuple(out)
