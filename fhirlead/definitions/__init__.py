"""The official FHIR R4 (4.0.1) definitions the server runs on, committed as data.

The JSON files beside this module are generated from the CC0 `hl7.fhir.r4.core` package by
`tools/build_definitions.py` (see its docstring). They are loaded lazily and once per process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

FHIR_VERSION = "4.0.1"


def _load(name: str) -> Any:
    return orjson.loads(resources.files(__package__).joinpath(name).read_bytes())


@cache
def json_schema() -> dict[str, Any]:
    """The R4 JSON Schema (with the corrections listed in tools/build_definitions.py)."""
    return _load("fhir.schema.json")


@cache
def search_parameters() -> list[dict[str, Any]]:
    """Every R4 SearchParameter, trimmed to the fields the server uses."""
    return _load("search-parameters.json")


@cache
def structure() -> dict[str, dict[str, Any]]:
    """Per type: kind, abstract, base and elements {path: [types, min, max, isSummary]}."""
    return _load("elements.json")


@cache
def resource_types() -> frozenset[str]:
    """The concrete R4 resource types (what may appear in a URL or `resourceType`)."""
    return frozenset(
        name for name, sd in structure().items() if sd["kind"] == "resource" and not sd["abstract"]
    )


@cache
def patient_compartment() -> dict[str, list[str]]:
    """Resource type -> the search parameters that place it in a Patient's compartment."""
    definition = _load("compartment-patient.json")
    return {r["code"]: r["param"] for r in definition["resource"] if r.get("param")}


@cache
def constraints() -> dict[str, Any]:
    """The invariants of the base resources and datatypes: ``{"types": {type: {element path relative to
    the type ("" for the type itself): [{"key", "severity", "human", "expression"[, "bestPractice"]}]}},
    "profiled": {type: {element path: {type code: datatype profile}}}}``; each constraint is listed
    once, under the type that defines it (see tools/build_definitions.py, ``constraints``)."""
    return _load("constraints.json")


@cache
def core_profiles() -> list[dict[str, Any]]:
    """The R4 core's constraint StructureDefinitions (vital-signs profiles, SimpleQuantity, the core
    extensions), differentials only (see tools/build_definitions.py, ``core_profiles``)."""
    return _load("core-profiles.json")


@cache
def terminology() -> list[dict[str, Any]]:
    """The R4 core CodeSystems and ValueSets, trimmed to what ValueSet membership needs (codes, hierarchy,
    compose), for fhirlead/terminology (see tools/build_definitions.py, ``terminology``)."""
    return _load("terminology.json")


@cache
def required_bindings() -> dict[str, dict[str, str]]:
    """The base definitions' required bindings on Coding/CodeableConcept/Quantity elements:
    ``{type: {element path: value set}}`` (see tools/build_definitions.py, ``required_bindings``)."""
    return _load("required-bindings.json")
