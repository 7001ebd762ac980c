"""The usage and cost ledger: one row per finished, cancelled or failed reply, in SQLite.

The file is ``ledger.sqlite3`` in the data folder (:func:`ledger_path`). Like the history it
is opened in WAL mode with ``synchronous=FULL`` and a busy timeout, so the GUI and the ``q``
command can write to it at the same time.

Every method is synchronous and thread-safe (one connection behind a lock); call it from a
worker thread, not from the UI thread or the event loop.

Costs are US dollars. A cost the price list does not know is stored as NULL and counted as
unknown, never as free. A reply answered from the cache costs nothing: it is stored with
``cost`` 0, ``cached`` 1, and what it would have cost in ``saved``.

Token counts the server did not report, which the engine estimated from the text
(:attr:`TokenUsage.estimated`), are stored with ``estimated`` 1; totals count them, and the
report marks every token count that includes one with "≈".

Days and months are calendar days and months in local time.

A file that cannot be opened, fails ``PRAGMA quick_check`` or has a schema newer than this
code knows is moved aside as ``<name>.corrupt-YYYYmmdd-HHMMSS`` (with its ``-wal`` and
``-shm`` files) and a fresh ledger is created; :attr:`Ledger.recovered_from` then names the
old file.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, get_args

from desktop_app.core.errors import BudgetExceeded, RillError
from desktop_app.core.paths import AppPaths, app_paths
from desktop_app.core.store import SqliteStore
from desktop_app.core.types import GenerationResponse, TokenUsage

__all__ = [
    "LEDGER_FILE",
    "SCHEMA_VERSION",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerStatus",
    "LedgerTotal",
    "TotalsBy",
    "format_money",
    "format_usage_report",
    "ledger_path",
    "month_bounds",
]

LedgerStatus = Literal["complete", "cancelled", "failed"]
TotalsBy = Literal["day", "month", "model"]
STATUSES: Final[tuple[LedgerStatus, ...]] = get_args(LedgerStatus)

LEDGER_FILE: Final = "ledger.sqlite3"
SCHEMA_VERSION: Final = 3

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
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
        """,
        "CREATE INDEX usage_at ON usage(at)",
        "CREATE INDEX usage_model ON usage(model, at)",
    ),
    ("ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0",),
    ("ALTER TABLE usage ADD COLUMN stage TEXT NOT NULL DEFAULT 'answer'",),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_ENTRY_COLUMNS: Final = (
    "id, at, provider, model, profile, input_tokens, output_tokens, cost, cached, saved,"
    " status, trace_id, estimated, stage"
)
_GROUP_KEYS: Final[dict[str, str]] = {
    "day": "strftime('%Y-%m-%d', at, 'unixepoch', 'localtime')",
    "month": "strftime('%Y-%m', at, 'unixepoch', 'localtime')",
    "model": "model",
}


class LedgerError(RillError):
    """The usage ledger could not be read or written."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One recorded reply."""

    id: int
    at: float
    """``time.time()`` when the reply ended."""
    provider: str
    model: str
    profile: str
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    """US dollars; None when unknown; 0 for a cached reply."""
    cached: bool
    saved: float | None
    """For a cached reply, what it would have cost (None when unknown)."""
    status: LedgerStatus
    trace_id: str
    estimated: bool = False
    """The token counts are Rill's estimate from the text: the server reported none."""
    stage: str = "answer"
    """What the request was for: ``answer``; for Auto also ``classify``, ``judge`` and
    ``escalation`` (a retry on a stronger model)."""


@dataclass(frozen=True, slots=True)
class LedgerTotal:
    """Sums over the replies of one day, month or model."""

    key: str
    """``YYYY-MM-DD``, ``YYYY-MM`` (local time) or the model name."""
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float
    """The sum of the known costs, in US dollars."""
    unknown_cost_requests: int
    """How many replies had no known cost (their cost is not in ``cost``)."""
    saved: float
    """What the cached replies would have cost."""
    cached_requests: int = 0
    estimated_requests: int = 0
    """How many replies' token counts are estimates (the server reported none)."""


def ledger_path(paths: AppPaths | None = None) -> Path:
    """Where the ledger lives: ``ledger.sqlite3`` in the data folder."""
    return (paths or app_paths()).data_dir / LEDGER_FILE


def month_bounds(now: float) -> tuple[float, float]:
    """The start of the local calendar month that holds ``now``, and of the next one."""
    moment = datetime.fromtimestamp(now)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), following.timestamp()


