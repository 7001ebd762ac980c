"""The PyInstaller spec and what it bundles, checked without running PyInstaller.

The spec is executed with stand-ins for PyInstaller's Analysis, PYZ, EXE, COLLECT and
BUNDLE that record what they are given, so these tests run where PyInstaller is not
installed.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SPEC = PACKAGING / "rill.spec"
HOOK = PACKAGING / "hooks" / "hook-PySide6.QtGui.py"

UNUSED_QT = (
    "QtWebEngineCore",
    "QtWebEngineWidgets",
    "Qt3DCore",
    "QtQuick",
    "QtQml",
    "QtMultimedia",
    "QtCharts",
    "QtDataVisualization",
    "QtPdf",
    "QtSql",
    "QtTest",
    "QtBluetooth",
    "QtNfc",
    "QtPositioning",
    "QtSensors",
    "QtSerialPort",
    "QtWebSockets",
)

# (destination inside the bundle, kept?) for files the Qt hooks collect
COLLECTED = (
    ("PySide6/Qt/lib/libQt6Core.so.6", True),
    ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
    ("PySide6/Qt/lib/libQt6Svg.so.6", True),
    ("PySide6/Qt/lib/libQt6WaylandClient.so.6", True),
    ("PySide6/Qt/lib/libQt6XcbQpa.so.6", True),
    ("PySide6/Qt/lib/libQt6Quick.so.6", False),
    ("PySide6/Qt/lib/libQt6Qml.so.6", False),
    ("PySide6/Qt/lib/libQt6Pdf.so.6", False),
    ("PySide6/Qt/lib/libQt6VirtualKeyboard.so.6", False),
    ("PySide6/Qt/lib/libQt6Network.so.6", False),
    ("PySide6/Qt/lib/libQt6EglFsKmsSupport.so.6", False),
    ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
    ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
    ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
    ("PySide6/Qt/plugins/platforms/libqeglfs.so", False),
    ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
    ("PySide6/Qt/plugins/platforms/libqlinuxfb.so", False),
    ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
    ("PySide6/Qt/plugins/imageformats/libqjpeg.so", True),
    ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
    ("PySide6/Qt/plugins/imageformats/libqtiff.so", False),
    ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
    ("PySide6/Qt/plugins/platformthemes/libqxdgdesktopportal.so", True),
    ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
    ("PySide6/Qt/plugins/platforminputcontexts/libibusplatforminputcontextplugin.so", True),
    ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
    ("PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so", True),
    ("PySide6/Qt/plugins/wayland-shell-integration/libxdg-shell.so", True),
    (
        "PySide6/Qt/plugins/wayland-graphics-integration-server/libqt-wayland-compositor-drm.so",
        False,
    ),
    ("PySide6/Qt/plugins/egldeviceintegrations/libqeglfs-kms-integration.so", False),
    ("PySide6/Qt/plugins/generic/libqevdevmouseplugin.so", False),
    ("PySide6/Qt/plugins/tls/libqopensslbackend.so", False),
    ("PySide6/Qt/plugins/sqldrivers/libqsqlite.so", False),
    ("PySide6/Qt/plugins/printsupport/libcupsprintersupport.so", False),
    ("PySide6/Qt/plugins/networkinformation/libqnetworkmanager.so", False),
    ("PySide6/Qt/translations/qtbase_de.qm", False),
    ("PySide6/Qt/translations/qt_fr.qm", False),
    ("PySide6/Qt/qml/QtQuick/qmldir", False),
    # macOS
    ("PySide6/Qt/lib/QtCore.framework/Versions/A/QtCore", True),
    ("PySide6/Qt/lib/QtQuick.framework/Versions/A/QtQuick", False),
    ("PySide6/Qt/plugins/platforms/libqcocoa.dylib", True),
    ("PySide6/Qt/plugins/styles/libqmacstyle.dylib", True),
    ("PySide6/Qt/plugins/imageformats/libqicns.dylib", True),
    # Windows
    ("PySide6\\Qt6Core.dll", True),
    ("PySide6\\Qt6Gui.dll", True),
    ("PySide6\\Qt6Quick.dll", False),
    ("PySide6\\Qt6Pdf.dll", False),
    ("PySide6\\opengl32sw.dll", False),
    ("PySide6\\plugins\\platforms\\qwindows.dll", True),
    ("PySide6\\plugins\\platforms\\qdirect2d.dll", False),
    ("PySide6\\plugins\\imageformats\\qico.dll", True),
    ("PySide6\\plugins\\styles\\qmodernwindowsstyle.dll", True),
    ("PySide6\\translations\\qtbase_ja.qm", False),
    # not Qt
    ("libpython3.11.so.1.0", True),
    ("certifi/cacert.pem", True),
    ("desktop_app/data/pricing.toml", True),
    ("keyring-25.7.0.dist-info/entry_points.txt", True),
)


def _load_bundle() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("rill_bundle", PACKAGING / "rill_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = _load_bundle()


@dataclass
class Recorder:
    """Stand-ins for PyInstaller's spec objects; each records what it was given."""

    analyses: list[Any] = field(default_factory=list)
    exes: list[dict[str, Any]] = field(default_factory=list)
    collects: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)

    def namespace(self, workpath: Path) -> dict[str, Any]:
        recorder = self

        class Analysis:
            def __init__(self, scripts: list[str], **kwargs: Any) -> None:
                self.scripts_given = scripts
                self.kwargs = kwargs
                self.pure = [("desktop_app", "desktop_app/__init__.py", "PYMODULE")]
                self.scripts = [(Path(scripts[0]).stem, scripts[0], "PYSOURCE")]
                self.binaries = [(dest, "/src/" + dest, "BINARY") for dest, _ in COLLECTED]
                self.datas = [
                    (f"{dest}/{Path(src).name}", src, "DATA") for src, dest in kwargs["datas"]
                ]
                recorder.analyses.append(self)

        def pyz(pure: Any) -> tuple[str, Any]:
            return ("PYZ", pure)

        def exe(*args: Any, **kwargs: Any) -> dict[str, Any]:
            recorder.exes.append(kwargs)
            return kwargs

        def collect(*args: Any, **kwargs: Any) -> str:
            recorder.collects.append((args, kwargs))
            return "COLLECT"

        def bundle_(*args: Any, **kwargs: Any) -> None:
            recorder.bundles.append(kwargs)

        return {
            "__name__": "__main__",
            "__file__": str(SPEC),
            "SPECPATH": str(PACKAGING),
            "workpath": str(workpath),
            "DISTPATH": str(workpath / "dist"),
            "Analysis": Analysis,
            "PYZ": pyz,
            "EXE": exe,
            "COLLECT": collect,
            "BUNDLE": bundle_,
        }


