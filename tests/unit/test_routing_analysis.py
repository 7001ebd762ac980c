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
