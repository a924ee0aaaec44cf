"""Group members kept one by one (port.MemberRows; SQLite's `group_members`): every read path still answers
the whole Group, each version as it was; a write that changes one member stores and indexes one member;
a Group stored before the table existed reads as before and is split by its next write."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

import orjson
import pytest

from fhirlead import fhirjson
from fhirlead.search.extract import Extractor
from fhirlead.search.query import Clause, ReferenceMatch, SearchQuery
from fhirlead.search.registry import SearchRegistry
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store, sqlite_path
from fhirlead.storage.port import Store, VersionConflict

EXTRACTOR = Extractor(SearchRegistry.default())


def group(*patients: str, name: str = "list") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Group", "id": "g", "type": "person", "actual": True, "name": name}
    if patients:
        resource["member"] = [{"entity": {"reference": f"Patient/{p}"}} for p in patients]
    return resource


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = open_store(settings.store)
    await opened.open()
    yield opened
    await opened.close()


async def put(store: Store, resource: dict[str, Any]) -> Any:
    async with store.unit_of_work() as uow:
        return await uow.write("Group", "g", resource, EXTRACTOR.extract(resource), "PUT")


async def members_of(store: Store, patient: str) -> list[str]:
    """The Groups the index says Patient/`patient` is a member of."""
    query = SearchQuery(("Group",), (Clause((ReferenceMatch("member", "Patient", patient),)),), count=10)
    return [v.id for v in (await store.search(query)).matches]


async def member_rows(store: Store, settings: Settings) -> list[tuple]:
    """(ordinal, since, until, entity) of every stored member record, in (since, ordinal) order."""
    if settings.store.startswith("sqlite"):
        with closing(sqlite3.connect(sqlite_path(settings.store))) as conn:
            sql = "SELECT ordinal, since, until, entity FROM group_members ORDER BY since, ordinal"
            return conn.execute(sql).fetchall()
    access = store._access()  # MongoDB: the group_members collection
    docs = await access.find(access.group_members, {}, None, [("since", 1), ("ordinal", 1)])
    return [(d["ordinal"], d["since"], d["until"], d["entity"]) for d in docs]


async def test_whole_writes_read_back_and_keep_unchanged_members(store: Store, settings: Settings) -> None:
    first = await put(store, group("a", "b", "c"))
    assert orjson.loads(first.body)["member"] == group("a", "b", "c")["member"]
    second = await put(store, group("a", "c", "d", name="renamed"))
    assert (await store.read("Group", "g")).body == second.body
    assert orjson.loads((await store.vread("Group", "g", 1)).body)["member"] == group("a", "b", "c")["member"]
    versions = (await store.history("Group", "g", None, 10, None)).versions
    assert [orjson.loads(v.body)["name"] for v in versions] == ["renamed", "list"]
    # b closed, d added; a and c are the same rows as before
    assert await member_rows(store, settings) == [
        (1, 1, None, "Patient/a"), (2, 1, 2, "Patient/b"), (3, 1, None, "Patient/c"), (4, 2, None, "Patient/d")]
    assert await members_of(store, "b") == [] and await members_of(store, "d") == ["g"]
    assert await members_of(store, "a") == ["g"]
    await put(store, group(name="empty"))
    assert "member" not in orjson.loads((await store.read("Group", "g")).body)
    assert await members_of(store, "a") == []


async def test_member_changes_touch_only_those_members(store: Store, settings: Settings) -> None:
    await put(store, group("a", "b", "c"))
    async with store.unit_of_work() as uow:
        head = fhirjson.loads((await uow.read_group_head("g")).body)
        assert "member" not in head
        found = await uow.find_group_members("g", ["Patient/b"])
        assert [orjson.loads(body)["entity"]["reference"] for _, body in found] == ["Patient/b"]
        b = {"entity": {"reference": "Patient/b"}, "inactive": True}
        e = {"entity": {"reference": "Patient/e"}}
        version = await uow.change_group_members(
            "g", head, None, [1], [(found[0][0], b, EXTRACTOR.extract_member(b))], [(e, EXTRACTOR.extract_member(e))],
            "PUT", 1)
        assert version.version == 2 and b'"member"' not in version.body
        with pytest.raises(VersionConflict):
            await uow.change_group_members("g", head, None, [], [], [], "PUT", 1)
    now = orjson.loads((await store.read("Group", "g")).body)["member"]
    assert now == [b, {"entity": {"reference": "Patient/c"}}, e]
    assert orjson.loads((await store.vread("Group", "g", 1)).body)["member"] == group("a", "b", "c")["member"]
    assert await members_of(store, "a") == [] and await members_of(store, "e") == ["g"]
    assert await members_of(store, "b") == ["g"]  # replaced in place: still a member, re-indexed
    assert len(await member_rows(store, settings)) == 5  # a closed, b closed and rewritten, e added: no more


async def test_a_group_stored_whole_before_member_rows_reads_as_before(store: Store, settings: Settings) -> None:
    if not settings.store.startswith("sqlite"):
        pytest.skip("rewrites SQLite tables as an older fhirlead left them")
    await put(store, group("a", "b"))
    whole = fhirjson.dumps({**group("a", "b"), "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"}})
    with closing(sqlite3.connect(sqlite_path(settings.store), isolation_level=None)) as conn:
        conn.execute("UPDATE versions SET body = ? WHERE type = 'Group'", (whole,))  # as a version-2 store wrote it
        conn.execute("DELETE FROM group_members")
    assert (await store.read("Group", "g")).body == whole
    await put(store, group("a", "b", "c"))
    assert orjson.loads((await store.read("Group", "g")).body)["member"] == group("a", "b", "c")["member"]
    assert len(await member_rows(store, settings)) == 3


async def test_members_referring_to_a_provider_are_found_through_the_index(store: Store) -> None:
    atr = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"

    def attributed(patient: str, provider: str) -> dict[str, Any]:
        return {"extension": [{"url": atr, "valueReference": {"reference": provider}}],
                "entity": {"reference": f"Patient/{patient}"}}

    listed = {**group(), "member": [attributed("a", "Practitioner/x"), attributed("b", "Organization/o"),
                                    attributed("c", "Practitioner/x")]}
    await put(store, listed)
    found = await store.find_group_members_referring("g", "attributed-provider", "Practitioner", "x")
    assert [orjson.loads(body)["entity"]["reference"] for _, body in found] == ["Patient/a", "Patient/c"]
    async with store.unit_of_work() as uow:
        head = fhirjson.loads((await uow.read_group_head("g")).body)
        await uow.change_group_members("g", head, None, [found[0][0]], [], [], "PUT", 1)
    found = await store.find_group_members_referring("g", "attributed-provider", "Practitioner", "x")
    assert [orjson.loads(body)["entity"]["reference"] for _, body in found] == ["Patient/c"]
    assert await store.find_group_members_referring("g", "attributed-provider", "Practitioner", "nobody") == []
