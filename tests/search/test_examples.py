"""Search over the 728 official R4 examples: results checked against expectations computed directly
from the example files, plus paging through everything."""

from __future__ import annotations

from typing import Any

import httpx

from fhirlead.search.normalize import fold
from tests.search.conftest import expect_matches, ids, link, match_ids, search


def _of(examples: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [r for r in examples if r["resourceType"] == type_]


async def test_every_example_is_found_by_paging_system_search(
    examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]
) -> None:
    # AuditEvents are left out of a search without _type (the audit trail grows with every request)
    expected = {f"{r['resourceType']}/{r['id']}" for r in examples if r["resourceType"] != "AuditEvent"}
    audit_events = {f"AuditEvent/{r['id']}" for r in examples if r["resourceType"] == "AuditEvent"}
    assert audit_events <= set(ids(await search(examples_client, "?_type=AuditEvent&_count=100")))
    seen: list[str] = []
    bundle = await search(examples_client, "?_count=100&_total=accurate")
    assert bundle["total"] == len(expected)
    while True:
        seen += ids(bundle)
        following = link(bundle, "next")
        if following is None:
            break
        bundle = await search(examples_client, following)
    assert len(seen) == len(set(seen)) and set(seen) == expected


async def test_type_totals(examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]) -> None:
    for type_ in ("Observation", "Patient", "MedicationRequest", "Bundle"):
        bundle = await search(examples_client, f"{type_}?_total=accurate&_count=1")
        assert bundle["total"] == len({r["id"] for r in _of(examples, type_)}), type_


async def test_observation_code_and_subject(
    examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]
) -> None:
    observations = _of(examples, "Observation")

    def coded(system: str, code: str) -> set[str]:
        return {
            o["id"]
            for o in observations
            if any(c.get("system") == system and c.get("code") == code for c in o["code"].get("coding", []))
        }

    def about(reference: str) -> set[str]:
        return {o["id"] for o in observations if o.get("subject", {}).get("reference") == reference}

    cases = [
        (f"code=http://loinc.org|{code}", coded("http://loinc.org", code))
        for code in ("55233-1", "29463-7", "85354-9", "8310-5", "15074-8")
    ]
    cases += [
        (f"subject=Patient/{pid}", about(f"Patient/{pid}")) for pid in ("example", "f001", "infant", "727127")
    ]
    assert all(expected for _, expected in cases)
    await expect_matches(examples_client, "Observation?", cases)


async def test_observation_values_and_dates(
    examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]
) -> None:
    observations = _of(examples, "Observation")
    above_100 = {o["id"] for o in observations if o.get("valueQuantity", {}).get("value", 0) > 100}
    in_1999 = {o["id"] for o in observations if str(o.get("effectiveDateTime", "")).startswith("1999")}
    await expect_matches(
        examples_client,
        "Observation?",
        [
            ("value-quantity=gt100", above_100),
            ("date=1999", in_1999),
            ("date=1999-07-02&code=http://loinc.org|8867-4", {"heart-rate"}),
            ("value-quantity=36.5|http://unitsofmeasure.org|Cel", {"body-temperature"}),
            ("value-quantity=309.65|http://unitsofmeasure.org|K", {"body-temperature"}),  # 36.5 Cel in kelvin
            ("value-quantity=97.7|http://unitsofmeasure.org|[degF]", {"body-temperature"}),
            ("value-quantity=36.5|http://unitsofmeasure.org|K", set()),
            ("value-quantity=185|http://unitsofmeasure.org|[lb_av]", {"example"}),
            # blood-pressure-cancel has the same components without values (dataAbsentReason)
            (
                "component-code-value-quantity=http://loinc.org|8480-6$107",
                {"blood-pressure", "blood-pressure-dar"},
            ),
            ("code-value-quantity=http://loinc.org|8867-4$lt50", {"heart-rate"}),
        ],
    )


async def test_patients(examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]) -> None:
    patients = _of(examples, "Patient")

    def named(prefix: str) -> set[str]:
        found = set()
        for patient in patients:
            for name in patient.get("name", []):
                parts = [name.get("family"), name.get("text"), *name.get("given", [])]
                if any(isinstance(p, str) and fold(p).startswith(prefix) for p in parts):
                    found.add(patient["id"])
        return found

    born_1974 = {p["id"] for p in patients if p.get("birthDate", "").startswith("1974")}
    await expect_matches(
        examples_client,
        "Patient?",
        [
            ("name=peter", named("peter")),
            ("family=everywoman", {"genetics-example1", "mom"}),
            ("name=solo", named("solo")),
            ("birthdate=1974", born_1974),
            ("birthdate=1974-12-25", born_1974),
            (
                "gender=female&birthdate=ge2000",
                {
                    p["id"]
                    for p in patients
                    if p.get("gender") == "female" and p.get("birthDate", "0") >= "2000"
                },
            ),
            ("_has:Observation:patient:code=http://loinc.org|85354-9", {"example"}),
            ("identifier=urn:oid:1.2.36.146.595.217.0.1|12345", {"example"}),
        ],
    )
    assert named("peter") == {"example"}


async def test_chains_and_includes_on_examples(
    examples_client: httpx.AsyncClient, examples: list[dict[str, Any]]
) -> None:
    observations = _of(examples, "Observation")
    of_example = {o["id"] for o in observations if o.get("subject", {}).get("reference") == "Patient/example"}
    assert await match_ids(examples_client, "Observation?subject:Patient.name=peter&_count=200") == of_example
    bundle = await search(examples_client, "Patient?_id=example&_revinclude=Observation:subject")
    assert {e.split("/")[1] for e in ids(bundle, "include")} == of_example
    bundle = await search(examples_client, "Observation?_id=f001&_include=Observation:subject&_include=*")
    assert "Patient/f001" in set(ids(bundle, "include"))
    bundle = await search(
        examples_client, "MedicationRequest?_include=MedicationRequest:medication&_count=100"
    )
    referenced = {
        m["medicationReference"]["reference"]
        for m in _of(examples, "MedicationRequest")
        if "medicationReference" in m
    }
    existing = {f"Medication/{m['id']}" for m in _of(examples, "Medication")}
    assert set(ids(bundle, "include")) == referenced & existing
