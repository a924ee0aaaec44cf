"""Value sets from FHIR ValueSet resources, turned once into hash sets of (system, code).

A ValueSet's `expansion` is used when present; otherwise its `compose` is used when it can be
evaluated without a terminology server (enumerated concepts, whole code systems, other value sets).
A compose with property filters cannot be enumerated here; asking for such a value set raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhirlead.cql.clinical import Code, ValueSet
from fhirlead.cql.errors import CqlEvaluationError

# Code systems whose hierarchy is spelled by the codes themselves: a child code extends its parent's
# code by one or more characters (Source of Payment Typology: 3 > 31 > 311 > 3111). For these,
# is-a / descendent-of filters can be evaluated without a terminology server.
PREFIX_HIERARCHIES = frozenset({"https://nahdo.org/sopt", "urn:oid:2.16.840.1.113883.3.221.5"})


class Terminology:
    """Value sets by canonical URL (optionally `url|version`), built once from ValueSet resources."""

    def __init__(self, resources: Iterable[dict[str, Any]] = ()) -> None:
        self._resources: dict[str, dict[str, Any]] = {}
        self._built: dict[str, ValueSet] = {}
        for resource in resources:
            self.add(resource)

    def add(self, resource: dict[str, Any]) -> None:
        url = resource.get("url")
        if not url:
            return
        self._resources[url] = resource
        if resource.get("version"):
            self._resources[f"{url}|{resource['version']}"] = resource

    def __contains__(self, url: str) -> bool:
        return url in self._resources

    def valueset(self, url: str, version: str | None = None) -> ValueSet:
        """The value set for `url` (a bare OID-style id is tried as a VSAC URL too)."""
        key = f"{url}|{version}" if version and f"{url}|{version}" in self._resources else url
        cached = self._built.get(key)
        if cached is not None:
            return cached
        resource = self._resources.get(key)
        if resource is None and not url.startswith("http"):
            resource = self._resources.get(f"http://cts.nlm.nih.gov/fhir/ValueSet/{url}")
        if resource is None:
            raise CqlEvaluationError(f"value set {url} is not available (no ValueSet resource was supplied)")
        built = self._build(resource, set())
        self._built[key] = built
        return built

    def _build(self, resource: dict[str, Any], seen: set[str]) -> ValueSet:
        url = resource.get("url", "")
        seen.add(url)
        codes: list[Code] = []
        systems: list[str] = []
        excluded: list[tuple[str | None, str | None]] = []
        excluded_prefixes: list[tuple[str, str, bool]] = []
        expansion = resource.get("expansion")
        compose = resource.get("compose") or {}
        if expansion is not None and (expansion.get("contains") or not compose):
            _collect_contains(expansion.get("contains", ()), codes)
        else:
            for include in compose.get("include", ()):
                self._include(url, include, codes, systems, seen)
            for exclude in compose.get("exclude", ()):
                if _prefix_filters(exclude, excluded_prefixes):
                    continue
                removed: list[Code] = []
                nested_systems: list[str] = []
                self._include(url, exclude, removed, nested_systems, seen)
                if nested_systems:
                    raise CqlEvaluationError(f"value set {url} excludes a whole code system")
                excluded.extend((c.system, c.code) for c in removed)
        return ValueSet(
            url, resource.get("version"), codes, systems, resource.get("name"), excluded, excluded_prefixes
        )

    def _include(
        self, url: str, include: dict[str, Any], codes: list[Code], systems: list[str], seen: set[str]
    ) -> None:
        """Add one compose include (or exclude) criterion: concepts, exact-code filters, whole systems."""
        system = include.get("system")
        version = include.get("version")
        concepts = include.get("concept")
        filters = include.get("filter")
        if concepts:
            codes.extend(Code(c.get("code"), system, version, c.get("display")) for c in concepts)
        elif filters:
            for f in filters:
                prop, op, value = f.get("property"), f.get("op"), f.get("value", "")
                if prop == "concept" and op == "=":
                    codes.append(Code(value, system, version))
                elif prop == "concept" and op == "in":
                    codes.extend(Code(v.strip(), system, version) for v in value.split(","))
                else:
                    raise CqlEvaluationError(
                        f"value set {url} uses a {prop} {op} filter and has no expansion; "
                        "it needs a terminology server"
                    )
        elif system:
            systems.append(system)
        for ref in include.get("valueSet", ()):
            if ref in seen:
                continue
            inner = self._resources.get(ref)
            if inner is None:
                raise CqlEvaluationError(f"value set {ref} (used by {url}) is not available")
            nested = self._build(inner, seen)
            codes.extend(nested.codes)
            systems.extend(nested.whole_systems)


def _prefix_filters(criterion: dict[str, Any], out: list[tuple[str, str, bool]]) -> bool:
    """Hierarchy filters on a prefix-hierarchical system, as (system, prefix, includes-itself)."""
    system = criterion.get("system")
    filters = criterion.get("filter") or ()
    if system not in PREFIX_HIERARCHIES or not filters or criterion.get("concept"):
        return False
    if not all(f.get("property") == "concept" and f.get("op") in ("is-a", "descendent-of") for f in filters):
        return False
    for f in filters:
        out.append((system, f.get("value", ""), f.get("op") == "is-a"))
    return True


def _collect_contains(items: Iterable[dict[str, Any]], out: list[Code]) -> None:
    for item in items:
        if item.get("code") is not None and not item.get("abstract", False):
            out.append(Code(item["code"], item.get("system"), item.get("version"), item.get("display")))
        nested = item.get("contains")
        if nested:
            _collect_contains(nested, out)
