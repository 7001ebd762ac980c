"""Files sent with a prompt: read safely, recognised, bounded, and fitted to each provider.

:func:`read_attachment` reads a file the user named into an :class:`Attachment` with its
bytes; :func:`attachment_from_bytes` does the same for bytes from the clipboard. Either
refuses what Rill cannot or should not send with :class:`AttachmentRefused`, whose text is
a sentence naming the file, the limit and what was found.

Only regular files are read: the path is resolved (a symlink is followed and its target
checked), opened without blocking (a FIFO never hangs the caller) and checked with
``fstat``; reading stops one byte past the limit, so ``/dev/zero`` or a file that grows
while it is read costs no more than the limit.

The kind comes from the content first (the magic bytes of PNG, JPEG, WebP, GIF and PDF),
then from the name: a file named like an image or a PDF that is not one is refused, and
anything else is text when its first 8 KB hold no NUL byte (decoded as UTF-8, with
U+FFFD for what is not).

Images are measured from their header before any pixel is decoded, so a decompression
bomb (a few KB that would decode to gigabytes) is refused unread. An animated image keeps
its first frame, sent as PNG.

:func:`fit_image` downscales and re-encodes an image to what a provider takes. It is CPU
work (tens of milliseconds for a photo): the engine runs it in a worker thread while it
prepares a request, never on the event loop or the Qt thread.
"""

from __future__ import annotations

