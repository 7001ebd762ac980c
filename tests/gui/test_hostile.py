"""Hostile input in the window: replies naming local files, server errors written in HTML,
and text shaped to stall the layout (one huge word, a huge table).

Everything goes over real sockets to the simulator's hostile mode and into the real
``MainWindow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QImage, QTextDocument, QTextOption
from PySide6.QtWidgets import QLabel, QTextEdit, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.simulator import SimulatorThread, hostile
from desktop_app.ui.chat_view import MessageWidget
from desktop_app.ui.main_window import MainWindow
from desktop_app.ui.markdown import (
    HARD_LIMIT,
    TABLE_SLICE_ROWS,
    DocumentWriter,
    SafeDocument,
    Segmenter,
    fragments,
    split_all,
)
from tests.gui.util import Windows, sim_config, wait_reply

UI = Path(__file__).resolve().parents[2] / "desktop_app" / "ui"

HTML_ERROR = (
    '<h1 style="color:red">Session expired</h1><a href="https://x.example">paste your '
    "API key here</a>"
)


WATCHER = """
import os, sys, time
path, log = sys.argv[1], sys.argv[2]
while True:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        time.sleep(0.002)
        continue
    os.close(fd)
    with open(log, "a") as out:
        out.write("o")
"""


class FifoWatch:
    """A FIFO that notices when anything opens it for reading.

    A separate process (a thread could not run while the GUI thread holds the GIL in a
    blocking ``open()``) keeps trying to open the write end without blocking; that
    succeeds only while a reader has the FIFO open. It then closes at once, so a reader
    blocked in ``open()`` or ``read()`` gets end-of-file instead of hanging the test.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._log = path.with_name(path.name + ".opened")
        os.mkfifo(path)
        self._process = subprocess.Popen([sys.executable, "-c", WATCHER, str(path), str(self._log)])

    @property
    def opened(self) -> int:
        try:
            return len(self._log.read_text())
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(5)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[FifoWatch]:
    watch = FifoWatch(tmp_path / "pipe")
    try:
        yield watch
    finally:
        watch.stop()


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    image = QImage(120, 90, QImage.Format.Format_RGB32)
    image.fill(0x3366CC)
    assert image.save(str(path))
    return path


def image_names(doc: QTextDocument) -> list[str]:
    """The name of every image in ``doc``."""
    return [name for name, _tip in _formats(doc) if name]


def tooltips(doc: QTextDocument) -> list[str]:
    """Every tooltip of a piece of text in ``doc``."""
    return [tip for _name, tip in _formats(doc) if tip]


def _formats(doc: QTextDocument) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for fragment in fragments(doc):
        fmt = fragment.charFormat()
        name = fmt.toImageFormat().name() if fmt.isImageFormat() else ""
        found.append((name, fmt.toolTip()))
    return found


def documents(window: QWidget) -> list[QTextDocument]:
    return [edit.document() for edit in window.findChildren(QTextEdit)]


def reopen(qtbot: QtBot, window: MainWindow) -> None:
    """Leave the conversation and open it again (a full render from the history)."""
    conversation = window.controller.conversation_id
    assert conversation is not None
    window.new_chat()
    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=5000):
        window.controller.open_conversation(conversation)


def settled(qtbot: QtBot, window: MainWindow) -> MessageWidget:
    """The last reply once it is fully rendered and painted."""
    reply = window.view.widgets[-1]
    qtbot.waitUntil(lambda: not reply.rendering, timeout=10_000)
    window.grab()  # lays out and paints everything, images included
    return reply


# ------------------------------------------------------------------------------------------
# 1. No document loads what a reply names
# ------------------------------------------------------------------------------------------


def test_a_reply_naming_files_and_urls_loads_none_of_them(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, fifo: FifoWatch, picture: Path
) -> None:
    text = (
        f"Pipe: ![the pipe]({fifo.path}) and ![pipe url](file://{fifo.path}).\n\n"
        f"Picture: ![a picture]({picture}) ![picture url]({QUrl.fromLocalFile(str(picture)).toString()})"
        " ![remote](http://127.0.0.1:9/x.png)\n\n"
        f"| col |\n|---|\n| ![in a table]({fifo.path}) |\n\n"
        f"A [link](https://example.com \"<img src='{fifo.path}'>\") with a title.\n\n"
        f"Last ![tail image]({fifo.path})"
    )
    sim.script(hostile.reply("openai", text))
    wait_reply(qtbot, window, lambda: window.send("show me"))
    for _ in range(2):
        reply = settled(qtbot, window)
        shown = reply.body.document().toPlainText()
        for alt in ("the pipe", "a picture", "picture url", "remote", "in a table", "tail image"):
            assert alt in shown
        assert any(tooltips(doc) for doc in documents(window))
        for doc in documents(window):
            assert image_names(doc) == []
            for tip in tooltips(doc):
                assert "<img" not in tip and "&lt;img" in tip
        assert fifo.opened == 0
        reopen(qtbot, window)


