"""One person's records from many sources, merged: the rules of `$aggregate-patient` (docs/identity.md),
with no server in them.

Sources are ranked before anything is merged: a more trusted source first (`trust`: meta.source -> a
number, higher first; equal by default), then the most recently updated.
- **Demographics** (`merged_patient`): single-valued elements come from the first record that has
  them; list elements (identifier, name, telecom, address, contact, communication, generalPractitioner,
  extension) are the union of every record's, first record first, each distinct value once: every
  identifier is kept. `link` names every source record (`seealso`).
- **Clinical data** (`duplicate_groups`): the same fact reported by two sources is one group: same type
  and a shared coding (system and code) of its main code, on the same day (encounters: the same start to
  the minute) or both undated, and for observations the same value (components included); never two
  resources of one source. The group's first resource
  (best-ranked source) is kept; the others are named by its Provenance. Types without a rule
  (documents, care plans, ...) are never merged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

Resource = dict[str, Any]
LIST_ELEMENTS = ("identifier", "name", "telecom", "address", "contact", "communication", "generalPractitioner",
                 "extension", "photo")
SKIPPED = ("id", "meta", "text", "link", "contained", "resourceType")
# type -> (elements holding its main code, elements holding its clinical date)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Observation": (("code",), ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")),
    "Condition": (("code",), ("onsetDateTime", "onsetPeriod", "recordedDate")),
    "AllergyIntolerance": (("code",), ()),
    "Immunization": (("vaccineCode",), ("occurrenceDateTime",)),
    "MedicationRequest": (("medicationCodeableConcept",), ("authoredOn",)),
    "MedicationStatement": (("medicationCodeableConcept",), ("effectiveDateTime", "effectivePeriod")),
    "MedicationAdministration": (("medicationCodeableConcept",), ("effectiveDateTime", "effectivePeriod")),
    "Procedure": (("code",), ("performedDateTime", "performedPeriod")),
    "Encounter": (("type", "class", "serviceType"), ("period",)),
    "DiagnosticReport": (("code",), ("effectiveDateTime", "effectivePeriod", "issued")),
}
# the date elements any resource may be placed in time by (start/end filters)
DATE_ELEMENTS = ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "onsetDateTime", "onsetPeriod",
                 "occurrenceDateTime", "occurrencePeriod", "authoredOn", "performedDateTime", "performedPeriod",
                 "period", "recordedDate", "issued", "date", "created", "recorded")


def ranked(records: Iterable[Resource], trust: Callable[[str | None], float] | None = None) -> list[Resource]:
    """Most trusted source first, then the most recently updated."""
    def key(record: Resource) -> tuple[float, str]:
        meta = record.get("meta") or {}
        return (-(trust(meta.get("source")) if trust else 0.0), _inverted(str(meta.get("lastUpdated") or "")))
    return sorted(records, key=key)


def _inverted(text: str) -> str:
    """A string that sorts in the opposite order (so the newest timestamp comes first)."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def _canonical(value: Any) -> Any:
    """A value compared without its ids and case (two EHRs' copies of one address are one)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items() if k not in ("id", "period")))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, str):
        return " ".join(value.casefold().split())
    return value


def merged_patient(records: list[Resource], merged_id: str) -> Resource:
    """The one Patient of `records` (already ranked: best first)."""
    out: Resource = {"resourceType": "Patient", "id": merged_id}
    for record in records:
        for name, value in record.items():
            if name in SKIPPED:
                continue
            if name in LIST_ELEMENTS and isinstance(value, list):
                seen = {_canonical(v) for v in out.get(name, [])}
                for item in value:
                    if _canonical(item) not in seen:
                        out.setdefault(name, []).append(item)
                        seen.add(_canonical(item))
            elif name not in out:
                out[name] = value
    out["link"] = [{"other": {"reference": f"Patient/{r['id']}"}, "type": "seealso"} for r in records]
    return out


def _codings(resource: Resource, elements: tuple[str, ...]) -> set[str]:
    found = set()
    for element in elements:
        value = resource.get(element)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict):
                codings = concept.get("coding") if "coding" in concept else [concept]
                for coding in codings or ():
                    if isinstance(coding, dict) and coding.get("code"):
                        found.add(f"{coding.get('system') or ''}|{coding['code']}")
    return found


def clinical_date(resource: Resource, elements: Iterable[str] = DATE_ELEMENTS) -> str | None:
    """The resource's first clinical date (a Period's start), as written."""
    for element in elements:
        value = resource.get(element)
        if isinstance(value, dict):
            value = value.get("start") or value.get("end")
        if isinstance(value, str) and value:
            return value
    return None


def in_care_range(resource: Resource, start: str | None, end: str | None) -> bool:
    """Whether the resource's clinical date falls within `start`..`end` (dates compared at the precision
    given: `end=2026` keeps all of 2026); one without a clinical date is kept (it may be current)."""
    when = clinical_date(resource)
    if when is None:
        return True
    return not ((start and when[:len(start)] < start) or (end and when[:len(end)] > end))


def _value(resource: Resource) -> Any:
    """An observation's result: its value[x] and each component's code and value (a blood pressure's
    two readings), compared without case or ids."""
    found: list[Any] = []
    for name, value in resource.items():
        if name.startswith("value"):
            if name == "valueQuantity" and isinstance(value, dict):
                found.append(("quantity", str(value.get("value")), value.get("code") or value.get("unit")))
            else:
                found.append((name, _canonical(value)))
    for component in resource.get("component") or ():
        if isinstance(component, dict):
            found.append((_canonical(component.get("code")), _value(component)))
    return tuple(found) or None


def _keys(resource: Resource) -> set[tuple[Any, ...]]:
    """The facts `resource` states, each a key another source's copy of it shares."""
    rule = RULES.get(str(resource.get("resourceType")))
    if rule is None:
        return set()
    codes, dates = rule
    # an encounter is placed to the minute (two visits of one day are two), other facts to the day
    day = (clinical_date(resource, dates) or "")[:16 if resource["resourceType"] == "Encounter" else 10]
    value = _value(resource) if resource["resourceType"] == "Observation" else None
    return {(resource["resourceType"], coding, day, value) for coding in _codings(resource, codes)}


