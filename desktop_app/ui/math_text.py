"""LaTeX math in a reply's prose: where it is, whether it can be typeset, and its layout.

This module imports no Qt, so it can be tested on its own and runs in the process that
typesets formulas (:func:`serve`, started by :mod:`desktop_app.ui.math_render`).

Math is written the four ways models write it: ``$$…$$`` and ``\\[…\\]`` for display
formulas (which may span lines) and ``$…$`` and ``\\(…\\)`` inline. Dollars in prose stay
prose by pandoc's rule: an inline ``$`` opens math only when a non-space follows it, and
closes it only when a non-space precedes it and no digit follows it, so "$5 and $10" is
text. ``\\$`` is a literal dollar, and nothing inside a code span is math.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

MAX_TEX = 2_000
"""A longer formula is not typeset (it shows as written)."""
MAX_DEPTH = 16
"""A formula with more nested groups than this is not typeset."""
MAX_WIDTH = 3_000.0
MAX_HEIGHT = 1_000.0
"""A formula whose layout is larger than this (in pixels) is not drawn."""
NICENESS = 10
"""How much lower than the window the typesetting process runs (where there is ``nice``)."""
MEMORY_LIMIT = 1 << 30
"""The address space the typesetting process may use (where the system enforces it)."""

_ESCAPABLE = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True, slots=True)
class MathSpan:
    """One formula in a text: ``text[start:end]`` is its source with its delimiters."""

    start: int
    end: int
    tex: str
    display: bool
    closed: bool = True
    """False for a formula still being written at the end of a streaming text."""


def _skip_code_span(text: str, i: int) -> int:
    """``text[i]`` starts a run of backticks: the index after its code span, or after the
    run when no run of the same length closes it."""
    n = len(text)
    j = i
    while j < n and text[j] == "`":
        j += 1
    run = j - i
    k = j
    while True:
        k = text.find("`", k)
        if k < 0:
            return j
        m = k
        while m < n and text[m] == "`":
            m += 1
        if m - k == run:
            return m
        k = m


_NOTABLE = re.compile(r"[`\\$]")
"""The characters that can start a code span, an escape or a formula."""


def _escaped(text: str, j: int, start: int) -> bool:
    """Whether ``text[j]`` is escaped: an odd run of backslashes (from ``start`` on) before it."""
    k = j
    while k > start and text[k - 1] == "\\":
        k -= 1
    return (j - k) % 2 == 1


class _Closers:
    """Where each closing delimiter of a text is, found once, so that finding the end of a
    formula costs a binary search however many openers the text holds."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[str, list[int]] = {}

    def _positions(self, closer: str) -> list[int]:
        found = self._found.get(closer)
        if found is None:
            found = [m.start() for m in re.finditer("(?=" + re.escape(closer) + ")", self.text)]
            self._found[closer] = found
        return found

    def find(self, closer: str, body: int) -> int:
        """The first ``closer`` at or after ``body`` and within :data:`MAX_TEX` characters of
        it that is not escaped, or -1."""
        text = self.text
        positions = self._positions(closer)
        at = bisect.bisect_left(positions, body)
        while at < len(positions) and positions[at] - body <= MAX_TEX:
            j = positions[at]
            if not _escaped(text, j, body):
                return j
            at += 1
        return -1

    def inline_dollar(self, i: int) -> int:
        """The end of the ``$…$`` opened at ``i``, or -1. The first unescaped ``$`` decides:
        it closes the formula when a non-space precedes it and no digit follows it; a line
        break first means no formula."""
        text = self.text
        stop = text.find("\n", i + 1, i + 2 + MAX_TEX)
        limit = stop if stop >= 0 else min(len(text), i + 2 + MAX_TEX)
        positions = self._positions("$")
        at = bisect.bisect_right(positions, i)
        while at < len(positions) and positions[at] < limit:
            j = positions[at]
            if not _escaped(text, j, i + 1):
                after = text[j + 1] if j + 1 < len(text) else ""
                if text[j - 1].isspace() or after.isdigit():
                    return -1
                return j
            at += 1
        return -1


