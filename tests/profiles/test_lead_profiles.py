"""The Lead CareTeam and CarePlan profiles (profiles/lead, docs/lead-profiles.md): the examples load into
the real app over HTTP and the Lead's search parameters find exactly the resources they should; the
definitions name only elements R4 has, their FHIRPath constraints hold on the examples and fail on copies
broken the way they forbid, and nothing in examples/ can be mistaken for a definition."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhirlead import fhirjson
from fhirlead.definitions import search_parameters, structure
from fhirlead.search.extract import plan_param
from fhirlead.search.registry import SearchRegistry, profile_search_parameters

ROOT = Path(__file__).resolve().parents[2]
LEAD = ROOT / "profiles" / "lead"
EXAMPLES = LEAD / "examples"
US_CORE = ROOT / "profiles" / "us-core"
BASE = "http://fhirlead.org/fhir/"
SP_BASE = "http://fhirlead.org/SearchParameter/"
ROLE_CS = BASE + "CodeSystem/lead-care-team-role"
ROLE_VS = BASE + "ValueSet/lead-care-team-role"
# Written in this order so that every reference points to a resource already there.
ORDER = ["Organization", "Practitioner", "PractitionerRole", "Patient", "Condition", "Goal", "CareTeam", "CarePlan"]
NEW_PARAMETERS = {
    "CareTeam": {"navigator": "reference", "managing-organization": "reference"},
    "CarePlan": {"activity-due": "date", "activity-status": "token", "activity-status-due": "composite",
                 "activity-performer-due": "composite"},
}

MARIA = "Practitioner/lead-maria-chen"
PRIYA = "Practitioner/lead-priya-raman"
OKAFOR = "PractitionerRole/lead-okafor-riverbend-navigator"
RIVERBEND = "Organization/lead-riverbend-aco"
LAKESHORE = "Organization/lead-lakeshore-aco"
ROSA_TEAM, WALTER_TEAM, WALTER_2025 = ("lead-rosa-alvarez-care-team", "lead-walter-brooks-care-team",
                                       "lead-walter-brooks-lakeshore-2025")
ROSA_PLAN, WALTER_PLAN = "lead-rosa-alvarez-care-plan", "lead-walter-brooks-care-plan"


def read(path: Path) -> dict[str, Any]:
    return fhirjson.loads_untrusted(path.read_bytes())  # refuses a name repeated within an object


def examples() -> list[dict[str, Any]]:
    found = [read(path) for path in sorted(EXAMPLES.glob("*.json"))]
    return sorted(found, key=lambda r: ORDER.index(r["resourceType"]))


def definitions(kind: str) -> list[dict[str, Any]]:
    return [read(path) for path in sorted(LEAD.glob(f"{kind}-*.json"))]


def example(type_: str, id_: str) -> dict[str, Any]:
    return read(EXAMPLES / f"{type_}-{id_}.json")


# -- over HTTP ---------------------------------------------------------------------------------------------


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> httpx.Response:
    return await client.put(f"{resource['resourceType']}/{resource['id']}", content=fhirjson.dumps(resource),
                            headers={"Content-Type": "application/fhir+json"})


@pytest.fixture
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for resource in examples():
        answer = await put(client, resource)
        assert answer.status_code == 201, (resource["id"], answer.text)
    return client


async def found(client: httpx.AsyncClient, query: str) -> set[str]:
    """The ids a search matches (strict handling: an unknown parameter is a 400, never silently ignored)."""
    answer = await client.get(query, headers={"Prefer": "handling=strict"})
    assert answer.status_code == 200, (query, answer.text)
    bundle = answer.json()
    assert "next" not in [link["relation"] for link in bundle.get("link", [])], query
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"}


async def test_every_example_is_stored_as_written(loaded: httpx.AsyncClient) -> None:
    for resource in examples():
        answer = await loaded.get(f"{resource['resourceType']}/{resource['id']}")
        assert answer.status_code == 200, resource["id"]
        stored = fhirjson.loads(answer.content)  # decimals as written (Goal: `8.0`)
        assert stored["meta"]["profile"] == resource["meta"]["profile"]
        assert {k: v for k, v in stored.items() if k != "meta"} == {k: v for k, v in resource.items() if k != "meta"}


CARE_TEAM_SEARCHES = [
    # navigator: only the accountable navigator, not every participant
    (f"navigator={MARIA}", {ROSA_TEAM}),
    (f"participant={MARIA}", {ROSA_TEAM, WALTER_TEAM}),  # R4's: Maria is also Walter's (former) care manager
    (f"navigator={OKAFOR}", {WALTER_TEAM}),
    ("navigator=PractitionerRole/lead-okafor-riverbend-navigator&status=active", {WALTER_TEAM}),
    ("navigator=Practitioner/lead-dana-whitfield", {WALTER_2025}),
    ("navigator=Practitioner/lead-dana-whitfield&status=active", set()),
    (f"navigator={PRIYA}", set()),  # a participant of both Riverbend teams, navigator of none
    (f"navigator={MARIA},{OKAFOR}", {ROSA_TEAM, WALTER_TEAM}),
    ("navigator:Practitioner=lead-maria-chen", {ROSA_TEAM}),
    ("navigator.name=chen", {ROSA_TEAM}),  # chained through Practitioner.name
    ("navigator:missing=true", set()),
    # managing-organization: the Lead that manages the team
    (f"managing-organization={RIVERBEND}", {ROSA_TEAM, WALTER_TEAM}),
    (f"managing-organization={LAKESHORE}", {WALTER_2025}),
    (f"managing-organization={LAKESHORE}&status=active", set()),
    ("managing-organization.name=Riverbend&subject=Patient/lead-walter-brooks", {WALTER_TEAM}),
    ("subject=Patient/lead-walter-brooks", {WALTER_TEAM, WALTER_2025}),
    ("category=http://loinc.org|LA28865-6", {ROSA_TEAM, WALTER_TEAM, WALTER_2025}),
]


async def wrong(client: httpx.AsyncClient, type_: str, cases: list[tuple[str, set[str]]]) -> dict[str, Any]:
    """The searches (on one store, loaded once) that did not find exactly what they should: query -> found."""
    out = {}
    for query, expected in cases:
        got = await found(client, f"{type_}?{query}")
        if got != expected:
            out[query] = {"found": sorted(got), "expected": sorted(expected)}
    return out


async def test_care_team_searches(loaded: httpx.AsyncClient) -> None:
    assert await wrong(loaded, "CareTeam", CARE_TEAM_SEARCHES) == {}


CARE_PLAN_SEARCHES = [
    # activity-due: scheduledPeriod.end only. Walter's cardiology visit is due 2026-06-12; Rosa's earliest
    # activity is due 2026-10-31, but her blood-pressure calls started 2026-09-28.
    ("activity-due=lt2026-10-01", {WALTER_PLAN}),
    ("activity-date=lt2026-10-01", {ROSA_PLAN, WALTER_PLAN}),  # R4's: any scheduled period starting before
    ("activity-due=2026-10-31", {ROSA_PLAN}),
    ("activity-due=le2026-10-31", {ROSA_PLAN, WALTER_PLAN}),
    ("activity-due=ge2027-02-01", {WALTER_PLAN}),  # the weekly calls, due 2027-02-28
    ("activity-due=2027-01-29", {ROSA_PLAN}),  # the repeat HbA1c
    # each repetition may match another activity: Walter's are due 2027-02-28 (>=) and 2026-06-12 (<)
    ("activity-due=ge2027-01-01&activity-due=lt2027-02-01", {ROSA_PLAN, WALTER_PLAN}),
    ("activity-due=gt2027-03-01", set()),
    ("activity-status=not-started", {ROSA_PLAN, WALTER_PLAN}),
    ("activity-status=completed", {ROSA_PLAN, WALTER_PLAN}),
    ("activity-status=http://hl7.org/fhir/care-plan-activity-status|scheduled", set()),
    # activity-status-due: status and due date of the same activity
    ("activity-status-due=not-started$lt2027-01-01", {WALTER_PLAN}),  # the BMP, due 2026-12-18
    ("activity-status=not-started&activity-due=lt2027-01-01", {ROSA_PLAN, WALTER_PLAN}),  # two activities
    ("activity-status-due=in-progress$le2026-12-31", {ROSA_PLAN, WALTER_PLAN}),
    ("activity-status-due=in-progress$lt2026-12-31", set()),
    ("activity-status-due=completed$lt2026-07-01", {WALTER_PLAN}),
    ("activity-status-due=not-started$lt2026-12-20,in-progress$lt2026-12-20", {WALTER_PLAN}),
    # activity-performer-due: owner and due date of the same activity
    (f"activity-performer-due={PRIYA}$lt2027-01-01", {WALTER_PLAN}),
    (f"performer={PRIYA}&activity-due=lt2027-01-01", {ROSA_PLAN, WALTER_PLAN}),  # two activities
    (f"activity-performer-due={PRIYA}$ge2027-01-01", {ROSA_PLAN}),
    (f"activity-performer-due={OKAFOR}$ge2027-01-01", {WALTER_PLAN}),
    (f"activity-performer-due={MARIA}$gt2026-12-31", set()),
    (f"performer={MARIA}", {ROSA_PLAN}),  # R4's performer already finds an owner's plans
    # the authoring care team, and chains through the Lead CareTeam's parameters
    (f"care-team=CareTeam/{WALTER_TEAM}", {WALTER_PLAN}),
    (f"care-team.navigator={MARIA}", {ROSA_PLAN}),
    (f"care-team.navigator={OKAFOR}&activity-status-due=not-started$lt2027-01-01", {WALTER_PLAN}),
    (f"care-team.managing-organization={RIVERBEND}", {ROSA_PLAN, WALTER_PLAN}),
    (f"care-team.managing-organization={LAKESHORE}", set()),
    ("condition=Condition/lead-walter-transportation-insecurity", {WALTER_PLAN}),
    ("goal=Goal/lead-rosa-hba1c-below-8", {ROSA_PLAN}),
]


async def test_care_plan_searches(loaded: httpx.AsyncClient) -> None:
    assert await wrong(loaded, "CarePlan", CARE_PLAN_SEARCHES) == {}


async def test_a_navigator_hand_over_moves_the_team_between_navigators(loaded: httpx.AsyncClient) -> None:
    team = example("CareTeam", ROSA_TEAM)
    handed_over = copy.deepcopy(team)
    former = handed_over["participant"][0]
    handed_over["participant"][0] = {**former, "member": {"reference": OKAFOR}, "period": {"start": "2026-12-07"}}
    handed_over["participant"].append({
        "role": [{"coding": [{"system": "http://snomed.info/sct", "code": "184154008",
                              "display": "Care manager (occupation)"}]}],
        "member": former["member"], "period": {"start": former["period"]["start"], "end": "2026-12-06"}})
    answer = await put(loaded, handed_over)
    assert answer.status_code == 200, answer.text
    assert await found(loaded, f"CareTeam?navigator={MARIA}") == set()
    assert await found(loaded, f"CareTeam?participant={MARIA}") == {ROSA_TEAM, WALTER_TEAM}
    assert await found(loaded, f"CareTeam?navigator={OKAFOR}") == {ROSA_TEAM, WALTER_TEAM}
    assert await found(loaded, f"CarePlan?care-team.navigator={OKAFOR}") == {ROSA_PLAN, WALTER_PLAN}


REFUSED: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("CareTeam", ROSA_TEAM, lambda t: t["participant"].pop(0), "element CareTeam.participant:navigator"),
    ("CareTeam", ROSA_TEAM, lambda t: t["participant"].append(copy.deepcopy(t["participant"][0])),
     "at most 1 allowed"),
    ("CareTeam", ROSA_TEAM, lambda t: t["participant"][0].update(period={"end": "2027-06-30"}), "lead-careteam-1"),
    ("CareTeam", ROSA_TEAM, lambda t: t["participant"][0].update(member={"reference": RIVERBEND}),
     "CareTeam.participant:navigator.member"),
    ("CareTeam", ROSA_TEAM, lambda t: t["participant"][1].pop("period"), "CareTeam.participant.period"),
    ("CareTeam", ROSA_TEAM, lambda t: t.pop("managingOrganization"), "CareTeam.managingOrganization"),
    ("CareTeam", ROSA_TEAM, lambda t: t.update(category=[{"text": "Encounter team"}]), "category:longitudinal"),
    ("CarePlan", ROSA_PLAN, lambda p: p["activity"][1]["detail"]["scheduledPeriod"].pop("end"), "lead-careplan-1"),
    ("CarePlan", ROSA_PLAN, lambda p: p["activity"][1]["detail"].pop("performer"),
     "CarePlan.activity.detail.performer"),
    ("CarePlan", ROSA_PLAN, lambda p: p["activity"][0]["detail"]["goal"].append({"reference": "Goal/other"}),
     "lead-careplan-2"),
    ("CarePlan", ROSA_PLAN, lambda p: p.pop("careTeam"), "CarePlan.careTeam"),
    ("CarePlan", ROSA_PLAN, lambda p: p.pop("addresses"), "CarePlan.addresses"),
]


async def test_writes_breaking_the_lead_profiles_are_refused(loaded: httpx.AsyncClient) -> None:
    """The server holds a write to the profiles its meta.profile claims (docs/validation.md)."""
    accepted = []
    for type_, id_, breaking, rule in REFUSED:
        resource = example(type_, id_)
        breaking(resource)
        answer = await put(loaded, resource)
        text = " ".join(issue.get("diagnostics", "") for issue in answer.json().get("issue", []))
        if answer.status_code != 400 or rule not in text:
            accepted.append((rule, answer.status_code, text))
    assert accepted == []
    # lead-careplan-3 is a warning: a completed plan with open activities is stored
    closed = example("CarePlan", WALTER_PLAN) | {"status": "completed"}
    assert (await put(loaded, closed)).status_code == 200
    assert await found(loaded, "CarePlan?activity-status-due=in-progress$le2026-12-31&status=completed") == {
        WALTER_PLAN}


async def test_the_capability_statement_lists_the_lead_parameters(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for type_, codes in NEW_PARAMETERS.items():
        listed = {p["name"]: p for p in resources[type_]["searchParam"]}
        for code, kind in codes.items():
            assert listed[code]["type"] == kind, (type_, code)
            assert listed[code]["definition"] == f"{SP_BASE}{type_}-{code}"


# -- the files ---------------------------------------------------------------------------------------------


def test_every_example_parses_and_claims_its_profile() -> None:
    us_core = {read(p)["url"]: read(p)["type"] for p in US_CORE.glob("StructureDefinition-*.json")}
    lead = {d["url"]: d["type"] for d in definitions("StructureDefinition")}
    counts: dict[str, int] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = read(path)
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
        profiles = resource["meta"]["profile"]
        assert len(profiles) == 1, path.name
        claimed = {**us_core, **lead}.get(profiles[0])
        assert claimed == resource["resourceType"], (path.name, profiles[0])
        if resource["resourceType"] in ("CareTeam", "CarePlan"):
            assert profiles[0] in lead, path.name
        counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
    assert counts["CareTeam"] >= 2 and counts["CarePlan"] >= 2


def test_every_reference_in_the_examples_resolves_to_an_example() -> None:
    present = {f"{r['resourceType']}/{r['id']}" for r in examples()}

    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["reference"]] if isinstance(node.get("reference"), str) else []
            return own + [ref for value in node.values() for ref in walk(value)]
        return [ref for value in node for ref in walk(value)] if isinstance(node, list) else []

    for resource in examples():
        assert set(walk(resource)) <= present, (resource["id"], set(walk(resource)) - present)


def test_examples_are_never_taken_for_definitions() -> None:
    """registry.profile_search_parameters reads every JSON file under profiles/, examples/ included, and
    keeps SearchParameters (alone or in a Bundle): examples/ holds neither, so it contributes nothing."""
    assert all(r["resourceType"] not in ("SearchParameter", "Bundle") for r in examples())
    assert profile_search_parameters(EXAMPLES) == []
    taken = {p["url"] for p in profile_search_parameters(LEAD)}
    assert taken == {p["url"] for p in definitions("SearchParameter")}


def _r4_path(path: str) -> str | None:
    """What is wrong with an element path for R4 (None: nothing): every step an element of the resource,
    or of the datatype the previous step reached."""
    elements = structure()
    owner, _, rest = path.partition(".")
    prefix = ""
    for step in rest.split(".") if rest else ():
        here = elements[owner]["elements"]
        if prefix + step not in here:
            return f"{owner} has no element {prefix + step}"
        kinds = here[prefix + step][0]
        if kinds[0] in ("BackboneElement", "Element") and owner not in ("BackboneElement", "Element"):
            prefix += step + "."
        elif len(kinds) == 1:
            owner, prefix = kinds[0], ""
        else:
            owner, prefix = "", ""  # a choice: nothing below it unless the differential types it
    return None


def test_structure_definitions_name_only_r4_elements() -> None:
    for definition in definitions("StructureDefinition"):
        type_ = definition["type"]
        assert type_ in ("CareTeam", "CarePlan")
        assert definition["url"] == f"{BASE}StructureDefinition/{definition['id']}"
        assert definition["derivation"] == "constraint" and definition["fhirVersion"] == "4.0.1"
        assert definition["status"] == "active" and "snapshot" not in definition
        base, _, version = definition["baseDefinition"].partition("|")
        base_file = read(US_CORE / f"StructureDefinition-{base.rsplit('/', 1)[1]}.json")
        assert (base_file["url"], base_file["type"], version) == (base, type_, "6.1.0")
        order = list(structure()[type_]["elements"])
        positions = []
        for element in definition["differential"]["element"]:
            id_ = element["id"]
            assert id_ == type_ or id_.startswith(type_ + "."), id_
            path = ".".join(step.partition(":")[0] for step in id_.split("."))
            assert element["path"] == path, id_
            assert element.get("sliceName") == (id_.rpartition(":")[2] if ":" in id_.split(".")[-1] else None)
            assert _r4_path(path) is None, (id_, _r4_path(path))
            relative = path.partition(".")[2]
            if relative in order and ":" not in id_:  # a slice follows its base element's children
                positions.append(order.index(relative))
        assert positions == sorted(positions), f"{definition['id']}: differential out of R4's element order"


def test_profile_targets_and_bindings_are_known() -> None:
    known = {read(p)["url"] for p in US_CORE.glob("StructureDefinition-*.json")}
    known |= {d["url"] for d in definitions("StructureDefinition")}
    value_sets = {d["url"] for d in definitions("ValueSet")}
    for definition in definitions("StructureDefinition"):
        for element in definition["differential"]["element"]:
            for kind in element.get("type", []):
                assert set(kind.get("targetProfile", [])) <= known, element["id"]
            if "binding" in element:
                assert element["binding"]["valueSet"] in value_sets, element["id"]


# -- the constraints, evaluated on the examples and on broken copies ------------------------------------------

NAVIGATOR = f"participant.where(role.coding.where(system = '{ROLE_CS}' and code = 'navigator').exists())"
# Where each constrained element's instances are, from the resource (what a validator iterates over).
CONTEXTS = {"CareTeam.participant:navigator": NAVIGATOR, "CarePlan.activity.detail": "activity.detail",
            "CareTeam": "", "CarePlan": ""}


def constraints() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for definition in definitions("StructureDefinition"):
        for element in definition["differential"]["element"]:
            for rule in element.get("constraint", []):
                assert {"key", "severity", "human", "expression"} <= set(rule), rule
                out.append((definition["type"], element["id"], rule))
    keys = [rule["key"] for _, _, rule in out]
    assert len(keys) == len(set(keys)) and all(key.startswith("lead-") for key in keys)
    return out


def holds(resource: dict[str, Any], element_id: str, expression: str) -> bool:
    context = CONTEXTS[element_id]
    whole = f"{context}.all({expression})" if context else expression
    result = evaluate(resource, whole, {"resource": resource}, models["r4"])
    return result in ([True], [])


def test_the_constraints_hold_on_every_example() -> None:
    rules = constraints()
    assert {rule["key"] for _, _, rule in rules} == {"lead-careteam-1", "lead-careplan-1", "lead-careplan-2",
                                                    "lead-careplan-3"}
    for resource in examples():
        for type_, element_id, rule in rules:
            if resource["resourceType"] == type_:
                assert holds(resource, element_id, rule["expression"]), (resource["id"], rule["key"])


def _break_navigator_start(team: dict[str, Any]) -> None:
    team["participant"][0]["period"] = {"end": "2027-06-30"}


def _break_due_date(plan: dict[str, Any]) -> None:
    del plan["activity"][1]["detail"]["scheduledPeriod"]["end"]


def _break_due_date_as_timing(plan: dict[str, Any]) -> None:
    detail = plan["activity"][1]["detail"]
    detail["scheduledTiming"] = {"event": [detail.pop("scheduledPeriod")["end"]]}


def _break_goal(plan: dict[str, Any]) -> None:
    plan["activity"][0]["detail"]["goal"].append({"reference": "Goal/lead-walter-weight-within-dry-weight"})


def _break_closed_plan(plan: dict[str, Any]) -> None:
    plan["status"] = "completed"


BROKEN: list[tuple[str, str, str, Callable[[dict[str, Any]], None]]] = [
    ("CareTeam", ROSA_TEAM, "lead-careteam-1", _break_navigator_start),
    ("CarePlan", ROSA_PLAN, "lead-careplan-1", _break_due_date),
    ("CarePlan", ROSA_PLAN, "lead-careplan-1", _break_due_date_as_timing),
    ("CarePlan", ROSA_PLAN, "lead-careplan-2", _break_goal),
    ("CarePlan", WALTER_PLAN, "lead-careplan-3", _break_closed_plan),
]


@pytest.mark.parametrize(("type_", "id_", "key", "breaking"), BROKEN)
def test_each_constraint_fails_on_a_copy_broken_its_way(type_: str, id_: str, key: str,
                                                        breaking: Callable[[dict[str, Any]], None]) -> None:
    resource = example(type_, id_)
    breaking(resource)
    failing = {rule["key"] for t, element_id, rule in constraints()
               if t == type_ and not holds(resource, element_id, rule["expression"])}
    assert failing == {key}


# -- the care-team roles ----------------------------------------------------------------------------------------


def test_role_codes() -> None:
    [codesystem] = definitions("CodeSystem")
    [valueset] = definitions("ValueSet")
    assert codesystem["url"] == ROLE_CS and codesystem["valueSet"] == valueset["url"] == ROLE_VS
    assert codesystem["content"] == "complete" and codesystem["count"] == len(codesystem["concept"])
    assert all(concept.get("definition") for concept in codesystem["concept"])
    included: set[tuple[str, str]] = set()
    for include in valueset["compose"]["include"]:
        if include["system"] == ROLE_CS:
            assert "concept" not in include  # all of the Lead's codes
            included |= {(ROLE_CS, c["code"]) for c in codesystem["concept"]}
        else:
            assert include["system"] == "http://snomed.info/sct"
            for concept in include["concept"]:
                assert concept["extension"][0]["url"].endswith("valueset-concept-definition")
                included.add((include["system"], concept["code"]))
    # every participant of every example team has a role from the value set (other codings may follow)
    for team in (r for r in examples() if r["resourceType"] == "CareTeam"):
        for participant in team["participant"]:
            [role] = participant["role"]
            assert {(c["system"], c["code"]) for c in role["coding"]} & included, (team["id"], role)


# -- the search parameters ----------------------------------------------------------------------------------------


def test_search_parameters_add_what_r4_lacks_and_are_indexed() -> None:
    r4 = [p for p in search_parameters() if not p["url"].startswith("http://hl7.org/fhir/SearchParameter/example")]
    registry = SearchRegistry.default()
    defined = {}
    for parameter in (p for p in definitions("SearchParameter") if p["base"][0] in NEW_PARAMETERS):
        [base] = parameter["base"]
        assert parameter["url"] == SP_BASE + parameter["id"] == SP_BASE + f"{base}-{parameter['code']}"
        clashes = [p["url"] for p in r4 if base in p.get("base", ()) and (
            p["code"] == parameter["code"] or p.get("expression") == parameter["expression"])]
        assert clashes == [], (parameter["code"], clashes)
        param = registry.get(base, parameter["code"])
        assert param is not None and param.url == parameter["url"]
        assert plan_param(registry, base, param) is not None, f"{parameter['code']} is not indexed"
        for component in parameter.get("component", []):
            assert registry.by_url(component["definition"]) is not None, component
        defined.setdefault(base, {})[parameter["code"]] = parameter["type"]
    assert defined == NEW_PARAMETERS
