"""Transaction processing: every write of the Bundle in one unit of work, all or nothing.

Order (https://hl7.org/fhir/R4/http.html#trules): DELETEs, then ids are chosen for every POST, PUT and
PATCH (conditional targets and `ifNoneExist` resolved by search), then placeholders are rewritten and
the POSTs, PUTs and PATCHes written, then — after commit — the GETs answered, so they see the result.
Any failing write rolls everything back; the error names the failing entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirlead import sources
from fhirlead.api.dispatch import dispatch
from fhirlead.api.messages import FhirRequest
from fhirlead.bundles import references, response
from fhirlead.bundles.entries import ORDER, Entry
from fhirlead.errors import FhirError, Issue
from fhirlead.interaction import conditions
from fhirlead.interaction.create import create, new_id
from fhirlead.interaction.delete import conditional_delete, delete
from fhirlead.interaction.incoming import prepare
from fhirlead.interaction.outcome import Outcome
from fhirlead.interaction.patch import patch
from fhirlead.interaction.preconditions import expected_version
from fhirlead.interaction.update import update
from fhirlead.search import conditional
from fhirlead.storage.port import NewResource, UnitOfWork, VersionConflict

if TYPE_CHECKING:
    from fhirlead.server import Server


@dataclass
class Target:
    """Where a POST/PUT/PATCH entry will write, decided before any of them is written."""

    id_: str
    existing: Outcome | None = None  # set when ifNoneExist matched: nothing to write


def located(entry: Entry, error: FhirError) -> FhirError:
    """The same error, each issue prefixed with the entry it came from."""
    issues = [
        Issue(issue.code, f"{entry.label}: {issue.diagnostics}", issue.severity,
              issue.expression or (f"Bundle.entry[{entry.index}]",))
        for issue in error.issues
    ]
    return FhirError(error.status, issues, error.headers)


async def run(
    server: Server, entries: list[Entry], base_url: str, preference: str | None, access: Any = None,
    source: sources.Source | None = None, ids: Iterator[str] | None = None,
) -> list[bytes]:
    """Process a transaction; return the response entries in request order, or raise (rolled back).
    What it writes gets `source`'s meta.source and Provenance (`fhirlead.sources`); `ids` as for `write`."""
    async with sources.unit_of_work(server, source) as uow:
        answers = await write(server, uow, entries, base_url, preference, ids)
    for entry in entries:
        if entry.method in ("GET", "HEAD"):
            answers[entry.index] = await read(server, entry, base_url, access)
    return [answers[entry.index] for entry in entries]


async def write(
    server: Server, uow: UnitOfWork, entries: list[Entry], base_url: str, preference: str | None,
    ids: Iterator[str] | None = None,
) -> dict[int, bytes]:
    """The writes of one transaction inside `uow` (which may hold earlier transactions: `fhirlead load`
    commits several Bundles at once); the response entries by entry index. New resources take their ids
    from `ids` while it lasts (those a validation worker chose: fhirlead/validation/ahead.py)."""
    writes = [entry for entry in sorted(entries, key=lambda entry: ORDER[entry.method]) if ORDER[entry.method] < 3]
    writer = TransactionWriter(server, uow, base_url, preference, ids)
    answers: dict[int, bytes] = {}
    for entry in writes:
        if entry.method == "DELETE":
            answers[entry.index] = await writer.guarded(entry, writer.delete(entry))
    changes = [entry for entry in writes if entry.method != "DELETE"]
    await writer.plan(changes)
    await writer.resolve_references(changes)
    answers.update(await writer.create_all([entry for entry in changes if entry.method == "POST"]))
    answers.update(await writer.write_all([entry for entry in changes if entry.method != "POST"]))
    return answers


async def read(server: Server, entry: Entry, base_url: str, access: Any = None) -> bytes:
    """A GET/HEAD entry, answered exactly like the same HTTP request (conditional headers included)."""
    headers = {name: value for name, value in (
        ("if-none-match", entry.if_none_match), ("if-modified-since", entry.if_modified_since),
    ) if value is not None}
    request = FhirRequest(entry.method, base_url, entry.path, entry.params, headers, access=access)
    try:
        return response.read_entry(await (await dispatch(server, request, entry.segments)).collected())
    except FhirError as error:
        return response.error_entry(located(entry, error))


