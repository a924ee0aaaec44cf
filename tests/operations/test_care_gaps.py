"""`Measure/$care-gaps` (DEQM 5.0.0) over HTTP with the test measure (tests/operations/gap_measure.py, lower
is better: an HbA1c above 9% is the gap): every status, every way of naming the patients, the gaps
document's shape, and the refusals."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.measure.store_data import BATCH
from tests.auth.flow import seed
from tests.operations.gap_measure import MEASURE_URL, content, patient

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
PERIOD = [("periodStart", "2026-01-01"), ("periodEnd", "2026-12-31")]
ALL = [("status", s) for s in ("open-gap", "closed-gap", "prospective-gap", "not-applicable")]
EXPECTED = {"gap": "open-gap", "controlled": "closed-gap", "untested": "closed-gap", "no-visit": "not-applicable"}


def by_patient(answer: httpx.Response) -> dict[str, str]:
    """patient id -> gap status, from the gaps documents."""
    assert answer.status_code == 200, answer.text
    out = {}
    for part in answer.json()["parameter"]:
        assert part["name"] == "return"
        document = part["resource"]
        resources = [e["resource"] for e in document["entry"]]
        [issue] = [r for r in resources if r["resourceType"] == "DetectedIssue"]
        out[issue["patient"]["reference"].split("/")[1]] = \
            issue["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
    return out


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    gp = {"generalPractitioner": [{"reference": "Practitioner/dr-gp"}]}
    await seed(app, [*content(), {"resourceType": "Practitioner", "id": "dr-gp"},
                     {"resourceType": "Organization", "id": "lead", "name": "Lead"},
                     *patient("gap", 10.2, **gp), *patient("controlled", 6.9, **gp), *patient("untested"),
                     *patient("no-visit", 12.0, encounter=False),
                     {"resourceType": "Group", "id": "cohort", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": f"Patient/{p}"}} for p in EXPECTED]}])
    return app


async def test_every_status_for_a_group(world: FastAPI, client: httpx.AsyncClient) -> None:
    assert by_patient(await client.get("Measure/$care-gaps", params=[*PERIOD, *ALL, ("subject", "Group/cohort")])) \
        == EXPECTED
    by_identifier = await client.get("Measure/$care-gaps", params=[
        *PERIOD, *ALL, ("subject", "Group/cohort"), ("measureIdentifier", "http://example.org/fhir/measures|GAP-1")])
    assert by_patient(by_identifier) == EXPECTED
    unknown = await client.get("Measure/$care-gaps", params=[
        *PERIOD, *ALL, ("subject", "Group/cohort"), ("measureIdentifier", "http://example.org/fhir/measures|NO")])
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["expression"] == ["measureIdentifier"]
    only_open = await client.get("Measure/$care-gaps", params=[*PERIOD, ("status", "open-gap"),
                                                                ("subject", "Group/cohort")])
    assert by_patient(only_open) == {"gap": "open-gap"}


async def test_the_gaps_document(world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.post("Measure/$care-gaps", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
        {"name": "subject", "valueString": "Patient/gap"}, {"name": "organization", "valueString": "Organization/lead"},
        {"name": "status", "valueCode": "open-gap"}, {"name": "measureUrl", "valueCanonical": MEASURE_URL}]})
    assert answer.status_code == 400  # subject and organization together
    answer = await client.post("Measure/$care-gaps", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
        {"name": "subject", "valueString": "Patient/gap"}, {"name": "status", "valueCode": "open-gap"},
        {"name": "measureUrl", "valueCanonical": MEASURE_URL}]})
    [part] = answer.json()["parameter"]
    document = part["resource"]
    assert document["type"] == "document" and document["identifier"]["system"] == "urn:ietf:rfc:3986"
    assert document["timestamp"]
    resources = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in document["entry"]}
    assert all(e["fullUrl"].endswith(key) for e, key in zip(document["entry"], resources, strict=True))
    composition = document["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["type"]["coding"][0] == {"system": "http://loinc.org", "code": "96315-7",
                                                "display": "Gaps in care report"}
    assert composition["subject"] == {"reference": "Patient/gap"}
    [section] = composition["section"]
    report = resources[section["focus"]["reference"]]
    issue = resources[section["entry"][0]["reference"]]
    assert report["resourceType"] == "MeasureReport" and report["type"] == "individual"
    assert report["measure"].startswith(MEASURE_URL)
    assert issue["code"]["coding"][0]["code"] == "CAREGAP"
    assert issue["evidence"][0]["detail"][0]["reference"] == section["focus"]["reference"]
    assert resources[composition["author"][0]["reference"]]  # the author is in the document
    assert {"Patient/gap", "Observation/gap-a1c", "Encounter/gap-visit"} <= set(resources)


async def test_practitioner_and_organization(world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.get("Measure/$care-gaps", params=[*PERIOD, *ALL, ("practitioner", "Practitioner/dr-gp"),
                                                            ("organization", "Organization/lead")])
    assert by_patient(answer) == {"gap": "open-gap", "controlled": "closed-gap"}
    for part in answer.json()["parameter"]:
        reports = [e["resource"] for e in part["resource"]["entry"] if e["resource"]["resourceType"] == "MeasureReport"]
        assert reports[0]["reporter"] == {"reference": "Organization/lead"}
        assert part["resource"]["entry"][0]["resource"]["author"] == [{"reference": "Organization/lead"}]


async def test_a_date_of_compliance_ahead_makes_an_open_gap_prospective(app: FastAPI,
                                                                        client: httpx.AsyncClient) -> None:
    await seed(app, [*content(due=True), *patient("gap", 10.2), *patient("controlled", 6.9)])
    answer = await client.get("Measure/$care-gaps", params=[*PERIOD, *ALL, ("subject", "Patient/gap")])
    assert by_patient(answer) == {"gap": "prospective-gap"}
    answer = await client.get("Measure/$care-gaps", params=[*PERIOD, *ALL, ("subject", "Patient/controlled")])
    assert by_patient(answer) == {"controlled": "closed-gap"}


@pytest.mark.parametrize(("params", "name"), [
    ([*PERIOD, ("subject", "Patient/gap")], "status"),
    ([*PERIOD, ("subject", "Patient/gap"), ("status", "half-open")], "status"),
    ([*PERIOD, ("status", "open-gap")], "subject"),
    ([*PERIOD, ("status", "open-gap"), ("subject", "Practitioner/dr-gp")], "subject"),
    ([*PERIOD, ("status", "open-gap"), ("subject", "Patient/gap"), ("topic", "diabetes")], "topic"),
    ([*PERIOD, ("status", "open-gap"), ("subject", "Patient/gap"), ("measureId", "nope")], "Measure/nope"),
    ([("periodStart", "2026-01-01"), ("status", "open-gap"), ("subject", "Patient/gap")], "periodEnd"),
    ([*PERIOD, ("status", "open-gap"), ("subject", "Patient/gap"), ("measureUrl", "http://x.org/m")],
     "measureUrl"),
])
async def test_refusals(world: FastAPI, client: httpx.AsyncClient, params: list, name: str) -> None:
    answer = await client.get("Measure/$care-gaps", params=params)
    assert answer.status_code in (400, 404), answer.text
    issue = answer.json()["issue"][0]
    assert name in str(issue.get("expression")) + issue.get("diagnostics", "")


async def test_a_panel_larger_than_a_batch_is_streamed_whole(app: FastAPI, client: httpx.AsyncClient) -> None:
    """More patients than one evaluation batch: the answer is sent as it is made (no Content-Length), and
    holds every patient's document, in the panel's order; the same call as a batch entry is read whole."""
    ids = [f"p{n:03}" for n in range(BATCH * 2 + 15)]
    expected = {id_: "open-gap" if n % 3 == 0 else "closed-gap" for n, id_ in enumerate(ids)}
    resources = [r for n, id_ in enumerate(ids) for r in patient(id_, 10.0 if n % 3 == 0 else 6.0)]
    await seed(app, [*content(), *resources, {"resourceType": "Group", "id": "panel", "type": "person",
                                              "actual": True,
                                              "member": [{"entity": {"reference": f"Patient/{p}"}} for p in ids]}])
    params = [*PERIOD, *ALL, ("subject", "Group/panel")]
    answer = await client.get("Measure/$care-gaps", params=params)
    assert "content-length" not in answer.headers
    found = by_patient(answer)
    assert found == expected and list(found) == ids
    entry_url = "Measure/$care-gaps?" + "&".join(f"{k}={v}" for k, v in params)
    batch = await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": entry_url}}]})
    [entry] = batch.json()["entry"]
    assert entry["response"]["status"].startswith("200")
    assert len(entry["resource"]["parameter"]) == len(ids)
