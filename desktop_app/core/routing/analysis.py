"""What a question is about and how hard it is, from its text alone (no network).

The heuristic, in full:

**Category.** Each category collects points from the signals below; the highest wins,
ties go to the earlier one in the order code, math, writing, research, chat; a question
with no signal at all is ``chat``.

========  ==========================================================================
code      a fenced block (5), code-looking lines (``def``, ``import``, braces and
          semicolons, ``=>``, tracebacks; 1 each, at most 4), programming words
          (function, bug, compile, python, SQL, regex, refactor, …; 2 each, at most 6)
math      arithmetic between numbers (2), math words (integral, prove, equation,
          probability, matrix, …; 2 each, at most 6), LaTeX or math symbols (2)
writing   a writing verb with a written form (write/draft/compose … essay, poem,
          story, email, letter, …: 5), editing words (proofread, rewrite, tone, …; 2)
research  explaining and comparing (explain why, compare, pros and cons, history of,
          evidence, sources, impact of, …; 2 each, at most 6)
chat      greetings, thanks and small talk (2 each)
========  ==========================================================================

**Complexity** (1 to 10) starts at 1 for chat and 2 for a task, and adds: length (more
than 25, 50, 100, 300 and 1,000 words: 1 each), code (a fenced block 1, a second one 1
more), structure (two or more questions or an enumeration with two commas 1, three or
more listed requirements 1), the size asked for ("detailed", "step by step",
"comprehensive", …: 1 each, at most 2; a word count of 300, 1,000 and 2,000: 1 each;
at most 3 together), hard subjects (concurrency, distributed, optimise, prove,
architecture, from scratch, …: 1 each, at most 3), a strongly marked code or research
question (6 points or more: 1), a long conversation (more than 6 earlier messages: 1)
and attachments (1). Short chat (12 words or fewer) stays at 1.

Only the first and last 4,000 characters of a long question are scanned, so a 10 kB
prompt is analysed in well under a millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from desktop_app.core.routing.profile import CATEGORIES

SCAN_CHARS: Final = 4000

_FLAGS = re.IGNORECASE


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", _FLAGS)


_FENCE = re.compile(r"^\s*(```|~~~)", re.M)
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import|#include|function |const |let |var |"
    r"public |private |fn |func |SELECT |Traceback|\w+\(.*\)\s*[{;]\s*$|.*[{};]\s*$|.*=>)",
    re.M,
)
_CODE_WORDS = _words(
    r"code",
    r"function",
    r"functions",
    r"method",
    r"bug",
    r"debug",
    r"compile[sd]?",
    r"compiler",
    r"python",
    r"javascript",
    r"typescript",
    r"java",
    r"rust",
    r"golang",
    r"c\+\+",
    r"sql",
    r"regex",
    r"refactor",
    r"implement",
    r"script",
    r"api",
    r"class",
    r"variable",
    r"exception",
    r"stack trace",
    r"segfault",
    r"unit tests?",
    r"git",
    r"docker",
    r"kubernetes",
    r"bash",
    r"json",
    r"html",
    r"css",
    r"react",
    r"endpoint",
    r"algorithm",
    r"lock-free",
    r"thread-safe",
    r"linked list",
    r"binary tree",
    r"program",
)
_ARITHMETIC = re.compile(r"\d\s*[-+*/^×÷=]\s*\(?\d|\d\s*%|\bx\s*\^\s*\d|\d+!")
_MATH_WORDS = _words(
    r"integral",
    r"integrate",
    r"derivative",
    r"differentiate",
    r"prove",
    r"proof",
    r"theorem",
    r"lemma",
    r"equations?",
    r"solve",
    r"probability",
    r"matrix",
    r"matrices",
    r"eigenvalues?",
    r"calculate",
    r"compute",
    r"sum of",
    r"square root",
    r"sqrt",
    r"prime",
    r"primes",
    r"polynomial",
    r"factori[sz]e",
    r"limit of",
    r"geometry",
    r"triangle",
    r"algebra",
    r"statistics",
    r"variance",
    r"percent",
    r"how many",
    r"divisible",
    r"logarithm",
)
_MATH_SYMBOLS = re.compile(r"\\(?:frac|int|sum|sqrt)|[∫∑√π≤≥≠∞]|\$[^$\n]{1,80}\$")
_WRITING_ASK = re.compile(
    r"\b(?:write|draft|compose|create|give me|pen)\b[^.?!\n]{0,40}\b(?:essay|poem|haiku|"
    r"story|short story|email|e-mail|letter|blog post|article|speech|toast|cover letter|"
    r"tagline|slogan|limerick|lyrics|song|novel|chapter|paragraph|bio|description|"
    r"announcement|press release|review|post|caption|message|invitation)s?\b",
    _FLAGS,
)
_WRITING_WORDS = _words(
    r"proofread",
    r"rewrite",
    r"rephrase",
    r"paraphrase",
    r"tone",
    r"more formal",
    r"less formal",
    r"grammar",
    r"wording",
    r"edit (?:this|my)",
    r"poem",
    r"essay",
    r"story",
    r"narrative",
    r"persuasive",
)
_RESEARCH_WORDS = _words(
    r"explain why",
    r"why (?:do|does|did|is|are|was|were)",
    r"compare",
    r"comparison",
    r"differences? between",
    r"pros and cons",
    r"advantages",
    r"history of",
    r"evidence",
    r"sources?",
    r"research",
    r"studies",
    r"impact of",
    r"effects? of",
    r"causes? of",
    r"trends?",
    r"overview",
    r"summari[sz]e (?:the )?(?:literature|research|state)",
    r"what is known",
    r"how does .{1,40} work",
    r"economics?",
    r"analy[sz]e",
    r"analysis",
    r"implications",
    r"survey",
)
_CHAT_WORDS = _words(
    r"hi",
    r"hello",
    r"hey",
    r"thanks",
    r"thank you",
    r"good morning",
    r"good night",
    r"how are you",
    r"what's up",
    r"lol",
    r"nice",
    r"cool",
    r"joke",
    r"bye",
)
_SIZE_WORDS = _words(
    r"detailed",
    r"in detail",
    r"in depth",
    r"in-depth",
    r"step by step",
    r"step-by-step",
    r"comprehensive",
    r"thorough",
    r"complete",
    r"full",
    r"production[- ]ready",
    r"exhaustive",
    r"rigorous",
)
_WORD_COUNT = re.compile(r"\b(\d{3,5})\s*(?:-|\s)?words?\b", _FLAGS)
_HARD_WORDS = _words(
    r"concurren\w*",
    r"distributed",
    r"optimi[sz]\w*",
    r"prove",
    r"proof",
    r"architecture",
    r"from scratch",
    r"scalab\w*",
    r"lock-free",
    r"thread-safe",
    r"asynchronous",
    r"async",
    r"race conditions?",
    r"complexity",
    r"edge cases",
    r"consensus",
    r"compiler",
    r"interpreter",
    r"cryptograph\w*",
    r"formal",
    r"trade-?offs",
    r"multi-?step",
    r"design (?:a|the) system",
    r"system design",
    r"rigorous",
    r"derive",
    r"eigen\w*",
    r"integral",
    r"differential",
    r"migration",
    r"performance",
    r"memory leak",
    r"deadlock",
)
_LISTED = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.M)


@dataclass(frozen=True, slots=True)
class Analysis:
    category: str
    complexity: int
    scores: tuple[tuple[str, int], ...] = ()
    """Each category's points, for the reply's details and the tests."""
    source: str = "heuristic"

    @property
    def summary(self) -> str:
        return f"{self.category}, complexity {self.complexity}/10"


def _capped(pattern: re.Pattern[str], text: str, each: int, cap: int) -> int:
    count = 0
    for _ in pattern.finditer(text):
        count += each
        if count >= cap:
            return cap
    return count


def analyse(question: str, *, earlier_messages: int = 0, attachments: int = 0) -> Analysis:
    """Category and complexity of ``question`` (see the module's documentation)."""
    text = (
        question
        if len(question) <= 2 * SCAN_CHARS
        else question[:SCAN_CHARS] + "\n" + question[-SCAN_CHARS:]
    )
    fences = len(_FENCE.findall(text)) // 2 or (1 if _FENCE.search(text) else 0)
    code = (5 if fences else 0) + _capped(_CODE_LINE, text, 1, 4)
    code += _capped(_CODE_WORDS, text, 2, 6)
    math = (2 if _ARITHMETIC.search(text) else 0) + _capped(_MATH_WORDS, text, 2, 6)
    math += 2 if _MATH_SYMBOLS.search(text) else 0
    writing = (5 if _WRITING_ASK.search(text) else 0) + _capped(_WRITING_WORDS, text, 2, 4)
    research = _capped(_RESEARCH_WORDS, text, 2, 6)
    chat = _capped(_CHAT_WORDS, text, 2, 4)
    scores = (
        ("code", code),
        ("math", math),
        ("writing", writing),
        ("research", research),
        ("chat", chat),
    )
    best, points = max(scores, key=lambda kv: (kv[1], -CATEGORIES.index(kv[0])))
    category = best if points > 0 else "chat"

    words = len(question.split()) if len(question) < 200_000 else len(question) // 6
    complexity = (1 if category == "chat" else 2) + sum(
        words > limit for limit in (25, 50, 100, 300, 1000)
    )
    complexity += min(fences, 2)
    if text.count("?") >= 2 or text.count(",") >= 2:
        complexity += 1
    if len(_LISTED.findall(text)) >= 3:
        complexity += 1
    size = _capped(_SIZE_WORDS, text, 1, 2)
    count = _WORD_COUNT.search(text)
    if count is not None:
        asked = int(count.group(1))
        size += (asked >= 300) + (asked >= 1000) + (asked >= 2000)
    complexity += min(size, 3)
    complexity += _capped(_HARD_WORDS, text, 1, 3)
    if category in ("code", "research") and points >= 6:
        complexity += 1
    if earlier_messages > 6:
        complexity += 1
    if attachments:
        complexity += 1
    if category == "chat" and words <= 12:
        complexity = 1
    return Analysis(category, max(1, min(10, complexity)), scores)


@dataclass(frozen=True, slots=True)
class Accuracy:
    """How :func:`analyse` did on labelled questions."""

    by_category: dict[str, tuple[int, int]] = field(default_factory=dict)
    """For each labelled category: (questions given that category, questions)."""
    complexity_in_range: int = 0
    total: int = 0

    def rate(self, category: str) -> float:
        right, count = self.by_category.get(category, (0, 0))
        return right / count if count else 0.0

    @property
    def overall(self) -> float:
        right = sum(r for r, _ in self.by_category.values())
        return right / self.total if self.total else 0.0

    @property
    def complexity_rate(self) -> float:
        return self.complexity_in_range / self.total if self.total else 0.0


def evaluate(samples: Iterable[tuple[str, str, int, int]]) -> Accuracy:
    """Score :func:`analyse` on (question, category, lowest, highest complexity) samples."""
    by_category: dict[str, tuple[int, int]] = {}
    in_range = total = 0
    for question, category, low, high in samples:
        found = analyse(question)
        right, count = by_category.get(category, (0, 0))
        by_category[category] = (right + (found.category == category), count + 1)
        in_range += low <= found.complexity <= high
        total += 1
    return Accuracy(by_category, in_range, total)
