"""Deterministic reply text: the same request always gets the same words.

A reply is a list of tokens. One token is one word with its leading space (the first word of
the reply has none, the first word of a paragraph starts with a blank line). Sentences end
with a full stop now and then, and every eighth token is a word that needs more than one
byte in UTF-8 (accents, a typographic apostrophe, an em dash, an emoji).
"""

from __future__ import annotations

import hashlib
import random

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

_QUERY_WORDS: tuple[str, ...] = (
    "weather",
    "harbour",
    "tides",
    "bakery",
    "mountain",
    "trails",
    "lake",
    "café",
    "Zürich",
    "forecast",
    "bridges",
    "history",
)


def seed_for(text: str, model: str) -> int:
    """A stable 64-bit seed for one request (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{model}\x00{text}".encode("utf-8", "surrogatepass")).digest()
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
        if start_of_sentence and word[0].isalpha():
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
        tokens[-1] += "."
    return tokens


def echo_tokens(text: str, size: int = 4) -> list[str]:
    """``text`` cut into pieces of ``size`` code points (the last may be shorter)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def query_words(seed: int) -> str:
    """A few deterministic words for a tool call's ``query`` argument."""
    rng = random.Random(seed ^ 0x5EED)
    return " ".join(rng.sample(_QUERY_WORDS, rng.randint(2, 4)))


def count_words(text: str) -> int:
    return len(text.split())
