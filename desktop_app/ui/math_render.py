"""Typeset formulas as images for the chat's documents, without ever blocking the window.

ziamath turns LaTeX into an SVG of glyph outlines (no TeX installation, no fonts of the
system). Its layout is pure Python and takes about 5–15 ms a formula, and a thread doing it
would hold Python's lock for as long and stall the window, so it runs in a process of its
own (:func:`desktop_app.ui.math_text.serve`, started on first use and stopped when idle):
a formula that takes longer than :data:`RENDER_TIMEOUT_S` is abandoned and the process
replaced, and the process's memory is capped. The SVG is turned into a ``QImage`` (QtSvg,
about 1–7 ms a formula) at the screen's pixel ratio in the theme's text colour on a thread
of its own, which holds Python's lock only between Qt's calls; the window's thread only
places the finished images, the ones drawn meanwhile together.

Images are cached (least recently used first out) by TeX, size, colour, pixel ratio and
baseline offset, and registered in each document under a name with a random per-process
prefix: a reply cannot name one (and images written in a reply never reach a document).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QByteArray, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter

from desktop_app.ui.math_text import Layout, LayoutJob, LayoutResult, read_answer

TYPESET_FLAG = "--typeset-math"
"""The argument that makes a built ``rill`` the typesetting process."""
RENDER_TIMEOUT_S = 3.0
"""A formula not typeset in this long is shown as written, and the process replaced."""
START_TIMEOUT_S = 60.0
"""How long the typesetting process may take to start."""
RETRY_START_S = 30.0
"""After the typesetting process failed to start, formulas are shown as written for this
long before it is tried again."""
IDLE_S = 120.0
"""The typesetting process stops after this long without work."""
BATCH_MS = 40
"""Formulas typeset or drawn meanwhile are handed on together this often, so a document is
laid out again once for several of them."""
MAX_PIXELS = 4_000_000
"""The largest image of a formula, in device pixels."""
IMAGE_CACHE_BYTES = 48 << 20
LAYOUT_CACHE_BYTES = 16 << 20
SCALE = 1.2
"""Formulas are set this much larger than the text's pixel size (the math font's letters
are smaller than the interface font's at the same size)."""

_UNSAFE_SVG = (
    re.compile(rb"<\s*(image|script|foreignobject|feimage|iframe|a)\b"),
    re.compile(rb"href\s*=\s*[\"'](?!#)"),
    re.compile(rb"src\s*=\s*[\"'](?!#)"),
    re.compile(rb"url\(\s*(?!#)"),
)
"""What an SVG to draw must not hold, looked for in its lower-cased text: an element that
loads or runs something, or a reference to anything but a part of the same SVG. One
pattern each: each begins with a fixed text, which the search finds at once (as one
pattern of alternatives it looked at every character, 30 times as slow on a large formula,
all the while keeping other Python threads waiting)."""


def unsafe_svg(svg: bytes) -> bool:
    """Whether ``svg`` holds anything :data:`_UNSAFE_SVG` forbids."""
    text = svg.lower()
    return any(pattern.search(text) for pattern in _UNSAFE_SVG)


@dataclass(frozen=True, slots=True)
class MathKey:
    """What an image of a formula depends on."""

    tex: str
    display: bool
    size: float
    colour: str
    dpr: float
    x_height: int
    """The text's x-height: an inline image is padded so its baseline sits on the text's
    (0: a centred block, not padded)."""

    @property
    def job(self) -> LayoutJob:
        return (self.tex, self.display, self.size)


@dataclass(frozen=True, slots=True)
class MathImage:
    """A formula drawn: the image, its size in the document (pixels), its resource name."""

    image: QImage
    width: float
    height: float
    name: str


@dataclass(frozen=True, slots=True)
class MathFailure:
    """A formula that cannot be drawn, and the sentence saying why."""

    reason: str


MathResult = MathImage | MathFailure


class MathClient(Protocol):
    """A document writer waiting for formulas."""

    def math_ready(self, results: list[tuple[MathKey, MathResult]]) -> None:
        """Formulas it asked for are drawn (or cannot be), in one batch."""


def inline_padding(ascent: float, depth: float, x_height: int) -> tuple[float, float]:
    """Space to add above and below an inline formula so that, vertically centred on the
    text's x-height (``QTextCharFormat.AlignMiddle``), its baseline sits on the text's."""
    shift = depth - ascent + x_height / 2
    return (shift, 0.0) if shift > 0 else (0.0, -shift)


_SVG_ROOT = re.compile(rb"<svg\b[^>]*>")
_ROOT_SIZE = re.compile(rb'\s(width|height|viewBox)="[^"]*"')
_VIEW_BOX = re.compile(rb'\sviewBox="([^"]*)"')


