"""9. Against a peer: Rill and PyGPT (a PySide6 desktop client) started side by side under Xvfb.

Measured only when ``RILL_PEER_VENV`` names a virtual environment with ``pygpt-net``
installed (about 2.8 GB, so never in CI); otherwise every row says it was not measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.common import REPO, Row, at_least, info, log, median, pending, spread
from benchmarks.startup import save_profile

PEER_VENV = "RILL_PEER_VENV"
ROUNDS = 3
QUICK_ROUNDS = 1
IDLE_S = 5.0
SHOWN_TIMEOUT_S = 120.0
POLL_S = 0.01
MB = 1024 * 1024
NOT_MEASURED = f"not measured: set {PEER_VENV} to a virtual environment with pygpt-net installed"
STREAM_NOT_MEASURED = (
    "not measured yet: sending a prompt to PyGPT from outside and knowing when its reply is "
    "drawn is not automated"
)

METHOD = f"""\
Runs only when `{PEER_VENV}` names a virtual environment with `pygpt-net` installed
(`python3.11 -m venv … && …/bin/pip install pygpt-net`, about 2.8 GB; it needs the system's
PortAudio headers to build PyAudio and `libpulse0` to start). Both applications run under
their own `Xvfb` server (1280×900, 24-bit) with Qt's `xcb` platform, as on a desktop, one
after the other, interleaved, {ROUNDS} rounds. Rill starts as `python -m desktop_app` over a
`RILL_HOME` whose config holds a saved local-server profile (a second start: no first-run
work, no simulator); PyGPT starts as `…/bin/pygpt` over a `HOME` prepared by one start that
is not counted (its first-run files written, its licence marked accepted), so it too is on a
second start. Offline workarounds PyGPT needs: `QTWEBENGINE_DISABLE_SANDBOX=1` and
`QTWEBENGINE_CHROMIUM_FLAGS=--no-sandbox` (its chat view is a Chromium web view, which
refuses to run as root with its sandbox); it tries to download tiktoken's encodings for its
token counts and logs the failure, which does not stop it.

- **Window shown**: from starting the process until the application's main window is mapped
  (`xdotool search --onlyvisible --name`, polled every {POLL_S * 1000:.0f} ms).
- **Idle memory of the process tree**: {IDLE_S:g} s after the window is shown, the RSS and the
  PSS (proportional set size: shared pages split between the processes that map them) of the
  application's process and all its children (PyGPT renders in separate Chromium
  processes), summed (`psutil`).

The ratios are PyGPT's figure over Rill's (above 1× Rill is ahead). The rows for a
4,000-token reply streamed at 1,000 tokens/s (CPU of the tree, memory growth, ping latency)
are not measured yet."""


@dataclass(slots=True)
class Start:
    shown_s: float
    rss: int
    pss: int
    processes: int


def _venv() -> Path | None:
    value = os.environ.get(PEER_VENV)
    if not value:
        return None
    venv = Path(value)
    return venv if (venv / "bin" / "pygpt").exists() else None


def _not_measured(note: str) -> list[Row]:
    rows = [
        pending(f"{what}, {app}", "", note=note)
        for what in ("window shown (second start)", "idle RSS of the process tree")
        for app in ("Rill", "PyGPT")
    ]
    rows += [
        pending("window shown: PyGPT ÷ Rill", "≥ 1×", note=note),
        pending("idle PSS of the process tree: PyGPT ÷ Rill", "≥ 1×", note=note),
    ]
    return rows + _stream_rows()


def _stream_rows() -> list[Row]:
    return [
        pending(
            f"4,000 tokens at 1,000 tok/s: {what}, PyGPT ÷ Rill", "≥ 1×", note=STREAM_NOT_MEASURED
        )
        for what in ("CPU of the process tree", "RSS growth", "ping latency")
    ]


@contextlib.contextmanager
def _xvfb() -> Iterator[str]:
    """An Xvfb server of its own; yields its DISPLAY."""
    read, write = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(10)


def _shown(display: str, name: str, process: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from ``started`` until a visible window named ``name`` is mapped."""
    env = {**os.environ, "DISPLAY": display}
    deadline = started + SHOWN_TIMEOUT_S
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with status {process.returncode}")
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", name],
            env=env,
            capture_output=True,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip():
            return time.perf_counter() - started
        time.sleep(POLL_S)
    raise RuntimeError(f"no window named {name!r} within {SHOWN_TIMEOUT_S:.0f} s")


