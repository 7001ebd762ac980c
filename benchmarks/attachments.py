"""11. Attachments: a 12-megapixel photo, from the file to the request each provider gets,
and in the real main window (offscreen): time to its chip, the longest main-thread stall while
attaching, and time until the request has left.

``python -m benchmarks.attachments [--quick]`` measures and prints the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import keyring.backends.null

from benchmarks.common import (
    Row,
    below,
    format_value,
    info,
    log,
    median,
    simulator_process,
    verdict,
)
from benchmarks.paced_simulator import paced_simulator
from benchmarks.render import PROBE_MS
from desktop_app.core.attachments import fit_request, forget_fitted, read_attachment
from desktop_app.core.engine import Engine
from desktop_app.core.events import Finished
from desktop_app.core.providers import get_provider
from desktop_app.core.types import PROVIDERS, ChatRequest, Message

if TYPE_CHECKING:
    from desktop_app.core.config import Config
    from desktop_app.ui.main_window import MainWindow

PHOTO_SIZE = (4000, 3000)
REPEATS = 7
QUICK_REPEATS = 2
SENDS = 5
QUICK_SENDS = 1
ROUNDS = 5
QUICK_ROUNDS = 1
CHIP_TARGET_S = 1.0
SEND_TARGET_S = 2.0
STALL_TARGET_MS = 50.0
TIMEOUT_S = 60.0

METHOD = f"""\
A photo of {PHOTO_SIZE[0]}×{PHOTO_SIZE[1]} pixels (12 megapixels) is written as a JPEG of
quality 92 whose content (gradients and noise) makes it at least as large as a camera's.
*Read* is `read_attachment()` on it: the capped read, the kind by its bytes, the header and a
full decode to prove it is an image. *Time to send* is, for each provider, read plus what the
engine does on a worker thread before the request goes out: `fit_request()` (downscale and
re-encode to the provider's limits) and the provider's body encoded (base64 and JSON). The
median of {REPEATS} runs is shown, each on a fresh read. Then the photo is sent {SENDS} times
through the engine to the simulator (its own process), Anthropic's protocol, and the longest
stall of the engine's event loop is measured by a task that wakes every millisecond (after
one text request has set the engine up): the CPU work runs off the loop, so the loop stays
free while the photo is fitted.

In the window, the same photo: the real main window (offscreen Qt, `Services.open` over a
fresh temporary `RILL_HOME`, the theme applied, a null keychain) has one OpenAI-compatible
profile pointing at the simulator, which runs in a process of its own (`python -m
benchmarks.paced_simulator`) so its CPU does not count against the window's. One round warms
the window up and is not counted; each of {ROUNDS} rounds then starts a new chat and:

- **time to chip**: from `MainWindow.attach_files([photo])` — what choosing the file in the
  "Attach files" dialog, dropping it or pasting it does — until its chip above the prompt shows
  the thumbnail (the file read and checked, hashed, its header read, the thumbnail decoded off
  the main thread, the chip filled on it);
- **longest main-thread stall while attaching**: a `QTimer` (`Qt.PreciseTimer`, every
  {PROBE_MS} ms) on the main thread over that same span; a stall is how late a firing was;
- **time to send**: from `MainWindow.send` (what Enter does) until the controller reports the
  stage "waiting" — the request with the photo (fitted to the provider's image limits, base64
  in the body) has been sent and the server has answered with its headers.

Medians over the rounds; the worst round is in the note. The prompt differs each round, so no
answer comes from the response cache.
"""


@contextmanager
def photo_file() -> Iterator[Path]:
    """A 12 MP JPEG like a camera's, in a temporary folder."""
    from PIL import Image

    width, height = PHOTO_SIZE
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    mirrored = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = Image.merge("RGB", (gradient, noise, mirrored))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    with tempfile.TemporaryDirectory(prefix="rill-bench-attach-") as folder:
        path = Path(folder) / "photo.jpg"
        path.write_bytes(out.getvalue())
        yield path


def _timed(action: Callable[[], object], repeats: int) -> list[float]:
    samples: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _request(provider: str, path: Path) -> ChatRequest:
    message = Message("user", "What is in this photo?", attachments=(read_attachment(path),))
    return ChatRequest(provider, "http://127.0.0.1:9", "sim-small", (message,))  # type: ignore[arg-type]


