"""The persistent response cache: keys, storing, expiry, eviction, counters, sharing, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import diskcache
import pytest

import desktop_app
from desktop_app.core.cache import (
    FIELDS_IN_KEY,
    FIELDS_NOT_IN_KEY,
    AsyncResponseCache,
    CacheStats,
    ResponseCache,
    cache_key,
    normalise_base_url,
)
from desktop_app.core.types import (
    ChatRequest,
    GenerationResponse,
    Message,
    Timing,
    TokenUsage,
    Tool,
    ToolCall,
)

REPO_ROOT = Path(desktop_app.__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Sample records (also loaded by child processes from this file)
# --------------------------------------------------------------------------------------------


def sample_request(**changes: Any) -> ChatRequest:
    request = ChatRequest(
        provider="openai",
        base_url="https://api.example.com/v1",
        model="gpt-test",
        system="You are terse.",
        messages=(
            Message(role="user", content="What is the weather in Zürich?"),
            Message(
                role="assistant",
                content="",
                tool_calls=(ToolCall(id="call_1", name="weather", arguments='{"city":"Zürich"}'),),
            ),
            Message(role="tool", content='{"temp_c": 21}', tool_call_id="call_1", name="weather"),
        ),
        temperature=0.7,
        top_p=0.9,
        max_tokens=256,
        stop=("\n\n",),
        seed=42,
        tools=(
            Tool(
                name="weather",
                description="Current weather for a city.",
                parameters={
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            ),
        ),
        options=(("frequency_penalty", 0.5), ("logprobs", False)),
        profile="work",
    )
    return dataclasses.replace(request, **changes)


def sample_response(**changes: Any) -> GenerationResponse:
    response = GenerationResponse(
        content="It is 21 °C in Zürich. 🌤",
        model="gpt-test-2024",
        provider="openai",
        usage=TokenUsage(input_tokens=120, output_tokens=12),
        finish_reason="stop",
        raw_finish_reason="stop",
        trace_id="trace-abc123",
        timing=Timing(ttft_s=0.25, total_s=1.5),
        tool_calls=(ToolCall(id="call_9", name="weather", arguments='{"city":"Bern"}'),),
        cost=0.0125,
    )
    return dataclasses.replace(response, **changes)


def _with_message(request: ChatRequest, index: int, **changes: Any) -> ChatRequest:
    messages = list(request.messages)
    messages[index] = dataclasses.replace(messages[index], **changes)
    return dataclasses.replace(request, messages=tuple(messages))


def _with_tool_call(request: ChatRequest, **changes: Any) -> ChatRequest:
    message = request.messages[1]
    call = dataclasses.replace(message.tool_calls[0], **changes)
    return _with_message(request, 1, tool_calls=(call,))


def _with_tool(request: ChatRequest, **changes: Any) -> ChatRequest:
    return dataclasses.replace(request, tools=(dataclasses.replace(request.tools[0], **changes),))


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    with ResponseCache(tmp_path / "response-cache") as opened:
        yield opened


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------

_CHILD_PRELUDE = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("cache_test_samples", sys.argv[1])
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    from desktop_app.core.cache import ResponseCache, cache_key
    """
)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONHASHSEED"] = "12345"
    return env


def _child_command(body: str, *args: str) -> list[str]:
    code = _CHILD_PRELUDE + textwrap.dedent(body)
    return [sys.executable, "-c", code, __file__, *args]


