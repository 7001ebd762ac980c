"""Math in replies: typeset inline and display, shown as source while unfinished or bad, in
the theme's colour, copied as LaTeX, and never a way for a reply to name a resource."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication, QImage, QTextDocument, QTextFormat
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from desktop_app.simulator import SimulatorThread
from desktop_app.ui import theme
from desktop_app.ui.chat_view import MessageWidget
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.markdown import MATH_SOURCE, Segmenter, formulas, fragments, split_all
from desktop_app.ui.math_render import (
    MathFailure,
    MathImage,
    MathKey,
    draw,
    inline_padding,
    renderer,
    unsafe_svg,
)
from desktop_app.ui.math_text import Layout
from tests.gui.test_chat import send
from tests.gui.test_look import _ink
from tests.gui.util import streaming_reply

DRAWN_MS = 20_000


def _math(doc: QTextDocument) -> list[tuple[str, str]]:
    """(LaTeX with delimiters, resource name) of every image in ``doc``: all must be formulas."""
    assert len(_images(doc)) == len(formulas(doc))
    return formulas(doc)


def _images(doc: QTextDocument) -> list[int]:
    """The position of every image in ``doc``."""
    return [f.position() for f in fragments(doc) if f.charFormat().isImageFormat()]


def _image(doc: QTextDocument, name: str) -> QImage:
    image = doc.resource(QTextDocument.ResourceType.ImageResource.value, QUrl(name))
    assert isinstance(image, QImage)
    return image


def _echo(qtbot: QtBot, window: MainWindow, text: str) -> MessageWidget:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "/echo " + text)
    reply = window.view.widgets[-1]
    qtbot.waitUntil(lambda: not reply.rendering, timeout=5_000)
    return reply


def _wait_math(qtbot: QtBot, doc: QTextDocument, count: int) -> list[tuple[str, str]]:
    qtbot.waitUntil(lambda: len(_math(doc)) == count, timeout=DRAWN_MS)
    return _math(doc)


@pytest.fixture
def light(qapp: QApplication) -> Iterator[None]:
    theme.apply(qapp, "light")
    yield
    theme.apply(qapp, "light")


def test_inline_and_display_formulas_are_typeset(
    qtbot: QtBot, window: MainWindow, light: None
) -> None:
    text = (
        "Euler wrote $e^{i\\pi}+1=0$ and \\(a^2+b^2=c^2\\).\n\n"
        "The integral:\n\\[\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n\\]\nand $$\\sum_i i$$ too."
    )
    reply = _echo(qtbot, window, text)
    doc = reply.body.document()
    shown = _wait_math(qtbot, doc, 4)
    assert [source for source, _ in shown] == [
        "$e^{i\\pi}+1=0$",
        "\\(a^2+b^2=c^2\\)",
        "\\[\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n\\]",
        "$$\\sum_i i$$",
    ]
    plain = doc.toPlainText()
    # a word joiner keeps the full stop on the formula's line
    assert "Euler wrote \ufffc and \ufffc\u2060." in plain and "where" not in plain
    for _source, name in shown:
        assert name.startswith(renderer().prefix + "/")
        assert not _image(doc, name).isNull()
    # the display formula on lines of its own is a centred block; inline ones sit on the line
    block = doc.begin()
    alignments = {}
    while block.isValid():
        alignments[block.text()] = block.blockFormat().alignment()
        block = block.next()
    assert alignments["\ufffc"] & Qt.AlignmentFlag.AlignHCenter
    inline = doc.find("\ufffc").charFormat().toImageFormat()
    assert inline.verticalAlignment() == inline.VerticalAlignment.AlignMiddle
    assert reply.text() == text  # the Markdown source keeps the LaTeX


def test_prose_dollars_escaped_dollars_and_code_are_not_math(
    qtbot: QtBot, window: MainWindow
) -> None:
    text = (
        "It costs $5 and $10, or $6.50 with tax; \\$7 is \\$7.\n\n"
        "Code `$x$` stays code.\n\n```\n$y$ and $$z$$\n```\n\nIndented:\n\n    $w$ too"
    )
    reply = _echo(qtbot, window, text)
    doc = reply.body.document()
    assert _math(doc) == []
    assert not renderer().busy  # nothing was even asked for
    plain = doc.toPlainText()
    assert "It costs $5 and $10, or $6.50 with tax; $7 is $7." in plain
    assert "Code $x$ stays code." in plain
    assert "$y$ and $$z$$" in plain
    assert "$w$ too" in plain


def test_a_streaming_formula_shows_its_source_until_it_is_closed(qtbot: QtBot, light: None) -> None:
    widget = streaming_reply(qtbot)
    widget.feed("Consider\n$$\n\\int_0^1 f(x)")
    doc = widget.body.document()  # the open paragraph is shown at the end of the body
    qtbot.waitUntil(lambda: "\\int_0^1 f(x)" in doc.toPlainText(), timeout=5_000)
    assert widget.writer.open_text.startswith("Consider")
    assert _math(doc) == []
    cursor = doc.find("\\int_0^1")
    assert cursor.charFormat().fontFixedPitch()  # code style while unfinished
    # a blank line inside the open formula does not end the paragraph
    widget.feed("\n\n+ 1\\,dx")
    qtbot.waitUntil(lambda: "+ 1\\,dx" in doc.toPlainText(), timeout=5_000)
    assert widget.writer.open_text.startswith("Consider")
    assert doc.toPlainText().count("Consider") == 1
    widget.feed("\n$$\n\nDone.\n")
    shown = _wait_math(qtbot, widget.body.document(), 1)
    assert shown[0][0] == "$$\n\\int_0^1 f(x)\n\n+ 1\\,dx\n$$"
    widget.end_stream()
    qtbot.waitUntil(lambda: not widget.rendering, timeout=5_000)
    assert "Done." in widget.body.toPlainText()


def test_formulas_drawn_while_a_paragraph_is_open_keep_the_text_before_and_after(
    qtbot: QtBot, light: None
) -> None:
    """Each formula's image replaces its source in the paragraphs before the open one, and in
    the open one, while it grows: what is shown stays the whole text, every formula drawn."""
    parts = []
    for n in range(12):
        if n % 4 == 3:
            parts.append(f"so that\n\n$$\\sum_{{k=1}}^{{{n}}} k = {n}$$\n\n")
        else:
            parts.append(f"Step {n}: take $x_{{{n}}}^2$, then $y_{{{n}}}$ ")
    text = "".join(parts) + "The end."
    widget = streaming_reply(qtbot)
    at = 0
    while at < len(text):
        widget.feed(text[at : at + 23])
        widget.render_some(1 << 20, float("inf"))
        at += 23
        # the formulas asked for so far are drawn and put in before the next frame
        qtbot.waitUntil(lambda: not renderer().busy, timeout=DRAWN_MS)
    widget.end_stream()
    widget.render_some(1 << 20, float("inf"))
    expected = sum(1 if n % 4 == 3 else 2 for n in range(12))
    shown = _wait_math(qtbot, widget.body.document(), expected)
    plain = widget.body.toPlainText()
    for n in range(12):
        if n % 4 != 3:
            assert f"Step {n}: take" in plain
    assert plain.rstrip().endswith("The end.")
    assert [source for source, _name in shown][:2] == ["$x_{0}^2$", "$y_{0}$"]


def test_segmenter_keeps_an_open_display_formula_in_one_paragraph() -> None:
    segments = split_all("Before\n\\[\na\n\n| b |\n```\n\\]\nAfter\n\nNext")
    assert [s.kind for s in segments] == ["prose", "prose"]
    assert segments[0].text == "Before\n\\[\na\n\n| b |\n```\n\\]\nAfter\n"
    seg = Segmenter()
    assert seg.feed("$$\nx\n\n") == []
    assert seg.tail == "$$\nx\n\n"
    assert [s.kind for s in seg.feed("$$\n\n")] == ["prose"]
    # a stray $$ does not hold the text back for long
    seg = Segmenter()
    out = seg.feed("$$ stray\n" + "words and more words\n\n" * 200)
    assert out and sum(len(s.text) for s in out) > 2_000


def test_bad_latex_shows_as_source_in_code_style(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialogs: list[str] = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: dialogs.append(box.text()) or 0)
    reply = _echo(qtbot, window, "Bad: $\\frac{$ and good: $x_1$.")
    doc = reply.body.document()
    shown = _wait_math(qtbot, doc, 1)
    assert shown[0][0] == "$x_1$"
    qtbot.waitUntil(lambda: not renderer().busy, timeout=DRAWN_MS)
    cursor = doc.find("$\\frac{$")
    assert not cursor.isNull()
    assert cursor.charFormat().fontFixedPitch()
    assert "could not typeset" in cursor.charFormat().toolTip()
    assert dialogs == []


def test_hostile_tex_loads_nothing_and_is_bounded(qtbot: QtBot, window: MainWindow) -> None:
    deep = "x" + "^{x" * 14 + "}" * 14
    text = (
        "$\\href{http://127.0.0.1:9/}{x}$ $\\includegraphics{/etc/passwd}$ "
        f"$\\rule{{100000cm}}{{100000cm}}$ ${'{' * 60}x{'}' * 60}$ ${deep}$ $y$"
    )
    reply = _echo(qtbot, window, text)
    doc = reply.body.document()
    qtbot.waitUntil(lambda: not renderer().busy, timeout=DRAWN_MS)
    shown = [source for source, _ in _math(doc)]
    assert "$y$" in shown
    # too large, nested too deeply and too slow: shown as written, in code style
    for source in ("$\\rule{100000cm}{100000cm}$", f"${'{' * 60}x{'}' * 60}$", f"${deep}$"):
        assert source not in shown
        cursor = doc.find(source)
        assert not cursor.isNull() and cursor.charFormat().fontFixedPitch(), source
    for _source, name in _math(doc):
        image = _image(doc, name)
        assert image.width() * image.height() <= 4_000_000


def test_theme_change_redraws_formulas_in_the_new_text_colour(
    qtbot: QtBot, window: MainWindow, qapp: QApplication, light: None
) -> None:
    reply = _echo(qtbot, window, "Area $\\pi r^2$ here.")
    doc = reply.body.document()
    ((_, name),) = _wait_math(qtbot, doc, 1)
    assert _ink(_image(doc, name)) == {theme.LIGHT.text}
    window.services.config.values["ui.theme"] = "dark"
    window.apply_theme()
    reply = window.view.widgets[-1]

    def dark() -> None:
        found = _math(reply.body.document())
        assert len(found) == 1 and found[0][1] != name

    qtbot.waitUntil(dark, timeout=DRAWN_MS)
    ((_, dark_name),) = _math(reply.body.document())
    assert _ink(_image(reply.body.document(), dark_name)) == {theme.DARK.text}
    window.services.config.values["ui.theme"] = "light"
    window.apply_theme()


def test_copying_a_selected_formula_gives_its_latex(qtbot: QtBot, window: MainWindow) -> None:
    reply = _echo(qtbot, window, "So $x^2$, and\n\n$$\\frac{a}{b}$$\n\nend.")
    _wait_math(qtbot, reply.body.document(), 2)
    reply.body.selectAll()
    reply.body.copy()
    assert QGuiApplication.clipboard().text() == "So $x^2$, and\n$$\\frac{a}{b}$$\nend."
    cursor = reply.body.document().find("\ufffc")
    reply.body.setTextCursor(cursor)
    reply.body.copy()
    assert QGuiApplication.clipboard().text() == "$x^2$"
    # without a formula, copying is Qt's own
    plain = reply.body.document().find("end")
    reply.body.setTextCursor(plain)
    reply.body.copy()
    assert QGuiApplication.clipboard().text() == "end"


def test_a_reply_cannot_name_a_formula_image(qtbot: QtBot, window: MainWindow) -> None:
    first = _echo(qtbot, window, "Known $k^2$.")
    ((_, name),) = _wait_math(qtbot, first.body.document(), 1)
    second = _echo(qtbot, window, f"![stolen]({name}) and ![x](file:///etc/passwd) then $z$.")
    doc = second.body.document()
    shown = _wait_math(qtbot, doc, 1)
    assert [source for source, _ in shown] == ["$z$"]
    assert "stolen" in doc.toPlainText()
    for fragment in fragments(doc):
        fmt = fragment.charFormat()
        if fmt.isImageFormat():
            assert fmt.property(MATH_SOURCE) == "$z$"
    assert QTextFormat.Property.UserProperty + 3 == MATH_SOURCE


def test_a_stored_reply_with_math_is_typeset_when_reopened(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    reply = _echo(qtbot, window, "Stored $s_1$ formula.")
    _wait_math(qtbot, reply.body.document(), 1)
    conversation = window.controller.conversation_id
    assert conversation is not None
    window.new_chat()
    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=5_000):
        window.controller.open_conversation(conversation)
    reopened = window.view.widgets[-1]
    assert [source for source, _ in _wait_math(qtbot, reopened.body.document(), 1)] == ["$s_1$"]


def test_text_rendered_once_gets_its_formulas_without_keeping_its_writer(qtbot: QtBot) -> None:
    from desktop_app.ui.chat_view import DocView
    from desktop_app.ui.tool_card import render_markdown

    view = DocView()
    qtbot.addWidget(view)
    render_markdown(view.document(), "Before the tools: $t_{0} + 1$.")  # as tool steps do
    assert [s for s, _ in _wait_math(qtbot, view.document(), 1)] == ["$t_{0} + 1$"]


def test_a_typesetting_process_that_cannot_start_is_not_tried_for_every_formula(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from desktop_app.ui import math_render

    starts: list[int] = []

    def command() -> list[str]:
        starts.append(1)
        return [sys.executable, "-c", "0"]

    monkeypatch.setattr(math_render, "typesetter_command", command)
    pump = math_render._Pump(None)
    assert pump.typeset(("x", False, 16.0)) == "The formula renderer could not start."
    assert pump.typeset(("y", False, 16.0)) == "The formula renderer could not start."
    assert len(starts) == 1  # no new process was started for the second formula


def test_a_formula_that_takes_too_long_is_abandoned_and_the_next_one_typeset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from desktop_app.ui import math_render
    from desktop_app.ui.math_text import Layout

    monkeypatch.setattr(math_render, "RENDER_TIMEOUT_S", 1.0)
    pump = math_render._Pump(None)
    try:
        assert isinstance(pump.typeset(("x", False, 16.0)), Layout)
        deep = "x" + "^{x" * 14 + "}" * 14
        assert pump.typeset((deep, False, 16.0)) == "This formula took too long to typeset."
        assert isinstance(pump.typeset(("y", False, 16.0)), Layout)
    finally:
        pump._stop_process()


@pytest.mark.parametrize(
    ("ascent", "depth", "x_height"), [(10.0, 3.0, 7), (12.0, 18.0, 7), (5.0, 0.5, 9)]
)
def test_inline_padding_puts_the_formula_baseline_on_the_text_baseline(
    ascent: float, depth: float, x_height: int
) -> None:
    from desktop_app.ui.math_render import inline_padding

    top, bottom = inline_padding(ascent, depth, x_height)
    assert top >= 0 and bottom >= 0 and min(top, bottom) == 0
    height = ascent + depth + top + bottom
    # Qt centres an AlignMiddle object on half the x-height: its ascent is (h + x/2) / 2
    assert ascent + top == pytest.approx((height + x_height / 2) / 2)


def test_a_display_formula_inside_a_line_is_padded_to_the_line(
    qtbot: QtBot, window: MainWindow
) -> None:
    inside = _echo(qtbot, window, "so $$\\frac{a}{b}$$ holds").body.document()
    _wait_math(qtbot, inside, 1)
    fmt = inside.find("\ufffc").charFormat().toImageFormat()
    assert fmt.verticalAlignment() == fmt.VerticalAlignment.AlignMiddle
    alone = _echo(qtbot, window, "$$\\frac{a}{b}$$").body.document()
    _wait_math(qtbot, alone, 1)
    block = alone.find("\ufffc").charFormat().toImageFormat()
    assert block.verticalAlignment() != fmt.VerticalAlignment.AlignMiddle
    assert alone.begin().blockFormat().alignment() & Qt.AlignmentFlag.AlignHCenter
    # the same formula, padded in the line so that its baseline sits on the text's
    assert fmt.height() > block.height() + 1


def test_a_formula_in_a_heading_is_set_at_the_heading_size(
    qtbot: QtBot, window: MainWindow
) -> None:
    doc = _echo(qtbot, window, "# Energy $E=mc^2$\n\nIn text $E=mc^2$ too.").body.document()
    _wait_math(qtbot, doc, 2)
    heading = doc.find("\ufffc").charFormat().toImageFormat()
    text = doc.find("\ufffc", doc.find("In text").position()).charFormat().toImageFormat()
    assert heading.height() > text.height() * 1.3


class _Client:
    """A writer stand-in: keeps what the renderer gives it."""

    def __init__(self) -> None:
        self.results: list[tuple[object, object]] = []

    def math_ready(self, results: list[tuple[object, object]]) -> None:
        self.results += results


def test_formulas_are_drawn_off_the_window_thread(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from desktop_app.ui import math_render

    threads: list[threading.Thread] = []
    draw = math_render.draw

    def watched(*args: object) -> object:
        threads.append(threading.current_thread())
        return draw(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(math_render, "draw", watched)
    own = math_render.MathRenderer()
    client = _Client()
    key = own.key(r"\frac{a}{b}", True, 16.0, "#000000", 0)
    assert own.request(key, client) is None
    qtbot.waitUntil(lambda: bool(client.results), timeout=DRAWN_MS)
    assert not own.busy
    ((got, image),) = client.results
    assert got == key and isinstance(image, math_render.MathImage)
    assert threads and threading.main_thread() not in threads
    assert own.cached(key) is image  # and kept: asked again, it is given at once
    assert own.request(key, client) is image


def test_image_names_stay_unique_as_the_cache_lets_images_go(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.ui import math_render

    monkeypatch.setattr(math_render, "IMAGE_CACHE_BYTES", 1)  # every new image pushes one out
    own = math_render.MathRenderer()
    client = _Client()
    for n in range(4):
        own.request(own.key(f"x_{n}", False, 16.0, "#000000", 0), client)
        qtbot.waitUntil(lambda n=n: len(client.results) == n + 1, timeout=DRAWN_MS)
    names = [image.name for _, image in client.results]  # type: ignore[attr-defined]
    assert len(set(names)) == 4, names


def test_a_paragraph_of_formulas_grows_in_place_showing_what_its_text_renders_to(
    qtbot: QtBot, light: None
) -> None:
    """The open paragraph grows by its new text and formulas, not read again whole at each
    frame; at every frame the document is the one the text so far renders to (formulas
    already drawn shown as images, with the joiner that keeps punctuation beside them), and
    at the end the one the whole text renders to."""
    from desktop_app.ui.markdown import held_formula
    from tests.gui.test_render import _open_tail, _signature, _so_far, frames

    drawn = streaming_reply(qtbot)
    drawn.end_stream()
    drawn.render_text("Known: $a_{1}$ and $b_{2}$ and $c^{3}$.")
    _wait_math(qtbot, drawn.body.document(), 3)
    parts = []
    for n in range(6):
        parts.append(
            f"Step {n}: take $a_{{1}}$, then the value grows by a plain sentence that goes "
            f"on for a while, as prose does. Then $x_{{{n}}}$ and *so* on, with more words "
            f"after it; then $b_{{2}}$. Also $c^{{3}}$ then `{n}` and $y_{{{n}}}$ and the "
            "rest of the paragraph, which is plain words to its end\n\n"
        )
        if n % 3 == 2:
            parts.append(f"$$z_{{{n}}}$$\n\n")
    parts.append("> Quoted $a_{1}$, and words after it in the quote\n\n")
    parts.append("- an item with $b_{2}$, and words after it\n- the next item\n\n")
    parts.append("# A heading with $c^{3}$, and words\n\n")
    text = "".join(parts) + "The end."
    rng = random.Random(5)
    for _ in range(4):
        widget = streaming_reply(qtbot)
        before = ""
        for so_far in frames(widget, text, rng, 30):
            tail, in_code = _open_tail(so_far)
            held = -1
            if tail and not in_code:  # a formula begun since the frame before waits for it
                held = held_formula(tail, len(before) if tail.startswith(before) else 0)
                before = tail
            assert _signature(widget.body.document()) == _so_far(so_far, held), so_far
        widget.end_stream()
        widget.render_some(1 << 20, float("inf"))
        assert _signature(widget.body.document()) == _so_far(text)
        # most frames grew the open paragraph; reading it again was for new paragraphs
        assert widget.stats.tail_extends > widget.stats.tail_renders
        assert "\u2060" in widget.body.toPlainText()  # a drawn formula's punctuation glued


def test_a_formula_begun_as_a_frame_ends_waits_for_the_next_frame(
    qtbot: QtBot, light: None
) -> None:
    """A frame that ends inside a formula shows the paragraph up to it, not the formula's
    source as prose; at the next frame the formula comes whole and the paragraph grows by
    it in place. A dollar still unclosed a frame later is a dollar, shown as text."""
    widget = streaming_reply(qtbot)

    def frame(text: str) -> str:
        widget.feed(text)
        widget.render_some(1 << 20, float("inf"))
        return widget.body.toPlainText()

    assert frame("Take $a_{1}$ and then").endswith("and then")
    renders = widget.stats.tail_renders
    shown = frame(" $b_{2")  # the frame ends inside the second formula
    assert "b_{2" not in shown and shown.endswith("and then")
    shown = frame("}$ and the words after it")
    assert shown.endswith("and the words after it")
    assert widget.stats.tail_renders == renders  # grown in place, never read again whole
    assert frame(" at $5").endswith("the words after it at")  # held for this frame
    assert frame(" a piece").endswith("at $5 a piece")  # still unclosed: a price
    assert frame(" or $6").endswith("a piece or")
    # nothing more comes for a while (the server paused): the dollar is shown as it is
    qtbot.waitUntil(lambda: widget.body.toPlainText().endswith("or $6"), timeout=2000)
    widget.end_stream()
    widget.render_some(1 << 20, float("inf"))
    _wait_math(qtbot, widget.body.document(), 2)
    assert widget.body.toPlainText().endswith("at $5 a piece or $6")


def test_which_formula_begun_at_the_end_of_an_open_paragraph_is_held() -> None:
    from desktop_app.ui.markdown import HELD_FORMULA_CHARS, held_formula

    assert held_formula("so $x_{1} +", 2) == 3
    assert held_formula("so $", 2) == 3  # the dollar alone: a formula may follow
    assert held_formula("so $x_{1} +", 0) == 3  # a new paragraph: all of it is new
    for tail, seen in [
        ("so $x_{1} +", 4),  # the dollar was there at the frame before
        ("so $x$", 0),  # a dollar that closes a formula
        ("so $$x", 0),  # a display formula
        ("so \\$x", 0),  # an escaped dollar
        ("so $ 5", 0),  # a space after it
        ("so $x\ny", 0),  # a line break after it
        ("`a $x` b", 0),  # inside code
        ("$x", 0),  # nothing before it to show
        ("so $" + "x" * HELD_FORMULA_CHARS, 0),  # too long to be held
        ("no dollar", 0),
    ]:
        assert held_formula(tail, seen) == -1, tail


def test_what_a_paragraph_of_formulas_may_grow_by() -> None:
    from desktop_app.ui.markdown import math_extension

    more = math_extension("a $x$", "a $x$, then $y$ b", open_end=True)
    assert more is not None
    assert more.added == ", then $y$ b"
    assert [(s.start, s.end, s.tex) for s in more.spans] == [(7, 10, "y")]
    assert math_extension("a $x$ b", "a $x$ b c", open_end=False) is not None
    for shown, tail in [
        ("take $x", "take $x$"),  # a formula closed over what is shown
        ("a $x$", "a $x$5"),  # a closing dollar before a digit closes nothing
        ("see $x$", "see $x$ www.example.com"),  # an autolink
        ("a $x$", "a $x$ *b*"),  # emphasis
        ("a $x$", "a $x$ and $$y$$"),  # a display formula
        ("a $x$", "a $x$\nb"),  # a new line
        ("a $x$ `c`", "a $x$ `c` d"),  # after a code span
        ("cost $5", "cost $5 and $6"),  # a dollar that is no formula
        ("$x$ is", "$x$ is y"),  # a paragraph that begins with a formula
    ]:
        assert math_extension(shown, tail, open_end=True) is None, (shown, tail)


def _svg(x: float, y: float, w: float, h: float, body: str) -> bytes:
    """An SVG as the typesetter writes one: its root sized to a view box that need not
    start at 0 (the baseline is at y = 0)."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{w}" height="{h}" viewBox="{x} {y} {w} {h}">{body}</svg>'
    ).encode()


