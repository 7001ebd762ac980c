"""Conversation history: storage, versions, search, export/import, migration, recovery."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.history import (
    SCHEMA_VERSION,
    Conversation,
    History,
    HistoryError,
    ImportFormatError,
    StoredMessage,
    StreamingWriter,
    fts_query,
    title_from_prompt,
)
from tests.helpers import while_held

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def history(db_path: Path, clock: FakeClock) -> Iterator[History]:
    with History(db_path, clock=clock) as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def conversation_of(history: History, conversation_id: int) -> Conversation:
    found = history.get_conversation(conversation_id)
    assert found is not None
    return found


def message_of(history: History, message_id: int) -> StoredMessage:
    found = history.get_message(message_id)
    assert found is not None
    return found


# -- conversations ------------------------------------------------------------------------


def test_open_sets_durable_pragmas(history: History, db_path: Path) -> None:
    conn = history._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert history.schema_version == SCHEMA_VERSION
    assert history.recovered_from is None
    assert db_path.exists()


def test_tools_off_is_kept_per_conversation(history: History, clock: FakeClock) -> None:
    def off(conversation_id: int) -> tuple[str, ...]:
        conversation = history.get_conversation(conversation_id)
        assert conversation is not None
        return conversation.tools_off

    chat = history.create_conversation(title="With tools")
    other = history.create_conversation(title="Other")
    assert off(chat.id) == ()
    history.set_tools_off(chat.id, {"time", "files", "bad\nname", ""})
    assert off(chat.id) == ("files", "time")
    assert history.get_conversation(chat.id) == replace(chat, tools_off=("files", "time"))
    assert off(other.id) == ()
    history.set_tools_off(chat.id, ())
    assert off(chat.id) == ()


def test_create_get_list_rename_delete(history: History, clock: FakeClock) -> None:
    first = history.create_conversation(
        title="First", profile="work", provider="openai", model="gpt-4o", system_prompt="Be brief."
    )
    clock.advance(1)
    second = history.create_conversation(title="Second")
    assert first.title == "First"
    assert (first.profile, first.provider, first.model) == ("work", "openai", "gpt-4o")
    assert first.system_prompt == "Be brief."
    assert history.get_conversation(first.id) == first
    assert history.get_conversation(999) is None

    assert [c.id for c in history.list_conversations()] == [second.id, first.id]
    assert history.latest_conversation() == second

    clock.advance(1)
    history.add_message(first.id, "user", "bump")
    assert [c.id for c in history.list_conversations()] == [first.id, second.id]
    assert [c.id for c in history.list_conversations(limit=1)] == [first.id]
    assert [c.id for c in history.list_conversations(limit=1, offset=1)] == [second.id]

    clock.advance(1)
    history.rename_conversation(second.id, "  Renamed  ")
    renamed = history.get_conversation(second.id)
    assert renamed is not None
    assert renamed.title == "Renamed"
    assert renamed.updated_at < clock.now  # renaming is not activity: the order stays
    assert [c.id for c in history.list_conversations()] == [first.id, second.id]
    history.rename_conversation(12345, "nobody")  # gone: ignored

    history.delete_conversation(first.id)
    assert history.get_conversation(first.id) is None
    assert history.messages(first.id) == []
    assert [c.id for c in history.list_conversations()] == [second.id]
    history.delete_conversation(first.id)  # twice is fine


def test_empty_history(history: History) -> None:
    assert history.list_conversations() == []
    assert history.latest_conversation() is None


def test_title_from_first_user_prompt(history: History) -> None:
    conversation = history.create_conversation()
    assert conversation.title == ""
    history.add_message(conversation.id, "system", "You are helpful.")
    assert conversation_of(history, conversation.id).title == ""
    history.add_message(conversation.id, "user", "\n\n  How do   I bake bread?\nWith details.")
    history.add_message(conversation.id, "user", "Second prompt")
    assert conversation_of(history, conversation.id).title == "How do I bake bread?"


def test_given_title_is_kept(history: History) -> None:
    conversation = history.create_conversation(title="Mine")
    history.add_message(conversation.id, "user", "Something else")
    assert conversation_of(history, conversation.id).title == "Mine"


def test_title_is_clipped() -> None:
    long = "word " * 40
    title = title_from_prompt(long)
    assert len(title) <= 60
    assert title.endswith("…")
    assert title_from_prompt("short") == "short"
    assert title_from_prompt("   \n  ") == ""


def test_titles_are_cut_between_words() -> None:
    from desktop_app.core.history import shorten

    title = title_from_prompt("Explain how rivers carve canyons over millions of years of erosion")
    assert title == "Explain how rivers carve canyons over millions of years of…"
    assert shorten("Explain how rivers carve canyons", 20) == "Explain how rivers…"
    assert shorten("Explain how rivers carve", 19) == "Explain how rivers…"  # cut at a space
    assert shorten("Supercalifragilisticexpialidocious", 10) == "Supercali…"  # one long word
    assert shorten("a\n b\tc", 10) == "a b c"
    assert shorten("anything", 1) == "…"


# -- messages and versions ----------------------------------------------------------------


def test_message_fields_round_trip(history: History) -> None:
    conversation = history.create_conversation()
    message = history.add_message(
        conversation.id,
        "assistant",
        "Hi",
        model="llama3",
        provider="ollama",
        input_tokens=12,
        output_tokens=3,
        ttft_s=0.25,
        total_s=1.5,
        cached=True,
        finish_reason="stop",
    )
    assert message.cost is None  # unknown cost stays unknown
    assert message.cached is True
    assert (message.input_tokens, message.output_tokens) == (12, 3)
    assert (message.ttft_s, message.total_s) == (0.25, 1.5)
    assert message.status == "complete"
    assert message.reply_group == message.id
    assert (message.version, message.active, message.version_count) == (1, True, 1)
    assert message.to_message().content == "Hi"

    history.update_message(message.id, cost=0, status="failed", error="boom")
    updated = history.get_message(message.id)
    assert updated is not None
    assert updated.cost == 0.0
    assert (updated.status, updated.error) == ("failed", "boom")


def test_message_validation(history: History) -> None:
    conversation = history.create_conversation()
    with pytest.raises(ValueError):
        history.add_message(conversation.id, "robot", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        history.add_message(conversation.id, "user", "x", status="done")  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        history.add_message(4242, "user", "x")
    message = history.add_message(conversation.id, "user", "x")
    with pytest.raises(TypeError):
        history.update_message(message.id, colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        history.update_message(message.id, input_tokens="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        history.update_message(message.id, status="nope")  # type: ignore[arg-type]
    history.update_message(987654, content="gone")  # a deleted message is ignored


def test_versions_and_switching(history: History) -> None:
    conversation = history.create_conversation()
    question = history.add_message(conversation.id, "user", "Tell me a joke")
    first = history.add_message(conversation.id, "assistant", "Joke one", model="m1")
    follow_up = history.add_message(conversation.id, "user", "Another")
    last = history.add_message(conversation.id, "assistant", "Joke A")

    second = history.add_version(first.reply_group, "Joke two", model="m2", status="streaming")
    third = history.add_message(
        conversation.id, "assistant", "Joke three", reply_group=first.reply_group
    )
    assert second.role == "assistant"
    assert (second.reply_group, second.version, second.active) == (first.id, 2, True)
    assert (third.version, third.version_count) == (3, 3)

    # a new version of an earlier reply starts a branch: the follow-up stays under "Joke one"
    shown = history.messages(conversation.id)
    assert [m.id for m in shown] == [question.id, third.id]
    assert shown[1].version_count == 3
    assert third.parent_id == first.parent_id == question.id

    versions = history.versions(first.reply_group)
    assert [m.id for m in versions] == [first.id, second.id, third.id]
    assert [m.active for m in versions] == [False, False, True]

    history.set_active_version(first.id)
    shown = history.messages(conversation.id)
    assert [m.content for m in shown] == ["Tell me a joke", "Joke one", "Another", "Joke A"]
    assert [m.id for m in shown] == [question.id, first.id, follow_up.id, last.id]
    assert [m.active for m in history.versions(first.reply_group)] == [True, False, False]

    with pytest.raises(LookupError):
        history.set_active_version(55555)
    with pytest.raises(LookupError):
        history.add_version(55555, "x")
    with pytest.raises(LookupError):
        history.add_message(conversation.id, "assistant", "x", reply_group=second.id)
    with pytest.raises(ValueError):
        history.add_message(conversation.id, "user", "x", reply_group=first.reply_group)
    other = history.create_conversation()
    with pytest.raises(LookupError):
        history.add_message(other.id, "assistant", "x", reply_group=first.reply_group)


def test_recover_interrupted_on_reopen(db_path: Path) -> None:
    with History(db_path) as history:
        conversation = history.create_conversation()
        streaming = history.add_message(conversation.id, "assistant", "par", status="streaming")
        done = history.add_message(conversation.id, "assistant", "full")
        assert history.recover_interrupted() == 1
        history.update_message(streaming.id, status="streaming")
    with History(db_path) as history:
        assert message_of(history, streaming.id).status == "interrupted"
        assert message_of(history, done.id).status == "complete"
        assert history.recover_interrupted() == 0


# -- streaming writer ---------------------------------------------------------------------


def test_streaming_writer_writes_at_most_every_interval(history: History) -> None:
    conversation = history.create_conversation()
    message = history.add_message(conversation.id, "assistant", "", status="streaming")
    writes: list[dict[str, Any]] = []
    real_update = history.update_message

    def spy(message_id: int, **fields: Any) -> None:
        writes.append(fields)
        real_update(message_id, **fields)

    history.update_message = spy  # type: ignore[method-assign]
    tick = FakeClock(100.0)
    writer = StreamingWriter(history, message.id, interval_s=0.5, clock=tick)

    def stored() -> str:
        found = history.get_message(message.id)
        assert found is not None
        return found.content

    assert writer.append("Hel") is False
    tick.advance(0.3)
    assert writer.append("lo") is False
    assert stored() == "" and writes == []
    tick.advance(0.2)
    assert writer.append(",") is True
    assert stored() == "Hello,"
    assert writes == [{"content": "Hello,", "status": "streaming"}]

    tick.advance(0.49)
    assert writer.append(" wor") is False
    assert writer.append("") is False
    tick.advance(0.009)
    assert writer.append("ld") is False
    assert len(writes) == 1
    tick.advance(0.002)
    assert writer.append("!") is True
    assert stored() == "Hello, world!"

    tick.advance(0.1)
    writer.append(" More")
    assert stored() == "Hello, world!"
    writer.flush()
    assert stored() == "Hello, world! More"
    count = len(writes)
    writer.flush()  # nothing new: no write
    assert len(writes) == count

    writer.append(" End.")
    writer.finish("complete", output_tokens=7, finish_reason="stop", total_s=2.0)
    final = history.get_message(message.id)
    assert final is not None
    assert final.content == "Hello, world! More End."
    assert writer.content == final.content
    assert (final.status, final.output_tokens, final.finish_reason) == ("complete", 7, "stop")
    assert final.total_s == 2.0
    assert writes[-1]["status"] == "complete"
    with pytest.raises(RuntimeError):
        writer.append("late")


def test_streaming_writer_finish_without_text(history: History) -> None:
    conversation = history.create_conversation()
    message = history.add_message(conversation.id, "assistant", "", status="streaming")
    writer = StreamingWriter(history, message.id, clock=FakeClock())
    writer.finish("cancelled")
    final = history.get_message(message.id)
    assert final is not None
    assert (final.content, final.status) == ("", "cancelled")


_KILL_SCRIPT = """
import sys, time
from collections.abc import Iterator
from pathlib import Path
from desktop_app.core.history import History, StreamingWriter

