"""Population membership and scoring, per the Quality Measure IG's population semantics.

Each population's CQL criteria gives, per subject, a boolean (patient-based measures) or a list of
resources (episode-based measures). Membership is then constrained by the other populations:

- proportion: DENOM ⊆ IP; DENEX ⊆ DENOM; NUMER ⊆ DENOM - DENEX; NUMEX ⊆ NUMER;
  DENEXCEP ⊆ DENOM - DENEX - NUMER. Score = (NUMER - NUMEX) / (DENOM - DENEX - DENEXCEP).
- ratio: DENOM ⊆ IP (the denominator's IP), NUMER ⊆ IP (the numerator's IP), DENEX ⊆ DENOM,
  NUMEX ⊆ NUMER. Score = (NUMER - NUMEX) / (DENOM - DENEX), or the ratio of aggregated observations.
- continuous-variable: MSRPOPL ⊆ IP; MSRPOPLEX ⊆ MSRPOPL; observations over MSRPOPL - MSRPOPLEX,
  aggregated by the observation's aggregate method.
- cohort: IP only.

Members are kept as ordered lists of hashable keys ("Patient/1", "Encounter/7"...), so counts add up
across subjects for summary reports.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql.quantity import Quantity
from fhirlead.measure.definition import Group, MeasureDefinitionError, Population

Members = list[str]


def episode_key(value: Any) -> str:
    """A stable key for an episode (a resource) or other population member."""
    if isinstance(value, dict) and value.get("resourceType"):
        return f"{value['resourceType']}/{value.get('id')}"
    return repr(value)


def members_of(value: Any, subject_key: str, patient_based: bool) -> Members:
    """Members contributed by one criteria result."""
    if patient_based:
        return [subject_key] if value is True else []
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return list(dict.fromkeys(episode_key(v) for v in items if v is not None))


def _restrict(members: Members, allowed: Members) -> Members:
    allowed_set = set(allowed)
    return [m for m in members if m in allowed_set]


def _minus(members: Members, *removed: Members) -> Members:
    gone: set[str] = set()
    for r in removed:
        gone.update(r)
    return [m for m in members if m not in gone]


def _ip_for(group: Group, raw: dict[int, Members], pop: Population) -> Members:
    """The initial population a ratio numerator/denominator refers to (criteriaReference), else the IP."""
    ips = [(i, p) for i, p in enumerate(group.populations) if p.code == "initial-population"]
    if pop.criteria_reference:
        for i, p in ips:
            if p.id == pop.criteria_reference:
                return raw[i]
    if len(ips) > 1:
        raise MeasureDefinitionError(f"{pop.code} must name its initial population (cqfm-criteriaReference)")
    return raw[ips[0][0]] if ips else []


def constrain(group: Group, raw: dict[int, Members]) -> dict[int, Members]:
    """Apply the scoring's population constraints to raw criteria members (by population index)."""
    out: dict[int, Members] = {}
    index = {p.code: i for i, p in enumerate(group.populations) if p.code != "measure-observation"}

    def get(code: str) -> Members:
        i = index.get(code)
        return out.get(i, []) if i is not None else []

    def put(code: str, members: Members) -> None:
        if code in index:
            out[index[code]] = members

    for i, p in enumerate(group.populations):
        if p.code == "initial-population":
            out[i] = list(raw[i])
    first_ip = next((out[i] for i, p in enumerate(group.populations) if p.code == "initial-population"), [])
    scoring = group.scoring
    if scoring == "proportion":
        if "denominator" in index:
            put("denominator", _restrict(raw[index["denominator"]], first_ip))
        else:
            put("denominator", first_ip)
        denom = get("denominator")
        if "denominator-exclusion" in index:
            put("denominator-exclusion", _restrict(raw[index["denominator-exclusion"]], denom))
        denex = get("denominator-exclusion")
        if "numerator" in index:
            put("numerator", _restrict(raw[index["numerator"]], _minus(denom, denex)))
        numer = get("numerator")
        if "numerator-exclusion" in index:
            put("numerator-exclusion", _restrict(raw[index["numerator-exclusion"]], numer))
        if "denominator-exception" in index:
            put(
                "denominator-exception",
                _restrict(raw[index["denominator-exception"]], _minus(denom, denex, numer)),
            )
    elif scoring == "ratio":
        for code in ("denominator", "numerator"):
            if code in index:
                pop = group.populations[index[code]]
                put(code, _restrict(raw[index[code]], _ip_for(group, raw, pop)))
        if "denominator-exclusion" in index:
            put("denominator-exclusion", _restrict(raw[index["denominator-exclusion"]], get("denominator")))
        if "numerator-exclusion" in index:
            put("numerator-exclusion", _restrict(raw[index["numerator-exclusion"]], get("numerator")))
        if "denominator-exception" in index:
            put(
                "denominator-exception",
                _restrict(
                    raw[index["denominator-exception"]],
                    _minus(get("denominator"), get("denominator-exclusion")),
                ),
            )
    elif scoring == "continuous-variable":
        if "measure-population" in index:
            put("measure-population", _restrict(raw[index["measure-population"]], first_ip))
        if "measure-population-exclusion" in index:
            put(
                "measure-population-exclusion",
                _restrict(raw[index["measure-population-exclusion"]], get("measure-population")),
            )
    for code, i in index.items():
        if i not in out:
            out[i] = []
            if code != "initial-population" and scoring == "cohort":
                raise MeasureDefinitionError(f"a cohort measure has no {code} population")
    return out


