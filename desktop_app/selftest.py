"""``rill --self-test``: checks that this installation of Rill works, and says what does not.

The self-test runs the same way from a source checkout (``python -m desktop_app
--self-test``) and from a frozen build (``rill --self-test``). It

- uses a temporary ``RILL_HOME`` (removed afterwards when every check passed) and the
  ``offscreen`` Qt platform, so it touches neither the user's data nor the screen;
- checks the version from the package metadata, the shipped price list and icons, that
  files can be attached (Pillow's image formats, pypdf), that a formula is typeset (by the
  typesetting process this executable starts) and drawn, the Qt binding, its platform
  plugins and image formats, certifi's CA bundle and the keyring backends, and that the real
  platform plugin (``xcb`` on Linux, not only ``offscreen``) finds every system library it
  needs, naming the command that installs what is missing;
- starts the built-in simulator at full speed on a free port and streams one reply through
  the real engine, controller and main window on a qasync loop, then checks that the reply
  is in the history database and in the chat view.

Each check prints one line, ``ok   name: detail`` or ``FAIL name: detail``, and a last line
sums up. :func:`run_self_test` returns 0 when every check passed and 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

__all__ = ["Report", "run_self_test"]

PROMPT: Final = "Rill self-test: tell me something."
REPLY_TOKENS: Final = 300
"""How many tokens the simulator streams for the self-test's reply."""
REPLY_TIMEOUT_S: Final = 30.0
"""The longest the self-test waits for the reply (it takes well under a second)."""
CLOSE_TIMEOUT_S: Final = 10.0

KEYRING_BACKENDS: Final[dict[str, tuple[str, ...]]] = {
    "linux": ("keyring.backends.SecretService", "keyring.backends.kwallet"),
    "darwin": ("keyring.backends.macOS",),
    "win32": ("keyring.backends.Windows",),
}
"""The keyring backend modules a build for each platform must be able to import."""

QT_PLATFORM_PLUGINS: Final[dict[str, tuple[str, ...]]] = {
    "linux": ("xcb", "wayland", "offscreen"),
    "darwin": ("cocoa", "offscreen"),
    "win32": ("windows", "offscreen"),
}
"""The Qt platform plugins a build for each platform must carry."""

IMAGE_FORMATS: Final = ("png", "svg", "jpeg", "gif", "webp")
"""The formats Qt must read: its icons, and the thumbnails of attached images."""


class CheckFailed(Exception):
    """A check found a problem; the message says what it is."""


@dataclass(slots=True)
class Report:
    """Prints one line per check as it finishes and remembers which ones failed."""

    out: IO[str]
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record a check's result and print its line."""
        (self.passed if ok else self.failed).append(name)
        self.out.write(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}\n")
        self.out.flush()

    def check(self, name: str, fn: Callable[[], str]) -> bool:
        """Run ``fn``; its return value is the detail of an ``ok`` line, an exception a FAIL."""
        try:
            detail = fn()
        except Exception as exc:
            self.add(name, False, _describe(exc))
            return False
        self.add(name, True, detail)
        return True

    def note(self, text: str) -> None:
        """Print a line that is not a check."""
        self.out.write(f"{text}\n")
        self.out.flush()

    @property
    def ok(self) -> bool:
        return not self.failed


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc})" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def frozen() -> bool:
    """Whether this is a frozen (PyInstaller) build rather than Python running the source."""
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path | None:
    """The folder a frozen build unpacked its files to, or None when running from source."""
    base = getattr(sys, "_MEIPASS", None)
    return Path(base) if frozen() and base else None


def resources_dir() -> Path | None:
    """The ``resources`` folder (icons, the .desktop file), where this installation has one."""
    base = bundle_dir()
    candidate = (base if base is not None else Path(__file__).resolve().parent.parent) / (
        "resources"
    )
    return candidate if candidate.is_dir() else None


def _platform_key() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    return sys.platform


