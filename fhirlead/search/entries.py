"""IndexEntries: the search values of one resource version, as plain data any backend can store.

Extracted once at write time (`fhirlead.search.extract`) and handed to the store with the resource.
Every entry is a tuple whose first item is the index key: the search parameter's code, or a derived key
for values only a modifier reaches (`code:text`, `identifier:of-type`, `subject:identifier`), or a
composite component (`code-value-quantity#1`). Only str, int, float and None appear inside, so the
SQLite backend writes rows and a MongoDB backend can store the same tuples as sub-documents.

Value conventions (shared by extraction and every backend's query compiler):
- string:    (key, normalized, exact) — normalized is case- and accent-folded (see `normalize`).
- token:     (key, system, code) — system "" when the value has none.
- number:    (key, low, high) — the implicit range of the stored decimal, low <= high.
- date:      (key, low, high) — microseconds since the epoch (UTC), half-open [low, high).
- quantity:  (key, system, code, unit, low, high) — value range from the decimal's precision; a second
             entry in canonical UCUM units is added when a conversion exists.
- reference: (key, type, id, url, version) — local references have type and id and url "";
             absolute URLs keep the url (and type/id parsed from its tail, when it has one);
             canonicals keep url and version only.
- uri:       (key, value)
- composite: (key, components) where components is a tuple with one inner entry per component, each
             `(kind, entry tuple without key)`, all from the same repetition of the composite's base.
"""

from __future__ import annotations

from dataclasses import dataclass, field

StringEntry = tuple[str, str, str]
TokenEntry = tuple[str, str, str]
NumberEntry = tuple[str, float, float]
DateEntry = tuple[str, int, int]
QuantityEntry = tuple[str, str, str, str, float, float]
ReferenceEntry = tuple[str, str, str, str, str]
UriEntry = tuple[str, str]
Component = tuple[str, tuple]
CompositeEntry = tuple[str, tuple[Component, ...]]

KINDS = ("string", "token", "number", "date", "quantity", "reference", "uri")


@dataclass(slots=True)
class IndexEntries:
    """All index entries of one resource, grouped by value kind, without duplicates."""

    string: list[StringEntry] = field(default_factory=list)
    token: list[TokenEntry] = field(default_factory=list)
    number: list[NumberEntry] = field(default_factory=list)
    date: list[DateEntry] = field(default_factory=list)
    quantity: list[QuantityEntry] = field(default_factory=list)
    reference: list[ReferenceEntry] = field(default_factory=list)
    uri: list[UriEntry] = field(default_factory=list)
    composite: list[CompositeEntry] = field(default_factory=list)

    def of_kind(self, kind: str) -> list:
        return getattr(self, kind)

    def dedupe(self) -> IndexEntries:
        """Drop repeated entries (a value reached by two paths is one value), keeping first order."""
        for kind in (*KINDS, "composite"):
            values = getattr(self, kind)
            if len(values) > 1:
                setattr(self, kind, list(dict.fromkeys(values)))
        return self

    def count(self) -> int:
        return sum(len(getattr(self, kind)) for kind in (*KINDS, "composite"))

    def add(self, other: IndexEntries) -> None:
        for kind in (*KINDS, "composite"):
            getattr(self, kind).extend(getattr(other, kind))


@dataclass(slots=True)
class GroupEntries(IndexEntries):
    """A Group's entries (all of them, as for any resource) and how they split: those of the Group
    without its members (`head`) and those of each member (`members`, in `Group.member` order). A store
    that keeps members one by one (a 100,000-member attribution list) indexes and unindexes them one by
    one with these."""

    head: IndexEntries = field(default_factory=IndexEntries)
    members: list[IndexEntries] = field(default_factory=list)
