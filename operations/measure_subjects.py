"""Who a measure is evaluated for: the patients named by `subject`, `practitioner` or `organization`
(R4 `$evaluate-measure`, DEQM 5.0.0 `$care-gaps`), shared by both operations.

- `Patient/x`: that patient.
- `Group/y`: its members that are Patients, not inactive, and members during the measurement period
  (`member.period` overlaps it); for a Da Vinci ATR attribution list that is "the members attributed
  within the period".
- `Practitioner/z`, `PractitionerRole/r`, `Organization/o`: the patients attributed to that provider (a
  Practitioner's PractitionerRoles count as the practitioner; an Organization's roles as the
  organization) on a **final** ATR attribution list, within the list's contract period and the
  membership's period; a provider no final list names gets the patients whose `generalPractitioner`
  it is (or one of those roles is) instead.
- nothing: every patient on the server.
Patients the caller's token may not read are left out later, when their data is read (`fhirlead.measure.live`).
"""

from __future__ import annotations

from typing import Any

from fhirlead import fhirjson
from fhirlead.errors import FhirError, Issue
from fhirlead.search.collect import all_ids, all_matches
from fhirlead.server import Server
from fhirlead.storage.port import ResourceVersion

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")


async def patients_of(server: Server, base_url: str, named: str | None, parameter: str,
                      period: tuple[str, str]) -> list[str]:
    """The ids of the patients `named` (a reference, relative or absolute on this server) stands for."""
    if named is None:
        return await all_ids(server.store, server.search, "Patient", [])
    reference = named.removeprefix(base_url.rstrip("/") + "/") if base_url else named
    type_, _, id_ = reference.partition("/")
    if not id_ or "/" in id_ or type_ not in ("Patient", "Group", *PROVIDER_TYPES):
        raise FhirError(400, [Issue("invalid", f"'{parameter}' must reference a Patient, Group, Practitioner, "
                                               f"PractitionerRole or Organization, not {named!r}",
                                    expression=(parameter,))])
    version = await server.store.read(type_, id_) if type_ != "Group" else await server.store.read_group_head(id_)
    if version is None or version.body is None:
        raise FhirError(404, [Issue("not-found", f"'{parameter}' names {reference}, which is not known",
                                    expression=(parameter,))])
    if type_ == "Patient":
        return [id_]
    if type_ == "Group":
        return _patients(await _members(server, version), period)
    return await _attributed(server, reference, period)


async def _members(server: Server, head_version: ResourceVersion) -> list[Any]:
    head = fhirjson.loads(head_version.body or b"{}")
    if "member" in head:
        return head.get("member") or []
    return [fhirjson.loads(body) for _, body in await server.store.find_group_members(head_version.id, None)]


def _patients(members: list[Any], period: tuple[str, str]) -> list[str]:
    found: dict[str, None] = {}
    for member in members:
        if not isinstance(member, dict) or member.get("inactive") or not overlaps(member.get("period"), period):
            continue
        kind, _, id_ = _reference(member.get("entity")).rpartition("/")
        if kind.rpartition("/")[2] == "Patient" and id_:
            found[id_] = None
    return list(found)


async def _attributed(server: Server, provider: str, period: tuple[str, str]) -> list[str]:
    providers = {provider}
    if provider.startswith(("Practitioner/", "Organization/")):
        key = "practitioner" if provider.startswith("Practitioner/") else "organization"
        providers |= {v.reference for v in await _all(server, "PractitionerRole", [(key, provider)])}
    found: dict[str, None] = {}
    named = False
    for one in sorted(providers):
        lists = await _all(server, "Group", [("attributed-provider", one), ("attribution-list-status", "final")],
                           members=False)
        for group in lists:
            named = True
            head = fhirjson.loads(group.body or b"{}")
            contract = next((e.get("valuePeriod") for e in head.get("extension") or ()
                             if isinstance(e, dict) and e.get("url") == ATR + "ext-contractValidityPeriod"), None)
            if not overlaps(contract, period):
                continue
            if "member" in head:  # a list stored whole
                members = [m for m in head.get("member") or () if isinstance(m, dict) and _provider(m) == one]
            else:
                type_, _, id_ = one.partition("/")
                members = [fhirjson.loads(body) for _, body in await server.store.find_group_members_referring(
                    group.id, "attributed-provider", type_, id_)]
            found.update(dict.fromkeys(_patients(members, period)))
    if named:
        return list(found)
    for one in sorted(providers):
        found.update(dict.fromkeys(await all_ids(server.store, server.search, "Patient",
                                                 [("general-practitioner", one)])))
    return list(found)


def overlaps(period: Any, window: tuple[str, str]) -> bool:
    """A FHIR Period (None: always) overlaps the [start, end] dates of `window` (compared by day)."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    if isinstance(start, str) and start[:10] > window[1][:10]:
        return False
    return not (isinstance(end, str) and end[:10] < window[0][:10])


def _reference(value: Any) -> str:
    text = value.get("reference") if isinstance(value, dict) else None
    return text if isinstance(text, str) else ""


def _provider(member: dict[str, Any]) -> str:
    return next((_reference(e.get("valueReference")) for e in member.get("extension") or ()
                 if isinstance(e, dict) and e.get("url") == ATR + "ext-attributedProvider"), "")



async def _all(server: Server, type_: str, params: list[tuple[str, str]], members: bool = True
               ) -> list[ResourceVersion]:
    return await all_matches(server.store, server.search, type_, params, group_members=members)
