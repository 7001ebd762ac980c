"""The persistent response cache: finished answers on disk, keyed by everything that decides them.

``cache_key`` turns a ``ChatRequest`` into a sha256 hex key. ``ResponseCache`` keeps finished
``GenerationResponse`` records in a ``diskcache.Cache`` folder that several Rill processes may
share; ``AsyncResponseCache`` offers the same operations as coroutines that run on one dedicated
thread, so cache I/O never happens on the event loop thread.

Layout of the cache folder::

    <directory>/cache.db            answers: sha256 key -> JSON text, with expiry, LRU-evicted
    <directory>/counters/cache.db   hit/miss/model/cost counters, never evicted

The counters live in their own small ``diskcache.Cache`` with eviction switched off, so the size
limit of the answers can never evict them; ``Cache.incr`` keeps them exact across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar, cast, get_args
from urllib.parse import urlsplit, urlunsplit

import diskcache

from desktop_app.core.types import (
    ChatRequest,
    FinishReason,
    GenerationResponse,
    Message,
    Timing,
    TokenUsage,
    Tool,
    ToolCall,
)

__all__ = [
    "DEFAULT_SIZE_LIMIT_BYTES",
    "DEFAULT_TTL_S",
    "FIELDS_IN_KEY",
    "FIELDS_NOT_IN_KEY",
    "KEY_FORMAT",
    "STORED_FINISH_REASONS",
    "AsyncResponseCache",
    "CacheStats",
    "ResponseCache",
    "cache_key",
    "normalise_base_url",
]

log = logging.getLogger("rill.cache")

KEY_FORMAT: Final = "rill-response-cache-key/1"
"""Part of every key; changing it makes every older entry unreachable."""

VALUE_FORMAT: Final = 1
"""Version of the stored JSON record; records of another version are treated as undecodable."""

DEFAULT_TTL_S: Final = 86_400.0
DEFAULT_SIZE_LIMIT_BYTES: Final = 256 * 1024 * 1024
CULL_LIMIT: Final = 10
"""How many least-recently-used answers one write may evict once the size limit is reached."""
SQLITE_TIMEOUT_S: Final = 5.0
"""How long one operation waits for another process's write lock before giving up."""

COUNTERS_DIRNAME: Final = "counters"
STORED_FINISH_REASONS: Final[frozenset[str]] = frozenset({"stop", "length", "tool_calls"})
_FINISH_REASONS: Final[frozenset[str]] = frozenset(get_args(FinishReason))

FIELDS_IN_KEY: Final[frozenset[str]] = frozenset(
    {
        "provider",
        "base_url",
        "model",
        "messages",
        "system",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "tools",
        "options",
    }
)
"""The ``ChatRequest`` fields that change the answer, and so the key."""

FIELDS_NOT_IN_KEY: Final[frozenset[str]] = frozenset({"profile", "stream"})
"""The ``ChatRequest`` fields that do not change the answer: a profile name, and whether the
answer arrives as a stream (a cached answer is the finished response either way)."""