history = History(Path(sys.argv[1]))
conversation = history.create_conversation(title="kill -9")
message = history.add_message(conversation.id, "assistant", "", status="streaming")
print(f"MESSAGE {message.id}", flush=True)
writer = StreamingWriter(history, message.id, interval_s=0.05)
deadline = time.monotonic() + 60
i = 0
while time.monotonic() < deadline:
    wrote = writer.append(f"<{i}>")
    i += 1
    if wrote:
        print(f"WROTE {i}", flush=True)
    time.sleep(0.001)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_loses_at_most_the_last_interval(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("MESSAGE "), process.stderr.read() if process.stderr else first
        message_id = int(first.split()[1])
        announced = 0
        for _ in range(3):
            line = process.stdout.readline()
            assert line.startswith("WROTE "), line
            announced = int(line.split()[1])
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == -signal.SIGKILL

    with History(db_path) as history:
        message = history.get_message(message_id)
        assert message is not None
        assert message.status == "interrupted"
        tokens = re.findall(r"<(\d+)>", message.content)
        assert message.content == "".join(f"<{n}>" for n in range(len(tokens)))
        assert len(tokens) >= announced


# -- search -------------------------------------------------------------------------------


@pytest.fixture
def searchable(history: History) -> History:
    coffee = history.create_conversation(title="Coffee")
    history.add_message(coffee.id, "user", "Where is the best café in town?")
    history.add_message(coffee.id, "assistant", "Try the crème brûlée at Café Zoë, or email a:b.")
    misc = history.create_conversation(title="Misc")
    history.add_message(misc.id, "user", "Explain foo-bar naming and the *star* operator")
    history.add_message(misc.id, "assistant", 'He said "quoted words" about résumé writing.')
    return history


def test_search_finds_and_marks(searchable: History) -> None:
    hits = searchable.search("cafe")
    assert {hit.conversation_title for hit in hits} == {"Coffee"}
    assert len(hits) == 2
    assert all("[" in hit.snippet and "]" in hit.snippet for hit in hits)
    assert any("[Café]" in hit.snippet for hit in hits)
    assert hits == sorted(hits, key=lambda hit: hit.rank)
    hit = hits[0]
    message = searchable.get_message(hit.message_id)
    assert message is not None
    assert (message.conversation_id, message.role) == (hit.conversation_id, hit.role)

    marked = searchable.search("resume", marks=("<b>", "</b>"))
    assert len(marked) == 1
    assert "<b>résumé</b>" in marked[0].snippet


def test_search_ignores_diacritics_both_ways(searchable: History) -> None:
    assert len(searchable.search("creme brulee zoe")) == 1
    assert len(searchable.search("CRÈME")) == 1
    conversation = searchable.create_conversation()
    searchable.add_message(conversation.id, "user", "plain cafe")
    assert len(searchable.search("café ")) == 3


def test_search_prefix_on_last_word(searchable: History) -> None:
    assert len(searchable.search("opera")) == 1  # operator
    assert searchable.search("opera ") == []  # trailing space: whole word only
    assert searchable.search("naming operat") != []
    assert searchable.search("naming operat ") == []


def test_search_phrases(searchable: History) -> None:
    assert len(searchable.search('"quoted words"')) == 1
    assert searchable.search('"words quoted"') == []
    assert len(searchable.search("foo-bar")) == 1
    assert len(searchable.search("a:b")) == 1


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced',
        'quoted"',
        '""',
        "*",
        "**star**",
        "-foo",
        "a:b",
        "content:foo",
        "foo AND",
        "OR",
        "NOT foo",
        "NEAR(foo bar)",
        "(foo",
        "foo)",
        "^foo",
        "+",
        "'",
        "\\",
        "{foo}",
        "\x00",
        "🙂 emoji",
        "___",
        "a" * 500,
    ],
)
def test_awkward_queries_never_raise(searchable: History, query: str) -> None:
    hits = searchable.search(query)
    assert isinstance(hits, list)


