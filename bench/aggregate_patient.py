"""`Patient/[id]/$aggregate-patient` for one person recorded by three EHRs, and the identity-linking queue.

    .venv/bin/python bench/aggregate_patient.py [--others 2000] [--runs 20] [--seed 7] [--keep DIR] [--profile]
                                                [--in-process]

1. Generates (seeded) one person written by three sources (meta.source pcp, hospital and lab
   .example.org): three Patient records that differ as EHRs' records do (upper case, an initial, "St" for
   "Street", another phone, a married double surname, no address) and share a Medicare MBI (a strong
   identifier: certain, docs/identity.md), and ~1,000 resources per source (lab and vital-sign
   Observations, Conditions, Encounters, MedicationRequests, Immunizations, AllergyIntolerances,
   Procedures). 25 % of each source's resources are facts another source also reports (same code, same
   day, same value; other ids, times of day and encounters): 50 facts all three report, 100 per pair of
   sources, so 3,000 resources are 2,600 facts. Beside it, --others other people (a Patient with ~19
   resources each, the Patients of bench/match.py) so the store is not trivially small.
2. Loads them as transaction Bundles (PUT with ids, ~100 entries each; the others first, then the
   person's three sources) into a live `fhirlead serve` (uvicorn, SQLite in a temporary folder, or
   --keep DIR, reused when it already holds this data set), authorization on (a `system/*.cruds` token,
   as bench/match.py), the background workers on. Every Patient written queues a linking job, which the
   server's worker takes in key order: the person's record ids sort after the others', so their jobs run
   last, behind whatever backlog the load left. Timed: the load; from the last write, the Person linking
   all three records (`Person?link=`) and the queue empty (pending `identity-link` records, read from the
   SQLite file); Patients linked per second.
3. `GET Patient/<pcp record>/$aggregate-patient` (all, `_type=Observation`, `start`/`end` one year):
   warm-up, then --runs timed runs each, client side to the answer's last byte (parsed after the clock
   stops: orjson takes ~18 ms for the full answer, several times that when this process's own garbage
   collector runs over what it holds, which is therefore frozen first); entries, facts, facts
   merged from several sources (their Provenance has `activity`), bytes, checked against the generator.
   The server's memory (/proc/<pid>/status, every 20 ms): peak RSS and heap (RssAnon) during the runs,
   and the heap after the first and the last run (growth across runs).
4. --profile: py-spy samples the server (`record --format raw`) during --runs more full runs; prints the
   functions holding the most samples (inclusive: the server's own code; own time: any), idle threads aside.
5. --in-process: after the server stops, the full aggregate in this process (no HTTP, authorization off)
   with CPython's cyclic garbage collector at its defaults, off, and with the start-up heap frozen: how much
   of the time is the collector's (py-spy cannot tell; it counts it for whichever frame allocated).
The issue's target: under 300 ms. The client shares the machine's two cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_token import bench_token
from match import generate as other_patients
from measures_live import RssSampler
from rest import free_port

Resource = dict[str, Any]
PCP, HOSP, LAB = "https://pcp.example.org/fhir", "https://hospital.example.org/fhir", "https://lab.example.org/fhir"
SOURCES = {"pcp": PCP, "hosp": HOSP, "lab": LAB}
RECORDS = {"pcp": "pcp-8812", "hosp": "hosp-a-77", "lab": "lab-00451"}  # sort after the others' "bg-…"
MBI = "http://hl7.org/fhir/sid/us-mbi"
LOINC, SNOMED, CVX = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/cvx"
RXNORM, ICD10, UCUM = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/icd-10-cm", \
    "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BUNDLE_ENTRIES = 100
WARM_UP = 3
FIRST_DAY, DAYS = date(2016, 1, 1), 3987  # to 2026-11-30
YEAR = ("2026-01-01", "2026-12-31")

# (LOINC, display, UCUM unit, low, high, decimals)
LABS = [("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.0, 10.5, 1),
        ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 250, 0),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 2.0, 2),
        ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 132, 146, 0),
        ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.3, 5.3, 1),
        ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 96, 110, 0),
        ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 20, 32, 0),
        ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 6, 40, 0),
        ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.4, 10.4, 1),
        ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 60, 0),
        ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 50, 0),
        ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 280, 0),
        ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", 60, 190, 0),
        ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 30, 80, 0),
        ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 60, 400, 0),
        ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.5, 16.5, 1),
        ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 32, 50, 1),
        ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 12, 1),
        ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 140, 420, 0),
        ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 0.4, 5.5, 2),
        ("33914-3", "Glomerular filtration rate/1.73 sq M.predicted by Creatinine-based formula (MDRD)",
         "mL/min/{1.73_m2}", 35, 100, 0),
        ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.2, 5.0, 1),
        ("14959-1", "Microalbumin/Creatinine [Mass Ratio] in Urine", "mg/g", 5, 300, 0),
        ("1989-3", "25-Hydroxyvitamin D3+25-Hydroxyvitamin D2 [Mass/volume] in Serum or Plasma", "ng/mL", 12, 60, 0)]
VITALS = [("8867-4", "Heart rate", "/min", 55, 100, 0), ("9279-1", "Respiratory rate", "/min", 12, 22, 0),
          ("8310-5", "Body temperature", "Cel", 36.1, 37.9, 1), ("29463-7", "Body weight", "kg", 68, 82, 1),
          ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 25, 31, 1),
          ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 93, 100, 0),
          ("85354-9", "Blood pressure panel with all children optional", "mm[Hg]", 0, 0, 0)]
CONDITIONS = [("44054006", "E11.9", "Type 2 diabetes mellitus"), ("38341003", "I10", "Hypertensive disorder"),
              ("55822004", "E78.5", "Hyperlipidemia"), ("195967001", "J45.909", "Asthma"),
              ("35489007", "F32.9", "Depressive disorder"), ("197480006", "F41.9", "Anxiety disorder"),
              ("709044004", "N18.9", "Chronic kidney disease"), ("396275006", "M19.90", "Osteoarthritis"),
              ("235595009", "K21.9", "Gastroesophageal reflux disease"), ("68566005", "N39.0",
                                                                         "Urinary tract infection"),
              ("444814009", "J01.90", "Viral sinusitis"), ("49436004", "I48.91", "Atrial fibrillation"),
              ("40930008", "E03.9", "Hypothyroidism"), ("279039007", "M54.50", "Low back pain"),
              ("25064002", "R51.9", "Headache"), ("271737000", "D64.9", "Anemia")]
MEDICATIONS = [("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
               ("314076", "lisinopril 10 MG Oral Tablet"), ("259255", "atorvastatin 80 MG Oral Tablet"),
               ("197361", "amlodipine 5 MG Oral Tablet"), ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
               ("966222", "levothyroxine sodium 0.05 MG Oral Tablet"), ("310965", "ibuprofen 200 MG Oral Tablet"),
               ("308136", "amlodipine 2.5 MG Oral Tablet"), ("198440", "acetaminophen 500 MG Oral Tablet"),
               ("312961", "simvastatin 20 MG Oral Tablet"), ("745679", "albuterol 0.09 MG/ACTUAT Inhaler"),
               ("313782", "acetaminophen 325 MG Oral Tablet"), ("1361615", "sertraline 50 MG Oral Tablet"),
               ("308192", "amoxicillin 500 MG Oral Tablet"), ("205923", "omeprazole 20 MG Oral Capsule")]
VACCINES = [("140", "Influenza, seasonal, injectable, preservative free"),
            ("158", "Influenza, injectable, quadrivalent"),
            ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"), ("33", "Pneumococcal polysaccharide PPV23"),
            ("133", "Pneumococcal conjugate PCV 13"), ("115", "Tdap"), ("187", "Zoster vaccine recombinant")]
ALLERGIES = [("91936005", "Allergy to penicillin"), ("294505008", "Allergy to amoxicillin"),
             ("300916003", "Latex allergy"), ("91935009", "Allergy to peanuts"),
             ("232350006", "House dust mite allergy"), ("418689008", "Allergy to grass pollen"),
             ("419474003", "Allergy to mould"), ("300913006", "Shellfish allergy"),
             ("294466005", "Allergy to sulfonamide"), ("420113004", "Allergy to codeine")]
PROCEDURES = [("73761001", "Colonoscopy"), ("24623002", "Screening mammography"),
              ("430193006", "Medication reconciliation"), ("171207006", "Depression screening"),
              ("5880005", "Physical examination"), ("29303009", "Electrocardiographic procedure"),
              ("399208008", "Plain chest X-ray"), ("117015009", "Throat culture"),
              ("268556000", "Urine screening for glucose"), ("710824005", "Assessment of health and social care needs"),
              ("410006001", "Digital examination of rectum"), ("16310003", "Ultrasonography of abdomen")]
ENCOUNTERS = {"pcp": [("185349003", "Encounter for check up"), ("390906007", "Follow-up encounter"),
                      ("185345009", "Encounter for symptom")],
              "hosp": [("32485007", "Hospital admission"), ("50849002", "Emergency room admission")]}
CLASSES = {"pcp": ("AMB", "ambulatory"), "hosp": ("IMP", "inpatient encounter")}
# resources per source by kind, and the facts shared (sources -> kind -> count): 25 % of each source's
QUOTAS = {"pcp": {"lab": 450, "vital": 250, "condition": 60, "encounter": 100, "medication": 80, "immunization": 30,
                  "allergy": 5, "procedure": 25},
          "hosp": {"lab": 400, "vital": 300, "condition": 50, "encounter": 80, "medication": 100, "immunization": 10,
                   "allergy": 5, "procedure": 55},
          "lab": {"lab": 1000}}
SHARED = {("pcp", "hosp", "lab"): {"lab": 50}, ("pcp", "lab"): {"lab": 100}, ("hosp", "lab"): {"lab": 100},
          ("pcp", "hosp"): {"lab": 40, "vital": 20, "condition": 15, "medication": 15, "immunization": 5,
                            "allergy": 3, "procedure": 2}}
TYPES = {"lab": "Observation", "vital": "Observation", "condition": "Condition", "encounter": "Encounter",
         "medication": "MedicationRequest", "immunization": "Immunization", "allergy": "AllergyIntolerance",
         "procedure": "Procedure"}


@dataclass(frozen=True)
class Fact:
    """One clinical fact of the person, as every source reporting it writes it (ids and times of day differ)."""

    kind: str
    code: int  # index into the kind's catalogue
    day: str  # "" for an allergy (undated)
    value: Any  # a number, (systolic, diastolic) for a blood pressure, None
    sources: tuple[str, ...]


def _number(low: float, high: float, decimals: int, rng: random.Random) -> Any:
    value = round(rng.uniform(low, high), decimals)
    return int(value) if decimals == 0 else value


def person_facts(rng: random.Random) -> list[Fact]:
    """The person's distinct facts, each with the sources reporting it; no two facts are the same fact by
    `$aggregate-patient`'s rules (so the expected merge is exactly the shared facts)."""
    used: set[tuple[Any, ...]] = set()
    facts: list[Fact] = []

    def add(kind: str, sources: tuple[str, ...]) -> None:
        while True:
            day = (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).isoformat()
            if kind in ("lab", "vital"):
                catalogue = LABS if kind == "lab" else VITALS
                code = rng.randrange(len(catalogue))
                _, _, _, low, high, decimals = catalogue[code]
                value: Any = ((rng.randrange(105, 165), rng.randrange(60, 100)) if catalogue[code][0] == "85354-9"
                              else _number(low, high, decimals, rng))
                key: tuple[Any, ...] = (kind, catalogue[code][0], day,
                                        None if isinstance(value, tuple) else str(value))  # a BP: no value[x]
            elif kind == "allergy":
                code, day, value = rng.randrange(len(ALLERGIES)), "", None
                key = (kind, code)
            elif kind == "encounter":
                source = sources[0]
                code, value = rng.randrange(len(ENCOUNTERS[source])), None
                day = f"{day}T{rng.randrange(7, 19):02d}:{rng.randrange(0, 60, 5):02d}"
                key = (kind, day[:10])  # one visit a day at most, at any source
            else:
                size = {"condition": CONDITIONS, "medication": MEDICATIONS, "immunization": VACCINES,
                        "procedure": PROCEDURES}[kind]
                code, value = rng.randrange(len(size)), None
                key = (kind, code, day)
            if key not in used:
                used.add(key)
                facts.append(Fact(kind, code, day, value, sources))
                return

    for sources, kinds in SHARED.items():
        for kind, count in kinds.items():
            for _ in range(count):
                add(kind, sources)
    for source, kinds in QUOTAS.items():
        for kind, count in kinds.items():
            shared = sum(k.get(kind, 0) for s, k in SHARED.items() if source in s)
            for _ in range(count - shared):
                add(kind, (source,))
    return facts


