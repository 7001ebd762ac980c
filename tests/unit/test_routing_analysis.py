"""Auto's analysis: the labelled questions, and the signals one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from desktop_app.core.routing.analysis import SCAN_CHARS, analyse, evaluate
from desktop_app.core.routing.profile import CATEGORIES

LABELLED = Path(__file__).resolve().parents[1] / "data" / "auto_prompts.toml"


def labelled() -> list[tuple[str, str, int, int]]:
    data = tomllib.loads(LABELLED.read_text(encoding="utf-8"))
    return [
        (p["text"], p["category"], p["complexity"][0], p["complexity"][1]) for p in data["prompt"]
    ]


def test_the_labelled_set_has_at_least_60_questions_in_every_category() -> None:
    samples = labelled()
    assert len(samples) >= 60
    assert {category for _, category, _, _ in samples} == set(CATEGORIES)
    for _, _, low, high in samples:
        assert 1 <= low <= high <= 10


def test_accuracy_per_category_on_the_labelled_set(capsys: pytest.CaptureFixture[str]) -> None:
    accuracy = evaluate(labelled())
    with capsys.disabled():
        print()
        for category in CATEGORIES:
            right, count = accuracy.by_category[category]
            print(f"  {category:9} {right}/{count} ({accuracy.rate(category):.0%})")
        print(f"  complexity in range: {accuracy.complexity_rate:.0%}")
    for category in CATEGORIES:
        assert accuracy.rate(category) >= 0.85, category
    assert accuracy.complexity_rate >= 0.85


@pytest.mark.parametrize(
    ("question", "category"),
    [
        ("```\nprint('x')\n```", "code"),
        ("def f(x):\n    return x;\n", "code"),
        ("What is 12 + 30?", "math"),
        ("Find the integral of $x^2$", "math"),
        ("Please draft a letter to the council.", "writing"),
        ("What are the pros and cons of remote work?", "research"),
        ("hello", "chat"),
        ("", "chat"),
        ("qwerty asdf", "chat"),
    ],
)
def test_each_signal_gives_its_category(question: str, category: str) -> None:
    assert analyse(question).category == category


@pytest.mark.parametrize(
    ("question", "arithmetic"),
    [
        ("tell me 12 + 30", True),
        ("tell me 7*(3", True),
        ("tell me 7 ×  2", True),
        ("up 50% today", True),
        ("tell me 5!", True),
        ("tell me x^2", True),
        ("tell me x ^ 3 now", True),
        ("tell me box^2", False),  # x ends a word: no power of x
        ("tell me x^y", False),
        ("version 2 of the plan", False),
        ("tell me 12 plus 30", False),
    ],
)
def test_arithmetic_is_a_digit_with_an_operator_or_a_power_of_x(
    question: str, arithmetic: bool
) -> None:
    assert (dict(analyse(question).scores)["math"] == 2) is arithmetic


def test_a_question_of_any_length_past_1000_words_is_as_long() -> None:
    words = " ".join(["river"] * 999)
    assert analyse(words + " sea").complexity == analyse(words).complexity
    assert analyse(words + " sea sea").complexity == analyse(words + " sea").complexity + 1
    assert analyse(words + " sea" * 5000).complexity == analyse(words + " sea sea").complexity


def test_complexity_grows_with_length_code_structure_and_asked_size() -> None:
    short = analyse("Write a function that adds two numbers.").complexity
    longer = analyse("Write a function that adds two numbers. " * 30).complexity
    assert longer > short
    fenced = analyse("Why does this fail?\n```\nx = 1\n```\n```\ny = 2\n```").complexity
    assert fenced > analyse("Why does this fail?").complexity
    asked = analyse("Write a detailed, comprehensive essay of 2000 words on rivers.").complexity
    assert asked > analyse("Write an essay on rivers.").complexity


def test_a_long_conversation_and_attachments_add_complexity() -> None:
    question = "Explain why the sky is blue."
    base = analyse(question).complexity
    assert analyse(question, earlier_messages=10).complexity == base + 1
    assert analyse(question, attachments=1).complexity == base + 1


def test_complexity_stays_from_1_to_10_and_short_chat_is_1() -> None:
    huge = "Implement a distributed, lock-free, thread-safe compiler from scratch. " * 500
    assert analyse(huge).complexity == 10
    assert analyse("thanks!").complexity == 1


def test_a_long_question_is_read_at_both_ends_only() -> None:
    middle = "prove the integral " * 2000
    question = "hi " + "x " * SCAN_CHARS + middle + "y " * SCAN_CHARS
    assert analyse(question).category == "chat"
    assert analyse("x " * 10 + "```\ncode\n```").category == "code"
