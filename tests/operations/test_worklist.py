"""`CareTeam/[id]/$worklist` and `CareTeam/$worklist` (operations/worklist.py, docs/worklist.md): a team's open
Tasks for its patient, owned by the team, a member (a role counting as its practitioner) or nobody, due first,
then priority, then the patient's risk; care-gap Tasks among them; the Patient included; scopes respected."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.auth.tokens import Authorization
from fhirlead.operations import gap_tasks
from tests.auth.flow import FHIR, seed
from tests.operations.gap_measure import content, patient
from tests.tokens import bearer

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
CAREGAP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP"}


def task(id_: str, patient_id: str, status: str = "requested", owner: str | None = None, due: str | None = None,
         priority: str | None = None, authored: str = "2026-01-02") -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Task", "id": id_, "status": status, "intent": "order",
                            "for": {"reference": f"Patient/{patient_id}"}, "authoredOn": authored,
                            "description": f"task {id_}"}
    if owner:
        body["owner"] = {"reference": owner}
    if due:
        body["restriction"] = {"period": {"start": "2026-01-01", "end": due}}
    if priority:
        body["priority"] = priority
    return body


def team(id_: str, patient_id: str, *members: str, status: str = "active") -> dict[str, Any]:
    return {"resourceType": "CareTeam", "id": id_, "status": status, "subject": {"reference": f"Patient/{patient_id}"},
            "participant": [{"member": {"reference": m}} for m in members]}


def risk(id_: str, patient_id: str, probability: float, when: str, status: str = "final") -> dict[str, Any]:
    return {"resourceType": "RiskAssessment", "id": id_, "status": status, "occurrenceDateTime": when,
            "subject": {"reference": f"Patient/{patient_id}"}, "prediction": [{"probabilityDecimal": probability}]}


ROSA_ORDER = ["r-urgent", "r-late", "r-stat", "r-time", "r-tie", "GAP", "r-undated"]


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient) -> FastAPI:
    await seed(app, [
        *content(),
        {"resourceType": "Practitioner", "id": "nav"}, {"resourceType": "Practitioner", "id": "dr-gp"},
        {"resourceType": "Practitioner", "id": "dr-other"},
        {"resourceType": "PractitionerRole", "id": "role-nav", "active": True,
         "practitioner": {"reference": "Practitioner/nav"}},
        *patient("rosa", 10.2), *patient("walt", 6.0),
        team("team-rosa", "rosa", "PractitionerRole/role-nav", "Practitioner/dr-gp"),
        team("team-walt", "walt", "Practitioner/nav"),
        team("team-old", "walt", "Practitioner/dr-other", status="inactive"),
        task("r-late", "rosa", owner="Practitioner/nav", due="2026-03-01", priority="routine"),  # via role-nav
        task("r-urgent", "rosa", owner="CareTeam/team-rosa", due="2026-03-01", priority="urgent"),
        task("r-stat", "rosa", due="2026-06-01", priority="stat"),  # no owner: the team's
        task("r-time", "rosa", status="in-progress", owner="PractitionerRole/role-nav", due="2026-06-01T09:00:00Z"),
        task("r-tie", "rosa", status="on-hold", owner="Practitioner/dr-gp", due="2026-09-01"),
        task("r-undated", "rosa", status="accepted", owner="Practitioner/dr-gp"),
        task("r-done", "rosa", status="completed", owner="Practitioner/nav", due="2026-02-01"),
        task("r-cancelled", "rosa", status="cancelled", due="2026-02-01"),
        task("r-draft", "rosa", status="draft", due="2026-02-01"),
        task("r-stranger", "rosa", owner="Practitioner/dr-other", due="2026-02-01"),
        task("w-first", "walt", owner="Practitioner/nav", due="2026-01-15"),
        task("w-tie", "walt", owner="CareTeam/team-walt", due="2026-09-01"),
        task("w-old-team", "walt", owner="CareTeam/team-old", due="2026-01-10"),
        risk("rosa-risk-old", "rosa", 0.9, "2025-01-01"), risk("rosa-risk", "rosa", 0.3, "2026-02-01"),
        risk("walt-risk", "walt", 0.8, "2026-02-01"),
        risk("walt-risk-draft", "walt", 0.01, "2026-03-01", "preliminary"),
        {"resourceType": "Group", "id": "atr", "type": "person", "actual": True,
         "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "final"}],
         "member": [{"entity": {"reference": "Patient/walt"},
                     "extension": [{"url": ATR + "ext-attributedProvider",
                                    "valueReference": {"reference": "Practitioner/dr-gp"}}]}]},
    ])
    gaps = await client.post("Measure/$care-gaps", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
        {"name": "subject", "valueString": "Patient/rosa"}, {"name": "status", "valueCode": "open-gap"},
        {"name": "recordTasks", "valueBoolean": True}]})
    assert gaps.status_code == 200, gaps.text
    return app


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def named(bundle: dict[str, Any]) -> list[str]:
    """Task ids in order, the care-gap Task shown as GAP."""
    return ["GAP" if e["resource"]["id"].startswith("gap-") else e["resource"]["id"]
            for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def user_client(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR,
                             headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})


async def test_a_teams_open_tasks_in_due_then_priority_order_with_the_patient(
        world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.get("CareTeam/team-rosa/$worklist")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    assert named(body) == ROSA_ORDER
    assert body["total"] == len(ROSA_ORDER)
    [included] = [e for e in body["entry"] if e["search"]["mode"] == "include"]
    assert included["resource"]["resourceType"] == "Patient" and included["resource"]["id"] == "rosa"
    assert included["fullUrl"] == f"{FHIR}/Patient/rosa"
    gap = next(e["resource"] for e in body["entry"] if e["resource"]["id"].startswith("gap-"))
    assert gap["code"]["coding"][0]["code"] == "CAREGAP" and gap["owner"] == {"reference": "CareTeam/team-rosa"}
    assert gap["identifier"][0]["system"] == gap_tasks.GAP_SYSTEM
    assert body["link"][0] == {"relation": "self", "url": f"{FHIR}/CareTeam/team-rosa/$worklist"}

    posted = await client.post("CareTeam/team-rosa/$worklist", json={"resourceType": "Parameters"})
    assert posted.status_code == 200 and named(posted.json()) == ROSA_ORDER


async def test_closing_a_task_takes_it_off_the_worklist(world: FastAPI, client: httpx.AsyncClient) -> None:
    current = await client.get("Task/r-urgent")
    done = {**current.json(), "status": "completed"}
    updated = await client.put("Task/r-urgent", json=done, headers={"If-Match": current.headers["ETag"]})
    assert updated.status_code == 200, updated.text
    assert named((await client.get("CareTeam/team-rosa/$worklist")).json()) == ROSA_ORDER[1:]


async def test_every_team_of_a_participant_ordered_by_due_date_then_patient_risk(
        world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.get("CareTeam/$worklist", params={"participant": "Practitioner/nav"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # w-first is due first; on 2026-09-01 Walt's task comes before Rosa's: his latest risk (0.8) is above hers
    # (0.3; her older 0.9 and his preliminary one do not count); the inactive team's Task is not there
    assert named(body) == ["w-first", *ROSA_ORDER[:4], "w-tie", *ROSA_ORDER[4:]]
    assert sorted(ids(body, "include")) == ["rosa", "walt"]
    by_role = await client.get("CareTeam/$worklist", params={"participant": "PractitionerRole/role-nav"})
    assert named(by_role.json()) == ROSA_ORDER  # the role is on Rosa's team only
    other = await client.get("CareTeam/$worklist", params={"participant": "Practitioner/dr-other"})
    assert other.status_code == 200 and named(other.json()) == []  # only on an inactive team


async def test_attributed_to_keeps_the_patients_attributed_to_a_provider(
        world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.get("CareTeam/$worklist", params={"participant": "Practitioner/nav",
                                                            "attributedTo": "Practitioner/dr-gp"})
    assert answer.status_code == 200, answer.text
    assert named(answer.json()) == ["w-first", "w-tie"] and ids(answer.json(), "include") == ["walt"]
    posted = await client.post("CareTeam/team-rosa/$worklist", json={"resourceType": "Parameters", "parameter": [
        {"name": "attributedTo", "valueReference": {"reference": "Practitioner/dr-gp"}}]})
    assert posted.status_code == 200 and named(posted.json()) == []


async def test_the_signed_in_practitioner_gets_their_teams_within_their_care(world: FastAPI) -> None:
    token = await world.state.server.auth.tokens.access_token(
        Authorization("app", "user/CareTeam.rs user/Task.rs user/Patient.rs", "nav", fhir_user="Practitioner/nav"),
        FHIR, FHIR)
    async with user_client(world, token) as http:
        mine = await http.get("CareTeam/$worklist")
        assert mine.status_code == 200, mine.text
        assert named(mine.json())[0] == "w-first" and len(named(mine.json())) == len(ROSA_ORDER) + 2
        assert sorted(ids(mine.json(), "include")) == ["rosa", "walt"]
        # without RiskAssessment access no risk is read: the two Tasks due on 2026-09-01 (same priority, same
        # authoredOn) fall back to their ids
        assert named(mine.json()).index("r-tie") < named(mine.json()).index("w-tie")


async def test_a_practitioner_reaches_only_the_teams_of_patients_in_their_care(world: FastAPI) -> None:
    token = await world.state.server.auth.tokens.access_token(
        Authorization("app", "user/CareTeam.rs user/Task.rs user/Patient.rs", "other",
                      fhir_user="Practitioner/dr-other"), FHIR, FHIR)
    async with user_client(world, token) as http:
        assert (await http.get("CareTeam/team-rosa/$worklist")).status_code == 404  # not in their care
        mine = await http.get("CareTeam/$worklist")  # on an inactive team only: no care relationship, no teams
        assert mine.status_code == 200 and named(mine.json()) == []


async def test_patient_scopes_reach_only_that_patient_s_tasks(world: FastAPI) -> None:
    # a patient's token reaches the Tasks for that patient (docs/security.md "Tasks count as the patient's"):
    # their own team's worklist holds those and nothing about anyone else
    token = await world.state.server.auth.tokens.access_token(
        Authorization("app", "patient/CareTeam.rs patient/Task.rs patient/Patient.rs", "rosa-app", patient="rosa"),
        FHIR, FHIR)
    async with user_client(world, token) as http:
        answer = await http.get("CareTeam/team-rosa/$worklist")
        assert answer.status_code == 200, answer.text
        entries = answer.json().get("entry", [])
        tasks = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Task"]
        assert tasks and all(t["for"]["reference"] == "Patient/rosa" for t in tasks)
        assert {e["resource"]["id"] for e in entries if e["resource"]["resourceType"] == "Patient"} <= {"rosa"}
        searched = (await http.get("Task", params={"_count": "100"})).json().get("entry", [])
        assert searched and all(e["resource"]["for"]["reference"] == "Patient/rosa" for e in searched)


async def test_a_token_without_task_access_is_refused(world: FastAPI) -> None:
    headers = await bearer(world, scope="system/CareTeam.rs system/Patient.rs")
    async with user_client(world, headers["Authorization"].split()[1]) as http:
        refused = await http.get("CareTeam/team-rosa/$worklist")
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert "Task" in refused.json()["issue"][0]["diagnostics"]


async def test_an_unknown_team_is_404(world: FastAPI, client: httpx.AsyncClient) -> None:
    answer = await client.get("CareTeam/nope/$worklist")
    assert answer.status_code == 404 and answer.json()["resourceType"] == "OperationOutcome"
    unknown = await client.get("CareTeam/$worklist", params={"participant": "Practitioner/nobody"})
    assert unknown.status_code == 404
    assert (await client.get("CareTeam/$worklist", params={"participant": "Practitioner/nav",
                                                           "attributedTo": "Practitioner/nobody"})).status_code == 404


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("CareTeam/team-rosa/$worklist", {"colour": "blue"}, "colour"),
    ("CareTeam/team-rosa/$worklist", {"participant": "Practitioner/nav"}, "participant"),
    ("CareTeam/team-rosa/$worklist", {"attributedTo": "Patient/rosa"}, "attributedTo"),
    ("CareTeam/team-rosa/$worklist", {"attributedTo": "not a reference"}, "attributedTo"),
    ("CareTeam/$worklist", {"participant": "Observation/x"}, "participant"),
    ("CareTeam/$worklist", {}, "participant"),  # a system token names no user
    ("CareTeam/$worklist", [("participant", "Practitioner/nav"), ("participant", "Practitioner/dr-gp")],
     "participant"),
])
async def test_bad_parameters_are_400_naming_them(world: FastAPI, client: httpx.AsyncClient, path: str,
                                                 params: Any, parameter: str) -> None:
    answer = await client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert parameter in issue.get("expression", []) or parameter in issue.get("diagnostics", ""), issue


async def test_a_team_without_a_patient_is_422(world: FastAPI, client: httpx.AsyncClient) -> None:
    await seed(world, [{"resourceType": "CareTeam", "id": "no-patient", "status": "active"}])
    answer = await client.get("CareTeam/no-patient/$worklist")
    assert answer.status_code == 422 and answer.json()["issue"][0]["code"] == "business-rule"


async def test_due_search_parameter_finds_and_sorts_tasks_by_due_date(world: FastAPI,
                                                                     client: httpx.AsyncClient) -> None:
    answer = await client.get("Task", params={"due": "lt2026-06-02", "owner": "Practitioner/nav",
                                              "status": "requested", "_sort": "due", "_include": "Task:patient"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "match"] == ["w-first", "r-late"]
    assert sorted(e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "include") == ["rosa", "walt"]
    everything = await client.get("Task", params={"patient": "Patient/rosa", "_sort": "-due", "_count": 100})
    order = ["GAP" if i.startswith("gap-") else i for i in ids(everything.json())]
    assert order.index("GAP") < order.index("r-tie") < order.index("r-late")  # 2026-12-31, 09-01, 03-01
    assert order[-1] == "r-undated"  # no due date: last either way
