"""The parts of a FHIR Measure that drive evaluation, read once into plain dataclasses.

Scoring, population basis and improvement notation may be given on the Measure or, as QI-Core
measures do, per group through the cqfm extensions; the group value wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CQFM = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"

POPULATION_CODES = (
    "initial-population",
    "numerator",
    "numerator-exclusion",
    "denominator",
    "denominator-exclusion",
    "denominator-exception",
    "measure-population",
    "measure-population-exclusion",
    "measure-observation",
)
POPULATION_DISPLAY = {
    "initial-population": "Initial Population",
    "numerator": "Numerator",
    "numerator-exclusion": "Numerator Exclusion",
    "denominator": "Denominator",
    "denominator-exclusion": "Denominator Exclusion",
    "denominator-exception": "Denominator Exception",
    "measure-population": "Measure Population",
    "measure-population-exclusion": "Measure Population Exclusion",
    "measure-observation": "Measure Observation",
}
SCORINGS = ("proportion", "ratio", "continuous-variable", "cohort")


class MeasureDefinitionError(ValueError):
    """The Measure cannot be evaluated as written (unknown scoring, population without criteria...)."""


@dataclass
class Population:
    id: str | None
    code: str
    expression: str
    criteria_reference: str | None = None
    aggregate_method: str | None = None
    raw_code: dict[str, Any] | None = None


@dataclass
class Stratifier:
    id: str | None
    code: dict[str, Any] | None
    expression: str | None
    components: list[tuple[dict[str, Any] | None, str]] = field(default_factory=list)


@dataclass
class Group:
    id: str | None
    code: dict[str, Any] | None
    scoring: str
    basis: str  # "boolean" or a resource type such as "Encounter"
    improvement_notation: dict[str, Any] | None
    populations: list[Population]
    stratifiers: list[Stratifier]
    compliance: str | None = None  # the definition giving a care gap's date of compliance (DEQM gaps)

    @property
    def patient_based(self) -> bool:
        return self.basis == "boolean"

    def population(self, code: str) -> Population | None:
        return next((p for p in self.populations if p.code == code), None)


@dataclass
class SupplementalData:
    id: str | None
    code: dict[str, Any] | None
    expression: str
    description: str | None


@dataclass
class MeasureDefinition:
    url: str | None
    version: str | None
    groups: list[Group]
    supplemental: list[SupplementalData]

    @property
    def expressions(self) -> list[str]:
        """Every CQL definition the measure needs evaluated per subject."""
        names: list[str] = []
        for g in self.groups:
            names += [p.expression for p in g.populations if p.code != "measure-observation"]
            if g.compliance:
                names.append(g.compliance)
            for s in g.stratifiers:
                if s.expression:
                    names.append(s.expression)
                names += [expr for _c, expr in s.components]
        names += [s.expression for s in self.supplemental]
        return list(dict.fromkeys(names))


R5_BACKPORT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Measure."
# R5 elements carried into R4 by cross-version extensions, next to their CQFM equivalents.
_R5_EQUIVALENT = {
    "cqfm-scoring": ("group.scoring", "scoring"),
    "cqfm-populationBasis": ("group.basis", "basis"),
    "cqfm-improvementNotation": ("group.improvementNotation", "improvementNotation"),
    "cqfm-criteriaReference": ("group.population.inputPopulationId",),
    "cqfm-aggregateMethod": ("group.population.aggregateMethod",),
}


def _ext(resource: dict[str, Any], name: str) -> dict[str, Any] | None:
    urls = {CQFM + name} | {R5_BACKPORT + tail for tail in _R5_EQUIVALENT.get(name, ())}
    for e in resource.get("extension") or ():
        if e.get("url") in urls:
            return e
    return None


def _concept(value: Any) -> dict[str, Any] | None:
    """A CodeableConcept, also from the plain code older content gives (e.g. improvementNotation)."""
    if isinstance(value, str):
        return {"coding": [{"system": IMPROVEMENT_SYSTEM, "code": value}]}
    return value if isinstance(value, dict) else None


_AGGREGATE_METHODS = {"minimum": "min", "maximum": "max", "avg": "average", "mean": "average"}


def _aggregate_method(e: dict[str, Any] | None) -> str | None:
    """cqfm-aggregateMethod, also as MADiE writes it (valueString "Sum", "Count", "Average")."""
    code = _ext_code(e)
    if code is None:
        return None
    code = code.strip().lower()
    return _AGGREGATE_METHODS.get(code, code)


def _ext_code(e: dict[str, Any] | None) -> str | None:
    if not e:
        return None
    return e.get("valueCode") or _coding_code(e.get("valueCodeableConcept")) or e.get("valueString")


def _coding_code(cc: dict[str, Any] | None) -> str | None:
    for c in (cc or {}).get("coding") or ():
        if c.get("code"):
            return c["code"]
    return None


def _expression(criteria: dict[str, Any] | None, what: str) -> str:
    criteria = criteria or {}
    expr = criteria.get("expression")
    language = criteria.get("language", "text/cql-identifier")
    if not expr:
        raise MeasureDefinitionError(f"{what} has no criteria expression")
    if language not in ("text/cql-identifier", "text/cql.identifier", "text/cql"):
        raise MeasureDefinitionError(f"{what}: criteria language {language} is not supported")
    if language == "text/cql" and len(expr) > 1 and expr[0] == expr[-1] == '"':
        expr = expr[1:-1]  # a quoted identifier is still just the name of a definition
    return expr


def _defined(criteria: dict[str, Any] | None) -> bool:
    """Whether criteria name a definition: MADiE exports a group's unused populations and empty
    stratifiers with a criteria language but no expression; they are not part of the measure."""
    return bool((criteria or {}).get("expression"))


def parse_measure(measure: dict[str, Any]) -> MeasureDefinition:
    measure_scoring = _coding_code(measure.get("scoring")) or _ext_code(_ext(measure, "cqfm-scoring"))
    measure_basis = _ext_code(_ext(measure, "cqfm-populationBasis"))
    groups = []
    for gi, g in enumerate(measure.get("group") or ()):
        scoring = _ext_code(_ext(g, "cqfm-scoring")) or measure_scoring
        if scoring not in SCORINGS:
            raise MeasureDefinitionError(f"group {g.get('id', gi)}: unsupported scoring {scoring!r}")
        basis = _ext_code(_ext(g, "cqfm-populationBasis")) or measure_basis or "boolean"
        notation_ext = _ext(g, "cqfm-improvementNotation")
        notation = _concept((notation_ext or {}).get("valueCodeableConcept") or (notation_ext or {}).get("valueCode"))
        notation = notation or _concept(measure.get("improvementNotation"))
        pops = []
        for p in g.get("population") or ():
            if not _defined(p.get("criteria")):
                continue
            code = _coding_code(p.get("code"))
            if code not in POPULATION_CODES:
                raise MeasureDefinitionError(f"group {g.get('id', gi)}: unknown population code {code!r}")
            ref = _ext(p, "cqfm-criteriaReference")
            agg = _ext(p, "cqfm-aggregateMethod")
            pops.append(
                Population(
                    p.get("id"),
                    code,
                    _expression(p.get("criteria"), f"population {code}"),
                    (ref or {}).get("valueString") or (ref or {}).get("valueId"),
                    _aggregate_method(agg),
                    p.get("code"),
                )
            )
        if not any(p.code == "initial-population" for p in pops):
            raise MeasureDefinitionError(f"group {g.get('id', gi)} has no initial population")
        strats = []
        for s in g.get("stratifier") or ():
            comps = [
                (c.get("code"), _expression(c.get("criteria"), "stratifier component"))
                for c in s.get("component") or ()
            ]
            expr = _expression(s.get("criteria"), "stratifier") if _defined(s.get("criteria")) else None
            if expr is None and not comps:
                if s.get("criteria") is not None:
                    continue  # an empty stratifier (criteria without expression)
                raise MeasureDefinitionError("stratifier has neither criteria nor components")
            strats.append(Stratifier(s.get("id"), s.get("code"), expr, comps))
        compliance = next((e.get("valueExpression", {}).get("expression") for e in g.get("extension") or ()
                           if e.get("url") == CQFM + "cqfm-care-gap-date-of-compliance-expression"), None)
        groups.append(Group(g.get("id"), g.get("code"), scoring, basis, notation, pops, strats, compliance))
    if not groups:
        raise MeasureDefinitionError("the Measure has no group")
    sdes = [
        SupplementalData(
            s.get("id"),
            s.get("code"),
            _expression(s.get("criteria"), "supplementalData"),
            s.get("description"),
        )
        for s in measure.get("supplementalData") or ()
    ]
    return MeasureDefinition(measure.get("url"), measure.get("version"), groups, sdes)