_HITS: Final = "hits"
_MISSES: Final = "misses"
_COST_SAVED_NANOS: Final = "cost_saved_nanos"
_MODEL_HITS_PREFIX: Final = "hits_by_model:"
_NANOS_PER_UNIT: Final = 1_000_000_000

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def cache_key(request: ChatRequest) -> str:
    """The sha256 hex key of everything in ``request`` that changes the answer.

    The key is computed over a canonical JSON form (sorted keys, compact separators, floats that
    equal an integer written as that integer) so it is the same in every process and on every
    run. ``profile`` and ``stream`` are not part of it, and neither is any credential: the API
    key is not in ``ChatRequest``, and user info in the base URL is dropped.
    """
    payload = {
        "format": KEY_FORMAT,
        "provider": request.provider,
        "base_url": normalise_base_url(request.base_url),
        "model": request.model,
        "system": request.system,
        "messages": [_message_form(message) for message in request.messages],
        "temperature": _canonical(request.temperature),
        "top_p": _canonical(request.top_p),
        "max_tokens": _canonical(request.max_tokens),
        "stop": [str(stop) for stop in request.stop],
        "seed": _canonical(request.seed),
        "tools": [_tool_form(tool) for tool in request.tools],
        "options": _options_form(request.options),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_base_url(url: str) -> str:
    """``url`` without surrounding space, trailing ``/``, or user info; scheme and host in
    lower case. The path, query and fragment keep their case."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    netloc = parts.netloc.rpartition("@")[2].lower()
    return urlunsplit(
        (parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, parts.fragment)
    )


def _message_form(message: Message) -> dict[str, Any]:
    """The parts of a message that decide the reply; an attachment by its kind, name (a
    text block is headed by it) and SHA-256, never its bytes."""
    files = [[a.kind, a.name, a.sha256] for a in message.attachments]
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        **({"is_error": True} if message.is_error else {}),
        **({"attachments": files} if files else {}),
    }


def _tool_form(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": _canonical(tool.parameters),
    }


def _options_form(options: tuple[tuple[str, Any], ...]) -> list[list[Any]]:
    pairs = [[str(name), _canonical(value)] for name, value in options]
    return sorted(pairs, key=lambda pair: json.dumps(pair, sort_keys=True, ensure_ascii=False))


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON data with one spelling per meaning.

    Floats equal to an integer become that integer (``1`` and ``1.0`` are the same), tuples
    become lists, mapping keys become strings, sets are sorted; anything else is written as its
    type name and ``str``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(name): _canonical(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    kind = type(value)
    return {"__type__": f"{kind.__module__}.{kind.__qualname__}", "value": str(value)}


# --------------------------------------------------------------------------------------------
# Stored records
# --------------------------------------------------------------------------------------------


class _Undecodable(ValueError):
    """A stored value that is not a record this version can read."""


def _encode(response: GenerationResponse) -> str:
    usage = response.usage
    record: dict[str, Any] = {
        "v": VALUE_FORMAT,
        "content": response.content,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in response.tool_calls
        ],
        "usage": (
            None
            if usage is None
            else {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "estimated": usage.estimated,
            }
        ),
        "finish_reason": response.finish_reason,
        "raw_finish_reason": response.raw_finish_reason,
        "model": response.model,
        "provider": response.provider,
        "cost": response.cost,
        "timing": {"ttft_s": response.timing.ttft_s, "total_s": response.timing.total_s},
        "trace_id": response.trace_id,
        "stored_at": time.time(),
    }
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot go into SQLite as text; escaped JSON is plain ASCII.
        text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    return text


def _decode(raw: object) -> GenerationResponse:
    if not isinstance(raw, str):
        raise _Undecodable(f"stored value is {type(raw).__name__}, not JSON text")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _Undecodable(str(exc)) from exc
    if not isinstance(data, dict) or data.get("v") != VALUE_FORMAT:
        raise _Undecodable("not a response record of this version")

    finish_reason = _text(data, "finish_reason")
    if finish_reason not in _FINISH_REASONS:
        raise _Undecodable(f"unknown finish reason {finish_reason!r}")

    calls = data.get("tool_calls")
    if not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls):
        raise _Undecodable("tool_calls is not a list of objects")
    tool_calls = tuple(
        ToolCall(
            id=_optional_text(call, "id"),
            name=_text(call, "name"),
            arguments=_text(call, "arguments"),
        )
        for call in calls
    )

    usage_data = data.get("usage")
    usage: TokenUsage | None = None
    if usage_data is not None:
        if not isinstance(usage_data, dict):
            raise _Undecodable("usage is not an object")
        estimated = usage_data.get("estimated", False)  # records from before it was kept
        if not isinstance(estimated, bool):
            raise _Undecodable("usage.estimated is not true or false")
        usage = TokenUsage(
            input_tokens=_integer(usage_data, "input_tokens"),
            output_tokens=_integer(usage_data, "output_tokens"),
            estimated=estimated,
        )

    timing_data = data.get("timing")
    if not isinstance(timing_data, dict):
        raise _Undecodable("timing is not an object")

    return GenerationResponse(
        content=_text(data, "content"),
        model=_text(data, "model"),
        provider=_text(data, "provider"),
        usage=usage,
        finish_reason=cast(FinishReason, finish_reason),
        raw_finish_reason=_optional_text(data, "raw_finish_reason"),
        trace_id=_text(data, "trace_id"),
        timing=Timing(
            ttft_s=_optional_number(timing_data, "ttft_s"),
            total_s=_optional_number(timing_data, "total_s"),
        ),
        tool_calls=tool_calls,
        cost=_optional_number(data, "cost"),
        cached=True,
    )


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _Undecodable(f"{name} is not text")
    return value


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise _Undecodable(f"{name} is not text")
    return value


def _integer(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Undecodable(f"{name} is not an integer")
    return value


def _optional_number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Undecodable(f"{name} is not a number")
    return float(value)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What the cache holds and how often it answered, summed over every process sharing it."""

    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    hits_by_model: dict[str, int] = field(default_factory=dict)
    cost_saved: float = 0.0


@dataclass(slots=True)
class _Store:
    """The two open diskcache folders: answers, and the counters next to them."""

    entries: Any
    counters: Any

    def close(self) -> None:
        for cache in (self.entries, self.counters):
            with contextlib.suppress(Exception):
                cache.close()


_STORAGE_ERRORS: Final = (sqlite3.Error, diskcache.Timeout, OSError)


def _is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (not merely busy or closed)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    if type(exc) is sqlite3.DatabaseError:
        return True
    message = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and (
        "no such table" in message or "malformed" in message
    )


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == 13


class ResponseCache:
    """Finished answers on disk, shared by every Rill process that opens the same folder.

    Only complete answers are stored (finish reason ``stop``, ``length`` or ``tool_calls``),
    as plain JSON text, each for ``ttl_s`` seconds. When the folder grows past
    ``size_limit_bytes`` the least recently used answers are evicted.

    No method raises on storage trouble. A damaged database is moved aside as
    ``<directory>.corrupt-YYYYmmdd-HHMMSS`` and replaced by an empty cache, with a sentence in
    ``warnings``; other failures make a lookup a miss and a store a no-op. If the folder cannot
    be opened at all the cache stays empty for this session and says so in ``warnings``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.ttl_s = float(ttl_s)
        self.size_limit_bytes = int(size_limit_bytes)
        self.warnings: list[str] = []
        self._lock = threading.RLock()
        self._closed = False
        self._store: _Store | None = self._open()

    # -- public operations ---------------------------------------------------------------

    def get(self, key: str) -> GenerationResponse | None:
        """The stored answer for ``key`` marked ``cached=True``, or None; counts a hit or a miss.

        A stored value that cannot be decoded counts as a miss and is deleted.
        """
        store = self._current()
        if store is None:
            return None
        response: GenerationResponse | None = None
        try:
            raw = store.entries.get(key, default=None)
        except _STORAGE_ERRORS as exc:
            self._failed(store, exc, "read an answer from")
        except Exception as exc:  # a value diskcache itself cannot load back
            self._drop_undecodable(store, key, exc)
        else:
            if raw is not None:
                try:
                    response = _decode(raw)
                except _Undecodable as exc:
                    self._drop_undecodable(store, key, exc)
        self._count(response)
        return response

    def put(self, key: str, response: GenerationResponse) -> bool:
        """Store ``response`` under ``key`` for ``ttl_s`` seconds; whether it was stored.

        Only complete answers are stored: the finish reason must be ``stop``, ``length`` or
        ``tool_calls``, and a response that itself came from the cache is never stored again.
        """
        if response.cached or response.finish_reason not in STORED_FINISH_REASONS:
            return False
        store = self._current()
        if store is None:
            return False
        try:
            store.entries.set(key, _encode(response), expire=self.ttl_s)
        except Exception as exc:
            self._failed(store, exc, "store an answer in")
            return False
        return True

    def delete(self, key: str) -> bool:
        """Remove the answer stored under ``key``; whether there was one."""
        store = self._current()
        if store is None:
            return False
        try:
            return bool(store.entries.delete(key))
        except Exception as exc:
            self._failed(store, exc, "delete an answer from")
            return False

    def clear(self) -> int:
        """Remove every stored answer; how many were removed. The counters are kept."""
        store = self._current()
        if store is None:
            return 0
        try:
            return int(store.entries.clear())
        except diskcache.Timeout as exc:
            removed = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            self._failed(store, exc, "clear")
            return removed
        except Exception as exc:
            self._failed(store, exc, "clear")
            return 0

    def reset_stats(self) -> None:
        """Set the hit, miss, per-model and cost-saved counters back to zero."""
        store = self._current()
        if store is None:
            return
        try:
            store.counters.clear()
        except Exception as exc:
            self._failed(store, exc, "reset the counters of")

    def stats(self) -> CacheStats:
        """Entries (expired ones removed first), size on disk, and the shared counters."""
        store = self._current()
        if store is None:
            return CacheStats()
        try:
            store.entries.expire()
            entries = len(store.entries)
            volume = int(store.entries.volume())
            counters = store.counters
            hits = _as_int(counters.get(_HITS, 0))
            misses = _as_int(counters.get(_MISSES, 0))
            cost_nanos = _as_int(counters.get(_COST_SAVED_NANOS, 0))
            by_model: dict[str, int] = {}
            for name in list(counters.iterkeys()):
                if isinstance(name, str) and name.startswith(_MODEL_HITS_PREFIX):
                    count = _as_int(counters.get(name, 0))
                    if count:
                        by_model[name[len(_MODEL_HITS_PREFIX) :]] = count
        except Exception as exc:
            self._failed(store, exc, "read the statistics of")
            return CacheStats()
        lookups = hits + misses
        return CacheStats(
            entries=entries,
            bytes=volume,
            hits=hits,
            misses=misses,
            hit_rate=hits / lookups if lookups else 0.0,
            hits_by_model=by_model,
            cost_saved=cost_nanos / _NANOS_PER_UNIT,
        )

    def close(self) -> None:
        """Close this thread's connections; later calls act as an empty cache."""
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- counting ------------------------------------------------------------------------

    def _count(self, response: GenerationResponse | None) -> None:
        store = self._current()
        if store is None:
            return
        counters = store.counters
        try:
            with counters.transact():
                if response is None:
                    counters.incr(_MISSES)
                    return
                counters.incr(_HITS)
                counters.incr(_MODEL_HITS_PREFIX + response.model)
                cost = response.cost
                if cost is not None and math.isfinite(cost) and cost > 0:
                    counters.incr(_COST_SAVED_NANOS, round(cost * _NANOS_PER_UNIT))
        except Exception as exc:
            self._failed(store, exc, "update the counters of")

    # -- opening, failures and recovery --------------------------------------------------

    def _current(self) -> _Store | None:
        return None if self._closed else self._store

    def _connect(self) -> _Store:
        folder = str(self.directory)
        entries = diskcache.Cache(
            folder,
            timeout=SQLITE_TIMEOUT_S,
            size_limit=self.size_limit_bytes,
            eviction_policy="least-recently-used",
            cull_limit=CULL_LIMIT,
        )
        try:
            counters = diskcache.Cache(
                str(self.directory / COUNTERS_DIRNAME),
                timeout=SQLITE_TIMEOUT_S,
                eviction_policy="none",
                cull_limit=0,
            )
        except BaseException:
            entries.close()
            raise
        return _Store(entries=entries, counters=counters)

    def _open(self) -> _Store | None:
        try:
            return self._connect()
        except Exception as exc:
            failure: Exception = exc
        if _is_damage(failure) or self._holds_garbage():
            return self._replace_damaged(failure)
        self._disable(failure)
        return None

    def _holds_garbage(self) -> bool:
        """Whether the path is something other than a cache folder (a file, say)."""
        folder = self.directory
        if folder.exists() and not folder.is_dir():
            return True
        for db in (folder / "cache.db", folder / COUNTERS_DIRNAME / "cache.db"):
            if db.exists() and not db.is_file():
                return True
        counters = folder / COUNTERS_DIRNAME
        return counters.exists() and not counters.is_dir()

    def _on_disk_healthy(self) -> bool:
        """Whether both database files pass SQLite's quick integrity check."""
        if self._holds_garbage():
            return False
        for db in (self.directory / "cache.db", self.directory / COUNTERS_DIRNAME / "cache.db"):
            if not db.exists():
                continue
            try:
                with contextlib.closing(sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)) as con:
                    rows = con.execute("PRAGMA quick_check").fetchall()
            except sqlite3.Error as exc:
                if _is_damage(exc):
                    return False
                continue
            if rows != [("ok",)]:
                return False
        return True

    def _failed(self, store: _Store, exc: BaseException, doing: str) -> None:
        """Handle a storage failure of ``store``: recover from damage, log anything else."""
        if not _is_damage(exc):
            log.warning(
                "Rill could not %s the response cache at %s (%s); it carries on without it.",
                doing,
                self.directory,
                exc,
            )
            return
        with self._lock:
            if self._closed or self._store is not store:
                return  # closed meanwhile, or another thread already recovered
            store.close()
            self._store = None
            if self._on_disk_healthy():
                # Another process may already have replaced the damaged folder.
                try:
                    self._store = self._connect()
                    log.warning(
                        "The response cache at %s reported damage (%s) but checks out on disk; "
                        "Rill reopened it.",
                        self.directory,
                        exc,
                    )
                    return
                except Exception as again:
                    exc = again
            self._store = self._replace_damaged(exc)

    def _replace_damaged(self, exc: BaseException) -> _Store | None:
        aside = self._move_aside()
        if aside is None:
            self._disable(exc)
            return None
        self._warn(
            f"The response cache at {self.directory} was damaged ({exc}), so Rill moved it to "
            f"{aside} and started an empty cache. Cached answers are gone; nothing else is "
            f"affected."
        )
        try:
            return self._connect()
        except Exception as again:
            self._disable(again)
            return None

    def _move_aside(self) -> Path | None:
        folder = self.directory
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = folder.with_name(f"{folder.name}.corrupt-{stamp}")
        suffix = 2
        while target.exists() or target.is_symlink():
            target = folder.with_name(f"{folder.name}.corrupt-{stamp}-{suffix}")
            suffix += 1
        try:
            folder.rename(target)
        except OSError as exc:
            log.warning("Rill could not move the damaged cache %s aside: %s", folder, exc)
            return None
        return target

    def _disable(self, exc: BaseException) -> None:
        if _is_disk_full(exc):
            # The cache only saves time; a full disk is reported where it loses data.
            log.warning("The disk is full, so answers are not cached in this session (%s).", exc)
            return
        self._warn(
            f"Rill could not open the response cache at {self.directory} ({exc}), so answers "
            f"are not cached in this session. Check that the folder is writable, or delete it."
        )

    def _drop_undecodable(self, store: _Store, key: str, exc: BaseException) -> None:
        log.warning("Dropping an unreadable response cache entry %s: %s", key, exc)
        try:
            store.entries.delete(key)
        except Exception as failure:
            self._failed(store, failure, "delete an unreadable answer from")

    def _warn(self, sentence: str) -> None:
        self.warnings.append(sentence)
        log.warning("%s", sentence)


