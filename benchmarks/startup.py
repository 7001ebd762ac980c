"""4. Start-up: from starting the ``rill`` process to its main window on screen, and idle RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Row, at_most, below, info, log, median, spread
from benchmarks.startup_probe import IDLE_S, LAUNCHED_AT, MARKER

RUNS = 7
QUICK_RUNS = 2
IDLE_SECONDS = 1.0
QUICK_IDLE_SECONDS = 0.3
LIMIT_S = 1.0
SECOND_LIMIT_S = 0.40
IDLE_RSS_LIMIT_MB = 100.0
TIMEOUT_S = 60.0
MB = 1024 * 1024
SAVED_PROFILE = """\
default_profile = "llama.cpp (local)"

[profiles."llama.cpp (local)"]
provider = "openai"
base_url = "http://127.0.0.1:8080/v1"
model = "local"
"""

METHOD = f"""\
Each start is a new process, `python -m benchmarks.startup_probe` — `python -m desktop_app`
(what `rill` runs) with the main window watched from outside: the probe module starts as the
launcher (`desktop_app.launch`) does — Python's cycle collector paused until the first frame,
`desktop_app.app` imported before Qt — patches `MainWindow.showEvent`, and calls
`desktop_app.app.main()`; the app's code is not changed. The benchmark takes
`time.perf_counter()` just before `subprocess.Popen` and passes it in an environment
variable; the child subtracts it from its own `perf_counter()` (on Linux `CLOCK_MONOTONIC`,
one clock for every process). So the figure includes starting the
interpreter, every import, creating the `QApplication` and the qasync loop, reading the
config, opening the history, response cache and usage ledger (`Services.open`, on a worker
thread, without SQLite's integrity check, which runs after the window is shown), building the
window and `show()`, up to **the first frame painted**: the first paint event of the window
after its `showEvent`, timed when the event loop next runs, once that paint pass is done. That
frame has the whole window — menus, conversation list, header, composer and status bar — with
the chat area still empty. The offscreen platform (`QT_QPA_PLATFORM=offscreen`) paints into
memory, so a real display server's window mapping and compositing are not included.

What `rill` does after the window is shown is timed separately (**start-up work done**): the
draft, the conversation list and the model list are loaded (the engine, and with it the HTTP
stack, is made for that), and — on a first start, as
nothing is configured — the local servers are probed (Ollama on 11434, LM Studio on 1234,
llama.cpp on 8080; nothing listens here, so each probe is refused at once) and the built-in
simulator is started (importing aiohttp and its server). **Idle RSS** is read
{IDLE_SECONDS:.0f} s after that, with the window shown: on a first start with the welcome
card up and the simulator's thread running; on a second start with no simulator.

{RUNS} first starts, each with a new empty `RILL_HOME`, and after each of them a second start
over the same `RILL_HOME`: history, cache, ledger and window geometry now exist, and the
config holds the profile a user saves after the first run (a llama.cpp server on this
computer, `http://127.0.0.1:8080/v1`, not running here), so the second start has no first-run
work and starts no simulator. One more start before them warms the operating system's file
cache and Python's bytecode cache and is not counted: each start runs with the bytecode of
Rill's modules cached (in a private `PYTHONPYCACHEPREFIX`), as an installed `rill` has it —
pip and the packaged build compile it at install time — whatever `PYTHONDONTWRITEBYTECODE`
the environment running the benchmarks sets. The figures
are medians; each start closes its window the way the user does (the app's own shutdown) once
it has reported. The rest of the environment is this one's: `keyring` finds no system
keychain here (its `fail` backend) and no API key is set in environment variables."""


def launch(home: Path, idle_s: float, pycache: Path | None = None) -> dict[str, Any]:
    """Start the probe over ``home`` and return what it reported.

    With ``pycache``, the process reads and writes compiled bytecode there.
    """
    env = dict(os.environ)
    env.update({"RILL_HOME": str(home), "QT_QPA_PLATFORM": "offscreen", IDLE_S: str(idle_s)})
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    with tempfile.TemporaryFile() as errors:
        launched = time.perf_counter()
        env[LAUNCHED_AT] = repr(launched)
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.startup_probe"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        try:
            out, _ = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"rill did not report within {TIMEOUT_S:.0f} s") from None
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith(MARKER):
            report: dict[str, Any] = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(
            f"rill exited with status {process.returncode} without reporting: {stderr[-2000:]}"
        )
    if process.returncode != 0:
        raise RuntimeError(f"rill exited with status {process.returncode}: {stderr[-2000:]}")
    return report


def _log(kind: str, report: dict[str, Any]) -> None:
    log(
        f"{kind}: shown {report['shown_s'] * 1000:.0f} ms, painted "
        f"{report['painted_s'] * 1000:.0f} ms, ready {report['ready_s'] * 1000:.0f} ms, "
        f"idle RSS {report['idle_rss'] / MB:.0f} MB"
    )


def save_profile(home: Path) -> None:
    """Save a local server's profile in ``home``'s config, as a user does after a first run."""
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(SAVED_PROFILE, encoding="utf-8")


def run(quick: bool) -> list[Row]:
    runs = QUICK_RUNS if quick else RUNS
    idle_s = QUICK_IDLE_SECONDS if quick else IDLE_SECONDS
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rill-bench-startup-") as folder:
        pycache = Path(folder) / "pycache"
        warm_up = Path(folder) / "warm-up"
        _log("warm-up start", launch(warm_up, idle_s, pycache))
        save_profile(warm_up)
        _log("warm-up second start", launch(warm_up, idle_s, pycache))
        for number in range(runs):
            home = Path(folder) / f"home-{number}"
            first.append(launch(home, idle_s, pycache))
            _log("first start", first[-1])
            save_profile(home)
            second.append(launch(home, idle_s, pycache))
            _log("second start", second[-1])
    for report in first:
        if not report["first_run"] or not report["simulator"]:
            raise RuntimeError(f"a fresh RILL_HOME did not go through the first run: {report}")
    for report in second:
        if report["first_run"] or report["simulator"]:
            raise RuntimeError(f"a configured RILL_HOME went through the first run: {report}")

    def values(reports: list[dict[str, Any]], key: str) -> list[float]:
        return [float(report[key]) for report in reports]

    def ms(reports: list[dict[str, Any]], key: str) -> str:
        return f"{median(values(reports, key)) * 1000:.0f} ms"

    rows: list[Row] = []
    for reports, label in ((first, "first start, new RILL_HOME"), (second, "second start")):
        painted = values(reports, "painted_s")
        note = (
            f"median of {runs} ({spread(painted, 's')}), first frame painted; "
            f"interpreter up at {ms(reports, 'interpreter_s')}, "
            f"showEvent at {ms(reports, 'shown_s')}"
        )
        name = f"process start → main window shown ({label})"
        if reports is second:
            rows.append(at_most(name, median(painted), "s", SECOND_LIMIT_S, note=note))
        else:
            rows.append(below(name, median(painted), "s", LIMIT_S, note=note))
    ready = values(first, "ready_s")
    rows.append(
        info(
            "process start → start-up work done (first run: servers probed, simulator started)",
            median(ready),
            "s",
            note=f"median of {runs} first starts ({spread(ready, 's')}); "
            f"second starts {ms(second, 'ready_s')}",
        )
    )
    rss = [value / MB for value in values(first, "idle_rss")]
    rows.append(
        info(
            "idle RSS with the main window shown (first start, simulator running)",
            median(rss),
            "MB",
            note=f"median of {runs} first starts ({spread(rss, 'MB')}), {idle_s:g} s after "
            f"start-up work, welcome card up, simulator thread running",
        )
    )
    rss = [value / MB for value in values(second, "idle_rss")]
    rows.append(
        below(
            "idle RSS with the main window shown (second start, no simulator)",
            median(rss),
            "MB",
            IDLE_RSS_LIMIT_MB,
            note=f"median of {runs} second starts ({spread(rss, 'MB')}), {idle_s:g} s after "
            f"start-up work",
        )
    )
    return rows
