"""Every official R4 example resource round-trips: create -> read gives the same content (the one that
breaks the base definitions is refused, saying why).

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


# Published examples that break the base R4 definitions themselves: refused, naming what is missing.
# (the specification's own ImplementationGuide, in two copies, has neither `name` nor `status`: both 1..1)
NAMELESS = {"ImplementationGuide.name", "ImplementationGuide.status"}
INVALID = {"ig-r4.json": NAMELESS, "ImplementationGuide-fhir.json": NAMELESS,
           # twelve entries repeat an earlier entry's fullUrl (bdl-7)
           "Bundle-dataelements.json": {f"Bundle.entry[{n}]" for n in range(6769, 6781)},
           # a RESTful fullUrl that does not end with its resource's type and id (R4 Bundle.entry.fullUrl:
           # "SHALL NOT disagree with the id in the resource"; "if the fullUrl does look like a RESTful server
           # URL [...] the 'id' portion of the fullUrl SHALL end with the Resource.id"):
           # .../Observation/lri-gramstain1 holds the Observation gramstain1, ... (sixteen entries);
           # .../Patient/pat12 holds the Patient pat2 (two message Bundles)
           "Bundle-lri-example.json": {f"Bundle.entry[{n}].fullUrl" for n in range(1, 17)},
           "Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json": {"Bundle.entry[2].fullUrl"},
           "Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json": {"Bundle.entry[3].fullUrl"},
           # US Core's ethnicity extension on an Observation: US Core 6.1.0 defines it for Patient,
           # RelatedPerson, Person, Practitioner and FamilyMemberHistory only (StructureDefinition.context),
           # as a complex extension (ombCategory, text: 1..1) with no value of its own, and this one has a value
           "Observation-example-genetics-brcapat.json": {
               "Observation.extension[1]", "Observation.extension[1].extension",
               "Observation.extension[1].valueCodeableConcept"},
           # a narrative with no content at all (txt-2: "SHALL have some non-whitespace content")
           **{f"{type_}-{id_}.json": {f"{type_}.text.div"} for type_, id_ in (
               ("ActivityDefinition", "blood-tubes-supply"), ("ActivityDefinition", "heart-valve-replacement"),
               ("EventDefinition", "example"), ("Questionnaire", "zika-virus-exposure-assessment"))}}


async def test_every_official_example_round_trips(client: httpx.AsyncClient) -> None:
    loaded = examples()
    assert len(loaded) == 728
    failures: dict[str, str] = {}
    for name, resource in loaded:
        response = await client.post(resource["resourceType"], content=fhirjson.dumps(resource),
                                     headers={"Content-Type": FHIR_JSON})
        if name in INVALID:
            named = {e for issue in response.json().get("issue", []) for e in issue.get("expression", [])}
            if response.status_code != 400 or named != INVALID[name]:
                failures[name] = f"expected a 400 naming {sorted(INVALID[name])}: {response.status_code} {named}"
            continue
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
