"""Every Patient record belongs to a person: linking on create and update (docs/identity.md).

A person is an R4 `Person` whose `link`s are the Patient records of that one human being, from any
source; `link.assurance` level3 for a link the server made (a certain match, or the person's first
record), level4 for one a data steward confirmed. Each Patient record is linked from exactly one Person.

When a Patient is created, updated or deleted (by any path: REST, transaction, `fhirlead load`), a write
observer records a linking job for it in the same commit (`fhirlead.jobs`); the worker then
- reads the record and finds its candidates (`Patient/$match`'s blocking and scoring);
- a record not yet linked joins the Person of its best linked **certain** match, or a new Person of its
  own when it has none or another certain match is certainly someone else (ambiguous: a steward
  decides); a certain match that sits alone in a Person the server made (its job ran first) joins too;
- a record already linked stays where it is; a certain match in another Person, and every **probable**
  match outside its Person, becomes a review Task for a data steward (`code` review-match, `focus` the
  record, `input` the candidate, its grade, score and evidence), once per pair; pairs a steward has
  decided are not proposed again (records of kind `identity-decision`);
- a deleted record's link is removed (a Person left without links becomes inactive).
Probable matches are never linked automatically. A stop at any point leaves the job pending; the job is
idempotent.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhirlead import fhirjson
from fhirlead.identity import demographics
from fhirlead.identity.score import Match, match
from fhirlead.jobs import Jobs, JobWorker
from fhirlead.operations.match import find_candidates
from fhirlead.search.collect import all_matches
from fhirlead.server import Server
from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork

JOBS = Jobs("identity-link")
DECISION = "identity-decision"  # records: "<patient id>|<patient id>" (sorted) -> {"same": bool}
IDENTITY_SYSTEM = "http://fhirlead.org/fhir/CodeSystem/identity"
REVIEW = {"system": IDENTITY_SYSTEM, "code": "review-match", "display": "Review a possible patient match"}
AUTOMATIC, CONFIRMED = "level3", "level4"


def pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def review_task_id(a: str, b: str) -> str:
    return "match-review-" + hashlib.sha256(pair_key(a, b).encode()).hexdigest()[:40]


def observer(server: Server) -> Any:
    async def note_patient_writes(uow: UnitOfWork, written: Sequence[Written]) -> None:
        for patient_id in sorted({w.id_ for w in written if w.type_ == "Patient"}):
            await JOBS.enqueue(uow, patient_id)

    return note_patient_writes


def worker(server: Server) -> JobWorker:
    return JobWorker(server, JOBS, link, lambda written: any(w.type_ == "Patient" for w in written))


async def persons_linking(server: Server, patient_id: str) -> list[dict[str, Any]]:
    return [fhirjson.loads(v.body or b"{}") for v in await all_matches(
        server.store, server.search, "Person", [("link", f"Patient/{patient_id}")])]


async def linked_records(server: Server, patient_id: str) -> tuple[str, list[str]]:
    """The person of Patient record `patient_id`: (the Person's id, the ids of the Patient records it
    links, `patient_id` first); a record not linked yet is a person of one record, its own id."""
    persons = await persons_linking(server, patient_id)
    ids = [patient_id]
    for entry in (persons[0].get("link") or ()) if persons else ():
        type_, _, id_ = str((entry.get("target") or {}).get("reference", "")).partition("/")
        if type_ == "Patient" and id_ and id_ not in ids:
            ids.append(id_)
    return (persons[0]["id"] if persons else patient_id), ids


async def link(server: Server, patient_id: str) -> None:
    """The linking job of one Patient record (see the module doc)."""
    reference = f"Patient/{patient_id}"
    version = await server.store.read("Patient", patient_id)
    current = await persons_linking(server, patient_id)
    if version is None or version.body is None:
        async with server.store.unit_of_work() as uow:
            for person in current:
                await unlink(server, uow, person, reference)
        return
    patient = fhirjson.loads(version.body)
    wanted = demographics.of(patient)
    graded = [(found, candidate) for candidate in await find_candidates(server, patient)
              if candidate.get("id") != patient_id
              and (found := match(wanted, demographics.of(candidate))).grade in ("certain", "probable")]
    graded.sort(key=lambda item: (item[0].grade != "certain", -item[0].total))
    # pairs a steward decided are left as the steward left them
    graded = [(found, candidate) for found, candidate in graded
              if await server.store.records.get(DECISION, pair_key(patient_id, str(candidate.get("id")))) is None]
    home = current[0] if current else None
    certain = [candidate for found, candidate in graded if found.grade == "certain"]
    async with server.store.unit_of_work() as uow:
        joining = [] if home is not None else [reference]
        if home is None:
            home = await certain_home(server, certain) or new_person(patient)
        for candidate, alone in await fresh_singletons(server, wanted, certain, home):
            await unlink(server, uow, alone, f"Patient/{candidate['id']}")
            joining.append(f"Patient/{candidate['id']}")
        if joining:
            home = await add_links(server, uow, home, joining, AUTOMATIC)
        mine = {entry.get("target", {}).get("reference") for entry in home.get("link") or ()}
        for found, candidate in graded:
            other = f"Patient/{candidate.get('id')}"
            if other not in mine:
                await propose_review(server, uow, reference, other, found)
        for other in sorted(mine - {reference}):
            await settle_review(server, uow, reference, str(other))


async def certain_home(server: Server, certain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Person of the best linked certain match (`certain` is best first), or None: when there is none, or
    when another certain match, in another Person, is certainly someone else than the best one (a
    given name or birth date that disagrees, two record numbers of one source): "J Taylor" certain for
    two sisters is ambiguous, and a steward decides. Other Persons holding certain matches are left to
    the review Tasks (Persons are never merged automatically)."""
    if not certain:
        return None
    home: dict[str, Any] | None = None
    best: demographics.Demographics | None = None
    for candidate in certain:
        persons = await persons_linking(server, str(candidate["id"]))
        if not persons:
            continue  # not linked yet: its own job will place it
        if home is None:
            home, best = persons[0], demographics.of(candidate)
        elif persons[0]["id"] != home["id"] and best is not None and distinct(best, demographics.of(candidate)):
            return None
    return home


