"""The benchmarks in the order the report lists them.

A benchmark is the module ``benchmarks.<name>``. It defines

- ``run(quick: bool) -> list[Row]``: measure, and return one row per figure; ``quick`` asks
  for a smoke run with fewer repetitions (its figures are not the reported ones);
- ``METHOD``: a Markdown paragraph saying how the figures are measured.

A benchmark whose module does not exist yet is listed with its ``pending`` rows, which say
what it will measure and the targets it will be held to.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from benchmarks.common import Row, pending


@dataclass(frozen=True, slots=True)
class Spec:
    number: int
    name: str
    title: str
    pending: tuple[Row, ...] = ()
    pending_method: str = ""

    @property
    def module(self) -> str:
        return f"benchmarks.{self.name}"

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


SPECS: tuple[Spec, ...] = (
    Spec(1, "throughput", "Engine throughput"),
    Spec(2, "latency", "Added latency"),
    Spec(
        3,
        "render",
        "Rendering",
        pending=(
            pending("2,000 tokens at 2,000 tok/s: longest main-thread stall", "< 50 ms"),
            pending("20,000 tokens at 2,000 tok/s: longest main-thread stall", "< 50 ms"),
            pending("p99 event-loop lag while rendering", ""),
            pending("render time per token, 2k and 20k replies", ""),
            pending("render time per token, 20k / 2k ratio", "≤ 1.3×"),
            pending("CPU seconds per reply, 2k and 20k", ""),
            pending("memory growth per reply, 2k and 20k", ""),
        ),
        pending_method=(
            "To be added as `benchmarks/render.py`: stream 2,000 and 20,000 tokens at 2,000 "
            "tokens/s from the simulator into the real main window (offscreen Qt), and measure "
            "the longest main-thread stall, the p99 lag of the event loop, the render time per "
            "token and its 20k/2k ratio (rendering work per token must stay constant as a reply "
            "grows), the CPU seconds used and the memory growth."
        ),
    ),
    Spec(
        4,
        "startup",
        "Start-up",
        pending=(
            pending("process start → main window shown", "< 1 s"),
            pending("idle RSS with the main window shown", ""),
        ),
        pending_method=(
            "To be added as `benchmarks/startup.py`: time from starting the `rill` process to "
            "its main window being shown, and the resident memory once it is idle."
        ),
    ),
    Spec(5, "memory", "Memory"),
    Spec(6, "cache", "Response cache"),
    Spec(7, "history", "History"),
    Spec(8, "hostile", "Hostile input"),
    Spec(9, "auto", "Auto routing"),
    Spec(10, "peer", "Against a peer (PyGPT)"),
    Spec(11, "attachments", "Attachments"),
)

NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)


def spec_named(name: str) -> Spec:
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise KeyError(name)
