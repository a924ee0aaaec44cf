"""What a batch of patients' data source holds (fhirlead/measure/store_data.py), read from a real store:
each patient's own resources, the resources outside the Patient compartment that their data references
(only theirs), and, when every retrieve of a type filters by codes, only resources with those codes."""

from __future__ import annotations

from fastapi import FastAPI

from fhirlead.cql.clinical import Code, ValueSet
from fhirlead.cql.retrieve import DataRequirement
from fhirlead.measure.store_data import StoreData, plan
from tests.auth.flow import seed

LOINC = "http://loinc.org"


def request(id_: str, patient: str, medication: str) -> dict:
    return {"resourceType": "MedicationRequest", "id": id_, "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{patient}"}, "medicationReference": {"reference": medication}}


def observation(id_: str, patient: str, code: str, system: str = LOINC) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": system, "code": code}]}}


async def test_a_batch_holds_each_patients_own_data(app: FastAPI) -> None:
    await seed(app, [{"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"},
                     {"resourceType": "Medication", "id": "m-a"}, {"resourceType": "Medication", "id": "m-b"},
                     {"resourceType": "Medication", "id": "m-nobody"},
                     request("rx-a", "a", "Medication/m-a"), request("rx-b", "b", "Medication/m-b"),
                     observation("a1c-a", "a", "4548-4"), observation("bp-a", "a", "85354-9"),
                     observation("a1c-b", "b", "4548-4"),
                     observation("a1c-oid-b", "b", "4548-4", "urn:oid:2.16.840.1.113883.6.1")])  # LOINC by its OID
    server = app.state.server
    a1c = ValueSet("http://example.org/vs/a1c", codes=[Code("4548-4", LOINC)])
    requirements = [DataRequirement("MedicationRequest"), DataRequirement("Medication"),
                    DataRequirement("Observation", "code", a1c), DataRequirement("Patient")]
    sources = await StoreData(server.store, plan(requirements, server.search)).load(["a", "b", "nobody"])
    assert sorted(sources) == ["a", "b"]
    held = {patient: sorted(f"{t}/{r['id']}" for t, rs in source.by_type.items() for r in rs)
            for patient, source in sources.items()}
    assert held["a"] == ["Medication/m-a", "MedicationRequest/rx-a", "Observation/a1c-a", "Patient/a"]
    assert held["b"] == ["Medication/m-b", "MedicationRequest/rx-b", "Observation/a1c-b", "Observation/a1c-oid-b",
                         "Patient/b"]
