"""The usage and cost ledger: records, totals, month spend, budget, recovery, report."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from desktop_app.core.errors import BudgetExceeded, FatalError
from desktop_app.core.ledger import (
    LEDGER_FILE,
    SCHEMA_VERSION,
    Ledger,
    LedgerTotal,
    format_money,
    format_usage_report,
    ledger_path,
    month_bounds,
)
from desktop_app.core.paths import app_paths
from desktop_app.core.types import GenerationResponse, Timing, TokenUsage


def local(text: str) -> float:
    """A local wall-clock time ``YYYY-MM-DD HH:MM`` as a timestamp."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").timestamp()


@pytest.fixture(autouse=True)
def timezone() -> Iterator[None]:
    """A fixed local zone with DST, far from UTC, so local and UTC days differ.

    Where the zone cannot be changed (no ``time.tzset``), the machine's own zone is used;
    every time in these tests is local, so only the DST check depends on the zone.
    """
    if not hasattr(time, "tzset"):
        yield
        return
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / LEDGER_FILE


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path, clock=lambda: local("2025-03-15 12:00")) as opened:
        yield opened


def add(
    ledger: Ledger,
    when: str,
    model: str = "gpt-4o",
    cost: float | None = 0.01,
    *,
    tokens: tuple[int, int] = (100, 50),
    cached: bool = False,
    status: str = "complete",
) -> None:
    ledger.record(
        provider="openai",
        model=model,
        usage=TokenUsage(*tokens),
        cost=cost,
        cached=cached,
        status=status,  # type: ignore[arg-type]
        at=local(when),
    )


def test_default_path_is_in_the_data_folder(rill_home: Path) -> None:
    assert ledger_path() == app_paths().data_dir / "ledger.sqlite3"
    assert str(ledger_path()).startswith(str(rill_home))


def test_record_stores_every_field(ledger: Ledger) -> None:
    entry = ledger.record(
        provider="anthropic",
        model="claude-sonnet-4-5-20250929",
        usage=TokenUsage(1200, 340),
        cost=0.0087,
        profile="work",
        status="cancelled",
        trace_id="trace-1",
    )
    assert entry.at == local("2025-03-15 12:00")
    assert (entry.provider, entry.model, entry.profile) == (
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "work",
    )
    assert (entry.input_tokens, entry.output_tokens) == (1200, 340)
    assert entry.cost == pytest.approx(0.0087)
    assert (entry.cached, entry.saved, entry.status, entry.trace_id) == (
        False,
        None,
        "cancelled",
        "trace-1",
    )
    assert ledger.entries() == [entry]


def test_unknown_cost_and_usage_are_null_not_zero(ledger: Ledger, path: Path) -> None:
    entry = ledger.record(provider="openai", model="local-thing", usage=None, cost=None)
    assert entry.cost is None and entry.input_tokens is None and entry.output_tokens is None
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT cost, input_tokens FROM usage").fetchone() == (None, None)


def test_cached_reply_costs_nothing_and_records_the_saving(ledger: Ledger) -> None:
    entry = ledger.record(
        provider="openai", model="gpt-4o", usage=TokenUsage(10, 10), cost=0.5, cached=True
    )
    assert (entry.cost, entry.cached, entry.saved) == (0.0, True, 0.5)
    unknown = ledger.record(
        provider="openai", model="odd", usage=TokenUsage(10, 10), cost=None, cached=True
    )
    assert (unknown.cost, unknown.saved) == (0.0, None)
    assert ledger.month_spend() == 0.0


def test_record_response_takes_what_the_engine_returns(ledger: Ledger) -> None:
    response = GenerationResponse(
        content="hi",
        model="gpt-4o-2024-08-06",
        provider="openai",
        usage=TokenUsage(5, 7),
        finish_reason="stop",
        raw_finish_reason="stop",
        trace_id="abc",
        timing=Timing(0.1, 0.2),
        cost=0.25,
        cached=True,
    )
    entry = ledger.record_response(response, profile="p")
    assert (entry.model, entry.profile, entry.trace_id) == ("gpt-4o-2024-08-06", "p", "abc")
    assert (entry.cost, entry.saved, entry.cached) == (0.0, 0.25, True)