def _run_child(body: str, *args: str) -> str:
    done = subprocess.run(
        _child_command(body, *args),
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def test_key_is_sha256_hex_and_stable_within_a_process() -> None:
    key = cache_key(sample_request())
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert cache_key(sample_request()) == key


def test_key_is_the_same_in_another_process() -> None:
    child_key = _run_child("print(cache_key(samples.sample_request()))")
    assert child_key == cache_key(sample_request())


def test_every_request_field_is_either_in_the_key_or_deliberately_left_out() -> None:
    names = {f.name for f in dataclasses.fields(ChatRequest)}
    assert names == FIELDS_IN_KEY | FIELDS_NOT_IN_KEY
    assert not FIELDS_IN_KEY & FIELDS_NOT_IN_KEY
    assert not names & {"api_key", "key", "secret", "password", "headers"}


def test_changing_any_answer_field_changes_the_key() -> None:
    base = sample_request()
    variants = {
        "provider": dataclasses.replace(base, provider="ollama"),
        "base_url host": dataclasses.replace(base, base_url="https://other.example.com/v1"),
        "base_url path": dataclasses.replace(base, base_url="https://api.example.com/v2"),
        "base_url path case": dataclasses.replace(base, base_url="https://api.example.com/V1"),
        "model": dataclasses.replace(base, model="gpt-test-mini"),
        "system": dataclasses.replace(base, system="You are verbose."),
        "no system": dataclasses.replace(base, system=None),
        "message role": _with_message(base, 0, role="system"),
        "message content": _with_message(base, 0, content="What is the weather in Bern?"),
        "message tool_call arguments": _with_tool_call(base, arguments='{"city":"Bern"}'),
        "message tool_call name": _with_tool_call(base, name="forecast"),
        "message tool_call id": _with_tool_call(base, id="call_2"),
        "message tool_call_id": _with_message(base, 2, tool_call_id="call_2"),
        "message name": _with_message(base, 2, name="forecast"),
        "extra message": dataclasses.replace(
            base, messages=(*base.messages, Message(role="user", content="Thanks"))
        ),
        "fewer messages": dataclasses.replace(base, messages=base.messages[:1]),
        "temperature": dataclasses.replace(base, temperature=0.71),
        "no temperature": dataclasses.replace(base, temperature=None),
        "top_p": dataclasses.replace(base, top_p=0.95),
        "max_tokens": dataclasses.replace(base, max_tokens=257),
        "stop": dataclasses.replace(base, stop=("END",)),
        "no stop": dataclasses.replace(base, stop=()),
        "seed": dataclasses.replace(base, seed=43),
        "no seed": dataclasses.replace(base, seed=None),
        "tool name": _with_tool(base, name="forecast"),
        "tool description": _with_tool(base, description="Weather."),
        "tool parameters": _with_tool(base, parameters={"type": "object", "properties": {}}),
        "no tools": dataclasses.replace(base, tools=()),
        "option value": dataclasses.replace(
            base, options=(("frequency_penalty", 0.6), ("logprobs", False))
        ),
        "option added": dataclasses.replace(base, options=(*base.options, ("top_k", 40))),
        "option bool vs int": dataclasses.replace(
            base, options=(("frequency_penalty", 0.5), ("logprobs", 0))
        ),
    }
    keys = {name: cache_key(request) for name, request in variants.items()}
    base_key = cache_key(base)
    same_as_base = [name for name, key in keys.items() if key == base_key]
    assert same_as_base == []
    assert len(set(keys.values())) == len(keys)


def test_fields_that_do_not_change_the_answer_keep_the_key() -> None:
    base = sample_request()
    same = [
        dataclasses.replace(base, profile="another-profile"),
        dataclasses.replace(base, stream=not base.stream),
        dataclasses.replace(base, base_url="https://api.example.com/v1/"),
        dataclasses.replace(base, base_url="HTTPS://API.Example.COM/v1"),
        dataclasses.replace(base, base_url="  https://api.example.com/v1//  "),
        dataclasses.replace(base, base_url="https://user:secret@api.example.com/v1"),
        dataclasses.replace(base, options=tuple(reversed(base.options))),
        dataclasses.replace(base, options=(("frequency_penalty", 0.5), ("logprobs", False))),
    ]
    for request in same:
        assert cache_key(request) == cache_key(base), request


def test_floats_are_canonical() -> None:
    assert cache_key(sample_request(temperature=1)) == cache_key(sample_request(temperature=1.0))
    assert cache_key(sample_request(top_p=0)) == cache_key(sample_request(top_p=-0.0))
    assert cache_key(sample_request(options=(("penalty", 2),))) == cache_key(
        sample_request(options=(("penalty", 2.0),))
    )
    nested_int = _with_tool(sample_request(), parameters={"type": "object", "maximum": 10})
    nested_float = _with_tool(sample_request(), parameters={"type": "object", "maximum": 10.0})
    assert cache_key(nested_int) == cache_key(nested_float)
    assert cache_key(sample_request(temperature=0.1)) != cache_key(
        sample_request(temperature=0.1000001)
    )


def test_normalise_base_url() -> None:
    assert normalise_base_url("HTTP://LocalHost:11434/") == "http://localhost:11434"
    assert normalise_base_url("https://Api.Example.com/V1/") == "https://api.example.com/V1"
    assert normalise_base_url("https://k:s@host/v1") == "https://host/v1"


# --------------------------------------------------------------------------------------------
# Storing and reading
# --------------------------------------------------------------------------------------------


def test_hit_after_put_returns_the_same_response_marked_cached(cache: ResponseCache) -> None:
    key = cache_key(sample_request())
    original = sample_response()
    assert cache.get(key) is None
    assert cache.put(key, original) is True
    got = cache.get(key)
    assert got == dataclasses.replace(original, cached=True)
    assert got is not None
    assert got.trace_id == original.trace_id
    assert got.timing == original.timing


def test_round_trip_of_a_bare_response(cache: ResponseCache) -> None:
    original = sample_response(
        content="",
        usage=None,
        cost=None,
        raw_finish_reason=None,
        tool_calls=(ToolCall(id=None, name="f", arguments="{}"),),
        finish_reason="tool_calls",
        timing=Timing(),
    )
    assert cache.put("k", original)
    assert cache.get("k") == dataclasses.replace(original, cached=True)


def test_unusual_text_survives(cache: ResponseCache) -> None:
    content = 'line\nnull\0 quote" emoji 😀 lone surrogate \ud800 end' + "x" * 50_000
    original = sample_response(content=content)
    assert cache.put("big", original)
    assert cache.get("big") == dataclasses.replace(original, cached=True)


def test_values_are_plain_json_text(cache: ResponseCache, tmp_path: Path) -> None:
    cache.put("k", sample_response())
    with diskcache.Cache(str(tmp_path / "response-cache")) as raw:
        stored = raw.get("k")
    assert isinstance(stored, str)
    record = json.loads(stored)
    assert record["content"] == sample_response().content
    assert record["trace_id"] == "trace-abc123"
    assert isinstance(record["stored_at"], float)
    assert "cached" not in record


@pytest.mark.parametrize(
    "response",
    [
        sample_response(finish_reason="content_filter"),
        sample_response(cached=True),
        sample_response(finish_reason="tool_calls", cached=True),
        sample_response(finish_reason="cancelled"),
        sample_response(finish_reason="error"),
    ],
    ids=["content_filter", "cached", "cached tool_calls", "cancelled", "error"],
)
def test_incomplete_or_replayed_answers_are_not_stored(
    cache: ResponseCache, response: GenerationResponse
) -> None:
    assert cache.put("k", response) is False
    assert cache.get("k") is None
    assert cache.stats().entries == 0


@pytest.mark.parametrize("finish_reason", ["stop", "length", "tool_calls"])
def test_complete_answers_are_stored(cache: ResponseCache, finish_reason: Any) -> None:
    assert cache.put("k", sample_response(finish_reason=finish_reason)) is True
    got = cache.get("k")
    assert got is not None
    assert got.finish_reason == finish_reason


def test_put_overwrites(cache: ResponseCache) -> None:
    cache.put("k", sample_response(content="first"))
    cache.put("k", sample_response(content="second"))
    got = cache.get("k")
    assert got is not None
    assert got.content == "second"
    assert cache.stats().entries == 1


def test_delete_and_clear(cache: ResponseCache) -> None:
    for index in range(5):
        cache.put(f"k{index}", sample_response(content=str(index)))
    assert cache.delete("k0") is True
    assert cache.delete("k0") is False
    assert cache.get("k0") is None
    assert cache.clear() == 4
    assert cache.stats().entries == 0
    assert all(cache.get(f"k{index}") is None for index in range(5))
    assert cache.clear() == 0


class _Unimportable:
    """Pickled into the cache, then made unloadable."""


def test_undecodable_values_are_misses_and_deleted(
    cache: ResponseCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with diskcache.Cache(str(tmp_path / "response-cache")) as raw:
        raw.set("not-json", "{not json")
        raw.set("bytes", b"\x80\x04garbage")
        raw.set("wrong-shape", json.dumps({"v": 1, "content": 3}))
        raw.set("old-version", json.dumps({"v": 0}))
        raw.set("pickled", _Unimportable())
    monkeypatch.delattr(sys.modules[__name__], "_Unimportable")

    keys = ["not-json", "bytes", "wrong-shape", "old-version", "pickled"]
    for key in keys:
        assert cache.get(key) is None, key
    with diskcache.Cache(str(tmp_path / "response-cache")) as raw:
        assert [key for key in keys if key in raw] == []
    assert cache.stats().misses == len(keys)
    assert cache.stats().hits == 0


# --------------------------------------------------------------------------------------------
# Expiry and eviction
# --------------------------------------------------------------------------------------------


def test_entries_expire_after_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    clock = SimpleNamespace(time=lambda: now)
    monkeypatch.setattr(diskcache.core, "time", clock)
    with ResponseCache(tmp_path / "c", ttl_s=60) as cache:
        assert cache.put("k", sample_response())
        clock.time = lambda: now + 59
        assert cache.get("k") is not None
        clock.time = lambda: now + 61
        assert cache.get("k") is None
        stats = cache.stats()
        assert stats.entries == 0
        assert (stats.hits, stats.misses) == (1, 1)


def test_size_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    entry_chars = 40_000  # above diskcache's 32 KiB inline limit: each answer is its own file
    limit = 32_768 + 20 * (entry_chars + 1_000)
    with ResponseCache(tmp_path / "c", size_limit_bytes=limit) as cache:
        gets = 0
        for index in range(60):
            assert cache.put(
                f"k{index}", sample_response(content=f"{index:02d}" * (entry_chars // 2))
            )
            for kept in ("k0", "k1"):
                if index >= int(kept[1:]):
                    assert cache.get(kept) is not None, (kept, index)
                    gets += 1
        stats = cache.stats()
        assert stats.entries < 60
        assert stats.bytes <= limit
        assert cache.get("k0") is not None
        assert cache.get("k1") is not None
        assert cache.get("k59") is not None
        assert cache.get("k2") is None
        assert cache.get("k3") is None
        after = cache.stats()
        assert after.hits == gets + 3  # the counters were never evicted
        assert after.misses == 2


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def test_stats_of_an_empty_cache(cache: ResponseCache) -> None:
    stats = cache.stats()
    assert stats == CacheStats(entries=0, bytes=stats.bytes)
    assert stats.hit_rate == 0.0
    assert stats.bytes > 0


def test_stats_count_hits_by_model_and_cost_saved(cache: ResponseCache) -> None:
    cache.put("a", sample_response(model="model-a", cost=0.01))
    cache.put("b", sample_response(model="model-b", cost=None))
    cache.put("c", sample_response(model="model-a", cost=0.0025))
    assert cache.get("a") is not None
    assert cache.get("a") is not None
    assert cache.get("b") is not None
    assert cache.get("c") is not None
    assert cache.get("missing") is None

    stats = cache.stats()
    assert stats.entries == 3
    assert stats.bytes > 0
    assert (stats.hits, stats.misses) == (4, 1)
    assert stats.hit_rate == pytest.approx(0.8)
    assert stats.hits_by_model == {"model-a": 3, "model-b": 1}
    assert stats.cost_saved == pytest.approx(0.0225)


def test_counters_survive_reopening_and_clear(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c") as cache:
        cache.put("a", sample_response())
        cache.get("a")
        cache.get("zzz")
    with ResponseCache(tmp_path / "c") as cache:
        assert cache.clear() == 1
        stats = cache.stats()
        assert (stats.entries, stats.hits, stats.misses) == (0, 1, 1)
        cache.reset_stats()
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.hits_by_model, stats.cost_saved) == (0, 0, {}, 0)


# --------------------------------------------------------------------------------------------
# Several processes
# --------------------------------------------------------------------------------------------


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    key = cache_key(sample_request())
    other_key = cache_key(sample_request(model="other"))

    # The child writes, this process reads.
    _run_child(
        """
        with ResponseCache(Path(sys.argv[2])) as cache:
            assert cache.put(sys.argv[3], samples.sample_response(content="from child"))
        """,
        str(folder),
        key,
    )
    with ResponseCache(folder) as cache:
        got = cache.get(key)
        assert got is not None
        assert got.content == "from child"
        assert got.cached

        # This process writes, the child reads (while this process keeps the cache open).
        assert cache.put(other_key, sample_response(content="from parent"))
        printed = _run_child(
            """
            with ResponseCache(Path(sys.argv[2])) as cache:
                got = cache.get(sys.argv[3])
                missing = cache.get("no-such-key")
            print(json.dumps({"got": got.to_dict(), "missing": missing}))
            """,
            str(folder),
            other_key,
        )
        seen = json.loads(printed)
        assert seen["missing"] is None
        expected = dataclasses.replace(sample_response(content="from parent"), cached=True)
        assert seen["got"] == expected.to_dict()

        stats = cache.stats()
        assert (stats.entries, stats.hits, stats.misses) == (2, 2, 1)
        assert stats.hits_by_model == {"gpt-test-2024": 2}


def test_counters_add_up_across_concurrent_processes(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    with ResponseCache(folder) as cache:
        cache.put("k", sample_response(cost=0.001))
    body = """
        with ResponseCache(Path(sys.argv[2])) as cache:
            for _ in range(25):
                assert cache.get("k") is not None
                assert cache.get("absent") is None
        """
    children = [
        subprocess.Popen(
            _child_command(body, str(folder)),
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    with ResponseCache(folder) as cache:
        stats = cache.stats()
    assert (stats.hits, stats.misses) == (100, 100)
    assert stats.hits_by_model == {"gpt-test-2024": 100}
    assert stats.cost_saved == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------
# Damage
# --------------------------------------------------------------------------------------------


def _aside(folder: Path) -> list[Path]:
    return sorted(folder.parent.glob(f"{folder.name}.corrupt-*"))


def test_garbage_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "response-cache"
    with ResponseCache(folder) as cache:
        cache.put("k", sample_response())
    (folder / "cache.db").write_bytes(b"this is not a database " * 400)

    with caplog.at_level(logging.WARNING, logger="rill.cache"), ResponseCache(folder) as cache:
        assert len(cache.warnings) == 1
        assert "damaged" in cache.warnings[0]
        assert cache.get("k") is None
        assert cache.put("k", sample_response())
        assert cache.get("k") is not None
        assert cache.stats().entries == 1

    moved = _aside(folder)
    assert len(moved) == 1
    assert moved[0].name.startswith("response-cache.corrupt-")
    stamp = moved[0].name.removeprefix("response-cache.corrupt-")
    time.strptime(stamp, "%Y%m%d-%H%M%S")
    assert (moved[0] / "cache.db").read_bytes().startswith(b"this is not a database")
    assert any(r.name == "rill.cache" and "damaged" in r.getMessage() for r in caplog.records)


def test_garbage_counters_database_is_moved_aside(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    ResponseCache(folder).close()
    (folder / "counters" / "cache.db").write_bytes(os.urandom(8192))
    with ResponseCache(folder) as cache:
        assert cache.warnings
        assert cache.put("k", sample_response())
        assert cache.get("k") is not None
        assert cache.stats().hits == 1
    assert len(_aside(folder)) == 1


def test_a_file_where_the_folder_should_be_is_moved_aside(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.write_text("garbage")
    with ResponseCache(folder) as cache:
        assert cache.warnings
        assert cache.put("k", sample_response())
        assert cache.get("k") is not None
    assert [p.read_text() for p in _aside(folder)] == ["garbage"]


def test_damage_found_while_reading_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "c"
    with ResponseCache(folder) as cache:
        assert cache.put("k", sample_response())
        store = cache._store
        assert store is not None

        def broken_get(*args: Any, **kwargs: Any) -> Any:
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(store.entries, "get", broken_get)
        store.entries.close()
        (folder / "cache.db").write_bytes(b"garbage" * 2000)

        assert cache.get("k") is None
        assert len(cache.warnings) == 1
        assert cache.put("k", sample_response())
        assert cache.get("k") is not None
        assert cache.stats().misses == 1
    assert len(_aside(folder)) == 1


def test_reported_damage_on_a_healthy_file_reopens_without_moving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "c"
    with ResponseCache(folder) as cache:
        assert cache.put("k", sample_response())
        store = cache._store
        assert store is not None

        def broken_get(*args: Any, **kwargs: Any) -> Any:
            raise sqlite3.DatabaseError("file is not a database")

        monkeypatch.setattr(store.entries, "get", broken_get)
        assert cache.get("k") is None
        assert cache.get("k") is not None
        assert cache.warnings == []
    assert _aside(folder) == []


def test_a_cache_that_cannot_be_opened_stays_empty_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unopenable(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(diskcache, "Cache", unopenable)
    with ResponseCache(tmp_path / "c") as cache:
        assert len(cache.warnings) == 1
        assert "not cached" in cache.warnings[0]
        assert cache.get("k") is None
        assert cache.put("k", sample_response()) is False
        assert cache.delete("k") is False
        assert cache.clear() == 0
        assert cache.stats() == CacheStats()
    assert _aside(tmp_path / "c") == []


def test_busy_database_is_a_miss_not_a_crash(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.put("k", sample_response())
    store = cache._store
    assert store is not None

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise diskcache.Timeout

    monkeypatch.setattr(store.entries, "get", busy)
    monkeypatch.setattr(store.entries, "set", busy)
    assert cache.get("k") is None
    assert cache.put("k", sample_response()) is False
    assert cache.warnings == []
    monkeypatch.undo()
    assert cache.get("k") is not None


def test_closed_cache_acts_empty(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    cache.put("k", sample_response())
    cache.close()
    assert cache.get("k") is None
    assert cache.put("k", sample_response()) is False
    assert cache.stats() == CacheStats()


# --------------------------------------------------------------------------------------------
# Async front and speed
# --------------------------------------------------------------------------------------------


async def test_async_cache_operations(tmp_path: Path) -> None:
    acache = AsyncResponseCache(tmp_path / "c")
    try:
        await acache.ready()
        assert acache.warnings == []
        assert await acache.get("k") is None
        assert await acache.put("k", sample_response()) is True
        assert await acache.put("x", sample_response(finish_reason="content_filter")) is False
        assert await acache.get("k") == dataclasses.replace(sample_response(), cached=True)
        stats = await acache.stats()
        assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
        assert await acache.delete("k") is True
        await acache.put("k", sample_response())
        assert await acache.clear() == 1
        await acache.reset_stats()
        assert (await acache.stats()).hits == 0
    finally:
        await acache.aclose()
    assert await acache.get("k") is None
    assert await acache.put("k", sample_response()) is False
    await acache.aclose()


async def test_async_cache_runs_off_the_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, set[int]] = {}

    def spy(name: str) -> None:
        original = getattr(ResponseCache, name)

        def wrapper(self: ResponseCache, *args: Any, **kwargs: Any) -> Any:
            threads.setdefault(name, set()).add(threading.get_ident())
            return original(self, *args, **kwargs)

        monkeypatch.setattr(ResponseCache, name, wrapper)

    for name in ("__init__", "get", "put", "delete", "clear", "stats", "close"):
        spy(name)

    loop_thread = threading.get_ident()
    acache = AsyncResponseCache(tmp_path / "c")
    try:
        await acache.put("k", sample_response())
        await asyncio.gather(*(acache.get("k") for _ in range(10)))
        await acache.delete("k")
        await acache.clear()
        await acache.stats()
    finally:
        await acache.aclose()

    assert set(threads) == {"__init__", "get", "put", "delete", "clear", "stats", "close"}
    used = set().union(*threads.values())
    assert loop_thread not in used
    assert len(used) == 1  # one dedicated cache thread


async def test_async_cache_reports_recovery_warnings(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "cache.db").write_bytes(b"junk" * 1000)
    acache = AsyncResponseCache(folder)
    try:
        await acache.ready()
        assert len(acache.warnings) == 1
        assert await acache.put("k", sample_response())
        assert await acache.get("k") is not None
    finally:
        await acache.aclose()


def test_a_hit_is_served_quickly(cache: ResponseCache) -> None:
    cache.put("k", sample_response(content="answer " * 500))
    durations = []
    for _ in range(200):
        started = time.perf_counter()
        got = cache.get("k")
        durations.append(time.perf_counter() - started)
        assert got is not None
    assert statistics.median(durations) < 0.05