def person_records() -> dict[str, Resource]:
    """The three Patient records of the person (meta.source set), by source."""
    mbi = {"system": MBI, "value": "1EG4TE5MK73"}
    return {
        "pcp": {"resourceType": "Patient", "id": RECORDS["pcp"], "meta": {"source": PCP},
                "identifier": [mbi, {"system": "https://pcp.example.org/fhir/mrn", "value": "8812"}],
                "name": [{"family": "Garcia", "given": ["Maria", "Elena"]}], "gender": "female",
                "birthDate": "1958-03-14", "telecom": [{"system": "phone", "value": "(217) 555-0142", "use": "home"}],
                "address": [{"line": ["12 Oak Street"], "city": "Springfield", "state": "IL", "postalCode": "62701"}]},
        "hosp": {"resourceType": "Patient", "id": RECORDS["hosp"], "meta": {"source": HOSP},
                 "identifier": [{"system": "https://hospital.example.org/fhir/mrn", "value": "A-77"}, mbi],
                 "name": [{"family": "GARCIA", "given": ["MARIA", "E"]}], "gender": "female", "birthDate": "1958-03-14",
                 "telecom": [{"system": "phone", "value": "217-555-0142"}, {"system": "phone", "value": "217-555-0199",
                                                                             "use": "mobile"}],
                 "address": [{"line": ["12 Oak St"], "city": "SPRINGFIELD", "state": "IL", "postalCode": "62701"}]},
        "lab": {"resourceType": "Patient", "id": RECORDS["lab"], "meta": {"source": LAB},
                "identifier": [mbi, {"system": "https://lab.example.org/fhir/patient", "value": "00451"}],
                "name": [{"family": "Garcia-Lopez", "given": ["Maria"]}], "gender": "female",
                "birthDate": "1958-03-14"},
    }


