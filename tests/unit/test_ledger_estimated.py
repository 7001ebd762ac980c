"""Token counts Rill estimated (the server reported none) stay marked as estimates on disk:
in the usage ledger, its totals and report, and in the response cache."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from desktop_app.core.cache import ResponseCache
from desktop_app.core.ledger import LEDGER_FILE, SCHEMA_VERSION, Ledger, format_usage_report
from desktop_app.core.types import GenerationResponse, Timing, TokenUsage

NOW = datetime(2025, 3, 15, 12, 0).timestamp()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / LEDGER_FILE


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path, clock=lambda: NOW) as opened:
        yield opened


def response(usage: TokenUsage | None, *, cached: bool = False) -> GenerationResponse:
    return GenerationResponse(
        content="Rivers run to the sea.",
        model="tiny",
        provider="openai",
        usage=usage,
        finish_reason="stop",
        raw_finish_reason="stop",
        trace_id="trace-1",
        timing=Timing(ttft_s=0.1, total_s=0.2),
        cost=0.0,
        cached=cached,
    )


def test_estimated_usage_is_recorded_as_estimated(ledger: Ledger, path: Path) -> None:
    estimate = TokenUsage(12, 6, estimated=True)
    entry = ledger.record_response(response(estimate))
    assert entry.estimated and (entry.input_tokens, entry.output_tokens) == (12, 6)
    reported = ledger.record_response(response(TokenUsage(12, 6)))
    assert not reported.estimated
    unknown = ledger.record(provider="openai", model="tiny", usage=None, cost=None)
    assert not unknown.estimated
    assert [e.estimated for e in ledger.entries()] == [False, False, True]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT estimated FROM usage ORDER BY id").fetchall() == [
            (1,),
            (0,),
            (0,),
        ]


def test_totals_count_the_estimated_replies(ledger: Ledger) -> None:
    ledger.record_response(response(TokenUsage(10, 5, estimated=True)))
    ledger.record_response(response(TokenUsage(10, 5, estimated=True), cached=True))
    ledger.record_response(response(TokenUsage(10, 5)))
    (by_model,) = ledger.totals("model")
    assert (by_model.requests, by_model.estimated_requests) == (3, 2)
    assert by_model.input_tokens == 30
    assert ledger.month_totals(NOW).estimated_requests == 2


def test_report_marks_totals_that_include_estimates(ledger: Ledger) -> None:
    ledger.record(
        provider="openai", model="gpt-4o", usage=TokenUsage(100, 50), cost=0.01, at=NOW - 60
    )
    plain = format_usage_report(ledger, now=NOW)
    assert "≈" not in plain
    ledger.record(
        provider="openai",
        model="tiny",
        usage=TokenUsage(12, 6, estimated=True),
        cost=0.0,
        at=NOW - 30,
    )
    report = format_usage_report(ledger, now=NOW)
    lines = report.splitlines()
    model_part = report.split("By model, all time")[1]
    tiny = next(line for line in model_part.splitlines() if "tiny" in line)
    gpt = next(line for line in model_part.splitlines() if "gpt-4o" in line)
    assert "≈12" in tiny and "≈6" in tiny
    assert "≈" not in gpt
    day = next(
        line for line in report.split("Last 14 days")[1].splitlines() if "2025-03-15" in line
    )
    assert "≈112" in day and "≈56" in day
    assert any("reported no usage for 1 request" in line for line in lines)
    assert all(len(line) <= 80 for line in lines), report


def test_a_ledger_from_before_estimates_is_migrated(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as raw:
        raw.execute(
            """
            CREATE TABLE usage (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                profile TEXT NOT NULL,
                input_tokens INTEGER,
                output_tokens INTEGER,
                cost REAL,
                cached INTEGER NOT NULL DEFAULT 0,
                saved REAL,
                status TEXT NOT NULL,
                trace_id TEXT NOT NULL DEFAULT ''
            )
            """
        )
        raw.execute("CREATE INDEX usage_at ON usage(at)")
        raw.execute("CREATE INDEX usage_model ON usage(model, at)")
        raw.execute(
            "INSERT INTO usage (at, provider, model, profile, input_tokens, output_tokens,"
            " cost, status) VALUES (?, 'openai', 'gpt-4o', 'default', 100, 50, 0.01, 'complete')",
            (NOW - 60,),
        )
        raw.execute("PRAGMA user_version = 1")
    raw.close()
    with Ledger(path, clock=lambda: NOW) as ledger:
        assert ledger.recovered_from is None
        assert ledger.schema_version == SCHEMA_VERSION == 3
        (old,) = ledger.entries()
        assert (old.model, old.input_tokens, old.estimated) == ("gpt-4o", 100, False)
        assert old.stage == "answer"  # rows from before stages were answers
        ledger.record_response(response(TokenUsage(3, 4, estimated=True)))
        assert [e.estimated for e in ledger.entries()] == [True, False]


def test_the_cache_keeps_an_estimate_an_estimate(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    try:
        assert cache.put("estimated", response(TokenUsage(12, 6, estimated=True)))
        assert cache.put("reported", response(TokenUsage(12, 6)))
        hit = cache.get("estimated")
        assert hit is not None and hit.cached
        assert hit.usage == TokenUsage(12, 6, estimated=True)
        again = cache.get("reported")
        assert again is not None and again.usage == TokenUsage(12, 6)
    finally:
        cache.close()


def test_a_cached_answer_stored_before_estimates_reads_as_reported(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    try:
        assert cache.put("old", response(TokenUsage(12, 6)))
        store = cache._store
        assert store is not None
        record = json.loads(store.entries["old"])
        record["usage"].pop("estimated", None)
        store.entries["old"] = json.dumps(record)
        hit = cache.get("old")
        assert hit is not None and hit.usage == TokenUsage(12, 6)
        record["usage"]["estimated"] = "yes"
        store.entries["old"] = json.dumps(record)
        assert cache.get("old") is None  # a record this version cannot read is a miss
    finally:
        cache.close()