def test_awkward_queries_still_match_words(searchable: History) -> None:
    assert len(searchable.search("-foo")) == 1
    assert len(searchable.search("**star**")) == 1
    assert len(searchable.search('"quoted words')) == 1
    assert len(searchable.search('quoted" "words')) == 1


@pytest.mark.parametrize("query", ["", "   ", "*", '"', "-", ":", "()"])
def test_empty_queries_return_nothing(searchable: History, query: str) -> None:
    assert searchable.search(query) == []
    assert fts_query(query) is None


def test_search_follows_updates_and_deletes(history: History, db_path: Path) -> None:
    conversation = history.create_conversation()
    message = history.add_message(conversation.id, "assistant", "alpha")
    history.add_version(message.reply_group, "gamma")
    history.update_message(message.id, content="beta")
    assert history.search("alpha") == []
    assert [hit.message_id for hit in history.search("beta")] == [message.id]
    assert len(history.search("gamma")) == 1  # every version is searchable
    history.update_message(message.id, status="failed")  # not a content change
    assert len(history.search("beta")) == 1

    history.delete_conversation(conversation.id)
    assert history.search("beta") == []
    assert history.search("gamma") == []
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        rows = conn.execute("SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'beta'")
        assert rows.fetchone()[0] == 0
    conn.close()


