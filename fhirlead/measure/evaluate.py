"""Measure evaluation: run a measure's CQL for each subject and derive population membership.

`MeasureEvaluator` compiles the measure's libraries once; `evaluate_subject` then costs one CQL
evaluation per subject (each definition at most once, shared by populations, stratifiers and
supplemental data). Results feed `fhirlead.measure.report` to build MeasureReports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fhirlead.cql.datetime import DateTime, parse_datetime
from fhirlead.cql.engine import Engine, call_function, evaluate_definition
from fhirlead.cql.errors import CqlError
from fhirlead.cql.interval import Interval
from fhirlead.measure import populations as pops
from fhirlead.measure.bundle import MeasureBundle
from fhirlead.measure.definition import MeasureDefinition, parse_measure
from fhirlead.measure.subjects import Subject

PERIOD_PARAMETER = "Measurement Period"


class SubjectEvaluationError(CqlError):
    """Evaluating the measure for one subject failed; names the subject and the underlying error."""

    def __init__(self, subject: str, cause: Exception) -> None:
        super().__init__(f"{subject}: {cause}")
        self.subject = subject


def measurement_period(start: str, end: str, tz: int = 0) -> Interval:
    """Interval[start, end] from ISO dates or datetimes; a date-only end means the end of that day."""
    lo = parse_datetime(start, tz)
    hi = parse_datetime(end, tz)
    if lo is None or hi is None:
        raise ValueError(f"invalid measurement period {start} .. {end}")
    if lo.precision < 6:
        lo = DateTime(tuple(lo.low_fields()), lo.tz)
    if hi.precision < 6:
        hi = DateTime(tuple(hi.high_fields()), hi.tz)
    if lo.compare(hi) == 1:
        raise ValueError(f"measurement period starts after it ends: {start} .. {end}")
    return Interval(lo, hi, True, True, "DateTime")


@dataclass
class GroupResult:
    """One subject's membership in one group."""

    members: dict[int, list[str]]  # population index -> member keys
    observations: dict[int, list[Any]] = field(default_factory=dict)  # observation population index -> values
    strata: dict[int, Any] = field(default_factory=dict)  # stratifier index -> stratum value
    compliance: Any = None  # the value of the group's date-of-compliance definition, if it has one


@dataclass
class SubjectResult:
    subject: Subject
    groups: list[GroupResult]
    supplemental: dict[int, Any]
    evaluated: dict[str, dict[str, Any]]
    values: dict[str, Any]


class MeasureEvaluator:
    """A measure compiled for evaluation; reusable for any number of subjects."""

    def __init__(self, bundle: MeasureBundle, tz: int = 0, native_helpers: bool = True) -> None:
        self.bundle = bundle
        self.definition: MeasureDefinition = parse_measure(bundle.measure)
        self.engine = Engine(bundle.libraries, bundle.terminology, native_helpers=native_helpers)
        self.library = self.engine.compiler_for(bundle.main_library.name, bundle.main_library.version)
        self.tz = tz
        self.defs = self.engine.definitions(self.library, self.definition.expressions)
        # Compile measure-observation functions up front too, so set-up errors surface early.
        for g in self.definition.groups:
            for p in g.populations:
                if p.code == "measure-observation":
                    self.library.functions(p.expression)

    def evaluate_subject(self, subject: Subject, period: Interval) -> SubjectResult:
        ctx = self.engine.context(subject.data, {PERIOD_PARAMETER: period}, tz=self.tz)
        values = {name: evaluate_definition(d, ctx) for name, d in self.defs.items()}
        groups = []
        for g in self.definition.groups:
            raw: dict[int, list[str]] = {}
            episodes: dict[str, Any] = {}
            for i, p in enumerate(g.populations):
                if p.code == "measure-observation":
                    continue
                value = values[p.expression]
                raw[i] = pops.members_of(value, subject.reference, g.patient_based)
                if not g.patient_based and isinstance(value, list):
                    for v in value:
                        episodes.setdefault(pops.episode_key(v), v)
            members = pops.constrain(g, raw)
            result = GroupResult(members, compliance=values[g.compliance] if g.compliance else None)
            for i, p in enumerate(g.populations):
                if p.code != "measure-observation":
                    continue
                observed = pops.observed_members(g, members, p)
                if g.patient_based:
                    result.observations[i] = [
                        call_function(self.library, p.expression, [], ctx) for _ in observed
                    ]
                else:
                    result.observations[i] = [
                        call_function(self.library, p.expression, [episodes[m]], ctx) for m in observed
                    ]
                members[i] = observed
            for si, s in enumerate(g.stratifiers):
                if s.expression:
                    result.strata[si] = values[s.expression]
                else:
                    result.strata[si] = tuple(values[expr] for _c, expr in s.components)
            groups.append(result)
        supplemental = {i: values[s.expression] for i, s in enumerate(self.definition.supplemental)}
        return SubjectResult(subject, groups, supplemental, dict(ctx.evaluated), values)

    def evaluate(self, subjects: Iterable[Subject], period: Interval) -> list[SubjectResult]:
        results = []
        for s in subjects:
            try:
                results.append(self.evaluate_subject(s, period))
            except CqlError as exc:
                raise SubjectEvaluationError(s.reference, exc) from exc
        return results
