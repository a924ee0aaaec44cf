"""The in-memory criteria matcher decides exactly as a search on the store does: for every query below,
the resources it matches in memory are the ones the store's search answers (same parser, same values)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.search.parse import parse_search
from fhirlead.subscriptions.matcher import matches

LOINC = "http://loinc.org"


def observation(id_: str, code: str, value: float | None, patient: str, when: str, status: str = "final",
                **more: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": id_, "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}], "text": f"Lab {code}"},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when, **more}
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    return resource


RESOURCES = [
    observation("a", "4548-4", 9.5, "p1", "2026-03-01"),
    observation("b", "4548-4", 7.25, "p2", "2026-03-15T10:00:00Z"),
    observation("c", "2089-1", 130, "p1", "2025-12-31", status="amended"),
    observation("d", "4548-4", None, "p3", "2026", dataAbsentReason={"text": "not done"}),
    observation("e", "85354-9", None, "p2", "2026-06-30",
                component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                            "valueQuantity": {"value": 150, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
                                              "code": "mm[Hg]"}}]),
]

QUERIES = [
    "code=4548-4", f"code={LOINC}|4548-4", "code=http://other|4548-4", "code=4548-4,2089-1", "code:not=4548-4",
    "patient=Patient/p1", "subject=p2", "subject:Patient=p1", "patient=Patient/p1&code=2089-1",
    "value-quantity=gt9", "value-quantity=9.5", "value-quantity=lt8", "value-quantity=ge130",
    "value-quantity=ap150", "value-quantity=9.5|http://unitsofmeasure.org|%",
    "date=2026-03", "date=ge2026-03-10", "date=lt2026", "date=2026", "date=sa2026-01-01", "date=eb2026-03-10",
    "status=final", "status=amended,final", "value-quantity:missing=true", "value-quantity:missing=false",
    "code:text=lab", "_id=a,c", "combo-code-value-quantity=8480-6$gt140", "combo-code-value-quantity=8480-6$lt140",
    "component-code-value-quantity=http://loinc.org|8480-6$150",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_the_matcher_agrees_with_the_store(app: FastAPI, client: httpx.AsyncClient, query: str) -> None:
    server = app.state.server
    for resource in RESOURCES:
        written = await client.put(f"Observation/{resource['id']}", json=resource)
        assert written.status_code in (200, 201), written.text
    searched = await client.get(f"Observation?{query}&_count=100")
    assert searched.status_code == 200, searched.text
    by_store = sorted(e["resource"]["id"] for e in searched.json().get("entry", ()))
    where = parse_search(server.search, ("Observation",), parse_qsl(query)).query.where
    in_memory = sorted(r["id"] for r in RESOURCES if matches(where, r["id"], server.extractor.extract(r)))
    assert in_memory == by_store
