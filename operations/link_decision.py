"""`Patient/[id]/$link-decision` (fhirlead; profiles/identity/OperationDefinition-link-decision.json): a
data steward decides whether two Patient records are the same person, and the Persons follow.

- `same=true`: if the records' Persons differ they are merged: every link of the record's Person moves
  to the other record's Person, and the emptied Person becomes inactive with a single link to the one it
  was merged into (so a reference to it can be followed). Both records' links become assurance level4.
- `same=false`: if both records are linked from one Person, the record leaves it for a new Person of its
  own (level4). If they already are apart, nothing moves.
Either way the decision is kept (records of kind `identity-decision`, with the steward's `reason`): the
background linking never links nor proposes the pair again, and open review Tasks for the pair are
completed with the decision as their business status. The answer is a collection Bundle of the Persons
as they now are. The caller needs write access to Person and Task resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import FhirError, Issue, bad_request, not_found
from fhirlead.operations.identity_links import (
    CONFIRMED,
    DECISION,
    add_links,
    new_person,
    pair_key,
    persons_linking,
    review_task_id,
    save,
    unlink,
)
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.server import Server
from fhirlead.storage.port import UnitOfWork, VersionConflict

NAME = "link-decision"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "identity"
                             / "OperationDefinition-link-decision.json").read_bytes())


async def link_decision(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    if call.request.access is not None:
        for type_ in ("Person", "Task"):
            call.request.access.require(type_, "u")
    record = f"Patient/{call.id_}"
    other = (params.one("other") or {}).get("reference", "")
    if not isinstance(other, str) or not other.startswith("Patient/") or other == record:
        raise bad_request("'other' must reference another Patient record (Patient/[id])", "other")
    same = params.flag("same")
    if same is None:
        raise bad_request("'same' is required: true (the same person) or false (different people)", "same")
    reason = params.one("reason")
    server = call.server
    for reference in (record, other):
        if await server.store.read("Patient", reference.partition("/")[2]) is None:
            raise not_found(f"{reference} is not known")
    mine, theirs = await home_of(server, record), await home_of(server, other)
    try:
        async with server.store.unit_of_work() as uow:
            if same:
                persons = await merge(server, uow, mine, theirs, record, other)
            else:
                persons = await separate(server, uow, mine, theirs, record)
            doc = {"same": same, **({"reason": reason} if isinstance(reason, str) else {})}
            await uow.put_record(DECISION, pair_key(record.partition("/")[2], other.partition("/")[2]), doc)
            await complete_reviews(server, uow, record, other, same, reason)
    except VersionConflict:  # the background linking changed a Person meanwhile: nothing was written
        raise FhirError(409, [Issue("conflict", "The Persons of these records changed while the decision was "
                                                "applied; nothing was changed: send it again")]) from None
    return FhirResponse(200, {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": f"{call.request.base_url}/Person/{p['id']}", "resource": p} for p in persons]})


async def home_of(server: Server, reference: str) -> dict[str, Any] | None:
    found = await persons_linking(server, reference.partition("/")[2])
    return found[0] if found else None


async def merge(server: Server, uow: UnitOfWork, mine: dict[str, Any] | None, theirs: dict[str, Any] | None,
                record: str, other: str) -> list[dict[str, Any]]:
    survivor = theirs or mine or new_person({})
    if mine is not None and theirs is not None and mine["id"] != theirs["id"]:
        moved = [entry for entry in mine.get("link") or ()
                 if entry.get("target", {}).get("reference", "").startswith("Patient/")]
        survivor = {**survivor, "link": [*(survivor.get("link") or ()), *moved]}
        merged = {**{k: v for k, v in mine.items() if k != "link"}, "active": False,
                  "link": [{"target": {"reference": f"Person/{survivor['id']}"}, "assurance": CONFIRMED}]}
        await save(server, uow, merged)
    links = [e for e in survivor.get("link") or () if e.get("target", {}).get("reference") not in (record, other)]
    survivor = {**survivor, "active": True, "link": [*links, {"target": {"reference": other}, "assurance": CONFIRMED},
                                                       {"target": {"reference": record}, "assurance": CONFIRMED}]}
    await save(server, uow, survivor)
    return [await current(uow, survivor["id"])]


async def separate(server: Server, uow: UnitOfWork, mine: dict[str, Any] | None, theirs: dict[str, Any] | None,
                   record: str) -> list[dict[str, Any]]:
    if mine is None or theirs is None or mine["id"] != theirs["id"]:
        return [p for p in (mine, theirs) if p is not None]
    await unlink(server, uow, mine, record)
    patient = await uow.read("Patient", record.partition("/")[2])
    alone = new_person(fhirjson.loads(patient.body) if patient is not None and patient.body else {})
    await add_links(server, uow, alone, [record], CONFIRMED)
    return [await current(uow, mine["id"]), await current(uow, alone["id"])]


async def current(uow: UnitOfWork, person_id: str) -> dict[str, Any]:
    version = await uow.read("Person", person_id)
    return fhirjson.loads(version.body) if version is not None and version.body else {}


async def complete_reviews(server: Server, uow: UnitOfWork, record: str, other: str, same: bool,
                           reason: Any) -> None:
    version = await uow.read("Task", review_task_id(record, other))
    if version is None or version.body is None:
        return
    task = fhirjson.loads(version.body)
    if task.get("status") == "completed":
        return
    task.update(status="completed", businessStatus={"text": "same person" if same else "different people"})
    if isinstance(reason, str):
        task["statusReason"] = {"text": reason}
    await uow.write("Task", task["id"], task, server.extractor.extract(task), "PUT", expected_version=version.version)


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, link_decision, instance=True, resource_types=frozenset({"Patient"}),
                           affects_state=True, definition=DEFINITION))
