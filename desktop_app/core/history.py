"""Conversation history in one SQLite file: conversations, messages, reply versions, search.

The file lives at ``AppPaths.history_db``. It is opened in WAL mode with
``synchronous=FULL``, foreign keys on and a busy timeout, so the GUI and the ``q`` command
can write to it at the same time and a committed write survives a crash or power loss.

Every method is synchronous and thread-safe: one connection, guarded by a lock. Call it
from a worker thread, not from the UI thread.

Records come back as frozen dataclasses. Timestamps are ``time.time()`` floats; only the
exports use ISO 8601 strings.

A conversation is a tree: each message has a parent (the message it follows; ``None``
for the first prompt). The versions of a prompt (an edit) and of a reply (a regeneration)
are siblings, children of the same parent: they form a group (the id of the group's first
message), numbered from 1, and exactly one version of each group is active. Each prompt
version keeps its own replies. :meth:`History.messages` is the shown path: from the first
prompt down, the active child of each message.

A file that cannot be opened, fails ``PRAGMA quick_check`` or has a schema newer than this
code knows is moved aside as ``<name>.corrupt-YYYYmmdd-HHMMSS`` (with its ``-wal`` and
``-shm`` files) and a fresh database is created; :attr:`History.recovered_from` then names
the old file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypedDict, TypeVar, Unpack, cast, get_args

from desktop_app.core.attachments import (
    DEFAULT_LIMITS,
    AttachmentLimits,
    AttachmentRefused,
    attachment_from_bytes,
    check_total,
    human_size,
    safe_name,
)
from desktop_app.core.blobs import AttachmentUnavailable, BlobStore, unloaded, valid_sha256
from desktop_app.core.errors import RillError
from desktop_app.core.redaction import without_url_credentials
from desktop_app.core.store import BUSY_TIMEOUT_S, SqliteStore, lenient_text
from desktop_app.core.text import valid_text
from desktop_app.core.types import (
    Attachment,
    AttachmentKind,
    Message,
    Role,
    ToolCall,
    ToolPart,
)

_T = TypeVar("_T")

MessageStatus = Literal["complete", "streaming", "cancelled", "interrupted", "failed"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
STATUSES: Final[tuple[MessageStatus, ...]] = get_args(MessageStatus)

SCHEMA_VERSION: Final = 9
EXPORT_FORMAT: Final = "rill.conversation"
EXPORT_VERSION: Final = 1
TITLE_LIMIT: Final = 60
RANK_WINDOW: Final = 5000
MAX_SEARCH_TERMS: Final = 32
"""A search uses at most this many distinct words; :attr:`SearchHits.truncated` says so."""
MAX_QUERY_CHARS: Final = 10_000
"""Search text past this many characters is ignored (and the hits say so)."""
MAX_TERM_CHARS: Final = 200
"""A single search word or phrase is cut to this many characters."""
MAX_IMPORT_BYTES: Final = 256 * 1024 * 1024
"""The largest file :meth:`History.import_file` reads (an export carries its attached
files, base64-encoded)."""
MAX_IMPORT_ATTACHMENTS: Final = 100
"""The most files one imported message may carry."""
UNAVAILABLE_LINE: Final = "[file {name} could not be imported]"
"""The line that takes the place of an imported file that was refused."""
# Exported and imported times must be ones a calendar can show: years 1 to 9999.
_FIRST_TIME: Final = -62_135_596_800.0
_LAST_TIME: Final = 253_402_300_799.0


class HistoryError(RillError):
    """The history database could not be read or written."""


class ImportFormatError(RillError, ValueError):
    """The data given to :meth:`History.import_json` is not a Rill conversation export."""

    def __init__(self, problem: str, source: str | os.PathLike[str] | None = None) -> None:
        self.problem = problem
        subject = "This" if source is None else f"The file {os.fspath(source)}"
        super().__init__(
            f"{subject} is not a conversation Rill can import: {problem}.",
            action="Choose a file exported by Rill (Export → JSON).",
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`History.import_conversation` made of an export."""

    conversation_id: int
    problems: tuple[str, ...] = ()
    """A sentence for each attached file that was not imported (naming it and its
    message); the rest of the conversation was imported, and the message says in its
    text that the file is missing."""


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str
    """Empty until given or taken from the first user message."""
    created_at: float
    updated_at: float
    profile: str
    provider: str
    model: str
    system_prompt: str | None
    base_url: str = ""
    """The server address of the last turn ("" for the profile's own)."""
    tools_off: tuple[str, ...] = ()
    """The tool servers the user turned off for this conversation."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: Role
    content: str
    status: MessageStatus
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    """``None`` when the cost is unknown."""
    ttft_s: float | None
    total_s: float | None
    cached: bool
    error: str | None
    finish_reason: str | None
    reply_group: int
    """The id of the first message of this message's version group."""
    version: int
    """1 for the original, 2 for the first regeneration, and so on."""
    active: bool
    version_count: int
    created_at: float
    updated_at: float
    parent_id: int | None = None
    """The message this one follows (``None`` for a first prompt)."""
    estimated: bool = False
    """The token counts are Rill's estimate from the text (the server reported none)."""
    tool_parts: tuple[ToolPart, ...] = ()
    """The tool calls of a reply, in order (filled in by :meth:`History.messages`; see
    :meth:`History.tool_parts` for any message)."""
    attachments: tuple[Attachment, ...] = ()
    """The files sent with a prompt, in the order they were attached, without their bytes
    (``data`` is empty: :meth:`BlobStore.load` reads them)."""

    def to_message(self) -> Message:
        """This message as a request ``Message`` (its attachments without their bytes)."""
        return Message(role=self.role, content=self.content, attachments=self.attachments)

    def to_messages(self) -> list[Message]:
        """This message as the request messages that stand for it: for a reply that used
        tools, each round's text with its calls, the calls' results, then the rest of the
        text."""
        if not self.tool_parts:
            return [self.to_message()]
        out: list[Message] = []
        start = 0
        rounds: dict[int, list[ToolPart]] = {}
        for part in self.tool_parts:
            rounds.setdefault(part.round, []).append(part)
        for parts in rounds.values():
            end = max(start, min(parts[0].offset, len(self.content)))
            calls = tuple(ToolCall(p.call_id, p.exposed, p.arguments) for p in parts)
            out.append(Message("assistant", self.content[start:end], tool_calls=calls))
            out += [
                Message(
                    "tool", p.result, tool_call_id=p.call_id, name=p.exposed, is_error=p.is_error
                )
                for p in parts
            ]
            start = end
        rest = self.content[start:]
        if rest.strip():
            out.append(Message("assistant", rest))
        return out


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int
    role: Role
    snippet: str
    """A short excerpt of the message with each match between the two markers."""
    rank: float
    """FTS5 bm25 rank: lower is a better match."""


class SearchHits(list[SearchHit]):
    """The hits of :meth:`History.search`, best first."""

    truncated: bool = False
    """True when the query was too long and only part of it was searched: its first
    :data:`MAX_SEARCH_TERMS` distinct words within :data:`MAX_QUERY_CHARS` characters."""


@dataclass(frozen=True, slots=True)
class FtsQuery:
    """Free text turned into an FTS5 query by :func:`fts_query`."""

    match: str
    """The FTS5 ``MATCH`` expression: the terms, ANDed."""
    terms: tuple[str, ...]
    truncated: bool
    """Some of the text was left out (see :data:`MAX_SEARCH_TERMS`)."""


class MessageMeta(TypedDict, total=False):
    """Per-message metadata; any field left out stays as it is (or ``None`` on insert)."""

    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    ttft_s: float | None
    total_s: float | None
    cached: bool
    error: str | None
    finish_reason: str | None
    estimated: bool


class MessageUpdate(MessageMeta, total=False):
    content: str
    status: MessageStatus


_META_FIELDS: Final[tuple[str, ...]] = tuple(MessageMeta.__annotations__)
_UPDATE_FIELDS: Final[frozenset[str]] = frozenset((*_META_FIELDS, "content", "status"))
_INT_FIELDS: Final = frozenset({"input_tokens", "output_tokens"})
_FLOAT_FIELDS: Final = frozenset({"cost", "ttft_s", "total_s"})
_TEXT_FIELDS: Final = frozenset({"model", "provider", "error", "finish_reason"})

