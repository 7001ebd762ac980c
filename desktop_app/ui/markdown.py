"""Streaming Markdown: split a growing reply into pieces that never change, and render them.

A reply arrives a few characters at a time. :class:`Segmenter` cuts the text seen so far
into *committed* pieces (finished paragraphs, lists, tables, and complete lines of fenced
code) and an open *tail* (the paragraph or code line still being written). Committed
pieces are appended to a message's QTextDocument once. The tail is shown at the end of the
same document: plain text arriving is appended to it in place, anything else renders the
tail again, and the piece it becomes keeps what is shown when it is the same text. So the
work per update stays constant however long the reply grows, and each paragraph is laid
out and drawn as it grows, not again when it is finished.

Prose is rendered by Qt's own Markdown reader (CommonMark with GitHub tables and task
lists; raw HTML is shown as text). Fenced code is written by :class:`DocumentWriter`
itself, one block per line, with a header that names the language and carries a copy
link, and :class:`CodeHighlighter` colours it.

LaTeX math (:mod:`desktop_app.ui.math_text` finds it) is kept out of the Markdown reader's
way and put back as an image drawn by :mod:`desktop_app.ui.math_render`, or as its source
in code style while it is drawn, still being written, or cannot be typeset; a display
formula still open keeps its paragraph open.

A reply is data, never a source of resources: every document is a :class:`SafeDocument`,
which loads nothing a text names (no local file, no URL), and images are shown as their
alt text (the only images are formulas, under names a reply cannot know). No piece is
large whatever the shape of the text: an unbroken line is cut into pieces of at most
:data:`HARD_LIMIT` characters (at a space if there is one, anywhere otherwise), and a
table is cut into tables of :data:`TABLE_SLICE_ROWS` rows that each repeat the header, so
laying out any one piece stays cheap.
"""

from __future__ import annotations

import bisect
import html
import re
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import shiboken6
from PySide6.QtCore import QObject, QRectF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QFontInfo,
    QFontMetrics,
    QImage,
    QPainter,
    QSyntaxHighlighter,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
    QTextFragment,
    QTextFrame,
    QTextFrameFormat,
    QTextImageFormat,
    QTextOption,
)

from desktop_app.core.text import has_surrogates
from desktop_app.ui import theme as theme_mod
from desktop_app.ui.math_text import MAX_TEX, MathSpan, display_state, find_math, protect

if TYPE_CHECKING:
    from desktop_app.ui.math_render import MathImage, MathKey, MathResult

SegmentKind = Literal["prose", "code_open", "code_line", "code_close"]

SOFT_LIMIT = 3000
"""An open paragraph longer than this is committed at its next line break."""
HARD_LIMIT = 6000
"""A line longer than this is cut into pieces of at most this many characters."""
TABLE_SLICE_ROWS = 50
"""A longer table is shown as tables of this many rows (or fewer, past
:data:`SOFT_LIMIT` characters), each with the header."""

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_DELIMITER = re.compile(r"^\s*\|(?:\s*:?-+:?\s*\|?)+\s*$")


@dataclass(frozen=True, slots=True)
class Segment:
    """A committed piece of a reply: prose Markdown, or one event of a fenced code block."""

    kind: SegmentKind
    text: str = ""
    lang: str = ""
    joined: bool = False
    """Prose that continues the previous segment's last line (a long line cut in pieces)."""


class Segmenter:
    """Cuts streamed Markdown into committed segments and an open tail.

    ``feed`` returns the segments that became final with the new text; ``tail`` is what
    is still open; ``finish`` commits everything. The work done per ``feed`` is
    proportional to the new text plus the open tail, which the limits keep small.
    """

    def __init__(
        self,
        soft_limit: int = SOFT_LIMIT,
        hard_limit: int = HARD_LIMIT,
        table_rows: int = TABLE_SLICE_ROWS,
    ) -> None:
        self.soft_limit = soft_limit
        self.hard_limit = hard_limit
        self.table_rows = table_rows
        self.in_code = False
        self.fence = ""
        self.lang = ""
        self._lines: list[str] = []
        self._lines_len = 0
        self._partial = ""
        self._table_head: list[str] | None = None
        """The header and delimiter rows of the table being read, repeated in each slice."""
        self._table_body = 0
        self._joined = False
        self._math = ""
        """The delimiter of a display formula left open (the paragraph is kept whole)."""
        self._math_len = 0

    @property
    def tail(self) -> str:
        """The open text: the unfinished paragraph, or the unfinished line of code."""
        if self.in_code:
            return self._partial
        if not self._lines and self._table_head is not None and self._partial:
            return "".join(self._table_head) + self._partial
        return "".join(self._lines) + self._partial

    def feed(self, text: str) -> list[Segment]:
        """Take more text; return the segments it completed."""
        out: list[Segment] = []
        if not text:
            return out
        data = self._partial + text
        self._partial = ""
        start = 0
        while True:
            end = data.find("\n", start)
            if end < 0:
                break
            if end - start > self.hard_limit:
                self._partial = data[start:end]
                self._split_partial(out)
                line, self._partial = self._partial + "\n", ""
                self._line(line, out)
            else:
                self._line(data[start : end + 1], out)
            start = end + 1
        self._partial = data[start:]
        if len(self._partial) > self.hard_limit:
            self._split_partial(out)
        return out

    def finish(self) -> list[Segment]:
        """Commit whatever is still open (an unclosed code fence is closed)."""
        out: list[Segment] = []
        if self._partial:
            partial, self._partial = self._partial, ""
            self._line(partial, out)
        if self.in_code:
            out.append(Segment("code_close"))
            self.in_code = False
        self._math = ""
        self._commit_prose(out)
        return out

    # -- internals ------------------------------------------------------------------------

    def _line(self, line: str, out: list[Segment]) -> None:
        if self.in_code:
            stripped = line.strip()
            if (
                stripped
                and stripped[0] == self.fence[0]
                and len(stripped) >= len(self.fence)
                and stripped == stripped[0] * len(stripped)
                and len(line) - len(line.lstrip(" ")) <= 3
            ):
                out.append(Segment("code_close"))
                self.in_code = False
                return
            out.append(Segment("code_line", line.rstrip("\r\n"), self.lang))
            return
        if self._math:
            # inside a display formula: every line (even a blank one) stays in the paragraph
            self._lines.append(line)
            self._lines_len += len(line)
            self._math_len += len(line)
            self._math = display_state(line, self._math) if self._math_len <= MAX_TEX else ""
            return
        match = _FENCE.match(line.rstrip("\r\n"))
        if match is not None and not (match.group(1)[0] == "`" and "`" in match.group(2)):
            self._commit_prose(out)
            self.in_code = True
            self.fence = match.group(1)
            self.lang = match.group(2).lower()
            out.append(Segment("code_open", "", self.lang))
            return
        if not line.strip():
            self._commit_prose(out)
            self._table_head = None
            return
        row = _TABLE_ROW.match(line) is not None
        if self._table_head is not None:
            if row:
                self._table_row(line, out)
                return
            self._table_head = None
        elif (
            row
            and self._lines
            and _TABLE_DELIMITER.match(line)
            and _TABLE_ROW.match(self._lines[-1])
        ):
            self._table_head = [self._lines[-1], line]
            self._table_body = 0
        self._lines.append(line)
        self._lines_len += len(line)
        if ("$$" in line or "\\[" in line) and display_state(line, ""):
            self._math = display_state(line, "")
            self._math_len = 0
            return
        if self._lines_len > self.soft_limit and not row:
            self._commit_prose(out)

    def _table_row(self, line: str, out: list[Segment]) -> None:
        """One body row of a table: a slice is committed every ``table_rows`` rows."""
        assert self._table_head is not None
        if not self._lines:
            self._lines = list(self._table_head)
            self._lines_len = sum(len(head) for head in self._lines)
        self._lines.append(line)
        self._lines_len += len(line)
        self._table_body += 1
        if self._table_body >= self.table_rows or self._lines_len > self.soft_limit:
            self._commit_prose(out)
            self._table_body = 0

    def _commit_prose(self, out: list[Segment]) -> None:
        if self._lines:
            text = "".join(self._lines)
            self._lines = []
            self._lines_len = 0
            if text.strip():
                out.append(Segment("prose", text, joined=self._joined))
        self._joined = False

    def _split_partial(self, out: list[Segment]) -> None:
        """Cut the open line until at most ``hard_limit`` characters of it are left open.

        Prose is cut at the last space of each piece, or anywhere if it has none; code is
        cut anywhere (each piece becomes a line of the block).
        """
        partial = self._partial
        limit = self.hard_limit
        if self.in_code:
            while len(partial) > limit:
                out.append(Segment("code_line", partial[:limit], self.lang))
                partial = partial[limit:]
            self._partial = partial
            return
        self._table_head = None
        while len(partial) > limit:
            cut = partial.rfind(" ", 0, limit + 1)
            if cut <= 0:
                cut = limit
            self._lines.append(partial[:cut])
            self._commit_prose(out)
            self._joined = True
            partial = partial[cut:].lstrip(" ")
        self._partial = partial