def time_to_send(path: Path, repeats: int) -> list[Row]:
    """Read, and read + fit + encode for each provider (the rows of "time to send")."""
    size = path.stat().st_size
    read_ms = _timed(lambda: read_attachment(path), repeats)
    rows = [info("12 MP photo: read", median(read_ms), "ms", note=f"{size / 1e6:.1f} MB JPEG")]
    for name in PROVIDERS:

        def send(name: str = name) -> None:
            forget_fitted()  # measure the fitting, not the memory of the last one
            get_provider(name).encode_body(fit_request(_request(name, path), name))

        samples = _timed(send, repeats)
        fitted = fit_request(_request(name, path), name).messages[0].attachments[0]
        note = f"sent as {fitted.width}×{fitted.height} {fitted.mime}, {fitted.size / 1e6:.2f} MB"
        log(f"{name}: {median(samples):.0f} ms, {note}")
        rows.append(info(f"12 MP photo: time to send, {name}", median(samples), "ms", note=note))
    return rows


async def _longest_stall(path: Path, sends: int) -> tuple[float, float]:
    """(longest event-loop stall, median reply time), in ms, sending the photo ``sends``
    times through the engine."""
    stalls: list[float] = []
    replies: list[float] = []
    with simulator_process(tokens=20) as sim:
        engine = Engine(api_key=lambda _r: "sk-bench")
        running = True

        async def watch() -> None:
            loop = asyncio.get_running_loop()
            while running:
                before = loop.time()
                await asyncio.sleep(0.001)
                stalls.append((loop.time() - before - 0.001) * 1000)

        # the file is read before the loop is watched (the window reads it on a thread)
        photo = replace(_request("anthropic", path), base_url=sim.base_url("anthropic"))
        warm_up = replace(photo, messages=(Message("user", "Hello"),))
        [event async for event in engine.stream(warm_up)]  # the first request's set-up
        watcher = asyncio.create_task(watch())
        try:
            for _ in range(sends):
                request = replace(photo)
                forget_fitted()
                started = time.perf_counter()
                events = [event async for event in engine.stream(request, read_cache=False)]
                if not isinstance(events[-1], Finished):
                    raise RuntimeError(f"the photo was not answered: {events[-1]!r}")
                replies.append((time.perf_counter() - started) * 1000)
        finally:
            running = False
            await watcher
            await engine.aclose()
    return max(stalls), statistics.median(replies)


def _config(home: Path, base_url: str) -> Config:
    from desktop_app.core.config import Config, Profile
    from desktop_app.core.paths import app_paths

    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    config.profiles["Simulator"] = Profile(
        name="Simulator", provider="openai", base_url=base_url, model="sim-small"
    )
    config.values["default_profile"] = "Simulator"
    return config


async def _window_round(window: MainWindow, photo: Path, n: int) -> tuple[float, float, float]:
    """One photo attached and sent: (time to chip, longest stall in ms, time to send)."""
    from benchmarks.render import SETTLE_S, LoopProbe, _next, _wait_until
    from desktop_app.core.events import Stage

    window.new_chat()
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    tray = window.composer.tray
    probe = LoopProbe(PROBE_MS)
    probe.start()
    started = time.perf_counter()
    window.attach_files([str(photo)])
    await _wait_until(
        lambda: any(c.has_thumbnail for c in tray.chips.values()), TIMEOUT_S, "the chip"
    )
    to_chip = time.perf_counter() - started
    probe.stop()
    stall = max(probe.lags_ms(), default=0.0)
    window.composer.set_text(f"What is in this photo? (round {n})")
    controller = window.controller
    sent: list[float] = []

    def stage(name: str, _attempt: int) -> None:
        if name == Stage.WAITING and not sent:
            sent.append(time.perf_counter())

    controller.stage_changed.connect(stage)
    synced = asyncio.ensure_future(_next(controller.conversation_synced, TIMEOUT_S))
    try:
        await asyncio.sleep(0)
        started = time.perf_counter()
        window.send(window.composer.text())
        await synced
    finally:
        controller.stage_changed.disconnect(stage)
    if not sent:
        raise RuntimeError("the request was not sent")
    to_send = sent[0] - started
    reply = window.view.last_assistant()
    if reply is None or "I see an image of " not in reply.text():
        shown = reply.text()[:200] if reply is not None else "nothing"
        raise RuntimeError(f"the simulator did not see the photo: {shown}")
    return to_chip, stall, to_send


