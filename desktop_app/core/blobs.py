"""Attached files, stored once each under the data folder and named by their SHA-256.

A :class:`BlobStore` keeps the bytes of every file a message refers to at
``attachments/ab/abcdef…`` (the first two hex digits name a folder, so no folder grows past
a few thousand files). A blob is written once: to a temporary file in the same folder,
flushed to disk, then renamed into place, so a crash leaves either the whole file or
nothing; putting the same bytes again writes nothing (a damaged copy is replaced). Files are
private to the user (0600, folders 0700).

Reading checks the bytes against their name: a blob that has gone missing or changed on
disk raises :class:`AttachmentUnavailable`, a sentence naming the file the user attached,
never a crash. A hash from outside (a stored chat, an imported file) is checked to be 64
hex digits before it becomes part of a path.

Which blobs are still referenced is the history's business; :meth:`BlobStore.delete` only
removes what it is told to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Final

from desktop_app.core.attachments import safe_name
from desktop_app.core.errors import RillError
from desktop_app.core.paths import FOLDER_MODE
from desktop_app.core.types import Attachment

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_COPY_FOLDER: Final = re.compile(r"[0-9a-f]{16}")
COPY_KEEP_S: Final = 24 * 3600.0
"""How long a copy made for the system's viewer is kept after it was last opened."""


class AttachmentUnavailable(RillError):
    """The stored copy of an attached file is missing, changed or cannot be read."""


def valid_sha256(sha: object) -> bool:
    """Whether ``sha`` is a SHA-256 as the store names blobs: 64 lowercase hex digits."""
    return isinstance(sha, str) and _SHA256.fullmatch(sha) is not None


