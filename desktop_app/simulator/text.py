"""Deterministic reply text: the same request always gets the same words.

A reply is a list of tokens. One token is one word with its leading space (the first word of
the reply has none, the first word of a paragraph starts with a blank line). Sentences start
with a capital and end with a full stop now and then, and every eighth token is a word that
needs more than one byte in UTF-8 (accents, a typographic apostrophe, an em dash, an emoji).

A prompt that asks for code, a table or a list gets a demo reply with one (a short paragraph,
then a fenced code block, a Markdown table or a list, then prose), so the simulator shows
what a client renders.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Literal

_PROSE = """
    the a river runs through quiet valley and every stone remembers water light falls on
    slow current where small fish turn silver under bridge old town keeps its bells
    morning air carries smell of bread from bakery near harbour boats rest against
    wooden pier while gulls argue about nothing in particular someone opens window
    listens to rain that came overnight leaving streets bright clean cool maps show
    paths climbing hills toward forest edge winding past orchards fields of barley
    wind moves grass like tide travellers stop for coffee read letters write notes
    about weather distant mountains snow melting into streams feeding lake below
    evening lamps glow softly across square music drifts out of open doors children
    laugh chasing shadows until dark stars appear one by one over rooftops clocks
    tick gently patient minds wander through memory stories told twice become truer
    each season brings its own colour green gold amber grey blue long roads lead home
