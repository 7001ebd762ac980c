"""Auto profiles in the config file: read, written back, and bad ones said as problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.core.config import load_config, save_config
from desktop_app.core.routing.profile import AutoRule, AutoSettings, AutoTarget, parse_auto

BASE = """
[profiles.fast]
provider = "openai"
model = "sim-small"
[profiles.strong]
provider = "anthropic"
model = "sim-large"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE + text, encoding="utf-8")
    return path


def test_an_auto_profile_is_read_with_its_targets_and_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[profiles.auto]
kind = "auto"
targets = [
  { profile = "fast", tier = 1 },
  { profile = "strong", tier = "strong", strengths = ["code", "math"], model = "big" },
]
validate = true
judge = "fast"
threshold = 7
max_escalations = 1
rules = [ { category = "math", min = 1, max = 10, target = "strong" } ]
""",
    )
    config = load_config(path)
    assert config.problems == []
    auto = config.profiles["auto"].auto
    assert auto == AutoSettings(
        targets=(
            AutoTarget("fast", 1),
            AutoTarget("strong", 3, "big", ("code", "math")),
        ),
        validate=True,
        judge="fast",
        threshold=7,
        max_escalations=1,
        rules=(AutoRule("strong", "math", 1, 10),),
    )
    assert config.profiles["fast"].auto is None
    save_config(config, tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml").profiles["auto"] == config.profiles["auto"]


def test_bad_auto_values_are_problems_with_a_sentence_and_lose_nothing_else(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
[profiles.auto]
kind = "auto"
targets = [
  { profile = "fast", tier = "huge" },
  { profile = "nosuch", tier = 2 },
  { tier = 3 },
  { profile = "strong", tier = 3, strengths = ["poetry"] },
]
threshold = 11
judge = "nosuch"
colour = "red"
""",
    )
    config = load_config(path)
    reasons = {p.key: p.reason for p in config.problems}
    assert "expected fast, balanced, strong or a number" in reasons["profiles.auto.targets[1].tier"]
    assert "names no profile" in reasons["profiles.auto.targets[3]"]
    assert "unknown strength 'poetry'" in reasons["profiles.auto.targets[4].strengths"]
    assert "'nosuch' is not an ordinary profile" in reasons["profiles.auto.targets"]
    assert "from 1 to 10, got 11; using 6" in reasons["profiles.auto.threshold"]
    assert "using the cheapest target" in reasons["profiles.auto.judge"]
    assert reasons["profiles.auto.colour"] == "unknown key for an Auto profile"
    auto = config.profiles["auto"].auto
    assert auto is not None
    assert [t.profile for t in auto.targets] == ["fast", "strong"]
    assert auto.targets[0].tier == 1 and auto.threshold == 6 and auto.judge == ""
    assert all(p.line is not None for p in config.problems)


def test_an_auto_profile_without_targets_and_an_unknown_kind_are_said(tmp_path: Path) -> None:
    path = write(tmp_path, '[profiles.auto]\nkind = "auto"\n[profiles.x]\nkind = "robot"\n')
    config = load_config(path)
    reasons = {p.key: p.reason for p in config.problems}
    assert reasons["profiles.auto.targets"] == "an Auto profile needs at least one target"
    assert "unknown kind 'robot'" in reasons["profiles.x.kind"]
    assert config.profiles["x"].auto is None


def test_an_auto_profile_cannot_target_another_auto_profile() -> None:
    settings, problems = parse_auto({"kind": "auto", "targets": "fast"})
    assert settings.targets == ()
    assert ("targets", "must be a list of { profile = ..., tier = ... } tables") in problems


def test_set_refuses_server_keys_on_an_auto_profile(tmp_path: Path) -> None:
    path = write(tmp_path, '[profiles.auto]\nkind = "auto"\ntargets = [{ profile = "fast" }]\n')
    config = load_config(path)
    with pytest.raises(ValueError, match="'auto' is an Auto profile"):
        config.set("profiles.auto.model", "x")
    assert config.profiles["auto"].auto is not None
