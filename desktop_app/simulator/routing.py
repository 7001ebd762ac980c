"""The simulator as Auto's classifier and judge: deterministic JSON answers.

A request whose prompt is Rill's classifier request gets
``{"category": ..., "complexity": ...}``: the category is the first of code, math,
writing, research whose words the question uses (else chat), the complexity 2 plus one
per 15 words of the question, at most 10. A judge request gets
``{"score": N, "reason": ...}`` where N is the score given for the model that wrote the
answer (``--judge-scores sim-small=3,sim-large=9``), 8 for any other model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from desktop_app.core.routing.judge import ANSWERED_BY, CLASSIFY_HEADER, JUDGE_HEADER

DEFAULT_SCORE: Final = 8

_KINDS: Final = (
    ("code", re.compile(r"\b(code|function|python|bug|script|class|sql|regex)\b", re.I)),
    ("math", re.compile(r"\b(integral|prove|equation|solve|probability|\d+\s*[-+*/]\s*\d+)", re.I)),
    ("writing", re.compile(r"\b(essay|poem|story|email|letter|rewrite)\b", re.I)),
    ("research", re.compile(r"\b(compare|explain|history|evidence|research|why)\b", re.I)),
)
_QUESTION = re.compile(r'Question:\n"""\n(.*?)\n"""', re.S)


def parse_judge_scores(text: str) -> dict[str, int]:
    """``sim-small=3,sim-large=9`` as a mapping; ValueError with the reason."""
    scores: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        model, sep, value = part.rpartition("=")
        if not sep or not model.strip():
            raise ValueError(f"{part!r} is not MODEL=SCORE")
        try:
            score = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number (in {part!r})") from None
        if not 1 <= score <= 10:
            raise ValueError(f"the score of {model.strip()} must be from 1 to 10, not {score}")
        scores[model.strip()] = score
    return scores


def routing_reply(prompt: str, judge_scores: Mapping[str, int]) -> str | None:
    """The JSON answer to a classifier or judge request, or None for any other prompt."""
    if prompt.startswith(CLASSIFY_HEADER):
        match = _QUESTION.search(prompt)
        question = match.group(1) if match else ""
        category = next((name for name, rx in _KINDS if rx.search(question)), "chat")
        complexity = min(10, 2 + len(question.split()) // 15)
        return json.dumps({"category": category, "complexity": complexity})
    if prompt.startswith(JUDGE_HEADER):
        model = ""
        for line in prompt.splitlines():
            if line.startswith(ANSWERED_BY):
                model = line[len(ANSWERED_BY) :].strip()
                break
        score = judge_scores.get(model, DEFAULT_SCORE)
        return json.dumps({"score": score, "reason": f"the simulated judge gives {model} {score}"})
    return None
