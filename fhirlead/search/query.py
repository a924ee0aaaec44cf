"""The search-query IR: what a backend executes, independent of HTTP and of any database.

`fhirlead.search.parse` builds it from request parameters; each backend compiles it (SQLite: SQL over
the index tables; MongoDB: a filter over index sub-documents). Values are already parsed and
normalized (dates as microsecond ranges, strings case-folded), so a backend only maps predicates onto
its storage and never interprets FHIR syntax.

Semantics: a query matches the resources of `types` (every type when empty) that satisfy every clause
in `where`; a clause holds when any of its predicates holds (OR by comma), or, when `negate` is set,
when none does (`:not`). A predicate on a multi-valued parameter holds when any one value satisfies it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Comparator prefixes (https://hl7.org/fhir/R4/search.html#prefix).
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class StringMatch:
    """mode: "start" (default: normalized starts-with), "exact" (code-point equal), "contains"."""

    key: str
    mode: str
    value: str


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """system None = any system; "" = no system. code None = any code (`system|`)."""

    key: str
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """A number, date or quantity comparison.

    kind: "number" | "date" | "quantity". `low`/`high` is the search value's implicit range (half-open
    for dates; for numbers low/high bound [low, high)), `value` the exact value (numbers, quantities).
    For quantities `system`/`code` restrict the unit (None = any), `unit` matches code or unit text.
    """

    key: str
    kind: str
    prefix: str
    low: float | int
    high: float | int
    value: float | int | None = None
    system: str | None = None
    code: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceMatch:
    """type None = any type. `url` matches absolute/canonical values; `version` a canonical's version."""

    key: str
    type: str | None
    id: str | None
    url: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class UriMatch:
    """mode: "eq", "below" (value is a prefix of the stored uri), "above" (stored uri is a prefix)."""

    key: str
    mode: str
    value: str


@dataclass(frozen=True, slots=True)
class CompositeMatch:
    """All component predicates hold on components of one and the same repetition."""

    key: str
    components: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Missing:
    """`:missing`: the resource has no value (missing=True) or some value (False) for `key`."""

    key: str
    kind: str
    missing: bool


@dataclass(frozen=True, slots=True)
class IdMatch:
    """`_id`: the logical id is one of `ids`."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastUpdated:
    """`_lastUpdated` against the version's write time (microseconds, half-open search range)."""

    prefix: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Chain:
    """`key:Type.param=...`: a reference in `key` points to a resource of one of `types` matching `where`."""

    key: str
    types: tuple[str, ...]
    where: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class Has:
    """`_has:Type:key:...`: some `type` resource whose reference `key` points here matches `where`."""

    type: str
    key: str
    where: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class InList:
    """`_list=id`: the resource is an item of List/id."""

    list_id: str


@dataclass(frozen=True, slots=True)
class Compartment:
    """In the compartment of `owner_type`/`owner_id`: per resource type, the reference parameters that
    place a resource there (https://hl7.org/fhir/R4/compartmentdefinition.html); the owner itself too."""

    owner_type: str
    owner_id: str
    params: tuple[tuple[str, tuple[str, ...]], ...]


Predicate = (
    StringMatch
    | TokenMatch
    | RangeMatch
    | ReferenceMatch
    | UriMatch
    | CompositeMatch
    | Missing
    | IdMatch
    | LastUpdated
    | Chain
    | Has
    | InList
    | Compartment
)


@dataclass(frozen=True, slots=True)
class Clause:
    """OR of predicates (comma-separated values); `negate` for `:not` (none of them holds)."""

    any_of: tuple[Predicate, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    """Order by a parameter's values: lowest value ascending, highest descending.

    key "_id" and "_lastUpdated" sort on the resource itself; kind is the parameter type's value kind.
    """

    key: str
    kind: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """`_include` (reverse False: follow the reference parameters `keys` of `source` resources) or
    `_revinclude` (reverse True: add `source` resources whose `keys` point at a result). `target`
    restricts the type reached. `iterate` applies it to included resources as well, until nothing new."""

    source: str
    keys: tuple[str, ...]
    target: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """One search: filters, order, page and includes.

    `count` is the page size (0 = no entries, only the total). `cursor` is the opaque paging position
    a previous page returned (the backend validates it). `total` is "none", "estimate" or "accurate";
    "auto" lets the backend give the total when it costs nothing (a single page). `base_url` lets the
    backend recognise absolute references to this server.
    """

    types: tuple[str, ...]
    where: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    cursor: str | None = None
    total: str = "auto"
    include: tuple[Include, ...] = ()
    base_url: str = ""
    # False when the answer leaves out Group.member (`_summary=true`, `_elements` without it): a store
    # that keeps members one by one then reads a 100,000-member list as cheaply as any resource.
    group_members: bool = True

    def signature(self) -> str:
        """What a paging cursor is bound to: the same filters, types and order."""
        return repr((self.types, self.where, self.sort))