# -- checks that need no Qt ------------------------------------------------------------------


def check_version() -> str:
    """Rill's version comes from the package metadata (a frozen build must carry it)."""
    from desktop_app import __version__

    mode = "frozen" if frozen() else "source"
    if __version__ == "0.0.0":
        raise CheckFailed(
            "the package metadata of rill-chat is missing, so Rill does not know its version "
            f"({mode}; a build must carry rill_chat-*.dist-info)"
        )
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"Rill {__version__} ({mode}, Python {python}, {sys.platform})"


def check_pricing() -> str:
    """The price list shipped in ``desktop_app/data`` can be read and parsed."""
    from desktop_app.core.pricing import shipped_price_table

    table = shipped_price_table()
    if table.problems:
        raise CheckFailed("; ".join(table.problems))
    if not table.models:
        raise CheckFailed("the shipped pricing.toml has no model prices")
    return f"pricing.toml has {len(table.models)} model prices"


def check_ca_bundle() -> str:
    """certifi's CA file exists and an SSL context loads certificates from it."""
    import certifi

    where = Path(certifi.where())
    if not where.is_file():
        raise CheckFailed(f"certifi's CA file is missing: {where}")
    context = ssl.create_default_context(cafile=str(where))
    count = int(context.cert_store_stats().get("x509_ca", 0))
    if count == 0:
        raise CheckFailed(f"no CA certificate could be loaded from {where}")
    return f"{count} CA certificates from {where}"


def check_mcp() -> str:
    """The MCP SDK the tools run on loads and holds a whole session: an in-process server
    with one tool, listed and called through the SDK's client (pydantic and its compiled
    core included)."""
    from mcp.client import Client
    from mcp.server.mcpserver import MCPServer

    root = logging.getLogger()
    guard = logging.NullHandler()  # MCPServer calls basicConfig, which only acts on a bare root
    root.addHandler(guard)
    try:
        server = MCPServer("self-test")
    finally:
        root.removeHandler(guard)

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    async def session() -> str:
        async with Client(server) as client:
            tools = await client.list_tools()
            result = await client.call_tool("add", {"a": 2, "b": 3})
        text = "".join(getattr(block, "text", "") for block in result.content)
        if text != "5":
            raise CheckFailed(f"the in-process MCP tool answered {text!r}, not '5'")
        return f"listed {len(tools.tools)} tool, called it: 2 + 3 = {text}"

    return asyncio.run(session())


def check_attachments() -> str:
    """Attaching works in this build: Pillow reads and writes each image format Rill takes
    (its plugins are loaded by name), an image is fitted for a provider, and pypdf reads
    a PDF's pages."""
    import io

    from PIL import Image
    from pypdf import PdfWriter

    from desktop_app.core.attachments import attachment_from_bytes, fit_image

    read: list[str] = []
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        out = io.BytesIO()
        Image.new("RGB", (40, 30), "teal").save(out, fmt)
        att = attachment_from_bytes(out.getvalue(), f"check.{fmt.lower()}")
        if (att.kind, att.width, att.height) != ("image", 40, 30):
            raise CheckFailed(f"a {fmt} image was read as {att.kind} {att.width}×{att.height}")
        read.append(fmt)
    fitted = fit_image(att, "ollama")  # a GIF, which Ollama takes as PNG or JPEG
    if fitted.mime not in ("image/png", "image/jpeg"):
        raise CheckFailed(f"an image fitted for Ollama came out as {fitted.mime}")
    writer = PdfWriter()
    writer.add_blank_page(width=72, height=72)
    writer.add_blank_page(width=72, height=72)
    out = io.BytesIO()
    writer.write(out)
    pdf = attachment_from_bytes(out.getvalue(), "check.pdf")
    if pdf.pages != 2:
        raise CheckFailed(f"a PDF of 2 pages was read as {pdf.pages}")
    return f"images ({', '.join(read)}), fitting, and a PDF's pages read"


