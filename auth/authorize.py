"""The authorization endpoint and the browser flow behind it (RFC 6749 §4.1, RFC 7636, SMART App Launch
2.2.0 §Obtain authorization code): validate the request, sign the user in, let them pick a patient
(standalone `launch/patient`) and approve the scopes, then redirect back with a code.

The pending request lives in the store's records (any server process can continue it) under a random
id; each of its forms carries that id and a CSRF token that must also match a cookie set for /auth.
Errors that cannot be trusted to the client (unknown client, redirect URI not registered) are shown to
the user; all others are redirected to the client with `error` and `state` (RFC 6749 §4.1.2.1).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fhirlead import fhirjson
from fhirlead.auth import pages
from fhirlead.auth.care import care_of
from fhirlead.auth.launch import redeem_launch
from fhirlead.auth.registry import Client, verify_secret
from fhirlead.auth.routes import MAX_FORM_BYTES, fhir_base
from fhirlead.auth.scopes import grantable, split
from fhirlead.auth.service import AuthServer
from fhirlead.auth.throttle import Throttle
from fhirlead.auth.tokens import Authorization
from fhirlead.search.query import SearchQuery
from fhirlead.storage.records import RecordConflict

PENDING = "authz"
PENDING_LIFETIME = 10 * 60
CSRF_COOKIE = "fhirlead_csrf"
MAX_PICKER = 200


class Redirect(Exception):
    """Send the browser back to the client with an OAuth error."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def _auth(request: Request) -> AuthServer | None:
    return request.app.state.server.auth


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _params(request: Request) -> dict[str, str]:
    if request.method == "GET":
        pairs = request.query_params.multi_items()
    else:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


