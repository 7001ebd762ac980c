"""Rendering: the streaming Markdown segmenter, bounded work per flush on a long reply,
links, and huge pastes."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QRect, QRectF, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextDocument, QTextFormat
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.core.history import History
from desktop_app.simulator import SimulatorThread
from desktop_app.ui import chat_view, markdown
from desktop_app.ui.chat_view import (
    FRAME_EARLY_MS,
    FRAME_MS,
    SPARE_DELAY_MS,
    ChatView,
    MessageColumn,
    MessageWidget,
    RenderStats,
)
from desktop_app.ui.controller import MAX_PROMPT_CHARS
from desktop_app.ui.labels import WrapLabel
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.markdown import (
    HARD_LIMIT,
    SOFT_LIMIT,
    DocumentWriter,
    SafeDocument,
    Segment,
    Segmenter,
    plain_extension,
    split_all,
)
from tests.gui.util import EventCounter, anchor_point, streaming_reply, wait_reply

SAMPLE = """# Title

A paragraph with `code`, **bold** and a [link](https://example.com).
It goes on for a second line.

- one
- two

| a | b |
|---|---|
| 1 | 2 |

```python
def f(x):
    return x + 1
```

~~~
tilde fence with ``` inside
~~~

> a quote

Last line without a newline"""


def test_split_finds_paragraphs_lists_tables_and_code() -> None:
    segments = split_all(SAMPLE)
    kinds = [s.kind for s in segments]
    assert kinds == [
        "prose",
        "prose",
        "prose",
        "prose",
        "code_open",
        "code_line",
        "code_line",
        "code_close",
        "code_open",
        "code_line",
        "code_close",
        "prose",
        "prose",
    ]
    assert segments[4] == Segment("code_open", "", "python")
    assert segments[9].text == "tilde fence with ``` inside"
    assert segments[-1].text == "Last line without a newline"


def test_streaming_in_any_pieces_gives_the_same_segments() -> None:
    whole = split_all(SAMPLE)
    rng = random.Random(7)
    for _ in range(50):
        seg = Segmenter()
        out: list[Segment] = []
        i = 0
        while i < len(SAMPLE):
            n = rng.randint(1, 12)
            out += seg.feed(SAMPLE[i : i + n])
            i += n
        out += seg.finish()
        assert out == whole


def test_the_open_tail_stays_bounded() -> None:
    seg = Segmenter()
    longest = 0
    for _ in range(4000):
        seg.feed("word ")
        longest = max(longest, len(seg.tail))
    assert longest <= HARD_LIMIT
    seg = Segmenter()
    longest = 0
    for _ in range(4000):
        seg.feed("a line of one paragraph\n")
        longest = max(longest, len(seg.tail))
    assert longest <= SOFT_LIMIT + 100
    seg = Segmenter()
    seg.feed("```\n")
    for _ in range(1000):
        seg.feed("x = 1\n")
        assert len(seg.tail) < 10


def test_a_20000_token_reply_does_constant_work_per_flush(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.default_tokens = 20_000
    stats = window.view.stats
    window.composer.set_text("Write a very long essay")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=40_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    reply = window.view.widgets[-1]
    request = sim.chat_requests[-1]
    expected = sim.reply_text(request.json, "openai", headers=request.headers)
    assert reply.text() == expected
    assert reply.state == "complete"
    # one full render: the prompt; the reply itself is never rendered whole
    assert stats.full_renders == 1
    # coalesced: far fewer flushes than tokens, one tail render per flush at most
    assert 1 < stats.flushes < 20_000 // 4
    assert stats.tail_renders <= stats.flushes
    assert stats.max_tail_chars <= HARD_LIMIT
    assert stats.segments > 100
    shown = reply.body.document().toPlainText()
    assert expected.split()[-1] in shown
    assert len(shown) > len(expected) * 0.9


def test_only_http_and_https_links_are_opened(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, monkeypatch: object
) -> None:
    opened: list[str] = []

    def fake_open(url: QUrl) -> bool:
        opened.append(url.toString())
        return True

    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(fake_open))
    text = (
        "/echo [web](https://example.com/a) [plain](http://example.org) "
        "[script](javascript:alert(1)) [file](file:///etc/passwd) [mail](mailto:a@b.c)"
    )
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    body = window.view.widgets[-1].body
    for href in (
        "https://example.com/a",
        "http://example.org",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "mailto:a@b.c",
    ):
        qtbot.mouseClick(body.viewport(), Qt.MouseButton.LeftButton, pos=anchor_point(body, href))
    assert opened == ["https://example.com/a", "http://example.org"]
    assert "only http and https" in window.status.text


def test_a_10_mb_paste_does_not_hang_and_is_refused_with_a_message(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    big = ("The quick brown fox jumps over the lazy dog. " * 2 + "\n") * 110_000
    assert len(big) > 10_000_000
    QGuiApplication.clipboard().setText(big)
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    assert window.composer.text() == ""
    assert window.composer.warning.isVisible()
    assert "not pasted" in window.composer.warning.text()
    assert QGuiApplication.clipboard().text() == big
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert not window.controller.busy
    assert sim.chat_requests == []


def test_a_long_but_sendable_paste_goes_in_and_too_long_text_is_not_sent(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    chunk = ("Line of pasted log output 0123456789\n") * 30_000
    QGuiApplication.clipboard().setText(chunk)
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    assert window.composer.text() == chunk
    window.composer.set_text("x" * (MAX_PROMPT_CHARS + 1))
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert "Shorten it" in window.composer.warning.text()
    assert not window.controller.busy
    assert sim.chat_requests == []


def test_code_streams_line_by_line_into_one_block(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 150
    code = "\n".join(f"print({i} * {i})" for i in range(25))
    window.composer.set_text(f"/echo Code:\n\n```python\n{code}\n```\n\nEnd.")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    seen: list[str] = []

    def open_line_shown_in_the_code_block() -> None:
        w = window.view.stream_widget
        assert w is not None and w._segmenter is not None and w._segmenter.in_code
        tail = w._segmenter.tail
        assert tail and "print(" in tail
        assert not w.writer.open_text  # no paragraph is open below the code
        assert w.body.document().toPlainText().rstrip("\n").endswith(tail)
        seen.append(tail)

    qtbot.waitUntil(open_line_shown_in_the_code_block, timeout=10_000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        pass
    reply = window.view.widgets[-1]
    assert reply.code_block(0) == code
    doc = reply.body.document()
    assert len(doc.rootFrame().childFrames()) == 1
    shown = doc.toPlainText()
    assert code in shown and shown.rstrip().endswith("End.")
    assert seen


def test_a_block_quote_has_a_bar_at_its_left(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    window.composer.set_text("/echo Before the quote.\n\n> A quoted line\n> goes on.\n\nAfter it.")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    body = window.view.widgets[-1].body
    doc = body.document()
    layout = doc.documentLayout()
    rows: dict[str, tuple[int, int]] = {}
    block = doc.begin()
    while block.isValid():
        rect = layout.blockBoundingRect(block)
        rows[block.text()] = (int(rect.top()) + 2, int(rect.bottom()) - 2)
        block = block.next()
    image = body.viewport().grab().toImage()
    background = image.pixelColor(image.width() - 2, rows["Before the quote."][0])

    def marked(name: str) -> bool:
        """A line runs down the left of the block, from its top to its bottom."""
        top, bottom = rows[name]
        return any(
            all(image.pixelColor(x, y) != background for y in range(top, bottom))
            for x in range(0, 12)
        )

    assert marked("A quoted line goes on.")
    assert not marked("Before the quote.") and not marked("After it.")


def test_following_a_stream_repaints_only_what_changed(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, themed: None
) -> None:
    """Scrolling to follow new lines copies what is drawn; the reply's text already on
    screen is not painted again on every frame (the style sheet on, as the app shows it)."""
    sim.tokens_per_s = 2_000
    sim.default_tokens = 5_000
    window.resize(900, 600)
    window.composer.set_text("Write a long essay")
    areas, behind, bar = (EventCounter(QEvent.Type.Paint) for _ in range(3))
    with qtbot.waitSignal(window.controller.turn_started, timeout=5_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    view = window.view
    reply = view.widgets[-1]
    viewport = view.viewport().height()
    # once the reply is taller than the view, follow it for the rest of the stream
    qtbot.waitUntil(lambda: reply.body.height() > 2 * viewport, timeout=20_000)
    watched = ((reply.body.viewport(), areas), (view, behind), (view.verticalScrollBar(), bar))
    for widget, counter in watched:
        widget.installEventFilter(counter)
    frames = view.stats.flushes
    grown: list[int] = []  # each time the view grew (a frame, or the rest of its text
    # drawn in a later slice when the machine is slow)
    view.verticalScrollBar().rangeChanged.connect(lambda _low, high: grown.append(high))
    wait_reply(qtbot, window, lambda: None, timeout=20_000)
    frames = view.stats.flushes - frames
    for widget, counter in watched:
        widget.removeEventFilter(counter)
    assert view.following
    heights = [r.height() for r in areas.rects]
    assert len(heights) > 20  # it did paint while following
    whole = [h for h in heights if h > viewport // 2]
    assert len(whole) <= len(heights) // 10, heights
    # the scroll bar is drawn once each time the view grows (once a frame), over its own
    # background: the view (and the window, the splitter) under it are not drawn again for it
    assert frames > 20
    assert bar.count <= len(grown) + 2, (bar.count, len(grown), frames)
    track = view.verticalScrollBar().parentWidget().geometry()
    assert not [r for r in behind.rects if r.intersects(track)]


def _essay_begun(qtbot: QtBot, window: MainWindow) -> MessageWidget:
    """Ask for an essay with Enter; return its reply's widget once its first text is shown."""
    window.composer.set_text("Write a long essay")
    with qtbot.waitSignal(window.controller.turn_started, timeout=5_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    reply = window.view.widgets[-1]
    qtbot.waitUntil(lambda: bool(reply.text()), timeout=10_000)
    return reply


def test_a_stream_is_drawn_as_it_arrives_then_once_a_frame(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """The first text after a quiet spell is drawn on the next turn of the event loop; text
    that keeps arriving is drawn about once every :data:`FRAME_MS` (a little early rather
    than in a second wake-up), however often it comes."""
    sim.tokens_per_s = 1  # a token a second: quiet between them
    sim.default_tokens = 100
    view = window.view
    reply = _essay_begun(qtbot, window)
    view.flush()
    drawn_at = time.monotonic()
    # a quiet spell: a whole frame with nothing new (the next token is a second away)
    qtbot.waitUntil(lambda: time.monotonic() - drawn_at > FRAME_MS / 1000, timeout=1_000)
    drawn = view.stats.flushes
    view.append_text(" quickly")
    assert view._flush_timer.isActive() and view._flush_timer.interval() == 0
    qtbot.waitUntil(lambda: view.stats.flushes > drawn, timeout=1_000)
    assert reply.writer.open_text.endswith("quickly") or "quickly" in reply.body.toPlainText()
    # now a piece every 2 ms for 0.4 s: no more than one frame per FRAME_MS
    started = time.monotonic()
    drawn = view.stats.flushes
    pieces = iter(range(200))
    feeder = QTimer()
    feeder.timeout.connect(lambda: view.append_text(f" w{next(pieces, 0)}"))
    feeder.start(2)
    qtbot.waitUntil(lambda: time.monotonic() - started > 0.4, timeout=5_000)
    feeder.stop()
    frames = view.stats.flushes - drawn
    elapsed_ms = (time.monotonic() - started) * 1000
    assert 1 <= frames <= elapsed_ms / (FRAME_MS - FRAME_EARLY_MS) + 1, (frames, elapsed_ms)
    wait_reply(qtbot, window, window.controller.stop, timeout=10_000)


def test_a_reply_in_a_long_chat_lays_out_its_own_block_not_every_message(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """The column keeps the messages after its first ones in blocks: a frame of a streaming
    reply lays out the reply's block and the column, not the layouts that hold the
    messages of a long chat above it."""
    history = window.services.history
    assert history is not None
    chat = history.create_conversation(title="A long chat")
    for number in range(12):
        history.add_message(chat.id, "user", f"Question {number}?")
        history.add_message(chat.id, "assistant", f"Answer {number}, in a few words.")
    view = window.view
    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=10_000):
        window.controller.open_conversation(chat.id)
    qtbot.waitUntil(
        lambda: len(view.widgets) == 24 and not any(w.rendering for w in view.widgets),
        timeout=10_000,
    )
    sim.tokens_per_s = 300
    sim.default_tokens = 600
    earlier = view.widgets[16]
    reply = _essay_begun(qtbot, window)
    first_block, reply_block = earlier.parentWidget(), reply.parentWidget()
    assert first_block is not None and reply_block is not None
    above, own = (EventCounter(QEvent.Type.LayoutRequest) for _ in range(2))
    first_block.installEventFilter(above)
    reply_block.installEventFilter(own)
    frames = view.stats.flushes
    try:
        qtbot.waitUntil(lambda: view.stats.flushes > frames + 10, timeout=10_000)
    finally:
        first_block.removeEventFilter(above)
        reply_block.removeEventFilter(own)
    assert own.count > 0  # the frames that grew the reply laid out its block
    assert above.count == 0
    wait_reply(qtbot, window, window.controller.stop, timeout=10_000)


def test_messages_stay_in_order_as_blocks_fill_and_empty(qtbot: QtBot, tmp_path: Path) -> None:
    """Messages past the column's first ones go in blocks; showing fewer drops the blocks
    left empty (no stray spacing), and the messages read top to bottom in their order."""
    with History(tmp_path / "history.sqlite3") as history:
        chat = history.create_conversation(title="Blocks")
        for number in range(10):
            history.add_message(chat.id, "user", f"Question {number}?")
            history.add_message(chat.id, "assistant", f"Answer {number}.")
        messages = history.messages(chat.id)
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    page = view.widget()

    def in_order(count: int) -> bool:
        if len(view.widgets) != count or any(
            w.rendering or not w.isVisible() for w in view.widgets
        ):
            return False
        tops = [w.mapTo(page, QPoint(0, 0)).y() for w in view.widgets]
        return tops == sorted(tops) and len(set(tops)) == count

    view.show_messages(chat.id, messages)
    qtbot.waitUntil(lambda: in_order(20), timeout=10_000)
    assert len(view._blocks) == 2  # 8 in the column, then 8 and 4
    assert [w.text() for w in view.widgets] == [m.content for m in messages]
    # the widgets made ahead are made where they will be shown: adding them moves nothing
    view._make_spare()
    view._make_spare()
    spares = list(view._spares.values())
    assert len(spares) == 2 and all(
        w.parentWidget() is view._blocks[-1].parentWidget() for w in spares
    )
    moved = EventCounter(QEvent.Type.ParentChange)
    for spare in spares:
        spare.installEventFilter(moved)
    view.sync(chat.id, messages[:16])  # the last block is emptied: the spares stay
    assert len(view._blocks) == 1 and all(w.parentWidget() is view.column for w in spares)
    view._drop_spares()
    view._make_spare()
    view._make_spare()
    spares = list(view._spares.values())
    assert all(w.parentWidget() is view.column for w in spares)  # a new block is needed
    view.sync(chat.id, messages[:9])
    qtbot.waitUntil(lambda: in_order(9), timeout=10_000)
    view._drop_spares()
    view._make_spare()
    view._make_spare()
    spares = list(view._spares.values())
    assert all(w.parentWidget() is view._blocks[-1].parentWidget() for w in spares)
    moved.count = 0
    for spare in spares:
        spare.installEventFilter(moved)
    prompt, reply = view._add("user"), view._add("assistant")
    assert [prompt, reply] == spares and moved.count == 0
    view.sync(chat.id, messages[:9])
    qtbot.waitUntil(lambda: in_order(9), timeout=10_000)
    assert len(view._blocks) == 1 and view._blocks[0].count() == 1
    gap = view.widgets[8].mapTo(page, QPoint(0, 0)).y() - (
        view.widgets[7].mapTo(page, QPoint(0, 0)).y() + view.widgets[7].height()
    )
    assert gap == view.layout_.spacing()
    view.sync(chat.id, messages[:8])
    qtbot.waitUntil(lambda: in_order(8), timeout=10_000)
    assert view._blocks == []
    view.sync(chat.id, messages)
    qtbot.waitUntil(lambda: in_order(20), timeout=10_000)
    assert [w.text() for w in view.widgets] == [m.content for m in messages]


def test_a_frame_is_painted_before_its_flush_returns(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """A frame is laid out, scrolled and painted in one piece of work: the reply's new text
    is on screen when ``flush`` returns, not at some later turn of the event loop."""
    sim.tokens_per_s = 1  # a token a second: nothing else arrives meanwhile
    sim.default_tokens = 100
    view = window.view
    reply = _essay_begun(qtbot, window)
    painted = EventCounter(QEvent.Type.Paint)
    reply.body.viewport().installEventFilter(painted)
    try:
        view.append_text(" and a few more words")
        view.flush()
    finally:
        reply.body.viewport().removeEventFilter(painted)
    assert painted.count > 0
    wait_reply(qtbot, window, window.controller.stop, timeout=10_000)


def test_while_a_reply_streams_the_status_bar_moves_with_its_frames(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """The spinner turns and the line says the speed, in the frames' wake-ups: the status
    bar's own timers do not fire while frames come."""
    sim.tokens_per_s = 300
    sim.default_tokens = 600
    status = window.status
    fired: list[str] = []
    status._spin_timer.timeout.connect(lambda: fired.append("spin"))
    status._tick_timer.timeout.connect(lambda: fired.append("tick"))
    spins: set[str] = set()
    window.composer.set_text("Write a long essay")
    with qtbot.waitSignal(window.controller.turn_started, timeout=5_000):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    view = window.view
    qtbot.waitUntil(lambda: view.stats.flushes > 3 and "Streaming" in status.text, timeout=10_000)
    fired.clear()
    frames = view.stats.flushes

    def watch() -> bool:
        spins.add(status.spinner.text())
        return view.stats.flushes - frames >= 25

    qtbot.waitUntil(watch, timeout=10_000)
    assert fired == []
    assert len(spins) >= 3  # it turned
    assert "tok/s" in status.text
    wait_reply(qtbot, window, window.controller.stop, timeout=10_000)


def _rendered(shown: str, added: str | None = None) -> str:
    doc = SafeDocument()
    writer = DocumentWriter(doc)
    writer.append_prose(shown, open_end=True)
    if added:
        writer.extend_prose(added)
    return doc.toHtml()


def test_an_open_paragraph_grown_in_place_looks_as_if_read_again(qtbot: QtBot) -> None:
    """Appending plain text to the open tail gives exactly the document a new render gives,
    for every pair of consecutive tails of randomly cut Markdown; text that could change
    what came before is read again."""
    rng = random.Random(7)
    words = [
        "the",
        "model",
        "streams",
        "text",
        "while",
        "you",
        "wait",
        "for",
        "answers",
        "and",
        "Rill",
        "shows",
    ]
    pieces = [
        *words * 3,
        "**bold**",
        "*it*",
        "_u_",
        "snake_case",
        "`code`",
        "[a](http://x.y)",
        "www.ex.com",
        "a@b.co",
        "&amp;",
        "&copy",
        "1.",
        "2)",
        "\n",
        "\n- ",
        "\n1. ",
        "\n> ",
        "\n    ",
        "  ",
        "~~s~~",
        "<b>",
        "$x$",
        "$5",
        "e.g.",
        "Note:",
        "|",
        "---",
        "===",
        "42",
        "(",
        ")",
        "!",
        "\t",
        "#",
        "\0",
    ]
    grown = 0
    for _ in range(250):
        text = "".join(rng.choice(pieces) + rng.choice(("", " ", " ")) for _ in range(25))
        seg, shown, at = Segmenter(), "", 0
        while at < len(text):
            step = rng.randint(1, 8)
            seg.feed(text[at : at + step])
            at += step
            tail = seg.tail
            if seg.in_code or not tail:
                shown = ""
                continue
            added = plain_extension(shown, tail) if shown else None
            if added is not None:
                grown += 1
                assert _rendered(shown, added) == _rendered(tail), (shown, tail)
            shown = tail
    assert grown > 300  # the fast path was taken, not always refused

    assert plain_extension("The river", "The river runs on") == " runs on"
    assert plain_extension("The river ", "The river runs") == " runs"  # a space kept
    for shown, tail in [
        ("a _b_", "a _b_c"),  # a closing underscore stops closing before a letter
        ("see &amp", "see &amp;"),  # an entity completed
        ("see www", "see www.example.com"),  # an autolink
        ("mail me", "mail me@example.com"),
        ("1", "1. first"),  # a list's number
        ("    code", "    code\t"),  # code keeps its trailing blanks
        ("cost $5", "cost $5 and"),  # formulas are found in the whole text
        ("a", "a\nb"),  # a new line
        ("a *b", "a *b*"),
        ("a", "a b\0c"),  # NUL, which the Markdown reader shows as U+FFFD
    ]:
        assert plain_extension(shown, tail) is None, (shown, tail)


STREAMED = (
    SAMPLE
    + """

Plain prose that goes on, with façade, 🌊 and déjà vu! Then more of it.

A paragraph whose *emphasis closes* later, and `code` too.
Second line of it.

> quoted **twice**
> > nested

1. first
2. second

A formula $x^2$ inline, and a display one:

$$
\\int_0^1 f(x)\\,dx
$$

## A heading

Text
===

Last plain paragraph"""
)


def _signature(doc: QTextDocument) -> list[tuple[str, object, list[tuple[str, object]]]]:
    """What a document shows: each block's text and format, its fragments' formats. The
    lists' object numbers are told in the order they first appear."""
    out = []
    lists: dict[int, int] = {}
    block = doc.begin()
    while block.isValid():
        frags = []
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.isValid():
                frags.append((frag.text(), frag.charFormat()))
            it += 1
        fmt = block.blockFormat()
        group = fmt.objectIndex()
        fmt.clearProperty(QTextFormat.Property.ObjectIndex)
        number = lists.setdefault(group, len(lists)) if group >= 0 else -1
        out.append((block.text(), fmt, number, frags))
        block = block.next()
    return out


def _so_far(text: str, held: int = -1) -> list[tuple[str, object, list[tuple[str, object]]]]:
    """The document of ``text`` read at once: its finished segments, then its open end (up
    to ``held``, where a formula just begun is held back, when that is not -1)."""
    seg = Segmenter()
    doc = SafeDocument()
    writer = DocumentWriter(doc)
    for segment in seg.feed(text):
        writer.write(segment)
    if seg.in_code:
        writer.set_partial_code_line(seg.tail, seg.lang)
    elif seg.tail:
        writer.append_prose(seg.tail if held < 0 else seg.tail[:held], open_end=True)
    return _signature(doc)


def _open_tail(text: str) -> tuple[str, bool]:
    """The open end of ``text`` as a stream, and whether it is a line of code."""
    seg = Segmenter()
    seg.feed(text)
    return seg.tail, seg.in_code


def frames(widget: MessageWidget, text: str, rng: random.Random, most: int) -> Iterator[str]:
    """Stream ``text`` into ``widget`` in random pieces of 1 to ``most`` characters, each
    drawn as a frame; after each, yield the text streamed so far."""
    at = 0
    while at < len(text):
        step = rng.randint(1, most)
        widget.feed(text[at : at + step])
        widget.render_some(1 << 20, float("inf"))
        at += step
        yield text[:at]


def test_a_reply_streamed_in_any_pieces_ends_as_the_document_of_its_whole_text(
    qtbot: QtBot,
) -> None:
    """The open paragraph is shown at the end of the body and grows there; once the reply
    ends, the document is the one its whole text renders to, however it was cut."""
    whole = MessageWidget("assistant", RenderStats())
    qtbot.addWidget(whole)
    whole.render_text(STREAMED)
    while whole.rendering:
        whole.render_some(1 << 20, float("inf"))
    expected = _signature(whole.body.document())
    rng = random.Random(11)
    for _ in range(12):
        widget = MessageWidget("assistant", RenderStats())
        qtbot.addWidget(widget)
        widget.begin_stream()
        for so_far in frames(widget, STREAMED, rng, 40):
            if "$" not in so_far:
                # what is shown is what the text so far renders to, its open end included
                assert _signature(widget.body.document()) == _so_far(so_far)
        widget.end_stream()
        widget.render_some(1 << 20, float("inf"))
        assert not widget.rendering
        assert not widget.writer.open_text
        assert _signature(widget.body.document()) == expected
        assert widget.writer.quotes.runs == whole.writer.quotes.runs
        assert widget.stats.tail_extends > 0  # the open paragraph grew in place


def test_a_frame_that_ends_a_paragraph_and_begins_the_next_is_laid_out_once(
    qtbot: QtBot,
) -> None:
    """A frame of a stream often holds the end of one paragraph and the start of the next:
    written as one edit, the document is laid out (and reported changed) once for it. A
    larger frame, more than a piece, is written edit by edit, under the slice's deadline."""
    widget = streaming_reply(qtbot)
    widget.feed("An opening line.\n\nThe first paragraph begins")
    widget.render_some(1 << 20, float("inf"))
    changes: list[int] = []
    widget.body.document().contentsChange.connect(lambda at, _r, _a: changes.append(at))
    for frame in (" and ends here.\n\nThe second begins", " and ends.\n\nThe third"):
        changes.clear()
        widget.feed(frame)
        widget.render_some(1 << 20, float("inf"))
        assert len(changes) == 1, frame
    assert widget.writer.open_text == "The third"
    changes.clear()
    widget.feed(" ends.\n\n" + "A long paragraph of many words. " * 200 + "\n\nLast")
    widget.render_some(1 << 20, float("inf"))
    assert len(changes) > 1  # more than a piece: not one edit
    widget.end_stream()
    widget.render_some(1 << 20, float("inf"))
    whole = MessageWidget("assistant", RenderStats())
    qtbot.addWidget(whole)
    whole.render_text(widget.text())
    while whole.rendering:
        whole.render_some(1 << 20, float("inf"))
    assert _signature(widget.body.document()) == _signature(whole.body.document())


def test_a_plain_paragraph_opened_in_place_looks_as_if_read(qtbot: QtBot) -> None:
    """A new open paragraph of plain text is written as a block and its text, unread; the
    document is the one the Markdown reader gives. Anything else is read."""
    for text in [
        "two  spaces here",
        "nbsp\u00a0here",
        "Arabic \u0645\u0631\u062d\u0628\u0627 and more",
        "ends with two spaces  ",
        "Zero\u200bwidth and soft\u00adhyphen",
        "emoji \U0001f30a wave, déjà vu!",
        'quote "x" and (paren) and %',
        "x" * 5000,
    ]:
        read, opened = SafeDocument(), SafeDocument()
        DocumentWriter(read).append_prose("First.")
        DocumentWriter(read).append_prose(text, open_end=True)
        writer = DocumentWriter(opened)
        writer.append_prose("First.")
        assert writer.show_open(text), text  # written in place, not read
        assert opened.toHtml() == read.toHtml(), text
    for text in [
        "- item",
        "1. one",
        "# head",
        "> quote",
        "a *b*",
        "see www.x.y",
        "see http://x.y",
        "mail a@b.c",
        "a &amp; b",
        "a\nb",
        "$x$",
    ]:
        writer = DocumentWriter(SafeDocument())
        writer.append_prose("First.")
        assert not writer.show_open(text), text  # read as Markdown


def test_a_paragraph_of_text_and_formulas_is_written_unread_as_if_read(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished paragraph of plain text and formulas (a colon too: only ``://`` makes a
    link) is written as a block, its text and its formulas, without the Markdown reader; the
    document is the one the reader gives. Anything else is still read, and so is text with
    half of a surrogate pair (Qt's string of it is shorter than Python's)."""
    plain = [
        "Step 1: take $x_{2}^2 + \\frac{2}{\\sqrt{2}}$, then $\\alpha_{3} \\leq e^{-3 t}$ so that",
        "$$\\sum_{k=1}^{6} k^2 = \\frac{6(6+1)(2\\cdot 6+1)}{6}$$",
        "$x$ is the value, and $y$ too.",
        "Note: the meeting is at 10:30, ratio 1:2",
        "two  spaces and an ending colon:",
    ]
    read = [
        "Price $5 and $6",
        "see http://x.y $x$",
        "a $x$ *b*",
        "x $a$\n$b$ y",
        "- $x$",
        "a lone \ud800 half $x$ of a pair",
    ]

    markdown.paragraph_format()  # read once per process: not counted as a paragraph read

    def rendered(text: str, *, reader: bool) -> tuple[str, int]:
        made: list[int] = []
        real = markdown.SafeDocument

        class Counted(real):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                super().__init__()
                made.append(1)

        with monkeypatch.context() as patch:
            patch.setattr(markdown, "SafeDocument", Counted)
            if reader:
                patch.setattr(markdown, "_plain_with_marks", lambda _m: None)
            doc = SafeDocument()
            writer = DocumentWriter(doc)
            writer.append_prose("First.")
            writer.append_prose(text)
        return doc.toHtml(), len(made)

    for text in plain + read:
        fast, pieces = rendered(text, reader=False)
        slow, _ = rendered(text, reader=True)
        assert fast == slow, text
        assert pieces == (0 if text in plain else 1), text


def test_a_prompt_is_fitted_again_only_when_its_width_or_text_changes(qtbot: QtBot) -> None:
    widget = MessageWidget("user", RenderStats())
    qtbot.addWidget(widget)
    widget.resize(800, 400)
    widget.show()
    widget.render_text("A prompt long enough to wrap in its bubble, " * 40)
    qtbot.waitUntil(lambda: widget.body.height() > 100, timeout=5_000)
    doc = widget.body.document()
    layouts: list[float] = []
    doc.documentLayout().documentSizeChanged.connect(lambda size: layouts.append(size.width()))
    height = widget.body.height()
    assert widget.bubble is not None
    wide = widget.bubble.width()
    widget.resize(800, widget.height() + 60)  # taller only: the text stays as it is
    QApplication.processEvents()
    assert layouts == [] and widget.body.height() == height
    widget.resize(500, widget.height())  # narrower: fitted again, taller
    qtbot.waitUntil(lambda: widget.body.height() > height, timeout=5_000)
    assert layouts and widget.body.height() >= doc.size().height()
    assert widget.bubble.width() < wide
    widget.render_text("Short now")
    qtbot.waitUntil(lambda: widget.body.height() < 60, timeout=5_000)
    assert widget.bubble.width() < 200


def test_a_frame_lays_out_its_text_before_anything_is_painted(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """New text changes the reply's height; the change reaches the page and the scroll bar
    in the same frame, so the window is painted once for it, not once per level."""
    sim.tokens_per_s = 200
    sim.default_tokens = 2_000
    window.resize(900, 600)
    view = window.view
    _essay_begun(qtbot, window)
    page = view.widget()
    bar = view.verticalScrollBar()
    view.append_text("\n\n" + "A paragraph of words. " * 200 + "\n\n")
    view.flush()
    qtbot.waitUntil(lambda: page.height() > view.viewport().height(), timeout=5_000)
    for _ in range(5):
        before = page.height()
        view.append_text(" and the river ran on" * 12 + "\n\n")
        view.flush()
        after = page.height()
        assert after > before
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        assert page.height() == after  # nothing was left for a later pass
        assert bar.value() == bar.maximum()  # and the view follows it
    wait_reply(qtbot, window, window.controller.stop, timeout=10_000)


def test_enter_shows_the_prompt_and_the_reply_in_widgets_made_ahead(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """Building a message's widgets takes milliseconds; once a chat has begun they are made
    while the window is idle, so sending does not build them, and they are made again after
    the reply. A window that has shown no message makes none (its memory stays small)."""
    view = window.view
    assert not view._spares
    wait_reply(qtbot, window, lambda: window.send("Good morning"))
    qtbot.waitUntil(lambda: len(view._spares) == 2, timeout=5_000)
    spares = dict(view._spares)
    ended: list[int] = []
    window.controller.busy_changed.connect(
        lambda busy: ended.append(view._spare_timer.remainingTime()) if not busy else None
    )
    sim.tokens_per_s = 40
    sim.default_tokens = 60
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        window.send("Hello")
        assert view.widgets[-2] is spares["user"] and view.widgets[-1] is spares["assistant"]
        # none is made while the reply streams, nor waited for by polling
        qtbot.waitUntil(lambda: not view._spare_timer.isActive(), timeout=5_000)
        assert window.controller.busy and not view._spares
    assert view.widgets[-1].text()
    # nor while the ended reply is settled (saved, its details shown): a pause after its end
    assert ended and ended[-1] > SPARE_DELAY_MS - 100
    qtbot.waitUntil(lambda: len(view._spares) == 2, timeout=5_000)
    assert not set(view._spares.values()) & set(view.widgets)
    assert all(not spare.isVisible() for spare in view._spares.values())
    # a theme change makes them again, in the new colours
    old = set(view._spares.values())
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    sheet, palette = app.styleSheet(), app.palette()
    window.services.config.values["ui.theme"] = "dark"
    try:
        window.apply_theme()
        qtbot.waitUntil(lambda: len(view._spares) == 2, timeout=5_000)
        assert not old & set(view._spares.values())
    finally:
        window.services.config.values["ui.theme"] = "system"
        window.apply_theme()
        app.setStyleSheet(sheet)
        app.setPalette(palette)


def test_a_short_text_whose_first_slice_runs_out_of_time_is_finished_later(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored reply is rendered in one slice when it is short; on a machine slow enough
    for that slice to run out of time, the rest is drawn in the next ones, not left."""
    monkeypatch.setattr(chat_view, "SLICE_S", 0.0)  # every slice runs out after one step
    text = "\n\n".join(f"Paragraph {n} of a stored reply." for n in range(12))
    widget = MessageWidget("assistant", RenderStats())
    qtbot.addWidget(widget)
    widget.render_text(text)
    qtbot.waitUntil(lambda: not widget.rendering, timeout=5_000)
    assert widget.body.document().toPlainText() == text.replace("\n\n", "\n")


def test_the_column_places_its_messages_once_it_holds_them(qtbot: QtBot) -> None:
    """A placement in a rect too small for the messages is left for the growth that follows;
    a column that cannot grow (its maximum height) is still placed."""
    column = QWidget()
    qtbot.addWidget(column)
    layout = MessageColumn(column)
    layout.setContentsMargins(0, 0, 0, 0)
    tall = QWidget()
    tall.setMinimumHeight(300)
    layout.addWidget(tall)
    layout.setGeometry(QRect(0, 0, 200, 100))
    assert layout.geometry() != QRect(0, 0, 200, 100)  # left for the growth
    assert tall.geometry().height() != 100  # not squeezed into the old height
    layout.setGeometry(QRect(0, 0, 200, 300))
    assert layout.geometry() == QRect(0, 0, 200, 300)
    assert tall.geometry() == QRect(0, 0, 200, 300)
    column.setMaximumHeight(100)
    layout.setGeometry(QRect(0, 0, 200, 100))
    assert layout.geometry() == QRect(0, 0, 200, 100)  # it cannot grow: placed as it is


def test_a_wrapping_label_keeps_the_height_of_its_text_at_its_width(qtbot: QtBot) -> None:
    label = WrapLabel("sim-small · 300 tokens · 50.1 tok/s · first token 22 ms · " * 3)
    qtbot.addWidget(label)
    label.show()
    assert not label.hasHeightForWidth()
    label.resize(600, 20)
    height = label.sizeHint().height()
    assert height == label.heightForWidth(600) and height > label.fontMetrics().lineSpacing()
    label.resize(200, 20)  # narrower: more lines
    assert label.sizeHint().height() == label.heightForWidth(200) > height
    narrow = label.sizeHint().height()
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 2)
    label.setFont(font)  # a theme's larger font: taller lines
    assert label.sizeHint().height() == label.heightForWidth(200) > narrow
    label.setText("short")
    assert label.sizeHint().height() == label.heightForWidth(200) < narrow


def test_a_long_prompt_is_laid_out_once_at_the_width_its_bubble_shows_it(qtbot: QtBot) -> None:
    """Setting a document's width lays all of its text out again. A prompt that wraps is
    set at the bubble's widest and stays there, as a web page's bubble does: one layout,
    not one when the text is set and two more to find and take the bubble's width."""
    prompt = MessageWidget("user", RenderStats())
    qtbot.addWidget(prompt)
    prompt.resize(800, 400)
    prompt.show()
    long = "A question that goes on and on about rivers and their valleys. " * 120
    prompt.render_text(long)  # (the first fit finds the room beside the bubble)
    layouts: list[float] = []

    def reported(rect: QRectF) -> None:
        # what a layout of all the text reports (an empty document's costs nothing)
        if rect.top() <= 0 and rect.height() >= 1e9 and not prompt.body.document().isEmpty():
            layouts.append(rect.height())

    prompt.body.document().documentLayout().update.connect(reported)
    prompt.render_text(long + "And one more.")
    assert len(layouts) == 1
    assert prompt.bubble is not None
    assert prompt.bubble.width() == int(prompt.width() * 0.75)
    assert prompt.body.document().textWidth() == prompt.body.viewport().width()
    assert prompt.body.height() >= prompt.body.document().size().height()
    # a short prompt still gets a bubble as wide as its text
    prompt.render_text("Hi")
    assert prompt.bubble.width() < 100
    assert prompt.body.document().textWidth() == prompt.body.viewport().width()
