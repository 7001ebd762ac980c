"""Which target answers a question: the route table.

A target's tier says the hardest question it takes:

=============  ==============  =====================
tier           name            complexity it covers
=============  ==============  =====================
1              fast            1 to 3
2              balanced        1 to 6
3 and above    strong          1 to 10
=============  ==============  =====================

The route is, in order:

1. the first rule of the profile (category + complexity range → target) that matches;
2. else the cheapest target whose tier covers the complexity and whose strengths include
   the category (a target with no strengths listed takes every category); at equal price
   a target listing the category wins, then the lower tier, then the earlier one;
3. else the cheapest target whose tier covers the complexity, whatever its strengths;
4. else the strongest target.

A target that cannot be used now (its circuit is open, it has no key, the budget is
spent) is skipped, with a sentence saying so; when every target is unusable there is no
route. Escalation goes to the next stronger target: the lowest tier above the current
one, cheapest first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from desktop_app.core.routing.analysis import Analysis
from desktop_app.core.routing.profile import AutoSettings, AutoTarget, tier_name

TIER_COVERS: dict[int, int] = {1: 3, 2: 6, 3: 10}


def covers(tier: int, complexity: int) -> bool:
    """Whether a target of ``tier`` takes a question of ``complexity``."""
    return complexity <= TIER_COVERS.get(tier, 10)


Availability = Callable[[AutoTarget], str | None]
"""None when the target can be used now, else the sentence why not."""
Price = Callable[[AutoTarget], float | None]
"""What a target costs per million input plus output tokens (None: unknown)."""


@dataclass(frozen=True, slots=True)
class Route:
    target: AutoTarget
    reason: str
    skipped: tuple[str, ...] = field(default=())


class NoRoute(Exception):
    """Every target is unusable; ``skipped`` says why each one is."""

    def __init__(self, skipped: Sequence[str]) -> None:
        super().__init__("; ".join(skipped))
        self.skipped = tuple(skipped)


def _price_key(price: Price, target: AutoTarget) -> float:
    value = price(target)
    return math.inf if value is None else value


def choose(
    settings: AutoSettings,
    analysis: Analysis,
    *,
    available: Availability,
    price: Price,
) -> Route:
    """The route for ``analysis`` (see the module's documentation); :class:`NoRoute`."""
    skipped: list[str] = []
    usable: list[AutoTarget] = []
    for target in settings.targets:
        why = available(target)
        if why is None:
            usable.append(target)
        else:
            skipped.append(f"{target.label} skipped: {why}")
    if not usable:
        raise NoRoute(skipped or ["the Auto profile has no targets"])
    category, complexity = analysis.category, analysis.complexity
    for rule in settings.rules:
        if rule.matches(category, complexity):
            for target in usable:
                if target.profile == rule.target:
                    span = f"{rule.low}–{rule.high}"
                    what = f"{rule.category or 'any'} questions of complexity {span}"
                    return Route(target, f"rule: {what} go to {target.label}", tuple(skipped))

    def rank(target: AutoTarget) -> tuple[float, int, int, int]:
        specialist = 0 if category in target.strengths else 1
        return (_price_key(price, target), specialist, target.tier, usable.index(target))

    fitting = [t for t in usable if covers(t.tier, complexity) and t.covers(category)]
    if fitting:
        target = min(fitting, key=rank)
        reason = (
            f"the cheapest {tier_name(target.tier)} target for {category} "
            f"of complexity {complexity}"
        )
        return Route(target, reason, tuple(skipped))
    strong_enough = [t for t in usable if covers(t.tier, complexity)]
    if strong_enough:
        target = min(strong_enough, key=rank)
        reason = f"no target lists {category}; the cheapest that covers complexity {complexity}"
        return Route(target, reason, tuple(skipped))
    target = max(usable, key=lambda t: (t.tier, -_price_key(price, t)))
    reason = f"no target covers complexity {complexity}; the strongest"
    return Route(target, reason, tuple(skipped))


def stronger(
    settings: AutoSettings,
    current: AutoTarget,
    *,
    tried: Sequence[AutoTarget],
    available: Availability,
    price: Price,
) -> tuple[AutoTarget | None, list[str]]:
    """The next stronger target after ``current`` not tried yet, and the skip sentences."""
    skipped: list[str] = []
    candidates = [t for t in settings.targets if t.tier > current.tier and t not in tried]
    candidates.sort(key=lambda t: (t.tier, _price_key(price, t), settings.targets.index(t)))
    for target in candidates:
        why = available(target)
        if why is None:
            return target, skipped
        skipped.append(f"{target.label} skipped: {why}")
    return None, skipped