def test_a_cached_response_that_costs_nothing_records_what_it_saved(ledger: Ledger) -> None:
    response = GenerationResponse(
        content="hi",
        model="gpt-4o",
        provider="openai",
        usage=TokenUsage(5, 7),
        finish_reason="stop",
        raw_finish_reason="stop",
        trace_id="abc",
        timing=Timing(0.1, 0.2),
        cost=0.0,
        cached=True,
    )
    entry = ledger.record_response(response, saved=0.25)
    assert (entry.cost, entry.saved, entry.cached) == (0.0, 0.25, True)
    fresh = ledger.record_response(replace(response, cached=False, cost=0.5), saved=9.0)
    assert (fresh.cost, fresh.saved, fresh.cached) == (0.5, None, False)
    assert ledger.month_totals().saved == 0.25


def test_invalid_records_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="status"):
        ledger.record(provider="x", model="y", usage=None, cost=0, status="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        ledger.record(provider="x", model="y", usage=None, cost=-1)
    with pytest.raises(ValueError, match="cost"):
        ledger.record(provider="x", model="y", usage=None, cost=float("nan"))
    with pytest.raises(ValueError, match="token"):
        ledger.record(provider="x", model="y", usage=TokenUsage(-1, 0), cost=0)
    assert ledger.entries() == []


def test_totals_by_local_day_month_and_model(ledger: Ledger) -> None:
    # 23:30 local on the last day of February is already March in UTC.
    add(ledger, "2025-02-28 23:30", cost=0.10)
    add(ledger, "2025-03-01 00:30", cost=0.20, model="claude-haiku-4-5")
    add(ledger, "2025-03-01 18:00", cost=None, model="mystery")
    add(ledger, "2025-03-02 09:00", cost=0.40, cached=True)
    add(ledger, "2025-03-02 10:00", cost=0.05, status="failed")

    days = ledger.totals("day")
    assert [t.key for t in days] == ["2025-02-28", "2025-03-01", "2025-03-02"]
    assert days[0] == LedgerTotal("2025-02-28", 1, 100, 50, pytest.approx(0.10), 0, 0.0, 0)  # type: ignore[arg-type]
    assert days[1].requests == 2
    assert days[1].cost == pytest.approx(0.20)
    assert days[1].unknown_cost_requests == 1
    assert days[2].cost == pytest.approx(0.05)
    assert days[2].saved == pytest.approx(0.40)
    assert days[2].cached_requests == 1

    months = ledger.totals("month")
    assert [(t.key, t.requests) for t in months] == [("2025-02", 1), ("2025-03", 4)]
    assert months[1].cost == pytest.approx(0.25)
    assert months[1].input_tokens == 400 and months[1].output_tokens == 200

    models = ledger.totals("model")
    assert [t.key for t in models] == ["claude-haiku-4-5", "gpt-4o", "mystery"]
    assert models[1].requests == 3 and models[1].cost == pytest.approx(0.15)
    assert models[2].cost == 0.0 and models[2].unknown_cost_requests == 1


def test_totals_since(ledger: Ledger) -> None:
    add(ledger, "2025-03-01 10:00")
    add(ledger, "2025-03-10 10:00")
    assert [t.key for t in ledger.totals("day", since=local("2025-03-05 00:00"))] == ["2025-03-10"]
    with pytest.raises(ValueError, match="by must be"):
        ledger.totals("week")  # type: ignore[arg-type]


def test_month_spend_counts_this_local_month_only(ledger: Ledger) -> None:
    add(ledger, "2025-02-28 23:59", cost=1.00)
    add(ledger, "2025-03-01 00:00", cost=2.00)
    add(ledger, "2025-03-31 23:59", cost=3.00)
    add(ledger, "2025-04-01 00:00", cost=4.00)
    add(ledger, "2025-03-10 00:00", cost=None)
    add(ledger, "2025-03-11 00:00", cost=5.00, cached=True)
    assert ledger.month_spend(local("2025-03-20 12:00")) == pytest.approx(5.00)
    assert ledger.month_spend(local("2025-02-01 00:00")) == pytest.approx(1.00)
    assert ledger.month_spend(local("2025-04-30 23:00")) == pytest.approx(4.00)
    # Without ``now``, the ledger's clock says March.
    assert ledger.month_spend() == pytest.approx(5.00)
    month = ledger.month_totals(local("2025-03-20 12:00"))
    assert (month.key, month.requests, month.unknown_cost_requests) == ("2025-03", 4, 1)
    assert month.saved == pytest.approx(5.00)


def test_month_bounds_are_local_calendar_months() -> None:
    start, end = month_bounds(local("2025-12-31 23:59"))
    assert (start, end) == (local("2025-12-01 00:00"), local("2026-01-01 00:00"))
    if not hasattr(time, "tzset"):
        pytest.skip("the local time zone cannot be set on this platform")
    # March in Los Angeles has 31 days minus the hour lost to daylight saving time.
    start, end = month_bounds(local("2025-03-15 12:00"))
    assert end - start == 31 * 86400 - 3600


def test_check_budget(ledger: Ledger) -> None:
    now = local("2025-03-20 12:00")
    ledger.check_budget(0, now=now)  # no budget, nothing spent
    add(ledger, "2025-03-02 10:00", cost=9.995)
    ledger.check_budget(10.0, now=now)  # just under
    ledger.check_budget(0.0, now=now)  # 0 means no budget
    add(ledger, "2025-03-03 10:00", cost=2.345)
    with pytest.raises(BudgetExceeded) as caught:
        ledger.check_budget(10.0, now=now)
    error = caught.value
    assert isinstance(error, FatalError) and not error.retryable
    assert error.message == (
        "This month's spending ($12.34) has reached the monthly budget of $10.00."
    )
    assert error.action == "Raise the budget in Settings, or wait until next month."
    # Next month starts afresh.
    ledger.check_budget(10.0, now=local("2025-04-01 00:00"))


def test_budget_reached_exactly_is_refused(ledger: Ledger) -> None:
    add(ledger, "2025-03-02 10:00", cost=5.0)
    with pytest.raises(BudgetExceeded, match=r"\(\$5\.00\).*budget of \$5\.00"):
        ledger.check_budget(5.0, now=local("2025-03-02 11:00"))


def test_file_is_wal_with_schema_version(ledger: Ledger, path: Path) -> None:
    assert ledger.schema_version == SCHEMA_VERSION
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopen_keeps_records(path: Path) -> None:
    with Ledger(path) as first:
        first.record(provider="openai", model="gpt-4o", usage=None, cost=1.0)
    with Ledger(path) as second:
        assert len(second.entries()) == 1
        assert second.recovered_from is None


def test_garbage_file_is_moved_aside_and_recreated(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    Path(f"{path}-wal").write_bytes(b"junk")
    with Ledger(path) as ledger:
        assert ledger.recovered_from is not None
        assert ledger.recovered_from.name.startswith(f"{LEDGER_FILE}.corrupt-")
        assert ledger.recovered_from.read_bytes().startswith(b"this is not")
        assert Path(f"{ledger.recovered_from}-wal").exists()
        assert ledger.recovered_reason == "it is not a SQLite database"
        assert ledger.entries() == []
        ledger.record(provider="openai", model="gpt-4o", usage=None, cost=1.0)


def test_damaged_database_is_moved_aside(path: Path) -> None:
    with Ledger(path) as ledger:
        for day in range(1, 28):
            add(ledger, f"2025-03-{day:02d} 10:00", model="m" * 500)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 3] = b"\xff" * page  # wreck a b-tree page
    path.write_bytes(bytes(data))
    with Ledger(path) as reopened:
        assert reopened.recovered_from is not None
        assert reopened.entries() == []


def test_newer_schema_is_moved_aside(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with Ledger(path) as ledger:
        assert ledger.recovered_from is not None
        assert "newer version" in (ledger.recovered_reason or "")
        assert ledger.schema_version == SCHEMA_VERSION


def test_closed_ledger_refuses_work(path: Path) -> None:
    ledger = Ledger(path)
    ledger.close()
    ledger.close()
    with pytest.raises(RuntimeError, match="closed"):
        ledger.month_spend()


def test_threads_and_two_connections_write_safely(path: Path) -> None:
    first = Ledger(path)
    second = Ledger(path)
    errors: list[BaseException] = []

    def work(ledger: Ledger) -> None:
        try:
            for _ in range(50):
                ledger.record(provider="openai", model="gpt-4o", usage=None, cost=0.01)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(lg,)) for lg in (first, second) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert first.totals("model")[0].requests == 300
    assert first.month_spend() == pytest.approx(3.0)
    first.close()
    second.close()


def test_format_money() -> None:
    assert format_money(0) == "$0.00"
    assert format_money(12.345) == "$12.35"
    assert format_money(1234.5) == "$1,234.50"
    assert format_money(0.01234) == "$0.0123"
    assert format_money(0.00001) == "<$0.0001"


def test_usage_report(ledger: Ledger) -> None:
    now = local("2025-03-15 12:00")
    add(ledger, "2025-03-15 09:00", cost=0.012, tokens=(1_234_567, 8_901))
    add(ledger, "2025-03-14 09:00", model="llama3.2:latest-with-a-really-long-tag-name", cost=None)
    add(ledger, "2025-03-10 09:00", cost=0.5, cached=True)
    add(ledger, "2025-02-27 09:00", cost=3.0)  # outside the 14 days, inside the 12 months
    add(ledger, "2023-01-01 09:00", cost=100.0)  # only in the all-time model table
    report = format_usage_report(ledger, budget_usd=10.0, now=now)
    lines = report.splitlines()
    assert lines[0] == "Rill usage, March 2025"
    assert "This month: $0.0120 on 3 requests (1 of unknown cost)." in lines
    assert "The cache answered 1 request and saved $0.5000." in lines
    assert "Monthly budget: $10.00, $9.99 left (0% used)." in lines
    assert all(len(line) <= 80 for line in lines), report
    day_part = report.split("Last 14 days")[1].split("Last 12 months")[0]
    assert "2025-03-15" in day_part and "2025-02-27" not in day_part
    assert "unknown" in day_part  # the llama day has no known cost
    month_part = report.split("Last 12 months")[1].split("By model")[0]
    assert "2025-02" in month_part and "2023-01" not in month_part
    model_part = report.split("By model, all time")[1]
    assert "gpt-4o" in model_part and "llama3.2" in model_part and "…" in model_part
    assert "1,235k" in day_part  # big token counts are shortened


def test_usage_report_when_empty_and_over_budget(ledger: Ledger) -> None:
    now = local("2025-03-15 12:00")
    empty = format_usage_report(ledger, now=now)
    assert "This month: $0.00 on 0 requests." in empty
    assert "Monthly budget: none" in empty
    assert empty.count("No requests.") == 3
    add(ledger, "2025-03-02 10:00", cost=12.0)
    over = format_usage_report(ledger, budget_usd=10.0, now=now)
    assert "reached (120% used)" in over


def test_report_stays_narrow_with_big_numbers(ledger: Ledger) -> None:
    for day in range(1, 15):
        add(
            ledger,
            f"2025-03-{day:02d} 10:00",
            model=f"organisation/model-with-a-very-long-name-{day}",
            cost=1234.5678 * day,
            tokens=(987_654_321, 123_456_789),
            cached=day % 3 == 0,
        )
        add(ledger, f"2025-03-{day:02d} 11:00", cost=None)
    report = format_usage_report(ledger, budget_usd=100.0, now=local("2025-03-15 12:00"))
    assert all(len(line) <= 80 for line in report.splitlines()), report
