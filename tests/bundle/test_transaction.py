"""Transaction Bundles: processing order, placeholders, conditional entries, all-or-nothing."""

from __future__ import annotations

import httpx

from tests.bundle.helpers import bundle, count, entry, json_patch, location_reference, post_bundle, statuses
from tests.rest.helpers import patient, put

PATIENT_URN = "urn:uuid:0b8a7c4e-8f1e-4a0a-9d44-3f8f0c7d2a11"


async def test_response_has_one_entry_per_request_in_request_order(client: httpx.AsyncClient) -> None:
    await put(client, patient("Old", id="old"))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("GET", "Patient?family=Ordering"),
        entry("PUT", "Patient/kept", patient("Ordering", id="kept")),
        entry("POST", "Patient", patient("Ordering"), full_url=PATIENT_URN),
        entry("DELETE", "Patient/old"),
    ))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert statuses(response) == ["200 OK", "201 Created", "201 Created", "200 OK"]
    # GET runs last, so it sees both writes of the same transaction
    found = body["entry"][0]["resource"]
    assert found["resourceType"] == "Bundle" and found["total"] == 2
    created = body["entry"][2]["response"]
    assert created["location"].startswith("http://testserver/fhir/Patient/")
    assert created["etag"] == 'W/"1"' and created["lastModified"].endswith("Z")
    assert (await client.get("Patient/old")).status_code == 410


async def test_placeholders_are_resolved_in_nested_elements_and_narrative(client: httpx.AsyncClient) -> None:
    observation_urn = "urn:uuid:5d4a3c2b-1a09-4e8f-b7c6-d5e4f3a2b1c0"
    practitioner_oid = "urn:oid:2.16.840.1.113883.3.7.1"
    response = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Observation", {
            "resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
            "subject": {"reference": PATIENT_URN},
            "performer": [{"reference": practitioner_oid}],
            "extension": [{"url": "http://example.org/focus", "valueReference": {"reference": PATIENT_URN}}],
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{PATIENT_URN}">patient</a></div>'},
        }, full_url=observation_urn),
        entry("POST", "Patient", patient("Placeholder"), full_url=PATIENT_URN),
        entry("POST", "Practitioner", {"resourceType": "Practitioner", "name": [{"family": "Oid"}]},
              full_url=practitioner_oid),
        entry("POST", "Provenance", {
            "resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
            "target": [{"reference": observation_urn}], "agent": [{"who": {"reference": practitioner_oid}}],
        }),
    ))
    assert response.status_code == 200, response.text
    observation_ref, patient_ref, practitioner_ref, provenance_ref = map(location_reference, response.json()["entry"])
    observation = (await client.get(observation_ref)).json()
    assert observation["subject"]["reference"] == patient_ref
    assert observation["performer"][0]["reference"] == practitioner_ref
    assert observation["extension"][0]["valueReference"]["reference"] == patient_ref
    assert f'href="{patient_ref}"' in observation["text"]["div"]
    provenance = (await client.get(provenance_ref)).json()
    assert provenance["target"][0]["reference"] == observation_ref
    assert provenance["agent"][0]["who"]["reference"] == practitioner_ref
    # and the rewritten references are indexed: the search by subject finds the observation
    assert await count(client, f"Observation?subject={patient_ref}") == 1


async def test_put_with_placeholder_full_url_maps_to_its_id(client: httpx.AsyncClient) -> None:
    response = await post_bundle(client, bundle(
        "transaction",
        entry("PUT", "Patient/chosen-id", patient("Put", id="chosen-id"), full_url=PATIENT_URN),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": PATIENT_URN}}),
    ))
    assert response.status_code == 200, response.text
    observation = (await client.get(location_reference(response.json()["entry"][1]))).json()
    assert observation["subject"]["reference"] == "Patient/chosen-id"


def _practitioner(npi: str) -> dict:
    return {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]}


def _encounter_by(npi: str) -> dict:
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "participant": [{"individual": {
                "reference": f"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{npi}"}}]}