"""
_WORDS: tuple[str, ...] = tuple(_PROSE.split())

_SPECIAL: tuple[str, ...] = (
    "café",
    "über",
    "naïve",
    "déjà",
    "façade",
    "Zürich",
    "jalapeño",
    "—",
    "🌊",
    "river’s",
    "world’s",
    "crème",
)

_SPECIAL_WORDS: tuple[str, ...] = tuple(w for w in _SPECIAL if w[0].isalpha())
"""The multi-byte words a sentence may start or end with (no dash, no emoji)."""


def seed_for(text: str, model: str, variant: int = 0) -> int:
    """A stable 64-bit seed for one request (independent of PYTHONHASHSEED).

    ``variant`` numbers the answers to the same request (0 for the first): each gets its
    own words, as a model answering again would.
    """
    key = f"{model}\x00{text}" if variant == 0 else f"{model}\x00{text}\x00{variant}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def reply_tokens(seed: int, count: int, *, natural_end: bool = True) -> list[str]:
    """``count`` prose tokens for ``seed``; a shorter reply is a prefix of a longer one.

    With ``natural_end`` the last token closes its sentence (a reply that stopped on its
    own); without it the reply is simply cut, as when max tokens was reached.
    """
    rng = random.Random(seed)
    tokens: list[str] = []
    sentence_left = rng.randint(6, 16)
    sentences_left = rng.randint(3, 6)
    start_of_sentence = True
    new_paragraph = False
    for i in range(count):
        word = _SPECIAL[rng.randrange(len(_SPECIAL))] if i % 8 == 5 else rng.choice(_WORDS)
        if start_of_sentence:
            if not word[0].isalpha():  # a sentence starts with a word, not a dash
                word = _SPECIAL_WORDS[rng.randrange(len(_SPECIAL_WORDS))]
            word = word[0].upper() + word[1:]
        sentence_left -= 1
        if sentence_left <= 0 and word[-1].isalpha():
            word += "." if rng.random() < 0.85 else "!"
            start_of_sentence = True
            sentence_left = rng.randint(6, 16)
            sentences_left -= 1
        else:
            start_of_sentence = False
            if word[-1].isalpha() and rng.random() < 0.07:
                word += ","
        if i == 0:
            tokens.append(word)
        elif new_paragraph:
            tokens.append("\n\n" + word)
        else:
            tokens.append(" " + word)
        new_paragraph = False
        if start_of_sentence and sentences_left <= 0:
            new_paragraph = True
            sentences_left = rng.randint(3, 6)
    if natural_end and tokens and tokens[-1][-1] not in ".!":
        last = tokens[-1].rstrip(",")
        lead = last[: len(last) - len(last.lstrip())]
        if not last[-1].isalpha():  # end on a word: "river." not "—." or "🌊."
            last = lead + _SPECIAL_WORDS[seed % len(_SPECIAL_WORDS)]
        tokens[-1] = last + "."
    return tokens


DemoKind = Literal["code", "table", "list"]

_ASKS: tuple[tuple[DemoKind, re.Pattern[str]], ...] = (
    (
        "code",
        re.compile(
            r"\b(code|function|script|program|snippet|class|python|javascript|typescript|"
            r"rust|golang|bash|shell)\b",
            re.IGNORECASE,
        ),
    ),
    ("table", re.compile(r"\btables?\b", re.IGNORECASE)),
    ("list", re.compile(r"\b(lists?|steps?|checklist|bullets?|ideas)\b", re.IGNORECASE)),
)


def demo_kind(prompt: str) -> DemoKind | None:
    """What a prompt asks for that the demo replies show: code, a table or a list."""
    for kind, pattern in _ASKS:
        if pattern.search(prompt):
            return kind
    return None


def demo_tokens(kind: DemoKind, prompt: str, seed: int, count: int) -> list[str]:
    """A reply with a code block, a table or a list, cut at ``count`` tokens (filled up
    to ``count`` with prose after the block); a shorter reply is a prefix of a longer one."""
    rng = random.Random(seed ^ 0xDE770)
    intro = _sentence(rng, rng.randint(8, 14))
    if kind == "code":
        block = _code_block(prompt, rng)
        lead = "Here is a short example that does it:"
    elif kind == "table":
        block = _table(rng)
        lead = "Here is a small table to compare them:"
    else:
        block = _list(prompt, rng)
        lead = "Here is how it goes:"
    head = _words_of(f"{intro} {lead}\n\n{block}")
    if len(head) >= count:
        return head[:count]
    outro = reply_tokens(seed, count - len(head))
    if outro:
        outro[0] = "\n\n" + outro[0]
    return head + outro


def _words_of(text: str) -> list[str]:
    """``text`` as tokens: each word with the whitespace before it (newlines kept)."""
    return re.findall(r"\s*\S+", text)


def _sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(_WORDS) for _ in range(words)]
    first = chosen[0]
    chosen[0] = first[0].upper() + first[1:]
    return " ".join(chosen) + "."


def _name(rng: random.Random) -> str:
    return "_".join(rng.sample([w for w in _WORDS if len(w) > 3], 2))


def _code_block(prompt: str, rng: random.Random) -> str:
    lowered = prompt.lower()
    languages = ("python", "javascript", "rust", "bash")
    named = [lang for lang in languages if lang in lowered]
    if "shell" in lowered and not named:
        named = ["bash"]
    language = named[0] if named else languages[rng.randrange(len(languages))]
    name = _name(rng)
    word = rng.choice(_WORDS)
    limit = rng.randint(3, 9)
    if language == "python":
        body = (
            f"def {name}(items: list[str], limit: int = {limit}) -> list[str]:\n"
            f'    """Keep the first {limit} items that mention {word}."""\n'
            f"    found = [item for item in items if {word!r} in item]\n"
            f"    return found[:limit]"
        )
    elif language == "javascript":
        camel = name.split("_")[0] + name.split("_")[1].capitalize()
        body = (
            f"function {camel}(items, limit = {limit}) {{\n"
            f"  // Keep the first {limit} items that mention {word}.\n"
            f'  return items.filter((item) => item.includes("{word}")).slice(0, limit);\n'
            f"}}"
        )
    elif language == "rust":
        body = (
            f"fn {name}(items: &[&str], limit: usize) -> Vec<String> {{\n"
            f'    // Keep the first `limit` items that mention "{word}".\n'
            f"    items\n"
            f"        .iter()\n"
            f'        .filter(|item| item.contains("{word}"))\n'
            f"        .take(limit)\n"
            f"        .map(|item| item.to_string())\n"
            f"        .collect()\n"
            f"}}"
        )
    else:
        body = (
            f"# Show the first {limit} lines that mention {word}.\n"
            f'grep -i "{word}" notes.txt | head -n {limit}'
        )
    return f"```{language}\n{body}\n```"


_PLACES: tuple[str, ...] = (
    "harbour",
    "valley",
    "old bridge",
    "orchards",
    "forest edge",
    "mountain lake",
    "town square",
    "bakery",
    "wooden pier",
    "barley fields",
    "Zürich",
    "café by the river",
)


def _table(rng: random.Random) -> str:
    places = rng.sample(_PLACES, 4)
    rows = [
        f"| {place[0].upper() + place[1:]} | {rng.randint(2, 480)} km | "
        f"{rng.choice(('spring', 'summer', 'autumn', 'winter'))} |"
        for place in places
    ]
    return "\n".join(["| Place | Distance | Best season |", "|---|---:|---|", *rows])


def _list(prompt: str, rng: random.Random) -> str:
    numbered = re.search(r"\bsteps?\b", prompt, re.IGNORECASE) is not None
    items = [_sentence(rng, rng.randint(4, 9)) for _ in range(rng.randint(3, 5))]
    if numbered:
        return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
    return "\n".join(f"- {item}" for item in items)


def echo_tokens(text: str, size: int = 4) -> list[str]:
    """``text`` cut into pieces of ``size`` code points (the last may be shorter)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def count_words(text: str) -> int:
    return len(text.split())
