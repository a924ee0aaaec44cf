"""string parameters: folded starts-with by default, :exact, :contains, HumanName/Address parts, escaping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.search.conftest import expect_matches, match_ids, search, seed


def patient(id_: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, **fields}


FIXTURES = [
    patient(
        "p1",
        name=[{"family": "Chalmers", "given": ["Peter", "James"]}],
        address=[{"line": ["534 Erewhon St"], "city": "Springfield", "state": "Vic", "postalCode": "3999"}],
    ),
    patient(
        "p2", name=[{"family": "Müller", "given": ["Zoë"]}], address=[{"city": "Genève", "country": "CH"}]
    ),
    patient("p3", name=[{"family": "Peters", "given": ["Ann"]}]),
    patient("p4", name=[{"text": "Dr. Jane O'Neil"}]),
    patient("p5", gender="unknown"),
    patient("p6", name=[{"family": "O,Brien", "given": ["Seán"]}]),
]


@pytest.fixture
async def people(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


CASES_TEST_STRING_SEARCH = [
    ("name=peter", {"p1", "p3"}),
    ("name=PETER", {"p1", "p3"}),
    ("name=muller", {"p2"}),
    ("name=Müll", {"p2"}),
    ("name=zoe", {"p2"}),
    ("name=ZOË", {"p2"}),
    ("name=dr", {"p4"}),
    ("name=jane", set()),  # starts-with on each part: the text starts with "Dr."
    ("name=peter james", {"p1"}),
    ("name=zoe,ann", {"p2", "p3"}),
    ("name=peter&name=chal", {"p1"}),
    ("name:exact=Peter", {"p1"}),
    ("name:exact=peter", set()),
    ("name:exact=Müller", {"p2"}),
    ("name:exact=Muller", set()),
    ("name:contains=alm", {"p1"}),
    ("name:contains=LLER", {"p2"}),
    ("name:contains=%25", set()),  # a literal %, not a wildcard
    ("family=chal", {"p1"}),
    ("given=ja", {"p1"}),
    ("given=sean", {"p6"}),
    ("name=O\\,Brien", {"p6"}),
    ("name=O\\,B,zoe", {"p2", "p6"}),
    ("address-city=spring", {"p1"}),
    ("address=geneve", {"p2"}),
    ("address=534 erewhon", {"p1"}),
    ("address-postalcode=3999", {"p1"}),
    ("address-country=ch", {"p2"}),
    ("name:missing=true", {"p5"}),
    ("name:missing=false", {"p1", "p2", "p3", "p4", "p6"}),
]


async def test_string_search(people: httpx.AsyncClient) -> None:
    await expect_matches(people, "Patient?", CASES_TEST_STRING_SEARCH)


async def test_unsupported_string_modifier_is_400(client: httpx.AsyncClient) -> None:
    outcome = await search(client, "Patient?name:below=pet", status=400)
    assert "below" in outcome["issue"][0]["diagnostics"]


async def test_missing_with_bad_value_is_400(client: httpx.AsyncClient) -> None:
    await search(client, "Patient?name:missing=maybe", status=400)


async def test_update_and_delete_keep_the_index_exact(people: httpx.AsyncClient) -> None:
    await seed(people, patient("p1", name=[{"family": "Smith"}]))
    assert await match_ids(people, "Patient?name=chalmers") == set()
    assert await match_ids(people, "Patient?name=smith") == {"p1"}
    assert (await people.delete("Patient/p3")).status_code in (200, 204)
    assert await match_ids(people, "Patient?name=peter") == set()
