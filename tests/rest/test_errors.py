"""Every failure is an OperationOutcome with the right status, never a 500 or a stack trace."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from tests.conftest import BASE
from tests.rest.helpers import FHIR_JSON, create, issue_codes, patient, put
from tests.tokens import bearer


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient", content=b'{"resourceType": "Patient",', headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["issue"][0]["diagnostics"]


async def test_body_that_is_not_an_object_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient", content=b"[1, 2]", headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400


async def test_wrong_media_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 415
    assert issue_codes(response) == ["not-supported"]


async def test_unsupported_format_is_406(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    assert (await client.get("Patient/p1", params={"_format": "xml"})).status_code == 406
    assert (await client.get("Patient/p1", headers={"Accept": "application/fhir+xml"})).status_code == 406
    assert (await client.get("Patient/p1", params={"_format": "json"})).status_code == 200
    assert (await client.get("Patient/p1", headers={"Accept": "*/*"})).status_code == 200


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient/p1", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH, PUT"
    assert (await client.delete("metadata")).status_code == 405


async def test_resource_type_must_match_the_url(client: httpx.AsyncClient) -> None:
    response = await client.post("Observation", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


async def test_invalid_resource_names_the_failing_element(client: httpx.AsyncClient) -> None:
    response = await create(client, patient(birthDate="1961-13-45", gender="martian"))
    assert response.status_code == 400
    expressions = {e for issue in response.json()["issue"] for e in issue.get("expression", [])}
    assert {"Patient.birthDate", "Patient.gender"} <= expressions


async def test_unknown_element_is_rejected(client: httpx.AsyncClient) -> None:
    response = await create(client, patient(colour="blue"))
    assert response.status_code == 400
    assert "colour" in response.json()["issue"][0]["diagnostics"]


async def test_invalid_contained_resource_is_reported_inside_the_container(client: httpx.AsyncClient) -> None:
    contained = [{"resourceType": "Organization", "id": "o1", "active": "yes"}]
    response = await create(client, patient(contained=contained))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.contained[0].active"]


@pytest.mark.parametrize("element", [{"name": []}, {"name": [{}]}, {"active": None}])
async def test_empty_arrays_objects_and_null_are_rejected(client: httpx.AsyncClient, element: dict) -> None:
    response = await create(client, {"resourceType": "Patient", **element})
    assert response.status_code == 400


async def test_invalid_id_in_update_is_400(client: httpx.AsyncClient) -> None:
    response = await client.put("Patient/bad_id!", json=patient(id="bad_id!"), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400


async def test_failed_write_leaves_nothing_behind(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await put(client, patient(id="p1", gender="martian"))
    assert response.status_code == 400
    current = await client.get("Patient/p1")
    assert current.headers["etag"] == 'W/"1"'
    history = (await client.get("Patient/p1/_history")).json()
    assert len(history["entry"]) == 1


@pytest.fixture
async def small_body_client(tmp_path) -> httpx.AsyncClient:
    app: FastAPI = create_app(Settings(store=f"sqlite:///{tmp_path / 'small.db'}", max_body_bytes=1000))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=await bearer(app)
    ) as c:
        yield c


async def test_body_over_the_limit_is_413(small_body_client: httpx.AsyncClient) -> None:
    big = patient(name=[{"family": "x" * 2000}])
    response = await small_body_client.post("Patient", json=big, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 413
    assert issue_codes(response) == ["too-costly"]
    ok = await small_body_client.post("Patient", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert ok.status_code == 201


async def test_unknown_operation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient/$no-such-operation", json={"resourceType": "Parameters"})
    assert response.status_code == 404


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("Patient/p1/_history/1/extra")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_unexpected_failure_is_logged_without_its_message_or_ids(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fhirlead.interaction.read as read

    details = "Maria Garcia, born 1961-04-12"  # (the traceback shows code lines: keep the data off the raise)

    async def failing(*args: object) -> None:
        raise RuntimeError(details)

    monkeypatch.setattr(read, "handle", failing)
    answer = await client.get("Patient/maria-garcia")
    assert answer.status_code == 500 and answer.json()["resourceType"] == "OperationOutcome"
    assert "RuntimeError" in caplog.text and "read.py" not in answer.text
    assert "Maria" not in caplog.text and "maria-garcia" not in caplog.text and "1961" not in caplog.text


async def test_options_and_trace_get_fhir_answers(client: httpx.AsyncClient) -> None:
    for method, path in (("OPTIONS", "Patient"), ("TRACE", ""), ("OPTIONS", "Patient/x/_history")):
        answer = await client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert answer.json()["resourceType"] == "OperationOutcome" and "GET" in answer.headers["allow"]
    assert (await client.request("OPTIONS", "NoSuchType")).status_code == 404


async def test_a_client_that_disconnects_mid_body_is_not_an_error(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.tokens import bearer

    token = (await bearer(app))["Authorization"].encode()
    messages = [{"type": "http.request", "body": b'{"resourceType":', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/fhir/Patient", "raw_path": b"/fhir/Patient", "query_string": b"", "root_path": "",
             "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/fhir+json"),
                         (b"content-length", b"100"), (b"authorization", token)]}
    with caplog.at_level(logging.ERROR):
        await app(scope, receive, send)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_query_string_that_is_not_utf8_is_not_an_error(app: FastAPI) -> None:
    """A raw byte that is not UTF-8 in the query string once broke the base URL (Starlette's URL decodes the
    query as UTF-8): a 500. The base URL does not depend on the query."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/fhir/metadata", "raw_path": b"/fhir/metadata", "query_string": b"_summary=\xff",
             "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"testserver")]}
    await app(scope, receive, send)
    assert sent[0]["status"] in (200, 400)


async def test_an_update_without_an_id_says_so(client: httpx.AsyncClient) -> None:
    answer = await client.put("Patient/p1", content=b'{"resourceType":"Patient"}',
                              headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 400
    diagnostics = answer.json()["issue"][0]["diagnostics"]
    assert "None" not in diagnostics and "no id" in diagnostics and "p1" in diagnostics


async def test_complex_elements_must_be_objects(client: httpx.AsyncClient) -> None:
    """Found by tests/fuzz: the published R4 schema lets a string or array stand where a complex type
    belongs (no "type": "object"), which then broke the server (500). Now a 400 naming the element."""
    bodies = [
        b'{"resourceType":"Patient","meta":["a"]}',
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":"Patient/1"}',
        b'{"resourceType":"Patient","contained":[{"resourceType":["Patient"]}]}',
    ]
    for body in bodies:
        answer = await client.post("Patient" if b'"Patient","' in body[:30] else "Observation", content=body,
                                    headers={"Content-Type": "application/fhir+json"})
        assert answer.status_code == 400, (body, answer.text[:200])
    transaction = (b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":'
                   b'"Bundle"},"resource":{"meta":["a"],"resourceType":"Bundle"}}]}')
    answer = await client.post("", content=transaction, headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 400
