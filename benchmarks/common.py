"""What every benchmark shares: the result row, statistics, the simulator process, the machine."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]

NOT_MEASURED = "not measured yet: needs the desktop window"


# --------------------------------------------------------------------------------------------
# Result rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: its value and unit, the target it is held to, and whether it met it.

    ``passed`` is None for a figure without a target (shown for context) and for a slot
    that is not measured yet (``value`` None).
    """

    name: str
    value: float | None
    unit: str
    target: str = ""
    passed: bool | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(**data)


def below(name: str, value: float, unit: str, limit: float, *, note: str = "") -> Row:
    """A figure that must stay under ``limit`` (same unit)."""
    return Row(name, value, unit, f"< {_limit(limit, unit)}", value < limit, note)


def at_least(name: str, value: float, unit: str, limit: float, *, note: str = "") -> Row:
    """A figure that must reach ``limit`` (same unit)."""
    return Row(name, value, unit, f"≥ {_limit(limit, unit)}", value >= limit, note)


def at_most(name: str, value: float, unit: str, limit: float, *, note: str = "") -> Row:
    """A figure that may equal but not exceed ``limit`` (same unit)."""
    return Row(name, value, unit, f"≤ {_limit(limit, unit)}", value <= limit, note)


def info(name: str, value: float, unit: str, *, note: str = "") -> Row:
    """A figure shown for context, held to no target."""
    return Row(name, value, unit, "", None, note)


def pending(name: str, target: str, *, note: str = NOT_MEASURED) -> Row:
    """A slot for a figure this suite cannot measure yet."""
    return Row(name, None, "", target, None, note)


def _limit(limit: float, unit: str) -> str:
    """A target's limit as written in the brief: ``1.5×``, ``0.8×``, ``50 MB``, ``300 ms``."""
    number = f"{limit:,.0f}" if float(limit).is_integer() else f"{limit:g}"
    return f"{number}{unit}" if unit == "×" else f"{number} {unit}"


def format_value(value: float | None) -> str:
    """A figure with as many digits as it deserves: 142,311 · 57.3 · 1.5 · 0.412 · 0.0031."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size == 0:
        return "0"
    return f"{value:#.2g}" if size < 0.01 else f"{value:#.3g}"


def verdict(row: Row) -> str:
    if row.value is None:
        return "not measured"
    if row.passed is None:
        return "—"
    return "PASS" if row.passed else "MISS"


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0–100) with linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def spread(samples: Sequence[float], unit: str = "") -> str:
    """``min–max`` of the samples, for a row's note."""
    tail = f" {unit}" if unit else ""
    return f"{format_value(min(samples))}–{format_value(max(samples))}{tail}"


def log(message: str) -> None:
    """A progress line on stderr (stdout carries results)."""
    print(f"  · {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The simulator in its own process
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator process that is listening."""

    url: str
    pid: int

    def base_url(self, provider: str) -> str:
        return self.url + "/v1" if provider == "openai" else self.url


@contextlib.contextmanager
def simulator_process(
    *,
    tokens: int,
    tokens_per_s: float = 0.0,
    startup_timeout_s: float = 30.0,
    module: str = "desktop_app.simulator",
) -> Iterator[RunningSimulator]:
    """``python -m MODULE`` (the simulator, by default) in a child process, so it has its
    own GIL.

    Starts it on a free port and yields once the port accepts connections (or raises with the
    child's error output); on leaving, sends SIGTERM and waits for the child to exit.
    """
    host = "127.0.0.1"
    failure = ""
    for _ in range(3):  # another process may take the free port before the child binds it
        port = free_port()
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    module,
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--tokens-per-s",
                    str(tokens_per_s),
                    "--tokens",
                    str(tokens),
                ],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=REPO,
            )
            try:
                failure = _wait_until_listening(process, host, port, errors, startup_timeout_s)
                if not failure:
                    yield RunningSimulator(f"http://{host}:{port}", process.pid)
                    return
            finally:
                _stop(process)
    raise RuntimeError(f"the simulator did not start: {failure}")


def _wait_until_listening(
    process: subprocess.Popen[bytes], host: str, port: int, errors: IO[bytes], timeout_s: float
) -> str:
    """Poll the port until it accepts; the child's error output if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors.seek(0)
            text = errors.read().decode("utf-8", "replace").strip()[-2000:]
            return text or f"exit status {process.returncode}"
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return ""
        except OSError:
            time.sleep(0.01)
    return f"port {port} did not open within {timeout_s:.0f} s"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def _first_field(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            name, sep, value = line.partition(":" if ":" in line else "=")
            if sep and name.strip() == key:
                return value.strip().strip('"')
    return None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on, as (label, value) pairs."""
    cpu = _first_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    logical = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    cores = f"{logical} logical" + (
        f" ({usable} usable by this process)" if usable != logical else ""
    )
    with contextlib.suppress(ImportError):
        import psutil

        physical = psutil.cpu_count(logical=False)
        if physical:
            cores += f", {physical} physical"
    mem_kb = _first_field("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kb.split()[0]) / 1024 / 1024:.1f} GiB" if mem_kb else "unknown"
    pretty = _first_field("/etc/os-release", "PRETTY_NAME")
    system = f"{platform.system()} {platform.release()} {platform.machine()}"
    os_text = f"{pretty} ({system})" if pretty else system
    python = f"{platform.python_implementation()} {platform.python_version()}"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    libraries = ", ".join(
        f"{name} {_version(name)}"
        for name in ("httpx", "httpx-sse", "aiohttp", "openai", "diskcache", "psutil")
    )
    return [
        ("CPU", cpu),
        ("Cores", cores),
        ("RAM", ram),
        ("Python", python),
        ("OS", os_text),
        ("Date", now),
        ("SQLite", sqlite3.sqlite_version),
        ("Libraries", libraries),
    ]