def format_money(amount: float) -> str:
    """US dollars for people: two decimals from $1, four below, ``<$0.0001`` for crumbs."""
    if amount == 0:
        return "$0.00"
    if amount < 0:
        return "-" + format_money(-amount)
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount < 0.0001:
        return "<$0.0001"
    return f"${amount:.4f}"


class Ledger(SqliteStore):
    """Rill's usage and cost records in the SQLite file at ``path``.

    Opening never fails because of the file's contents: a broken or too-new file is moved
    aside (see :attr:`recovered_from`). :class:`LedgerError` is raised only when the folder
    cannot be written or another process keeps the database locked.
    """

    schema_version_known = SCHEMA_VERSION
    migrations = _MIGRATIONS
    noun = "usage ledger"
    file_noun = "usage ledger"
    error_class = LedgerError

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- recording ---------------------------------------------------------------------

    def record(
        self,
        *,
        provider: str,
        model: str,
        usage: TokenUsage | None,
        cost: float | None,
        profile: str = "default",
        status: LedgerStatus = "complete",
        cached: bool = False,
        trace_id: str = "",
        at: float | None = None,
        stage: str = "answer",
    ) -> LedgerEntry:
        """Record one reply and return the stored entry.

        ``cost`` is what the reply cost in US dollars (None when unknown). For a ``cached``
        reply it is what the reply would have cost: that amount goes to ``saved`` and the
        stored cost is 0. ``at`` defaults to now. Usage marked ``estimated`` is stored as
        estimated.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        amount = _checked_amount(cost)
        columns: dict[str, Any] = {
            "at": self._clock() if at is None else float(at),
            "provider": provider,
            "model": model,
            "profile": profile,
            "input_tokens": None if usage is None else _checked_tokens(usage.input_tokens),
            "output_tokens": None if usage is None else _checked_tokens(usage.output_tokens),
            "cost": 0.0 if cached else amount,
            "cached": int(cached),
            "saved": amount if cached else None,
            "status": status,
            "trace_id": trace_id,
            "estimated": int(usage is not None and usage.estimated),
            "stage": stage,
        }
        with self._write() as conn:
            cursor = conn.execute(
                f"INSERT INTO usage ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                tuple(columns.values()),
            )
            row = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM usage WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
        return _entry(row)

    def record_response(
        self,
        response: GenerationResponse,
        *,
        profile: str = "default",
        status: LedgerStatus = "complete",
        at: float | None = None,
        saved: float | None = None,
        stage: str = "answer",
    ) -> LedgerEntry:
        """Record a finished (or cancelled) reply from its ``GenerationResponse``.

        For an answer from the cache, ``saved`` is what it would have cost (the response's
        own ``cost`` when not given); it is stored as saved, and the cost as 0.
        """
        would_cost = saved if response.cached and saved is not None else response.cost
        return self.record(
            provider=response.provider,
            model=response.model,
            usage=response.usage,
            cost=would_cost,
            profile=profile,
            status=status,
            cached=response.cached,
            trace_id=response.trace_id,
            at=at,
            stage=stage,
        )

    # -- reading -----------------------------------------------------------------------

    def entries(self, since: float | None = None, limit: int = 1000) -> list[LedgerEntry]:
        """Recorded replies, newest first, at or after ``since`` when given."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM usage WHERE at >= ?"
                " ORDER BY at DESC, id DESC LIMIT ?",
                (-math.inf if since is None else since, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def totals(self, by: TotalsBy, since: float | None = None) -> list[LedgerTotal]:
        """Sums by local day (``YYYY-MM-DD``), local month (``YYYY-MM``) or model.

        Only replies at or after ``since`` count when it is given. Days and months come
        oldest first; models by known cost, highest first, then by number of requests.
        """
        key = _GROUP_KEYS.get(by)
        if key is None:
            raise ValueError(f"by must be one of {', '.join(_GROUP_KEYS)}, not {by!r}")
        order = "key" if by != "model" else "cost DESC, requests DESC, key"
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {key} AS key, COUNT(*) AS requests,"
                " COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
                " COALESCE(SUM(cost), 0.0) AS cost, SUM(cost IS NULL),"
                " COALESCE(SUM(saved), 0.0), SUM(cached), SUM(estimated)"
                " FROM usage WHERE at >= ?"
                f" GROUP BY key ORDER BY {order}",
                (-math.inf if since is None else since,),
            ).fetchall()
        return [
            LedgerTotal(
                key=str(row[0]),
                requests=int(row[1]),
                input_tokens=int(row[2]),
                output_tokens=int(row[3]),
                cost=float(row[4]),
                unknown_cost_requests=int(row[5]),
                saved=float(row[6]),
                cached_requests=int(row[7]),
                estimated_requests=int(row[8]),
            )
            for row in rows
        ]

    def month_totals(self, now: float | None = None) -> LedgerTotal:
        """The sums over this local calendar month (the month holding ``now``)."""
        start, end = month_bounds(self._clock() if now is None else now)
        with self._read() as conn:
            row = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0),"
                " COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost), 0.0),"
                " COALESCE(SUM(cost IS NULL), 0), COALESCE(SUM(saved), 0.0),"
                " COALESCE(SUM(cached), 0), COALESCE(SUM(estimated), 0)"
                " FROM usage WHERE at >= ? AND at < ?",
                (start, end),
            ).fetchone()
        return LedgerTotal(
            key=datetime.fromtimestamp(start).strftime("%Y-%m"),
            requests=int(row[0]),
            input_tokens=int(row[1]),
            output_tokens=int(row[2]),
            cost=float(row[3]),
            unknown_cost_requests=int(row[4]),
            saved=float(row[5]),
            cached_requests=int(row[6]),
            estimated_requests=int(row[7]),
        )

    def month_spend(self, now: float | None = None) -> float:
        """The known costs of this local calendar month (the month holding ``now``)."""
        return self.month_totals(now).cost

    def check_budget(self, monthly_usd: float, now: float | None = None) -> None:
        """Raise ``BudgetExceeded`` when this month's spending has reached ``monthly_usd``.

        A budget of 0 (or less) means none. Call it before sending a request.
        """
        if not monthly_usd or monthly_usd <= 0:
            return
        spent = self.month_spend(now)
        if spent >= monthly_usd:
            raise BudgetExceeded(
                f"This month's spending (${spent:,.2f}) has reached the monthly budget of "
                f"${monthly_usd:,.2f}.",
                action="Raise the budget in Settings, or wait until next month.",
            )


