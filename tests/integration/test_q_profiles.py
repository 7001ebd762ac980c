"""A profile name that names no profile is said as such, with the profiles that exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.config import Config, Profile, load_config
from desktop_app.simulator import SimulatorThread
from tests.helpers import run_q

EXIT_USAGE = 2


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


q = run_q


def write_config(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_q_says_the_profile_does_not_exist_and_lists_the_ones_that_do(rill_home: Path) -> None:
    path = write_config(
        rill_home,
        '[profiles.work]\nprovider = "anthropic"\n[profiles.home]\nprovider = "ollama"\n',
    )
    result = q("--profile", "nosuch", "hi", home=rill_home)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "There is no profile 'nosuch'" in result.stderr
    assert "'home', 'work'" in result.stderr
    assert str(path) in result.stderr
    assert "API key" not in result.stderr


def test_q_without_any_profile_names_the_built_in_one(rill_home: Path) -> None:
    result = q("--list-models", "--profile", "nosuch", home=rill_home)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "There is no profile 'nosuch'" in result.stderr
    assert "only the built-in profile 'default'" in result.stderr


def test_a_default_profile_set_to_no_profile_is_refused(rill_home: Path) -> None:
    result = q("--set", "default_profile=nosuch", "hi", home=rill_home)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "There is no profile 'nosuch'" in result.stderr


def test_the_built_in_and_a_profile_made_by_set_still_work(
    simt: SimulatorThread, rill_home: Path
) -> None:
    url = simt.base_url("openai")
    result = q("--profile", "default", "--base-url", url, "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    result = q("--set", f"profiles.new.base_url={url}", "--profile", "new", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr


def test_a_config_file_whose_default_profile_is_gone_says_so_and_uses_default(
    simt: SimulatorThread, rill_home: Path
) -> None:
    """The window shows config problems too: this is the name that comes from outside it."""
    path = write_config(rill_home, 'default_profile = "gone"\n[profiles.work]\nmodel = "m"\n')
    config = load_config(path)
    assert config["default_profile"] == "default"
    assert any(
        p.key == "default_profile" and "there is no profile 'gone'" in p.reason
        for p in config.problems
    )
    result = q("--base-url", simt.base_url("openai"), "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert "there is no profile 'gone'" in result.stderr


def test_named_profile() -> None:
    config = Config(profiles={"work": Profile(name="work", provider="anthropic")})
    assert config.named_profile("work").provider == "anthropic"
    assert config.named_profile("default") == Profile(name="default")
    with pytest.raises(ValueError, match=r"There is no profile 'x'.*'default', 'work'"):
        config.named_profile("x")
