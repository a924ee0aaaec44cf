"""Bulk Data 2.0.0 `$export` over HTTP: kick-off, status, manifest, download, parameters, levels
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""

from __future__ import annotations

import httpx
import orjson

from fhirlead.bulk.run import run_slice
from tests.bulk.conftest import ASYNC, files, finished, kick_off, lines
from tests.bulk.data import load, observation, stored


def ids(found: dict[str, list[bytes]], type_: str) -> list[str]:
    return sorted(orjson.loads(line)["id"] for line in found.get(type_, []))


async def test_system_export_whole_pattern(client: httpx.AsyncClient) -> None:
    await load(client)
    status_url = await kick_off(client)
    assert status_url.startswith("http://testserver/fhir/$export-status/")
    manifest = await finished(client, status_url)
    assert set(manifest) >= {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"] == "http://testserver/fhir/$export"
    counts = {entry["type"]: entry["count"] for entry in manifest["output"]}
    server_written = {"Person", "Provenance"}  # identity links and write provenance the server records
    ours = {t: n for t, n in counts.items() if t not in server_written}
    assert ours == {"Patient": 3, "Observation": 4, "Condition": 1, "Practitioner": 1, "Group": 1}
    found = await files(client, manifest)
    for type_, type_lines in found.items():
        assert len(type_lines) == counts[type_]
        for line in type_lines:  # each line is the resource exactly as stored
            assert line == await stored(client, type_, orjson.loads(line)["id"])


async def test_post_kick_off_with_parameters(client: httpx.AsyncClient) -> None:
    await load(client)
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"}, {"name": "_outputFormat", "valueString": "ndjson"}]}
    answer = await client.post("$export", json=body, headers=ASYNC)
    assert answer.status_code == 202, answer.text
    manifest = await finished(client, answer.headers["Content-Location"])
    assert [entry["type"] for entry in manifest["output"]] == ["Patient"]


async def test_type_and_since(client: httpx.AsyncClient) -> None:
    await load(client)
    manifest = await finished(client, await kick_off(client, _type="Observation,Condition"))
    assert {entry["type"] for entry in manifest["output"]} == {"Observation", "Condition"}
    first = manifest["transactionTime"]
    await load(client, [observation("o5", "ann")])
    manifest = await finished(client, await kick_off(client, _type="Observation", _since=first))
    assert ids(await files(client, manifest), "Observation") == ["o5"]


async def test_refused_kick_offs(client: httpx.AsyncClient) -> None:
    assert (await client.get("$export")).status_code == 400  # no Prefer: respond-async
    for params in ({"_outputFormat": "application/fhir+json"}, {"_type": "Nonsense"}, {"_since": "yesterday"},
                   {"organizeOutputBy": "Patient"}, {"unheardOf": "1"}):
        answer = await client.get("$export", params=params, headers=ASYNC)
        assert answer.status_code == 400, params
        assert answer.json()["resourceType"] == "OperationOutcome"
    bad_body = await client.post("$export", content=b"{not json",
                                 headers={**ASYNC, "Content-Type": "application/fhir+json"})
    assert bad_body.status_code == 400
    for body in ([], {"resourceType": "Patient"}, {"resourceType": "Parameters", "parameter": 5},
                 {"resourceType": "Parameters", "parameter": [5]},
                 {"resourceType": "Parameters", "parameter": [{"name": "_since", "valueInteger": 5}]},
                 {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCoding": {"code": "x"}}]},
                 {"resourceType": "Parameters", "parameter": [{"name": "_type"}]}):
        assert (await client.post("$export", json=body, headers=ASYNC)).status_code == 400, body
    outside = await client.get("Patient/$export", params={"_type": "Practitioner"}, headers=ASYNC)
    assert outside.status_code == 400
    assert (await client.get("Observation/$export", headers=ASYNC)).status_code == 404
    assert (await client.get("Group/nobody/$export", headers=ASYNC)).status_code == 404


async def test_lenient_handling_ignores_with_a_warning(client: httpx.AsyncClient) -> None:
    await load(client)
    answer = await client.get("$export", params={"_type": "Practitioner", "organizeOutputBy": "Patient"},
                              headers={"Prefer": "respond-async, handling=lenient"})
    assert answer.status_code == 202, answer.text
    manifest = await finished(client, answer.headers["Content-Location"])
    assert [entry["count"] for entry in manifest["output"]] == [1]
    assert [entry["type"] for entry in manifest["error"]] == ["OperationOutcome"]
    outcome = orjson.loads((await lines(client, manifest["error"][0]["url"]))[0])
    assert "organizeOutputBy" in outcome["issue"][0]["diagnostics"]


async def test_patient_level_exports_compartments_only(client: httpx.AsyncClient) -> None:
    await load(client)
    manifest = await finished(client, await kick_off(client, "Patient/$export"))
    found = await files(client, manifest)
    # R4 Patient compartment: Group (member) and Person (link) belong to it, Practitioner does not
    assert {"Patient", "Observation", "Condition", "Group"} <= set(found) and "Practitioner" not in found
    assert ids(found, "Observation") == ["o1", "o2", "o3", "o4"]


async def test_group_level_exports_members_data(client: httpx.AsyncClient) -> None:
    await load(client)
    manifest = await finished(client, await kick_off(client, "Group/panel/$export"))
    found = await files(client, manifest)
    assert ids(found, "Patient") == ["ann", "bob"]
    assert ids(found, "Observation") == ["o1", "o2", "o3"]
    assert ids(found, "Condition") == ["c1"]
    assert manifest["request"] == "http://testserver/fhir/Group/panel/$export"


async def test_writes_after_kick_off_are_not_in_the_snapshot(idle_client: httpx.AsyncClient, idle_app) -> None:
    """Writes between kick-off and the scan: the export holds each resource as of transactionTime (the
    job is run here slice by slice, as the worker runs it, after the writes)."""
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation")
    await load(idle_client, [observation("o1", "ann", value=9.9), observation("late", "bob")])
    assert (await idle_client.delete("Observation/o3")).status_code in (200, 204)
    server = idle_app.state.server
    while await run_slice(server, status_url.rsplit("/", 1)[1]) is not None:
        pass
    manifest = await finished(idle_client, status_url)
    found = await files(idle_client, manifest)
    assert ids(found, "Observation") == ["o1", "o2", "o3", "o4"]  # not `late`; o3 as it was before its delete
    values = {orjson.loads(line)["id"]: orjson.loads(line)["valueQuantity"]["value"] for line in found["Observation"]}
    assert values["o1"] == 6.5  # the version at transactionTime, not the later one
    for line in found["Observation"]:
        assert orjson.loads(line)["meta"]["lastUpdated"] <= manifest["transactionTime"]
