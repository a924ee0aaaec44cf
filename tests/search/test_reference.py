"""reference parameters: id, Type/id, this server's absolute URL, external URLs, :Type, :identifier,
canonicals with |version, :missing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.search.conftest import BASE, expect_matches, search, seed


def obs(id_: str, subject: dict[str, Any] | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "x"},
    }
    if subject is not None:
        resource["subject"] = subject
    return resource


FIXTURES = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
    obs("o1", {"reference": "Patient/p1"}),
    obs("o2", {"reference": f"{BASE}/Patient/p1"}),
    obs("o3", {"reference": "http://other.org/fhir/Patient/p1"}),
    obs("o4", {"reference": "Group/g1"}),
    obs("o5", {"identifier": {"system": "urn:mrn", "value": "42"}}),
    obs("o6", None),
    obs("o7", {"reference": "Patient/p1/_history/1"}),
    {
        "resourceType": "QuestionnaireResponse",
        "id": "qr1",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/intake|1.0",
    },
    {
        "resourceType": "QuestionnaireResponse",
        "id": "qr2",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/intake|2.0",
    },
]


@pytest.fixture
async def linked(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


CASES_TEST_REFERENCE_FORMS = [
    ("subject=Patient/p1", {"o1", "o2", "o7"}),
    ("subject=p1", {"o1", "o2", "o7"}),
    (f"subject={BASE}/Patient/p1", {"o1", "o2", "o7"}),
    ("subject=http://other.org/fhir/Patient/p1", {"o3"}),
    ("subject:Patient=p1", {"o1", "o2", "o7"}),
    ("subject:Group=g1", {"o4"}),
    ("subject:Group=p1", set()),
    ("subject=Group/g1,Patient/p1", {"o1", "o2", "o4", "o7"}),
    ("patient=p1", {"o1", "o2", "o7"}),
    ("patient=g1", set()),  # patient only follows references to Patients
    ("subject:identifier=urn:mrn|42", {"o5"}),
    ("subject:identifier=42", {"o5"}),
    ("subject:missing=true", {"o5", "o6"}),
]


async def test_reference_forms(linked: httpx.AsyncClient) -> None:
    await expect_matches(linked, "Observation?", CASES_TEST_REFERENCE_FORMS)


CASES_TEST_CANONICAL_REFERENCES = [
    ("questionnaire=http://example.org/Questionnaire/intake", {"qr1", "qr2"}),
    ("questionnaire=http://example.org/Questionnaire/intake|1.0", {"qr1"}),
    ("questionnaire=http://example.org/Questionnaire/intake|3.0", set()),
]


async def test_canonical_references(linked: httpx.AsyncClient) -> None:
    await expect_matches(linked, "QuestionnaireResponse?", CASES_TEST_CANONICAL_REFERENCES)


@pytest.mark.parametrize(
    "query", ["subject=Foo/bar/baz", "subject:Unknown=p1", "subject:Group=Patient/p1", "subject:above=p1"]
)
async def test_bad_references_are_400(client: httpx.AsyncClient, query: str) -> None:
    await search(client, f"Observation?{query}", status=400)
