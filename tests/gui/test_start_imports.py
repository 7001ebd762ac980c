"""The window's start imports only what it uses: no MCP SDK, no simulator server (aiohttp),
no command-line client libraries, no keychain; and its first frame is drawn before the
HTTP stack and the engine are imported (the start-up work after it needs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.startup import launch, save_profile

NOT_AT_START = (
    "mcp",  # the MCP SDK: only when a tool server starts (Rill's own tool modules load at
    "mcp_types",  # start, to show the servers of the config; none is started then)
    "httpx2",
    "aiohttp",  # the simulator's server: only when the Simulator profile is used
    "desktop_app.simulator",
    "desktop_app.core.routing.auto",  # Auto: when an Auto turn runs (its profiles are read
    "desktop_app.core.routing.analysis",  # with the config, by routing.profile)
    "desktop_app.core.routing.cache",
    "desktop_app.core.routing.table",
    "desktop_app.ui.settings_dialog",  # when Settings is first opened
    "openai",
    "pydantic",
    "click",  # httpx's command-line client, never the window's
    "rich",  # the terminal command's output
    "pygments",
    "PIL",  # images: when a file is attached
    "pypdf",  # PDFs: when one is attached
    "ziamath",  # math: only in the typesetting process, started at the first formula
    "ziafont",
    "latex2mathml",
    "desktop_app.ui.math_render",  # when a reply first holds a formula
    "PySide6.QtSvg",
    "keyring",  # the keychain: when a key is first needed (its backends bring D-Bus and
    "secretstorage",  # cryptography libraries, and a keychain may ask to be unlocked)
    "jeepney",
    "cryptography",
)


NOT_BEFORE_THE_FIRST_FRAME = (
    "httpx",  # the HTTP stack: made with the engine, at the first use after the window shows
    "httpcore",
    "h11",
    "anyio",
    "httpx_sse",
    "tenacity",
    "http.client",
    "email",  # (httpx's, and the package metadata's for Rill's version)
    "importlib.metadata",
    "desktop_app.core.engine",
    "desktop_app.core.http",
    "desktop_app.core.net",
    "desktop_app.core.providers",
    "desktop_app.core.resilience",
    "desktop_app.core.context_window",
    "desktop_app.core.tools.loop",
)


def _among(modules: set[str], tops: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in modules for top in tops if name == top or name.startswith(top + ".")
    )


def test_a_second_start_imports_nothing_it_does_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_profile(tmp_path)  # a saved local server: no first run, no simulator
    monkeypatch.setenv("RILL_BENCH_MODULES", "1")
    report = launch(tmp_path, idle_s=0.2)
    modules = set(report["modules"])
    assert "desktop_app.ui.main_window" in modules  # the window did start
    assert _among(modules, NOT_AT_START) == []
    painted = set(report["modules_painted"])
    assert "desktop_app.ui.chat_view" in painted
    # (httpx._main is the app's stand-in for httpx's command-line client, set in
    # sys.modules at import so that httpx, when imported, does not bring click and rich)
    assert _among(painted - {"httpx._main"}, NOT_BEFORE_THE_FIRST_FRAME) == []
    # the start-up work that follows (the model list) did use them
    assert {"httpx", "desktop_app.core.engine"} <= modules


def test_start_up_runs_without_the_cycle_collector_until_the_first_frame(tmp_path: Path) -> None:
    """The launcher pauses Python's cycle collector while modules load and the window is
    built; the window runs it again after its first frame, with start-up's objects frozen
    so that later collections do not walk them."""
    save_profile(tmp_path)
    report = launch(tmp_path, idle_s=0.2)
    assert report["collecting_at_paint"] is False
    assert report["collecting"] is True
    assert report["frozen_objects"] > 10_000