def split_all(text: str) -> list[Segment]:
    """Every segment of a finished text."""
    seg = Segmenter()
    return seg.feed(text) + seg.finish()


# ------------------------------------------------------------------------------------------
# Rendering into a QTextDocument
# ------------------------------------------------------------------------------------------

CODE_LANG = QTextFormat.Property.UserProperty + 1
"""Block property holding the language of a line of fenced code."""
CODE_HEADER = QTextFormat.Property.UserProperty + 2
"""Block property marking the header line above a code block (its index)."""
MATH_SOURCE = QTextFormat.Property.UserProperty + 3
"""Character property of a formula (its image, or its source while it is drawn): the
formula's LaTeX with its delimiters, which copying gives."""

_PLAIN_UNSAFE = frozenset("\\`*_[]<>&~$|#\n\r\t\0")
"""Characters that can open, close or change a Markdown construct, line breaks, and NUL
(which the Markdown reader shows as U+FFFD)."""
_PLAIN_LINE = re.compile(r"^ {0,3}(?:(?:[>*+\-]|\d{1,9}[.)]) {0,4})*[^\W\d_]")
"""A line whose block is settled and is not code: at most three spaces, container
markers, then a letter (not a digit, which could still become an ordered list's number)."""
_LINK_WORD = re.compile(r"[&@]|www\.|:/", re.IGNORECASE)
"""Text that could be, or become, an autolink (``www.``, an address, a scheme's ``://``)
or an entity."""


def plain_extension(shown: str, tail: str) -> str | None:
    """The text to append to the rendering of ``shown`` to get the rendering of ``tail``.

    ``None`` unless the rendering of the open tail ``tail`` is exactly the rendering of
    ``shown`` followed by plain characters in the format of its last one: ``tail``
    extends ``shown`` with characters that can neither open nor close any construct, on a
    line whose block is already settled, after a character that closes nothing, and no
    word they touch can be an autolink or an entity. This is what lets a streaming
    paragraph grow by an insertion at its end instead of being read again as Markdown.
    """
    kept = shown.rstrip()
    grown = tail.rstrip()
    if not kept or not grown.startswith(kept) or "$" in grown or "\\" in grown:
        return None  # formulas are found in the whole text, so they are read again
    added = grown[len(kept) :]
    if kept[-1] in _PLAIN_UNSAFE or not _PLAIN_UNSAFE.isdisjoint(added):
        return None
    first = tail.partition("\n")[0]
    line = kept[kept.rfind("\n") + 1 :]
    if not _PLAIN_LINE.match(first) or not _PLAIN_LINE.match(line):
        return None
    touched = grown[max(kept.rfind(" "), kept.rfind("\n")) + 1 :]
    if _LINK_WORD.search(touched):
        return None
    return added


HELD_FORMULA_CHARS = 200
"""The most characters of a formula begun at the end of a streaming paragraph that are
held back for a frame (see :func:`held_formula`)."""


def held_formula(tail: str, seen: int) -> int:
    """Where an inline formula begun in the newest text of ``tail`` starts, or -1.

    ``tail`` is the open end of a stream, of which the first ``seen`` characters were there
    at the frame before. A frame often ends inside a formula (``… so $x_{1} +``); shown as
    it is, its unclosed ``$`` is prose, its source on screen for a frame, and the paragraph
    is read again whole at the next frame, when the formula closes. Held back for that frame
    (the open end shown up to the ``$``), the formula comes whole at the next one and the
    paragraph grows by it in place (:func:`math_extension`). Only a ``$`` that arrived since
    the frame before is held: one still unclosed a frame later (a price, ``$5``) is shown as
    it is. Not held: a ``$`` that closes a formula, a display ``$$``, an escaped ``\\$``,
    one with a space after it, a line break or a backtick after it, or more than
    :data:`HELD_FORMULA_CHARS` characters after it.
    """
    at = tail.rfind("$")
    if at < max(seen, 1) or len(tail) - at > HELD_FORMULA_CHARS:
        return -1
    after = tail[at + 1 :]
    if tail[at - 1] in "$\\" or after[:1].isspace() or "\n" in after or "`" in after:
        return -1
    if not tail[:at].strip() or any(s.start <= at < s.end for s in find_math(tail, open_end=True)):
        return -1
    return at


@dataclass(frozen=True, slots=True)
class MathExtension:
    """What to append to a paragraph with formulas (see :func:`math_extension`)."""

    added: str
    """The characters to append, formulas included."""
    spans: list[MathSpan]
    """The formulas of ``added`` (positions in ``added``), all inline and closed."""


