"""6. Response cache: hit latency with 10,000 answers stored, sync and through the async front."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, below, info, log, median, percentile
from desktop_app.core.cache import AsyncResponseCache, ResponseCache, cache_key
from desktop_app.core.paths import app_paths
from desktop_app.core.types import ChatRequest, GenerationResponse, Message, Timing, TokenUsage
from desktop_app.simulator.text import reply_tokens

ENTRIES = 10_000
LOOKUPS = 2_000
MISSES = 500
QUICK_ENTRIES = 1_000
QUICK_LOOKUPS = 200
QUICK_MISSES = 50
REPLY_TOKENS = 300
DISTINCT_TEXTS = 64

METHOD = f"""\
A `ResponseCache` is opened in a fresh temporary folder laid out like `RILL_HOME`
(`data/response-cache`) and filled through `ResponseCache.put` with {ENTRIES:,} answers of
about {REPLY_TOKENS} tokens (≈2 KB of text each), keyed by `cache_key()` of {ENTRIES:,}
distinct requests. Then {LOOKUPS:,} lookups of stored keys in random order through the
synchronous `ResponseCache.get` — each one a SQLite read plus the hit counters' write
transaction, exactly what a hit costs in the app — and {MISSES} lookups of absent keys. The
cache is then closed and the same folder opened as an `AsyncResponseCache`, and {LOOKUPS:,}
more hits are awaited one at a time from an asyncio loop; each is timed from the call to the
result, so it includes the hop to the cache's thread and back. `cache_key()` itself is timed
over the same requests."""


def _requests(count: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            provider="openai",
            base_url="https://api.openai.com/v1",
            model="gpt-4o-mini",
            messages=(
                Message("system", "You are a helpful assistant."),
                Message("user", f"Question number {index}: tell me about rivers and bridges."),
            ),
            temperature=0.7,
        )
        for index in range(count)
    ]


def _response(index: int, texts: list[str]) -> GenerationResponse:
    return GenerationResponse(
        content=f"{index}: {texts[index % len(texts)]}",
        model="gpt-4o-mini",
        provider="openai",
        usage=TokenUsage(42, REPLY_TOKENS),
        finish_reason="stop",
        raw_finish_reason="stop",
        trace_id=f"{index:032x}",
        timing=Timing(ttft_s=0.4, total_s=6.2),
        cost=0.0002,
    )


def _time_sync_gets(cache: ResponseCache, keys: list[str], expect_hit: bool) -> list[float]:
    seconds: list[float] = []
    for key in keys:
        started = time.perf_counter()
        found = cache.get(key)
        seconds.append(time.perf_counter() - started)
        if (found is not None) != expect_hit:
            raise RuntimeError(f"lookup of {key} was {'a miss' if expect_hit else 'a hit'}")
    return seconds


async def _time_async_gets(directory: Path, keys: list[str]) -> list[float]:
    cache = AsyncResponseCache(directory)
    await cache.ready()
    seconds: list[float] = []
    try:
        for key in keys:
            started = time.perf_counter()
            found = await cache.get(key)
            seconds.append(time.perf_counter() - started)
            if found is None:
                raise RuntimeError(f"async lookup of {key} was a miss")
    finally:
        await cache.aclose()
    return seconds


def run(quick: bool) -> list[Row]:
    entries = QUICK_ENTRIES if quick else ENTRIES
    lookups = QUICK_LOOKUPS if quick else LOOKUPS
    misses = QUICK_MISSES if quick else MISSES
    rng = random.Random(6)
    texts = ["".join(reply_tokens(seed, REPLY_TOKENS)) for seed in range(DISTINCT_TEXTS)]
    requests = _requests(entries)

    started = time.perf_counter()
    keys = [cache_key(request) for request in requests]
    key_us = (time.perf_counter() - started) / entries * 1e6

    with tempfile.TemporaryDirectory(prefix="rill-bench-cache-") as home:
        directory = app_paths(home).response_cache_dir
        with ResponseCache(directory) as cache:
            if cache.warnings:
                raise RuntimeError(" ".join(cache.warnings))
            started = time.perf_counter()
            for index, key in enumerate(keys):
                if not cache.put(key, _response(index, texts)):
                    raise RuntimeError(f"put {index} was refused")
            fill_s = time.perf_counter() - started
            stats = cache.stats()
            log(f"{stats.entries:,} entries, {stats.bytes / 1e6:.1f} MB, filled in {fill_s:.1f} s")
            if stats.entries != entries:
                raise RuntimeError(f"the cache holds {stats.entries} entries, not {entries}")
            hit_keys = rng.choices(keys, k=lookups)
            sync_s = _time_sync_gets(cache, hit_keys, expect_hit=True)
            miss_keys = [f"{rng.getrandbits(256):064x}" for _ in range(misses)]
            miss_s = _time_sync_gets(cache, miss_keys, expect_hit=False)
        async_s = asyncio.run(_time_async_gets(directory, rng.choices(keys, k=lookups)))

    def ms(samples: list[float]) -> list[float]:
        return [s * 1000 for s in samples]

    sync_ms, async_ms, miss_ms = ms(sync_s), ms(async_s), ms(miss_s)
    where = f"{entries:,} entries, {lookups:,} random hits"
    return [
        info("ResponseCache.get, hit, p50", median(sync_ms), "ms", note=where),
        below("ResponseCache.get, hit, p99", percentile(sync_ms, 99), "ms", 5.0, note=where),
        info(
            "ResponseCache.get, miss, p50",
            median(miss_ms),
            "ms",
            note=f"p99 {percentile(miss_ms, 99):.3f} ms over {misses} absent keys",
        ),
        info("AsyncResponseCache.get, hit, p50", median(async_ms), "ms", note=where),
        below("AsyncResponseCache.get, hit, p99", percentile(async_ms, 99), "ms", 5.0, note=where),
        info("cache_key(request)", key_us, "µs", note="mean over all keys"),
        info(
            f"filling: ResponseCache.put × {entries:,}",
            entries / fill_s,
            "puts/s",
            note=f"{fill_s:.1f} s in all",
        ),
    ]