import hashlib
import io
import math
import mimetypes
import os
import re
import stat
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from desktop_app.core.errors import RillError
from desktop_app.core.text import valid_text
from desktop_app.core.types import (
    CHARS_PER_TOKEN,
    Attachment,
    AttachmentKind,
    ChatRequest,
    TokenUsage,
    provider_title,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

__all__ = [
    "DOCUMENT_PAGES",
    "PROVIDER_IMAGE_LIMITS",
    "SUPPORTED_SENTENCE",
    "AttachmentLimits",
    "AttachmentRefused",
    "ImageLimit",
    "attachment_from_bytes",
    "check_total",
    "documents_for",
    "estimate_tokens",
    "fit_image",
    "fit_images",
    "fit_request",
    "forget_fitted",
    "human_size",
    "image_tokens",
    "pdf_block",
    "pdf_text",
    "read_attachment",
    "safe_name",
    "text_block",
]

MB: Final = 1024 * 1024
SUPPORTED_SENTENCE: Final = (
    "Rill can attach images (PNG, JPEG, WebP, GIF), text and code files, and PDFs."
)

HEAD_BYTES: Final = 8192
"""The bytes read first: enough for every magic number and for the NUL test of text."""


class AttachmentRefused(RillError):
    """A file Rill does not send; ``str(err)`` names the file and says why."""


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """What one attachment, and one message's attachments together, may be."""

    image_bytes: int = 20 * MB
    image_pixels: int = 50_000_000
    """Pixels decoded (width × height), read from the header before decoding."""
    text_bytes: int = 5 * MB
    pdf_bytes: int = 50 * MB
    pdf_pages: int = 500
    pdf_text_bytes: int = 2 * MB
    """UTF-8 bytes of the text extracted from a PDF, page markers included."""
    message_bytes: int = 50 * MB
    """All the attachments of one message together."""

    @property
    def largest(self) -> int:
        return max(self.image_bytes, self.text_bytes, self.pdf_bytes)


DEFAULT_LIMITS: Final = AttachmentLimits()


def human_size(size: int) -> str:
    """``size`` bytes as a person reads it: ``512 bytes``, ``3.4 KB``, ``20 MB``."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    if size < MB:
        return f"{size / 1024:.3g} KB"
    return f"{size / MB:.3g} MB"


_UNSAFE_NAME: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
NAME_LIMIT: Final = 200


def safe_name(name: str) -> str:
    """A file name fit to show and to head a block: no folder, no control or bidi
    characters (each becomes ``?``), at most :data:`NAME_LIMIT` characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "attachment"
    name = _UNSAFE_NAME.sub("?", name)
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"


# ---------------------------------------------------------------------------- reading


def read_attachment(
    path: str | os.PathLike[str], *, limits: AttachmentLimits = DEFAULT_LIMITS
) -> Attachment:
    """The file at ``path`` as an :class:`Attachment` with its bytes in ``data``.

    Raises :class:`AttachmentRefused` (a sentence naming the file) for a file that is
    missing, unreadable, not a regular file, of a kind Rill does not send, over a limit,
    or damaged."""
    given = Path(path)
    name = safe_name(given.name)
    try:
        target = given.resolve(strict=True)
    except FileNotFoundError:
        raise AttachmentRefused(f"{name} cannot be attached: there is no such file.") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a folder without access
        raise AttachmentRefused(f"{name} cannot be attached: {_os_reason(exc)}.") from None
    try:
        fd = os.open(target, _OPEN_FLAGS)
    except PermissionError:
        raise AttachmentRefused(
            f"{name} cannot be attached: Rill has no permission to read it.",
            action="Check the file's permissions.",
        ) from None
    except OSError as exc:
        raise AttachmentRefused(f"{name} cannot be attached: {_os_reason(exc)}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AttachmentRefused(
                f"{name} cannot be attached: it is {_file_type(info.st_mode)}, "
                "and Rill attaches only regular files."
            )
        head = _read_capped(fd, HEAD_BYTES)
        kind, _ = _detect(head, name)
        cap = _byte_limit(kind, limits)
        if info.st_size > cap:
            raise _too_large(name, kind, cap, info.st_size)
        data = head + _read_capped(fd, cap + 1 - len(head)) if len(head) == HEAD_BYTES else head
    except OSError as exc:
        raise AttachmentRefused(f"{name} cannot be read: {_os_reason(exc)}.") from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise _too_large(name, kind, cap, len(data), grew=True)
    return attachment_from_bytes(data, name, limits=limits)


_OPEN_FLAGS: Final = os.O_RDONLY | sum(
    getattr(os, flag, 0)
    for flag in ("O_BINARY", "O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY", "O_NOFOLLOW")
)
"""Read only, bytes as they are (Windows), never waiting for a writer (a FIFO), never
becoming a terminal's, and not through a link (the path is resolved already)."""


def attachment_from_bytes(
    data: bytes,
    name: str,
    *,
    limits: AttachmentLimits = DEFAULT_LIMITS,
) -> Attachment:
    """``data`` (a pasted image, a file already read) as an :class:`Attachment` named
    ``name``; the same checks as :func:`read_attachment` but for the file system ones."""
    name = safe_name(name)
    kind, mime = _detect(data[:HEAD_BYTES], name)
    cap = _byte_limit(kind, limits)
    if len(data) > cap:
        raise _too_large(name, kind, cap, len(data))
    if kind == "image":
        return _image(data, name, mime, limits)
    if kind == "pdf":
        return _pdf(data, name, limits)
    return Attachment(
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        kind="text",
        mime=mime,
        size=len(data),
        data=data,
    )


def check_total(
    attachments: Sequence[Attachment], limits: AttachmentLimits = DEFAULT_LIMITS
) -> None:
    """Raise :class:`AttachmentRefused` when ``attachments`` together pass the limit of
    one message."""
    total = sum(a.size for a in attachments)
    if total > limits.message_bytes:
        raise AttachmentRefused(
            f"These {len(attachments)} attachments come to {human_size(total)}, more than "
            f"the {human_size(limits.message_bytes)} one message can carry.",
            action="Send some of them with another message.",
        )


def _read_capped(fd: int, most: int) -> bytes:
    """At most ``most`` bytes from ``fd``, fewer only at the end of the file."""
    parts: list[bytes] = []
    left = most
    while left > 0:
        piece = os.read(fd, min(left, 1 << 20))
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError):
        return "its link leads round in a loop"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "the system would not open it"


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


_KIND_WORDS: Final[dict[str, str]] = {"image": "an image", "text": "a text file", "pdf": "a PDF"}


def _byte_limit(kind: AttachmentKind, limits: AttachmentLimits) -> int:
    return {"image": limits.image_bytes, "text": limits.text_bytes, "pdf": limits.pdf_bytes}[kind]


def _too_large(
    name: str, kind: AttachmentKind, cap: int, found: int, *, grew: bool = False
) -> AttachmentRefused:
    found_text = (
        f"more than {human_size(cap)} (it grew while it was read)" if grew else human_size(found)
    )
    return AttachmentRefused(
        f"{name} is too large to attach: {_KIND_WORDS[kind]} may be at most "
        f"{human_size(cap)}, and this one is {found_text}."
    )


