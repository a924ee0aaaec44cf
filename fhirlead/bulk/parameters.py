"""The kick-off parameters that narrow or reshape an export (Bulk Data 2.0.0 §"Query Parameters",
https://hl7.org/fhir/uv/bulkdata/STU2/export.html): `_typeFilter`, `_elements`, `patient` and
`includeAssociatedData`, checked at kick-off into the plain values the job record keeps (so a resumed job
needs nothing else). Each refusal is a 400 naming the parameter; under `Prefer: handling=lenient` what can
be ignored is ignored, with a warning for the manifest's `error` file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fhirlead.definitions import resource_types
from fhirlead.errors import FhirError, bad_request
from fhirlead.search.parse import RESULT_PARAMS, parse_search
from fhirlead.subsetting import _top_level

# one `_typeFilter` value may join several queries with commas (§"_typeFilter Experimental Query Parameter");
# a comma inside a query (a search OR) is not followed by `Type?`
QUERY_START = re.compile(r",(?=[A-Z][A-Za-z]*(?:\?|%3[Ff]))")
NOT_IN_FILTER = RESULT_PARAMS | {"_type", "_format", "_pretty"}
ASSOCIATED = frozenset({"LatestProvenanceResources", "RelevantProvenanceResources"})
Filters = dict[str, list[list[list[str]]]]  # type -> ORed queries -> ANDed [name, value] pairs


@dataclass
class Leniency:
    """Whether the request is lenient, and the warnings of what it had ignored."""

    lenient: bool
    warnings: list[str] = field(default_factory=list)

    def refuse(self, text: str, parameter: str) -> None:
        """400 naming `parameter`, or (lenient) a warning that it was ignored."""
        if not self.lenient:
            raise bad_request(f"{text} (send Prefer: handling=lenient to have it ignored)", parameter)
        self.warnings.append(f"{text}: ignored (Prefer: handling=lenient)")


def _queries(values: list[Any]) -> list[str]:
    """Every query of every `_typeFilter` value (repeated values count as comma-joined ones)."""
    found = []
    for value in values:
        for query in QUERY_START.split(str(value)):
            query = query.strip()
            if query and "?" not in query and "%3f" in query.lower():  # a query URL-encoded once more
                query = unquote(query)
            if query:
                found.append(query)
    return found


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(unquote(name), unquote(value)) for name, _, value in (p.partition("=") for p in text.split("&") if p)]


def type_filters(registry: Any, values: list[Any], types: list[str], base_url: str, leniency: Leniency) -> Filters:
    """`_typeFilter` as search queries per exported type (several for one type are ORed), each parsed by the
    server's search parser, strictly: an unknown parameter or a malformed value is a 400 naming it. A query on
    a type the export does not hold is ignored (§"_typeFilter": it only narrows `_type`)."""
    filters: Filters = {}
    for query in _queries(values):
        type_, mark, text = query.partition("?")
        if type_ not in resource_types() or not mark:
            raise bad_request(f"'_typeFilter' {query!r} is not [Type]?[search parameters]", "_typeFilter")
        pairs = _pairs(text)
        if not pairs:
            raise bad_request(f"'_typeFilter' {query!r} has no search parameters", "_typeFilter")
        result = [name for name, _ in pairs if name.partition(":")[0] in NOT_IN_FILTER]
        if result:
            raise bad_request(f"'_typeFilter' {query!r}: {result[0]} is a search result parameter, which a "
                              f"_typeFilter may not use", "_typeFilter")
        try:
            parsed = parse_search(registry, (type_,), pairs, base_url=base_url, strict=True)
        except FhirError as error:
            leniency.refuse(f"'_typeFilter' {query!r}: {error.issues[0].diagnostics}", "_typeFilter")
            continue
        if type_ in types:
            filters.setdefault(type_, []).append([[name, value] for name, value in parsed.used])
    return filters


def elements(values: list[Any], types: list[str], leniency: Leniency) -> dict[str, list[str]]:
    """`_elements`: per exported type the root elements to keep (`Type.element` for that type, `element` for
    every type); types named by none are exported whole. An unknown type or element, or a path below the
    root, is a 400."""
    names = [n.strip() for v in values for n in str(v).split(",") if n.strip()]
    if values and not names:
        raise bad_request("'_elements' names no element", "_elements")
    chosen: dict[str, list[str]] = {}
    for name in names:
        head, dot, rest = name.partition(".")
        qualified = bool(dot) and head in resource_types()
        element = (rest if qualified else name).removesuffix("[x]")
        if "." in element or (dot and not qualified):
            leniency.refuse(f"'_elements' {name!r} is not [Type].[element] or [element] of a root element",
                            "_elements")
            continue
        applies = [head] if qualified else types
        if not any(element in _top_level(t) for t in applies):
            leniency.refuse(f"'_elements' {name!r} is not an element of "
                            f"{head if qualified else 'any exported type'}", "_elements")
            continue
        for type_ in applies:
            if type_ in types and element not in chosen.get(type_, []):
                chosen.setdefault(type_, []).append(element)
    return chosen


def associated(values: list[Any], leniency: Leniency) -> None:
    """`includeAssociatedData`: the codes are known (`LatestProvenanceResources`,
    `RelevantProvenanceResources`, `_custom`), none is supported yet: a 400, or ignored when lenient. (Without
    it, Provenance is exported as any other type: all of it at system level, its Patient compartment at
    Patient and Group level, as §"Query Parameters" asks.)"""
    for code in (c.strip() for v in values for c in str(v).split(",")):
        if code not in ASSOCIATED and not (code.startswith("_") and len(code) > 1):
            raise bad_request(f"'includeAssociatedData' {code!r} is not LatestProvenanceResources, "
                              f"RelevantProvenanceResources or a _custom value", "includeAssociatedData")
        leniency.refuse(f"'includeAssociatedData' {code} is not supported", "includeAssociatedData")


def patient_id(value: Any, base_url: str) -> str | None:
    """The id a `patient` Reference names (`Patient/x`, or absolute under this server's base), else None."""
    text = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    text = text.removeprefix(base_url.rstrip("/") + "/")
    kind, _, id_ = text.partition("/")
    return id_ if kind == "Patient" and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", id_) else None


async def patients(server: Any, request: Any, values: list[Any], members: list[str] | None, leniency: Leniency,
                   ignore_outsiders: bool = False) -> list[str]:
    """`patient` (POST only, §"Query Parameters"): the patients named, each known to the server and, at Group
    level (`members`), a member of the Group; else a 400, or (lenient, or `ignore_outsiders` as ATR's
    `$davinci-data-export` asks) left out with a warning."""
    if request.method != "POST":
        raise bad_request("'patient' is only accepted in a POST kick-off (a Parameters body)", "patient")
    chosen: dict[str, None] = {}
    in_group = set(members) if members is not None else None

    def outsider(text: str) -> None:
        if ignore_outsiders:
            leniency.warnings.append(f"{text}: ignored")
        else:
            leniency.refuse(text, "patient")

    for value in values:
        id_ = patient_id(value, request.base_url)
        if id_ is None:
            raise bad_request(f"'patient' must be a Reference to a Patient, not {value!r}", "patient")
        stored = await server.store.read("Patient", id_)
        if stored is None or stored.body is None:
            outsider(f"'patient' Patient/{id_} is not known")
        elif in_group is not None and id_ not in in_group:
            outsider(f"'patient' Patient/{id_} is not a member of the Group")
        else:
            chosen[id_] = None
    return list(chosen)