def test_dev_zero_as_an_image_neither_crashes_nor_allocates(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(
        hostile.reply("openai", ["Look: ![zero](file:///dev/zero", ") and ![z](/dev/zero) end"])
    )
    wait_reply(qtbot, window, lambda: window.send("look"))
    assert "zero" in settled(qtbot, window).body.document().toPlainText()
    reopen(qtbot, window)
    assert "zero" in settled(qtbot, window).body.document().toPlainText()


def test_every_document_the_window_builds_refuses_every_resource(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, fifo: FifoWatch
) -> None:
    sim.script(hostile.reply("openai", ["para ![x](/tmp/x.png)\n\n```py\nx = 1\n", "open tail"]))
    wait_reply(qtbot, window, lambda: window.send("hi"))
    docs = documents(window)
    assert len(docs) >= 2
    for url in (QUrl.fromLocalFile(str(fifo.path)), QUrl(str(fifo.path)), QUrl("http://x/y")):
        for doc in docs:
            assert isinstance(doc, SafeDocument), type(doc)
            for kind in QTextDocument.ResourceType:
                value = doc.resource(kind.value, url)
                assert not isinstance(value, (bytes, str)) or not value
    assert fifo.opened == 0


def test_the_document_writer_never_falls_back_to_reading_files(fifo: FifoWatch) -> None:
    doc = SafeDocument()
    writer = DocumentWriter(doc)
    writer.append_prose(f"first ![one]({fifo.path})\n")  # into the empty document
    writer.append_prose(f"second ![two]({fifo.path}) and ![three](file://{fifo.path})\n")
    doc.setTextWidth(400)
    assert doc.size().height() > 0  # laid out
    assert image_names(doc) == []
    assert "one" in doc.toPlainText() and "three" in doc.toPlainText()
    assert fifo.opened == 0


def test_the_ui_builds_documents_only_as_safe_documents() -> None:
    offenders = []
    for path in UI.glob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bQTextDocument\(", line) and "class SafeDocument" not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
            if re.search(r"\bQLabel\(", line) and "class PlainLabel" not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


# ------------------------------------------------------------------------------------------
# 2. Text from a server is never rich text
# ------------------------------------------------------------------------------------------


def _assert_plain_labels(window: QWidget) -> None:
    labels = window.findChildren(QLabel)
    assert labels
    rich = [
        f"{label.objectName() or type(label).__name__}: {label.text()[:60]!r}"
        for label in labels
        if label.textFormat() != Qt.TextFormat.PlainText
    ]
    assert rich == []
    for widget in window.findChildren(QWidget):
        assert "<h1" not in widget.toolTip()


def test_no_label_renders_a_servers_error_as_rich_text(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, fifo: FifoWatch
) -> None:
    html = HTML_ERROR + f'<img src="{fifo.path}"><img src="file://{fifo.path}">'
    # the window asks the model list twice at start, in either order: for the header's
    # list and for the model's context length; both get the error
    sim.script(hostile.error("models", 500, html), hostile.error("models", 500, html))
    window = windows.make(sim_config(sim, rill_home))
    header = window.header
    qtbot.waitUntil(lambda: header.models_error.isVisible(), timeout=5000)
    assert "<h1" in header.models_error.text()
    _assert_plain_labels(window)

    # a retried error: the retry banner and the status bar show the server's words
    sim.script(hostile.error("openai", 503, html))
    wait_reply(qtbot, window, lambda: window.send("first"), timeout=15_000)
    _assert_plain_labels(window)

    # an error that ends the reply: the reply's error line and the status bar
    sim.script(hostile.error("openai", 400, html))
    wait_reply(qtbot, window, lambda: window.send("second"))
    reply = window.view.widgets[-1]
    assert reply.error_label.isVisible()
    assert "Session expired" in reply.error_label.text()
    window.grab()
    _assert_plain_labels(window)
    assert fifo.opened == 0


def test_the_retry_banner_shows_a_servers_words_as_plain_text(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(hostile.error("openai", 503, HTML_ERROR))
    seen: list[str] = []

    def banner_shown() -> None:
        assert window.banner.isVisible()
        seen.append(window.banner.label.text())
        _assert_plain_labels(window)

    with qtbot.waitSignal(window.controller.conversation_synced, timeout=15_000):
        window.send("hello")
        qtbot.waitUntil(banner_shown, timeout=5000)
    assert seen


# ------------------------------------------------------------------------------------------
# 3. No shape of text makes one frame long
# ------------------------------------------------------------------------------------------


def test_a_huge_word_is_cut_into_bounded_segments_however_it_arrives() -> None:
    word = "x" * 300_000
    assert all(len(s.text) <= HARD_LIMIT for s in split_all(word))
    assert "".join(s.text for s in split_all(word)) == word
    # the pieces continue one another: no paragraph space between them
    pieces = -(-len(word) // HARD_LIMIT)
    assert [s.joined for s in split_all(word)] == [False] + [True] * (pieces - 1)
    doc = SafeDocument()
    writer = DocumentWriter(doc)
    for segment in split_all("before\n\n" + word):
        writer.write(segment)
    blocks = [doc.findBlockByNumber(i).blockFormat() for i in range(doc.blockCount())]
    assert len(blocks) == 1 + pieces
    assert all(b.topMargin() == 0 for b in blocks[2:])
    assert all(b.bottomMargin() == 0 for b in blocks[1:-1])
    seg = Segmenter()
    out = []
    for i in range(0, len(word), 65_536):
        out += seg.feed(word[i : i + 65_536])
        assert len(seg.tail) <= HARD_LIMIT
    out += seg.finish()
    assert all(len(s.text) <= HARD_LIMIT for s in out)
    code = split_all("```\n" + word + "\n```\n")
    assert all(len(s.text) <= HARD_LIMIT for s in code)
    assert "".join(s.text for s in code if s.kind == "code_line") == word


def test_a_huge_table_is_rendered_in_slices_that_each_keep_the_header() -> None:
    header = "| n | square |\n|---|---|\n"
    rows = [f"| {i} | {i * i} |\n" for i in range(5000)]
    segments = split_all("Before\n\n" + header + "".join(rows) + "\nAfter\n")
    tables = [s.text for s in segments if s.text.startswith("| n |")]
    assert len(tables) == -(-5000 // TABLE_SLICE_ROWS)
    assert all(t.startswith(header) for t in tables)
    assert all(t.count("\n") <= TABLE_SLICE_ROWS + 2 for t in tables)
    assert "".join(t.removeprefix(header) for t in tables) == "".join(rows)
    seg = Segmenter()
    longest = 0
    for row in [header, *rows]:
        seg.feed(row)
        longest = max(longest, len(seg.tail))
    assert longest <= len(header) + TABLE_SLICE_ROWS * len(rows[-1])


def test_a_huge_word_streams_and_reopens_in_bounded_slices(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    word = "y" * 65_536
    sim.script(hostile.reply("openai", [word] * 5))
    stats = window.view.stats
    wait_reply(qtbot, window, lambda: window.send("a long word"))
    reply = settled(qtbot, window)
    doc = reply.body.document()
    assert doc.characterCount() >= 5 * 65_536
    assert doc.defaultTextOption().wrapMode() == QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere
    assert doc.size().width() <= reply.body.width() + 1  # wrapped, not one endless line
    assert stats.max_slice_chars <= 20_000
    stats.max_slice_chars = 0
    reopen(qtbot, window)
    reply = window.view.widgets[-1]
    assert reply.rendering  # the stored reply is rendered over several turns
    reply = settled(qtbot, window)
    assert reply.body.document().characterCount() >= 5 * 65_536
    assert stats.max_slice_chars <= 20_000
    assert reply.text() == word * 5


def test_a_huge_table_streams_and_reopens_in_bounded_slices(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    table = "| a | b |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(3000))
    sim.script(hostile.reply("openai", table))
    stats = window.view.stats
    wait_reply(qtbot, window, lambda: window.send("a table"))
    reply = settled(qtbot, window)
    assert "2999" in reply.body.document().toPlainText()
    assert reply.body.document().rootFrame().childFrames()  # rendered as tables
    assert stats.max_slice_chars <= 20_000
    reopen(qtbot, window)
    reply = settled(qtbot, window)
    assert "2999" in reply.body.document().toPlainText()
    assert reply.state == "complete"
