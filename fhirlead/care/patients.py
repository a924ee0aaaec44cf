"""Who a rule's Task is for and who owns it: attribution (Da Vinci ATR 2.1.0) and the Lead care team
(docs/lead-profiles.md).

**Attributed** on a day: the patient is a member of a Member Attribution List (an atr-group `Group`)
whose `ext-attributionListStatus` is **final**, whose `ext-contractValidityPeriod` (when given) covers
the day, with a member entry for the patient that is not `inactive` and whose `period` (when given)
covers the day: the same test `$care-gaps` applies to a provider's attributed patients
(`fhirlead.operations.measure_subjects`). Draft and open lists are still being reconciled, so they do
not count; a general practitioner or a care team alone does not make a patient attributed.

**Owner**: the member holding the rule's role (the Lead navigator) on the patient's care team the
rule's `owner.careTeams` search finds (an active Lead CareTeam), on the team today (`participant.period`
covers today); else that CareTeam itself; else, with no such team, the provider the attribution list
attributes the patient to. **Requester**: the team's `managingOrganization` (the Lead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fhirlead import fhirjson
from fhirlead.care.rules import Query, Rule
from fhirlead.operations.measure_subjects import ATR, overlaps
from fhirlead.search.collect import all_matches
from fhirlead.storage.port import ResourceVersion

STATUS = ATR + "ext-attributionListStatus"
CONTRACT = ATR + "ext-contractValidityPeriod"
PROVIDER = ATR + "ext-attributedProvider"


@dataclass(frozen=True)
class Attribution:
    """The final list that attributes the patient on the day, and the provider it names (if any)."""

    group: str
    provider: str | None


async def matches(server: Any, query: Query, patient: str, focus: str) -> list[dict[str, Any]]:
    """The resources a rule's search finds for `patient`/`focus` (and its `where` holds for)."""
    found = await all_matches(server.store, server.search, query.type_, query.bound(patient, focus))
    bodies = [fhirjson.loads(v.body) for v in found if v.body]
    return [body for body in bodies if query.where is None or query.where.holds(body)]


def _extension(element: dict[str, Any], url: str, key: str) -> Any:
    return next((e.get(key) for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url),
                None)


def _reference(value: Any) -> str | None:
    text = value.get("reference") if isinstance(value, dict) else None
    return text if isinstance(text, str) and text else None


async def _members(server: Any, group: ResourceVersion, patient: str) -> list[dict[str, Any]]:
    head = fhirjson.loads(group.body or b"{}")
    if "member" in head:  # a list stored whole
        return [m for m in head.get("member") or () if isinstance(m, dict) and _reference(m.get("entity")) == patient]
    return [fhirjson.loads(body) for _, body in await server.store.find_group_members(group.id, [patient])]


async def attribution(server: Any, patient: str, day: date) -> Attribution | None:
    """The final attribution list that covers `patient` on `day` (see the module doc), else None."""
    window = (day.isoformat(), day.isoformat())
    lists = await all_matches(server.store, server.search, "Group",
                              [("member", patient), ("attribution-list-status", "final")], group_members=False)
    for group in sorted(lists, key=lambda v: v.id):
        head = fhirjson.loads(group.body or b"{}")
        if _extension(head, STATUS, "valueCode") != "final" or not overlaps(_extension(head, CONTRACT, "valuePeriod"),
                                                                             window):
            continue
        for member in await _members(server, group, patient):
            if member.get("inactive") is True or not overlaps(member.get("period"), window):
                continue
            return Attribution(f"Group/{group.id}", _reference(_extension(member, PROVIDER, "valueReference")))
    return None


def _holds_role(participant: dict[str, Any], role: dict[str, str]) -> bool:
    return any(isinstance(coding, dict) and (coding.get("system"), coding.get("code")) == (role["system"], role["code"])
               for concept in participant.get("role") or () if isinstance(concept, dict)
               for coding in concept.get("coding") or ())


def _team_order(team: dict[str, Any]) -> tuple[str, str]:
    start = (team.get("period") or {}).get("start") if isinstance(team.get("period"), dict) else None
    return (start if isinstance(start, str) else "", str(team.get("id")))


async def owner(server: Any, rule: Rule, patient: str, focus: str, today: date,
                attributed: Attribution) -> tuple[str | None, str | None]:
    """(owner, requester) references for the rule's Task (see the module doc)."""
    teams = await matches(server, rule.care_teams, patient, focus)
    if not teams:
        return attributed.provider, None
    team = max(teams, key=_team_order)  # the most recently started team, when there are several
    requester = next((r for r in map(_reference, team.get("managingOrganization") or ()) if r), None)
    window = (today.isoformat(), today.isoformat())
    for participant in team.get("participant") or ():
        if not isinstance(participant, dict) or not _holds_role(participant, rule.owner_role):
            continue
        member = _reference(participant.get("member"))
        if member and overlaps(participant.get("period"), window):
            return member, requester
    return f"CareTeam/{team['id']}", requester
