"""What computing a written resource's search index entries costs (`fhirlead.search.extract`).

    .venv/bin/python bench/extraction.py [--rounds 5] [--carebundle [DIR]]

Microseconds per resource (best of --rounds passes) for `Extractor.extract` with the base R4 search
parameters, over the corpora of `bench/validation.py` (the 728 packed R4 examples, the Synthea bundles when
../shared/data is beside the repository, with `--carebundle` the resources of `bench/ingest.py`'s first
200 Bundles) and over AuditEvents as the audit trail builds them for reads (one per read: what the audit
writer indexes on every request). Also the index entries per resource, which the store then writes as rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import ROOT, corpora, timed

from fhirlead.audit.event import Caller, now
from fhirlead.audit.exchange import Exchange, audit_event
from fhirlead.search.extract import Extractor
from fhirlead.search.registry import base_registry

READ_BODY = (b'{"resourceType":"Patient","id":"%d",'
             b'"meta":{"versionId":"1","lastUpdated":"2026-12-05T10:00:00.000000Z"},"name":[{"family":"Chalmers","given":["Peter"]}],"gender":"male","birthDate":"1974-12-25"}')


def audit_events(count: int = 2_000) -> list[dict[str, Any]]:
    """AuditEvents of reads and searches by a backend client and by a user, as the trail builds them."""
    system = Caller(client_id="ehr-backend", address="10.0.0.7")
    user = Caller(client_id="smart-app", username="dr.lee", fhir_user="Practitioner/7", address="10.0.0.8")
    events = []
    for number in range(count):
        if number % 4 == 3:
            exchange = Exchange(method="GET", segments=("Observation",), status=200,
                                params=(("patient", str(number)), ("code", "4548-4")))
        else:
            exchange = Exchange(method="GET", segments=("Patient", str(number)), status=200, etag='W/"1"',
                                body=READ_BODY % number)
        events.append(audit_event(exchange, user if number % 2 else system, now()))
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--carebundle", type=Path, nargs="?", const=ROOT / "bench" / "results" / "ingest-bundles",
                        help="also the first 200 Bundles ingest.py generated (default bench/results/ingest-bundles)")
    args = parser.parse_args()
    extractor = Extractor(base_registry())
    extractor.warm()
    found = corpora(args.carebundle)
    found["AuditEvents of reads"] = audit_events()
    print("| corpus | resources | µs per resource | index entries per resource |")
    print("| --- | --- | --- | --- |")
    for name, resources in found.items():
        entries = sum(extractor.extract(resource).count() for resource in resources)
        micros = timed(resources, extractor.extract, args.rounds)
        print(f"| {name} | {len(resources):,} | {micros:.1f} | {entries / len(resources):.1f} |")


if __name__ == "__main__":
    main()
