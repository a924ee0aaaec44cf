"""`Group/[id]/$confirm-attribution-list` (Da Vinci ATR 2.1.0): the consumer has no more changes; the
list becomes final, and `$member-add`/`$member-remove` are refused from then on.

The IG lets the producer make further changes before finalising; fhirlead finalises at once, dropping the
members marked inactive while the list was a draft (the IG: once final the producer SHOULD remove them).
The IG names the answer "201 Accepted"; fhirlead answers 200 OK with an OperationOutcome: 201 would
announce a new resource at a Location and 202 work still in progress, and neither is so — the list is
final when the answer arrives (its new version in ETag and Location). Confirming a final list again
changes nothing and answers 200.
"""

from __future__ import annotations

from fhirlead.api.messages import FhirResponse
from fhirlead.operations.attribution_list import AttributionList, change, group_operation, read_parameters
from fhirlead.plugins import OperationCall, OperationRegistry
from fhirlead.storage.port import UnitOfWork

NAME = "confirm-attribution-list"


async def confirm(call: OperationCall) -> FhirResponse:
    read_parameters(call, NAME)  # it takes none: anything given is refused

    async def edit(attribution: AttributionList, uow: UnitOfWork) -> str:
        if attribution.status == "final":
            return f"Group/{attribution.version.id} is already final"
        dropped = 0
        for member in await attribution.find(None):
            if not member.active:
                attribution.remove(member)
                dropped += 1
        attribution.set_status("final")
        removed = f"; {dropped} dropped member(s) removed" if dropped else ""
        return f"Group/{attribution.version.id} is final{removed}"

    return await change(call, edit)


def register(registry: OperationRegistry) -> None:
    registry.add(group_operation(NAME, confirm))