# ------------------------------------------------------------------------ recognising

_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)
_IMAGE_EXTENSIONS: Final = {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif"}
_BINARY_EXTENSIONS: Final = {
    ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".ico", ".psd", ".zip", ".gz",
    ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".exe", ".dll", ".so", ".dylib", ".bin",
    ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods", ".odp", ".epub",
    ".mp3", ".mp4", ".mov", ".avi", ".mkv", ".wav", ".flac", ".ogg", ".m4a", ".webm",
    ".sqlite", ".sqlite3", ".db", ".class", ".jar", ".pyc", ".o", ".a", ".iso", ".dmg",
}  # fmt: skip
"""Names of files that are never text, even when their first bytes hold no NUL."""

_TEXT_MIMES: Final = {
    "application/json", "application/xml", "application/javascript", "application/x-sh",
    "application/toml", "application/x-yaml", "application/yaml", "application/sql",
    "image/svg+xml",
}  # fmt: skip


def _magic_mime(head: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _detect(head: bytes, name: str) -> tuple[AttachmentKind, str]:
    """The kind and MIME type of a file from its first bytes, then its name."""
    mime = _magic_mime(head)
    if mime == "application/pdf":
        return "pdf", mime
    if mime is not None:
        return "image", mime
    suffix = Path(name).suffix.lower()
    if suffix in _IMAGE_EXTENSIONS or suffix == ".pdf":
        what = "a PDF" if suffix == ".pdf" else f"a {suffix[1:].upper()} image"
        raise AttachmentRefused(
            f"{name} cannot be attached: it is named like {what}, but its content is not one."
        )
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if suffix in _BINARY_EXTENSIONS or (b"\x00" in head and not utf16):
        raise AttachmentRefused(
            f"{name} cannot be attached: it is not a kind of file Rill sends. {SUPPORTED_SENTENCE}"
        )
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed and (guessed.startswith("text/") or guessed in _TEXT_MIMES):
        return "text", guessed
    return "text", "text/plain"


# -------------------------------------------------------------------------------- images


IMAGE_DECODERS: Final = ("PNG", "JPEG", "WEBP", "GIF")
"""The only Pillow decoders an attached image reaches: whatever its bytes claim, no other
of Pillow's readers (EPS through Ghostscript, for one) ever sees them."""


def _pillow_quiet() -> None:
    """Pillow's own warning for a large image, left unsaid: Rill measures every image from
    its header against its own limit before decoding, and refuses a bomb with a sentence
    (Pillow's error for one past twice its limit still comes, and is caught). Set at each
    read (it is idempotent), since a caller may have reset the filters."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _image(data: bytes, name: str, mime: str, limits: AttachmentLimits) -> Attachment:
    from PIL import Image

    _pillow_quiet()
    width = height = 0
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_DECODERS) as img:
            width, height = img.size
            if width * height > limits.image_pixels:
                raise _bomb(name, width, height, limits)
            # every byte decoded, to know the image is whole; a JPEG at 1/8 of its size
            img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
                data = _encode(img.convert("RGBA"), "PNG")
                mime = "image/png"
    except AttachmentRefused:
        raise
    except Image.DecompressionBombError as exc:
        if not width:
            pixels = re.search(r"\((\d+) pixels\)", str(exc))
            raise AttachmentRefused(
                f"{name} is too large to attach: an image may have at most "
                f"{limits.image_pixels / 1e6:.3g} megapixels, and this one has "
                + (f"{int(pixels[1]) / 1e6:.4g} megapixels." if pixels else "far more.")
            ) from None
        raise _bomb(name, width, height, limits) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise AttachmentRefused(
            f"{name} cannot be attached: it looks like an image but cannot be read ({_short(exc)})."
        ) from None
    return Attachment(
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        kind="image",
        mime=mime,
        size=len(data),
        width=width,
        height=height,
        data=data,
    )


def _bomb(name: str, width: int, height: int, limits: AttachmentLimits) -> AttachmentRefused:
    return AttachmentRefused(
        f"{name} is too large to attach: an image may have at most "
        f"{limits.image_pixels / 1e6:.3g} megapixels, and this one is {width}×{height} "
        f"({width * height / 1e6:.4g} megapixels).",
        action="Scale it down first.",
    )


def _short(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    text = _UNSAFE_NAME.sub("?", text)
    return text if len(text) <= 120 else text[:119] + "…"


def _encode(img: PilImage, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


# ----------------------------------------------------------------------------------- PDF

_PDF_TEXTS: OrderedDict[str, str] = OrderedDict()
_PDF_TEXTS_LOCK: Final = threading.Lock()
_PDF_TEXTS_KEPT: Final = 16


def _pdf(data: bytes, name: str, limits: AttachmentLimits) -> Attachment:
    pages, text = _pdf_extract(data, name, limits)
    sha = hashlib.sha256(data).hexdigest()
    _remember_pdf_text(sha, text)
    return Attachment(
        sha256=sha,
        name=name,
        kind="pdf",
        mime="application/pdf",
        size=len(data),
        pages=pages,
        data=data,
    )


def _remember_pdf_text(sha: str, text: str) -> None:
    with _PDF_TEXTS_LOCK:
        _PDF_TEXTS[sha] = text
        _PDF_TEXTS.move_to_end(sha)
        while len(_PDF_TEXTS) > _PDF_TEXTS_KEPT:
            _PDF_TEXTS.popitem(last=False)


_PDF_FAILURES: Final[tuple[type[BaseException], ...]] = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    AssertionError,
    RecursionError,
    NotImplementedError,
    ArithmeticError,
)
"""What reading a damaged PDF raises besides pypdf's own errors (its parser lets many
through)."""


def _pdf_extract(data: bytes, name: str, limits: AttachmentLimits) -> tuple[int, str]:
    """The page count of a PDF and its text with a ``--- page N ---`` line before each
    page, refused when it is encrypted, damaged or past a limit."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    failures: tuple[type[BaseException], ...] = (PyPdfError, *_PDF_FAILURES)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentRefused(
                f"{name} cannot be attached: the PDF is protected by a password.",
                action="Save a copy without the password and attach that.",
            )
        count = len(reader.pages)
        if count > limits.pdf_pages:
            raise AttachmentRefused(
                f"{name} is too long to attach: a PDF may have at most {limits.pdf_pages} "
                f"pages, and this one has {count}."
            )
        parts: list[str] = []
        used = 0
        for number, page in enumerate(reader.pages, 1):
            piece = f"--- page {number} ---\n{(page.extract_text() or '').strip()}\n"
            used += len(piece.encode("utf-8", "replace"))
            if used > limits.pdf_text_bytes:
                raise AttachmentRefused(
                    f"{name} holds too much text to attach: a PDF may give at most "
                    f"{human_size(limits.pdf_text_bytes)} of text, and this one passes that "
                    f"by page {number} of {count}."
                )
            parts.append(piece)
    except AttachmentRefused:
        raise
    except failures as exc:
        raise AttachmentRefused(
            f"{name} cannot be attached: the PDF is damaged or of a kind Rill cannot read "
            f"({_short(exc)})."
        ) from None
    if count == 0:
        raise AttachmentRefused(f"{name} cannot be attached: the PDF has no pages.")
    return count, valid_text("".join(parts))


