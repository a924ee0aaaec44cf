"""_sort (several keys, descending, missing values), _count, keyset paging while data changes, cursors,
_total, _summary and _elements."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.search.conftest import ids, link, search, seed


def patient(id_: str, family: str | None, birth: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": id_,
        "gender": "female",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
    }
    if family:
        resource["name"] = [{"family": family}]
    if birth:
        resource["birthDate"] = birth
    return resource


FIXTURES = [
    patient("a", "Young", "1990-05-01"),
    patient("b", "Able", "1950-01-01"),
    patient("c", "Young", "1980-02-02"),
    patient("d", "Baker", None),
    patient("e", None, "1970"),
    patient("f", "Able", "1960-12-31"),
    patient("g", "Cole", "2001-07-07"),
]


@pytest.fixture
async def people(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


def order(bundle: dict[str, Any]) -> list[str]:
    return [entry.split("/")[1] for entry in ids(bundle)]


async def walk(client: httpx.AsyncClient, url: str, relation: str = "next") -> list[list[str]]:
    pages = []
    bundle = await search(client, url)
    while True:
        pages.append(order(bundle))
        following = link(bundle, relation)
        if following is None:
            return pages
        bundle = await search(client, following)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("birthdate", ["b", "f", "e", "c", "a", "g", "d"]),  # missing last
        ("-birthdate", ["g", "a", "c", "e", "f", "b", "d"]),  # missing last in descending order too
        ("family,-birthdate", ["f", "b", "d", "g", "a", "c", "e"]),
        ("-family,birthdate", ["c", "a", "g", "d", "b", "f", "e"]),
        ("_id", ["a", "b", "c", "d", "e", "f", "g"]),
        ("-_id", ["g", "f", "e", "d", "c", "b", "a"]),
        ("gender,_id", ["a", "b", "c", "d", "e", "f", "g"]),  # ties broken by the next key
    ],
)
async def test_sort(people: httpx.AsyncClient, sort: str, expected: list[str]) -> None:
    assert order(await search(people, f"Patient?_sort={sort}")) == expected
    pages = await walk(people, f"Patient?_sort={sort}&_count=3")
    assert pages == [expected[0:3], expected[3:6], expected[6:7]]


async def test_previous_links_walk_back(people: httpx.AsyncClient) -> None:
    expected = ["b", "f", "e", "c", "a", "g", "d"]
    bundle = await search(people, "Patient?_sort=birthdate&_count=2")
    while (following := link(bundle, "next")) is not None:
        bundle = await search(people, following)
    assert order(bundle) == ["d"]
    back = []
    while (previous := link(bundle, "previous")) is not None:
        bundle = await search(people, previous)
        back.insert(0, order(bundle))
    assert back == [expected[0:2], expected[2:4], expected[4:6]]
    assert link(bundle, "previous") is None and link(bundle, "next") is not None


async def test_last_updated_sort(people: httpx.AsyncClient) -> None:
    assert order(await search(people, "Patient?_sort=-_lastUpdated")) == list("gfedcba")
    await seed(people, patient("c", "Young", "1980-02-02"))  # updated last
    assert order(await search(people, "Patient?_sort=-_lastUpdated&_count=2")) == ["c", "g"]


async def test_paging_stays_correct_while_data_changes(people: httpx.AsyncClient) -> None:
    first = await search(people, "Patient?_sort=_id&_count=3")
    assert order(first) == ["a", "b", "c"]
    await seed(people, patient("aa", "New", None), patient("cc", "New", None))  # before and after the cursor
    assert (await people.delete("Patient/e")).status_code in (200, 204)  # on the next page
    second = await search(people, link(first, "next"))
    assert order(second) == ["cc", "d", "f"]
    third = await search(people, link(second, "next"))
    assert order(third) == ["g"] and link(third, "next") is None


async def test_default_order_pages_by_creation(people: httpx.AsyncClient) -> None:
    pages = await walk(people, "Patient?_count=2")
    assert [x for page in pages for x in page] == list("abcdefg")
    assert [len(page) for page in pages] == [2, 2, 2, 1]


@pytest.mark.parametrize("cursor", ["garbage", "AAAA.BBBB", "", "W10.x"])
async def test_invalid_cursors_are_400(people: httpx.AsyncClient, cursor: str) -> None:
    outcome = await search(people, f"Patient?_count=2&_cursor={cursor}", status=400)
    assert outcome["issue"][0]["diagnostics"].startswith("Invalid or expired paging cursor")


async def test_tampered_or_foreign_cursor_is_400(people: httpx.AsyncClient) -> None:
    following = link(await search(people, "Patient?_sort=family&_count=2"), "next")
    params = dict(parse_qsl(urlsplit(following).query))
    cursor = params["_cursor"]
    body, mac = cursor.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    await search(people, f"Patient?_sort=family&_count=2&_cursor={tampered}.{mac}", status=400)
    await search(people, f"Patient?_sort=birthdate&_count=2&_cursor={cursor}", status=400)
    await search(people, f"Patient?_sort=family&gender=male&_count=2&_cursor={cursor}", status=400)
    assert (await people.get(following)).status_code == 200


async def test_count_limits_and_links(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_count=5000&gender=female")
    self_link = link(bundle, "self")
    assert "_count=1000" in self_link and "gender=female" in self_link
    assert len(ids(bundle)) == 7
    await search(people, "Patient?_count=-1", status=400)
    await search(people, "Patient?_count=ten", status=400)


async def test_total_modes(people: httpx.AsyncClient) -> None:
    assert (await search(people, "Patient?_count=2&_total=accurate"))["total"] == 7
    assert (await search(people, "Patient?_count=2&_total=estimate"))["total"] == 7
    assert "total" not in await search(people, "Patient?_count=2&_total=none")
    assert "total" not in await search(people, "Patient?_count=2")  # unknown without a count
    assert (await search(people, "Patient?family=young"))["total"] == 2  # one page: known for free
    await search(people, "Patient?_total=all", status=400)


async def test_summary_count(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_summary=count&family=young")
    assert bundle["total"] == 2 and "entry" not in bundle
    bundle = await search(people, "Patient?_count=0")
    assert bundle["total"] == 7 and "entry" not in bundle


async def test_summary_and_elements_subset_and_tag(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_id=a&_summary=true")
    resource = bundle["entry"][0]["resource"]
    assert "text" not in resource and resource["name"] == [{"family": "Young"}]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
    } in resource["meta"]["tag"]
    resource = (await search(people, "Patient?_id=a&_elements=birthDate"))["entry"][0]["resource"]
    assert resource["birthDate"] == "1990-05-01" and "name" not in resource and "gender" not in resource
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    resource = (await search(people, "Patient?_id=a&_summary=data"))["entry"][0]["resource"]
    assert "text" not in resource and resource["gender"] == "female"
    resource = (await search(people, "Patient?_id=a&_summary=text"))["entry"][0]["resource"]
    assert "text" in resource and "birthDate" not in resource
    resource = (await search(people, "Patient?_id=a&_summary=false"))["entry"][0]["resource"]
    assert "text" in resource and "tag" not in resource["meta"]
    await search(people, "Patient?_summary=maybe", status=400)


@pytest.mark.parametrize("sort", ["nope", "-", "code-value-quantity"])
async def test_bad_sorts(client: httpx.AsyncClient, sort: str) -> None:
    bundle = await client.get(f"Observation?_sort={sort}", headers={"prefer": "handling=strict"})
    assert bundle.status_code == 400
