"""PySide's per-import question ("does this module use PySide6?") is answered from the
file's bytes: the same answers, without filling linecache with every module's source."""

from __future__ import annotations

import importlib
import inspect
import linecache
import sys
from pathlib import Path

import pytest

import desktop_app.ui  # noqa: F401  (installs the cheaper scan)


def _fresh_module(folder: Path, name: str, text: str) -> str:
    (folder / f"{name}.py").write_text(text, encoding="utf-8")
    importlib.invalidate_caches()
    __import__(name)  # the import statement's path, which PySide hooks
    return str(folder / f"{name}.py")


def test_an_import_leaves_no_source_lines_in_linecache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _fresh_module(tmp_path, "rill_scan_plain", "VALUE = 1\n")
    try:
        assert path not in linecache.cache
    finally:
        sys.modules.pop("rill_scan_plain", None)


def test_the_answers_are_pysides_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan answers as PySide's own (``"PySide6" in inspect.getsource(module)``), and
    what PySide recorded for a module, when it asked, is that answer. (Whether PySide's
    import hook asks at all is PySide's business: late in a long test session it once had
    no entry for the module, so the entry is checked where there is one.)"""
    feature = sys.modules["shibokensupport.feature"]
    monkeypatch.syspath_prepend(str(tmp_path))
    _fresh_module(tmp_path, "rill_scan_uses", "from PySide6.QtCore import QObject\n")
    _fresh_module(tmp_path, "rill_scan_not", "import json\n")
    try:
        for name, uses in (("rill_scan_uses", True), ("rill_scan_not", False)):
            module = sys.modules[name]
            assert feature._mod_uses_pyside(module) is uses
            assert ("PySide6" in inspect.getsource(module)) is uses
            if name in feature.pyside_feature_dict:
                assert feature.pyside_feature_dict[name] == (0 if uses else -1)
    finally:
        sys.modules.pop("rill_scan_uses", None)
        sys.modules.pop("rill_scan_not", None)
        for name in ("rill_scan_uses", "rill_scan_not"):
            linecache.cache.pop(str(tmp_path / f"{name}.py"), None)
