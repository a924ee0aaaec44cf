"""Patients' data for measure evaluation, read from the store a batch of patients at a time.

The engine asks for data one Retrieve at a time, synchronously; the store answers asynchronously and
fast only for indexed searches. So before a batch of patients is evaluated, `StoreData.load` reads all
they can need in a few searches, from the measure's data requirements (`Engine.requirements`, every
Retrieve the measure's logic can reach, known once it is compiled):
- per resource type in the Patient compartment: one search `Type?patient=p1,...,pN` over the patient
  link the CQL context follows (`patient`, else `subject`, else `beneficiary`, else the type's first
  compartment parameter); when every Retrieve of the type filters by a value set or codes, the codes go
  into the search too (`code=...`, in slices of CODE_SLICE), so a patient's hundreds of vital signs are
  not read for a measure that looks at HbA1c;
- types outside the compartment (Medication, Practitioner, Location, ...): the resources of that type
  the batch's own resources reference, by id, each given to the patients whose data references it (a
  [Medication] Retrieve joins the patient's own requests);
- the Patients themselves, by id.
Each patient then gets an `InMemoryDataSource`, which applies every Retrieve's exact filters (value
set membership, dates), profile-agnostic: EHR data rarely declares QI-Core profiles, and the published
test cases give the same counts either way.

Memory holds one batch (BATCH patients) at a time, whatever the population.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhirlead import fhirjson
from fhirlead.cql.clinical import SYSTEM_ALIASES, ValueSet
from fhirlead.cql.retrieve import DataRequirement, InMemoryDataSource
from fhirlead.definitions import patient_compartment
from fhirlead.search.query import Clause, IdMatch, ReferenceMatch, SearchQuery, TokenMatch
from fhirlead.storage.port import Store

BATCH = 100  # patients per batch: one search per type names them all (well under SQLite's compound limits)
CODE_SLICE = 150  # codes per search when codes are pushed into the search
MAX_PUSHED_CODES = 1200  # (with systems' URI/OID aliases) beyond this, reading unfiltered and filtering is cheaper
PAGE = 1000
LINK_PREFERENCE = ("patient", "subject", "beneficiary")


@dataclass(frozen=True)
class TypePlan:
    """How one resource type is read for a batch of patients."""

    type_: str
    link: str | None  # the reference parameter to the patient; None: outside the compartment
    token: str | None = None  # the token parameter the codes are pushed into
    codes: tuple[tuple[str | None, str], ...] = ()  # (system, code) to push; empty: no code filter


def plan(requirements: Iterable[DataRequirement], search: Any) -> list[TypePlan]:
    """One TypePlan per resource type the requirements name (Patient aside: read by id)."""
    by_type: dict[str, list[DataRequirement]] = defaultdict(list)
    for requirement in requirements:
        by_type[requirement.data_type].append(requirement)
    compartment = patient_compartment()
    plans = []
    for type_, found in sorted(by_type.items()):
        if type_ == "Patient":
            continue
        params = compartment.get(type_) or []
        link = next((p for p in LINK_PREFERENCE if p in params), params[0] if params else None)
        token, codes = _pushable(type_, found, search) if link else (None, ())
        plans.append(TypePlan(type_, link, token, codes))
    return plans


def _pushable(type_: str, requirements: list[DataRequirement], search: Any) -> tuple[str | None, tuple]:
    """The token parameter and codes that cover every Retrieve of `type_`, or (None, ()) when some
    Retrieve needs resources of any code (or codes no search can enumerate)."""
    paths = {r.code_path for r in requirements}
    if len(paths) != 1 or None in paths or any(r.codes is None or r.dynamic for r in requirements):
        return None, ()
    token = _token_parameter(type_, paths.pop() or "", search)
    codes: set[tuple[str | None, str]] = set()
    for requirement in requirements:
        filter_ = requirement.codes
        if isinstance(filter_, ValueSet):
            if filter_.whole_systems or filter_.excluded_prefixes:
                return None, ()
            codes |= {(c.system, c.code) for c in filter_.codes if c.code}
        elif all(c.code and c.system and c.code.lower() == c.code.upper() for c in filter_ or ()):
            codes |= {(c.system, c.code) for c in filter_ or () if c.code}
        else:  # a literal code with letters: CQL's code equivalence ignores case, a token search does not
            return None, ()
    # value set membership takes a code system by its URI or its OID (cql.clinical.SYSTEM_ALIASES): so does the search
    codes |= {(SYSTEM_ALIASES[system], code) for system, code in codes if system in SYSTEM_ALIASES}
    if token is None or len(codes) > MAX_PUSHED_CODES or not codes:
        return None, ()
    return token, tuple(sorted(codes, key=lambda c: (c[0] or "", c[1])))


def _token_parameter(type_: str, path: str, search: Any) -> str | None:
    """The token search parameter of `type_` whose expression is the element `path` (a choice such as
    `medication` matches `medication.as(CodeableConcept)`)."""
    for param in search.parameters_for(type_):
        if param.type != "token" or not param.expression:
            continue
        for part in param.expression.split("|"):
            text = part.strip().strip("()")
            if text == f"{type_}.{path}" or text.startswith((f"{type_}.{path}.as(", f"({type_}.{path} as ")):
                return param.code
    return None


class StoreData:
    """Reads batches of patients' data for one compiled measure (or several: their plans merged)."""

    def __init__(self, store: Store, plans: Sequence[TypePlan],
                 admit: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.store, self.plans = store, plans
        self.admit = admit  # which resources the evaluation may see (the caller's access); None: all

    async def load(self, patient_ids: Sequence[str]) -> dict[str, InMemoryDataSource]:
        """Each patient of the batch that exists, with the data the plans name."""
        owned: dict[str, list[dict[str, Any]]] = {}
        for patient in await self._read(SearchQuery(("Patient",), (Clause((IdMatch(tuple(patient_ids)),)),))):
            owned[str(patient.get("id"))] = [patient]
        ids = sorted(owned)
        if not ids:
            return {}
        # a type outside the compartment -> id -> the patients whose resources reference it
        wanted: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        outside = {p.type_ for p in self.plans if p.link is None}
        for type_plan in self.plans:
            if type_plan.link is None:
                continue
            for resource in await self._batch(type_plan, ids):
                owners, referenced = _references(resource, owned, outside)
                for owner in owners:
                    owned[owner].append(resource)
                for type_, id_ in referenced:
                    wanted[type_][id_] |= owners
        for type_, referenced in sorted(wanted.items()):
            query = SearchQuery((type_,), (Clause((IdMatch(tuple(sorted(referenced))),)),))
            for resource in await self._read(query):
                for owner in referenced.get(str(resource.get("id")), ()):
                    owned[owner].append(resource)  # only to the patients whose data points to it
        return {id_: InMemoryDataSource(resources, require_profile=False) for id_, resources in owned.items()}

    async def _batch(self, type_plan: TypePlan, ids: Sequence[str]) -> list[dict[str, Any]]:
        patients = Clause(tuple(ReferenceMatch(type_plan.link or "", "Patient", id_) for id_ in ids))
        found: dict[str, dict[str, Any]] = {}
        for codes in _slices(type_plan.codes) if type_plan.codes else [()]:
            where = (patients,) + ((Clause(tuple(TokenMatch(type_plan.token or "", system, code)
                                                 for system, code in codes)),) if codes else ())
            for resource in await self._read(SearchQuery((type_plan.type_,), where)):
                found.setdefault(str(resource.get("id")), resource)
        return list(found.values())

    async def _read(self, query: SearchQuery) -> list[dict[str, Any]]:
        """Every match of `query` (all pages) that the evaluation may see."""
        query = replace(query, count=PAGE, total="none")
        found = []
        while True:
            page = await self.store.search(query)
            resources = (fhirjson.loads(version.body or b"{}") for version in page.matches)
            found += [r for r in resources if self.admit is None or self.admit(r)]
            if page.next_cursor is None:
                return found
            query = replace(query, cursor=page.next_cursor)


def _slices(codes: Sequence[tuple[str | None, str]]) -> Iterator[Sequence[tuple[str | None, str]]]:
    for start in range(0, len(codes), CODE_SLICE):
        yield codes[start:start + CODE_SLICE]


def _references(resource: Any, patients: dict[str, Any], outside: set[str]
                ) -> tuple[set[str], set[tuple[str, str]]]:
    """The batch's patients `resource` references (anywhere in it), and its references to resources of
    the types outside the compartment."""
    owners: set[str] = set()
    referenced: set[tuple[str, str]] = set()
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            text = node.get("reference")
            if isinstance(text, str):
                type_, _, id_ = text.rpartition("/")
                type_ = type_.rpartition("/")[2]
                if type_ == "Patient" and id_ in patients:
                    owners.add(id_)
                elif type_ in outside and id_:
                    referenced.add((type_, id_))
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return owners, referenced