def _as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --------------------------------------------------------------------------------------------
# Async front
# --------------------------------------------------------------------------------------------


class AsyncResponseCache:
    """``ResponseCache`` as coroutines, every call run on one dedicated cache thread.

    The cache is opened on that thread too (the constructor only schedules it), so no cache
    I/O ever happens on the event loop thread. ``warnings`` is filled once the cache is open:
    after ``await ready()`` or any other awaited call. After ``aclose()`` every operation acts
    as an empty cache.
    """

    def __init__(
        self,
        directory: Path,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rill-cache")
        self._opened: Future[ResponseCache] = self._executor.submit(
            ResponseCache, self.directory, ttl_s=ttl_s, size_limit_bytes=size_limit_bytes
        )
        self._closed = False

    @property
    def warnings(self) -> list[str]:
        """The sentences the cache recorded so far (empty until it is open)."""
        if not self._opened.done() or self._opened.exception() is not None:
            return []
        return list(self._opened.result().warnings)

    async def ready(self) -> None:
        """Wait until the cache folder is open (or recovered, or given up on)."""
        await self._run(lambda cache: None, None)

    async def get(self, key: str) -> GenerationResponse | None:
        """See ``ResponseCache.get``."""
        return await self._run(lambda cache: cache.get(key), None)

    async def put(self, key: str, response: GenerationResponse) -> bool:
        """See ``ResponseCache.put``."""
        return await self._run(lambda cache: cache.put(key, response), False)

    async def delete(self, key: str) -> bool:
        """See ``ResponseCache.delete``."""
        return await self._run(lambda cache: cache.delete(key), False)

    async def clear(self) -> int:
        """See ``ResponseCache.clear``."""
        return await self._run(lambda cache: cache.clear(), 0)

    async def reset_stats(self) -> None:
        """See ``ResponseCache.reset_stats``."""
        await self._run(lambda cache: cache.reset_stats(), None)

    async def stats(self) -> CacheStats:
        """See ``ResponseCache.stats``."""
        return await self._run(lambda cache: cache.stats(), CacheStats())

    async def aclose(self) -> None:
        """Close the cache on its thread and let the thread end."""
        if self._closed:
            return
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._close_on_thread)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, call: Callable[[ResponseCache], _T], default: _T) -> _T:
        if self._closed:
            return default
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._on_thread, call)

    def _on_thread(self, call: Callable[[ResponseCache], _T]) -> _T:
        return call(self._opened.result())

    def _close_on_thread(self) -> None:
        self._opened.result().close()
