"""A seeded population written by three source EHRs, with the perturbations real feeds have and the
look-alikes that must stay apart (the quality test of identity matching; docs/identity.md).

Each person is written by one to three sources:
- `pcp` (primary care): full demographics, the Medicare MBI for half of them, its own MRN;
- `hospital`: upper case, a nickname (30 %) or a typo in the surname (15 %), the birth date's day and month
  swapped or its last digit off (10 %), "St" for "Street", the phone written differently, its own MRN, the MBI
  for a third;
- `lab`: name, birth date and sex, an initial for the given name (20 %), a married surname for 15 % of
  women (with the address), its own MRN.
Look-alikes, each a different person: twins (same surname, birth date, address and phone, another
first name), a parent and child with the same name at the same address (born 25-35 years apart), and
the small name pools themselves (many people share a name, some a birth year).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from nicknames import NickNamer

GIVEN_F = ["Maria", "Jennifer", "Patricia", "Elizabeth", "Linda", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
           "Nancy", "Margaret", "Dorothy", "Rebecca", "Catherine", "Deborah", "Kimberly", "Ashley", "Emily", "Donna"]
GIVEN_M = ["James", "Robert", "John", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Charles",
           "Christopher", "Daniel", "Matthew", "Anthony", "Donald", "Steven", "Andrew", "Joshua", "Kenneth", "Edward"]
FAMILY = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
          "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
          "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson"]
STREETS = ["Oak", "Maple", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Church"]
MBI = "http://hl7.org/fhir/sid/us-mbi"
SOURCES = {"pcp": "https://pcp.example.org/fhir", "hospital": "https://hospital.example.org/fhir",
           "lab": "https://lab.example.org/fhir"}


@dataclass
class Population:
    records: list[dict[str, Any]] = field(default_factory=list)  # Patients to store
    truth: dict[str, int] = field(default_factory=dict)  # record id -> person number
    people: list[dict[str, Any]] = field(default_factory=list)  # each person's own demographics


def _typo(word: str, rng: random.Random) -> str:
    """Two neighbouring letters swapped (a name of four letters or more)."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _person(rng: random.Random, number: int, **fixed: Any) -> dict[str, Any]:
    sex = fixed.get("sex") or rng.choice(("male", "female"))
    birth = fixed.get("birth") or f"{rng.randrange(1935, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    return {"number": number, "sex": sex, "given": fixed.get("given") or rng.choice(GIVEN_F if sex == "female"
                                                                                   else GIVEN_M),
            "family": fixed.get("family") or rng.choice(FAMILY), "birth": birth,
            "street": fixed.get("street") or f"{rng.randrange(1, 999)} {rng.choice(STREETS)} Street",
            "zip": fixed.get("zip") or f"{rng.randrange(10000, 99999)}",
            "phone": fixed.get("phone") or f"{rng.randrange(200, 999)}{rng.randrange(200, 999)}"
                                           f"{rng.randrange(10000):04d}",
            "mbi": f"{number + 1}EG4TE5MK{number % 100:02d}"}


def _record(person: dict[str, Any], source: str, rng: random.Random, namer: NickNamer) -> dict[str, Any]:
    given, family, birth = person["given"], person["family"], person["birth"]
    street, phone = person["street"], person["phone"]
    mrn = {"system": f"{SOURCES[source]}/mrn", "value": f"{rng.randrange(10**7):07d}"}
    record: dict[str, Any] = {"resourceType": "Patient", "id": f"{source}-{person['number']}",
                              "meta": {"source": SOURCES[source]}, "gender": person["sex"], "identifier": [mrn]}
    telecom = [{"system": "phone", "value": f"({phone[:3]}) {phone[3:6]}-{phone[6:]}"}]
    if source == "pcp" and rng.random() < 0.5:
        record["identifier"].append({"system": MBI, "value": person["mbi"]})
    if source == "hospital":
        nicknames = sorted(namer.nicknames_of(given.lower()))
        if nicknames and rng.random() < 0.3:
            given = rng.choice(nicknames).title()
        if rng.random() < 0.15:
            family = _typo(family, rng)
        roll = rng.random()
        year, month, day = birth.split("-")
        if roll < 0.05 and int(day) <= 12 and day != month:
            birth = f"{year}-{day}-{month}"
        elif roll < 0.10:  # the day's last digit one off (1-28 stays a real day)
            birth = f"{year}-{month}-{day[0]}{int(day[1]) - 1 if day[1] not in '01' else int(day[1]) + 1}"
        given, family, street = given.upper(), family.upper(), street.replace("Street", "St")
        telecom = [{"system": "phone", "value": f"+1 {phone[:3]} {phone[3:6]} {phone[6:]}"}]
        if rng.random() < 0.33:
            record["identifier"].append({"system": MBI, "value": person["mbi"]})
    if source == "lab":
        if rng.random() < 0.2:
            given = given[0]
        if person["sex"] == "female" and rng.random() < 0.15:
            family = rng.choice([f for f in FAMILY if f != family])
        telecom = []
    record["name"] = [{"family": family, "given": [given]}]
    record["birthDate"] = birth
    if source != "lab" or rng.random() < 0.5:
        record["address"] = [{"line": [street], "postalCode": person["zip"]}]
    if telecom:
        record["telecom"] = telecom
    return record


def population(persons: int, seed: int) -> Population:
    rng = random.Random(seed)
    namer = NickNamer()
    out = Population()
    number = 0
    while number < persons:
        person = _person(rng, number)
        group = [person]
        roll = rng.random()
        if roll < 0.06:  # a twin: another first name of the same sex, everything else shared
            pool = [g for g in (GIVEN_F if person["sex"] == "female" else GIVEN_M) if g[0] != person["given"][0]]
            group.append(_person(rng, number + 1, sex=person["sex"], given=rng.choice(pool), family=person["family"],
                                 birth=person["birth"], street=person["street"], zip=person["zip"],
                                 phone=person["phone"]))
        elif roll < 0.12:  # a parent of the same name at the same address
            year = int(person["birth"][:4]) - rng.randrange(25, 36)
            group.append(_person(rng, number + 1, sex=person["sex"], given=person["given"], family=person["family"],
                                 birth=f"{year}{person['birth'][4:]}" if rng.random() < 0.5 else None,
                                 street=person["street"], zip=person["zip"], phone=person["phone"]))
        for member in group:
            out.people.append(member)
            sources = rng.sample(sorted(SOURCES), rng.choice((1, 2, 2, 3, 3)))
            for source in sources:
                record = _record(member, source, rng, namer)
                out.records.append(record)
                out.truth[record["id"]] = member["number"]
        number += len(group)
    return out


def new_sighting(person: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The person as a fourth EHR writes them (for `$match`): the hospital's perturbations, no id."""
    record = _record(person, "hospital", rng, NickNamer())
    record.pop("id")
    record.pop("meta")
    record["identifier"] = [i for i in record["identifier"] if i["system"] == MBI]
    if not record["identifier"]:
        del record["identifier"]
    return record