def _tree_memory(pid: int) -> tuple[int, int, int]:
    """RSS and PSS of ``pid`` and all its children, and how many processes there are."""
    root = psutil.Process(pid)
    rss = pss = count = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            memory = process.memory_full_info()
            rss += memory.rss
            pss += memory.pss
            count += 1
    return rss, pss, count


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the application and every process it started."""
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _start(command: list[str], env: dict[str, str], display: str, name: str) -> Start:
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**env, "DISPLAY": display},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        shown = _shown(display, name, process, started)
        time.sleep(IDLE_S)
        rss, pss, count = _tree_memory(process.pid)
    finally:
        _stop(process)
    return Start(shown, rss, pss, count)


def _rill(home: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "RILL_HOME": str(home), "QT_QPA_PLATFORM": "xcb"}
    return [sys.executable, "-m", "desktop_app"], env


def _pygpt(venv: Path, home: Path) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "HOME": str(home),
        "QT_QPA_PLATFORM": "xcb",
        "QTWEBENGINE_DISABLE_SANDBOX": "1",
        "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox",
    }
    env.pop("PYTHONPATH", None)
    return [str(venv / "bin" / "pygpt")], env


def _accept_licence(home: Path) -> None:
    """Mark PyGPT's licence accepted, as a user does on its first start."""
    config = home / ".config" / "pygpt-net" / "config.json"
    values = json.loads(config.read_text(encoding="utf-8"))
    values["license.accepted"] = True
    config.write_text(json.dumps(values, indent=4), encoding="utf-8")


def run(quick: bool) -> list[Row]:
    venv = _venv()
    if venv is None:
        return _not_measured(NOT_MEASURED)
    if shutil.which("Xvfb") is None or shutil.which("xdotool") is None:
        return _not_measured("not measured: needs Xvfb and xdotool")
    rounds = QUICK_ROUNDS if quick else ROUNDS
    rill: list[Start] = []
    peer: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="rill-bench-peer-") as folder, _xvfb() as display:
        rill_home = Path(folder) / "rill"
        save_profile(rill_home)
        peer_home = Path(folder) / "pygpt"
        (peer_home / ".config" / "pygpt-net").mkdir(parents=True)
        command, env = _pygpt(venv, peer_home)
        first = _start(command, env, display, "PyGPT")  # writes its first-run files
        log(f"PyGPT first start (not counted): shown {first.shown_s:.2f} s")
        _accept_licence(peer_home)
        rill_command, rill_env = _rill(rill_home)
        _start(rill_command, rill_env, display, "^Rill$")  # warms the file cache, not counted
        for number in range(rounds):
            rill.append(_start(rill_command, rill_env, display, "^Rill$"))
            peer.append(_start(command, env, display, "PyGPT"))
            log(
                f"round {number + 1}: shown Rill {rill[-1].shown_s:.2f} s, PyGPT "
                f"{peer[-1].shown_s:.2f} s; idle PSS Rill {rill[-1].pss / MB:.0f} MB "
                f"({rill[-1].processes} processes), PyGPT {peer[-1].pss / MB:.0f} MB "
                f"({peer[-1].processes} processes)"
            )
    return _rows(rill, peer)


def _rows(rill: list[Start], peer: list[Start]) -> list[Row]:
    rows: list[Row] = []
    for app, starts in (("Rill", rill), ("PyGPT", peer)):
        shown = [s.shown_s for s in starts]
        rows.append(
            info(
                f"window shown (second start), {app}",
                median(shown),
                "s",
                note=f"median of {len(shown)} ({spread(shown, 's')})",
            )
        )
    for app, starts in (("Rill", rill), ("PyGPT", peer)):
        rss = [s.rss / MB for s in starts]
        pss = [s.pss / MB for s in starts]
        rows.append(
            info(
                f"idle RSS of the process tree, {app}",
                median(rss),
                "MB",
                note=f"median of {len(rss)}; PSS {median(pss):.0f} MB; "
                f"{starts[0].processes} process(es)",
            )
        )
    rows.append(
        at_least(
            "window shown: PyGPT ÷ Rill",
            median([s.shown_s for s in peer]) / median([s.shown_s for s in rill]),
            "×",
            1.0,
            note="ratio of the medians",
        )
    )
    rows.append(
        at_least(
            "idle PSS of the process tree: PyGPT ÷ Rill",
            median([s.pss for s in peer]) / median([s.pss for s in rill]),
            "×",
            1.0,
            note="ratio of the medians",
        )
    )
    return rows + _stream_rows()