# Each step takes the schema from version ``i`` to ``i + 1``; they run in one transaction.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            profile TEXT NOT NULL DEFAULT 'default',
            provider TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            system_prompt TEXT
        )
        """,
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL
                REFERENCES conversations(id) ON DELETE CASCADE,
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
        )
        """,
        "CREATE INDEX messages_conversation ON messages(conversation_id, id)",
        "CREATE INDEX conversations_updated ON conversations(updated_at)",
    ),
    (
        "ALTER TABLE messages ADD COLUMN reply_group INTEGER",
        "ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE messages ADD COLUMN active INTEGER NOT NULL DEFAULT 1",
        "UPDATE messages SET reply_group = id",
        "DROP INDEX messages_conversation",
        "CREATE INDEX messages_conversation ON messages(conversation_id, reply_group, version)",
        "CREATE INDEX messages_group ON messages(reply_group, version)",
        "CREATE UNIQUE INDEX messages_active ON messages(reply_group) WHERE active = 1",
        "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content,
            content='messages',
            content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )
        """,
        """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ),
    (
        # A conversation becomes a tree. Each old message follows the latest message of
        # the group before it that was written before it, so a reply stays under the
        # prompt version it answered; groups are then split by parent.
        "ALTER TABLE conversations ADD COLUMN base_url TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN parent_id INTEGER",
        """
        UPDATE messages SET parent_id = (
            SELECT MAX(p.id) FROM messages AS p
            WHERE p.conversation_id = messages.conversation_id
              AND p.id < messages.id
              AND p.reply_group = (
                  SELECT MAX(q.reply_group) FROM messages AS q
                  WHERE q.conversation_id = messages.conversation_id
                    AND q.reply_group < messages.reply_group))
        """,
        "DROP INDEX messages_active",
        """
        CREATE TEMP TABLE rill_regroup AS
            SELECT m.id AS id,
                   (SELECT MIN(s.id) FROM messages AS s
                    WHERE s.reply_group = m.reply_group AND s.parent_id IS m.parent_id) AS grp
            FROM messages AS m
        """,
        """
        UPDATE messages SET reply_group = (
            SELECT grp FROM temp.rill_regroup WHERE temp.rill_regroup.id = messages.id)
        """,
        "DROP TABLE temp.rill_regroup",
        """
        UPDATE messages SET version = (
            SELECT COUNT(*) FROM messages AS s
            WHERE s.reply_group = messages.reply_group AND s.id <= messages.id)
        """,
        """
        UPDATE messages SET active = 1 WHERE id IN (
            SELECT MAX(id) FROM messages GROUP BY reply_group HAVING MAX(active) = 0)
        """,
        "CREATE UNIQUE INDEX messages_active ON messages(reply_group) WHERE active = 1",
        "CREATE INDEX messages_parent ON messages(parent_id)",
    ),
    ("ALTER TABLE messages ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0",),
    (
        """
        CREATE TABLE tool_parts (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            call_id TEXT NOT NULL,
            server TEXT NOT NULL,
            name TEXT NOT NULL,
            exposed TEXT NOT NULL,
            arguments TEXT NOT NULL,
            ok INTEGER NOT NULL,
            result TEXT NOT NULL,
            is_error INTEGER NOT NULL,
            denied INTEGER NOT NULL,
            duration_s REAL NOT NULL,
            round INTEGER NOT NULL,
            text_offset INTEGER NOT NULL,
            PRIMARY KEY (message_id, seq)
        )
        """,
    ),
    (
        # The tool servers the user turned off for a conversation, one name per line.
        "ALTER TABLE conversations ADD COLUMN tools_off TEXT NOT NULL DEFAULT ''",
    ),
    (
        # The files sent with a message; their bytes are in the blob store, by SHA-256.
        """
        CREATE TABLE message_attachments (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            mime TEXT NOT NULL,
            size INTEGER NOT NULL,
            width INTEGER NOT NULL DEFAULT 0,
            height INTEGER NOT NULL DEFAULT 0,
            pages INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (message_id, position)
        )
        """,
        "CREATE INDEX message_attachments_sha ON message_attachments(sha256)",
    ),
    (
        # The search index keeps the first one, two and three characters of every word
        # as words of their own. A search typed letter by letter is a prefix query each
        # time, and without these FTS5 merges the entries of every word that begins so:
        # "b" took 0.4 s over 100,000 messages, "bri" 55 ms; with them both take 20-30 ms,
        # for an index about 45% larger. The triggers name the table, so they carry on.
        "DROP TABLE messages_fts",
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5(
            content,
            content='messages',
            content_rowid='id',
            tokenize='unicode61 remove_diacritics 2',
            prefix='1 2 3'
        )
        """,
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ),
    (
        # A reply is indexed for search once it is no longer streaming. While it streams,
        # its text is saved every half second, whole; indexing each save took the old text
        # out of the index and put the new in, so a reply cost the index work of all its
        # saves, which grows with the square of its length (a 20,000-token reply, 20 saves
        # of up to 125 KB: 77 ms of CPU against 16 ms for the saves alone, in bursts of
        # up to 10 ms beside the window streaming it). The index holds every message whose
        # status is not 'streaming', with the content it has: the triggers below keep that
        # so, and the messages streaming now are taken out of it.
        "DROP TRIGGER messages_fts_insert",
        "DROP TRIGGER messages_fts_delete",
        "DROP TRIGGER messages_fts_update",
        """
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
        WHEN new.status <> 'streaming' BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.status <> 'streaming' BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages
        WHEN old.status <> 'streaming' AND new.status <> 'streaming' BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_stream_begins AFTER UPDATE OF status ON messages
        WHEN old.status <> 'streaming' AND new.status = 'streaming' BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END
        """,
        """
        CREATE TRIGGER messages_fts_stream_ends AFTER UPDATE OF status ON messages
        WHEN old.status = 'streaming' AND new.status <> 'streaming' BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
        """
        INSERT INTO messages_fts(messages_fts, rowid, content)
            SELECT 'delete', id, content FROM messages WHERE status = 'streaming'
        """,
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_TOOL_PART_SELECT: Final = """
    SELECT message_id, call_id, server, name, exposed, arguments, ok, result, is_error,
           denied, duration_s, round, text_offset
    FROM tool_parts
"""
TOOL_TEXT_LIMIT: Final = 1_000_000
"""The most characters of a tool call's arguments or result the history keeps."""
_ATTACHMENT_SELECT: Final = """
    SELECT message_id, sha256, name, kind, mime, size, width, height, pages
    FROM message_attachments
"""
ATTACHMENT_KINDS: Final[tuple[AttachmentKind, ...]] = get_args(AttachmentKind)
_MIME: Final = re.compile(r"[\w.+-]{1,60}/[\w.+-]{1,60}", re.ASCII)

_CONVERSATION_COLUMNS: Final = (
    "id, title, created_at, updated_at, profile, provider, model, system_prompt, base_url, "
    "tools_off"
)
_MESSAGE_SELECT: Final = """
    SELECT m.id, m.conversation_id, m.role, m.content, m.status, m.model, m.provider,
           m.input_tokens, m.output_tokens, m.cost, m.ttft_s, m.total_s, m.cached, m.error,
           m.finish_reason, m.reply_group, m.version, m.active,
           (SELECT COUNT(*) FROM messages AS v WHERE v.reply_group = m.reply_group)
               AS version_count,
           m.created_at, m.updated_at, m.parent_id, m.estimated
    FROM messages AS m
"""


class History(SqliteStore):
    """Rill's conversation history in the SQLite file at ``path``.

    Opening never fails because of the file's contents: a broken or too-new file is moved
    aside (see :attr:`recovered_from`). :class:`HistoryError` is raised only when the
    folder cannot be written or another process keeps the database locked.
    """

    schema_version_known = SCHEMA_VERSION
    migrations = _MIGRATIONS
    noun = "conversation history"
    file_noun = "history database"
    error_class = HistoryError
    foreign_keys = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        blobs: BlobStore | None = None,
        check_on_open: bool = True,
    ) -> None:
        self.blobs = blobs if blobs is not None else BlobStore(Path(path).parent / "attachments")
        """Where the bytes of attached files are kept (``attachments`` beside the file
        unless given): a prompt's files are written there with it, and a blob nothing
        refers to any more is removed."""
        self._search_lock = threading.Lock()
        self._search_conn: sqlite3.Connection | None = None
        super().__init__(
            path, clock=clock, busy_timeout_s=busy_timeout_s, check_on_open=check_on_open
        )
        try:
            self.recover_interrupted()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._search_lock:
            search, self._search_conn = self._search_conn, None
        if search is not None:
            search.close()
        super().close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- conversations -----------------------------------------------------------------

    def create_conversation(
        self,
        *,
        title: str | None = None,
        profile: str = "default",
        provider: str = "",
        model: str = "",
        system_prompt: str | None = None,
    ) -> Conversation:
        """A new, empty conversation. Without a title it takes one from the first prompt."""
        now = self._clock()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO conversations"
                " (title, created_at, updated_at, profile, provider, model, system_prompt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    valid_text((title or "").strip()),
                    now,
                    now,
                    profile,
                    provider,
                    model,
                    None if system_prompt is None else valid_text(system_prompt),
                ),
            )
            return _require(_get_conversation(conn, _lastrowid(cursor)))

    def list_conversations(self, limit: int = 200, offset: int = 0) -> list[Conversation]:
        """Conversations, most recently updated first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations"
                " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [_conversation(row) for row in rows]

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        with self._read() as conn:
            return _get_conversation(conn, conversation_id)

    def latest_conversation(self) -> Conversation | None:
        """The most recently updated conversation, if there is any."""
        found = self.list_conversations(limit=1)
        return found[0] if found else None

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        """Set the title. A conversation that no longer exists is left alone.

        Renaming is not activity: the conversation keeps its place in the list."""
        with self._write() as conn:
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                (valid_text(title.strip()), conversation_id),
            )

    def set_tools_off(self, conversation_id: int, servers: Iterable[str]) -> None:
        """Keep which tool servers are off for the conversation (sorted; names are the
        config's, at most 200 of 200 characters each). Not activity, like a rename."""
        names = sorted({valid_text(n)[:200] for n in servers if n and "\n" not in n})[:200]
        with self._write() as conn:
            conn.execute(
                "UPDATE conversations SET tools_off = ? WHERE id = ?",
                ("\n".join(names), conversation_id),
            )

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete the conversation with all its messages and their search entries, and
        the attached files no other message refers to (and any left over by prompts
        that were never saved, see :meth:`sweep_blobs`)."""
        with self._write() as conn:
            shas = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT a.sha256 FROM message_attachments AS a"
                    " JOIN messages AS m ON m.id = a.message_id WHERE m.conversation_id = ?",
                    (conversation_id,),
                )
            ]
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        self.free_blobs(shas)
        self.sweep_blobs()

    def sweep_blobs(self, grace_s: float = 3600.0) -> list[str]:
        """Remove the blobs no message refers to that were written more than ``grace_s``
        ago (a prompt whose transaction never committed: a crash, a full disk); return
        them. Runs inside a write transaction, like :meth:`free_blobs`."""
        with self._write() as conn:
            stored = self.blobs.stored(older_than=self._clock() - grace_s)
            referenced = {
                row[0] for row in conn.execute("SELECT DISTINCT sha256 FROM message_attachments")
            }
            gone = sorted(set(stored) - referenced)
            self.blobs.delete(gone)
        return gone

    def unreferenced(self, shas: Iterable[str]) -> list[str]:
        """Those of ``shas`` no message refers to."""
        with self._read() as conn:
            return _unreferenced(conn, shas)

    def free_blobs(self, shas: Iterable[str]) -> list[str]:
        """Remove from the blob store those of ``shas`` no message refers to; return them.

        The check and the removal happen inside one write transaction, so no prompt that
        refers to one of them (in this process or another) is added in between: a prompt's
        files are written in the transaction that adds it."""
        wanted = sorted(set(shas))
        if not wanted:
            return []
        with self._write() as conn:
            gone = _unreferenced(conn, wanted)
            self.blobs.delete(gone)
        return gone

    # -- messages ----------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: Role,
        content: str = "",
        *,
        status: MessageStatus = "complete",
        reply_group: int | None = None,
        after: int | None = None,
        attachments: Sequence[Attachment] = (),
        **meta: Unpack[MessageMeta],
    ) -> StoredMessage:
        """Add a message after the last one shown, or after the message ``after``, or as a
        new active version of ``reply_group`` when given.

        ``attachments`` are the files sent with it: the bytes of each one given with its
        ``data`` are written to the blob store in the same transaction; one given without
        must be stored already (:class:`~desktop_app.core.blobs.AttachmentUnavailable`
        otherwise).

        A message added after one that already has children of its role becomes a new
        version of them. The first user message gives an untitled conversation its title.
        Raises ``LookupError`` when the conversation (or the reply group or message in it)
        does not exist.
        """
        _check_choice("role", role, ROLES)
        with self._write() as conn:
            parent: int | None
            if reply_group is not None:
                group = _group_info(conn, reply_group)
                if group is None or group[0] != conversation_id:
                    raise LookupError(
                        f"conversation {conversation_id} has no reply group {reply_group}"
                    )
                if group[1] != role:
                    raise ValueError(f"reply group {reply_group} holds {group[1]} messages")
                parent = group[2]
            elif after is not None:
                row = conn.execute(
                    "SELECT conversation_id FROM messages WHERE id = ?", (after,)
                ).fetchone()
                if row is None or row[0] != conversation_id:
                    raise LookupError(f"conversation {conversation_id} has no message {after}")
                parent = after
                sibling = conn.execute(
                    "SELECT MIN(reply_group) FROM messages WHERE parent_id = ? AND role = ?",
                    (after, role),
                ).fetchone()[0]
                reply_group = None if sibling is None else int(sibling)
            else:
                path = _shown_path(conn, conversation_id)
                parent = path[-1].id if path else None
            return self._insert_message(
                conn,
                conversation_id,
                role,
                content,
                status,
                reply_group,
                dict(meta),
                parent,
                attachments,
            )

    def add_version(
        self,
        reply_group: int,
        content: str = "",
        *,
        status: MessageStatus = "complete",
        attachments: Sequence[Attachment] = (),
        **meta: Unpack[MessageMeta],
    ) -> StoredMessage:
        """Add a new version to a group (same role, same parent) and make it the active one.

        A new version of a prompt starts with no replies of its own; ``attachments`` are
        its files, as for :meth:`add_message`."""
        with self._write() as conn:
            group = _group_info(conn, reply_group)
            if group is None:
                raise LookupError(f"no reply group {reply_group}")
            conversation_id, role, parent = group
            return self._insert_message(
                conn,
                conversation_id,
                role,
                content,
                status,
                reply_group,
                dict(meta),
                parent,
                attachments,
            )

    def set_conversation_server(
        self,
        conversation_id: int,
        *,
        profile: str,
        provider: str,
        model: str,
        base_url: str,
    ) -> None:
        """Remember the profile, server and model the conversation's last turn used.

        A user name and password in the base URL are secrets: they are not kept.
        """
        with self._write() as conn:
            conn.execute(
                "UPDATE conversations SET profile = ?, provider = ?, model = ?, base_url = ?"
                " WHERE id = ?",
                (
                    valid_text(profile),
                    valid_text(provider),
                    valid_text(model),
                    valid_text(without_url_credentials(base_url)),
                    conversation_id,
                ),
            )

    def update_message(self, message_id: int, **fields: Unpack[MessageUpdate]) -> None:
        """Change some fields of a message. A message that no longer exists is ignored."""
        values = _check_fields(dict(fields), _UPDATE_FIELDS)
        if not values:
            return
        now = self._clock()
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE messages SET {assignments}, updated_at = ? WHERE id = ?",
                (*values.values(), now, message_id),
            )
            if cursor.rowcount:
                conn.execute(
                    "UPDATE conversations SET updated_at = ?"
                    " WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                    (now, message_id),
                )

    def set_tool_parts(self, message_id: int, parts: Sequence[ToolPart]) -> None:
        """Keep ``parts`` as the tool calls of reply ``message_id`` (replacing any before)."""
        with self._write() as conn:
            _put_tool_parts(conn, message_id, parts)

    def tool_parts(self, message_id: int) -> list[ToolPart]:
        """The tool calls of one reply (any version), in the order the model made them."""
        with self._read() as conn:
            return _tool_parts(conn, [message_id]).get(message_id, [])

    def get_message(self, message_id: int) -> StoredMessage | None:
        """One message (any version), with its attachments."""
        with self._read() as conn:
            message = _get_message(conn, message_id)
            return None if message is None else _with_attachments(conn, [message])[0]

    def attachments(self, message_id: int) -> list[Attachment]:
        """The files sent with one message (any version), in order, without their bytes."""
        with self._read() as conn:
            return _attachments(conn, [message_id]).get(message_id, [])

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """The shown path: the first prompt, then the active child of each message in turn
        (so a prompt version shows its own replies)."""
        with self._read() as conn:
            return _shown_path(conn, conversation_id)

    def versions(self, reply_group: int) -> list[StoredMessage]:
        """Every version of a reply, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                _MESSAGE_SELECT + " WHERE m.reply_group = ? ORDER BY m.version",
                (reply_group,),
            ).fetchall()
            return _with_attachments(conn, [_stored_message(row) for row in rows])

    def set_active_version(self, message_id: int) -> None:
        """Make this message the version its reply group shows. ``LookupError`` if unknown."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT reply_group, conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no message {message_id}")
            conn.execute("UPDATE messages SET active = 0 WHERE reply_group = ?", (row[0],))
            conn.execute("UPDATE messages SET active = 1 WHERE id = ?", (message_id,))
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (self._clock(), row[1])
            )

    def recover_interrupted(self) -> int:
        """Mark every message still ``streaming`` as ``interrupted``; return how many.

        Runs on open: a process that died mid-reply leaves its message ``streaming``. A
        :class:`StreamingWriter` still running in another process sets ``streaming`` again
        on its next write.
        """
        with self._read() as conn:
            if conn.execute("SELECT 1 FROM messages WHERE status = 'streaming'").fetchone() is None:
                return 0  # nothing to write: opening works on a full disk too
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE messages SET status = 'interrupted', updated_at = ?"
                " WHERE status = 'streaming'",
                (self._clock(),),
            )
            return cursor.rowcount

    # -- search ------------------------------------------------------------------------

    def search(
        self, query: str, limit: int = 50, *, marks: tuple[str, str] = ("[", "]")
    ) -> SearchHits:
        """Messages (every version) matching all words of ``query``, best match first.

        The query is plain text: FTS5 syntax characters are taken literally, a quoted part
        is searched as a phrase, and the last word also matches as a prefix unless the
        query ends with a space. Accents are ignored (``cafe`` finds ``café``). When more
        than ``RANK_WINDOW`` messages match, the best of the newest ``RANK_WINDOW`` come back.
        Only the first :data:`MAX_SEARCH_TERMS` distinct words are used
        (:attr:`SearchHits.truncated` says when words were left out).

        Searches read through a connection of their own, so a long search never waits
        for a save and never makes one wait (WAL lets readers and a writer overlap).
        """
        parsed = fts_query(query)
        if parsed is None or limit <= 0:
            hits = SearchHits()
            hits.truncated = parsed is not None and parsed.truncated
            return hits
        match = parsed.match
        try:
            with self._searching() as conn:
                # Ranking costs about a microsecond per match; a word found in half of
                # a large history would make every keystroke slow. Past RANK_WINDOW
                # matches, only the newest RANK_WINDOW are ranked (rowid order is cheap).
                floor = conn.execute(
                    "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?"
                    " ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                    (match, RANK_WINDOW - 1),
                ).fetchone()
                rows = conn.execute(
                    "SELECT m.conversation_id, c.title, m.id, m.role,"
                    " snippet(messages_fts, 0, ?, ?, '…', 16), messages_fts.rank"
                    " FROM messages_fts"
                    " JOIN messages AS m ON m.id = messages_fts.rowid"
                    " JOIN conversations AS c ON c.id = m.conversation_id"
                    " WHERE messages_fts MATCH ? AND messages_fts.rowid >= ?"
                    " ORDER BY messages_fts.rank LIMIT ?",
                    (marks[0], marks[1], match, floor[0] if floor else 0, limit),
                ).fetchall()
        except HistoryError as exc:
            if isinstance(exc.__cause__, sqlite3.OperationalError) and "fts5" in exc.detail:
                return SearchHits()
            raise
        hits = SearchHits(
            SearchHit(
                conversation_id=row[0],
                conversation_title=row[1],
                message_id=row[2],
                role=row[3],
                snippet=row[4],
                rank=float(row[5]),
            )
            for row in rows
        )
        hits.truncated = parsed.truncated
        return hits

    @contextlib.contextmanager
    def _searching(self) -> Iterator[sqlite3.Connection]:
        """The search connection (opened on first use), for reading only."""
        self._connection()  # raises once the history is closed
        with self._search_lock:
            conn = self._search_conn
            try:
                if conn is None:
                    conn = sqlite3.connect(
                        self.path,
                        timeout=self._busy_timeout_s,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    conn.text_factory = lenient_text
                    conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
                    conn.execute("PRAGMA query_only = ON")
                    self._search_conn = conn
                yield conn
            except sqlite3.Error as exc:
                raise self._database_error(exc) from exc

    # -- export and import -------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as Markdown: the title, then one bold-headed section per message.

        Only the active version of each reply is included. ``LookupError`` if unknown.
        """
        conversation = self.get_conversation(conversation_id)
        if conversation is None:
            raise LookupError(f"no conversation {conversation_id}")
        parts = [f"# {conversation.title or 'Untitled conversation'}"]
        if conversation.system_prompt:
            parts.append(f"**System prompt**\n\n{conversation.system_prompt}")
        for message in self.messages(conversation_id):
            if message.role == "user":
                heading = "**You**"
            elif message.role == "assistant":
                model = message.model or conversation.model
                heading = f"**Assistant ({model})**" if model else "**Assistant**"
            else:
                heading = f"**{message.role.capitalize()}**"
            if message.status != "complete":
                heading += f" _({message.status})_"
            body = "\n\n".join(
                piece for piece in (_markdown_body(message), _markdown_files(message)) if piece
            )
            parts.append(f"{heading}\n\n{body}")
        return "\n\n".join(parts) + "\n"

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation with every version of every reply, as a JSON-ready dict.

                Format (``version`` 1)::

                    {"format": "rill.conversation", "version": 1, "exported_at": ISO,
                     "conversation": {"title", "profile", "provider", "model", "system_prompt",
                                      "created_at": ISO, "updated_at": ISO},
                     "messages": [{"role", "content", "status", "model", "provider",
                                   "input_tokens", "output_tokens", "cost", "ttft_s", "total_s",
                                   "cached", "error", "finish_reason", "estimated",
                                   "id": n, "parent": n | null,
                                   "group": n, "version": n, "active": bool,
                                   "created_at": ISO, "updated_at": ISO,
                                   "tool_parts": [{"call_id", "server", "name", "exposed",
                                                   "arguments", "ok", "result", "is_error",
                                                   "denied", "duration_s", "round", "offset"}, ...]
                                   (only for a reply that called tools),
                                   "attachments": [{"name", "kind", "mime", "size", "width",
                                                    "height", "pages", "sha256",
                                                    "data": base64}, ...]
                                   (only for a prompt sent with files)}, ...]}

        An export is self-contained: each attached file's bytes are in its ``data`` (left out
        only when Rill's copy is gone; importing it then needs the same bytes stored already).

                Messages come in conversation order, each after its parent; ``id`` numbers them
                (1, 2, …) and ``parent`` is the ``id`` of the message it follows (null for a first
                prompt). The versions of one prompt or reply share a ``group`` number (1, 2, … in
                order of appearance) and are listed oldest first. Timestamps are ISO 8601 in UTC.
                ``LookupError`` if the conversation does not exist.
        """
        with self._read() as conn:
            conversation = _get_conversation(conn, conversation_id)
            if conversation is None:
                raise LookupError(f"no conversation {conversation_id}")
            rows = conn.execute(
                _MESSAGE_SELECT + " WHERE m.conversation_id = ? ORDER BY m.reply_group, m.version",
                (conversation_id,),
            ).fetchall()
            tool_parts = _tool_parts(conn, [row[0] for row in rows if row[2] == "assistant"])
            attachments = _attachments(conn, [row[0] for row in rows if row[2] == "user"])
        groups: dict[int, int] = {}
        numbers: dict[int, int] = {}
        messages: list[dict[str, Any]] = []
        for message in map(_stored_message, rows):
            group = groups.setdefault(message.reply_group, len(groups) + 1)
            numbers[message.id] = len(numbers) + 1
            messages.append(
                {
                    "id": numbers[message.id],
                    "parent": None if message.parent_id is None else numbers[message.parent_id],
                    "role": message.role,
                    "content": message.content,
                    "status": message.status,
                    **{name: getattr(message, name) for name in _META_FIELDS},
                    "group": group,
                    "version": message.version,
                    "active": message.active,
                    "created_at": _iso(message.created_at),
                    "updated_at": _iso(message.updated_at),
                }
            )
            if message.id in tool_parts:
                messages[-1]["tool_parts"] = [p.to_dict() for p in tool_parts[message.id]]
            if message.id in attachments:
                messages[-1]["attachments"] = [
                    self._exported_attachment(a) for a in attachments[message.id]
                ]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": _iso(self._clock()),
            "conversation": {
                "title": conversation.title,
                "profile": conversation.profile,
                "provider": conversation.provider,
                "model": conversation.model,
                "system_prompt": conversation.system_prompt,
                "created_at": _iso(conversation.created_at),
                "updated_at": _iso(conversation.updated_at),
            },
            "messages": messages,
        }

    def _exported_attachment(self, attachment: Attachment) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": attachment.name,
            "kind": attachment.kind,
            "mime": attachment.mime,
            "size": attachment.size,
            "width": attachment.width,
            "height": attachment.height,
            "pages": attachment.pages,
            "sha256": attachment.sha256,
        }
        try:
            data = self.blobs.read(attachment.sha256, name=attachment.name)
        except AttachmentUnavailable:
            return entry
        entry["data"] = base64.b64encode(data).decode("ascii")
        return entry

    def import_file(self, path: str | os.PathLike[str]) -> int:
        """Import the JSON export in the file at ``path``; see :meth:`import_json`.

        Every problem (unreadable, too large, not UTF-8, not JSON, nested too deeply, not
        an export) raises :class:`ImportFormatError` naming the file, and nothing is
        imported.
        """
        return self.import_file_report(path).conversation_id

    def import_file_report(self, path: str | os.PathLike[str]) -> ImportReport:
        """:meth:`import_file`, saying which attached files were not imported."""
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ImportFormatError(f"it cannot be read ({reason})", path) from exc
        if len(data) > MAX_IMPORT_BYTES:
            raise ImportFormatError(
                f"it is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB", path
            )
        try:
            return self.import_conversation(data)
        except ImportFormatError as exc:
            raise ImportFormatError(exc.problem, path) from exc

    def import_json(self, data: Mapping[str, Any] | str | bytes) -> int:
        """Create a new conversation from an :meth:`export_json` dict (or its JSON text).

        Returns the new conversation's id. Raises :class:`ImportFormatError` (a
        ``ValueError``) saying what is wrong when the data is not a valid export. A message
        exported while still ``streaming`` is imported as ``interrupted``.
        """
        return self.import_conversation(data).conversation_id

    def import_conversation(
        self,
        data: Mapping[str, Any] | str | bytes,
        *,
        limits: AttachmentLimits = DEFAULT_LIMITS,
    ) -> ImportReport:
        """:meth:`import_json`, saying which attached files were not imported.

        Each attached file is checked as if it were attached now (its kind, type and size
        against ``limits``, the whole message's too) and its SHA-256 recomputed; a file
        that fails is left out with a sentence in :attr:`ImportReport.problems`, and a line
        in its message's text, while the rest imports. The files' bytes go to the blob
        store in the transaction that adds the conversation.
        """
        conversation, groups = _parse_export(data, self._clock(), limits)
        problems: list[str] = []
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO conversations"
                " (title, created_at, updated_at, profile, provider, model, system_prompt)"
                " VALUES (:title, :created_at, :updated_at, :profile, :provider, :model,"
                " :system_prompt)",
                conversation,
            )
            conversation_id = _lastrowid(cursor)
            ids: dict[object, int] = {}
            shown: int | None = None  # the active message of the group before (no parents)
            for versions in groups:
                reply_group: int | None = None
                tree, parent = versions[0]["_tree"], versions[0]["_parent"]
                parent_id = ids[parent] if tree and parent is not None else None
                if not tree:
                    parent_id = shown
                for message in versions:
                    ident = message.pop("_id")
                    parts = message.pop("_tool_parts")
                    files, refused = self._importable(message.pop("_attachments"), problems)
                    del message["_tree"], message["_parent"]
                    columns = {**message, "conversation_id": conversation_id}
                    if refused:
                        lines = [UNAVAILABLE_LINE.format(name=name) for name in refused]
                        columns["content"] = "\n\n".join(filter(None, [columns["content"], *lines]))
                    columns["parent_id"] = parent_id
                    if reply_group is not None:
                        columns["reply_group"] = reply_group
                    cursor = conn.execute(_insert_sql("messages", columns), tuple(columns.values()))
                    row_id = _lastrowid(cursor)
                    if parts:
                        _put_tool_parts(conn, row_id, parts)
                    if files:
                        self._store_blobs(files)
                        _put_attachments(conn, row_id, files)
                    if ident is not None:
                        ids[ident] = row_id
                    if message["active"]:
                        shown = row_id
                    if reply_group is None:
                        reply_group = row_id
                        conn.execute(
                            "UPDATE messages SET reply_group = id WHERE id = ?", (reply_group,)
                        )
        return ImportReport(conversation_id, tuple(problems))

    def _importable(
        self, files: Sequence[_ImportedFile], problems: list[str]
    ) -> tuple[list[Attachment], list[str]]:
        """The files of an imported message that can be kept (those with their bytes, and
        those without whose bytes are stored already), and the names of the rest, whose
        sentences join ``problems``."""
        kept: list[Attachment] = []
        refused: list[str] = []
        for file in files:
            problem, found = file.problem, file.attachment
            stored = found is not None and (not unloaded(found) or self.blobs.has(found.sha256))
            if problem is None and found is not None and not stored:
                problem = file.refused("the export does not carry its bytes")
            if problem is None and found is not None:
                kept.append(found)
            else:
                refused.append(file.name)
                problems.append(problem or file.refused("it is not valid"))
        return kept, refused

    # -- internals ---------------------------------------------------------------------

    def _store_blobs(self, attachments: Sequence[Attachment]) -> None:
        """Write the bytes of ``attachments`` to the blob store (called inside the write
        transaction that refers to them); one without bytes must be there already."""
        for attachment in attachments:
            if not unloaded(attachment):
                if self.blobs.put(attachment.data) != attachment.sha256:
                    raise ValueError(f"the bytes of {attachment.name!r} do not match its SHA-256")
            elif not self.blobs.has(attachment.sha256):
                self.blobs.read(attachment.sha256, name=attachment.name)  # raises, naming it

    def _insert_message(
        self,
        conn: sqlite3.Connection,
        conversation_id: int,
        role: Role,
        content: str,
        status: MessageStatus,
        reply_group: int | None,
        meta: dict[str, Any],
        parent: int | None,
        attachments: Sequence[Attachment] = (),
    ) -> StoredMessage:
        checked = [_checked_attachment(a) for a in attachments]
        values = _check_fields({**meta, "status": status}, frozenset((*_META_FIELDS, "status")))
        conversation = _get_conversation(conn, conversation_id)
        if conversation is None:
            raise LookupError(f"no conversation {conversation_id}")
        now = self._clock()
        version = 1
        if reply_group is not None:
            latest = conn.execute(
                "SELECT MAX(version) FROM messages WHERE reply_group = ?", (reply_group,)
            ).fetchone()[0]
            version = int(latest) + 1
            conn.execute("UPDATE messages SET active = 0 WHERE reply_group = ?", (reply_group,))
        columns: dict[str, Any] = {
            "conversation_id": conversation_id,
            "role": role,
            "content": valid_text(content),
            **values,
            "reply_group": reply_group,
            "version": version,
            "active": 1,
            "created_at": now,
            "updated_at": now,
            "parent_id": parent,
        }
        cursor = conn.execute(_insert_sql("messages", columns), tuple(columns.values()))
        message_id = _lastrowid(cursor)
        if reply_group is None:
            conn.execute("UPDATE messages SET reply_group = id WHERE id = ?", (message_id,))
        if checked:
            self._store_blobs(checked)
            _put_attachments(conn, message_id, checked)
        title = conversation.title
        if not title and role == "user":
            title = title_from_prompt(content)
        conn.execute(
            "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
            (title, now, conversation_id),
        )
        return _with_attachments(conn, [_require(_get_message(conn, message_id))])[0]


class StreamingWriter:
    """Writes a reply to its message row while it streams.

    ``append`` collects text and writes the whole content when at least ``interval_s``
    has passed since the last write; ``flush`` writes now; ``finish`` writes the content
    with the final status and metadata. A crash loses at most the text of the last
    interval, provided text keeps arriving or the caller calls ``flush`` when the stream
    goes quiet or changes state. Use one writer from one thread.
    """

    def __init__(
        self,
        history: History,
        message_id: int,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.history = history
        self.message_id = message_id
        self.interval_s = interval_s
        self._clock = clock
        self._parts: list[str] = []
        self._dirty = False
        self._finished = False
        self._last_write = clock()

    @property
    def content(self) -> str:
        """Everything appended so far."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def append(self, text_delta: str) -> bool:
        """Add text; return True when this call wrote the content to the database."""
        self._check_open()
        if not text_delta:
            return False
        self._parts.append(text_delta)
        self._dirty = True
        if self._clock() - self._last_write >= self.interval_s:
            self._write()
            return True
        return False

    def flush(self) -> None:
        """Write any text not yet written."""
        self._check_open()
        if self._dirty:
            self._write()

    def finish(self, status: MessageStatus, **meta: Unpack[MessageMeta]) -> None:
        """Write the whole content with its final ``status`` and metadata; then stop."""
        self._check_open()
        _check_choice("status", status, STATUSES)
        self.history.update_message(self.message_id, content=self.content, status=status, **meta)
        self._dirty = False
        self._finished = True

    def _write(self) -> None:
        self.history.update_message(self.message_id, content=self.content, status="streaming")
        self._dirty = False
        self._last_write = self._clock()

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("this reply is already finished")


def title_from_prompt(prompt: str, limit: int = TITLE_LIMIT) -> str:
    """A conversation title: the prompt's first non-blank line, shortened to ``limit``."""
    line = next((ln for ln in prompt.splitlines() if ln.strip()), "")
    return shorten(line, limit)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line in at most ``limit`` characters: when it is longer, cut
    between words (mid-word only for a word longer than half the room) and end with "…"."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    room = max(limit - 1, 0)
    cut = line[:room]
    if line[room : room + 1] != " ":
        space = cut.rfind(" ")
        if space >= room // 2:
            cut = cut[:space]
    return cut.rstrip() + "…"


_QUERY_PART = re.compile(r'"([^"]*)"|(\S+)')


def fts_query(text: str) -> FtsQuery | None:
    """Free text as a safe FTS5 query (every part quoted), or None when nothing is left.

    Words are ANDed; a ``"quoted part"`` is a phrase; the last unquoted word also matches
    as a prefix unless the text ends with whitespace. A word given twice counts once, and
    only the first :data:`MAX_SEARCH_TERMS` distinct words within the first
    :data:`MAX_QUERY_CHARS` characters are used (each cut to :data:`MAX_TERM_CHARS`), so
    any text makes a query of bounded size; ``truncated`` says when something was left out.
    """
    truncated = len(text) > MAX_QUERY_CHARS
    head = text[:MAX_QUERY_CHARS]
    parts: dict[str, str] = {}
    last: tuple[str, bool] | None = None
    for match in _QUERY_PART.finditer(head):
        quoted = match.group(1) is not None
        part = " ".join((match.group(1) if quoted else match.group(2)).replace('"', " ").split())
        if not any(ch.isalnum() for ch in part):
            continue
        if len(part) > MAX_TERM_CHARS:
            part, truncated = part[:MAX_TERM_CHARS], True
        key = part.casefold()
        if key not in parts:
            if len(parts) == MAX_SEARCH_TERMS:
                truncated = True
                break
            parts[key] = part
        last = (key, quoted)
    if last is None:
        return None
    terms = [f'"{part}"' for part in parts.values()]
    last_key, last_quoted = last
    prefix = not last_quoted and not truncated and not head[-1:].isspace()
    if prefix and last_key == next(reversed(parts)):
        terms[-1] += "*"
    return FtsQuery(match=" ".join(terms), terms=tuple(terms), truncated=truncated)


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _check_fields(fields: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Validate message fields and return them as column values."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise TypeError(f"unknown message field(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "status":
            _check_choice("status", value, STATUSES)
        elif name == "content":
            if not isinstance(value, str):
                raise TypeError("content must be a string")
            value = valid_text(value)
        elif name in ("cached", "estimated"):
            value = int(bool(value))
        elif value is None:
            pass
        elif name in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int or None")
        elif name in _FLOAT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number or None")
            value = float(value)
            if not math.isfinite(value):
                raise TypeError(f"{name} must be a finite number or None")
        elif name in _TEXT_FIELDS:
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None")
            value = valid_text(value)
        values[name] = value
    return values


def _insert_sql(table: str, columns: Mapping[str, Any]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    if rowid is None:
        raise sqlite3.DatabaseError("insert returned no row id")
    return rowid


def _require(value: _T | None) -> _T:
    if value is None:
        raise sqlite3.DatabaseError("a row just written could not be read back")
    return value


def _get_conversation(conn: sqlite3.Connection, conversation_id: int) -> Conversation | None:
    row = conn.execute(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
    ).fetchone()
    return None if row is None else _conversation(row)


def _get_message(conn: sqlite3.Connection, message_id: int) -> StoredMessage | None:
    row = conn.execute(_MESSAGE_SELECT + " WHERE m.id = ?", (message_id,)).fetchone()
    return None if row is None else _stored_message(row)


def _group_info(conn: sqlite3.Connection, reply_group: int) -> tuple[int, Role, int | None] | None:
    """The conversation, role and parent of a group's messages."""
    row = conn.execute(
        "SELECT conversation_id, role, parent_id FROM messages WHERE id = ? AND reply_group = id",
        (reply_group,),
    ).fetchone()
    return None if row is None else (int(row[0]), cast(Role, row[1]), row[2])


def _shown_path(conn: sqlite3.Connection, conversation_id: int) -> list[StoredMessage]:
    """From the first prompt down, the active child of each message (the newest active
    one when there are several; without any active one, the newest)."""
    rows = conn.execute(
        _MESSAGE_SELECT + " WHERE m.conversation_id = ? ORDER BY m.id", (conversation_id,)
    ).fetchall()
    children: dict[int | None, StoredMessage] = {}
    for message in map(_stored_message, rows):
        # rows come oldest first: a later active child wins, an inactive one only fills in
        chosen = children.get(message.parent_id)
        if chosen is None or message.active or not chosen.active:
            children[message.parent_id] = message
    path: list[StoredMessage] = []
    seen: set[int] = set()
    node = children.get(None)
    while node is not None and node.id not in seen:
        seen.add(node.id)
        path.append(node)
        node = children.get(node.id)
    parts = _tool_parts(conn, [m.id for m in path if m.role == "assistant"])
    path = [replace(m, tool_parts=tuple(parts[m.id])) if m.id in parts else m for m in path]
    return _with_attachments(conn, path)


def _with_attachments(
    conn: sqlite3.Connection, messages: list[StoredMessage]
) -> list[StoredMessage]:
    """``messages`` with their attachments filled in (prompts only carry any)."""
    found = _attachments(conn, [m.id for m in messages if m.role == "user"])
    if not found:
        return messages
    return [replace(m, attachments=tuple(found[m.id])) if m.id in found else m for m in messages]


def _attachments(
    conn: sqlite3.Connection, message_ids: Sequence[int]
) -> dict[int, list[Attachment]]:
    out: dict[int, list[Attachment]] = {}
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            _ATTACHMENT_SELECT + f" WHERE message_id IN ({marks}) ORDER BY message_id, position",
            tuple(chunk),
        ).fetchall()
        for row in rows:
            kind = row[3] if row[3] in ATTACHMENT_KINDS else "text"
            out.setdefault(row[0], []).append(
                Attachment(
                    sha256=row[1],
                    name=row[2],
                    kind=cast(AttachmentKind, kind),
                    mime=row[4],
                    size=int(row[5]),
                    width=int(row[6]),
                    height=int(row[7]),
                    pages=int(row[8]),
                )
            )
    return out


def _checked_attachment(attachment: Attachment) -> Attachment:
    """``attachment`` as the history keeps it: a valid SHA-256, a known kind, a name fit
    to show, a media type, whole numbers from 0. ``ValueError`` otherwise."""
    if not valid_sha256(attachment.sha256):
        raise ValueError(f"not a SHA-256: {attachment.sha256[:80]!r}")
    if attachment.kind not in ATTACHMENT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ATTACHMENT_KINDS)}")
    numbers = (attachment.size, attachment.width, attachment.height, attachment.pages)
    if any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**53 for n in numbers):
        raise ValueError("size, width, height and pages must be whole numbers from 0")
    mime = attachment.mime.strip()
    if not _MIME.fullmatch(mime):
        mime = "application/octet-stream"
    return replace(attachment, name=safe_name(attachment.name), mime=mime)


