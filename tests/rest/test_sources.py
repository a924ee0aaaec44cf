"""Every write records where it came from (docs/sources.md): meta.source from the SMART client when the
client sent none, and a Provenance of each create, update and patch in the same commit."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.auth.tokens import Authorization
from fhirlead.settings import Settings
from fhirlead.sources import CLIENT_SYSTEM, client_uri
from tests.conftest import BASE, FHIR_JSON
from tests.rest.helpers import create, patient, put
from tests.tokens import SYSTEM_CLIENT, system_token

CLIENT_URI = client_uri(SYSTEM_CLIENT)


async def provenances(client: httpx.AsyncClient, target: str | None = None) -> list[dict[str, Any]]:
    """The Provenance resources (of `target`), oldest first."""
    params = {"_count": "1000", "_sort": "_lastUpdated"}
    if target is not None:
        params["target"] = target
    answer = await client.get("Provenance", params=params)
    assert answer.status_code == 200, answer.text
    return [item["resource"] for item in answer.json().get("entry", [])]


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"}, **extra}


async def registered(app: FastAPI, client_id: str, **fields: Any) -> httpx.AsyncClient:
    """An HTTP client with a Backend Services token of `client_id`, registered with `fields` (source,
    organization, own_provenance)."""
    token = await system_token(app, client_id=client_id)
    registry = app.state.server.auth.registry
    client = await registry.client(client_id)
    await registry.save_client(dataclasses.replace(client, **fields))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                             headers={"Accept": FHIR_JSON, "Authorization": f"Bearer {token}"})


async def test_meta_source_is_set_from_the_client_when_absent_and_kept_when_given(client: httpx.AsyncClient) -> None:
    created = await create(client, patient())
    assert created.status_code == 201
    assert created.json()["meta"]["source"] == CLIENT_URI == f"{CLIENT_SYSTEM}:{SYSTEM_CLIENT}"
    given = "https://ehr.example.org/fhir#request-81"
    kept = await create(client, patient(meta={"source": given, "tag": [{"code": "x"}]}))
    assert kept.json()["meta"]["source"] == given
    assert kept.json()["meta"]["tag"] == [{"code": "x"}]
    updated = await put(client, {**created.json(), "meta": {}, "gender": "other"})
    assert updated.json()["meta"]["source"] == CLIENT_URI
    read = (await client.get(f"Patient/{created.json()['id']}")).json()
    assert read["meta"]["source"] == CLIENT_URI
    found = (await client.get("Patient", params={"_source": given})).json()
    assert [item["resource"]["id"] for item in found["entry"]] == [kept.json()["id"]]


async def test_each_create_update_and_patch_gets_a_provenance_of_its_version(client: httpx.AsyncClient) -> None:
    created = (await create(client, observation())).json()
    reference = f"Observation/{created['id']}"
    [first] = await provenances(client, reference)
    assert first["target"] == [{"reference": f"{reference}/_history/1"}]
    assert first["activity"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
    assert first["activity"]["coding"][0]["code"] == "CREATE"
    [agent] = first["agent"]
    assert agent["who"] == {"identifier": {"system": CLIENT_SYSTEM, "value": SYSTEM_CLIENT}, "display": SYSTEM_CLIENT}
    assert agent["type"]["coding"][0]["code"] == "transmitter"
    assert first["entity"] == [{"role": "source", "what": {"identifier": {"system": "urn:ietf:rfc:3986",
                                                                          "value": CLIENT_URI}}}]
    assert created["meta"]["lastUpdated"] <= first["recorded"] <= first["meta"]["lastUpdated"]

    assert (await put(client, {**created, "status": "amended"})).status_code == 200
    patched = await client.patch(reference, content=orjson.dumps([{"op": "replace", "path": "/status",
                                                                   "value": "corrected"}]),
                                 headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200
    found = await provenances(client, reference)
    assert [item["target"] for item in found] == [[{"reference": f"{reference}/_history/{n}"}] for n in (1, 2, 3)]
    assert [item["activity"]["coding"][0]["code"] for item in found] == ["CREATE", "UPDATE", "UPDATE"]
    included = (await client.get("Observation", params={"_id": created["id"],
                                                         "_revinclude": "Provenance:target"})).json()
    assert sorted(item["resource"]["id"] for item in included["entry"]) == sorted(
        [created["id"], *(item["id"] for item in found)])
    # a conditional create that finds its match, and a delete, write no Provenance
    assert (await create(client, observation(), **{"If-None-Exist": f"_id={created['id']}"})).status_code == 200
    assert (await client.delete(reference)).status_code == 200
    assert len(await provenances(client, reference)) == 3


async def test_conditional_update_and_update_as_create_get_their_provenance(client: httpx.AsyncClient) -> None:
    answer = await client.put("Patient", params={"identifier": "urn:mrn|77"}, headers={"Content-Type": FHIR_JSON},
                              json=patient(identifier=[{"system": "urn:mrn", "value": "77"}]))
    assert answer.status_code == 201
    again = await client.put("Patient", params={"identifier": "urn:mrn|77"}, headers={"Content-Type": FHIR_JSON},
                             json=patient("Other", identifier=[{"system": "urn:mrn", "value": "77"}]))
    assert again.status_code == 200
    assert (await put(client, patient(id="chosen"))).status_code == 201
    by_target = {item["target"][0]["reference"]: item["activity"]["coding"][0]["code"]
                 for item in await provenances(client)}
    assert by_target == {f"Patient/{answer.json()['id']}/_history/1": "CREATE",
                         f"Patient/{answer.json()['id']}/_history/2": "UPDATE",
                         "Patient/chosen/_history/1": "CREATE"}


async def test_writing_a_provenance_adds_none_and_it_is_searchable_by_target(client: httpx.AsyncClient) -> None:
    target = (await create(client, patient())).json()
    own = {"resourceType": "Provenance", "target": [{"reference": f"Patient/{target['id']}"}],
           "recorded": "2026-01-02T03:04:05Z",
           "agent": [{"who": {"display": "Dr. Okafor's EHR"}}]}
    written = await create(client, own)
    assert written.status_code == 201
    assert written.json()["meta"]["source"] == CLIENT_URI  # stamped like any resource the client writes
    found = await provenances(client, f"Patient/{target['id']}")
    assert len(found) == 2  # the server's of the Patient, and the client's own: none of the Provenance
    assert len(await provenances(client)) == 2
    assert {item["id"] for item in found} >= {written.json()["id"]}


async def test_a_registered_source_and_organization(app: FastAPI) -> None:
    source = "https://ehr.northside.example/fhir"
    async with await registered(app, "northside-feed", source=source, organization="Organization/northside") as ehr:
        created = (await create(ehr, observation())).json()
        assert created["meta"]["source"] == source
        [provenance] = await provenances(ehr, f"Observation/{created['id']}")
        assert provenance["agent"][0]["who"] == {"reference": "Organization/northside", "display": "northside-feed"}
        assert provenance["entity"][0]["what"]["identifier"]["value"] == source
        # what the client names itself is kept
        given = (await create(ehr, observation(meta={"source": "https://lab.example/x"}))).json()
        [other] = await provenances(ehr, f"Observation/{given['id']}")
        assert given["meta"]["source"] == "https://lab.example/x"
        assert other["entity"][0]["what"]["identifier"]["value"] == "https://lab.example/x"


async def test_a_client_that_records_its_own_provenance_gets_none(app: FastAPI) -> None:
    async with await registered(app, "own-records", own_provenance=True) as ehr:
        created = (await create(ehr, observation())).json()
        assert created["meta"]["source"] == client_uri("own-records")
        assert await provenances(ehr) == []


async def test_x_provenance_is_stored_instead_of_the_servers(client: httpx.AsyncClient) -> None:
    own = {"resourceType": "Provenance", "recorded": "2026-03-01T10:00:00Z",
           "agent": [{"who": {"reference": "Practitioner/okafor"}}],
           "reason": [{"text": "chart reconciliation"}]}
    created = await create(client, observation(), **{"X-Provenance": orjson.dumps(own).decode()})
    assert created.status_code == 201
    [stored] = await provenances(client)
    assert stored["target"] == [{"reference": f"Observation/{created.json()['id']}/_history/1"}]
    assert stored["agent"] == own["agent"]
    assert stored["reason"] == own["reason"]
    assert stored["recorded"] == own["recorded"]
    # an X-Provenance that is not a valid Provenance fails the write: nothing is stored
    for bad in ("{not json", orjson.dumps({"resourceType": "Patient"}).decode(),
                orjson.dumps({"resourceType": "Provenance", "recorded": "yesterday", "agent": []}).decode()):
        refused = await create(client, observation(), **{"X-Provenance": bad})
        assert refused.status_code == 400, refused.text
    assert (await client.get("Observation", params={"_summary": "count"})).json()["total"] == 1
    assert len(await provenances(client)) == 1
    # UTF-8 in the header (its bytes, as HTTP carries them)
    named = {**own, "reason": [{"text": "Überweisung, Zürich"}]}
    accepted = await client.post("Observation", content=orjson.dumps(observation()),
                                 headers={"Content-Type": FHIR_JSON, "X-Provenance": orjson.dumps(named)})
    assert accepted.status_code == 201, accepted.text
    assert (await provenances(client))[-1]["reason"] == named["reason"]


async def test_a_user_who_wrote_is_the_enterer(app: FastAPI, client: httpx.AsyncClient) -> None:
    await system_token(app, client_id="chart-app")
    token = await app.state.server.auth.tokens.access_token(
        Authorization("chart-app", "user/*.cruds", "okafor", fhir_user="Practitioner/okafor", admin=True),
        "http://testserver/auth", BASE)
    created = await client.post("Observation", json=observation(), headers={"Content-Type": FHIR_JSON,
                                                                           "Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    [provenance] = await provenances(client, f"Observation/{created.json()['id']}")
    assert [agent["type"]["coding"][0]["code"] for agent in provenance["agent"]] == ["transmitter", "enterer"]
    assert provenance["agent"][1]["who"] == {"reference": "Practitioner/okafor"}
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "chart-app"


async def test_a_patient_token_reads_the_provenance_of_its_own_record_only(app: FastAPI,
                                                                         client: httpx.AsyncClient) -> None:
    mine = (await put(client, patient(id="maria"))).json()
    (await put(client, patient("Other", id="other"))).json()
    [of_mine] = await provenances(client, "Patient/maria")
    [of_other] = await provenances(client, "Patient/other")
    await system_token(app, client_id="patient-app")
    token = await app.state.server.auth.tokens.access_token(
        Authorization("patient-app", "patient/*.rs", "maria", patient="maria"), "http://testserver/auth", BASE)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get(f"Provenance/{of_mine['id']}", headers=headers)).status_code == 200
    assert (await client.get(f"Provenance/{of_other['id']}", headers=headers)).status_code in (403, 404)
    found = (await client.get("Provenance", params={"target": "Patient/maria"}, headers=headers)).json()
    assert [item["resource"]["id"] for item in found["entry"]] == [of_mine["id"]]
    assert mine["meta"]["source"] == CLIENT_URI


@pytest.fixture
async def open_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(dataclasses.replace(settings, auth=False))
    async with application.router.lifespan_context(application):
        yield application


async def test_without_authorization_nothing_is_invented(open_app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=open_app), base_url=BASE) as anonymous:
        created = (await create(anonymous, observation())).json()
        assert "source" not in created["meta"]
        given = (await create(anonymous, observation(meta={"source": "https://ehr.example/fhir"}))).json()
        assert given["meta"]["source"] == "https://ehr.example/fhir"
        assert await provenances(anonymous) == []
        # a client's own Provenance is still stored when it sends one
        own = {"resourceType": "Provenance", "recorded": "2026-03-01T10:00:00Z",
               "agent": [{"who": {"display": "lab feed"}}]}
        written = (await create(anonymous, observation(), **{"X-Provenance": orjson.dumps(own).decode()})).json()
        [stored] = await provenances(anonymous)
        assert stored["target"] == [{"reference": f"Observation/{written['id']}/_history/1"}]
        assert "source" not in stored["meta"]


async def test_the_cli_registers_a_clients_source(app: FastAPI, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.auth.test_admin_and_keys import run_cli

    store = ["--store", settings.store]
    code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "northside", "--secret-stdin",
                                          "--scope", "system/*.cruds", "--source", "https://ehr.northside.example/fhir",
                                          "--organization", "Organization/northside"], "a-secret-of-some-length\n")
    assert code == 0
    registered = await app.state.server.auth.registry.client("northside")
    assert (registered.source, registered.organization, registered.own_provenance) == (
        "https://ehr.northside.example/fhir", "Organization/northside", False)
    code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "lab", "--secret-stdin",
                                          "--scope", "system/*.cruds", "--own-provenance"], "a-secret-of-some-length\n")
    assert code == 0 and (await app.state.server.auth.registry.client("lab")).own_provenance
    for bad in (["--organization", "Practitioner/1"], ["--source", "has space"]):
        code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "bad", "--secret-stdin",
                                              "--scope", "system/*.cruds", *bad], "a-secret-of-some-length\n")
        assert code == 2


async def test_x_provenance_needs_a_token_that_may_create_provenance(app: FastAPI, client: httpx.AsyncClient) -> None:
    await system_token(app, client_id="observations-only")
    token = await app.state.server.auth.tokens.access_token(
        Authorization("observations-only", "system/Observation.cruds", "observations-only"),
        "http://testserver/auth", BASE)
    own = {"resourceType": "Provenance", "recorded": "2026-03-01T10:00:00Z", "agent": [{"who": {"display": "x"}}]}
    refused = await client.post("Observation", json=observation(), headers={
        "Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}", "X-Provenance": orjson.dumps(own).decode()})
    assert refused.status_code == 403, refused.text
    assert (await client.get("Observation", params={"_summary": "count"})).json()["total"] == 0
    # without the header the same token writes, and the server records the Provenance
    accepted = await client.post("Observation", json=observation(), headers={
        "Content-Type": FHIR_JSON, "Authorization": f"Bearer {token}"})
    assert accepted.status_code == 201
    assert len(await provenances(client)) == 1


async def test_an_audit_event_the_client_records_gets_no_provenance(client: httpx.AsyncClient) -> None:
    event = {"resourceType": "AuditEvent", "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                    "code": "110110"},
             "recorded": "2026-03-01T10:00:00Z", "agent": [{"requestor": True, "who": {"display": "EHR"}}],
             "source": {"observer": {"display": "EHR"}}}
    written = await create(client, event)
    assert written.status_code == 201, written.text
    assert written.json()["meta"]["source"] == CLIENT_URI
    assert await provenances(client) == []