def check_keyring() -> str:
    """keyring's backends can be found and imported, and say which one is in use.

    A build without keyring's package metadata finds no backends (they are registered as
    entry points), and one without the backend modules cannot import them: both fail. A
    "fail" backend as the one in use is fine where no keychain runs (a headless Linux
    machine); the line says so.
    """
    import keyring
    from keyring.compat.py312 import metadata

    from desktop_app.core.secrets import Secrets

    registered = sorted(ep.name for ep in metadata.entry_points(group="keyring.backends"))
    if not registered:
        raise CheckFailed(
            "keyring finds no backends: its package metadata (entry points) is missing "
            "from this build"
        )
    modules: list[Any] = []
    missing: list[str] = []
    for name in ("keyring.backends.chainer", *KEYRING_BACKENDS.get(_platform_key(), ())):
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:
            missing.append(f"{name} ({_describe(exc)})")
    if missing:
        raise CheckFailed("keyring backends cannot be imported: " + ", ".join(missing))
    backend = keyring.get_keyring()
    kind = type(backend)
    secrets = Secrets(backend=backend)
    state = secrets.backend_name()
    if not secrets.keychain_available():
        state = "; ".join([state, *_unviable(modules)])
    return (
        f"backend {kind.__module__}.{kind.__qualname__} ({state}); "
        f"registered: {', '.join(registered)}"
    )


def _unviable(modules: list[Any]) -> list[str]:
    """Why each keyring backend class in ``modules`` cannot run here (keyring's words)."""
    import keyring.backend

    reasons: dict[str, str] = {}
    for module in modules:
        name = module.__name__.rsplit(".", 1)[-1]
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, keyring.backend.KeyringBackend)
                and value.__module__ == module.__name__
            ):
                try:
                    value.priority  # noqa: B018
                except Exception as exc:
                    reasons.setdefault(name, f"{name}: {exc}")
    return list(reasons.values())


def check_platform(environ: Mapping[str, str] | None = None) -> str:
    """The platform plugin the window would use (not offscreen) finds its system libraries.

    The rest of the self-test runs offscreen, which needs fewer libraries than a real
    display: this check reads the real plugin (``xcb``, or ``wayland`` then ``xcb`` in a
    Wayland session, or what ``QT_QPA_PLATFORM`` asks for) without loading it, so it
    runs without a display and says which libraries are missing and how to install them.
    """
    from desktop_app.platform_check import (
        HEADLESS_PLATFORMS,
        default_platforms,
        find_plugin,
        plugin_problem,
        read_os_release,
        requested_platforms,
    )

    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return f"Qt's platform plugin needs only the system's own libraries on {sys.platform}"
    wanted = [p for p in requested_platforms((), env) if p not in HEADLESS_PLATFORMS]
    problems = []
    for platform in wanted or default_platforms(env):
        problem = plugin_problem(platform, environ=env)
        if problem is None:
            return (
                f"{platform} plugin finds all its libraries ({find_plugin(platform, environ=env)})"
            )
        problems.append(problem)
    raise CheckFailed(" ".join(problems[-1].sentence(read_os_release()).split()))


# -- checks that need Qt ---------------------------------------------------------------------


def check_qt() -> str:
    """The Qt binding is one Rill can run on, on the offscreen platform."""
    import PySide6
    from PySide6.QtGui import QGuiApplication

    from desktop_app.ui.qtcheck import binding_problem

    problem = binding_problem()
    if problem is not None:
        raise CheckFailed(problem)
    platform = QGuiApplication.platformName()
    if platform != "offscreen":
        raise CheckFailed(f"Qt runs on the {platform!r} platform instead of 'offscreen'")
    return f"PySide6 {PySide6.__version__}, platform {platform}"