def _put_attachments(
    conn: sqlite3.Connection, message_id: int, attachments: Sequence[Attachment]
) -> None:
    conn.executemany(
        "INSERT INTO message_attachments (message_id, position, sha256, name, kind, mime,"
        " size, width, height, pages) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                position,
                a.sha256,
                a.name,
                a.kind,
                a.mime,
                a.size,
                a.width,
                a.height,
                a.pages,
            )
            for position, a in enumerate(attachments)
        ],
    )


def _unreferenced(conn: sqlite3.Connection, shas: Iterable[str]) -> list[str]:
    return [
        sha
        for sha in sorted(set(shas))
        if conn.execute(
            "SELECT 1 FROM message_attachments WHERE sha256 = ? LIMIT 1", (sha,)
        ).fetchone()
        is None
    ]


def _fenced(text: str, info: str = "") -> str:
    """``text`` in a code fence longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _markdown_tool_part(part: ToolPart) -> str:
    if part.denied:
        outcome = "declined"
    elif not part.ok:
        outcome = "failed"
    else:
        outcome = "error" if part.is_error else f"{part.duration_s:.1f} s"
    where = f" ({part.server})" if part.server else ""
    return (
        f"**Tool call: {part.name}**{where} _({outcome})_\n\n"
        f"{_fenced(part.arguments, 'json')}\n\n{_fenced(part.result)}"
    )


def _markdown_body(message: StoredMessage) -> str:
    """A message's text, with each tool call and its result where it happened."""
    if not message.tool_parts:
        return message.content
    pieces: list[str] = []
    start = 0
    for part in message.tool_parts:
        end = max(start, min(part.offset, len(message.content)))
        if message.content[start:end].strip():
            pieces.append(message.content[start:end].strip("\n"))
        pieces.append(_markdown_tool_part(part))
        start = end
    if message.content[start:].strip():
        pieces.append(message.content[start:].strip("\n"))
    return "\n\n".join(pieces)