def duplicate_groups(resources: list[Resource]) -> list[list[Resource]]:
    """`resources` (best-ranked source first) in groups of the same fact, each group in that order,
    groups in the order of their first resource. A group holds at most one resource of each source
    (`meta.source`): two resources one source wrote are two facts (two readings on one day), however
    alike; a resource joins the first group it shares a key with that has none of its source yet."""
    groups: list[list[Resource]] = []
    sources: list[set[Any]] = []
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for resource in resources:
        source = (resource.get("meta") or {}).get("source")
        keys = _keys(resource)
        shared = sorted({number for key in keys for number in by_key.get(key, ())})
        joined = next((number for number in shared if source not in sources[number]), None)
        if joined is None:
            joined = len(groups)
            groups.append([])
            sources.append(set())
        groups[joined].append(resource)
        sources[joined].add(source)
        for key in keys:
            numbers = by_key.setdefault(key, [])
            if joined not in numbers:
                numbers.append(joined)
    return groups


_REFERENCE = re.compile(r"^(?:.*/)?([A-Za-z]+/[A-Za-z0-9\-.]{1,64})$")


def rewrite_references(value: Any, mapping: dict[str, str]) -> Any:
    """`value`, changed in place, with every reference that `mapping` names ("Type/id" -> the new
    reference) replaced: resources parsed for one answer are not copied again (thousands per person)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            reference = item.get("reference")
            if isinstance(reference, str) and (match := _REFERENCE.match(reference)) and match.group(1) in mapping:
                item["reference"] = mapping[match.group(1)]
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return value
