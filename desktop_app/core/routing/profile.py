"""An Auto profile as the config file holds it: ``[profiles.NAME] kind = "auto"``.

```toml
[profiles.auto]
kind = "auto"
targets = [
  { profile = "fast",   tier = 1 },
  { profile = "strong", tier = "strong", strengths = ["code", "math"] },
]
validate = false          # judge every answer
judge = "fast"            # the profile that judges
threshold = 6             # below this score, escalate
max_escalations = 2
classifier = ""           # a profile that classifies the question ("" = the heuristic only)
classifier_timeout_s = 3.0
rules = [ { category = "math", min = 1, max = 10, target = "strong" } ]
```

Parsing never raises: each bad value is reported as ``(key, reason)`` and left out (or
its default used), so a broken Auto profile shows a sentence instead of stopping Rill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

CATEGORIES: Final[tuple[str, ...]] = ("code", "math", "writing", "research", "chat")
STRENGTHS: Final[tuple[str, ...]] = (*CATEGORIES, "vision")
TIER_NAMES: Final[dict[str, int]] = {"fast": 1, "balanced": 2, "strong": 3}
MAX_TIER: Final = 10

AUTO_KEYS: Final[frozenset[str]] = frozenset(
    {
        "kind",
        "targets",
        "validate",
        "judge",
        "threshold",
        "max_escalations",
        "classifier",
        "classifier_timeout_s",
        "rules",
    }
)


def tier_name(tier: int) -> str:
    """``fast``, ``balanced``, ``strong`` for tiers 1 to 3, else ``tier N``."""
    for name, number in TIER_NAMES.items():
        if number == tier:
            return name
    return f"tier {tier}"


@dataclass(frozen=True, slots=True)
class AutoTarget:
    """A candidate: an existing profile (optionally with another model), its tier and the
    categories it is good at (none listed: good at every one)."""

    profile: str
    tier: int
    model: str = ""
    strengths: tuple[str, ...] = ()

    def covers(self, category: str) -> bool:
        return not self.strengths or category in self.strengths

    @property
    def label(self) -> str:
        return f"{self.profile} ({self.model})" if self.model else self.profile


@dataclass(frozen=True, slots=True)
class AutoRule:
    """Questions of ``category`` (or any, when empty) with a complexity from ``low`` to
    ``high`` go to the target whose profile is ``target``."""

    target: str
    category: str = ""
    low: int = 1
    high: int = 10

    def matches(self, category: str, complexity: int) -> bool:
        return (not self.category or self.category == category) and (
            self.low <= complexity <= self.high
        )


@dataclass(frozen=True, slots=True)
class AutoSettings:
    targets: tuple[AutoTarget, ...] = ()
    validate: bool = False
    judge: str = ""
    """The profile that judges ("" : the cheapest target)."""
    threshold: int = 6
    max_escalations: int = 2
    classifier: str = ""
    classifier_timeout_s: float = 3.0
    rules: tuple[AutoRule, ...] = ()


def parse_auto(body: Mapping[str, Any]) -> tuple[AutoSettings, list[tuple[str, str]]]:
    """The Auto settings in a profile's table, and the problems found as (key, reason)."""
    problems: list[tuple[str, str]] = []
    defaults = AutoSettings()
    for key in body:
        if key not in AUTO_KEYS:
            problems.append((str(key), "unknown key for an Auto profile"))
    targets = _targets(body.get("targets", []), problems)
    if not targets:
        problems.append(("targets", "an Auto profile needs at least one target"))
    validate = body.get("validate", defaults.validate)
    if not isinstance(validate, bool):
        problems.append(("validate", f"expected true or false, got {validate!r}; using false"))
        validate = defaults.validate
    judge = _text(body, "judge", problems)
    classifier = _text(body, "classifier", problems)
    threshold = _int(body, "threshold", defaults.threshold, 1, 10, problems)
    escalations = _int(body, "max_escalations", defaults.max_escalations, 0, 10, problems)
    timeout = body.get("classifier_timeout_s", defaults.classifier_timeout_s)
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        timeout = float(timeout)
    if not isinstance(timeout, float) or not math.isfinite(timeout) or timeout <= 0:
        problems.append(
            ("classifier_timeout_s", f"expected a positive number of seconds, got {timeout!r}")
        )
        timeout = defaults.classifier_timeout_s
    rules = _rules(body.get("rules", []), problems)
    return (
        AutoSettings(
            targets=tuple(targets),
            validate=validate,
            judge=judge,
            threshold=threshold,
            max_escalations=escalations,
            classifier=classifier,
            classifier_timeout_s=timeout,
            rules=tuple(rules),
        ),
        problems,
    )


