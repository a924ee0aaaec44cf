"""The search interactions end to end: Bundle shape, links, GET and POST _search, system-level search,
compartment search, unknown parameters (lenient and strict), conditional criteria."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhirlead.errors import FhirError
from fhirlead.search import conditional
from tests.persons import persons_of
from tests.search.conftest import BASE, FHIR_JSON, id_set, ids, link, search, seed

FORM = "application/x-www-form-urlencoded"


def obs(id_: str, subject: str, code: str = "8867-4", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        **extra,
    }


FIXTURES = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Chalmers"}],
        "identifier": [{"system": "urn:mrn", "value": "1"}],
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "name": [{"family": "Chalk"}],
        "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
    },
    {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Chalmers"}]},
    obs("o1", "Patient/p1"),
    obs("o2", "Patient/p2", performer=[{"reference": "Patient/p1"}]),
    obs("o3", "Patient/p2"),
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
    },
]


@pytest.fixture
async def data(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


async def test_searchset_bundle_shape(data: httpx.AsyncClient) -> None:
    response = await data.get("Observation?subject=Patient/p2&_sort=_id&_count=1")
    assert response.status_code == 200 and response.headers["content-type"].startswith(FHIR_JSON)
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    entry = bundle["entry"][0]
    assert entry == {
        "fullUrl": f"{BASE}/Observation/o2",
        "resource": entry["resource"],
        "search": {"mode": "match"},
    }
    assert entry["resource"]["meta"]["versionId"] == "1"
    assert link(bundle, "self") == f"{BASE}/Observation?subject=Patient%2Fp2&_sort=_id&_count=1"
    following = link(bundle, "next")
    assert following is not None and following.startswith(
        f"{BASE}/Observation?subject=Patient%2Fp2&_sort=_id"
    )
    assert ids(await search(data, following)) == ["Observation/o3"]


async def test_empty_result(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Observation?code=nothing")
    assert bundle["total"] == 0 and "entry" not in bundle and link(bundle, "next") is None


async def test_unknown_parameters_are_reported_or_refused(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "Patient?name=chal&nonsense=1&_text=x&_contained=true")
    outcome = bundle["entry"][0]
    assert outcome["search"] == {"mode": "outcome"} and "fullUrl" not in outcome
    issues = outcome["resource"]["issue"]
    assert [issue["expression"] for issue in issues] == [["nonsense"], ["_text"], ["_contained"]]
    assert all(issue["severity"] == "warning" for issue in issues)
    assert id_set(bundle) == {"Patient/p1", "Patient/p2"}
    assert "nonsense" not in link(bundle, "self")  # the self link lists what was applied
    response = await data.get("Patient?name=chal&nonsense=1", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400 and response.json()["issue"][0]["code"] == "not-supported"
    lenient = await data.get("Patient?nonsense=1", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200


async def test_post_search_merges_query_and_form_body(data: httpx.AsyncClient) -> None:
    response = await data.post(
        "Observation/_search?subject=Patient/p2",
        content="code=8867-4&_sort=-_id",
        headers={"Content-Type": FORM},
    )
    assert response.status_code == 200
    bundle = response.json()
    assert ids(bundle) == ["Observation/o3", "Observation/o2"]
    assert link(bundle, "self").startswith(f"{BASE}/Observation?subject=")  # links are GET URLs
    response = await data.post("Observation/_search", content="date=notadate", headers={"Content-Type": FORM})
    assert response.status_code == 400


async def test_system_search(data: httpx.AsyncClient) -> None:
    bundle = await search(data, "?_type=Patient,Practitioner&_id=p1,pr1,o1")
    assert id_set(bundle) == {"Patient/p1", "Practitioner/pr1"}
    bundle = await search(data, "?_id=p1,o1&_type=Patient&_type=Observation")
    assert id_set(bundle) == {"Patient/p1", "Observation/o1"}
    persons = set((await persons_of(data, "Patient/p1", "Patient/p2")).values())  # docs/identity.md
    bundle = await search(data, "?_lastUpdated=gt2000&_count=100")
    written = [found for found in ids(bundle) if not found.startswith(("Provenance/", "Person/"))]
    assert sorted(written) == sorted(f"{item['resourceType']}/{item['id']}" for item in FIXTURES)
    assert {found for found in ids(bundle) if found.startswith("Person/")} == persons
    # and the Provenance of each write (docs/sources.md)
    assert len(ids(bundle)) == 2 * len(FIXTURES) + len(persons)
    bundle = await search(data, "?_type=Patient,Practitioner&name=chalmers")
    assert id_set(bundle) == {"Patient/p1", "Practitioner/pr1"}
    response = await data.post("_search", content="_id=e1", headers={"Content-Type": FORM})
    assert id_set(response.json()) == {"Encounter/e1"}
    bundle = await search(data, "?name=chalmers&_count=100")  # not common to every type: ignored
    assert bundle["entry"][0]["search"]["mode"] == "outcome"
    await search(data, "?_type=Nope", status=400)


async def test_compartment_search(data: httpx.AsyncClient) -> None:
    assert id_set(await search(data, "Patient/p1/Observation")) == {"Observation/o1", "Observation/o2"}
    assert id_set(await search(data, "Patient/p1/Observation?subject=Patient/p1")) == {"Observation/o1"}
    assert id_set(await search(data, "Patient/p2/Observation?_sort=_id")) == {
        "Observation/o2",
        "Observation/o3",
    }
    assert id_set(await search(data, "Patient/p1/Encounter")) == {"Encounter/e1"}
    assert id_set(await search(data, "Patient/p1/Patient")) == {"Patient/p1", "Patient/p2"}  # itself and link
    everything = await search(data, "Patient/p1/*?_count=50")
    [provenance] = ids(await search(data, "Provenance?target=Patient/p1"))  # of the write of p1 (docs/sources.md)
    person = (await persons_of(data, "Patient/p1"))["Patient/p1"]  # linking p1 (docs/identity.md)
    everything = await search(data, "Patient/p1/*?_count=50")
    assert id_set(everything) == {
        "Patient/p1",
        "Patient/p2",
        "Observation/o1",
        "Observation/o2",
        "Encounter/e1",
        provenance,
        person,
    }
    assert link(everything, "self") == f"{BASE}/Patient/p1/*?_count=50"
    await search(data, "Patient/p1/Practitioner", status=400)


async def test_conditional_create_uses_search(data: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}]}
    response = await data.post(
        "Patient", json=patient, headers={"Content-Type": FHIR_JSON, "If-None-Exist": "identifier=urn:mrn|1"}
    )
    assert response.status_code == 200  # exists: nothing created
    response = await data.post(
        "Patient", json=patient, headers={"Content-Type": FHIR_JSON, "If-None-Exist": "identifier=urn:mrn|2"}
    )
    assert response.status_code == 201
    response = await data.post(
        "Patient", json=patient, headers={"Content-Type": FHIR_JSON, "If-None-Exist": "nonsense=1"}
    )
    assert response.status_code == 400


async def test_conditional_find_is_strict(data: httpx.AsyncClient) -> None:
    server = data._transport.app.state.server  # type: ignore[attr-defined]
    found = await conditional.find(server, server.store, "Observation", [("subject", "Patient/p2")], limit=2)
    assert {v.id for v in found} == {"o2", "o3"}
    one = await conditional.find(server, server.store, "Observation", [("subject", "Patient/p2")], limit=1)
    assert len(one) == 1
    for params in ([("nonsense", "1")], [("_count", "1")], [("_sort", "_id")], []):
        with pytest.raises(FhirError) as error:
            await conditional.find(server, server.store, "Observation", params, limit=2)
        assert error.value.status == 400
    async with server.store.unit_of_work() as uow:  # a unit of work sees its own writes
        resource = obs("o9", "Patient/p2", code="1-1")
        await uow.write("Observation", "o9", resource, server.extractor.extract(resource), "PUT")
        found = await conditional.find(server, uow, "Observation", [("code", "1-1")], limit=2)
        assert [v.id for v in found] == ["o9"]
