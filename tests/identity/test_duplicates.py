"""`duplicate_groups`: the same fact from two sources is one, two facts are never one (fhirlead.identity.aggregate)."""

from __future__ import annotations

from typing import Any

from fhirlead.identity.aggregate import duplicate_groups

PCP, HOSP = "https://pcp.example.org/fhir", "https://hospital.example.org/fhir"


def glucose(id_: str, source: str, value: float, when: str = "2026-03-02T08:00:00Z") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "meta": {"source": source}, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": "mg/dL"}}


def pressure(id_: str, source: str, systolic: int, diastolic: int) -> dict[str, Any]:
    def part(code: str, value: int) -> dict[str, Any]:
        return {"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]"}}
    return {"resourceType": "Observation", "id": id_, "meta": {"source": source}, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": "2026-03-02T08:00:00Z",
            "component": [part("8480-6", systolic), part("8462-4", diastolic)]}


def ids(groups: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[r["id"] for r in group] for group in groups]


def test_one_fact_from_two_sources_is_one() -> None:
    assert ids(duplicate_groups([glucose("h1", HOSP, 182), glucose("p1", PCP, 182)])) == [["h1", "p1"]]


def test_two_readings_of_one_source_stay_two() -> None:
    # the same value twice on one day from one EHR: two measurements; the hospital's copy joins the first
    groups = duplicate_groups([glucose("p1", PCP, 182, "2026-03-02T08:00:00Z"),
                               glucose("p2", PCP, 182, "2026-03-02T17:00:00Z"), glucose("h1", HOSP, 182)])
    assert ids(groups) == [["p1", "h1"], ["p2"]]


def test_blood_pressures_compare_by_their_components() -> None:
    groups = duplicate_groups([pressure("h1", HOSP, 142, 91), pressure("p1", PCP, 128, 82),
                               pressure("p2", PCP, 142, 91)])
    assert ids(groups) == [["h1", "p2"], ["p1"]]


def test_different_values_or_days_are_different_facts() -> None:
    groups = duplicate_groups([glucose("h1", HOSP, 182), glucose("p1", PCP, 181),
                               glucose("p2", PCP, 182, "2026-03-03T08:00:00Z")])
    assert ids(groups) == [["h1"], ["p1"], ["p2"]]
