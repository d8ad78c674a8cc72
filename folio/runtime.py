"""Process-wide tuning for a process that runs a dataflow.

Called by the entry points (``folio run``, ``folio demo``, the benchmarks),
never by the flows themselves: it changes the whole interpreter.
"""

from __future__ import annotations

import gc

# Allocations between young-generation collections (CPython's default: 700).
YOUNG_THRESHOLD = 100_000


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Collect garbage in larger, rarer rounds.

    A flow allocates millions of short-lived tuples (a few per tick), so with
    CPython's defaults the cyclic collector runs every 700 allocations and
    keeps promoting batch objects that die soon after, which triggers full
    collections over the whole heap: sampled with py-spy, 26 % of the ingest
    flow's time was ``gc_collect_main``; with these thresholds the same run
    used ~20 % less CPU (``benchmarks/ingest_bench.py``, see the README).
    Reference counting still frees almost everything at once; only cycles
    wait longer: a young round per 100k allocations, a middle one per 2M, and
    full rounds as CPython's own rule allows (the third threshold at its
    default of 10, plus "only when a quarter of the old objects are new")."""
    gc.set_threshold(young, 20, 10)
