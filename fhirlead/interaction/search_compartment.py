"""Compartment search: GET [base]/Patient/[id]/[type]?... (https://hl7.org/fhir/R4/compartmentdefinition.html).

Membership comes from the R4 Patient CompartmentDefinition: a resource is in Patient/[id]'s compartment
when one of the listed reference parameters of its type points to that patient (the Patient itself is
in its own compartment). `*` searches every type of the compartment but AuditEvent (the server's own
audit trail: ask for it by type).
"""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.definitions import patient_compartment
from fhirlead.errors import bad_request
from fhirlead.interaction.history import SERVER_RECORDED
from fhirlead.search.query import Clause, Compartment
from fhirlead.search.respond import run
from fhirlead.server import Server

OWNER = "Patient"


def membership(types: tuple[str, ...], patient_id: str) -> Clause:
    params = patient_compartment()
    return Clause((Compartment(OWNER, patient_id, tuple((t, tuple(params.get(t, ()))) for t in types)),))


async def handle(server: Server, request: FhirRequest, compartment_id: str, type_: str) -> FhirResponse:
    compartment = patient_compartment()
    if type_ == "*":
        types = tuple(sorted({*compartment, OWNER} - set(SERVER_RECORDED)))
    elif type_ in compartment or type_ == OWNER:
        types = (type_,)
    else:
        raise bad_request(f"{type_} is not in the Patient compartment")
    path = f"{OWNER}/{compartment_id}/{type_}"
    return await run(server, request, types, path, extra=(membership(types, compartment_id),))
