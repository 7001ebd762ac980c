"""Before Qt starts: can its platform plugin load on this machine?

Qt loads its platform plugin (``xcb`` for X11, ``wayland``, ...) when the application
object is created. When a system library the plugin needs is missing, Qt prints a guess
("xcb-cursor0 or libxcb-cursor0 is needed") and aborts the process. This module answers
the question first, without loading any Qt library: it reads the plugin's ELF dynamic
section (``DT_NEEDED``, ``DT_RUNPATH``/``DT_RPATH``), looks for each library the way the
dynamic loader does (``LD_LIBRARY_PATH``, the run path with ``$ORIGIN``, the folders of
``/etc/ld.so.conf`` and the default ones), follows the libraries it finds, and asks the
loader itself (``dlopen``) about any it could not find, so a library is reported missing
only when the loader cannot load it either.

:func:`startup_problem` is what ``rill`` runs before creating the application: it returns
one paragraph naming the missing libraries and the command that installs them on this
distribution, or None. :func:`plugin_problem` is what ``rill --self-test`` runs for the
real platform while the rest of the test runs offscreen. On macOS and Windows there is
nothing to check (Qt's plugins there need only the system's own libraries).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

__all__ = [
    "DEBIAN_PACKAGES",
    "ElfInfo",
    "PluginProblem",
    "default_platforms",
    "find_plugin",
    "install_command",
    "missing_libraries",
    "plugin_problem",
    "read_elf",
    "requested_platforms",
    "startup_problem",
]

DEBIAN_PACKAGES: Final[dict[str, str]] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libexpat.so.1": "libexpat1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libpng16.so.16": "libpng16-16",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
"""The Debian/Ubuntu package that holds each system library Qt's plugins load."""

HEADLESS_PLATFORMS: Final = frozenset({"offscreen", "minimal", "vnc"})
"""Platforms that need no display (and that ``rill --self-test`` does not count as real)."""

MAX_LIBRARIES: Final = 500
"""The most libraries one check follows (a plugin's closure holds about 60)."""
MAX_DYNAMIC_ENTRIES: Final = 4096
MAX_PROGRAM_HEADERS: Final = 256

_ELF_MAGIC: Final = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29


class ElfError(ValueError):
    """The file is not an ELF shared object this module can read."""


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """What the dynamic loader reads from one ELF file to load its libraries."""

    path: Path
    elf_class: int
    """1 for 32-bit, 2 for 64-bit."""
    machine: int
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A Qt platform plugin that cannot load here, and why."""

    platform: str
    plugin: Path | None
    missing: tuple[str, ...] = ()
    """Sonames of libraries the plugin needs that cannot be loaded."""
    reason: str = ""
    """Set when the problem is not missing libraries (no plugin file, no display)."""
    elf_class: int = 2

    def sentence(self, os_release: Mapping[str, str] | None = None) -> str:
        """What is wrong and what to do about it, for a person."""
        if self.reason:
            return self.reason
        libraries = ", ".join(self.missing)
        text = (
            f"Qt's {self.platform!r} platform plugin cannot load because "
            f"{'this library is' if len(self.missing) == 1 else 'these libraries are'} "
            f"missing: {libraries}."
        )
        command = install_command(self.missing, os_release, elf_class=self.elf_class)
        if command:
            return (
                f"{text}\nInstall {'it' if len(self.missing) == 1 else 'them'} with:\n  {command}"
            )
        return f"{text}\nInstall the packages of your distribution that provide them."


# -- reading ELF files -----------------------------------------------------------------------


def read_elf(path: Path) -> ElfInfo:
    """Read ``path``'s ELF header and dynamic section; raise ElfError when it has none."""
    with open(path, "rb") as f:
        try:
            return _read_elf(f, path)
        except struct.error:
            raise ElfError(f"{path} is cut short") from None