def _checked_amount(cost: float | None) -> float | None:
    if cost is None:
        return None
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        raise TypeError("cost must be a number or None")
    if not math.isfinite(cost) or cost < 0:
        raise ValueError(f"cost must be a finite amount of zero or more, not {cost!r}")
    return float(cost)


def _checked_tokens(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError("token counts must be whole numbers")
    if count < 0:
        raise ValueError(f"token counts must be zero or more, not {count}")
    return count


def _entry(row: Sequence[Any]) -> LedgerEntry:
    return LedgerEntry(
        id=int(row[0]),
        at=float(row[1]),
        provider=row[2],
        model=row[3],
        profile=row[4],
        input_tokens=row[5],
        output_tokens=row[6],
        cost=row[7],
        cached=bool(row[8]),
        saved=row[9],
        status=row[10],
        trace_id=row[11],
        estimated=bool(row[12]),
        stage=str(row[13]),
    )


# -- the report for `q --usage` --------------------------------------------------------

REPORT_WIDTH: Final = 80
REPORT_DAYS: Final = 14
REPORT_MONTHS: Final = 12


def format_usage_report(
    ledger: Ledger,
    *,
    budget_usd: float = 0.0,
    now: float | None = None,
    width: int = REPORT_WIDTH,
) -> str:
    """A plain-text usage report that fits ``width`` columns.

    This month's spending and the budget line, then tables by day (the last 14 days), by
    month (the last 12 months) and by model (all time). A cost shows as ``unknown`` when
    no reply in the row had a known cost, and an ``unknown`` column counts the replies
    whose cost is not in the sum (it and the ``saved`` column appear when not empty).
    Token counts that include an estimate (a server that reported no usage) are marked
    "≈", and a last line says how many replies were estimated.
    """
    moment = time.time() if now is None else now
    month = ledger.month_totals(moment)
    month_name = datetime.fromtimestamp(moment).strftime("%B %Y")
    lines = [f"Rill usage, {month_name}", ""]

    spent = f"This month: {format_money(month.cost)} on {_plural(month.requests, 'request')}"
    if month.unknown_cost_requests:
        spent += f" ({month.unknown_cost_requests} of unknown cost)"
    lines.append(spent + ".")
    if month.cached_requests:
        lines.append(
            f"The cache answered {_plural(month.cached_requests, 'request')} and saved "
            f"{format_money(month.saved)}."
        )
    lines.append(_budget_line(month.cost, budget_usd))
    lines = [wrapped for line in lines for wrapped in (textwrap.wrap(line, width) or [""])]

    today = datetime.fromtimestamp(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    day_start = (today - timedelta(days=REPORT_DAYS - 1)).timestamp()
    first_month = today.replace(day=1)
    for _ in range(REPORT_MONTHS - 1):
        first_month = (first_month - timedelta(days=1)).replace(day=1)
    sections: list[tuple[str, str, list[LedgerTotal]]] = [
        (f"Last {REPORT_DAYS} days", "day", ledger.totals("day", since=day_start)),
        (
            f"Last {REPORT_MONTHS} months",
            "month",
            ledger.totals("month", since=first_month.timestamp()),
        ),
        ("By model, all time", "model", ledger.totals("model")),
    ]
    for title, heading, totals in sections:
        lines += ["", title]
        if not totals:
            lines.append("  No requests.")
            continue
        lines += _table(heading, totals, width)
    estimated = sum(total.estimated_requests for total in sections[-1][2])
    if estimated:
        note = (
            f"≈ marks token counts that include Rill's estimate from the text: the server "
            f"reported no usage for {_plural(estimated, 'request')}."
        )
        lines += ["", *textwrap.wrap(note, width)]
    return "\n".join(lines) + "\n"


def _budget_line(spent: float, budget_usd: float) -> str:
    if not budget_usd or budget_usd <= 0:
        return "Monthly budget: none (set budget.monthly_usd in Settings to have one)."
    used = spent / budget_usd * 100
    if spent >= budget_usd:
        return (
            f"Monthly budget: ${budget_usd:,.2f}, reached ({used:.0f}% used); "
            "new requests are refused until next month."
        )
    return (
        f"Monthly budget: ${budget_usd:,.2f}, {format_money(budget_usd - spent)} left "
        f"({used:.0f}% used)."
    )


def _table(heading: str, totals: Sequence[LedgerTotal], width: int) -> list[str]:
    header = [heading, "requests", "input", "output", "cost", "unknown", "saved"]
    largest = max(max(total.cost, total.saved) for total in totals)
    decimals = 2 if largest >= 1000 else 4
    rows = [
        [
            total.key,
            f"{total.requests:,}",
            _tokens(total.input_tokens, total.estimated_requests > 0),
            _tokens(total.output_tokens, total.estimated_requests > 0),
            "unknown"
            if total.unknown_cost_requests == total.requests
            else _money_cell(total.cost, decimals),
            f"{total.unknown_cost_requests:,}" if total.unknown_cost_requests else "",
            _money_cell(total.saved, decimals) if total.cached_requests else "",
        ]
        for total in totals
    ]
    keep = [i for i in range(len(header)) if i < 5 or any(row[i] for row in rows)]
    header = [header[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    gap = 2
    indent = 2
    rest = sum(widths[1:]) + gap * (len(widths) - 1)
    widths[0] = max(8, min(widths[0], width - indent - rest))
    lines = []
    for row in [header, *rows]:
        cells = [_clip_middle(row[0], widths[0]).ljust(widths[0])]
        cells += [cell.rjust(size) for cell, size in zip(row[1:], widths[1:], strict=True)]
        lines.append((" " * indent + (" " * gap).join(cells)).rstrip())
    return lines


def _money_cell(amount: float, decimals: int) -> str:
    """Dollars with the same number of decimals down a column."""
    if amount == 0:
        return "$0"
    if amount < 10**-decimals:
        return f"<${10**-decimals:.{decimals}f}"
    return f"${amount:,.{decimals}f}"


def _tokens(count: int, estimated: bool = False) -> str:
    """Token counts for people: exact up to 99,999, then k and M; "≈" before a count that
    includes an estimate."""
    mark = "≈" if estimated else ""
    if count < 100_000:
        return f"{mark}{count:,}"
    if count < 10_000_000:
        return f"{mark}{count / 1000:,.0f}k"
    return f"{mark}{count / 1_000_000:,.1f}M"


def _clip_middle(text: str, size: int) -> str:
    """``text`` shortened to ``size`` by an ellipsis in the middle (ends tell names apart)."""
    if len(text) <= size:
        return text
    tail = (size - 1) // 2
    return text[: size - 1 - tail] + "…" + text[len(text) - tail :]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
