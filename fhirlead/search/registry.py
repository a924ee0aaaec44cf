"""SearchRegistry: which search parameters exist, per resource type, built once per server.

Driven entirely by SearchParameter resources: the official R4 set (`definitions.search_parameters()`)
plus any SearchParameter JSON found in `profiles/` (or handed in), so a custom parameter needs no code.
A custom parameter with the same code on the same base replaces the official one for that base.
Parameters on `Resource` / `DomainResource` apply to every resource type. The SearchParameters written
to the store are laid over these (`SearchRegistry.layered`, kept in force by `fhirlead.search.live`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhirlead.definitions import resource_types, search_parameters, structure

# Parameters the server evaluates on its own columns rather than on extracted index entries.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})
# Parameter types whose values are index entries; "special" parameters are not indexed.
INDEXED_TYPES = frozenset({"string", "token", "date", "number", "quantity", "reference", "uri", "composite"})
ABSTRACT_BASES = ("Resource", "DomainResource")
PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
# The R4 package also carries three *example* SearchParameters (one would redefine Condition.subject as
# pointing to Organizations); they illustrate the resource and are not part of the server's set.
_EXAMPLE = re.compile(r"^http://hl7\.org/fhir/SearchParameter/example(-|$)")


@dataclass(frozen=True, slots=True)
class Component:
    definition: str  # canonical url of the component's SearchParameter
    expression: str  # relative to the composite's base expression


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter as it applies to one or more resource types."""

    code: str
    url: str
    type: str
    base: tuple[str, ...]
    expression: str | None
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    modifiers: tuple[str, ...] = ()

    @property
    def indexed(self) -> bool:
        return self.type in INDEXED_TYPES and bool(self.expression) and self.code not in RESOURCE_COLUMNS


def search_param(resource: dict[str, Any]) -> SearchParam | None:
    """A SearchParameter resource as the registry holds it (None without base, code or type)."""
    base = tuple(resource.get("base") or ())
    code, kind = resource.get("code"), resource.get("type")
    if not base or not code or not kind:
        return None
    return SearchParam(
        code=code,
        url=resource.get("url") or f"urn:fhirlead:searchparameter:{base[0]}-{code}",
        type=kind,
        base=base,
        expression=resource.get("expression"),
        targets=tuple(resource.get("target") or ()),
        components=tuple(
            Component(c.get("definition", ""), c.get("expression", ""))
            for c in resource.get("component") or ()
        ),
        modifiers=tuple(resource.get("modifier") or ()),
    )


def profile_search_parameters(folder: Path = PROFILES_DIR) -> list[dict[str, Any]]:
    """SearchParameter resources (alone or inside Bundles) from the JSON files of `folder`."""
    found: list[dict[str, Any]] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*.json")):
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        candidates = [data]
        if isinstance(data, dict) and data.get("resourceType") == "Bundle":
            candidates = [e.get("resource") for e in data.get("entry") or ()]
        found += [c for c in candidates if isinstance(c, dict) and c.get("resourceType") == "SearchParameter"]
    return found


class SearchRegistry:
    """The search parameters of every resource type, and lookups by code and by canonical url."""

    def __init__(self, definitions: Iterable[dict[str, Any]]) -> None:
        self._by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in resource_types()}
        self._by_url: dict[str, SearchParam] = {}
        common: dict[str, SearchParam] = {}
        for resource in definitions:
            param = search_param(resource)
            if param is None:
                continue
            self._by_url[param.url] = param
            for base in param.base:
                if base in ABSTRACT_BASES:
                    common[param.code] = param
                elif base in self._by_type:
                    self._by_type[base][param.code] = param
        for params in self._by_type.values():
            for code, param in common.items():
                params.setdefault(code, param)
        self.common = common

    @classmethod
    def default(
        cls, extra: Iterable[dict[str, Any]] = (), profiles: Path | None = PROFILES_DIR
    ) -> SearchRegistry:
        """Official R4 parameters, then profiles/ SearchParameters, then `extra` (later ones win)."""
        custom = profile_search_parameters(profiles) if profiles is not None else []
        official = [p for p in search_parameters() if not _EXAMPLE.search(p.get("url", ""))]
        return cls([*official, *custom, *extra])

    @classmethod
    def layered(cls, stored: Iterable[dict[str, Any]]) -> SearchRegistry:
        """`base_definitions()` with `stored` SearchParameters over them: a stored one replaces every base
        one with its url (all its bases), then, like any later one, those with its code on its bases."""
        stored = list(stored)
        replaced = {resource.get("url") for resource in stored}
        return cls([*(p for p in base_definitions() if p.get("url") not in replaced), *stored])

    def types(self) -> Iterator[str]:
        return iter(self._by_type)

    def parameters_for(self, type_: str) -> list[SearchParam]:
        return sorted(self._by_type.get(type_, {}).values(), key=lambda p: p.code)

    def supported(self, type_: str) -> list[SearchParam]:
        """The parameters the server really evaluates for `type_` (what a CapabilityStatement lists):
        everything indexed, plus `_id` and `_lastUpdated`; not `special` ones such as `near`/`_text`."""
        return [p for p in self.parameters_for(type_) if p.indexed or p.code in RESOURCE_COLUMNS]

    def get(self, type_: str, code: str) -> SearchParam | None:
        return self._by_type.get(type_, {}).get(code)

    def by_url(self, url: str) -> SearchParam | None:
        return self._by_url.get(url)

    def common_param(self, code: str) -> SearchParam | None:
        return self.common.get(code)

    def reference_params(self, type_: str) -> list[SearchParam]:
        return [p for p in self.parameters_for(type_) if p.type == "reference"]

    def targets(self, type_: str, param: SearchParam) -> tuple[str, ...]:
        """The resource types a reference parameter may point to (every type when it does not say)."""
        if not param.targets or "Resource" in param.targets:
            return tuple(sorted(self._by_type))
        return tuple(sorted(t for t in param.targets if t in self._by_type))

    def is_resource_type(self, name: str) -> bool:
        return name in self._by_type


@cache
def _base_definitions() -> tuple[dict[str, Any], ...]:
    official = [p for p in search_parameters() if not _EXAMPLE.search(p.get("url", ""))]
    return (*official, *profile_search_parameters(PROFILES_DIR))


def base_definitions() -> list[dict[str, Any]]:
    """The SearchParameters every server starts from (R4 and profiles/; read once per process): what
    `SearchRegistry.default()` holds. Treat them as read-only."""
    return list(_base_definitions())


@cache
def base_registry() -> SearchRegistry:
    """`SearchRegistry(base_definitions())`, built once per process (what a stored SearchParameter may
    not collide with, `fhirlead.search.admission`)."""
    return SearchRegistry(base_definitions())


def datatype_exists(name: str) -> bool:
    return name in structure()
