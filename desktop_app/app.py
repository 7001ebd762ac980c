"""``rill``: the desktop window.

Creates the QApplication, runs asyncio on Qt's event loop (qasync), opens the services
once, shows the main window, and on quit cancels any reply and closes everything cleanly.
``rill --demo`` starts the built-in simulator and chats with it as the profile "Simulator".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import linecache
import logging
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar


def _without_httpx_cli() -> None:
    """Keep httpx's command-line client out of the window.

    ``import httpx`` also imports its command-line client, and with it click, rich and
    pygments when they happen to be installed (about 6 MB, never used by the window).
    """
    if "httpx" not in sys.modules:
        cli = types.ModuleType("httpx._main")

        def main() -> None:
            raise SystemExit("Rill does not include httpx's command-line client.")

        cli.main = main  # type: ignore[attr-defined]
        sys.modules.setdefault("httpx._main", cli)


_without_httpx_cli()

from desktop_app import APP_NAME  # noqa: E402
from desktop_app.core.config import load_config  # noqa: E402
from desktop_app.core.errors import RillError  # noqa: E402
from desktop_app.core.logs import setup_logging  # noqa: E402
from desktop_app.core.paths import AppPaths, app_paths  # noqa: E402
from desktop_app.launch import resume_collector  # noqa: E402
from desktop_app.platform_check import startup_problem  # noqa: E402

log = logging.getLogger("rill.app")

DEMO_TOKENS_PER_S = 50.0
PROGRESS_AFTER_S = 0.4
"""Opening the stores longer than this shows a window saying what is happening."""
UPGRADING_TEXT = (
    "Rill is updating your conversation history for this version. This happens once; a "
    "large history can take a minute. Your conversations are safe."
)
OPENING_TEXT = "Rill is opening your conversation history…"
FIRST_FRAME_WAIT_S = 2.0
"""The cycle collector, paused for start-up, runs again after the window's first frame, or
after this long without one."""

_T = TypeVar("_T")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rill", description="Rill: a desktop chat client for large language models."
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in simulator and chat with it (profile 'Simulator'); "
        "nothing is written to your config",
    )
    p.add_argument("--home", metavar="PATH", help="keep config, history and cache under PATH")
    p.add_argument("--debug", action="store_true", help="log each request on stderr too")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="check this installation offscreen (simulator, engine, window, CA bundle, "
        "keychain) with a temporary RILL_HOME; print one line per check and exit 0 if all pass",
    )
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    return p


class _Version(argparse.Action):
    """``--version``: the version is read only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from desktop_app import __version__

        parser.exit(message=f"Rill {__version__}\n")


class DemoSimulator:
    """The built-in simulator on its own thread, started on demand."""

    def __init__(self, tokens_per_s: float = DEMO_TOKENS_PER_S) -> None:
        self.tokens_per_s = tokens_per_s
        self._thread: Any = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> str:
        """Start the simulator (once) and return its OpenAI-compatible base URL."""
        with self._lock:
            if self._thread is None:
                from desktop_app.simulator import SimulatorThread

                self._thread = SimulatorThread(tokens_per_s=self.tokens_per_s).start()
                log.info("simulator listening on %s", self._thread.url)
            return str(self._thread.base_url("openai"))

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()