def _coding(system: str, code: str, display: str) -> Resource:
    return {"system": system, "code": code, "display": display}


def _clock(day: str, rng: random.Random) -> str:
    return f"{day}T{rng.randrange(6, 22):02d}:{rng.randrange(60):02d}:00-06:00"


def resource_of(fact: Fact, source: str, id_: str, patient: str, encounters: list[str],
                rng: random.Random) -> Resource:
    """The fact as `source` writes it: its own id, time of day and encounter, its own local codes."""
    subject = {"reference": f"Patient/{patient}"}
    encounter = {"encounter": {"reference": f"Encounter/{rng.choice(encounters)}"}} if encounters else {}
    out: Resource
    if fact.kind in ("lab", "vital"):
        code, display, unit, *_ = (LABS if fact.kind == "lab" else VITALS)[fact.code]
        codings = [_coding(LOINC, code, display)]
        if source == "lab":
            codings.append({"system": "https://lab.example.org/fhir/test", "code": f"T{code.replace('-', '')}"})
        category = ("laboratory", "Laboratory") if fact.kind == "lab" else ("vital-signs", "Vital Signs")
        out = {"resourceType": "Observation", "status": "final",
               "category": [{"coding": [_coding(CATEGORY, *category)]}], "code": {"coding": codings},
               "subject": subject, **encounter, "effectiveDateTime": _clock(fact.day, rng)}
        if isinstance(fact.value, tuple):
            out["component"] = [
                {"code": {"coding": [_coding(LOINC, c, d)]},
                 "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
                for (c, d), v in zip((("8480-6", "Systolic blood pressure"), ("8462-4", "Diastolic blood pressure")),
                                     fact.value, strict=True)]
        else:
            out["valueQuantity"] = {"value": fact.value, "unit": unit, "system": UCUM, "code": unit}
    elif fact.kind == "condition":
        snomed, icd, display = CONDITIONS[fact.code]
        codings = [_coding(SNOMED, snomed, display)] + ([_coding(ICD10, icd, display)] if source == "hosp" else [])
        out = {"resourceType": "Condition",
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                              "code": "active"}]},
               "code": {"coding": codings, "text": display}, "subject": subject, **encounter,
               "onsetDateTime": fact.day}
    elif fact.kind == "encounter":
        type_ = ENCOUNTERS[source][fact.code]
        class_ = CLASSES[source]
        out = {"resourceType": "Encounter", "status": "finished",
               "class": _coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", *class_),
               "type": [{"coding": [_coding(SNOMED, *type_)]}], "subject": subject,
               "period": {"start": f"{fact.day}:00-06:00", "end": f"{fact.day[:11]}23:00:00-06:00"}}
    elif fact.kind == "medication":
        out = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"coding": [_coding(RXNORM, *MEDICATIONS[fact.code])]},
               "subject": subject, **encounter, "authoredOn": fact.day,
               "dosageInstruction": [{"text": "1 tablet by mouth daily"}]}
    elif fact.kind == "immunization":
        out = {"resourceType": "Immunization", "status": "completed",
               "vaccineCode": {"coding": [_coding(CVX, *VACCINES[fact.code])]}, "patient": subject,
               **encounter, "occurrenceDateTime": fact.day, "primarySource": source == "pcp"}
    elif fact.kind == "allergy":
        out = {"resourceType": "AllergyIntolerance",
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                              "allergyintolerance-clinical", "code": "active"}]},
               "code": {"coding": [_coding(SNOMED, *ALLERGIES[fact.code])]}, "patient": subject}
    else:
        out = {"resourceType": "Procedure", "status": "completed",
               "code": {"coding": [_coding(SNOMED, *PROCEDURES[fact.code])]}, "subject": subject, **encounter,
               "performedDateTime": _clock(fact.day, rng)}
    return {"resourceType": out.pop("resourceType"), "id": id_, "meta": {"source": SOURCES[source]}, **out}


