"""Group members on MongoDB (the layout is in `fhirlead/storage/group_members.py`): the `group_members`
collection, one small document per member and version range — `group` ("Group/id"), `ordinal`,
`since`, `until` (None while current), `entity` (the member's reference, for lookups) and `body` (the
member's JSON bytes, exactly as served) — and the members' `search_index` documents (rep < 0). So a
100,000-member list never makes a document near MongoDB's 16 MB limit, and a member operation writes a
few small documents. A Group stored before this collection was used has its members in its head and
no member documents: it reads as it was, and its next whole write splits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhirlead import fhirjson
from fhirlead.search.entries import IndexEntries
from fhirlead.storage.group_members import INSERT_BATCH, REP_SPAN, plan_whole, rep_range
from fhirlead.storage.group_members import entity_of as entity_of
from fhirlead.storage.mongo import documents
from fhirlead.storage.mongo.access import Access


async def members_at(access: Access, key: str, version: int) -> list[bytes]:
    """The member JSON of version `version` of the Group `key`, in order."""
    filter_ = {"$and": [{"group": key, "since": {"$lte": version}},
                        {"$or": [{"until": {"$eq": None}}, {"until": {"$gt": version}}]}]}
    docs = await access.find(access.group_members, filter_, {"body": 1, "_id": 0}, sort=[("ordinal", 1)])
    return [bytes(doc["body"]) for doc in docs]


async def find(access: Access, key: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
    """The current members (ordinal, JSON) whose entity reference is one of `entities` (None: all)."""
    filter_: dict[str, Any] = {"group": key, "until": {"$eq": None}}
    if entities is not None:
        filter_["entity"] = {"$in": list(entities)}
    docs = await access.find(access.group_members, filter_, {"ordinal": 1, "body": 1, "_id": 0}, sort=[("ordinal", 1)])
    return [(doc["ordinal"], bytes(doc["body"])) for doc in docs]


async def find_referring(access: Access, pk: int, key: str, group: str, type_: str, target: str
                         ) -> list[tuple[int, bytes]]:
    """The current members whose reference index documents `key` point to `type_`/`target`."""
    docs = await access.find(access.search_index, {"pk": pk, "key": key, "kind": "reference", "rtype": type_,
                                                   "rid": target, "rep": {"$lt": 0}}, {"rep": 1, "_id": 0})
    ordinals = sorted({-doc["rep"] // REP_SPAN for doc in docs})
    if not ordinals:
        return []
    found = await access.find(access.group_members, {"group": group, "ordinal": {"$in": ordinals},
                                                     "until": {"$eq": None}}, {"ordinal": 1, "body": 1, "_id": 0},
                              sort=[("ordinal", 1)])
    return [(doc["ordinal"], bytes(doc["body"])) for doc in found]


async def write_all(access: Access, pk: int, key: str, version: int, members: list[Any],
                    entries: list[IndexEntries] | None) -> list[bytes]:
    """Make `members` the current members as of `version` (group_members.plan_whole); their JSON."""
    bodies = [fhirjson.dumps(member) for member in members]
    closed, new = plan_whole(await find(access, key, None), bodies)
    await close(access, pk, key, version, closed)
    await insert(access, pk, key, version, [
        (ordinal, members[n], bodies[n], entries[n] if entries is not None else None) for ordinal, n in new])
    return bodies


async def write_changes(access: Access, pk: int, key: str, version: int, removed: Sequence[int],
                        replaced: Sequence[tuple[int, Any, IndexEntries]],
                        added: Sequence[tuple[Any, IndexEntries]]) -> None:
    """As of `version`: close `removed` (ordinals), give `replaced` new content in place, append `added`."""
    await close(access, pk, key, version, [*removed, *(ordinal for ordinal, _, _ in replaced)])
    last = await access.find(access.group_members, {"group": key}, {"ordinal": 1, "_id": 0},
                             sort=[("ordinal", -1)], limit=1)
    top = last[0]["ordinal"] if last else 0
    await insert(access, pk, key, version, [
        *((ordinal, member, fhirjson.dumps(member), entries) for ordinal, member, entries in replaced),
        *((top + n, member, fhirjson.dumps(member), entries) for n, (member, entries) in enumerate(added, start=1)),
    ])


async def close(access: Access, pk: int, key: str, version: int, ordinals: Sequence[int]) -> None:
    """End the current documents `ordinals` at `version` and delete their index documents, INSERT_BATCH
    members per round trip (a whole new list closes up to all of them)."""
    session = access.session
    for start in range(0, len(ordinals), INSERT_BATCH):
        batch = list(ordinals[start:start + INSERT_BATCH])
        await access.group_members.update_many({"group": key, "ordinal": {"$in": batch}, "until": {"$eq": None}},
                                               {"$set": {"until": version}}, session=session)
        ranges = [{"rep": {"$gte": low, "$lte": high}} for low, high in map(rep_range, batch)]
        await access.search_index.delete_many({"pk": pk, "$or": ranges}, session=session)


async def close_all(access: Access, key: str, version: int) -> None:
    """A deleted Group: none of its members is current any more (its index documents go with it)."""
    await access.group_members.update_many({"group": key, "until": {"$eq": None}}, {"$set": {"until": version}},
                                           session=access.session)


async def current_ordinals(access: Access, key: str) -> list[int]:
    """The ordinals of the Group `key`'s current member documents, in member order."""
    docs = await access.find(access.group_members, {"group": key, "until": {"$eq": None}}, {"ordinal": 1, "_id": 0},
                             sort=[("ordinal", 1)])
    return [doc["ordinal"] for doc in docs]


async def reindex(access: Access, pk: int, entries: Sequence[tuple[int, IndexEntries]]) -> None:
    """Insert the index documents of current members (ordinal, entries) whose old ones are gone,
    INSERT_BATCH members per round trip."""
    for start in range(0, len(entries), INSERT_BATCH):
        docs = [doc for ordinal, member_entries in entries[start:start + INSERT_BATCH]
                for doc in documents.index_documents(pk, "Group", member_entries, rep_base=-ordinal * REP_SPAN)]
        if docs:
            await access.search_index.insert_many(docs, session=access.session)


async def insert(access: Access, pk: int, key: str, version: int,
                 added: Sequence[tuple[int, Any, bytes, IndexEntries | None]]) -> None:
    """Member and index documents of `added`, INSERT_BATCH members at a time (bounded memory)."""
    for start in range(0, len(added), INSERT_BATCH):
        batch = added[start:start + INSERT_BATCH]
        await access.group_members.insert_many([
            {"group": key, "ordinal": ordinal, "since": version, "until": None, "entity": entity_of(member),
             "body": body} for ordinal, member, body, _ in batch], session=access.session)
        docs = [doc for ordinal, _, _, entries in batch if entries is not None
                for doc in documents.index_documents(pk, "Group", entries, rep_base=-ordinal * REP_SPAN)]
        if docs:
            await access.search_index.insert_many(docs, session=access.session)
