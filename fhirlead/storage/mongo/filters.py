"""Search predicates as MongoDB filters over `search_index` documents (and `resources` for the few
predicates on the resource itself).

Each function mirrors its SQL counterpart in `fhirlead.storage.sqlite.search_sql` condition for
condition, so both backends give the same answers (prefix semantics:
https://hl7.org/fhir/R4/search.html#prefix).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fhirlead.search.normalize import fold, prefix_upper_bound
from fhirlead.search.query import (
    IdMatch,
    LastUpdated,
    Missing,
    Predicate,
    RangeMatch,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from fhirlead.search.types.quantity import CANONICAL
from fhirlead.search.types.uri import above_prefixes

Filter = dict[str, Any]


def all_of(*parts: Filter) -> Filter:
    """AND of filters (kept as `$and` so several `$or`s never overwrite each other)."""
    kept = [part for part in parts if part]
    if not kept:
        return {}
    return kept[0] if len(kept) == 1 else {"$and": kept}


def one_of_types(types: Sequence[str]) -> Any:
    return types[0] if len(types) == 1 else {"$in": list(types)}  # none: matches nothing, as in SQL


def entry_base(types: Sequence[str], key: str | Sequence[str], kind: str) -> Filter:
    """Entries of parameter `key` (or any of several keys) of `types`, of value kind `kind`."""
    keys = [key] if isinstance(key, str) else list(key)
    return {"type": one_of_types(types), "key": keys[0] if len(keys) == 1 else {"$in": keys}, "kind": kind}


def local(base_url: str) -> Filter:
    """The reference entry points at a resource on this server (relative, or absolute under base_url)."""
    if not base_url:
        return {"url": ""}
    return {"$or": [{"url": ""}, {"ubase": base_url}]}


def kind_of(p: Predicate) -> str | None:
    if isinstance(p, StringMatch):
        return "string"
    if isinstance(p, TokenMatch):
        return "token"
    if isinstance(p, RangeMatch):
        return p.kind
    if isinstance(p, ReferenceMatch):
        return "reference"
    if isinstance(p, UriMatch):
        return "uri"
    if isinstance(p, Missing):
        return p.kind
    return None


def value_filter(p: Predicate, types: Sequence[str], base_url: str) -> Filter | None:
    """The entries satisfying a predicate answered by one kind of entry, or None for other predicates.
    For `Missing` it is the entries of the key (present = some exists)."""
    kind = kind_of(p)
    if kind is None:
        return None
    base = entry_base(types, p.key, kind)  # type: ignore[union-attr]
    if isinstance(p, StringMatch):
        return all_of(base, _string(p))
    if isinstance(p, TokenMatch):
        return all_of(base, _token(p))
    if isinstance(p, RangeMatch):
        return all_of(base, _range(p))
    if isinstance(p, ReferenceMatch):
        return all_of(base, _reference(p, base_url))
    if isinstance(p, UriMatch):
        return all_of(base, _uri(p))
    return base


def _string(p: StringMatch) -> Filter:
    if p.mode == "exact":
        return {"norm": fold(p.value), "exact": p.value}
    if p.mode == "contains":
        return {"norm": {"$regex": re.escape(p.value)}}
    if not p.value:
        return {}
    return {"norm": {"$gte": p.value, "$lt": prefix_upper_bound(p.value)}}


def _token(p: TokenMatch) -> Filter:
    out: Filter = {}
    if p.code is not None:
        out["code"] = p.code
    if p.system is not None:
        out["system"] = p.system
    return out


def _range(p: RangeMatch) -> Filter:
    extra: list[Filter] = []
    if p.kind == "quantity":
        extra.append({"system": p.system} if p.system is not None else {"system": {"$ne": CANONICAL}})
        if p.code is not None:
            extra.append({"code": p.code})
        if p.unit is not None:
            extra.append({"$or": [{"code": p.unit}, {"unit": p.unit}]})
    if p.kind == "date":
        condition = date_condition(p.prefix, p.low, p.high)
    else:
        condition = number_condition(p.prefix, p.low, p.high, p.value)
    return all_of(*extra, condition)


def date_condition(prefix: str, low: int | float, high: int | float) -> Filter:
    """Target range [lo, hi) against the search range [low, high)."""
    contained = {"lo": {"$gte": low}, "hi": {"$lte": high}}
    table = {
        "eq": contained,
        "ne": {"$nor": [contained]},
        "gt": {"hi": {"$gt": high}},
        "lt": {"lo": {"$lt": low}},
        "ge": {"$or": [{"hi": {"$gt": high}}, contained]},
        "le": {"$or": [{"lo": {"$lt": low}}, contained]},
        "sa": {"lo": {"$gte": high}},
        "eb": {"hi": {"$lte": low}},
        "ap": {"lo": {"$lt": high}, "hi": {"$gt": low}},
    }
    return table[prefix]


def number_condition(prefix: str, low: float, high: float, value: float | None) -> Filter:
    """Target [lo, hi] against the search value and its precision range [low, high)."""
    exact = value if value is not None else (low + high) / 2
    margin = abs(exact) * 0.1
    inside = {"lo": {"$gte": low}, "hi": {"$lt": high}}
    table = {
        "eq": inside,
        "ne": {"$nor": [inside]},
        "gt": {"hi": {"$gt": exact}},
        "lt": {"lo": {"$lt": exact}},
        "ge": {"hi": {"$gte": exact}},
        "le": {"lo": {"$lte": exact}},
        "sa": {"lo": {"$gt": exact}},
        "eb": {"hi": {"$lt": exact}},
        "ap": {"lo": {"$lte": exact + margin}, "hi": {"$gte": exact - margin}},
    }
    return table[prefix]


def point_condition(prefix: str, field: str, low: int, high: int) -> Filter:
    """A point in time (one microsecond wide) against the search range [low, high)."""
    inside = {field: {"$gte": low, "$lt": high}}
    table = {
        "eq": inside,
        "ne": {"$nor": [inside]},
        "gt": {field: {"$gte": high}},
        "lt": {field: {"$lt": low}},
        "ge": {field: {"$gte": low}},
        "le": {field: {"$lt": high}},
        "sa": {field: {"$gte": high}},
        "eb": {field: {"$lt": low}},
        "ap": inside,
    }
    return table[prefix]


def _reference(p: ReferenceMatch, base_url: str) -> Filter:
    if p.url is not None:
        out: Filter = {"url": {"$eq": p.url, "$ne": ""}}
        if p.version is not None:
            out["version"] = p.version
        return out
    if p.type is not None:
        if base_url:
            return {"rid": p.id, "rtype": p.type, "$or": [{"url": ""}, {"url": f"{base_url}/{p.type}/{p.id}"}]}
        return {"rid": p.id, "rtype": p.type, "url": ""}
    return all_of({"rid": p.id}, local(base_url))


def _uri(p: UriMatch) -> Filter:
    if p.mode == "below":
        return {"uri": {"$gte": p.value, "$lt": prefix_upper_bound(p.value)}}
    if p.mode == "above":
        return {"uri": {"$in": above_prefixes(p.value)}}
    return {"uri": p.value}


def resource_filter(p: IdMatch | LastUpdated, types: Sequence[str]) -> Filter:
    """Live `resources` documents of `types` satisfying `_id` or `_lastUpdated`."""
    base: Filter = {"type": one_of_types(types), "deleted": False}
    if isinstance(p, IdMatch):
        return {**base, "id": {"$in": list(p.ids)}}
    return all_of(base, point_condition(p.prefix, "updated_us", p.low, p.high))