def pdf_text(att: Attachment) -> str:
    """The text of a PDF attachment, a ``--- page N ---`` line before each page (read
    again from ``data`` when it is no longer kept)."""
    with _PDF_TEXTS_LOCK:
        kept = _PDF_TEXTS.get(att.sha256)
    if kept is not None:
        return kept
    _, text = _pdf_extract(
        att.data, att.name, AttachmentLimits(pdf_text_bytes=1 << 62, pdf_pages=1 << 62)
    )
    _remember_pdf_text(att.sha256, text)
    return text


# ------------------------------------------------------------------------------- blocks


def _fenced(header: str, body: str, info: str = "") -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    body = body[:-1] if body.endswith("\n") else body
    return f"{header}\n{fence}{info}\n{body}\n{fence}"


def text_block(att: Attachment) -> str:
    """A text attachment as the model reads it: ``File: NAME`` and then the file in a
    fence longer than any run of backticks inside it."""
    if att.data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16, as Windows tools write
        text = att.data.decode("utf-16", "replace")
    else:
        text = att.data.decode("utf-8", "replace").removeprefix("\ufeff")
    return _fenced(f"File: {safe_name(att.name)}", valid_text(text))


def pdf_block(att: Attachment, text: str | None = None) -> str:
    """A PDF as text, for a provider that does not read PDFs: ``File: NAME (PDF, N
    pages)`` and then its text (``text``, else :func:`pdf_text`) in a fence, each page
    after a ``--- page N ---`` line."""
    pages = f"{att.pages} page" + ("" if att.pages == 1 else "s")
    body = pdf_text(att) if text is None else text
    return _fenced(f"File: {safe_name(att.name)} (PDF, {pages})", body)


