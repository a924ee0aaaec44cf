"""MeasureReport building: individual (one subject) and summary (many) reports.

Reports follow DEQM 5.0.0 (`indv-measurereport-deqm`, `summary-measurereport-deqm`): measure scoring
extension, group/population counts with the Measure's population ids and codes, measure score,
stratifiers with strata, supplemental data as contained Observations referenced through the
`MeasureReport.supplementalData` extension, and evaluated resources.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from fhirlead.cql.clinical import Code, Concept
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.tuples import Tuple
from fhirlead.measure import populations as pops
from fhirlead.measure.definition import (
    POPULATION_DISPLAY,
    POPULATION_SYSTEM,
    Group,
    MeasureDefinition,
    Stratifier,
)
from fhirlead.measure.evaluate import GroupResult, SubjectResult

DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
INDIVIDUAL_PROFILE = DEQM + "indv-measurereport-deqm"
SUMMARY_PROFILE = DEQM + "summary-measurereport-deqm"
SUPPLEMENTAL_EXT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-MeasureReport.supplementalData"
CRITERIA_REFERENCE = "http://hl7.org/fhir/StructureDefinition/cqf-criteriaReference"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"


def _coding(code: Code) -> dict[str, Any]:
    out = {"system": code.system, "code": code.code, "version": code.version, "display": code.display}
    return {k: v for k, v in out.items() if v is not None}


def codeable_concept(value: Any) -> dict[str, Any]:
    """A CodeableConcept for a CQL value used as a stratum or supplemental-data value."""
    if value is None:
        return {"text": "null"}
    t = type(value)
    if t is bool:
        return {"text": "true" if value else "false"}
    if t is Code:
        return {"coding": [_coding(value)]}
    if t is Concept:
        out: dict[str, Any] = {"coding": [_coding(c) for c in value.codes or () if c is not None]}
        if value.display:
            out["text"] = value.display
        return out
    if t is Node:
        if value.t == "CodeableConcept":
            return dict(value.raw)
        if value.t == "Coding":
            return {"coding": [dict(value.raw)]}
        return {"text": orjson.dumps(value.raw).decode()}
    if t is Tuple:
        codes = value.get("codes", value.get("code"))
        out = codeable_concept(codes) if codes is not None else {}
        if value.get("display"):
            out["text"] = value["display"]
        return out or {"text": "null"}
    if t is list:
        codings: list[dict[str, Any]] = []
        texts = []
        for v in value:
            cc = codeable_concept(v)
            codings += cc.get("coding", [])
            if "text" in cc and "coding" not in cc:
                texts.append(cc["text"])
        out = {"coding": codings} if codings else {}
        if texts:
            out["text"] = ", ".join(texts)
        return out or {"text": "empty"}
    return {"text": _text(value)}


def _text(value: Any) -> str:
    if type(value) in (Date, DateTime, Time):
        return value.iso()
    if type(value) is Quantity:
        return f"{value.value} {value.unit}"
    if type(value) is Interval:
        return f"{_text(value.low)} - {_text(value.high)}"
    return str(value)


def _key(cc: dict[str, Any]) -> str:
    return orjson.dumps(cc, option=orjson.OPT_SORT_KEYS).decode()


def _population_entry(group: Group, i: int, count: int) -> dict[str, Any]:
    p = group.populations[i]
    code = p.raw_code or {
        "coding": [{"system": POPULATION_SYSTEM, "code": p.code, "display": POPULATION_DISPLAY[p.code]}]
    }
    entry: dict[str, Any] = {}
    if p.id:
        entry["id"] = p.id
    entry["code"] = code
    entry["count"] = count
    return entry


def _number(value: Any) -> Any:
    if isinstance(value, Quantity):
        return {"value": float(value.value), "unit": value.unit}
    if isinstance(value, Decimal | int):
        return {"value": float(value)}
    return None


class Counts:
    """One group's (or one stratum's) population counts and folded observations."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.counts: dict[int, int] = {}
        self.observed = {i: pops.Observed(p.aggregate_method) for i, p in enumerate(group.populations)
                         if p.code == "measure-observation"}

    def add(self, result: GroupResult, episodes: set[str] | None = None, inside: bool = True) -> None:
        """Add one subject's membership; with `episodes`, only the members that are (`inside`) or are
        not in it (an episode-based stratum)."""
        for i, members in result.members.items():
            if episodes is None:
                self.counts[i] = self.counts.get(i, 0) + len(members)
            else:
                self.counts[i] = self.counts.get(i, 0) + sum(1 for m in members if (m in episodes) is inside)
        for i, values in result.observations.items():
            if episodes is None:
                self.observed[i].extend(values)
            else:  # an observation population's members are the observed episodes, in the values' order
                self.observed[i].extend([v for m, v in zip(result.members.get(i, ()), values, strict=False)
                                         if (m in episodes) is inside])

    def populations(self) -> list[dict[str, Any]]:
        return [_population_entry(self.group, i, self.counts.get(i, 0)) for i in range(len(self.group.populations))]

    def score(self) -> dict[str, Any] | None:
        return _number(pops.score(self.group, self.counts, self.observed))


