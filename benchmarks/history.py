"""7. History: opening a 1,000-message conversation, and full-text search over 100,000 messages."""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import Row, below, info, log, median
from desktop_app.core.history import MAX_SEARCH_TERMS, History, fts_query
from desktop_app.core.paths import app_paths
from desktop_app.simulator.text import reply_tokens

TOTAL_MESSAGES = 100_000
LONG_CONVERSATION = 1_000
PER_CONVERSATION = 100
RUNS = 15
QUICK_TOTAL_MESSAGES = 10_000
QUICK_RUNS = 3
SEED = 7
LONG_QUERY_WORDS = (1_000, 5_000, 20_000)
SAVES_DURING_SEARCH = 40

# Query text → what it stands for. The words come from the generated vocabulary below.
QUERIES: tuple[tuple[str, str], ...] = (
    ("harbour", "one common word"),
    ("quiet valley", "two common words"),
    ('"slow current"', "a quoted phrase"),
    ("velmorin", "one rare word"),
    ("bri", "a prefix (as typed)"),
    ("b", "the first letter typed"),
)

METHOD = f"""\
The data is built once per run in a temporary folder laid out like `RILL_HOME`
(`data/history.sqlite3`), through `History` itself for the schema. The conversation that is
opened has {LONG_CONVERSATION:,} messages (alternating user and assistant) written one by one
through the History API (`History.add_message`, one committed transaction each, as the app
writes them). The other {TOTAL_MESSAGES - LONG_CONVERSATION:,} messages, in conversations of
{PER_CONVERSATION}, are bulk-inserted for speed with `executemany` in one transaction on a
second SQLite connection — the same rows the API would write (reply group = own id, version 1,
active), and the FTS5 index is filled by the schema's own triggers. Message text is
deterministic prose: about 60% of the words from the simulator's vocabulary and the rest from
20,000 invented words with a Zipf distribution (so some words are common and some rare);
user messages have 8–40 words, replies 40–250.

The database is then opened fresh three ways, each timed once for context: `History(path)`,
which runs SQLite's `PRAGMA quick_check` over the whole file before use (as `q` opens it);
`History(path, check_on_open=False)`, as the window opens it; and that store's
`History.verify()`, the same check on a connection of its own, which the window runs in a
thread once it is shown. **Open** is `History.messages(conversation_id)` of the
{LONG_CONVERSATION:,}-message conversation: the query plus building the `StoredMessage`
records, {RUNS} times; the figure is the median, and the first (coldest) run is in the note.
**Search** is `History.search(query)` — bm25-ranked, best 50, with snippets — over all
{TOTAL_MESSAGES:,} messages, {RUNS} times per query; the figure is the median per query, and
the note gives how many messages match. Every query is held to the target: a common word
matches tens of thousands of messages that all have to be ranked.

**Long queries** are pasted text of {", ".join(f"{n:,}" for n in LONG_QUERY_WORDS)} words
drawn from the same prose (`History.search` uses its first {MAX_SEARCH_TERMS} distinct
words); the figure is the median of {RUNS} runs, and the ratio row divides the longest
query's time by the shortest's — {LONG_QUERY_WORDS[-1] // LONG_QUERY_WORDS[0]} would be
linear growth. **Save during a search**: one thread searches without pause (the slowest of
the queries above, again and again) while the main thread saves a 4,000-character reply
with `History.update_message`, as the I/O thread does while a reply streams; the figure is
the slowest of {SAVES_DURING_SEARCH} saves, next to the median save with no search."""

_SYLLABLES = (
    "ka", "lo", "mi", "ren", "tas", "vel", "dor", "in", "sa", "ne", "qui", "bro", "tal", "fen",
    "mor", "ul", "zi", "par", "eth", "gon",
)  # fmt: skip