def math_extension(shown: str, tail: str, *, open_end: bool) -> MathExtension | None:
    """:func:`plain_extension` for a paragraph with formulas: what to append to the
    rendering of ``shown`` (an open end) to get the rendering of ``tail``.

    ``None`` unless ``tail`` extends ``shown`` with plain characters (as
    :func:`plain_extension` takes them) and whole inline formulas, and finding the formulas
    in all of ``tail`` gives the ones of ``shown``, unchanged and closed, then the new ones,
    all after it. The last character of ``shown`` outside its formulas must close nothing, so
    what the appended text follows is plain text. A paragraph of formulas then grows
    by what arrives instead of being read again whole at each frame."""
    kept = shown.rstrip()
    grown = tail.rstrip()
    if not kept or not grown.startswith(kept):
        return None
    old = find_math(shown, open_end=True)
    new = find_math(tail, open_end=open_end)
    size = len(kept)
    if new[: len(old)] != old or any(not span.closed or span.end > size for span in old):
        return None
    spans = new[len(old) :]
    if any(span.start < size or span.display or not span.closed for span in spans):
        return None
    last = size - 1  # the last character of ``shown`` outside its formulas
    for span in reversed(old):
        if span.end == last + 1:
            last = span.start - 1
    if last < 0 or kept[last] in _PLAIN_UNSAFE:
        return None
    masked = _masked(grown, [*old, *spans])  # formulas as letters: what is outside them
    added = masked[size:]
    if not _PLAIN_UNSAFE.isdisjoint(added):
        return None
    first = tail.partition("\n")[0]
    line = kept[kept.rfind("\n") + 1 :]
    if not _PLAIN_LINE.match(first) or not _PLAIN_LINE.match(line):
        return None
    touched = masked[max(masked.rfind(" ", 0, size), masked.rfind("\n", 0, size)) + 1 :]
    if _LINK_WORD.search(touched):
        return None
    moved = [MathSpan(span.start - size, span.end - size, span.tex, span.display) for span in spans]
    return MathExtension(grown[size:], moved)


def _masked(text: str, spans: list[MathSpan]) -> str:
    """``text`` with each formula of ``spans`` replaced by as many letters."""
    parts = []
    at = 0
    for span in spans:
        parts += [text[at : span.start], "x" * (span.end - span.start)]
        at = span.end
    parts.append(text[at:])
    return "".join(parts)


_PLAIN_START = re.compile(r"[^\W\d_]")
"""A paragraph that starts with a letter is not a list, a heading, a quote or code."""


def plain_paragraph(markdown: str) -> str | None:
    """The text of the paragraph ``markdown`` when its rendering is that text in the plain
    paragraph format (see :func:`plain_extension`), else None."""
    text = markdown.rstrip()
    if (
        not text
        or not _PLAIN_START.match(text)
        or not _PLAIN_UNSAFE.isdisjoint(text)
        or _LINK_WORD.search(text)
    ):
        return None
    return text


def _plain_with_marks(markdown: str) -> str | None:
    """:func:`plain_paragraph` of ``markdown`` whose formulas stand as their markers (see
    :func:`protect`): the text of a paragraph of plain text and formulas, else None. Text
    with a half of a surrogate pair is read (Qt's string of it is shorter, so the markers
    would not be where the text says)."""
    if has_surrogates(markdown):
        return None
    if _MATH_TOKEN not in markdown:
        return plain_paragraph(markdown)
    if plain_paragraph(_MATH_MARK.sub("x", markdown)) is None:
        return None
    return markdown.rstrip()


_PARAGRAPH: list[QTextBlockFormat] = []


def paragraph_format() -> QTextBlockFormat:
    """The block format the Markdown reader gives a paragraph (read once)."""
    if not _PARAGRAPH:
        doc = SafeDocument()
        doc.setMarkdown("Text", MARKDOWN_FEATURES)
        _PARAGRAPH.append(doc.begin().blockFormat())
    return QTextBlockFormat(_PARAGRAPH[0])


_MATH_TOKEN = "\ue000" + secrets.token_hex(6)
"""Stands for a formula while its paragraph goes through the Markdown reader (random, so a
reply cannot write one)."""
_MATH_MARK = re.compile(re.escape(_MATH_TOKEN) + "([0-9]+)\ue001")
_JOINER = "\u2060"
"""Word joiner: keeps punctuation on the line of the formula before it."""
_MATH_NOT_DRAWN = "Rill could not typeset this formula; it is shown as written."

QUOTE_INDENT = 16
"""How far each level of a block quote is indented (Qt's own reader uses 40 px)."""
QUOTE_BAR = 3
"""The width of the bar drawn at the left of a block quote."""

MARKDOWN_FEATURES = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value
    | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)


class SafeDocument(QTextDocument):
    """A text document that loads no resource at all: no local file, no network URL.

    Qt's own document reads any local file an image names (and its image handler falls
    back to reading the path itself when no data comes back), so every image resource
    gets a blank placeholder instead, and every other resource nothing. Long words wrap
    anywhere, so no line is wider than the view.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        option = self.defaultTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setDefaultTextOption(option)

    def loadResource(self, type: int, name: QUrl | str) -> Any:
        if type == QTextDocument.ResourceType.ImageResource.value:
            return placeholder_image()
        return None


_PLACEHOLDER: list[QImage] = []


def placeholder_image() -> QImage:
    """A small transparent image, shown for any image a document would load."""
    if not _PLACEHOLDER:
        image = QImage(16, 16, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        _PLACEHOLDER.append(image)
    return _PLACEHOLDER[0]


def monospace_font() -> QFont:
    """The system's fixed-pitch font."""
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    return font