_KIND_TITLES: Final[dict[str, str]] = {"image": "image", "text": "text file", "pdf": "PDF"}
_MARKDOWN_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>!|~&])")


def _markdown_files(message: StoredMessage) -> str:
    """The files sent with a message, one line each (never an embedded image or link)."""
    lines: list[str] = []
    for a in message.attachments:
        facts = []
        if a.kind == "image" and a.width and a.height:
            facts.append(f"{a.width}×{a.height} pixels")
        if a.kind == "pdf" and a.pages:
            facts.append(f"{a.pages} page" + ("" if a.pages == 1 else "s"))
        facts.append(human_size(a.size))
        name = _MARKDOWN_SPECIAL.sub(r"\\\1", a.name)
        lines.append(f"- Attached {_KIND_TITLES.get(a.kind, a.kind)}: {name} ({', '.join(facts)})")
    return "\n".join(lines)


def _tool_parts(conn: sqlite3.Connection, message_ids: Sequence[int]) -> dict[int, list[ToolPart]]:
    out: dict[int, list[ToolPart]] = {}
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            _TOOL_PART_SELECT + f" WHERE message_id IN ({marks}) ORDER BY message_id, seq",
            tuple(chunk),
        ).fetchall()
        for row in rows:
            out.setdefault(row[0], []).append(
                ToolPart(
                    call_id=row[1],
                    server=row[2],
                    name=row[3],
                    exposed=row[4],
                    arguments=row[5],
                    ok=bool(row[6]),
                    result=row[7],
                    is_error=bool(row[8]),
                    denied=bool(row[9]),
                    duration_s=row[10],
                    round=row[11],
                    offset=row[12],
                )
            )
    return out