def check_qt_plugins() -> str:
    """The platform plugins and image formats Rill needs are there."""
    from PySide6.QtCore import QLibraryInfo
    from PySide6.QtGui import QImageReader

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    files = [p.name.lower() for p in folder.iterdir()] if folder.is_dir() else []
    wanted = QT_PLATFORM_PLUGINS.get(_platform_key(), ("offscreen",))
    absent = [
        name for name in wanted if not any(f"q{name}." in f or f"q{name}-" in f for f in files)
    ]
    formats = {bytes(f.data()).decode().lower() for f in QImageReader.supportedImageFormats()}
    absent += [f"image format {name}" for name in IMAGE_FORMATS if name not in formats]
    if absent:
        raise CheckFailed(f"missing from {folder}: {', '.join(absent)}")
    return f"platforms {', '.join(wanted)}; image formats {', '.join(IMAGE_FORMATS)}"


def check_icons() -> str:
    """The application icon draws, and the shipped SVG icon renders where it is present."""
    from PySide6.QtGui import QImage

    from desktop_app.ui.icon import app_icon

    icon = app_icon()
    if icon.isNull() or not icon.availableSizes():
        raise CheckFailed("the application icon is empty")
    folder = resources_dir()
    if folder is None:
        if frozen():
            raise CheckFailed("the build has no resources folder")
        return "application icon drawn (no resources folder in this installation)"
    svg = folder / "rill.svg"
    image = QImage(str(svg))
    if image.isNull():
        raise CheckFailed(f"{svg} cannot be read as an image")
    return f"application icon drawn; {svg} renders at {image.width()}x{image.height()}"


def check_math() -> str:
    """A formula is typeset by the typesetting process (ziamath and its fonts are there,
    and this executable starts it) and drawn with QtSvg."""
    from desktop_app.ui.math_render import MathImage, MathKey, draw, typeset_once
    from desktop_app.ui.math_text import Layout

    tex = "\\frac{1}{2}"
    layout, import_s = typeset_once(tex, True, 16.0)
    if not isinstance(layout, Layout):
        raise CheckFailed(layout)
    image = draw(layout, MathKey(tex, True, 16.0, "#000000", 1.0, 0), "self-test")
    if not isinstance(image, MathImage):
        raise CheckFailed(image.reason)
    drawn = image.image
    ink = sum(
        1
        for y in range(drawn.height())
        for x in range(drawn.width())
        if drawn.pixelColor(x, y).alpha() > 128
    )
    if not ink:
        raise CheckFailed(f"{tex} was typeset but drew nothing")
    took = f" (ziamath loaded in {import_s:.2f} s)" if import_s is not None else ""
    return f"{tex} typeset and drawn at {drawn.width()}x{drawn.height()} px{took}"


@dataclass(slots=True)
class _Signals:
    """Futures resolved by the controller's signals for one turn."""

    outcome: asyncio.Future[tuple[str, Any]]
    synced: asyncio.Future[int]


def _watch(controller: Any) -> _Signals:
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[tuple[str, Any]] = loop.create_future()
    synced: asyncio.Future[int] = loop.create_future()

    def settle(kind: str, value: Any) -> None:
        if not outcome.done():
            outcome.set_result((kind, value))

    def on_synced(conversation_id: int, _messages: list[Any]) -> None:
        if not synced.done():
            synced.set_result(conversation_id)

    controller.finished.connect(lambda response: settle("finished", response))
    controller.failed.connect(lambda message, _kind: settle("failed", message))
    controller.cancelled.connect(lambda _partial: settle("cancelled", None))
    controller.conversation_synced.connect(on_synced)
    return _Signals(outcome, synced)


