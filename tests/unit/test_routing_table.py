"""Auto's route table: tiers, prices, strengths, rules, unusable targets, escalation."""

from __future__ import annotations

import pytest

from desktop_app.core.routing.analysis import Analysis
from desktop_app.core.routing.profile import AutoRule, AutoSettings, AutoTarget
from desktop_app.core.routing.table import NoRoute, choose, covers, stronger

FAST = AutoTarget("fast", 1)
MID = AutoTarget("mid", 2)
STRONG = AutoTarget("strong", 3, strengths=("code", "math"))
WRITER = AutoTarget("writer", 3, strengths=("writing",))
PRICES = {"fast": 0.5, "mid": 3.0, "strong": 15.0, "writer": 10.0}


def price(target: AutoTarget) -> float | None:
    return PRICES.get(target.profile)


def usable(_target: AutoTarget) -> str | None:
    return None


def route(settings: AutoSettings, category: str, complexity: int) -> str:
    chosen = choose(settings, Analysis(category, complexity), available=usable, price=price)
    return chosen.target.profile


SETTINGS = AutoSettings(targets=(FAST, MID, STRONG, WRITER))


@pytest.mark.parametrize(
    ("tier", "complexity", "covered"),
    [(1, 3, True), (1, 4, False), (2, 6, True), (2, 7, False), (3, 10, True), (7, 10, True)],
)
def test_a_tier_covers_up_to_its_complexity(tier: int, complexity: int, covered: bool) -> None:
    assert covers(tier, complexity) is covered


def test_the_cheapest_target_that_covers_the_question_answers_it() -> None:
    assert route(SETTINGS, "chat", 1) == "fast"
    assert route(SETTINGS, "chat", 5) == "mid"
    assert route(SETTINGS, "code", 8) == "strong"
    assert route(SETTINGS, "writing", 8) == "writer"


def test_a_target_listing_the_category_wins_at_equal_price() -> None:
    general = AutoTarget("general", 3)
    coder = AutoTarget("coder", 3, strengths=("code",))
    settings = AutoSettings(targets=(general, coder))
    chosen = choose(settings, Analysis("code", 9), available=usable, price=lambda _t: 1.0)
    assert chosen.target == coder


def test_without_a_target_for_the_category_the_cheapest_strong_enough_one_answers() -> None:
    settings = AutoSettings(targets=(FAST, STRONG))
    chosen = choose(settings, Analysis("writing", 9), available=usable, price=price)
    assert chosen.target == STRONG
    assert "no target lists writing" in chosen.reason


def test_without_a_strong_enough_target_the_strongest_answers() -> None:
    settings = AutoSettings(targets=(FAST, MID))
    chosen = choose(settings, Analysis("code", 10), available=usable, price=price)
    assert chosen.target == MID and "strongest" in chosen.reason


def test_a_rule_overrides_the_table() -> None:
    settings = AutoSettings(targets=SETTINGS.targets, rules=(AutoRule("strong", "math", 1, 4),))
    assert route(settings, "math", 2) == "strong"
    assert route(settings, "math", 5) == "mid"
    assert route(settings, "chat", 2) == "fast"
    chosen = choose(settings, Analysis("math", 2), available=usable, price=price)
    assert chosen.reason.startswith("rule: math questions of complexity 1–4")


def test_an_unknown_price_ranks_after_every_known_one() -> None:
    settings = AutoSettings(targets=(AutoTarget("unknown", 1), FAST))
    assert route(settings, "chat", 1) == "fast"


def test_unusable_targets_are_skipped_saying_why() -> None:
    def circuit(target: AutoTarget) -> str | None:
        return "its circuit is open until 12:00:00" if target.profile == "fast" else None

    chosen = choose(SETTINGS, Analysis("chat", 1), available=circuit, price=price)
    assert chosen.target == MID
    assert chosen.skipped == ("fast skipped: its circuit is open until 12:00:00",)


def test_no_usable_target_is_no_route() -> None:
    with pytest.raises(NoRoute) as caught:
        choose(SETTINGS, Analysis("chat", 1), available=lambda _t: "no key", price=price)
    assert len(caught.value.skipped) == 4
    with pytest.raises(NoRoute):
        choose(AutoSettings(), Analysis("chat", 1), available=usable, price=price)


def test_escalation_goes_to_the_next_stronger_untried_usable_target() -> None:
    nxt, skipped = stronger(SETTINGS, FAST, tried=[FAST], available=usable, price=price)
    assert nxt == MID and skipped == []
    nxt, _ = stronger(SETTINGS, MID, tried=[FAST, MID], available=usable, price=price)
    assert nxt == WRITER  # tier 3, cheaper than strong
    nxt, skipped = stronger(
        SETTINGS,
        MID,
        tried=[FAST, MID],
        available=lambda t: "no key" if t == WRITER else None,
        price=price,
    )
    assert nxt == STRONG and skipped == ["writer skipped: no key"]
    nxt, _ = stronger(SETTINGS, STRONG, tried=[STRONG], available=usable, price=price)
    assert nxt is None
