"""The StructureDefinitions the server knows, by canonical URL: the R4 core's profiles and extensions,
every StructureDefinition under `profiles/` (US Core, ATR, the Lead's), and those added later (written
through the API). https://hl7.org/fhir/R4/references.html#canonical: a canonical may carry `|version`.

A versioned canonical the server holds in another version only (ATR 2.1.0 derives from US Core 7.0.0;
the server holds 6.1.0) resolves to the version held, and `resolve` says so, so a caller can tell the
client which version its resource was checked against.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhirlead.definitions import core_profiles, structure

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
CORE_BASE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True, slots=True)
class Resolved:
    definition: dict[str, Any]
    substituted: str | None = None  # the version used instead of the one asked for


def definition_files(root: Path, kinds: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The conformance resources of `kinds` in the JSON files under `root`, examples folders aside."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.json")):
        if "examples" in path.relative_to(root).parts:
            continue
        try:
            resource = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        if isinstance(resource, dict) and resource.get("resourceType") in kinds:
            yield resource


class Conformance:
    """StructureDefinitions by canonical URL and version. Thread-safe; `generation` grows with every
    change so compiled profiles can tell they are stale. A server's Conformance lays the definitions
    written to its store over the process-wide one (`parent`): one of the same URL and version wins."""

    def __init__(self, definitions: Iterable[dict[str, Any]] = (), parent: Conformance | None = None) -> None:
        self._by_url: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._changes = 0
        self.parent = parent
        for definition in definitions:
            self.add(definition)

    @property
    def generation(self) -> int:
        return self._changes + (self.parent.generation if self.parent else 0)

    def _versions(self, url: str) -> dict[str, dict[str, Any]]:
        own = self._by_url.get(url)
        inherited = self.parent._versions(url) if self.parent else {}
        return {**inherited, **own} if own and inherited else own or inherited

    def add(self, definition: dict[str, Any]) -> None:
        url = definition.get("url")
        if definition.get("resourceType", "StructureDefinition") != "StructureDefinition" or not isinstance(url, str):
            return
        with self._lock:
            self._by_url.setdefault(url, {})[str(definition.get("version") or "")] = definition
            self._changes += 1

    def remove(self, url: str, version: str | None = None) -> None:
        """Forget a definition this layer holds (a parent's stays)."""
        with self._lock:
            versions = self._by_url.get(url)
            if versions is not None:
                if version is None:
                    del self._by_url[url]
                else:
                    versions.pop(version, None)
                self._changes += 1

    def resolve(self, canonical: str) -> Resolved | None:
        """The definition `canonical` names, or None. Without a version, or with one not held, the
        latest held (by version string) is used."""
        url, _, version = canonical.partition("|")
        versions = self._versions(url)
        if not versions:
            return None
        if version and version in versions:
            return Resolved(versions[version])
        chosen = max(versions)
        return Resolved(versions[chosen], substituted=(chosen or "unversioned") if version else None)

    def get(self, canonical: str) -> dict[str, Any] | None:
        resolved = self.resolve(canonical)
        return resolved.definition if resolved else None

    def is_base(self, canonical: str) -> bool:
        """Whether `canonical` is a base resource or datatype definition (`.../StructureDefinition/Patient`)."""
        url = canonical.partition("|")[0]
        return url.startswith(CORE_BASE) and url[len(CORE_BASE):] in structure()

    def type_of(self, canonical: str) -> str | None:
        """The resource or datatype a profile constrains (`Patient` for US Core Patient)."""
        if self.is_base(canonical):
            return canonical.partition("|")[0][len(CORE_BASE):]
        definition = self.get(canonical)
        return definition.get("type") if definition else None


@cache
def default_conformance() -> Conformance:
    """One per process: the core profiles and extensions, then profiles/ (a later one replaces an
    earlier one with the same URL and version)."""
    return Conformance([*core_profiles(), *definition_files(PROFILES_DIR, ("StructureDefinition",))])
