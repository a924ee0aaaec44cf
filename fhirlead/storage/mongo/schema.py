"""Collection names and the indexes the MongoDB backend needs, created (idempotently) at `open()`.

Every search_index query starts with equality on (type, key, kind), then the value fields of its kind;
one partial index per kind keeps each index small (it holds only that kind's documents) and lets
MongoDB seek (type, key, kind, value) the way SQLite seeks (sp, value). `(pk, key)` serves the per
resource work: replacing a resource's entries, includes from a page of matches. `records` holds the
store's keyed documents (`fhirlead.storage.records`), listed per kind in key order by `kind_key`.
"""

from __future__ import annotations

from typing import Any

RESOURCES = "resources"
HISTORY = "history"
SEARCH_INDEX = "search_index"
COUNTERS = "counters"
BODIES = "bodies"  # resources too big for one document, in chunks (see `documents`)
RECORDS = "records"
GROUP_MEMBERS = "group_members"  # a Group's members one by one (see `members`)

_VALUE_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "string": (("norm",),),
    "token": (("code", "system"),),
    "number": (("lo", "hi"),),
    "date": (("lo", "hi"), ("hi",)),
    "quantity": (("code", "lo"),),
    "reference": (("rid", "rtype"), ("url",)),
    "uri": (("uri",),),
}


def index_specs() -> list[tuple[str, list[tuple[str, int]], dict[str, Any]]]:
    """(collection, keys, options) of every index."""
    specs: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
        (RESOURCES, [("pk", 1)], {"unique": True, "name": "pk"}),
        (RESOURCES, [("type", 1), ("deleted", 1), ("pk", 1)], {"name": "type_pk"}),
        (RESOURCES, [("type", 1), ("deleted", 1), ("updated_us", 1)], {"name": "type_updated"}),
        (RESOURCES, [("type", 1), ("id", 1)], {"name": "type_id"}),  # search by _id, _has, _list
        (HISTORY, [("type", 1), ("id", 1), ("version", 1)], {"unique": True, "name": "type_id_version"}),
        (HISTORY, [("seq", 1)], {"unique": True, "name": "seq"}),
        (HISTORY, [("type", 1), ("seq", 1)], {"name": "type_seq"}),
        (SEARCH_INDEX, [("pk", 1), ("key", 1)], {"name": "pk_key"}),
        (BODIES, [("seq", 1), ("n", 1)], {"unique": True, "name": "seq_n"}),
        (RECORDS, [("kind", 1), ("key", 1)], {"name": "kind_key"}),
        (GROUP_MEMBERS, [("group", 1), ("ordinal", 1), ("since", 1)], {"unique": True, "name": "group_ordinal"}),
        (GROUP_MEMBERS, [("group", 1), ("until", 1), ("entity", 1)], {"name": "group_current_entity"}),
        (SEARCH_INDEX, [("pk", 1), ("rep", 1)], {"name": "pk_rep"}),
    ]
    for kind, indexes in _VALUE_INDEXES.items():
        for number, fields in enumerate(indexes):
            specs.append((
                SEARCH_INDEX,
                [("type", 1), ("key", 1), ("kind", 1), *((f, 1) for f in fields)],
                {"name": f"{kind}_{number}", "partialFilterExpression": {"kind": kind}},
            ))
    return specs


async def create_indexes(db: Any) -> None:
    for collection, keys, options in index_specs():
        await db[collection].create_index(keys, **options)
