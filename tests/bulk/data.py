"""A small record for the export suite: two patients with observations and a condition, one outsider."""

from __future__ import annotations

from typing import Any

import httpx


def patient(id_: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": id_.title()}]}


def observation(id_: str, patient_id: str, value: float = 6.5) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": value, "unit": "%"}}


def condition(id_: str, patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": id_, "subject": {"reference": f"Patient/{patient_id}"},
            "code": {"text": "Type 2 diabetes"}}


RECORD = [patient("ann"), patient("bob"), patient("cy"),
          observation("o1", "ann"), observation("o2", "ann"), observation("o3", "bob"), observation("o4", "cy"),
          condition("c1", "bob"),
          {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
          {"resourceType": "Group", "id": "panel", "type": "person", "actual": True,
           "member": [{"entity": {"reference": "Patient/ann"}}, {"entity": {"reference": "Patient/bob"}}]}]


async def load(client: httpx.AsyncClient, resources: list[dict[str, Any]] = RECORD) -> None:
    for resource in resources:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code in (200, 201), answer.text


async def stored(client: httpx.AsyncClient, type_: str, id_: str) -> bytes:
    """The resource's bytes as the server keeps and serves them."""
    answer = await client.get(f"{type_}/{id_}")
    assert answer.status_code == 200
    return answer.content
