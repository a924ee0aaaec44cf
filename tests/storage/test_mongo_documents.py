"""The shape of what MongoStore stores: native resources, flat index documents, no arrays relied on.

The stand-ins cannot check MongoDB's behaviour on array fields: mongomock sorts array fields
differently from MongoDB and enforces no unique index on them; nx-27017 mis-answers queries on array
paths. MongoStore therefore never indexes, queries or sorts an array field: index entries are one flat
document per value, sort keys are stored scalars. These tests pin that design down, so a change that
starts to depend on array semantics fails here instead of passing on a stand-in and failing on MongoDB.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhirlead.search.extract import Extractor
from fhirlead.search.query import Clause, ReferenceMatch, SearchQuery
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.mongo import MongoStore
from tests.backends.mongomock_async import MockClient

EXTRACTOR = Extractor(SearchRegistry.default())


async def _store_with(*resources: dict[str, Any]) -> tuple[MongoStore, Any]:
    client = MockClient()
    store = MongoStore(client=client)
    await store.open()
    async with store.unit_of_work() as uow:
        for resource in resources:
            await uow.write(resource["resourceType"], resource["id"], resource, EXTRACTOR.extract(resource), "PUT")
    return store, client.sync["fhirlead"]


def _arrays(doc: dict[str, Any], skip: str = "resource") -> list[str]:
    found = []
    for name, value in doc.items():
        if name == skip:
            continue
        if isinstance(value, list):
            found.append(name)
        elif isinstance(value, dict):
            found += [f"{name}.{inner}" for inner in _arrays(value, skip)]
    return found


async def test_no_field_mongo_queries_or_sorts_is_an_array() -> None:
    patient = {"resourceType": "Patient", "id": "p", "name": [{"family": "Smith", "given": ["Ann", "Bo"]},
                                                               {"family": "Jones"}],
               "identifier": [{"system": "s", "value": "1"}, {"system": "s", "value": "2"}]}
    observation = {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/p"},
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                                  "valueQuantity": {"value": 120, "unit": "mmHg"}}]}
    store, db = await _store_with(patient, observation)
    for collection in ("resources", "history", "search_index"):
        for doc in db[collection].find():
            assert _arrays(doc) == [], (collection, doc)
    stored = db["resources"].find_one({"_id": "Patient/p"})
    assert stored["resource"]["name"][0]["given"] == ["Ann", "Bo"]  # the resource itself: native JSON
    assert stored["sort"]["string"]["family"] == {"a": "jones", "d": "smith"}
    assert orjson.loads((await store.read("Patient", "p")).body) == patient  # type: ignore[union-attr]
    await store.close()


async def test_group_membership_is_one_small_document_per_member() -> None:
    """Attribution Groups grow past 100,000 members: no document may hold the member list's index."""
    members = [{"entity": {"reference": f"Patient/p{n}"}} for n in range(3000)]
    group = {"resourceType": "Group", "id": "g", "type": "person", "actual": True, "member": members}
    store, db = await _store_with(group)
    assert db["search_index"].count_documents({"type": "Group", "key": "member"}) == 3000
    query = SearchQuery(("Group",), (Clause((ReferenceMatch("member", "Patient", "p2999"),)),))
    assert [v.id for v in (await store.search(query)).matches] == ["g"]
    await store.close()


async def test_decimals_are_stored_as_decimal128_and_what_bson_cannot_hold_goes_out_of_line() -> None:
    from bson.decimal128 import Decimal128

    from fhirlead import fhirjson

    plain = fhirjson.loads(b'{"resourceType":"Observation","id":"plain","status":"final","code":{"text":"x"},'
                           b'"valueQuantity":{"value":1.50}}')
    exact = fhirjson.loads(b'{"resourceType":"Observation","id":"exact","status":"final","code":{"text":"x"},'
                           b'"valueQuantity":{"value":1e2}}')  # Decimal128 would spell it 1E+2
    inner: dict[str, Any] = {"url": "http://example.org/x", "valueString": "a"}
    for _ in range(50):  # 100 JSON levels: more than a MongoDB document may nest
        inner = {"url": "http://example.org/x", "extension": [inner]}
    deep = {"resourceType": "Patient", "id": "deep", "extension": [inner]}
    store, db = await _store_with(plain, exact, deep)
    try:
        stored = db.resources.find_one({"_id": "Observation/plain"})
        assert stored["resource"]["valueQuantity"]["value"] == Decimal128("1.50")
        for key in ("Observation/exact", "Patient/deep"):
            assert db.resources.find_one({"_id": key})["resource"] is None  # in `bodies` instead
        assert b'"value":1e2' in (await store.read("Observation", "exact")).body
        assert b'"value":1.50' in (await store.read("Observation", "plain")).body
        deep_body = (await store.read("Patient", "deep")).body
        assert orjson.loads(deep_body)["extension"] == deep["extension"]
    finally:
        await store.close()