async def _window_measure(
    home: Path, base_url: str, photo: Path, size: int, rounds: int
) -> list[Row]:
    from benchmarks.render import _close_window, _open_window
    from desktop_app.core.chat import Services
    from desktop_app.core.paths import app_paths
    from desktop_app.core.secrets import Secrets

    services = Services.open(
        config=_config(home, base_url),
        paths=app_paths(home),
        secrets=Secrets(backend=keyring.backends.null.Keyring(), environ={}),  # type: ignore[no-untyped-call]
    )
    window = await _open_window(services)
    results: list[tuple[float, float, float]] = []
    try:
        await _window_round(window, photo, 0)  # warm-up: first chip, first thumbnail, first send
        for n in range(1, rounds + 1):
            result = await _window_round(window, photo, n)
            log(
                f"round {n}: chip {result[0] * 1000:.0f} ms, stall {result[1]:.1f} ms, "
                f"send {result[2] * 1000:.0f} ms"
            )
            results.append(result)
    finally:
        await _close_window(window)
        await services.aclose()
    return _window_rows(results, size)


def _window_rows(results: list[tuple[float, float, float]], size: int) -> list[Row]:
    chips = [r[0] for r in results]
    stalls = [r[1] for r in results]
    sends = [r[2] for r in results]
    photo = f"12 MP JPEG of {size / 1_000_000:.1f} MB"
    return [
        below(
            "12 MP photo: time to chip (file chosen → chip with thumbnail)",
            statistics.median(chips),
            "s",
            CHIP_TARGET_S,
            note=f"{photo}; worst {max(chips):.2f} s",
        ),
        below(
            "12 MP photo: longest main-thread stall while attaching",
            max(stalls),
            "ms",
            STALL_TARGET_MS,
            note="the worst round; rounds: " + ", ".join(f"{s:.1f}" for s in stalls),
        ),
        below(
            "12 MP photo: time to send (Enter → request sent, headers back)",
            statistics.median(sends),
            "s",
            SEND_TARGET_S,
            note=f"fitted to OpenAI's limits; worst {max(sends):.2f} s",
        ),
        info("12 MP photo: size of the JPEG", size / 1_000_000, "MB"),
    ]


def window_rows(path: Path, rounds: int) -> list[Row]:
    """The photo attached and sent in the real main window, offscreen."""
    import qasync

    from benchmarks.render import _app

    app = _app()
    size = path.stat().st_size
    with (
        paced_simulator(tokens=20, tokens_per_s=2000) as sim,
        tempfile.TemporaryDirectory(prefix="rill-bench-attach-window-") as home,
    ):
        log(f"simulator {sim.url}; photo {size:,} bytes")
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        try:
            with loop:
                rows: list[Row] = loop.run_until_complete(
                    _window_measure(Path(home), sim.base_url("openai"), path, size, rounds)
                )
                return rows
        finally:
            asyncio.set_event_loop(None)


def run(quick: bool) -> list[Row]:
    repeats = QUICK_REPEATS if quick else REPEATS
    sends = QUICK_SENDS if quick else SENDS
    with photo_file() as path:
        rows = time_to_send(path, repeats)
        stall, reply = asyncio.run(_longest_stall(path, sends))
        shown = window_rows(path, QUICK_ROUNDS if quick else ROUNDS)
    rows.append(
        info(
            "12 MP photo through the engine: longest event-loop stall",
            stall,
            "ms",
            note=f"Anthropic protocol, {sends} sends; reply in {reply:.0f} ms (median)",
        )
    )
    return rows + shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attachments")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for row in run(args.quick):
        value = "—" if row.value is None else f"{format_value(row.value)} {row.unit}"
        print(f"{row.name:<62} {value:>10}  {row.target:<9} {verdict(row):<6} {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
