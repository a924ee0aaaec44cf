"""`UnitOfWork.reindex`: new index entries for a resource's current version, without a new version (how a
SearchParameter defined later reaches what was written before it); a Group's head and each of its
members get theirs under their own ranges, so member changes still touch only their members."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

import orjson
import pytest

from fhirlead import fhirjson
from fhirlead.search.entries import IndexEntries
from fhirlead.search.extract import Extractor
from fhirlead.search.query import Clause, ReferenceMatch, SearchQuery, SortKey, StringMatch
from fhirlead.search.registry import SearchRegistry
from fhirlead.search.types import date
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store, sqlite_path
from fhirlead.storage.port import Store

BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
BORN_IN = {"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/born-in", "code": "born-in",
           "base": ["Patient"], "type": "string",
           "expression": f"Patient.extension.where(url='{BIRTH_PLACE}').value.as(Address).city"}
MEMBER_SINCE = {"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/member-since",
                "code": "member-since", "base": ["Group"], "type": "date", "expression": "Group.member.period.start"}
BEFORE = Extractor(SearchRegistry.layered(()))
AFTER = Extractor(SearchRegistry.layered([BORN_IN, MEMBER_SINCE]))
ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = open_store(settings.store)
    await opened.open()
    yield opened
    await opened.close()


def patient(id_: str, city: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": id_}],
            "extension": [{"url": BIRTH_PLACE, "valueAddress": {"city": city}}]}


def group(*years: int) -> dict[str, Any]:
    return {"resourceType": "Group", "id": "g", "type": "person", "actual": True, "member": [
        {"entity": {"reference": f"Patient/p{year}"}, "period": {"start": f"{year}-01-01"},
         "extension": [{"url": ATR, "valueReference": {"reference": "Practitioner/x"}}]} for year in years]}


async def write(store: Store, resource: dict[str, Any], extractor: Extractor = BEFORE) -> None:
    async with store.unit_of_work() as uow:
        await uow.write(resource["resourceType"], resource["id"], resource, extractor.extract(resource), "PUT")


async def reindex(store: Store, type_: str, id_: str, version: int, entries: IndexEntries) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.reindex(type_, id_, version, entries)


async def ids(store: Store, type_: str, *clauses: Clause, sort: tuple[SortKey, ...] = ()) -> list[str]:
    return [v.id for v in (await store.search(SearchQuery((type_,), clauses, sort, count=50))).matches]


def born_in(city: str) -> Clause:
    return Clause((StringMatch("born-in", "start", city.lower()),))


def joined(year: str) -> Clause:
    return Clause((date.parse("member-since", year, "member-since"),))


async def test_entries_are_replaced_without_a_new_version(store: Store) -> None:
    for resource in (patient("a", "Lyon"), patient("b", "Arles")):
        await write(store, resource)
    assert await ids(store, "Patient", born_in("Lyon")) == []
    current = await store.read("Patient", "a")
    assert current is not None and current.body is not None
    assert await reindex(store, "Patient", "a", 1, AFTER.extract(fhirjson.loads(current.body)))
    assert await reindex(store, "Patient", "b", 1, AFTER.extract(patient("b", "Arles")))
    assert await ids(store, "Patient", born_in("Lyon")) == ["a"]
    assert await ids(store, "Patient", sort=(SortKey("born-in", "string"),)) == ["b", "a"]  # sort values too
    assert (await store.read("Patient", "a")).body == current.body  # same version, same bytes
    assert len((await store.history("Patient", "a", None, 10, None)).versions) == 1
    # the old entries are replaced, not added to: none at all leaves the resource unfindable by name
    assert await reindex(store, "Patient", "b", 1, IndexEntries())
    assert await ids(store, "Patient", Clause((StringMatch("family", "start", "b"),))) == []
    # only the current version, never a delete or a resource that does not exist
    assert not await reindex(store, "Patient", "a", 2, AFTER.extract(patient("a", "Lyon")))
    async with store.unit_of_work() as uow:
        await uow.write("Patient", "a", None, None, "DELETE")
    assert not await reindex(store, "Patient", "a", 2, AFTER.extract(patient("a", "Lyon")))
    assert not await reindex(store, "Patient", "nobody", 1, AFTER.extract(patient("nobody", "Lyon")))


async def test_a_group_head_and_members_are_reindexed_in_their_own_ranges(store: Store) -> None:
    await write(store, group(2020, 2021, 2022))
    assert await ids(store, "Group", joined("2021")) == []
    current = await store.read("Group", "g")
    assert current is not None and current.body is not None
    entries = AFTER.extract(fhirjson.loads(current.body))
    fewer = AFTER.extract(group(2020, 2021))
    assert not await reindex(store, "Group", "g", 1, fewer)  # not the current members
    assert await reindex(store, "Group", "g", 1, entries)
    assert await ids(store, "Group", joined("2021")) == ["g"]
    assert await ids(store, "Group", Clause((ReferenceMatch("member", "Patient", "p2022"),))) == ["g"]
    referring = await store.find_group_members_referring("g", "attributed-provider", "Practitioner", "x")
    assert [orjson.loads(body)["period"]["start"] for _, body in referring] == ["2020-01-01", "2021-01-01",
                                                                               "2022-01-01"]
    # a member removed one by one takes its (re-indexed) values with it, the others keep theirs
    async with store.unit_of_work() as uow:
        head = fhirjson.loads((await uow.read_group_head("g")).body)
        member = await uow.find_group_members("g", ["Patient/p2021"])
        await uow.change_group_members("g", head, None, [member[0][0]], [], [], "PUT", 1)
    assert await ids(store, "Group", joined("2021")) == []
    assert await ids(store, "Group", joined("2022")) == ["g"]
    assert not await reindex(store, "Group", "g", 1, entries)  # version 2 now


async def test_a_group_stored_whole_is_reindexed_whole(store: Store, settings: Settings) -> None:
    if not settings.store.startswith("sqlite"):
        pytest.skip("rewrites SQLite tables as an older fhirlead left them")
    await write(store, group(2020, 2021))
    whole = fhirjson.dumps({**group(2020, 2021), "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"}})
    with closing(sqlite3.connect(sqlite_path(settings.store), isolation_level=None)) as conn:
        conn.execute("UPDATE versions SET body = ? WHERE type = 'Group'", (whole,))  # as a version-2 store wrote it
        conn.execute("DELETE FROM group_members")
    assert await reindex(store, "Group", "g", 1, AFTER.extract(fhirjson.loads(whole)))
    assert await ids(store, "Group", joined("2020")) == ["g"]
    assert await ids(store, "Group", Clause((ReferenceMatch("member", "Patient", "p2021"),))) == ["g"]
