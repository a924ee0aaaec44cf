"""The audit trail over HTTP: every FHIR interaction (and authorization event) becomes an R4 AuditEvent
shaped after IHE BALP, readable only by an admin user or a system/ scope, never holding a token."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.audit import AuditTrail
from fhirlead.audit.event import Caller, authorization_event
from fhirlead.audit.exchange import Exchange, audit_event
from fhirlead.validation import Validator
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import SYSTEM_CLIENT, system_token

REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
        "display": "RESTful Operation"}
INTERACTION = "http://hl7.org/fhir/restful-interaction"
CLIENT_ID = "urn:ietf:params:oauth:client-id"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUTHORIZATION_EVENT = "http://fhirlead.org/CodeSystem/authorization-event"


# -- helpers ------------------------------------------------------------------------------------

async def audit_events(app: FastAPI, client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], bytes]:
    """Every AuditEvent, read over the API with the client's system/*.cruds token (after the trail has
    written what it had queued), and the raw JSON they came in."""
    await app.state.server.audit.flush()
    response = await client.get("AuditEvent", params={"_count": "1000"})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])], response.content


def subtype(event: dict[str, Any]) -> str:
    return event["subtype"][0]["code"]


def find(events: list[dict[str, Any]], code: str, reference: str | None = None) -> dict[str, Any]:
    """The one event of subtype `code` (touching `reference`, when given)."""
    found = [e for e in events if subtype(e) == code
             and (reference is None or reference in {x.get("what", {}).get("reference") for x in e.get("entity", [])})]
    assert len(found) == 1, (code, reference, [subtype(e) for e in events])
    return found[0]


def entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in event.get("entity", []) if e["role"]["code"] == role]


def references(event: dict[str, Any], role: str) -> set[str]:
    return {e["what"]["reference"] for e in entities(event, role) if "what" in e}


def client_agent(event: dict[str, Any]) -> dict[str, Any]:
    found = [a for a in event["agent"] if a.get("who", {}).get("identifier", {}).get("system") == CLIENT_ID]
    assert len(found) == 1, event["agent"]
    return found[0]


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await client.post(resource["resourceType"], json=resource, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def patient(family: str = "Chalmers") -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Peter"]}], "gender": "male"}


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}


# -- REST interactions --------------------------------------------------------------------------

async def test_a_read_is_audited_with_client_resource_and_patient(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    assert (await client.get(f"Patient/{patient_id}")).status_code == 200
    events, _ = await audit_events(app, client)
    event = find(events, "read")
    assert event["type"] == REST
    assert event["subtype"][0]["system"] == INTERACTION
    assert event["action"] == "R" and event["outcome"] == "0" and "outcomeDesc" not in event
    assert event["recorded"].endswith("Z")
    assert references(event, "4") == {f"Patient/{patient_id}/_history/1"}  # the version disclosed
    assert references(event, "1") == {f"Patient/{patient_id}"}
    assert entities(event, "1")[0]["role"] == {"system": OBJECT_ROLE, "code": "1"}
    agent = client_agent(event)
    assert agent["who"]["identifier"]["value"] == SYSTEM_CLIENT
    assert agent["requestor"] is False
    assert agent["type"]["coding"][1]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
    assert agent["network"] == {"address": "127.0.0.1", "type": "2"}
    assert len(event["agent"]) == 1  # a system token: no user
    assert event["source"]["observer"] == {"display": "fhirlead"}


async def test_a_create_is_audited_with_its_location(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    observation_id = await create(client, observation(f"Patient/{patient_id}"))
    events, _ = await audit_events(app, client)
    created = find(events, "create", f"Patient/{patient_id}/_history/1")
    assert created["action"] == "C" and created["outcome"] == "0"
    assert references(created, "1") == {f"Patient/{patient_id}"}
    about = find(events, "create", f"Observation/{observation_id}/_history/1")
    assert references(about, "1") == {f"Patient/{patient_id}"}  # the subject of the written Observation


async def test_a_search_is_audited_with_its_query_and_patient(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    answer = await client.get("Observation", params={"subject": f"Patient/{patient_id}", "code": "8867-4"})
    assert answer.status_code == 200
    events, _ = await audit_events(app, client)
    event = find(events, "search-type")
    assert event["action"] == "E" and event["outcome"] == "0"
    (query,) = entities(event, "24")
    assert parse_qsl(base64.b64decode(query["query"]).decode()) == [("subject", f"Patient/{patient_id}"),
                                                                     ("code", "8867-4")]
    assert query["description"] == "Observation"
    assert references(event, "1") == {f"Patient/{patient_id}"}


async def test_a_compartment_search_names_the_patient(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    assert (await client.get(f"Patient/{patient_id}/Observation")).status_code == 200
    events, _ = await audit_events(app, client)
    event = find(events, "search-type", f"Patient/{patient_id}")
    assert references(event, "1") == {f"Patient/{patient_id}"}


async def test_a_failed_read_is_audited_as_a_minor_failure(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("Patient/nobody-here")).status_code == 404
    events, _ = await audit_events(app, client)
    event = find(events, "read")
    assert event["outcome"] == "4" and event["outcomeDesc"] == "404 Not Found"
    assert references(event, "4") == {"Patient/nobody-here"}


async def test_a_refused_request_is_audited_with_its_client(app: FastAPI, client: httpx.AsyncClient) -> None:
    token = await system_token(app, scope="system/Observation.rs", client_id="observations-only")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                 headers={"Authorization": f"Bearer {token}"}) as limited:
        assert (await limited.get("Patient/p1")).status_code == 403
    events, raw = await audit_events(app, client)
    event = find(events, "read", "Patient/p1")
    assert event["outcome"] == "4" and event["outcomeDesc"] == "403 Forbidden"
    assert client_agent(event)["who"]["identifier"]["value"] == "observations-only"
    assert token.encode() not in raw


async def test_a_request_without_a_token_is_audited_without_a_client(app: FastAPI, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as anonymous:
        assert (await anonymous.get("Patient", params={"name": "Chalmers"})).status_code == 401
        assert (await anonymous.get("metadata")).status_code == 200  # public: not audited
    events, _ = await audit_events(app, client)
    event = find(events, "search-type")
    assert event["outcome"] == "4" and event["outcomeDesc"] == "401 Unauthorized"
    assert event["agent"] == [{"type": {"coding": [{"system": DCM, "code": "110153"}]},
                               "requestor": True, "network": {"address": "127.0.0.1", "type": "2"}}]
    assert not [e for e in events if subtype(e) == "capabilities"]


async def test_writes_and_bundles_are_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    resource = {**patient("Chalk"), "id": patient_id}
    assert (await client.put(f"Patient/{patient_id}", json=resource,
                             headers={"Content-Type": FHIR_JSON})).status_code == 200
    assert (await client.delete(f"Patient/{patient_id}")).status_code in (200, 204)
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": patient("Tx"),
         "request": {"method": "POST", "url": "Patient"}}]}
    answer = await client.post("", json=transaction, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 200, answer.text
    location = answer.json()["entry"][0]["response"]["location"]
    events, _ = await audit_events(app, client)
    updated = find(events, "update")
    assert updated["action"] == "U" and references(updated, "4") == {f"Patient/{patient_id}/_history/2"}
    deleted = find(events, "delete")
    assert deleted["action"] == "D" and references(deleted, "1") == {f"Patient/{patient_id}"}
    bundle = find(events, "transaction")
    assert bundle["action"] == "E"
    assert references(bundle, "4") == {location.split("/fhir/")[-1]}


async def test_audit_events_are_readable_by_system_scopes_only(app: FastAPI, client: httpx.AsyncClient) -> None:
    await create(client, patient())
    events, _ = await audit_events(app, client)
    assert events  # system/*.cruds reads them
    assert (await client.get(f"AuditEvent/{events[0]['id']}")).status_code == 200
    token = await system_token(app, scope="system/Observation.rs", client_id="observations-only")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("AuditEvent", headers=headers)).status_code == 403
    assert (await client.get(f"AuditEvent/{events[0]['id']}", headers=headers)).status_code == 403


async def test_no_audit_event_holds_a_bearer_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    token = client.headers["Authorization"].split(" ", 1)[1]
    patient_id = await create(client, patient())
    await client.get(f"Patient/{patient_id}")
    await client.get("Patient", params={"name": "Chalmers", "access_token": token})
    await client.get("Patient/nobody-here")
    _, raw = await audit_events(app, client)
    assert b"AuditEvent" in raw
    assert token.encode() not in raw
    for part in token.split("."):  # nor any part of it
        assert part.encode() not in raw
    assert base64.b64encode(token.encode()) not in raw


async def test_stored_audit_events_pass_the_servers_validator(app: FastAPI, client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    await client.get(f"Patient/{patient_id}")
    await client.get("Observation", params={"subject": f"Patient/{patient_id}"})
    await client.get("Patient/nobody-here")
    app.state.server.audit.authorization(kind="login", outcome=False, username="alice", client_id="app",
                                         address="10.1.2.3", detail="invalid_grant")
    events, _ = await audit_events(app, client)
    assert len(events) >= 5
    validator = Validator()
    for event in events:
        validator.check(event, "AuditEvent")


async def test_application_logs_carry_no_query_content(app: FastAPI, client: httpx.AsyncClient,
                                                       caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    original = app.state.server.audit.rest

    def failing(**fields: Any) -> None:  # an audit failure is logged: without the request's content
        fields["segments"] = None
        original(**fields)

    monkeypatch.setattr(app.state.server.audit, "rest", failing)
    await client.get("Patient", params={"name": "Zebulon-Secretname"})
    await client.get("Patient/nobody-here", params={"_elements": "Zebulon-Secretname"})
    await app.state.server.audit.flush()
    server_lines = [record.getMessage() for record in caplog.records if record.name.startswith("fhirlead")]
    assert any("could not record" in line for line in server_lines)
    assert not [line for line in server_lines if "Zebulon-Secretname" in line]


async def test_a_failing_audit_call_does_not_fail_the_request(app: FastAPI, client: httpx.AsyncClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("audit down")

    monkeypatch.setattr(app.state.server.audit, "rest", broken)
    assert (await client.get("Patient")).status_code == 200


# -- authorization events ------------------------------------------------------------------------

async def test_authorization_events_are_recorded(app: FastAPI, client: httpx.AsyncClient) -> None:
    audit = app.state.server.audit
    audit.authorization(kind="login", outcome=False, username="alice", client_id="growth-chart",
                        address="10.1.2.3", detail="invalid username or password")
    audit.authorization(kind="token-issued", outcome=True, client_id="growth-chart", username="alice",
                        fhir_user="Practitioner/pr1", address="10.1.2.3")
    audit.authorization(kind="token-refused", outcome=False, client_id="growth-chart", detail="invalid_grant")
    audit.authorization(kind="token-revoked", outcome=True, client_id="growth-chart")
    events, _ = await audit_events(app, client)
    by_kind = {subtype(e): e for e in events if e["type"]["code"] == "110114"}
    assert set(by_kind) == {"110122", "token-issued", "token-refused", "token-revoked"}
    login = by_kind["110122"]
    assert login["type"] == {"system": DCM, "code": "110114", "display": "User Authentication"}
    assert login["subtype"] == [{"system": DCM, "code": "110122", "display": "Login"}]
    assert login["action"] == "E" and login["outcome"] == "4"
    assert login["outcomeDesc"] == "invalid username or password"
    user = next(a for a in login["agent"] if a["requestor"])
    assert user["altId"] == "alice" and "who" not in user
    assert client_agent(login)["network"] == {"address": "10.1.2.3", "type": "2"}
    issued = by_kind["token-issued"]
    assert issued["subtype"][0]["system"] == AUTHORIZATION_EVENT and issued["outcome"] == "0"
    user = next(a for a in issued["agent"] if a["requestor"])
    assert user["who"] == {"reference": "Practitioner/pr1"} and user["altId"] == "alice"
    assert by_kind["token-refused"]["outcome"] == "4" and by_kind["token-refused"]["outcomeDesc"] == "invalid_grant"
    assert by_kind["token-revoked"]["outcome"] == "0"


def test_unknown_authorization_kinds_are_refused_by_the_builder() -> None:
    with pytest.raises(ValueError):
        authorization_event(kind="sign-in", success=True, caller=Caller(client_id="x"))


# -- the builder and the exchange, without HTTP ---------------------------------------------------

VALIDATOR = Validator()


def built(**fields: Any) -> dict[str, Any]:
    event = audit_event(Exchange(**fields), Caller(client_id="app", username="alice",
                                                   fhir_user="Practitioner/pr1", address="::1"))
    VALIDATOR.check(event, "AuditEvent")
    return event


def test_a_patient_context_token_names_its_patient() -> None:
    event = built(method="GET", segments=("Observation",), status=200, params=(("code", "8867-4"),),
                  token_patient="p9")
    assert references(event, "1") == {"Patient/p9"}
    user = next(a for a in event["agent"] if a["requestor"])
    assert user["type"]["coding"][0]["code"] == "IRCP"


def test_subtypes_and_actions_follow_the_interaction() -> None:
    cases = [
        (("GET", ("Patient", "p1", "_history", "2")), ("vread", "R")),
        (("GET", ("Patient", "p1", "_history")), ("history-instance", "R")),
        (("GET", ("Patient", "_history")), ("history-type", "R")),
        (("GET", ()), ("search-system", "E")),
        (("POST", ("Patient", "_search")), ("search-type", "E")),
        (("PATCH", ("Patient", "p1")), ("patch", "U")),
        (("DELETE", ("Patient",)), ("delete", "D")),
        (("POST", ("Patient", "p1", "$everything")), ("operation", "E")),
        (("GET", ("Nonsense", "x")), ("read", "R")),
    ]
    for (method, segments), (interaction, action) in cases:
        event = built(method=method, segments=segments, status=200)
        assert (subtype(event), event["action"]) == (interaction, action), (method, segments)


def test_update_as_create_export_and_body_patients() -> None:
    created = built(method="PUT", segments=("Observation", "o1"), status=201, etag='W/"1"',
                    body=orjson.dumps(observation("Patient/p7")))
    assert created["action"] == "C" and references(created, "4") == {"Observation/o1/_history/1"}
    assert references(created, "1") == {"Patient/p7"}
    export = built(method="GET", segments=("Patient", "$export"), status=202, params=(("_type", "Observation"),))
    assert [c["code"] for c in export["subtype"]] == ["operation", "110106"]
    big = built(method="GET", segments=("Observation", "o1"), status=200,
                body=orjson.dumps({**observation("Patient/p7"), "note": [{"text": "x" * 70_000}]}))
    assert references(big, "1") == set()  # large bodies are not parsed on the request path


def test_query_strings_drop_credentials() -> None:
    event = built(method="GET", segments=("Patient",), status=200,
                  params=(("name", "x"), ("access_token", "secret-token")))
    (query,) = entities(event, "24")
    assert base64.b64decode(query["query"]) == b"name=x"


# -- the trail's queue and writer -----------------------------------------------------------------

class FlakyStore:
    """A store whose first unit of work fails (the retry must still write every event)."""

    def __init__(self) -> None:
        self.attempts = 0
        self.written: list[str] = []

    def unit_of_work(self) -> Any:
        store = self

        class Unit:
            async def __aenter__(self) -> Unit:
                store.attempts += 1
                if store.attempts == 1:
                    raise OSError("disk on fire")
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            async def create_many(self, items: list[Any], method: str) -> list[Any]:
                assert method == "POST"
                store.written += [id_ for _type, id_, _resource, _entries in items]
                return []

        return Unit()


class NoExtractor:
    def extract(self, resource: dict[str, Any]) -> None:
        return None


async def test_a_failed_write_is_retried_and_what_the_queue_cannot_hold_waits_for_its_batches(
        caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    trail = AuditTrail(store, NoExtractor(), capacity=2, batch=10)
    await trail.start()
    for number in range(6):  # more than the queue holds: none is dropped
        trail.authorization(kind="login", outcome=True, username=f"user-{number}", client_id="app")
    await trail.stop()
    assert len(store.written) == len(set(store.written)) == 6
    assert trail.written == 6 and trail.lost == 0
    assert "retrying once" in caplog.text and "user-" not in caplog.text
    assert "audit queue is full" in caplog.text
    # the first batch (2) failed and was retried event by event (2); the 4 beyond the queue went in
    # batches of what the queue holds (2 writes), not one write each
    assert store.attempts == 5


async def test_stop_writes_what_is_queued(app: FastAPI, client: httpx.AsyncClient) -> None:
    server = app.state.server
    await server.audit.flush()
    before = server.audit.written
    for _ in range(50):
        server.audit.authorization(kind="token-issued", outcome=True, client_id="app")
    await server.audit.stop()
    assert server.audit.written == before + 50 and not server.audit.running
    server.audit.authorization(kind="token-issued", outcome=True, client_id="app")  # stopped: logged, no raise
    await server.audit.start()  # the fixture stops it again


def test_odd_requests_still_make_valid_events() -> None:
    """Whatever arrives (empty paths, unknown types, junk ids, failures, non-JSON bodies), the event is
    valid R4 and names nothing that is not a well-formed reference."""
    bodies = (None, b"", b"not json", b"[1, 2]", orjson.dumps({"resourceType": "Bundle", "entry": [1, {"x": 2}]}),
              orjson.dumps({"resourceType": "Bundle", "entry": {"response": {"location": "Patient/p1"}}}))
    paths = ((), ("metadata",), ("Nonsense", "x y"), ("Patient", "a b", "_history", "v 1"), ("Patient", "$export"),
             ("Patient", "p1", "$everything"), ("_history",), ("$meta",), ("Patient", "p1", "Observation"),
             ("Patient", "p1", "_history"), ("Patient", "p1", "a", "b", "c"))
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for segments in paths:
            for status, body in zip((200, 201, 404, 500, 200, 200), bodies, strict=True):
                event = built(method=method, segments=segments, status=status, body=body,
                              location="http://x/fhir/Patient/n1/_history/1" if status == 201 else None)
                for entity in event.get("entity", []):
                    reference = entity.get("what", {}).get("reference")
                    assert reference is None or " " not in reference, (method, segments, reference)


async def test_the_trail_stays_out_of_system_history_and_untyped_searches(app: FastAPI,
                                                                         client: httpx.AsyncClient) -> None:
    patient_id = await create(client, patient())
    await client.get(f"Patient/{patient_id}")
    await app.state.server.audit.flush()
    assert (await client.get("AuditEvent/_history")).json().get("entry")
    assert (await client.get("AuditEvent")).json().get("entry")
    for everything in ("_history", "", f"Patient/{patient_id}/*"):
        bundle = (await client.get(everything)).json()
        assert bundle["resourceType"] == "Bundle", everything
        types = {e["resource"]["resourceType"] for e in bundle.get("entry", []) if "resource" in e}
        assert "AuditEvent" not in types and "Patient" in types, everything


async def test_token_endpoint_events_are_audited(app: FastAPI, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        refused = await http.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "nobody"})
        assert refused.status_code == 401
    await app.state.server.audit.flush()
    system = "http://fhirlead.org/CodeSystem/authorization-event"
    issued = (await client.get(f"AuditEvent?subtype={system}|token-issued")).json()
    assert any(client_agent(e["resource"]) for e in issued["entry"])
    failed = (await client.get(f"AuditEvent?subtype={system}|token-refused&outcome=4")).json()
    assert len(failed.get("entry", [])) == 1