def _back(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", 303,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _error_back(redirect_uri: str, state: str | None, error: str, description: str) -> RedirectResponse:
    params = {"error": error, "error_description": description}
    if state is not None:
        params["state"] = state
    return _back(redirect_uri, params)


async def authorize(request: Request) -> Response:
    """GET or POST /auth/authorize."""
    auth = _auth(request)
    if auth is None:
        return pages.failure("Authorization is turned off on this server.", 404)
    params = await _params(request)
    client = await auth.registry.client(params.get("client_id", "")) if params.get("client_id") else None
    if client is None:
        return pages.failure("Unknown client: the application is not registered with this server.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:  # exact match, RFC 6749 §3.1.2.3 / OAuth 2.0 Security BCP
        return pages.failure("The redirect_uri is not registered for this application.")
    state = params.get("state")
    try:
        pending = await _validate(auth, request, client, params)
    except Redirect as error:
        return _error_back(redirect_uri, state, error.error, error.description)
    csrf = secrets.token_urlsafe(24)
    request_id = secrets.token_urlsafe(24)
    pending["csrf"] = csrf
    await auth.records.put(PENDING, request_id, pending, expires=time.time() + PENDING_LIFETIME, expected_rev=0)
    response = pages.sign_in(request_id, csrf, client.name)
    _set_csrf_cookie(response, csrf)
    return response


def _set_csrf_cookie(response: Response, csrf: str) -> None:
    response.set_cookie(CSRF_COOKIE, csrf, max_age=PENDING_LIFETIME, path="/auth", httponly=True, samesite="lax")


async def _validate(auth: AuthServer, request: Request, client: Client, params: dict[str, str]) -> dict[str, Any]:
    if params.get("response_type") != "code":
        raise Redirect("unsupported_response_type", "response_type must be code")
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        raise Redirect("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
    if len(params["code_challenge"]) != 43:
        raise Redirect("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
    base = fhir_base(request)
    if params.get("aud", "").rstrip("/") != base:
        raise Redirect("invalid_request", f"aud must be this server's FHIR base URL ({base})")
    requested = split(params.get("scope"))
    granted = grantable(requested, client.scopes)
    if not granted:
        raise Redirect("invalid_scope", "none of the requested scopes is registered for this client")
    launch = None
    if "launch" in granted:
        launch_id = params.get("launch")
        context = await redeem_launch(auth.records, launch_id, client.client_id) if launch_id else None
        if context is None:
            raise Redirect("invalid_request", "scope launch needs a valid, unused launch parameter from the EHR")
        launch = context.__dict__
    return {"client_id": client.client_id, "redirect_uri": params["redirect_uri"], "state": params.get("state"),
            "code_challenge": params["code_challenge"], "nonce": params.get("nonce"), "scope": granted,
            "launch": launch, "user": None, "patient": None}


async def _pending(auth: AuthServer, request: Request, form: dict[str, str]) -> tuple[str, dict[str, Any], int] | None:
    """The pending request a form belongs to, if its CSRF token matches the record and the cookie."""
    request_id = form.get("request_id", "")
    record = await auth.records.get(PENDING, request_id) if request_id else None
    if record is None:
        return None
    sent, cookie = form.get("csrf", ""), request.cookies.get(CSRF_COOKIE, "")
    expected = record.doc.get("csrf", "")
    if not (hmac.compare_digest(sent, expected) and hmac.compare_digest(cookie, expected)):
        return None
    return request_id, dict(record.doc), record.rev


async def _save(auth: AuthServer, request_id: str, doc: dict[str, Any], rev: int) -> bool:
    try:
        await auth.records.put(PENDING, request_id, doc, expires=time.time() + PENDING_LIFETIME, expected_rev=rev)
    except RecordConflict:
        return False
    return True


async def login(request: Request) -> Response:
    """POST /auth/login: check the password (throttled), then the picker or the consent page."""
    auth = _auth(request)
    form = await _params(request)
    found = await _pending(auth, request, form) if auth is not None and request.method == "POST" else None
    if auth is None or found is None:
        return pages.failure("This sign-in form has expired or was not issued to this browser. Start again.", 403)
    request_id, doc, rev = found
    client = await auth.registry.client(doc["client_id"])
    client_name = client.name if client else doc["client_id"]
    username, password = form.get("username", ""), form.get("password", "")
    throttle = Throttle(auth.records)
    address = _address(request)
    if await throttle.blocked(username, address):
        _audit_sign_in(request, doc["client_id"], username, None, "8", "throttled")
        return pages.sign_in(request_id, doc["csrf"], client_name, "Too many failed attempts. Try again later.", 429)
    user = await auth.registry.user(username)
    if not await verify_secret(user.password_hash if user else None, password) or user is None:
        await throttle.failed(username, address)
        _audit_sign_in(request, doc["client_id"], username, None, "4", "wrong user name or password")
        return pages.sign_in(request_id, doc["csrf"], client_name, "Wrong user name or password.", 401)
    launch = doc.get("launch")
    if launch and launch.get("user") and launch["user"] != user.username:
        return _error_back(doc["redirect_uri"], doc.get("state"), "access_denied",
                           "the signed-in user is not the user of the EHR launch")
    await throttle.succeeded(username)
    _audit_sign_in(request, doc["client_id"], username, user.fhir_user, "0", None)
    doc["user"] = {"username": user.username, "fhir_user": user.fhir_user, "admin": user.admin}
    if launch:
        doc["patient"] = launch["patient"]
    elif user.fhir_user.startswith("Patient/") and "launch/patient" not in doc["scope"]:
        doc["patient"] = user.fhir_user.split("/", 1)[1]
    if not await _save(auth, request_id, doc, rev):
        return pages.failure("This sign-in was continued elsewhere. Start again.", 409)
    if "launch/patient" in doc["scope"] and doc["patient"] is None:
        return pages.pick_patient(request_id, doc["csrf"], await choosable_patients(request, user.fhir_user,
                                                                                     user.admin))
    return pages.consent(request_id, doc["csrf"], client_name, doc["scope"], doc["patient"])


async def choose_patient(request: Request) -> Response:
    """POST /auth/patient: the picked patient must be one the user may choose."""
    auth = _auth(request)
    form = await _params(request)
    found = await _pending(auth, request, form) if auth is not None and request.method == "POST" else None
    if auth is None or found is None or found[1].get("user") is None:
        return pages.failure("This form has expired or was not issued to this browser. Start again.", 403)
    request_id, doc, rev = found
    user = doc["user"]
    allowed = {pid for pid, _label in await choosable_patients(request, user["fhir_user"], user["admin"])}
    if form.get("patient") not in allowed:
        return pages.failure("You may not open this patient.", 403)
    doc["patient"] = form["patient"]
    if not await _save(auth, request_id, doc, rev):
        return pages.failure("This sign-in was continued elsewhere. Start again.", 409)
    client = await auth.registry.client(doc["client_id"])
    return pages.consent(request_id, doc["csrf"], client.name if client else doc["client_id"], doc["scope"],
                         doc["patient"])


async def decide(request: Request) -> Response:
    """POST /auth/consent: allow (with the scopes left ticked) or deny, then back to the client."""
    auth = _auth(request)
    if auth is None or request.method != "POST":
        return pages.failure("Start again.", 403)
    body = await request.body()
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) if len(body) <= MAX_FORM_BYTES else []
    form = {key: value for key, value in pairs if key != "scope"}
    found = await _pending(auth, request, form)
    if found is None or found[1].get("user") is None:
        return pages.failure("This form has expired or was not issued to this browser. Start again.", 403)
    request_id, doc, _rev = found
    await auth.records.delete(PENDING, request_id)  # one decision per request
    if form.get("decision") != "allow":
        return _error_back(doc["redirect_uri"], doc.get("state"), "access_denied", "the user denied access")
    ticked = {value for key, value in pairs if key == "scope"}
    scopes = [scope for scope in doc["scope"] if scope in ticked]
    if not scopes:
        return _error_back(doc["redirect_uri"], doc.get("state"), "access_denied", "no scope was approved")
    user, launch = doc["user"], doc.get("launch") or {}
    authorization = Authorization(
        client_id=doc["client_id"], scope=" ".join(scopes), subject=user["username"], patient=doc.get("patient"),
        encounter=launch.get("encounter"), fhir_user=user["fhir_user"], admin=bool(user["admin"]),
        need_patient_banner=launch.get("need_patient_banner") if launch else None,
        smart_style_url=launch.get("smart_style_url") if launch else None,
    )
    code = await auth.codes.issue(authorization, doc["redirect_uri"], doc["code_challenge"], doc.get("nonce"))
    params = {"code": code}
    if doc.get("state") is not None:
        params["state"] = doc["state"]
    return _back(doc["redirect_uri"], params)


async def choosable_patients(request: Request, fhir_user: str, admin: bool) -> list[tuple[str, str]]:
    """Patients the user may open: a patient themself; a practitioner the patients in their care
    (auth/care.py: attributed, general practitioner, care team); an admin any (the first few hundred)."""
    store = request.app.state.server.store
    base = fhir_base(request)
    kind, _, user_id = fhir_user.partition("/")
    if kind == "Patient":
        ids = [user_id]
    elif admin:
        page = await store.search(SearchQuery(("Patient",), count=MAX_PICKER, base_url=base))
        ids = [version.id for version in page.matches]
    elif kind in ("Practitioner", "PractitionerRole"):
        ids = sorted(await care_of(request.app.state.server).patients(fhir_user))[:MAX_PICKER]
    else:
        ids = []
    patients = []
    for pid in dict.fromkeys(ids):
        version = await store.read("Patient", pid)
        if version is not None and version.body is not None:
            patients.append((pid, _patient_label(version.body, pid)))
    return patients


def _patient_label(body: bytes, pid: str) -> str:
    resource = fhirjson.loads(body)
    names = resource.get("name") or [{}]
    name = names[0]
    text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
    born = resource.get("birthDate")
    return f"{text or pid}" + (f" (born {born})" if born else "")


def _audit_sign_in(request: Request, client_id: str, username: str, fhir_user: str | None, outcome: str,
                   detail: str | None) -> None:
    audit = getattr(request.app.state.server, "audit", None)
    if audit is not None:
        audit.authorization(kind="login", outcome=outcome, client_id=client_id, username=username,
                            fhir_user=fhir_user, address=_address(request), detail=detail)