async def _window_round_trip(report: Report, home: Path) -> None:
    """Stream one reply from the simulator through engine, controller and window.

    Prints the ``engine``, ``history`` and ``view`` lines, and a ``shutdown`` line when
    closing the window or the services fails.
    """
    from keyring.backends import null

    from desktop_app.core.chat import Services
    from desktop_app.core.config import Config
    from desktop_app.core.paths import app_paths
    from desktop_app.core.secrets import Secrets
    from desktop_app.simulator import SimulatorThread
    from desktop_app.ui import theme
    from desktop_app.ui.keys import KeyStore
    from desktop_app.ui.main_window import SIMULATOR_PROFILE, MainWindow, simulator_profile

    loop = asyncio.get_running_loop()
    sim: SimulatorThread | None = None
    services: Services | None = None
    window: MainWindow | None = None
    try:
        sim = await loop.run_in_executor(
            None,
            lambda: SimulatorThread(port=0, tokens_per_s=0, default_tokens=REPLY_TOKENS).start(),
        )
        paths = app_paths(home).ensure()
        config = Config(path=paths.config_file)
        config.profiles[SIMULATOR_PROFILE] = simulator_profile(sim.base_url("openai"))
        config.values["default_profile"] = SIMULATOR_PROFILE
        config.values["resilience.first_token_timeout_s"] = 10.0
        config.values["resilience.idle_timeout_s"] = 5.0
        # the user's keychain is left alone: the simulator needs no key
        secrets = Secrets(backend=null.Keyring(), environ={})  # type: ignore[no-untyped-call]
        services = Services.open(config=config, paths=paths, secrets=secrets)
        theme.apply(_application(), str(config["ui.theme"]))
        window = MainWindow(services, keys=KeyStore(secrets), probes=())
        window.show()
        await asyncio.wait_for(window.start(), REPLY_TIMEOUT_S)
        await _exchange(report, window, services)
    except Exception as exc:
        report.add("engine", False, _describe(exc))
    finally:
        try:
            if window is not None:
                window.close()
                await asyncio.wait_for(window.wait_closed(), CLOSE_TIMEOUT_S)
                window.deleteLater()
            if services is not None:
                await asyncio.wait_for(services.aclose(), CLOSE_TIMEOUT_S)
            if sim is not None:
                await loop.run_in_executor(None, sim.stop)
        except Exception as exc:
            report.add("shutdown", False, f"closing down failed: {_describe(exc)}")


async def _exchange(report: Report, window: Any, services: Any) -> None:
    """Type the prompt, press Send, wait for the reply; check history and view."""
    watch = _watch(window.controller)
    started = time.monotonic()
    window.composer.set_text(PROMPT)
    window.composer.send_button.click()
    if not window.controller.busy:
        raise CheckFailed("pressing Send did not start a reply")
    kind, value = await asyncio.wait_for(watch.outcome, REPLY_TIMEOUT_S)
    if kind != "finished":
        raise CheckFailed(f"the reply {kind}: {value}" if value else f"the reply {kind}")
    response = value
    tokens = response.usage.output_tokens if response.usage else window.controller.stats.deltas
    elapsed = response.timing.total_s or (time.monotonic() - started)
    if not response.content or tokens <= 0:
        raise CheckFailed("the reply finished without any text")
    report.add("engine", True, f"streamed {tokens} tokens in {elapsed:.2f} s")

    try:
        conversation_id = await asyncio.wait_for(watch.synced, REPLY_TIMEOUT_S)
        detail = await _check_history(services, conversation_id, response.content)
    except Exception as exc:
        report.add("history", False, _describe(exc))
    else:
        report.add("history", True, detail)
    report.check("view", lambda: _check_view(window, response.content))


async def _check_history(services: Any, conversation_id: int, content: str) -> str:
    history = services.history
    if history is None:
        raise CheckFailed("the history is switched off")
    messages = await services.run_io(history.messages, conversation_id)
    roles = [(m.role, m.status) for m in messages]
    if roles != [("user", "complete"), ("assistant", "complete")]:
        raise CheckFailed(f"conversation {conversation_id} on disk holds {roles}")
    if messages[0].content != PROMPT or messages[1].content != content:
        raise CheckFailed(f"conversation {conversation_id} on disk differs from what was sent")
    return (
        f"conversation {conversation_id} saved with the prompt and the whole reply "
        f"({len(content)} characters)"
    )