def _put_tool_parts(conn: sqlite3.Connection, message_id: int, parts: Sequence[ToolPart]) -> None:
    conn.execute("DELETE FROM tool_parts WHERE message_id = ?", (message_id,))
    if conn.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone() is None:
        return  # a message deleted meanwhile
    conn.executemany(
        "INSERT INTO tool_parts (message_id, seq, call_id, server, name, exposed, arguments,"
        " ok, result, is_error, denied, duration_s, round, text_offset)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                seq,
                valid_text(p.call_id[:200]),
                valid_text(p.server[:200]),
                valid_text(p.name[:200]),
                valid_text(p.exposed[:200]),
                valid_text(p.arguments[:TOOL_TEXT_LIMIT]),
                int(p.ok),
                valid_text(p.result[:TOOL_TEXT_LIMIT]),
                int(p.is_error),
                int(p.denied),
                float(p.duration_s),
                int(p.round),
                int(p.offset),
            )
            for seq, p in enumerate(parts)
        ],
    )


def _conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(
        id=row[0],
        title=row[1],
        created_at=row[2],
        updated_at=row[3],
        profile=row[4],
        provider=row[5],
        model=row[6],
        system_prompt=row[7],
        base_url=row[8],
        tools_off=tuple(name for name in row[9].split("\n") if name),
    )


