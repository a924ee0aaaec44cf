"""The SQLite sorted walk (a broad search sorted by a date, string, uri or token parameter or
`_lastUpdated` walks the sort index and stops when the page is full) answers exactly what the general
page query answers: the same resources in the same order on every page, following the cursors, with
values missing, repeated, tied, and resources deleted. The race that decides what is "broad" is made to
call everything broad here."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhirlead.search.extract import Extractor
from fhirlead.search.parse import parse_search
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.sqlite import SqliteStore, search_sql
from fhirlead.storage.sqlite import search as sqlite_search
from fhirlead.storage.sqlite.index import FOREVER, date_param, param_id
from tests.storage.older_schema import downgrade

REGISTRY = SearchRegistry.default()
EXTRACTOR = Extractor(REGISTRY)


def observation(number: int, rng: random.Random) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": f"o{number}",
                                "status": rng.choice(["final", "amended", "preliminary"]),
                                "code": {"coding": [{"system": "http://loinc.org", "code": rng.choice(["a", "b"])}]}}
    if number % 4 == 1:  # a second code, some under another system: a resource sorts by its lowest or highest
        resource["code"]["coding"].append({"system": "http://snomed.info/sct", "code": rng.choice(["a", "c", "0"])})
    shape = number % 5
    day = f"2026-0{1 + number % 9}-{10 + number % 17}"
    if shape == 0:
        pass  # no date: sorts last
    elif shape == 1:
        resource["effectivePeriod"] = {"start": day, "end": f"2026-1{number % 3}-0{1 + number % 8}"}
    elif shape == 2:
        resource["effectiveDateTime"] = "2026-03-03"  # many ties
    else:
        resource["effectiveDateTime"] = day
    return resource


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SqliteStore]:
    monkeypatch.setattr(search_sql, "PROBE_LIMITS", (2, 3, 4))  # every clause is "broad"
    monkeypatch.setattr(sqlite_search, "ROW_CLAUSE_PROBE", 3)
    opened = SqliteStore(str(tmp_path / "walk.db"))
    await opened.open()
    rng = random.Random(7)
    async with opened.unit_of_work() as uow:
        for number in range(140):
            resource = observation(number, rng)
            await uow.write("Observation", resource["id"], resource, EXTRACTOR.extract(resource), "PUT")
        for number in range(60):  # several dates each: a resource's sort value is its lowest or highest
            goal = {"resourceType": "Goal", "id": f"g{number}", "lifecycleStatus": "active",
                    "description": {"text": "walk"}, "subject": {"reference": "Patient/p"},
                    "target": [{"dueDate": f"2026-0{1 + (number * k) % 9}-1{k}"} for k in range(1 + number % 4)]}
            await uow.write("Goal", goal["id"], goal, EXTRACTOR.extract(goal), "PUT")
        for number in range(70):  # family names: several, none, tied, accented (a string sort's value is folded)
            names = [{"family": rng.choice(["Núñez", "nunez", "Smith", "Ødegaard", "Adams", "Zhou"]) + str(number % 4)}
                     for _ in range(number % 3)]
            patient = {"resourceType": "Patient", "id": f"p{number}", "gender": rng.choice(["female", "male"]),
                       **({"name": names} if names else {})}
            await uow.write("Patient", patient["id"], patient, EXTRACTOR.extract(patient), "PUT")
    async with opened.unit_of_work() as uow:
        for number in range(0, 140, 13):
            await uow.write("Observation", f"o{number}", None, None, "DELETE")
    yield opened
    await opened.close()


async def all_pages(store: SqliteStore, params: list[tuple[str, str]]) -> list[str]:
    type_ = ("Goal" if any("target-date" in value for _, value in params)
             else "Patient" if any("family" in value for _, value in params) else "Observation")
    query = parse_search(REGISTRY, (type_,), [*params, ("_count", "7")]).query
    ids: list[str] = []
    while True:
        page = await store.search(query)
        ids += [version.id for version in page.matches]
        if page.next_cursor is None:
            return ids
        query = parse_search(REGISTRY, (type_,), [*params, ("_count", "7"),
                                                          ("_cursor", page.next_cursor)]).query


def count_walks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """From now on, whether each page the search asked the walk for was answered by it."""
    calls: list[bool] = []
    original = sqlite_search._walk_sorted

    def counted(*args: Any) -> Any:
        found = original(*args)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(sqlite_search, "_walk_sorted", counted)
    return calls


@pytest.mark.parametrize("params", [
    [("_sort", "-date")], [("_sort", "date")], [("_sort", "-_lastUpdated")], [("_sort", "_lastUpdated")],
    [("date", "ge2026-03-01"), ("_sort", "-date")], [("status", "final"), ("_sort", "date")],
    [("code", "http://loinc.org|b"), ("status:not", "amended"), ("_sort", "-date")],
    [("date:missing", "false"), ("_sort", "-date")],
    [("_sort", "-target-date")], [("_sort", "target-date")],
    [("_sort", "family")], [("_sort", "-family")], [("gender", "female"), ("_sort", "family")],
    [("_sort", "code")], [("_sort", "-code")], [("_sort", "status")], [("_sort", "-status")],
    [("status", "final"), ("_sort", "-code")], [("code", "http://loinc.org|b"), ("_sort", "status")],
    # clauses on the sorted date itself: read on the walked rows (one date per Observation), or per
    # resource (several per Goal)
    [("date", "lt2026-04-01"), ("_sort", "-date")], [("date", "ge2026-05-01"), ("_sort", "date")],
    [("date", "le2026-03-03"), ("date", "gt2026-02"), ("_sort", "-date")],
    [("date", "lt2026-02,gt2026-07"), ("status", "final"), ("_sort", "-date")],
    [("date", "eb2026-05-01"), ("_sort", "-date")], [("date", "sa2026-02-01"), ("_sort", "date")],
    [("date", "ne2026-03-03"), ("_sort", "-date")], [("date", "le2026-05"), ("_sort", "-date")],
    [("date", "eq2026-03"), ("_sort", "-date")], [("date", "eq2026-03"), ("_sort", "date")],
    [("date", "ap2026-04-12"), ("_sort", "-date")], [("date", "ap2026-04-12"), ("_sort", "date")],
    [("date", "gt2026-04-15"), ("_sort", "date")], [("date", "ge2026-04-15,eb2026-02"), ("_sort", "date")],
    [("date", "lt2026-06"), ("date", "le2026-04-20"), ("_sort", "-date")],
    # bounds met exactly by the 2026-03-03 ties ([03-03, 03-04)): sa/eq ascending, eb/eq descending
    [("date", "sa2026-03-02"), ("_sort", "date")], [("date", "eq2026-03-03"), ("_sort", "date")],
    [("date", "eb2026-03-04"), ("_sort", "-date")], [("date", "eq2026-03-03"), ("_sort", "-date")],
    [("target-date", "lt2026-05-01"), ("_sort", "-target-date")],
    [("target-date", "ge2026-04"), ("_sort", "target-date")],
])
@pytest.mark.parametrize("budget", [5_000, 9])  # 9: the walk tried before the race often stops short
async def test_the_walk_pages_exactly_as_the_general_query(store: SqliteStore, params: list[tuple[str, str]],
                                                           budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_search, "WALK_BUDGET", budget)
    walked = await all_pages(store, params)
    calls = count_walks(monkeypatch)
    await all_pages(store, params)
    assert any(calls), "the walk answered no page: this case tests nothing"
    monkeypatch.setattr(sqlite_search, "_walk_sorted", lambda *args: None)
    general = await all_pages(store, params)
    assert walked == general
    assert len(set(walked)) == len(walked) > 0


@pytest.mark.parametrize("limit", [("TOKEN_SYSTEMS", 1), ("TOKEN_SCAN", 3)])
async def test_a_token_walk_over_its_limits_leaves_the_page_to_the_general_query(
        store: SqliteStore, limit: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A code under more systems than the walk merges, or a tie whose rows mostly sort elsewhere: the
    general query answers, and the pages are the same."""
    params = [("_sort", "code")]
    expected = await all_pages(store, params)
    monkeypatch.setattr(sqlite_search, limit[0], limit[1])
    calls = count_walks(monkeypatch)
    assert await all_pages(store, params) == expected
    assert calls and not all(calls)


