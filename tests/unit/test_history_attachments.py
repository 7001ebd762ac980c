"""The history's attachments (schema 7): prompts refer to files kept once in the blob store,
reading back carries them, deleting frees what nothing refers to, old files migrate."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.blobs import AttachmentUnavailable, BlobStore
from desktop_app.core.history import SCHEMA_VERSION, History
from desktop_app.core.types import Attachment, Message

DATA = Path(__file__).resolve().parents[1] / "data"


def attachment(data: bytes, name: str = "shot.png", **fields: object) -> Attachment:
    described = Attachment(
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        kind="image",
        mime="image/png",
        size=len(data),
        width=4,
        height=3,
        data=data,
    )
    return replace(described, **fields)  # type: ignore[arg-type]


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "data" / "history.sqlite3") as opened:
        yield opened


def test_a_prompt_keeps_its_files_in_order_without_their_bytes(history: History) -> None:
    image = attachment(b"image bytes")
    notes = attachment(b"a\nb\n", "notes.txt", kind="text", mime="text/plain", width=0, height=0)
    chat = history.create_conversation()
    prompt = history.add_message(chat.id, "user", "Look at these", attachments=[image, notes])
    history.add_message(chat.id, "assistant", "I see them")

    assert prompt.attachments == (image, notes)
    shown = history.messages(chat.id)
    assert shown[0].attachments == (image, notes)
    assert all(a.data == b"" for a in shown[0].attachments)
    assert shown[1].attachments == ()
    assert history.get_message(prompt.id) == shown[0]
    assert history.versions(prompt.reply_group)[0].attachments == (image, notes)
    assert history.attachments(prompt.id) == [image, notes]
    # the bytes are in the blob store, once each
    assert history.blobs.read(image.sha256) == b"image bytes"
    assert history.blobs.read(notes.sha256) == b"a\nb\n"
    # as request messages: the prompt carries its files (bytes to be read by the sender)
    message = shown[0].to_message()
    assert message == Message("user", "Look at these", attachments=(image, notes))
    assert shown[0].to_messages() == [message]


def test_the_blob_store_is_beside_the_database_unless_given(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3") as history:
        assert history.blobs.folder == tmp_path / "attachments"
    elsewhere = BlobStore(tmp_path / "elsewhere")
    with History(tmp_path / "h.sqlite3", blobs=elsewhere) as history:
        assert history.blobs is elsewhere


def test_a_new_version_of_a_prompt_has_files_of_its_own(history: History) -> None:
    first, second = attachment(b"first"), attachment(b"second")
    chat = history.create_conversation()
    prompt = history.add_message(chat.id, "user", "Describe", attachments=[first])
    history.add_message(chat.id, "assistant", "First")
    edited = history.add_version(prompt.reply_group, "Describe this", attachments=[second])
    assert [m.attachments for m in history.messages(chat.id)] == [(second,)]
    assert [v.attachments for v in history.versions(prompt.reply_group)] == [(first,), (second,)]
    assert edited.attachments == (second,)


def test_a_file_given_without_bytes_must_be_stored_already(history: History) -> None:
    chat = history.create_conversation()
    stored = attachment(b"kept")
    history.add_message(chat.id, "user", "one", attachments=[stored])
    described = replace(stored, data=b"")
    again = history.add_message(chat.id, "user", "two", attachments=[described])
    assert again.attachments == (stored,)

    gone = replace(attachment(b"never stored", "gone.png"), data=b"")
    with pytest.raises(AttachmentUnavailable, match=r"gone\.png"):
        history.add_message(chat.id, "user", "three", attachments=[gone])
    # nothing of that prompt was written
    assert [m.content for m in history.messages(chat.id)] == ["one", "two"]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"sha256": "../../../etc/passwd"}, "SHA-256"),
        ({"sha256": "F" * 64}, "SHA-256"),
        ({"kind": "video"}, "kind"),
        ({"size": -1}, "whole numbers"),
        ({"width": 1.5}, "whole numbers"),
    ],
)
def test_a_malformed_file_record_is_refused_and_nothing_written(
    history: History, bad: dict[str, object], problem: str
) -> None:
    chat = history.create_conversation()
    broken = replace(attachment(b"x"), **bad, data=b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=problem):
        history.add_message(chat.id, "user", "hi", attachments=[broken])
    assert history.messages(chat.id) == []


def test_bytes_that_do_not_match_their_sha_are_refused(history: History) -> None:
    chat = history.create_conversation()
    lying = replace(attachment(b"claimed"), data=b"other bytes")
    with pytest.raises(ValueError, match="do not match"):
        history.add_message(chat.id, "user", "hi", attachments=[lying])
    assert history.messages(chat.id) == []


def test_names_and_types_are_kept_fit_to_show(history: History) -> None:
    chat = history.create_conversation()
    odd = attachment(
        b"odd", name="evil\x1b]0;title\x07\nname.png" + "x" * 400, mime="image/png\r\n"
    )
    stored = history.add_message(chat.id, "user", "hi", attachments=[odd]).attachments[0]
    assert stored.name.startswith("evil?]0;title??name.pngxxx")
    assert len(stored.name) <= 200
    assert stored.mime == "image/png"
    folder = attachment(b"in a folder", name="/home/me/Pictures/cat.png", mime="<b>bold</b>")
    stored = history.add_message(chat.id, "user", "hi", attachments=[folder]).attachments[0]
    assert (stored.name, stored.mime) == ("cat.png", "application/octet-stream")


def test_deleting_a_chat_frees_only_the_files_nothing_else_refers_to(history: History) -> None:
    shared = attachment(b"the same screenshot in two chats")
    own = attachment(b"only in the first chat", "own.png")
    first = history.create_conversation()
    history.add_message(first.id, "user", "Look", attachments=[shared, own])
    second = history.create_conversation()
    history.add_message(second.id, "user", "Look again", attachments=[shared])

    history.delete_conversation(first.id)
    assert history.blobs.has(shared.sha256)  # the second chat still refers to it
    assert not history.blobs.has(own.sha256)
    assert history.messages(second.id)[0].attachments == (shared,)
    assert history.blobs.read(shared.sha256) == b"the same screenshot in two chats"

    history.delete_conversation(second.id)
    assert not history.blobs.has(shared.sha256)


def test_a_file_shared_by_two_versions_of_a_prompt_stays_while_one_remains(
    history: History,
) -> None:
    image = attachment(b"kept by a version")
    chat = history.create_conversation()
    prompt = history.add_message(chat.id, "user", "v1", attachments=[image])
    history.add_version(prompt.reply_group, "v2", attachments=[replace(image, data=b"")])
    other = history.create_conversation()
    history.add_message(other.id, "user", "elsewhere", attachments=[image])
    history.delete_conversation(chat.id)
    assert history.blobs.has(image.sha256)
    assert history.unreferenced([image.sha256]) == []
    history.delete_conversation(other.id)
    assert not history.blobs.has(image.sha256)


def test_free_blobs_removes_only_the_unreferenced(history: History) -> None:
    chat = history.create_conversation()
    used = attachment(b"used")
    history.add_message(chat.id, "user", "hi", attachments=[used])
    stray = history.blobs.put(b"written, never referred to")
    assert history.unreferenced([used.sha256, stray]) == [stray]
    assert history.free_blobs([used.sha256, stray]) == [stray]
    assert history.blobs.has(used.sha256)
    assert not history.blobs.has(stray)


def test_a_schema_6_database_migrates(tmp_path: Path) -> None:
    """A history written by the previous version (schema 6: chats with tool calls, reply
    versions and tools turned off) opens, keeps everything, and takes attachments."""
    path = tmp_path / "data" / "history.sqlite3"
    path.parent.mkdir()
    shutil.copy(DATA / "history_v6.sqlite3", path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
    raw.close()

    with History(path) as history:
        assert history.recovered_from is None
        assert history.schema_version == SCHEMA_VERSION == 7
        chats = history.list_conversations()
        assert [c.title for c in chats] == ["Second", "What time is it in Tokyo?"]
        tokyo = chats[1]
        assert tokyo.tools_off == ("files",)
        assert tokyo.system_prompt == "Be brief."
        shown = history.messages(tokyo.id)
        assert [m.content for m in shown] == [
            "What time is it in Tokyo?",
            "Noon in Tokyo.",
            "Thanks",
            "You're welcome.",
        ]
        assert all(m.attachments == () for m in shown)
        versions = history.versions(shown[1].reply_group)
        assert [v.content for v in versions] == ["Let me check. It is noon.", "Noon in Tokyo."]
        assert [p.name for p in history.tool_parts(versions[0].id)] == ["get_time"]
        assert [hit.message_id for hit in history.search("Tokyo noon")] == [shown[1].id]

        image = attachment(b"after the migration")
        history.add_message(tokyo.id, "user", "And this?", attachments=[image])
        assert history.messages(tokyo.id)[-1].attachments == (image,)
        history.delete_conversation(tokyo.id)
        assert not history.blobs.has(image.sha256)
        assert [c.title for c in history.list_conversations()] == ["Second"]
