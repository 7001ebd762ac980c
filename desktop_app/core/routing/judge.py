"""The classifier's and the judge's requests, and reading their JSON answers.

Both are one short request to a cheap target. The classifier returns
``{"category": ..., "complexity": 1-10}``; the judge scores an answer against its
question with a fixed rubric and returns ``{"score": 1-10, "reason": ...}``. An answer
that is not that JSON is a failure (:class:`ValueError`): the classifier's caller falls
back to the heuristic, the judge's counts the attempt as not scored.
"""

from __future__ import annotations

import json
import re
from typing import Final

from desktop_app.core.routing.analysis import Analysis
from desktop_app.core.routing.profile import CATEGORIES

CLASSIFY_HEADER: Final = "Classify this question for routing."
JUDGE_HEADER: Final = "Judge this answer to the question."
ANSWERED_BY: Final = "Answered by: "
QUESTION_LIMIT: Final = 8000
ANSWER_LIMIT: Final = 16000
REPLY_TOKENS: Final = 120

RUBRIC: Final = (
    "Score it from 1 (useless or wrong) to 10 (excellent) by four things: it is correct; "
    "it answers everything the question asks; it is clear and well organised; it follows "
    "the question's instructions (format, length, language). Reply with JSON only, like "
    '{"score": 7, "reason": "one short sentence"}.'
)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n[…]\n" + text[-limit // 2 :]


def classifier_prompt(question: str) -> str:
    return (
        f"{CLASSIFY_HEADER} Reply with JSON only, like "
        '{"category": "code", "complexity": 7}. '
        f"category is one of: {', '.join(CATEGORIES)}. complexity is 1 (trivial) to 10 "
        "(expert work, long answer).\nQuestion:\n"
        f'"""\n{_clip(question, QUESTION_LIMIT)}\n"""'
    )


def judge_prompt(question: str, answer: str, model: str) -> str:
    return (
        f"{JUDGE_HEADER} {RUBRIC}\n{ANSWERED_BY}{model}\nQuestion:\n"
        f'"""\n{_clip(question, QUESTION_LIMIT)}\n"""\nAnswer:\n'
        f'"""\n{_clip(answer, ANSWER_LIMIT)}\n"""'
    )


_OBJECT = re.compile(r"\{[^{}]{0,2000}\}", re.S)


def _json_object(text: str) -> dict[str, object]:
    for match in _OBJECT.finditer(text[:20000]):
        try:
            value = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the answer holds no JSON object")


def _whole(value: object, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise ValueError(f"{name} must be a whole number from 1 to 10, got {value!r}")
    return value


def read_classification(text: str) -> Analysis:
    data = _json_object(text)
    category = data.get("category")
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    complexity = _whole(data.get("complexity"), "complexity")
    return Analysis(str(category), complexity, source="classifier")


def read_verdict(text: str) -> tuple[int, str]:
    """The judge's score and its reason (at most 200 characters)."""
    data = _json_object(text)
    score = _whole(data.get("score"), "score")
    reason = data.get("reason", "")
    return score, (reason if isinstance(reason, str) else "")[:200]
