"""Malformed requests through the interactions that are not plain writes (hypothesis): JSON Patch documents
with odd operations, paths (Unicode and huge digits, `~` escapes, leading zeros) and values; searches and
history with odd parameters and prefixes. Never a 5xx; and afterwards the store's integrity and contents
are checked: every resource no successful patch touched reads back byte for byte as before, and every
history is a gapless run of versions."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import httpx
import hypothesis
from fastapi import FastAPI
from hypothesis import strategies as st

from fhirlead import fhirjson
from fhirlead.settings import Settings
from fhirlead.storage.factory import sqlite_path
from tests.conftest import FHIR_JSON
from tests.fuzz import DERANDOMIZE
from tests.fuzz.test_malformed_fhir import ODD_TEXT, VALUES
from tests.tokens import bearer

SEEDS = {
    "Patient/seed-0": b'{"resourceType":"Patient","id":"seed-0","name":[{"family":"Ng","given":["A","B"]}],'
                      b'"birthDate":"1970-01-01","active":true}',
    "Patient/seed-1": b'{"resourceType":"Patient","id":"seed-1","gender":"other",'
                      b'"telecom":[{"system":"phone","value":"1"}]}',
    "Observation/seed-2": b'{"resourceType":"Observation","id":"seed-2","status":"final","code":{"text":"x"},'
                          b'"subject":{"reference":"Patient/seed-0"},"valueQuantity":{"value":1.50}}',
}
HUGE_DIGITS = "9" * 5000
PATHS = st.sampled_from(["/name/²", "/name/0/given/-", f"/name/{HUGE_DIGITS}", "", "/", "/meta", "/id",
                         "/resourceType", "/name/~2", "/name/~1x", "/name/01", "/name/-1", "/birthDate", "name",
                         "/valueQuantity/value", "/telecom/0/value", "/text/div", "/contained/0", "/a/b/c"])
OPS = st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus", 5, None, ""])
PARAMS = st.sampled_from(["_count", "_offset", "_sort", "_include", "_revinclude", "_elements", "_summary", "_total",
                          "_since", "_at", "_id", "birthdate", "name:exact", "identifier", "value-quantity",
                          "_has:Observation:subject:code", "subject:Patient.name", "date", "_lastUpdated",
                          "_list", "_text", "code:in"])
PARAM_VALUES = st.one_of(ODD_TEXT, st.text(max_size=12), st.sampled_from([
    "ge²", "lt1e400", "eq" + HUGE_DIGITS, "Patient:link:Patient", "|", ",,", "-_lastUpdated", "true", "count",
    "2020-13-45", "ap-0", "sa1|http://unitsofmeasure.org|mg", "Observation:subject:Group", "*", "1" * 30]))


@st.composite
def operations(draw: st.DrawFn) -> dict:
    operation: dict = {"op": draw(OPS), "path": draw(st.one_of(PATHS, st.integers(), st.none()))}
    if draw(st.booleans()):
        operation["value"] = draw(VALUES)
    if draw(st.booleans()):
        operation["from"] = draw(PATHS)
    return operation


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    target = draw(st.sampled_from(sorted(SEEDS)))
    kind = draw(st.sampled_from(["patch", "search", "history"]))
    if kind == "patch":
        document = draw(st.one_of(st.lists(operations(), max_size=4), VALUES))
        return "PATCH", target, {"Content-Type": "application/json-patch+json"}, fhirjson.dumps(document)
    query = [(draw(PARAMS), draw(PARAM_VALUES)) for _ in range(draw(st.integers(1, 3)))]
    query_string = str(httpx.QueryParams(query))
    if kind == "search":
        type_ = draw(st.sampled_from(["Patient", "Observation", ""]))
        return "GET", f"{type_}?{query_string}", {}, None
    where = draw(st.sampled_from([f"{target}/_history", "Patient/_history", "_history", f"{target}/_history/²",
                                  f"{target}/_history/{HUGE_DIGITS}", f"{target}/_history/1"]))
    return "GET", f"{where}?{query_string}", {}, None


async def test_malformed_patches_searches_and_history_never_answer_5xx(app: FastAPI, settings: Settings) -> None:
    generated: list[tuple[str, str, dict[str, str], bytes | None]] = []

    @hypothesis.given(request=requests())
    @hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=DERANDOMIZE,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def collect(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
        generated.append(request)

    collect()  # hypothesis drives a synchronous function: the requests are sent afterwards, on this loop
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver/fhir/",
                                 headers={**await bearer(app), "Accept": FHIR_JSON}) as client:
        before = {}
        for reference, body in SEEDS.items():
            answer = await client.put(reference, content=body, headers={"Content-Type": FHIR_JSON})
            assert answer.status_code == 201, answer.text
            before[reference] = (await client.get(reference)).content
        failures, patched = [], set()
        for method, path, headers, body in generated:
            answer = await client.request(method, path, content=body, headers=headers)
            if answer.status_code >= 500 or "resourceType" not in answer.json():
                failures.append((method, path[:200], answer.status_code, answer.text[:200], (body or b"")[:200]))
            elif method == "PATCH" and answer.status_code == 200:
                patched.add(path)
        assert not failures, failures[:5]
        assert len(generated) >= 200

        for reference, body in before.items():
            current = await client.get(reference)
            assert current.status_code == 200
            if reference not in patched:
                assert current.content == body, f"{reference} changed without a successful write"
            history = (await client.get(f"{reference}/_history?_count=1000")).json()
            versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
            assert versions == list(range(1, len(versions) + 1))
        total = (await client.get("Patient?_total=accurate")).json()["total"]
        assert total == sum(reference.startswith("Patient/") for reference in SEEDS)
    if settings.store.startswith("sqlite"):
        with closing(sqlite3.connect(sqlite_path(settings.store))) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
