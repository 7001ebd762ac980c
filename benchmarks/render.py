"""3. Rendering: replies streamed at 2,000 tokens/s into the real main window, offscreen;
and the worst shapes of text (one huge word, a huge table, a flood of unbroken text),
streaming and when their chat is opened again.

``python -m benchmarks.render --shapes [--quick]`` measures and prints only the shapes' rows,
``python -m benchmarks.render --math`` only the rows of a reply with 200 formulas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyring.backends.null
import psutil
from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QObject,
    Qt,
    QThread,
    QTimer,
    Signal,
    SignalInstance,
)
from PySide6.QtWidgets import QApplication

from benchmarks.common import (
    REPO,
    Row,
    at_most,
    below,
    format_value,
    free_port,
    info,
    log,
    median,
    percentile,
    verdict,
)
from benchmarks.paced_simulator import paced_simulator, serve_until_sigterm
from desktop_app.core.chat import Services
from desktop_app.core.config import Config, Profile
from desktop_app.core.paths import app_paths
from desktop_app.core.secrets import Secrets
from desktop_app.core.types import GenerationResponse
from desktop_app.ui import chat_view, theme
from desktop_app.ui.controller import ChatController
from desktop_app.ui.main_window import MainWindow

SHORT = 2_000
LONG = 20_000
TOKENS_PER_S = 2_000.0
CPU_TOKENS = 4_000
CPU_TOKENS_PER_S = 1_000.0
CPU_LIMIT_US = 100.0
IDLE_WAKE_S = chat_view.FRAME_MS / 1000
"""A frame of the streaming view: the connection is read and the view drawn once in each."""
IDLE_WAKES = 60
BARE_RUNS = 3
PING_MS = 4
PING_MEDIAN_LIMIT_MS = 8.0
PING_MAX_LIMIT_MS = 30.0
ROUNDS = 3
QUICK_ROUNDS = 1
PROBE_MS = 5
RSS_EVERY = 10
STALL_LIMIT_MS = 10.0
RATIO_LIMIT = 1.1
SETTLE_S = 0.3
REPLY_TIMEOUT_S = 120.0
SHORT_PROFILE = "sim-2k"
LONG_PROFILE = "sim-20k"
CPU_PROFILE = "sim-1k"
LONG_CHAT_EXCHANGES = 20
"""Prompts and replies in the stored chat that the last CPU replies continue."""
LONG_CHAT_REPLIES = 3
MB = 1024 * 1024
SHAPE_STALL_LIMIT_MS = 100.0
MATH_FORMULAS = 200
MATH_PROFILE = "sim-math"
MATH_ROUNDS = 2
MATH_STALL_LIMIT_MS = 10.0
SHAPES: dict[str, str] = {
    "long-word": "a 1 MB line without a space, in 16 deltas of 64 KB",
    "flood": "a fast stream of unbroken text: 1 MB in 16,384 deltas of 64 characters, "
    "sent as fast as the socket takes it",
    "table": "a 5,000-row table in one delta",
}

METHOD = f"""\
The real `MainWindow` runs in the benchmark's worker process with `QT_QPA_PLATFORM=offscreen`
(widgets are laid out and painted into an offscreen backing store, as on screen), on one qasync
loop driven by `loop.run_until_complete`, as `rill` runs it. It is built the way `rill` builds
it — `Services.open` over a fresh temporary `RILL_HOME` (history and response cache on), the
theme and its style sheet applied (`theme.apply`), `MainWindow(services)`, `show()`, `start()`
— with a null keychain and three profiles pointing at
three simulators. The simulators run in their own processes, so their CPU does not count against
the window's and they keep their own GIL; they always answer {SHORT:,} and {LONG:,} tokens paced
at {TOKENS_PER_S:,.0f} tokens/s, and {CPU_TOKENS:,} tokens paced at {CPU_TOKENS_PER_S:,.0f}
tokens/s, of the simulator's prose (paragraphs of plain words), one word per SSE event and one
write per event. They are the `desktop_app.simulator` server unchanged, served by `python -m
benchmarks.paced_simulator` on an asyncio loop with a `select()` selector, because with the
default `epoll` selector asyncio rounds the simulator's 0.5 ms sleeps up to whole milliseconds
and the stream arrives at about 1,700 tokens/s; the rate each reply really arrived at (output
tokens over the time from first to last token, from the reply's own timing) is in the notes.

One {SHORT:,}-token reply warms the window up (first paint of a message, first use of the
Markdown writer) and is not counted. Then {ROUNDS} rounds each send one {SHORT:,}-token, one
{LONG:,}-token and one {CPU_TOKENS:,}-token reply, each in a new chat (so the view holds just
the prompt and the reply), each with a distinct prompt (so none comes from the cache), through
`MainWindow.send` — what the composer's Enter does. A reply is measured from `send` until the
controller has emitted `conversation_synced` (the finished reply recorded in the history and the
view updated from it) plus {SETTLE_S * 1000:.0f} ms for the last repaint.

- **Whole-process CPU per token at {CPU_TOKENS_PER_S:,.0f} tokens/s**: user + system CPU
  seconds of the whole process (`psutil`: the GUI thread, the services' I/O thread, the
  cache) over a {CPU_TOKENS:,}-token reply streamed at {CPU_TOKENS_PER_S:,.0f} tokens/s,
  divided by its tokens; median of the rounds. No probe runs during these replies, so none of
  the probes' own work is counted.
- **The same in a long chat** (a figure for context): after the rounds the window opens a
  stored chat of {LONG_CHAT_EXCHANGES} prompts and {LONG_CHAT_EXCHANGES} replies (each reply
  about 1,500 characters of paragraphs, a list and a code block), as a user opens an old chat,
  waits until every message is drawn, and asks {LONG_CHAT_REPLIES} more {CPU_TOKENS:,}-token
  replies at {CPU_TOKENS_PER_S:,.0f} tokens/s in it, measured the same way. The view then
  holds {2 * LONG_CHAT_EXCHANGES} messages or more above the reply, so this shows what a chat's
  length adds to each frame.
- **What this machine charges for waking up**: a thread that sleeps {IDLE_WAKE_S * 1000:.0f} ms
  and wakes, {IDLE_WAKES} times, doing nothing else; the CPU time it is charged per wake-up
  (`time.thread_time()`, median of three runs) is reported after the replies, so the CPU
  figures can be read against the machine's own accounting.
- **Qt's own floor**: after the replies, a bare `QTextBrowser` (a window of the main
  window's default size, 1,180 × 780) is fed the words of a {CPU_TOKENS:,}-token simulator
  reply at {CPU_TOKENS_PER_S:,.0f} tokens/s the way the window gets them: every
  {IDLE_WAKE_S * 1000:.0f} ms frame, that frame's tokens in one edit at the end of the
  document (a new paragraph where the reply starts one) and a scroll to the bottom. The
  process CPU per token (median of {BARE_RUNS} runs) is what showing the same text at the
  same pace costs with Qt alone, no network, no Markdown, no other widget; the note gives
  Rill's figure as a multiple of it.
- **Main-thread responsiveness**: what the window system's ping (`_NET_WM_PING`) would see,
  imitated inside the process. During the {SHORT:,}- and {LONG:,}-token replies a `QThread`
  runs a precise `QTimer` every {PING_MS} ms that notes `perf_counter()` and posts an event
  (`QCoreApplication.postEvent`) to an object on the main thread; the delay of a ping is from
  its posting until the main thread handles it. Median and maximum over every ping of those
  replies. (The probe thread needs Python's lock to post, so a ping cannot be posted while
  the main thread runs Python code without releasing it for longer than the interpreter's
  switch interval, 5 ms; the delay counts from the posting.)
- **Main-thread stall / event-loop lag**: a `QTimer` (`Qt.PreciseTimer`, every {PROBE_MS} ms)
  on the Qt main thread records `perf_counter()` at each firing; the lag of a firing is the
  gap since the previous one minus {PROBE_MS} ms. The longest stall is the largest lag over all
  replies of that length; p99 is over all firings of those replies. The note gives, for each
  reply's longest lag, the main thread's own CPU time (`time.thread_time()` at each firing)
  between the two firings around it, and the whole process's (`time.process_time()`): the
  main thread's is most of that gap when Rill's work held the thread; the process's is most
  of it while the main thread's is not when another of Rill's threads ran while the main
  thread waited (for Python's lock, or for a core); both are little when the machine ran
  neither.
- **Render time per token**: `ChatView.flush` — the one place the view turns buffered text
  into document content and draws a frame (the Markdown segmenter, the document writer, the
  open tail's re-render, the relayout up to the scroll bar, the scroll and the frame's
  paint) — is wrapped by the benchmark with a `perf_counter()` accumulator (a monkeypatch
  installed before the window is built and kept until it is closed; the app's code is not
  changed). Its total over a reply divided by the reply's tokens is the figure; the median
  over the rounds is reported, and the ratio is of the two medians. Formulas typeset later
  and the window's other work run outside `flush`, so **main-thread CPU per token**
  (`time.thread_time()` of the main thread over the reply: engine, signals, view, layout,
  paint) is reported beside it for context.
- **CPU per reply**: user + system CPU seconds of the whole process (`psutil`, all its
  threads: the GUI, the services' I/O thread, the cache) over the reply; median of the rounds.
- **Memory per reply**: RSS is read after `gc.collect()` before the reply and every
  {RSS_EVERY * PROBE_MS} ms during it; the figure is the peak minus the value before (median of
  the rounds); the note gives what stayed once the next new chat had dropped the reply's
  widgets.

**Worst shapes of text.** A second window gets one reply of each shape from the simulator's
hostile mode (`desktop_app.simulator.hostile.reply`, in a child process, the whole body
written at once): {"; ".join(f"*{k}*: {v}" for k, v in SHAPES.items())}. The longest
main-thread stall (the same {PROBE_MS} ms probe) is measured twice per shape, each with a
target of < {SHAPE_STALL_LIMIT_MS:.0f} ms: *streaming* — from `send` until the reply is
recorded, every message has drawn all its text, and {SETTLE_S * 1000:.0f} ms more; and
*reopening* — after a new chat, from opening that conversation again (a full render from the
history) until all its text is drawn, and {SETTLE_S * 1000:.0f} ms more.

**A reply with {MATH_FORMULAS} formulas.** A third window asks the simulator (paced at
{TOKENS_PER_S:,.0f} tokens/s, one SSE event of 4 characters per token) to `/echo` a reply of
{MATH_FORMULAS} LaTeX formulas — four inline (`$…$`) to one display (`$$…$$`) in short
paragraphs — in {MATH_ROUNDS} rounds, each with formulas of its
own (so none comes from the cache); the first round also starts the typesetting process. The
same {PROBE_MS} ms probe gives the longest main-thread stall from the reply's first text until
every formula of the reply is shown as an image, plus {SETTLE_S * 1000:.0f} ms (the stall from
`send`, which also lays out the prompt's bubble holding the whole text to echo, is in the
note); the time from `send` until
every formula is shown is given beside it, with the time the text alone took to stream. After
each round the same text without its dollars (the same shape, no formula) is streamed as a
control, and its stall is in the note; a first control reply warms the window up."""


# --------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------


class LoopProbe(QObject):
    """A precise timer on the main thread that records when it fires, and samples RSS."""

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self.interval_s = interval_ms / 1000
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.process = psutil.Process()
        self.times: list[float] = []
        self.cpu: list[float] = []
        """The main thread's CPU time (``time.thread_time()``) at each of ``times``."""
        self.process_cpu: list[float] = []
        """The whole process's CPU time (``time.process_time()``) at each of ``times``."""
        self.start_rss = 0
        self.peak_rss = 0

    def start(self) -> None:
        self.start_rss = self.peak_rss = int(self.process.memory_info().rss)
        self.times = [time.perf_counter()]
        self.cpu = [time.thread_time()]
        self.process_cpu = [time.process_time()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.times.append(time.perf_counter())
        self.cpu.append(time.thread_time())
        self.process_cpu.append(time.process_time())
        self.peak_rss = max(self.peak_rss, int(self.process.memory_info().rss))

    def _tick(self) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.thread_time())
        self.process_cpu.append(time.process_time())
        if len(self.times) % RSS_EVERY == 0:
            self.peak_rss = max(self.peak_rss, int(self.process.memory_info().rss))

    def ran_in_worst_ms(self) -> tuple[float, float, float]:
        """The gap between the two firings around the longest lag, how long the main thread
        ran (its CPU time) in it, and how long the whole process's threads ran, in ms: the
        main thread's most of the gap when Rill's own work held it; the process's most of it
        while the main thread did not run when another of Rill's threads ran as it waited (for
        Python's lock, or for a core); both little when the machine ran neither."""
        lags = self.lags_ms()
        if not lags:
            return 0.0, 0.0, 0.0
        worst = max(range(len(lags)), key=lags.__getitem__)
        gap = (self.times[worst + 1] - self.times[worst]) * 1000
        main = (self.cpu[worst + 1] - self.cpu[worst]) * 1000
        return gap, main, (self.process_cpu[worst + 1] - self.process_cpu[worst]) * 1000

    def lags_ms(self) -> list[float]:
        """How late each firing was, in ms (the last entry: from the last firing to stop)."""
        return [
            max(0.0, (later - earlier - self.interval_s) * 1000)
            for earlier, later in zip(self.times, self.times[1:], strict=False)
        ]


PING_EVENT = QEvent.Type(QEvent.registerEventType())


class _PingReceiver(QObject):
    """Lives on the main thread; notes how long each posted ping waited to be handled."""

    def __init__(self, sent: list[float]) -> None:
        super().__init__()
        self.sent = sent
        self.delays_ms: list[float] = []

    def event(self, event: QEvent) -> bool:
        if event.type() == PING_EVENT:
            now = time.perf_counter()
            self.delays_ms.append((now - self.sent[len(self.delays_ms)]) * 1000)
            return True
        return super().event(event)


class _PingSender(QObject):
    """Lives on the probe's thread: a precise timer posts a ping to the main thread."""

    halt = Signal()

    def __init__(self, receiver: _PingReceiver, interval_ms: int) -> None:
        super().__init__()
        self.receiver = receiver
        self.interval_ms = interval_ms
        self.timer: QTimer | None = None
        self.ended = threading.Event()
        self.halt.connect(self.end)

    def begin(self) -> None:
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(self.interval_ms)
        self.timer.timeout.connect(self._ping)
        self.timer.start()

    def end(self) -> None:
        if self.timer is not None:
            self.timer.stop()
        self.ended.set()

    def _ping(self) -> None:
        self.receiver.sent.append(time.perf_counter())
        QCoreApplication.postEvent(self.receiver, QEvent(PING_EVENT))


class PingProbe:
    """The window system's ping, imitated: another thread posts an event to the main thread
    every ``interval_ms`` and the main thread notes how long each waited to be handled."""

    def __init__(self, interval_ms: int) -> None:
        self.receiver = _PingReceiver([])
        self.thread = QThread()
        self.sender = _PingSender(self.receiver, interval_ms)
        self.sender.moveToThread(self.thread)
        self.thread.started.connect(self.sender.begin)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> list[float]:
        """Stop pinging; the delays of the pings handled so far, in ms."""
        self.sender.halt.emit()  # queued to the probe's thread
        self.sender.ended.wait(5)
        self.thread.quit()
        self.thread.wait()
        QCoreApplication.sendPostedEvents(self.receiver, PING_EVENT)
        return list(self.receiver.delays_ms)


@dataclass(slots=True)
class FlushTimer:
    """Wall time spent inside ``ChatView.flush``, accumulated."""

    total_s: float = 0.0
    calls: int = 0
    longest_s: float = 0.0

    def reset(self) -> None:
        self.total_s = 0.0
        self.calls = 0
        self.longest_s = 0.0


@contextlib.contextmanager
def timed_flush(timer: FlushTimer) -> Iterator[None]:
    """Time every call of ``ChatView.flush`` with ``timer`` while the block runs."""
    original: Callable[[chat_view.ChatView], None] = chat_view.ChatView.flush

    def flush(self: chat_view.ChatView) -> None:
        started = time.perf_counter()
        try:
            original(self)
        finally:
            spent = time.perf_counter() - started
            timer.total_s += spent
            timer.calls += 1
            timer.longest_s = max(timer.longest_s, spent)

    chat_view.ChatView.flush = flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        chat_view.ChatView.flush = original  # type: ignore[method-assign, assignment]


# --------------------------------------------------------------------------------------------
# One reply
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """What one reply cost."""

    tokens: int
    lags_ms: list[float]
    ran_in_worst_ms: tuple[float, float, float]
    """The gap around the longest lag, the main thread's CPU time and the whole process's
    in it (ms)."""
    flush_s: float
    flushes: int
    longest_flush_ms: float
    main_cpu_s: float
    process_cpu_s: float
    rss_before: int
    rss_peak: int
    rate: float
    pings_ms: list[float]
    retained: int = 0
    earlier: int = 0
    """Messages the chat already showed when this reply was asked for."""

    @property
    def stall_ms(self) -> float:
        return max(self.lags_ms)


async def _next(signal: SignalInstance, timeout_s: float) -> tuple[Any, ...]:
    """The arguments of the next emission of ``signal``."""
    future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def done(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    signal.connect(done)
    try:
        return await asyncio.wait_for(future, timeout_s)
    finally:
        signal.disconnect(done)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class _ReplyWaiters:
    """The controller's signals that end one reply (finished, failed, the view synced),
    awaited from before the reply is sent."""

    def __init__(self, controller: ChatController) -> None:
        self.finished = asyncio.ensure_future(_next(controller.finished, REPLY_TIMEOUT_S))
        self.failed = asyncio.ensure_future(_next(controller.failed, REPLY_TIMEOUT_S))
        self.synced = asyncio.ensure_future(_next(controller.conversation_synced, REPLY_TIMEOUT_S))

    async def answered(self, what: str) -> None:
        """Wait until the reply finished; raise if it failed instead."""
        await asyncio.wait({self.finished, self.failed}, return_when=asyncio.FIRST_COMPLETED)
        if self.failed.done():
            raise RuntimeError(f"the {what} failed: {self.failed.result()[0]}")

    def cancel(self) -> None:
        for waiter in (self.finished, self.failed, self.synced):
            waiter.cancel()


async def _reply(
    window: MainWindow,
    profile: str,
    prompt: str,
    tokens: int,
    flush: FlushTimer,
    *,
    probed: bool = True,
    new_chat: bool = True,
) -> Reply:
    """Send ``prompt`` in a new chat with ``profile`` and measure the reply.

    ``probed``: run the stall probe and the ping probe beside it (a reply measured for its
    CPU alone runs neither, so their own work is not counted). ``new_chat`` False: ask in
    the chat the window shows."""
    controller = window.controller
    earlier = 0 if new_chat else len(window.view.widgets)
    if new_chat:
        window.new_chat()
    window.select_profile(profile)
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    process = psutil.Process()
    probe = LoopProbe(PROBE_MS)
    ping = PingProbe(PING_MS) if probed else None
    pings: list[float] = []
    flush.reset()
    waiters = _ReplyWaiters(controller)
    try:
        await asyncio.sleep(0)  # the three waiters connect to their signals
        probe.start()
        if not probed:
            probe.timer.stop()
        if ping is not None:
            ping.start()
        cpu_before = _cpu_s(process)
        main_before = time.thread_time()
        window.send(prompt)
        await waiters.answered("reply")
        await waiters.synced
        await asyncio.sleep(SETTLE_S)
        main_cpu = time.thread_time() - main_before
        process_cpu = _cpu_s(process) - cpu_before
        probe.stop()
    finally:
        if ping is not None:
            pings = ping.stop()
        waiters.cancel()
    response = waiters.finished.result()[0]
    assert isinstance(response, GenerationResponse)
    usage = response.usage
    if usage is None or usage.output_tokens != tokens:
        raise RuntimeError(f"expected {tokens} output tokens, got {usage}")
    shown = window.view.widgets[-1]
    if shown.state != "complete" or len(shown.text()) < tokens:
        raise RuntimeError(f"the reply was not shown whole (state {shown.state})")
    timing = response.timing
    streaming_s = (timing.total_s or 0.0) - (timing.ttft_s or 0.0)
    return Reply(
        tokens=tokens,
        lags_ms=probe.lags_ms(),
        ran_in_worst_ms=probe.ran_in_worst_ms(),
        flush_s=flush.total_s,
        flushes=flush.calls,
        longest_flush_ms=flush.longest_s * 1000,
        main_cpu_s=main_cpu,
        process_cpu_s=process_cpu,
        rss_before=probe.start_rss,
        rss_peak=probe.peak_rss,
        rate=tokens / streaming_s if streaming_s > 0 else 0.0,
        pings_ms=pings,
        earlier=earlier,
    )


# --------------------------------------------------------------------------------------------
# The window
# --------------------------------------------------------------------------------------------


def _config(home: Path, short_url: str, long_url: str, cpu_url: str) -> Config:
    """Three profiles: one per simulator."""
    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    for name, url in ((SHORT_PROFILE, short_url), (LONG_PROFILE, long_url), (CPU_PROFILE, cpu_url)):
        config.profiles[name] = Profile(
            name=name, provider="openai", base_url=url, model="sim-small"
        )
    config.values["default_profile"] = SHORT_PROFILE
    return config


async def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _open_window(services: Services) -> MainWindow:
    """Build, show and start the main window as ``rill`` does; return once it is exposed."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    theme.apply(app, str(services.config["ui.theme"]))
    window = MainWindow(services, probes=())
    window.show()
    await _wait_until(
        lambda: (handle := window.windowHandle()) is not None and handle.isExposed(),
        10.0,
        "the window to be exposed",
    )
    await window.start()
    return window


async def _close_window(window: MainWindow) -> None:
    """Close the window as the user would, and wait until it has shut down."""
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    window.close()
    await closed.wait()
    await window.wait_closed()


def stored_reply(number: int) -> str:
    """A reply of a stored chat: paragraphs, a list and a code block (about 1,500 characters)."""
    prose = (
        f"Rivers carry water from the hills to the sea, part {number}. They cut valleys, "
        "feed lakes and wetlands, and move sand and stones downstream over the years. "
    )
    return (
        f"{prose * 3}\n\n"
        f"- the source, where river {number} begins\n- the middle course\n- the mouth\n\n"
        f"```python\ndef flow(river):\n    return river.length * {number}\n```\n\n"
        f"{prose * 4}"
    )


async def _in_a_long_chat(window: MainWindow, services: Services, flush: FlushTimer) -> list[Reply]:
    """Open a stored chat of :data:`LONG_CHAT_EXCHANGES` prompts and replies, as a user
    opens an old chat, and measure CPU replies that continue it."""
    history = services.history
    assert history is not None
    chat = history.create_conversation(title="A long chat", profile=CPU_PROFILE)
    for number in range(LONG_CHAT_EXCHANGES):
        history.add_message(chat.id, "user", f"Tell me about river {number}, please.")
        history.add_message(chat.id, "assistant", stored_reply(number), output_tokens=400)
    loaded = window.controller.conversation_loaded
    opened = asyncio.ensure_future(_next(loaded, 30.0))
    await asyncio.sleep(0)
    window.controller.open_conversation(chat.id)
    await opened
    shown = 2 * LONG_CHAT_EXCHANGES
    await _wait_until(
        lambda: (
            len(window.view.widgets) == shown and not any(w.rendering for w in window.view.widgets)
        ),
        60.0,
        "the stored chat to be shown",
    )
    replies = []
    for number in range(LONG_CHAT_REPLIES):
        reply = await _reply(
            window,
            CPU_PROFILE,
            f"And what about the sea, take {number}?",
            CPU_TOKENS,
            flush,
            probed=False,
            new_chat=False,
        )
        log(
            f"{CPU_TOKENS:,} tokens at {reply.rate:,.0f} tok/s after {reply.earlier} messages: "
            f"process CPU {reply.process_cpu_s * 1e6 / CPU_TOKENS:.0f} µs/token"
        )
        replies.append(reply)
    return replies


def _plan(rounds: int) -> list[tuple[str, int]]:
    """(profile, tokens) of each reply: the warm-up, then per round a short and a long one
    at 2,000 tokens/s and one at 1,000 tokens/s measured for its CPU alone."""
    one_round = [(SHORT_PROFILE, SHORT), (LONG_PROFILE, LONG), (CPU_PROFILE, CPU_TOKENS)]
    return [(SHORT_PROFILE, SHORT), *(one_round * rounds)]


async def _measure(
    home: Path, short_url: str, long_url: str, cpu_url: str, rounds: int
) -> list[Reply]:
    """Every reply of the plan but the warm-up, measured in one window."""
    services = Services.open(
        config=_config(home, short_url, long_url, cpu_url),
        paths=app_paths(home),
        secrets=Secrets(backend=keyring.backends.null.Keyring(), environ={}),  # type: ignore[no-untyped-call]
    )
    flush = FlushTimer()
    measured: list[Reply] = []
    try:
        with timed_flush(flush):
            window = await _open_window(services)
            previous: Reply | None = None
            for number, (profile, tokens) in enumerate(_plan(rounds)):
                prompt = f"Write a long essay about rivers, take {number}"
                reply = await _reply(
                    window, profile, prompt, tokens, flush, probed=profile != CPU_PROFILE
                )
                if previous is not None:
                    previous.retained = reply.rss_before - previous.rss_before
                previous = reply
                if number == 0:
                    log(f"warm-up: {tokens:,} tokens at {reply.rate:,.0f} tok/s")
                    continue
                measured.append(reply)
                if profile == CPU_PROFILE:
                    log(
                        f"{tokens:,} tokens at {reply.rate:,.0f} tok/s: process CPU "
                        f"{reply.process_cpu_s * 1e6 / tokens:.0f} µs/token"
                    )
                    continue
                log(
                    f"{tokens:,} tokens at {reply.rate:,.0f} tok/s: stall "
                    f"{reply.stall_ms:.1f} ms, ping {median(reply.pings_ms):.1f} / "
                    f"{max(reply.pings_ms):.1f} ms, flush {reply.flush_s * 1e6 / tokens:.2f} "
                    f"µs/token, main thread {reply.main_cpu_s * 1e6 / tokens:.0f} µs/token, "
                    f"process CPU {reply.process_cpu_s * 1e6 / tokens:.0f} µs/token"
                )
            window.new_chat()
            await asyncio.sleep(SETTLE_S)
            gc.collect()
            if previous is not None:
                previous.retained = int(psutil.Process().memory_info().rss) - previous.rss_before
            measured += await _in_a_long_chat(window, services, flush)
            await _close_window(window)
    finally:
        await services.aclose()
    return measured


def idle_wake_charge_us() -> float:
    """CPU time this machine charges a thread that only sleeps a frame and wakes, per wake-up.

    The thread does nothing between its sleeps, so on a machine that accounts CPU time
    exactly this is a few µs; a virtual machine may charge the time its virtual CPU takes to
    be scheduled again to whatever thread wakes. Median of three runs of
    :data:`IDLE_WAKES` sleeps of :data:`IDLE_WAKE_S`.
    """
    runs: list[float] = []
    for _ in range(3):
        before = time.thread_time()
        for _ in range(IDLE_WAKES):
            time.sleep(IDLE_WAKE_S)
        runs.append((time.thread_time() - before) / IDLE_WAKES * 1e6)
    return median(runs)


async def _bare_view_cpu_us() -> float:
    """Process CPU per token of a bare ``QTextBrowser`` fed the CPU reply's words as the
    window gets them: a frame's worth of tokens every frame, each frame one edit at the end
    of the document and a scroll to the bottom. No network, no Markdown, no other widget:
    what Qt alone costs to show the same text at the same pace. Median of :data:`BARE_RUNS`.
    """
    from PySide6.QtGui import QTextCursor
    from PySide6.QtWidgets import QTextBrowser

    from desktop_app.simulator.text import reply_tokens

    tokens = reply_tokens(1, CPU_TOKENS)
    per_frame = round(CPU_TOKENS_PER_S * IDLE_WAKE_S)
    process = psutil.Process()
    runs: list[float] = []
    view = QTextBrowser()
    view.resize(1180, 780)
    view.show()

    async def feed() -> None:
        done = asyncio.get_running_loop().create_future()
        at = 0

        def frame() -> None:
            nonlocal at
            cursor = QTextCursor(view.document())
            cursor.beginEditBlock()
            cursor.movePosition(QTextCursor.MoveOperation.End)
            for token in tokens[at : at + per_frame]:
                if token.startswith("\n\n"):
                    cursor.insertBlock()
                    token = token[2:]
                cursor.insertText(token)
            cursor.endEditBlock()
            bar = view.verticalScrollBar()
            bar.setValue(bar.maximum())
            at += per_frame
            if at >= len(tokens) and not done.done():
                done.set_result(None)

        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(chat_view.FRAME_MS)
        timer.timeout.connect(frame)
        timer.start()
        try:
            await done
        finally:
            timer.stop()

    try:
        for _ in range(BARE_RUNS):
            view.clear()
            await asyncio.sleep(SETTLE_S)
            before = _cpu_s(process)
            await feed()
            await asyncio.sleep(SETTLE_S)  # the last frame's paint
            runs.append((_cpu_s(process) - before) / len(tokens) * 1e6)
    finally:
        view.close()
        view.deleteLater()
    log("a bare QTextBrowser fed the same words: " + ", ".join(f"{v:.0f}" for v in runs) + " µs")
    return median(runs)


def _cpu_replies(replies: list[Reply]) -> list[Reply]:
    """The replies the CPU-per-token row is of: the CPU profile's, each in a new chat."""
    return [r for r in replies if r.tokens == CPU_TOKENS and not r.earlier]


def _bare_row(bare_us: float, replies: list[Reply]) -> Row:
    cpu = [r.process_cpu_s / r.tokens * 1e6 for r in _cpu_replies(replies)]
    ratio = median(cpu) / bare_us if cpu and bare_us > 0 else float("nan")
    return info(
        f"the same {CPU_TOKENS:,} tokens at {CPU_TOKENS_PER_S:,.0f} tok/s in a bare "
        "QTextBrowser, process CPU per token (Qt's own floor, this machine)",
        bare_us,
        "µs",
        note=f"median of {BARE_RUNS}; no network, no Markdown, one edit and a scroll per "
        f"{chat_view.FRAME_MS} ms frame; Rill's whole process is {ratio:.2f}× this",
    )


def _idle_row(charge_us: float) -> Row:
    per_token = charge_us * (1 / IDLE_WAKE_S) / CPU_TOKENS_PER_S
    return Row(
        f"CPU charged to a thread that sleeps {IDLE_WAKE_S * 1000:.0f} ms and wakes, doing "
        "nothing (this machine)",
        charge_us,
        "µs",
        note=f"measured beside the replies; at one wake-up per frame it alone would read as "
        f"{per_token:.0f} µs per token at {CPU_TOKENS_PER_S:,.0f} tok/s",
    )


def _rows(replies: list[Reply]) -> list[Row]:
    by_length = {n: [r for r in replies if r.tokens == n] for n in (SHORT, LONG)}
    rows: list[Row] = []
    cpu_replies = _cpu_replies(replies)
    per_token_cpu = [r.process_cpu_s / r.tokens * 1e6 for r in cpu_replies]
    in_long_chat = [r for r in replies if r.earlier]
    rows.append(
        at_most(
            f"whole-process CPU per token, window streaming at {CPU_TOKENS_PER_S:,.0f} tok/s",
            median(per_token_cpu),
            "µs",
            CPU_LIMIT_US,
            note=f"{CPU_TOKENS:,}-token replies, median of {len(cpu_replies)} ("
            + ", ".join(f"{v:.0f}" for v in per_token_cpu)
            + f" µs); arrived at {min(r.rate for r in cpu_replies):,.0f}–"
            f"{max(r.rate for r in cpu_replies):,.0f} tok/s; "
            f"{median(per_token_cpu) * CPU_TOKENS_PER_S / 1e4:.0f}% of one core",
        )
    )
    if in_long_chat:
        long_cpu = [r.process_cpu_s / r.tokens * 1e6 for r in in_long_chat]
        rows.append(
            info(
                f"whole-process CPU per token at {CPU_TOKENS_PER_S:,.0f} tok/s, continuing a "
                f"stored chat of {2 * LONG_CHAT_EXCHANGES} messages",
                median(long_cpu),
                "µs",
                note=f"{CPU_TOKENS:,}-token replies asked after "
                + ", ".join(str(r.earlier) for r in in_long_chat)
                + " messages, median of "
                + f"{len(long_cpu)} ("
                + ", ".join(f"{v:.0f}" for v in long_cpu)
                + f" µs); {median(long_cpu) / median(per_token_cpu):.2f}× the figure in a new chat",
            )
        )
    pings = [p for n in (SHORT, LONG) for r in by_length[n] for p in r.pings_ms]
    for what, value, limit in (
        ("median", median(pings), PING_MEDIAN_LIMIT_MS),
        ("max", max(pings), PING_MAX_LIMIT_MS),
    ):
        rows.append(
            at_most(
                f"main-thread responsiveness at {TOKENS_PER_S:,.0f} tok/s: posted-event "
                f"delay, {what}",
                value,
                "ms",
                limit,
                note=f"{len(pings):,} pings every {PING_MS} ms from another thread over the "
                f"2k and 20k replies; p99 {percentile(pings, 99):.1f} ms",
            )
        )
    for n, group in by_length.items():
        worst = max(r.stall_ms for r in group)
        rates = [r.rate for r in group]
        rows.append(
            at_most(
                f"{n:,} tokens at {TOKENS_PER_S:,.0f} tok/s: longest main-thread stall",
                worst,
                "ms",
                STALL_LIMIT_MS,
                note=f"worst of {len(group)} replies (each: "
                + ", ".join(f"{r.stall_ms:.1f}" for r in group)
                + " ms; the main thread ran "
                + ", ".join(
                    f"{r.ran_in_worst_ms[1]:.1f} of {r.ran_in_worst_ms[0]:.1f}" for r in group
                )
                + " ms between the firings around each, the whole process "
                + ", ".join(f"{r.ran_in_worst_ms[2]:.1f}" for r in group)
                + " ms); "
                + f"arrived at {min(rates):,.0f}–{max(rates):,.0f} tok/s",
            )
        )
    for n, group in by_length.items():
        lags = [lag for r in group for lag in r.lags_ms]
        rows.append(
            info(
                f"p99 event-loop lag while rendering, {n:,} tokens",
                percentile(lags, 99),
                "ms",
                note=f"{len(lags):,} firings of a {PROBE_MS} ms timer; p50 {median(lags):.2f} ms",
            )
        )
    per_token: dict[int, float] = {}
    for n, group in by_length.items():
        values = [r.flush_s / n * 1e6 for r in group]
        per_token[n] = median(values)
        flushes = [r.flushes for r in group]
        rows.append(
            info(
                f"render time per token (ChatView.flush), {n:,}-token reply",
                per_token[n],
                "µs",
                note=f"median of {len(group)} ({min(values):.2f}–{max(values):.2f}); "
                f"{statistics.mean(flushes):,.0f} flushes per reply, longest "
                f"{max(r.longest_flush_ms for r in group):.1f} ms",
            )
        )
    rows.append(
        at_most(
            "render time per token, 20k / 2k ratio",
            per_token[LONG] / per_token[SHORT],
            "×",
            RATIO_LIMIT,
            note="ratio of the two medians",
        )
    )
    main = {n: median([r.main_cpu_s / n * 1e6 for r in g]) for n, g in by_length.items()}
    for n in (SHORT, LONG):
        rows.append(
            info(
                f"main-thread CPU per token (all of it), {n:,}-token reply",
                main[n],
                "µs",
                note="engine, signals, view, layout and paint; "
                + (f"20k / 2k = {main[LONG] / main[SHORT]:.2f}×" if n == LONG else "median"),
            )
        )
    for n, group in by_length.items():
        cpu = [r.process_cpu_s for r in group]
        share = median(cpu) / (n / TOKENS_PER_S) * 100
        rows.append(
            info(
                f"CPU seconds per reply, {n:,} tokens",
                median(cpu),
                "s",
                note=f"whole process, median of {len(group)}; {share:.0f}% of one core "
                f"over the {n / TOKENS_PER_S:g} s of streaming",
            )
        )
    for n, group in by_length.items():
        growth = [(r.rss_peak - r.rss_before) / MB for r in group]
        kept = [r.retained / MB for r in group]
        rows.append(
            info(
                f"memory growth per reply, {n:,} tokens (peak RSS − before)",
                median(growth),
                "MB",
                note=f"median of {len(group)}; kept after the next new chat: "
                + ", ".join(f"{k:.1f}" for k in kept)
                + " MB",
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# The worst shapes of text
# --------------------------------------------------------------------------------------------


def _shape_fault(shape: str) -> Any:
    """The simulator's hostile answer for ``shape`` (any protocol)."""
    from desktop_app.simulator import hostile

    if shape == "long-word":
        return lambda p: hostile.reply(p, ["x" * 65_536] * 16)
    if shape == "flood":
        return lambda p: hostile.reply(p, ["y" * 64] * 16_384)
    return hostile.CASES["table"]


async def _serve_shape(port: int, shape: str) -> None:
    from desktop_app.simulator.server import Simulator

    await serve_until_sigterm(
        Simulator("127.0.0.1", port, tokens_per_s=0, always=_shape_fault(shape))
    )


@contextlib.contextmanager
def _shape_server(shape: str) -> Iterator[str]:
    """A simulator child process answering every chat with ``shape``; yields its base URL."""
    import socket

    port = free_port()
    command = [sys.executable, "-m", "benchmarks.render", "--serve", shape, "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {shape} simulator did not start")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


@dataclass(slots=True)
class ShapeResult:
    shape: str
    stream_ms: float
    reopen_ms: float
    chars: int


async def _drawn(window: MainWindow) -> None:
    """Wait until every message of the view has drawn all its text."""
    await _wait_until(
        lambda: not any(w.rendering for w in window.view.widgets), 60.0, "the text to be drawn"
    )


async def _one_shape(window: MainWindow, shape: str) -> ShapeResult:
    controller = window.controller
    window.new_chat()
    window.select_profile(shape)
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    probe = LoopProbe(PROBE_MS)
    waiters = _ReplyWaiters(controller)
    try:
        await asyncio.sleep(0)
        probe.start()
        window.send(f"Show me {shape}")
        await waiters.answered(f"{shape} reply")
        await waiters.synced
        await _drawn(window)
        await asyncio.sleep(SETTLE_S)
        probe.stop()
    finally:
        waiters.cancel()
    stream_ms = max(probe.lags_ms())
    chars = len(window.view.widgets[-1].text())
    conversation = controller.conversation_id
    assert conversation is not None
    window.new_chat()
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    probe = LoopProbe(PROBE_MS)
    loaded = asyncio.ensure_future(_next(controller.conversation_loaded, REPLY_TIMEOUT_S))
    try:
        await asyncio.sleep(0)
        probe.start()
        controller.open_conversation(conversation)
        await loaded
        await _drawn(window)
        await asyncio.sleep(SETTLE_S)
        probe.stop()
    finally:
        loaded.cancel()
    if len(window.view.widgets[-1].text()) != chars:
        raise RuntimeError(f"the reopened {shape} reply differs from the streamed one")
    result = ShapeResult(shape, stream_ms, max(probe.lags_ms()), chars)
    log(
        f"{shape} ({chars:,} characters): stall {result.stream_ms:.1f} ms streaming, "
        f"{result.reopen_ms:.1f} ms reopening"
    )
    return result


async def _measure_shapes(home: Path, urls: dict[str, str]) -> list[ShapeResult]:
    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    for shape, url in urls.items():
        config.profiles[shape] = Profile(
            name=shape, provider="openai", base_url=url, model="sim-small"
        )
    config.values["default_profile"] = next(iter(urls))
    services = Services.open(
        config=config,
        paths=app_paths(home),
        secrets=Secrets(backend=keyring.backends.null.Keyring(), environ={}),  # type: ignore[no-untyped-call]
    )
    results: list[ShapeResult] = []
    try:
        window = await _open_window(services)
        for shape in urls:
            results.append(await _one_shape(window, shape))
        await _close_window(window)
    finally:
        await services.aclose()
    return results


def _shape_rows(results: list[ShapeResult]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        for when, value in (("streaming", r.stream_ms), ("reopening the chat", r.reopen_ms)):
            rows.append(
                below(
                    f"{r.shape}: longest main-thread stall, {when}",
                    value,
                    "ms",
                    SHAPE_STALL_LIMIT_MS,
                    note=f"{SHAPES[r.shape]}; {r.chars:,} characters",
                )
            )
    return rows


def _run_shapes(loop: asyncio.AbstractEventLoop) -> list[Row]:
    with contextlib.ExitStack() as stack:
        urls = {shape: stack.enter_context(_shape_server(shape)) for shape in SHAPES}
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="rill-bench-shapes-"))
        results = loop.run_until_complete(_measure_shapes(Path(home), urls))
    return _shape_rows(results)


# --------------------------------------------------------------------------------------------
# A reply with many formulas
# --------------------------------------------------------------------------------------------


def math_reply(round_: int, count: int = MATH_FORMULAS) -> str:
    """A reply of ``count`` formulas, four inline to one display, none like another round's."""
    parts: list[str] = []
    for i in range(count):
        n = round_ * count + i + 2
        if i % 5 == 4:
            sum_ = f"\\sum_{{k=1}}^{{{n}}} k^2"
            parts.append(f"so that\n\n$${sum_} = \\frac{{{n}({n}+1)(2\\cdot {n}+1)}}{{6}}$$\n\n")
        elif i % 5 == 0:
            parts.append(f"Step {i + 1}: take $x_{{{n}}}^2 + \\frac{{{n}}}{{\\sqrt{{{n}}}}}$, ")
        else:
            parts.append(f"then $\\alpha_{{{n}}} \\leq e^{{-{n} t}}$ ")
    return "".join(parts)


def _math_images(window: MainWindow) -> int:
    from desktop_app.ui.markdown import formulas

    return len(formulas(window.view.widgets[-1].body.document()))


@dataclass(slots=True)
class MathRun:
    stall_ms: float
    """From the reply's first text until every formula is drawn."""
    send_stall_ms: float
    """From ``send``: also while the prompt (the whole text, to be echoed) is laid out."""
    drawn_s: float
    streamed_s: float
    chars: int


def without_math(text: str) -> str:
    """The same text with its dollars left out: the same length and shape, no formula."""
    return text.replace("$", "")


async def _math_round(window: MainWindow, round_: int, *, control: bool = False) -> MathRun:
    """One reply of :func:`math_reply` (``control``: :func:`without_math` of it)."""
    from desktop_app.ui.math_render import renderer

    controller = window.controller
    window.new_chat()
    window.select_profile(MATH_PROFILE)
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    text = without_math(math_reply(round_)) if control else math_reply(round_)
    expected = 0 if control else MATH_FORMULAS
    probe = LoopProbe(PROBE_MS)
    waiters = _ReplyWaiters(controller)
    try:
        await asyncio.sleep(0)
        first: list[float] = []

        def first_text(_text: str) -> None:
            if not first:
                first.append(time.perf_counter())

        controller.text_appended.connect(first_text)
        probe.start()
        started = time.perf_counter()
        window.send("/echo " + text)
        await waiters.answered("math reply")
        streamed = time.perf_counter() - started
        await waiters.synced
        reply = window.view.widgets[-1]
        await _wait_until(
            lambda: not reply.rendering and not renderer().busy, 120.0, "every formula"
        )
        drawn = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        probe.stop()
    finally:
        waiters.cancel()
    shown = _math_images(window)
    if shown != expected or window.view.widgets[-1].text() != text:
        raise RuntimeError(f"{shown} of {expected} formulas were shown")
    controller.text_appended.disconnect(first_text)
    lags = probe.lags_ms()
    after = [lag for at, lag in zip(probe.times[1:], lags, strict=True) if at > first[0]]
    run = MathRun(max(after), max(lags), drawn, streamed, len(text))
    log(
        f"math round {round_ + 1}: {expected} formulas in {run.chars:,} characters, "
        f"stall {run.stall_ms:.1f} ms ({run.send_stall_ms:.1f} ms from send), streamed in "
        f"{streamed:.2f} s, all drawn after "
        f"{drawn:.2f} s"
    )
    return run


async def _measure_math(home: Path, url: str) -> tuple[list[MathRun], list[MathRun], float | None]:
    from desktop_app.ui.math_render import renderer

    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    config.profiles[MATH_PROFILE] = Profile(
        name=MATH_PROFILE, provider="openai", base_url=url, model="sim-small"
    )
    config.values["default_profile"] = MATH_PROFILE
    services = Services.open(
        config=config,
        paths=app_paths(home),
        secrets=Secrets(backend=keyring.backends.null.Keyring(), environ={}),  # type: ignore[no-untyped-call]
    )
    runs: list[MathRun] = []
    controls: list[MathRun] = []
    try:
        window = await _open_window(services)
        await _math_round(window, MATH_ROUNDS, control=True)  # warms the window up
        for round_ in range(MATH_ROUNDS):
            runs.append(await _math_round(window, round_))
            controls.append(await _math_round(window, round_, control=True))
        await _close_window(window)
    finally:
        await services.aclose()
    return runs, controls, renderer().import_s


def _math_rows(runs: list[MathRun], controls: list[MathRun], import_s: float | None) -> list[Row]:
    cold, *warm = runs
    loaded = f"; ziamath imported in {import_s:.2f} s" if import_s is not None else ""
    rows = [
        at_most(
            f"{MATH_FORMULAS} formulas at {TOKENS_PER_S:,.0f} tok/s: longest main-thread stall",
            max(r.stall_ms for r in runs),
            "ms",
            MATH_STALL_LIMIT_MS,
            note=f"worst of {len(runs)} replies (each: "
            + ", ".join(f"{r.stall_ms:.1f}" for r in runs)
            + f" ms), from the reply's first text until every formula is drawn; "
            f"{cold.chars:,} characters; the same text without its dollars (no formula): "
            + ", ".join(f"{r.stall_ms:.1f}" for r in controls)
            + " ms; from send, while the prompt (the text to echo) is laid out: "
            + ", ".join(f"{r.send_stall_ms:.1f}" for r in runs)
            + " ms",
        ),
        info(
            f"{MATH_FORMULAS} formulas: send → every formula drawn, first reply",
            cold.drawn_s,
            "s",
            note=f"the typesetting process starts with it{loaded}; the text streamed in "
            f"{cold.streamed_s:.2f} s",
        ),
    ]
    if warm:
        rows.append(
            info(
                f"{MATH_FORMULAS} formulas: send → every formula drawn, later replies",
                median([r.drawn_s for r in warm]),
                "s",
                note=f"median of {len(warm)}; the text streamed in "
                + ", ".join(f"{r.streamed_s:.2f}" for r in warm)
                + " s",
            )
        )
    return rows


def _run_math(loop: asyncio.AbstractEventLoop) -> list[Row]:
    with (
        paced_simulator(tokens=SHORT, tokens_per_s=TOKENS_PER_S) as sim,
        tempfile.TemporaryDirectory(prefix="rill-bench-math-") as home,
    ):
        runs, controls, import_s = loop.run_until_complete(
            _measure_math(Path(home), sim.base_url("openai"))
        )
    return _math_rows(runs, controls, import_s)


def _on_qt_loop(run: Callable[[asyncio.AbstractEventLoop], list[Row]]) -> list[Row]:
    """``run`` on a qasync loop over the benchmark's application."""
    import qasync

    loop = qasync.QEventLoop(_app())
    asyncio.set_event_loop(loop)
    try:
        with loop:
            return run(loop)
    finally:
        asyncio.set_event_loop(None)


def run_math() -> list[Row]:
    """Only the rows of the reply with many formulas."""
    return _on_qt_loop(_run_math)


def _app() -> QApplication:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    app = QApplication.instance() or QApplication(["rill-benchmark"])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    return app


def run_shapes() -> list[Row]:
    """Only the worst shapes' rows."""
    return _on_qt_loop(_run_shapes)


def run(quick: bool) -> list[Row]:
    import qasync

    rounds = QUICK_ROUNDS if quick else ROUNDS
    app = _app()
    with (
        paced_simulator(tokens=SHORT, tokens_per_s=TOKENS_PER_S) as short,
        paced_simulator(tokens=LONG, tokens_per_s=TOKENS_PER_S) as long,
        paced_simulator(tokens=CPU_TOKENS, tokens_per_s=CPU_TOKENS_PER_S) as cpu,
        tempfile.TemporaryDirectory(prefix="rill-bench-render-") as home,
    ):
        log(
            f"simulators: {short.url} ({SHORT:,} tokens), {long.url} ({LONG:,} tokens), "
            f"{cpu.url} ({CPU_TOKENS:,} tokens)"
        )
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        try:
            with loop:
                replies = loop.run_until_complete(
                    _measure(
                        Path(home),
                        short.base_url("openai"),
                        long.base_url("openai"),
                        cpu.base_url("openai"),
                        rounds,
                    )
                )
                shape_rows = _run_shapes(loop)
                math_rows = _run_math(loop)
                bare_us = loop.run_until_complete(_bare_view_cpu_us())
        finally:
            asyncio.set_event_loop(None)
    charge = idle_wake_charge_us()
    log(f"an idle thread's wake-up every {IDLE_WAKE_S * 1000:.0f} ms is charged {charge:.0f} µs")
    return [
        *_rows(replies),
        _idle_row(charge),
        _bare_row(bare_us, replies),
        *shape_rows,
        *math_rows,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render")
    parser.add_argument("--shapes", action="store_true", help="measure only the worst shapes")
    parser.add_argument("--math", action="store_true", help="measure only the math reply")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        try:
            loop.run_until_complete(_serve_shape(args.port, args.serve))
        finally:
            loop.close()
        return 0
    rows = run_math() if args.math else run_shapes() if args.shapes else run(args.quick)
    for row in rows:
        value = "—" if row.value is None else f"{format_value(row.value)} {row.unit}"
        print(f"{row.name:<58} {value:>12}  {row.target:<9} {verdict(row):<6} {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
