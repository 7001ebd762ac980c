"""``rill --self-test`` from source: one subprocess each, offscreen, a few seconds."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app import selftest

REPO = Path(__file__).resolve().parents[2]

CHECKS = (
    "version",
    "pricing",
    "CA bundle",
    "keyring",
    "MCP",
    "attachments",
    "Qt platform",
    "Qt",
    "Qt plugins",
    "icons",
    "math",
    "engine",
    "history",
    "view",
)


def _env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: its own HOME and TMPDIR, so nothing of the user's is touched."""
    env = dict(os.environ)
    home = tmp_path / "home"
    temp = tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env.update(HOME=str(home), TMPDIR=str(temp), XDG_CONFIG_HOME=str(home / ".config"))
    for var in ("RILL_HOME", "QT_QPA_PLATFORM", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env.pop(var, None)
    return env


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_self_test_passes_from_source(tmp_path: Path) -> None:
    result = _run([sys.executable, "-m", "desktop_app", "--self-test"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in CHECKS:
        assert any(line.startswith(f"ok   {name}: ") for line in lines), (name, result.stdout)
    assert not any(line.startswith("FAIL") for line in lines), result.stdout
    engine = next(line for line in lines if line.startswith("ok   engine: "))
    assert engine.startswith(f"ok   engine: streamed {selftest.REPLY_TOKENS} tokens in ")
    assert lines[-1].startswith(f"self-test passed: {len(CHECKS)} checks in ")
    keyring_line = next(line for line in lines if line.startswith("ok   keyring: "))
    assert "backend keyring.backends." in keyring_line
    # the temporary RILL_HOME is gone, and nothing was written to the user's folders
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "home" / ".config" / "Rill").exists()
    assert not (tmp_path / "home" / ".local" / "share" / "Rill").exists()


def test_a_failed_check_exits_1_and_says_what_failed(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from desktop_app import selftest\n"
        "def broken():\n"
        "    raise selftest.CheckFailed('certifi is gone')\n"
        "selftest.check_ca_bundle = broken\n"
        "sys.exit(selftest.run_self_test())\n"
    )
    result = _run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "FAIL CA bundle: certifi is gone" in lines
    assert any(line.startswith("ok   engine: ") for line in lines)
    last = lines[-1]
    assert last.startswith(f"self-test FAILED: 1 of {len(CHECKS)} checks (CA bundle); the log is ")
    # the temporary RILL_HOME is kept for its log
    log = Path(last.rsplit("the log is ", 1)[1])
    assert log.is_file()


def test_report_lines() -> None:
    out = io.StringIO()
    report = selftest.Report(out)

    def divide() -> str:
        return str(1 / 0)

    def missing() -> str:
        raise selftest.CheckFailed("something is missing")

    assert report.check("good", lambda: "fine")
    assert not report.check("bad", divide)
    assert not report.check("gone", missing)
    assert out.getvalue().splitlines() == [
        "ok   good: fine",
        "FAIL bad: ZeroDivisionError: division by zero",
        "FAIL gone: something is missing",
    ]
    assert report.passed == ["good"]
    assert report.failed == ["bad", "gone"]
    assert not report.ok


def test_keyring_check_fails_when_the_backends_are_not_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keyring.compat.py312 import metadata

    monkeypatch.setattr(metadata, "entry_points", lambda **_kw: [])
    with pytest.raises(selftest.CheckFailed, match="package metadata"):
        selftest.check_keyring()


def test_keyring_check_fails_when_a_backend_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        selftest.KEYRING_BACKENDS, selftest._platform_key(), ("keyring.backends.not_there",)
    )
    with pytest.raises(selftest.CheckFailed, match=r"cannot be imported: keyring\.backends"):
        selftest.check_keyring()


def test_keyring_check_names_the_backend() -> None:
    import keyring

    backend = type(keyring.get_keyring())
    detail = selftest.check_keyring()
    assert detail.startswith(f"backend {backend.__module__}.{backend.__qualname__} (")
    assert "registered: " in detail and "SecretService" in detail


def test_ca_bundle_check() -> None:
    import certifi

    detail = selftest.check_ca_bundle()
    assert certifi.where() in detail
    assert int(detail.split()[0]) > 50
