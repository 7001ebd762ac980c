"""``python -m benchmarks``: run the benchmarks, print the table, write docs/benchmarks.md.

Each benchmark runs in its own worker process (``python -m benchmarks.worker``). The full run
writes the report to docs/benchmarks.md; a run with ``--only`` or ``--quick`` prints the table
and writes a report only where ``--output`` says.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO, Row, format_value, machine, verdict
from benchmarks.registry import NAMES, SPECS, Spec

DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
WORKER_TIMEOUT_S = 270.0


@dataclass(slots=True)
class Outcome:
    """What one benchmark produced: its rows, how it is measured, and how long it took."""

    spec: Spec
    rows: list[Row] = field(default_factory=list)
    method: str = ""
    elapsed_s: float | None = None
    error: str = ""


def run_worker(spec: Spec, quick: bool) -> Outcome:
    """Run one benchmark in a fresh worker process and read back its rows."""
    if not spec.available:
        return Outcome(spec, list(spec.pending), spec.pending_method)
    with tempfile.TemporaryDirectory(prefix="rill-bench-") as folder:
        out = Path(folder) / "rows.json"
        command = [sys.executable, "-m", "benchmarks.worker", spec.name, "--out", str(out)]
        if quick:
            command.append("--quick")
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, timeout=WORKER_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return _failed(spec, f"did not finish within {WORKER_TIMEOUT_S:.0f} s")
        elapsed = time.perf_counter() - started
        if done.returncode != 0 or not out.exists():
            return _failed(spec, f"the worker exited with status {done.returncode}", elapsed)
        data = json.loads(out.read_text(encoding="utf-8"))
    rows = [Row.from_json(row) for row in data["rows"]]
    return Outcome(spec, rows, data.get("method", ""), elapsed)


def _failed(spec: Spec, reason: str, elapsed: float | None = None) -> Outcome:
    row = Row(f"{spec.title}: benchmark failed", None, "", "", False, reason)
    return Outcome(spec, [row], "", elapsed, reason)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _value_text(row: Row) -> str:
    if row.value is None:
        return "—"
    unit = row.unit
    glue = "" if unit in ("×", "%") or not unit else " "
    return f"{format_value(row.value)}{glue}{unit}"


def _result_text(row: Row, markdown: bool) -> str:
    if row.value is None and row.passed is False:
        return "**FAILED**" if markdown else "FAILED"
    text = verdict(row)
    return f"**{text}**" if markdown and text == "MISS" else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(outcomes: list[Outcome]) -> str:
    lines = [
        "| # | Benchmark | Figure | Value | Target | Result | Note |",
        "|---|---|---|--:|---|---|---|",
    ]
    for outcome in outcomes:
        for row in outcome.rows:
            cells = [
                str(outcome.spec.number),
                outcome.spec.title,
                row.name,
                _value_text(row),
                row.target or "—",
                _result_text(row, markdown=True),
                row.note,
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def text_table(outcomes: list[Outcome]) -> str:
    header = ("#", "Figure", "Value", "Target", "Result")
    body = [
        (
            str(outcome.spec.number),
            row.name,
            _value_text(row),
            row.target or "—",
            _result_text(row, markdown=False),
        )
        for outcome in outcomes
        for row in outcome.rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])


def _counts(outcomes: list[Outcome]) -> str:
    rows = [row for outcome in outcomes for row in outcome.rows]
    passed = sum(row.passed is True for row in rows)
    missed = sum(row.passed is False and row.value is not None for row in rows)
    failed = sum(row.passed is False and row.value is None for row in rows)
    waiting = sum(row.value is None and row.passed is None for row in rows)
    parts = [f"{passed} PASS", f"{missed} MISS"]
    if failed:
        parts.append(f"{failed} FAILED")
    parts.append(f"{waiting} not measured yet")
    return ", ".join(parts)


def _misses(outcomes: list[Outcome]) -> str:
    """A bullet per figure that missed its target or could not be measured."""
    lines = [
        f"- {outcome.spec.number}. {outcome.spec.title} — {row.name}: "
        + (
            f"{_value_text(row)}, target {row.target}"
            if row.value is not None
            else f"failed ({row.note})"
        )
        for outcome in outcomes
        for row in outcome.rows
        if row.passed is False
    ]
    return "\n".join(lines)


def markdown_report(outcomes: list[Outcome], command: str, total_s: float, quick: bool) -> str:
    machine_lines = "\n".join(f"| {label} | {_cell(value)} |" for label, value in machine())
    timings = ", ".join(
        f"{outcome.spec.name} {outcome.elapsed_s:.0f} s"
        for outcome in outcomes
        if outcome.elapsed_s is not None
    )
    methods = "\n\n".join(
        f"### {outcome.spec.number}. {outcome.spec.title}\n\n{outcome.method}"
        for outcome in outcomes
        if outcome.method
    )
    misses = _misses(outcomes)
    missed = f"\nMissed targets:\n\n{misses}\n" if misses else ""
    smoke = (
        "\n> **Quick smoke run** (`--quick`): fewer and shorter runs than the reported "
        "benchmarks; these figures only show that the benchmarks work.\n"
        if quick
        else ""
    )
    return f"""# Rill benchmarks

Written by `{command}` — do not edit by hand; run it again instead.
{smoke}
Absolute times drift on a shared machine; ratios between readers measured side by side hold
better. Every figure with a target says PASS or MISS; targets are never loosened to make a
figure pass. Figures without a target are there for context.

**Result: {_counts(outcomes)}.** The whole run took {total_s:.0f} s ({timings}).
{missed}
## Machine

| | |
|---|---|
{machine_lines}

## Results

{markdown_table(outcomes)}

## How each figure is measured

Run everything with `python -m benchmarks` (about {max(1, round(total_s / 60))} min here); one
benchmark with `--only NAME` ({", ".join(NAMES)}); a fast smoke run with `--quick`. Each
benchmark runs in a fresh worker process (`python -m benchmarks.worker NAME`), so none
inherits another's memory or threads. Where a benchmark needs an LLM server it starts the
simulator (`desktop_app.simulator`) itself and waits for its port to accept connections.

{methods}
"""


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run Rill's benchmarks and write docs/benchmarks.md.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run with fewer repetitions"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the Markdown report (default: docs/benchmarks.md for a full run; "
        "--only and --quick runs write no report unless this is given)",
    )
    args = parser.parse_args(argv)
    selected = [spec for spec in SPECS if not args.only or spec.name in args.only]
    output: Path | None = args.output
    if output is None and not args.only and not args.quick:
        output = DEFAULT_OUTPUT

    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for spec in selected:
        state = "" if spec.available else " (not measured yet)"
        print(f"[{spec.number}] {spec.title}{state}", file=sys.stderr, flush=True)
        outcomes.append(run_worker(spec, args.quick))
    total = time.perf_counter() - started

    print()
    print(text_table(outcomes))
    print()
    print(f"{_counts(outcomes)}; {total:.0f} s in all.")
    if output is not None:
        command = shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(markdown_report(outcomes, command, total, args.quick), encoding="utf-8")
        print(f"Wrote {output}.")
    return 1 if any(outcome.error for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
