"""`$evaluate-measure` over HTTP with a measure written for the tests (tests/operations/gap_measure.py):
report types, who the patients are (subject, Group, practitioner through ATR lists or generalPractitioner),
every refusal, a cached measure rebuilt when its content changes, and the caller's access respected."""

from __future__ import annotations

import base64
import copy

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.auth.tokens import Authorization
from tests.auth.flow import FHIR, seed
from tests.operations.gap_measure import ELM, HBA1C, LOINC, MEASURE_URL, content, patient

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
PERIOD = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}
EVALUATE = "Measure/gap-test/$evaluate-measure"


def counts(report: dict) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def attributed(patient_id: str, provider: str, **extra: object) -> dict:
    return {"extension": [{"url": ATR + "ext-attributedProvider", "valueReference": {"reference": provider}}],
            "entity": {"reference": f"Patient/{patient_id}"}, **extra}


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    gp = {"generalPractitioner": [{"reference": "Practitioner/dr-gp"}]}
    await seed(app, [*content(), {"resourceType": "Practitioner", "id": "dr-gp"},
                     {"resourceType": "Practitioner", "id": "dr-atr"},
                     *patient("gap", 10.2, **gp), *patient("controlled", 6.9, **gp), *patient("untested"),
                     *patient("no-visit", 12.0, encounter=False),
                     {"resourceType": "Group", "id": "list", "type": "person", "actual": True,
                      "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "final"}],
                      "member": [attributed("gap", "Practitioner/dr-atr"),
                                 attributed("untested", "Practitioner/dr-atr"),
                                 attributed("controlled", "Practitioner/dr-atr",
                                            period={"start": "2025-01-01", "end": "2025-12-31"})]}])
    return app