def _read_elf(f: BinaryIO, path: Path) -> ElfInfo:
    ident = f.read(16)
    if (
        len(ident) < 16
        or ident[:4] != _ELF_MAGIC
        or ident[4] not in (1, 2)
        or ident[5] not in (1, 2)
    ):
        raise ElfError(f"{path} is not an ELF file")
    elf_class, end = ident[4], "<" if ident[5] == 1 else ">"
    wide = elf_class == 2
    header = f.read(48 if wide else 36)
    if wide:
        _type, machine, _v, _entry, phoff, _sh, _fl, _eh, phentsize, phnum = struct.unpack(
            end + "HHIQQQIHHH", header[:42]
        )
    else:
        _type, machine, _v, _entry, phoff, _sh, _fl, _eh, phentsize, phnum = struct.unpack(
            end + "HHIIIIIHHH", header[:30]
        )
    if phnum > MAX_PROGRAM_HEADERS or phentsize < (56 if wide else 32):
        raise ElfError(f"{path} has an unreadable program header table")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        raw = f.read(56 if wide else 32)
        if len(raw) < (56 if wide else 32):
            raise ElfError(f"{path} is cut short")
        if wide:
            p_type, _flags, offset, vaddr, _pa, filesz, _memsz, _align = struct.unpack(
                end + "IIQQQQQQ", raw
            )
        else:
            p_type, offset, vaddr, _pa, filesz, _memsz, _flags, _align = struct.unpack(
                end + "IIIIIIII", raw
            )
        if p_type == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return ElfInfo(path=path, elf_class=elf_class, machine=machine)

    entry = struct.Struct(end + ("qQ" if wide else "iI"))
    f.seek(dynamic[0])
    raw = f.read(min(dynamic[1], MAX_DYNAMIC_ENTRIES * entry.size))
    tags: list[tuple[int, int]] = []
    for tag, value in entry.iter_unpack(raw[: len(raw) - len(raw) % entry.size]):
        if tag == _DT_NULL:
            break
        tags.append((tag, value))
    strtab = next((v for t, v in tags if t == _DT_STRTAB), None)
    strsz = next((v for t, v in tags if t == _DT_STRSZ), 0)
    if strtab is None:
        return ElfInfo(path=path, elf_class=elf_class, machine=machine)
    offset = _file_offset(loads, strtab)
    if offset is None:
        raise ElfError(f"{path}: the dynamic string table is outside the file")
    f.seek(offset)
    strings = f.read(min(strsz, 1 << 22))

    def text(at: int) -> str:
        stop = strings.find(b"\0", at)
        return strings[at : stop if stop >= 0 else len(strings)].decode("utf-8", "replace")

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in tags if t == tag for p in text(v).split(":") if p)

    return ElfInfo(
        path=path,
        elf_class=elf_class,
        machine=machine,
        needed=tuple(text(v) for t, v in tags if t == _DT_NEEDED),
        rpath=paths(_DT_RPATH),
        runpath=paths(_DT_RUNPATH),
    )


def _file_offset(loads: Sequence[tuple[int, int, int]], address: int) -> int | None:
    for vaddr, offset, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    return None


# -- finding libraries as the dynamic loader does --------------------------------------------


def _ld_so_conf_dirs(conf: Path = Path("/etc/ld.so.conf"), depth: int = 0) -> list[str]:
    """The folders ``/etc/ld.so.conf`` (and the files it includes) list."""
    if depth > 8:
        return []
    try:
        lines = conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    dirs: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            pattern = line[len("include") :].strip()
            if not os.path.isabs(pattern):
                pattern = str(conf.parent / pattern)
            for included in sorted(glob.glob(pattern)):
                dirs += _ld_so_conf_dirs(Path(included), depth + 1)
        elif not line.startswith("hwcap"):
            dirs.append(line)
    return dirs


def _system_dirs(elf_class: int) -> list[str]:
    defaults = ["/lib64", "/usr/lib64"] if elf_class == 2 else []
    return [*_ld_so_conf_dirs(), *defaults, "/lib", "/usr/lib"]


def _expand(entry: str, origin: Path) -> str:
    for token in ("${ORIGIN}", "$ORIGIN"):
        entry = entry.replace(token, str(origin))
    return entry


def _matches(candidate: Path, elf_class: int, machine: int) -> ElfInfo | None:
    try:
        info = read_elf(candidate)
    except (OSError, ElfError):
        return None
    return info if info.elf_class == elf_class and info.machine == machine else None


