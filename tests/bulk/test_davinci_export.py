"""Da Vinci ATR 2.1.0 `Group/[id]/$davinci-data-export` (exportType hl7.fhir.us.davinci-atr) over HTTP: the
attribution list with the Patients attributed today and the Coverages, RelatedPersons, Practitioners,
PractitionerRoles, Organizations and Locations they reach, through the `$export` async pattern."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead import clock
from tests.bulk.conftest import ASYNC, files, finished, lines
from tests.bulk.data import load, observation, patient, stored

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
OP = "Group/atr-list/$davinci-data-export"
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "atr-2.1.0" / "examples"


def member(patient_id: str, coverage: str, provider: str, period: dict[str, str] | None = None) -> dict[str, Any]:
    return {"entity": {"reference": f"Patient/{patient_id}"}, "period": period or {"start": "2020-01-01"},
            "extension": [{"url": ATR + "ext-coverageReference", "valueReference": {"reference": coverage}},
                          {"url": ATR + "ext-attributedProvider", "valueReference": {"reference": provider}}]}


def coverage(id_: str, beneficiary: str, subscriber: str, payor: str) -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": id_, "status": "active", "beneficiary": {"reference": beneficiary},
            "subscriber": {"reference": subscriber}, "payor": [{"reference": payor}]}


def named(type_: str, id_: str) -> dict[str, Any]:
    return {"resourceType": type_, "id": id_, "name": [{"family": id_}] if type_ != "Organization" else id_} \
        if type_ in ("Practitioner", "Organization", "RelatedPerson") else {"resourceType": type_, "id": id_}


ATR_LIST = [
    patient("p1"), patient("p2"), patient("p3"), patient("outsider"),
    {**named("RelatedPerson", "rp1"), "patient": {"reference": "Patient/p1"}},
    {**named("RelatedPerson", "rp-other"), "patient": {"reference": "Patient/outsider"}},
    named("Organization", "payer"), named("Organization", "clinic"), named("Organization", "gone-org"),
    named("Practitioner", "dr1"), named("Practitioner", "dr2"), named("Practitioner", "other"),
    {"resourceType": "Location", "id": "loc1", "name": "South wing"},
    {"resourceType": "Location", "id": "loc-other", "name": "Elsewhere"},
    {"resourceType": "PractitionerRole", "id": "role1", "practitioner": {"reference": "Practitioner/dr2"},
     "organization": {"reference": "Organization/clinic"}, "location": [{"reference": "Location/loc1"}]},
    coverage("cov1", "Patient/p1", "RelatedPerson/rp1", "Organization/payer"),
    coverage("cov2", "Patient/p2", "Patient/p2", "Organization/payer"),
    coverage("cov3", "Patient/p3", "Patient/p3", "Organization/payer"),
    observation("obs1", "p1"),
    {"resourceType": "Group", "id": "atr-list", "type": "person", "actual": True,
     "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "final"}],
     "managingEntity": {"reference": "Organization/payer"},
     "member": [member("p1", "Coverage/cov1", "Practitioner/dr1"),
                member("p2", "Coverage/cov2", "PractitionerRole/role1"),
                member("p3", "Coverage/cov3", "Organization/gone-org", {"start": "2019-01-01", "end": "2020-01-01"})]},
]
EXPECTED = {"Group": ["atr-list"], "Patient": ["p1", "p2"], "Coverage": ["cov1", "cov2"], "RelatedPerson": ["rp1"],
            "Practitioner": ["dr1", "dr2"], "PractitionerRole": ["role1"], "Organization": ["clinic", "payer"],
            "Location": ["loc1"]}


def ids(found: dict[str, list[bytes]]) -> dict[str, list[str]]:
    return {type_: sorted(orjson.loads(line)["id"] for line in type_lines) for type_, type_lines in found.items()}


async def atr_export(client: httpx.AsyncClient, params: Any = None, path: str = OP) -> dict[str, Any]:
    answer = await client.get(path, params=params, headers=ASYNC)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Content-Location"].startswith("http://testserver/fhir/$export-status/")
    return await finished(client, answer.headers["Content-Location"])


async def test_the_list_and_what_it_reaches(client: httpx.AsyncClient) -> None:
    await load(client, ATR_LIST)
    manifest = await atr_export(client, {"exportType": "hl7.fhir.us.davinci-atr"})
    assert manifest["request"] == f"http://testserver/fhir/{OP}?exportType=hl7.fhir.us.davinci-atr"
    assert manifest["error"] == []
    found = await files(client, manifest)
    assert ids(found) == EXPECTED  # not p3 (its membership ended), nor what only p3 reaches, nor the Observation
    for type_, type_lines in found.items():  # stored bytes
        for line in type_lines:
            assert line == await stored(client, type_, orjson.loads(line)["id"])
    assert ids(await files(client, await atr_export(client))) == EXPECTED  # exportType omitted: the same


async def test_patient_type_and_type_filter(client: httpx.AsyncClient) -> None:
    await load(client, ATR_LIST)
    answer = await client.post(OP, headers=ASYNC, json={"resourceType": "Parameters", "parameter": [
        {"name": "exportType", "valueCanonical": "hl7.fhir.us.davinci-atr"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        {"name": "patient", "valueReference": {"reference": "Patient/p3"}},  # not attributed today: ignored
        {"name": "patient", "valueReference": {"reference": "Patient/nobody"}}]})  # unknown: ignored
    assert answer.status_code == 202, answer.text
    manifest = await finished(client, answer.headers["Content-Location"])
    assert ids(await files(client, manifest)) == {"Group": ["atr-list"], "Patient": ["p1"], "Coverage": ["cov1"],
                                                  "RelatedPerson": ["rp1"], "Practitioner": ["dr1"],
                                                  "Organization": ["payer"]}
    outcome = orjson.loads((await lines(client, manifest["error"][0]["url"]))[0])
    said = " ".join(issue["diagnostics"] for issue in outcome["issue"])
    assert "Patient/p3 is not a member" in said and "Patient/nobody is not known" in said
    found = ids(await files(client, await atr_export(client, {"_type": "Patient,Coverage"})))
    assert found == {"Patient": ["p1", "p2"], "Coverage": ["cov1", "cov2"]}
    found = ids(await files(client, await atr_export(client, {"_type": "Practitioner,Patient",
                                                              "_typeFilter": "Practitioner?family=dr2"})))
    assert found == {"Patient": ["p1", "p2"], "Practitioner": ["dr2"]}


async def test_since_and_until(client: httpx.AsyncClient) -> None:
    await load(client, ATR_LIST)
    before = clock.instant(clock.now())
    await load(client, [{**named("Practitioner", "dr1"), "gender": "female"}])
    found = ids(await files(client, await atr_export(client, {"_since": before})))
    assert found == {"Practitioner": ["dr1"]}
    found = ids(await files(client, await atr_export(client, {"_until": before})))
    assert found == {**EXPECTED, "Practitioner": ["dr2"]}  # dr1's version was written after _until


async def test_refusals(client: httpx.AsyncClient) -> None:
    await load(client, ATR_LIST)
    assert (await client.get(OP)).status_code == 400  # no Prefer: respond-async
    for params in ({"exportType": "hl7.fhir.us.davinci-pdex#payertopayer"}, {"_type": "Observation"},
                   {"_until": "yesterday"}, {"_elements": "id"}, {"_typeFilter": "Patient?nonsense=1"},
                   {"exportType": ["hl7.fhir.us.davinci-atr", "hl7.fhir.us.davinci-atr"]}):
        answer = await client.get(OP, params=params, headers=ASYNC)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Group/nobody/$davinci-data-export", headers=ASYNC)).status_code == 404
    assert (await client.get("Patient/$davinci-data-export", headers=ASYNC)).status_code == 404


async def test_published_in_the_capability_statement(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    group = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Group")
    assert {"name": "davinci-data-export",
            "definition": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export"} in [
        {k: o.get(k) for k in ("name", "definition")} for o in group.get("operation", [])]


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="the ATR 2.1.0 examples (../shared/data/atr-2.1.0) are not here")
async def test_the_igs_example_list(client: httpx.AsyncClient) -> None:
    """The IG's own example list and the resources it names; its memberships ended in 2020-2022, so they are
    made open-ended here (else no one is attributed today)."""
    resources = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    wanted = {"Group", "Patient", "Coverage", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
              "Location"}
    resources = [r for r in resources if r["resourceType"] in wanted and r["id"] != "davinci-patient-list-example"]
    for resource in resources:
        resource.pop("meta", None)
        for element in resource.get("member") or ():
            element["period"] = {"start": element["period"]["start"]}
    await load(client, resources)
    found = ids(await files(client, await atr_export(client, path="Group/fullexample/$davinci-data-export")))
    assert found == {"Group": ["fullexample"], "Patient": ["1", "2", "3"], "Coverage": ["1", "2", "3"],
                     "RelatedPerson": ["1", "2"], "Practitioner": ["1"], "PractitionerRole": ["1"],
                     "Organization": ["1", "2"], "Location": ["1"]}
