"""Enforcement: what an access token may do, checked on every FHIR interaction (deny by default).

SMART App Launch 2.2.0 §Scopes: `user/` and `system/` scopes reach the types and interactions they
name; `patient/` scopes reach only the Patient compartment of the token's patient (R4
CompartmentDefinition Patient); a v2 scope's search parameters (granular scopes, e.g.
`?category=…|laboratory`) narrow further. A resource is visible when one covering scope admits it.

`Policy` is attached to each FhirRequest (`request.access`); the core calls it at a few points that
every path goes through: the dispatch of an interaction (`authorize`), the search flow (types, extra
clauses, the query's chains, and the resources of a page, includes too), history pages and each entry of
a batch or transaction. Searches are narrowed in the database where possible (compartment clause,
granular parameters) and every returned resource is checked once more before it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhirlead import fhirjson
from fhirlead.auth.care import care_of
from fhirlead.auth.grant import Grant
from fhirlead.definitions import patient_compartment
from fhirlead.errors import FhirError, Issue
from fhirlead.interaction.patch import patch_document
from fhirlead.numbers import ascii_int
from fhirlead.patch import json_patch
from fhirlead.search.query import Chain, Clause, Compartment, Has, SearchQuery
from fhirlead.search.types.reference import split_reference
from fhirlead.storage.port import ResourceVersion

PATIENT = "Patient"
AUDIT_EVENT = "AuditEvent"
SUBSCRIPTION = "Subscription"

# dispatch target -> the SMART permission letter it needs
PERMISSIONS = {
    "read:handle": "r", "vread:handle": "r", "history:handle_instance": "r",
    "search_type:handle": "s", "search_compartment:handle": "s", "search_system:handle": "s",
    "history:handle_type": "s", "history:handle_system": "s",
    "create:handle": "c", "update:handle": "u", "patch:handle": "u", "delete:handle": "d",
    "update:handle_conditional": "u", "patch:handle_conditional": "u", "delete:handle_conditional": "d",
}
ENTRY_PERMISSIONS = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
INSTANCE_TARGETS = ("read:handle", "vread:handle", "history:handle_instance", "update:handle", "patch:handle",
                    "delete:handle")
CONDITIONAL_TARGETS = ("update:handle_conditional", "patch:handle_conditional", "delete:handle_conditional")


CARE_CLAUSE_LIMIT = 200  # more patients than this are filtered after the search, not in it


def forbidden(text: str) -> FhirError:
    return FhirError(403, [Issue("forbidden", text)])


@dataclass(frozen=True)
class Filter:
    """One way a resource may be visible: in `patient`'s compartment (None: anywhere), or in the
    compartment of one of the `care` patients (a practitioner's care relationships, auth/care.py), and
    matching every (parameter, value) of `query`."""

    patient: str | None
    query: tuple[tuple[str, str], ...]
    care: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.patient is None and not self.query and self.care is None


class Policy:
    """The access one request's token grants, with the server it checks resources against."""

    def __init__(self, grant: Grant, server: Any) -> None:
        self.grant = grant
        self._server = server
        self.care: frozenset[str] | None = None  # set by prepare() for a practitioner user

    async def prepare(self) -> None:
        """A practitioner user (not an admin) with user/ scopes reaches the patients in their care
        relationships only: find them once per request (auth/care.py caches them per user)."""
        if self._user_is_staff and not self.grant.admin and any(s.context == "user" for s in self.grant.scopes):
            self.care = await care_of(self._server).patients(self.grant.fhir_user or "")

    # -- what the token covers ----------------------------------------------------------------

    def filters(self, type_: str, permission: str) -> list[Filter]:
        """The ways `permission` on `type_` is allowed; empty: not at all."""
        if type_ == AUDIT_EVENT and not self._may_audit(permission):
            return []
        found = []
        for scope in self.grant.covering(type_, permission):
            if scope.context == "patient":
                if self.grant.patient is None or not self._in_compartment_type(type_):
                    continue
                found.append(Filter(self.grant.patient, scope.query))
            elif scope.context == "user" and self._user_patient is not None:
                found.append(Filter(self._user_patient, scope.query))  # a patient user sees their own record
            elif scope.context == "user" and self.grant.fhir_user and not self._user_is_staff:
                continue  # a RelatedPerson user: no user/ access without a patient context
            elif scope.context == "user" and self.care is not None:
                if self._in_compartment_type(type_):
                    found.append(Filter(None, scope.query, self.care))
                else:
                    found.append(Filter(None, scope.query))  # Practitioners, Organizations, Medications…
            else:
                found.append(Filter(None, scope.query))
        return found

    @property
    def _user_patient(self) -> str | None:
        kind, _, id_ = (self.grant.fhir_user or "").partition("/")
        return id_ if kind == PATIENT else None

    @property
    def _user_is_staff(self) -> bool:
        return (self.grant.fhir_user or "").startswith(("Practitioner/", "PractitionerRole/"))

    def _may_audit(self, permission: str) -> bool:
        """AuditEvents are read and searched by an admin user or a system/ scope; created only by a
        system/ scope (an EHR recording its own audit, IHE BALP); never updated or deleted."""
        system = any(s.context == "system" for s in self.grant.covering(AUDIT_EVENT, permission))
        if permission in ("r", "s"):
            return self.grant.admin or system
        return permission == "c" and system

    @staticmethod
    def _in_compartment_type(type_: str) -> bool:
        return type_ == PATIENT or type_ in patient_reach()

    def require(self, type_: str, permission: str) -> list[Filter]:
        filters = self.filters(type_, permission)
        if not filters:
            raise forbidden(f"The access token does not allow {_WORDS[permission]} {type_} resources")
        return filters

    # -- resource checks ----------------------------------------------------------------------

    def admits(self, resource: dict[str, Any], filters: list[Filter]) -> bool:
        if any(f.unrestricted for f in filters):
            return True
        type_ = resource.get("resourceType", "")
        if type_ == "Group" and not any(f.query for f in filters):
            # a 100,000-member attribution list: its patients straight from member.entity (the compartment's
            # `member` parameter), not from its every index entry (seconds)
            patients = _group_patients(resource)
            return any((f.patient is None or f.patient in patients)
                       and (f.care is None or not f.care.isdisjoint(patients)) for f in filters)
        entries = self._server.extractor.extract(resource)
        return any(self._passes(type_, resource.get("id"), entries, f) for f in filters)

    def _passes(self, type_: str, id_: Any, entries: Any, f: Filter) -> bool:
        if f.patient is not None and not _member(type_, id_, entries, f.patient):
            return False
        if f.care is not None and not _in_care(type_, id_, entries, f.care):
            return False
        return all(_token_matches(entries, name, value) for name, value in f.query)

    def version_visible(self, version: ResourceVersion, permission: str = "r") -> bool:
        filters = self.filters(version.type, permission)
        if not filters:
            return False
        if any(f.unrestricted for f in filters):
            return True
        if version.body is None:
            return False  # a delete: nothing left to tell whose it was
        return self.admits(fhirjson.loads(version.body), filters)

    # -- dispatch ------------------------------------------------------------------------------

    async def authorize(self, target: str, arguments: list[Any], request: Any) -> None:
        """Before an interaction runs: refuse what the token does not allow (403)."""
        permission = PERMISSIONS.get(target)
        if permission is None:
            return  # capabilities (public), bundles (checked per entry), operations (checked by their own)
        if target in ("search_system:handle", "history:handle_system"):
            if not any(s.permissions & {permission} for s in self.grant.scopes):
                raise forbidden("The access token allows no searches")
            return
        if target == "search_compartment:handle":
            compartment_id, type_ = arguments
            self.require(PATIENT, "r")
            await self.require_visible(PATIENT, compartment_id, "r")
            if type_ != "*":
                self.require(type_, "s")
            return
        type_ = arguments[0]
        filters = self.require(type_, permission)
        if type_ == SUBSCRIPTION and target in ("create:handle", "update:handle", "patch:handle"):
            self.check_subscriber(request.resource_body() if target != "patch:handle" else None)
        if target in CONDITIONAL_TARGETS and not any(f.unrestricted for f in filters):
            raise forbidden("Conditional writes need a user/ or system/ scope without search parameters")
        if any(f.unrestricted for f in filters):
            return
        if target == "vread:handle":
            await self.require_version_visible(type_, arguments[1], arguments[2])
        elif target in INSTANCE_TARGETS:
            await self.require_visible(type_, arguments[1], "r", missing_ok=permission in ("u", "d"))
        if target in ("create:handle", "update:handle"):
            self.check_new_content(type_, request.resource_body(), permission)
        elif target == "patch:handle":
            await self.check_patched(type_, arguments[1], patch_document(request))

    async def authorize_operation(self, operation: Any, call: Any) -> None:
        """Each operation declares what it needs (`Operation.authorize`); without a declaration only an
        unrestricted user/ or system/ scope on the type may invoke it (reading; also writing when the
        operation changes data)."""
        if operation.authorize is not None:
            await operation.authorize(self, call)
            return
        type_ = call.type_ or "*"
        needed = ("r", "u") if operation.affects_state else ("r",)
        for permission in needed:
            scopes = [s for s in self.grant.scopes if s.context != "patient" and not s.query
                      and (s.type == "*" or s.type == type_) and permission in s.permissions]
            if not scopes or (self.grant.fhir_user and not self._user_is_staff):
                raise forbidden(f"The access token does not allow ${operation.name}")

    async def check_patched(self, type_: str, id_: str, document: Any) -> None:
        """A patch must leave the resource within reach (it is applied here to a copy to find out)."""
        version = await self._server.store.read(type_, id_)
        if version is None or version.body is None:
            return  # the interaction answers 404/410 itself
        try:
            patched = json_patch.apply(fhirjson.loads(version.body), document)
        except FhirError:
            return  # the interaction reports the bad patch
        self.check_new_content(type_, patched, "u")

    async def check_entry(self, entry: Any) -> None:
        """A batch or transaction write entry (its GETs are dispatched like any request)."""
        permission = ENTRY_PERMISSIONS.get(entry.method)
        if permission is None:
            return
        filters = self.require(entry.type_, permission)
        if any(f.unrestricted for f in filters):
            return
        if (entry.id_ is None and entry.method != "POST") or entry.if_none_exist:
            raise forbidden("Conditional writes need a user/ or system/ scope without search parameters")
        if entry.id_ is not None:
            await self.require_visible(entry.type_, entry.id_, "r", missing_ok=entry.method != "PATCH")
        if entry.method in ("POST", "PUT"):
            self.check_new_content(entry.type_, entry.resource, permission)
        elif entry.method == "PATCH" and entry.id_ is not None:
            await self.check_patched(entry.type_, entry.id_, entry.patch_document())

    async def require_visible(self, type_: str, id_: str, permission: str, missing_ok: bool = False) -> None:
        """The current version must be one the token may see (a 404 answers what it may not: the
        token learns nothing of resources outside its reach)."""
        filters = self.filters(type_, permission)
        if any(f.unrestricted for f in filters):
            return
        version = await self._server.store.read(type_, id_)
        if version is None:
            if missing_ok:
                return
            raise FhirError(404, [Issue("not-found", f"{type_}/{id_} is not known")])
        if version.body is None or not self.admits(fhirjson.loads(version.body), filters):
            raise FhirError(404, [Issue("not-found", f"{type_}/{id_} is not known")])

    async def require_version_visible(self, type_: str, id_: str, version_id: str) -> None:
        """vread: the version asked for must be visible itself (a resource may have moved between
        patients; its current version says nothing about the old ones)."""
        number = ascii_int(version_id)
        version = await self._server.store.vread(type_, id_, number) if number is not None else None
        if version is not None and not self.version_visible(version, "r"):
            raise FhirError(404, [Issue("not-found", f"{type_}/{id_} version {version_id} is not known")])

    def check_subscriber(self, subscription: Any) -> None:
        """A Subscription's notifications carry what its criteria match, whoever may read it: only a token
        that reads and searches those types without restriction (a system/ scope, an admin user) may ask
        for them (docs/subscriptions.md). A topic's types are those of its triggers; unknown: every type."""
        criteria = str(subscription.get("criteria") or "") if isinstance(subscription, dict) else ""
        head = criteria.partition("?")[0]
        if head and "/" not in head and ":" not in head:
            types: tuple[str, ...] = (head,)
        else:
            from fhirlead.subscriptions import subscriptions_of
            from fhirlead.subscriptions.topics import built_in_topics

            topics = subscriptions_of(self._server).current.topics or built_in_topics()
            topic = topics.get(criteria)
            types = tuple(sorted(topic.types)) if topic is not None else ("*",)
        for type_ in types:
            for permission in ("r", "s"):
                if not any(f.unrestricted for f in self.filters(type_, permission)):
                    raise forbidden("Subscriptions notify of every matching resource: the access token must read "
                                    f"and search {'every type' if type_ == '*' else type_} without restriction "
                                    "(a system/ scope or an admin user)")

    def check_new_content(self, type_: str, resource: Any, permission: str) -> None:
        """A resource about to be written must stay within what the token reaches."""
        filters = self.require(type_, permission)
        if not isinstance(resource, dict) or not self.admits(resource, filters):
            raise forbidden(f"The access token does not allow writing this {type_} (outside its patient or "
                            "its scope's parameters)")

    # -- search --------------------------------------------------------------------------------

    def search_types(self, types: tuple[str, ...], named: bool) -> tuple[str, ...]:
        """The types a search may cover: all named ones must be allowed; without `_type`, the allowed."""
        allowed = tuple(t for t in types if self.filters(t, "s"))
        if named and len(allowed) != len(types):
            refused = ", ".join(t for t in types if t not in allowed)
            raise forbidden(f"The access token does not allow searching {refused}")
        if not allowed:
            raise forbidden("The access token allows searching none of these types")
        return allowed

    def search_clauses(self, types: tuple[str, ...]) -> tuple[Clause, ...]:
        """Clauses that narrow the search in the database: the patient's compartment when every type
        is reachable only through patient/ scopes of one patient."""
        filters = [f for t in types for f in self.filters(t, "s")]
        params = patient_reach()
        compartments = tuple((t, tuple(params.get(t, ()))) for t in types)
        cares = {f.care for f in filters}
        if len(cares) == 1 and None not in cares and all(f.patient is None for f in filters):
            care = next(iter(cares))  # a practitioner's patients: narrowed in the database while few
            if 0 < len(care) <= CARE_CLAUSE_LIMIT:
                return (Clause(tuple(Compartment(PATIENT, patient, compartments) for patient in sorted(care))),)
            return ()
        patients = {f.patient for f in filters}
        if len(patients) != 1 or None in patients:
            return ()
        return (Clause((Compartment(PATIENT, next(iter(patients)), compartments),)),)

    def check_query(self, query: SearchQuery) -> None:
        """Chains and `_has` read other types: the token must be allowed to search those too."""
        for clause in query.where:
            for predicate in clause.any_of:
                if isinstance(predicate, Chain):
                    for type_ in predicate.types:
                        self.require(type_, "s")
                    self.check_query(SearchQuery(predicate.types, predicate.where))
                elif isinstance(predicate, Has):
                    self.require(predicate.type, "s")
                    self.check_query(SearchQuery((predicate.type,), predicate.where))


# Types outside R4's Patient compartment whose resources are still about one patient, and the reference
# parameters that say which: a care team's Tasks (`Task.for`) carry the patient's care, so a patient's
# token reaches the Tasks for them and a practitioner's those for the patients in their care, not all.
LINKED_TO_PATIENT = {"Task": ("patient",)}


@lru_cache(maxsize=1)
def patient_reach() -> dict[str, tuple[str, ...]]:
    """The Patient compartment's types and parameters (R4 CompartmentDefinition), plus LINKED_TO_PATIENT."""
    return {**patient_compartment(), **LINKED_TO_PATIENT}


_WORDS = {"c": "creating", "r": "reading", "u": "updating", "d": "deleting", "s": "searching"}


def _member(type_: str, id_: Any, entries: Any, patient: str) -> bool:
    if type_ == PATIENT and id_ == patient:
        return True
    params = set(patient_reach().get(type_, ()))
    return any(key in params and ref_type == PATIENT and ref_id == patient
               for key, ref_type, ref_id, _url, _version in entries.reference)


def _group_patients(group: dict[str, Any]) -> set[str]:
    """The ids of the Patients a Group's members are (as the `member` search parameter reads them)."""
    found = set()
    for member in group.get("member") or ():
        entity = member.get("entity") if isinstance(member, dict) else None
        text = entity.get("reference") if isinstance(entity, dict) else None
        if isinstance(text, str):
            type_, id_, _url = split_reference(text)
            if type_ == PATIENT:
                found.add(id_)
    return found


def _in_care(type_: str, id_: Any, entries: Any, care: frozenset[str]) -> bool:
    """In the compartment of one of the `care` patients."""
    if type_ == PATIENT:
        return id_ in care
    params = set(patient_reach().get(type_, ()))
    return any(key in params and ref_type == PATIENT and ref_id in care
               for key, ref_type, ref_id, _url, _version in entries.reference)


def _token_matches(entries: Any, name: str, value: str) -> bool:
    """A granular scope's parameter: token semantics (`code`, `system|code`, `system|`), any of a
    comma-separated list. Parameters of other types admit nothing (deny by default)."""
    for wanted in value.split(","):
        system, bar, code = wanted.rpartition("|")
        for key, found_system, found_code in entries.token:
            if key != name:
                continue
            if not bar and found_code == wanted:
                return True
            if bar and found_system == system and (code == "" or found_code == code):
                return True
    return False


