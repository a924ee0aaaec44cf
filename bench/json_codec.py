"""The JSON codec per resource: orjson (floats) against fhirlead.fhirjson (msgspec, exact decimals).

    .venv/bin/python bench/json_codec.py [BUNDLE.json ...]

Times, per resource of real Synthea Bundles (default: those in ../shared/data/synthea), what a write
costs in JSON work: reading a client's body (`loads_untrusted`: decimals, depth and duplicate-name
checks), and writing it for the store (`dumps`); and the same with orjson, which the server used before.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhirlead import fhirjson

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea"


def per_call(function: Callable[[Any], Any], items: list[Any], repeat: int = 5) -> float:
    """Best of `repeat` passes over `items`, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def main(paths: list[Path]) -> None:
    resources = [fhirjson.dumps(entry["resource"]) for path in paths
                 for entry in fhirjson.loads(path.read_bytes()).get("entry", [])]
    if not resources:
        raise SystemExit("no Bundles: pass Synthea Bundle files, or put ../shared/data beside the repository")
    size = sum(map(len, resources)) / len(resources)
    print(f"{len(resources):,} resources from {len(paths)} Bundles, {size:,.0f} bytes on average")
    floats = [orjson.loads(r) for r in resources]
    decimals = [fhirjson.loads(r) for r in resources]
    rows = [
        ("read a body", per_call(orjson.loads, resources), per_call(fhirjson.loads_untrusted, resources)),
        ("  of which exact decimals only", per_call(orjson.loads, resources), per_call(fhirjson.loads, resources)),
        ("write for the store", per_call(orjson.dumps, floats), per_call(fhirjson.dumps, decimals)),
    ]
    print(f"{'µs per resource':<32}{'orjson':>10}{'fhirjson':>10}")
    for name, before, after in rows:
        print(f"{name:<32}{before:>10.2f}{after:>10.2f}")


if __name__ == "__main__":
    given = [Path(p) for p in sys.argv[1:]] or sorted(SHARED.glob("*/*.json"))
    main(given)