def person_resources(facts: list[Fact], rng: random.Random) -> dict[str, list[Resource]]:
    """Per source: its Patient record, its encounters, then the rest of what it reports."""
    records = person_records()
    out: dict[str, list[Resource]] = {}
    for source in SOURCES:
        mine = [f for f in facts if source in f.sources]
        visits = [f for f in mine if f.kind == "encounter"]
        ids = [f"{source}-enc-{n:04d}" for n in range(len(visits))]
        resources = [records[source]] + [resource_of(f, source, i, RECORDS[source], [], rng)
                                         for f, i in zip(visits, ids, strict=True)]
        counts: Counter[str] = Counter()
        for fact in (f for f in mine if f.kind != "encounter"):
            counts[fact.kind] += 1
            resources.append(resource_of(fact, source, f"{source}-{fact.kind}-{counts[fact.kind]:04d}",
                                         RECORDS[source], ids, rng))
        out[source] = resources
    return out


def others(count: int, rng: random.Random) -> list[list[Resource]]:
    """Other people: a Patient (bench/match.py's generator, ids bg-NNNNNN) and ~19 resources each."""
    people = []
    kinds = ["lab"] * 6 + ["vital"] * 5 + ["condition"] * 2 + ["encounter"] * 2 + ["medication"] * 2 + \
        ["immunization", "procedure"]
    for n, patient in enumerate(other_patients(count, rng)):
        source = rng.choice(("pcp", "hosp"))
        patient = {**patient, "id": f"bg-{n:06d}", "meta": {"source": SOURCES[source]}}
        resources = [patient]
        for k, kind in enumerate(kinds):
            day = (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).isoformat()
            catalogue = {"lab": LABS, "vital": VITALS[:-1], "condition": CONDITIONS, "medication": MEDICATIONS,
                         "immunization": VACCINES, "procedure": PROCEDURES, "encounter": ENCOUNTERS[source]}[kind]
            code = rng.randrange(len(catalogue))
            value = _number(*catalogue[code][3:6], rng) if kind in ("lab", "vital") else None
            when = f"{day}T10:{k:02d}" if kind == "encounter" else day
            resources.append(resource_of(Fact(kind, code, when, value, (source,)), source, f"{patient['id']}-{k}",
                                         patient["id"], [], rng))
        people.append(resources)
    return people