class ExceptionReporter:
    """Logs unhandled exceptions and shows them in a non-blocking dialog; Rill keeps running."""

    def __init__(self) -> None:
        self.dialog: Any = None
        self.count = 0
        self.enabled = True

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        sys.excepthook = self.excepthook
        if loop is not None:
            loop.set_exception_handler(self.loop_handler)

    def excepthook(
        self,
        etype: type[BaseException],
        value: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        log.error("unhandled exception", exc_info=(etype, value, tb))
        self.show(value, "".join(traceback.format_exception(etype, value, tb)))

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "")
        if isinstance(exc, BaseException):
            log.error("unhandled exception in the event loop: %s", message, exc_info=exc)
            self.show(exc, "".join(traceback.format_exception(exc)))
        else:
            log.error("event loop error: %s", message)

    def show(self, exc: BaseException, details: str) -> None:
        from PySide6.QtWidgets import QApplication, QMessageBox

        self.count += 1
        if not self.enabled or QApplication.instance() is None:
            return
        text = (
            "Something went wrong inside Rill. Your conversations are safe and Rill keeps "
            f"running.\n\n{type(exc).__name__}: {exc}"
        )
        try:
            if self.dialog is not None and self.dialog.isVisible():
                self.dialog.setText(text)
                self.dialog.setDetailedText(details)
                return
            box = QMessageBox(QMessageBox.Icon.Critical, f"{APP_NAME}: unexpected error", text)
            box.setInformativeText("The details are also in the log file.")
            box.setDetailedText(details)
            box.setModal(False)
            box.show()
            self.dialog = box
        except Exception:
            log.exception("could not show the error dialog")


def main(argv: list[str] | None = None) -> int:
    """Run the window; return the exit status."""
    parser = build_parser()
    args, qt_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        from desktop_app.selftest import run_self_test

        return run_self_test()
    if args.home:
        os.environ["RILL_HOME"] = str(Path(args.home).expanduser().resolve())
    paths = app_paths().ensure()
    try:
        setup_logging(paths.log_dir, stream=sys.stderr if args.debug else None, debug=args.debug)
    except OSError as exc:
        print(f"Rill cannot write its log in {paths.log_dir}: {exc}", file=sys.stderr)
    # Qt aborts the process when its platform plugin cannot load; say why, and how to fix it.
    problem = startup_problem(qt_args)
    if problem is not None:
        log.error("cannot start: %s", problem)
        sys.stderr.write(f"rill: {problem}\n")
        return 1

    from PySide6.QtWidgets import QApplication

    from desktop_app.ui.event_loop import qt_event_loop, restore_asyncgen_hooks

    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication([sys.argv[0] if sys.argv else "rill", *qt_args])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("rill")
    app.setQuitOnLastWindowClosed(False)

    from desktop_app.ui.icon import app_icon
    from desktop_app.ui.qtcheck import binding_problem

    problem = binding_problem()
    if problem is not None:
        sys.stderr.write(f"rill: {problem}\n")
        return 1

    app.setWindowIcon(app_icon())
    loop = qt_event_loop(app)
    asyncio.set_event_loop(loop)
    reporter = ExceptionReporter()
    reporter.install(loop)
    try:
        with loop:
            try:
                return int(loop.run_until_complete(run(app, args, paths)))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        restore_asyncgen_hooks()
        reporter.enabled = False
        sys.excepthook = sys.__excepthook__
        asyncio.set_event_loop(None)


async def run(app: Any, args: argparse.Namespace, paths: AppPaths) -> int:
    """Open the services, show the window, and wait until it is closed."""
    from desktop_app.core.chat import Services
    from desktop_app.ui import theme
    from desktop_app.ui.keys import KeyStore
    from desktop_app.ui.main_window import SIMULATOR_PROFILE, MainWindow, simulator_profile

    loop = asyncio.get_running_loop()
    demo = DemoSimulator()
    config = load_config(paths.config_file)
    ephemeral: set[str] = set()
    saved_default = str(config["default_profile"])
    wants_simulator = args.demo or (
        saved_default == SIMULATOR_PROFILE and SIMULATOR_PROFILE in config.profiles
    )
    if wants_simulator:
        base_url = await loop.run_in_executor(None, demo.start)
        if SIMULATOR_PROFILE not in config.profiles:
            ephemeral.add(SIMULATOR_PROFILE)
        config.profiles[SIMULATOR_PROFILE] = simulator_profile(base_url)
    theme.apply(app, str(config["ui.theme"]))
    try:
        # SQLite's integrity check of the history reads the whole file: the window runs it
        # once it is shown (MainWindow.start), not before.
        services = await open_services(
            functools.partial(Services.open, config=config, paths=paths, check_stores=False),
            upgrading=Services.history_upgrade_pending(config, paths),
        )
    except RillError as exc:
        log.error("cannot start: %s", exc)
        await loop.run_in_executor(None, demo.stop)
        await _show_fatal(str(exc))
        return 1
    keys = KeyStore(services.secrets)
    # PySide's import hook reads the source of every module imported after it (looking for
    # ``from __feature__ import``), which leaves ~14 MB of source lines in linecache; drop
    # them before the window is built so its memory reuses that space (tracebacks re-read).
    linecache.clearcache()
    window = MainWindow(services, keys=keys, simulator=demo, demo=args.demo, ephemeral=ephemeral)
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, window.close)
    window.show()
    after_first_frame(window, resume_collector)
    for warning in services.warnings:
        window.status.show_error(warning)
    window.start()
    try:
        await closed.wait()
        await window.wait_closed()
    finally:
        await services.aclose()
        await loop.run_in_executor(None, demo.stop)
    return 0


