"""The blob store: attached files kept once by SHA-256, checked when read back."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from desktop_app.core.blobs import AttachmentUnavailable, BlobStore, unloaded, valid_sha256
from desktop_app.core.errors import RillError
from desktop_app.core.types import Attachment


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "attachments")


def test_put_names_the_bytes_by_their_sha256_in_a_two_level_layout(
    store: BlobStore, tmp_path: Path
) -> None:
    data = b"\x89PNG pretend image bytes"
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = tmp_path / "attachments" / sha[:2] / sha
    assert store.path(sha) == path
    assert path.read_bytes() == data
    assert store.has(sha)
    assert store.read(sha) == data
    # nothing but the blob is left behind (no temporary file)
    assert sorted(p.name for p in path.parent.iterdir()) == [sha]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_blobs_and_their_folders_are_private(store: BlobStore) -> None:
    sha = store.put(b"secret screenshot")
    assert stat.S_IMODE(store.path(sha).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path(sha).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700


def test_a_second_put_of_the_same_bytes_writes_nothing(store: BlobStore) -> None:
    sha = store.put(b"same bytes")
    path = store.path(sha)
    before = path.stat()
    assert store.put(b"same bytes") == sha
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_damaged_copy_is_replaced_by_the_next_put(store: BlobStore) -> None:
    sha = store.put(b"original bytes")
    store.path(sha).write_bytes(b"damaged bytes!")  # same length, other content
    with pytest.raises(AttachmentUnavailable):
        store.read(sha)
    assert store.put(b"original bytes") == sha
    assert store.read(sha) == b"original bytes"


def test_empty_bytes_are_a_blob_too(store: BlobStore) -> None:
    sha = store.put(b"")
    assert store.read(sha) == b""


def test_a_missing_blob_is_a_sentence_naming_the_file(store: BlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(sha)
    with pytest.raises(AttachmentUnavailable) as caught:
        store.read(sha, name="holiday.png")
    assert isinstance(caught.value, RillError)
    assert "holiday.png" in str(caught.value)
    assert "no longer available" in str(caught.value)


def test_a_changed_blob_is_refused_naming_the_file(store: BlobStore) -> None:
    sha = store.put(b"the bytes attached")
    store.path(sha).write_bytes(b"something else entirely")
    with pytest.raises(AttachmentUnavailable) as caught:
        store.read(sha, name="report.pdf")
    assert "report.pdf" in str(caught.value)
    assert "damaged" in str(caught.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="POSIX permissions")
def test_an_unreadable_blob_is_a_sentence_not_a_crash(store: BlobStore) -> None:
    sha = store.put(b"locked away")
    store.path(sha).chmod(0)
    try:
        with pytest.raises(AttachmentUnavailable) as caught:
            store.read(sha, name="notes.txt")
        assert "notes.txt" in str(caught.value)
        assert "permission" in str(caught.value).lower()
    finally:
        store.path(sha).chmod(0o600)


@pytest.mark.parametrize(
    "sha",
    [
        "../../etc/passwd",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        "/" + "a" * 63,
        "ab/" + "c" * 61,
        "",
    ],
)
def test_a_sha_that_is_not_one_never_becomes_a_path(store: BlobStore, sha: str) -> None:
    assert not valid_sha256(sha)
    with pytest.raises(ValueError):
        store.path(sha)
    assert not store.has(sha)
    with pytest.raises(AttachmentUnavailable) as caught:
        store.read(sha, name="x.png")
    assert "x.png" in str(caught.value)
    assert store.delete([sha]) == 0


def test_delete_removes_the_blobs_given_and_their_empty_folders(store: BlobStore) -> None:
    keep = store.put(b"keep me")
    drop = store.put(b"drop me")
    assert store.delete([drop, drop, "not-a-sha", "0" * 64]) == 1
    assert not store.has(drop)
    assert not store.path(drop).parent.exists() or keep[:2] == drop[:2]
    assert store.read(keep) == b"keep me"


def test_load_fills_an_attachment_with_its_checked_bytes(store: BlobStore) -> None:
    sha = store.put(b"line one\nline two\n")
    described = Attachment(sha, "notes.txt", "text", "text/plain", 18)
    loaded = store.load(described)
    assert loaded.data == b"line one\nline two\n"
    assert loaded == described  # data takes no part in equality
    assert store.load(loaded) is loaded


def test_creating_a_store_touches_nothing_on_disk(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "nowhere" / "attachments")
    assert not store.has("0" * 64)
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_that_cannot_be_written_is_a_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "attachments"
    blocker.write_text("a file in the way")
    store = BlobStore(blocker)
    with pytest.raises(AttachmentUnavailable) as caught:
        store.put(b"data")
    assert str(blocker) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..", "attachment"),
        (".", "attachment"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("bell\x07.txt", "bell?.txt"),
    ],
)
def test_a_named_copy_opens_under_the_files_own_name_inside_the_folder(
    store: BlobStore, tmp_path: Path, name: str, expected: str
) -> None:
    data = b"%PDF-1.4 pretend"
    sha = store.put(data)
    att = Attachment(sha, name, "pdf", "application/pdf", len(data))
    opened = tmp_path / "opened"
    copy = store.named_copy(att, opened)
    assert copy == opened / sha[:16] / expected
    assert copy.read_bytes() == data
    # the viewer may change its copy; the blob stays as attached, and a new copy is made
    copy.write_bytes(b"edited by a viewer")
    assert store.read(sha) == data
    assert store.named_copy(att, opened).read_bytes() == data


def test_a_named_copy_of_a_missing_blob_is_a_sentence(store: BlobStore, tmp_path: Path) -> None:
    att = Attachment("0" * 64, "gone.png", "image", "image/png", 3)
    with pytest.raises(AttachmentUnavailable, match=r"gone\.png"):
        store.named_copy(att, tmp_path / "opened")


def test_viewer_copies_go_a_day_after_their_last_opening_or_with_their_blob(
    store: BlobStore, tmp_path: Path
) -> None:
    import time

    opened = tmp_path / "opened"
    kept = store.put(b"kept")
    old = store.put(b"old")
    freed = store.put(b"freed")
    copies = {
        sha: store.named_copy(Attachment(sha, f"{sha[:4]}.txt", "text", "text/plain", n), opened)
        for sha, n in ((kept, 4), (old, 3), (freed, 5))
    }
    day_ago = time.time() - 25 * 3600
    os.utime(copies[old], (day_ago, day_ago))
    os.utime(copies[kept], (day_ago, day_ago))
    # opening it again keeps it for another day
    store.named_copy(Attachment(kept, f"{kept[:4]}.txt", "text", "text/plain", 4), opened)
    store.delete([freed])
    stranger = opened / "notes"  # not a folder named_copy makes: left alone
    stranger.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    (opened / old[:16] / "link").symlink_to(outside)
    assert store.prune_copies(opened) == 2
    assert sorted(p.name for p in opened.iterdir()) == sorted([kept[:16], "notes"])
    assert copies[kept].read_bytes() == b"kept"
    assert outside.read_text() == "mine"  # the link was removed, not followed
    assert store.prune_copies(tmp_path / "never-made") == 0


def test_an_empty_file_needs_no_reading(store: BlobStore) -> None:
    empty = Attachment(hashlib.sha256(b"").hexdigest(), "empty.txt", "text", "text/plain", 0)
    assert not unloaded(empty)
    assert store.load(empty) is empty  # nothing stored, nothing to read
    described = Attachment("0" * 64, "notes.txt", "text", "text/plain", 5)
    assert unloaded(described)
