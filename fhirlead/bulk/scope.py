"""What an export may contain: the types of its level, narrowed by the caller's SMART grant
(Bulk Data 2.0.0 §"Bulk Data Kick-off Request": the server limits the export to what the client may read)."""

from __future__ import annotations

from typing import Any

from fhirlead.auth.enforce import forbidden
from fhirlead.definitions import patient_compartment, resource_types
from fhirlead.errors import bad_request
from fhirlead.interaction.history import SERVER_RECORDED

PATIENT = "Patient"
# what Da Vinci ATR 2.1.0 `$davinci-data-export` with exportType hl7.fhir.us.davinci-atr returns: the list
# and the resources its members and their attributions reference
ATR_TYPES = ("Group", "Patient", "Coverage", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
             "Location")


def level_types(level: str) -> list[str]:
    """System level: every type but the server's own trail; Patient and Group level: the Patient
    compartment's types and Patient; `atr` (`$davinci-data-export`): the attribution list's types."""
    if level == "atr":
        return list(ATR_TYPES)
    if level == "system":
        return sorted(set(resource_types()) - set(SERVER_RECORDED))
    return sorted({*patient_compartment(), PATIENT} - set(SERVER_RECORDED))


def unrestricted(access: Any, type_: str) -> bool:
    """The token reads and searches every resource of the type (a system/ or user/ scope without a patient,
    care relationships or search parameters): an export cannot apply narrower grants yet."""
    if access is None:
        return True
    return all(any(f.unrestricted for f in access.filters(type_, p)) for p in ("r", "s"))


def export_types(access: Any, level: str, named: list[str] | None) -> list[str]:
    """The types to export: those named by `_type` (all must be allowed, else 403), else every type of
    the level the token may read (none: 403)."""
    candidates = level_types(level)
    if named is not None:
        outside = [t for t in named if t not in candidates]
        if outside:
            raise bad_request(f"'_type': {outside[0]} is not exported at the {level} level", "_type")
        refused = [t for t in named if not unrestricted(access, t)]
        if refused:
            raise forbidden(f"The access token does not allow exporting {', '.join(refused)} resources")
        return named
    allowed = [t for t in candidates if unrestricted(access, t)]
    if not allowed:
        raise forbidden("The access token allows exporting no resource type (it needs system/ or user/ read "
                        "and search scopes without a patient context or search parameters)")
    return allowed