class QuoteBars:
    """Where a document's block quotes are, to draw a bar at the left of each.

    Blocks are recorded as they are written (a document only grows at its end), as runs of
    consecutive block numbers per quote level, so painting finds the runs in view by a
    binary search: the cost of a paint does not grow with the document.
    """

    def __init__(self) -> None:
        self.runs: dict[int, list[list[int]]] = {}
        """Quote level → runs of ``[first, last]`` block numbers, in document order."""

    def clear(self) -> None:
        self.runs = {}

    def truncate(self, number: int) -> None:
        """Forget the blocks from ``number`` on (they were removed from the document)."""
        for depth in list(self.runs):
            runs = [run for run in self.runs[depth] if run[0] < number]
            if runs and runs[-1][1] >= number:
                runs[-1][1] = number - 1
            if runs:
                self.runs[depth] = runs
            else:
                del self.runs[depth]

    def add(self, number: int, level: int) -> None:
        """Block ``number`` is inside ``level`` nested quotes."""
        for depth in range(1, level + 1):
            runs = self.runs.setdefault(depth, [])
            if runs and runs[-1][1] >= number - 1:
                runs[-1][1] = max(runs[-1][1], number)
            else:
                runs.append([number, number])

    def paint(self, painter: QPainter, doc: QTextDocument, area: QRectF) -> None:
        """Draw the bars of the quotes that cross ``area`` (document coordinates)."""
        if not self.runs:
            return
        layout = doc.documentLayout()
        colour = QColor(theme_mod.current().border)
        left = doc.documentMargin()
        for depth, runs in self.runs.items():

            def bottom(run: list[int]) -> float:
                block = doc.findBlockByNumber(run[1])
                return layout.blockBoundingRect(block).bottom() if block.isValid() else -1.0

            index = bisect.bisect_left(runs, area.top(), key=bottom)
            x = left + (depth - 1) * QUOTE_INDENT
            while index < len(runs):
                first = doc.findBlockByNumber(runs[index][0])
                last = doc.findBlockByNumber(runs[index][1])
                if not first.isValid() or not last.isValid():
                    break
                top = layout.blockBoundingRect(first).top()
                if top > area.bottom():
                    break
                end = layout.blockBoundingRect(last).bottom()
                painter.fillRect(QRectF(x, top, QUOTE_BAR, end - top), colour)
                index += 1


_Waiting = tuple[QTextCursor, str, bool, QFont]
"""A formula shown as its source until its image is drawn: (the source's range, the source,
whether the formula is a centred block, the text's font)."""


