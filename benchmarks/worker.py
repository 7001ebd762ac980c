"""Run one benchmark in this process and write its rows as JSON.

``python -m benchmarks.worker NAME --out FILE [--quick]``. The suite starts one worker process
per benchmark, so no benchmark inherits another's memory, caches or threads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from benchmarks.registry import NAMES, spec_named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    module = importlib.import_module(spec_named(args.name).module)
    started = time.perf_counter()
    rows = module.run(args.quick)
    elapsed = time.perf_counter() - started
    args.out.write_text(
        json.dumps(
            {
                "rows": [row.to_json() for row in rows],
                "method": getattr(module, "METHOD", ""),
                "elapsed_s": elapsed,
            }
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