async def test_an_individual_report_per_patient(world: FastAPI, client: httpx.AsyncClient) -> None:
    expected = {"gap": (1, 1, 1), "controlled": (1, 1, 0), "untested": (1, 1, 0), "no-visit": (0, 0, 0)}
    for id_, (ip, denominator, numerator) in expected.items():
        answer = await client.get(EVALUATE, params={**PERIOD, "subject": f"Patient/{id_}"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["resourceType"] == "MeasureReport" and report["type"] == "individual"
        assert report["measure"] == MEASURE_URL + "|1.0.0" and report["period"] == {"start": "2026-01-01",
                                                                                      "end": "2026-12-31"}
        assert counts(report) == {"initial-population": ip, "denominator": denominator, "numerator": numerator}
        evaluated = {r["reference"] for r in report["evaluatedResource"]}
        assert f"Patient/{id_}" in evaluated and f"Observation/{id_}-bp" not in evaluated
        if numerator:
            assert f"Observation/{id_}-a1c" in evaluated


async def test_population_and_subject_list_reports(world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.post("Measure/$evaluate-measure", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
        {"name": "measure", "valueString": MEASURE_URL}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "summary"
    assert counts(answer.json()) == {"initial-population": 3, "denominator": 3, "numerator": 1}
    listed = (await client.get(EVALUATE, params={**PERIOD, "reportType": "subject-list"})).json()
    lists = {item["id"]: item for item in listed["contained"] if item["resourceType"] == "List"}
    by_code = {}
    for population in listed["group"][0]["population"]:
        members = lists[population["subjectResults"]["reference"][1:]]["entry"]
        by_code[population["code"]["coding"][0]["code"]] = {e["item"]["reference"] for e in members}
    assert by_code["numerator"] == {"Patient/gap"}
    assert by_code["denominator"] == {"Patient/gap", "Patient/controlled", "Patient/untested"}


async def test_practitioner_group_and_attribution(world: FastAPI, client: httpx.AsyncClient) -> None:
    by_gp = await client.get(EVALUATE, params={**PERIOD, "practitioner": "Practitioner/dr-gp"})
    assert counts(by_gp.json()) == {"initial-population": 2, "denominator": 2, "numerator": 1}
    # attributed on a final list: "controlled" was attributed in 2025 only
    by_list = await client.get(EVALUATE, params={**PERIOD, "subject": "Practitioner/dr-atr"})
    assert counts(by_list.json()) == {"initial-population": 2, "denominator": 2, "numerator": 1}
    group = await client.get(EVALUATE, params={**PERIOD, "subject": "Group/list"})
    assert counts(group.json()) == {"initial-population": 2, "denominator": 2, "numerator": 1}
    in_2025 = await client.get(EVALUATE, params={"periodStart": "2025-01-01", "periodEnd": "2025-12-31",
                                                 "subject": "Group/list"})
    assert counts(in_2025.json())["denominator"] == 3  # "controlled" was a member in 2025 (the logic ignores dates)


@pytest.mark.parametrize(("params", "status", "names"), [
    ({"periodEnd": "2026-12-31"}, 400, "periodStart"),
    ({**PERIOD, "periodStart": "2026-13-45"}, 400, "periodStart"),
    ({**PERIOD, "periodStart": "2027-01-01"}, 400, "periodStart"),
    ({**PERIOD, "subject": "Observation/gap-bp"}, 400, "subject"),
    ({**PERIOD, "subject": "Patient/nobody"}, 404, "subject"),
    ({**PERIOD, "subject": "Group/list", "reportType": "subject"}, 400, "reportType"),
    ({**PERIOD, "reportType": "everything"}, 400, "reportType"),
    ({**PERIOD, "colour": "blue"}, 400, "colour"),
    ({**PERIOD, "subject": "Patient/gap", "practitioner": "Practitioner/dr-gp"}, 400, "practitioner"),
])
async def test_refusals_name_the_parameter(world: FastAPI, client: httpx.AsyncClient, params: dict, status: int,
                                          names: str) -> None:
    answer = await client.get(EVALUATE, params=params)
    assert answer.status_code == status, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert names in str(outcome["issue"][0].get("expression")) + outcome["issue"][0].get("diagnostics", "")


async def test_unknown_measures(world: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("Measure/nope/$evaluate-measure", params=PERIOD)).status_code == 404
    unknown = await client.get("Measure/$evaluate-measure", params={**PERIOD, "measure": "http://example.org/x"})
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["expression"] == ["measure"]
    assert (await client.get("Measure/$evaluate-measure", params=PERIOD)).status_code == 400


async def test_a_changed_value_set_takes_effect_at_once(world: FastAPI, client: httpx.AsyncClient) -> None:
    before = await client.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
    assert counts(before.json())["numerator"] == 1
    valueset = next(r for r in content() if r["resourceType"] == "ValueSet")
    valueset["expansion"]["contains"] = [c for c in valueset["expansion"]["contains"] if c["code"] != HBA1C]
    assert (await client.put("ValueSet/hba1c", json=valueset)).status_code == 200
    after = await client.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
    assert counts(after.json())["numerator"] == 0
    valueset["expansion"]["contains"].append({"system": LOINC, "code": HBA1C})
    assert (await client.put("ValueSet/hba1c", json=valueset)).status_code == 200
    assert counts((await client.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})).json())["numerator"] == 1


async def token_client(app: FastAPI, scope: str, **context: object) -> httpx.AsyncClient:
    token = await app.state.server.auth.tokens.access_token(Authorization("app", scope, "someone", **context),
                                                            FHIR, FHIR)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR,
                             headers={"Authorization": f"Bearer {token}"})


async def test_the_evaluation_sees_only_what_the_caller_may_read(world: FastAPI) -> None:
    async with await token_client(world, "patient/*.rs", patient="controlled") as fhir:
        own = await fhir.get(EVALUATE, params={**PERIOD, "subject": "Patient/controlled"})
        assert own.status_code == 200 and counts(own.json())["denominator"] == 1
        other = await fhir.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
        assert other.status_code == 404
        everyone = await fhir.get(EVALUATE, params=PERIOD)
        assert counts(everyone.json()) == {"initial-population": 1, "denominator": 1, "numerator": 0}
    async with await token_client(world, "system/Patient.rs system/Measure.rs") as fhir:
        blind = await fhir.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
        assert blind.status_code == 200 and counts(blind.json())["initial-population"] == 0  # no Encounters
    async with await token_client(world, "system/Patient.rs") as fhir:
        assert (await fhir.get(EVALUATE, params=PERIOD)).status_code == 403


def broken_library(elm: dict) -> dict:
    library = next(r for r in content() if r["resourceType"] == "Library")
    return {**library, "content": [{"contentType": "application/elm+json",
                                    "data": base64.b64encode(orjson.dumps(elm)).decode()}]}


async def test_measure_content_the_engine_cannot_use_is_a_422(world: FastAPI, client: httpx.AsyncClient) -> None:
    unknown_node = copy.deepcopy(ELM)
    unknown_node["library"]["statements"]["def"][1]["expression"] = {"type": "Teleport", "locator": "12:3-12:9"}
    for library, words in [
        (broken_library(unknown_node), ["Teleport", "12:3"]),
        ({**broken_library(ELM), "content": [{"contentType": "text/cql", "data": "bGlicmFyeQ=="}]}, ["ELM"]),
        (broken_library({"library": {"identifier": {"id": "GapTest", "version": "1.0.0"},
                                     "statements": {"def": "not a list"}}}), ["Measure/gap-test"]),
    ]:
        assert (await client.put("Library/gap-test-library", json=library)).status_code == 200
        answer = await client.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
        assert answer.status_code == 422, answer.text
        diagnostics = answer.json()["issue"][0]["diagnostics"]
        assert all(word in diagnostics for word in words), diagnostics
    assert (await client.delete("Library/gap-test-library")).status_code in (200, 204)
    missing = await client.get(EVALUATE, params={**PERIOD, "subject": "Patient/gap"})
    assert missing.status_code == 422 and "Library" in missing.json()["issue"][0]["diagnostics"]


async def test_an_organizations_patients(world: FastAPI, client: httpx.AsyncClient) -> None:
    """No final list names the organization or its roles: its patients are those it (or a role) is the
    general practitioner of; once a final list attributes a patient to its role, the list decides."""
    await seed(world, [{"resourceType": "Organization", "id": "clinic", "name": "Clinic"},
                       {"resourceType": "PractitionerRole", "id": "role", "active": True,
                        "organization": {"reference": "Organization/clinic"}},
                       *patient("by-org", 10.5, generalPractitioner=[{"reference": "Organization/clinic"}]),
                       *patient("by-role", 5.0, generalPractitioner=[{"reference": "PractitionerRole/role"}])])
    answer = await client.get(EVALUATE, params={**PERIOD, "subject": "Organization/clinic"})
    assert counts(answer.json()) == {"initial-population": 2, "denominator": 2, "numerator": 1}
    await seed(world, [{"resourceType": "Group", "id": "clinic-list", "type": "person", "actual": True,
                        "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "final"}],
                        "member": [attributed("gap", "PractitionerRole/role")]}])
    answer = await client.get(EVALUATE, params={**PERIOD, "subject": "Organization/clinic",
                                                "reportType": "subject-list"})
    lists = [c for c in answer.json()["contained"] if c["resourceType"] == "List"]
    assert {e["item"]["reference"] for e in lists[0]["entry"]} == {"Patient/gap"}