def distinct(a: demographics.Demographics, b: demographics.Demographics) -> bool:
    """Whether two records are certainly of different people (the vetoes of `score.match`)."""
    return match(a, b).vetoed


def new_person(patient: dict[str, Any]) -> dict[str, Any]:
    person: dict[str, Any] = {"resourceType": "Person", "id": f"person-{uuid.uuid4()}", "active": True}
    for field in ("name", "telecom", "gender", "birthDate", "address"):
        if field in patient:
            person[field] = patient[field]
    return person


async def add_links(server: Server, uow: UnitOfWork, person: dict[str, Any], references: list[str],
                    assurance: str) -> dict[str, Any]:
    """The Person with `references` linked (at `assurance`), as written."""
    links = [entry for entry in person.get("link") or () if entry.get("target", {}).get("reference") not in references]
    person = {**person, "active": True,
              "link": [*links, *({"target": {"reference": r}, "assurance": assurance} for r in references)]}
    await save(server, uow, person)
    return person


async def fresh_singletons(server: Server, wanted: demographics.Demographics, certain: list[dict[str, Any]],
                           home: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Certain matches that sit alone in a Person the server made (one link, level3) only because their
    job ran before this record's: they join `home` (what would have happened in the other order), unless
    certainly someone else than this record."""
    out = []
    for candidate in certain:
        persons = await persons_linking(server, str(candidate["id"]))
        if len(persons) == 1 and persons[0]["id"] != home.get("id") and len(persons[0].get("link") or ()) == 1 \
                and persons[0]["link"][0].get("assurance") == AUTOMATIC \
                and not distinct(wanted, demographics.of(candidate)):
            out.append((candidate, persons[0]))
    return out


async def unlink(server: Server, uow: UnitOfWork, person: dict[str, Any], reference: str) -> None:
    links = [entry for entry in person.get("link") or () if entry.get("target", {}).get("reference") != reference]
    person = {**person, "link": links} if links else {**{k: v for k, v in person.items() if k != "link"},
                                                      "active": False}
    await save(server, uow, person)


async def save(server: Server, uow: UnitOfWork, person: dict[str, Any]) -> None:
    """Write the Person, on the version it was read at (a concurrent change fails the job: it runs again)."""
    version = person.get("meta", {}).get("versionId")
    await uow.write("Person", person["id"], person, server.extractor.extract(person), "PUT",
                    expected_version=int(version) if version else 0)


OPEN = frozenset({"draft", "requested", "received", "accepted", "ready", "on-hold"})


async def settle_review(server: Server, uow: UnitOfWork, record: str, other: str) -> None:
    """A review still open for two records that are now one person's is answered: cancelled, saying why
    (records linked at once often propose each other before either has a Person)."""
    version = await uow.read("Task", review_task_id(record, other))
    task = fhirjson.loads(version.body) if version is not None and version.body else None
    if task is None or task.get("status") not in OPEN:
        return
    task = {**task, "status": "cancelled", "lastModified": datetime.now(UTC).isoformat(timespec="seconds"),
            "statusReason": {"text": "the two records were linked to one person (a certain match)"}}
    await uow.write("Task", task["id"], task, server.extractor.extract(task), "PUT", expected_version=version.version)


async def propose_review(server: Server, uow: UnitOfWork, record: str, candidate: str, found: Match) -> None:
    """A review Task for a data steward, once per pair of records (left as it is once it exists)."""
    id_ = review_task_id(record, candidate)
    if await uow.read("Task", id_) is not None:
        return
    task = {
        "resourceType": "Task", "id": id_, "status": "requested", "intent": "proposal",
        "code": {"coding": [REVIEW]},
        "description": f"{record} and {candidate} may be records of the same person ({found.grade} match)",
        "focus": {"reference": record}, "for": {"reference": record},
        "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": [{"type": {"text": "candidate"}, "valueReference": {"reference": candidate}},
                  {"type": {"text": "match-grade"}, "valueCode": found.grade},
                  {"type": {"text": "score"}, "valueDecimal": found.score},
                  {"type": {"text": "evidence"}, "valueString": found.explain()}],
    }
    await uow.write("Task", id_, task, server.extractor.extract(task), "PUT")


def register(registry: Any) -> None:
    registry.add_write_observer(observer)
    registry.add_worker(worker)
