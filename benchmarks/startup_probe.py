"""Run ``rill`` and report when its main window was first shown, then close it.

``python -m benchmarks.startup_probe [rill options]`` is ``python -m desktop_app`` with
``MainWindow`` watched from outside (the app's code is not changed). It starts the way the
launcher does (``desktop_app.launch``: the cycle collector paused, then ``desktop_app.app``
imported before Qt) and reports the first
``showEvent``, the first frame painted after it, and the end of the window's start-up work
(loading, and on a first run the probe for local servers and the built-in simulator). Times
are ``time.perf_counter()`` minus ``RILL_BENCH_LAUNCHED_AT``, the parent's ``perf_counter()``
just before it started this process (one clock for every process on the machine). Once the
start-up work is done and the window has been idle for ``RILL_BENCH_IDLE_S`` seconds, one
line ``RILL-STARTUP {json}`` goes to stdout with the times and the resident set size (and,
with ``RILL_BENCH_MODULES`` set, the modules imported; and whether the cycle collector ran at
the first frame and runs now, with how many objects start-up left frozen), and the window is
closed the way the user closes it.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

MARKER = "RILL-STARTUP "
LAUNCHED_AT = "RILL_BENCH_LAUNCHED_AT"
IDLE_S = "RILL_BENCH_IDLE_S"
MODULES = "RILL_BENCH_MODULES"
"""When set, the report also lists every module imported by the first frame and by the
report."""
POLL_MS = 5


def rss_bytes() -> int:
    """This process's resident set size, from /proc where there is one."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def main(argv: list[str] | None = None) -> int:
    launched = float(os.environ[LAUNCHED_AT])
    idle_s = float(os.environ.get(IDLE_S, "1.0"))
    entered = time.perf_counter() - launched

    from desktop_app import launch

    launch.pause_collector()
    import desktop_app.app  # noqa: F401, I001  (imported before Qt, as the launcher does)

    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtGui import QShowEvent

    from desktop_app.ui.main_window import MainWindow

    found: dict[str, Any] = {"interpreter_s": entered}
    original_show = MainWindow.showEvent

    class FirstPaint(QObject):
        """Notes the first paint of the window; the frame is done when the loop next runs."""

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and "painting_s" not in found:
                found["painting_s"] = time.perf_counter() - launched
                found["collecting_at_paint"] = gc.isenabled()
                QTimer.singleShot(0, painted)
            return False

    first_paint = FirstPaint()

    def painted() -> None:
        found["painted_s"] = time.perf_counter() - launched
        if os.environ.get(MODULES):
            found["modules_painted"] = sorted(sys.modules)

    def show_event(self: MainWindow, event: QShowEvent) -> None:
        original_show(self, event)
        if "shown_s" in found:
            return
        found["shown_s"] = time.perf_counter() - launched
        self.installEventFilter(first_paint)
        watch(self)

    def watch(window: MainWindow) -> None:
        def check() -> None:
            startup = window.startup_task
            first_run = window.first_run_task
            busy = (
                "painted_s" not in found
                or startup is None
                or not startup.done()
                or (first_run is not None and not first_run.done())
            )
            if busy:
                QTimer.singleShot(POLL_MS, check)
                return
            found["ready_s"] = time.perf_counter() - launched
            found["first_run"] = first_run is not None
            found["simulator"] = bool(window.simulator is not None and window.simulator.running)
            QTimer.singleShot(round(idle_s * 1000), report)

        def report() -> None:
            found["idle_rss"] = rss_bytes()
            found["collecting"] = gc.isenabled()
            found["frozen_objects"] = gc.get_freeze_count()
            if os.environ.get(MODULES):
                found["modules"] = sorted(sys.modules)
            print(MARKER + json.dumps(found), flush=True)
            window.close()

        QTimer.singleShot(POLL_MS, check)

    MainWindow.showEvent = show_event  # type: ignore[method-assign, assignment]
    return launch.main(argv)  # (the collector is paused already; it resumes as in rill)


if __name__ == "__main__":
    sys.exit(main())
