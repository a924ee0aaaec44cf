"""Small helpers the REST tests share."""

from __future__ import annotations

from typing import Any

import httpx

FHIR_JSON = "application/fhir+json"


def patient(family: str = "Garcia", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Maria"]}], "gender": "female",
            "birthDate": "1961-04-12", **extra}


async def create(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> httpx.Response:
    response = await client.post(resource["resourceType"], json=resource,
                                 headers={"Content-Type": FHIR_JSON, **headers})
    return response


async def put(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource,
                            headers={"Content-Type": FHIR_JSON, **headers})


def issue_codes(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [issue["code"] for issue in body["issue"]]