class DocumentWriter:
    """Appends rendered segments to the end of a QTextDocument; never rewrites earlier text.

    The open end of a stream (the paragraph still arriving) is shown after them with
    :meth:`show_open`: it grows in place, and the finished segment it becomes keeps what is
    drawn when it is the same text, so each paragraph is laid out and drawn once as it grows.

    A fenced code block becomes a header line (language and a copy link) followed by a
    frame with the code's background, one block per line. Block quotes are indented by
    :data:`QUOTE_INDENT` per level and recorded in :attr:`quotes` for their bars.
    """

    def __init__(self, doc: QTextDocument) -> None:
        self.doc = doc
        self.quotes = QuoteBars()
        self.code_blocks: list[list[str]] = []
        self._open_code: list[str] | None = None
        self._frame: QTextFrame | None = None
        self._frame_lines = 0
        self._partial = False
        self._math_waiting: dict[MathKey, list[_Waiting]] = {}
        """Formulas shown as their source until their image is drawn, by key."""
        self._open_waiting: list[tuple[MathKey, _Waiting]] = []
        """The formulas of :attr:`_math_waiting` that the open end shows (dropped with it)."""
        self._placed: list[tuple[MathKey, _Waiting]] | None = None
        """While the open end is rendered: the waiting formulas it places."""
        self._open_at: QTextCursor | None = None
        """Where the open end shown by :meth:`show_open` begins (None: none is shown): a
        cursor, which Qt keeps in place as formulas before it get their images."""
        self._open_text = ""
        """The Markdown the open end shows."""

    def clear(self) -> None:
        self.doc.clear()
        self._open_at = None
        self._open_text = ""
        self.quotes.clear()
        self._math_waiting = {}
        self._open_waiting = []
        self.code_blocks = []
        self._open_code = None
        self._frame = None
        self._partial = False

    @property
    def open_text(self) -> str:
        """The Markdown the open end shows ("" when none is shown)."""
        return self._open_text if self._open_at is not None else ""

    def show_open(self, markdown: str) -> bool:
        """Show ``markdown``, the open end of a stream, after everything written, in place of
        the open end shown before. Returns True when it was written in place as plain text
        (the open end grew by plain text, see :func:`plain_extension`, or a new paragraph
        of plain text began, see :func:`plain_paragraph`), False when it was rendered."""
        if self._open_at is not None:
            if self._grow_open(markdown, open_end=True):
                self._open_text = markdown
                return True
        elif not self.doc.isEmpty() and (text := plain_paragraph(markdown)) is not None:
            # a new paragraph of plain text: a block and its text, nothing to read
            at = self.doc.characterCount() - 1
            self._append_plain(text, [], [])
            self._open_at = self._mark(at)
            self._open_text = markdown
            self._frame = None
            return True
        self._replace_open(markdown, open_end=True)
        return False

    def drop_open(self) -> None:
        """Remove the open end shown (if any)."""
        if self._open_at is None:
            return
        at = self._open_at.position()
        self._open_at = None
        self._open_text = ""
        before = self.doc.findBlock(at)
        first = before.blockNumber() + (1 if at else 0)
        block_format, char_format = before.blockFormat(), before.charFormat()
        cursor = QTextCursor(self.doc)
        cursor.setPosition(at)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if at == 0:
            self.doc.clear()
        elif cursor.blockFormat() != block_format or cursor.blockCharFormat() != char_format:
            # the block the open end followed took the format of the first block removed
            cursor.setBlockFormat(block_format)
            cursor.setBlockCharFormat(char_format)
        self.quotes.truncate(first)
        # Only the open end's formulas went with it: the others are not looked at, so a
        # frame costs the same with two or two hundred formulas still being typeset.
        for key, gone in self._open_waiting:
            entries = self._math_waiting.get(key)
            if entries is None:
                continue  # drawn meanwhile
            kept = [w for w in entries if w is not gone]
            if kept:
                self._math_waiting[key] = kept
            else:
                del self._math_waiting[key]
        self._open_waiting = []

    def _set_whole(self) -> bool:
        """Whether what is written next sets the whole document (it is empty, or all of it
        is the open end), which is no edit: it is not put in an edit block."""
        return self.doc.isEmpty() or (self._open_at is not None and self._open_at.position() == 0)

    @contextmanager
    def one_edit(self) -> Iterator[None]:
        """What is written inside is one edit of the document: laid out, and reported to
        the view, once, when it ends (a frame of a stream often finishes a paragraph and
        begins the next: two edits, each laying the text out, made one)."""
        if self._set_whole():
            yield
            return
        edit = QTextCursor(self.doc)
        edit.beginEditBlock()
        try:
            yield
        finally:
            edit.endEditBlock()

    def _replace_open(self, markdown: str, *, open_end: bool) -> None:
        """Render ``markdown`` in place of the open end, as one edit (laid out once)."""
        with self.one_edit():
            self.drop_open()
            at = self.doc.characterCount() - 1 if not self.doc.isEmpty() else 0
            # (dropped, the open end has no formulas: a new one collects what it places)
            self._placed = self._open_waiting if open_end else None
            try:
                self.append_prose(markdown, open_end=open_end)
            finally:
                self._placed = None
            if open_end:
                self._open_at = self._mark(at)
                self._open_text = markdown

    def _mark(self, at: int) -> QTextCursor:
        """A cursor at ``at``, where the open end begins: at the separator before its first
        block (or at 0, when the open end is the whole document). Text put at its place
        (a formula's image at the end of the paragraph before) moves it on."""
        cursor = QTextCursor(self.doc)
        cursor.setPosition(at)
        cursor.setKeepPositionOnInsert(at == 0)  # at 0 all of the document is the open end
        return cursor

    def _settle_open(self, segment: Segment) -> bool:
        """The open end was finished as ``segment``: keep what is drawn when it shows the
        same text (or grew by what can be appended, see :meth:`_grow_open`); else render the
        segment in its place."""
        if segment.joined:
            return False
        shown = self._open_text
        same = shown.rstrip() == segment.text.rstrip() and "$" not in shown and "\\" not in shown
        if not same and not self._grow_open(segment.text, open_end=False):
            self._replace_open(segment.text, open_end=False)
            return True
        self._open_at = None
        self._open_text = ""
        self._open_waiting = []  # its formulas stay: it is the finished segment now
        return True

    def write(self, segment: Segment) -> None:
        if self._open_at is not None:
            if segment.kind == "prose" and self._settle_open(segment):
                return
            self.drop_open()
        if segment.kind == "prose":
            self.append_prose(segment.text, joined=segment.joined)
        elif segment.kind == "code_open":
            self.begin_code(segment.lang)
        elif segment.kind == "code_line":
            self.append_code_line(segment.text, segment.lang)
        else:
            if self._partial:
                self._drop_partial()
            self._open_code = None
            self._frame = None

    def _drop_partial(self) -> None:
        """Remove the unfinished code line shown by :meth:`set_partial_code_line`."""
        assert self._frame is not None
        cursor = self._frame.lastCursorPosition()
        cursor.movePosition(QTextCursor.MoveOperation.StartOfBlock, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if self._frame_lines > 1:
            cursor.deletePreviousChar()
        self._frame_lines -= 1
        self._partial = False

    def append_prose(self, markdown: str, *, joined: bool = False, open_end: bool = False) -> None:
        """Render one finished piece of Markdown after everything already in the document.

        A ``joined`` piece continues the previous one's last line: no space between them.
        ``open_end``: the piece is the open end of a stream (a display formula still being
        written shows as its source).
        """
        self._frame = None
        doc = self.doc
        spans: list[MathSpan] = []
        sources: list[str] = []
        if "$" in markdown or "\\" in markdown:
            spans = find_math(markdown, open_end=open_end)
            if spans:
                sources = [markdown[span.start : span.end] for span in spans]
                markdown = protect(markdown, spans, _MATH_TOKEN)
        if doc.isEmpty():
            doc.setMarkdown(markdown, MARKDOWN_FEATURES)
            _make_inert(doc)
            self._style_blocks(0)
            if spans:
                self._place_math(0, spans, sources)
            return
        if not joined and (text := _plain_with_marks(markdown)) is not None:
            self._append_plain(text, spans, sources)
            return
        piece = SafeDocument()
        piece.setMarkdown(markdown, MARKDOWN_FEATURES)
        _make_inert(piece)
        first = piece.begin().blockFormat()
        with self._appending() as cursor:  # the piece, its styles and formulas: laid out once
            if joined:
                before = cursor.blockFormat()
                before.setBottomMargin(0)
                cursor.setBlockFormat(before)
                first.setTopMargin(0)
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            start = cursor.position()
            cursor.insertFragment(QTextDocumentFragment(piece))
            block = doc.findBlock(start)
            fix = QTextCursor(doc)
            if block.length() == 1 and block.next().isValid():
                # The fragment began with a list or table and left an empty block before it.
                fix.setPosition(start - 1)
                fix.deleteChar()
                start -= 1
            else:
                fix.setPosition(start)
                fix.setBlockFormat(first)
            self._style_blocks(start)
            if spans:
                self._place_math(start, spans, sources)

    def _append_plain(self, text: str, spans: list[MathSpan], sources: list[str]) -> None:
        """Append a paragraph of plain text (its formulas as their markers, see
        :func:`_plain_with_marks`) as the Markdown reader would: a block in the paragraph
        format, its text, then its formulas in place of their markers. Nothing is read; it
        is one edit, laid out once."""
        with self._appending() as cursor:
            cursor.insertBlock(paragraph_format(), QTextCharFormat())
            start = cursor.position()
            cursor.insertText(text, QTextCharFormat())
            if spans:
                self._place_math(start, spans, sources)

    def extend_prose(self, text: str) -> None:
        """Append plain ``text`` (see :func:`plain_extension`) to the last paragraph, in
        the format of its last character: only that paragraph is laid out again."""
        with self._appending() as cursor:
            cursor.insertText(text)

    def _grow_open(self, markdown: str, *, open_end: bool) -> bool:
        """Append to the open end, in place, what ``markdown`` adds to what it shows: plain
        text (:func:`plain_extension`), or text and whole formulas
        (:func:`math_extension`). False when ``markdown`` must be read again instead."""
        added = plain_extension(self._open_text, markdown)
        if added is not None:
            if added:
                self.extend_prose(added)
            return True
        more = math_extension(self._open_text, markdown, open_end=open_end)
        if more is None:
            return False
        self._extend_math(more)
        return True

    def _extend_math(self, more: MathExtension) -> None:
        """Append ``more`` (see :func:`math_extension`) to the open end, the last paragraph:
        its text as plain text (not in the format of a formula before it), its formulas
        placed as a rendering places them. Only that paragraph is laid out again."""
        if not more.added:
            return
        text = protect(more.added, more.spans, _MATH_TOKEN) if more.spans else more.added
        with self._appending() as cursor:
            start = cursor.position()
            if unicodedata.category(more.added[0])[0] == "P" and self._image_before(start):
                text = _JOINER + text  # as :meth:`_put_image` glues punctuation to a formula
            cursor.insertText(text, QTextCharFormat())  # plain text's, as the reader's
            if more.spans:
                sources = [more.added[span.start : span.end] for span in more.spans]
                self._placed = self._open_waiting  # these formulas are the open end's
                try:
                    self._place_marks(start, more.spans, sources)
                finally:
                    self._placed = None

    def _image_before(self, at: int) -> bool:
        """Whether the character before ``at`` is a formula's image."""
        if at <= 0 or self.doc.characterAt(at - 1) != "\ufffc":
            return False
        cursor = QTextCursor(self.doc)
        cursor.setPosition(at)
        fmt = cursor.charFormat()
        return fmt.isImageFormat() and fmt.hasProperty(MATH_SOURCE)

    # -- math -------------------------------------------------------------------------------

    def _place_math(self, start: int, spans: list[MathSpan], sources: list[str]) -> None:
        """Put each formula of the blocks from ``start`` on where the Markdown reader left
        its marker: its image if it is drawn, else its source in code style (replaced by the
        image once drawn). Inside code (an indented block) the source is put back as is.
        All of it is one edit: the document is laid out again once."""
        doc = self.doc
        edit = QTextCursor(doc)
        edit.beginEditBlock()
        try:
            self._place_marks(start, spans, sources)
        finally:
            edit.endEditBlock()

    def _place_marks(self, start: int, spans: list[MathSpan], sources: list[str]) -> None:
        doc = self.doc
        block = doc.findBlock(start)
        while block.isValid():
            text = block.text()
            if _MATH_TOKEN in text:
                marks = list(_MATH_MARK.finditer(text))
                alone = len(marks) == 1 and text.strip() == marks[0].group()
                code = block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeLanguage)
                for mark in reversed(marks):
                    index = int(mark.group(1))
                    if index >= len(spans):
                        continue
                    cursor = QTextCursor(doc)
                    cursor.setPosition(block.position() + mark.start())
                    cursor.setPosition(
                        block.position() + mark.end(), QTextCursor.MoveMode.KeepAnchor
                    )
                    probe = QTextCursor(doc)
                    probe.setPosition(block.position() + mark.start() + 1)
                    if code or probe.charFormat().fontFixedPitch():
                        cursor.insertText(sources[index], probe.charFormat())
                        continue
                    self._put_math(cursor, spans[index], sources[index], alone)
            block = block.next()

    def _put_math(self, cursor: QTextCursor, span: MathSpan, source: str, alone: bool) -> None:
        from desktop_app.ui.math_render import MathImage, renderer

        block = span.display and alone
        if block:
            centred = cursor.blockFormat()
            centred.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            cursor.setBlockFormat(centred)
        result = None
        key = None
        font = self._text_font(cursor.charFormat())
        if span.closed:
            key = renderer().key(
                span.tex.strip(),
                span.display,
                float(QFontInfo(font).pixelSize()),
                theme_mod.current().text,
                0 if block else QFontMetrics(font).xHeight(),
            )
            result = renderer().request(key, self)
        if isinstance(result, MathImage):
            self._put_image(cursor, result, source, block, font)
            return
        shown = source.replace("\n", "\u2028")
        fmt = self._source_format(source, failed=result is not None)
        begin = cursor.selectionStart()
        cursor.insertText(shown, fmt)
        if key is not None and result is None:
            waiting = QTextCursor(self.doc)
            waiting.setPosition(begin)
            waiting.setPosition(begin + len(shown), QTextCursor.MoveMode.KeepAnchor)
            waiting.setKeepPositionOnInsert(True)  # text appended after it stays outside
            entry = (waiting, source, block, font)
            self._math_waiting.setdefault(key, []).append(entry)
            if self._placed is not None:
                self._placed.append((key, entry))

    def _text_font(self, fmt: QTextCharFormat) -> QFont:
        """The font of the text a formula stands in: the document's, scaled in a heading."""
        font = QFont(self.doc.defaultFont())
        if fmt.hasProperty(QTextFormat.Property.FontSizeAdjustment):
            # Qt sizes a heading relative to the application's default font
            scale = fmt.font().pointSizeF() / max(1.0, QFont().pointSizeF())
            if font.pointSizeF() > 0:
                font.setPointSizeF(font.pointSizeF() * scale)
            elif font.pixelSize() > 0:
                font.setPixelSize(round(font.pixelSize() * scale))
        return font

    def _source_format(self, source: str, *, failed: bool) -> QTextCharFormat:
        """A formula shown as written: code style."""
        t = theme_mod.current()
        fmt = QTextCharFormat()
        fmt.setFont(monospace_font())
        fmt.setFontFixedPitch(True)
        fmt.setForeground(QColor(t.text))
        fmt.setBackground(QColor(t.inline_code_bg))
        fmt.setProperty(MATH_SOURCE, source)
        if failed:
            fmt.setToolTip(plain_tooltip(_MATH_NOT_DRAWN))
        return fmt

    def _put_image(
        self, cursor: QTextCursor, image: MathImage, source: str, block: bool, font: QFont
    ) -> None:
        doc = self.doc
        doc.addResource(
            QTextDocument.ResourceType.ImageResource.value, QUrl(image.name), image.image
        )
        fmt = QTextImageFormat()
        fmt.setName(image.name)
        width, height = image.width, image.height
        room = doc.textWidth() - 2 * doc.documentMargin() - 4
        if block and room > 0 and width > room:
            width, height = room, height * room / width
        fmt.setWidth(width)
        fmt.setHeight(height)
        if not block:
            fmt.setFont(font)  # the x-height the formula was padded for
            fmt.setVerticalAlignment(QTextCharFormat.VerticalAlignment.AlignMiddle)
        fmt.setProperty(MATH_SOURCE, source)
        at = cursor.selectionStart()
        cursor.insertImage(fmt)
        after = doc.characterAt(at + 1)
        if not block and after and unicodedata.category(after)[0] == "P":
            # no line break between a formula and the punctuation after it
            glue = QTextCursor(doc)
            glue.setPosition(at + 2)
            text_format = glue.charFormat()
            glue.setPosition(at + 1)
            glue.insertText(_JOINER, text_format)

    def math_ready(self, results: list[tuple[MathKey, MathResult]]) -> None:
        """Formulas are drawn (or cannot be): put their images where their sources are
        shown, as one edit (the document is laid out again once)."""
        from desktop_app.ui.math_render import MathImage

        waiting = [(r, w) for key, r in results for w in self._math_waiting.pop(key, [])]
        if not waiting or not shiboken6.isValid(self.doc):
            return
        edit = QTextCursor(self.doc)
        edit.beginEditBlock()
        try:
            for result, (cursor, source, block, font) in waiting:
                if cursor.selectedText() != source.replace("\n", "\u2028"):
                    continue  # the document changed under it
                if isinstance(result, MathImage):
                    self._put_image(cursor, result, source, block, font)
                else:
                    tip = QTextCharFormat()
                    tip.setToolTip(plain_tooltip(_MATH_NOT_DRAWN))
                    cursor.mergeCharFormat(tip)
        finally:
            edit.endEditBlock()

    def _style_blocks(self, start: int) -> None:
        """Style the blocks from position ``start`` on, just written from Markdown.

        Inline code spans get a background (Qt only sets the font); block quotes are
        indented by :data:`QUOTE_INDENT` per level and recorded for their bars.
        """
        doc = self.doc
        t = theme_mod.current()
        block = doc.findBlock(start)
        background = QColor(t.inline_code_bg)
        while block.isValid():
            level = block.blockFormat().property(QTextFormat.Property.BlockQuoteLevel)
            if isinstance(level, int) and level > 0:
                quote = block.blockFormat()
                quote.setLeftMargin(QUOTE_INDENT * level)
                quote.setRightMargin(0)
                QTextCursor(block).setBlockFormat(quote)
                self.quotes.add(block.blockNumber(), level)
            it = block.begin()
            while not it.atEnd():
                frag = it.fragment()
                if frag.isValid():
                    fmt = frag.charFormat()
                    if fmt.fontFixedPitch() and not fmt.hasProperty(
                        QTextFormat.Property.BackgroundBrush
                    ):
                        cursor = QTextCursor(doc)
                        cursor.setPosition(frag.position())
                        cursor.setPosition(
                            frag.position() + frag.length(), QTextCursor.MoveMode.KeepAnchor
                        )
                        extra = QTextCharFormat()
                        extra.setBackground(background)
                        cursor.mergeCharFormat(extra)
                it += 1
            block = block.next()

    def begin_code(self, lang: str, *, header: bool = True) -> None:
        """Start a fenced code block: a header with the language and a copy link, a frame."""
        t = theme_mod.current()
        index = len(self.code_blocks)
        self._open_code = []
        self.code_blocks.append(self._open_code)
        cursor = self._end_cursor()
        if header:
            fmt = QTextBlockFormat()
            fmt.setTopMargin(6)
            fmt.setProperty(CODE_HEADER, index)
            self._new_block(cursor, fmt)
            label = QTextCharFormat()
            label.setForeground(QColor(t.muted))
            label.setFont(monospace_font())
            cursor.insertText(f"{lang or 'code'}   ", label)
            link = QTextCharFormat()
            link.setAnchor(True)
            link.setAnchorHref(f"rill:copy-code/{index}")
            link.setForeground(QColor(t.link))
            cursor.insertText("Copy", link)
            cursor.movePosition(QTextCursor.MoveOperation.End)
        frame = QTextFrameFormat()
        frame.setBackground(QColor(t.code_bg))
        frame.setBorder(1)
        frame.setBorderBrush(QColor(t.border))
        frame.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        frame.setPadding(6)
        frame.setTopMargin(2)
        frame.setBottomMargin(4)
        self._frame = cursor.insertFrame(frame)
        self._frame_lines = 0

    def append_code_line(self, text: str, lang: str) -> None:
        """Append one line of code to the open code block (starting one if none is open)."""
        if self._frame is None:
            self.begin_code(lang, header=False)
        if self._open_code is not None:
            self._open_code.append(text)
        self._write_code_line(text, lang)
        self._partial = False

    def set_partial_code_line(self, text: str, lang: str) -> None:
        """Show the unfinished last line of the open code block (replaced on the next call).

        Only that one block is rewritten, so streaming code costs the length of a line.
        """
        if self._frame is None:
            self.begin_code(lang, header=False)
        self._write_code_line(text, lang)
        self._partial = True

    def _write_code_line(self, text: str, lang: str) -> None:
        assert self._frame is not None
        t = theme_mod.current()
        cursor = self._frame.lastCursorPosition()
        fmt = QTextBlockFormat()
        fmt.setProperty(CODE_LANG, lang or "text")
        char = QTextCharFormat()
        char.setFont(monospace_font())
        char.setForeground(QColor(t.text))
        if self._partial:
            cursor.movePosition(
                QTextCursor.MoveOperation.StartOfBlock, QTextCursor.MoveMode.KeepAnchor
            )
            cursor.removeSelectedText()
        elif self._frame_lines == 0:
            cursor.setBlockFormat(fmt)
            cursor.setBlockCharFormat(char)
            self._frame_lines = 1
        else:
            cursor.insertBlock(fmt, char)
            self._frame_lines += 1
        cursor.insertText(text, char)

    @contextmanager
    def _appending(self) -> Iterator[QTextCursor]:
        """A cursor at the end of the document inside one edit: what is written through it
        is laid out once, when the edit ends. (A cursor placed outside an edit lays out the
        line it lands on at once, to know its x.)"""
        cursor = QTextCursor(self.doc)
        cursor.beginEditBlock()
        try:
            cursor.movePosition(QTextCursor.MoveOperation.End)
            yield cursor
        finally:
            cursor.endEditBlock()

    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.doc)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _new_block(self, cursor: QTextCursor, fmt: QTextBlockFormat) -> None:
        if self.doc.isEmpty():
            cursor.setBlockFormat(fmt)
            cursor.setBlockCharFormat(QTextCharFormat())
        else:
            cursor.insertBlock(fmt, QTextCharFormat())


