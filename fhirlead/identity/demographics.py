"""What a Patient resource says about who the person is, normalised for comparison.

Names lose case, accents and punctuation ("O'Brien-Smith" -> "obrien smith" family tokens); a birth
date keeps its digits; phone numbers keep their last ten digits (US numbers with or without +1) and
e-mail addresses are lower-cased; an address is its first line (abbreviations such as "Street"/"St"
folded) and its 5-digit postal code. Identifiers keep their system and value as given.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# USPS street suffixes and unit words an EHR may write either way (Publication 28, appendix C)
_ABBREVIATIONS = {
    "street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln", "court": "ct", "boulevard": "blvd",
    "place": "pl", "terrace": "ter", "circle": "cir", "parkway": "pkwy", "highway": "hwy", "square": "sq",
    "apartment": "apt", "suite": "ste", "north": "n", "south": "s", "east": "e", "west": "w", "unit": "unit",
}


@dataclass(frozen=True)
class Name:
    given: tuple[str, ...]  # normalised given names, first first
    family: tuple[str, ...]  # normalised family-name tokens ("garcia lopez" -> ("garcia", "lopez"))
    old: bool = False  # a name the person used to have (use old or maiden)


@dataclass(frozen=True)
class Demographics:
    reference: str | None
    names: tuple[Name, ...]
    birth_date: str | None  # YYYY-MM-DD, or shorter when the record holds less
    sex: str | None  # administrative gender, "unknown" dropped
    identifiers: frozenset[tuple[str, str]]  # (system, value)
    phones: frozenset[str]
    emails: frozenset[str]
    addresses: tuple[tuple[str, str | None], ...]  # (first line, 5-digit postal code)
    postal_codes: frozenset[str]


def normalise(text: str) -> str:
    """Lower case, accents stripped, punctuation dropped (hyphens and spaces split words)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^a-z0-9 ]", "", re.sub(r"[-_/,.]", " ", plain)).split())


def _words(values: Any) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return ()
    return tuple(w for v in values if isinstance(v, str) for w in normalise(v).split())


def _names(patient: dict[str, Any]) -> tuple[Name, ...]:
    out = []
    for name in patient.get("name") or ():
        if not isinstance(name, dict):
            continue
        given, family = _words(name.get("given")), _words(name.get("family"))
        if not given and not family and isinstance(name.get("text"), str):
            words = normalise(name["text"]).split()  # "Maria Garcia": given first, family last
            given, family = tuple(words[:-1]), tuple(words[-1:])
        if given or family:
            out.append(Name(given, family, name.get("use") in ("old", "maiden")))
    return tuple(out)


def _phone(value: str) -> str | None:
    digits = re.sub(r"\D", "", value)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits[-10:] if len(digits) >= 7 else None


def _address_line(address: dict[str, Any]) -> str:
    words = _words(address.get("line"))
    return " ".join(_ABBREVIATIONS.get(w, w) for w in words)


def of(patient: dict[str, Any]) -> Demographics:
    """The demographics of a Patient resource (FHIR R4 JSON)."""
    identifiers = frozenset(
        (i["system"], i["value"].strip()) for i in patient.get("identifier") or ()
        if isinstance(i, dict) and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)
        and i["value"].strip())
    phones, emails = set(), set()
    for contact in patient.get("telecom") or ():
        if not isinstance(contact, dict) or not isinstance(contact.get("value"), str):
            continue
        if contact.get("system") == "email":
            emails.add(contact["value"].strip().casefold())
        elif contact.get("system") in ("phone", "sms", None) and (phone := _phone(contact["value"])):
            phones.add(phone)
    addresses = []
    for address in patient.get("address") or ():
        if isinstance(address, dict):
            postal = address.get("postalCode")
            digits = re.sub(r"\D", "", postal)[:5] if isinstance(postal, str) else ""
            addresses.append((_address_line(address), digits or None))
    birth = patient.get("birthDate")
    sex = patient.get("gender")
    resource_id = patient.get("id")
    return Demographics(
        reference=f"Patient/{resource_id}" if isinstance(resource_id, str) else None,
        names=_names(patient),
        birth_date=birth if isinstance(birth, str) and re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", birth) else None,
        sex=sex if sex in ("male", "female", "other") else None,
        identifiers=identifiers,
        phones=frozenset(phones),
        emails=frozenset(emails),
        addresses=tuple(addresses),
        postal_codes=frozenset(p for _line, p in addresses if p),
    )