def find_math(text: str, *, open_end: bool = False) -> list[MathSpan]:
    """Every formula in ``text`` (Markdown prose), in order.

    ``open_end``: the text is still streaming; a display formula opened and not yet closed
    runs to the end of the text as an unfinished span (an unclosed ``$`` stays prose).
    """
    spans: list[MathSpan] = []
    closers = _Closers(text)
    n = len(text)
    i = 0
    while i < n:
        found = _NOTABLE.search(text, i)
        if found is None:
            break
        i = found.start()
        c = text[i]
        if c == "`":
            i = _skip_code_span(text, i)
            continue
        if c == "\\":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt in ("(", "["):
                display = nxt == "["
                span = _span(closers, i, 2, "\\]" if display else "\\)", display, open_end)
                if span is not None:
                    spans.append(span)
                    i = span.end
                    continue
                i += 2
                continue
            i += 2 if nxt in _ESCAPABLE else 1
            continue
        if text.startswith("$$", i):
            span = _span(closers, i, 2, "$$", True, open_end)
            if span is not None:
                spans.append(span)
                i = span.end
                continue
            i += 2
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt and not nxt.isspace():
            end = closers.inline_dollar(i)
            if end > i + 1:
                spans.append(MathSpan(i, end + 1, text[i + 1 : end], False))
                i = end + 1
                continue
        i += 1
    return spans


def _span(
    closers: _Closers, i: int, width: int, closer: str, display: bool, open_end: bool
) -> MathSpan | None:
    """The formula opened at ``i`` by a delimiter of ``width`` characters, if any."""
    text = closers.text
    body = i + width
    end = closers.find(closer, body)
    if end >= 0:
        tex = text[body:end]
        if tex.strip():
            return MathSpan(i, end + len(closer), tex, display)
        return None
    if open_end and len(text) - body <= MAX_TEX:
        return MathSpan(i, len(text), text[body:], display, closed=False)
    return None


def protect(text: str, spans: list[MathSpan], token: str) -> str:
    """``text`` with each formula replaced by ``token``, its index and U+E001, so Markdown
    leaves it alone. A display formula on lines of its own becomes a paragraph of its own
    (it is centred), keeping the indentation it had (a formula inside a list item stays in
    the item)."""
    out: list[str] = []
    at = 0
    for index, span in enumerate(spans):
        head = text[at : span.start]
        marker = f"{token}{index}\ue001"
        if span.display:
            line_start = text.rfind("\n", 0, span.start) + 1
            line_end = text.find("\n", span.end)
            rest = text[span.end : len(text) if line_end < 0 else line_end]
            if line_start > 0 and not text[line_start : span.start].strip() and at <= line_start:
                head = text[at:line_start] + "\n" + text[line_start : span.start]
            if not rest.strip() and line_end >= 0:
                marker += "\n"
        out.append(head)
        out.append(marker)
        at = span.end
    out.append(text[at:])
    return "".join(out)


def display_state(line: str, state: str) -> str:
    """The display formula left open after ``line``: ``""``, ``"$$"`` or ``"\\\\["``.

    ``state`` is the one open before it. Used to keep a paragraph whole while a display
    formula in it is open (a formula may span lines, even blank ones).
    """
    closers = _Closers(line)
    n = len(line)
    i = 0
    while i < n:
        if state:
            end = closers.find("$$" if state == "$$" else "\\]", i)
            if end < 0:
                return state
            state = ""
            i = end + 2
            continue
        found = _NOTABLE.search(line, i)
        if found is None:
            return state
        i = found.start()
        if line[i] == "`":
            i = _skip_code_span(line, i)
        elif line[i] == "\\":
            if line.startswith("[", i + 1):
                state = "\\["
            i += 2
        elif line.startswith("$$", i):
            state = "$$"
            i += 2
        else:
            i += 1
    return state