def transactions(resources: list[Resource]) -> list[bytes]:
    """Transaction Bundles of BUNDLE_ENTRIES PUTs (resources in order)."""
    return [orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources[i:i + BUNDLE_ENTRIES]]}) for i in range(0, len(resources), BUNDLE_ENTRIES)]


@dataclass
class Expected:
    facts: int
    merged: int


def expected(facts: list[Fact], types: set[str] | None = None, year: tuple[str, str] | None = None) -> Expected:
    """Facts and facts reported by several sources that an aggregate with these filters returns."""
    chosen = [f for f in facts if (types is None or TYPES[f.kind] in types)
              and (year is None or not f.day or year[0] <= f.day[:10] <= year[1])]
    return Expected(len(chosen), sum(1 for f in chosen if len(f.sources) > 1))


class Queue:
    """The identity-linking jobs still pending, read from the SQLite file (read-only)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def pending(self) -> int:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as conn:
            row = conn.execute("SELECT count(*) FROM records WHERE kind = 'identity-link' AND (expires IS NULL OR "
                               "expires > ?)", (time.time(),)).fetchone()
        return int(row[0])


@dataclass
class Server:
    root: str
    store: str
    pid: int
    rss: RssSampler
    log: Path


@contextmanager
def serving(store: str, log: Path) -> Iterator[Server]:
    """A `fhirlead serve` on `store` (as bench/measures_live.py, but its warnings kept in `log`)."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store",
                                   store], stdout=out, stderr=out, env={**os.environ, "FHIRLEAD_LOG_LEVEL": "warning"})
    root = f"http://127.0.0.1:{port}"
    rss = RssSampler(server.pid)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{root}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        yield Server(root, store, server.pid, rss, log)
    finally:
        rss.stop()
        server.terminate()
        server.wait()


