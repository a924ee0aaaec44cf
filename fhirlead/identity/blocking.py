"""Blocking: the few indexed Patient searches whose union holds every record worth comparing, so
matching one record costs a handful of index lookups, not a scan of the population.

A record is a candidate when it shares (any one is enough):
- an identifier (system and value);
- the birth date;
- one of the birth date's likely misspellings (day and month swapped, one digit different) with the
  first given name;
- a word of the family name and the first given name (or one of its nicknames): a changed birth date
  with the same name;
- the first given name and a postal code: a changed surname with a changed birth date;
- a phone number or an e-mail address as written.
Names are compared normalised (`demographics.normalise`). The name blocks are exact lookups of keys
computed when the Patient is written (`match_keys`, indexed as the `match-key` search parameter:
profiles/identity): combining a name search with dates or a postal code drove SQLite from the name's
index, thousands of rows for a common name at 1,000,000 Patients (20-35 ms a block).
Each search is capped (BLOCK_LIMIT): a block larger than that (a very common name) yields its first
records only, which is said in the docs.
"""

from __future__ import annotations

import datetime
from typing import Any

from nicknames import NickNamer

from fhirlead.identity import demographics as read_demographics
from fhirlead.identity.demographics import Demographics

BLOCK_LIMIT = 200
_namer = NickNamer()


def birth_date_variants(birth: str) -> list[str]:
    """The date, day and month swapped, and every real date one digit away, in that order."""
    out = [birth]
    year, month, day = birth[:4], birth[5:7], birth[8:10]
    candidates = [f"{year}-{day}-{month}"]
    digits = birth.replace("-", "")
    for i in range(8):
        for d in "0123456789":
            if d != digits[i]:
                changed = digits[:i] + d + digits[i + 1:]
                candidates.append(f"{changed[:4]}-{changed[4:6]}-{changed[6:]}")
    this_year = datetime.date.today().year
    for candidate in candidates:
        try:
            year_of = datetime.date.fromisoformat(candidate).year
        except ValueError:
            continue
        if 1850 <= year_of <= this_year and candidate not in out:
            out.append(candidate)
    return out


def match_keys(patient: dict[str, Any]) -> list[str]:
    """The blocking keys a stored Patient is found by (`match-key`): per name with a given name, its
    first given name with the birth date, with each postal code, and with each word of the family."""
    found = read_demographics.of(patient)
    birth = _full_date(found)
    keys: set[str] = set()
    for name in found.names:
        if not name.given:
            continue
        first = name.given[0]
        if birth:
            keys.add(f"gb:{first}:{birth}")
        keys.update(f"gz:{first}:{postal}" for postal in found.postal_codes)
        keys.update(f"fg:{family}:{first}" for family in name.family)
    return sorted(keys)


def searches(demographics: Demographics, patient: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Patient search parameters, one list per block."""
    blocks: list[list[tuple[str, str]]] = []
    for system, value in sorted(demographics.identifiers):
        blocks.append([("identifier", f"{_escape(system)}|{_escape(value)}")])
    birth = _full_date(demographics)
    if birth:
        blocks.append([("birthdate", birth)])
    misspelt, postal, named = set(), set(), set()
    for name in demographics.names:
        if not name.given:
            continue
        first = name.given[0]
        if birth:
            misspelt.update(f"gb:{first}:{date}" for date in birth_date_variants(birth)[1:])
        postal.update(f"gz:{first}:{code}" for code in demographics.postal_codes)
        givens = {first, *(_namer.nicknames_of(first) if len(first) > 1 else ()),
                  *(_namer.canonicals_of(first) if len(first) > 1 else ())}
        named.update(f"fg:{family}:{given}" for family in name.family for given in givens)
    blocks += [[("match-key", ",".join(sorted(keys)))] for keys in (misspelt, named, postal) if keys]
    for contact in patient.get("telecom") or ():
        if isinstance(contact, dict) and isinstance(contact.get("value"), str) and contact["value"].strip():
            kind = "email" if contact.get("system") == "email" else "phone"
            blocks.append([(kind, _escape(contact["value"].strip()))])
    return blocks


def _full_date(demographics: Demographics) -> str | None:
    birth = demographics.birth_date
    return birth if birth and len(birth) == 10 else None


def _escape(value: str) -> str:
    """A search value with FHIR's special characters escaped (`,`, `|`, `$`, `\\`)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
