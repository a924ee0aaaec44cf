"""Malformed FHIR through the write interactions (hypothesis): wrong types where FHIR wants others,
odd and huge numbers, Unicode digits, nested junk, duplicate keys in the JSON text, on create, update and
inside a transaction. Whatever arrives, the answer is an OperationOutcome or a resource, never a 5xx."""

from __future__ import annotations

import httpx
import hypothesis
import orjson
from fastapi import FastAPI
from hypothesis import strategies as st

from tests.conftest import FHIR_JSON
from tests.fuzz import DERANDOMIZE
from tests.tokens import bearer

KEYS = ["id", "meta", "text", "extension", "identifier", "active", "name", "gender", "birthDate", "status",
        "code", "subject", "valueQuantity", "valueInteger", "valueDecimal", "effectiveDateTime", "component",
        "member", "entity", "period", "contained", "resourceType", "_birthDate", "telecom", "address"]
HUGE_NUMBER = "@@huge@@"  # replaced in the JSON text by a number no 64-bit type holds
ODD_TEXT = st.sampled_from(["", " ", "²", "٣", "1e400", "-0", "NaN", "\u0000", "x" * 300, "Patient/", "urn:uuid:",
                            "1.50", "2020-02-30", HUGE_NUMBER])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), ODD_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)
TYPES = ["Patient", "Observation", "Group", "Encounter", "Bundle", "NotAType"]
DUPLICATE = b', "resourceType" : "Patient"'  # spaced: no generated text contains it by chance


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    resource = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
    resource["resourceType"] = type_ = draw(st.sampled_from(TYPES))
    text = orjson.dumps(resource).replace(f'"{HUGE_NUMBER}"'.encode(), b"1" + b"0" * 400)
    if draw(st.booleans()):
        text = text[:-1] + DUPLICATE + b"}"  # resourceType twice: refused (400), whatever else is wrong
    how = draw(st.sampled_from(["create", "update", "transaction"]))
    if how == "create":
        return "POST", type_, text
    if how == "update":
        return "PUT", f"{type_}/fuzz", text
    bundle = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"'
              + type_.encode() + b'"},"resource":' + text + b"}]}")
    return "POST", "", bundle


async def test_malformed_resources_never_answer_5xx(app: FastAPI) -> None:
    generated: list[tuple[str, str, bytes]] = []

    @hypothesis.given(request=requests())
    @hypothesis.settings(max_examples=200, deadline=None, database=None, derandomize=DERANDOMIZE,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def collect(request: tuple[str, str, bytes]) -> None:
        generated.append(request)

    collect()  # hypothesis drives a synchronous function: the requests are sent afterwards, on this loop
    headers = {**await bearer(app), "Content-Type": FHIR_JSON}
    failures = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver/fhir",
                                 headers=headers) as client:
        for method, path, body in generated:
            answer = await client.request(method, path, content=body)
            refused = DUPLICATE not in body or answer.status_code == 400 or path.startswith("NotAType")
            if answer.status_code >= 500 or "resourceType" not in answer.json() or not refused:
                failures.append((method, path, answer.status_code, answer.text[:200], body[:200]))
        assert not failures, failures[:5]
        assert len(generated) >= 150
        assert (await client.get("Patient?_total=accurate")).status_code == 200
