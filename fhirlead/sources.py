"""Sources: every write records where it came from (docs/sources.md).

A resource's source system is its `meta.source` (https://hl7.org/fhir/R4/resource-definitions.html#Meta.source):
kept as the client sent it; when absent and a SMART client wrote it, set from that client (the URI the
registry holds for it, else `urn:fhirlead:client:<client_id>`). Each write from a source also gets a
Provenance (https://hl7.org/fhir/R4/provenance.html) in the same unit of work, so the two commit or roll
back together: `target` the versions written, `recorded` the write's instant, `activity` CREATE or UPDATE,
`agent` the client's organisation (or the client itself) and the signed-in user, `entity` the meta.source
values. One unit of work (a REST write, a transaction, one batch entry) gets one Provenance per activity.

Not recorded: deletes; writes of Provenance and AuditEvent themselves; what a client's own Provenance in
the same unit already targets; the server's internal writes (audit trail, gap Tasks, `fhirlead load`),
which never open a sourced unit; clients registered as recording their own Provenance. A client may send
its own Provenance with a write in the `X-Provenance` header (R4 http.html#custom): it is stored, with
the written versions as its target, instead of the server's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fhirlead import clock, fhirjson
from fhirlead.errors import FhirError, Issue, bad_request
from fhirlead.storage.port import ResourceVersion, UnitOfWork

if TYPE_CHECKING:
    from fhirlead.api.messages import FhirRequest
    from fhirlead.search.entries import IndexEntries
    from fhirlead.server import Server

CLIENT_SYSTEM = "urn:fhirlead:client"  # Identifier.system of a SMART client (value: its client_id)
URI_SYSTEM = "urn:ietf:rfc:3986"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
US_CORE_PARTICIPANT_TYPE = "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type"
TRANSMITTER = {"coding": [{"system": US_CORE_PARTICIPANT_TYPE, "code": "transmitter", "display": "Transmitter"}]}
ENTERER = {"coding": [{"system": PARTICIPANT_TYPE, "code": "enterer", "display": "Enterer"}]}
ACTIVITY = {
    "CREATE": {"coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}]},
    "UPDATE": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "update"}]},
}
UNTRACKED = frozenset({"Provenance", "AuditEvent"})  # writing these never adds a Provenance
HEADER = "x-provenance"
CLIENT_SECONDS = 10.0  # how long a process keeps what the registry says about a client's source


@dataclass(frozen=True, slots=True)
class Source:
    """Where one request's writes come from."""

    uri: str | None  # meta.source for what arrives without one; None: leave it as sent
    agents: tuple[dict[str, Any], ...]  # the agents of the Provenance the server adds
    record: bool  # whether the server adds a Provenance
    given: dict[str, Any] | None = None  # the client's own Provenance (X-Provenance), stored instead


@dataclass(frozen=True, slots=True)
class _ClientSource:
    uri: str
    agent: dict[str, Any]
    record: bool


def client_uri(client_id: str) -> str:
    """The meta.source of a client the registry holds no source URI for."""
    return f"{CLIENT_SYSTEM}:{quote(client_id, safe='-._~')}"


async def _client_source(server: Server, client_id: str) -> _ClientSource:
    """What the registry says about the client, kept per process for CLIENT_SECONDS (a change to the
    registry reaches every process within that time, as revocations do)."""
    key = ("source", client_id)
    cached = server.memo.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[0] < CLIENT_SECONDS:
        return cached[1]
    assert server.auth is not None
    client = await server.auth.registry.client(client_id)
    name = client.name if client is not None else client_id
    if client is not None and client.organization:
        who: dict[str, Any] = {"reference": client.organization, "display": name}
    else:
        who = {"identifier": {"system": CLIENT_SYSTEM, "value": client_id}, "display": name}
    found = _ClientSource(
        (client.source if client is not None else None) or client_uri(client_id),
        {"type": TRANSMITTER, "who": who},
        not (client is not None and client.own_provenance),
    )
    server.memo[key] = (now, found)
    return found


