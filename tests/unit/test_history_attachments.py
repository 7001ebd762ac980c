"""The history's attachments (schema 7): prompts refer to files kept once in the blob store,
reading back carries them, deleting frees what nothing refers to, old files migrate."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.attachments import AttachmentLimits, attachment_from_bytes, human_size
from desktop_app.core.blobs import AttachmentUnavailable, BlobStore
from desktop_app.core.history import SCHEMA_VERSION, History, ImportFormatError
from desktop_app.core.types import Attachment, Message
from tests.attachment_files import bomb_png, pdf_bytes, png_bytes

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
        assert history.schema_version == SCHEMA_VERSION == 9
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


# -- export and import --------------------------------------------------------------------


def _chat_with_files(history: History) -> tuple[int, list[Attachment]]:
    image = attachment_from_bytes(png_bytes(40, 30), "holiday [1].png")
    notes = attachment_from_bytes(b"one\ntwo\n", "notes.txt")
    paper = attachment_from_bytes(pdf_bytes(["First page", "Second page"]), "paper.pdf")
    chat = history.create_conversation(title="Files")
    history.add_message(chat.id, "user", "What are these?", attachments=[image, notes])
    history.add_message(chat.id, "assistant", "A picture and notes.")
    history.add_message(chat.id, "user", "", attachments=[paper])
    history.add_message(chat.id, "assistant", "A paper.")
    return chat.id, [image, notes, paper]


def test_markdown_lists_each_file_under_its_message_as_a_line(history: History) -> None:
    chat, (image, notes, paper) = _chat_with_files(history)
    markdown = history.export_markdown(chat)
    assert (
        "**You**\n\nWhat are these?\n\n"
        f"- Attached image: holiday \\[1\\].png (40×30 pixels, {human_size(image.size)})\n"
        f"- Attached text file: notes.txt ({human_size(notes.size)})\n\n"
        "**Assistant**\n\nA picture and notes."
    ) in markdown
    assert f"**You**\n\n- Attached PDF: paper.pdf (2 pages, {human_size(paper.size)})" in markdown
    assert "![" not in markdown and "](" not in markdown and "data:" not in markdown


def test_json_export_carries_the_files_and_an_import_brings_them_back(history: History) -> None:
    chat, files = _chat_with_files(history)
    exported = json.loads(json.dumps(history.export_json(chat)))
    first = exported["messages"][0]
    assert [a["name"] for a in first["attachments"]] == ["holiday [1].png", "notes.txt"]
    entry = first["attachments"][0]
    assert base64.b64decode(entry["data"]) == files[0].data
    assert (entry["kind"], entry["width"], entry["height"], entry["sha256"]) == (
        "image",
        40,
        30,
        files[0].sha256,
    )
    assert "attachments" not in exported["messages"][1]  # a reply carries none

    history.delete_conversation(chat)
    assert not any(history.blobs.has(f.sha256) for f in files)  # freed with the chat

    report = history.import_conversation(json.dumps(exported))
    assert report.problems == ()
    shown = history.messages(report.conversation_id)
    assert [m.attachments for m in shown] == [(files[0], files[1]), (), (files[2],), ()]
    assert [m.content for m in shown] == ["What are these?", "A picture and notes.", "", "A paper."]
    assert all(history.blobs.read(f.sha256) == f.data for f in files)
    again = history.export_json(report.conversation_id)
    assert [m.get("attachments") for m in again["messages"]] == [
        m.get("attachments") for m in exported["messages"]
    ]


def _export_with(entries: list[Any], role: str = "user") -> dict[str, Any]:
    return {
        "format": "rill.conversation",
        "version": 1,
        "messages": [
            {"id": 1, "parent": None, "role": "user", "content": "Keep me"},
            {"id": 2, "parent": 1, "role": "assistant", "content": "Kept"},
            {"id": 3, "parent": 2, "role": role, "content": "With files", "attachments": entries},
        ],
    }


def _entry(data: bytes, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode(),
        **fields,
    }


BAD_ENTRIES = [
    (
        {**_entry(b"real bytes", "changed.txt"), "sha256": hashlib.sha256(b"x").hexdigest()},
        "changed.txt of message 3 was not imported: its bytes do not match its SHA-256",
    ),
    (
        {**_entry(b"abc", "broken.txt"), "data": "not base64!!"},
        "broken.txt of message 3 was not imported: its data is not valid base64",
    ),
    (
        {**_entry(b"abc", "nosha.txt"), "sha256": "../../etc/passwd"},
        "nosha.txt of message 3 was not imported: its SHA-256 is missing or not valid",
    ),
    (_entry(bomb_png(20_000, 20_000), "bomb.png"), "Message 3: bomb.png"),
    (_entry(b"\x7fELF\x02\x01\x01\x00" + bytes(300), "tool.exe"), "Message 3: tool.exe"),
    (
        _entry(b"plain text really", "fake.txt", kind="image"),
        "fake.txt of message 3 was not imported: it says it is image but it is text",
    ),
    (
        {k: v for k, v in _entry(b"never stored here", "gone.txt").items() if k != "data"}
        | {"kind": "text", "mime": "text/plain", "size": 17},
        "gone.txt of message 3 was not imported: the export does not carry its bytes",
    ),
    ("just a string", "attachment of message 3 was not imported: its entry is not an object"),
]


@pytest.mark.parametrize(("entry", "problem"), BAD_ENTRIES)
def test_a_bad_file_in_an_import_is_a_sentence_and_the_rest_imports(
    history: History, entry: Any, problem: str
) -> None:
    good = _entry(b"good notes\n", "good.txt")
    report = history.import_conversation(_export_with([good, entry]))
    (sentence,) = report.problems
    assert problem in sentence
    shown = history.messages(report.conversation_id)
    assert [m.content.split("\n\n")[0] for m in shown] == ["Keep me", "Kept", "With files"]
    assert [a.name for a in shown[2].attachments] == ["good.txt"]
    assert history.blobs.read(good["sha256"]) == b"good notes\n"
    assert shown[2].content.endswith("could not be imported]")  # the message says so too


def test_import_checks_files_against_the_limits_of_attaching(history: History) -> None:
    small = AttachmentLimits(text_bytes=10, message_bytes=15)
    big = _entry(b"more than ten bytes", "big.txt")
    report = history.import_conversation(_export_with([big]), limits=small)
    assert "big.txt" in report.problems[0] and "10 bytes" in report.problems[0]
    two = [_entry(b"eight b.", "a.txt"), _entry(b"eight c.", "b.txt")]
    report = history.import_conversation(_export_with(two), limits=small)
    assert len(report.problems) == 2 and all("one message" in p for p in report.problems)
    assert history.messages(report.conversation_id)[2].attachments == ()


def test_files_on_a_reply_are_not_imported(history: History) -> None:
    report = history.import_conversation(_export_with([_entry(b"hi", "r.txt")], role="assistant"))
    assert report.problems == (
        "The file r.txt of message 3 was not imported: only prompts carry files.",
    )


def test_a_file_without_bytes_is_kept_when_its_bytes_are_stored(history: History) -> None:
    data = b"already here\n"
    history.blobs.put(data)
    entry = {k: v for k, v in _entry(data, "here.txt").items() if k != "data"}
    entry |= {"kind": "text", "mime": "text/plain", "size": len(data)}
    report = history.import_conversation(_export_with([entry]))
    assert report.problems == ()
    assert [a.name for a in history.messages(report.conversation_id)[2].attachments] == ["here.txt"]


def test_attachments_that_are_not_a_list_make_the_export_invalid(history: History) -> None:
    with pytest.raises(ImportFormatError, match="attachments must be a list"):
        history.import_json(_export_with({"name": "x"}))  # type: ignore[arg-type]
    assert history.list_conversations() == []


def test_import_file_report_names_the_problems(history: History, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_export_with([{"name": "x.txt"}])))
    report = history.import_file_report(path)
    assert len(report.problems) == 1 and "x.txt" in report.problems[0]
    assert history.import_file(path) != report.conversation_id


def test_a_sweep_removes_old_blobs_nothing_refers_to(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    with History(tmp_path / "h.sqlite3", clock=lambda: now[0]) as history:
        chat = history.create_conversation()
        used = attachment(b"referred to")
        history.add_message(chat.id, "user", "hi", attachments=[used])
        orphan = history.blobs.put(b"a prompt that was never saved")
        leftover = history.blobs.path(orphan).parent / ".part-abc"
        leftover.write_bytes(b"half a write")
        for sha in (used.sha256, orphan):
            os.utime(history.blobs.path(sha), (now[0] - 7200, now[0] - 7200))
        os.utime(leftover, (now[0] - 7200, now[0] - 7200))
        fresh = history.blobs.put(b"being attached right now")
        os.utime(history.blobs.path(fresh), (now[0] - 10, now[0] - 10))

        assert history.sweep_blobs(grace_s=3600) == [orphan]
        assert history.blobs.has(used.sha256) and history.blobs.has(fresh)
        assert not history.blobs.has(orphan) and not leftover.exists()
        # deleting a conversation sweeps too
        os.utime(history.blobs.path(fresh), (now[0] - 7200, now[0] - 7200))
        history.delete_conversation(history.create_conversation().id)
        assert not history.blobs.has(fresh)