def _indexed(path: Path) -> set[int]:
    """The messages the search index holds (FTS5's table of document sizes: one row each)."""
    with contextlib.closing(raw(path)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM messages_fts_docsize")}


def _index_matches_messages(path: Path) -> None:
    """FTS5's own check that the index holds exactly what the messages table holds."""
    with contextlib.closing(raw(path)) as conn:
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")


def test_a_streaming_reply_is_indexed_once_when_it_ends(history: History, db_path: Path) -> None:
    """Saving a streaming reply's text does no search-index work; the text it ends with is
    indexed once, and no word of a text it had on the way (a restarted attempt's) is left."""
    chat = history.create_conversation()
    prompt = history.add_message(chat.id, "user", "Tell me about rivers")
    reply = history.add_message(chat.id, "assistant", "", status="streaming")
    assert _indexed(db_path) == {prompt.id}
    for text in ("Rivers", "Rivers carry silt", "Glaciers instead"):  # the last: a restart
        history.update_message(reply.id, content=text, status="streaming")
        assert _indexed(db_path) == {prompt.id}
        assert history.search("glaciers") == []
    history.update_message(reply.id, content="Glaciers carve valleys", status="complete")
    assert _indexed(db_path) == {prompt.id, reply.id}
    assert _found(history, "glaciers valleys") == {reply.id}
    assert history.search("silt") == []
    _index_matches_messages(db_path)


def test_continuing_a_reply_takes_it_out_of_the_index_until_it_ends(
    history: History, db_path: Path
) -> None:
    chat = history.create_conversation()
    reply = history.add_message(chat.id, "assistant", "The delta spreads")
    assert _found(history, "delta") == {reply.id}
    history.update_message(reply.id, status="streaming")  # Continue: the same message grows
    assert _indexed(db_path) == set()
    history.update_message(reply.id, content="The delta spreads into marshes", status="streaming")
    history.update_message(
        reply.id, content="The delta spreads into marshes and lagoons", status="cancelled"
    )
    assert _found(history, "marshes lagoons") == _found(history, "delta") == {reply.id}
    _index_matches_messages(db_path)
    history.update_message(reply.id, content="Only lagoons")  # an edit of a finished text
    assert history.search("delta") == [] and _found(history, "lagoons") == {reply.id}
    _index_matches_messages(db_path)


def test_a_streaming_reply_deleted_or_left_by_a_crash_keeps_the_index_whole(
    db_path: Path, clock: FakeClock
) -> None:
    with History(db_path, clock=clock) as history:
        chat = history.create_conversation()
        kept = history.add_message(chat.id, "assistant", "", status="streaming")
        history.update_message(kept.id, content="Half an answer about tides", status="streaming")
        gone = history.create_conversation()
        dropped = history.add_message(gone.id, "assistant", "", status="streaming")
        history.update_message(dropped.id, content="Tides twice a day", status="streaming")
        history.delete_conversation(gone.id)
        assert _indexed(db_path) == set()
    # the process died mid-reply: the next open marks the reply interrupted, and indexes it
    with History(db_path, clock=clock) as history:
        assert history.messages(chat.id)[0].status == "interrupted"
        assert _found(history, "tides") == {kept.id}
    _index_matches_messages(db_path)


SCHEMA_8_TRIGGERS = """
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
"""


def test_a_schema_8_history_takes_its_streaming_replies_out_of_the_index(
    db_path: Path, clock: FakeClock
) -> None:
    """A history of the previous version (schema 8) indexed every save of a streaming
    reply; after the update the index holds no streaming reply, and search still finds
    each message once."""
    with History(db_path, clock=clock) as history:
        chat = history.create_conversation()
        answer = history.add_message(chat.id, "assistant", "Estuaries mix salt and fresh water")
        streaming = history.add_message(chat.id, "assistant", "")
    with contextlib.closing(raw(db_path)) as conn:  # back to schema 8's triggers
        for name in ("insert", "delete", "update", "stream_begins", "stream_ends"):
            conn.execute(f"DROP TRIGGER messages_fts_{name}")
        conn.executescript(SCHEMA_8_TRIGGERS)
        conn.execute(
            "UPDATE messages SET content = 'Estuaries shelter young fish', status = 'streaming'"
            " WHERE id = ?",
            (streaming.id,),
        )
        conn.execute("PRAGMA user_version = 8")
    assert _indexed(db_path) == {answer.id, streaming.id}

    with History(db_path, clock=clock) as history:
        assert history.schema_version == SCHEMA_VERSION == 9
        # the open also found the reply still streaming (its process is gone): interrupted
        assert history.get_message(streaming.id).status == "interrupted"  # type: ignore[union-attr]
        assert _found(history, "estuaries") == {answer.id, streaming.id}
        assert _found(history, "fish") == {streaming.id}
    _index_matches_messages(db_path)


def test_search_limit(history: History) -> None:
    conversation = history.create_conversation()
    for n in range(10):
        history.add_message(conversation.id, "user", f"repeat {n}")
    assert len(history.search("repeat", limit=3)) == 3
    assert history.search("repeat", limit=0) == []


# -- export and import --------------------------------------------------------------------


def _sample(history: History, clock: FakeClock) -> int:
    conversation = history.create_conversation(
        profile="home", provider="ollama", model="llama3", system_prompt="Be kind."
    )
    history.add_message(conversation.id, "user", "What is *Rill*?\n\nAnswer briefly.")
    clock.advance(1.25)
    reply = history.add_message(
        conversation.id,
        "assistant",
        "A chat client.",
        model="llama3",
        provider="ollama",
        input_tokens=10,
        output_tokens=4,
        ttft_s=0.1,
        total_s=0.5,
        finish_reason="stop",
    )
    clock.advance(2)
    history.add_version(
        reply.reply_group,
        "A desktop chat client",
        status="cancelled",
        model="gpt-4o",
        provider="openai",
        cost=0.0012,
        cached=True,
    )
    history.add_version(reply.reply_group, "Half an ans", status="interrupted", model="gpt-4o")
    history.set_active_version(reply.id + 1)
    history.add_message(conversation.id, "user", "Thanks")
    history.add_message(
        conversation.id, "assistant", "", status="failed", error="The server had a problem."
    )
    return conversation.id


def test_export_markdown(history: History, clock: FakeClock) -> None:
    conversation_id = _sample(history, clock)
    assert history.export_markdown(conversation_id) == (
        "# What is *Rill*?\n\n"
        "**System prompt**\n\nBe kind.\n\n"
        "**You**\n\nWhat is *Rill*?\n\nAnswer briefly.\n\n"
        "**Assistant (gpt-4o)** _(cancelled)_\n\nA desktop chat client\n\n"
        "**You**\n\nThanks\n\n"
        "**Assistant (llama3)** _(failed)_\n\n\n"
    )
    with pytest.raises(LookupError):
        history.export_markdown(999)


def test_export_json_shape(history: History, clock: FakeClock) -> None:
    conversation_id = _sample(history, clock)
    exported = history.export_json(conversation_id)
    assert exported["format"] == "rill.conversation"
    assert exported["version"] == 1
    assert exported["conversation"]["title"] == "What is *Rill*?"
    assert exported["conversation"]["model"] == "llama3"
    assert exported["conversation"]["created_at"].startswith("2023-11-14T22:13:20")
    messages = exported["messages"]
    assert [(m["group"], m["version"], m["active"]) for m in messages] == [
        (1, 1, True),
        (2, 1, False),
        (2, 2, True),
        (2, 3, False),
        (3, 1, True),
        (4, 1, True),
    ]
    assert messages[2]["cost"] == 0.0012
    assert messages[1]["cost"] is None
    assert messages[2]["cached"] is True
    # export numbers, not database ids: each message after its parent
    assert [(m["id"], m["parent"]) for m in messages] == [
        (1, None),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 3),
        (6, 5),
    ]
    json.dumps(exported)  # JSON-ready


