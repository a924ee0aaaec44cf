"""ValueSet membership for binding checks: "is code C of system S in ValueSet V?".

A ValueSet's content is what its `compose` defines (https://hl7.org/fhir/R4/valueset.html#compositions):
the union of its `include`s minus the union of its `exclude`s, where one include is the intersection of
its system part (listed `concept`s, `filter`s over the code system, or the whole code system) and of
every ValueSet it imports (`valueSet`). A ValueSet with no `compose` is read from its `expansion`
(valueset.html#expansion). Code systems are read as https://hl7.org/fhir/R4/codesystem.html says.

Some of that cannot be decided here: all of SNOMED CT or LOINC, a filter on a code system not held, a
code system whose `content` is not `complete`. So each ValueSet compiles, per code system, to a
three-valued set (`_Span`): codes surely in, and the codes that may be in; an answer is True, False or
None (cannot decide). Membership is compiled on first use and cached until the next `add`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhirlead import definitions
from fhirlead.terminology.codesystems import CodeSystemIndex

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
TERMINOLOGY_TYPES = ("ValueSet", "CodeSystem")
_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Span:
    """The codes of one code system that a (part of a) ValueSet holds, three-valued: every code in
    `lower` is in; a code outside the upper bound is not; any other code cannot be decided. The upper
    bound is `upper` itself, or with `open` every code except those in `upper`. Always lower within
    the upper bound."""

    lower: frozenset[str]
    upper: frozenset[str]
    open: bool = False

    @property
    def exact(self) -> bool:
        return not self.open and len(self.lower) == len(self.upper)

    def answer(self, code: str) -> bool | None:
        if code in self.lower:
            return True
        if (code in self.upper) != self.open:
            return None
        return False

    def union(self, other: _Span) -> _Span:
        lower = self.lower | other.lower
        if self.open and other.open:
            return _Span(lower, self.upper & other.upper, True)
        if self.open:
            return _Span(lower, self.upper - other.upper, True)
        if other.open:
            return _Span(lower, other.upper - self.upper, True)
        return _Span(lower, self.upper | other.upper)

    def intersection(self, other: _Span) -> _Span:
        lower = self.lower & other.lower
        if self.open and other.open:
            return _Span(lower, self.upper | other.upper, True)
        if self.open:
            return _Span(lower, other.upper - self.upper)
        if other.open:
            return _Span(lower, self.upper - other.upper)
        return _Span(lower, self.upper & other.upper)

    def difference(self, other: _Span) -> _Span:
        lower = self.lower & other.upper if other.open else self.lower - other.upper
        if self.open:
            return _Span(lower, self.upper | other.lower, True)
        return _Span(lower, self.upper - other.lower)


def _exact(codes: Iterable[str]) -> _Span:
    codes = frozenset(codes)
    return _Span(codes, codes)


NOTHING = _Span(_EMPTY, _EMPTY)  # surely no code
UNDECIDED = _Span(_EMPTY, _EMPTY, True)  # no code decidable


@dataclass(frozen=True, slots=True)
class _Members:
    """A ValueSet's content: a span per code system, and `other` for every code system not named (NOTHING,
    or UNDECIDED when an imported ValueSet is not held)."""

    systems: dict[str, _Span]
    other: _Span = NOTHING

    def _combine(self, other: _Members, operation: Callable[[_Span, _Span], _Span]) -> _Members:
        systems = {
            system: operation(self.systems.get(system, self.other), other.systems.get(system, other.other))
            for system in self.systems.keys() | other.systems.keys()
        }
        return _Members(systems, operation(self.other, other.other))

    def union(self, other: _Members) -> _Members:
        return self._combine(other, _Span.union)

    def intersection(self, other: _Members) -> _Members:
        return self._combine(other, _Span.intersection)

    def difference(self, other: _Members) -> _Members:
        return self._combine(other, _Span.difference)


NO_MEMBERS = _Members({})
UNDECIDED_MEMBERS = _Members({}, UNDECIDED)


class _System:
    """The lookup for one code system of a compiled ValueSet."""

    __slots__ = ("codes", "loose", "norm", "span")

    def __init__(self, span: _Span, norm: Callable[[str], str], loose: bool) -> None:
        self.span = span
        self.codes = span.lower if span.exact else None  # fast path: an enumerated set
        self.norm = norm
        # The code system leaves case open (caseSensitive absent): a code differing only in case from a
        # member cannot be decided (https://hl7.org/fhir/R4/codesystem-definitions.html#CodeSystem.caseSensitive).
        self.loose = frozenset(code.casefold() for code in span.lower) if loose else None

    def answer(self, code: str) -> bool | None:
        code = self.norm(code)
        codes = self.codes
        found = (code in codes) if codes is not None else self.span.answer(code)
        if found is False and self.loose is not None and code.casefold() in self.loose:
            return None
        return found


class _Lookup:
    """A compiled ValueSet: what `Terminology.contains` consults."""

    __slots__ = ("enumerable", "other", "systems")

    def __init__(self, members: _Members, norms: Callable[[str], tuple[Callable[[str], str], bool]]) -> None:
        self.systems: dict[str, _System] = {}
        for system, span in members.systems.items():
            if span == members.other:
                continue
            norm, loose = norms(system)
            self.systems[system] = _System(span, norm, loose)
        self.other: bool | None = False if members.other == NOTHING else None
        self.enumerable = self.other is False and all(s.codes is not None for s in self.systems.values())

    def contains(self, system: str | None, code: str) -> bool | None:
        if system is None:
            return False if self.enumerable else None
        entry = self.systems.get(system)
        if entry is None:
            return self.other
        return entry.answer(code)

    def contains_code(self, code: str) -> bool | None:
        answers = {entry.answer(code) for entry in self.systems.values()}
        if True in answers:
            return True
        if None in answers or self.other is None:
            return None
        return False


def _identity(code: str) -> str:
    return code


def _url(canonical: str) -> str:
    return canonical.partition("|")[0]


class Terminology:
    """The ValueSets and CodeSystems a server knows, and membership in them. Thread-safe.

    One resource is held per canonical url: a later `add` of the same url replaces the earlier one
    (whatever their versions) and drops every cached membership. A `url|version` canonical is looked up
    by its url alone, so the version is ignored (only one version is ever held).
    """

    def __init__(self, resources: Iterable[dict[str, Any]] = ()) -> None:
        self._lock = threading.RLock()
        self._valuesets: dict[str, dict[str, Any]] = {}
        self._codesystems: dict[str, dict[str, Any]] = {}
        self._implicit: dict[str, str] = {}  # CodeSystem.valueSet (all its codes) -> CodeSystem url
        self._indexes: dict[str, CodeSystemIndex] = {}
        self._members: dict[str, _Members] = {}
        self._lookups: dict[str, _Lookup] = {}
        for resource in resources:
            self.add(resource)

    def add(self, resource: dict[str, Any]) -> bool:
        """Hold a ValueSet or CodeSystem (replacing any with the same `url`); False when it is ignored
        because it has no `url` or is a CodeSystem supplement (codesystem.html#supplements: it defines
        no codes). Raises ValueError for any other resource type. The resource is kept as given: do not
        change it afterwards."""
        kind = resource.get("resourceType")
        if kind not in TERMINOLOGY_TYPES:
            raise ValueError(f"Terminology holds ValueSet and CodeSystem resources, not {kind!r}")
        url = resource.get("url")
        if not isinstance(url, str) or not url:
            return False
        if kind == "CodeSystem" and resource.get("content") == "supplement":
            return False
        with self._lock:
            if kind == "ValueSet":
                self._valuesets[url] = resource
            else:
                previous = self._codesystems.get(url, {}).get("valueSet")
                if isinstance(previous, str) and self._implicit.get(_url(previous)) == url:
                    del self._implicit[_url(previous)]
                self._codesystems[url] = resource
                self._indexes.pop(url, None)
                implicit = resource.get("valueSet")
                if isinstance(implicit, str) and implicit:
                    self._implicit[_url(implicit)] = url
            self._members = {}
            self._lookups = {}
        return True

    def remove(self, kind: str, url: str) -> None:
        """Forget the ValueSet or CodeSystem `url` (a delete through the API)."""
        with self._lock:
            if kind == "ValueSet":
                self._valuesets.pop(url, None)
            else:
                implicit = self._codesystems.pop(url, {}).get("valueSet")
                if isinstance(implicit, str):
                    self._implicit.pop(_url(implicit), None)
                self._indexes.pop(url, None)
            self._members = {}
            self._lookups = {}

    def held(self, kind: str, url: str) -> dict[str, Any] | None:
        """The ValueSet or CodeSystem held under `url`, as added."""
        return (self._valuesets if kind == "ValueSet" else self._codesystems).get(url)

    def overlay(self) -> Terminology:
        """A Terminology holding what this one holds, to which a server adds what its store holds:
        resources are shared (never changed), compiled memberships are not."""
        with self._lock:
            copy = Terminology()
            copy._valuesets = dict(self._valuesets)
            copy._codesystems = dict(self._codesystems)
            copy._implicit = dict(self._implicit)
        return copy

    def knows(self, valueset: str) -> bool:
        """Whether the ValueSet is held (or is the all-codes ValueSet a held CodeSystem names)."""
        url = _url(valueset)
        return url in self._valuesets or url in self._implicit

    def display_name(self, valueset: str) -> str:
        """The ValueSet's title, else its name, else the canonical itself (for error messages)."""
        url = _url(valueset)
        resource = self._valuesets.get(url)
        if resource is None and url in self._implicit:
            resource = self._codesystems.get(self._implicit[url])
        if resource is not None:
            for key in ("title", "name"):
                if isinstance(resource.get(key), str) and resource[key]:
                    return resource[key]
        return valueset

    def contains(self, valueset: str, system: str | None, code: str) -> bool | None:
        """Whether `code` of `system` is in the ValueSet `valueset` (a canonical, `url` or `url|version`):
        True or False when that can be decided, None when it cannot (the ValueSet is not held; it takes
        the code's system from a code system not held, or not held completely, or by a filter that cannot
        be evaluated here; an imported ValueSet is not held).

        A Coding without a system (`system` None) identifies no concept: it is in no ValueSet, which is
        answered False only when the ValueSet is fully enumerable (every part decidable), None otherwise.
        """
        lookup = self._lookups.get(valueset)
        if lookup is None:
            lookup = self._lookup(valueset)
            if lookup is None:
                return None
        return lookup.contains(system, code)

    def contains_code(self, valueset: str, code: str) -> bool | None:
        """For elements of type `code`, whose system the binding implies: whether `code` is in the
        ValueSet under any code system (True), under none (False), or cannot be decided (None)."""
        lookup = self._lookups.get(valueset)
        if lookup is None:
            lookup = self._lookup(valueset)
            if lookup is None:
                return None
        return lookup.contains_code(code)

    # Compilation (under the lock; imports recurse).

    def _lookup(self, valueset: str) -> _Lookup | None:
        with self._lock:
            lookup = self._lookups.get(valueset)
            if lookup is None:
                members = self._compile(_url(valueset), frozenset(), set())
                if members is None:
                    return None
                lookup = _Lookup(members, self._norms)
                self._lookups[valueset] = lookup
            return lookup

    def _index(self, system: str) -> CodeSystemIndex | None:
        index = self._indexes.get(system)
        if index is None:
            resource = self._codesystems.get(system)
            if resource is None:
                return None
            index = self._indexes[system] = CodeSystemIndex(resource)
        return index

    def _norms(self, system: str) -> tuple[Callable[[str], str], bool]:
        """How codes of `system` are compared: the normalisation, and whether case is left open."""
        index = self._index(system)
        if index is None:
            return _identity, False
        return index.norm, index.case_sensitive is None

    def _compile(self, url: str, importing: frozenset[str], cycles: set[str]) -> _Members | None:
        """The ValueSet's members. An import back to a ValueSet being compiled (`importing`, a cycle) adds
        what cannot be decided; a result that depends on such a cut above it is not cached, so answers
        do not depend on which ValueSet of a cycle was asked first."""
        members = self._members.get(url)
        if members is not None:
            return members
        if url in importing:
            cycles.add(url)
            return UNDECIDED_MEMBERS
        resource = self._valuesets.get(url)
        if resource is not None:
            inner: set[str] = set()
            members = self._valueset(resource, importing | {url}, inner)
            inner.discard(url)
            cycles |= inner
            if inner:
                return members
        elif url in self._implicit:
            members = self._system_part(self._implicit[url], {})
        else:
            return None
        self._members[url] = members
        return members

    def _valueset(self, resource: dict[str, Any], importing: frozenset[str], cycles: set[str]) -> _Members:
        """https://hl7.org/fhir/R4/valueset.html#compositions; the expansion when there is no compose."""
        compose = resource.get("compose")
        if isinstance(compose, dict) and compose.get("include"):
            members = NO_MEMBERS
            for item in compose["include"]:
                members = members.union(self._include(item, importing, cycles))
            for item in compose.get("exclude") or ():
                members = members.difference(self._include(item, importing, cycles))
            return members
        expansion = resource.get("expansion")
        if isinstance(expansion, dict):
            return self._expansion(expansion)
        return UNDECIDED_MEMBERS

    def _include(self, item: dict[str, Any], importing: frozenset[str], cycles: set[str]) -> _Members:
        """One `compose.include` (or `exclude`): its system part intersected with every imported ValueSet
        (valueset-definitions.html#ValueSet.compose.include.valueSet)."""
        parts: list[_Members] = []
        system = item.get("system")
        if isinstance(system, str) and system:
            parts.append(self._system_part(system, item))
        for canonical in item.get("valueSet") or ():
            imported = self._compile(_url(canonical), importing, cycles) if isinstance(canonical, str) else None
            parts.append(UNDECIDED_MEMBERS if imported is None else imported)
        if not parts:
            return NO_MEMBERS
        members = parts[0]
        for part in parts[1:]:
            members = members.intersection(part)
        return members

    def _system_part(self, system: str, item: dict[str, Any]) -> _Members:
        """The codes of `system` an include selects: its `concept` list, its `filter`s (all must hold) or,
        with neither, every code of the code system."""
        index = self._index(system)
        norm = index.norm if index is not None else _identity
        spans: list[_Span] = []
        concepts = item.get("concept")
        if concepts:
            spans.append(
                _exact(norm(c["code"]) for c in concepts if isinstance(c, dict) and isinstance(c.get("code"), str))
            )
        filters = item.get("filter") or ()
        for entry in filters:
            spans.append(self._filter(index, norm, entry))
        if not concepts and not filters:
            if index is None:
                spans.append(UNDECIDED)
            elif index.complete:
                spans.append(_exact(index.codes))
            else:
                spans.append(_Span(index.codes, _EMPTY, True))
        span = spans[0]
        for other in spans[1:]:
            span = span.intersection(other)
        return _Members({system: span})

    @staticmethod
    def _filter(index: CodeSystemIndex | None, norm: Callable[[str], str], entry: dict[str, Any]) -> _Span:
        """One `compose.include.filter` (https://hl7.org/fhir/R4/valueset-filter-operator.html)."""
        prop, op, value = entry.get("property"), entry.get("op"), entry.get("value")
        if not (isinstance(prop, str) and isinstance(op, str) and isinstance(value, str)):
            return UNDECIDED
        if index is not None:
            found = index.select(prop, op, value)
            if found is None:
                return UNDECIDED
            return _exact(found) if index.complete else _Span(found, _EMPTY, True)
        if prop != "concept":
            return UNDECIDED
        # The code system is not held: only the named concept itself is known.
        if op == "=":
            return _exact({norm(value)})
        if op == "in":
            return _exact(norm(item.strip()) for item in value.split(","))
        if op in ("is-a", "generalizes"):
            return _Span(frozenset({norm(value)}), _EMPTY, True)
        if op in ("descendent-of", "is-not-a"):
            return _Span(_EMPTY, frozenset({norm(value)}), True)
        return UNDECIDED

    def _expansion(self, expansion: dict[str, Any]) -> _Members:
        """`expansion.contains` (nested), without its abstract entries (not selectable). An expansion
        holding fewer entries than its `total`, or paged (`offset`), decides only what it lists."""
        found: dict[str, set[str]] = {}
        count = 0

        def walk(entries: Iterable[Any]) -> None:
            nonlocal count
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                count += 1
                system, code = entry.get("system"), entry.get("code")
                if isinstance(system, str) and isinstance(code, str) and entry.get("abstract") is not True:
                    found.setdefault(system, set()).add(code)
                walk(entry.get("contains") or ())

        walk(expansion.get("contains") or ())
        total = expansion.get("total")
        partial = "offset" in expansion or (isinstance(total, int) and total > count)
        systems = {}
        for system, codes in found.items():
            norm = self._norms(system)[0]
            normed = frozenset(norm(code) for code in codes)
            systems[system] = _Span(normed, _EMPTY, True) if partial else _exact(normed)
        return _Members(systems, UNDECIDED if partial else NOTHING)


def profile_resources(folder: Path = PROFILES_DIR) -> Iterator[dict[str, Any]]:
    """The ValueSets and CodeSystems (alone or in Bundles) of the JSON files under `folder`, outside any
    `examples/` folder."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.json")):
        if "examples" in path.relative_to(folder).parts[:-1]:
            continue
        data = path.read_bytes()
        if b'"ValueSet"' not in data and b'"CodeSystem"' not in data:
            continue
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        candidates = [parsed]
        if isinstance(parsed, dict) and parsed.get("resourceType") == "Bundle":
            candidates = [entry.get("resource") for entry in parsed.get("entry") or () if isinstance(entry, dict)]
        for candidate in candidates:
            if isinstance(candidate, dict) and candidate.get("resourceType") in TERMINOLOGY_TYPES:
                yield candidate


@cache
def default_terminology() -> Terminology:
    """The process's Terminology: the R4 core ValueSets and CodeSystems (`definitions.terminology()`),
    then every ValueSet and CodeSystem under the repository's `profiles/` (later ones replace earlier)."""
    terminology = Terminology(definitions.terminology())
    for resource in profile_resources():
        terminology.add(resource)
    return terminology
