"""ELM libraries: loading from Library resources and resolving includes by name and version.

Includes are resolved by library *name* and version, never by namespace or canonical URL, because
published content mixes them (e.g. a QICoreCommon translated with the include path
`http://ecqi.healthit.gov/ecqms/FHIRHelpers` must still find the bundled FHIRHelpers). A library's
own ELM identifier version may lag its Library.version; both are registered.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson

from fhirlead.cql.errors import ElmLoadError

ELM_JSON = "application/elm+json"
ELM_XML = "application/elm+xml"


class ElmLibrary:
    """One parsed ELM library (the JSON `library` object) with its declarations indexed by name."""

    def __init__(self, elm: dict[str, Any], resource_version: str | None = None) -> None:
        lib = elm.get("library", elm)
        ident = lib.get("identifier") or {}
        self.name: str = ident.get("id") or ""
        if not self.name:
            raise ElmLoadError("ELM library has no identifier")
        self.version: str | None = ident.get("version")
        self.resource_version = resource_version
        self.elm = lib
        self.includes: dict[str, tuple[str, str | None]] = {}
        for inc in (lib.get("includes") or {}).get("def", ()):
            path = inc.get("path", "")
            name = path.rsplit("/", 1)[-1]
            self.includes[inc["localIdentifier"]] = (name, inc.get("version"))
        self.statements: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, list[dict[str, Any]]] = {}
        for d in (lib.get("statements") or {}).get("def", ()):
            if d.get("type") == "FunctionDef":
                self.functions.setdefault(d["name"], []).append(d)
            else:
                self.statements[d["name"]] = d
        self.parameters = {p["name"]: p for p in (lib.get("parameters") or {}).get("def", ())}
        self.codesystems = {c["name"]: c for c in (lib.get("codeSystems") or {}).get("def", ())}
        self.valuesets = {v["name"]: v for v in (lib.get("valueSets") or {}).get("def", ())}
        self.codes = {c["name"]: c for c in (lib.get("codes") or {}).get("def", ())}
        self.concepts = {c["name"]: c for c in (lib.get("concepts") or {}).get("def", ())}
        self.usings = [u.get("uri") for u in (lib.get("usings") or {}).get("def", ())]

    def __repr__(self) -> str:
        return f"ElmLibrary({self.name} {self.version})"


def elm_from_library_resource(resource: dict[str, Any]) -> ElmLibrary | None:
    """The ELM content of a FHIR Library resource (JSON preferred, else XML), or None if it has none."""
    contents = [c for c in resource.get("content", ()) if c.get("data")]
    for content in contents:
        if content.get("contentType") == ELM_JSON:
            try:
                elm = orjson.loads(base64.b64decode(content["data"]))
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise ElmLoadError(f"Library {resource.get('url')}: ELM content is not valid JSON") from exc
            return ElmLibrary(elm, resource.get("version"))
    for content in contents:
        if content.get("contentType") == ELM_XML:
            from fhirlead.cql.elmxml import elm_json_from_xml

            try:
                xml = base64.b64decode(content["data"])
            except ValueError as exc:
                raise ElmLoadError(f"Library {resource.get('url')}: ELM XML content is not base64") from exc
            return ElmLibrary(elm_json_from_xml(xml), resource.get("version"))
    return None


def _version_key(version: str | None) -> tuple[tuple[int, int | str], ...]:
    """A sort key for library versions: dotted segments, numeric ones compared as numbers."""
    if version is None:
        return ()
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.split("."))


class LibrarySet:
    """Libraries available for include resolution, keyed by (name, version)."""

    def __init__(self, libraries: Iterable[ElmLibrary] = ()) -> None:
        self._by_key: dict[tuple[str, str | None], ElmLibrary] = {}
        self._by_name: dict[str, list[ElmLibrary]] = {}
        for lib in libraries:
            self.add(lib)

    def add(self, lib: ElmLibrary) -> None:
        self._by_key[(lib.name, lib.version)] = lib
        if lib.resource_version and lib.resource_version != lib.version:
            self._by_key.setdefault((lib.name, lib.resource_version), lib)
        self._by_name.setdefault(lib.name, []).append(lib)

    def resolve(self, name: str, version: str | None) -> ElmLibrary:
        """The library `name` at `version` (any version when the include gives none)."""
        lib = self._by_key.get((name, version))
        if lib is not None:
            return lib
        candidates = self._by_name.get(name, [])
        if version is None and candidates:
            # An include without a version takes the newest version available.
            return max(candidates, key=lambda c: _version_key(c.version))
        if version is not None:
            # '4.0.1' and '4.0.001' name the same version (numeric segments compare as numbers).
            same = [c for c in candidates if _version_key(c.version) == _version_key(version)]
            if len(same) == 1:
                return same[0]
        have = ", ".join(f"{c.name} {c.version}" for c in candidates) or "none"
        raise ElmLoadError(f"library {name} version {version} is not available (have: {have})")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())
