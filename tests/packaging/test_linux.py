"""Linux desktop integration: the .desktop entry, the rendered icons, install.sh and
uninstall.sh (run on a stand-in for the unpacked tarball in a temporary HOME)."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DESKTOP = REPO / "resources" / "rill.desktop"
LINUX = REPO / "packaging" / "linux"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="shell scripts for Linux")


def _desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def _validate(path: Path) -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        return
    result = subprocess.run(
        [tool, "--no-hints", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_desktop_entry() -> None:
    entry = _desktop_entry(DESKTOP)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Rill"
    assert entry["Exec"].split()[0] == "rill"
    assert entry["TryExec"] == "rill"
    assert entry["Icon"] == "rill"
    assert entry["Terminal"] == "false"
    assert entry["Categories"] == "Network;Chat;Utility;"
    # the window's WM_CLASS instance and Wayland app id are "rill" (app.setDesktopFileName)
    assert entry["StartupWMClass"] == "rill"
    assert 'app.setDesktopFileName("rill")' in (REPO / "desktop_app" / "app.py").read_text()
    _validate(DESKTOP)


def test_icons_render_from_the_svg(tmp_path: Path) -> None:
    out = tmp_path / "icons"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "icons.py"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for size in (48, 128, 256):
        png = out / "hicolor" / f"{size}x{size}" / "apps" / "rill.png"
        assert _png_size(png.read_bytes()) == (size, size)
    assert (out / "hicolor" / "scalable" / "apps" / "rill.svg").read_bytes() == (
        REPO / "resources" / "rill.svg"
    ).read_bytes()
    ico = (out / "rill.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind, count) == (0, 1, 7)
    sizes = []
    for i in range(count):
        width, _h, _c, _r, _planes, _bits, length, offset = struct.unpack(
            "<BBBBHHII", ico[6 + 16 * i : 22 + 16 * i]
        )
        sizes.append(width or 256)
        assert _png_size(ico[offset : offset + length]) == (width or 256, width or 256)
    assert sizes == [16, 24, 32, 48, 64, 128, 256]
    iconset = sorted(p.name for p in (out / "rill.iconset").iterdir())
    assert "icon_512x512@2x.png" in iconset and len(iconset) == 10
    assert _png_size((out / "rill.iconset" / "icon_512x512@2x.png").read_bytes()) == (1024, 1024)


def _fake_tarball(root: Path) -> Path:
    """The layout of the Linux tarball, with scripts standing in for the executables."""
    top = root / "rill-9.9.9-linux-x86_64"
    program = top / "rill"
    (program / "_internal").mkdir(parents=True)
    for name in ("rill", "q"):
        exe = program / name
        exe.write_text(f'#!/bin/sh\necho "{name} ran with $*"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (program / "_internal" / "data.txt").write_text("bundle")
    (top / "share" / "applications").mkdir(parents=True)
    shutil.copy(DESKTOP, top / "share" / "applications" / "rill.desktop")
    for size in (48, 128, 256):
        icon = top / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "rill.png"
        icon.parent.mkdir(parents=True)
        icon.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    scalable = top / "share" / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy(REPO / "resources" / "rill.svg", scalable / "rill.svg")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy(LINUX / script, top / script)
        (top / script).chmod(0o755)
    (top / "VERSION").write_text("9.9.9\n")
    return top


def _sh(args: list[str], home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_DATA_DIRS": "/usr/local/share:/usr/share",
    }
    return subprocess.run(
        args, cwd=cwd or home, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _installed(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.is_dir())


@posix_only
def test_install_into_a_fresh_home_and_uninstall(tmp_path: Path) -> None:
    top = _fake_tarball(tmp_path / "unpacked")
    home = tmp_path / "home"
    home.mkdir()
    result = _sh([str(top / "install.sh")], home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Rill 9.9.9 is installed in" in result.stdout

    local = home / ".local"
    appdir = local / "share" / "rill"
    assert (appdir / "rill").is_file() and (appdir / "q").is_file()
    assert (appdir / "_internal" / "data.txt").read_text() == "bundle"
    assert (appdir / "uninstall.sh").is_file()
    for name in ("rill", "q"):
        link = local / "bin" / name
        assert link.is_symlink() and link.resolve() == (appdir / name).resolve()
        ran = _sh([str(link), "--self-test"], home)
        assert ran.stdout.strip() == f"{name} ran with --self-test"

    desktop = local / "share" / "applications" / "rill.desktop"
    entry = _desktop_entry(desktop)
    assert entry["Exec"] == str(appdir / "rill")
    assert entry["TryExec"] == str(appdir / "rill")
    assert entry["Icon"] == "rill"
    assert entry["StartupWMClass"] == "rill"
    _validate(desktop)
    hicolor = local / "share" / "icons" / "hicolor"
    for size in (48, 128, 256):
        assert (hicolor / f"{size}x{size}" / "apps" / "rill.png").is_file()
    assert (hicolor / "scalable" / "apps" / "rill.svg").is_file()

    # installing again (an upgrade) replaces the program and keeps one entry of each
    again = _sh([str(top / "install.sh")], home)
    assert again.returncode == 0, again.stderr
    assert (appdir / "rill").is_file()
    assert not list((local / "share").glob("rill.new.*"))

    removed = _sh([str(appdir / "uninstall.sh")], home)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Rill is removed" in removed.stdout
    left = _installed(home)
    assert not [p for p in left if "rill" in p.lower()], left


@posix_only
def test_install_under_a_prefix_with_a_space(tmp_path: Path) -> None:
    top = _fake_tarball(tmp_path / "unpacked")
    home = tmp_path / "home"
    home.mkdir()
    prefix = tmp_path / "my apps"
    result = _sh([str(top / "install.sh"), "--prefix", str(prefix)], home)
    assert result.returncode == 0, result.stdout + result.stderr
    desktop = prefix / "share" / "applications" / "rill.desktop"
    assert _desktop_entry(desktop)["Exec"] == f'"{prefix}/share/rill/rill"'
    _validate(desktop)
    assert "is not one of the folders desktops read menu entries from" in result.stdout
    assert not (home / ".local").exists()
    removed = _sh([str(top / "uninstall.sh"), "--prefix", str(prefix)], home)
    assert removed.returncode == 0, removed.stderr
    assert not (prefix / "share" / "rill").exists()
    assert not desktop.exists()
    assert not (prefix / "bin" / "rill").exists()


@posix_only
def test_install_leaves_other_programs_alone(tmp_path: Path) -> None:
    top = _fake_tarball(tmp_path / "unpacked")
    home = tmp_path / "home"
    bindir = home / ".local" / "bin"
    bindir.mkdir(parents=True)
    other_q = bindir / "q"
    other_q.write_text("#!/bin/sh\necho another q\n")
    result = _sh([str(top / "install.sh")], home)
    assert result.returncode == 0, result.stderr
    assert f"{other_q} exists and is not a link; it is left alone" in result.stderr
    assert other_q.read_text() == "#!/bin/sh\necho another q\n"
    assert (bindir / "rill").is_symlink()
    removed = _sh([str(home / ".local" / "share" / "rill" / "uninstall.sh")], home)
    assert removed.returncode == 0, removed.stderr
    assert other_q.read_text() == "#!/bin/sh\necho another q\n"
    assert not (bindir / "rill").exists()


@posix_only
def test_install_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    top = _fake_tarball(tmp_path / "unpacked")
    home = tmp_path / "home"
    foreign = home / ".local" / "share" / "rill"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    result = _sh([str(top / "install.sh")], home)
    assert result.returncode == 1
    assert "was not made by this installer" in result.stderr
    assert (foreign / "notes.txt").read_text() == "mine"
    removed = _sh([str(top / "uninstall.sh")], home)
    assert removed.returncode == 1
    assert (foreign / "notes.txt").read_text() == "mine"
