"""Care-gap status of one patient for one measure group (Da Vinci DEQM 5.0.0, gaps-status code system).

- `not-applicable`: the patient is not eligible: not in the denominator once denominator exclusions and
  exceptions are taken out (for an episode-based group: no eligible episode), or the group is not
  scored as a proportion or ratio (cohort and continuous-variable measures have no gap to close).
- Otherwise the numerator (less numerator exclusions) decides, read through the improvement notation:
  with `increase` (higher is better, e.g. screenings) meeting the numerator closes the gap; with
  `decrease` (lower is better, e.g. CMS122 "HbA1c > 9%") meeting it opens the gap. Episode-based
  groups: increase is closed when every eligible episode meets it, decrease when none does.
- An unclosed gap is `prospective-gap` instead of `open-gap` when the group declares a date of compliance
  (the cqfm-care-gap-date-of-compliance-expression extension naming a CQL definition) and that date is
  still ahead of the evaluation date: it can still be closed in time. Without one it is open.

The notation's code counts (`increase`/`decrease`); a display that contradicts it is ignored here
(`notation_conflict` finds such Measures, for a warning when they are written).
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.datetime import Date, DateTime
from fhirlead.cql.interval import Interval
from fhirlead.measure.definition import CQFM, Group
from fhirlead.measure.evaluate import GroupResult

GAPS_SYSTEM = "http://hl7.org/fhir/us/davinci-deqm/CodeSystem/gaps-status"
STATUSES = ("open-gap", "closed-gap", "prospective-gap", "not-applicable")
NOTATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"


def notation(group: Group) -> str:
    """`increase` or `decrease` (by code; increase when the Measure says nothing, as DEQM assumes)."""
    for coding in (group.improvement_notation or {}).get("coding") or ():
        if coding.get("code") in ("increase", "decrease"):
            return str(coding["code"])
    return "increase"


def gap_status(group: Group, result: GroupResult, today: str) -> str:
    """The gap status of one subject's `result` for `group` on `today` (an ISO date)."""
    if group.scoring not in ("proportion", "ratio"):
        return "not-applicable"
    members = {p.code: set(result.members.get(i, ())) for i, p in enumerate(group.populations)}
    eligible = members.get("denominator", set()) - members.get("denominator-exclusion", set()) \
        - members.get("denominator-exception", set())
    if not eligible:
        return "not-applicable"
    met = (members.get("numerator", set()) - members.get("numerator-exclusion", set())) & eligible
    if group.patient_based:
        closed = bool(met) if notation(group) == "increase" else not met
    else:
        closed = met == eligible if notation(group) == "increase" else not met
    if closed:
        return "closed-gap"
    due = _start(result.compliance)
    return "prospective-gap" if due is not None and due[:10] > today[:10] else "open-gap"


def notation_conflict(measure: dict[str, Any]) -> str | None:
    """A message when an improvement notation's display says the opposite of its code."""
    notations = [measure.get("improvementNotation")]
    notations += [e.get("valueCodeableConcept") for g in measure.get("group") or () if isinstance(g, dict)
                  for e in g.get("extension") or ()
                  if isinstance(e, dict) and e.get("url") == CQFM + "cqfm-improvementNotation"]
    for concept in notations:
        for coding in (concept or {}).get("coding") or () if isinstance(concept, dict) else ():
            code, display = coding.get("code"), str(coding.get("display") or "").lower()
            opposite = {"increase": "decrease", "decrease": "increase"}.get(str(code))
            if opposite and (opposite in display or f"{opposite}d" in display):
                return (f"improvementNotation code '{code}' contradicts its display '{coding.get('display')}': "
                        f"the code counts ({code}: {'higher' if code == 'increase' else 'lower'} is better)")
    return None


def _start(value: Any) -> str | None:
    if isinstance(value, Interval):
        value = value.low if value.low is not None else value.high
    if isinstance(value, DateTime | Date):
        return str(value).lstrip("@")
    return None