def _prose_words() -> list[str]:
    """The words the simulator writes its replies with."""
    words = {
        word.strip(".,!").lower() for token in reply_tokens(SEED, 20_000) for word in token.split()
    }
    return sorted(word for word in words if word.isalpha())


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """Words and cumulative weights: the simulator's prose words, then invented Zipf words."""
    prose = _prose_words()
    invented: list[str] = []
    seen = set(prose)
    while len(invented) < 20_000:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            invented.append(word)
    if "velmorin" not in seen:
        invented[4_000] = "velmorin"  # a rare word the queries can count on
    prose_share = 0.6 / len(prose)
    zipf = [1.0 / (rank + 10) for rank in range(len(invented))]
    scale = 0.4 / sum(zipf)
    weights = [prose_share] * len(prose) + [w * scale for w in zipf]
    return [*prose, *invented], list(itertools.accumulate(weights))


class _Text:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words, self.cumulative = _vocabulary(self.rng)

    def message(self, role: str) -> str:
        low, high = (8, 40) if role == "user" else (40, 250)
        count = self.rng.randint(low, high)
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=count)
        words[0] = words[0].capitalize()
        return " ".join(words) + "."


def _roles() -> Iterator[str]:
    return itertools.cycle(("user", "assistant"))


def _build(path: Path, total: int, text: _Text) -> int:
    """Write the test history; return the id of the long conversation."""
    started = time.perf_counter()
    with History(path) as history:
        conversation = history.create_conversation(
            title="The long one", provider="openai", model="gpt-4o-mini"
        )
        for role in itertools.islice(_roles(), LONG_CONVERSATION):
            history.add_message(
                conversation.id,
                "user" if role == "user" else "assistant",
                text.message(role),
                model=None if role == "user" else "gpt-4o-mini",
                provider=None if role == "user" else "openai",
            )
    api_s = time.perf_counter() - started
    log(f"{LONG_CONVERSATION:,} messages through History.add_message in {api_s:.1f} s")

    started = time.perf_counter()
    bulk = total - LONG_CONVERSATION
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        first_message = int(conn.execute("SELECT MAX(id) FROM messages").fetchone()[0]) + 1
        now = time.time()
        conversations: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        message_id = first_message
        for number in range((bulk + PER_CONVERSATION - 1) // PER_CONVERSATION):
            conversation_id = conversation.id + 1 + number
            conversations.append(
                (conversation_id, f"Conversation {number}", now, now, "openai", "gpt-4o-mini")
            )
            size = min(PER_CONVERSATION, first_message + bulk - message_id)
            for role in itertools.islice(_roles(), size):
                rows.append(
                    (message_id, conversation_id, role, text.message(role), message_id, now, now)
                )
                message_id += 1
        conn.executemany(
            "INSERT INTO conversations (id, title, created_at, updated_at, provider, model)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            conversations,
        )
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, reply_group,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    bulk_s = time.perf_counter() - started
    log(f"{bulk:,} more messages by executemany in {bulk_s:.1f} s")
    return conversation.id


def _matches(path: Path, query: str) -> int:
    parsed = fts_query(query)
    match = parsed.match if parsed else ""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?", (match,)
            ).fetchone()[0]
        )


