"""`Patient/[id]/$link-decision`: a data steward joins two records the server only proposed, or parts two
it had joined; the Persons follow, the review Task is completed, and the decision sticks when the records
are written again (docs/identity.md)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from fhirlead.operations import identity_links
from tests.operations.test_identity_links import linked, person_of, reviews
from tests.operations.test_match import HOSPITAL, LAB, PRIMARY


def decision(other: str, same: bool, reason: str | None = None) -> dict:
    parameters = [{"name": "other", "valueReference": {"reference": other}}, {"name": "same", "valueBoolean": same}]
    if reason:
        parameters.append({"name": "reason", "valueString": reason})
    return {"resourceType": "Parameters", "parameter": parameters}


async def test_joining_two_records_the_server_only_proposed(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
    first = await person_of(client, "pc-8812")
    assert (await client.put("Patient/lab-00451", json=LAB)).status_code == 201  # probable: married name
    apart = await person_of(client, "lab-00451")
    [task] = await reviews(client, "lab-00451")
    answer = await client.post("Patient/lab-00451/$link-decision",
                               json=decision("Patient/pc-8812", True, "married in 2019, same MBI on her card"))
    assert answer.status_code == 200, answer.text
    [person] = [e["resource"] for e in answer.json()["entry"]]
    assert person["id"] == first["id"]
    assert linked(person) == {"Patient/pc-8812": "level4", "Patient/lab-00451": "level4"}
    merged = (await client.get(f"Person/{apart['id']}")).json()
    assert merged["active"] is False and linked(merged) == {f"Person/{first['id']}": "level4"}
    done = (await client.get(f"Task/{task['id']}")).json()
    assert done["status"] == "completed" and done["businessStatus"]["text"] == "same person"
    assert done["statusReason"]["text"].startswith("married")
    # written again, the record stays where the steward put it, and no review is proposed again
    assert (await client.put("Patient/lab-00451", json={**LAB, "active": True})).status_code == 200
    await identity_links.link(app.state.server, "lab-00451")
    assert (await person_of(client, "lab-00451"))["id"] == first["id"]
    assert [t["status"] for t in await reviews(client, "lab-00451")] == ["completed"]


async def test_parting_two_records_the_server_had_joined(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
    first = await person_of(client, "pc-8812")
    assert (await client.put("Patient/a-77", json=HOSPITAL)).status_code == 201  # certain: joined
    assert (await person_of(client, "a-77"))["id"] == first["id"]
    answer = await client.post("Patient/a-77/$link-decision", json=decision("Patient/pc-8812", False))
    assert answer.status_code == 200, answer.text
    persons = {p["id"]: linked(p) for p in (e["resource"] for e in answer.json()["entry"])}
    assert persons[first["id"]] == {"Patient/pc-8812": "level3"}
    [alone] = [links for id_, links in persons.items() if id_ != first["id"]]
    assert alone == {"Patient/a-77": "level4"}
    # the decision sticks: written again, a-77 is neither joined back nor proposed for review
    assert (await client.put("Patient/a-77", json={**HOSPITAL, "active": True})).status_code == 200
    await identity_links.link(app.state.server, "a-77")
    assert (await person_of(client, "a-77"))["id"] != first["id"]
    assert await reviews(client, "a-77") == []


async def test_refusals(client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
    for body, status, expression in (
        (decision("Patient/pc-8812", True), 400, "other"),  # itself
        (decision("Observation/x", True), 400, "other"),
        ({"resourceType": "Parameters", "parameter": [{"name": "other",
                                                       "valueReference": {"reference": "Patient/a-77"}}]}, 400, "same"),
        (decision("Patient/nobody", True), 404, "Patient/nobody"),
    ):
        answer = await client.post("Patient/pc-8812/$link-decision", json=body)
        assert answer.status_code == status, answer.text
        assert expression in str(answer.json()["issue"])
    assert (await client.get("Patient/pc-8812/$link-decision", params={"same": "true"})).status_code == 405
