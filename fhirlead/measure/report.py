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
from fhirlead.measure.evaluate import SubjectResult

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


def _group_counts(
    group_index: int, results: list[SubjectResult]
) -> tuple[dict[int, int], dict[int, list[Any]]]:
    counts: dict[int, int] = {}
    observations: dict[int, list[Any]] = {}
    for r in results:
        g = r.groups[group_index]
        for i, members in g.members.items():
            counts[i] = counts.get(i, 0) + len(members)
        for i, values in g.observations.items():
            observations.setdefault(i, []).extend(values)
    return counts, observations


def _group(definition: MeasureDefinition, gi: int, results: list[SubjectResult]) -> dict[str, Any]:
    group = definition.groups[gi]
    counts, observations = _group_counts(gi, results)
    out: dict[str, Any] = {}
    if group.id:
        out["id"] = group.id
    if group.code:
        out["code"] = group.code
    out["population"] = [_population_entry(group, i, counts.get(i, 0)) for i in range(len(group.populations))]
    score = _number(pops.score(group, counts, observations))
    if score is not None:
        out["measureScore"] = score
    stratifiers = []
    for si, s in enumerate(group.stratifiers):
        entry: dict[str, Any] = {}
        if s.id:
            entry["id"] = s.id
        entry["code"] = [s.code] if s.code else [{"text": s.expression or s.id or "stratifier"}]
        entry["stratum"] = []
        for stratum_value, s_counts, s_obs in _strata(group, gi, si, s, results):
            stratum: dict[str, Any] = dict(stratum_value)
            stratum["population"] = [
                _population_entry(group, i, s_counts.get(i, 0)) for i in range(len(group.populations))
            ]
            s_score = _number(pops.score(group, s_counts, s_obs))
            if s_score is not None:
                stratum["measureScore"] = s_score
            entry["stratum"].append(stratum)
        stratifiers.append(entry)
    if stratifiers:
        out["stratifier"] = stratifiers
    return out


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


def _strata(
    group: Group, gi: int, si: int, s: Stratifier, results: list[SubjectResult]
) -> list[tuple[dict[str, Any], dict[int, int], dict[int, list[Any]]]]:
    """Each stratum's value with its population counts and observations.

    Subjects are stratified by the stratifier's value. In an episode-based group a stratifier whose
    value is a list of resources (the episodes of that stratum, as in `Stratification 1: ...` definitions)
    stratifies episodes instead: the "true" stratum counts the members in the list, "false" the others.
    """
    by_value: dict[str, tuple[dict[str, Any], list[SubjectResult]]] = {}
    episodes: dict[str, tuple[dict[str, Any], dict[int, int], dict[int, list[Any]]]] = {}
    for r in results:
        value = r.groups[gi].strata.get(si)
        if not group.patient_based and s.expression and _is_episode_list(value):
            inside = {pops.episode_key(v) for v in value}
            for flag in (True, False):
                sv = {"value": codeable_concept(flag)}
                _v, counts, _obs = episodes.setdefault(_key(sv), (sv, {}, {}))
                for i, members in r.groups[gi].members.items():
                    n = sum(1 for m in members if (m in inside) is flag)
                    counts[i] = counts.get(i, 0) + n
            continue
        sv = _stratum_value(s, value)
        by_value.setdefault(_key(sv), (sv, []))[1].append(r)
    out = []
    for sv, members in by_value.values():
        counts, observations = _group_counts(gi, members)
        out.append((sv, counts, observations))
    for sv, counts, observations in episodes.values():
        if any(counts.values()):
            out.append((sv, counts, observations))
    return out


def _scoring_extension(definition: MeasureDefinition) -> dict[str, Any]:
    scoring = definition.groups[0].scoring
    return {
        "url": DEQM + "extension-measureScoring",
        "valueCodeableConcept": {"coding": [{"system": SCORING_SYSTEM, "code": scoring}]},
    }


def _supplemental(
    definition: MeasureDefinition, results: list[SubjectResult], measure: str, individual: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contained Observations and the extensions that reference them."""
    contained: list[dict[str, Any]] = []
    extensions: list[dict[str, Any]] = []
    for i, sde in enumerate(definition.supplemental):
        sde_id = sde.id or sde.expression
        tallies: dict[str, tuple[dict[str, Any], int]] = {}
        for r in results:
            value = r.supplemental.get(i)
            if value is None or value == []:
                continue
            cc = codeable_concept(value)
            key = _key(cc)
            prev = tallies.get(key)
            tallies[key] = (cc, (prev[1] if prev else 0) + 1)
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
    measure = _canonical(definition)
    contained, sde_ext = _supplemental(definition, results, measure, individual)
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
        report["subject"] = {"reference": results[0].subject.reference}
    report["date"] = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    report["period"] = {"start": period[0], "end": period[1]}
    notation = definition.groups[0].improvement_notation
    if notation:
        report["improvementNotation"] = notation
    report["group"] = [_group(definition, gi, results) for gi in range(len(definition.groups))]
    if individual:
        refs = [results[0].subject.reference]
        refs += [k for k in results[0].evaluated if k != results[0].subject.reference]
        report["evaluatedResource"] = [{"reference": r} for r in refs]
    return report