def _timed_ms(runs: int, call: Callable[[], object]) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(quick: bool) -> list[Row]:
    total = QUICK_TOTAL_MESSAGES if quick else TOTAL_MESSAGES
    runs = QUICK_RUNS if quick else RUNS
    text = _Text(SEED)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="rill-bench-history-") as home:
        path = app_paths(home).history_db
        started = time.perf_counter()
        conversation_id = _build(path, total, text)
        build_s = time.perf_counter() - started
        size_mb = sum(
            p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file()
        ) / (1024 * 1024)

        started = time.perf_counter()
        History(path).close()
        checked_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        history = History(path, check_on_open=False)
        open_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        if history.verify() is not None:
            raise RuntimeError("the test history failed SQLite's integrity check")
        verify_ms = (time.perf_counter() - started) * 1000
        with history:
            count = len(history.messages(conversation_id))
            if count != LONG_CONVERSATION:
                raise RuntimeError(f"the conversation has {count} messages")
            open_runs = _timed_ms(runs, lambda: history.messages(conversation_id))
            rows.append(
                below(
                    f"open a {LONG_CONVERSATION:,}-message conversation (History.messages), p50",
                    median(open_runs),
                    "ms",
                    300.0,
                    note=f"{runs} runs; first {open_runs[0]:.1f} ms",
                )
            )
            for query, meaning in QUERIES:
                hits = _matches(path, query)
                if not hits:
                    raise RuntimeError(f"the query {query!r} matches nothing")
                found = history.search(query)
                if not found:
                    raise RuntimeError(f"History.search({query!r}) found nothing")
                samples = _timed_ms(runs, functools.partial(history.search, query))
                rows.append(
                    below(
                        f"search {total:,} messages: {query} ({meaning}), p50",
                        median(samples),
                        "ms",
                        50.0,
                        note=f"{hits:,} matching messages; {runs} runs, max {max(samples):.1f} ms",
                    )
                )
            rows += _long_queries(history, text, runs)
            rows += _save_during_search(history, conversation_id, total)
        rows.append(
            info(
                f"open the {total:,}-message file as the window does (no integrity check)",
                open_ms,
                "ms",
                note=f"History(path, check_on_open=False); {size_mb:.0f} MB on disk with its WAL",
            )
        )
        rows.append(
            info(
                "SQLite's integrity check of that file (History.verify)",
                verify_ms,
                "ms",
                note="the window runs it in a thread once it is shown; opened with the check "
                f"(History(path), as `q` opens it): {checked_ms:.0f} ms",
            )
        )
        rows.append(info("building the test history", build_s, "s", note="see the method"))
    return rows


def _long_queries(history: History, text: _Text, runs: int) -> list[Row]:
    rows: list[Row] = []
    times: list[float] = []
    for words in LONG_QUERY_WORDS:
        query = " ".join(
            itertools.islice(
                itertools.chain.from_iterable(
                    text.message("assistant").split() for _ in itertools.count()
                ),
                words,
            )
        )
        samples = _timed_ms(runs, functools.partial(history.search, query))
        times.append(median(samples))
        rows.append(
            below(
                f"search with a {words:,}-word query, p50",
                times[-1],
                "ms",
                200.0,
                note=f"{len(query):,} characters; {runs} runs, max {max(samples):.1f} ms",
            )
        )
    growth = LONG_QUERY_WORDS[-1] // LONG_QUERY_WORDS[0]
    rows.append(
        below(
            f"search time, {LONG_QUERY_WORDS[-1]:,}-word query / {LONG_QUERY_WORDS[0]:,}-word",
            times[-1] / times[0],
            "x",
            float(growth),
            note=f"{growth}x would be linear in the query's length",
        )
    )
    return rows


def _save_during_search(history: History, conversation_id: int, total: int) -> list[Row]:
    reply = history.add_message(conversation_id, "assistant", "", status="streaming")
    content = "flowing water " * 300
    quiet = _timed_ms(
        SAVES_DURING_SEARCH, lambda: history.update_message(reply.id, content=content)
    )
    slowest = max(
        QUERIES, key=lambda item: _timed_ms(1, functools.partial(history.search, item[0]))[0]
    )
    stop = threading.Event()
    searches = 0

    def search_forever() -> None:
        nonlocal searches
        while not stop.is_set():
            history.search(slowest[0])
            searches += 1

    searcher = threading.Thread(target=search_forever)
    searcher.start()
    try:
        time.sleep(0.05)
        busy = _timed_ms(
            SAVES_DURING_SEARCH, lambda: history.update_message(reply.id, content=content)
        )
    finally:
        stop.set()
        searcher.join()
    return [
        below(
            f"save a reply while searching {total:,} messages without pause, max",
            max(busy),
            "ms",
            50.0,
            note=(
                f"{SAVES_DURING_SEARCH} saves, p50 {median(busy):.1f} ms during "
                f"{searches} searches for {slowest[0]!r}; p50 {median(quiet):.1f} ms with none"
            ),
        )
    ]
