"""Subjects of a measure evaluation: each patient with the data that belongs to them.

Input is any number of FHIR Bundles (or bare resources). A bundle with one Patient is that patient's
record. When a bundle holds several patients, resources are assigned by their patient reference
(`subject`, `patient` or `beneficiary`); resources that reference no patient (Medication, Practitioner,
Organization...) are shared by every patient of that bundle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhirlead.cql.retrieve import InMemoryDataSource

_PATIENT_FIELDS = ("subject", "patient", "beneficiary")


@dataclass
class Subject:
    """One patient and their data source."""

    id: str
    patient: dict[str, Any]
    data: InMemoryDataSource

    @property
    def reference(self) -> str:
        return f"Patient/{self.id}"


def _resources(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("resourceType") == "Bundle":
        out = []
        for entry in doc.get("entry") or ():
            r = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(r, dict):
                out.append(r)
        return out
    return [doc] if doc.get("resourceType") else []


def _patient_ref(resource: dict[str, Any], full_urls: dict[str, str]) -> str | None:
    for name in _PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            text = ref["reference"]
            if text in full_urls:
                return full_urls[text]
            if "Patient/" in text:
                return text.rsplit("Patient/", 1)[1].split("/")[0]
    return None


def subjects_from_documents(
    documents: Iterable[dict[str, Any]], require_profile: bool = True, tz: int = 0
) -> list[Subject]:
    """Split bundles/resources into patients with their own in-memory data sources."""
    subjects: list[Subject] = []
    for doc in documents:
        resources = _resources(doc)
        patients = [r for r in resources if r.get("resourceType") == "Patient"]
        if not patients:
            continue
        if len(patients) == 1:
            p = patients[0]
            subjects.append(Subject(str(p.get("id")), p, InMemoryDataSource(resources, require_profile, tz)))
            continue
        full_urls = {}
        for entry in doc.get("entry") or ():
            r = entry.get("resource") or {}
            if entry.get("fullUrl") and r.get("resourceType") == "Patient":
                full_urls[entry["fullUrl"]] = str(r.get("id"))
        owned: dict[str, list[dict[str, Any]]] = {str(p.get("id")): [p] for p in patients}
        shared: list[dict[str, Any]] = []
        for r in resources:
            if r.get("resourceType") == "Patient":
                continue
            owner = _patient_ref(r, full_urls)
            if owner in owned:
                owned[owner].append(r)
            elif owner is None:
                shared.append(r)
        for p in patients:
            pid = str(p.get("id"))
            subjects.append(Subject(pid, p, InMemoryDataSource(owned[pid] + shared, require_profile, tz)))
    return subjects
