"""Care relationships: the patients a practitioner user may reach with user/ scopes.

A Lead's clinicians see the patients they care for, not every patient on the server. A user whose
fhirUser is a Practitioner (or a PractitionerRole) reaches a patient when, today:
- the patient is attributed to them, to one of their PractitionerRoles or to one of those roles'
  Organizations, on a **final** Da Vinci ATR attribution list (within the list's contract period and
  the membership's `period`, the member not inactive);
- they (or such a role or organization) are the patient's `generalPractitioner`;
- they (or such a role) are a participant of an **active** CareTeam of the patient (within the
  participant's `period`, when it has one).
Admin users reach everyone; patient users their own record (`enforce.Policy`).

The set is computed from the store by a few indexed searches and kept per user for CACHE_SECONDS in
each process, so a new relationship (or a removed one) takes effect within that time.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from fhirlead import fhirjson
from fhirlead.search.collect import all_matches
from fhirlead.storage.port import ResourceVersion

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
CACHE_SECONDS = 30.0


def care_of(server: Any) -> CareRelationships:
    """The server's care relationships (one cache per server, kept in its memo)."""
    found = server.memo.get("care-relationships")
    if found is None:
        found = server.memo["care-relationships"] = CareRelationships(server)
    return found


class CareRelationships:
    """Per server: the care set of each practitioner user, cached for CACHE_SECONDS."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def patients(self, fhir_user: str) -> frozenset[str]:
        """The ids of the patients `fhir_user` (Practitioner/x or PractitionerRole/y) cares for today."""
        now = time.monotonic()
        cached = self._cache.get(fhir_user)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        found = await self._compute(fhir_user)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[fhir_user] = (now, found)
        return found

    async def _compute(self, fhir_user: str) -> frozenset[str]:
        people, roles, organizations = await self._identities(fhir_user)
        providers = people | roles | organizations
        today = date.today().isoformat()
        patients: set[str] = set()
        for provider in sorted(providers):
            for version in await self._all("Patient", [("general-practitioner", provider)]):
                patients.add(version.id)
        for participant in sorted(people | roles):
            for version in await self._all("CareTeam", [("participant", participant), ("status", "active")]):
                team = fhirjson.loads(version.body or b"{}")
                if any(_reference(p.get("member")) in providers and _current(p.get("period"), today)
                       for p in team.get("participant") or () if isinstance(p, dict)):
                    patient = _patient_id(team.get("subject"))
                    if patient:
                        patients.add(patient)
        for provider in sorted(providers):
            query = [("attributed-provider", provider), ("attribution-list-status", "final")]
            for version in await self._all("Group", query, members=False):
                patients |= await self._attributed(version, providers, today)
        return frozenset(patients)

    async def _identities(self, fhir_user: str) -> tuple[set[str], set[str], set[str]]:
        """The user as Practitioner(s), their PractitionerRoles, and those roles' Organizations."""
        people, roles = set(), set()
        if fhir_user.startswith("Practitioner/"):
            people.add(fhir_user)
            found = await self._all("PractitionerRole", [("practitioner", fhir_user), ("active", "true")])
            roles = {version.reference for version in found}
            role_bodies = [fhirjson.loads(v.body or b"{}") for v in found]
        else:
            roles.add(fhir_user)
            kind, _, id_ = fhir_user.partition("/")
            version = await self._server.store.read(kind, id_)
            role_bodies = [fhirjson.loads(version.body)] if version is not None and version.body else []
            people |= {ref for body in role_bodies if (ref := _reference(body.get("practitioner")))}
        organizations = {ref for body in role_bodies if (ref := _reference(body.get("organization")))}
        return people, roles, organizations

    async def _attributed(self, group: ResourceVersion, providers: set[str], today: str) -> set[str]:
        head = fhirjson.loads(group.body or b"{}")
        contract = next((e.get("valuePeriod") for e in head.get("extension") or ()
                         if isinstance(e, dict) and e.get("url") == ATR + "ext-contractValidityPeriod"), None)
        if not _current(contract, today):
            return set()
        store = self._server.store
        if "member" not in head:  # only the members attributed to them, found by the index
            found_members = set()
            for provider in sorted(providers):
                type_, _, id_ = provider.partition("/")
                found_members |= set(await store.find_group_members_referring(group.id, "attributed-provider",
                                                                              type_, id_))
            elements = [fhirjson.loads(body) for _, body in sorted(found_members)]
        else:
            elements = head.get("member") or []
        found = set()
        for member in elements:
            if not isinstance(member, dict) or member.get("inactive") or not _current(member.get("period"), today):
                continue
            provider = next((_reference(e.get("valueReference")) for e in member.get("extension") or ()
                             if isinstance(e, dict) and e.get("url") == ATR + "ext-attributedProvider"), None)
            patient = _patient_id(member.get("entity"))
            if provider in providers and patient:
                found.add(patient)
        return found

    async def _all(self, type_: str, params: list[tuple[str, str]], members: bool = True) -> list[ResourceVersion]:
        """Every current resource of `type_` matching `params` (all pages)."""
        return await all_matches(self._server.store, self._server.search, type_, params, group_members=members)

def _reference(value: Any) -> str | None:
    text = value.get("reference") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


def _patient_id(value: Any) -> str | None:
    kind, _, id_ = (_reference(value) or "").rpartition("/")
    return id_ if kind.endswith("Patient") and id_ else None


def _current(period: Any, today: str) -> bool:
    """Whether a Period (None: always) covers today (dates compared by their leading YYYY-MM-DD)."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    return (not isinstance(start, str) or start[:10] <= today) and (not isinstance(end, str) or today <= end[:10])
