"""9. Against a peer: Rill and PyGPT (a PySide6 desktop client) side by side under Xvfb: the
window shown, idle memory, and a 4,000-token reply at 1,000 tokens/s.

Measured only when ``RILL_PEER_VENV`` names a virtual environment with ``pygpt-net``
installed (about 2.8 GB, so never in CI); otherwise every row says it was not measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import (
    REPO,
    Row,
    at_least,
    info,
    log,
    median,
    pending,
    percentile,
    spread,
)
from benchmarks.paced_simulator import paced_simulator

PEER_VENV = "RILL_PEER_VENV"
ROUNDS = 3
QUICK_ROUNDS = 1
IDLE_S = 5.0
STDERR_SHOWN = 200
"""Characters of each of the first stderr lines quoted when an application fails."""
SHOWN_TIMEOUT_S = 120.0
POLL_S = 0.01
MB = 1024 * 1024
NOT_MEASURED = f"not measured: set {PEER_VENV} to a virtual environment with pygpt-net installed"
REPLY_TOKENS = 4_000
REPLY_TOKENS_PER_S = 1_000.0
REPLY_WINDOW_S = REPLY_TOKENS / REPLY_TOKENS_PER_S + 1.5
PROMPT = "Hello rivers"
TYPE_DELAY_MS = 150
SETTLE_S = 3.0
CONNECT_TIMEOUT_S = 60.0
PYGPT_INPUT = (0.65, -105.0)
"""Where PyGPT's prompt box is: a share of the window's width, pixels above its bottom."""
PING_MS = 4
"""How often the window system's ping is sent while a reply streams (as the rendering
benchmark's posted-event probe)."""
PING_ROUND = 1
"""The round (from 0) whose reply is pinged; the first round's reply is measured for its CPU
alone, with no ping."""
PING_NOT_MEASURED = "not measured: needs python-xlib (pip install -e '.[bench]')"

METHOD = f"""\
Runs only when `{PEER_VENV}` names a virtual environment with `pygpt-net` installed
(`python3.11 -m venv … && …/bin/pip install pygpt-net`, about 2.8 GB; it needs the system's
PortAudio headers to build PyAudio and `libpulse0` to start). Both applications run under
their own `Xvfb` server (1280×900, 24-bit, no window manager, `-noreset` so that it stays up
between one application's exit and the next one's start) with Qt's `xcb` platform, one
after the other, interleaved, {ROUNDS} rounds, against one simulator process
(`benchmarks.paced_simulator`) that answers every chat with {REPLY_TOKENS:,} tokens paced at
{REPLY_TOKENS_PER_S:,.0f} tokens/s. Rill starts as `python -m desktop_app` over a `RILL_HOME`
whose config holds a saved profile for the simulator (a second start: no first-run work);
PyGPT starts as `…/bin/pygpt` over a `HOME` prepared by one start that is not counted (its
first-run files written), then pointed at the simulator the way a user sets it up: its
licence accepted, the OpenAI provider's endpoint (`api_base`) set to the simulator's
`/v1` with a placeholder key, and what the simulator does not serve turned off (the Responses
API, remote tools, the conversation-title summary request). Offline workarounds PyGPT needs:
`QTWEBENGINE_DISABLE_SANDBOX=1` and `QTWEBENGINE_CHROMIUM_FLAGS=--no-sandbox` (its chat view is
a Chromium web view, which refuses to run as root with its sandbox); it tries to download
tiktoken's encodings to count tokens at every keystroke and logs the failure, which does not
stop it.

- **Window shown**: from starting the process until the application's main window is mapped
  (`xdotool search --onlyvisible --name`, polled every {POLL_S * 1000:.0f} ms).
- **Idle memory of the process tree**: {IDLE_S:g} s after the window is shown, the RSS and the
  PSS (proportional set size: shared pages split between the processes that map them) of the
  application's process and all its children (PyGPT renders in separate Chromium
  processes), summed (`psutil`).
- **The reply**: in the first round, the prompt "{PROMPT}" is typed into the application's
  input with `xdotool` ({TYPE_DELAY_MS} ms between keys; PyGPT's input is clicked first,
  Rill's has the focus) and sent with Enter. From then on, for {REPLY_WINDOW_S:g} s (the
  stream's {REPLY_TOKENS / REPLY_TOKENS_PER_S:g} s and 1.5 s for the last frames, the same for
  both), the CPU seconds of the process tree (user + system, children included) and the peak
  of its RSS are taken; the growth is the peak minus the RSS before. A reply still being drawn
  after that window is not counted, which can only understate the slower application's
  figure.
- **The window system's ping while streaming**: the second round starts each application
  from its home as the first round found it (a copy taken before the first round: no
  conversation yet), asks the same prompt in the same way and, over the same
  {REPLY_WINDOW_S:g} s, pings the application's window every {PING_MS} ms the way a window
  manager checks that a window still answers: an X11 `ClientMessage` of type `WM_PROTOCOLS`
  holding `_NET_WM_PING` and a serial number, sent to the window (both applications list
  `_NET_WM_PING` in their `WM_PROTOCOLS`; Qt answers it in the main thread's event loop by
  sending the message back to the root window). The benchmark reads the answers on its own X
  connection (`python-xlib`, selecting `StructureNotify` on the root window, where Qt sends
  them); the latency of a ping is from its sending until its answer is read. Median, p99 and
  maximum over the pings of that reply; a ping not answered by the window's end counts as
  the whole time from its sending to the end. The first round's reply, measured for its CPU,
  is not pinged, so the pings' own cost is in no CPU figure. The third round reopens the
  second round's conversation.

The ratios are PyGPT's figure over Rill's (above 1× Rill is ahead)."""