def _loader_can_open(soname: str) -> bool:
    """Whether the dynamic loader itself can load ``soname`` (by its own search rules)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    system_dirs: Sequence[str] | None = None,
    ask_loader: bool = True,
) -> tuple[str, ...]:
    """The sonames ``path`` needs (directly or through its libraries) that cannot be loaded.

    ``system_dirs`` replaces the folders of ``/etc/ld.so.conf`` and the default ones;
    ``ask_loader`` False skips asking ``dlopen`` about a library not found in any folder.
    Raises ElfError (or OSError) when ``path`` itself cannot be read.
    """
    env = os.environ if environ is None else environ
    root = read_elf(path)
    library_path = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:  # a frozen build keeps the libraries it carries in its own folder
        library_path.append(str(bundle))
    system = list(system_dirs) if system_dirs is not None else _system_dirs(root.elf_class)
    found: dict[str, ElfInfo | None] = {}
    missing: list[str] = []
    queue: list[ElfInfo] = [root]
    while queue and len(found) < MAX_LIBRARIES:
        obj = queue.pop(0)
        origin = obj.path.parent
        search = [
            *([] if obj.runpath else [_expand(p, origin) for p in obj.rpath]),
            *library_path,
            *[_expand(p, origin) for p in obj.runpath],
            *system,
        ]
        for soname in obj.needed:
            if soname in found or soname in missing:
                continue
            info: ElfInfo | None = None
            if "/" in soname:
                info = _matches(Path(_expand(soname, origin)), root.elf_class, root.machine)
            else:
                for folder in search:
                    info = _matches(Path(folder) / soname, root.elf_class, root.machine)
                    if info is not None:
                        break
            if info is None and ask_loader and _loader_can_open(soname):
                found[soname] = None  # the loader knows where it is; its needs are met too
                continue
            if info is None:
                missing.append(soname)
                continue
            found[soname] = info
            queue.append(info)
    return tuple(missing)


# -- Qt's platform plugins -------------------------------------------------------------------


def _plugin_roots(environ: Mapping[str, str]) -> list[Path]:
    roots = [Path(p) for p in environ.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.append(Path(bundle) / "PySide6" / "Qt" / "plugins")
    spec = importlib.util.find_spec("PySide6")
    for location in (spec.submodule_search_locations or []) if spec else []:
        roots += [Path(location) / "Qt" / "plugins", Path(location) / "plugins"]
    return roots


def find_plugin(
    platform: str, *, roots: Sequence[Path] | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The file of Qt's platform plugin ``platform`` (e.g. ``libqxcb.so``), or None."""
    env = os.environ if environ is None else environ
    for root in roots if roots is not None else _plugin_roots(env):
        candidate = root / "platforms" / f"libq{platform}.so"
        if candidate.is_file():
            return candidate
    if roots is None:  # an unusual layout: ask Qt (its core library loads no plugin)
        try:
            from PySide6.QtCore import QLibraryInfo

            root = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
        except ImportError:
            return None
        candidate = root / "platforms" / f"libq{platform}.so"
        if candidate.is_file():
            return candidate
    return None


def default_platforms(environ: Mapping[str, str] | None = None) -> list[str]:
    """The platforms Qt tries on this Linux session when none is asked for."""
    env = os.environ if environ is None else environ
    if env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or (
        env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")
    ):
        return ["wayland", "xcb"]
    return ["xcb"]


