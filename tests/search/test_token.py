"""token parameters: system|code forms, :not, :text, :of-type, boolean, Identifier, ContactPoint, meta."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.search.conftest import expect_matches, search, seed

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def obs(id_: str, *codings: dict[str, str], text: str | None = None, **extra: Any) -> dict[str, Any]:
    code: dict[str, Any] = {"coding": list(codings)}
    if text:
        code["text"] = text
    return {"resourceType": "Observation", "id": id_, "status": "final", "code": code, **extra}


FIXTURES = [
    obs(
        "w1",
        {"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"},
        text="Weight",
        category=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
    ),
    obs("w2", {"system": "http://example.org/local", "code": "29463-7"}),
    obs("w3", {"code": "29463-7"}),  # a coding without a system
    obs("h1", {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}, status="amended"),
    {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "gender": "male",
        "identifier": [
            {
                "system": "urn:mrn",
                "value": "12345",
                "type": {"coding": [{"system": V2, "code": "MR"}], "text": "Medical record number"},
            },
            {"system": "urn:ssn", "value": "999-99-9999"},
        ],
        "telecom": [{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "a@example.org"}],
        "meta": {
            "tag": [{"system": "urn:tags", "code": "vip"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "profile": ["http://example.org/StructureDefinition/aco-patient"],
            "source": "urn:ehr:epic",
        },
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "active": False,
        "gender": "female",
        "identifier": [{"system": "urn:mrn", "value": "67890"}],
        "telecom": [{"system": "phone", "value": "555-9999"}],
    },
    {"resourceType": "Patient", "id": "p3"},
]


@pytest.fixture
async def coded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


CASES_TEST_OBSERVATION_TOKENS = [
    ("code=http://loinc.org|29463-7", {"w1"}),
    ("code=29463-7", {"w1", "w2", "w3"}),
    ("code=|29463-7", {"w3"}),
    ("code=http://loinc.org|", {"w1", "h1"}),
    ("code=http://loinc.org|29463-7,http://loinc.org|8867-4", {"w1", "h1"}),
    ("code:not=29463-7", {"h1"}),
    ("code:not=http://loinc.org|29463-7", {"w2", "w3", "h1"}),
    ("code:text=body", {"w1"}),
    ("code:text=WEIGHT", {"w1"}),
    ("code:text=heart", {"h1"}),
    ("category=vital-signs", {"w1"}),
    ("category:missing=true", {"w2", "w3", "h1"}),
    ("status=amended", {"h1"}),
    ("status=final,amended&code=http://loinc.org|", {"w1", "h1"}),
]


async def test_observation_tokens(coded: httpx.AsyncClient) -> None:
    await expect_matches(coded, "Observation?", CASES_TEST_OBSERVATION_TOKENS)


CASES_TEST_PATIENT_TOKENS = [
    ("active=true", {"p1"}),
    ("active=false", {"p2"}),
    ("gender=male", {"p1"}),
    ("gender:not=male", {"p2", "p3"}),  # :not includes resources without a value
    ("identifier=urn:mrn|12345", {"p1"}),
    ("identifier=12345", {"p1"}),
    ("identifier=urn:mrn|", {"p1", "p2"}),
    ("identifier=urn:ssn|12345", set()),
    ("identifier:of-type=" + V2 + "|MR|12345", {"p1"}),
    ("identifier:of-type=" + V2 + "|MR|67890", set()),
    ("identifier:text=medical", {"p1"}),
    ("telecom=phone|555-1234", {"p1"}),
    ("telecom=555-9999", {"p2"}),
    ("phone=555-1234", {"p1"}),
    ("email=a@example.org", {"p1"}),
    ("phone=a@example.org", set()),
    ("_tag=urn:tags|vip", {"p1"}),
    ("_security=R", {"p1"}),
    ("_profile=http://example.org/StructureDefinition/aco-patient", {"p1"}),
    ("_source=urn:ehr:epic", {"p1"}),
    ("_id=p1,p3", {"p1", "p3"}),
    ("identifier:missing=true", {"p3"}),
]


async def test_patient_tokens(coded: httpx.AsyncClient) -> None:
    await expect_matches(coded, "Patient?", CASES_TEST_PATIENT_TOKENS)


@pytest.mark.parametrize(
    "query",
    [
        "code:in=http://example.org/vs",
        "code:below=123",
        "code:of-type=a|b",
        "code=a|b|c",
        "code=|",
        "identifier:of-type=sys|MR",
    ],
)
async def test_unsupported_modifiers_and_malformed_tokens_are_400(
    client: httpx.AsyncClient, query: str
) -> None:
    outcome = await search(client, f"Observation?{query}", status=400)
    assert outcome["resourceType"] == "OperationOutcome"
