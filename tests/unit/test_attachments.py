"""Reading files into attachments: kinds, limits, unsafe files, blocks, tokens, fitting."""

from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from desktop_app.core.attachments import (
    PROVIDER_IMAGE_LIMITS,
    SUPPORTED_SENTENCE,
    AttachmentLimits,
    AttachmentRefused,
    attachment_from_bytes,
    check_total,
    estimate_tokens,
    fit_image,
    fit_images,
    image_tokens,
    pdf_block,
    read_attachment,
    text_block,
)
from desktop_app.core.types import Attachment
from tests.attachment_files import bomb_png, pdf_bytes, png_bytes

# --------------------------------------------------------------------------------- kinds


def test_png_jpeg_webp_are_images_with_their_size(tmp_path: Path) -> None:
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        path = tmp_path / f"pic.{fmt.lower()}"
        Image.new("RGB", (321, 123), "teal").save(path, fmt)
        att = read_attachment(path)
        assert (att.kind, att.mime, att.width, att.height) == ("image", mime, 321, 123)
        assert att.data == path.read_bytes()
        assert att.size == path.stat().st_size
        assert len(att.sha256) == 64


def test_kind_comes_from_content_before_the_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    Image.new("RGB", (10, 20)).save(path, "PNG")
    assert read_attachment(path).kind == "image"


def test_a_file_named_like_an_image_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("hello")
    with pytest.raises(AttachmentRefused, match=r"photo\.jpg .*named like a JPG image"):
        read_attachment(path)


