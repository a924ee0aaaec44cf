"""Building and posting batch/transaction Bundles in tests."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson

FHIR_JSON = "application/fhir+json"


def entry(method: str, url: str, resource: dict[str, Any] | None = None, full_url: str | None = None,
          **request: str) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        item["resource"] = resource
    if full_url is not None:
        item["fullUrl"] = full_url
    return item


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def json_patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON Patch as R4 carries it in a Bundle: a Binary resource."""
    return {"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": base64.b64encode(orjson.dumps(operations)).decode()}


async def post_bundle(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("", content=orjson.dumps(body), headers={"Content-Type": FHIR_JSON, **headers})


def statuses(response: httpx.Response) -> list[str]:
    return [item["response"]["status"] for item in response.json()["entry"]]


def location_reference(item: dict[str, Any]) -> str:
    """`Patient/123` from a response entry's location (…/Patient/123/_history/1)."""
    parts = item["response"]["location"].split("/")
    return f"{parts[-4]}/{parts[-3]}"


async def count(client: httpx.AsyncClient, query: str) -> int:
    separator = "&" if "?" in query else "?"
    response = await client.get(f"{query}{separator}_summary=count")
    assert response.status_code == 200, response.text
    return response.json()["total"]