def tex_problem(tex: str) -> str | None:
    """Why ``tex`` is not typeset at all, or None: too long, or nested too deeply."""
    if len(tex) > MAX_TEX:
        return f"it is longer than {MAX_TEX:,} characters"
    depth = 0
    deepest = 0
    i = 0
    n = len(tex)
    while i < n:
        c = tex[i]
        if c == "\\":
            if tex.startswith("\\left", i):
                depth += 1
            elif tex.startswith("\\right", i):
                depth -= 1
            deepest = max(deepest, depth)
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        deepest = max(deepest, depth)
        i += 1
    if deepest > MAX_DEPTH or tex.count("\\sqrt") > MAX_DEPTH:
        return "it is nested too deeply"
    return None


# ------------------------------------------------------------------------------------------
# Layout (in the typesetting process)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """A typeset formula: an SVG of paths (no text, no external reference) and its box.

    ``ascent`` and ``depth`` are above and below the formula's baseline, in pixels.
    """

    svg: bytes
    width: float
    ascent: float
    depth: float

    @property
    def height(self) -> float:
        return self.ascent + self.depth


LayoutJob = tuple[str, bool, float]
"""(TeX, display, size in pixels)."""
LayoutResult = Layout | str
"""A layout, or the sentence saying why there is none."""

_MARGIN = 0.5


def layout(tex: str, display: bool, size: float) -> LayoutResult:
    """Typeset one formula with ziamath; a sentence instead when it cannot be."""
    problem = tex_problem(tex)
    if problem is not None:
        return f"Rill does not typeset this formula: {problem}."
    from ziamath.config import config
    from ziamath.zmath import Math

    config.svg2 = False  # each glyph a path of its own (QtSvg draws no <symbol>)
    try:
        math = Math.fromlatex(tex, size=size, inline=not display, margin=_MARGIN)
        width, height = math.getsize()
        if width > MAX_WIDTH or height > MAX_HEIGHT:
            return "Rill does not typeset this formula: it would be too large to show."
        svg = math.svg().encode("utf-8")
        below = -math.getyofst()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return "This formula could not be typeset" + (f": {reason}" if reason else ".")
    return Layout(svg, width + 2 * _MARGIN, height - below + _MARGIN, below + _MARGIN)


def main() -> int:
    """The typesetting process (``python -m desktop_app.ui.math_text``, or ``rill
    --typeset-math`` in a build): reads one job a line on stdin (JSON: ``tex``,
    ``display``, ``size``) and answers each with a line on stdout (JSON: ``svg``,
    ``width``, ``ascent`` and ``depth``, or ``error``), after a first line once ready."""
    # file descriptors, not sys.stdin/stdout: a windowed build may have no such objects
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    with contextlib.suppress(OSError):
        os.dup2(2, 1)  # whatever else is printed goes where errors go
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(NICENESS)  # the window comes first when the cores are busy
    started = time.perf_counter()
    import ziamath  # noqa: F401

    channel.write(json.dumps({"ready": time.perf_counter() - started}) + "\n")
    channel.flush()
    for line in os.fdopen(0, "rb"):
        try:
            job = json.loads(line)
            result = layout(str(job["tex"]), bool(job["display"]), float(job["size"]))
        except (ValueError, KeyError, TypeError):
            result = "This formula could not be typeset."
        if isinstance(result, Layout):
            answer: dict[str, Any] = {
                "svg": result.svg.decode("utf-8"),
                "width": result.width,
                "ascent": result.ascent,
                "depth": result.depth,
            }
        else:
            answer = {"error": result}
        channel.write(json.dumps(answer) + "\n")
        channel.flush()
    return 0


def read_answer(line: bytes) -> LayoutResult:
    """One answer line of the typesetting process."""
    try:
        answer = json.loads(line)
        if "error" in answer:
            return str(answer["error"])
        return Layout(
            str(answer["svg"]).encode("utf-8"),
            float(answer["width"]),
            float(answer["ascent"]),
            float(answer["depth"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return "This formula could not be typeset."


if __name__ == "__main__":
    sys.exit(main())