def _reference(layout: Layout, key: MathKey) -> QImage:
    """``layout`` drawn for ``key`` as QSvgRenderer draws it into the rect its layout
    gives: what :func:`draw` must give, up to the rounding of the transforms."""
    import math

    from PySide6.QtCore import QByteArray, QRectF
    from PySide6.QtGui import QColor, QPainter
    from PySide6.QtSvg import QSvgRenderer

    top, bottom = (
        inline_padding(layout.ascent, layout.depth, key.x_height) if key.x_height else (0, 0)
    )
    dpr = key.dpr
    image = QImage(
        max(1, math.ceil(layout.width * dpr)),
        max(1, math.ceil((layout.height + top + bottom) * dpr)),
        QImage.Format.Format_ARGB32_Premultiplied,
    )
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(QByteArray(layout.svg)).render(
        painter, QRectF(0, top * dpr, layout.width * dpr, layout.height * dpr)
    )
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
    painter.fillRect(image.rect(), QColor(key.colour))
    painter.end()
    return image


@pytest.mark.parametrize("dpr", [1.0, 1.25, 2.0])
@pytest.mark.parametrize("x_height", [0, 7, 30])
def test_a_formula_is_drawn_where_its_layout_puts_it(
    qapp: QApplication, dpr: float, x_height: int
) -> None:
    # marks at the view box's corners and across it, in a box that does not start at 0
    body = (
        '<path d="M -0.7 -13.2 L 3 -13.2 L 3 -9 Z" fill="black"/>'
        '<rect x="11.3" y="-2.1" width="3.9" height="2.4" fill="black"/>'
        '<path d="M 2 -6 Q 8 -12 14 -6 T 26 -6" stroke="black" stroke-width="0.8" fill="none"/>'
    )
    layout = Layout(_svg(-0.7, -13.2, 26.9, 13.9, body), 26.9, 13.2, 0.7)
    key = MathKey("m", x_height == 0, 16.0, "#336699", dpr, x_height)
    drawn = draw(layout, key, "n")
    assert isinstance(drawn, MathImage)
    expected = _reference(layout, key)
    assert drawn.image.devicePixelRatio() == dpr
    got = drawn.image.copy()
    got.setDevicePixelRatio(1.0)
    assert got.size() == expected.size()
    got = got.convertToFormat(expected.format())
    # the same picture: placed a pixel off, edges would differ by most of the range
    worst = max(map(abs, map(int.__sub__, bytes(got.constBits()), bytes(expected.constBits()))))
    assert worst <= 8
    assert drawn.width == layout.width
    assert drawn.height == pytest.approx(got.height() / dpr, abs=1 / dpr)