def renamed(settings: AutoSettings, old: str, new: str) -> AutoSettings:
    """``settings`` with the profile ``old`` called ``new`` in its targets, judge,
    classifier and rules."""

    def name(value: str) -> str:
        return new if value == old else value

    return replace(
        settings,
        targets=tuple(replace(t, profile=name(t.profile)) for t in settings.targets),
        judge=name(settings.judge),
        classifier=name(settings.classifier),
        rules=tuple(replace(r, target=name(r.target)) for r in settings.rules),
    )


def auto_to_toml(settings: AutoSettings) -> dict[str, Any]:
    """The table of an Auto profile in the config file (what :func:`parse_auto` reads)."""
    defaults = AutoSettings()
    table: dict[str, Any] = {"kind": "auto", "targets": []}
    for target in settings.targets:
        entry: dict[str, Any] = {"profile": target.profile, "tier": target.tier}
        if target.model:
            entry["model"] = target.model
        if target.strengths:
            entry["strengths"] = list(target.strengths)
        table["targets"].append(entry)
    for name in ("validate", "judge", "threshold", "max_escalations", "classifier"):
        value = getattr(settings, name)
        if value != getattr(defaults, name):
            table[name] = value
    if settings.classifier_timeout_s != defaults.classifier_timeout_s:
        table["classifier_timeout_s"] = settings.classifier_timeout_s
    if settings.rules:
        table["rules"] = [
            {
                **({"category": r.category} if r.category else {}),
                "min": r.low,
                "max": r.high,
                "target": r.target,
            }
            for r in settings.rules
        ]
    return table


def parse_tier(value: Any) -> int:
    """A tier from ``fast``/``balanced``/``strong`` or a number from 1 to 10; ValueError."""
    if isinstance(value, str) and value.strip().lower() in TIER_NAMES:
        return TIER_NAMES[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TIER:
        return value
    raise ValueError(
        f"expected fast, balanced, strong or a number from 1 to {MAX_TIER}, got {value!r}"
    )


def _targets(raw: Any, problems: list[tuple[str, str]]) -> list[AutoTarget]:
    if not isinstance(raw, list):
        problems.append(("targets", "must be a list of { profile = ..., tier = ... } tables"))
        return []
    out: list[AutoTarget] = []
    for index, entry in enumerate(raw, start=1):
        where = f"targets[{index}]"
        if not isinstance(entry, dict):
            problems.append((where, 'must be a table like { profile = "fast", tier = 1 }'))
            continue
        profile = entry.get("profile")
        if not isinstance(profile, str) or not profile.strip():
            problems.append((where, 'names no profile (profile = "NAME")'))
            continue
        unknown = set(entry) - {"profile", "tier", "model", "strengths"}
        if unknown:
            problems.append((where, f"unknown key {sorted(unknown)[0]!r}"))
        try:
            tier = parse_tier(entry.get("tier", 1))
        except ValueError as exc:
            problems.append((f"{where}.tier", f"{exc}; using 1"))
            tier = 1
        model = entry.get("model", "")
        if not isinstance(model, str):
            problems.append((f"{where}.model", f"expected a model name, got {model!r}"))
            model = ""
        strengths = entry.get("strengths", [])
        if not isinstance(strengths, list) or not all(isinstance(s, str) for s in strengths):
            problems.append((f"{where}.strengths", "must be a list of categories"))
            strengths = []
        good = []
        for strength in strengths:
            if strength in STRENGTHS:
                good.append(strength)
            else:
                problems.append(
                    (
                        f"{where}.strengths",
                        f"unknown strength {strength!r} (one of {', '.join(STRENGTHS)})",
                    )
                )
        out.append(AutoTarget(profile.strip(), tier, model.strip(), tuple(good)))
    return out


def _rules(raw: Any, problems: list[tuple[str, str]]) -> list[AutoRule]:
    if not isinstance(raw, list):
        problems.append(("rules", "must be a list of { category, min, max, target } tables"))
        return []
    out: list[AutoRule] = []
    for index, entry in enumerate(raw, start=1):
        where = f"rules[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("target"), str):
            problems.append((where, "must be a table naming a target profile (target = ...)"))
            continue
        category = entry.get("category", "")
        if category and category not in CATEGORIES:
            problems.append((f"{where}.category", f"expected one of {', '.join(CATEGORIES)}"))
            continue
        low, high = entry.get("min", 1), entry.get("max", 10)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or not (
            1 <= low <= high <= 10
        ):
            problems.append((where, "min and max must be whole numbers, 1 ≤ min ≤ max ≤ 10"))
            continue
        out.append(AutoRule(entry["target"], str(category), low, high))
    return out


def _text(body: Mapping[str, Any], key: str, problems: list[tuple[str, str]]) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        problems.append((key, f"expected a profile name, got {value!r}"))
        return ""
    return value.strip()


def _int(
    body: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    high: int,
    problems: list[tuple[str, str]],
) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(
            (key, f"expected a whole number from {low} to {high}, got {value!r}; using {default}")
        )
        return default
    return value
