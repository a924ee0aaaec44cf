"""uri parameters (:below, :above) and composite parameters (components from the same repetition)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.search.conftest import expect_matches, search, seed

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def component(code: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
    }


FIXTURES = [
    {"resourceType": "ValueSet", "id": "v1", "status": "active", "url": "http://acme.org/fhir/ValueSet/a"},
    {"resourceType": "ValueSet", "id": "v2", "status": "active", "url": "http://acme.org/fhir/ValueSet/a/b"},
    {"resourceType": "ValueSet", "id": "v3", "status": "active", "url": "http://other.org/ValueSet/a"},
    {
        "resourceType": "Observation",
        "id": "bp1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [component("8480-6", 120), component("8462-4", 80)],
    },
    {
        "resourceType": "Observation",
        "id": "bp2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [component("8480-6", 150), component("8462-4", 95)],
    },
    {
        "resourceType": "Observation",
        "id": "hr",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "valueQuantity": {"value": 70, "unit": "/min", "system": UCUM, "code": "/min"},
    },
]


@pytest.fixture
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


CASES_TEST_URI_SEARCH = [
    ("url=http://acme.org/fhir/ValueSet/a", {"v1"}),
    ("url:below=http://acme.org/fhir", {"v1", "v2"}),
    ("url:below=http://acme.org/fhir/ValueSet/a", {"v1", "v2"}),
    ("url:above=http://acme.org/fhir/ValueSet/a/b/c", {"v1", "v2"}),
    ("url:above=http://acme.org/fhir/ValueSet/a", {"v1"}),
    ("url=http://acme.org/fhir/ValueSet", set()),
]


async def test_uri_search(loaded: httpx.AsyncClient) -> None:
    await expect_matches(loaded, "ValueSet?", CASES_TEST_URI_SEARCH)


CASES_TEST_COMPOSITE_SEARCH = [
    (f"component-code-value-quantity={LOINC}|8480-6$gt140", {"bp2"}),
    ("component-code-value-quantity=8480-6$lt100", set()),  # only the diastolic is < 100: another component
    ("component-code-value-quantity=8462-4$lt90", {"bp1"}),
    ("component-code-value-quantity=8480-6$gt140,8462-4$lt90", {"bp1", "bp2"}),
    ("component-code-value-quantity=8480-6$gt100&component-code-value-quantity=8462-4$gt90", {"bp2"}),
    (f"code-value-quantity={LOINC}|8867-4$70", {"hr"}),
    (f"code-value-quantity=8867-4$70|{UCUM}|/min", {"hr"}),
    ("code-value-quantity=8867-4$gt80", set()),
    ("combo-code-value-quantity=8480-6$150", {"bp2"}),
    ("combo-code-value-quantity=8867-4$70", {"hr"}),
    ("code-value-quantity:missing=false", {"hr"}),
]


async def test_composite_search(loaded: httpx.AsyncClient) -> None:
    await expect_matches(loaded, "Observation?", CASES_TEST_COMPOSITE_SEARCH)


@pytest.mark.parametrize(
    "query",
    [
        "code-value-quantity=8480-6",
        "code-value-quantity=a$b$c",
        "code-value-quantity=8480-6$abc",
        "code-value-quantity:exact=8480-6$1",
    ],
)
async def test_malformed_composites_are_400(client: httpx.AsyncClient, query: str) -> None:
    await search(client, f"Observation?{query}", status=400)
