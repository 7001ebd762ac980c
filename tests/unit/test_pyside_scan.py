"""PySide's per-import question ("does this module use PySide6?") is answered from the
file's bytes: the same answers, without filling linecache with every module's source."""

from __future__ import annotations

import importlib
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
    feature = sys.modules["shibokensupport.feature"]
    monkeypatch.syspath_prepend(str(tmp_path))
    _fresh_module(tmp_path, "rill_scan_uses", "from PySide6.QtCore import QObject\n")
    _fresh_module(tmp_path, "rill_scan_not", "import json\n")
    try:
        assert feature.pyside_feature_dict["rill_scan_uses"] == 0  # uses PySide6
        assert feature.pyside_feature_dict["rill_scan_not"] == -1  # ignored
    finally:
        sys.modules.pop("rill_scan_uses", None)
        sys.modules.pop("rill_scan_not", None)
