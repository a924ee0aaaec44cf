"""Base rules over HTTP that the HL7 reference validator's published R4 cases found missing
(tools/reference_cases.py): Bundle.entry.fullUrl, base64Binary content and Attachment.size, 1 MB strings,
empty strings and id-only elements (ele-1), que-12 as its text says, and a UTF-8 byte-order mark before
a JSON body. Each refusal is a 400 OperationOutcome naming the element; the valid variants are stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Chalmers"}]}
ORGANIZATION = {"resourceType": "Organization", "id": "o1", "name": "Acme"}
BASE = "https://example.org/fhir"
UUID = "urn:uuid:5d9588d8-3cd6-4b32-8fb7-ad13694e069d"


def refused(answer: httpx.Response) -> list[tuple[str, str]]:
    """(expression, diagnostics) of each issue of a 400 OperationOutcome."""
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return [(issue["expression"][0], issue["diagnostics"]) for issue in body["issue"]]


def at(issues: list[tuple[str, str]], expression: str, *words: str) -> None:
    """Some issue is at `expression` and says each of `words`."""
    assert any(where == expression and all(word in said for word in words) for where, said in issues), issues


async def stored(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    answer = await client.post(resource["resourceType"], json=resource)
    assert answer.status_code == 201, answer.text


def collection(*entries: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    """A document Bundle (bdl-9, bdl-10, bdl-11 met) whose first entry is its Composition."""
    composition = {"resourceType": "Composition", "id": "c1", "status": "final", "type": {"text": "summary"},
                   "subject": {"reference": "Patient/p1"}, "date": "2026-01-05",
                   "author": [{"reference": "Organization/o1"}], "title": "Summary"}
    return {"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:ietf:rfc:3986", "value": UUID},
            "timestamp": "2026-01-05T10:00:00Z",
            "entry": [{"fullUrl": f"{BASE}/Composition/c1", "resource": composition}, *entries]}


def message(*entries: dict[str, Any]) -> dict[str, Any]:
    header = {"resourceType": "MessageHeader", "id": "m1", "eventCoding": {"system": "urn:x", "code": "notify"},
              "source": {"endpoint": "https://example.org/endpoint"}}
    return {"resourceType": "Bundle", "type": "message",
            "entry": [{"fullUrl": f"{BASE}/MessageHeader/m1", "resource": header}, *entries]}


# 1. Bundle.entry.fullUrl (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.fullUrl)


@pytest.mark.parametrize(("bundle", "expression", "words"), [
    # "The Absolute URL for the resource": a relative URL is not one (bundle-duplicate-id, bundle-india, mni-*)
    (collection({"fullUrl": "Patient/p1", "resource": PATIENT}),
     "Bundle.entry[0].fullUrl", ("'Patient/p1'", "must be an absolute URL")),
    (collection({"fullUrl": UUID, "resource": ORGANIZATION}, {"fullUrl": "RelatedPerson/1", "resource": PATIENT}),
     "Bundle.entry[1].fullUrl", ("must be an absolute URL",)),
    # "SHALL NOT disagree with the id in the resource": a RESTful URL ends with the resource's type and id
    # (bundle-ihe-good, document-css, bundle-with-contained)
    (collection({"fullUrl": f"{BASE}/Patient/p2", "resource": PATIENT}),
     "Bundle.entry[0].fullUrl", ("looks like a RESTful server URL", "must end with /Patient/p1")),
    (collection({"fullUrl": "http://52.90.126.238:8080/fhir/baseDstu3/Patient/Patient-p1", "resource": PATIENT}),
     "Bundle.entry[0].fullUrl", ("must end with /Patient/p1",)),
    (collection({"fullUrl": f"{BASE}/Organization/p1", "resource": PATIENT}),
     "Bundle.entry[0].fullUrl", ("must end with /Patient/p1",)),
    # "version-independent"
    (collection({"fullUrl": f"{BASE}/Patient/p1/_history/2", "resource": PATIENT}),
     "Bundle.entry[0].fullUrl", ("version-independent",)),
    # a RESTful fullUrl whose resource has no id (relative_reference_to_fullUrl.*)
    (collection({"fullUrl": f"{BASE}/Organization/666", "resource": {"resourceType": "Organization", "name": "x"}}),
     "Bundle.entry[0].fullUrl", ("has no id", "Organization/666")),
    # "The fullUrl element SHALL have a value": in documents and messages (bundle-with-extensions)
    (document({"resource": PATIENT}), "Bundle.entry[1].fullUrl", ("is required", "document")),
    (message({"resource": PATIENT}), "Bundle.entry[1].fullUrl", ("is required", "message")),
    # the same rules in a Bundle inside a Bundle
    (collection({"fullUrl": f"{BASE}/Bundle/inner",
                 "resource": {**collection({"fullUrl": "Patient/p1", "resource": PATIENT}), "id": "inner"}}),
     "Bundle.entry[0].resource.entry[0].fullUrl", ("must be an absolute URL",)),
])
async def test_a_wrong_full_url_is_refused(client: httpx.AsyncClient, bundle: dict[str, Any], expression: str,
                                           words: tuple[str, ...]) -> None:
    at(refused(await client.post("Bundle", json=bundle)), expression, *words)
    assert (await client.get("Bundle")).json().get("total", 0) == 0  # nothing was stored


@pytest.mark.parametrize("bundle", [
    collection({"fullUrl": f"{BASE}/Patient/p1", "resource": PATIENT},
               {"fullUrl": "http://other.example/fhir/Organization/o1", "resource": ORGANIZATION}),
    # a urn, or a URL that is no RESTful URL, is the resource's identity whatever its id (the element's
    # comment: "the fullURL might be a URN or an absolute URL that does not end with the logical id")
    collection({"fullUrl": UUID, "resource": PATIENT}, {"fullUrl": "urn:oid:1.2.3.4", "resource": ORGANIZATION}),
    collection({"fullUrl": "https://example.org/people/chalmers", "resource": PATIENT},
               {"fullUrl": "http://example.org/fhir/Organisation/o2", "resource": ORGANIZATION}),
    # no id, and a fullUrl that names no resource: nothing to disagree with
    collection({"fullUrl": UUID, "resource": {"resourceType": "Organization", "name": "x"}},
               {"fullUrl": "https://example.org/things/x", "resource": {"resourceType": "Organization", "name": "y"}}),
    # outside documents and messages a fullUrl may be left out
    collection({"resource": PATIENT}, kind="collection"),
    document({"fullUrl": f"{BASE}/Patient/p1", "resource": PATIENT},
             {"fullUrl": f"{BASE}/Organization/o1", "resource": ORGANIZATION}),
    message({"fullUrl": UUID, "resource": PATIENT}),
    # a stored transaction: a create's fullUrl may stand for the id the server will assign
    {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"{BASE}/Patient/new", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]},
])
async def test_a_right_full_url_is_stored(client: httpx.AsyncClient, bundle: dict[str, Any]) -> None:
    await stored(client, bundle)


async def test_validate_reports_a_wrong_full_url(client: httpx.AsyncClient) -> None:
    bundle = collection({"fullUrl": f"{BASE}/Patient/p2", "resource": PATIENT})
    answer = await client.post("Bundle/$validate", json=bundle)
    assert answer.status_code == 200, answer.text
    errors = [(i["expression"][0], i["diagnostics"]) for i in answer.json()["issue"] if i["severity"] == "error"]
    at(errors, "Bundle.entry[0].fullUrl", "must end with /Patient/p1")


async def test_a_transaction_posted_to_the_base_is_not_held_to_the_rule(client: httpx.AsyncClient) -> None:
    """A batch or transaction posted to the base is read by fhirlead/bundles, which validates each entry's
    resource, never the Bundle: a relative fullUrl on a create still works there (the server's id
    replaces it, and references to it are rewritten)."""
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Patient/temp", "resource": {"resourceType": "Patient", "name": [{"family": "Chalmers"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": f"{BASE}/Organization/other", "resource": ORGANIZATION,
         "request": {"method": "PUT", "url": "Organization/o1"}}]}
    answer = await client.post("", json=transaction)
    assert answer.status_code == 200, answer.text
    assert [entry["response"]["status"][:3] for entry in answer.json()["entry"]] == ["201", "201"]


# 2. Primitive content (https://hl7.org/fhir/R4/datatypes.html#primitive)


def media(**attachment: Any) -> dict[str, Any]:
    return {"resourceType": "Media", "status": "completed", "content": {"contentType": "text/plain", **attachment}}


HELLO = base64.b64encode(b"Hello, world!!").decode()  # 14 bytes


@pytest.mark.parametrize(("resource", "expression", "words"), [
    # base64Binary is base64 (attachment-with-invalid-binary, attachment-tx)
    (media(data="%%%2@()()"), "Media.content.data", ("'%%%2@()()'", "not valid base64")),
    (media(data="SGVsbG8."), "Media.content.data", ("not valid base64",)),
    (media(data="SGVsbG8"), "Media.content.data", ("not valid base64",)),  # no padding
    (media(data="SG=sbG8="), "Media.content.data", ("not valid base64",)),  # padding inside
    ({"resourceType": "Parameters", "parameter": [
        {"name": "a", "valueAttachment": {"contentType": "text/plain", "data": "aGVsbG8.d29ybGQ="}}]},
     "Parameters.parameter[0].valueAttachment.data", ("not valid base64",)),
    ({"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"}, "Binary.data", ("base64",)),
    # Attachment.size is the number of bytes `data` decodes to (attachment-with-wrong-size)
    (media(data=HELLO, size=100), "Media.content.size", ("size 100", "14 bytes")),
    # strings at most 1 MB (resource-invalid-eid-2: an element id)
    ({"resourceType": "Location", "name": "A Location",
      "position": {"id": "foobar" * 200_000, "longitude": 1, "latitude": 2}},
     "Location.position.id", ("1,200,000 bytes", "1 MB")),
    ({"resourceType": "Patient", "name": [{"text": "é" * 600_000}]}, "Patient.name[0].text", ("1,200,000 bytes",)),
    # empty strings: the published schema let an empty uri, url, canonical or base64Binary through
    # (patient-extension-bad2)
    ({"resourceType": "Patient", "extension": [{"url": "", "valueString": "x"}]},
     "Patient.extension[0].url", ("shorter than 1 character",)),
    ({"resourceType": "Patient", "implicitRules": ""}, "Patient.implicitRules", ("shorter than 1 character",)),
    ({"resourceType": "Questionnaire", "status": "draft", "derivedFrom": [""]}, "Questionnaire.derivedFrom[0]", ()),
    ({"resourceType": "Endpoint", "status": "active", "connectionType": {"code": "hl7-fhir-rest"},
      "payloadType": [{"text": "any"}], "address": ""}, "Endpoint.address", ()),
    ({"resourceType": "Binary", "contentType": "text/plain", "data": ""}, "Binary.data", ("shorter than 1 character",)),
    ({"resourceType": "Patient", "name": [{"given": ["Ann", ""]}]}, "Patient.name[0].given[1]", ()),
    # an element holding only an id breaks ele-1 (patient-id-only)
    ({"resourceType": "Patient", "_implicitRules": {"id": "i1"}}, "Patient.implicitRules", ("ele-1", "only an id")),
    ({"resourceType": "Patient", "maritalStatus": {"id": "m"}}, "Patient.maritalStatus", ("ele-1",)),
    ({"resourceType": "Patient", "name": [{"given": ["Ann", None], "_given": [None, {"id": "g"}]}]},
     "Patient.name[0].given[1]", ("ele-1",)),
])
async def test_a_wrong_primitive_is_refused(client: httpx.AsyncClient, resource: dict[str, Any], expression: str,
                                            words: tuple[str, ...]) -> None:
    at(refused(await client.post(resource["resourceType"], json=resource)), expression, *words)


@pytest.mark.parametrize("resource", [
    media(data=HELLO, size=14),
    media(data=HELLO),
    media(url="https://example.org/x.txt", size=100),  # no data: size is the size of what url holds
    media(data="SGVs\nbG8s IHdv\ncmxkISE=", size=14),  # whitespace between groups (the R4 regex allows it)
    media(data=base64.b64encode(bytes(range(256)) * 8000).decode(), size=2_048_000),  # no 1 MB limit on base64Binary
    {"resourceType": "Location", "name": "A Location", "position": {"id": "x" * 1000, "longitude": 1, "latitude": 2}},
    {"resourceType": "Patient", "name": [{"text": "é" * 500_000}]},  # 1,000,000 bytes
    {"resourceType": "Patient", "implicitRules": "https://example.org/rules", "_implicitRules": {"id": "i1"}},
    {"resourceType": "Patient", "name": [{"given": ["Ann", "Bo"], "_given": [{"id": "a"}, {"id": "b"}]}]},
    {"resourceType": "Patient", "maritalStatus": {"id": "m", "text": "married"}},
])
async def test_a_right_primitive_is_stored(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    await stored(client, resource)


# 3. que-12 as its text says (https://hl7.org/fhir/R4/questionnaire.html#invs)


def questionnaire(conditions: int, **item: Any) -> dict[str, Any]:
    when = [{"question": str(n), "operator": "exists", "answerBoolean": True} for n in range(conditions)]
    return {"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "q", "type": "string", "enableWhen": when, **item}]}


async def test_two_enable_when_need_an_enable_behavior(client: httpx.AsyncClient) -> None:
    at(refused(await client.post("Questionnaire", json=questionnaire(2))), "Questionnaire.item[0]",
       "que-12", "more than one enableWhen")
    await stored(client, questionnaire(2, enableBehavior="any"))
    await stored(client, questionnaire(1))


# 4. A UTF-8 byte-order mark before the JSON (RFC 8259 section 8.1)

BOM = b"\xef\xbb\xbf"


async def test_a_byte_order_mark_is_ignored(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": FHIR_JSON}
    created = await client.post("Patient", content=BOM + json.dumps(PATIENT).encode(), headers=headers)
    assert created.status_code == 201, created.text
    updated = await client.put("Patient/p9", content=BOM + json.dumps({**PATIENT, "id": "p9"}).encode(),
                               headers=headers)
    assert updated.status_code == 201, updated.text
    assert (await client.get("Patient/p9")).json()["name"] == PATIENT["name"]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": ORGANIZATION, "request": {"method": "PUT", "url": "Organization/o1"}}]}
    answer = await client.post("", content=BOM + json.dumps(transaction).encode(), headers=headers)
    assert answer.status_code == 200, answer.text
    # a BOM is ignored only at the start; elsewhere it is not JSON
    inside = await client.post("Patient", content=b"{" + BOM + b'"resourceType": "Patient"}', headers=headers)
    assert inside.status_code == 400
    only = await client.post("Patient", content=BOM, headers=headers)
    assert only.status_code == 400
