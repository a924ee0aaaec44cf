"""The kick-off parameters that narrow or reshape an export (Bulk Data 2.0.0 §"Query Parameters",
https://hl7.org/fhir/uv/bulkdata/STU2/export.html): `_typeFilter`, `patient`, `_elements`,
`includeAssociatedData`; their effect on the files, their refusals, and a resumed job that keeps them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.bulk import STATUS, run
from fhirlead.subsetting import SUBSETTED
from tests.bulk.conftest import ASYNC, files, finished, kick_off, lines
from tests.bulk.data import load, observation, stored

LENIENT = {"Prefer": "respond-async, handling=lenient"}


def ids(found: dict[str, list[bytes]], type_: str) -> list[str]:
    return sorted(orjson.loads(line)["id"] for line in found.get(type_, []))


async def export(client: httpx.AsyncClient, path: str = "$export", params: Any = None) -> dict[str, list[bytes]]:
    answer = await client.get(path, params=params, headers=ASYNC)
    assert answer.status_code == 202, answer.text
    return await files(client, await finished(client, answer.headers["Content-Location"]))


async def post(client: httpx.AsyncClient, path: str, parameters: list[dict[str, Any]],
               headers: dict[str, str] = ASYNC) -> httpx.Response:
    return await client.post(path, json={"resourceType": "Parameters", "parameter": parameters}, headers=headers)


async def refused(client: httpx.AsyncClient, params: Any, path: str = "$export") -> str:
    answer = await client.get(path, params=params, headers=ASYNC)
    assert answer.status_code == 400, (params, answer.text)
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]["diagnostics"]


async def warnings(client: httpx.AsyncClient, manifest: dict[str, Any]) -> str:
    assert [entry["type"] for entry in manifest["error"]] == ["OperationOutcome"]
    outcome = orjson.loads((await lines(client, manifest["error"][0]["url"]))[0])
    return " ".join(issue["diagnostics"] for issue in outcome["issue"])


# -- _typeFilter -------------------------------------------------------------------------------------------

async def test_type_filter_narrows_its_type_only(client: httpx.AsyncClient) -> None:
    await load(client)
    found = await export(client, params={"_type": "Observation,Condition",
                                         "_typeFilter": "Observation?subject=Patient/ann"})
    assert ids(found, "Observation") == ["o1", "o2"]
    assert ids(found, "Condition") == ["c1"]  # no filter for Condition: all of them
    for line in found["Observation"]:  # still the stored bytes
        assert line == await stored(client, "Observation", orjson.loads(line)["id"])


async def test_type_filters_are_ored(client: httpx.AsyncClient) -> None:
    await load(client)
    repeated = [("_type", "Observation"), ("_typeFilter", "Observation?subject=Patient/ann"),
                ("_typeFilter", "Observation?subject=Patient/cy")]
    assert ids(await export(client, params=repeated), "Observation") == ["o1", "o2", "o4"]
    joined = {"_type": "Observation", "_typeFilter": "Observation?subject=Patient/ann,Observation?subject=Patient/cy"}
    assert ids(await export(client, params=joined), "Observation") == ["o1", "o2", "o4"]
    encoded = {"_type": "Observation",  # the spec's example form: each query URL-encoded, then joined
               "_typeFilter": "Observation%3Fsubject%3DPatient%2Fbob,Observation%3Fsubject%3DPatient%2Fcy"}
    assert ids(await export(client, params=encoded), "Observation") == ["o3", "o4"]
    search_or = {"_type": "Observation", "_typeFilter": "Observation?subject=Patient/ann,Patient/bob"}
    assert ids(await export(client, params=search_or), "Observation") == ["o1", "o2", "o3"]


async def test_type_filter_kinds_of_parameter(client: httpx.AsyncClient) -> None:
    await load(client)
    await load(client, [observation("o5", "ann", value=9.9)])
    quantity = {"_type": "Observation", "_typeFilter": "Observation?value-quantity=gt7"}
    assert ids(await export(client, params=quantity), "Observation") == ["o5"]
    anded = {"_type": "Observation", "_typeFilter": "Observation?subject=Patient/ann&value-quantity=lt7"}
    assert ids(await export(client, params=anded), "Observation") == ["o1", "o2"]
    chained = {"_type": "Observation", "_typeFilter": "Observation?subject:Patient.name=Bob"}  # asked of the store
    assert ids(await export(client, params=chained), "Observation") == ["o3"]
    negated = {"_type": "Observation", "_typeFilter": "Observation?status:not=final"}
    assert ids(await export(client, params=negated), "Observation") == []


async def test_type_filter_type_outside_the_export_is_ignored(client: httpx.AsyncClient) -> None:
    await load(client)
    found = await export(client, params={"_type": "Condition", "_typeFilter": "Observation?subject=Patient/ann"})
    assert set(found) == {"Condition"}


async def test_type_filter_at_patient_and_group_level(client: httpx.AsyncClient) -> None:
    await load(client)
    found = await export(client, "Group/panel/$export",
                         {"_type": "Patient,Observation", "_typeFilter": "Patient?family=Bob"})
    assert ids(found, "Patient") == ["bob"] and ids(found, "Observation") == ["o1", "o2", "o3"]


async def test_type_filter_refusals(client: httpx.AsyncClient) -> None:
    await load(client)
    assert "nonsense" in await refused(client, {"_typeFilter": "Observation?nonsense=1"})
    assert "value-quantity" in await refused(client, {"_typeFilter": "Observation?value-quantity=abc"})
    assert "_sort" in await refused(client, {"_typeFilter": "Observation?_sort=date"})
    assert "_include" in await refused(client, {"_typeFilter": "Observation?_include=Observation:subject"})
    for bad in ("Nonsense?x=1", "Observation", "Observation?", "?status=final"):
        assert "_typeFilter" in await refused(client, {"_typeFilter": bad})
    answer = await client.get("$export", params={"_type": "Observation", "_typeFilter": "Observation?nonsense=1"},
                              headers=LENIENT)
    assert answer.status_code == 202
    manifest = await finished(client, answer.headers["Content-Location"])
    assert "nonsense" in await warnings(client, manifest)
    assert ids(await files(client, manifest), "Observation") == ["o1", "o2", "o3", "o4"]  # that filter dropped


async def test_type_filter_judges_the_version_at_transaction_time(idle_client: httpx.AsyncClient,
                                                                  idle_app: FastAPI) -> None:
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation", _typeFilter="Observation?value-quantity=lt7")
    await load(idle_client, [observation("o1", "ann", value=9.9), observation("o2", "ann", value=9.9)])
    await load(idle_client, [observation("o9", "ann", value=1.0)])  # created after transactionTime
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    while await run.run_slice(server, job_id) is not None:
        pass
    found = await files(idle_client, await finished(idle_client, status_url))
    assert ids(found, "Observation") == ["o1", "o2", "o3", "o4"]  # as they were: all matched then
    assert {orjson.loads(line)["valueQuantity"]["value"] for line in found["Observation"]} == {6.5}


# -- patient -----------------------------------------------------------------------------------------------

def patient(id_: str) -> dict[str, Any]:
    return {"name": "patient", "valueReference": {"reference": f"Patient/{id_}"}}


async def test_patient_limits_patient_level(client: httpx.AsyncClient) -> None:
    await load(client)
    answer = await post(client, "Patient/$export",
                        [patient("ann"), {"name": "_type", "valueString": "Patient,Observation,Condition"}])
    assert answer.status_code == 202, answer.text
    manifest = await finished(client, answer.headers["Content-Location"])
    found = await files(client, manifest)
    assert ids(found, "Patient") == ["ann"] and ids(found, "Observation") == ["o1", "o2"] and "Condition" not in found
    assert "patient=Patient%2Fann" in manifest["request"]


async def test_patient_limits_group_level(client: httpx.AsyncClient) -> None:
    await load(client)
    answer = await post(client, "Group/panel/$export",
                        [{"name": "patient", "valueReference": {"reference": "http://testserver/fhir/Patient/bob"}}])
    assert answer.status_code == 202, answer.text
    found = await files(client, await finished(client, answer.headers["Content-Location"]))
    assert ids(found, "Patient") == ["bob"] and ids(found, "Observation") == ["o3"]
    assert ids(found, "Condition") == ["c1"]


async def test_patient_refusals(client: httpx.AsyncClient) -> None:
    await load(client)
    get = await client.get("Patient/$export", params={"patient": "Patient/ann"}, headers=ASYNC)
    assert get.status_code == 400 and "POST" in get.text
    for path, parameters in (("Patient/$export", [patient("nobody")]),  # not on the server
                             ("Group/panel/$export", [patient("cy")]),  # not a member
                             ("$export", [patient("ann")]),  # not at system level
                             ("Patient/$export",
                              [{"name": "patient", "valueReference": {"reference": "Observation/o1"}}]),
                             ("Patient/$export", [{"name": "patient", "valueString": "Patient/ann"}])):
        answer = await post(client, path, parameters)
        assert answer.status_code == 400, (path, parameters, answer.text)
        assert answer.json()["issue"][0]["expression"] == ["patient"]


async def test_patient_not_a_member_is_dropped_when_lenient(client: httpx.AsyncClient) -> None:
    await load(client)
    answer = await post(client, "Group/panel/$export", [patient("ann"), patient("cy")], LENIENT)
    assert answer.status_code == 202, answer.text
    manifest = await finished(client, answer.headers["Content-Location"])
    assert "Patient/cy is not a member" in await warnings(client, manifest)
    found = await files(client, manifest)
    assert ids(found, "Patient") == ["ann"] and ids(found, "Observation") == ["o1", "o2"]


# -- _elements ---------------------------------------------------------------------------------------------

async def test_elements_subset_and_tag(client: httpx.AsyncClient) -> None:
    await load(client)
    found = await export(client, params={"_type": "Patient,Observation", "_elements": "Patient.name"})
    for line in found["Patient"]:
        patient_ = orjson.loads(line)
        assert set(patient_) == {"resourceType", "id", "meta", "name"}
        assert SUBSETTED in patient_["meta"]["tag"]
    for line in found["Observation"]:  # not named: whole, stored bytes
        assert line == await stored(client, "Observation", orjson.loads(line)["id"])
    found = await export(client, params={"_type": "Observation", "_elements": "id,Observation.value[x]"})
    for line in found["Observation"]:
        kept = orjson.loads(line)
        assert set(kept) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}  # status, code: 1..1
        assert kept["meta"]["tag"] == [SUBSETTED]


async def test_elements_membership_pattern(client: httpx.AsyncClient) -> None:
    """§"Group Membership Request Pattern": `_type=Patient&_elements=id` lists a Group's patients."""
    await load(client)
    found = await export(client, "Group/panel/$export", {"_type": "Patient", "_elements": "id"})
    assert ids(found, "Patient") == ["ann", "bob"]
    assert all("name" not in orjson.loads(line) for line in found["Patient"])