async def of(server: Server, request: FhirRequest) -> Source | None:
    """The source of a write request: its SMART client (none without authorization), and the client's
    own Provenance if it sent one in `X-Provenance` (which its token must allow it to create). None:
    nothing to set, nothing to record."""
    given = _given(request.header(HEADER))
    grant = getattr(request.access, "grant", None)
    if grant is None or server.auth is None:
        return None if given is None else Source(None, (), False, given)
    if given is not None:
        request.access.require("Provenance", "c")  # storing the client's own Provenance is its create (403)
    client = await _client_source(server, grant.client_id)
    agents: tuple[dict[str, Any], ...] = (client.agent,)
    if grant.fhir_user:
        agents += ({"type": ENTERER, "who": {"reference": grant.fhir_user}},)
    return Source(client.uri, agents, client.record and given is None, given)


def of_operator(uri: str, organization: str | None = None) -> Source:
    """The source of data an operator loads (`fhirlead load --source URI [--organization ...]`): the
    agent is the organisation, else the source system itself (its URI as an identifier)."""
    who: dict[str, Any] = ({"reference": organization} if organization
                           else {"identifier": {"system": URI_SYSTEM, "value": uri}})
    return Source(uri, ({"type": TRANSMITTER, "who": who},), True)


def _given(header: str | None) -> dict[str, Any] | None:
    if header is None:
        return None
    try:  # HTTP header values arrive as latin-1 text: their bytes are the client's UTF-8 JSON
        raw = header.encode("latin-1")
    except UnicodeEncodeError:
        raw = header.encode()
    try:
        given = fhirjson.loads_untrusted(raw)
    except (fhirjson.TooDeep, fhirjson.DuplicateKey, fhirjson.JsonError) as error:
        raise bad_request(f"The X-Provenance header is not a JSON Provenance: {error}") from None
    if not isinstance(given, dict) or given.get("resourceType") != "Provenance":
        raise bad_request("The X-Provenance header must hold a Provenance resource (JSON)")
    return given


def stamp(uow: UnitOfWork, resource: dict[str, Any]) -> None:
    """Give `resource` its source's meta.source if it has none (called before it is indexed: `_source`
    searches it). Nothing outside a sourced unit of work."""
    stamp_source(source_of(uow), resource)


def source_of(uow: UnitOfWork) -> Source | None:
    """The source a unit of work from `unit_of_work` writes for (None: a plain unit)."""
    return uow.source if type(uow) is SourcedUnit else None


def stamp_source(source: Source | None, resource: dict[str, Any]) -> None:
    """`stamp` for the unit of work `unit_of_work(server, source)` will open."""
    if source is not None and source.uri is not None:
        meta = resource.get("meta")
        if meta is None:
            resource["meta"] = {"source": source.uri}
        elif isinstance(meta, dict) and "source" not in meta:
            meta["source"] = source.uri


@asynccontextmanager
async def unit_of_work(server: Server, source: Source | None) -> AsyncIterator[UnitOfWork]:
    """`server.store.unit_of_work()`, whose writes get their source's meta.source and, before it commits,
    their Provenance (see the module doc). Without a source, the plain unit."""
    async with server.store.unit_of_work() as unit:
        if source is None:
            yield unit
            return
        sourced = SourcedUnit(unit, source)
        yield sourced  # type: ignore[misc]
        await sourced.record(server)