def unloaded(attachment: Attachment) -> bool:
    """Whether ``attachment`` is a description still without its bytes (an empty file
    never needs reading)."""
    return not attachment.data and attachment.size > 0


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """The attached files under ``folder`` (``AppPaths.attachments_dir``), by SHA-256.

    Every method is synchronous: call it from a worker thread, not the UI thread. Creating
    the store touches nothing on disk; the folder is made on the first :meth:`put`.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, sha: str) -> Path:
        """Where the blob ``sha`` lives (whether or not it is there); ``ValueError`` for
        anything that is not a SHA-256."""
        if not valid_sha256(sha):
            raise ValueError(f"not a SHA-256: {sha[:80]!r}")
        return self.folder / sha[:2] / sha

    def has(self, sha: str) -> bool:
        """Whether a blob named ``sha`` is stored (its bytes are not checked)."""
        return valid_sha256(sha) and self.path(sha).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256. Bytes already stored are not written again.

        Raises :class:`AttachmentUnavailable` when the folder cannot be written (a full
        disk, a permission)."""
        sha = sha256_of(data)
        target = self.path(sha)
        if self._intact(target, sha, len(data)):
            return sha
        try:
            _make_folder(self.folder)
            _write_whole(target, data, durable=True)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise AttachmentUnavailable(
                f"Rill could not keep a copy of the attached file in {self.folder} ({reason}).",
                action="Check that the disk is not full and the folder is writable, then "
                "attach the file again.",
                detail=str(exc),
            ) from exc
        return sha

    @staticmethod
    def _intact(path: Path, sha: str, size: int) -> bool:
        """Whether ``path`` holds the blob already (a damaged copy is written again)."""
        try:
            if path.stat().st_size != size:
                return False
            return sha256_of(path.read_bytes()) == sha
        except OSError:
            return False

    def read(self, sha: str, *, name: str = "") -> bytes:
        """The bytes of blob ``sha``, checked against it. ``name`` is the file's name as
        the user attached it, for the sentence of :class:`AttachmentUnavailable` (raised
        when the blob is missing, changed or unreadable, or ``sha`` is not a SHA-256)."""
        what = f"The attached file {name}" if name else "An attached file"
        if not valid_sha256(sha):
            raise AttachmentUnavailable(
                f"{what} cannot be found: its stored name is not valid.",
                action="Attach the file again.",
            )
        path = self.path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise AttachmentUnavailable(
                f"{what} is no longer available: Rill's copy of it was removed.",
                action="Attach the file again.",
                detail=str(path),
            ) from exc
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise AttachmentUnavailable(
                f"{what} cannot be read from Rill's copy at {path} ({reason}).",
                action="Check the permissions of that file, or attach the file again.",
                detail=str(exc),
            ) from exc
        if sha256_of(data) != sha:
            raise AttachmentUnavailable(
                f"{what} is damaged: Rill's copy at {path} no longer holds the bytes that "
                "were attached.",
                action="Attach the file again.",
                detail=str(path),
            )
        return data

    def load(self, attachment: Attachment) -> Attachment:
        """``attachment`` with its bytes (read and checked) in ``data``; see :meth:`read`."""
        if not unloaded(attachment):
            return attachment
        return replace(attachment, data=self.read(attachment.sha256, name=attachment.name))

    def stored(self, *, older_than: float | None = None) -> list[str]:
        """The SHA-256 of every blob stored (last written before ``older_than``, a
        ``time.time()``, when given). Leftovers of writes that never finished (a crash)
        older than that are removed on the way."""
        found: list[str] = []
        try:
            folders = [f for f in self.folder.iterdir() if len(f.name) == 2]
        except OSError:
            return found
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    written = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                if older_than is not None and written >= older_than:
                    continue
                if valid_sha256(entry.name) and entry.name.startswith(folder.name):
                    found.append(entry.name)
                elif entry.name.startswith(".part-") and older_than is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        return found

    def named_copy(self, attachment: Attachment, folder: str | os.PathLike[str]) -> Path:
        """A copy of the attached file under its own name, for the system's viewer (which
        goes by the name's extension): ``folder/<sha>/<name>``, private to the user, made
        once. The copy is the viewer's to change; the blob stays as it was.

        Raises :class:`AttachmentUnavailable` as :meth:`read` does, or when the copy
        cannot be written."""
        name = _file_name(attachment.name)
        target = Path(folder) / attachment.sha256[:16] / name
        if self._intact(target, attachment.sha256, attachment.size):
            with contextlib.suppress(OSError):
                os.utime(target)  # opened again: kept for another COPY_KEEP_S
            return target
        data = self.read(attachment.sha256, name=attachment.name)
        try:
            _write_whole(target, data, durable=False)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise AttachmentUnavailable(
                f"Rill could not make a copy of {name} to open ({reason}).",
                action="Check that the disk is not full, then try again.",
                detail=str(exc),
            ) from exc
        return target

    def prune_copies(
        self,
        folder: str | os.PathLike[str],
        *,
        now: float | None = None,
        keep_s: float = COPY_KEEP_S,
    ) -> int:
        """Remove the copies :meth:`named_copy` made under ``folder`` that were last opened
        more than ``keep_s`` ago, and those whose blob is gone (its conversation was
        deleted); return how many were removed. Only folders named as ``named_copy`` names
        them are touched, and nothing is followed out of ``folder`` (links are removed, not
        followed)."""
        cutoff = (time.time() if now is None else now) - keep_s
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        removed = 0
        for entry in entries:
            if not _COPY_FOLDER.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            if self._has_blob(entry.name) and _newest_mtime(entry.path) >= cutoff:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
        return removed

    def _has_blob(self, prefix: str) -> bool:
        """Whether a blob whose SHA-256 starts with ``prefix`` is stored."""
        try:
            with os.scandir(self.folder / prefix[:2]) as names:
                return any(n.name.startswith(prefix) and valid_sha256(n.name) for n in names)
        except OSError:
            return False

    def delete(self, shas: Iterable[str]) -> int:
        """Remove the blobs ``shas`` (names that are not SHA-256s and blobs already gone are
        skipped); return how many were removed. The history decides which ones nothing
        references any more."""
        removed = 0
        for sha in set(shas):
            if not valid_sha256(sha):
                continue
            path = self.path(sha)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                continue
            removed += 1
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty
        return removed


def _newest_mtime(folder: str) -> float:
    """When a regular file in ``folder`` (not below it, no link) last changed; 0 when there
    is none."""
    try:
        with os.scandir(folder) as names:
            return max(
                (n.stat().st_mtime for n in names if n.is_file(follow_symlinks=False)),
                default=0.0,
            )
    except OSError:
        return 0.0


def _file_name(name: str) -> str:
    """``name`` fit to be a file's name in a folder of Rill's: no folder part, no control
    characters, not ``.`` or ``..``."""
    clean = safe_name(name).replace("/", "_").replace("\\", "_")
    return "attachment" if not clean.strip(". ") else clean


def _make_folder(folder: Path) -> None:
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)


def _write_whole(target: Path, data: bytes, *, durable: bool) -> None:
    """Write ``target`` (0600) so that it holds all of ``data`` or is not there: a
    temporary file in the same folder, renamed into place; ``durable`` flushes both to
    disk first."""
    _make_folder(target.parent)
    fd, temp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; elsewhere the rename is enough)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