def test_json_round_trip(history: History, clock: FakeClock) -> None:
    original_id = _sample(history, clock)
    exported = history.export_json(original_id)
    imported_id = history.import_json(json.dumps(exported))
    assert imported_id != original_id
    again = history.export_json(imported_id)
    exported.pop("exported_at")
    again.pop("exported_at")
    assert again == exported

    original = history.messages(original_id)
    copy = history.messages(imported_id)
    assert [(m.role, m.content, m.status, m.version, m.version_count) for m in copy] == [
        (m.role, m.content, m.status, m.version, m.version_count) for m in original
    ]
    assert {m.id for m in copy}.isdisjoint({m.id for m in original})
    assert all(m.conversation_id == imported_id for m in copy)
    meta = history.get_conversation(imported_id)
    source = history.get_conversation(original_id)
    assert meta is not None and source is not None
    assert (meta.title, meta.profile, meta.provider, meta.model, meta.system_prompt) == (
        source.title,
        source.profile,
        source.provider,
        source.model,
        source.system_prompt,
    )
    assert meta.created_at == pytest.approx(source.created_at, abs=1e-6)
    # Versions keep working after import.
    group = copy[1].reply_group
    history.add_version(group, "A fourth take")
    assert [m.version for m in history.versions(group)] == [1, 2, 3, 4]
    assert history.search("fourth")[0].conversation_id == imported_id


def test_import_accepts_dict_and_fills_defaults(history: History) -> None:
    conversation_id = history.import_json(
        {
            "format": "rill.conversation",
            "version": 1,
            "messages": [
                {"role": "user", "content": "hi", "created_at": "2024-01-02T03:04:05Z"},
                {"role": "assistant", "content": "part", "status": "streaming"},
            ],
        }
    )
    messages = history.messages(conversation_id)
    assert [m.content for m in messages] == ["hi", "part"]
    assert messages[0].created_at == 1704164645.0
    assert messages[1].status == "interrupted"
    assert messages[0].reply_group != messages[1].reply_group


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"format": "other", "version": 1, "messages": []}, '"format"'),
        ({"format": "rill.conversation", "version": 7, "messages": []}, "newer Rill"),
        ({"format": "rill.conversation", "version": "1", "messages": []}, '"version"'),
        ({"format": "rill.conversation", "version": 1}, '"messages" must be a list'),
        ({"format": "rill.conversation", "version": 1, "messages": [1]}, "messages[0]"),
        (
            {"format": "rill.conversation", "version": 1, "messages": [{"role": "x"}]},
            "messages[0].role",
        ),
        (
            {"format": "rill.conversation", "version": 1, "messages": [{"role": "user"}]},
            "messages[0].content",
        ),
        (
            {
                "format": "rill.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "status": "weird"}],
            },
            "messages[0].status",
        ),
        (
            {
                "format": "rill.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "input_tokens": "ten"}],
            },
            "input_tokens",
        ),
        (
            {
                "format": "rill.conversation",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "created_at": "yesterday"}],
            },
            "ISO 8601",
        ),
        (
            {
                "format": "rill.conversation",
                "version": 1,
                "messages": [
                    {"role": "assistant", "content": "a", "group": 1, "version": 1},
                    {"role": "assistant", "content": "b", "group": 1, "version": 1},
                ],
            },
            "same version number",
        ),
        (
            {
                "format": "rill.conversation",
                "version": 1,
                "messages": [
                    {"role": "assistant", "content": "a", "group": 1, "version": 1},
                    {"role": "assistant", "content": "b", "group": 1, "version": 2},
                ],
            },
            "more than one active",
        ),
        (
            {"format": "rill.conversation", "version": 1, "conversation": [], "messages": []},
            '"conversation" must be an object',
        ),
    ],
)
def test_import_rejects_invalid_data(history: History, data: Any, problem: str) -> None:
    with pytest.raises(ImportFormatError) as caught:
        history.import_json(data)
    assert isinstance(caught.value, ValueError)
    assert problem in str(caught.value)
    assert history.list_conversations() == []  # nothing half-imported


# -- migrations ---------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    profile TEXT NOT NULL DEFAULT 'default',
    provider TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    system_prompt TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete',
    model TEXT,
    provider TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost REAL,
    ttft_s REAL,
    total_s REAL,
    cached INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    finish_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, id);
CREATE INDEX conversations_updated ON conversations(updated_at);
INSERT INTO conversations (title, created_at, updated_at, model)
    VALUES ('Old chat', 1000.0, 1002.0, 'gpt-3.5');
INSERT INTO messages (conversation_id, role, content, created_at, updated_at)
    VALUES (1, 'user', 'Über naïve question', 1000.0, 1000.0);
INSERT INTO messages (conversation_id, role, content, status, model, cost, output_tokens,
                      created_at, updated_at)
    VALUES (1, 'assistant', 'An old answer', 'complete', 'gpt-3.5', NULL, 5, 1001.0, 1001.0);
INSERT INTO messages (conversation_id, role, content, status, created_at, updated_at)
    VALUES (1, 'assistant', 'cut off', 'streaming', 1002.0, 1002.0);