def framed(svg: bytes, pixels: tuple[int, int], ink: QRectF) -> bytes | None:
    """``svg`` with its root set to draw its view box into ``ink`` of an image of
    ``pixels`` (width, height): the same picture, in a frame as large as the image. None if
    its root has no usable view box."""
    root = _SVG_ROOT.match(svg)
    box = _VIEW_BOX.search(root.group()) if root else None
    if root is None or box is None:
        return None
    try:
        x, y, w, h = (float(part) for part in box.group(1).replace(b",", b" ").split())
    except ValueError:
        return None
    if not (w > 0 and h > 0 and ink.width() > 0 and ink.height() > 0):
        return None
    across = w / ink.width()  # view-box units per pixel
    down = h / ink.height()
    width, height = pixels
    frame = (x - ink.x() * across, y - ink.y() * down, width * across, height * down)
    if not all(map(math.isfinite, frame)):
        return None
    attributes = (
        f' width="{width}" height="{height}" viewBox="{" ".join(map(repr, frame))}"'
    ).encode()
    head = _ROOT_SIZE.sub(b"", root.group()).replace(b"<svg", b"<svg" + attributes, 1)
    return head + svg[root.end() :]


def draw(layout: Layout, key: MathKey, name: str) -> MathResult:
    """Rasterise ``layout`` for ``key``: its ink in ``key.colour`` at ``key.dpr``.

    Qt's SVG image reader parses and rasterises, the costly part, and PySide lets go of
    Python's lock while it reads (it keeps the lock through a ``QSvgRenderer.render``): the
    window's thread runs meanwhile, instead of waiting as long as the drawing takes."""
    from PySide6.QtCore import QBuffer
    from PySide6.QtGui import QImageReader

    if unsafe_svg(layout.svg):
        return MathFailure("This formula could not be typeset safely.")
    top, bottom = (
        inline_padding(layout.ascent, layout.depth, key.x_height) if key.x_height else (0.0, 0.0)
    )
    width = layout.width
    height = layout.height + top + bottom
    dpr = key.dpr
    pixels_w = max(1, math.ceil(width * dpr))
    pixels_h = max(1, math.ceil(height * dpr))
    if pixels_w * pixels_h > MAX_PIXELS:
        return MathFailure("Rill does not typeset this formula: it would be too large to show.")
    svg = framed(
        layout.svg,
        (pixels_w, pixels_h),
        QRectF(0, top * dpr, layout.width * dpr, layout.height * dpr),
    )
    if svg is None:
        return MathFailure("This formula could not be typeset.")
    source = QBuffer()
    source.setData(QByteArray(svg))
    reader = QImageReader(source, b"svg")
    image = reader.read()
    if image.isNull() or image.size().toTuple() != (pixels_w, pixels_h):
        return MathFailure("This formula could not be typeset.")
    image = image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
    painter.fillRect(image.rect(), QColor(key.colour))
    painter.end()
    image.setDevicePixelRatio(dpr)
    return MathImage(image, width, height, name)


def typesetter_command() -> list[str]:
    """How to start the typesetting process: this executable in a build, else Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, TYPESET_FLAG]
    return [sys.executable, "-m", "desktop_app.ui.math_text"]


class _Pump(threading.Thread):
    """Owns the typesetting process: sends one job at a time and waits for its answer,
    abandoning it (and replacing the process) after :data:`RENDER_TIMEOUT_S`."""

    def __init__(self, deliver: Any) -> None:
        super().__init__(name="rill-math", daemon=True)
        self.jobs: queue.Queue[LayoutJob] = queue.Queue()
        self._deliver = deliver
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self.import_s: float | None = None
        self._failed_at = -RETRY_START_S

    def run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_S)
            except queue.Empty:
                self._stop_process()
                continue
            self._deliver(job, self.typeset(job))

    def typeset(self, job: LayoutJob) -> LayoutResult:
        """Typeset one formula now (starting the process if it is not running)."""
        if self._process is None:
            problem = self._start()
            if problem is not None:
                return problem
        process = self._process
        assert process is not None and process.stdin is not None
        tex, display, size = job
        try:
            process.stdin.write(
                json.dumps({"tex": tex, "display": display, "size": size}).encode() + b"\n"
            )
            process.stdin.flush()
            line = self._lines.get(timeout=RENDER_TIMEOUT_S)
        except queue.Empty:
            self._stop_process(kill=True)
            return "This formula took too long to typeset."
        except OSError:
            line = None
        if line is None:
            self._stop_process()
            return "The formula renderer stopped while typesetting this formula."
        return read_answer(line)

    def _start(self) -> str | None:
        if time.monotonic() - self._failed_at < RETRY_START_S:
            return "The formula renderer could not start."
        problem = self._spawn()
        if problem is not None:
            self._failed_at = time.monotonic()
        return problem

    def _spawn(self) -> str | None:
        env = dict(os.environ)
        if not getattr(sys, "frozen", False):
            env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        try:
            process = subprocess.Popen(
                typesetter_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0)
                | getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0),
            )
        except OSError:
            return "The formula renderer could not start."
        self._lines = queue.Queue()
        threading.Thread(
            target=_read_lines, args=(process, self._lines), name="rill-math-read", daemon=True
        ).start()
        self._process = process
        try:
            first = self._lines.get(timeout=START_TIMEOUT_S)
            self.import_s = float(json.loads(first or b"")["ready"])
        except (queue.Empty, ValueError, KeyError, TypeError):
            self._stop_process()
            return "The formula renderer could not start."
        return None

    def _stop_process(self, *, kill: bool = False) -> None:
        """End the typesetting process: let it finish (its input closed), or ``kill`` it."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def typeset_once(tex: str, display: bool, size: float) -> tuple[LayoutResult, float | None]:
    """Typeset one formula in a typesetting process of its own, and stop it: the layout
    (or why there is none) and how long the process took to import ziamath."""
    pump = _Pump(None)
    try:
        return pump.typeset((tex, display, size)), pump.import_s
    finally:
        pump._stop_process()