def test_an_svg_without_a_view_box_or_with_a_reference_is_not_drawn(qapp: QApplication) -> None:
    key = MathKey("m", True, 16.0, "#000000", 1.0, 0)
    plain = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><path d="M0 0 L9 9"/></svg>'
    )
    assert isinstance(draw(Layout(plain, 9, 9, 0), key, "n"), MathFailure)
    fine = _svg(0, -9, 9, 9, '<use xlink:href="#g1"/><path fill="url(#p)" d="M0 0 L9 9"/>')
    assert not unsafe_svg(fine)
    for hostile in (
        '<image href="file:///etc/passwd"/>',
        "<IMAGE HREF='data:x'/>",
        "< script>alert(1)</script>",
        '<foreignObject width="9" height="9"/>',
        "<feImage href='x'/>",
        '<a xlink:href="http://127.0.0.1/">x</a>',
        "<A>x</A>",
        '<path style="fill: URL( http://127.0.0.1/x)" d="M0 0"/>',
        '<path d="M0 0" src = "x"/>',
    ):
        svg = _svg(0, -9, 9, 9, hostile)
        assert unsafe_svg(svg), hostile
        assert isinstance(draw(Layout(svg, 9, 9, 0), key, "n"), MathFailure), hostile


def test_drawing_a_formula_leaves_the_window_thread_free(qapp: QApplication) -> None:
    """The drawing thread lets go of Python's lock while a formula is parsed and
    rasterised, so the window's thread runs meanwhile (held, the window would stall as long
    as the drawing took)."""
    import sys
    import threading
    import time

    waves = "".join(
        f'<path d="M {x / 10} -20 Q {x / 10 + 0.3} -35 {x / 10 + 0.6} -20 T {x / 10 + 1.2} -20 Z"/>'
        for x in range(0, 12_000, 4)
    )
    layout = Layout(_svg(0, -40, 1200, 40, waves), 1200, 40, 0)
    key = MathKey("big", True, 16.0, "#000000", 2.0, 0)
    started = threading.Event()
    done = threading.Event()
    drawn: list[object] = []
    drawing_from_to: list[float] = []

    def drawing() -> None:
        started.set()
        try:
            drawing_from_to.append(time.perf_counter())
            drawn.append(draw(layout, key, "n"))
            drawing_from_to.append(time.perf_counter())
        finally:
            done.set()

    running: list[tuple[float, float]] = []  # when this thread ran
    interval = sys.getswitchinterval()
    # Python never takes its lock from a thread meanwhile: this thread runs only while the
    # drawing thread has let go of it
    sys.setswitchinterval(30.0)
    try:
        thread = threading.Thread(target=drawing)
        thread.start()
        started.wait()
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0)  # (lets go of the lock, so the drawing thread can take it back)
            now = time.perf_counter()
            if now - last < 0.001:
                running.append((last, now))
            last = now
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(drawn) == 1 and isinstance(drawn[0], MathImage)
    begin, end = drawing_from_to
    ran = sum(max(0.0, min(b, end) - max(a, begin)) for a, b in running)
    assert ran > (end - begin) / 2, (ran, end - begin)


def test_a_result_arriving_after_the_renderer_is_gone_is_dropped_quietly() -> None:
    """When the application closes while a formula is typeset or drawn, the worker thread
    that finishes it has no renderer to tell: the result is dropped, no error is raised (a
    traceback in the terminal of a closing Rill)."""
    import shiboken6

    from desktop_app.ui import math_render

    gone = math_render.MathRenderer()
    shiboken6.delete(gone)
    key = MathKey("x", False, 16.0, "#000000", 1.0, 8)
    gone._deliver(key.job, "This formula could not be typeset.")
    gone._deliver_drawn(key, MathFailure("This formula could not be typeset."))
