"""Where Rill keeps things: platformdirs folders, or all of them under ``RILL_HOME``.

Rill's files are private to the user: :meth:`AppPaths.ensure` creates the folders 0700,
takes group and other access away from folders and files already there, and sets the
process umask to 077, so every file Rill (or SQLite, diskcache and logging on its behalf)
creates afterwards is 0600, the SQLite ``-wal`` and ``-shm`` files included.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import platformdirs

APP = "Rill"
PRIVATE_UMASK: Final = 0o077
FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600


@dataclass(frozen=True, slots=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    problems: tuple[str, ...] = field(default=(), compare=False)
    """Sentences about folders :meth:`ensure` could not create (permission, a file in the
    way); whatever lives in such a folder reports its own problem when it is used."""

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def attachments_dir(self) -> Path:
        """Attached files, stored once each and named by their SHA-256."""
        return self.data_dir / "attachments"

    @property
    def response_cache_dir(self) -> Path:
        return self.data_dir / "response-cache"

    @property
    def route_cache_dir(self) -> Path:
        return self.cache_dir / "route-cache"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "rill.log"

    def ensure(self) -> AppPaths:
        """Create the folders, private to the user; return these paths with any problems.

        Never raises: a folder that cannot be created is described in ``problems``.
        """
        if os.name == "posix":
            os.umask(PRIVATE_UMASK)
        problems: list[str] = []
        folders = {
            "config": self.config_dir,
            "data": self.data_dir,
            "cache": self.cache_dir,
            "log": self.log_dir,
        }
        for label, folder in folders.items():
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
            except FileExistsError:
                problems.append(
                    f"Rill cannot use its {label} folder {folder}: a file is in the way."
                )
                continue
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                problems.append(f"Rill cannot create its {label} folder {folder} ({reason}).")
                continue
            if os.name == "posix" and _shared(folder):
                make_private(folder)
        return replace(self, problems=tuple(problems))


def _shared(folder: Path) -> bool:
    """Whether ``folder`` still gives group or other any access.

    A folder that is private already was made so by Rill, whose files since are private
    too: only an older layout needs the walk over every file (a response cache can hold
    thousands), and only once.
    """
    try:
        return bool(stat.S_IMODE(folder.stat().st_mode) & PRIVATE_UMASK)
    except OSError:
        return False


def make_private(top: Path) -> None:
    """Take group and other access away from ``top`` and everything in it (POSIX).

    Files and folders this process cannot change (another owner) are left alone.
    """
    for folder, _dirs, files in os.walk(top):
        _tighten(folder, FOLDER_MODE)
        for name in files:
            _tighten(os.path.join(folder, name), FILE_MODE)


def _tighten(path: str, mode: int) -> None:
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & PRIVATE_UMASK:
            return
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
    except OSError:
        pass


def app_paths(home: str | os.PathLike[str] | None = None) -> AppPaths:
    """The folders for this process: ``home`` or ``$RILL_HOME`` when given, else platformdirs."""
    root = home if home is not None else os.environ.get("RILL_HOME") or None
    if root:
        base = Path(root).expanduser().resolve()
        return AppPaths(base / "config", base / "data", base / "cache", base / "logs")
    return AppPaths(
        Path(platformdirs.user_config_dir(APP, appauthor=False)),
        Path(platformdirs.user_data_dir(APP, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP, appauthor=False)),
        Path(platformdirs.user_log_dir(APP, appauthor=False)),
    )
