"""Math in prose, without Qt: which dollars are math, display formulas across lines, the
limits, and the typesetting process answering over its pipes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from desktop_app.ui import math_text
from desktop_app.ui.math_text import (
    MAX_TEX,
    Layout,
    display_state,
    find_math,
    layout,
    protect,
    read_answer,
    tex_problem,
)


def _tex(text: str, *, open_end: bool = False) -> list[tuple[str, bool, bool]]:
    return [(s.tex, s.display, s.closed) for s in find_math(text, open_end=open_end)]


@pytest.mark.parametrize(
    "text",
    [
        "$5 and $10",
        "it costs $5, or $6.50 with tax",
        "between $100-$200 a month",
        "US$5 and US$10",
        "a $ sign and another $ here",
        "pay $5\nor $6 tomorrow",
        "costs \\$5 and \\$6 today",
        "`$x$` is code",
        "``a `$x$` b`` too",
        "price: $ 5$",
    ],
)
def test_prose_dollars_stay_prose(text: str) -> None:
    assert find_math(text) == []
    assert find_math(text, open_end=True) == []


def test_empty_formulas_are_text() -> None:
    assert find_math("$$") == [] and find_math("$$$$") == [] and find_math("$$ $$") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$x$", [("x", False, True)]),
        ("$$\\frac12$$", [("\\frac12", True, True)]),
        ("so \\(a^2+b^2\\) holds", [("a^2+b^2", False, True)]),
        ("\\[\\sum_i i\\]", [("\\sum_i i", True, True)]),
        ("$5 or $x$", [("x", False, True)]),
        ("$x$, then $y_1$.", [("x", False, True), ("y_1", False, True)]),
        ("$a \\$ b$", [("a \\$ b", False, True)]),
        ("$$a\n\nb$$", [("a\n\nb", True, True)]),
        (
            "\\[\n\\begin{aligned}a&=b\\\\c&=d\\end{aligned}\n\\]",
            [("\n\\begin{aligned}a&=b\\\\c&=d\\end{aligned}\n", True, True)],
        ),
        ("`code` and $z$", [("z", False, True)]),
        ("\\\\[not math]", []),
    ],
)
def test_formulas_are_found(text: str, expected: list[tuple[str, bool, bool]]) -> None:
    assert _tex(text) == expected


def test_spans_cover_the_delimiters() -> None:
    text = "a $x$ b \\(y\\) c"
    assert [text[s.start : s.end] for s in find_math(text)] == ["$x$", "\\(y\\)"]


def test_an_open_display_formula_is_unfinished_only_while_streaming() -> None:
    text = "Then $$\\int_0^1 f"
    assert _tex(text) == []
    assert _tex(text, open_end=True) == [("\\int_0^1 f", True, False)]
    assert _tex("Then \\[x", open_end=True) == [("x", True, False)]
    # an unclosed inline dollar might be a price: it stays prose
    assert _tex("costs $5 and $x", open_end=True) == []


def test_too_long_a_formula_is_not_math() -> None:
    long = "x" * (MAX_TEX + 1)
    assert find_math(f"$${long}$$") == []
    assert find_math(f"${long}$") == []
    assert find_math(f"$${long}", open_end=True) == []


def test_display_state_follows_lines() -> None:
    assert display_state("The sum is", "") == ""
    assert display_state("$$", "") == "$$"
    assert display_state("\\sum_i i", "$$") == "$$"
    assert display_state("$$", "$$") == ""
    assert display_state("\\[", "") == "\\["
    assert display_state("x \\]", "\\[") == ""
    assert display_state("$$x$$ and $$", "") == "$$"
    assert display_state("`$$` in code", "") == ""
    assert display_state("\\\\[ escaped", "") == ""


def test_protect_puts_a_display_formula_in_a_paragraph_of_its_own() -> None:
    text = "The integral:\n\\[\n\\int f\n\\]\nwhere f is even."
    spans = find_math(text)
    assert protect(text, spans, "@") == "The integral:\n\n@0\ue001\n\nwhere f is even."
    inline = "so $x$ and $$y$$ here"
    assert protect(inline, find_math(inline), "@") == "so @0\ue001 and @1\ue001 here"
    listed = "- item\n  $$x$$\n- next"
    assert protect(listed, find_math(listed), "@") == "- item\n\n  @0\ue001\n\n- next"


def test_limits() -> None:
    assert tex_problem("\\frac{1}{2}") is None
    assert tex_problem("x" * (MAX_TEX + 1)) is not None
    assert tex_problem("{" * 40 + "x" + "}" * 40) == "it is nested too deeply"
    assert tex_problem("\\left(" * 40 + "x" + "\\right)" * 40) == "it is nested too deeply"
    assert tex_problem("\\sqrt" * 40 + "x") == "it is nested too deeply"


def test_layout_gives_paths_and_a_baseline() -> None:
    result = layout("\\frac{a}{b}", False, 16.0)
    assert isinstance(result, Layout)
    assert b"<path" in result.svg and b"<use" not in result.svg and b"<image" not in result.svg
    assert result.ascent > 0 and result.depth > 0 and result.width > 0
    tall = layout("\\int_0^1 f(x)\\,dx", True, 16.0)
    assert isinstance(tall, Layout) and tall.height > result.height


@pytest.mark.parametrize(
    ("tex", "why"),
    [
        ("\\frac{", "could not be typeset"),
        ("\\rule{100000cm}{100000cm}", "too large"),
        ("\\hspace{100000cm}x", "too large"),
        ("{" * 40 + "x" + "}" * 40, "nested too deeply"),
    ],
)
def test_bad_tex_gives_a_sentence(tex: str, why: str) -> None:
    result = layout(tex, True, 16.0)
    assert isinstance(result, str) and why in result


@pytest.mark.parametrize(
    "tex", ["\\href{http://127.0.0.1:9/x}{x}", "\\includegraphics{/etc/passwd}", "\\url{file:///x}"]
)
def test_hostile_commands_draw_no_reference(tex: str) -> None:
    result = layout(tex, False, 16.0)
    if isinstance(result, Layout):
        svg = result.svg.lower()
        assert b"<image" not in svg and b"href=" not in svg and b"url(" not in svg


def test_the_typesetting_process_answers_each_line() -> None:
    jobs = [
        {"tex": "x^2", "display": False, "size": 16},
        {"tex": "\\frac{", "display": True, "size": 16},
        {"nonsense": True},
    ]
    process = subprocess.run(
        [sys.executable, "-m", "desktop_app.ui.math_text"],
        input="".join(json.dumps(job) + "\n" for job in jobs).encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = process.stdout.splitlines()
    assert "ready" in json.loads(lines[0])
    first = read_answer(lines[1])
    assert isinstance(first, Layout) and first.svg.startswith(b"<svg")
    assert isinstance(read_answer(lines[2]), str)
    assert read_answer(lines[3]) == "This formula could not be typeset."
    assert len(lines) == 4
    assert read_answer(b"not json") == "This formula could not be typeset."


def test_no_qt_here() -> None:
    assert "PySide6" not in getattr(math_text, "__dict__", {})
    source = math_text.__file__
    with open(source, encoding="utf-8") as f:
        assert "PySide6" not in f.read()


@pytest.mark.parametrize(
    "text",
    [
        "\\[" * 50_000,
        "$$ " * 30_000,
        "$x\\$ " * 20_000,
        "\\(" * 50_000,
        ("$a" + "\\" * 999 + " ") * 100,
    ],
)
def test_finding_math_takes_time_linear_in_the_text(text: str) -> None:
    import time

    started = time.perf_counter()
    find_math(text, open_end=True)
    display_state(text, "")
    assert time.perf_counter() - started < 1.0  # quadratic work would take minutes
