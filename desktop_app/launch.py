"""``rill``'s entry point: the window's start-up with Python's cycle collector paused.

Start-up makes about 90,000 objects that live as long as the window (modules, classes,
functions, Qt wrappers) and next to no garbage. With the cycle collector running, each
few hundred new objects start a collection, and it walks the young ones about a hundred
times while the modules load and the window is built: time spent before the window shows,
for nothing. So :func:`main` pauses the collector before anything else is imported, and the
window resumes it (:func:`resume_collector`) once its first frame is painted, after moving
everything start-up made to the permanent generation (``gc.freeze``): later collections,
the full ones included, no longer walk the start-up heap, so they stay short while a reply
streams. Reference counting frees objects as usual throughout; only cycles wait.

This module imports nothing of Rill's until the collector is paused.
"""

from __future__ import annotations

import gc
import sys

_paused = False


def pause_collector() -> None:
    """Stop the cycle collector until :func:`resume_collector`."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """Freeze what start-up made and run the cycle collector again (once; only if
    :func:`pause_collector` stopped it)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def collector_paused() -> bool:
    """Whether start-up has the collector paused."""
    return _paused


def main(argv: list[str] | None = None) -> int:
    """Run the window (``desktop_app.app.main``) with start-up's collector paused."""
    pause_collector()
    try:
        from desktop_app.app import main as run_window

        return run_window(argv)
    finally:
        resume_collector()


if __name__ == "__main__":
    sys.exit(main())