@dataclass(slots=True)
class Start:
    shown_s: float
    rss: int
    pss: int
    processes: int
    reply_cpu_s: float = 0.0
    reply_growth: int = 0
    pings_ms: list[float] = field(default_factory=list)


class WmPing:
    """Pings an X11 window with ``_NET_WM_PING`` every :data:`PING_MS` ms from a thread of its
    own, as a window manager does, and notes how long each answer took (ms)."""

    def __init__(self, display: str, window: int) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._x = xdisplay.Display(display)
        # Qt sends the answer to the root window for StructureNotify and SubstructureRedirect
        self._x.screen().root.change_attributes(event_mask=X.StructureNotifyMask)
        self._protocols = self._x.intern_atom("WM_PROTOCOLS")
        self._ping = self._x.intern_atom("_NET_WM_PING")
        self._window = self._x.create_resource_object("window", window)
        self._answer_type = X.ClientMessage
        self._x.sync()
        self._sent: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wm-ping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[float]:
        """Stop pinging; the latencies, with each unanswered ping counted until now."""
        self._stop.set()
        self._thread.join(10)
        now = time.perf_counter()
        self.latencies_ms += [(now - sent) * 1000 for sent in self._sent.values()]
        self._sent.clear()
        self._x.close()
        return self.latencies_ms

    def _run(self) -> None:
        from Xlib.protocol import event as xevent

        serial = 0
        due = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            if now >= due:
                serial += 1
                message = xevent.ClientMessage(
                    window=self._window,
                    client_type=self._protocols,
                    data=(32, [self._ping, serial, self._window.id, 0, 0]),
                )
                self._sent[serial] = time.perf_counter()
                self._window.send_event(message, event_mask=0)
                self._x.flush()
                due += PING_MS / 1000
                if due < now:  # this thread was late: no burst of pings to catch up
                    due = now + PING_MS / 1000
            ready, _, _ = select.select([self._x.fileno()], [], [], max(0.0, due - now))
            if ready or self._x.pending_events():
                self._answers()

    def _answers(self) -> None:
        while self._x.pending_events():
            event: Any = self._x.next_event()
            if event.type != self._answer_type or event.client_type != self._protocols:
                continue
            data = event.data[1]
            sent = self._sent.pop(int(data[1]), None) if data[0] == self._ping else None
            if sent is not None:
                self.latencies_ms.append((time.perf_counter() - sent) * 1000)


def _can_ping() -> bool:
    try:
        import Xlib.display  # noqa: F401
    except ImportError:
        return False
    return True


def _venv() -> Path | None:
    value = os.environ.get(PEER_VENV)
    if not value:
        return None
    venv = Path(value)
    return venv if (venv / "bin" / "pygpt").exists() else None