def _stored_message(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        role=row[2],
        content=row[3],
        status=row[4],
        model=row[5],
        provider=row[6],
        input_tokens=row[7],
        output_tokens=row[8],
        cost=row[9],
        ttft_s=row[10],
        total_s=row[11],
        cached=bool(row[12]),
        error=row[13],
        finish_reason=row[14],
        reply_group=row[15],
        version=row[16],
        active=bool(row[17]),
        version_count=row[18],
        created_at=row[19],
        updated_at=row[20],
        parent_id=row[21],
        estimated=bool(row[22]),
    )


def _iso(timestamp: float) -> str | None:
    """``timestamp`` as ISO 8601 in UTC, or None when no calendar can show it."""
    if not _valid_time(timestamp):
        return None
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


def _valid_time(timestamp: object) -> bool:
    return (
        isinstance(timestamp, int | float)
        and not isinstance(timestamp, bool)
        and math.isfinite(timestamp)
        and _FIRST_TIME <= timestamp <= _LAST_TIME
    )


_ExportedConversation = dict[str, Any]
_ExportedGroups = list[list[dict[str, Any]]]


_PART_TEXT = ("call_id", "server", "name", "exposed", "arguments", "result")
_PART_FLAGS = ("ok", "is_error", "denied")


def _parse_tool_parts(raw: Any, where: str) -> list[ToolPart]:
    """The ``tool_parts`` of an exported message (none when absent)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ImportFormatError(f"{where}.tool_parts must be a list")
    out: list[ToolPart] = []
    for index, item in enumerate(raw):
        at = f"{where}.tool_parts[{index}]"
        if not isinstance(item, Mapping):
            raise ImportFormatError(f"{at} must be an object")
        for name in _PART_TEXT:
            if not isinstance(item.get(name, ""), str):
                raise ImportFormatError(f"{at}.{name} must be a string")
        for name in _PART_FLAGS:
            if not isinstance(item.get(name, False), bool):
                raise ImportFormatError(f"{at}.{name} must be true or false")
        numbers = {}
        for name in ("duration_s", "round", "offset"):
            value = item.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ImportFormatError(f"{at}.{name} must be a number")
            if not math.isfinite(value) or not 0 <= value < 1e12:
                raise ImportFormatError(f"{at}.{name} is out of range")
            numbers[name] = value
        text = {name: valid_text(str(item.get(name, ""))) for name in _PART_TEXT}
        out.append(
            ToolPart(
                call_id=text["call_id"],
                server=text["server"],
                name=text["name"],
                exposed=text["exposed"],
                arguments=text["arguments"],
                result=text["result"],
                ok=item.get("ok") is True,
                is_error=item.get("is_error") is True,
                denied=item.get("denied") is True,
                duration_s=float(numbers["duration_s"]),
                round=int(numbers["round"]),
                offset=int(numbers["offset"]),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _ImportedFile:
    """One attached file of an imported message: checked, or the sentence why not."""

    name: str
    message: int
    """The message's number in the export (from 1)."""
    attachment: Attachment | None = None
    problem: str | None = None

    def refused(self, why: str) -> str:
        return f"The file {self.name} of message {self.message} was not imported: {why}."


