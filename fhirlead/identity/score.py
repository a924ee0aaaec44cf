"""Fellegi-Sunter scoring: each field's agreement level carries the weight log2(m / u), where m is how
often two records of the same person agree at that level and u how often two records of different
people do. The weights add up; the total's grade follows thresholds, with two vetoes that keep twins and
namesakes apart. Every m and u below is a stated estimate (docs/identity.md says where each comes from)
and can be tuned without touching the comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fhirlead.identity import compare
from fhirlead.identity.demographics import Demographics, Name

# field -> level -> (m, u)
M_U: dict[str, dict[str, tuple[float, float]]] = {
    "given": {"exact": (0.88, 0.006), "partial": (0.02, 0.002), "nickname": (0.04, 0.001), "typo": (0.02, 0.001),
              "phonetic": (0.015, 0.003), "initial": (0.01, 0.0007), "disagree": (0.015, 0.967)},
    "family": {"exact": (0.82, 0.003), "partial": (0.04, 0.001), "typo": (0.03, 0.0005),
               "phonetic": (0.01, 0.002), "disagree": (0.10, 0.9935)},  # surnames change: m of disagree is not small
    "swapped": {"exact": (0.005, 0.0000003)},  # given and family written the other way round
    "birth_date": {"exact": (0.95, 0.0005), "transposed": (0.01, 0.0002), "digit": (0.025, 0.001),
                   "partial": (0.005, 0.02), "disagree": (0.015, 0.9773)},
    "sex": {"agree": (0.98, 0.5), "disagree": (0.02, 0.5)},
    "address": {"exact": (0.55, 0.001), "typo": (0.05, 0.0005), "postal": (0.15, 0.02), "disagree": (0.25, 0.9785)},
    "phone": {"agree": (0.6, 0.0005), "disagree": (0.4, 0.9995)},
    "email": {"agree": (0.5, 0.0001), "disagree": (0.5, 0.9999)},
    "identifier": {"shared": (0.3, 0.00001), "conflict": (0.001, 0.3)},
}
CERTAIN, PROBABLE, POSSIBLE = 20.0, 15.0, 8.0  # thresholds on the total weight
ANCHORS = frozenset({"birth_date", "address", "phone", "email", "identifier"})  # evidence beyond the name
GRADES = ("certain", "probable", "possible", "certainly-not")


def weight(field: str, level: str) -> float:
    m, u = M_U[field][level]
    return math.log2(m / u)


@dataclass(frozen=True)
class Evidence:
    field: str
    level: str
    weight: float


@dataclass(frozen=True)
class Match:
    total: float
    grade: str
    evidence: tuple[Evidence, ...]
    deterministic: bool = False  # a strong identifier in common
    vetoed: bool = False  # a given name or birth date that disagrees, or record numbers that conflict

    @property
    def score(self) -> float:
        """The total as a probability-like number in [0, 1] (Bundle.entry.search.score): 0.5 at the
        possible threshold, near 1 above the certain one; 1 for a deterministic match."""
        if self.deterministic:
            return 1.0
        return round(1 / (1 + 2 ** (-(self.total - POSSIBLE) / 4)), 4)

    def explain(self) -> str:
        return ", ".join(f"{e.field} {e.level} ({e.weight:+.1f})" for e in self.evidence)


def _name_evidence(a: tuple[Name, ...], b: tuple[Name, ...]) -> list[Evidence]:
    """The best-agreeing pair of names (a former surname counts), as given and family evidence."""
    best: list[Evidence] = []
    best_total = -math.inf
    for x in a:
        for y in b:
            if (compare.given(x.given, y.family), compare.given(x.family, y.given)) == ("exact", "exact") \
                    and x.given != x.family:
                found = [Evidence("swapped", "exact", weight("swapped", "exact"))]
            else:
                found = [Evidence(field, level, weight(field, level)) for field, level in
                         (("given", compare.given(x.given, y.given)), ("family", compare.family(x.family, y.family)))
                         if level is not None]
            total = sum(e.weight for e in found)
            if total > best_total:
                best, best_total = found, total
    return best


def match(a: Demographics, b: Demographics) -> Match:
    """How likely `a` and `b` are the same person, and why."""
    evidence = _name_evidence(a.names, b.names)
    for field, level in (("birth_date", compare.birth_date(a.birth_date, b.birth_date)),
                         ("sex", compare.sex(a.sex, b.sex)), ("address", compare.address(a, b)),
                         ("phone", compare.telecom(a.phones, b.phones)),
                         ("email", compare.telecom(a.emails, b.emails))):
        if level is not None:
            evidence.append(Evidence(field, level, weight(field, level)))
    identifier = compare.identifiers(a, b)
    if identifier in ("shared", "conflict"):
        evidence.append(Evidence("identifier", identifier, weight("identifier", identifier)))
    total = round(sum(e.weight for e in evidence), 2)
    levels = {e.field: e.level for e in evidence}
    # a name alone, however rare, is not enough to call two records probably one person
    anchored = any(e.weight > 0 for e in evidence if e.field in ANCHORS)
    # twins, namesakes, two people with their own SSN or MBI, two patients of one source
    vetoed = levels.get("given") == "disagree" or levels.get("birth_date") == "disagree" \
        or identifier in ("conflict", "separate")
    if identifier == "agree":
        grade = "probable" if levels.get("given") == levels.get("birth_date") == "disagree" else "certain"
        evidence.append(Evidence("identifier", "agree", math.inf))
        return Match(total, grade, tuple(evidence), deterministic=grade == "certain", vetoed=vetoed)
    if total >= CERTAIN:
        grade = ("probable" if anchored else "possible") if vetoed or not anchored else "certain"
    elif total >= PROBABLE:
        grade = "possible" if identifier == "conflict" or not anchored else "probable"
    elif total >= POSSIBLE:
        grade = "possible"
    else:
        grade = "certainly-not"
    return Match(total, grade, tuple(evidence), vetoed=vetoed)