async def test_conditional_reference_with_one_match_is_resolved(client: httpx.AsyncClient) -> None:
    await put(client, {**_practitioner("111"), "id": "npi111"})
    response = await post_bundle(client, bundle("transaction", entry("POST", "Encounter", _encounter_by("111"))))
    assert response.status_code == 200, response.text
    encounter = (await client.get(location_reference(response.json()["entry"][0]))).json()
    assert encounter["participant"][0]["individual"]["reference"] == "Practitioner/npi111"


async def test_conditional_reference_with_no_or_several_matches_fails_the_transaction(
    client: httpx.AsyncClient,
) -> None:
    await put(client, {**_practitioner("222"), "id": "a"})
    await put(client, {**_practitioner("222"), "id": "b"})
    for npi, status, code in (("000", 404, "not-found"), ("222", 412, "multiple-matches")):
        response = await post_bundle(client, bundle(
            "transaction",
            entry("POST", "Patient", patient("Never")),
            entry("POST", "Encounter", _encounter_by(npi), full_url="urn:uuid:11111111-2222-3333-4444-555555555555"),
        ))
        assert response.status_code == status, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == code
        assert "Bundle.entry[1]" in issue["diagnostics"] and "urn:uuid:11111111" in issue["diagnostics"]
    assert await count(client, "Patient?family=Never") == 0
    assert await count(client, "Encounter") == 0


async def test_if_none_exist_reuses_the_match_and_placeholders_point_to_it(client: httpx.AsyncClient) -> None:
    await put(client, patient("Existing", id="known", identifier=[{"system": "urn:mrn", "value": "42"}]))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient("Duplicate", identifier=[{"system": "urn:mrn", "value": "42"}]),
              full_url=PATIENT_URN, ifNoneExist="identifier=urn:mrn|42"),
        entry("POST", "Patient", patient("Fresh", identifier=[{"system": "urn:mrn", "value": "43"}]),
              ifNoneExist="identifier=urn:mrn|43"),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": PATIENT_URN}}),
    ))
    assert response.status_code == 200, response.text
    assert statuses(response) == ["200 OK", "201 Created", "201 Created"]
    assert await count(client, "Patient?family=Duplicate") == 0
    assert await count(client, "Patient?family=Fresh") == 1
    observation = (await client.get(location_reference(response.json()["entry"][2]))).json()
    assert observation["subject"]["reference"] == "Patient/known"


async def test_if_match_mismatch_rolls_back_the_whole_transaction(client: httpx.AsyncClient) -> None:
    await put(client, patient("Versioned", id="v"))
    await put(client, patient("Versioned2", id="v"))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient("RolledBack")),
        entry("PUT", "Patient/v", patient("Stale", id="v"), ifMatch='W/"1"'),
    ))
    assert response.status_code == 412, response.text
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert await count(client, "Patient?family=RolledBack") == 0
    current = await client.get("Patient/v")
    assert current.headers["etag"] == 'W/"2"' and current.json()["name"][0]["family"] == "Versioned2"
    ok = await post_bundle(client, bundle("transaction", entry("PUT", "Patient/v", patient("Fresh", id="v"),
                                                               ifMatch='W/"2"')))
    assert statuses(ok) == ["200 OK"] and ok.json()["entry"][0]["response"]["etag"] == 'W/"3"'


async def test_conditional_get_headers_on_entries(client: httpx.AsyncClient) -> None:
    await put(client, patient("Cached", id="c"))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("GET", "Patient/c", ifNoneMatch='W/"1"'),
        entry("GET", "Patient/c", ifNoneMatch='W/"9"'),
        entry("GET", "Patient/c", ifModifiedSince="Fri, 01 Jan 2100 00:00:00 GMT"),
        entry("GET", "Patient/c", ifModifiedSince="Mon, 01 Jan 2001 00:00:00 GMT"),
    ))
    assert statuses(response) == ["304 Not Modified", "200 OK", "304 Not Modified", "200 OK"]
    assert response.json()["entry"][1]["resource"]["id"] == "c"


