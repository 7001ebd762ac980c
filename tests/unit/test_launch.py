"""The launcher pauses the cycle collector for start-up and resumes it once, with
start-up's objects frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app import launch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as it was found: running, nothing frozen."""
    assert gc.isenabled()
    try:
        yield
    finally:
        launch.resume_collector()
        gc.unfreeze()
        gc.enable()


@pytest.mark.usefixtures("collector")
def test_paused_until_resumed_then_start_up_objects_are_frozen() -> None:
    launch.pause_collector()
    assert not gc.isenabled()
    assert launch.collector_paused()
    made_during_start_up = [[i] for i in range(1000)]
    launch.resume_collector()
    assert gc.isenabled()
    assert not launch.collector_paused()
    assert gc.get_freeze_count() >= len(made_during_start_up)
    frozen = gc.get_freeze_count()
    launch.resume_collector()  # once only: nothing more is frozen
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("collector")
def test_resume_without_a_pause_changes_nothing() -> None:
    launch.resume_collector()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    launch.pause_collector()
    launch.resume_collector()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_rill_and_python_m_desktop_app_start_through_the_launcher() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["gui-scripts"]["rill"] == "desktop_app.launch:main"
    probe = (
        "import runpy, sys\n"
        "from desktop_app import launch\n"
        "seen = []\n"
        "import desktop_app.app as app\n"
        "app.main = lambda argv=None: seen.append(launch.collector_paused()) or 0\n"
        "try:\n"
        "    runpy.run_module('desktop_app', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    print(seen, exit.code, launch.collector_paused())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["[True]", "0", "False"], result.stderr
