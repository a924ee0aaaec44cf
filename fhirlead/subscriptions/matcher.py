"""Does one written resource match a search? Evaluated in memory on the index entries the write just
extracted, so a subscription costs no store query per write (R4 subscription.html: "criteria" is a
search URL; the server decides, for each change, whether the resource now matches it).

The predicates are those of `fhirlead.search.query`, with the semantics the store backends give them
(`fhirlead.storage.sqlite.search_sql`: prefixes, implicit ranges, `:missing`, composites on one
repetition). Predicates that need other resources (chains, `_has`, `_list`, compartments) cannot be
decided from one resource: `unsupported` names them, and a Subscription using one is refused at write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhirlead.search.entries import IndexEntries
from fhirlead.search.normalize import fold
from fhirlead.search.query import (
    Clause,
    CompositeMatch,
    IdMatch,
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

DECIDABLE = (StringMatch, TokenMatch, RangeMatch, ReferenceMatch, UriMatch, CompositeMatch, Missing, IdMatch)
KIND_OF = {StringMatch: "string", TokenMatch: "token", ReferenceMatch: "reference", UriMatch: "uri"}


def unsupported(where: Iterable[Clause]) -> list[str]:
    """The kinds of predicate in `where` that one resource alone cannot decide."""
    return sorted({type(p).__name__ for clause in where for p in clause.any_of if not isinstance(p, DECIDABLE)})


def matches(where: Iterable[Clause], id_: str, entries: IndexEntries, base_url: str = "") -> bool:
    """Every clause holds (a clause: any of its predicates holds; negated: none does)."""
    for clause in where:
        held = any(_holds(p, id_, entries, base_url) for p in clause.any_of)
        if held == clause.negate:
            return False
    return True


def _holds(p: Predicate, id_: str, entries: IndexEntries, base_url: str) -> bool:
    if isinstance(p, IdMatch):
        return id_ in p.ids
    if isinstance(p, Missing):
        present = any(entry[0] == p.key for entry in _of_kind(entries, p.kind))
        if not present and p.kind != "composite":
            present = any(key == p.key for key, _ in entries.composite)
        return present != p.missing
    if isinstance(p, CompositeMatch):
        return any(key == p.key and all(_value(c, (c_kind, value), base_url) for c, (c_kind, value)
                                        in zip(p.components, components, strict=False))
                   for key, components in entries.composite)
    kind = "quantity" if isinstance(p, RangeMatch) and p.kind == "quantity" else (
        p.kind if isinstance(p, RangeMatch) else KIND_OF[type(p)])
    return any(entry[0] == p.key and _value(p, (kind, entry[1:]), base_url) for entry in entries.of_kind(kind))


def _of_kind(entries: IndexEntries, kind: str) -> list[Any]:
    return entries.composite if kind == "composite" else entries.of_kind(kind)


def _value(p: Predicate, stored: tuple[str, tuple], base_url: str) -> bool:
    """`p` against one stored value (its entry without the key)."""
    _kind, value = stored
    if isinstance(p, StringMatch):
        normalized, exact = value
        if p.mode == "exact":
            return exact == p.value and normalized == fold(p.value)
        if p.mode == "contains":
            return p.value in normalized
        return normalized.startswith(p.value)
    if isinstance(p, TokenMatch):
        system, code = value
        return (p.code is None or code == p.code) and (p.system is None or system == p.system)
    if isinstance(p, ReferenceMatch):
        type_, id_, url, version = value
        if p.url is not None:
            return url == p.url and url != "" and (p.version is None or version == p.version)
        local = url == "" or (bool(base_url) and url == f"{base_url}/{type_}/{id_}")
        return id_ == p.id and local and (p.type is None or type_ == p.type)
    if isinstance(p, UriMatch):
        [uri] = value
        if p.mode == "below":
            return uri.startswith(p.value)
        if p.mode == "above":
            return uri in above_prefixes(p.value)
        return uri == p.value
    if isinstance(p, RangeMatch):
        if p.kind == "quantity":
            system, code, unit, low, high = value
            if (p.system is not None and system != p.system) or (p.system is None and system == CANONICAL):
                return False
            if (p.code is not None and code != p.code) or (p.unit is not None and p.unit not in (code, unit)):
                return False
            return _number(p, low, high)
        low, high = value
        return _date(p, low, high) if p.kind == "date" else _number(p, low, high)
    return False


def _date(p: RangeMatch, lo: int, hi: int) -> bool:
    """Stored [lo, hi) against the search range [low, high) (https://hl7.org/fhir/R4/search.html#prefix)."""
    contained = p.low <= lo <= p.high and hi <= p.high
    return {
        "eq": contained, "ne": not contained, "gt": hi > p.high, "lt": lo < p.low,
        "ge": hi > p.high or contained, "le": lo < p.low or contained,
        "sa": lo >= p.high, "eb": hi <= p.low, "ap": lo < p.high and hi > p.low,
    }[p.prefix]


def _number(p: RangeMatch, lo: float, hi: float) -> bool:
    exact = p.value if p.value is not None else (p.low + p.high) / 2
    margin = abs(exact) * 0.1
    inside = lo >= p.low and hi < p.high
    return {
        "eq": inside, "ne": not inside, "gt": hi > exact, "lt": lo < exact, "ge": hi >= exact, "le": lo <= exact,
        "sa": lo > exact, "eb": hi < exact, "ap": lo <= exact + margin and hi >= exact - margin,
    }[p.prefix]
