"""MongoDB search runs inside MongoDB: the pipeline sent (captured at the collection, since mongomock has
no `explain`), and the same answers as the SQLite backend (the reference the old Python-side
combination mirrored) on the official R4 examples, page by page in both directions."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirlead.search.extract import Extractor
from fhirlead.search.parse import parse_search
from fhirlead.search.query import SearchQuery, SortKey
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.mongo import MongoStore
from fhirlead.storage.mongo.pipeline import keyset, page_stages, sort_columns
from fhirlead.storage.port import SearchPage, Store
from fhirlead.storage.sqlite import SqliteStore
from tests import backends
from tests.backends.mongomock_async import MockClient, MockCollection

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "r4-examples.ndjson.gz"
REGISTRY = SearchRegistry.default()
BASE = "http://testserver/fhir"
NOW_US = 1_900_000_000_000_000


@pytest.fixture(scope="module")
def examples() -> list[dict[str, Any]]:
    with gzip.open(EXAMPLES) as handle:
        return [orjson.loads(line)["resource"] for line in handle]


@pytest.fixture(scope="module")
def templates(examples: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, MockClient]:
    """The examples in a SQLite file and in a mongomock client, written once (only read afterwards)."""
    path = str(tmp_path_factory.mktemp("reference") / "reference.db")
    client = MockClient()
    asyncio.run(backends.write_all(SqliteStore(path), examples, Extractor(REGISTRY)))
    asyncio.run(backends.write_all(MongoStore(client=client), examples, Extractor(REGISTRY)))
    return path, client


@pytest.fixture
async def stores(templates: tuple[str, MockClient]) -> AsyncIterator[tuple[Store, MongoStore, MockClient]]:
    sqlite = SqliteStore(templates[0])
    client = templates[1]  # searches only read: every test shares it
    mongo = MongoStore(client=client)
    await sqlite.open()
    await mongo.open()
    yield sqlite, mongo, client
    await sqlite.close()
    await mongo.close()


def query(type_: str, params: list[tuple[str, str]]) -> SearchQuery:
    return parse_search(REGISTRY, (type_,), params, base_url=BASE, now_us=NOW_US).query


def ids(page: SearchPage) -> tuple[list[str], list[str]]:
    return [v.reference for v in page.matches], sorted(v.reference for v in page.includes)


async def walk(store: Store, first: SearchQuery) -> list[Any]:
    """Every page forward, then back again from the last one: matches, includes, totals."""
    seen: list[Any] = []
    page = await store.search(first)
    seen.append((ids(page), page.total))
    while page.next_cursor is not None:
        page = await store.search(replace(first, cursor=page.next_cursor))
        seen.append((ids(page), page.total))
    while page.previous_cursor is not None:
        page = await store.search(replace(first, cursor=page.previous_cursor))
        seen.append(("back", ids(page), page.total))
    return seen


SEARCHES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Patient", [("gender", "female")]),
    ("Patient", [("gender", "male"), ("_sort", "-birthdate"), ("_count", "2")]),
    ("Patient", [("_sort", "family,-_id"), ("_count", "4"), ("_total", "accurate")]),
    ("Patient", [("name", "pet"), ("_total", "accurate")]),
    ("Patient", [("gender:not", "male"), ("_sort", "birthdate"), ("_count", "3")]),
    ("Patient", [("birthdate", "ge1970"), ("gender", "male,female"), ("_sort", "-birthdate")]),
    ("Patient", [("active:missing", "true"), ("_count", "5"), ("_total", "accurate")]),
    ("Patient", [("_id", "example,pat1,xcda"), ("_revinclude", "Observation:subject")]),
    ("Patient", [("_has:Observation:subject:status", "final"), ("_sort", "_id")]),
    ("Observation", [("subject", "Patient/example"), ("_sort", "-date"), ("_count", "3"), ("_total", "accurate")]),
    ("Observation", [("subject:Patient.gender", "male"), ("_include", "Observation:subject")]),
    ("Observation", [("status", "final"), ("code", "http://loinc.org|"), ("_sort", "code,date"), ("_count", "7")]),
    ("Observation", [("value-quantity", "gt100"), ("_sort", "value-quantity")]),
    ("Observation", [("component-code-value-quantity", "http://loinc.org|8480-6$gt100")]),
    ("Observation", [("date", "ge2013-01-01"), ("date", "lt2016"), ("_count", "0"), ("_total", "accurate")]),
    ("Observation", [("subject:missing", "false"), ("status:not", "final"), ("_count", "4")]),
]


@pytest.mark.parametrize(("type_", "params"), SEARCHES, ids=[f"{t}?{p}" for t, p in SEARCHES])
async def test_same_answers_as_the_sqlite_backend(
    stores: tuple[Store, MongoStore, MockClient], type_: str, params: list[tuple[str, str]]
) -> None:
    sqlite, mongo, _ = stores
    wanted = await walk(sqlite, query(type_, params))
    assert wanted[0][0][0] or "_count" in dict(params) or wanted[0][1] == 0  # the search means something
    assert await walk(mongo, query(type_, params)) == wanted


class Capture:
    """Every aggregate and find the store sends, by collection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.aggregates: list[tuple[str, list[dict[str, Any]]]] = []
        self.finds: list[tuple[str, dict[str, Any]]] = []
        aggregate, find = MockCollection.aggregate, MockCollection.find

        async def spy_aggregate(collection: MockCollection, pipeline: list[dict[str, Any]], **kw: Any) -> Any:
            self.aggregates.append((collection._c.name, pipeline))
            return await aggregate(collection, pipeline, **kw)

        def spy_find(collection: MockCollection, filter_: Any = None, projection: Any = None, **kw: Any) -> Any:
            self.finds.append((collection._c.name, filter_))
            return find(collection, filter_, projection, **kw)

        monkeypatch.setattr(MockCollection, "aggregate", spy_aggregate)
        monkeypatch.setattr(MockCollection, "find", spy_find)


