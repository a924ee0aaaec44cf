"""One real (Synthea) patient's record as three EHRs would hold it: the primary-care EHR has all of it;
the hospital a differently written Patient (same SSN) and copies of every other encounter with what
was recorded there; the lab a Patient with its own MRN and copies of the lab results. The server links
the three records to one person, `$aggregate-patient` gives each fact once (no distinct fact lost, each
copy named by its Provenance), `$everything` gives every record and copy, `$match` finds the person.

Data: ../shared/data/synthea (Synthea R4 bundles, Apache-2.0 via the SMART Nimbus sample set)."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead.identity.aggregate import RULES
from tests.bundle.test_load import NIMBUS, needs_synthea
from tests.persons import persons_of

PCP, HOSP, LABS = "https://pcp.example.org/fhir", "https://hospital.example.org/fhir", "https://lab.example.org/fhir"
SHARED = ("Organization", "Practitioner", "Location", "PractitionerRole")
FILES = sorted(NIMBUS.glob("*_*_*.json"))[:3] if NIMBUS.is_dir() else []


def resources_of(path: Path) -> list[dict[str, Any]]:
    """The bundle's resources with its `urn:uuid:` references made relative (`Type/id`)."""
    bundle = orjson.loads(path.read_bytes())
    named = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    return [relinked(e["resource"], named) for e in bundle["entry"]]


def relinked(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: relinked(v, mapping) for k, v in value.items()}
        if isinstance(value.get("reference"), str) and value["reference"] in mapping:
            out["reference"] = mapping[value["reference"]]
        return out
    if isinstance(value, list):
        return [relinked(v, mapping) for v in value]
    return value


def copied(resource: dict[str, Any], prefix: str, source: str, ids: dict[str, str]) -> dict[str, Any]:
    """`resource` as another EHR stores it: its own ids (`prefix` + id), its own references, its source."""
    out = relinked(copy.deepcopy(resource), ids)
    if (out.get("encounter") or {}).get("reference") not in ids.values():
        out.pop("encounter", None)  # an encounter this EHR does not hold (a lab's results)
    out["id"] = prefix + resource["id"]
    out["meta"] = {"source": source}
    return out


def three_ehrs(path: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(shared reference data, each source's resources) for one Synthea patient."""
    everything = resources_of(path)
    shared = [r for r in everything if r["resourceType"] in SHARED]
    clinical = [r for r in everything if r["resourceType"] not in SHARED]
    patient = next(r for r in clinical if r["resourceType"] == "Patient")
    encounters = [r["id"] for r in clinical if r["resourceType"] == "Encounter"]
    at_hospital = set(encounters[::2])
    sources: dict[str, list[dict[str, Any]]] = {}
    for prefix, source, chosen in (
        ("pcp-", PCP, clinical),
        ("hosp-", HOSP, [r for r in clinical if r["resourceType"] in RULES and (
            r["id"] in at_hospital or (r.get("encounter") or {}).get("reference", "").removeprefix("Encounter/")
            in at_hospital)]),
        ("lab-", LABS, [r for r in clinical if r["resourceType"] == "Observation" and any(
            c.get("code") == "laboratory" for cat in r.get("category") or () for c in cat.get("coding") or ())]),
    ):
        ids = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{prefix}{r['id']}" for r in [patient, *chosen]}
        sources[source] = [copied(r, prefix, source, ids) for r in ([] if patient in chosen else [patient]) + chosen]
    hospital, lab = sources[HOSP][0], sources[LABS][0]
    name = patient["name"][0]
    hospital.update(name=[{"family": name["family"].upper(), "given": [g.upper() for g in name["given"]]}],
                    identifier=[i for i in patient["identifier"] if i.get("system") == "http://hl7.org/fhir/sid/us-ssn"],
                    telecom=[{"system": "phone", "value": "+1 " + t["value"]} for t in patient.get("telecom") or ()])
    lab.update(identifier=[{"system": "http://lab.example.org/mrn", "value": patient["id"][:8]}],
               name=[{"family": name["family"], "given": name["given"][:1]}])
    for element in ("telecom", "extension", "maritalStatus", "communication", "multipleBirthBoolean"):
        lab.pop(element, None)
    return shared, sources


async def written(client: httpx.AsyncClient, resources: list[dict[str, Any]]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    answer = await client.post("", json=bundle)
    assert answer.status_code == 200, answer.text[:2000]


def keyed(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]}


@needs_synthea
@pytest.mark.parametrize("path", FILES, ids=[p.name.split("_")[0] for p in FILES])
async def test_a_synthea_patient_from_three_ehrs(client: httpx.AsyncClient, path: Path) -> None:
    shared, sources = three_ehrs(path)
    await written(client, shared)
    for resources in sources.values():
        await written(client, resources)
    primary, hospital, lab = (sources[s][0]["id"] for s in (PCP, HOSP, LABS))
    records = [f"Patient/{primary}", f"Patient/{hospital}", f"Patient/{lab}"]
    persons = await persons_of(client, *records)
    assert len(set(persons.values())) == 1, persons  # one person: the SSN joins the hospital, the lab is certain
    person = (await client.get(persons[records[0]])).json()
    assert {link["target"]["reference"] for link in person["link"]} == set(records)

    answer = await client.get(f"Patient/{lab}/$aggregate-patient")
    assert answer.status_code == 200, answer.text[:2000]
    found = keyed(answer.json())
    provenances = {p["target"][0]["reference"]: p for k, p in found.items() if k.startswith("Provenance/")}
    facts = {k: r for k, r in found.items() if not k.startswith(("Provenance/", "Patient/"))}
    pcp_facts = sources[PCP][1:]
    # every fact once: as many as the primary-care EHR holds (the others' are copies of some of them)
    assert Counter(r["resourceType"] for r in facts.values()) == Counter(r["resourceType"] for r in pcp_facts)
    assert set(provenances) == set(facts) | {f"Patient/{person['id']}"}
    copies = Counter(key.split("/", 1)[1].split("-", 1)[1] for key in (
        e["what"]["reference"].rsplit("/_history/", 1)[0] for p in provenances.values() for e in p["entity"])
        if not key.startswith("Patient/"))
    held = Counter(r["id"].split("-", 1)[1] for s in sources.values() for r in s[1:])
    assert copies == held  # each source's copy of each fact named once, by the fact it was merged into
    subjects = {(r.get("subject") or r.get("patient") or {}).get("reference") for r in facts.values()} - {None}
    assert subjects <= {f"Patient/{person['id']}"}
    kept = set(found)
    for fact in facts.values():
        encounter = (fact.get("encounter") or {}).get("reference")
        assert encounter is None or encounter in kept, (fact["id"], encounter)

    everything = (await client.get(f"Patient/{hospital}/$everything")).json()
    returned = Counter(e["resource"]["resourceType"] for e in everything["entry"] if e["search"]["mode"] == "match"
                       and e["resource"]["resourceType"] not in ("Provenance", "Person"))
    assert returned == Counter(r["resourceType"] for s in sources.values() for r in s)
    assert {e["resource"]["id"] for e in everything["entry"] if e["search"]["mode"] == "include"} >= {
        r["id"] for r in shared if r["resourceType"] == "Practitioner"} - {None}

    asked = {k: v for k, v in sources[LABS][0].items() if k not in ("id", "meta", "identifier")}
    matched = (await client.post("Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": asked}]})).json()
    grades = {e["resource"]["id"]: e["search"]["extension"][0]["valueCode"] for e in matched.get("entry") or ()
              if e["resource"]["resourceType"] == "Patient"}
    assert grades.get(primary) == "certain" and grades.get(lab) == "certain"