class GroupTally:
    """A group's counts and, per stratifier, its strata by value."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.counts = Counts(group)
        # per stratifier: stratum key -> (value, counts, whether it is an episode stratum)
        self.strata: list[dict[str, tuple[dict[str, Any], Counts, bool]]] = [{} for _ in group.stratifiers]

    def add(self, result: GroupResult) -> None:
        self.counts.add(result)
        for si, s in enumerate(self.group.stratifiers):
            value = result.strata.get(si)
            if not self.group.patient_based and s.expression and _is_episode_list(value):
                # an episode-based stratifier whose value is the episodes of its stratum (as in
                # `Stratification 1: ...` definitions) stratifies episodes: "true" counts those, "false" the rest
                inside = {pops.episode_key(v) for v in value}
                for flag in (True, False):
                    self._stratum(si, {"value": codeable_concept(flag)}, True).add(result, inside, flag)
            else:
                self._stratum(si, _stratum_value(s, value), False).add(result)

    def _stratum(self, si: int, value: dict[str, Any], episodic: bool) -> Counts:
        return self.strata[si].setdefault(_key(value), (value, Counts(self.group), episodic))[1]

    def entry(self) -> dict[str, Any]:
        group = self.group
        out: dict[str, Any] = {}
        if group.id:
            out["id"] = group.id
        if group.code:
            out["code"] = group.code
        out["population"] = self.counts.populations()
        score = self.counts.score()
        if score is not None:
            out["measureScore"] = score
        stratifiers = []
        for s, strata in zip(group.stratifiers, self.strata, strict=True):
            entry: dict[str, Any] = {}
            if s.id:
                entry["id"] = s.id
            entry["code"] = [s.code] if s.code else [{"text": s.expression or s.id or "stratifier"}]
            entry["stratum"] = []
            for value, counts, episodic in strata.values():
                if episodic and not any(counts.counts.values()):
                    continue  # e.g. the "false" stratum when every episode is in the stratifier's list
                stratum: dict[str, Any] = dict(value)
                stratum["population"] = counts.populations()
                s_score = counts.score()
                if s_score is not None:
                    stratum["measureScore"] = s_score
                entry["stratum"].append(stratum)
            stratifiers.append(entry)
        if stratifiers:
            out["stratifier"] = stratifiers
        return out


class Tally:
    """A population's results folded one subject at a time: counts, strata, observations and
    supplemental-data tallies, so a summary report over any number of patients holds only its totals
    (and, for `subject-list`, each population's patient references)."""

    def __init__(self, definition: MeasureDefinition, keep_subjects: bool = False) -> None:
        self.definition = definition
        self.groups = [GroupTally(g) for g in definition.groups]
        self.supplemental: list[dict[str, tuple[dict[str, Any], int]]] = [{} for _ in definition.supplemental]
        self.subjects: list[list[list[str]]] | None = (
            [[[] for _ in g.populations] for g in definition.groups] if keep_subjects else None)

    def add(self, result: SubjectResult) -> None:
        for tally, group in zip(self.groups, result.groups, strict=True):
            tally.add(group)
        for i, tallies in enumerate(self.supplemental):
            value = result.supplemental.get(i)
            if value is None or value == []:
                continue
            cc = codeable_concept(value)
            key = _key(cc)
            prev = tallies.get(key)
            tallies[key] = (cc, (prev[1] if prev else 0) + 1)
        if self.subjects is not None:
            for lists, group in zip(self.subjects, result.groups, strict=True):
                for pi, members in group.members.items():
                    if members:
                        lists[pi].append(result.subject.reference)

    def add_all(self, results: list[SubjectResult]) -> None:
        for result in results:
            self.add(result)


def _stratum_value(s: Stratifier, value: Any) -> dict[str, Any]:
    """`value`, or one `component` per stratifier component (R4 MeasureReport.group.stratifier.stratum)."""
    if s.components and isinstance(value, tuple):
        return {
            "component": [
                {"code": code or {"text": expr}, "value": codeable_concept(v)}
                for (code, expr), v in zip(s.components, value, strict=True)
            ]
        }
    return {"value": codeable_concept(value)}


def _is_episode_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and v.get("resourceType") for v in value)


