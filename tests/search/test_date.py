"""date parameters: partial dates as ranges, time zones, Period/Timing/instant, every prefix, missing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhirlead.search.types.date import MAX_US, parse_range
from tests.search.conftest import expect_matches, match_ids, search, seed

DAY = 86_400_000_000


def obs(id_: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        **value,
    }


FIXTURES = [
    obs("o1", effectiveDateTime="2020-03-15T10:00:00Z"),
    obs("o2", effectiveDateTime="2020-03-15T23:30:00-05:00"),  # 2020-03-16T04:30Z
    obs("o3", effectivePeriod={"start": "2019-12-01", "end": "2020-01-15"}),
    obs("o4", effectivePeriod={"start": "2021-06-01T00:00:00Z"}),  # open end
    obs("o5", effectiveDateTime="2020"),
    obs("o6"),
    obs("o7", effectiveTiming={"event": ["2018-05-01T08:00:00Z", "2018-05-02T08:00:00Z"]}),
    obs("o8", effectiveInstant="2022-01-01T00:00:00.123Z"),
]


@pytest.fixture
async def dated(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


def test_partial_dates_are_ranges() -> None:
    year = parse_range("2020")
    assert year is not None and year[1] - year[0] == 366 * DAY  # leap year
    assert parse_range("2021-02") == (parse_range("2021-02-01")[0], parse_range("2021-03-01")[0])
    assert parse_range("2020-03-15T10:00") == (
        parse_range("2020-03-15T10:00:00Z")[0],
        parse_range("2020-03-15T10:01:00Z")[0],
    )
    low, high = parse_range("2020-03-15T10:00:00.5Z")
    assert high - low == 100_000  # a tenth of a second
    assert parse_range("2020-03-15T11:00:00+01:00") == parse_range("2020-03-15T10:00:00Z")
    assert parse_range("2020-03-15T10:00:00-02:30")[0] == parse_range("2020-03-15T12:30:00Z")[0]
    assert parse_range("9999")[1] == MAX_US
    for bad in ("2020-13", "2020-02-30", "20", "2020-1-1", "2020-01-01T25:00", "2020-01-01T10:00Z+"):
        assert parse_range(bad) is None, bad


CASES_TEST_DATE_PREFIXES = [
    ("date=2020-03-15", {"o1"}),
    ("date=2020-03-16", {"o2"}),
    ("date=eq2020", {"o1", "o2", "o5"}),
    ("date=ne2020", {"o3", "o4", "o7", "o8"}),
    ("date=gt2020", {"o4", "o8"}),
    ("date=lt2020", {"o3", "o7"}),
    ("date=ge2020", {"o1", "o2", "o4", "o5", "o8"}),
    ("date=le2020", {"o1", "o2", "o3", "o5", "o7"}),
    ("date=sa2020-01-01", {"o1", "o2", "o4", "o8"}),
    ("date=eb2020-01-01", {"o7"}),
    ("date=ap2020-03-15", {"o1", "o2", "o3", "o5"}),
    ("date=2020-03-15T10:00:00Z", {"o1"}),
    ("date=2020-03-15T11:00:00%2B01:00", {"o1"}),  # same instant written in another zone
    ("date=2020-03-15T10:00", {"o1"}),  # minute precision, server zone (UTC)
    ("date=2020-03-16T04:30:00Z", {"o2"}),
    ("date=2018-05-01,2022", {"o7", "o8"}),  # OR; any Timing event matches
    ("date=ge2020&date=lt2021", {"o1", "o2", "o5"}),  # AND
    ("date=gt2021-06-01T00:00:00Z", {"o4", "o8"}),
    ("date:missing=true", {"o6"}),
    ("date:missing=false", {"o1", "o2", "o3", "o4", "o5", "o7", "o8"}),
]


async def test_date_prefixes(dated: httpx.AsyncClient) -> None:
    await expect_matches(dated, "Observation?", CASES_TEST_DATE_PREFIXES)


async def test_an_approximate_date_search_pages_through(dated: httpx.AsyncClient) -> None:
    """`ap` widens by a distance from now: the next page (its cursor bound to the search's ranges) must
    see the same ranges as the first, a moment later."""
    found, url = [], "Observation?date=ap2020-03-15&_count=1"
    while url:
        response = await dated.get(url)
        assert response.status_code == 200, response.text
        found += [entry["resource"]["id"] for entry in response.json().get("entry", [])]
        url = next((link["url"] for link in response.json()["link"] if link["relation"] == "next"), "")
    assert sorted(found) == ["o1", "o2", "o3", "o5"]


async def test_last_updated(dated: httpx.AsyncClient) -> None:
    everything = {f"o{n}" for n in range(1, 9)}
    assert await match_ids(dated, "Observation?_lastUpdated=gt2000") == everything
    assert await match_ids(dated, "Observation?_lastUpdated=lt2000-01-01") == set()
    bundle = await search(dated, "Observation?_id=o1")
    stamp = bundle["entry"][0]["resource"]["meta"]["lastUpdated"]
    assert await match_ids(dated, f"Observation?_lastUpdated={stamp.replace('+', '%2B')}") == {"o1"}
    assert "o1" in await match_ids(dated, f"Observation?_lastUpdated=ge{stamp[:10]}")


@pytest.mark.parametrize("value", ["2020-13", "xx2020", "2020-02-30", "ge", "2020-01-01T10", "tomorrow"])
async def test_malformed_dates_are_400(client: httpx.AsyncClient, value: str) -> None:
    outcome = await search(client, f"Observation?date={value}", status=400)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid" and "date" in outcome["issue"][0]["diagnostics"]


async def test_modifier_on_date_is_400(client: httpx.AsyncClient) -> None:
    await search(client, "Observation?date:exact=2020", status=400)