async def test_failing_entry_rolls_back_everything_and_is_named(client: httpx.AsyncClient) -> None:
    await put(client, patient("Untouched", id="u"))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient("First")),
        entry("PUT", "Patient/u", patient("Changed", id="u")),
        entry("DELETE", "Patient/u2"),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "not-a-status",
                                      "code": {"text": "x"}}, full_url="urn:uuid:bad"),
    ))
    assert response.status_code in (400, 422), response.text
    issue = response.json()["issue"][0]
    assert "Bundle.entry[3]" in issue["diagnostics"] and "urn:uuid:bad" in issue["diagnostics"]
    assert await count(client, "Patient?family=First") == 0
    unchanged = await client.get("Patient/u")
    assert unchanged.json()["name"][0]["family"] == "Untouched" and unchanged.headers["etag"] == 'W/"1"'
    history = (await client.get("Patient/u/_history")).json()
    assert history["total"] == 1 if "total" in history else len(history["entry"]) == 1


async def test_conditional_update_delete_and_patch_entries(client: httpx.AsyncClient) -> None:
    await put(client, patient("Cond", id="c1", identifier=[{"system": "urn:mrn", "value": "c1"}]))
    await put(client, patient("Gone", id="g1", identifier=[{"system": "urn:mrn", "value": "g1"}]))
    await put(client, patient("Patchable", id="p1"))
    response = await post_bundle(client, bundle(
        "transaction",
        entry("PUT", "Patient?identifier=urn:mrn|c1", patient("CondUpdated", identifier=[{"system": "urn:mrn",
                                                                                        "value": "c1"}])),
        entry("PUT", "Patient?identifier=urn:mrn|new", patient("CondCreated", identifier=[{"system": "urn:mrn",
                                                                                         "value": "new"}])),
        entry("DELETE", "Patient?identifier=urn:mrn|g1"),
        entry("PATCH", "Patient/p1", json_patch([{"op": "replace", "path": "/gender", "value": "male"}])),
    ))
    assert statuses(response) == ["200 OK", "201 Created", "200 OK", "200 OK"], response.text
    assert (await client.get("Patient/c1")).json()["name"][0]["family"] == "CondUpdated"
    assert await count(client, "Patient?family=CondCreated") == 1
    assert (await client.get("Patient/g1")).status_code == 410
    assert (await client.get("Patient/p1")).json()["gender"] == "male"


async def test_two_entries_writing_one_resource_are_rejected(client: httpx.AsyncClient) -> None:
    response = await post_bundle(client, bundle(
        "transaction",
        entry("PUT", "Patient/twice", patient("A", id="twice")),
        entry("PUT", "Patient/twice", patient("B", id="twice")),
    ))
    assert response.status_code == 400
    assert (await client.get("Patient/twice")).status_code == 404


async def test_a_repeated_full_url_is_refused_before_anything_is_written(client: httpx.AsyncClient) -> None:
    """bdl-7: two entries of one fullUrl would make a reference to it name either."""
    for kind in ("transaction", "batch"):
        response = await post_bundle(client, bundle(
            kind,
            entry("POST", "Patient", patient("First"), full_url="urn:uuid:5c4f6f1e-0000-4000-8000-000000000001"),
            entry("POST", "Patient", patient("Second"), full_url="urn:uuid:5c4f6f1e-0000-4000-8000-000000000001"),
        ))
        assert response.status_code == 400
        issue = response.json()["issue"][0]
        assert "bdl-7" in issue["diagnostics"] and issue["expression"] == ["Bundle.entry[1].fullUrl"]
    assert await count(client, "Patient") == 0


async def test_prefer_return_representation_includes_resources(client: httpx.AsyncClient) -> None:
    response = await post_bundle(client, bundle("transaction", entry("POST", "Patient", patient("Shown"))),
                                 Prefer="return=representation")
    resource = response.json()["entry"][0]["resource"]
    assert resource["name"][0]["family"] == "Shown" and resource["meta"]["versionId"] == "1"
    minimal = await post_bundle(client, bundle("transaction", entry("POST", "Patient", patient("Hidden"))))
    assert "resource" not in minimal.json()["entry"][0]