async def test_elements_refusals(client: httpx.AsyncClient) -> None:
    for bad in ("Patient.name.given", "notAnElement", "Patient.notAnElement", "Nonsense.x", ","):
        assert "_elements" in await refused(client, {"_type": "Patient", "_elements": bad})
    answer = await client.get("$export", params={"_type": "Patient", "_elements": "name,bogus"}, headers=LENIENT)
    assert answer.status_code == 202
    assert "bogus" in await warnings(client, await finished(client, answer.headers["Content-Location"]))


# -- includeAssociatedData ---------------------------------------------------------------------------------

async def test_include_associated_data_is_refused_or_ignored(client: httpx.AsyncClient) -> None:
    for code in ("LatestProvenanceResources", "RelevantProvenanceResources", "_mine", "Bogus"):
        assert code in await refused(client, {"includeAssociatedData": code})
    params = {"_type": "Patient", "includeAssociatedData": "LatestProvenanceResources"}
    answer = await client.get("$export", params=params, headers=LENIENT)
    assert answer.status_code == 202
    manifest = await finished(client, answer.headers["Content-Location"])
    assert "LatestProvenanceResources" in await warnings(client, manifest)


# -- resumed with everything it needs ----------------------------------------------------------------------

async def test_a_resumed_job_keeps_its_parameters(idle_client: httpx.AsyncClient, idle_app: FastAPI,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "PAGE", 1)
    monkeypatch.setattr(run, "SLICE_SECONDS", 0.0)
    await load(idle_client)
    answer = await post(idle_client, "Group/panel/$export", [
        patient("ann"), patient("bob"), {"name": "_type", "valueString": "Observation,Patient"},
        {"name": "_typeFilter", "valueString": "Observation?value-quantity=6.5"},
        {"name": "_elements", "valueString": "Observation.subject"}])
    assert answer.status_code == 202, answer.text
    status_url = answer.headers["Content-Location"]
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    doc = (await server.store.records.get(STATUS, job_id)).doc
    assert doc["filters"] == {"Observation": [[["value-quantity", "6.5"]]]}
    assert doc["elements"] == {"Observation": ["subject"]} and doc["limited"] is True
    steps = 0
    while await run.run_slice(server, job_id) is not None:  # a page a slice, each resumed from the record
        steps += 1
    assert steps > 4
    found = await files(idle_client, await finished(idle_client, status_url))
    assert ids(found, "Observation") == ["o1", "o2", "o3"] and ids(found, "Patient") == ["ann", "bob"]
    assert all(set(orjson.loads(line)) == {"resourceType", "id", "meta", "status", "code", "subject"}
               for line in found["Observation"])
