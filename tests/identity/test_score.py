"""The matching rules as a data steward would check them: the same person written differently by two
EHRs is found (nickname, typo, accents, transposed birth date, married name with the same address,
names swapped, a shared MBI), and different people stay apart (twins, namesakes, someone else's SSN)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirlead.identity import blocking, demographics
from fhirlead.identity.score import match

MARIA: dict[str, Any] = {
    "resourceType": "Patient", "id": "pc-8812", "name": [{"family": "García", "given": ["María", "Elena"]}],
    "birthDate": "1958-03-14", "gender": "female",
    "address": [{"line": ["12 Oak Street"], "city": "Springfield", "postalCode": "02139"}],
    "telecom": [{"system": "phone", "value": "(617) 555-0142"}],
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4-TE5-MK73"}],
}


def variant(**changes: Any) -> dict[str, Any]:
    out = {key: value for key, value in MARIA.items() if key not in ("identifier", "id")}
    out.update(changes)
    return {key: value for key, value in out.items() if value is not None}


def grade(other: dict[str, Any], base: dict[str, Any] = MARIA) -> str:
    return match(demographics.of(base), demographics.of(other)).grade


@pytest.mark.parametrize(("label", "other", "expected"), [
    ("the same record without its MBI", variant(), "certain"),
    ("no accents, upper case, abbreviated address",
     variant(name=[{"family": "GARCIA", "given": ["MARIA"]}],
             address=[{"line": ["12 Oak St."], "postalCode": "02139-4301"}]), "certain"),
    ("a typo in the family name", variant(name=[{"family": "Garica", "given": ["Maria"]}]), "certain"),
    ("a married name at the same address", variant(name=[{"family": "Lopez", "given": ["Maria"]}]), "certain"),
    ("a married name and nothing else in common", variant(name=[{"family": "Lopez", "given": ["Maria"]}],
                                                          address=None, telecom=None), "probable"),
    ("a twin sister at the same address", variant(name=[{"family": "Garcia", "given": ["Lucia"]}]), "probable"),
    ("the same name only", {"resourceType": "Patient", "name": [{"family": "Garcia", "given": ["Maria"]}]},
     "possible"),
    ("someone else", {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["John"]}],
                      "birthDate": "1970-01-01", "gender": "male"}, "certainly-not"),
    ("the same MBI, written by another EHR", {"resourceType": "Patient", "name": [{"family": "Garcia-Lopez"}],
                                              "identifier": MARIA["identifier"]}, "certain"),
    ("the same name and birth date, another MBI", variant(identifier=[
        {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "9ZZ9-ZZ9-ZZ99"}], address=None, telecom=None),
     "possible"),
])
def test_grades(label: str, other: dict[str, Any], expected: str) -> None:
    assert grade(other) == expected, label


def test_nicknames_and_transposed_birth_dates() -> None:
    william = {"resourceType": "Patient", "name": [{"family": "O'Brien", "given": ["William"]}],
               "birthDate": "1947-11-05", "gender": "male"}
    bill = {"resourceType": "Patient", "name": [{"family": "OBrien", "given": ["Bill"]}],
            "birthDate": "1947-05-11", "gender": "male", "telecom": [{"system": "phone", "value": "+1 312 555 0199"}]}
    found = match(demographics.of(william), demographics.of(bill))
    assert found.grade == "certain"  # nickname, same surname, birth date transposed, same sex: 20.0
    assert "given nickname" in found.explain() and "birth_date transposed" in found.explain()
    # one perturbation more (a typo in the surname) and only the phone can make it certain
    typo = {**bill, "name": [{"family": "OBiren", "given": ["Bill"]}], "telecom": []}
    typo.pop("telecom")
    assert match(demographics.of(william), demographics.of(typo)).grade == "probable"
    william_with_phone = {**william, "telecom": bill["telecom"]}
    assert match(demographics.of(william_with_phone), demographics.of({**typo, "telecom": bill["telecom"]})).grade \
        == "certain"


def test_names_written_the_other_way_round() -> None:
    swapped = variant(name=[{"family": "Maria", "given": ["Garcia"]}], address=None, telecom=None)
    assert grade(swapped) == "certain"


def test_the_score_orders_the_grades() -> None:
    scores = [match(demographics.of(MARIA), demographics.of(other)).score
              for other in (variant(), variant(name=[{"family": "Lopez", "given": ["Maria"]}], address=None,
                                               telecom=None), {"resourceType": "Patient", "name": MARIA["name"]})]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_blocks_catch_a_mistyped_birth_date() -> None:
    variants = blocking.birth_date_variants("1958-03-14")
    assert variants[0] == "1958-03-14" and "1958-03-25" not in variants  # two digits away
    assert {"1958-03-16", "1958-08-14", "1968-03-14", "1958-03-04"} <= set(variants)
    assert blocking.birth_date_variants("1958-04-03")[1] == "1958-03-04"  # the swap first
    params = blocking.searches(demographics.of(MARIA), MARIA)
    names = {name for block in params for name, _ in block}
    assert {"identifier", "birthdate", "match-key", "phone"} <= names
    keys = {key for block in params for name, value in block if name == "match-key" for key in value.split(",")}
    stored = set(blocking.match_keys({**MARIA, "birthDate": "1958-03-16"}))  # one digit off, same name
    assert keys & stored
    elsewhere = {**MARIA, "name": [{"family": "Smith", "given": ["Maria"]}], "birthDate": "1958-03-27", "address": []}
    assert not keys & set(blocking.match_keys(elsewhere))  # two digits off, another surname and no address