def client(live: Server) -> httpx.Client:
    token = bench_token(live.store, live.root, "system/*.cruds")
    return httpx.Client(base_url=f"{live.root}/fhir/", timeout=600, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})


def linked(http: httpx.Client) -> bool:
    """Whether one Person links the person's three records."""
    wanted = {f"Patient/{id_}" for id_ in RECORDS.values()}
    bundle = http.get("Person", params={"link": f"Patient/{RECORDS['pcp']}"}).raise_for_status().json()
    return any(wanted <= {link.get("target", {}).get("reference") for link in e["resource"].get("link") or ()}
               for e in bundle.get("entry") or ())


def load(live: Server, queue: Queue, bundles: list[bytes], patients: int) -> None:
    """POSTs the Bundles one after another, then waits for the person's Person and an empty queue."""
    with client(live) as http:
        started = time.perf_counter()
        resources = 0
        for n, body in enumerate(bundles):
            answer = http.post("", content=body)
            if answer.status_code != 200:
                raise SystemExit(f"Bundle {n} -> {answer.status_code}: {answer.text[:2000]}")
            resources += len(answer.json()["entry"])
        last_write = time.perf_counter()
        backlog = queue.pending()
        print(f"load: {len(bundles):,} transaction Bundles, {resources:,} resources in {last_write - started:.1f} s "
              f"({resources / (last_write - started):,.0f}/s); {patients - backlog:,} of {patients:,} Patients linked "
              f"during the load ({(patients - backlog) / (last_write - started):.1f}/s), {backlog:,} queued")
        person_at = empty_at = None
        while person_at is None or empty_at is None:
            now = time.perf_counter()
            if person_at is None and linked(http):
                person_at = time.perf_counter()
            if empty_at is None and queue.pending() == 0:
                empty_at = time.perf_counter()
            if now - last_write > 3600:
                raise SystemExit("linking did not finish within an hour")
            time.sleep(0.2)
        drained = max(empty_at - last_write, 1e-9)
        print(f"after the last write: the person's three records linked by one Person in "
              f"{person_at - last_write:.1f} s; queue empty in {drained:.1f} s ({backlog / drained:.1f} "
              f"Patients linked/s); all {patients:,} linked {empty_at - started:.1f} s after the first write "
              f"({patients / (empty_at - started):.1f}/s overall)")
        persons = http.get("Person", params={"_summary": "count"}).json().get("total")
        tasks = http.get("Task", params={"code": "http://fhirlead.org/fhir/CodeSystem/identity|review-match",
                                         "_summary": "count"}).json().get("total")
        print(f"Persons: {persons:,}; review Tasks: {tasks:,}")


@dataclass
class Variant:
    label: str
    params: dict[str, str]
    expect: Expected


def run_variant(http: httpx.Client, live: Server, variant: Variant, runs: int) -> list[str]:
    """Warm-up, then `runs` timed GETs: prints one table row; the mismatches with the generator."""
    url = f"Patient/{RECORDS['pcp']}/$aggregate-patient"
    for _ in range(WARM_UP):
        http.get(url, params=variant.params).raise_for_status()
    live.rss.reset()
    times, heaps, answer = [], [], None
    for _ in range(runs):
        started = time.perf_counter()
        answer = http.get(url, params=variant.params)  # to the answer's last byte; parsed apart (18 ms for 3.6 MB)
        times.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"GET {url} {variant.params} -> {answer.status_code}: {answer.text[:2000]}")
        heaps.append(live.rss.current()[1])
    peak = live.rss.peak()
    assert answer is not None
    body, size = orjson.loads(answer.content), len(answer.content)
    resources = [e["resource"] for e in body.get("entry") or ()]
    facts = [r for r in resources if r["resourceType"] not in ("Patient", "Provenance")]
    merged = sum(1 for r in resources if r["resourceType"] == "Provenance" and "activity" in r
                 and not r["target"][0]["reference"].startswith("Patient/"))
    took = sorted(times)
    p95 = took[max(0, round(len(took) * 0.95) - 1)]
    print(f"| {variant.label} | {len(resources):,} | {len(facts):,} | {merged:,} | {size / 2**20:.2f} | "
          f"{statistics.median(took) * 1000:.0f} | {p95 * 1000:.0f} | {took[0] * 1000:.0f} | {peak[0]:.0f} / "
          f"{peak[1]:.0f} | {heaps[0]:.0f} → {heaps[-1]:.0f} |")
    problems = []
    if (len(facts), merged) != (variant.expect.facts, variant.expect.merged):
        problems.append(f"{variant.label}: {len(facts)} facts, {merged} merged; expected {variant.expect}")
    return problems


