"""Qt's platform plugin is checked before Qt starts: missing libraries are named, with the fix.

The plugins here are tiny ELF files written by the test, whose ``DT_NEEDED`` names a
library that exists nowhere, plus Qt's real platform plugins compared with ``ldd``.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from desktop_app import platform_check, selftest
from desktop_app.platform_check import (
    DEBIAN_PACKAGES,
    find_plugin,
    install_command,
    missing_libraries,
    plugin_problem,
    read_elf,
    requested_platforms,
    startup_problem,
)

REPO = Path(__file__).resolve().parents[2]
ABSENT = "librill-test-absent.so.3"
DEBIAN = {"ID": "debian"}

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Qt's platform plugins load ELF libraries"
)


def _host_machine() -> int:
    return read_elf(Path(os.path.realpath(sys.executable))).machine


def write_elf(path: Path, needed: Sequence[str], runpath: Sequence[str] = ()) -> Path:
    """A minimal 64-bit ELF shared object with a dynamic section naming ``needed``."""
    strings = b"\0"
    offsets = []
    for name in [*needed, ":".join(runpath)]:
        offsets.append(len(strings))
        strings += name.encode() + b"\0"
    phoff, phnum = 64, 2
    str_at = phoff + phnum * 56
    dyn_at = (str_at + len(strings) + 7) // 8 * 8
    dyn = [(1, off) for off in offsets[: len(needed)]]  # DT_NEEDED
    if runpath:
        dyn.append((29, offsets[-1]))  # DT_RUNPATH
    dyn += [(5, str_at), (10, len(strings)), (0, 0)]  # DT_STRTAB, DT_STRSZ, DT_NULL
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in dyn)
    size = dyn_at + len(dynamic)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack(
        "<HHIQQQIHHHHHH", 3, _host_machine(), 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0
    )
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)
    dyn_ph = struct.pack("<IIQQQQQQ", 2, 6, dyn_at, dyn_at, dyn_at, len(dynamic), len(dynamic), 8)
    body = header + load + dyn_ph + strings
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body + bytes(dyn_at - len(body)) + dynamic)
    return path


def plugins_with_xcb(tmp_path: Path, needed: Sequence[str]) -> Path:
    """A Qt plugin folder whose ``platforms/libqxcb.so`` needs ``needed``."""
    root = tmp_path / "plugins"
    write_elf(root / "platforms" / "libqxcb.so", needed)
    return root


def test_reads_the_libraries_an_elf_file_needs(tmp_path: Path) -> None:
    path = write_elf(tmp_path / "lib.so", ["libc.so.6", ABSENT], runpath=["$ORIGIN/../lib"])
    info = read_elf(path)
    assert info.needed == ("libc.so.6", ABSENT)
    assert info.runpath == ("$ORIGIN/../lib",)
    assert info.elf_class == 2


def test_a_cut_short_library_is_not_a_crash(tmp_path: Path) -> None:
    whole = write_elf(tmp_path / "whole.so", ["libc.so.6"]).read_bytes()
    plugin = write_elf(tmp_path / "libq.so", ["libdep.so.1"], runpath=["$ORIGIN/lib"])
    (tmp_path / "lib").mkdir()
    for size in (3, 20, 40, 70, 150):
        (tmp_path / "lib" / "libdep.so.1").write_bytes(whole[:size])
        with pytest.raises(platform_check.ElfError):
            read_elf(tmp_path / "lib" / "libdep.so.1")
        assert missing_libraries(plugin) == ("libdep.so.1",)
    (tmp_path / "lib" / "libdep.so.1").write_bytes(whole[:-9])  # the end of its table is lost
    assert read_elf(tmp_path / "lib" / "libdep.so.1").needed == ("libc.so.6",)
    assert missing_libraries(plugin) == ()


def test_a_library_that_exists_nowhere_is_missing_and_libc_is_not(tmp_path: Path) -> None:
    path = write_elf(tmp_path / "lib.so", ["libc.so.6", ABSENT])
    assert missing_libraries(path) == (ABSENT,)


def test_libraries_are_followed_through_the_run_path(tmp_path: Path) -> None:
    """The plugin finds its own library by ``$ORIGIN``; that library's missing need counts."""
    plugin = write_elf(
        tmp_path / "plugins" / "libq.so", ["libdep.so.1"], runpath=["$ORIGIN/../lib"]
    )
    write_elf(tmp_path / "lib" / "libdep.so.1", ["libc.so.6", ABSENT])
    assert missing_libraries(plugin) == (ABSENT,)
    (tmp_path / "lib" / "libdep.so.1").unlink()
    assert missing_libraries(plugin) == ("libdep.so.1",)


