"""Da Vinci ATR 2.1.0 reconciliation over HTTP: `$member-add`, `$member-remove`,
`$confirm-attribution-list` and `$attribution-status` on a Member Attribution List, with both key forms
(references, identifiers), list status transitions and every refusal (nothing changes when refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FHIR_JSON

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
NPI = "http://hl7.org/fhir/sid/us-npi"
MEMBER_IDS = "http://example.org/payer/member-id"
EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "atr-2.1.0" / "examples"

RESOURCES = [
    {"resourceType": "Patient", "id": "ana", "identifier": [{"system": MEMBER_IDS, "value": "M-1"}]},
    {"resourceType": "Patient", "id": "ben", "identifier": [{"system": MEMBER_IDS, "value": "M-2"}]},
    {"resourceType": "Patient", "id": "twin-a", "identifier": [{"system": MEMBER_IDS, "value": "M-twin"}]},
    {"resourceType": "Patient", "id": "twin-b", "identifier": [{"system": MEMBER_IDS, "value": "M-twin"}]},
    {"resourceType": "Practitioner", "id": "okafor", "identifier": [{"system": NPI, "value": "1234567893"}]},
    {"resourceType": "Organization", "id": "clinic", "identifier": [{"system": NPI, "value": "1999999992"}]},
    {"resourceType": "Coverage", "id": "cov-ana", "status": "active", "beneficiary": {"reference": "Patient/ana"},
     "payor": [{"reference": "Organization/clinic"}]},
]


def attribution_list(id_: str, status: str, *members: dict[str, Any]) -> dict[str, Any]:
    group: dict[str, Any] = {
        "resourceType": "Group", "id": id_,
        "extension": [{"url": ATR + "ext-contractValidityPeriod", "valuePeriod": {"start": "2026-01-01"}},
                      {"url": ATR + "ext-attributionListStatus", "valueCode": status}],
        "type": "person", "actual": True,
    }
    if members:
        group["member"] = list(members)
    return group


def member(patient: str, provider: str, coverage: str | None = None) -> dict[str, Any]:
    extensions = [{"url": ATR + "ext-changeType", "valueCode": "nochange"}]
    if coverage:
        extensions.append({"url": ATR + "ext-coverageReference", "valueReference": {"reference": coverage}})
    extensions.append({"url": ATR + "ext-attributedProvider", "valueReference": {"reference": provider}})
    return {"extension": extensions, "entity": {"reference": patient}}


def parameters(**values: Any) -> dict[str, Any]:
    parts = []
    for name, value in values.items():
        kind = {"memberId": "Identifier", "providerNpi": "Identifier", "attributionPeriod": "Period"}.get(
            name, "Reference")
        parts.append({"name": name, f"value{kind}": value})
    return {"resourceType": "Parameters", "parameter": parts}


def ext(element: dict[str, Any], name: str) -> Any:
    return next((v for e in element.get("extension", []) if e["url"] == ATR + name
                 for k, v in e.items() if k.startswith("value")), None)


@pytest.fixture
async def lists(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for resource in [*RESOURCES, attribution_list("draft", "draft", member("Patient/ben", "Practitioner/okafor")),
                     attribution_list("open", "open", member("Patient/ana", "Practitioner/okafor", "Coverage/cov-ana"),
                                      member("Patient/ana", "Organization/clinic"),
                                      member("Patient/ben", "Practitioner/okafor")),
                     attribution_list("final", "final", member("Patient/ana", "Practitioner/okafor")),
                     {"resourceType": "Group", "id": "plain", "type": "person", "actual": True}]:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, answer.text
    return client


async def invoke(client: httpx.AsyncClient, group: str, operation: str, **values: Any) -> httpx.Response:
    return await client.post(f"Group/{group}/${operation}", json=parameters(**values),
                             headers={"Content-Type": FHIR_JSON})


async def group(client: httpx.AsyncClient, id_: str) -> dict[str, Any]:
    return (await client.get(f"Group/{id_}")).json()


async def test_member_add_by_identifiers_and_by_references(lists: httpx.AsyncClient) -> None:
    answer = await invoke(lists, "draft", "member-add", memberId={"system": MEMBER_IDS, "value": "M-1"},
                          providerNpi={"value": "1234567893"})  # an NPI without system is an NPI
    assert answer.status_code == 200, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome" and answer.headers["etag"] == 'W/"2"'
    added = (await group(lists, "draft"))["member"][-1]
    assert added["entity"] == {"reference": "Patient/ana"}
    assert ext(added, "ext-changeType") == "new"
    assert ext(added, "ext-attributedProvider") == {"reference": "Practitioner/okafor"}

    period = {"start": "2026-03-01", "end": "2026-12-31"}
    answer = await invoke(lists, "open", "member-add", patientReference={"reference": "Patient/ben"},
                          providerReference={"reference": "Organization/clinic"}, attributionPeriod=period)
    assert answer.status_code == 200, answer.text
    added = (await group(lists, "open"))["member"][-1]
    assert added["entity"] == {"reference": "Patient/ben"} and added["period"] == period
    assert ext(added, "ext-attributedProvider") == {"reference": "Organization/clinic"}

    again = await invoke(lists, "open", "member-add", patientReference={"reference": "Patient/ben"},
                         providerReference={"reference": "Organization/clinic"}, attributionPeriod=period)
    assert again.status_code == 200 and again.headers["etag"] == answer.headers["etag"]  # nothing new


async def test_member_add_refusals_change_nothing(lists: httpx.AsyncClient) -> None:
    okafor = {"reference": "Practitioner/okafor"}
    refusals = [
        (dict(memberId={"system": MEMBER_IDS, "value": "nobody"}, providerReference=okafor), 422, "memberId"),
        (dict(memberId={"system": MEMBER_IDS, "value": "M-twin"}, providerReference=okafor), 422, "memberId"),
        (dict(patientReference={"reference": "Patient/ana"}, providerNpi={"system": NPI, "value": "0"}), 422,
         "providerNpi"),
        (dict(patientReference={"reference": "Patient/nobody"}, providerReference=okafor), 422, "patientReference"),
        (dict(patientReference={"reference": "Coverage/cov-ana"}, providerReference=okafor), 422, "patientReference"),
        (dict(patientReference={"reference": "Patient/ana"}, providerReference={"reference": "Patient/ben"}), 422,
         "providerReference"),
        (dict(patientReference={"reference": "Patient/ana"}), 400, "providerReference"),
        (dict(patientReference={"reference": "Patient/ana"}, memberId={"value": "M-1"}, providerReference=okafor),
         400, "patientReference"),
    ]
    for values, status, parameter in refusals:
        answer = await invoke(lists, "draft", "member-add", **values)
        assert answer.status_code == status, (values, answer.text)
        assert parameter in answer.json()["issue"][0]["expression"], (values, answer.text)
    unknown = await lists.post("Group/draft/$member-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "colour", "valueString": "red"}]})
    assert unknown.status_code == 400 and "colour" in unknown.text
    assert (await lists.get("Group/draft/$member-add")).status_code == 405
    for id_, status in (("final", 422), ("plain", 422), ("missing", 404)):
        answer = await invoke(lists, id_, "member-add", patientReference={"reference": "Patient/ana"},
                              providerReference=okafor)
        assert answer.status_code == status, (id_, answer.text)
    for id_ in ("draft", "final", "plain"):
        assert (await group(lists, id_))["meta"]["versionId"] == "1"


async def test_member_remove_marks_on_a_draft_and_removes_on_an_open_list(lists: httpx.AsyncClient) -> None:
    answer = await invoke(lists, "draft", "member-remove", memberId={"system": MEMBER_IDS, "value": "M-2"})
    assert answer.status_code == 200, answer.text
    kept = (await group(lists, "draft"))["member"]
    assert len(kept) == 1 and kept[0]["inactive"] is True and ext(kept[0], "ext-changeType") == "dropped"
    again = await invoke(lists, "draft", "member-remove", patientReference={"reference": "Patient/ben"})
    assert again.status_code == 422  # no longer an active member

    answer = await invoke(lists, "open", "member-remove", patientReference={"reference": "Patient/ana"},
                          providerReference={"reference": "Practitioner/okafor"},
                          coverageReference={"reference": "Coverage/cov-ana"})
    assert answer.status_code == 200, answer.text
    remaining = [(m["entity"]["reference"], ext(m, "ext-attributedProvider")["reference"])
                 for m in (await group(lists, "open"))["member"]]
    assert remaining == [("Patient/ana", "Organization/clinic"), ("Patient/ben", "Practitioner/okafor")]
    answer = await invoke(lists, "open", "member-remove", memberId={"system": MEMBER_IDS, "value": "M-1"})
    assert answer.status_code == 200
    assert [m["entity"]["reference"] for m in (await group(lists, "open"))["member"]] == ["Patient/ben"]
    first = (await lists.get("Group/open/_history/1")).json()  # history keeps what was there
    assert len(first["member"]) == 3
    history = (await lists.get("Group/open/_history")).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]

    wrong_provider = await invoke(lists, "open", "member-remove", patientReference={"reference": "Patient/ben"},
                                  providerNpi={"system": NPI, "value": "1999999992"})
    assert wrong_provider.status_code == 422 and "patientReference" in wrong_provider.json()["issue"][0]["expression"]
    final = await invoke(lists, "final", "member-remove", patientReference={"reference": "Patient/ana"})
    assert final.status_code == 422 and "final" in final.text


async def test_confirmation_makes_the_list_final(lists: httpx.AsyncClient) -> None:
    await invoke(lists, "draft", "member-add", patientReference={"reference": "Patient/ana"},
                 providerReference={"reference": "Practitioner/okafor"})
    await invoke(lists, "draft", "member-remove", patientReference={"reference": "Patient/ben"})  # dropped
    answer = await lists.post("Group/draft/$confirm-attribution-list")
    assert answer.status_code == 200, answer.text
    final = await group(lists, "draft")
    assert ext(final, "ext-attributionListStatus") == "final"
    assert [m["entity"]["reference"] for m in final["member"]] == ["Patient/ana"]  # the dropped one is gone
    refused = await invoke(lists, "draft", "member-add", patientReference={"reference": "Patient/ben"},
                           providerReference={"reference": "Practitioner/okafor"})
    assert refused.status_code == 422 and refused.json()["issue"][0]["code"] == "business-rule"
    again = await lists.post("Group/draft/$confirm-attribution-list")
    assert again.status_code == 200 and again.headers["etag"] == answer.headers["etag"]
    extra = await lists.post("Group/draft/$confirm-attribution-list", json=parameters(patientReference={}))
    assert extra.status_code == 400


async def test_attribution_status_answers_for_one_member(lists: httpx.AsyncClient) -> None:
    answer = await invoke(lists, "open", "attribution-status", memberId={"system": MEMBER_IDS, "value": "M-1"})
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["type"] == "collection"
    found = {e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in bundle["entry"]}
    assert found == {"Group/open", "Patient/ana", "Practitioner/okafor", "Organization/clinic", "Coverage/cov-ana"}
    group_entry = bundle["entry"][0]["resource"]
    assert [m["entity"]["reference"] for m in group_entry["member"]] == ["Patient/ana", "Patient/ana"]
    assert ext(group_entry, "ext-attributionListStatus") == "open"
    by_get = await lists.get("Group/open/$attribution-status?patientReference=Patient/ben")
    assert by_get.status_code == 200 and len(by_get.json()["entry"]) == 3
    absent = await invoke(lists, "draft", "attribution-status", patientReference={"reference": "Patient/ana"})
    assert absent.status_code == 404 and absent.json()["resourceType"] == "OperationOutcome"


async def test_the_operations_are_published(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    group = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Group")
    published = {op["name"]: op["definition"] for op in group["operation"]}
    for name in ("member-add", "member-remove", "confirm-attribution-list", "attribution-status"):
        assert published[name] == f"http://hl7.org/fhir/us/davinci-atr/OperationDefinition/{name}"


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/data (the ATR IG examples) is absent")
async def test_the_ig_examples(client: httpx.AsyncClient) -> None:
    import orjson

    for path in sorted(EXAMPLES.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        if resource["resourceType"] == "Subscription":
            continue
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, (path.name, answer.text)
    status = await invoke(client, "fullexample", "attribution-status", patientReference={"reference": "Patient/1"})
    assert status.status_code == 200, status.text
    types = sorted(e["resource"]["resourceType"] for e in status.json()["entry"])
    assert types == ["Coverage", "Group", "Organization", "Patient"]
    refused = await invoke(client, "fullexample", "member-remove", patientReference={"reference": "Patient/1"})
    assert refused.status_code == 422  # the example list is final