async def test_a_date_given_several_values_for_one_resource_sorts_by_its_highest_under_a_clause(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Observation.date has one value per Observation here, so its clauses are read on the walked rows,
    until an Observation with a Timing of two events (one before the bound, one after) is written: from
    then on each resource is placed by its highest date and matched by any of them, as by the general query."""
    sp = param_id("Observation", "date")
    params = [("date", "lt2026-02-01"), ("_sort", "-date")]
    assert not (await store._on_reader(lambda conn: date_param(conn, sp)))[0]
    timed = {"resourceType": "Observation", "id": "timed", "status": "final", "code": {"text": "x"},
             "effectiveTiming": {"event": ["2026-01-05", "2026-11-20"]}}
    async with store.unit_of_work() as uow:
        await uow.write("Observation", "timed", timed, EXTRACTOR.extract(timed), "PUT")
    assert (await store._on_reader(lambda conn: date_param(conn, sp)))[0]
    calls = count_walks(monkeypatch)
    walked = await all_pages(store, params)
    assert any(calls)
    monkeypatch.setattr(sqlite_search, "_walk_sorted", lambda *args: None)
    assert walked == await all_pages(store, params)
    assert walked[0] == "timed"  # 2026-11-20, the highest date of every match


async def test_a_narrow_clause_is_walked_from_its_bound_or_else_left_to_the_general_query(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a bound on where its rows are, a narrow clause on the sorted date is walked from there; once an
    open Period leaves no bound, a clause matching under ROW_CLAUSE_PROBE resources goes to the general query."""
    params = [("date", "lt2026-04-01"), ("_sort", "-date")]
    expected = await all_pages(store, params)
    monkeypatch.setattr(sqlite_search, "ROW_CLAUSE_PROBE", 1_000)
    calls = count_walks(monkeypatch)
    assert await all_pages(store, params) == expected and any(calls)
    monkeypatch.undo()
    monkeypatch.setattr(search_sql, "PROBE_LIMITS", (2, 3, 4))
    open_ended = {"resourceType": "Observation", "id": "open", "status": "final", "code": {"text": "x"},
                  "effectivePeriod": {"start": "2026-05-01"}}
    async with store.unit_of_work() as uow:
        await uow.write("Observation", "open", open_ended, EXTRACTOR.extract(open_ended), "PUT")
    expected = await all_pages(store, params)
    monkeypatch.setattr(sqlite_search, "ROW_CLAUSE_PROBE", 1_000)
    calls = count_walks(monkeypatch)
    assert await all_pages(store, params) == expected
    assert calls and not any(calls)


async def test_the_widest_value_bounds_the_walk(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk starts where a row meeting the clause can be: under `lt`'s bound plus the widest value
    one Observation.date ever had. A later, wider Period moves that start, so it is still found."""
    sp = param_id("Observation", "date")
    several, span = await store._on_reader(lambda conn: date_param(conn, sp))
    assert not several and 240 * 86_400_000_000 < span < 320 * 86_400_000_000  # the fixture's widest Period
    params = [("date", "lt2026-02-01"), ("_sort", "-date")]
    long = {"resourceType": "Observation", "id": "long", "status": "final", "code": {"text": "x"},
            "effectivePeriod": {"start": "2025-12-01", "end": "2027-06-30"}}
    async with store.unit_of_work() as uow:
        await uow.write("Observation", "long", long, EXTRACTOR.extract(long), "PUT")
    assert (await store._on_reader(lambda conn: date_param(conn, sp)))[1] > 570 * 86_400_000_000
    calls = count_walks(monkeypatch)
    walked = await all_pages(store, params)
    assert any(calls) and walked[0] == "long"
    monkeypatch.setattr(sqlite_search, "_walk_sorted", lambda *args: None)
    assert walked == await all_pages(store, params)


async def test_a_version_3_store_learns_its_date_parameters(tmp_path: Path) -> None:
    """Opening a store written before `date_params` existed reads them from its index rows."""
    path = str(tmp_path / "v3.db")
    old = SqliteStore(path)
    await old.open()
    goal = {"resourceType": "Goal", "id": "g", "lifecycleStatus": "active", "description": {"text": "x"},
            "subject": {"reference": "Patient/p"}, "target": [{"dueDate": "2026-01-01"}, {"dueDate": "2026-02-01"}],
            "startDate": "2025-03"}
    encounter = {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"},
                 "period": {"end": "2026-01-01"}}  # open at its start
    async with old.unit_of_work() as uow:
        await uow.write("Goal", "g", goal, EXTRACTOR.extract(goal), "PUT")
        await uow.write("Encounter", "e", encounter, EXTRACTOR.extract(encounter), "PUT")
    await old.close()
    downgrade(path, "date_params", 3)
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded._on_reader(lambda conn: date_param(conn, param_id("Goal", "target-date"))) == (
            True, 86_400_000_000)
        assert await upgraded._on_reader(lambda conn: date_param(conn, param_id("Goal", "start-date"))) == (
            False, 31 * 86_400_000_000)
        assert await upgraded._on_reader(lambda conn: date_param(conn, param_id("Goal", "lifecycle-status"))) == (
            False, 0)
        assert await upgraded._on_reader(lambda conn: date_param(conn, param_id("Encounter", "date"))) == (
            False, FOREVER)
    finally:
        await upgraded.close()
