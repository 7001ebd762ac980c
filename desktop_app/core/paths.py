"""Where Rill keeps things: platformdirs folders, or all of them under ``RILL_HOME``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP = "Rill"


@dataclass(frozen=True, slots=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def history_db(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def response_cache_dir(self) -> Path:
        return self.data_dir / "response-cache"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "rill.log"

    def ensure(self) -> AppPaths:
        for folder in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


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