PRAGMA user_version = 1;
"""


def test_migrates_a_v1_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(V1_SCHEMA)
    conn.close()

    with History(db_path) as history:
        assert history.recovered_from is None
        assert history.schema_version == SCHEMA_VERSION == 9
        conversation = history.latest_conversation()
        assert conversation is not None
        assert (conversation.title, conversation.model) == ("Old chat", "gpt-3.5")
        messages = history.messages(conversation.id)
        assert [m.content for m in messages] == ["Über naïve question", "An old answer", "cut off"]
        assert all(m.reply_group == m.id and m.version == 1 and m.active for m in messages)
        assert messages[1].cost is None and messages[1].output_tokens == 5
        assert messages[2].status == "interrupted"
        assert [hit.message_id for hit in history.search("uber naive")] == [messages[0].id]
        new = history.add_version(messages[1].reply_group, "A new answer")
        assert [m.id for m in history.messages(conversation.id)][1] == new.id

    with History(db_path) as history:  # already current: nothing to do
        assert history.schema_version == SCHEMA_VERSION


def _fts_sql(path: Path) -> str:
    conn = raw(path)
    try:
        return str(
            conn.execute("SELECT sql FROM sqlite_master WHERE name = 'messages_fts'").fetchone()[0]
        )
    finally:
        conn.close()


def _found(history: History, query: str) -> set[int]:
    return {hit.message_id for hit in history.search(query)}


def test_a_schema_7_database_is_indexed_again_with_the_beginnings_of_words(
    db_path: Path,
) -> None:
    """A history written by the previous version (schema 7) gets the search index with
    prefix indexes: every prefix finds what it found before, and the index follows the
    edits made after (FTS5's own integrity check compares it with the messages)."""
    db_path.parent.mkdir(parents=True)
    shutil.copy(DATA / "history_v7.sqlite3", db_path)
    conn = raw(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 7
    conn.close()
    assert "prefix" not in _fts_sql(db_path)

    with History(db_path) as history:
        assert history.recovered_from is None
        assert history.schema_version == SCHEMA_VERSION == 9
        # 1 "Which bridge is the oldest in Zürich?", 2 and 3 two versions of a reply about
        # the bridge, 4 "Bring me a brief summary…", 5 "Boats rest against…"
        assert _found(history, "b") == {1, 2, 3, 4, 5}
        assert _found(history, "br") == _found(history, "bri") == {1, 2, 3, 4}
        assert _found(history, "brid") == {1, 2, 3}
        assert _found(history, "bright") == {2}
        assert _found(history, "zu") == {1}  # Zürich, accents ignored
        assert _found(history, "oldest b") == {1, 2, 3}

        chat = history.create_conversation(title="Weather")
        added = history.add_message(chat.id, "user", "A brisk breeze on the bay")
        assert _found(history, "bris") == {added.id}
        history.update_message(4, content="Give me the walk along the harbour.")
        assert _found(history, "bri") == {1, 2, 3, added.id}
        history.delete_conversation(chat.id)
        assert _found(history, "b") == {1, 2, 3, 5}
    assert "prefix='1 2 3'" in _fts_sql(db_path)
    conn = raw(db_path)
    conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    conn.close()


def test_a_new_history_has_the_prefix_indexes(history: History, db_path: Path) -> None:
    chat = history.create_conversation()
    first = history.add_message(chat.id, "user", "Bridges and brooks")
    assert _found(history, "b") == _found(history, "bro") == {first.id}
    assert "prefix='1 2 3'" in _fts_sql(db_path)


def test_failed_migration_rolls_back_and_moves_file_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    # Claims v1 but already has a column the v2 step adds.
    conn.executescript(V1_SCHEMA + "ALTER TABLE messages ADD COLUMN version INTEGER;")
    conn.close()
    with History(db_path) as history:
        assert history.recovered_from is not None
        assert history.list_conversations() == []
    with raw(history.recovered_from) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 1
        assert old.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 3
    old.close()


# -- recovery from unusable files ---------------------------------------------------------


def _damaged_history(db_path: Path) -> bytes:
    """A history of 300 messages closed cleanly, then one of its pages overwritten (the
    header is intact, so only SQLite's integrity check finds it); returns the page."""
    with History(db_path) as history:
        conversation = history.create_conversation(title="kept")
        for number in range(300):
            history.add_message(conversation.id, "user", f"message number {number} " * 20)
    page = b"\xff" * 4096
    with db_path.open("r+b") as file:
        file.seek(4096 * 5)
        file.write(page)
    return page


def test_a_damaged_page_is_found_at_open_and_the_file_moved_aside(db_path: Path) -> None:
    page = _damaged_history(db_path)
    with History(db_path) as history:
        assert history.recovered_from is not None
        assert "integrity check failed" in (history.recovered_reason or "")
        assert history.recovered_from.read_bytes()[4096 * 5 : 4096 * 6] == page
        assert history.list_conversations() == []


def test_opened_unchecked_the_damage_is_found_by_verify_and_set_aside_at_the_next_open(
    db_path: Path,
) -> None:
    page = _damaged_history(db_path)
    history = History(db_path, check_on_open=False)
    try:
        assert history.recovered_from is None
        assert not history.check_marker.exists()
        problem = history.verify()
        assert problem is not None and "integrity check failed" in problem
        assert "Page 6" in problem
        assert history.check_marker.exists()
    finally:
        history.close()
    # the marker makes even an unchecked open check the file first
    with History(db_path, check_on_open=False) as history:
        moved = history.recovered_from
        assert moved is not None
        assert moved.read_bytes()[4096 * 5 : 4096 * 6] == page
        assert not history.check_marker.exists()
        assert history.list_conversations() == []
        assert history.verify() is None
    with History(db_path, check_on_open=False) as history:
        assert history.recovered_from is None


def test_damage_met_while_reading_is_said_and_checked_at_the_next_open(db_path: Path) -> None:
    _damaged_history(db_path)
    with History(db_path, check_on_open=False) as history:
        with pytest.raises(HistoryError) as raised:
            history.list_conversations()
        assert "is damaged" in raised.value.message
        assert "restart Rill" in (raised.value.action or "")
        assert history.check_marker.exists()
    with History(db_path, check_on_open=False) as history:
        assert history.recovered_from is not None
        assert history.list_conversations() == []


def test_an_upgrade_is_known_from_the_files_header(db_path: Path) -> None:
    assert not History.upgrade_pending(db_path)  # no file yet
    db_path.parent.mkdir(parents=True)
    shutil.copy(DATA / "history_v7.sqlite3", db_path)
    assert History.upgrade_pending(db_path)
    History(db_path).close()
    assert not History.upgrade_pending(db_path)
    with raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    assert not History.upgrade_pending(db_path)  # newer: moved aside, not updated
    db_path.write_bytes(b"not a database" * 10)
    assert not History.upgrade_pending(db_path)


def test_a_marked_file_that_checks_out_is_kept_and_unmarked(db_path: Path) -> None:
    with History(db_path) as history:
        history.create_conversation(title="kept")
        assert history.verify() is None
        assert not history.check_marker.exists()
        history.check_marker.write_text("the integrity check failed: a disk hiccup\n")
    with History(db_path, check_on_open=False) as history:
        assert history.recovered_from is None
        assert not history.check_marker.exists()
        assert [c.title for c in history.list_conversations()] == ["kept"]


def test_verify_reads_beside_a_save_in_progress(db_path: Path) -> None:
    """The check has its own connection: it runs while another thread holds the store's
    lock in a write transaction (a save), and the save commits after it."""
    with History(db_path, check_on_open=False) as history:
        conversation = history.create_conversation(title="t")

        @contextlib.contextmanager
        def saving() -> Iterator[None]:
            with history._write() as conn:
                conn.execute(
                    "UPDATE conversations SET title = 'saved' WHERE id = ?", (conversation.id,)
                )
                yield

        with while_held(saving):
            assert history.verify() is None
        assert [c.title for c in history.list_conversations()] == ["saved"]


def test_random_bytes_are_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = os.urandom(8192)
    db_path.write_bytes(garbage)
    Path(f"{db_path}-wal").write_bytes(b"old wal")
    Path(f"{db_path}-shm").write_bytes(b"old shm")

    with History(db_path) as history:
        moved = history.recovered_from
        assert moved is not None
        assert re.fullmatch(r"history\.sqlite3\.corrupt-\d{8}-\d{6}", moved.name)
        assert moved.parent == db_path.parent
        assert moved.read_bytes() == garbage
        assert Path(f"{moved}-wal").read_bytes() == b"old wal"
        assert Path(f"{moved}-shm").read_bytes() == b"old shm"
        assert history.recovered_reason
        conversation = history.create_conversation(title="fresh")
        history.add_message(conversation.id, "user", "works")
        assert len(history.search("works")) == 1

    with History(db_path) as history:
        assert history.recovered_from is None
        assert [c.title for c in history.list_conversations()] == ["fresh"]


def test_damaged_pages_are_moved_aside(db_path: Path) -> None:
    with History(db_path) as history:
        conversation = history.create_conversation()
        for n in range(200):
            history.add_message(conversation.id, "user", f"message number {n} " * 20)
    data = bytearray(db_path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096 : 5 * 4096] = b"\xa5" * (2 * 4096)
    db_path.write_bytes(bytes(data))

    with History(db_path) as history:
        assert history.recovered_from is not None
        assert history.recovered_from.read_bytes() == bytes(data)
        assert history.list_conversations() == []


def test_newer_schema_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()

    with History(db_path) as history:
        assert history.recovered_from is not None
        assert "newer version" in (history.recovered_reason or "")
        assert history.schema_version == SCHEMA_VERSION
        history.create_conversation(title="fresh")
    with raw(history.recovered_from) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
    old.close()


def test_two_recoveries_in_the_same_second_keep_both_files(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    moved: list[Path] = []
    for _ in range(2):
        db_path.write_bytes(b"garbage" * 100)
        with History(db_path) as history:
            assert history.recovered_from is not None
            moved.append(history.recovered_from)
    assert moved[0] != moved[1]
    assert all(path.exists() for path in moved)


def test_unwritable_folder_is_a_history_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HistoryError) as caught:
        History(blocker / "history.sqlite3")
    assert caught.value.action


def test_closed_history_refuses_calls(db_path: Path) -> None:
    history = History(db_path)
    history.close()
    history.close()
    with pytest.raises(RuntimeError):
        history.list_conversations()


# -- concurrency --------------------------------------------------------------------------


def test_threads_share_one_history(history: History) -> None:
    conversation = history.create_conversation()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                message = history.add_message(conversation.id, "user", f"thread {n} item {i}")
                history.update_message(message.id, output_tokens=i)
                history.search(f"thread {n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(history.messages(conversation.id)) == 100


def test_two_connections_write_the_same_file(db_path: Path) -> None:
    with History(db_path) as gui, History(db_path) as cli:
        conversation = gui.create_conversation()
        for n in range(20):
            (gui if n % 2 else cli).add_message(conversation.id, "user", f"line {n}")
        assert [m.content for m in cli.messages(conversation.id)] == [
            f"line {n}" for n in range(20)
        ]


# -- scale --------------------------------------------------------------------------------


def test_indexes_cover_the_hot_queries(history: History) -> None:
    conn = history._connection()
    indexed: set[str] = set()
    for index in conn.execute("PRAGMA index_list('messages')").fetchall():
        columns = conn.execute(f"PRAGMA index_info('{index[1]}')").fetchall()
        indexed.add(columns[0][2])
    assert {"conversation_id", "reply_group"} <= indexed

    def plan(sql: str) -> str:
        return " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (1,)))

    assert "INDEX" in plan("SELECT * FROM messages WHERE conversation_id = ? AND active = 1")
    assert "INDEX" in plan("SELECT * FROM messages WHERE reply_group = ? ORDER BY version")
    assert "INDEX" in plan("SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?")


def test_a_thousand_message_conversation(history: History) -> None:
    messages = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "text " * 50}
        for n in range(1000)
    ]
    conversation_id = history.import_json(
        {"format": "rill.conversation", "version": 1, "messages": messages}
    )
    loaded = history.messages(conversation_id)
    assert len(loaded) == 1000
    assert loaded[-1].content.startswith("turn 999 ")
    assert history.search("turn 500")[0].conversation_id == conversation_id


def test_search_over_a_hundred_thousand_messages(history: History, db_path: Path) -> None:
    conversation = history.create_conversation(title="big")
    words = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]
    conn = raw(db_path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO messages (conversation_id, role, content, reply_group, created_at,"
        " updated_at) VALUES (?, 'user', ?, NULL, 0, 0)",
        (
            (conversation.id, f"{words[n % 8]} {words[n // 8 % 8]} number{n}")
            for n in range(100_000)
        ),
    )
    conn.execute("UPDATE messages SET reply_group = id")
    conn.execute("COMMIT")
    conn.close()

    hits = history.search("number77777")
    assert len(hits) == 1
    assert message_of(history, hits[0].message_id).content.endswith("number77777")
    assert len(history.search("apple banana", limit=50)) == 50


def test_a_very_common_term_ranks_only_the_newest_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import desktop_app.core.history as history_module

    monkeypatch.setattr(history_module, "RANK_WINDOW", 3)
    with History(tmp_path / "h.sqlite3") as history:
        conversation = history.create_conversation(title="t")
        ids = [
            history.add_message(
                conversation.id, "user", f"river number {i} " + "river " * (10 - i)
            ).id
            for i in range(10)
        ]
        hits = history.search("river")
    assert {h.message_id for h in hits} == set(ids[-3:])


# -- the conversation as a tree ------------------------------------------------------------


def _path(history: History, conversation_id: int) -> list[str]:
    return [m.content for m in history.messages(conversation_id)]


def test_each_prompt_version_keeps_its_own_replies(history: History) -> None:
    conversation = history.create_conversation()
    first = history.add_message(conversation.id, "user", "Prompt one")
    answer = history.add_message(conversation.id, "assistant", "Answer to one")
    edited = history.add_version(first.reply_group, "Prompt two")
    assert edited.parent_id is None and (edited.version, edited.version_count) == (2, 2)
    assert _path(history, conversation.id) == ["Prompt two"]  # no reply of its own yet
    reply = history.add_message(conversation.id, "assistant", "Answer to two", after=edited.id)
    assert reply.parent_id == edited.id and reply.reply_group != answer.reply_group
    assert _path(history, conversation.id) == ["Prompt two", "Answer to two"]

    history.set_active_version(first.id)  # ◀ on the prompt
    assert _path(history, conversation.id) == ["Prompt one", "Answer to one"]
    again = history.add_version(answer.reply_group, "Another answer to one")
    assert again.parent_id == first.id and (again.version, again.version_count) == (2, 2)
    shown = history.messages(conversation.id)
    assert [m.content for m in shown] == ["Prompt one", "Another answer to one"]
    assert [(m.version, m.version_count) for m in shown] == [(1, 2), (2, 2)]

    history.set_active_version(edited.id)  # ▶ on the prompt
    shown = history.messages(conversation.id)
    assert [m.content for m in shown] == ["Prompt two", "Answer to two"]
    assert shown[1].version_count == 1

    # adding after a message that has replies makes a new version of them
    third = history.add_message(conversation.id, "assistant", "Third", after=edited.id)
    assert (third.reply_group, third.version) == (reply.reply_group, 2)
    with pytest.raises(LookupError):
        history.add_message(history.create_conversation().id, "user", "x", after=first.id)


def test_migrates_a_v2_database_keeping_replies_under_their_prompts(db_path: Path) -> None:
    from desktop_app.core.history import _MIGRATIONS

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(V1_SCHEMA.replace("PRAGMA user_version = 1;", "DELETE FROM messages;"))
    for statement in _MIGRATIONS[1]:
        conn.execute(statement)
    # Written by a Rill without parents: ask, answer, edit the prompt, answer it, go on.
    rows = [
        (1, "user", "Prompt one", 1, 1, 0),
        (2, "assistant", "Answer to one", 2, 1, 0),
        (3, "user", "Prompt two", 1, 2, 1),
        (4, "assistant", "Answer to two", 2, 2, 1),
        (5, "user", "Next", 5, 1, 1),
        (6, "assistant", "Next answer", 6, 1, 1),
    ]
    for id_, role, content, group, version, active in rows:
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, content, reply_group, version,"
            " active, created_at, updated_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
            (id_, role, content, group, version, active, 1000.0 + id_, 1000.0 + id_),
        )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()

    with History(db_path) as history:
        assert history.recovered_from is None
        assert history.schema_version == SCHEMA_VERSION
        assert _path(history, 1) == ["Prompt two", "Answer to two", "Next", "Next answer"]
        shown = history.messages(1)
        assert (shown[0].version, shown[0].version_count) == (2, 2)
        assert (shown[1].version, shown[1].version_count) == (1, 1)
        history.set_active_version(1)
        assert _path(history, 1) == ["Prompt one", "Answer to one"]
        assert history.get_message(2) is not None and history.get_message(2).active  # type: ignore[union-attr]
        conversation = history.get_conversation(1)
        assert conversation is not None and conversation.base_url == ""