def test_ld_library_path_is_searched(tmp_path: Path) -> None:
    plugin = write_elf(tmp_path / "plugins" / "libq.so", ["libdep.so.1"])
    write_elf(tmp_path / "elsewhere" / "libdep.so.1", ["libc.so.6"])
    assert missing_libraries(plugin, environ={}) == ("libdep.so.1",)
    environ = {"LD_LIBRARY_PATH": str(tmp_path / "elsewhere")}
    assert missing_libraries(plugin, environ=environ) == ()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_a_plugin_built_by_the_linker_names_its_missing_library(tmp_path: Path) -> None:
    """A real shared object linked against a library that was then removed."""
    (tmp_path / "dep.c").write_text("int rill_dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int rill_dep(void);\nint f(void) { return rill_dep(); }\n")
    cc = ["cc", "-shared", "-fPIC"]
    subprocess.run(
        [*cc, "-Wl,-soname,librill-linked-dep.so.2", "-o", "librill-linked-dep.so.2", "dep.c"],
        cwd=tmp_path,
        check=True,
    )
    subprocess.run(
        [*cc, "-o", "libqxcb.so", "plugin.c", "./librill-linked-dep.so.2", "-Wl,-rpath,$ORIGIN"],
        cwd=tmp_path,
        check=True,
    )
    assert missing_libraries(tmp_path / "libqxcb.so") == ()
    (tmp_path / "librill-linked-dep.so.2").unlink()
    assert missing_libraries(tmp_path / "libqxcb.so") == ("librill-linked-dep.so.2",)