def _check_view(window: Any, content: str) -> str:
    view = window.view
    user, reply = view.last_user(), view.last_assistant()
    if user is None or reply is None:
        raise CheckFailed("the chat view shows no exchange")
    if user.text() != PROMPT:
        raise CheckFailed("the chat view does not show the prompt that was sent")
    if reply.text() != content:
        raise CheckFailed(
            f"the chat view shows {len(reply.text())} characters of a {len(content)}-character "
            "reply"
        )
    if view.stream_widget is not None:
        raise CheckFailed("the chat view still shows the reply as streaming")
    return f"the chat view shows the prompt and the reply ({len(content)} characters)"


def _application() -> Any:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication([sys.argv[0] if sys.argv else "rill", "-platform", "offscreen"])
    app.setApplicationName("Rill")
    app.setDesktopFileName("rill")
    app.setQuitOnLastWindowClosed(False)
    return app


def _run_on_qasync(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    from desktop_app.ui.event_loop import qt_event_loop, restore_asyncgen_hooks

    app = _application()
    loop = qt_event_loop(app)
    asyncio.set_event_loop(loop)
    try:
        with loop:
            loop.run_until_complete(coro())
    finally:
        restore_asyncgen_hooks()
        asyncio.set_event_loop(None)


# -- running ---------------------------------------------------------------------------------


def _output() -> IO[str]:
    """Where the report goes: stdout, or the parent's console for a windowed Windows build."""
    if sys.stdout is not None:
        return sys.stdout
    if sys.platform == "win32":
        import ctypes

        attach_parent_process = -1
        if ctypes.windll.kernel32.AttachConsole(attach_parent_process):  # type: ignore[attr-defined,unused-ignore]
            with contextlib.suppress(OSError):
                return open("CONOUT$", "w", encoding="utf-8")
    return open(os.devnull, "w", encoding="utf-8")


def run_self_test(out: IO[str] | None = None) -> int:
    """Run every check, print one line each, and return the exit status (0 all passed)."""
    report = Report(out if out is not None else _output())
    environ = dict(os.environ)
    home = Path(tempfile.mkdtemp(prefix="rill-self-test-"))
    os.environ["RILL_HOME"] = str(home)
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    started = time.monotonic()

    from desktop_app.core.logs import setup_logging
    from desktop_app.core.paths import app_paths

    paths = app_paths(home).ensure()
    log_file: Path | None = None
    with contextlib.suppress(OSError):
        log_file = setup_logging(paths.log_dir)

    report.check("version", check_version)
    report.check("pricing", check_pricing)
    report.check("CA bundle", check_ca_bundle)
    report.check("keyring", check_keyring)
    report.check("MCP", check_mcp)
    report.check("attachments", check_attachments)
    report.check("Qt platform", lambda: check_platform(environ))
    try:
        _application()
    except Exception as exc:
        report.add("Qt", False, f"the application cannot start: {_describe(exc)}")
    else:
        qt_ok = report.check("Qt", check_qt)
        report.check("Qt plugins", check_qt_plugins)
        report.check("icons", check_icons)
        report.check("math", check_math)
        if qt_ok:
            try:
                _run_on_qasync(lambda: _window_round_trip(report, home))
            except Exception as exc:
                report.add("event loop", False, _describe(exc))
        else:
            report.add("engine", False, "not run: Qt cannot run Rill")

    elapsed = time.monotonic() - started
    total = len(report.passed) + len(report.failed)
    if report.ok:
        report.note(f"self-test passed: {total} checks in {elapsed:.1f} s")
        shutil.rmtree(home, ignore_errors=True)
        return 0
    where = f"; the log is {log_file}" if log_file is not None else ""
    report.note(
        f"self-test FAILED: {len(report.failed)} of {total} checks "
        f"({', '.join(report.failed)}){where}"
    )
    return 1