def _not_measured(note: str) -> list[Row]:
    rows = [
        pending(f"{what}, {app}", "", note=note)
        for what in (
            "window shown (second start)",
            "idle RSS of the process tree",
            f"{REPLY_TOKENS:,} tokens at {REPLY_TOKENS_PER_S:,.0f} tok/s: CPU of the process tree",
        )
        for app in ("Rill", "PyGPT")
    ]
    rows += [
        pending(f"{what}: PyGPT ÷ Rill", "≥ 1×", note=note)
        for what in (
            "window shown",
            "idle PSS of the process tree",
            "CPU of the process tree for the reply",
            "RSS growth of the process tree over the reply",
        )
    ]
    return [*rows, *_ping_pending(note)]


def _ping_pending(note: str) -> list[Row]:
    """The ping's rows, not measured (``note`` says why)."""
    return [
        *(
            pending(f"window system's ping while streaming, median, {app}", "", note=note)
            for app in ("Rill", "PyGPT")
        ),
        pending("window system's ping while streaming, median: PyGPT ÷ Rill", "≥ 1×", note=note),
    ]


@contextlib.contextmanager
def _xvfb() -> Iterator[str]:
    """An Xvfb server of its own; yields its DISPLAY."""
    read, write = os.pipe()
    process = subprocess.Popen(
        # -noreset: by default an X server resets when its last client leaves, and refuses
        # the next one meanwhile (the next application's start then fails to connect)
        [
            "Xvfb",
            "-displayfd",
            str(write),
            "-screen",
            "0",
            "1280x900x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
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
        display = f":{number}"
        deadline = time.perf_counter() + 30
        while not _xdotool(display, "getdisplaygeometry"):  # until it accepts clients
            if time.perf_counter() > deadline:
                raise RuntimeError("Xvfb does not accept connections")
            time.sleep(0.05)
        yield display
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
    children: list[psutil.Process] = []
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


def _xdotool(display: str, *args: str) -> str:
    done = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _tree_cpu(pid: int) -> float:
    total = 0.0
    for process in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def _asking(pid: int, port: int) -> bool:
    """Whether a process of the tree has a connection open to the simulator."""
    for process in _tree(pid):
        with contextlib.suppress(psutil.Error):
            if any(c.raddr and c.raddr.port == port for c in process.net_connections("tcp")):
                return True
    return False


def _ask(display: str, name: str, click: tuple[float, float] | None) -> int:
    """Type the prompt into the application's input the way a user does, and send it; the
    window's id."""
    window = _xdotool(display, "search", "--onlyvisible", "--name", name).split()[0]
    _xdotool(display, "windowfocus", "--sync", window)
    if click is not None:
        geometry = dict(
            line.strip().split(": ", 1)
            for line in _xdotool(display, "getwindowgeometry", window).splitlines()[1:]
        )
        x, y = (int(v) for v in geometry["Position"].split(" ")[0].split(","))
        w, h = (int(v) for v in geometry["Geometry"].split("x"))
        at_x = x + round(click[0] * w)
        at_y = y + h + round(click[1])
        _xdotool(display, "mousemove", str(at_x), str(at_y), "click", "1")
        time.sleep(0.3)
    _xdotool(display, "type", "--delay", str(TYPE_DELAY_MS), PROMPT)
    time.sleep(0.3)
    _xdotool(display, "key", "Return")
    return int(window)


def _reply(pid: int, port: int, ping: WmPing | None = None) -> tuple[float, int]:
    """CPU seconds of the tree over the reply, and its RSS growth (peak − before).

    The reply is timed from the moment the application has a connection to the simulator
    (PyGPT connects seconds after Enter; Rill at once, or it still holds the connection of
    its model list) for the stream's length plus 1.5 s, the same for both. ``ping`` runs
    over the same time."""
    before_rss = _tree_memory(pid)[0]
    deadline = time.perf_counter() + CONNECT_TIMEOUT_S
    while not _asking(pid, port):
        if time.perf_counter() > deadline:
            raise RuntimeError("the prompt did not reach the simulator")
        time.sleep(0.02)
    cpu = _tree_cpu(pid)
    if ping is not None:
        ping.start()
    peak = before_rss
    try:
        end = time.perf_counter() + REPLY_WINDOW_S
        while time.perf_counter() < end:
            time.sleep(0.1)
            peak = max(peak, _tree_memory(pid)[0])
    finally:
        if ping is not None:
            ping.stop()
    return _tree_cpu(pid) - cpu, peak - before_rss


def _start(
    command: list[str],
    env: dict[str, str],
    display: str,
    name: str,
    *,
    port: int = 0,
    click: tuple[float, float] | None = None,
    ping: bool = False,
) -> Start:
    """Start the application, note when its window is shown and its idle memory, and with
    ``port`` (the simulator's) send a prompt and measure the reply (with ``ping``, pinging
    the window while it streams). An application that does not show its window fails with
    the first lines it wrote on stderr."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env={**env, "DISPLAY": display},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
        try:
            try:
                shown = _shown(display, name, process, started)
            except RuntimeError as exc:
                errors.seek(0)
                head = errors.read(STDERR_SHOWN * 3).decode("utf-8", "replace")
                said = [line[:STDERR_SHOWN] for line in head.strip().splitlines()[:3]]
                told = f" ({' / '.join(said)})" if said else ""
                raise RuntimeError(f"{name}: {exc}{told}") from None
            time.sleep(IDLE_S)
            rss, pss, count = _tree_memory(process.pid)
            result = Start(shown, rss, pss, count)
            if port:
                time.sleep(SETTLE_S - min(SETTLE_S, IDLE_S))
                window = _ask(display, name, click)
                pinger = WmPing(display, window) if ping else None
                result.reply_cpu_s, result.reply_growth = _reply(process.pid, port, pinger)
                if pinger is not None:
                    result.pings_ms = pinger.latencies_ms
        finally:
            _stop(process)
    return result


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


def _rill_config(home: Path, base_url: str) -> None:
    """A saved profile for the simulator, as a user keeps after the first run."""
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'default_profile = "sim"\n\n[profiles.sim]\nprovider = "openai"\n'
        f'base_url = "{base_url}"\nmodel = "sim-small"\n',
        encoding="utf-8",
    )


def _pygpt_config(home: Path, base_url: str) -> None:
    """PyGPT pointed at the simulator, as a user sets it up: its licence accepted, the
    OpenAI provider's endpoint and key set, and what the simulator does not serve (the
    Responses API, remote tools, the conversation-title summary request) turned off."""
    config = home / ".config" / "pygpt-net" / "config.json"
    values = json.loads(config.read_text(encoding="utf-8"))
    values["license.accepted"] = True
    values["mode"] = "chat"
    values["ctx.auto_summary"] = False
    openai = values["providers"]["openai"]
    openai["api_key"] = "sk-simulator"
    openai["api_base"] = base_url
    openai["extra"]["responses_api"] = False
    openai["extra"]["responses_api_llama"] = False
    for tool in openai.get("remote_tools", {}):
        openai["remote_tools"][tool] = False
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
    with (
        tempfile.TemporaryDirectory(prefix="rill-bench-peer-") as folder,
        paced_simulator(tokens=REPLY_TOKENS, tokens_per_s=REPLY_TOKENS_PER_S) as sim,
        _xvfb() as display,
    ):
        port = int(sim.url.rsplit(":", 1)[1])
        base_url = sim.base_url("openai")
        rill_home = Path(folder) / "rill"
        _rill_config(rill_home, base_url)
        peer_home = Path(folder) / "pygpt"
        (peer_home / ".config" / "pygpt-net").mkdir(parents=True)
        command, env = _pygpt(venv, peer_home)
        first = _start(command, env, display, "PyGPT")  # writes its first-run files
        log(f"PyGPT first start (not counted): shown {first.shown_s:.2f} s")
        _pygpt_config(peer_home, base_url)
        rill_command, rill_env = _rill(rill_home)
        _start(rill_command, rill_env, display, "Rill")  # warms the file cache, not counted
        if not _can_ping():
            unpinged = PING_NOT_MEASURED
        elif rounds <= PING_ROUND:
            unpinged = f"not measured: a run of {rounds} round(s) has no round {PING_ROUND + 1}"
        else:
            unpinged = ""
        fresh = Path(folder) / "fresh"
        if not unpinged:
            for home in (rill_home, peer_home):
                shutil.copytree(home, fresh / home.name, symlinks=True)
        for number in range(rounds):
            # a reply in the first round (its CPU) and the second (pinged), each in a new
            # conversation: the second round starts from the homes as the first found them;
            # the third reopens the second's conversation
            ping = not unpinged and number == PING_ROUND
            asking = port if number == 0 or ping else 0
            if ping:
                for home in (rill_home, peer_home):
                    shutil.rmtree(home)
                    shutil.copytree(fresh / home.name, home, symlinks=True)
            rill.append(_start(rill_command, rill_env, display, "Rill", port=asking, ping=ping))
            peer.append(
                _start(command, env, display, "PyGPT", port=asking, click=PYGPT_INPUT, ping=ping)
            )
            reply = (
                f"; reply CPU Rill {rill[-1].reply_cpu_s:.2f} s, PyGPT {peer[-1].reply_cpu_s:.2f} s"
                if asking
                else ""
            )
            if ping:
                reply += (
                    f"; ping Rill {median(rill[-1].pings_ms):.2f} / {max(rill[-1].pings_ms):.1f} "
                    f"ms, PyGPT {median(peer[-1].pings_ms):.2f} / {max(peer[-1].pings_ms):.1f} ms"
                )
            log(
                f"round {number + 1}: shown Rill {rill[-1].shown_s:.2f} s, PyGPT "
                f"{peer[-1].shown_s:.2f} s; idle PSS Rill {rill[-1].pss / MB:.0f} MB "
                f"({rill[-1].processes} processes), PyGPT {peer[-1].pss / MB:.0f} MB "
                f"({peer[-1].processes} processes){reply}"
            )
    return _rows(rill, peer, unpinged)


def _rows(rill: list[Start], peer: list[Start], unpinged: str) -> list[Row]:
    """The rows; ``unpinged`` says why the ping was not measured, if no round pinged."""
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
    pinged = [(r, p) for r, p in zip(rill, peer, strict=True) if r.pings_ms and p.pings_ms]
    rill, peer = rill[:1], peer[:1]  # the round that measured a reply's CPU
    for app, starts in (("Rill", rill), ("PyGPT", peer)):
        cpu = [s.reply_cpu_s for s in starts]
        rows.append(
            info(
                f"{REPLY_TOKENS:,} tokens at {REPLY_TOKENS_PER_S:,.0f} tok/s: CPU of the process "
                f"tree, {app}",
                median(cpu),
                "s",
                note=f"median of {len(cpu)} ({spread(cpu, 's')}); "
                f"{median(cpu) / REPLY_TOKENS * 1e6:.0f} µs per token; RSS growth "
                f"{median([s.reply_growth / MB for s in starts]):.1f} MB",
            )
        )
    rows.append(
        at_least(
            "CPU of the process tree for the reply: PyGPT ÷ Rill",
            median([s.reply_cpu_s for s in peer]) / median([s.reply_cpu_s for s in rill]),
            "×",
            1.0,
            note="ratio of the medians",
        )
    )
    growth_rill = max(median([s.reply_growth for s in rill]), 1)
    rows.append(
        at_least(
            "RSS growth of the process tree over the reply: PyGPT ÷ Rill",
            median([s.reply_growth for s in peer]) / growth_rill,
            "×",
            1.0,
            note="ratio of the medians (Rill's taken as at least 1 byte)",
        )
    )
    return [*rows, *_ping_rows(pinged, unpinged)]


def _ping_rows(pinged: list[tuple[Start, Start]], unpinged: str) -> list[Row]:
    if not pinged:
        return _ping_pending(unpinged)
    rill, peer = pinged[0]
    rows = [
        info(
            f"window system's ping while streaming, median, {app}",
            median(start.pings_ms),
            "ms",
            note=f"{len(start.pings_ms):,} pings every {PING_MS} ms over the reply "
            f"({REPLY_TOKENS:,} tokens at {REPLY_TOKENS_PER_S:,.0f} tok/s); max "
            f"{max(start.pings_ms):.1f} ms, p99 {percentile(start.pings_ms, 99):.1f} ms",
        )
        for app, start in (("Rill", rill), ("PyGPT", peer))
    ]
    rows.append(
        at_least(
            "window system's ping while streaming, median: PyGPT ÷ Rill",
            median(peer.pings_ms) / median(rill.pings_ms),
            "×",
            1.0,
            note=f"ratio of the medians; of the maxima: "
            f"{max(peer.pings_ms) / max(rill.pings_ms):.2f}×",
        )
    )
    return rows