class TransactionWriter:
    """The write half of a transaction, holding its unit of work and the placeholder map."""

    def __init__(self, server: Server, uow: UnitOfWork, base_url: str, preference: str | None,
                 ids: Iterator[str] | None = None) -> None:
        self.server, self.uow, self.base_url, self.preference = server, uow, base_url, preference
        self.ids = ids or iter(())  # ids chosen beforehand for the new resources, in the order `plan` needs them
        self.targets: dict[int, Target] = {}
        self.placeholders: dict[str, str] = {}
        self.resolved: dict[str, str] = {}  # conditional reference -> Type/id, once per transaction

    async def guarded(self, entry: Entry, work: Awaitable[Outcome]) -> bytes:
        try:
            outcome = await work
        except FhirError as error:
            raise located(entry, error) from None
        return response.write_entry(outcome, self.base_url, self.preference)

    async def delete(self, entry: Entry) -> Outcome:
        if_match = expected_version(entry.if_match)
        if entry.conditional:
            return await conditional_delete(self.server, self.uow, entry.type_, entry.params, if_match)
        return await delete(self.server, self.uow, entry.type_, entry.id_ or "", if_match)

    async def plan(self, entries: list[Entry]) -> None:
        """Choose the id each write lands on, and map every fullUrl to it."""
        claimed: dict[str, Entry] = {}
        for entry in entries:
            try:
                target = await self.target(entry)
            except FhirError as error:
                raise located(entry, error) from None
            self.targets[entry.index] = target
            reference = f"{entry.type_}/{target.id_}"
            if target.existing is None:
                if reference in claimed:
                    raise entry.error(400, "invalid", f"{reference} is also written by {claimed[reference].label}; "
                                                      "a transaction may write each resource once")
                claimed[reference] = entry
            if entry.full_url:
                self.placeholders[entry.full_url] = reference

    async def target(self, entry: Entry) -> Target:
        if entry.method == "POST":
            if entry.if_none_exist:
                params = conditions.criteria(entry.if_none_exist)
                found = await conditions.matches(self.server, self.uow, entry.type_, params)
                if len(found) > 1:
                    raise conditions.too_many(entry.type_, params)
                if found:
                    return Target(found[0].id, Outcome(200, found[0]))
            return Target(self.new_id())
        if not entry.conditional:
            return Target(entry.id_ or "")
        found = await conditions.matches(self.server, self.uow, entry.type_, entry.params)
        if len(found) > 1:
            raise conditions.too_many(entry.type_, entry.params)
        if found:
            return Target(found[0].id)
        if entry.method == "PATCH":
            raise FhirError(404, [Issue("not-found", f"No {entry.type_} matched '{entry.url}'")])
        return Target((entry.resource or {}).get("id") or self.new_id())

    def new_id(self) -> str:
        return next(self.ids, None) or new_id()

    async def create_all(self, entries: list[Entry]) -> dict[int, bytes]:
        """The POST phase: every entry validated and indexed, then all created in one store call."""
        answers: dict[int, bytes] = {}
        creates: list[tuple[Entry, NewResource]] = []
        for entry in entries:
            target = self.targets[entry.index]
            if target.existing is not None:  # ifNoneExist matched: nothing to write
                answers[entry.index] = response.write_entry(target.existing, self.base_url, self.preference)
                continue
            resource = entry.resource or {}
            resource["id"] = target.id_
            sources.stamp(self.uow, resource)
            try:
                entries_of_resource = prepare(self.server, resource, entry.type_)
            except FhirError as error:
                raise located(entry, error) from None
            creates.append((entry, (entry.type_, target.id_, resource, entries_of_resource)))
        try:
            versions = await self.uow.create_many([item for _, item in creates], "POST")
        except VersionConflict as error:
            raise FhirError(409, [Issue("conflict", f"{error.reference} already exists")]) from None
        for (entry, _), version in zip(creates, versions, strict=True):
            answers[entry.index] = response.write_entry(Outcome(201, version, created=True), self.base_url,
                                                        self.preference)
        return answers

    async def write_all(self, entries: list[Entry]) -> dict[int, bytes]:
        """Write entries of one phase, pipelined: while the store writes one entry, the next is
        validated and indexed (the writes still reach the store in entry order)."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {entry.index: group.create_task(self.guarded(entry, self.write(entry))) for entry in entries}
        except* FhirError as failures:
            raise failures.exceptions[0] from None
        return {index: task.result() for index, task in tasks.items()}

    async def write(self, entry: Entry) -> Outcome:
        target = self.targets[entry.index]
        if target.existing is not None:
            return target.existing
        if_match = expected_version(entry.if_match)
        if entry.method == "PATCH":
            return await patch(self.server, self.uow, entry.type_, target.id_, entry.patch_document(), if_match)
        resource = entry.resource or {}
        if entry.method == "POST":
            return await create(self.server, self.uow, entry.type_, resource, id_=target.id_)
        if entry.conditional:
            if resource.get("id", target.id_) != target.id_:
                raise FhirError(400, [Issue("invalid", f"The resource's id '{resource['id']}' differs from "
                                                       f"{entry.type_}/{target.id_}, which '{entry.url}' matched")])
            resource["id"] = target.id_
        return await update(self.server, self.uow, entry.type_, target.id_, resource, if_match)

    async def resolve_references(self, entries: list[Entry]) -> None:
        """Rewrite placeholders and resolve conditional references in every resource to be written.

        Conditional references are resolved against the store as it stands after the DELETEs and
        before this transaction's own creates and updates (the targets are expected to exist).
        """
        for entry in entries:
            if entry.method == "PATCH" or entry.resource is None:
                continue
            found: list[tuple[dict[str, Any], str]] = []
            references.rewrite(entry.resource, self.placeholders, found)
            try:
                for holder, key in found:
                    holder[key] = await self.resolve_conditional(holder[key])
            except FhirError as error:
                raise located(entry, error) from None

    async def resolve_conditional(self, reference: str) -> str:
        if reference in self.resolved:
            return self.resolved[reference]
        type_, query = references.split_conditional(reference)
        matches = await conditional.find(self.server, self.uow, type_, conditions.criteria(query), limit=2)
        if len(matches) != 1:
            code, status = ("not-found", 404) if not matches else ("multiple-matches", 412)
            count = "no resource" if not matches else "more than one resource"
            raise FhirError(status, [Issue(code, f"The conditional reference '{reference}' matches {count}")])
        self.resolved[reference] = matches[0].reference
        return matches[0].reference
