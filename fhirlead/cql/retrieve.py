"""Data access for the engine: the `DataSource` protocol and an in-memory implementation.

The engine asks for data only through `DataSource.retrieve(request)`, once per distinct retrieve per
patient (results are cached in the evaluation context). A request names the FHIR resource type, the
profile the ELM retrieve targets, and optional code and date filters, so a store-backed source can push
the filters into its search indexes. Results must be the patient's matching resources as FHIR JSON
dicts; the engine never mutates them.

`InMemoryDataSource` serves one patient's resources (e.g. from a Bundle), indexed by type once.
Profile matching follows QI-Core practice: a retrieve of a profile returns resources that declare it in
`meta.profile` (set `require_profile=False` to return every resource of the type instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fhirlead.cql import model
from fhirlead.cql.clinical import Code, ValueSet
from fhirlead.cql.interval import Interval

BASE_PROFILE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    """One ELM Retrieve, evaluated: what to fetch for the current patient.

    - `data_type`: FHIR resource type, e.g. "Condition".
    - `template_id`: the profile canonical the retrieve targets (None or a base FHIR
      StructureDefinition means any resource of the type).
    - `code_path` + `codes`: keep resources whose element at `code_path` (a top-level element name,
      possibly a choice such as `medication`) has a coding in the ValueSet, or equivalent to one of the
      Codes. `codes` None means no code filter.
    - `date_path` + `date_range`: keep resources whose element at `date_path` (a dateTime, instant,
      date or Period) overlaps the interval. None means no date filter.
    """

    data_type: str
    template_id: str | None = None
    code_path: str | None = None
    codes: ValueSet | tuple[Code, ...] | None = None
    date_path: str | None = None
    date_range: Interval | None = None


@dataclass(frozen=True, slots=True)
class DataRequirement:
    """What one compiled Retrieve may ask for, known before any patient is evaluated: the engine
    collects them (`Engine.requirements`) so a store-backed source can fetch a batch of patients' data
    in a few indexed searches. `codes` is the static filter (None: no filter, or, when `dynamic`, codes
    computed per patient, so any resource of the type may be asked for)."""

    data_type: str
    code_path: str | None = None
    codes: ValueSet | tuple[Code, ...] | None = None
    dynamic: bool = False


class DataSource(Protocol):
    """Where one patient's data comes from."""

    def retrieve(self, request: RetrieveRequest) -> Sequence[dict[str, Any]]:
        """The patient's resources matching the request (FHIR JSON, not to be mutated)."""
        ...


def codings_of(value: Any) -> Iterable[tuple[str | None, str | None]]:
    """(system, code) pairs in a raw JSON element: CodeableConcept, Coding, code string or lists."""
    if value is None:
        return ()
    if type(value) is list:
        out: list[tuple[str | None, str | None]] = []
        for v in value:
            out.extend(codings_of(v))
        return out
    if type(value) is dict:
        if "coding" in value:
            return [(c.get("system"), c.get("code")) for c in value.get("coding") or ()]
        if "code" in value:
            return [(value.get("system"), value.get("code"))]
        return ()
    if type(value) is str:
        return [(None, value)]
    return ()


def raw_element(resource: dict[str, Any], path: str) -> Any:
    """The raw JSON of a top-level element, resolving choice elements (`medication` -> medication[x])."""
    v = resource.get(path)
    if v is not None:
        return v
    el = model.element(resource.get("resourceType", ""), path)
    if el is not None and el.type is None:
        for key, _t in el.choices:
            v = resource.get(key)
            if v is not None:
                return v
    return None


def matches_codes(resource: dict[str, Any], path: str, codes: ValueSet | tuple[Code, ...]) -> bool:
    pairs = codings_of(raw_element(resource, path))
    if isinstance(codes, ValueSet):
        return any(codes.contains(system, code) for system, code in pairs)
    keys = {c.key for c in codes}
    return any(Code(code, system).key in keys for system, code in pairs if code is not None)


def declares_profile(resource: dict[str, Any], profile: str | None) -> bool:
    if profile is None or profile.startswith(BASE_PROFILE_PREFIX):
        return True
    return profile in ((resource.get("meta") or {}).get("profile") or ())


class InMemoryDataSource:
    """One patient's resources held in memory, indexed by resource type on construction."""

    def __init__(
        self, resources: Iterable[dict[str, Any]], require_profile: bool = True, tz: int = 0
    ) -> None:
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            rt = r.get("resourceType")
            if rt:
                self.by_type.setdefault(rt, []).append(r)
        self.require_profile = require_profile
        self.tz = tz

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any], **kwargs: Any) -> InMemoryDataSource:
        return cls((e["resource"] for e in bundle.get("entry", ()) if e.get("resource")), **kwargs)

    @property
    def patient(self) -> dict[str, Any] | None:
        patients = self.by_type.get("Patient")
        return patients[0] if patients else None

    def retrieve(self, request: RetrieveRequest) -> list[dict[str, Any]]:
        candidates = self.by_type.get(request.data_type, ())
        out = []
        profile = request.template_id if self.require_profile else None
        codes = request.codes
        for r in candidates:
            if profile is not None and not declares_profile(r, profile):
                continue
            if codes is not None and (
                request.code_path is None or not matches_codes(r, request.code_path, codes)
            ):
                continue
            if (
                request.date_range is not None
                and request.date_path is not None
                and not self._in_range(r, request.date_path, request.date_range)
            ):
                continue
            out.append(r)
        return out

    def _in_range(self, resource: dict[str, Any], path: str, rng: Interval) -> bool:
        from fhirlead.cql.ops.intervals import overlaps

        value = model.get(resource, path)
        if type(value) is model.Node:
            if value.t == "Period":
                raw = value.raw
                lo = model.primitive_value(model.Node("dateTime", raw.get("start")), self.tz)
                hi = model.primitive_value(model.Node("dateTime", raw.get("end")), self.tz)
                value = Interval(lo, hi, lo is not None, True, "DateTime")
            else:
                value = model.primitive_value(value, self.tz)
        if value is None:
            return False
        return overlaps(value, rng) is True
