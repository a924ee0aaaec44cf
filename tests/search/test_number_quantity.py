"""number and quantity parameters: implicit precision, every prefix, Range values, UCUM conversion."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhirlead.search.entries import IndexEntries
from fhirlead.search.types import number, quantity
from tests.search.conftest import expect_matches, search, seed

UCUM = "http://unitsofmeasure.org"


def risk(id_: str, **probability: Any) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": id_,
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "prediction": [probability],
    }


def obs(id_: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": value,
    }


FIXTURES = [
    {"resourceType": "Patient", "id": "p"},
    risk("r1", probabilityDecimal=0.5),
    risk("r2", probabilityDecimal=0.55),
    risk("r3", probabilityRange={"low": {"value": 0.2}, "high": {"value": 0.4}}),
    risk("r4", qualitativeRisk={"text": "none"}),
    obs("q1", {"value": 5.4, "unit": "mg", "system": UCUM, "code": "mg"}),
    obs("q2", {"value": 0.0054, "unit": "g", "system": UCUM, "code": "g"}),
    obs("q3", {"value": 5.4, "unit": "mg"}),
    obs("q4", {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}),
    obs("q5", {"value": 100, "unit": "beats", "system": "http://example.org/units", "code": "beats"}),
]


@pytest.fixture
async def measured(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


def test_precision_of_search_values() -> None:
    assert number.decimal_range("100", "n") == (100.0, 99.5, 100.5)
    assert number.decimal_range("100.00", "n") == (100.0, 99.995, 100.005)
    assert number.decimal_range("1e2", "n") == (100.0, 50.0, 150.0)
    assert number.decimal_range("-0.5", "n") == (-0.5, -0.55, -0.45)


CASES_TEST_NUMBER_PREFIXES = [
    ("probability=0.5", {"r1"}),
    ("probability=0.50", {"r1"}),
    ("probability=0.55", {"r2"}),
    ("probability=ne0.5", {"r2", "r3"}),
    ("probability=gt0.5", {"r2"}),
    ("probability=lt0.3", {"r3"}),
    ("probability=ge0.55", {"r2"}),
    ("probability=le0.2", {"r3"}),
    ("probability=sa0.4", {"r1", "r2"}),
    ("probability=eb0.5", {"r3"}),
    ("probability=ap0.5", {"r1", "r2"}),
    ("probability=0.3", set()),  # the Range [0.2, 0.4] is not inside [0.25, 0.35)
    ("probability=gt0.3", {"r1", "r2", "r3"}),
    ("probability:missing=true", {"r4"}),
]


async def test_number_prefixes(measured: httpx.AsyncClient) -> None:
    await expect_matches(measured, "RiskAssessment?", CASES_TEST_NUMBER_PREFIXES)


CASES_TEST_QUANTITY_SEARCH = [
    (f"value-quantity=5.4|{UCUM}|mg", {"q1", "q2"}),  # 0.0054 g is 5.4 mg
    (f"value-quantity=5.4|{UCUM}|ug", set()),
    (f"value-quantity=5400|{UCUM}|ug", {"q1", "q2"}),
    ("value-quantity=5.4||mg", {"q1", "q3"}),  # code or unit, any system
    ("value-quantity=5.4", {"q1", "q3"}),  # any unit; canonical copies never match a unit-less search
    (f"value-quantity=gt5|{UCUM}|mg", {"q1", "q2"}),
    (f"value-quantity=lt1|{UCUM}|g", {"q1", "q2"}),
    (f"value-quantity=ap5|{UCUM}|mg", {"q1", "q2"}),
    (f"value-quantity=ge120|{UCUM}|mm[Hg]", {"q4"}),
    ("value-quantity=100|http://example.org/units|beats", {"q5"}),
    ("value-quantity=100|http://example.org/other|beats", set()),
    ("value-quantity=gt100,lt1", {"q2", "q4"}),
]


async def test_quantity_search(measured: httpx.AsyncClient) -> None:
    await expect_matches(measured, "Observation?", CASES_TEST_QUANTITY_SEARCH)


@pytest.mark.parametrize(
    "query", ["probability=abc", "probability=gt", "probability=1..2", "probability=0x10"]
)
async def test_bad_numbers_are_400(client: httpx.AsyncClient, query: str) -> None:
    await search(client, f"RiskAssessment?{query}", status=400)


@pytest.mark.parametrize("query", ["value-quantity=5.4|mg", "value-quantity=x|a|b", "value-quantity=5||"])
async def test_bad_quantities_are_400(client: httpx.AsyncClient, query: str) -> None:
    await search(client, f"Observation?{query}", status=400)


def test_range_and_money_entries() -> None:
    out = IndexEntries()
    quantity.CONVERTERS["Range"]("k", {"low": {"value": 1, "system": UCUM, "code": "g"}}, out)
    quantity.CONVERTERS["Money"]("m", {"value": 12.5, "currency": "USD"}, out)
    assert ("k", UCUM, "g", "", 1.0, float("inf")) in out.quantity
    assert ("m", "urn:iso:std:iso:4217", "USD", "USD", 12.5, 12.5) in out.quantity