def requested_platforms(
    qt_args: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """The platforms Qt will try, in order: ``-platform``, ``QT_QPA_PLATFORM``, the default."""
    env = os.environ if environ is None else environ
    value = ""
    for i, arg in enumerate(qt_args):
        if arg in ("-platform", "--platform") and i + 1 < len(qt_args):
            value = qt_args[i + 1]
        elif arg.startswith(("-platform=", "--platform=")):
            value = arg.split("=", 1)[1]
    value = value or env.get("QT_QPA_PLATFORM", "")
    names = [n.split(":", 1)[0].strip() for n in value.split(";")]
    names = [n for n in names if n]
    return names or default_platforms(env)


def plugin_problem(
    platform: str,
    *,
    roots: Sequence[Path] | None = None,
    environ: Mapping[str, str] | None = None,
    system_dirs: Sequence[str] | None = None,
) -> PluginProblem | None:
    """Why Qt's ``platform`` plugin cannot load here (its file or its libraries), or None."""
    if not sys.platform.startswith("linux"):
        return None
    plugin = find_plugin(platform, roots=roots, environ=environ)
    if plugin is None:
        return PluginProblem(
            platform, None, reason=f"Qt has no {platform!r} platform plugin in this installation."
        )
    try:
        missing = missing_libraries(plugin, environ=environ, system_dirs=system_dirs)
        elf_class = read_elf(plugin).elf_class
    except (OSError, ElfError) as exc:
        return PluginProblem(platform, plugin, reason=f"Qt's {platform!r} plugin: {exc}")
    if not missing:
        return None
    return PluginProblem(platform, plugin, missing=missing, elf_class=elf_class)


def startup_problem(
    qt_args: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    roots: Sequence[Path] | None = None,
    system_dirs: Sequence[str] | None = None,
    os_release: Mapping[str, str] | None = None,
) -> str | None:
    """Why the window cannot start here, in words with the command to fix it, or None.

    Qt tries the platforms in order and uses the first that loads; when one of them can
    load, there is nothing to say. Otherwise the answer is about the last one tried,
    which is the one Qt's abort would have been about.
    """
    if not sys.platform.startswith("linux"):
        return None
    env = os.environ if environ is None else environ
    problems: list[PluginProblem] = []
    for platform in requested_platforms(qt_args, env):
        problem = plugin_problem(platform, roots=roots, environ=env, system_dirs=system_dirs)
        if problem is None and platform == "xcb" and not env.get("DISPLAY"):
            problem = PluginProblem(
                platform,
                None,
                reason="There is no X display to show the window on (DISPLAY is not set). "
                "Start Rill from a desktop session, or check this installation with "
                "`rill --self-test`.",
            )
        if problem is None:
            return None
        problems.append(problem)
    if not problems:
        return None
    release = read_os_release() if os_release is None else os_release
    return problems[-1].sentence(release)


# -- the command that installs what is missing -----------------------------------------------


def read_os_release(
    paths: Iterable[Path] = (Path("/etc/os-release"), Path("/usr/lib/os-release")),
) -> dict[str, str]:
    """The fields of ``os-release`` (``ID``, ``ID_LIKE``, ...), or nothing when it is absent."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().isidentifier():
                fields[key.strip()] = value.strip().strip("\"'")
        return fields
    return {}


def _family(os_release: Mapping[str, str]) -> str:
    ids = {os_release.get("ID", "").lower(), *os_release.get("ID_LIKE", "").lower().split()}
    if ids & {"debian", "ubuntu"}:
        return "debian"
    if ids & {"fedora", "rhel", "centos"}:
        return "fedora"
    if ids & {"suse", "opensuse"} or any(i.startswith("opensuse") for i in ids):
        return "suse"
    return ""


def install_command(
    missing: Sequence[str], os_release: Mapping[str, str] | None = None, *, elf_class: int = 2
) -> str | None:
    """The command that installs the libraries ``missing`` on this distribution, or None.

    Debian and Ubuntu get package names; Fedora, RHEL and openSUSE get the libraries'
    own names as RPM capabilities (``'libxcb-icccm.so.4()(64bit)'``), which their
    package managers resolve to whichever package holds each library.
    """
    release = read_os_release() if os_release is None else os_release
    family = _family(release)
    if family == "debian":
        packages = [DEBIAN_PACKAGES.get(soname) for soname in missing]
        if None in packages:
            return None
        return " ".join(["sudo apt-get install", *dict.fromkeys(p for p in packages if p)])
    if family in ("fedora", "suse"):
        suffix = "()(64bit)" if elf_class == 2 else ""
        tool = "sudo dnf install" if family == "fedora" else "sudo zypper install"
        return " ".join([tool, *(f"'{soname}{suffix}'" for soname in missing)])
    return None
