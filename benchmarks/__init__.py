"""Rill's benchmarks: figures and ratios compared against targets, written to docs/benchmarks.md.

Run them all with ``python -m benchmarks``; ``--only NAME`` runs one, ``--quick`` makes a
fast smoke run. Each benchmark is a module of this package with a ``run(quick) -> list[Row]``
function (see :mod:`benchmarks.common` and :mod:`benchmarks.registry`).
"""
