"""`Patient/[id]/$summary` and `Patient/$summary?identifier=`: the International Patient Summary of one
person over every record linked to them (profiles/identity/OperationDefinition-summary.json; docs/identity.md).

Implements IPS 1.1.0 (STU 1.1, 2022; IPS = http://hl7.org/fhir/uv/ips/STU1.1):
- IPS/OperationDefinition-summary.html: `identifier` (1.1.0 spells it `identifer`: both are taken),
  `profile` (the IPS Bundle profile only), `graph` (none supported: refused), instance and type level;
- IPS/StructureDefinition-Bundle-uv-ips.html with https://hl7.org/fhir/R4/documents.html and
  https://hl7.org/fhir/R4/bundle.html#references: type document, identifier, timestamp, the Composition
  first, exactly one Patient, a fullUrl and a resource in every entry, references resolved in the Bundle;
- IPS/StructureDefinition-Composition-uv-ips.html: status, type LOINC 60591-5, subject, date, author,
  title; each section a title, its LOINC code, generated narrative and at least one entry (1.1.0 allows
  no `section.emptyReason`);
- IPS/ipsStructure.html (the sections and what each holds) and
  IPS/design.html#representing-known-absent-and-not-known: a required section (problems, allergies,
  medications) with nothing to show holds one entry coded `no-problem-info` / `no-allergy-info` /
  `no-medication-info` (IPS/CodeSystem-absent-unknown-uv-ips.html): the server knows only that no readable
  record says anything, not that there is nothing ("no known ..."). Other sections appear only with entries;
- IPS/design.html#provenance: a software-assembled summary's author is a Device (this server);
- IPS/ipsGeneration.html leaves what is relevant to the server: see `SECTIONS`.

The person's data is `$aggregate-patient`'s (`gather`: every linked record, the same fact from several
sources once, references to the records and duplicates rewritten), limited to what the token may read.
Every entry's fullUrl is a urn:uuid (stable for stored resources: derived from their URL), every
reference names one, and every resource a section entry references (transitively: Medication,
Practitioner, Encounter, ...) is added when the store holds it and the token may read it; a reference
that cannot be resolved in the document keeps only its display. Resources entered in error never appear.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhirlead import __version__, fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.clock import instant, now
from fhirlead.definitions import resource_types
from fhirlead.errors import bad_request, fail, not_found
from fhirlead.identity.aggregate import clinical_date, rewrite_references
from fhirlead.operations.access import admit, requiring
from fhirlead.operations.aggregate_patient import Gathered, gather
from fhirlead.operations.identity_links import persons_linking
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search.collect import all_matches

Resource = dict[str, Any]
NAME = "summary"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "identity"
                             / "OperationDefinition-summary.json").read_bytes())
BUNDLE_PROFILE = "http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"
LOINC = "http://loinc.org"
ABSENT = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"
NEVER_ADDED = frozenset({"Patient", "Person", "Provenance", "AuditEvent"})  # the one Patient is the merged one
RESULT = frozenset({"final", "amended", "corrected", "preliminary"})
REPORTED = RESULT | {"partial", "appended"}
_LOCAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def _codes(concept: Any) -> set[str]:
    concepts = concept if isinstance(concept, list) else [concept]
    return {str(c.get("code")) for value in concepts if isinstance(value, dict)
            for c in value.get("coding") or () if isinstance(c, dict) and c.get("code")}


def _refuted(r: Resource) -> bool:
    return bool(_codes(r.get("verificationStatus")) & {"entered-in-error", "refuted"})


def _condition(r: Resource, current: bool) -> bool:
    if r["resourceType"] != "Condition" or _refuted(r):
        return False
    status = _codes(r.get("clinicalStatus"))
    over = bool(status & {"inactive", "remission", "resolved"}) or (
        not status and any(k.startswith("abatement") for k in r))  # no status: over once it has abated
    return over != current


def _observation(r: Resource, *categories: str) -> bool:
    return r["resourceType"] == "Observation" and r.get("status") in RESULT \
        and bool(_codes(r.get("category")) & set(categories))


def _is(type_: str, *statuses: str) -> Callable[[Resource], bool]:
    return lambda r: r["resourceType"] == type_ and r.get("status") in statuses


# ----- narrative cells (every value html.escape'd when the table is written)

def _text(concept: Any) -> str:
    if isinstance(concept, list):
        return "; ".join(t for t in map(_text, concept) if t)
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    codings = [c for c in concept.get("coding") or () if isinstance(c, dict)]
    if not codings:
        return str(concept.get("display") or "")  # a Reference
    coding = next((c for c in codings if c.get("display")), codings[0])  # a display if any coding has one
    return str(coding.get("display") or coding.get("code") or "")


def _value(r: Resource) -> str:
    quantity = r.get("valueQuantity")
    if isinstance(quantity, dict):
        return " ".join(str(quantity[k]) for k in ("comparator", "value", "unit") if quantity.get(k) is not None)
    for key, value in r.items():
        if key.startswith("value"):
            return _text(value) if isinstance(value, dict) else str(value).lower() if isinstance(value, bool) \
                else str(value)
    return "; ".join(f"{_text(c.get('code'))}: {_value(c)}" for c in r.get("component") or () if isinstance(c, dict))


Lookup = Callable[[Any], Resource | None]  # a Reference -> the resource it names in the document
Cell = Callable[[Resource, Lookup], str]


def _field(name: str) -> Cell:
    return lambda r, _: _text(r.get(name)) if isinstance(r.get(name), dict | list) else str(r.get(name) or "")


def _status(r: Resource, _: Lookup) -> str:
    return str(r.get("status") or _text(r.get("clinicalStatus")))


def _date(r: Resource, _: Lookup) -> str:
    return clinical_date(r) or ""


def _medication(r: Resource, find: Lookup) -> str:
    medication = find(r.get("medicationReference"))
    return _text(medication.get("code")) if medication else _text(r.get("medicationCodeableConcept")
                                                                 or r.get("medicationReference"))


def _device(r: Resource, find: Lookup) -> str:
    device = find(r.get("device"))
    names = [n.get("name") for n in (device or {}).get("deviceName") or () if isinstance(n, dict)]
    return str(names[0]) if names and names[0] else _text((device or {}).get("type") or r.get("device"))


def _reactions(r: Resource, _: Lookup) -> str:
    return _text([m for reaction in r.get("reaction") or () for m in reaction.get("manifestation") or ()])


def _dosage(r: Resource, _: Lookup) -> str:
    dosages = r.get("dosage") or r.get("dosageInstruction") or ()
    return "; ".join(str(d["text"]) for d in dosages if isinstance(d, dict) and d.get("text"))


@dataclass(frozen=True)
class Section:
    title: str
    code: str
    display: str
    holds: Callable[[Resource], bool]
    columns: tuple[tuple[str, Cell], ...]
    latest: bool = False  # only the most recent resource of each code
    absent: tuple[str, str, str] | None = None  # required: (type, code, display) of the no-information entry


STATUS, DATE = ("Status", _status), ("Date", _date)
SECTIONS = (
    Section("Problem List", "11450-4", "Problem list - Reported", lambda r: _condition(r, current=True),
            (("Problem", _field("code")), STATUS, ("Onset", _date)),
            absent=("Condition", "no-problem-info", "No information about problems")),
    Section("Allergies and Intolerances", "48765-2", "Allergies and adverse reactions Document",
            lambda r: r["resourceType"] == "AllergyIntolerance" and not _refuted(r),
            (("Substance", _field("code")), STATUS, ("Criticality", _field("criticality")),
             ("Reaction", _reactions)),
            absent=("AllergyIntolerance", "no-allergy-info", "No information about allergies")),
    Section("Medication Summary", "10160-0", "History of Medication use Narrative",
            lambda r: _is("MedicationStatement", "active", "intended", "on-hold")(r)
            or _is("MedicationRequest", "active", "on-hold")(r),
            (("Medication", _medication), STATUS,
             ("Dosage", _dosage), DATE),
            absent=("MedicationStatement", "no-medication-info", "No information about medications")),
    Section("Immunizations", "11369-6", "History of Immunization note", _is("Immunization", "completed"),
            (("Vaccine", _field("vaccineCode")), STATUS, DATE)),
    Section("Diagnostic Results", "30954-2", "Relevant diagnostic tests/laboratory data note",
            lambda r: _observation(r, "laboratory", "imaging") or _is("DiagnosticReport", *REPORTED)(r),
            (("Test", _field("code")), ("Result", lambda r, _: _value(r) or _text(r.get("conclusionCode"))
                                       or str(r.get("conclusion") or "")), DATE)),
    Section("Vital Signs", "8716-3", "Vital signs note", lambda r: _observation(r, "vital-signs"),
            (("Vital sign", _field("code")), ("Value", lambda r, _: _value(r)), DATE), latest=True),
    Section("History of Procedures", "47519-4", "History of Procedures Document",
            _is("Procedure", "completed", "in-progress", "on-hold", "stopped"),
            (("Procedure", _field("code")), STATUS, DATE)),
    Section("Medical Devices", "46264-8", "History of medical device use",
            _is("DeviceUseStatement", "active", "completed", "intended", "on-hold"),
            (("Device", _device), STATUS, ("Date", lambda r, _: clinical_date(r, ("timingDateTime", "timingPeriod",
                                                                                    "recordedOn")) or ""))),
    Section("History of Past Illness", "11348-0", "History of Past illness note",
            lambda r: _condition(r, current=False),
            (("Problem", _field("code")), STATUS, ("Onset", _date),
             ("Abated", lambda r, _: clinical_date(r, ("abatementDateTime", "abatementPeriod", "abatementString"))
              or ""))),
    Section("Plan of Care", "18776-5", "Plan of care note", _is("CarePlan", "active", "on-hold"),
            (("Plan", lambda r, _: str(r.get("title") or r.get("description") or _text(r.get("category")))),
             STATUS, ("Period", _date))),
    Section("Social History", "29762-2", "Social history note", lambda r: _observation(r, "social-history"),
            (("Observation", _field("code")), ("Value", lambda r, _: _value(r)), DATE), latest=True),
    Section("Advance Directives", "42348-3", "Advance healthcare directives",
            lambda r: _is("Consent", "active")(r) and "adr" in _codes(r.get("scope")),
            (("Directive", lambda r, _: _text(r.get("category"))), STATUS,
             ("Date", lambda r, _: clinical_date(r, ("dateTime",)) or ""))),
)


async def summary(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    profile = str(params.one("profile") or BUNDLE_PROFILE).partition("|")
    if profile[0] != BUNDLE_PROFILE or profile[2] not in ("", "1.1.0"):
        raise fail(400, "not-supported", f"$summary answers with {BUNDLE_PROFILE} (1.1.0) only", "profile")
    if params.one("graph") is not None:
        raise fail(400, "not-supported", "$summary supports no graph definitions", "graph")
    named = params.given("identifier", "identifer")
    if (call.id_ is None) != (len(named) == 1):
        raise bad_request("Patient/$summary takes one identifier (system|value), Patient/[id]/$summary none",
                          "identifier")
    found = await gather(call, call.id_ or await _by_identifier(call, params.one(named.pop())))
    base, visible, stamp = call.request.base_url, admit(call), instant(now())
    patient = {k: v for k, v in (found.patient() or {}).items() if k != "link"}  # the records: not in the document
    if not patient:
        raise not_found("None of the person's records may be read")
    chosen = {section: _entries(section, found.kept) for section in SECTIONS}
    empty = {section for section in SECTIONS if section.absent and not chosen[section]}
    for section in empty:
        chosen[section] = [_no_information(section, found.merged_reference)]
    included: dict[str, Resource] = {found.merged_reference: patient}
    for resources in chosen.values():
        included.update((_key(r), r) for r in resources)
    await _add_referenced(call, found, {_key(r): r for r in found.kept}, included, visible)
    author = _author(base)
    urns = {key: _urn(base, key) for key in included} | {_key(author): f"urn:uuid:{author['id']}"}
    composition = _composition(found.merged_reference, _key(author), chosen, empty, included, urns, base, stamp)
    first, *rest = included.items()
    entries = [(f"urn:uuid:{composition['id']}", composition), (urns[first[0]], _linked(first[1], urns, base)),
               (urns[_key(author)], author), *((urns[key], _linked(r, urns, base)) for key, r in rest)]
    return FhirResponse(200, {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": stamp},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document", "timestamp": stamp,
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries]})


async def _by_identifier(call: OperationCall, identifier: dict[str, Any]) -> str:
    """Type level: the id of the Patient record with `identifier` (any of them when all are one person's)."""
    if not identifier.get("value"):
        raise bad_request("'identifier' needs a value", "identifier")
    token = "|".join(_escape(str(identifier[k])) for k in ("system", "value") if identifier.get(k))
    visible = admit(call)
    records = [fhirjson.loads(v.body or b"{}") for v in await all_matches(
        call.server.store, call.server.search, "Patient", [("identifier", token)])]
    records = [r for r in records if visible is None or visible(r)]
    if not records:
        raise not_found(f"No Patient has the identifier {token}")
    persons = set()
    for record in records:
        linking = await persons_linking(call.server, str(record["id"]))
        persons.add(f"Person/{linking[0]['id']}" if linking else f"Patient/{record['id']}")
    if len(persons) > 1:
        raise fail(412, "multiple-matches", f"The identifier {token} names records of {len(persons)} different "
                                            "people; give a more specific identifier or the record's id", "identifier")
    return str(records[0]["id"])


def _escape(text: str) -> str:
    return re.sub(r"([\\,|$])", r"\\\1", text)


def _key(r: Resource) -> str:
    return f"{r['resourceType']}/{r['id']}"


def _urn(base: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{base}/{key}')}"


def _in_error(r: Resource) -> bool:
    return r.get("status") == "entered-in-error" or "entered-in-error" in _codes(r.get("verificationStatus"))


def _entries(section: Section, data: list[Resource]) -> list[Resource]:
    """The section's resources, most recent first (with `latest`, the most recent of each code)."""
    found = sorted((r for r in data if section.holds(r) and not _in_error(r)),
                   key=lambda r: clinical_date(r) or "", reverse=True)
    if not section.latest:
        return found
    seen: set[str] = set()
    out = []
    for r in found:  # newest first: kept unless an earlier one shares a code with it
        codes = _codes(r.get("code")) or {_text(r.get("code"))}
        if not codes & seen:
            out.append(r)
        seen |= codes
    return out


def _no_information(section: Section, patient: str) -> Resource:
    """A required section's entry saying that nothing is known (IPS 1.1.0 absent-unknown-uv-ips)."""
    type_, code, display = section.absent or ("", "", "")
    resource: Resource = {"resourceType": type_, "id": str(uuid.uuid4())}
    concept = {"coding": [{"system": ABSENT, "code": code, "display": display}]}
    if type_ == "MedicationStatement":
        resource.update(status="unknown", medicationCodeableConcept=concept, subject={"reference": patient},
                        effectivePeriod={"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                                        "valueCode": "not-applicable"}]})
    else:
        system = "condition-clinical" if type_ == "Condition" else "allergyintolerance-clinical"
        resource.update(clinicalStatus={"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system}",
                                                    "code": "active"}]}, code=concept)
        resource["subject" if type_ == "Condition" else "patient"] = {"reference": patient}
    return resource


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _local(reference: str, base: str) -> str | None:
    """"Type/id" of a reference to this server (relative, or absolute on its base), else None."""
    if reference.startswith(base + "/"):
        reference = reference[len(base) + 1:]
    match = _LOCAL.match(reference)
    return f"{match.group(1)}/{match.group(2)}" if match and match.group(1) in resource_types() else None


async def _add_referenced(call: OperationCall, found: Gathered, held: dict[str, Resource],
                          included: dict[str, Resource], visible: Any) -> None:
    """Every resource the included ones reference, transitively, that the token may read."""
    queue = list(included.values())
    refused: set[str] = set()
    while queue:
        for reference in _references(queue.pop(0)):
            key = _local(reference, call.request.base_url)
            if key is None or key in included or key in refused:
                continue
            target = held.get(key) or await _read(call, key, found, visible)
            if target is None or _in_error(target):
                refused.add(key)
                continue
            included[key] = target
            queue.append(target)


async def _read(call: OperationCall, key: str, found: Gathered, visible: Any) -> Resource | None:
    type_, _, id_ = key.partition("/")
    if type_ in NEVER_ADDED:
        return None
    version = await call.server.store.read(type_, id_)
    resource = fhirjson.loads(version.body) if version is not None and version.body else None
    if resource is None or (visible is not None and not visible(resource)):
        return None
    return rewrite_references(resource, found.mapping)


def _linked(value: Any, urns: dict[str, str], base: str) -> Any:
    """`value` with every reference naming its entry's urn:uuid; one the document cannot resolve keeps
    only its display (and identifier)."""
    if isinstance(value, list):
        return [_linked(item, urns, base) for item in value]
    if not isinstance(value, dict):
        return value
    out = {k: _linked(v, urns, base) for k, v in value.items()}
    reference = value.get("reference")
    if isinstance(reference, str) and not reference.startswith("#"):
        key = _local(reference, base)
        if key in urns:
            out["reference"] = urns[key]
        else:
            del out["reference"]
            out.setdefault("display", f"{key.partition('/')[0]} not in this summary" if key else "not in this summary")
    return out


def _author(base: str) -> Resource:
    """This server, the software that assembled the summary (IPS: a software-assembled summary's author)."""
    return {"resourceType": "Device", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base}#summary-author")),
            "deviceName": [{"name": "fhirlead", "type": "user-friendly-name"}], "version": [{"value": __version__}],
            "type": {"text": "FHIR server assembling patient summaries"}, "url": base}


def _composition(patient: str, author: str, chosen: dict[Section, list[Resource]], empty: set[Section],
                 included: dict[str, Resource], urns: dict[str, str], base: str, stamp: str) -> Resource:
    def find(reference: Any) -> Resource | None:
        value = reference.get("reference") if isinstance(reference, dict) else None
        return included.get(_local(value, base) or "") if isinstance(value, str) else None

    id_ = str(uuid.uuid4())
    person = included[patient]
    names = "; ".join(" ".join([*n.get("given", []), n.get("family", "")]).strip() or str(n.get("text", ""))
                      for n in person.get("name") or () if isinstance(n, dict)) or "(no name)"
    sections = []
    for section, resources in chosen.items():
        if not resources:
            continue
        if section in empty and section.absent:
            div = f"<p>{html.escape(section.absent[2])}: no record of this person that may be read here holds any.</p>"
        else:
            div = _table([title for title, _ in section.columns],
                         [[cell(r, find) for _, cell in section.columns] for r in resources])
        sections.append({
            "title": section.title,
            "code": {"coding": [{"system": LOINC, "code": section.code, "display": section.display}]},
            "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{div}</div>'},
            "entry": [{"reference": urns[_key(r)]} for r in resources]})
    return {
        "resourceType": "Composition", "id": id_,
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>International Patient '
                 f'Summary of {html.escape(names)}, born {html.escape(str(person.get("birthDate") or "(unknown)"))}'
                 "</p></div>"},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{id_}"},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": urns[patient]}, "date": stamp, "author": [{"reference": urns[author]}],
        "title": "International Patient Summary", "section": sections}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, summary, type_level=True, instance=True, resource_types=frozenset({"Patient"}),
                           definition=DEFINITION, authorize=requiring("Patient")))
