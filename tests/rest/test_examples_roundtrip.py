"""Every official R4 example resource round-trips: create -> read gives the same content.

The 728 examples of the FHIR R4 (4.0.1) specification (npm `hl7.fhir.r4.examples`, CC0) are packed in
tests/data/r4-examples.ndjson.gz by tools/pack_examples.py.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import httpx

from fhirlead import fhirjson
from fhirlead.sources import client_uri
from tests.rest.helpers import FHIR_JSON
from tests.tokens import SYSTEM_CLIENT

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "r4-examples.ndjson.gz"


def examples() -> list[tuple[str, dict]]:
    with gzip.open(EXAMPLES, "rb") as lines:
        return [(row["file"], row["resource"]) for row in map(fhirjson.loads, lines)]


def without_server_meta(resource: dict) -> dict:
    copy = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in copy.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        copy["meta"] = meta
    return copy


def sourced(resource: dict) -> dict:
    """What the server keeps: the resource, with the writing client's meta.source where it had none
    (docs/sources.md)."""
    meta = resource.get("meta", {})
    return resource if "source" in meta else {**resource, "meta": {**meta, "source": client_uri(SYSTEM_CLIENT)}}


async def test_every_official_example_round_trips(client: httpx.AsyncClient) -> None:
    loaded = examples()
    assert len(loaded) == 728
    failures: dict[str, str] = {}
    for name, resource in loaded:
        response = await client.post(resource["resourceType"], content=fhirjson.dumps(resource),
                                     headers={"Content-Type": FHIR_JSON})
        if response.status_code != 201:
            failures[name] = f"{response.status_code} {response.text[:300]}"
            continue
        read = await client.get(response.headers["location"])
        served = fhirjson.loads(read.content)  # compared as sorted JSON: every decimal's digits count
        expected = sourced(resource)
        if fhirjson.dumps_sorted(without_server_meta(served)) != fhirjson.dumps_sorted(without_server_meta(expected)):
            failures[name] = "read differs from what was created"
    assert not failures, failures
    types = Counter(resource["resourceType"] for _, resource in loaded)
    assert len(types) == 130  # every resource type the examples cover
