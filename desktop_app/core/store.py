"""One SQLite file Rill keeps (history, ledger): opened safely, migrated, recovered.

A :class:`SqliteStore` opens its file in WAL mode with ``synchronous=FULL`` and a busy
timeout, so the window and the ``q`` command can write at the same time and a committed
write survives a crash or power loss. Every method is synchronous and thread-safe: one
connection, guarded by a lock.

A file that is not SQLite, fails ``PRAGMA quick_check``, or has a schema newer than the
code knows is moved aside as ``<name>.corrupt-YYYYmmdd-HHMMSS`` (with its ``-wal`` and
``-shm`` files) and a fresh one is created; :attr:`SqliteStore.recovered_from` names the
old file.

SQLite's check reads the whole file (about 200 ms for a history of 100,000 messages), so
the window opens its stores with ``check_on_open=False`` and runs :meth:`SqliteStore.verify`
off its UI thread once it is shown: the file is checked on a connection of its own, while
it is in use. Damage found then is reported, and leaves a marker (``<name>-check``) that
makes the next open check the file before using it, and move it aside if it is still
damaged. A busy or locked database, a full disk or a missing permission is never taken
for a broken file: those raise the store's error class, with a sentence naming the path,
and nothing is moved.

Text columns are read leniently: bytes that are not UTF-8 (a torn write, a bad sector)
come back as U+FFFD, so one damaged row is shown damaged instead of making its whole
conversation unreadable. Opening an up-to-date file writes nothing, so a full disk does
not stop Rill from reading what it has.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Final

from desktop_app.core.errors import RillError

BUSY_TIMEOUT_S: Final = 5.0
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# SQLite result codes that say "not now" or "not here" rather than "this file is broken":
# busy, locked, out of memory, read-only, interrupted, I/O error, disk full, permission.
# Cannot-open (14) joins them: a folder Rill may not write, or a file it may not read.
TRANSIENT_CODES: Final = frozenset({3, 5, 6, 7, 8, 9, 10, 13, 14, 23})
PERMISSION_CODES: Final = frozenset({3, 8, 14, 23})


def lenient_text(raw: bytes) -> str:
    """A stored text value as ``str``; bytes that are not UTF-8 become U+FFFD."""
    return raw.decode("utf-8", "replace")


class Unusable(Exception):
    """The file cannot be used as this store; ``str`` says why, as a sentence fragment."""


def _integrity_problem(conn: sqlite3.Connection) -> str | None:
    """What SQLite's quick integrity check finds in ``conn``'s file, as a sentence
    fragment (its first three findings), or None when the file is sound."""
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems == ["ok"]:
        return None
    return f"the integrity check failed: {'; '.join(problems[:3])}"


class SqliteStore:
    """Base of Rill's SQLite stores. Subclasses give the schema and how to name it."""

    schema_version_known: ClassVar[int]
    migrations: ClassVar[tuple[tuple[str, ...], ...]]
    """Each step takes the schema from version ``i`` to ``i + 1``; they run in one
    transaction."""
    noun: ClassVar[str]
    """What the user calls it: "conversation history", "usage ledger"."""
    file_noun: ClassVar[str]
    """The file: "history database", "usage ledger"."""
    error_class: ClassVar[type[RillError]]
    foreign_keys: ClassVar[bool] = False

    recovered_from: Path | None
    """Where the unusable previous file was moved to, when that happened on open."""
    recovered_reason: str | None
    """Why the previous file was unusable, as a sentence fragment."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        check_on_open: bool = True,
    ) -> None:
        """Open (or create) the file at ``path``.

        With ``check_on_open`` false, SQLite's integrity check is left to a later
        :meth:`verify`, unless a previous one found damage.
        """
        self.path = Path(path)
        self._check_on_open = check_on_open
        self.recovered_from = None
        self.recovered_reason = None
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            folder = self.path.parent
            why = "it is a file" if folder.is_file() else (exc.strerror or str(exc)).lower()
            raise self.error_class(
                f"Rill could not create the folder for its {self.noun} at {folder} ({why}).",
                action="Check that the folder is writable, or set RILL_HOME to another folder.",
                detail=str(exc),
            ) from exc
        try:
            conn = self._open()
        except Unusable as exc:
            denied = self._access_problem()
            if denied is not None:
                raise denied from exc
            self.recovered_reason = str(exc)
            self.recovered_from = self._move_aside()
            try:
                conn = self._open()
            except Unusable as again:
                raise self.error_class(
                    f"Rill could not create a new {self.file_noun} at {self.path}.",
                    action="Check that the folder is writable and the disk is not full.",
                    detail=str(again),
                ) from again
        self._conn = conn

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; further calls raise ``RuntimeError``. Closing twice is fine."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()

    @classmethod
    def upgrade_pending(cls, path: str | os.PathLike[str]) -> bool:
        """Whether opening the file at ``path`` brings an existing store up to this
        version's schema, which can take a while (a migration may rebuild an index).

        Reads the schema version from the file's header, without opening it in SQLite."""
        try:
            with Path(path).open("rb") as file:
                header = file.read(64)
        except OSError:
            return False
        if len(header) < 64 or not header.startswith(SQLITE_MAGIC):
            return False
        version = int.from_bytes(header[60:64], "big")
        return 0 < version < cls.schema_version_known

    @property
    def check_marker(self) -> Path:
        """The file whose presence makes the next open check the database first."""
        return Path(f"{self.path}-check")

    def verify(self) -> str | None:
        """Run SQLite's quick integrity check over the file; return what it found, as a
        sentence fragment, or None when the file is sound (or could not be read just now).

        Blocking, for a worker thread. It reads on a connection of its own, so reads and
        saves carry on meanwhile. When it finds damage it leaves :attr:`check_marker`, so the
        next open checks the file again and moves it aside if it is still damaged.
        """
        if self._conn is None:
            raise RuntimeError(f"the {self.noun} is closed")
        try:
            with contextlib.closing(
                sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=self._busy_timeout_s,
                    check_same_thread=False,
                )
            ) as conn:
                reason = _integrity_problem(conn)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF in TRANSIENT_CODES:
                return None  # busy, locked, an I/O error: says nothing about the contents
            reason = f"the integrity check failed: {exc}"
        if reason is not None:
            self._mark_for_check(reason)
        return reason

    def _mark_for_check(self, reason: str) -> None:
        """Leave :attr:`check_marker`, saying why, so the next open checks the file."""
        with contextlib.suppress(OSError):
            self.check_marker.write_text(reason[:2000] + "\n", encoding="utf-8")

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    # -- access --------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the {self.noun} is closed")
        return self._conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._database_error(exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed when the block ends normally."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._database_error(exc) from exc

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Connect, check and migrate; ``Unusable`` if the file itself is the problem."""
        self._check_header()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._classify(exc) from exc
        conn.text_factory = lenient_text
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            if self.foreign_keys:
                conn.execute("PRAGMA foreign_keys = ON")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > self.schema_version_known:
                raise Unusable(
                    f"it was written by a newer version of Rill (schema {version}, this "
                    f"version knows up to {self.schema_version_known})"
                )
            marked = self.check_marker.exists()
            if self._check_on_open or marked:
                problem = _integrity_problem(conn)
                if problem is not None:
                    raise Unusable(problem)
                if marked:
                    with contextlib.suppress(OSError):
                        self.check_marker.unlink()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            if version < self.schema_version_known:
                self._migrate(conn)
        except Unusable:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._classify(exc) from exc
        return conn

    def _check_header(self) -> None:
        """Reject a file that is not SQLite before SQLite touches its -wal and -shm files."""
        try:
            with self.path.open("rb") as file:
                header = file.read(len(SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except IsADirectoryError as exc:
            raise Unusable("it is a folder, not a file") from exc
        except PermissionError as exc:
            raise self._permission_error(exc) from exc
        except OSError as exc:
            # An I/O error says nothing about the contents: never move the file for it.
            raise self.error_class(
                f"Rill could not read its {self.file_noun} at {self.path} "
                f"({(exc.strerror or str(exc)).lower()}).",
                action="Check the disk, then start Rill again.",
                detail=str(exc),
            ) from exc
        if header and header != SQLITE_MAGIC:
            raise Unusable("it is not a SQLite database")

    def _classify(self, exc: sqlite3.Error) -> Exception:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in TRANSIENT_CODES:
            return self._database_error(exc)
        return Unusable(str(exc))

    def _access_problem(self) -> RillError | None:
        """A permission error when this process may not read and write the file and its
        folder (a file left by ``sudo q`` belongs to root); None when access is fine."""
        folder = self.path.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return self._permission_error(PermissionError(13, "Permission denied", str(folder)))
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):
                return self._permission_error(PermissionError(13, "Permission denied", str(path)))
        return None

    def _permission_error(self, exc: BaseException) -> RillError:
        return self.error_class(
            f"Rill is not allowed to read or write its {self.noun} at {self.path} "
            "(permission denied).",
            action="Check the owner and permissions of that file and its folder; a file "
            "created by `sudo q` belongs to root (sudo chown it back to yourself).",
            detail=str(exc),
        )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > self.schema_version_known:
                raise Unusable(f"it was written by a newer version of Rill (schema {version})")
            for step in range(version, self.schema_version_known):
                for statement in self.migrations[step]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
        try:
            if self.path.exists():
                os.replace(self.path, target)
            for suffix in ("-wal", "-shm", "-journal"):
                companion = Path(f"{self.path}{suffix}")
                if companion.exists():
                    os.replace(companion, Path(f"{target}{suffix}"))
            self.check_marker.unlink(missing_ok=True)
        except OSError as exc:
            raise self.error_class(
                f"The {self.file_noun} at {self.path} is unusable ({self.recovered_reason}) "
                "and Rill could not move it aside.",
                action="Move or delete the file yourself, then start Rill again.",
                detail=str(exc),
            ) from exc
        return target

    def _database_error(self, exc: sqlite3.Error) -> RillError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        if primary in (5, 6):
            return self.error_class(
                f"The {self.noun} is busy: another Rill window or `q` command is writing to it.",
                action="Try again in a moment.",
                detail=str(exc),
            )
        if primary == 13:
            return self.error_class(
                f"The disk is full, so Rill could not save the {self.noun}.",
                action="Free some disk space and try again.",
                detail=str(exc),
            )
        if primary in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is damaged
            self._mark_for_check(str(exc))
            return self.error_class(
                f"The {self.file_noun} at {self.path} is damaged ({exc}).",
                action="Export what you can now, then restart Rill: it checks the file when it "
                "starts, and moves a damaged one aside and starts a new one.",
                detail=str(exc),
            )
        if primary in PERMISSION_CODES:
            denied = self._access_problem()
            if denied is not None or primary != 14:
                return denied or self._permission_error(exc)
            return self.error_class(
                f"Rill could not open its {self.file_noun} at {self.path}.",
                action="Check that the folder exists and is writable, and that the disk is "
                "not full.",
                detail=str(exc),
            )
        return self.error_class(
            f"Rill could not read or save the {self.noun}.",
            action="Try again; if it keeps happening, restart Rill.",
            detail=str(exc),
        )
