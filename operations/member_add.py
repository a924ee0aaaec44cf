"""`Group/[id]/$member-add` (Da Vinci ATR 2.1.0, OperationDefinition member-add): attribute a member to a
provider on a draft or open Member Attribution List.

The member is named by `patientReference` or `memberId` (a Patient identifier), the provider by
`providerReference` or `providerNpi` (an identifier of a Practitioner, PractitionerRole or
Organization; system `http://hl7.org/fhir/sid/us-npi` when none is given); `attributionPeriod` becomes
the membership's `period`. A new member carries changeType `new`; adding a member already attributed to
that provider updates it instead (period, active again) with changeType `changed`; the same request
twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Any

from fhirlead.api.messages import FhirResponse
from fhirlead.operations.attribution_list import (
    CHANGE_TYPE,
    PROVIDER,
    PROVIDER_TYPES,
    AttributionList,
    change,
    group_operation,
    read_parameters,
    resolve,
    set_extension,
)
from fhirlead.plugins import OperationCall, OperationRegistry
from fhirlead.storage.port import UnitOfWork

NAME = "member-add"


async def member_add(call: OperationCall) -> FhirResponse:
    params = read_parameters(call, NAME)
    period = params.one("attributionPeriod")

    async def edit(attribution: AttributionList, uow: UnitOfWork) -> str:
        attribution.require_changeable(NAME)
        patient = await resolve(uow, call, params, "patientReference", "memberId", ("Patient",))
        provider = await resolve(uow, call, params, "providerReference", "providerNpi", PROVIDER_TYPES)
        existing = await attribution.matching(patient or "", provider)
        if existing:
            element = existing[0].element
            if element.get("inactive") or (period is not None and element.get("period") != period):
                if period is not None:
                    element["period"] = period
                element.pop("inactive", None)
                set_extension(element, CHANGE_TYPE, "valueCode", "changed")
                attribution.replace(existing[0], element)
                return f"{patient} is attributed to {provider} (updated)"
            return f"{patient} is attributed to {provider} already"
        element: dict[str, Any] = {"extension": [
            {"url": CHANGE_TYPE, "valueCode": "new"},
            {"url": PROVIDER, "valueReference": {"reference": provider}},
        ], "entity": {"reference": patient}}
        if period is not None:
            element["period"] = period
        attribution.add(element)
        return f"{patient} is attributed to {provider} (added)"

    return await change(call, edit)


def register(registry: OperationRegistry) -> None:
    registry.add(group_operation(NAME, member_add))