# ------------------------------------------------------------------------------- tokens

IMAGE_TOKEN_EDGE: Final = 1568
IMAGE_TOKENS_MAX: Final = 1600


def image_tokens(width: int, height: int) -> int:
    """Tokens an image costs by Anthropic's published rule: the image fitted to a long
    edge of 1568 px, then width × height / 750, at most about 1600 (the other providers
    charge within a factor of two of it for the same picture)."""
    if width <= 0 or height <= 0:
        return 0
    scale = min(1.0, IMAGE_TOKEN_EDGE / max(width, height))
    w, h = width * scale, height * scale
    return min(IMAGE_TOKENS_MAX, max(1, math.ceil(w * h / 750)))


PDF_PAGE_TOKENS: Final = 600
"""Tokens a PDF page is taken for when its text is not at hand: a page of prose."""


def estimate_tokens(att: Attachment) -> int:
    """Tokens ``att`` adds to a request: an image by :func:`image_tokens`, a text file by
    the block the model reads (:func:`text_block`; by its size when its bytes are not at
    hand), a PDF by its text with page markers when it has been read in this process, else
    :data:`PDF_PAGE_TOKENS` a page. Never reads a PDF: cheap enough for the window's thread."""
    if att.kind == "image":
        return image_tokens(att.width, att.height)
    if att.kind == "pdf":
        with _PDF_TEXTS_LOCK:
            text = _PDF_TEXTS.get(att.sha256)
        if text is None:
            return max(1, att.pages) * PDF_PAGE_TOKENS
        return TokenUsage.estimate_tokens(pdf_block(att, text))
    if not att.data:
        return -(-att.size // CHARS_PER_TOKEN)
    return TokenUsage.estimate_tokens(text_block(att))


# -------------------------------------------------------------------------------- fitting


@dataclass(frozen=True, slots=True)
class ImageLimit:
    """What one provider takes in one image."""

    long_edge: int
    """Pixels on the longer side Rill sends (the provider's own ceiling or the size past
    which it scales the image down itself, so more pixels would only cost upload time)."""
    max_bytes: int
    """Bytes of one image as sent (before base64)."""
    mimes: frozenset[str]
    """Formats it reads; another is re-encoded as PNG or JPEG."""
    request_bytes: int = 0
    """Bytes of all inline files of one request together, after base64 (0: no such limit)."""


_COMMON: Final = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})

PROVIDER_IMAGE_LIMITS: Final[dict[str, ImageLimit]] = {
    "anthropic": ImageLimit(long_edge=1568, max_bytes=5 * MB, mimes=_COMMON, request_bytes=32 * MB),
    "openai": ImageLimit(long_edge=2048, max_bytes=20 * MB, mimes=_COMMON),
    "gemini": ImageLimit(
        long_edge=3072,
        max_bytes=20 * MB,
        mimes=frozenset({"image/png", "image/jpeg", "image/webp"}),
        request_bytes=20 * MB,
    ),
    "ollama": ImageLimit(
        long_edge=2048, max_bytes=20 * MB, mimes=frozenset({"image/png", "image/jpeg"})
    ),
}
"""What each protocol's provider documents, and what Rill sends within it:

- Anthropic, "Vision" (docs.anthropic.com/en/docs/vision,
  platform.claude.com/docs/en/build-with-claude/vision): an image larger than 8000×8000 px
  is rejected, 5 MB at most per image through the API, a request at most 32 MB on the
  standard endpoints; an image whose long edge passes 1568 px (or of more than ~1,600
  tokens) is first scaled down by the service, which only adds latency, so Rill sends at
  most 1568 px. JPEG, PNG, GIF, WebP.
- OpenAI, "Images and vision" (platform.openai.com/docs/guides/images-vision): PNG, JPEG,
  WebP and non-animated GIF, up to 20 MB per image and 50 MB of images per request; high
  detail first fits the image within 2048×2048, so Rill sends at most 2048 px.
- Gemini, "Supported input files and requirements"
  (firebase.google.com/docs/ai-logic/input-file-requirements): inline data may make a
  request of at most 20 MB in all, base64 included; PNG, JPEG, WebP, HEIC, HEIF. Gemini
  reads a large image as tiles of 768×768 px; Rill sends at most 3072 px (four tiles a
  side), which keeps a photo's detail and leaves room in the 20 MB for several.
- Ollama documents no limit (``images``: base64 on the message; its Go server decodes PNG
  and JPEG). Its vision models read 336 to about 1344 px (LLaVA 336/672, Llama 3.2 Vision
  1120, Qwen2.5-VL about 1344), and the local server holds the whole request in memory, so
  Rill sends at most 2048 px, PNG or JPEG.
"""