def _scoring_extension(definition: MeasureDefinition) -> dict[str, Any]:
    scoring = definition.groups[0].scoring
    return {
        "url": DEQM + "extension-measureScoring",
        "valueCodeableConcept": {"coding": [{"system": SCORING_SYSTEM, "code": scoring}]},
    }


def _supplemental(
    definition: MeasureDefinition, tally: Tally, measure: str, individual: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contained Observations and the extensions that reference them."""
    contained: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []
    for sde, tallies in zip(definition.supplemental, tally.supplemental, strict=True):
        sde_id = sde.id or sde.expression
        for n, (cc, count) in enumerate(tallies.values()):
            obs_id = f"{sde_id}-{n + 1}"
            obs: dict[str, Any] = {
                "resourceType": "Observation",
                "id": obs_id,
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/cqf-measureInfo",
                        "extension": [
                            {"url": "measure", "valueCanonical": measure},
                            {"url": "populationId", "valueString": sde_id},
                        ],
                    }
                ],
                "status": "final",
                "code": {"text": sde_id},
            }
            if individual:
                obs["valueCodeableConcept"] = cc
            else:
                obs["code"] = cc if cc.get("coding") else {"text": f"{sde_id}: {cc.get('text')}"}
                obs["valueInteger"] = count
            contained.append(obs)
            extensions.append(
                {
                    "url": SUPPLEMENTAL_EXT,
                    "valueReference": {
                        "extension": [{"url": CRITERIA_REFERENCE, "valueString": sde_id}],
                        "reference": f"#{obs_id}",
                    },
                }
            )
    return contained, extensions


def _canonical(definition: MeasureDefinition) -> str:
    url = definition.url or ""
    return f"{url}|{definition.version}" if definition.version else url


def build_report(
    definition: MeasureDefinition,
    results: list[SubjectResult],
    period: tuple[str, str],
    individual: bool | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An individual report for one subject (or when asked), else a summary report."""
    if individual is None:
        individual = len(results) == 1
    if individual and len(results) != 1:
        raise ValueError("an individual report needs exactly one subject")
    tally = Tally(definition)
    tally.add_all(results)
    return report_of(tally, period, results[0] if individual else None, now)


def report_of(tally: Tally, period: tuple[str, str], individual: SubjectResult | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """The MeasureReport of a tally: individual for `individual` (the tally's one subject), else summary."""
    definition = tally.definition
    measure = _canonical(definition)
    contained, sde_ext = _supplemental(definition, tally, measure, individual is not None)
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [INDIVIDUAL_PROFILE if individual else SUMMARY_PROFILE]},
    }
    if contained:
        report["contained"] = contained
    report["extension"] = [_scoring_extension(definition), *sde_ext]
    report["status"] = "complete"
    report["type"] = "individual" if individual else "summary"
    report["measure"] = measure
    if individual:
        report["subject"] = {"reference": individual.subject.reference}
    report["date"] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    report["period"] = {"start": period[0], "end": period[1]}
    notation = definition.groups[0].improvement_notation
    if notation:
        report["improvementNotation"] = notation
    report["group"] = [g.entry() for g in tally.groups]
    if individual:
        refs = [individual.subject.reference]
        refs += [k for k in individual.evaluated if k != individual.subject.reference]
        report["evaluatedResource"] = [{"reference": r} for r in refs]
    if tally.subjects is not None:
        _subject_lists(report, tally.subjects)
    return report


def _subject_lists(report: dict[str, Any], subjects: list[list[list[str]]]) -> None:
    """subject-list: each population's patients as a contained List its `subjectResults` references."""
    contained = report.setdefault("contained", [])
    for gi, (group, lists) in enumerate(zip(report["group"], subjects, strict=True)):
        for pi, (population, patients) in enumerate(zip(group["population"], lists, strict=True)):
            list_id = f"subjects-{gi + 1}-{pi + 1}"
            contained.append({"resourceType": "List", "id": list_id, "status": "current", "mode": "snapshot",
                              "entry": [{"item": {"reference": reference}} for reference in patients]})
            population["subjectResults"] = {"reference": f"#{list_id}"}