def _make_inert(doc: QTextDocument) -> None:
    """Show every image as its alt text, and every tooltip (a link's title) as plain text.

    Run on a freshly imported piece of Markdown, before it reaches a view: an image never
    reaches layout, so nothing is ever asked to load it.
    """
    t = theme_mod.current()
    images: list[tuple[int, int, QTextCharFormat]] = []
    for frag in fragments(doc):
        fmt = frag.charFormat()
        if fmt.isImageFormat():
            images.append((frag.position(), frag.length(), fmt))
        elif fmt.toolTip():
            cursor = QTextCursor(doc)
            cursor.setPosition(frag.position())
            cursor.setPosition(frag.position() + frag.length(), QTextCursor.MoveMode.KeepAnchor)
            tip = QTextCharFormat()
            tip.setToolTip(plain_tooltip(fmt.toolTip()))
            cursor.mergeCharFormat(tip)
    for position, length, fmt in reversed(images):
        alt = fmt.property(QTextFormat.Property.ImageAltText)
        text = alt if isinstance(alt, str) and alt else "[image]"
        shown = QTextCharFormat()
        shown.setFont(fmt.font())
        shown.setFontItalic(True)
        shown.setForeground(QColor(t.muted))
        if fmt.isAnchor():
            shown.setAnchor(True)
            shown.setAnchorHref(fmt.anchorHref())
        cursor = QTextCursor(doc)
        cursor.setPosition(position)
        cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(text * length, shown)


