"""Blocking: the few indexed Patient searches whose union holds every record worth comparing, so
matching one record costs a handful of index lookups, not a scan of the population.

A record is a candidate when it shares (any one is enough):
- an identifier (system and value);
- the birth date;
- one of the birth date's likely misspellings (day and month swapped, one digit different) with the
  first given name as written (together, so the search is driven by the name's index: some fifty dates
  alone, or with several names, would scan);
- the family name and the first given name (or one of its nicknames), as FHIR string search matches
  them (case- and accent-insensitive prefix): a changed birth date with the same name;
- the first given name and a postal code: a changed surname with a changed birth date;
- a phone number or an e-mail address as written.
Each search is capped (BLOCK_LIMIT): a block larger than that (a very common name) yields its first
records only, which is said in the docs.
"""

from __future__ import annotations

import datetime
from typing import Any

from nicknames import NickNamer

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


def searches(demographics: Demographics, patient: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Patient search parameters, one list per block."""
    blocks: list[list[tuple[str, str]]] = []
    for system, value in sorted(demographics.identifiers):
        blocks.append([("identifier", f"{_escape(system)}|{_escape(value)}")])
    birth = demographics.birth_date if demographics.birth_date and len(demographics.birth_date) == 10 else None
    if birth:
        blocks.append([("birthdate", birth)])
    for name in demographics.names:
        if not name.given:
            continue
        first = name.given[0]
        givens = ",".join(_escape(g) for g in sorted({first, *(_namer.nicknames_of(first) if len(first) > 1 else ()),
                                                      *(_namer.canonicals_of(first) if len(first) > 1 else ())}))
        if birth:
            blocks.append([("given", _escape(first)), ("birthdate", ",".join(birth_date_variants(birth)[1:]))])
        for postal in sorted(demographics.postal_codes):
            blocks.append([("given", _escape(first)), ("address-postalcode", postal)])
        if name.family:
            blocks.append([("family", _escape(" ".join(name.family))), ("given", givens)])
    for contact in patient.get("telecom") or ():
        if isinstance(contact, dict) and isinstance(contact.get("value"), str) and contact["value"].strip():
            kind = "email" if contact.get("system") == "email" else "phone"
            blocks.append([(kind, _escape(contact["value"].strip()))])
    return blocks


def _escape(value: str) -> str:
    """A search value with FHIR's special characters escaped (`,`, `|`, `$`, `\\`)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
