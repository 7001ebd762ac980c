"""What Rill keeps on disk holds up against damaged rows, hostile imports and huge searches.

Each test here stands for one way a stored chat, an imported file or a search query could
crash Rill, block its saves or leave its files readable by other users.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core import chat as chat_module
from desktop_app.core.chat import ChatService, Services
from desktop_app.core.history import (
    MAX_SEARCH_TERMS,
    History,
    ImportFormatError,
    fts_query,
)
from desktop_app.core.logs import setup_logging, shutdown_logging
from desktop_app.core.paths import app_paths
from desktop_app.simulator import hostile
from tests.helpers import while_held

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    """Opening Rill's folders sets the process umask; give later tests theirs back."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "history.sqlite3") as opened:
        yield opened


def _raw(history: History) -> sqlite3.Connection:
    return sqlite3.connect(history.path, isolation_level=None)


# -- 12: one bad byte in a stored message ----------------------------------------------------


def test_undecodable_bytes_in_a_stored_message_are_shown_damaged(history: History) -> None:
    conversation = history.create_conversation(title="rivers")
    history.add_message(conversation.id, "user", "hello")
    reply = history.add_message(conversation.id, "assistant", "placeholder")
    with _raw(history) as raw:
        # a torn write or a bad sector: bytes that are not UTF-8 in a text column
        raw.execute(
            "UPDATE messages SET content = CAST(X'61ff62c3' AS TEXT), model = CAST(X'fe' AS TEXT)"
            " WHERE id = ?",
            (reply.id,),
        )
        raw.execute(
            "UPDATE conversations SET title = CAST(X'80' AS TEXT) WHERE id = ?",
            (conversation.id,),
        )
    messages = history.messages(conversation.id)
    assert messages[1].content == "a\ufffdb\ufffd"
    assert messages[1].model == "\ufffd"
    assert history.get_conversation(conversation.id) is not None
    assert "a\ufffdb\ufffd" in history.export_markdown(conversation.id)
    exported = history.export_json(conversation.id)
    assert exported["messages"][1]["content"] == "a\ufffdb\ufffd"
    json.dumps(exported, ensure_ascii=False).encode("utf-8")
    assert history.search("hello")  # the damaged row does not break search either


def test_a_reply_with_lone_surrogates_is_saved(history: History) -> None:
    conversation = history.create_conversation()
    reply = history.add_message(conversation.id, "assistant", "")
    history.update_message(reply.id, content="left \udc80 right \ud800", status="complete")
    stored = history.get_message(reply.id)
    assert stored is not None and stored.content == "left \ufffd right \ufffd"


# -- 8 and 14: hostile imports and timestamps ----------------------------------------------


def test_deeply_nested_import_is_one_sentence_naming_the_file(
    history: History, tmp_path: Path
) -> None:
    path = tmp_path / "nested.json"
    path.write_text('{"format": "rill.conversation", "messages": ' + "[" * 200_000)
    with pytest.raises(ImportFormatError) as caught:
        history.import_file(path)
    sentence = str(caught.value)
    assert str(path) in sentence
    assert "nested" in sentence
    assert "Traceback" not in sentence and "\n" not in sentence
    assert history.list_conversations() == []


def test_import_file_that_is_not_utf8_names_the_file(history: History, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"format": "rill.conversation", "title": "caf\xe9"}')
    with pytest.raises(ImportFormatError, match=r"latin1\.json.*not UTF-8"):
        history.import_file(path)
    assert history.list_conversations() == []


def _export_with(created_at: object) -> dict[str, Any]:
    return {
        "format": "rill.conversation",
        "version": 1,
        "conversation": {"title": "t"},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "created_at": created_at},
        ],
    }


@pytest.mark.parametrize("stamp", [-1e18, 1e300, float("nan"), float("inf"), "99999-01-01"])
def test_import_rejects_impossible_timestamps(history: History, stamp: object) -> None:
    with pytest.raises(ImportFormatError, match=r"messages\[1\]\.created_at"):
        history.import_json(_export_with(stamp))
    assert history.list_conversations() == []


def test_export_survives_impossible_stored_timestamps(history: History) -> None:
    conversation = history.create_conversation(title="old")
    message = history.add_message(conversation.id, "user", "hi")
    with _raw(history) as raw:
        raw.execute("UPDATE messages SET created_at = -1e18 WHERE id = ?", (message.id,))
        raw.execute("UPDATE conversations SET updated_at = 1e300 WHERE id = ?", (conversation.id,))
    exported = history.export_json(conversation.id)
    assert exported["messages"][0]["created_at"] is None
    assert exported["conversation"]["updated_at"] is None
    again = history.import_json(json.dumps(exported))
    assert [m.content for m in history.messages(again)] == ["hi"]


# -- 9: huge queries and searches beside saves ----------------------------------------------


