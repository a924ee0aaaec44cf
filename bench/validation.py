"""What validating a written resource costs, layer by layer (docs/validation.md).

    .venv/bin/python bench/validation.py [--rounds 5] [--carebundle [DIR]]

Over the 728 R4 examples packed in tests/data, when ../shared/data is beside the repository the Synthea
bundles' resources, and with `--carebundle` the resources of the first 200 transaction Bundles
`bench/ingest.py` generated (US Core profiles claimed; placeholders rewritten as a transaction does):
microseconds per resource (best of --rounds passes) for the server's JSON rules, the R4 JSON Schema, the
base element rules with the narrative (`structure.check`), the base invariants (`Invariants.check`), the
profile layer as a write runs it (`Profiles.check`) and the whole `Validator.check`. Then the profiles:
over the US Core 6.1.0 and Lead examples (profiles/us-core/examples, profiles/lead/examples), per profile they claim,
microseconds for the profile layer alone (`Profiles.check`) and for the whole validator, median of the
examples of that profile.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhirlead import fhirjson
from fhirlead.bundles import references
from fhirlead.errors import FhirError
from fhirlead.validation import Validator, rules, structure
from fhirlead.validation.profiles import Profiles

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "data" / "r4-examples.ndjson.gz"
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea"
US_CORE = ROOT / "profiles" / "us-core" / "examples"
LEAD = ROOT / "profiles" / "lead" / "examples"


def corpora(carebundle: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    with gzip.open(EXAMPLES, "rb") as lines:
        found = {"R4 examples": [fhirjson.loads(line)["resource"] for line in lines]}
    if SYNTHEA.is_dir():
        found["Synthea"] = [entry["resource"] for path in sorted(SYNTHEA.glob("*/*.json"))
                            for entry in fhirjson.loads(path.read_bytes()).get("entry", [])]
    if carebundle is not None:
        found["carebundle"] = [resource for path in sorted(carebundle.glob("bundle-*.json"))[:200]
                               for resource in as_written(fhirjson.loads(path.read_bytes()))]
    return found


def as_written(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """A transaction Bundle's resources as the server validates them: each with an id, its `urn:uuid`
    placeholders rewritten to `Type/id` (fhirlead/bundles/references.py)."""
    mapping = {entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['fullUrl'].rsplit(':', 1)[-1]}"
               for entry in bundle["entry"] if "fullUrl" in entry}
    resources = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        references.rewrite(resource, mapping, [])
        resource["id"] = entry["fullUrl"].rsplit(":", 1)[-1]
        resources.append(resource)
    return resources


def timed(resources: list[dict[str, Any]], work: Callable[[dict[str, Any]], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for resource in resources:
            work(resource)
        best = min(best, time.perf_counter() - started)
    return best / len(resources) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--carebundle", type=Path, nargs="?", const=ROOT / "bench" / "results" / "ingest-bundles",
                        help="also the first 200 Bundles ingest.py generated (default bench/results/ingest-bundles)")
    args = parser.parse_args()
    validator = Validator()

    def whole(resource: dict[str, Any]) -> None:
        with contextlib.suppress(FhirError):
            validator.check(resource)

    layers = {"JSON rules": rules.check_json_shape, "JSON Schema": validator.schema.validate,
              "element rules + narrative": structure.check, "invariants": validator.invariants.check,
              "profile layer": lambda resource: validator.profiles.check(resource, (), True),
              "whole Validator.check": whole}
    print("| corpus | resources | " + " | ".join(layers) + " |")
    print("| --- | --- |" + " --- |" * len(layers))
    for name, resources in corpora(args.carebundle).items():
        for resource in resources:
            whole(resource)  # compile every type's rules first
        cells = [f"{timed(resources, work, args.rounds):.1f} µs" for work in layers.values()]
        print(f"| {name} | {len(resources):,} | " + " | ".join(cells) + " |")


def profiles(rounds: int) -> None:
    """Per US Core profile: the profile layer alone and the whole validator, median over its examples."""
    validator, layer = Validator(), Profiles()
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for path in [*sorted(US_CORE.glob("*.json")), *sorted(LEAD.glob("*.json"))]:
        resource = fhirjson.loads(path.read_bytes())
        for canonical in resource.get("meta", {}).get("profile", [])[:1]:
            by_profile.setdefault(canonical.rsplit("/", 1)[-1], []).append(resource)

    def whole(resource: dict[str, Any]) -> None:
        with contextlib.suppress(FhirError):
            validator.check(resource)

    print("| profile | examples | profile layer | whole validator |")
    print("| --- | --- | --- | --- |")
    for name, resources in sorted(by_profile.items()):
        for resource in resources:
            whole(resource)  # compile first
            layer.check(resource)
        own = sorted(timed([r], layer.check, rounds) for r in resources)[len(resources) // 2]
        total = sorted(timed([r], whole, rounds) for r in resources)[len(resources) // 2]
        print(f"| {name} | {len(resources)} | {own:.0f} µs | {total:.0f} µs |")


if __name__ == "__main__":
    main()
    profiles(5)