@pytest.fixture
def run_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Execute the spec (for a given sys.platform) and return what it built."""
    saved_path = list(sys.path)
    saved_module = sys.modules.get("rill_bundle")

    def run(platform: str = sys.platform) -> Recorder:
        recorder = Recorder()
        monkeypatch.setattr(sys, "platform", platform)
        try:
            code = compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")
            exec(code, recorder.namespace(tmp_path / "work"))
        finally:
            monkeypatch.undo()
        return recorder

    try:
        yield run
    finally:
        sys.path[:] = saved_path
        if saved_module is None:
            sys.modules.pop("rill_bundle", None)
        else:
            sys.modules["rill_bundle"] = saved_module


def test_spec_is_python() -> None:
    ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def test_two_executables_in_one_folder(run_spec: Any) -> None:
    built = run_spec("linux")
    scripts = [Path(a.scripts_given[0]).name for a in built.analyses]
    assert scripts == ["rill.py", "q.py"]
    for script in scripts:
        assert (PACKAGING / "launchers" / script).is_file()
    assert [(e["name"], e["exclude_binaries"]) for e in built.exes] == [
        ("rill", True),
        ("q", True),
    ]
    (args, kwargs), *_ = built.collects
    assert len(built.collects) == 1
    assert kwargs["name"] == "rill"
    assert [a for a in args if isinstance(a, dict)] == built.exes
    assert built.bundles == []


def test_datas_carry_prices_certificates_resources_and_metadata(run_spec: Any) -> None:
    gui, cli = run_spec("linux").analyses
    for analysis in (gui, cli):
        given = {(Path(src).name, dest) for src, dest in analysis.kwargs["datas"]}
        assert ("pricing.toml", "desktop_app/data") in given
        assert ("cacert.pem", "certifi") in given
        assert ("rill.svg", "resources") in given
        assert ("rill.desktop", "resources") in given
        names = {name for name, _ in given}
        assert any(n.startswith("rill_chat-") and n.endswith(".dist-info") for n in names)
        assert any(n.startswith("keyring-") and n.endswith(".dist-info") for n in names)
        for src, _dest in analysis.kwargs["datas"]:
            assert Path(src).exists(), src


def test_the_math_typesetter_has_its_fonts_symbols_and_metadata(run_spec: Any) -> None:
    gui, cli = run_spec("linux").analyses
    given = {(Path(src).name, dest) for src, dest in gui.kwargs["datas"]}
    assert ("STIXTwoMath-Regular.ttf", "ziamath/fonts") in given
    assert ("DejaVuSans.ttf", "ziafont/fonts") in given
    assert ("unimathsymbols.txt", "latex2mathml") in given
    assert any(n.startswith("latex2mathml-") and n.endswith(".dist-info") for n, _ in given)
    hidden = set(gui.kwargs["hiddenimports"])
    assert {"ziamath.fonts", "ziafont.fonts", "desktop_app.ui.math_render"} <= hidden
    assert "PySide6.QtSvg" not in gui.kwargs["excludes"]
    assert "ziamath.fonts" not in cli.kwargs["hiddenimports"]
    launcher = (PACKAGING / "launchers" / "rill.py").read_text(encoding="utf-8")
    assert '"--typeset-math"' in launcher


def test_the_window_launcher_becomes_the_typesetting_process_when_asked() -> None:
    import json
    import subprocess

    from desktop_app.ui.math_render import TYPESET_FLAG

    job = json.dumps({"tex": "x^2", "display": False, "size": 16}) + "\n"
    done = subprocess.run(
        [sys.executable, str(PACKAGING / "launchers" / "rill.py"), TYPESET_FLAG],
        input=job.encode(),
        capture_output=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    ready, answer = done.stdout.splitlines()
    assert "ready" in json.loads(ready)
    assert json.loads(answer)["svg"].startswith("<svg")


def test_keyring_backends_and_self_test_are_hidden_imports(run_spec: Any) -> None:
    gui, cli = run_spec("linux").analyses
    for analysis in (gui, cli):
        hidden = set(analysis.kwargs["hiddenimports"])
        for name in ("SecretService", "kwallet", "libsecret", "macOS", "Windows", "chainer"):
            assert f"keyring.backends.{name}" in hidden
    assert "desktop_app.selftest" in gui.kwargs["hiddenimports"]
    assert "desktop_app.selftest" not in cli.kwargs["hiddenimports"]


def test_unused_qt_modules_are_excluded(run_spec: Any) -> None:
    gui, _cli = run_spec("linux").analyses
    excludes = set(gui.kwargs["excludes"])
    for name in UNUSED_QT:
        assert f"PySide6.{name}" in excludes
    for used in ("QtCore", "QtGui", "QtWidgets", "QtDBus"):
        assert f"PySide6.{used}" not in excludes
    assert str(PACKAGING / "hooks") in gui.kwargs["hookspath"]


def test_collected_files_are_filtered(run_spec: Any) -> None:
    gui, _cli = run_spec("linux").analyses
    kept = {dest for dest, _src, _kind in gui.binaries}
    for dest, wanted in COLLECTED:
        assert (dest in kept) == wanted, dest
    data = {dest for dest, _src, _kind in gui.datas}
    assert "desktop_app/data/pricing.toml" in data
    assert "certifi/cacert.pem" in data


@pytest.mark.parametrize(("destination", "wanted"), COLLECTED)
def test_keep(destination: str, wanted: bool) -> None:
    assert bundle.keep(destination) is wanted


def test_macos_app_bundle(run_spec: Any) -> None:
    built = run_spec("darwin")
    assert [e["console"] for e in built.exes] == [False, True]
    assert [e["strip"] for e in built.exes] == [False, False]
    (app,) = built.bundles
    version = bundle.project_version()
    assert app["name"] == "Rill.app"
    assert app["bundle_identifier"] == bundle.BUNDLE_IDENTIFIER
    assert app["version"] == version
    plist = app["info_plist"]
    assert plist["CFBundleIdentifier"] == bundle.BUNDLE_IDENTIFIER
    assert plist["CFBundleShortVersionString"] == version
    assert plist["CFBundleExecutable"] == "rill"
    assert plist["LSBackgroundOnly"] is False


def test_windows_version_resource(run_spec: Any, tmp_path: Path) -> None:
    built = run_spec("win32")
    rill, q = built.exes
    assert (rill["console"], q["console"]) == (False, True)
    version_file = Path(rill["version"])
    assert version_file == tmp_path / "work" / "version_info.txt"
    text = version_file.read_text(encoding="utf-8")
    ast.parse(text)
    assert f"'ProductVersion', '{bundle.project_version()}'" in text


def test_version_comes_from_the_package() -> None:
    from desktop_app import __version__

    assert bundle.project_version() == __version__
    assert bundle.numeric_version("1.2.3") == (1, 2, 3, 0)
    assert bundle.numeric_version("0.1.0rc1") == (0, 1, 0, 0)


def test_qtgui_hook_drops_plugins_before_their_dependencies_are_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    qt = types.ModuleType("PyInstaller.utils.hooks.qt")

    def add_qt6_dependencies(hook_file: str) -> tuple[list[str], list[Any], list[Any]]:
        assert Path(hook_file).name == "hook-PySide6.QtGui.py"
        binaries = [
            (f"/qt/{dest.rsplit('/', 1)[1]}", dest.rsplit("/", 1)[0])
            for dest, _ in COLLECTED
            if "/plugins/" in dest
        ]
        datas = [("/qt/qtbase_de.qm", "PySide6/Qt/translations")]
        return ["PySide6.QtCore"], binaries, datas

    qt.add_qt6_dependencies = add_qt6_dependencies  # type: ignore[attr-defined]
    for name in ("PyInstaller", "PyInstaller.utils", "PyInstaller.utils.hooks"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks.qt", qt)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict[str, Any] = {"__file__": str(HOOK), "__name__": "hook"}
    exec(compile(HOOK.read_text(encoding="utf-8"), str(HOOK), "exec"), namespace)
    kept = {f"{dest}/{Path(src).name}" for src, dest in namespace["binaries"]}
    for dest, wanted in COLLECTED:
        if "/plugins/" in dest:
            assert (dest in kept) == wanted, dest
    assert namespace["datas"] == []
    assert namespace["hiddenimports"] == ["PySide6.QtCore"]