def test_search_uses_at_most_the_term_limit(history: History) -> None:
    conversation = history.create_conversation()
    history.add_message(conversation.id, "user", "w0 w1 w2 alpha")
    words = " ".join(f"w{i % 30_000}" for i in range(20_000))
    query = fts_query(words)
    assert query is not None
    assert len(query.terms) == MAX_SEARCH_TERMS
    assert query.truncated
    hits = history.search(words)
    assert hits.truncated
    assert history.search("w0 w1 w2 alpha").truncated is False
    # repeated words count once
    repeated = fts_query("rain " * 1_000 + "river")
    assert repeated is not None and repeated.terms == ('"rain"', '"river"*')


def test_ten_megabyte_query_is_cut_short(history: History) -> None:
    query = fts_query("x" * 10_000_000)
    assert query is not None and query.truncated
    assert len(query.match) < 10_000
    assert history.search("ab " * 3_000_000).truncated


def test_a_search_does_not_wait_for_the_write_lock(history: History) -> None:
    conversation = history.create_conversation()
    history.add_message(conversation.id, "user", "rivers and lakes")
    with while_held(lambda: history._lock):  # what a slow save holds
        result: list[object] = []
        searcher = threading.Thread(target=lambda: result.append(history.search("rivers")))
        searcher.start()
        searcher.join(5)
        assert result and len(result[0]) == 1  # type: ignore[arg-type]


async def test_a_search_never_holds_up_a_save(tmp_path: Path) -> None:
    services = Services.open(paths=app_paths(tmp_path / "home"), api_key=lambda _r: "k")
    try:
        history = services.history
        assert history is not None
        conversation = await services.run_io(history.create_conversation)
        message = await services.run_io(history.add_message, conversation.id, "assistant", "")
        release = threading.Event()
        searching = asyncio.ensure_future(services.run_search(release.wait, 10))
        await asyncio.wait_for(
            services.run_io(history.update_message, message.id, content="saved"), 5
        )
        assert not searching.done()
        release.set()
        await searching
        stored = await services.run_io(history.get_message, message.id)
        assert stored is not None and stored.content == "saved"
    finally:
        await services.aclose()


# -- 5: saves coalesce ----------------------------------------------------------------------


async def test_saves_of_a_reply_coalesce_while_the_disk_is_slow(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_module, "SAVE_INTERVAL_S", 0.0)
    deltas = [f"part {i} " for i in range(300)]
    sim.script(hostile.reply("openai", deltas))
    services = Services.open(paths=app_paths(tmp_path / "home"), api_key=lambda _r: "k")
    try:
        chat = ChatService(services)
        release = threading.Event()
        turn = chat.send("hi", provider="openai", base_url=sim.base_url("openai"), model="m")
        pending: list[int] = []
        async for event in turn:
            if turn.assistant_message_id is not None and not release.is_set():
                if not pending:
                    services.io.submit(release.wait, 10)  # a slow disk
                pending.append(services.io._work_queue.qsize())
            if type(event).__name__ == "Finished":
                release.set()
        release.set()
        assert max(pending) <= 2, max(pending)
        assert await turn.wait_saved() is None
        history = services.history
        assert history is not None
        stored = await services.run_io(history.get_message, turn.assistant_message_id)
        assert stored is not None
        assert stored.content == "".join(deltas) and stored.status == "complete"
    finally:
        await services.aclose()


# -- 13: private files and folders -----------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@posix_only
async def test_every_file_and_folder_is_private(sim: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = app_paths(home).ensure()
    setup_logging(paths.log_dir)
    try:
        services = Services.open(paths=paths, api_key=lambda _r: "k")
        try:
            await services.cache.ready()  # type: ignore[union-attr]
            chat = ChatService(services)
            turn = chat.send("hi", provider="openai", base_url=sim.base_url("openai"), model="m")
            async for _ in turn:
                pass
            await services.cache.put("k" * 64, turn.response)  # type: ignore[union-attr,arg-type]
            modes = _modes(home)
            names = set(modes)
            assert {"data/history.sqlite3-wal", "data/ledger.sqlite3-shm", "logs/rill.log"} <= names
            assert any(name.startswith("data/response-cache/") for name in names)
            loose = {
                name: oct(mode)
                for name, mode in modes.items()
                if mode != (0o700 if (home / name).is_dir() else 0o600)
            }
            assert loose == {}
        finally:
            await services.aclose()
    finally:
        shutdown_logging()


@posix_only
def test_existing_folders_and_files_are_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("config", "data", "cache", "logs", "data/response-cache"):
        (home / name).mkdir(parents=True)
        os.chmod(home / name, 0o755)
    (home / "data" / "history.sqlite3").write_bytes(b"")
    (home / "logs" / "rill.log.1").write_text("old")
    for path in (home / "data" / "history.sqlite3", home / "logs" / "rill.log.1"):
        os.chmod(path, 0o644)
    app_paths(home).ensure()
    loose = {
        name: oct(mode)
        for name, mode in _modes(home).items()
        if mode != (0o700 if (home / name).is_dir() else 0o600)
    }
    assert loose == {}