async def test_one_pipeline_driven_by_the_most_selective_clause(
    stores: tuple[Store, MongoStore, MockClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mongo, _ = stores
    capture = Capture(monkeypatch)
    page = await mongo.search(query("Patient", [("gender", "male"), ("family", "Chalmers"), ("_sort", "-birthdate"),
                                                ("_count", "2"), ("_total", "accurate")]))
    assert [v.id for v in page.matches] == ["example"] and page.total == 1
    (collection, pipeline), (count_collection, counting) = capture.aggregates
    assert collection == count_collection == "search_index"
    first = pipeline[0]["$match"]  # the gender clause (token) ranks before family (string)
    assert first["$and"][0] == {"type": "Patient", "key": "gender", "kind": "token"}
    assert pipeline[1] == {"$group": {"_id": "$pk"}}
    assert pipeline[2]["$lookup"] == {"from": "resources", "localField": "_id", "foreignField": "pk", "as": "r"}
    lookups = [stage["$lookup"]["from"] for stage in pipeline if "$lookup" in stage]
    assert lookups == ["resources", "search_index"]
    family = next(stage["$match"] for stage in pipeline if "$match" in stage and "idx" in str(stage))
    assert family["idx"]["$elemMatch"]["key"] == "family"  # flat: no $and inside $elemMatch
    assert pipeline[-3:] == [{"$sort": {"_s0": -1, "pk": 1}}, {"$limit": 3},
                             {"$project": {"_id": 0, "pk": 1, "_s0": 1}}]
    assert counting[:-1] == pipeline[:-4] and counting[-1] == {"$count": "n"}
    # nothing matched in Python: the only finds read the page's documents by pk
    assert all(name == "resources" and set(filter_) == {"pk"} for name, filter_ in capture.finds), capture.finds


async def test_without_an_entry_clause_it_starts_from_resources(
    stores: tuple[Store, MongoStore, MockClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mongo, _ = stores
    capture = Capture(monkeypatch)
    await mongo.search(query("Patient", [("_id", "example,pat1"), ("gender:not", "male"), ("_sort", "_id")]))
    [(collection, pipeline)] = capture.aggregates
    assert collection == "resources"
    assert pipeline[0] == {"$match": {"$and": [{"type": "Patient", "deleted": False},
                                               {"id": {"$in": ["example", "pat1"]}}]}}
    negated = next(stage["$match"] for stage in pipeline if "$match" in stage and "$nor" in str(stage))
    assert negated["$nor"][0]["idx"]["$elemMatch"]["key"] == "gender"


def test_sort_columns_carry_the_missing_value_sentinels() -> None:
    columns = sort_columns([SortKey("birthdate", "date", True), SortKey("family", "string", False)])
    assert [c.expression for c in columns] == [
        {"$ifNull": ["$sort.date.birthdate.d", -(2**63)]},
        {"$ifNull": ["$sort.string.family.a", "\U0010ffff\U0010ffff"]},
    ]


def test_keyset_compares_lexicographically_in_each_columns_direction() -> None:
    columns = sort_columns([SortKey("birthdate", "date", True)])
    assert keyset(columns, [10, 7], forward=True) == {"$or": [{"_s0": {"$lt": 10}}, {"_s0": 10, "pk": {"$gt": 7}}]}
    assert keyset(columns, [10, 7], forward=False) == {"$or": [{"_s0": {"$gt": 10}}, {"_s0": 10, "pk": {"$lt": 7}}]}
    backward = page_stages([SortKey("birthdate", "date", True)], [10, 7], False, 5)
    assert {"$sort": {"_s0": 1, "pk": -1}} in backward and {"$limit": 6} in backward
