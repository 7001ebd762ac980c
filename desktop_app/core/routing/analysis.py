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

The text is read as words (and the pairs and triples of words, for phrases); only the
first and last 1,500 characters of a long question are read for signals (its length and
fences count whole), so a 10 kB prompt is analysed in well under a millisecond.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from desktop_app.core.routing.profile import CATEGORIES

SCAN_CHARS: Final = 1500

_TOKEN = re.compile(r"[a-z0-9][a-z0-9+#'-]*")
_FENCE = re.compile(r"^\s*(```|~~~)", re.M)
_LISTED = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.M)
# A digit with an operator after it, or x to a power. It begins with the one character class
# both start with, which lets the regex engine skip to the next digit or x (3-4 times faster).
_ARITHMETIC = re.compile(r"[\dx](?:(?<=\d)\s*(?:[-+*/^×÷=]\s*\(?\d|%|!)|(?<=\bx)\s*\^\s*\d)")
_DOLLAR_MATH = re.compile(r"\$[^$\n]{1,80}\$")
_WORD_COUNT = re.compile(r"^(\d{3,5})(?:-words?)?$")
_MATH_SYMBOLS: Final = ("\\frac", "\\int", "\\sum", "\\sqrt", *"∫∑√π≤≥≠∞")
_CODE_STARTS: Final = (
    "def ",
    "class ",
    "import ",
    "from ",
    "#include",
    "function ",
    "const ",
    "let ",
    "var ",
    "public ",
    "private ",
    "fn ",
    "func ",
    "select ",
    "traceback",
)
_CODE_ENDS: Final = ("{", "}", ";")


def _grams(*items: str) -> frozenset[str]:
    return frozenset(items)


_CODE_WORDS = _grams(
    "code",
    "function",
    "functions",
    "method",
    "bug",
    "debug",
    "compile",
    "compiles",
    "compiled",
    "compiler",
    "python",
    "javascript",
    "typescript",
    "java",
    "rust",
    "golang",
    "c++",
    "sql",
    "regex",
    "refactor",
    "implement",
    "script",
    "api",
    "class",
    "variable",
    "exception",
    "stack trace",
    "segfault",
    "unit test",
    "unit tests",
    "git",
    "docker",
    "kubernetes",
    "bash",
    "json",
    "html",
    "css",
    "react",
    "endpoint",
    "algorithm",
    "lock-free",
    "thread-safe",
    "linked list",
    "binary tree",
    "program",
)
_MATH_WORDS = _grams(
    "integral",
    "integrate",
    "derivative",
    "differentiate",
    "prove",
    "proof",
    "theorem",
    "lemma",
    "equation",
    "equations",
    "solve",
    "probability",
    "matrix",
    "matrices",
    "eigenvalue",
    "eigenvalues",
    "calculate",
    "compute",
    "sum of",
    "square root",
    "sqrt",
    "prime",
    "primes",
    "polynomial",
    "factorise",
    "factorize",
    "limit of",
    "geometry",
    "triangle",
    "algebra",
    "statistics",
    "variance",
    "percent",
    "how many",
    "divisible",
    "logarithm",
)
_WRITING_VERBS = _grams("write", "draft", "compose", "create", "give me", "pen")
_WRITTEN_FORMS = _grams(
    "essay",
    "poem",
    "haiku",
    "story",
    "email",
    "e-mail",
    "letter",
    "blog",
    "article",
    "speech",
    "toast",
    "cover",
    "tagline",
    "slogan",
    "limerick",
    "lyrics",
    "song",
    "novel",
    "chapter",
    "paragraph",
    "bio",
    "description",
    "announcement",
    "press",
    "review",
    "post",
    "caption",
    "message",
    "invitation",
)
_WRITING_WORDS = _grams(
    "proofread",
    "rewrite",
    "rephrase",
    "paraphrase",
    "tone",
    "more formal",
    "less formal",
    "grammar",
    "wording",
    "edit this",
    "edit my",
    "poem",
    "essay",
    "story",
    "narrative",
    "persuasive",
)
_RESEARCH_WORDS = _grams(
    "explain why",
    "why do",
    "why does",
    "why did",
    "why is",
    "why are",
    "why was",
    "why were",
    "compare",
    "comparison",
    "difference between",
    "differences between",
    "pros and cons",
    "advantages",
    "history of",
    "evidence",
    "source",
    "sources",
    "research",
    "studies",
    "impact of",
    "effect of",
    "effects of",
    "cause of",
    "causes of",
    "trend",
    "trends",
    "overview",
    "summarize the",
    "summarise the",
    "what is known",
    "economic",
    "economics",
    "analyze",
    "analyse",
    "analysis",
    "implications",
    "survey",
)
_CHAT_WORDS = _grams(
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank you",
    "good morning",
    "good night",
    "how are you",
    "what's up",
    "lol",
    "nice",
    "cool",
    "joke",
    "bye",
)
_SIZE_WORDS = _grams(
    "detailed",
    "in detail",
    "in depth",
    "in-depth",
    "step by step",
    "step-by-step",
    "comprehensive",
    "thorough",
    "complete",
    "full",
    "production-ready",
    "production ready",
    "exhaustive",
    "rigorous",
)
_HARD_WORDS = _grams(
    "distributed",
    "prove",
    "proof",
    "architecture",
    "from scratch",
    "lock-free",
    "thread-safe",
    "asynchronous",
    "async",
    "race condition",
    "race conditions",
    "complexity",
    "edge cases",
    "consensus",
    "compiler",
    "interpreter",
    "formal",
    "trade-offs",
    "tradeoffs",
    "multi-step",
    "multistep",
    "design a system",
    "design the system",
    "system design",
    "rigorous",
    "derive",
    "integral",
    "differential",
    "migration",
    "performance",
    "memory leak",
    "deadlock",
)
_HARD_PREFIXES: Final = ("concurren", "optimi", "scalab", "cryptograph", "eigen")
_PHRASE_STARTS: Final = frozenset(
    phrase.split(" ")[0]
    for grams in (
        _CODE_WORDS,
        _MATH_WORDS,
        _WRITING_VERBS,
        _WRITING_WORDS,
        _RESEARCH_WORDS,
        _CHAT_WORDS,
        _SIZE_WORDS,
        _HARD_WORDS,
    )
    for phrase in grams
    if " " in phrase
)


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


