"""11. Attachments: a 12-megapixel photo, from the file to the request each provider gets."""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from benchmarks.common import Row, info, log, median, simulator_process
from desktop_app.core.attachments import fit_request, read_attachment
from desktop_app.core.engine import Engine
from desktop_app.core.events import Finished
from desktop_app.core.providers import get_provider
from desktop_app.core.types import PROVIDERS, ChatRequest, Message

PHOTO_SIZE = (4000, 3000)
REPEATS = 7
QUICK_REPEATS = 2
SENDS = 5
QUICK_SENDS = 1

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
free while the photo is fitted."""


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


def run(quick: bool) -> list[Row]:
    repeats = QUICK_REPEATS if quick else REPEATS
    sends = QUICK_SENDS if quick else SENDS
    with photo_file() as path:
        rows = time_to_send(path, repeats)
        stall, reply = asyncio.run(_longest_stall(path, sends))
    rows.append(
        info(
            "12 MP photo through the engine: longest event-loop stall",
            stall,
            "ms",
            note=f"Anthropic protocol, {sends} sends; reply in {reply:.0f} ms (median)",
        )
    )
    return rows