def fit_image(att: Attachment, provider: str, *, max_bytes: int = 0) -> Attachment:
    """``att`` as ``provider`` takes it: no larger than its long edge and byte limit
    (``max_bytes`` when given and smaller), in a format it reads. An image that already
    fits is returned as it is; otherwise it is downscaled and re-encoded (PNG when it has
    transparency, else JPEG), with a new size and SHA-256. CPU work: call it off the
    event loop."""
    limit = PROVIDER_IMAGE_LIMITS.get(provider)
    if att.kind != "image" or limit is None or not att.data:
        return att
    most = min(limit.max_bytes, max_bytes) if max_bytes else limit.max_bytes
    if (
        max(att.width, att.height) <= limit.long_edge
        and att.size <= most
        and att.mime in limit.mimes
    ):
        return att
    key = (att.sha256, provider, most)
    with _FITTED_LOCK:
        done = _FITTED.get(key)
    if done is not None:
        return replace(done, name=att.name)
    fitted = _fitted(att, limit, most, provider)
    with _FITTED_LOCK:
        _FITTED[key] = fitted
        while len(_FITTED) > _FITTED_KEPT:
            _FITTED.popitem(last=False)
    return fitted


_FITTED: OrderedDict[tuple[str, str, int], Attachment] = OrderedDict()
_FITTED_LOCK: Final = threading.Lock()
_FITTED_KEPT: Final = 8
"""Images fitted lately, by SHA-256, provider and byte limit: a request sent again (the
next round of a tool loop, a regenerated reply) does not fit them again."""


def forget_fitted() -> None:
    """Fit every image afresh from now on (a measurement of the fitting itself)."""
    with _FITTED_LOCK:
        _FITTED.clear()


def _fitted(att: Attachment, limit: ImageLimit, most: int, provider: str) -> Attachment:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(att.data), formats=IMAGE_DECODERS) as img:
        img.seek(0)
        scale = min(1.0, limit.long_edge / max(img.size))
        if scale < 1:  # a JPEG decodes at 1/2, 1/4 or 1/8 of its size at a fraction of the cost
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        img.load()
        alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        upright = ImageOps.exif_transpose(img)  # the pixels as the camera meant them shown
        work = upright.convert("RGBA" if alpha else "RGB")
    edge = min(limit.long_edge, max(work.size))
    while True:
        scale = edge / max(work.size)
        size = (max(1, round(work.width * scale)), max(1, round(work.height * scale)))
        shrunk = (
            work
            if size == work.size
            else work.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        )
        if alpha:
            data, mime = _encode(shrunk, "PNG", optimize=False), "image/png"
        else:
            data, mime = _encode(shrunk, "JPEG", quality=85), "image/jpeg"
        if len(data) <= most or edge <= 64:
            break
        edge = int(edge * 0.75)
    if len(data) > most:
        raise AttachmentRefused(
            f"{att.name} cannot be made small enough for {provider_title(provider)}, "
            f"which takes images of at most {human_size(most)}."
        )
    return replace(
        att,
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        size=len(data),
        width=shrunk.width,
        height=shrunk.height,
        data=data,
    )