def _target_of(reference: Any) -> str | None:
    """`Type/id` of a Provenance.target reference (relative or absolute, versioned or not)."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    path = text.split("/_history/")[0].rstrip("/").split("/")
    return f"{path[-2]}/{path[-1]}" if len(path) >= 2 else None


class SourcedUnit:
    """A unit of work noting the versions written from its source (everything else is the wrapped
    unit's); `record` adds their Provenance."""

    def __init__(self, unit: UnitOfWork, source: Source) -> None:
        self._unit = unit
        self.source = source
        self._noting = source.record or source.given is not None
        self.written: list[tuple[ResourceVersion, str | None]] = []  # with each version's meta.source
        self.covered: set[str] = set()  # Type/id that a Provenance written in this unit targets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._unit, name)

    def _note(self, type_: str, resource: dict[str, Any] | None, version: ResourceVersion) -> None:
        if resource is None:
            return  # a delete
        if type_ in UNTRACKED:
            if type_ == "Provenance":
                targets = resource.get("target")
                for target in targets if isinstance(targets, list) else ():
                    covered = _target_of(target)
                    if covered is not None:
                        self.covered.add(covered)
            return
        meta = resource.get("meta")
        origin = meta.get("source") if isinstance(meta, dict) else None
        self.written.append((version, origin if isinstance(origin, str) else None))

    async def write(self, type_: str, id_: str, resource: dict[str, Any] | None, entries: IndexEntries | None,
                    method: str, expected_version: int | None = None) -> ResourceVersion:
        version = await self._unit.write(type_, id_, resource, entries, method, expected_version)
        if self._noting:
            self._note(type_, resource, version)
        return version

    async def create_many(self, items: list[Any], method: str) -> list[ResourceVersion]:
        versions = await self._unit.create_many(items, method)
        if self._noting:
            for (type_, _id, resource, _entries), version in zip(items, versions, strict=True):
                self._note(type_, resource, version)
        return versions

    async def change_group_members(self, id_: str, head: dict[str, Any], head_entries: IndexEntries | None,
                                   *args: Any, **kwargs: Any) -> ResourceVersion:
        version = await self._unit.change_group_members(id_, head, head_entries, *args, **kwargs)
        if self._noting:
            self._note("Group", head, version)
        return version

    async def record(self, server: Server) -> None:
        """Write the Provenance of what this unit wrote so far (called before it commits, so they commit
        together; `fhirlead load` calls it after each Bundle of a commit that holds several)."""
        written = [item for item in self.written if item[0].reference not in self.covered]
        self.written, self.covered = [], set()
        if not written:
            return
        recorded = clock.instant(clock.now())
        if self.source.given is not None:
            items = [self._given(server, written, recorded)]
        else:
            created = [item for item in written if item[0].version == 1]
            updated = [item for item in written if item[0].version != 1]
            items = [_item(server, self._provenance(group, activity, recorded))
                     for activity, group in (("CREATE", created), ("UPDATE", updated)) if group]
        await self._unit.create_many(items, "POST")

    def _provenance(self, written: list[tuple[ResourceVersion, str | None]], activity: str,
                    recorded: str) -> dict[str, Any]:
        provenance: dict[str, Any] = {
            "resourceType": "Provenance",
            "target": [{"reference": f"{version.type}/{version.id}/_history/{version.version}"}
                       for version, _origin in written],
            "recorded": recorded,
            "activity": ACTIVITY[activity],
            "agent": list(self.source.agents),
        }
        origins = list(dict.fromkeys(origin for _version, origin in written if origin is not None))
        if origins:
            provenance["entity"] = [{"role": "source", "what": {"identifier": {"system": URI_SYSTEM, "value": origin}}}
                                    for origin in origins]
        return provenance

    def _given(self, server: Server, written: list[tuple[ResourceVersion, str | None]],
               recorded: str) -> tuple[str, str, dict[str, Any], IndexEntries]:
        """The client's own Provenance (X-Provenance), targeting what was written, checked like any write."""
        given = self.source.given or {}
        provenance = {**given, "target": [{"reference": f"{version.type}/{version.id}/_history/{version.version}"}
                                          for version, _origin in written]}
        if isinstance(given.get("meta"), dict):
            provenance["meta"] = dict(given["meta"])  # each copy its own (a batch stores one per entry)
        provenance.setdefault("recorded", recorded)
        provenance.pop("id", None)
        stamp(self, provenance)  # type: ignore[arg-type]
        try:
            server.validator.check(provenance, "Provenance")
        except FhirError as error:
            raise FhirError(400, [Issue(issue.code, f"X-Provenance: {issue.diagnostics}", issue.severity,
                                        issue.expression) for issue in error.issues]) from None
        return _item(server, provenance)


def _item(server: Server, provenance: dict[str, Any]) -> tuple[str, str, dict[str, Any], IndexEntries]:
    from fhirlead.interaction.create import new_id  # ids exactly as a create assigns them

    provenance = {"resourceType": "Provenance", "id": new_id(),
                  **{key: value for key, value in provenance.items() if key != "resourceType"}}
    return "Provenance", provenance["id"], provenance, server.extractor.extract(provenance)