def fragments(doc: QTextDocument) -> Iterator[QTextFragment]:
    """Every fragment of ``doc`` (a run of text in one format, or an image), in order."""
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            if fragment.isValid():
                yield fragment
            it += 1
        block = block.next()


def formulas(doc: QTextDocument) -> list[tuple[str, str]]:
    """(LaTeX with its delimiters, image name) of every formula shown as an image in
    ``doc``, in order."""
    found: list[tuple[str, str]] = []
    for fragment in fragments(doc):
        fmt = fragment.charFormat()
        if fmt.isImageFormat():
            source = fmt.property(MATH_SOURCE)
            if isinstance(source, str):
                found.append((source, fmt.toImageFormat().name()))
    return found


def selection_text(cursor: QTextCursor) -> str | None:
    """The selected text with each formula as its LaTeX (with its delimiters), or None when
    the selection holds no formula image."""
    if not cursor.hasSelection():
        return None
    doc = cursor.document()
    start, end = cursor.selectionStart(), cursor.selectionEnd()
    parts: list[str] = []
    found = False
    block = doc.findBlock(start)
    while block.isValid() and block.position() < end:
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.isValid():
                low = max(frag.position(), start)
                high = min(frag.position() + frag.length(), end)
                if low < high:
                    fmt = frag.charFormat()
                    source = fmt.property(MATH_SOURCE) if fmt.isImageFormat() else None
                    if isinstance(source, str):
                        parts.append(source * (high - low))
                        found = True
                    else:
                        offset = frag.position()
                        parts.append(frag.text()[low - offset : high - offset])
            it += 1
        if block.position() + block.length() <= end and block.next().isValid():
            parts.append("\n")
        block = block.next()
    if not found:
        return None
    text = "".join(parts).replace("\u2028", "\n").replace("\ufffc", "")
    return text.replace(_JOINER, "")