def _b64_size(size: int) -> int:
    return 4 * -(-size // 3)


def fit_images(attachments: Iterable[Attachment], provider: str) -> tuple[Attachment, ...]:
    """Every image of ``attachments`` fitted for ``provider`` (:func:`fit_image`), and, for
    a provider whose request has a total limit, the images shrunk further until the inline
    files fit in it together; raises :class:`AttachmentRefused` when they cannot."""
    fitted = tuple(fit_image(a, provider) for a in attachments)
    limit = PROVIDER_IMAGE_LIMITS.get(provider)
    if limit is None or not limit.request_bytes:
        return fitted
    budget = limit.request_bytes - 256 * 1024  # room for the prompt and the JSON around it
    inline = sum(_b64_size(a.size) for a in fitted if a.kind != "text" and not a.as_text)
    if inline <= budget:
        return fitted
    images = [a for a in fitted if a.kind == "image"]
    others = inline - sum(_b64_size(a.size) for a in images)
    if not images or others >= budget:
        raise AttachmentRefused(
            f"These attachments come to {human_size(inline)} as {provider_title(provider)} "
            f"receives them, more than the {human_size(limit.request_bytes)} one request "
            "may carry.",
            action="Send some of them with another message.",
        )
    each = (budget - others) * 3 // 4 // len(images)
    return tuple(fit_image(a, provider, max_bytes=each) if a.kind == "image" else a for a in fitted)


DOCUMENT_PAGES: Final[dict[str, int]] = {"anthropic": 100, "gemini": 1000}
"""Pages of PDF one request may carry as documents: Anthropic reads at most 100 PDF pages a
request, Gemini 1,000 pages a document."""
DOCUMENT_SHARE: Final = 0.75
"""The share of a request's size limit its documents may fill, leaving room for its images
(which are shrunk to fit the rest)."""


def documents_for(files: Sequence[Attachment], provider: str) -> tuple[Attachment, ...]:
    """``files`` (a request's, oldest first) with each PDF that goes to ``provider`` as a
    document kept so, and the others marked ``as_text``. Newest first, a PDF stays a
    document if the request's document pages stay within :data:`DOCUMENT_PAGES` and their
    size within :data:`DOCUMENT_SHARE` of the request's limit with it; one that does not
    fit goes as its text, page by page, which the model still reads (pictures aside)."""
    pages_left = DOCUMENT_PAGES.get(provider)
    if pages_left is None:
        return tuple(files)
    limit = PROVIDER_IMAGE_LIMITS.get(provider)
    bytes_left = limit.request_bytes * DOCUMENT_SHARE if limit and limit.request_bytes else math.inf
    out = list(files)
    for i in reversed(range(len(out))):
        a = out[i]
        if a.kind != "pdf":
            continue
        size = _b64_size(a.size)
        if a.pages <= pages_left and size <= bytes_left:
            pages_left -= a.pages
            bytes_left -= size
        else:
            out[i] = replace(a, as_text=True)
    return tuple(out)


PDF_AS_TEXT: Final = frozenset({"openai", "ollama"})
"""The protocols a PDF is sent to as its text, page by page: OpenAI-compatible servers and
Ollama take no documents. Anthropic (``document``) and Gemini (``inline_data``) get the
PDF itself and read its pages, pictures included."""


def fit_request(request: ChatRequest, provider: str) -> ChatRequest:
    """``request`` with the files of its user messages made ready for ``provider``: every
    image fitted (:func:`fit_images`, over the whole request, so a provider's total limit
    holds for all its messages together) and every PDF's text read. Raises
    :class:`AttachmentRefused` for a file whose bytes are not there or that cannot be
    fitted. CPU work: call it off the event loop."""
    files = [a for m in request.messages if m.role == "user" for a in m.attachments]
    if not files:
        return request
    for a in files:
        if not a.data and a.size > 0:
            raise AttachmentRefused(
                f"{a.name} cannot be sent: Rill no longer has its content.",
                action="Attach the file again.",
            )
    files = list(documents_for(files, provider))
    for a in files:
        if a.kind == "pdf" and (provider in PDF_AS_TEXT or a.as_text):
            pdf_text(a)  # read here, where the CPU time is spent off the event loop
    fitted = iter(fit_images(files, provider))
    messages = tuple(
        replace(m, attachments=tuple(next(fitted) for _ in m.attachments))
        if m.role == "user" and m.attachments
        else m
        for m in request.messages
    )
    return replace(request, messages=messages)
