"""What goes into Rill's PyInstaller bundle, for ``packaging/rill.spec`` and its tests.

Only the standard library is used here, so the lists can be checked without PyInstaller:

- :func:`project_version` reads the version from ``pyproject.toml``;
- :func:`data_files` lists the data files the bundle carries (the price list, the
  ``resources`` folder, certifi's CA file, and the package metadata that gives Rill its
  version and keyring its backends);
- :func:`hidden_imports` lists modules that are loaded by name at run time (keyring's
  backends);
- :data:`EXCLUDES` names the modules left out (Qt modules Rill does not use, other Qt
  bindings, Tk);
- :func:`keep` says whether a collected file stays in the bundle: Qt's translations,
  plugins for platforms and features Rill does not use, and the libraries only those pull
  in are dropped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pkgutil
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
"""The repository root (the folder with ``pyproject.toml``)."""

APP_NAME: Final = "Rill"
BUNDLE_NAME: Final = "rill"
"""The name of the one-folder build under ``dist/`` (and of the windowed executable)."""
CLI_NAME: Final = "q"
BUNDLE_IDENTIFIER: Final = "org.rillchat.Rill"
"""macOS CFBundleIdentifier (and the Windows installer's application id base)."""
DISTRIBUTION: Final = "rill-chat"

METADATA_OF: Final = ("rill-chat", "keyring", "latex2mathml")
"""Distributions whose metadata the bundle needs: Rill's version, keyring's entry points,
latex2mathml's version (read when it is imported)."""

PACKAGE_DATA: Final = (
    ("ziamath", "fonts/STIXTwoMath-Regular.ttf"),
    ("ziafont", "fonts/DejaVuSans.ttf"),
    ("latex2mathml", "unimathsymbols.txt"),
)
"""Data files of the math typesetter's packages: its fonts and its symbol table."""

MATH_IMPORTS: Final = ("ziamath.fonts", "ziafont.fonts", "desktop_app.ui.math_render")
"""Modules the window loads by name: the font packages ziamath opens as resources, and the
math renderer (imported when a reply first holds a formula)."""

RESOURCE_FILES: Final = ("rill.svg", "rill.desktop")
"""Files of ``resources/`` the bundle carries under ``resources/``."""

UNUSED_QT_MODULES: Final = (
    "Qt3DAnimation",
    "Qt3DCore",
    "Qt3DExtras",
    "Qt3DInput",
    "Qt3DLogic",
    "Qt3DRender",
    "QtAxContainer",
    "QtBluetooth",
    "QtCanvasPainter",
    "QtCharts",
    "QtConcurrent",
    "QtDataVisualization",
    "QtDesigner",
    "QtGraphs",
    "QtGraphsWidgets",
    "QtHelp",
    "QtHttpServer",
    "QtLocation",
    "QtMultimedia",
    "QtMultimediaWidgets",
    "QtNetwork",
    "QtNetworkAuth",
    "QtNfc",
    "QtOpenGL",
    "QtOpenGLWidgets",
    "QtPdf",
    "QtPdfWidgets",
    "QtPositioning",
    "QtPrintSupport",
    "QtQml",
    "QtQuick",
    "QtQuick3D",
    "QtQuickControls2",
    "QtQuickTest",
    "QtQuickWidgets",
    "QtRemoteObjects",
    "QtScxml",
    "QtSensors",
    "QtSerialBus",
    "QtSerialPort",
    "QtSpatialAudio",
    "QtSql",
    "QtStateMachine",
    "QtSvgWidgets",
    "QtTest",
    "QtTextToSpeech",
    "QtUiTools",
    "QtWebChannel",
    "QtWebEngineCore",
    "QtWebEngineQuick",
    "QtWebEngineWidgets",
    "QtWebSockets",
    "QtWebView",
    "QtXml",
)
"""PySide6 modules Rill never imports. It imports QtCore, QtGui, QtWidgets and QtSvg (to
draw typeset formulas); Qt's D-Bus library comes in through Qt's own plugins (platform
themes)."""

EXCLUDES: Final = (
    *(f"PySide6.{name}" for name in UNUSED_QT_MODULES),
    "PyQt5",
    "PyQt6",
    "PySide2",
    "tkinter",
    "_tkinter",
    "pytest",
    "pytestqt",
    "mypy",
    "ruff",
    "openai",
    "psutil",
    "PIL._avif",
    "PIL._imagingft",
    "PIL._imagingtk",
    "PIL._imagingcms",
)
"""Modules the analysis must not follow into the bundle (the MCP SDK needs pydantic, so
it stays). Of Pillow, Rill reads and writes PNG, JPEG, WebP and GIF: AVIF (libavif), text
drawing (FreeType, HarfBuzz), Tk and colour management (LittleCMS) stay out; Pillow loads
its format plugins only where their parts are there."""

QT_PLUGINS: Final[dict[str, frozenset[str] | None]] = {
    # plugin folder: the plugins kept (stem without "lib"/"q" prefixes), None = all
    "platforms": frozenset({"xcb", "wayland", "offscreen", "cocoa", "windows"}),
    "platformthemes": frozenset({"xdgdesktopportal"}),
    "platforminputcontexts": frozenset(
        {"composeplatforminputcontextplugin", "ibusplatforminputcontextplugin"}
    ),
    "iconengines": None,
    "imageformats": frozenset({"svg", "ico", "icns", "gif", "jpeg", "webp"}),
    "styles": None,
    "xcbglintegrations": None,
    "wayland-decoration-client": None,
    "wayland-graphics-integration-client": None,
    "wayland-shell-integration": None,
}
"""The Qt plugin folders the bundle keeps, and which plugins of each. Any other folder
(translations aside) is dropped: eglfs and linuxfb device integrations, evdev input,
network information, TLS, SQL drivers, print support, QML tooling, Designer, vector images
and the Wayland compositor side. The GTK 3 platform theme is dropped too: it would bring
GTK, cairo and pango along, and Rill draws its own Fusion palette in every theme."""

UNUSED_QT_LIBRARIES: Final = re.compile(
    r"(^|/)(lib)?Qt6?("
    r"Quick|Qml|Pdf|VirtualKeyboard|Labs|Lottie|Designer|Help|Sql|Test|Network|"
    r"PrintSupport|OpenGLWidgets|Multimedia|WebEngine|WebChannel|WebSockets|Positioning|"
    r"Charts|DataVisualization|3D|Sensors|SerialPort|Bluetooth|Nfc|Graphs|ShaderTools|"
    r"SvgWidgets|UiTools|Xml|Concurrent|EglF[Ss]|WaylandCompositor|WaylandEglCompositor"
    r")[A-Za-z0-9_]*(\.so[.0-9]*|\.dylib|\.dll|\.framework/.*)?$"
)
"""Qt libraries no kept plugin or module needs (in case a plugin would drag one in)."""

UNUSED_FILES: Final = re.compile(r"(^|/)opengl32sw\.dll$")
"""Other files left out: Qt's software OpenGL for Windows (Rill's widgets paint with the
raster engine)."""


def project_version(root: Path = ROOT) -> str:
    """The version in ``pyproject.toml`` (the one the package metadata is built from)."""
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def numeric_version(version: str) -> tuple[int, int, int, int]:
    """Four numbers for version resources that take only numbers ("0.1.0rc1" -> 0.1.0.0)."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3]]
    while len(numbers) < 4:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _metadata_dir(distribution: str) -> Path:
    """The metadata folder of an installed distribution: its ``*.dist-info`` (as pip
    installed it) before any ``*.egg-info`` a source tree on ``sys.path`` has."""
    folders = [
        Path(path)
        for dist in importlib.metadata.distributions(name=distribution)
        if (path := getattr(dist, "_path", None)) is not None and Path(path).is_dir()
    ]
    if not folders:
        raise RuntimeError(f"the metadata folder of {distribution} cannot be found")
    folders.sort(key=lambda folder: folder.suffix != ".dist-info")
    return folders[0]


def _module_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{module} is not installed")
    return Path(spec.origin).parent


def data_files(root: Path = ROOT) -> list[tuple[str, str]]:
    """``(source, destination folder)`` pairs of every data file the bundle carries."""
    out: list[tuple[str, str]] = [
        (str(root / "desktop_app" / "data" / "pricing.toml"), "desktop_app/data"),
    ]
    out += [(str(root / "resources" / name), "resources") for name in RESOURCE_FILES]
    out.append((str(_module_dir("certifi") / "cacert.pem"), "certifi"))
    for package, name in PACKAGE_DATA:
        folder = PurePosixPath(package, name).parent
        out.append((str(_module_dir(package) / name), str(folder)))
    for distribution in METADATA_OF:
        folder = _metadata_dir(distribution)
        out.append((str(folder), folder.name))
    return out


def hidden_imports(*, gui: bool = True) -> list[str]:
    """Modules loaded by name at run time that the analysis cannot see.

    keyring finds its backends through entry points, so each backend module is named here;
    the window's executable also carries the self-test and what math needs.
    """
    backends = _module_dir("keyring.backends")
    names = sorted(
        f"keyring.backends.{info.name}"
        for info in pkgutil.iter_modules([str(backends)])
        if not info.name.startswith("_")
    )
    names.append("keyring.backends.macOS.api")
    return [*names, "desktop_app.selftest", *MATH_IMPORTS] if gui else names


def _plugin_stem(filename: str) -> str:
    """``libqxcb.so``, ``qxcb.dll`` and ``libqxcb.dylib`` are all ``xcb``."""
    stem = filename.split(".")[0]
    stem = stem.removeprefix("lib")
    return stem[1:] if stem.startswith("q") else stem


def _plugin_wanted(name: str, kept: frozenset[str]) -> bool:
    stem = _plugin_stem(name)
    # a variant such as "wayland-egl" belongs to the same platform
    return stem in kept or any(stem.startswith(f"{k}-") for k in kept)


def keep(destination: str) -> bool:
    """Whether a file collected to ``destination`` (a path inside the bundle) stays."""
    path = PurePosixPath(destination.replace("\\", "/"))
    parts = path.parts
    if "PySide6" in parts:
        inside = parts[parts.index("PySide6") + 1 :]
        if inside[:1] == ("Qt",):
            inside = inside[1:]
        if inside[:1] == ("translations",):
            return False
        if inside[:1] == ("qml",):
            return False
        if inside[:1] == ("plugins",) and len(inside) >= 2:
            folder = inside[1]
            if folder not in QT_PLUGINS:
                return False
            kept = QT_PLUGINS[folder]
            return kept is None or len(inside) < 3 or _plugin_wanted(inside[-1], kept)
    if UNUSED_QT_LIBRARIES.search(str(path)):
        return False
    return not UNUSED_FILES.search(str(path))


def icon_file(build_dir: Path, platform: str | None = None) -> str | None:
    """The executable's icon made by ``packaging/icons.py`` for ``platform`` (this one by
    default), if it exists."""
    name = {"win32": "rill.ico", "darwin": "rill.icns"}.get(platform or sys.platform)
    if name is None:
        return None
    path = build_dir / "icons" / name
    return str(path) if path.is_file() else None


def windows_version_info(version: str) -> str:
    """A PyInstaller version resource (the text of a ``version.txt``) for the .exe files."""
    n = numeric_version(version)
    strings = {
        "CompanyName": APP_NAME,
        "FileDescription": f"{APP_NAME}: a desktop chat client for large language models",
        "FileVersion": version,
        "InternalName": BUNDLE_NAME,
        "OriginalFilename": f"{BUNDLE_NAME}.exe",
        "ProductName": APP_NAME,
        "ProductVersion": version,
    }
    entries = ",\n          ".join(f"StringStruct({k!r}, {v!r})" for k, v in strings.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={n}, prodvers={n}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {entries}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


def info_plist(version: str) -> dict[str, object]:
    """Info.plist entries of ``Rill.app``, merged over the ones PyInstaller writes.

    PyInstaller takes the console setting of the last executable in the COLLECT (``q``, a
    console program) and would mark the app ``LSBackgroundOnly`` (no Dock icon, no menu
    bar); the window is the app, so that is switched off, and ``rill`` is named as the
    executable.
    """
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_IDENTIFIER,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "CFBundleExecutable": BUNDLE_NAME,
        "LSBackgroundOnly": False,
        "LSApplicationCategoryType": "public.app-category.productivity",
        "LSMinimumSystemVersion": "11.0",
        "NSHighResolutionCapable": True,
        "NSRequiresAquaSystemAppearance": False,
        "NSHumanReadableCopyright": "MIT License",
    }