def observed_members(group: Group, pops: dict[int, Members], observation: Population) -> Members:
    """Which members a measure-observation population observes."""
    index = {p.code: i for i, p in enumerate(group.populations)}
    target = None
    if observation.criteria_reference:
        target = next(
            (i for i, p in enumerate(group.populations) if p.id == observation.criteria_reference), None
        )
    if target is None:
        if group.scoring == "continuous-variable":
            target = index.get("measure-population")
        else:
            raise MeasureDefinitionError("a ratio measure observation must name its population")
    if target is None:
        return []
    members = pops.get(target, [])
    code = group.populations[target].code
    if code == "measure-population":
        excl = index.get("measure-population-exclusion")
        return _minus(members, pops.get(excl, [])) if excl is not None else members
    if code == "denominator":
        excl = index.get("denominator-exclusion")
        return _minus(members, pops.get(excl, [])) if excl is not None else members
    if code == "numerator":
        excl = index.get("numerator-exclusion")
        return _minus(members, pops.get(excl, [])) if excl is not None else members
    return members


class Observed:
    """Measure-observation values folded as they arrive, so a population's report does not hold one
    value per member: sum, count, min and max keep running totals; only `median` keeps the values."""

    def __init__(self, method: str | None) -> None:
        self.method = method or "sum"
        if self.method not in ("sum", "average", "count", "min", "max", "median"):
            raise MeasureDefinitionError(f"unsupported aggregate method {method!r}")
        self.count = 0
        self.total = Decimal(0)
        self.low: Decimal | None = None
        self.high: Decimal | None = None
        self.unit: str | None = None
        self.values: list[Decimal] = []

    def add(self, value: Any) -> None:
        if value is None:
            return
        if self.count == 0 and isinstance(value, Quantity):
            self.unit = value.unit
        number = value.value if isinstance(value, Quantity) else Decimal(value)
        self.count += 1
        self.total += number
        self.low = number if self.low is None or number < self.low else self.low
        self.high = number if self.high is None or number > self.high else self.high
        if self.method == "median":
            self.values.append(number)

    def extend(self, values: list[Any]) -> Observed:
        for value in values:
            self.add(value)
        return self

    def result(self) -> Any:
        """The aggregate (a Quantity when the values were), None when nothing was observed."""
        if self.method == "count":
            return self.count
        if not self.count:
            return None
        if self.method == "sum":
            result: Any = self.total
        elif self.method == "average":
            result = self.total / self.count
        elif self.method == "min":
            result = self.low
        elif self.method == "max":
            result = self.high
        else:
            s = sorted(self.values)
            n = len(s)
            result = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
        return Quantity(result, self.unit) if self.unit else result


def aggregate(method: str | None, values: list[Any]) -> Any:
    """Aggregate observation values (sum, average, count, min, max, median)."""
    return Observed(method).extend(values).result()


def score(group: Group, counts: dict[int, int], observations: dict[int, Observed]) -> Any:
    """The measure score for a group, or None when it is undefined (e.g. an empty denominator)."""
    idx = {p.code: i for i, p in enumerate(group.populations) if p.code != "measure-observation"}

    def count(code: str) -> int:
        i = idx.get(code)
        return counts.get(i, 0) if i is not None else 0

    obs = [(i, p) for i, p in enumerate(group.populations) if p.code == "measure-observation"]
    if group.scoring == "proportion":
        denominator = count("denominator") - count("denominator-exclusion") - count("denominator-exception")
        if denominator <= 0:
            return None
        return Decimal(count("numerator") - count("numerator-exclusion")) / Decimal(denominator)
    if group.scoring == "ratio":
        if len(obs) == 2:
            by_target = {}
            for i, p in obs:
                target = next((q.code for q in group.populations if q.id == p.criteria_reference), None)
                by_target[target] = observations[i].result() if i in observations else None
            num, den = by_target.get("numerator"), by_target.get("denominator")
            num_v = num.value if isinstance(num, Quantity) else num
            den_v = den.value if isinstance(den, Quantity) else den
            if num_v is None or not den_v:
                return None
            return Decimal(num_v) / Decimal(den_v)
        denominator = count("denominator") - count("denominator-exclusion")
        if denominator <= 0:
            return None
        return Decimal(count("numerator") - count("numerator-exclusion")) / Decimal(denominator)
    if group.scoring == "continuous-variable":
        if not obs:
            return None
        i, _p = obs[0]
        return observations[i].result() if i in observations else None
    return None