def test_json_round_trip_keeps_the_tree(history: History) -> None:
    conversation = history.create_conversation()
    first = history.add_message(conversation.id, "user", "Prompt one")
    history.add_message(conversation.id, "assistant", "Answer to one")
    edited = history.add_version(first.reply_group, "Prompt two")
    history.add_message(conversation.id, "assistant", "Answer to two", after=edited.id)
    copy = history.import_json(history.export_json(conversation.id))
    assert _path(history, copy) == ["Prompt two", "Answer to two"]
    history.set_active_version(history.messages(copy)[0].id - 1)  # the copy of prompt one
    assert _path(history, copy) == ["Prompt one", "Answer to one"]


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"id": 1, "parent": 2, "role": "user", "content": "a"}], "does not come before"),
        ([{"id": 1, "parent": 1, "role": "user", "content": "a"}], "does not come before"),
        (
            [
                {"id": 1, "parent": None, "role": "user", "content": "a"},
                {"id": 1, "parent": 1, "role": "assistant", "content": "b"},
            ],
            "given twice",
        ),
        (
            [
                {"id": 1, "parent": None, "role": "user", "content": "a", "group": 1},
                {"id": 2, "parent": 1, "role": "user", "content": "b", "group": 1},
            ],
            "different parents",
        ),
        ([{"id": [1], "parent": None, "role": "user", "content": "a"}], "must be a number"),
    ],
)
def test_import_refuses_a_broken_tree(
    history: History, messages: list[dict[str, Any]], problem: str
) -> None:
    data = {"format": "rill.conversation", "version": 1, "messages": messages}
    with pytest.raises(ImportFormatError, match=problem):
        history.import_json(data)
    assert history.list_conversations() == []


def test_estimated_token_counts_are_kept_marked_and_exported(history: History) -> None:
    conv = history.create_conversation(title="estimates").id
    history.add_message(conv, "user", "hi")
    reply = history.add_message(
        conv, "assistant", "an answer", input_tokens=3, output_tokens=2, estimated=True
    )
    stored = history.messages(conv)[-1]
    assert stored.id == reply.id and stored.estimated is True
    exported = history.export_json(conv)
    assert exported["messages"][-1]["estimated"] is True
    again = history.import_json(json.dumps(exported))
    assert history.messages(again)[-1].estimated is True
