"""A Da Vinci ATR 2.1.0 Member Attribution List (an atr-group `Group`) as the reconciliation operations see
it: its status, its members and who they are attributed to, and how a changed list is written back.

Shared by `$member-add`, `$member-remove`, `$confirm-attribution-list` and `$attribution-status`
(https://hl7.org/fhir/us/davinci-atr/STU2.1/). Every change is a new version of the Group, written with
the version it was read at as precondition (retried on a concurrent change), so history keeps each step.
Members, coverages and providers are named by reference or by identifier; a name that resolves to
nothing or to several resources is a 422 that names the parameter, and nothing is changed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters, sources
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import FhirError, Issue, not_found, operation_outcome
from fhirlead.interaction import conditions
from fhirlead.interaction.incoming import prepare
from fhirlead.interaction.outcome import location, version_headers
from fhirlead.numbers import shown
from fhirlead.parameters import InputParameters
from fhirlead.plugins import Operation, OperationCall
from fhirlead.server import Server
from fhirlead.storage.port import ResourceVersion, UnitOfWork, VersionConflict

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
STATUS = ATR + "ext-attributionListStatus"
CHANGE_TYPE = ATR + "ext-changeType"
COVERAGE = ATR + "ext-coverageReference"
PROVIDER = ATR + "ext-attributedProvider"
PROVIDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")
DEFINITIONS = Path(__file__).resolve().parent.parent / "profiles" / "atr"
ATTEMPTS = 5  # writes retried when another writer changed the list in between
NPI = "http://hl7.org/fhir/sid/us-npi"


@cache
def definition(code: str) -> dict[str, Any]:
    """The IG's OperationDefinition for `code` (profiles/atr)."""
    return fhirjson.loads((DEFINITIONS / f"OperationDefinition-{code}.json").read_bytes())


def group_operation(code: str, handler: Callable[[OperationCall], Awaitable[FhirResponse]],
                    affects_state: bool = True) -> Operation:
    """An ATR operation on Group instances, with the IG's OperationDefinition."""
    return Operation(code, handler, instance=True, resource_types=frozenset({"Group"}), affects_state=affects_state,
                     definition=definition(code))


def read_parameters(call: OperationCall, code: str) -> InputParameters:
    """The operation's parameters; a `providerNpi` without system is an NPI."""
    params = parameters.read(call.request, definition(code))
    npi = params.one("providerNpi")
    if isinstance(npi, dict) and not npi.get("system"):
        params.values["providerNpi"] = [{**npi, "system": NPI}]
    return params


def unprocessable(text: str, *expression: str, code: str = "business-rule") -> FhirError:
    """FHIR's 422: the request is well formed but breaks a rule of the list or names nothing usable."""
    return FhirError(422, [Issue(code, text, expression=expression)])


