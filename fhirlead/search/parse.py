"""Request parameters -> SearchQuery IR (https://hl7.org/fhir/R4/search.html).

Usable without HTTP: `parse_search(registry, types, params, ...)` takes the parameters as
`[(name, value), ...]` exactly as they came (URL query and form body), and returns a ParsedSearch:
the query, the parameters actually applied (for the self link) and warnings for what was ignored.
Parameters are ANDed by repetition and ORed by comma; malformed values raise a 400 FhirError;
unknown parameters are ignored with a warning, or raise a 400 when `strict` (Prefer: handling=strict,
and always for conditional interactions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fhirlead import subsetting
from fhirlead.errors import FhirError, Issue, bad_request
from fhirlead.numbers import count_param
from fhirlead.search.query import (
    Chain,
    Clause,
    CompositeMatch,
    Has,
    IdMatch,
    Include,
    InList,
    LastUpdated,
    Missing,
    Predicate,
    SearchQuery,
    SortKey,
)
from fhirlead.search.registry import SearchParam, SearchRegistry
from fhirlead.search.types import date, number, quantity, reference, string, token, uri
from fhirlead.search.values import split_unescaped, unescape

# Result parameters (https://hl7.org/fhir/R4/search.html#return) and what the transport layer owns.
RESULT_PARAMS = frozenset(
    {
        "_sort",
        "_count",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_cursor",
    }
)
TRANSPORT_PARAMS = frozenset({"_format", "_pretty"})
UNSUPPORTED_SPECIAL = frozenset({"_text", "_content", "_query", "_filter"})
TOTAL_MODES = frozenset({"none", "estimate", "accurate"})
MAX_CHAIN_DEPTH = 4
MAX_VALUES = 500  # comma-separated values in one parameter
MAX_PARAMETERS = 100  # parameters in one search (each becomes SQL; SQLite bounds a statement's size)
CURSOR = "_cursor"


@dataclass
class ParsedSearch:
    """A parsed search: what to run, what was applied, what was ignored, and how to render results."""

    query: SearchQuery
    used: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None


class _Ignored(Exception):
    """A parameter this server does not know or support (a warning, or a 400 when strict)."""


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class _Parser:
    registry: SearchRegistry
    base_url: str
    now_us: int

    # -- one parameter ---------------------------------------------------------------------

    def param_clause(self, types: tuple[str, ...], name: str, raw: str, depth: int = 0) -> Clause:
        """The clause for `name=raw` on resources of `types` (chains and _has recurse)."""
        if depth > MAX_CHAIN_DEPTH:
            raise bad_request(f"Parameter '{name}' chains more than {MAX_CHAIN_DEPTH} levels", name)
        if name.startswith("_has:"):
            return Clause((self._has(types, name, raw, depth),))
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        if dot:
            return Clause((self._chain(types, code, modifier, rest, raw, depth),))
        if code in UNSUPPORTED_SPECIAL:
            raise _Ignored(f"Parameter '{code}' is not supported by this server")
        if code == "_id":
            self._no_modifier(code, modifier)
            return Clause((IdMatch(tuple(unescape(v) for v in split_unescaped(raw, ","))),))
        if code == "_lastUpdated":
            self._no_modifier(code, modifier)
            values = [date.parse("", v, code, self.now_us) for v in split_unescaped(raw, ",")]
            return Clause(tuple(LastUpdated(v.prefix, int(v.low), int(v.high)) for v in values))
        if code == "_list":
            self._no_modifier(code, modifier)
            return Clause(tuple(InList(unescape(v)) for v in split_unescaped(raw, ",")))
        param = self._param(types, code)
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise bad_request(f"Invalid value '{raw}' for '{name}': expected true or false", name)
            if param.type == "composite":  # present when its first component is
                first = self.registry.by_url(param.components[0].definition) if param.components else None
                if first is None:
                    raise _Ignored(f"Composite '{param.code}' refers to an unknown component")
                return Clause((Missing(f"{param.code}#0", first.type, raw == "true"),))
            return Clause((Missing(param.code, param.type, raw == "true"),))
        predicates = tuple(self.value(param, modifier, value, name) for value in split_unescaped(raw, ","))
        return Clause(predicates, negate=modifier == "not" and param.type == "token")

    def value(
        self, param: SearchParam, modifier: str, raw: str, name: str, key: str | None = None
    ) -> Predicate:
        """One comma-separated value of `param` as a predicate (escapes still in `raw`)."""
        key = key or param.code
        kind = param.type
        if kind in ("date", "number", "quantity") and modifier:
            raise bad_request(f"Unsupported modifier ':{modifier}' on {kind} parameter '{name}'", name)
        if kind == "string":
            return string.parse(key, unescape(raw), modifier, name)
        if kind == "token":
            return token.parse(key, raw, modifier, name)
        if kind == "date":
            return date.parse(key, unescape(raw), name, self.now_us)
        if kind == "number":
            return number.parse(key, unescape(raw), name)
        if kind == "quantity":
            return quantity.parse(key, raw, name)
        if kind == "reference":
            return reference.parse(key, raw, modifier, name, self.base_url)
        if kind == "uri":
            return uri.parse(key, unescape(raw), modifier, name)
        if kind == "composite":
            return self._composite(param, modifier, raw, name)
        raise _Ignored(f"Parameter '{param.code}' of type {kind} is not supported by this server")

    def _composite(self, param: SearchParam, modifier: str, raw: str, name: str) -> CompositeMatch:
        if modifier:
            raise bad_request(f"Unsupported modifier ':{modifier}' on composite parameter '{name}'", name)
        parts = split_unescaped(raw, "$")
        if len(parts) != len(param.components):
            raise bad_request(
                f"Invalid value '{raw}' for composite '{name}': "
                f"expected {len(param.components)} parts joined by $",
                name,
            )
        predicates = []
        for position, (part, component) in enumerate(zip(parts, param.components, strict=True)):
            definition = self.registry.by_url(component.definition)
            if definition is None:
                raise _Ignored(f"Composite '{param.code}' refers to an unknown component")
            predicates.append(self.value(definition, "", part, name, key=f"{param.code}#{position}"))
        return CompositeMatch(param.code, tuple(predicates))

    @staticmethod
    def _no_modifier(code: str, modifier: str) -> None:
        if modifier:
            raise bad_request(f"Unsupported modifier ':{modifier}' on '{code}'", code)

    def _param(self, types: tuple[str, ...], code: str) -> SearchParam:
        """The parameter `code` on every one of `types` (one definition's type for all of them)."""
        found = [self.registry.get(type_, code) for type_ in types]
        if not found or any(p is None for p in found):
            where = types[0] if len(types) == 1 else "every requested type"
            raise _Ignored(f"Unknown search parameter '{code}' for {where}")
        kinds = {p.type for p in found if p is not None}
        if len(kinds) != 1:
            raise _Ignored(f"Parameter '{code}' has different types across the requested resource types")
        param = found[0]
        assert param is not None
        if not param.indexed:
            raise _Ignored(f"Parameter '{code}' ({param.type}) is not supported by this server")
        return param

    def _chain(
        self, types: tuple[str, ...], code: str, modifier: str, rest: str, raw: str, depth: int
    ) -> Chain:
        param = self._param(types, code)
        name = f"{code}{':' + modifier if modifier else ''}.{rest}"
        if param.type != "reference":
            raise bad_request(f"Cannot chain '{name}': '{code}' is not a reference parameter", name)
        next_code = rest.partition(".")[0].partition(":")[0]
        if modifier:
            if not self.registry.is_resource_type(modifier):
                raise bad_request(f"Unknown resource type ':{modifier}' in chain '{name}'", name)
            targets: tuple[str, ...] = (modifier,)
        else:
            candidates = {
                t for type_ in types for t in self.registry.targets(type_, self._param((type_,), code))
            }
            if next_code.startswith("_has"):
                targets = tuple(sorted(candidates))
            else:
                targets = tuple(
                    sorted(
                        t
                        for t in candidates
                        if next_code in ("_id", "_lastUpdated") or self.registry.get(t, next_code) is not None
                    )
                )
            if not targets:
                raise _Ignored(f"No target of '{code}' has a search parameter '{next_code}'")
            if len(targets) > 1:
                raise bad_request(
                    f"Chain '{name}' is ambiguous: '{code}' may point to {', '.join(targets)}, which all "
                    f"have '{next_code}'; name the type, e.g. '{code}:{targets[0]}.{rest}'",
                    name,
                )
        inner = self.param_clause(targets, rest, raw, depth + 1)
        return Chain(param.code, targets, (inner,))

    def _has(self, types: tuple[str, ...], name: str, raw: str, depth: int) -> Has:
        parts = name[5:].split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise bad_request(f"Invalid '{name}': expected _has:Type:reference:parameter", name)
        source, code, rest = parts
        if not self.registry.is_resource_type(source):
            raise bad_request(f"Unknown resource type '{source}' in '{name}'", name)
        param = self.registry.get(source, code)
        if param is None or param.type != "reference":
            raise bad_request(f"'{code}' is not a reference parameter of {source} (in '{name}')", name)
        reachable = set(self.registry.targets(source, param))
        if not any(type_ in reachable for type_ in types):
            raise bad_request(f"{source}.{code} does not refer to {', '.join(types)} (in '{name}')", name)
        inner = self.param_clause((source,), rest, raw, depth + 1)
        return Has(source, param.code, (inner,))

    # -- result parameters -----------------------------------------------------------------

    def sort(self, types: tuple[str, ...], raw: str) -> tuple[SortKey, ...]:
        keys = []
        for item in raw.split(","):
            item = item.strip()
            descending = item.startswith("-")
            code = item[1:] if descending else item
            if not code:
                raise bad_request(f"Invalid _sort '{raw}'", "_sort")
            if code in ("_id", "_lastUpdated"):
                keys.append(SortKey(code, "special", descending))
                continue
            param = self._param(types, code)
            if param.type in ("composite", "special"):
                raise bad_request(f"Cannot sort on {param.type} parameter '{code}'", "_sort")
            keys.append(SortKey(param.code, param.type, descending))
        return tuple(keys)

    def include(self, types: tuple[str, ...], name: str, raw: str) -> list[Include]:
        reverse = name.startswith("_revinclude")
        modifier = name.partition(":")[2]
        if modifier not in ("", "iterate", "recurse"):
            raise bad_request(f"Unsupported modifier ':{modifier}' on {name.partition(':')[0]}", name)
        iterate = bool(modifier)
        if raw == "*":
            if reverse:
                raise bad_request("_revinclude=* is not supported: name the source type and parameter", name)
            sources = tuple(self.registry.types()) if iterate else types
            return [
                Include(
                    source, tuple(p.code for p in self.registry.reference_params(source)), iterate=iterate
                )
                for source in sources
                if self.registry.reference_params(source)
            ]
        parts = raw.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise bad_request(f"Invalid {name} '{raw}': expected SourceType:parameter[:TargetType]", name)
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.registry.is_resource_type(source) or (
            target and not self.registry.is_resource_type(target)
        ):
            raise bad_request(f"Invalid {name} '{raw}': unknown resource type", name)
        if not reverse and not iterate and source not in types:
            raise bad_request(f"Invalid {name} '{raw}': {source} is not a type of this search", name)
        if code == "*":
            codes = tuple(p.code for p in self.registry.reference_params(source))
        else:
            param = self.registry.get(source, code)
            if param is None or param.type != "reference":
                raise _Ignored(f"{name}: '{code}' is not a reference parameter of {source}")
            codes = (param.code,)
        return [Include(source, codes, target, reverse, iterate)]


def parse_search(
    registry: SearchRegistry,
    types: tuple[str, ...],
    params: list[tuple[str, str]],
    *,
    base_url: str = "",
    default_count: int = 50,
    max_count: int = 1000,
    strict: bool = False,
    extra: tuple[Clause, ...] = (),
    now_us: int | None = None,
) -> ParsedSearch:
    """Parse search parameters for resources of `types` into a ParsedSearch.

    `extra` clauses are ANDed to the parsed ones (compartment membership). Raises FhirError(400) for
    malformed values, and for unknown parameters when `strict`.
    """
    parser = _Parser(registry, base_url, now_us if now_us is not None else _now_us())
    where: list[Clause] = list(extra)
    used: list[tuple[str, str]] = []
    warnings: list[Issue] = []
    sort: tuple[SortKey, ...] = ()
    includes: list[Include] = []
    count, total, cursor = default_count, "auto", None
    summary_raw = elements_raw = None

    def ignore(name: str, why: str) -> None:
        if strict:
            raise FhirError(400, [Issue("not-supported", why, expression=(name,))])
        warnings.append(Issue("not-supported", f"{why}; the parameter was ignored", "warning", (name,)))

    if len(params) > MAX_PARAMETERS:
        raise FhirError(400, [Issue("too-costly", f"A search may have at most {MAX_PARAMETERS} parameters")])
    too_many = [name for name, raw in params if raw.count(",") >= MAX_VALUES]
    if too_many:
        raise FhirError(
            400,
            [
                Issue(
                    "too-costly",
                    f"A parameter may have at most {MAX_VALUES} values",
                    expression=(too_many[0],),
                )
            ],
        )
    for name, raw in params:
        try:
            if name in TRANSPORT_PARAMS or name == "_type":
                continue
            if name == CURSOR:
                cursor = raw
                continue
            if name == "_count":
                count = count_param(raw, max_count)
                used.append((name, str(count)))
            elif name == "_sort":
                sort = parser.sort(types, raw)
                used.append((name, raw))
            elif name == "_total":
                if raw not in TOTAL_MODES:
                    raise bad_request(f"Invalid _total '{raw}': expected none, estimate or accurate", name)
                total = raw
                used.append((name, raw))
            elif name == "_summary":
                summary_raw = raw
            elif name == "_elements":
                elements_raw = raw
            elif name.partition(":")[0] in ("_include", "_revinclude"):
                includes += parser.include(types, name, raw)
                used.append((name, raw))
            elif name in ("_contained", "_containedType"):
                ignore(name, f"'{name}' is not supported by this server")
            elif raw == "":
                ignore(name, f"Parameter '{name}' has no value")
            else:
                where.append(parser.param_clause(types, name, raw))
                used.append((name, raw))
        except _Ignored as why:
            ignore(name, str(why))
    summary, elements = subsetting.requested(summary_raw, elements_raw)
    if summary is not None:
        used.append(("_summary", summary))
    if elements_raw is not None:
        used.append(("_elements", elements_raw))
    if summary == "count":
        count, total = 0, "accurate"
    if count == 0 and total == "auto":
        total = "accurate"  # a page without entries is only asked for its total
    query = SearchQuery(
        types=types,
        where=tuple(where),
        sort=sort,
        count=count,
        cursor=cursor,
        total=total,
        include=tuple(includes),
        base_url=base_url,
        group_members=summary not in ("true", "text") and (elements is None or "member" in elements),
    )
    return ParsedSearch(query, used, warnings, summary, elements)
