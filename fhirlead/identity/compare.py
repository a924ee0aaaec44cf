"""How two records agree, field by field: each comparison names an agreement level (None: one side says
nothing, so the field neither supports nor weakens the match). String similarity and phonetic codes come
from rapidfuzz and jellyfish; nicknames from the `nicknames` dataset (Carlton Northern, Apache-2.0)."""

from __future__ import annotations

from functools import lru_cache

import jellyfish
from nicknames import NickNamer
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from fhirlead.identity.demographics import Demographics

# Identifiers that name one person wherever they are seen (deterministic matching)
STRONG_SYSTEMS = frozenset({
    "http://hl7.org/fhir/sid/us-mbi",  # Medicare Beneficiary Identifier
    "http://hl7.org/fhir/sid/us-ssn",  # US Social Security Number
    "urn:oid:2.16.840.1.113883.4.1",  # SSN by its OID
    "urn:oid:2.16.840.1.113883.4.927",  # MBI by its OID
})
TYPO_SIMILARITY = 0.92  # Jaro-Winkler at or above this, or one edit (transposition included) apart: a typo

_namer = NickNamer()


@lru_cache(maxsize=65536)
def _related_by_nickname(a: str, b: str) -> bool:
    if b in _namer.nicknames_of(a) or a in _namer.nicknames_of(b):
        return True
    return bool(_namer.canonicals_of(a) & (_namer.canonicals_of(b) | {b})) or a in _namer.canonicals_of(b)


@lru_cache(maxsize=65536)
def _phonetic(word: str) -> tuple[str, str]:
    return jellyfish.nysiis(word), jellyfish.metaphone(word)


def _typo(a: str, b: str) -> bool:
    if min(len(a), len(b)) < 4:
        return False
    return DamerauLevenshtein.distance(a, b) <= 1 or JaroWinkler.similarity(a, b) >= TYPO_SIMILARITY


def _sounds_alike(a: str, b: str) -> bool:
    pa, pb = _phonetic(a), _phonetic(b)
    return pa[0] == pb[0] or (bool(pa[1]) and pa[1] == pb[1])


def word(a: str, b: str, nicknames: bool = False) -> str:
    """exact, nickname (given names only), typo, phonetic, initial or disagree."""
    if a == b:
        return "exact"
    if len(a) == 1 or len(b) == 1:
        return "initial" if a[0] == b[0] else "disagree"
    if nicknames and _related_by_nickname(a, b):
        return "nickname"
    if _typo(a, b):
        return "typo"
    if _sounds_alike(a, b):
        return "phonetic"
    return "disagree"


LEVEL_ORDER = ("exact", "partial", "nickname", "typo", "phonetic", "initial", "disagree")


def _best(levels: list[str]) -> str:
    return min(levels, key=LEVEL_ORDER.index)


def given(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """The first given names; a first name that is the other's middle name counts as partial."""
    if not a or not b:
        return None
    first = word(a[0], b[0], nicknames=True)
    if first in ("exact", "nickname", "typo"):
        return first
    crossed = [word(x, y, nicknames=True) for x in a for y in b if (x, y) != (a[0], b[0])]
    if any(level in ("exact", "nickname") for level in crossed):
        return "partial"
    return first


def family(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """Family names: exact, partial (one of a double name: "garcia lopez" and "garcia"), typo, phonetic
    (also the two tokens run together: "mc donald" and "mcdonald"), disagree."""
    if not a or not b:
        return None
    if a == b or "".join(a) == "".join(b):
        return "exact"
    if set(a) & set(b):
        return "partial"
    return _best([word("".join(a), "".join(b)), *(word(x, y) for x in a for y in b)]).replace("initial", "disagree")


def birth_date(a: str | None, b: str | None) -> str | None:
    """exact, transposed (day and month swapped), digit (one digit of the day, the month or the year's
    last digit differs), partial (equal as far as the less precise one goes) or disagree."""
    if not a or not b:
        return None
    if a == b:
        return "exact"
    if len(a) != 10 or len(b) != 10:
        return "partial" if a[:min(len(a), len(b))] == b[:min(len(a), len(b))] else "disagree"
    if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
        return "transposed"
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    # one digit off, but not in the year's century or decade: a parent and child of the same name are
    # often born 20 or 30 years apart, which is one digit too
    if len(differing) == 1 and differing[0] not in (0, 1, 2):
        return "digit"
    return "disagree"


def sex(a: str | None, b: str | None) -> str | None:
    if not a or not b:
        return None
    return "agree" if a == b else "disagree"


def address(a: Demographics, b: Demographics) -> str | None:
    """exact (same first line and postal code), typo (first lines a typo apart, same postal code), postal
    (same postal code only), disagree."""
    if not a.addresses or not b.addresses:
        return None
    found = []
    for line_a, postal_a in a.addresses:
        for line_b, postal_b in b.addresses:
            same_postal = postal_a is not None and postal_a == postal_b
            if line_a and line_a == line_b and (same_postal or postal_a is None or postal_b is None):
                found.append("exact")
            elif same_postal and line_a and line_b and JaroWinkler.similarity(line_a, line_b) >= TYPO_SIMILARITY:
                found.append("typo")
            elif same_postal:
                found.append("postal")
    return _best_of(found, ("exact", "typo", "postal")) or "disagree"


def _best_of(found: list[str], order: tuple[str, ...]) -> str | None:
    return min(found, key=order.index) if found else None


def telecom(a: frozenset[str], b: frozenset[str]) -> str | None:
    if not a or not b:
        return None
    return "agree" if a & b else "disagree"


def identifiers(a: Demographics, b: Demographics) -> str | None:
    """agree (a strong identifier in common), conflict (both hold one of the same strong system, with
    different values), shared (another identifier in common: the same record number in one system),
    separate (both hold a record number of one other system, with different values: one source keeps
    them as two patients) or None."""
    common = a.identifiers & b.identifiers
    if any(system in STRONG_SYSTEMS for system, _value in common):
        return "agree"
    systems_a = {system for system, _v in a.identifiers}
    systems_b = {system for system, _v in b.identifiers}
    if systems_a & systems_b & STRONG_SYSTEMS:
        return "conflict"
    if common:
        return "shared"
    return "separate" if systems_a & systems_b else None