def _points(counts: Counter[str], grams: frozenset[str], each: int, cap: int) -> int:
    return min(cap, each * sum(counts[g] for g in grams if g in counts))


def _code_lines(text: str) -> int:
    found = 0
    for line in text.splitlines()[:400]:
        stripped = line.strip().lower()
        if stripped and (
            stripped.startswith(_CODE_STARTS) or stripped.endswith(_CODE_ENDS) or "=>" in stripped
        ):
            found += 1
            if found == 4:
                break
    return found


def _asks_for_writing(tokens: list[str], counts: Counter[str]) -> bool:
    if not any(g in counts for g in _WRITING_VERBS):
        return False
    for index, token in enumerate(tokens):
        pair = " ".join(tokens[index : index + 2])
        if token in _WRITING_VERBS or pair in _WRITING_VERBS:
            window = tokens[index + 1 : index + 9]
            if any(w in _WRITTEN_FORMS or w.rstrip("s") in _WRITTEN_FORMS for w in window):
                return True
    return False


def _words_asked(tokens: list[str]) -> int:
    """The largest word count the question asks for ("800 words", "1500-word"), or 0."""
    asked = 0
    for index, token in enumerate(tokens):
        if not token[0].isdigit():
            continue
        match = _WORD_COUNT.match(token)
        if match is None:
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token.endswith(("-word", "-words")) or following in ("word", "words"):
            asked = max(asked, int(match.group(1)))
    return asked


def analyse(question: str, *, earlier_messages: int = 0, attachments: int = 0) -> Analysis:
    """Category and complexity of ``question`` (see the module's documentation)."""
    text = (
        question
        if len(question) <= 2 * SCAN_CHARS
        else question[:SCAN_CHARS] + "\n" + question[-SCAN_CHARS:]
    )
    lower = text.lower()
    tokens = _TOKEN.findall(lower)
    counts: Counter[str] = Counter(tokens)
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if token in _PHRASE_STARTS and index < last:
            pair = f"{token} {tokens[index + 1]}"
            counts[pair] += 1
            if index + 1 < last:
                counts[f"{pair} {tokens[index + 2]}"] += 1
    if "how" in counts and "work" in counts:
        for index, token in enumerate(tokens):
            if token == "how" and "work" in tokens[index + 2 : index + 10]:
                counts["how does it work"] += 1
    fence_lines = question.count("```") + question.count("~~~")
    fences = (fence_lines + 1) // 2 if fence_lines else 0
    if fences and not _FENCE.search(text):
        fences = 0
    code = (5 if fences else 0) + _code_lines(text) + _points(counts, _CODE_WORDS, 2, 6)
    math = (2 if _ARITHMETIC.search(text) else 0) + _points(counts, _MATH_WORDS, 2, 6)
    if any(symbol in text for symbol in _MATH_SYMBOLS) or _DOLLAR_MATH.search(text):
        math += 2
    writing = (5 if _asks_for_writing(tokens, counts) else 0) + _points(
        counts, _WRITING_WORDS, 2, 4
    )
    research = min(6, _points(counts, _RESEARCH_WORDS, 2, 6) + 2 * counts["how does it work"])
    chat = _points(counts, _CHAT_WORDS, 2, 4)
    scores = (
        ("code", code),
        ("math", math),
        ("writing", writing),
        ("research", research),
        ("chat", chat),
    )
    best, points = max(scores, key=lambda kv: (kv[1], -CATEGORIES.index(kv[0])))
    category = best if points > 0 else "chat"

    # (counted up to the largest limit below: a longer question's words need not be split)
    words = len(question.split(None, 1001)) if len(question) < 200_000 else len(question) // 6
    complexity = (1 if category == "chat" else 2) + sum(
        words > limit for limit in (25, 50, 100, 300, 1000)
    )
    complexity += min(fences, 2)
    if text.count("?") >= 2 or text.count(",") >= 2:
        complexity += 1
    if len(_LISTED.findall(text)) >= 3:
        complexity += 1
    size = _points(counts, _SIZE_WORDS, 1, 2)
    asked = _words_asked(tokens) if "word" in lower else 0
    size += (asked >= 300) + (asked >= 1000) + (asked >= 2000)
    complexity += min(size, 3)
    hard = _points(counts, _HARD_WORDS, 1, 3)
    if hard < 3:
        unique = {t for t in counts if " " not in t}
        hard = min(3, hard + sum(1 for t in unique if t.startswith(_HARD_PREFIXES)))
    complexity += hard
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