def after_first_frame(window: Any, then: Callable[[], None]) -> None:
    """Call ``then`` on the event loop's next turn after ``window`` paints its first frame,
    or after :data:`FIRST_FRAME_WAIT_S` if it paints none by then (a window that starts
    hidden)."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstFrame(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                watched.removeEventFilter(self)
                QTimer.singleShot(0, done)
            return False

    def done() -> None:
        if not called:
            called.append(True)
            then()

    called: list[bool] = []
    watcher = FirstFrame(window)
    window.installEventFilter(watcher)
    QTimer.singleShot(round(FIRST_FRAME_WAIT_S * 1000), done)


async def open_services(open_them: Callable[[], _T], *, upgrading: bool) -> _T:
    """Run ``open_them`` (opening the history and the other stores) in a thread; when it
    takes longer than :data:`PROGRESS_AFTER_S` (a history being updated for this version,
    a slow disk, a file another process keeps locked), show a small window saying what is
    happening, with the seconds gone by, until it is done."""
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtGui import QCloseEvent
    from PySide6.QtWidgets import QLabel, QProgressDialog

    opening = asyncio.get_running_loop().run_in_executor(None, open_them)
    done, _ = await asyncio.wait({opening}, timeout=PROGRESS_AFTER_S)
    if done:
        return opening.result()

    class Opening(QProgressDialog):
        """The only sign that Rill is at work: Esc and closing do not hide it (the update
        runs in one transaction, to its end)."""

        def reject(self) -> None:
            pass

        def closeEvent(self, event: QCloseEvent) -> None:
            event.ignore()

    text = UPGRADING_TEXT if upgrading else OPENING_TEXT
    dialog = Opening(text, "", 0, 0)
    dialog.setWindowTitle(APP_NAME)
    label = QLabel(dialog)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setFixedWidth(400)
    dialog.setLabel(label)
    dialog.setCancelButton(None)
    dialog.setMinimumDuration(0)
    started = time.monotonic()

    def tick() -> None:
        # whole seconds gone by (not rounded: a late tick would then skip a number)
        dialog.setLabelText(f"{text}\n\n{int(time.monotonic() - started + PROGRESS_AFTER_S)} s")

    timer = QTimer(dialog)
    timer.timeout.connect(tick)
    timer.start(1000)
    tick()
    dialog.show()
    try:
        return await opening
    finally:
        timer.stop()
        dialog.hide()
        dialog.deleteLater()


async def _show_fatal(text: str) -> None:
    """Say why Rill cannot start, in a dialog, and wait until it is closed."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Critical, f"{APP_NAME} cannot start", text)
    closed = asyncio.Event()
    box.finished.connect(lambda _result: closed.set())
    box.show()
    await closed.wait()


if __name__ == "__main__":
    sys.exit(main())
