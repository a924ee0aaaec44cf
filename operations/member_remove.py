"""`Group/[id]/$member-remove` (Da Vinci ATR 2.1.0, OperationDefinition member-remove): end a member's
attribution on a draft or open Member Attribution List.

The member is named by `patientReference` or `memberId`; `providerReference`/`providerNpi` and
`coverageReference` narrow it to the attributions with that provider and coverage (every combination
the IG lists, and the others that follow from them). As the IG says: on a draft list the member stays,
marked `inactive` with changeType `dropped` (it leaves when the list is confirmed); on an open list it is
removed. Either way the Group's history keeps what was there.
"""

from __future__ import annotations

from fhirlead.api.messages import FhirResponse
from fhirlead.operations.attribution_list import (
    CHANGE_TYPE,
    PROVIDER_TYPES,
    AttributionList,
    change,
    group_operation,
    read_parameters,
    resolve,
    set_extension,
    unprocessable,
)
from fhirlead.plugins import OperationCall, OperationRegistry
from fhirlead.storage.port import UnitOfWork

NAME = "member-remove"


async def member_remove(call: OperationCall) -> FhirResponse:
    params = read_parameters(call, NAME)

    async def edit(attribution: AttributionList, uow: UnitOfWork) -> str:
        attribution.require_changeable(NAME)
        patient = await resolve(uow, call, params, "patientReference", "memberId", ("Patient",))
        provider = await resolve(uow, call, params, "providerReference", "providerNpi", PROVIDER_TYPES,
                                 required=False)
        coverage = await resolve(uow, call, params, "coverageReference", None, ("Coverage",), required=False)
        found = [m for m in await attribution.matching(patient or "", provider, coverage) if m.active]
        if not found:
            narrowed = "".join(f" with {what}" for what in (provider, coverage) if what)
            raise unprocessable(f"{patient}{narrowed} is not an active member of Group/{attribution.version.id}",
                                *sorted(params.given("patientReference", "memberId")), code="not-found")
        if attribution.status == "draft":
            for member in found:
                member.element["inactive"] = True
                set_extension(member.element, CHANGE_TYPE, "valueCode", "dropped")
                attribution.replace(member, member.element)
            return f"{len(found)} attribution(s) of {patient} marked dropped (the list is a draft)"
        for member in found:
            attribution.remove(member)
        return f"{len(found)} attribution(s) of {patient} removed"

    return await change(call, edit)


def register(registry: OperationRegistry) -> None:
    registry.add(group_operation(NAME, member_remove))