def profile(http: httpx.Client, live: Server, folder: Path, runs: int) -> None:
    """py-spy on the server during `runs` full aggregates: the server's own functions holding the most samples
    (inclusive, and own time), as shares of the busy samples (idle thread-pool waits left out). py-spy does
    not see the cyclic garbage collector: its time counts for the frame that allocated (see --in-process)."""
    out = folder / "aggregate-profile.txt"
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(live.pid), "--rate",
                            "250", "--format", "raw", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    started = time.perf_counter()
    for _ in range(runs):
        http.get(f"Patient/{RECORDS['pcp']}/$aggregate-patient").raise_for_status()
    took = time.perf_counter() - started
    spy.send_signal(2)  # SIGINT: py-spy writes its output and stops
    spy.wait(60)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = threads = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [(f.split(" (")[0], f.rpartition(" (")[2].split(":")[0]) for f in stack.split(";") if f]
        if not frames or frames[-1][0] == "_worker":
            continue  # a thread-pool thread waiting for work
        total += int(count)
        threads += int(count) if frames[0][0] == "Thread._bootstrap" else 0
        own[f"{frames[-1][0]} ({frames[-1][1].rsplit('/', 1)[-1]})"] += int(count)
        for name in {f"{name} ({path})" for name, path in frames if path.startswith(("fhirlead/", "operations/"))}:
            inclusive[name] += int(count)
    print(f"\nprofile (py-spy, 250 Hz): {runs} full aggregates in {took:.1f} s; {total:,} busy samples, "
          f"{threads / max(total, 1) * 100:.0f} % of them on thread-pool threads (SQLite); {out}")
    for title, counter in (("inclusive, the server's own code", inclusive), ("own time", own)):
        print(f"  {title}:")
        for frame, count in counter.most_common(15):
            print(f"    {count / max(total, 1) * 100:5.1f} %  {frame}")


