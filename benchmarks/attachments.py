"""11. Attachments: a 12-megapixel photo attached in the real main window (offscreen) and
sent to the simulator: time to its chip, time until the request has left, and the longest
main-thread stall while attaching.

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
from pathlib import Path

import keyring.backends.null
from PIL import Image

from benchmarks.common import Row, below, format_value, info, log, verdict
from benchmarks.paced_simulator import paced_simulator
from benchmarks.render import (
    PROBE_MS,
    SETTLE_S,
    LoopProbe,
    _app,
    _close_window,
    _next,
    _open_window,
    _wait_until,
)
from desktop_app.core.chat import Services
from desktop_app.core.config import Config, Profile
from desktop_app.core.events import Stage
from desktop_app.core.paths import app_paths
from desktop_app.core.secrets import Secrets
from desktop_app.ui.main_window import MainWindow

PHOTO_SIZE = (4000, 3000)
"""12 megapixels, as a phone camera takes them."""
ROUNDS = 5
QUICK_ROUNDS = 1
CHIP_TARGET_S = 1.0
SEND_TARGET_S = 2.0
STALL_TARGET_MS = 50.0
TIMEOUT_S = 60.0

METHOD = f"""\
A photo of {PHOTO_SIZE[0]:,} × {PHOTO_SIZE[1]:,} pixels (12 megapixels) is made once with
Pillow: camera-like noise over a gradient, saved as a JPEG at quality 90 (a few megabytes, as a
phone's photo is). The real main window (offscreen Qt, `Services.open` over a fresh temporary
`RILL_HOME`, the theme applied, a null keychain) has one OpenAI-compatible profile pointing at
the simulator, which runs in a process of its own (`python -m benchmarks.paced_simulator`) so
its CPU does not count against the window's. Each of {ROUNDS} rounds starts a new chat and:

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


def make_photo(path: Path) -> int:
    """A 12 MP JPEG that compresses like a photo; returns its size in bytes."""
    width, height = PHOTO_SIZE
    noise = Image.effect_noise((width, height), 48)
    gradient = Image.linear_gradient("L").resize((width, height))
    photo = Image.merge("RGB", (noise, gradient, Image.blend(noise, gradient, 0.5)))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def _config(home: Path, base_url: str) -> Config:
    paths = app_paths(home).ensure()
    config = Config(path=paths.config_file)
    config.profiles["Simulator"] = Profile(
        name="Simulator", provider="openai", base_url=base_url, model="sim-small"
    )
    config.values["default_profile"] = "Simulator"
    return config


async def _round(window: MainWindow, photo: Path, n: int) -> tuple[float, float, float]:
    """One photo attached and sent: (time to chip, longest stall in ms, time to send)."""
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


async def _measure(home: Path, base_url: str, photo: Path, size: int, rounds: int) -> list[Row]:
    services = Services.open(
        config=_config(home, base_url),
        paths=app_paths(home),
        secrets=Secrets(backend=keyring.backends.null.Keyring(), environ={}),  # type: ignore[no-untyped-call]
    )
    window = await _open_window(services)
    results: list[tuple[float, float, float]] = []
    try:
        await _round(window, photo, 0)  # warm-up: first chip, first thumbnail, first send
        for n in range(1, rounds + 1):
            result = await _round(window, photo, n)
            log(
                f"round {n}: chip {result[0] * 1000:.0f} ms, stall {result[1]:.1f} ms, "
                f"send {result[2] * 1000:.0f} ms"
            )
            results.append(result)
    finally:
        await _close_window(window)
        await services.aclose()
    return _rows(results, size)


def _rows(results: list[tuple[float, float, float]], size: int) -> list[Row]:
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


def run(quick: bool) -> list[Row]:
    import qasync

    rounds = QUICK_ROUNDS if quick else ROUNDS
    app = _app()
    with (
        paced_simulator(tokens=20, tokens_per_s=2000) as sim,
        tempfile.TemporaryDirectory(prefix="rill-bench-attach-") as home,
    ):
        photo = Path(home) / "photo.jpg"
        size = make_photo(photo)
        log(f"simulator {sim.url}; photo {size:,} bytes")
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        try:
            with loop:
                return loop.run_until_complete(
                    _measure(Path(home) / "rill", sim.base_url("openai"), photo, size, rounds)
                )
        finally:
            asyncio.set_event_loop(None)


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
