"""The route cache: which target an Auto profile chose for a question, kept on disk.

The key is a sha256 of the Auto profile's name, the normalised question (lower case,
punctuation dropped, runs of white space made one space), its category and its complexity,
so a question asked again in other words of the same shape skips routing. Entries live
``ttl_s`` (an hour by default) and at most ``max_entries`` (100) are kept, the least
recently used going first. The folder is under Rill's cache folder and shared by every
Rill process (the window and ``q``)::

    <directory>/cache.db            routes: key -> JSON text, with expiry
    <directory>/counters/cache.db   hits, misses, hits per model and when each route was
                                    last used, never evicted

The methods block on SQLite: call them off the event loop. A cache that cannot be opened
or written is switched off for the process (a warning says why); routing works without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import diskcache

log = logging.getLogger("rill.routing")

DEFAULT_TTL_S: Final = 3600.0
DEFAULT_MAX_ENTRIES: Final = 100
COUNTERS_DIRNAME: Final = "counters"
FLUSH_S: Final = 1.0
MODEL_PREFIX: Final = "model:"
USED_PREFIX: Final = "used:"
_SQLITE_TIMEOUT_S: Final = 2.0
_ERRORS: Final = (sqlite3.Error, diskcache.Timeout, OSError, ValueError)
_PUNCTUATION = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalise(question: str) -> str:
    """``question`` in lower case without punctuation, its white space made single spaces."""
    return _SPACE.sub(" ", _PUNCTUATION.sub(" ", question.lower())).strip()


def route_key(profile: str, question: str, category: str, complexity: int) -> str:
    text = "\x1f".join((profile, normalise(question), category, str(complexity)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedRoute:
    profile: str
    model: str
    tier: int
    reason: str


@dataclass(frozen=True, slots=True)
class RouteStats:
    size: int
    hits: int
    misses: int
    hits_by_model: dict[str, int] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "hits_by_model": dict(self.hits_by_model),
        }


class RouteCache:
    """Routes on disk with a time to live, an entry limit (LRU) and hit statistics.

    A hit is one read: when each route was last used and the hit and miss counts are
    kept in memory and written together, in one transaction, by the first lookup at least
    :data:`FLUSH_S` seconds after the last write, and by :meth:`stats`, :meth:`put` and
    :meth:`close` — so a hit never waits for a commit, and another process sees the
    counts once they are written.
    """

    def __init__(
        self,
        directory: Path,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.ttl_s = ttl_s
        self.max_entries = max(1, max_entries)
        self.clock = clock
        self.problem: str | None = None
        """Why the cache is switched off, if it is."""
        self._lock = threading.Lock()
        self._entries: diskcache.Cache | None = None
        self._counters: diskcache.Cache | None = None
        self._counts: Counter[str] = Counter()
        self._used: dict[str, float] = {}
        self._flushed = clock()

    def _open(self) -> tuple[diskcache.Cache, diskcache.Cache] | None:
        if self.problem is not None:
            return None
        if self._entries is not None and self._counters is not None:
            return self._entries, self._counters
        try:
            entries = diskcache.Cache(
                str(self.directory),
                timeout=_SQLITE_TIMEOUT_S,
                eviction_policy="none",
                cull_limit=0,
            )
            counters = diskcache.Cache(
                str(self.directory / COUNTERS_DIRNAME),
                timeout=_SQLITE_TIMEOUT_S,
                eviction_policy="none",
                cull_limit=0,
            )
        except _ERRORS as exc:
            self._off(exc)
            return None
        self._entries, self._counters = entries, counters
        return entries, counters

    def _off(self, exc: BaseException) -> None:
        self.problem = (
            f"The route cache in {self.directory} cannot be used ({exc}); "
            "every Auto question is routed afresh."
        )
        log.warning("%s", self.problem)

    def get(self, key: str) -> CachedRoute | None:
        """The route stored under ``key`` (counted as a hit), or None (a miss)."""
        with self._lock:
            store = self._open()
            if store is None:
                return None
            entries, counters = store
            try:
                raw = entries.get(key)
                route = _decode(raw) if raw is not None else None
                now = self.clock()
                if route is None:
                    self._counts["misses"] += 1
                else:
                    self._counts["hits"] += 1
                    self._counts[MODEL_PREFIX + route.model] += 1
                    self._used[key] = now
                if now - self._flushed >= FLUSH_S:
                    self._flush(counters)
                return route
            except _ERRORS as exc:
                self._off(exc)
                return None

    def _flush(self, counters: diskcache.Cache) -> None:
        """Write the counts and last uses kept in memory, in one transaction."""
        self._flushed = self.clock()
        if not self._counts and not self._used:
            return
        counts, used = self._counts, self._used
        self._counts, self._used = Counter(), {}
        with counters.transact():
            for name, count in counts.items():
                counters.incr(name, count)
            for key, at in used.items():
                counters.set(USED_PREFIX + key, at)

    def put(self, key: str, route: CachedRoute) -> None:
        with self._lock:
            store = self._open()
            if store is None:
                return
            entries, counters = store
            value = json.dumps(
                {
                    "profile": route.profile,
                    "model": route.model,
                    "tier": route.tier,
                    "reason": route.reason,
                }
            )
            try:
                self._used[key] = self.clock()
                self._flush(counters)
                entries.set(key, value, expire=self.ttl_s)
                if len(entries) > self.max_entries:
                    entries.expire()
                excess = len(entries) - self.max_entries
                if excess > 0:
                    self._evict(entries, counters, excess)
            except _ERRORS as exc:
                self._off(exc)

    @staticmethod
    def _evict(entries: diskcache.Cache, counters: diskcache.Cache, count: int) -> None:
        """Remove the ``count`` least recently used routes (and forget uses of routes
        that are gone)."""
        stored = set(entries.iterkeys())
        last_used: dict[str, float] = {}
        for name in list(counters.iterkeys()):
            if isinstance(name, str) and name.startswith(USED_PREFIX):
                key = name[len(USED_PREFIX) :]
                if key in stored:
                    last_used[key] = float(counters.get(name, 0.0))
                else:
                    counters.delete(name)
        oldest = sorted(stored, key=lambda k: last_used.get(k, 0.0))[:count]
        for key in oldest:
            entries.delete(key)
            counters.delete(USED_PREFIX + key)

    def stats(self) -> RouteStats:
        with self._lock:
            store = self._open()
            if store is None:
                return RouteStats(0, 0, 0)
            entries, counters = store
            try:
                self._flush(counters)
                entries.expire()
                by_model: dict[str, int] = {}
                for name in counters.iterkeys():
                    if isinstance(name, str) and name.startswith(MODEL_PREFIX):
                        by_model[name[len(MODEL_PREFIX) :]] = int(counters.get(name, 0))
                return RouteStats(
                    size=len(entries),
                    hits=int(counters.get("hits", 0)),
                    misses=int(counters.get("misses", 0)),
                    hits_by_model=by_model,
                )
            except _ERRORS as exc:
                self._off(exc)
                return RouteStats(0, 0, 0)

    def clear(self) -> int:
        """Remove every route and reset the statistics; return how many routes there were."""
        with self._lock:
            store = self._open()
            if store is None:
                return 0
            entries, counters = store
            try:
                self._counts.clear()
                self._used.clear()
                removed = int(entries.clear())
                counters.clear()
                return removed
            except _ERRORS as exc:
                self._off(exc)
                return 0

    def close(self) -> None:
        with self._lock:
            if self._counters is not None and self.problem is None:
                try:
                    self._flush(self._counters)
                except _ERRORS as exc:
                    log.warning("the route cache's counts could not be written: %s", exc)
            for cache in (self._entries, self._counters):
                if cache is not None:
                    cache.close()
            self._entries = self._counters = None


def _decode(raw: object) -> CachedRoute | None:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(data, dict):
            return None
        tier = data["tier"]
        if not isinstance(tier, int):
            return None
        return CachedRoute(str(data["profile"]), str(data["model"]), tier, str(data["reason"]))
    except (ValueError, KeyError):
        return None