def in_process(store: str, runs: int) -> None:
    """The full aggregate in this process (the app over httpx's ASGI transport, authorization, audit and
    workers off, the live server stopped) with CPython's cyclic garbage collector as configured by default,
    off, with the start-up heap frozen (`gc.freeze()`), and frozen with a gen-0 threshold of 50,000: blocks of
    requests per setting, two rounds, the first two requests of a block not counted (the collector's state
    settles as in a running server). Prints median ms, the collector's time (gc.callbacks) and its full
    (gen-2) collections per request."""
    from fhirlead.api.app import create_app
    from fhirlead.settings import Settings

    collecting = {"since": 0.0, "total": 0.0, "full": 0}

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["total"] += time.perf_counter() - collecting["since"]
            collecting["full"] += info["generation"] == 2

    setups = {"default (700, 10, 10)": lambda: (gc.set_threshold(700, 10, 10), gc.enable()),
              "off": gc.disable,
              "start-up heap frozen": lambda: (gc.set_threshold(700, 10, 10), gc.enable(), gc.freeze()),
              "frozen, gen-0 threshold 50,000": lambda: (gc.set_threshold(50_000, 10, 10), gc.enable(), gc.freeze())}

    async def measure() -> dict[str, list[tuple[float, float, int]]]:
        app = create_app(Settings(store=store, auth=False, workers=False, audit=False))
        found: dict[str, list[tuple[float, float, int]]] = {name: [] for name in setups}
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://bench/fhir/") as local:
            url = f"Patient/{RECORDS['pcp']}/$aggregate-patient"
            for _ in range(WARM_UP):
                (await local.get(url)).raise_for_status()
            gc.callbacks.append(note)
            try:
                for _ in range(2):
                    for name, setup in setups.items():
                        gc.unfreeze()
                        gc.enable()
                        gc.collect()
                        setup()
                        for n in range(2 + max(1, runs // 2)):
                            collecting.update(total=0.0, full=0)
                            started = time.perf_counter()
                            (await local.get(url)).raise_for_status()
                            if n >= 2:
                                found[name].append((time.perf_counter() - started, collecting["total"],
                                                    int(collecting["full"])))
            finally:
                gc.callbacks.remove(note)
                gc.unfreeze()
                gc.set_threshold(700, 10, 10)
                gc.enable()
        return found

    found = asyncio.run(measure())
    print(f"\nin process (no HTTP, authorization off), {len(next(iter(found.values())))} full aggregates per "
          "collector setting:")
    print("| collector | median ms | min ms | collecting, median ms | full collections per request |")
    print("| --- | --- | --- | --- | --- |")
    for name, rows in found.items():
        print(f"| {name} | {statistics.median(t for t, _, _ in rows) * 1000:.0f} | "
              f"{min(t for t, _, _ in rows) * 1000:.0f} | {statistics.median(g for _, g, _ in rows) * 1000:.0f} | "
              f"{statistics.mean(f for _, _, f in rows):.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--others", type=int, default=2000, help="other people in the store (default 2,000)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per variant (default 20)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the store in this folder")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during --runs more full runs")
    parser.add_argument("--in-process", action="store_true",
                        help="then the full aggregate in process, with the garbage collector on, off and frozen")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    facts = person_facts(rng)
    person = person_resources(facts, rng)
    background = others(args.others, rng)
    bundles = [b for i in range(0, len(background), 5) for b in transactions(
        [r for people in background[i:i + 5] for r in people])]
    bundles += [b for source in SOURCES for b in transactions(person[source])]
    sizes = ", ".join(f"{source} {len(resources):,}" for source, resources in person.items())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}; generated in {time.perf_counter() - started:.1f} s: the person "
          f"{sum(map(len, person.values())):,} resources ({sizes}; {len(facts):,} facts, "
          f"{sum(len(f.sources) > 1 for f in facts)} reported by several sources), {args.others:,} others "
          f"{sum(map(len, background)):,} resources")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fhirlead-aggregate-"))
    folder.mkdir(parents=True, exist_ok=True)
    db, marker = folder / "aggregate.db", folder / "aggregate.json"
    this = {"seed": args.seed, "others": args.others}
    reuse = db.exists() and marker.exists() and orjson.loads(marker.read_bytes()) == this
    if db.exists() and not reuse:
        print(f"{db} holds another data set: give an empty folder", file=sys.stderr)
        return 2
    store = f"sqlite:///{db}"
    problems: list[str] = []
    try:
        with serving(store, folder / "server.log") as live:
            if reuse:
                print(f"reusing {db} ({Queue(db).pending()} linking jobs pending)")
            else:
                load(live, Queue(db), bundles, args.others + len(SOURCES))
                marker.write_bytes(orjson.dumps(this))
            del person, background, bundles  # only the facts are needed from here on
            variants = [Variant("all", {}, expected(facts)),
                        Variant("`_type=Observation`", {"_type": "Observation"}, expected(facts, {"Observation"})),
                        Variant(f"`start={YEAR[0]}&end={YEAR[1]}`", {"start": YEAR[0], "end": YEAR[1]},
                                expected(facts, year=YEAR))]
            gc.collect()
            gc.freeze()  # what this process holds stays out of its collections (they would be timed too)
            with client(live) as http:
                base = live.rss.current()
                print(f"\n$aggregate-patient (Patient/{RECORDS['pcp']}), {WARM_UP} warm-up + {args.runs} runs each; "
                      f"server RSS {base[0]:.0f} MB, heap {base[1]:.0f} MB before")
                print("| request | entries | facts | merged | MB | median ms | p95 ms | min ms | peak RSS / heap MB "
                      "| heap after first → last run MB |")
                print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
                for variant in variants:
                    problems += run_variant(http, live, variant, args.runs)
                if args.profile:
                    profile(http, live, folder, args.runs)
        if args.in_process:
            in_process(store, args.runs)
        failures = [line for line in (folder / "server.log").read_text(errors="replace").splitlines()
                    if "failed" in line or "Traceback" in line or "ERROR" in line]
        for line in failures[:20]:
            print(f"server log: {line}")
        if args.keep:
            print(f"\nstore kept: {db}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    for problem in problems:
        print("MISMATCH " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
