"""The asyncio loop that runs on Qt's event loop (qasync), finishing async generators the
way asyncio's own loop does.

asyncio's ``run_forever`` registers the loop's async-generator hooks, so a generator that
is dropped before its end (an HTTP body left unread when a reply is cancelled, fails or
passes its size limit) is closed by a task on the loop. qasync's loop does not, so such a
generator was closed by the garbage collector outside any task, where httpcore's closing
code fails ("async generator ignored GeneratorExit", "Attempted to exit cancel scope in a
different task"). :func:`qt_event_loop` registers the hooks, and ``shutdown_asyncgens``
closes what is left when the loop ends.
"""

from __future__ import annotations

import sys
from typing import Any

import qasync


def qt_event_loop(app: Any, *, already_running: bool = False) -> qasync.QEventLoop:
    """A qasync loop for ``app`` whose dropped async generators are closed on the loop."""
    loop = qasync.QEventLoop(app, already_running=already_running)
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook, finalizer=loop._asyncgen_finalizer_hook
    )
    return loop


def restore_asyncgen_hooks() -> None:
    """Take the hooks away again (when the Qt loop is done)."""
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
