"""Measure bundles: a Measure with the Libraries (ELM) and ValueSets it needs, ready to evaluate.

A measure bundle is any FHIR Bundle holding one Measure, the Library resources reached from
`Measure.library` (each with `application/elm+json` content) and the ValueSet resources with their
expansions. Libraries are matched to includes by name and version (see `fhirlead.cql.library`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhirlead.cql.errors import CqlError
from fhirlead.cql.library import ElmLibrary, LibrarySet, elm_from_library_resource
from fhirlead.cql.terminology import Terminology


class MeasureBundleError(ValueError):
    """The input is not a usable measure bundle (no Measure, no ELM for its library...)."""


@dataclass
class MeasureBundle:
    """The parts of a measure bundle the evaluator needs."""

    measure: dict[str, Any]
    libraries: LibrarySet
    terminology: Terminology
    main_library: ElmLibrary

    @classmethod
    def from_json(cls, bundle: Any) -> MeasureBundle:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise MeasureBundleError("not a FHIR Bundle")
        resources = [e.get("resource") for e in bundle.get("entry") or () if isinstance(e, dict)]
        return cls.from_resources([r for r in resources if isinstance(r, dict)])

    @classmethod
    def from_resources(cls, resources: list[dict[str, Any]]) -> MeasureBundle:
        """One Measure with its Libraries and ValueSets, however they were gathered (a Bundle, the store)."""
        measures = [r for r in resources if r.get("resourceType") == "Measure"]
        if not measures:
            raise MeasureBundleError("the bundle holds no Measure resource")
        if len(measures) > 1:
            raise MeasureBundleError(f"the bundle holds {len(measures)} Measure resources; expected one")
        measure = measures[0]
        library_resources = [r for r in resources if r.get("resourceType") == "Library"]
        libs: list[ElmLibrary] = []
        by_url: dict[str, ElmLibrary] = {}
        for res in library_resources:
            try:
                lib = elm_from_library_resource(res)
            except CqlError as exc:
                raise MeasureBundleError(str(exc)) from exc
            if lib is None:
                continue
            libs.append(lib)
            if res.get("url"):
                by_url[res["url"]] = lib
                if res.get("version"):
                    by_url[f"{res['url']}|{res['version']}"] = lib
        refs = measure.get("library") or ()
        if not refs:
            raise MeasureBundleError("the Measure names no library")
        main = by_url.get(refs[0]) or by_url.get(refs[0].split("|")[0])
        if main is None:
            name = refs[0].split("|")[0].rstrip("/").rsplit("/", 1)[-1]
            main = next((lib for lib in libs if lib.name == name), None)
        if main is None:
            raise MeasureBundleError(f"no Library with ELM JSON content for {refs[0]}")
        terminology = Terminology(r for r in resources if r.get("resourceType") == "ValueSet")
        return cls(measure, LibrarySet(libs), terminology, main)