def _ldd_missing(path: Path) -> set[str]:
    result = subprocess.run(
        ["ldd", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    return set(re.findall(r"^\s*(\S+) => not found", result.stdout, re.MULTILINE))


@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd to compare with")
def test_qt_platform_plugins_miss_exactly_what_ldd_says() -> None:
    """On a machine without libxcb-icccm4 and libxcb-keysyms1, xcb misses those two."""
    xcb = find_plugin("xcb")
    assert xcb is not None
    plugins = sorted(xcb.parent.glob("libq*.so"))
    assert len(plugins) > 3
    for plugin in plugins:
        assert set(missing_libraries(plugin)) == _ldd_missing(plugin), plugin.name
    absent = sorted(_ldd_missing(xcb))
    problem = plugin_problem("xcb")
    if not absent:
        assert problem is None
        return
    assert problem is not None and sorted(problem.missing) == absent
    text = problem.sentence(DEBIAN)
    assert all(name in text for name in absent)
    packages = sorted({DEBIAN_PACKAGES[name] for name in absent})
    assert f"sudo apt-get install {' '.join(packages)}" in text


def test_startup_names_the_missing_library_and_the_command(tmp_path: Path) -> None:
    roots = [plugins_with_xcb(tmp_path, ["libc.so.6", "libxcb-icccm.so.4"])]
    environ = {"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}
    text = startup_problem((), environ=environ, roots=roots, system_dirs=[], os_release=DEBIAN)
    # libxcb-icccm may be installed here: then the loader finds it, and all is well
    if platform_check._loader_can_open("libxcb-icccm.so.4"):
        assert text is None
        return
    assert text is not None
    assert "libxcb-icccm.so.4" in text
    assert "sudo apt-get install libxcb-icccm4" in text


def test_a_platform_that_loads_is_enough(tmp_path: Path) -> None:
    """Qt tries ``wayland;xcb`` in order: a wayland plugin that loads leaves xcb unasked."""
    root = plugins_with_xcb(tmp_path, [ABSENT])
    write_elf(root / "platforms" / "libqwayland.so", ["libc.so.6"])
    environ = {"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}
    assert startup_problem((), environ=environ, roots=[root], os_release=DEBIAN) is None
    environ["QT_QPA_PLATFORM"] = "xcb"
    text = startup_problem((), environ=environ, roots=[root], os_release=DEBIAN)
    assert text is not None and ABSENT in text
    assert "Install the packages of your distribution that provide them" in text


def test_no_display_is_said_in_words(tmp_path: Path) -> None:
    root = plugins_with_xcb(tmp_path, ["libc.so.6"])
    assert startup_problem((), environ={"DISPLAY": ":0"}, roots=[root]) is None
    text = startup_problem((), environ={}, roots=[root])
    assert text is not None and "DISPLAY is not set" in text


def test_the_platforms_qt_will_try() -> None:
    assert requested_platforms((), {}) == ["xcb"]
    assert requested_platforms((), {"XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    assert requested_platforms((), {"QT_QPA_PLATFORM": "offscreen"}) == ["offscreen"]
    assert requested_platforms((), {"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert requested_platforms(["-platform", "vnc:size=800x600"], {}) == ["vnc"]
    assert requested_platforms(["-platform=minimal"], {"QT_QPA_PLATFORM": "xcb"}) == ["minimal"]


def test_the_install_command_fits_the_distribution() -> None:
    missing = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    apt = "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    assert install_command(missing, {"ID": "debian"}) == apt
    assert install_command(missing, {"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}) == apt
    assert install_command(missing, {"ID": "fedora"}) == (
        "sudo dnf install 'libxcb-icccm.so.4()(64bit)' 'libxcb-keysyms.so.1()(64bit)'"
    )
    assert install_command(missing, {"ID": "opensuse-tumbleweed"}) == (
        "sudo zypper install 'libxcb-icccm.so.4()(64bit)' 'libxcb-keysyms.so.1()(64bit)'"
    )
    assert install_command(missing, {"ID": "arch"}) is None
    assert install_command([ABSENT], {"ID": "debian"}) is None


def _rill(tmp_path: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(RILL_HOME=str(tmp_path / "home"), **environ)
    env.pop("XDG_SESSION_TYPE", None)
    return subprocess.run(
        [sys.executable, "-m", "desktop_app"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rill_says_what_is_missing_and_exits_1_instead_of_aborting(tmp_path: Path) -> None:
    root = plugins_with_xcb(tmp_path, ["libc.so.6", ABSENT])
    result = _rill(
        tmp_path, {"QT_PLUGIN_PATH": str(root), "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"}
    )
    assert result.returncode == 1, result.stderr
    assert f"missing: {ABSENT}" in result.stderr
    assert "Aborted" not in result.stderr and "core dumped" not in result.stderr


def test_rill_without_a_display_says_so(tmp_path: Path) -> None:
    root = plugins_with_xcb(tmp_path, ["libc.so.6"])
    result = _rill(tmp_path, {"QT_PLUGIN_PATH": str(root), "QT_QPA_PLATFORM": "xcb"})
    assert result.returncode == 1, result.stderr
    assert "DISPLAY is not set" in result.stderr


def test_self_test_checks_the_real_platform_even_when_offscreen(tmp_path: Path) -> None:
    root = plugins_with_xcb(tmp_path, ["libc.so.6", ABSENT])
    environ = {"QT_PLUGIN_PATH": str(root), "QT_QPA_PLATFORM": "offscreen"}
    with pytest.raises(selftest.CheckFailed, match=re.escape(ABSENT)):
        selftest.check_platform(environ)
    write_elf(root / "platforms" / "libqxcb.so", ["libc.so.6"])
    assert "xcb plugin finds all its libraries" in selftest.check_platform(environ)


def _package_list() -> list[str]:
    text = (REPO / "packaging" / "linux" / "system-packages.txt").read_text(encoding="utf-8")
    return [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]


def test_the_readme_and_ci_install_the_same_list_and_it_covers_qt() -> None:
    packages = _package_list()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = re.search(r"^sudo apt-get install ((?:.*\\\n)*.*)$", readme, re.MULTILINE)
    assert line is not None
    assert line.group(1).replace("\\", " ").split() == packages
    assert "install-system-deps.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    xcb = find_plugin("xcb")
    assert xcb is not None
    qt_lib = xcb.parents[2] / "lib"
    for path in [xcb, *(qt_lib / f"libQt6{n}.so.6" for n in ("XcbQpa", "Gui", "Widgets"))]:
        for soname in read_elf(path).needed:
            package = DEBIAN_PACKAGES.get(soname)
            if package and package not in ("zlib1g", "libzstd1"):  # in every Debian system
                assert package in packages, (path.name, soname)
