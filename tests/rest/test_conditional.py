"""Conditional create (If-None-Exist), conditional update, delete and patch (?criteria URLs)."""

from __future__ import annotations

import httpx

from tests.rest.helpers import FHIR_JSON, create, issue_codes, patient, put

MRN = "urn:example:mrn"


def with_mrn(value: str, family: str = "Garcia", **extra: object) -> dict:
    return patient(family, identifier=[{"system": MRN, "value": value}], **extra)


async def test_if_none_exist_creates_once_then_returns_the_match(client: httpx.AsyncClient) -> None:
    first = await create(client, with_mrn("1"), **{"If-None-Exist": f"identifier={MRN}|1"})
    assert first.status_code == 201
    again = await create(client, with_mrn("1", "Other"), **{"If-None-Exist": f"identifier={MRN}|1"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["name"][0]["family"] == "Garcia"
    await create(client, with_mrn("1"))  # a second match, made without the condition
    several = await create(client, with_mrn("1"), **{"If-None-Exist": f"identifier={MRN}|1"})
    assert several.status_code == 412 and issue_codes(several) == ["multiple-matches"]


async def test_conditional_criteria_with_an_unknown_parameter_are_refused(client: httpx.AsyncClient) -> None:
    response = await create(client, with_mrn("2"), **{"If-None-Exist": "no-such-param=1"})
    assert response.status_code == 400
    assert (await client.get("Patient?identifier=urn:example:mrn|2")).json().get("total", 0) == 0


async def test_conditional_update_creates_updates_or_refuses(client: httpx.AsyncClient) -> None:
    url = f"Patient?identifier={MRN}|3"
    headers = {"Content-Type": FHIR_JSON}
    created = await client.put(url, json=with_mrn("3"), headers=headers)
    assert created.status_code == 201 and "location" in {k.lower() for k in created.headers}
    updated = await client.put(url, json=with_mrn("3", "Updated"), headers=headers)
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    assert updated.headers["etag"] == 'W/"2"'
    wrong_id = await client.put(url, json=with_mrn("3", id="not-the-match"), headers=headers)
    assert wrong_id.status_code == 400
    await put(client, with_mrn("3", id="another"))
    several = await client.put(url, json=with_mrn("3"), headers=headers)
    assert several.status_code == 412


async def test_conditional_delete_and_patch(client: httpx.AsyncClient) -> None:
    await put(client, with_mrn("4", id="four"))
    patched = await client.patch(f"Patient?identifier={MRN}|4", json=[{"op": "replace", "path": "/gender",
                                                                        "value": "other"}],
                                 headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200 and patched.json()["gender"] == "other"
    none = await client.patch(f"Patient?identifier={MRN}|nobody", json=[],
                              headers={"Content-Type": "application/json-patch+json"})
    assert none.status_code == 404
    deleted = await client.delete(f"Patient?identifier={MRN}|4")
    assert deleted.status_code == 200
    assert (await client.get("Patient/four")).status_code == 410
    nothing = await client.delete(f"Patient?identifier={MRN}|4")
    assert nothing.status_code == 200
    await put(client, with_mrn("5", id="a"))
    await put(client, with_mrn("5", id="b"))
    assert (await client.delete(f"Patient?identifier={MRN}|5")).status_code == 412
    assert (await client.get("Patient/a")).status_code == 200 and (await client.get("Patient/b")).status_code == 200
