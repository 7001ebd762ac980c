"""Auto's route cache: keys, time to live, the entry limit (LRU), statistics, sharing."""

from __future__ import annotations

import types
from pathlib import Path

import diskcache.core
import pytest

from desktop_app.core.routing.cache import CachedRoute, RouteCache, normalise, route_key

SMALL = CachedRoute("fast", "sim-small", 1, "cheapest")
LARGE = CachedRoute("strong", "sim-large", 3, "strongest")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """diskcache's clock, moved by the test."""
    now = [1_000_000.0]
    fake = types.SimpleNamespace(time=lambda: now[0])
    monkeypatch.setattr(diskcache.core, "time", fake)
    return now


def test_similar_questions_share_a_key_and_the_shape_is_part_of_it() -> None:
    assert normalise("  What IS  a river?! ") == "what is a river"
    key = route_key("auto", "What is a river?", "chat", 2)
    assert key == route_key("auto", "what is a   river", "chat", 2)
    assert key != route_key("auto", "What is a river?", "chat", 3)
    assert key != route_key("auto", "What is a river?", "research", 2)
    assert key != route_key("other", "What is a river?", "chat", 2)
    assert len(key) == 64


def test_a_route_expires_after_its_time_to_live(tmp_path: Path, clock: list[float]) -> None:
    cache = RouteCache(tmp_path / "routes", ttl_s=3600)
    cache.put("k", SMALL)
    clock[0] += 3599
    assert cache.get("k") == SMALL
    clock[0] += 2
    assert cache.get("k") is None
    assert cache.stats().size == 0
    cache.close()


def test_the_least_recently_used_route_goes_first(tmp_path: Path, clock: list[float]) -> None:
    cache = RouteCache(tmp_path / "routes", max_entries=3, clock=lambda: clock[0])
    for n in range(3):
        cache.put(f"k{n}", SMALL)
        clock[0] += 1
    assert cache.get("k0") == SMALL  # used: now k1 is the least recently used
    clock[0] += 1
    cache.put("k3", LARGE)
    assert cache.get("k1") is None
    assert [cache.get(k) is not None for k in ("k0", "k2", "k3")] == [True, True, True]
    assert cache.stats().size == 3
    cache.close()


def test_stats_count_hits_misses_and_hits_per_model(tmp_path: Path) -> None:
    cache = RouteCache(tmp_path / "routes")
    cache.put("a", SMALL)
    cache.put("b", LARGE)
    cache.get("a")
    cache.get("a")
    cache.get("b")
    cache.get("missing")
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses) == (2, 3, 1)
    assert stats.hit_rate == 0.75
    assert stats.hits_by_model == {"sim-small": 2, "sim-large": 1}
    assert stats.to_dict()["hits_by_model"] == {"sim-small": 2, "sim-large": 1}
    assert cache.clear() == 2
    assert cache.stats().to_dict() == {
        "size": 0,
        "hits": 0,
        "misses": 0,
        "hit_rate": 0.0,
        "hits_by_model": {},
    }
    cache.close()


def test_two_processes_share_the_folder(tmp_path: Path) -> None:
    window, terminal = RouteCache(tmp_path / "routes"), RouteCache(tmp_path / "routes")
    window.put("k", LARGE)
    assert terminal.get("k") == LARGE
    terminal.close()  # the terminal's counts are written when it ends
    assert window.stats().hits == 1
    window.close()


def test_hits_are_counted_in_memory_and_written_within_a_second(
    tmp_path: Path, clock: list[float]
) -> None:
    cache = RouteCache(tmp_path / "routes", clock=lambda: clock[0])
    other = RouteCache(tmp_path / "routes")
    cache.put("k", SMALL)
    cache.get("k")
    assert other.stats().hits == 0  # not written yet
    clock[0] += 1.0
    cache.get("k")
    assert other.stats().hits == 2
    assert other.stats().hits_by_model == {"sim-small": 2}
    cache.close()
    other.close()


def test_a_cache_that_cannot_be_opened_is_switched_off_with_a_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = RouteCache(blocker / "routes")
    assert cache.get("k") is None
    cache.put("k", SMALL)
    assert cache.stats().size == 0
    assert cache.problem is not None and "cannot be used" in cache.problem


def test_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = RouteCache(tmp_path / "routes")
    cache.put("k", SMALL)
    cache.close()
    raw = diskcache.Cache(str(tmp_path / "routes"))
    raw.set("k", "{not json")
    raw.close()
    assert cache.get("k") is None
    assert cache.stats().misses == 1
    cache.close()
