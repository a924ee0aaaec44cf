"""CPython's cyclic garbage collector in fhirlead's long-running processes.

A full collection walks every container object alive: in a server, first of all the definitions, search
registry, validators and compiled measures it holds for its lifetime (~100,000 objects, ~47 ms a walk).
`gc.freeze()` moves what is alive at that moment out of the collector's sight, so later collections walk
only what came after; frozen objects are still freed when their last reference goes (only cycles among
them are never collected). Figures: bench/README.md ("aggregate_patient.py", "Speed, fourth pass").
"""

from __future__ import annotations

import gc

# young collections every this many net container allocations (CPython's default: 700): a request that
# parses a transaction Bundle otherwise sends its resources through several young collections each
GEN0_THRESHOLD = 50_000


def freeze() -> None:
    """Collect, then freeze what is left."""
    gc.collect()
    gc.freeze()


def settle_server() -> None:
    """After a server process has started (`fhirlead serve`, the audit writer): its start-up heap frozen,
    young collections every GEN0_THRESHOLD allocations (HTTP ingest spent 6% of its time collecting with
    the heap frozen, 2.5% with both)."""
    freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
