"""One CodeSystem, indexed for value set filters (https://hl7.org/fhir/R4/codesystem.html).

`CodeSystemIndex` knows a CodeSystem's codes, its is-a hierarchy and its concepts' property values, and
answers the filters of https://hl7.org/fhir/R4/valueset.html#compositions over them (`select`). The
hierarchy comes from nested `concept` (codesystem.html#hierarchy), from the `parent` / `subsumedBy`
properties (child to parent) and from the `child` property (parent to child), as the v3 code systems of
the R4 core package use it for concepts with more than one parent. `hierarchyMeaning` is not consulted:
every hierarchy is read as is-a, as validators commonly do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

# Concept properties that build the hierarchy (https://hl7.org/fhir/R4/codesystem-concept-properties.html).
PARENT_PROPERTIES = frozenset({"parent", "subsumedBy"})
CHILD_PROPERTIES = frozenset({"child"})
_PARENT_URIS = ("#parent", "#subsumedBy")
_CHILD_URIS = ("#child",)


def _identity(code: str) -> str:
    return code


def _fold(code: str) -> str:
    return code.casefold()


def _property_value(entry: dict[str, Any]) -> str | None:
    """A concept property's value as the string a filter's `value` is compared with."""
    for key, value in entry.items():
        if not key.startswith("value"):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):  # valueCoding
            code = value.get("code")
            return code if isinstance(code, str) else None
        return str(value)
    return None


class CodeSystemIndex:
    """The codes, hierarchy and property values of one CodeSystem.

    When `caseSensitive` is false every code is stored folded (`norm`) and codes are compared folded;
    when it is absent the spec leaves case open (codesystem.html, caseSensitive) and codes are stored as
    written: the caller decides what a match differing only in case means.
    """

    __slots__ = (
        "_children",
        "case_sensitive",
        "child_names",
        "codes",
        "complete",
        "content",
        "declared",
        "norm",
        "parent_names",
        "parents",
        "properties",
        "url",
    )

    def __init__(self, resource: dict[str, Any]) -> None:
        self.url: str = resource["url"]
        self.content: str = resource.get("content") or "complete"
        self.complete = self.content == "complete"
        case_sensitive = resource.get("caseSensitive")
        self.case_sensitive: bool | None = case_sensitive if isinstance(case_sensitive, bool) else None
        self.norm: Callable[[str], str] = _fold if self.case_sensitive is False else _identity
        parent_names = set(PARENT_PROPERTIES)
        child_names = set(CHILD_PROPERTIES)
        self.declared: set[str] = set()
        for prop in resource.get("property") or ():
            code = prop.get("code") if isinstance(prop, dict) else None
            uri = prop.get("uri") if isinstance(prop, dict) else None
            if not isinstance(code, str):
                continue
            uri = uri if isinstance(uri, str) else ""
            if uri.endswith(_PARENT_URIS):
                parent_names.add(code)
            elif uri.endswith(_CHILD_URIS):
                child_names.add(code)
            else:
                self.declared.add(code)
        self.declared -= parent_names | child_names
        self.parent_names = frozenset(parent_names)
        self.child_names = frozenset(child_names)
        codes: dict[str, None] = {}
        parents: dict[str, list[str]] = {}
        properties: dict[str, dict[str, list[str]]] = {}
        extra_children: list[tuple[str, str]] = []
        norm = self.norm

        def walk(concepts: Iterable[Any], parent: str | None) -> None:
            for concept in concepts:
                if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
                    continue
                code = norm(concept["code"])
                codes[code] = None
                links = parents.setdefault(code, [])
                if parent is not None and parent not in links:
                    links.append(parent)
                for entry in concept.get("property") or ():
                    if not isinstance(entry, dict):
                        continue
                    name, value = entry.get("code"), _property_value(entry)
                    if value is None:
                        continue
                    if name in parent_names:
                        if norm(value) not in links:
                            links.append(norm(value))
                    elif name in child_names:
                        extra_children.append((code, norm(value)))
                    elif isinstance(name, str):
                        properties.setdefault(name, {}).setdefault(code, []).append(value)
                walk(concept.get("concept") or (), code)

        walk(resource.get("concept") or (), None)
        for parent, child in extra_children:
            links = parents.setdefault(child, [])
            if parent not in links:
                links.append(parent)
        self.codes: frozenset[str] = frozenset(codes)
        self.parents: dict[str, tuple[str, ...]] = {code: tuple(links) for code, links in parents.items() if links}
        self.properties: dict[str, dict[str, tuple[str, ...]]] = {
            name: {code: tuple(values) for code, values in by_code.items()} for name, by_code in properties.items()
        }
        self._children: dict[str, tuple[str, ...]] | None = None

    @property
    def children(self) -> dict[str, tuple[str, ...]]:
        if self._children is None:
            children: dict[str, list[str]] = {}
            for code, links in self.parents.items():
                for parent in links:
                    children.setdefault(parent, []).append(code)
            self._children = {code: tuple(found) for code, found in children.items()}
        return self._children

    def _closure(self, start: str, links: dict[str, tuple[str, ...]]) -> set[str]:
        """Every code reachable from `start` over `links` (not `start` itself unless on a cycle)."""
        found: set[str] = set()
        stack = list(links.get(start, ()))
        while stack:
            code = stack.pop()
            if code not in found:
                found.add(code)
                stack.extend(links.get(code, ()))
        return found

    def descendants(self, code: str) -> set[str]:
        return self._closure(code, self.children)

    def ancestors(self, code: str) -> set[str]:
        return self._closure(code, self.parents)

    def select(self, prop: str, op: str, value: str) -> frozenset[str] | None:
        """The codes among this CodeSystem's concepts that pass one `compose.include.filter`
        (https://hl7.org/fhir/R4/valueset-filter-operator.html); None when it cannot be evaluated (an
        unknown operator or property, a bad regex). `concept` and `code` name the code itself, `parent` /
        `child` the direct hierarchy links; any other property must be declared in `CodeSystem.property`.
        """
        norm = self.norm
        if prop in ("concept", "code"):
            if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
                target = norm(value)
                if op == "generalizes":
                    found = self.ancestors(target) | {target}
                    return frozenset(found & self.codes)
                below = self.descendants(target)
                if op == "descendent-of":
                    return frozenset(below - {target})
                below.add(target)
                if op == "is-a":
                    return frozenset(below & self.codes)
                return self.codes - below
            if op == "=":
                return self.codes & {norm(value)}
            if op == "in":
                return self.codes & {norm(item.strip()) for item in value.split(",")}
            if op == "regex":
                return self._matching(self.codes, value, lambda code: (code,), self.case_sensitive is False)
            return None
        if prop in self.parent_names or prop in self.child_names:
            links = self.parents if prop in self.parent_names else self.children
            if op == "=":
                wanted = {norm(value)}
            elif op == "in":
                wanted = {norm(item.strip()) for item in value.split(",")}
            else:
                return None
            return frozenset(code for code in self.codes if wanted & set(links.get(code, ())))
        if prop not in self.declared:
            return None
        by_code = self.properties.get(prop, {})
        if op == "=":
            return frozenset(code for code, values in by_code.items() if value in values)
        if op == "in":
            wanted = {item.strip() for item in value.split(",")}
            return frozenset(code for code, values in by_code.items() if wanted.intersection(values))
        if op == "exists":
            if value not in ("true", "false"):
                return None
            having = frozenset(by_code)
            return having if value == "true" else self.codes - having
        if op == "regex":
            return self._matching(by_code, value, lambda code: by_code[code], False)
        return None

    @staticmethod
    def _matching(
        codes: Iterable[str], pattern: str, values: Callable[[str], Iterable[str]], ignore_case: bool
    ) -> frozenset[str] | None:
        try:
            compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error:
            return None
        return frozenset(code for code in codes if any(compiled.fullmatch(v) for v in values(code)))
