"""The simulator as Auto's classifier and judge: its answers and --judge-scores."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.routing.judge import (
    classifier_prompt,
    judge_prompt,
    read_classification,
    read_verdict,
)
from desktop_app.simulator.__main__ import _parser
from desktop_app.simulator.routing import parse_judge_scores, routing_reply


def test_judge_scores_parse_and_bad_ones_say_why() -> None:
    assert parse_judge_scores("sim-small=3, sim-large=9") == {"sim-small": 3, "sim-large": 9}
    assert parse_judge_scores("") == {}
    for bad, reason in (
        ("sim-small", "is not MODEL=SCORE"),
        ("sim-small=x", "is not a whole number"),
        ("sim-small=11", "must be from 1 to 10"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_judge_scores(bad)
    args = _parser().parse_args(["--judge-scores", "a=2,b=7"])
    assert args.judge_scores == {"a": 2, "b": 7}
    with pytest.raises(SystemExit):
        _parser().parse_args(["--judge-scores", "a=0"])


def test_the_judge_scores_by_the_model_that_wrote_the_answer() -> None:
    scores = {"sim-small": 3}
    small = routing_reply(judge_prompt("Why?", "Because.", "sim-small"), scores)
    other = routing_reply(judge_prompt("Why?", "Because.", "gpt-4o"), scores)
    assert small is not None and other is not None
    assert read_verdict(small)[0] == 3
    assert read_verdict(other)[0] == 8


def test_the_classifier_answers_from_keywords_and_length() -> None:
    answer = routing_reply(classifier_prompt("Fix this python function " + "x " * 30), {})
    assert answer is not None
    assert json.loads(answer) == {"category": "code", "complexity": 4}
    found = read_classification(answer)
    assert (found.category, found.complexity, found.source) == ("code", 4, "classifier")
    assert routing_reply("hello there", {}) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no json here", "no JSON object"),
        ('{"category": "poetry", "complexity": 3}', "category must be one of"),
        ('{"category": "code", "complexity": 11}', "complexity must be a whole number"),
    ],
)
def test_a_classification_that_is_not_the_json_asked_for_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        read_classification(text)


def test_a_verdict_in_a_code_fence_is_read_and_its_reason_bounded() -> None:
    text = '```json\n{"score": 7.0, "reason": "' + "r" * 500 + '"}\n```'
    score, reason = read_verdict(text)
    assert score == 7 and len(reason) == 200
