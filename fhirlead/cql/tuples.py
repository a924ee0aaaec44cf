"""The CQL Tuple value: a dict subclass so it is told apart from FHIR resources (plain dicts)."""

from __future__ import annotations


class Tuple(dict):
    """A CQL Tuple: named elements. Missing elements read as null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Tuple" + dict.__repr__(self)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(("Tuple", len(self)))