def relative(base_url: str, reference: Any) -> str | None:
    """`Type/id` of a Reference to this server (absolute URLs under the base included)."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    prefix = base_url + "/"
    return text[len(prefix):] if text.startswith(prefix) else text


def extension_value(element: dict[str, Any], url: str) -> Any:
    for extension in element.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == url:
            return next((v for k, v in extension.items() if k.startswith("value")), None)
    return None


def set_extension(element: dict[str, Any], url: str, key: str, value: Any) -> None:
    """Set (or add) the extension `url` of `element` to `{key: value}`."""
    extensions = element.setdefault("extension", [])
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("url") == url:
            extension.clear()
            extension.update({"url": url, key: value})
            return
    extensions.append({"url": url, key: value})


@dataclass
class Member:
    """One `Group.member` with the references it is matched by, relative (`Type/id`). `key` tells the
    layout which one it is (its position in a whole Group, or the store's member number)."""

    key: int
    element: dict[str, Any]
    patient: str
    provider: str | None
    coverage: str | None

    @property
    def active(self) -> bool:
        return not self.element.get("inactive", False)


class AttributionList(ABC):
    """A Group read at one version, the changes an operation makes to it, and how they are written:
    member by member (`MemberRows`: a change costs the same at 100 and at 100,000 members), or whole
    (`WholeGroup`) for a list stored before members had records of their own."""

    def __init__(self, version: ResourceVersion, head: dict[str, Any], base_url: str) -> None:
        self.version = version
        self.base_url = base_url
        self.head = head  # the Group without `member`
        self.status = extension_value(head, STATUS)
        if self.status is None:
            raise unprocessable(f"Group/{version.id} is not a Da Vinci ATR attribution list: it has no "
                                f"{STATUS} extension", "Group.extension")

    def member(self, key: int, element: Any) -> Member:
        return Member(key, element, relative(self.base_url, element.get("entity")) or "",
                      relative(self.base_url, extension_value(element, PROVIDER)),
                      relative(self.base_url, extension_value(element, COVERAGE)))

    async def matching(self, patient: str, provider: str | None = None, coverage: str | None = None) -> list[Member]:
        return [m for m in await self.find(patient) if m.patient == patient and provider in (None, m.provider)
                and coverage in (None, m.coverage)]

    @abstractmethod
    async def find(self, patient: str | None) -> list[Member]:
        """The current members whose entity is `patient` (None: all)."""

    def require_changeable(self, operation: str) -> None:
        """ATR: member-add and member-remove only while the list is draft or open."""
        if self.status not in ("draft", "open"):
            raise unprocessable(f"${operation} is refused: Group/{self.version.id} is a {shown(str(self.status))} "
                                "attribution list; only draft and open lists change", "Group.extension")

    def set_status(self, status: str) -> None:
        set_extension(self.head, STATUS, "valueCode", status)
        self.status = status

    @abstractmethod
    def add(self, element: dict[str, Any]) -> None:
        """Append a member."""

    @abstractmethod
    def replace(self, member: Member, element: dict[str, Any]) -> None:
        """Give a member new content, in its place."""

    @abstractmethod
    def remove(self, member: Member) -> None:
        """Take a member off the list."""

    @abstractmethod
    async def save(self, server: Server, uow: UnitOfWork) -> ResourceVersion | None:
        """Write the changes as a new version; None when there are none."""


class WholeGroup(AttributionList):
    """The list read and written as one resource."""

    def __init__(self, version: ResourceVersion, group: dict[str, Any], base_url: str) -> None:
        head, elements = split(group)
        super().__init__(version, head, base_url)
        self.elements: list[Any] = elements

    async def find(self, patient: str | None) -> list[Member]:
        members = [self.member(n, e) for n, e in enumerate(self.elements) if isinstance(e, dict)]
        return [m for m in members if patient is None or m.patient == patient]

    def add(self, element: dict[str, Any]) -> None:
        self.elements.append(element)

    def replace(self, member: Member, element: dict[str, Any]) -> None:
        self.elements[member.key] = element

    def remove(self, member: Member) -> None:
        self.elements[member.key] = None

    async def save(self, server: Server, uow: UnitOfWork) -> ResourceVersion | None:
        elements = [e for e in self.elements if e is not None]
        group = {**self.head, "member": elements} if elements else dict(self.head)
        if "quantity" in group:
            group["quantity"] = len(elements)
        if fhirjson.dumps(group) == self.version.body:
            return None
        sources.stamp(uow, group)
        entries = prepare(server, group, "Group")
        return await uow.write("Group", self.version.id, group, entries, "PUT", expected_version=self.version.version)


class MemberRows(AttributionList):
    """The list as the store keeps it: its head, and only the members an operation looks at."""

    def __init__(self, version: ResourceVersion, head: dict[str, Any], base_url: str, reader: Any) -> None:
        super().__init__(version, head, base_url)
        self.reader = reader  # a store or unit of work with port.MemberRows
        self.before = fhirjson.dumps(head)
        self.removed: list[int] = []
        self.replaced: dict[int, dict[str, Any]] = {}
        self.added: list[dict[str, Any]] = []

    async def find(self, patient: str | None) -> list[Member]:
        entities = None if patient is None else [patient, f"{self.base_url}/{patient}"]
        found = await self.reader.find_group_members(self.version.id, entities)
        return [self.member(ordinal, fhirjson.loads(body)) for ordinal, body in found]

    def add(self, element: dict[str, Any]) -> None:
        self.added.append(element)

    def replace(self, member: Member, element: dict[str, Any]) -> None:
        self.replaced[member.key] = element

    def remove(self, member: Member) -> None:
        self.removed.append(member.key)

    async def save(self, server: Server, uow: UnitOfWork) -> ResourceVersion | None:
        if not (self.removed or self.replaced or self.added) and fhirjson.dumps(self.head) == self.before:
            return None
        if "quantity" in self.head:
            self.head["quantity"] += len(self.added) - len(self.removed)
        sourced = "source" not in self.head.get("meta", {})
        sources.stamp(uow, self.head)
        sourced = sourced and "source" in self.head.get("meta", {})  # the head's `_source` index changes
        server.validator.check(self.head, "Group")
        member_of = server.extractor.extract_member
        for element in [*self.replaced.values(), *self.added]:
            server.validator.check({"resourceType": "Group", "type": "person", "actual": True,
                                    "member": [element]}, "Group")
        unchanged = not sourced and without_meta(fhirjson.loads(self.before)) == without_meta(self.head)
        return await uow.change_group_members(
            self.version.id, self.head, None if unchanged else server.extractor.extract_group(self.head).head,
            self.removed, [(key, e, member_of(e)) for key, e in self.replaced.items()],
            [(e, member_of(e)) for e in self.added], "PUT", self.version.version)


def split(group: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    members = group.get("member")
    return {k: v for k, v in group.items() if k != "member"}, list(members) if isinstance(members, list) else []


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def load(server: Server, reader: Any, id_: str, base_url: str) -> AttributionList:
    """The list as of now, from a unit of work or the store: member by member, unless it was stored
    before members had records of their own (then it is read and written whole, which splits it)."""
    version = await reader.read_group_head(id_)
    if version is not None and version.body is not None:
        head = fhirjson.loads(version.body)
        if "member" not in head:
            return MemberRows(version, head, base_url, reader)
    version = await reader.read("Group", id_)
    if version is None or version.body is None:
        raise not_found(f"Group/{id_} is not known")
    return WholeGroup(version, fhirjson.loads(version.body), base_url)


async def change(call: OperationCall, edit: Callable[[AttributionList, UnitOfWork], Awaitable[str]]) -> FhirResponse:
    """Read the list, let `edit` change it (returning what it did, in words), write the new version.
    A concurrent write to the list between the read and the write makes the whole step run again."""
    server, request = call.server, call.request
    for attempt in range(ATTEMPTS):
        try:
            async with sources.unit_of_work(server, await sources.of(server, request)) as uow:
                attribution = await load(server, uow, call.id_ or "", request.base_url)
                said = await edit(attribution, uow)
                version = await attribution.save(server, uow) or attribution.version
        except VersionConflict:
            if attempt == ATTEMPTS - 1:
                raise FhirError(409, [Issue("conflict", f"Group/{call.id_} kept changing; try again")]) from None
            continue
        outcome = operation_outcome([Issue("informational", f"{said} (Group/{version.id} version {version.version})",
                                           severity="information")])
        return FhirResponse(200, outcome, {**version_headers(version), "Location": location(request.base_url, version)})
    raise AssertionError("unreachable")


async def resolve(
    uow: UnitOfWork, call: OperationCall, params: InputParameters, by_reference: str, by_identifier: str | None,
    types: tuple[str, ...], required: bool = True,
) -> str | None:
    """The `Type/id` a pair of alternative parameters names (a Reference, or an Identifier searched
    among `types`); it must exist, be one of `types`, and be named only one way."""
    given = params.given(by_reference, *((by_identifier,) if by_identifier else ()))
    if len(given) > 1:
        raise FhirError(400, [Issue("invalid", f"give either '{by_reference}' or '{by_identifier}', not both",
                                    expression=(by_reference, by_identifier or ""))])
    if not given:
        if required:
            names = f"'{by_reference}'" + (f" or '{by_identifier}'" if by_identifier else "")
            raise FhirError(400, [Issue("required", f"${_code(call)} needs {names}", expression=(by_reference,))])
        return None
    if by_reference in given:
        reference = relative(call.request.base_url, params.one(by_reference))
        type_, _, id_ = (reference or "").partition("/")
        if type_ not in types or not id_ or "/" in id_:
            raise unprocessable(f"'{by_reference}' must reference a {' or '.join(types)} on this server",
                                by_reference, code="invalid")
        found = await uow.read(type_, id_)
        if found is None or found.body is None:
            raise unprocessable(f"'{by_reference}' names {reference}, which does not exist", by_reference,
                                code="not-found")
        return reference
    identifier = params.one(by_identifier)
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(value, str) or not value or (system is not None and not isinstance(system, str)):
        raise FhirError(400, [Issue("invalid", f"'{by_identifier}' needs a value (and a system)",
                                    expression=(by_identifier,))])
    token = f"{system}|{value}" if system else value
    found = [v for type_ in types for v in await conditions.matches(call.server, uow, type_, [("identifier", token)])]
    if len(found) != 1:
        what = "nothing" if not found else "more than one resource"
        raise unprocessable(f"'{by_identifier}' {shown(token)} identifies {what} among {', '.join(types)}",
                            by_identifier, code="not-found" if not found else "multiple-matches")
    return found[0].reference


def _code(call: OperationCall) -> str:
    return call.request.path.rsplit("$", 1)[-1]