def plain_tooltip(text: str) -> str:
    """``text`` as a tooltip that shows it literally (Qt renders tooltips as rich text)."""
    if not text:
        return ""
    return '<p style="white-space: pre-wrap">' + html.escape(text, quote=False) + "</p>"


# ------------------------------------------------------------------------------------------
# Syntax highlighting
# ------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_KEYWORDS: dict[str, frozenset[str]] = {
    "python": _words(
        """
        False None True and as assert async await break class continue def del elif else
        except finally for from global if import in is lambda nonlocal not or pass raise
        return try while with yield match case self
        """
    ),
    "js": _words(
        """
        break case catch class const continue debugger default delete do else export extends
        finally for function if import in instanceof let new return super switch this throw
        try typeof var void while with yield async await of null undefined true false
        interface type enum implements readonly public private protected
        """
    ),
    "c": _words(
        """
        auto break case char const continue default do double else enum extern float for goto
        if inline int long register return short signed sizeof static struct switch typedef
        union unsigned void volatile while bool true false nullptr class namespace template
        typename public private protected virtual override new delete this using std include
        define final import package extends implements throws throw try catch finally boolean
        byte String null
        """
    ),
    "rust": _words(
        """
        as async await break const continue crate dyn else enum extern false fn for if impl
        in let loop match mod move mut pub ref return self Self static struct super trait
        true type unsafe use where while Some None Ok Err
        """
    ),
    "go": _words(
        """
        break case chan const continue default defer else fallthrough for func go goto if
        import interface map package range return select struct switch type var nil true false
        """
    ),
    "shell": _words(
        """
        if then else elif fi case esac for while until do done in function return exit
        export local echo cd set unset source
        """
    ),
    "sql": _words(
        """
        select from where insert into values update set delete create table drop alter
        index join left right inner outer on group by order having limit offset as and or
        not null is in like distinct union all primary key foreign references
        """
    ),
}
_ALIASES = {
    "py": "python",
    "python3": "python",
    "javascript": "js",
    "ts": "js",
    "typescript": "js",
    "jsx": "js",
    "tsx": "js",
    "json": "js",
    "cpp": "c",
    "c++": "c",
    "h": "c",
    "hpp": "c",
    "java": "c",
    "csharp": "c",
    "cs": "c",
    "kotlin": "c",
    "swift": "c",
    "rs": "rust",
    "golang": "go",
    "sh": "shell",
    "bash": "shell",
    "zsh": "shell",
    "console": "shell",
    "postgresql": "sql",
    "sqlite": "sql",
}
_HASH_COMMENT = frozenset({"python", "shell", "ruby", "rb", "yaml", "yml", "toml", "perl", "r"})
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?|`[^`]*`?")
_NUMBER = re.compile(r"\b(?:0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)\b")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def language_family(lang: str) -> str:
    lang = lang.lower()
    return _ALIASES.get(lang, lang)


class CodeHighlighter(QSyntaxHighlighter):
    """Colours keywords, strings, comments, numbers and calls in fenced code lines.

    Only blocks carrying the :data:`CODE_LANG` property are touched; each line is coloured
    on its own (a block comment or docstring spanning lines is coloured line by line).
    """

    def __init__(self, doc: QTextDocument | QObject) -> None:
        super().__init__(doc)
        self._formats: dict[str, QTextCharFormat] = {}
        self.refresh_colours()

    def refresh_colours(self) -> None:
        t = theme_mod.current()
        self._formats = {}
        for name, colour, bold, italic in (
            ("kw", t.kw, True, False),
            ("string", t.string, False, False),
            ("comment", t.comment, False, True),
            ("number", t.number, False, False),
            ("func", t.func, False, False),
        ):
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(colour))
            if bold:
                fmt.setFontWeight(QFont.Weight.DemiBold)
            fmt.setFontItalic(italic)
            self._formats[name] = fmt

    def highlightBlock(self, text: str) -> None:
        lang = self.currentBlock().blockFormat().property(CODE_LANG)
        if not isinstance(lang, str) or not text.strip():
            return
        family = language_family(lang)
        if family in ("text", "plain", "plaintext", "txt", "markdown", "md", "diff"):
            return
        f = self._formats
        keywords = _KEYWORDS.get(family, _KEYWORDS["c"])
        covered = bytearray(len(text))
        for m in _STRING.finditer(text):
            self.setFormat(m.start(), m.end() - m.start(), f["string"])
            covered[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
        comment_at = _comment_start(text, family, covered)
        if comment_at >= 0:
            self.setFormat(comment_at, len(text) - comment_at, f["comment"])
            covered[comment_at:] = b"\x01" * (len(text) - comment_at)
        for m in _NUMBER.finditer(text):
            if not covered[m.start()]:
                self.setFormat(m.start(), m.end() - m.start(), f["number"])
        for m in _CALL.finditer(text):
            if not covered[m.start()] and m.group(1) not in keywords:
                self.setFormat(m.start(1), len(m.group(1)), f["func"])
        for m in _WORD.finditer(text):
            if not covered[m.start()] and (
                m.group() in keywords or (family == "sql" and m.group().lower() in keywords)
            ):
                self.setFormat(m.start(), m.end() - m.start(), f["kw"])


def _comment_start(text: str, family: str, covered: bytearray) -> int:
    """Where a line comment (or a block comment's start or middle) begins, or -1."""
    if family in _HASH_COMMENT:
        markers: tuple[str, ...] = ("#",)
    elif family == "sql":
        markers = ("--", "/*")
    else:
        markers = ("//", "/*")
    best = -1
    for marker in markers:
        pos = text.find(marker)
        while pos >= 0 and covered[pos]:
            pos = text.find(marker, pos + 1)
        if pos >= 0 and (best < 0 or pos < best):
            best = pos
    return best