class _Drawer(threading.Thread):
    """Rasterises typeset formulas (:func:`draw`) off the window's thread, in order."""

    def __init__(self, deliver: Any) -> None:
        super().__init__(name="rill-math-draw", daemon=True)
        self.jobs: queue.Queue[tuple[MathKey, Layout, str]] = queue.Queue()
        self._deliver = deliver

    def run(self) -> None:
        while True:
            key, layout, name = self.jobs.get()
            try:
                result = draw(layout, key, name)
            except Exception:  # (a Qt failure on one formula must not stop the others)
                result = MathFailure("This formula could not be typeset.")
            self._deliver(key, result)


def _read_lines(process: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
    """Pass each line the typesetting process writes to ``lines``; None when it ends."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)


class MathRenderer(QObject):
    """Typesets formulas for document writers and caches the images (one per process)."""

    _arrived = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.prefix = f"rill-math-{secrets.token_hex(8)}"
        """Every image's resource name starts with this (random for each run of Rill)."""
        self._names: dict[MathKey, str] = {}
        self._named = itertools.count()
        self._layouts: OrderedDict[LayoutJob, LayoutResult] = OrderedDict()
        self._layout_bytes = 0
        self._images: OrderedDict[MathKey, MathResult] = OrderedDict()
        self._image_bytes = 0
        self._clients: dict[MathKey, dict[int, MathClient]] = {}
        """The writers waiting for each image (held until it is drawn, so a writer nobody
        else keeps still gets its formulas; one whose document is gone ignores them)."""
        self._by_job: dict[LayoutJob, list[MathKey]] = {}
        self._ready: deque[MathKey] = deque()
        self._drawing: set[MathKey] = set()
        """Formulas with the drawing thread."""
        self._results: deque[tuple[LayoutJob, LayoutResult]] = deque()
        self._drawn: deque[tuple[MathKey, MathResult]] = deque()
        self._lock = threading.Lock()
        self._pump: _Pump | None = None
        self._drawer: _Drawer | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(BATCH_MS)
        self._timer.timeout.connect(self._drain)
        self._arrived.connect(self._schedule, Qt.ConnectionType.QueuedConnection)
        self.typeset = 0
        """Formulas typeset by the process (for tests and benchmarks)."""

    # -- requests ---------------------------------------------------------------------------

    def key(
        self, tex: str, display: bool, pixel_size: float, colour: str, x_height: int
    ) -> MathKey:
        app = QGuiApplication.instance()
        dpr = float(app.devicePixelRatio()) if isinstance(app, QGuiApplication) else 1.0
        size = float(round(pixel_size * SCALE))
        return MathKey(tex, display, size, colour, dpr, x_height)

    def cached(self, key: MathKey) -> MathResult | None:
        """The image (or failure) of ``key`` if it is known."""
        result = self._images.get(key)
        if result is not None:
            self._images.move_to_end(key)
        return result

    def request(self, key: MathKey, client: MathClient) -> MathResult | None:
        """The image of ``key`` now if it is cached; otherwise None, and
        ``client.math_ready`` is given it on the main thread once it is drawn."""
        result = self.cached(key)
        if result is not None:
            return result
        self._clients.setdefault(key, {})[id(client)] = client
        job = key.job
        layout = self._layouts.get(job)
        if layout is not None:
            self._want_drawn(key)
            self._schedule()
            return None
        waiting = self._by_job.get(job)
        if waiting is None:
            self._by_job[job] = [key]
            self._pump_thread().jobs.put(job)
        elif key not in waiting:
            waiting.append(key)
        return None

    @property
    def busy(self) -> bool:
        """Some requested formula is not drawn yet."""
        return bool(self._by_job or self._ready or self._drawing or self._results or self._drawn)

    @property
    def import_s(self) -> float | None:
        """How long the typesetting process took to import ziamath (once started)."""
        return None if self._pump is None else self._pump.import_s

    # -- results ----------------------------------------------------------------------------

    def _pump_thread(self) -> _Pump:
        if self._pump is None:
            self._pump = _Pump(self._deliver)
            self._pump.start()
        return self._pump

    def _drawer_thread(self) -> _Drawer:
        if self._drawer is None:
            self._drawer = _Drawer(self._deliver_drawn)
            self._drawer.start()
        return self._drawer

    def _deliver(self, job: LayoutJob, result: LayoutResult) -> None:
        """On the pump's thread: hand a layout to the main thread."""
        with self._lock:
            self._results.append((job, result))
        self._announce()

    def _deliver_drawn(self, key: MathKey, result: MathResult) -> None:
        """On the drawing thread: hand an image to the main thread."""
        with self._lock:
            self._drawn.append((key, result))
        self._announce()

    def _announce(self) -> None:
        """From a worker thread: tell the main thread that results are waiting. Once Qt has
        deleted the renderer (the application is closing), nothing waits for them."""
        with contextlib.suppress(RuntimeError):
            self._arrived.emit()

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def _drain(self) -> None:
        """Send the formulas typeset meanwhile to be drawn, and give the ones drawn meanwhile
        to their writers, each writer its formulas in one batch."""
        with self._lock:
            results = list(self._results)
            self._results.clear()
            drawn = list(self._drawn)
            self._drawn.clear()
        for job, result in results:
            self.typeset += 1
            self._remember_layout(job, result)
            for key in self._by_job.pop(job, []):
                self._want_drawn(key)
        while self._ready:
            key = self._ready.popleft()
            layout = self._layouts.get(key.job)
            if layout is None:  # dropped from the cache meanwhile: typeset it again
                self._by_job.setdefault(key.job, []).append(key)
                self._pump_thread().jobs.put(key.job)
            elif isinstance(layout, str):
                drawn.append((key, MathFailure(layout)))
            else:
                self._drawing.add(key)
                self._drawer_thread().jobs.put((key, layout, self._name(key)))
        batches: dict[int, tuple[MathClient, list[tuple[MathKey, MathResult]]]] = {}
        for key, image in drawn:
            self._drawing.discard(key)
            self._keep(key, image)
            for client in self._clients.pop(key, {}).values():
                batches.setdefault(id(client), (client, []))[1].append((key, image))
        for client, batch in batches.values():
            client.math_ready(batch)

    def _want_drawn(self, key: MathKey) -> None:
        """Draw ``key`` at the next drain, unless it is already waiting or being drawn."""
        if key not in self._ready and key not in self._drawing:
            self._ready.append(key)

    def _name(self, key: MathKey) -> str:
        """The resource name of ``key``'s image (the same while the image is cached)."""
        name = self._names.get(key)
        if name is None:
            name = f"{self.prefix}/{next(self._named)}"
            self._names[key] = name
        return name

    def _keep(self, key: MathKey, result: MathResult) -> None:
        self._images[key] = result
        self._image_bytes += _bytes(result)
        while self._image_bytes > IMAGE_CACHE_BYTES and len(self._images) > 1:
            old, dropped = self._images.popitem(last=False)
            self._image_bytes -= _bytes(dropped)
            self._names.pop(old, None)

    def _remember_layout(self, job: LayoutJob, result: LayoutResult) -> None:
        self._layouts[job] = result
        self._layout_bytes += _layout_bytes(result)
        while self._layout_bytes > LAYOUT_CACHE_BYTES and len(self._layouts) > 1:
            _old, dropped = self._layouts.popitem(last=False)
            self._layout_bytes -= _layout_bytes(dropped)


def _bytes(result: MathResult) -> int:
    return int(result.image.sizeInBytes()) if isinstance(result, MathImage) else 64


def _layout_bytes(result: LayoutResult) -> int:
    return len(result.svg) if isinstance(result, Layout) else len(result)


_RENDERER: list[MathRenderer] = []


def prepare() -> None:
    """Load QtSvg and make the renderer now (the typesetting process still starts only with
    the first formula)."""
    import PySide6.QtSvg  # noqa: F401

    renderer()


def renderer() -> MathRenderer:
    """The process's one renderer (made on first use)."""
    if not _RENDERER:
        _RENDERER.append(MathRenderer())
    return _RENDERER[0]