def _parse_attachments(
    raw: Any, index: int, role: object, limits: AttachmentLimits
) -> list[_ImportedFile]:
    """The files of an exported message, each checked as if attached now; a file that
    fails carries the sentence why (the rest of the export still imports)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ImportFormatError(f"messages[{index}].attachments must be a list")
    number = index + 1
    out: list[_ImportedFile] = []
    for position, item in enumerate(raw):
        name = "attachment"
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            name = safe_name(item["name"])
        file = _ImportedFile(name, number)
        if position >= MAX_IMPORT_ATTACHMENTS:
            why = f"a message carries at most {MAX_IMPORT_ATTACHMENTS} files"
        elif role != "user":
            why = "only prompts carry files"
        elif not isinstance(item, Mapping):
            why = "its entry is not an object"
        else:
            try:
                out.append(replace(file, attachment=_imported_attachment(item, name, limits)))
                continue
            except AttachmentRefused as exc:
                out.append(replace(file, problem=f"Message {number}: {exc.message}"))
                continue
            except ValueError as exc:
                why = str(exc)
        out.append(replace(file, problem=file.refused(why)))
    kept = [f.attachment for f in out if f.attachment is not None and f.attachment.data]
    try:
        check_total(kept, limits)
    except AttachmentRefused as exc:
        return [
            replace(f, attachment=None, problem=f"Message {number}: {exc.message}")
            if f.attachment is not None and f.attachment.data
            else f
            for f in out
        ]
    return out


def _imported_attachment(
    item: Mapping[str, Any], name: str, limits: AttachmentLimits
) -> Attachment:
    """An exported file, checked: its bytes decoded, their SHA-256 recomputed, the file
    recognised and measured as when attached (:class:`AttachmentRefused` past a limit);
    without bytes, its description. ``ValueError`` says what else is wrong."""
    sha = item.get("sha256")
    if not valid_sha256(sha):
        raise ValueError("its SHA-256 is missing or not valid")
    assert isinstance(sha, str)
    encoded = item.get("data")
    if encoded is None:
        kind = item.get("kind")
        numbers = {n: item.get(n, 0) for n in ("size", "width", "height", "pages")}
        described = Attachment(
            sha256=sha,
            name=name,
            kind=cast(AttachmentKind, kind),
            mime=str(item.get("mime") or ""),
            **numbers,
        )
        return _checked_attachment(described)
    if not isinstance(encoded, str):
        raise ValueError("its data is not base64 text")
    if len(encoded) > 4 * (limits.largest // 3 + 1):
        raise ValueError(f"it is larger than the {human_size(limits.largest)} Rill attaches")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("its data is not valid base64") from exc
    if hashlib.sha256(data).hexdigest() != sha:
        raise ValueError("its bytes do not match its SHA-256 (the file was changed)")
    found = attachment_from_bytes(data, name, limits=limits)
    declared = item.get("kind")
    if declared is not None and declared != found.kind:
        raise ValueError(f"it says it is {declared!s:.20} but it is {found.kind}")
    return found


def _parse_export(
    data: Mapping[str, Any] | str | bytes, now: float, limits: AttachmentLimits = DEFAULT_LIMITS
) -> tuple[_ExportedConversation, _ExportedGroups]:
    """Validate an export and return conversation columns and message columns by group."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportFormatError(
                f"it is not valid JSON (byte {exc.start} is not UTF-8)"
            ) from exc
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"it is not valid JSON ({exc})") from exc
        except RecursionError as exc:
            raise ImportFormatError("it is nested too deeply to be a conversation") from exc
    if not isinstance(data, Mapping):
        raise ImportFormatError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != EXPORT_FORMAT:
        raise ImportFormatError(f'"format" must be "{EXPORT_FORMAT}", not {data.get("format")!r}')
    version = data.get("version")
    if version != EXPORT_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > 1:
            raise ImportFormatError(
                f"it was exported by a newer Rill (format version {version}); this Rill "
                f"reads version {EXPORT_VERSION}"
            )
        raise ImportFormatError(f'"version" must be {EXPORT_VERSION}, not {version!r}')
    meta = data.get("conversation", {})
    if not isinstance(meta, Mapping):
        raise ImportFormatError('"conversation" must be an object')
    created = _timestamp(meta.get("created_at"), now, "conversation.created_at")
    conversation: _ExportedConversation = {
        "title": _text(meta, "title", "conversation", default=""),
        "profile": _text(meta, "profile", "conversation", default="default"),
        "provider": _text(meta, "provider", "conversation", default=""),
        "model": _text(meta, "model", "conversation", default=""),
        "system_prompt": _optional_text(meta, "system_prompt", "conversation"),
        "created_at": created,
        "updated_at": _timestamp(meta.get("updated_at"), created, "conversation.updated_at"),
    }
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list):
        raise ImportFormatError('"messages" must be a list')
    groups: dict[object, list[dict[str, Any]]] = {}
    tree = any(isinstance(raw, Mapping) and "parent" in raw for raw in raw_messages)
    for index, raw in enumerate(raw_messages):
        where = f"messages[{index}]"
        if not isinstance(raw, Mapping):
            raise ImportFormatError(f"{where} must be an object")
        role = raw.get("role")
        if role not in ROLES:
            raise ImportFormatError(f"{where}.role must be one of {', '.join(ROLES)}")
        content = raw.get("content")
        if not isinstance(content, str):
            raise ImportFormatError(f"{where}.content must be a string")
        status = raw.get("status", "complete")
        if status not in STATUSES:
            raise ImportFormatError(f"{where}.status must be one of {', '.join(STATUSES)}")
        extra = {name: raw.get(name) for name in _META_FIELDS if name in raw}
        for flag in ("cached", "estimated"):
            if extra.get(flag) is None:
                extra.pop(flag, None)
            elif not isinstance(extra[flag], bool):
                raise ImportFormatError(f"{where}.{flag} must be true or false")
        try:
            values = _check_fields(extra, frozenset(_META_FIELDS))
        except TypeError as exc:
            raise ImportFormatError(f"{where}: {exc}") from exc
        group = raw.get("group", f"message-{index}")
        if isinstance(group, bool) or not isinstance(group, int | str):
            raise ImportFormatError(f"{where}.group must be a number")
        number = raw.get("version", 1)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ImportFormatError(f"{where}.version must be a positive whole number")
        active = raw.get("active", True)
        if not isinstance(active, bool):
            raise ImportFormatError(f"{where}.active must be true or false")
        ident = raw.get("id")
        parent = raw.get("parent")
        for name, value in (("id", ident), ("parent", parent)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
                raise ImportFormatError(f"{where}.{name} must be a number")
        message_created = _timestamp(raw.get("created_at"), created, f"{where}.created_at")
        groups.setdefault(group, []).append(
            {
                "_id": ident,
                "_tree": tree,
                "_parent": parent,
                "_tool_parts": _parse_tool_parts(raw.get("tool_parts"), where),
                "_attachments": _parse_attachments(raw.get("attachments"), index, role, limits),
                "role": role,
                "content": valid_text(content),
                "status": "interrupted" if status == "streaming" else status,
                **values,
                "version": number,
                "active": int(active),
                "created_at": message_created,
                "updated_at": _timestamp(
                    raw.get("updated_at"), message_created, f"{where}.updated_at"
                ),
            }
        )
    ordered: _ExportedGroups = []
    known: set[object] = set()
    for group, versions in groups.items():
        if tree:
            if len({repr(message["_parent"]) for message in versions}) != 1:
                raise ImportFormatError(f"the versions of group {group!r} have different parents")
            parent = versions[0]["_parent"]
            if parent is not None and parent not in known:
                raise ImportFormatError(
                    f"group {group!r} follows message {parent!r}, which does not come before it"
                )
        for message in versions:
            if message["_id"] is not None:
                if message["_id"] in known:
                    raise ImportFormatError(f"the id {message['_id']!r} is given twice")
                known.add(message["_id"])
        versions.sort(key=lambda message: int(message["version"]))
        numbers = [message["version"] for message in versions]
        if len(set(numbers)) != len(numbers):
            raise ImportFormatError(f"group {group!r} has the same version number twice")
        if len({message["role"] for message in versions}) != 1:
            raise ImportFormatError(f"the versions of group {group!r} have different roles")
        active_count = sum(message["active"] for message in versions)
        if active_count > 1:
            raise ImportFormatError(f"group {group!r} has more than one active version")
        if active_count == 0:
            versions[-1]["active"] = 1
        ordered.append(versions)
    return conversation, ordered


def _text(meta: Mapping[str, Any], name: str, where: str, *, default: str) -> str:
    value = meta.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ImportFormatError(f"{where}.{name} must be a string")
    return valid_text(value)


def _optional_text(meta: Mapping[str, Any], name: str, where: str) -> str | None:
    value = meta.get(name)
    if value is not None and not isinstance(value, str):
        raise ImportFormatError(f"{where}.{name} must be a string or null")
    return None if value is None else valid_text(value)


def _timestamp(value: object, default: float, where: str) -> float:
    """A timestamp from an ISO 8601 string (UTC unless it says otherwise) or a number."""
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not _valid_time(value):
            raise ImportFormatError(f"{where} is not a time between the years 1 and 9999")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value[:64])
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            stamp = moment.timestamp()
        except (ValueError, OverflowError) as exc:
            raise ImportFormatError(f"{where} is not an ISO 8601 time: {value[:64]!r}") from exc
        if not _valid_time(stamp):
            raise ImportFormatError(f"{where} is not a time between the years 1 and 9999")
        return stamp
    raise ImportFormatError(f"{where} must be an ISO 8601 time")