@pytest.mark.parametrize("kind", ["TIFF", "BMP", "EPS", "ICO"])
def test_other_image_formats_named_like_ours_never_reach_their_decoders(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "photo.png"
    if kind == "EPS":  # an EPS would go to Ghostscript in Pillow's own reader
        path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    else:
        Image.new("RGB", (16, 16)).save(path, kind)
    with pytest.raises(AttachmentRefused, match=r"photo\.png"):
        read_attachment(path)
    with pytest.raises(AttachmentRefused, match=r"photo\.png"):
        attachment_from_bytes(path.read_bytes(), "photo.png")


def test_animated_gif_keeps_its_first_frame_as_png(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "lime", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    att = read_attachment(path)
    assert (att.kind, att.mime, att.width, att.height) == ("image", "image/png", 40, 30)
    with Image.open(io.BytesIO(att.data)) as img:
        assert getattr(img, "n_frames", 1) == 1
        r, g, b, _ = img.convert("RGBA").getpixel((5, 5))  # type: ignore[misc]
        assert r > 200 and g < 50 and b < 50  # the red first frame, not a later one


def test_text_file_is_text_with_its_mime(tmp_path: Path) -> None:
    path = tmp_path / "main.py"
    path.write_text("print('hi')\n")
    att = read_attachment(path)
    assert (att.kind, att.mime, att.size) == ("text", "text/x-python", 12)


def test_text_that_is_not_utf8_is_decoded_with_replacement(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9\n")
    att = read_attachment(path)
    assert att.kind == "text"
    assert "caf\ufffd" in text_block(att)


def test_binary_files_are_refused_with_what_rill_takes(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(AttachmentRefused) as info:
        read_attachment(path)
    assert "data.bin" in str(info.value) and SUPPORTED_SENTENCE in str(info.value)
    nul = tmp_path / "strange.txt"
    nul.write_bytes(b"abc\x00def")
    with pytest.raises(AttachmentRefused, match=r"strange\.txt"):
        read_attachment(nul)
    zipped = tmp_path / "archive.zip"
    zipped.write_bytes(b"PK-without-nul")
    with pytest.raises(AttachmentRefused, match=r"archive\.zip"):
        read_attachment(zipped)


def test_pdf_pages_and_text_with_page_markers(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf_bytes(["First page words", "Second page words", "Third"]))
    att = read_attachment(path)
    assert (att.kind, att.mime, att.pages) == ("pdf", "application/pdf", 3)
    block = pdf_block(att)
    assert block.startswith("File: report.pdf (PDF, 3 pages)\n```")
    assert "--- page 1 ---\nFirst page words" in block
    assert "--- page 3 ---\nThird" in block


def test_broken_and_encrypted_pdfs_are_sentences(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not a pdf at all\n")
    with pytest.raises(AttachmentRefused, match=r"broken\.pdf .*damaged"):
        read_attachment(broken)
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes(["secret"]))).pages:
        writer.add_page(page)
    writer.encrypt("hunter2")
    out = io.BytesIO()
    writer.write(out)
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(out.getvalue())
    with pytest.raises(AttachmentRefused, match=r"locked\.pdf .*password"):
        read_attachment(locked)


# -------------------------------------------------------------------------------- limits


def test_each_limit_is_a_sentence_naming_file_limit_and_found(tmp_path: Path) -> None:
    text = tmp_path / "big.log"
    text.write_bytes(b"x" * 2048)
    with pytest.raises(AttachmentRefused) as info:
        read_attachment(text, limits=AttachmentLimits(text_bytes=1024))
    assert str(info.value).startswith("big.log is too large to attach")
    assert "1 KB" in str(info.value) and "2 KB" in str(info.value)

    image = tmp_path / "wide.png"
    image.write_bytes(png_bytes(300, 200))
    with pytest.raises(AttachmentRefused, match=r"wide\.png .*0\.05 megapixels.*300×200"):
        read_attachment(image, limits=AttachmentLimits(image_pixels=50_000))
    with pytest.raises(AttachmentRefused, match=r"wide\.png is too large"):
        read_attachment(image, limits=AttachmentLimits(image_bytes=100))

    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(pdf_bytes(["a", "b", "c"]))
    with pytest.raises(AttachmentRefused, match=r"long\.pdf .*at most 2 pages.*has 3"):
        read_attachment(pdf, limits=AttachmentLimits(pdf_pages=2))
    with pytest.raises(AttachmentRefused, match=r"long\.pdf holds too much text"):
        read_attachment(pdf, limits=AttachmentLimits(pdf_text_bytes=20))


def test_total_per_message(tmp_path: Path) -> None:
    one = attachment_from_bytes(b"a" * 600, "a.txt")
    two = attachment_from_bytes(b"b" * 600, "b.txt")
    check_total([one], AttachmentLimits(message_bytes=1000))
    with pytest.raises(AttachmentRefused, match=r"2 attachments come to 1\.17 KB"):
        check_total([one, two], AttachmentLimits(message_bytes=1000))


def test_decompression_bomb_is_refused_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(30000, 30000))
    assert path.stat().st_size < 1_000_000
    started = time.perf_counter()
    with pytest.raises(AttachmentRefused) as info:
        read_attachment(path)
    assert time.perf_counter() - started < 1.0  # 900 megapixels were never decoded
    assert str(info.value) == (
        "bomb.png is too large to attach: an image may have at most 50 megapixels, "
        "and this one has 900 megapixels."
    )
    under_pillow = tmp_path / "wide.png"
    under_pillow.write_bytes(bomb_png(9000, 7000))  # past Rill's limit, under Pillow's own
    with pytest.raises(AttachmentRefused, match=r"wide\.png is too large.*9000×7000 \(63 meg"):
        read_attachment(under_pillow)


# ---------------------------------------------------------------------- unsafe files


NO_FIFOS = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


@NO_FIFOS
def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def attempt() -> None:
        try:
            read_attachment(fifo)
        except BaseException as exc:
            done.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # let the blocked open return before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(done[0], AttachmentRefused)
    assert "pipe.txt" in str(done[0]) and "a pipe (FIFO)" in str(done[0])


@NO_FIFOS
def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "innocent.txt"
    link.symlink_to(fifo)
    with pytest.raises(AttachmentRefused, match=r"innocent\.txt .*a pipe"):
        read_attachment(link)


def test_a_symlink_to_a_file_reads_the_target_under_the_given_name(tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("# hi\n")
    link = tmp_path / "alias.md"
    link.symlink_to(target)
    att = read_attachment(link)
    assert (att.name, att.data) == ("alias.md", b"# hi\n")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")
def test_devices_folders_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(AttachmentRefused, match=r"zero .*a device"):
        read_attachment("/dev/zero")
    with pytest.raises(AttachmentRefused, match="a folder"):
        read_attachment(tmp_path)
    with pytest.raises(AttachmentRefused, match=r"nothing\.txt .*no such file"):
        read_attachment(tmp_path / "nothing.txt")
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    with pytest.raises(AttachmentRefused, match="loop"):
        read_attachment(loop)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_a_permission_sentence(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(AttachmentRefused, match=r"secret\.txt .*permission"):
        read_attachment(path)


def test_a_file_that_grows_while_read_is_capped(tmp_path: Path) -> None:
    """A file whose size on opening is within the limit but which holds more when read
    (here: a sparse file made larger between stat and read is simulated by a limit below
    the real size) is read only to the limit plus one byte."""
    path = tmp_path / "growing.log"
    path.write_bytes(b"y" * 50_000)
    limits = AttachmentLimits(text_bytes=20_000)
    with pytest.raises(AttachmentRefused, match=r"growing\.log is too large"):
        read_attachment(path, limits=limits)


# --------------------------------------------------------------------------- blocks


def test_text_block_fence_outgrows_backticks_and_name_is_clean() -> None:
    att = attachment_from_bytes(b"a ```` run\nand ``` three\n", "evil\nname\x1b[31m.md")
    block = text_block(att)
    header, fence_line, *_ = block.split("\n")
    assert header == "File: evil?name?[31m.md"
    assert fence_line == "`````"
    assert block.endswith("\n`````")
    assert "a ```` run\nand ``` three" in block


def test_token_estimates() -> None:
    assert image_tokens(1000, 1000) == 1334  # 1000·1000/750, under the cap
    assert image_tokens(4000, 3000) == 1600  # fitted to 1568 px, then capped
    assert image_tokens(200, 100) == 27
    text = attachment_from_bytes(b"x" * 400, "x.txt")
    assert estimate_tokens(text) == -(-len(text_block(text)) // 4)
    img = attachment_from_bytes(png_bytes(750, 100), "i.png")
    assert estimate_tokens(img) == 100


# -------------------------------------------------------------------------- fitting


@pytest.mark.parametrize(
    ("provider", "edge"),
    [("anthropic", 1568), ("openai", 2048), ("gemini", 3072), ("ollama", 2048)],
)
def test_fit_image_downscales_to_each_provider(provider: str, edge: int) -> None:
    att = attachment_from_bytes(png_bytes(4000, 1000), "wide.png")
    fitted = fit_image(att, provider)
    assert max(fitted.width, fitted.height) == edge
    assert fitted.width == edge and fitted.height == round(1000 * edge / 4000)
    with Image.open(io.BytesIO(fitted.data)) as img:
        assert img.size == (fitted.width, fitted.height)
    assert fitted.mime == "image/jpeg" and fitted.sha256 != att.sha256
    assert fitted.size == len(fitted.data) <= PROVIDER_IMAGE_LIMITS[provider].max_bytes


def test_fit_image_keeps_what_fits_and_converts_what_a_provider_cannot_read() -> None:
    small = attachment_from_bytes(png_bytes(300, 200), "small.png")
    assert fit_image(small, "anthropic") is small
    out = io.BytesIO()
    Image.new("RGBA", (50, 40), (1, 2, 3, 100)).save(out, "WEBP")
    webp = attachment_from_bytes(out.getvalue(), "clear.webp")
    assert fit_image(webp, "openai") is webp
    for_ollama = fit_image(webp, "ollama")
    assert (for_ollama.mime, for_ollama.width, for_ollama.height) == ("image/png", 50, 40)


def test_fit_image_shrinks_until_the_bytes_fit() -> None:
    noisy = attachment_from_bytes(png_bytes(1500, 1500, noise=True), "noise.png")
    assert noisy.size > 5 * 1024 * 1024  # past Anthropic's 5 MB
    fitted = fit_image(noisy, "anthropic", max_bytes=300_000)
    assert fitted.size <= 300_000 and max(fitted.width, fitted.height) < 1500


def test_fit_images_keeps_a_gemini_request_under_its_total() -> None:
    images = [
        attachment_from_bytes(png_bytes(1200, 1200, noise=True), f"n{i}.png") for i in range(5)
    ]
    assert sum(a.size for a in images) * 4 // 3 > 20 * 1024 * 1024
    fitted = fit_images(images, "gemini")
    assert sum(4 * -(-a.size // 3) for a in fitted) <= 20 * 1024 * 1024
    assert [a.name for a in fitted] == [a.name for a in images]


# ---------------------------------------------------------------------------- cache key


def test_cache_key_holds_each_attachments_hash_not_its_bytes() -> None:
    from desktop_app.core.cache import cache_key
    from desktop_app.core.types import ChatRequest, Message

    def request(*atts: Attachment) -> ChatRequest:
        return ChatRequest("openai", "http://x/v1", "m", (Message("user", "hi", attachments=atts),))

    one = attachment_from_bytes(png_bytes(10, 10), "a.png")
    two = attachment_from_bytes(png_bytes(10, 11), "a.png")
    plain = cache_key(ChatRequest("openai", "http://x/v1", "m", (Message("user", "hi"),)))
    assert cache_key(request()) == plain  # no attachments: the key of before
    assert len({plain, cache_key(request(one)), cache_key(request(two))}) == 3
    assert cache_key(request(one)) == cache_key(request(replace(one, data=b"")))
    assert cache_key(request(one, two)) != cache_key(request(two, one))


def test_a_photo_is_fitted_upright_by_its_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show the pixels rotated a quarter turn
    out = io.BytesIO()
    Image.new("RGB", (4000, 1000), "white").save(out, "JPEG", exif=exif)
    photo = attachment_from_bytes(out.getvalue(), "turned.jpg")
    assert (photo.width, photo.height) == (4000, 1000)
    fitted = fit_image(photo, "anthropic")
    assert (fitted.width, fitted.height) == (392, 1568)
    with Image.open(io.BytesIO(fitted.data)) as img:
        assert img.size == (392, 1568)
        assert img.getexif().get(0x0112) in (None, 1)


def test_estimates_never_read_a_pdf_and_need_no_bytes() -> None:
    pdf = attachment_from_bytes(pdf_bytes(["alpha beta", "gamma"]), "two.pdf")
    assert estimate_tokens(pdf) == -(-len(pdf_block(pdf)) // 4)
    stored = replace(pdf, sha256="f" * 64, data=b"")  # read back from history: no bytes
    assert estimate_tokens(stored) == 2 * 600
    text = attachment_from_bytes(b"y" * 1000, "y.txt")
    assert estimate_tokens(replace(text, data=b"")) == 250


def test_files_past_a_providers_request_limit_are_refused_with_a_sentence() -> None:
    big = 13 * 1024 * 1024
    pdfs = [
        Attachment(f"{i}" * 64, f"scan{i}.pdf", "pdf", "application/pdf", big, pages=1, data=b"%")
        for i in range(2)
    ]
    assert fit_images(pdfs[:1], "anthropic") == tuple(pdfs[:1])
    with pytest.raises(AttachmentRefused) as info:
        fit_images(pdfs, "anthropic")
    assert str(info.value) == (
        "These attachments come to 34.7 MB as Anthropic receives them, more than the 32 MB "
        "one request may carry. Send some of them with another message."
    )
    assert fit_images(pdfs, "openai") == tuple(pdfs)  # sent as their text there


def test_utf16_text_with_its_bom_is_text() -> None:
    att = attachment_from_bytes("héllo\nwörld\n".encode("utf-16"), "windows.log")
    assert att.kind == "text"
    assert text_block(att) == "File: windows.log\n```\nhéllo\nwörld\n```"


def test_an_image_between_rills_and_pillows_limits_warns_nothing(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    path = tmp_path / "large.png"
    path.write_bytes(bomb_png(10000, 10000))  # 100 MP: past Pillow's warning, under its error
    with pytest.raises(AttachmentRefused, match=r"large\.png is too large.*10000×10000"):
        read_attachment(path)
    assert not [w for w in recwarn if "DecompressionBomb" in w.category.__name__]


def test_the_self_test_checks_attaching() -> None:
    from desktop_app.selftest import check_attachments

    assert check_attachments() == "images (PNG, JPEG, WEBP, GIF), fitting, and a PDF's pages read"


def test_an_image_fitted_once_is_not_fitted_again() -> None:
    from desktop_app.core.attachments import forget_fitted

    forget_fitted()
    att = attachment_from_bytes(png_bytes(3000, 2000), "big.png")
    first = fit_image(att, "anthropic")
    again = fit_image(replace(att, name="renamed.png"), "anthropic")
    assert again.data is first.data and again.name == "renamed.png"
    forget_fitted()
    fresh = fit_image(att, "anthropic")
    assert fresh.data is not first.data and fresh.data == first.data
