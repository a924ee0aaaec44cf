"""The Python SMART client (PyPI `fhirclient`, smart-on-fhir/client-py) against a live fhirlead.

It finds the OAuth endpoints in the CapabilityStatement's SMART extension, gets a token (client_credentials
for the sample backend client; the authorization-code flow with PKCE for a public app, the user's part
done over HTTP as `tests.auth.flow.Browser` does in-process), and reads through it with `requests`.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode, urljoin

import httpx
import pytest

from tests.auth.flow import hidden, radio_values
from tests.clients.live import BACKEND, OKAFOR, LiveServer, live_server

fhirclient = pytest.importorskip("fhirclient", reason="the Python fhirclient package is not installed (pip install "
                                                       "-e '.[test]')")
from fhirclient.client import FHIRClient  # noqa: E402
from fhirclient.models.patient import Patient  # noqa: E402
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException  # noqa: E402

APP = "python-fhirclient-app"
FORM = "application/x-www-form-urlencoded"
REDIRECT = "http://127.0.0.1:9/python-app/callback"  # never fetched: the redirect is read off the Location header
WRITTEN = {
    "resourceType": "Patient",
    "id": "py-client-patient",
    "active": True,
    "name": [{"use": "official", "family": "Nakamura", "given": ["Hana", "Mei"]}],
    "gender": "female",
    "birthDate": "1961-07-23",
    "identifier": [{"system": "urn:example:fhirlead-tests:mrn", "value": "PY-0001"}],
    "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home"}],
    "generalPractitioner": [{"reference": "Practitioner/pcp-okafor"}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("fhirclient")) as live:
        live.add_public_client(APP, "launch/patient openid fhirUser patient/*.rs", [REDIRECT])
        yield live


def backend_client(server: LiveServer) -> FHIRClient:
    """The sample backend service, authorized by fhirclient itself (client_credentials, client_secret_basic)."""
    smart = FHIRClient(settings={"app_id": BACKEND[0], "app_secret": BACKEND[1], "api_base": server.fhir,
                                 "scope": "system/*.cruds"})
    smart.wants_patient = False  # a backend service asks for no launch context
    assert smart.prepare() is False  # reads the CapabilityStatement: OAuth2, no token yet
    smart.authorize()
    assert smart.ready
    return smart


def without_meta(resource: dict) -> dict:
    return {key: value for key, value in resource.items() if key not in ("meta", "text")}


def test_backend_token_writes_and_reads_a_patient(server: LiveServer) -> None:
    smart = backend_client(server)
    Patient(WRITTEN).update(smart.server)
    read = Patient.read(WRITTEN["id"], smart.server)
    assert without_meta(read.as_json()) == WRITTEN
    assert read.meta.versionId == "1"

    anonymous = FHIRClient(settings={"app_id": "anyone", "api_base": server.fhir})
    with pytest.raises(FHIRUnauthorizedException) as refused:
        Patient.read(WRITTEN["id"], anonymous.server)
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")


def test_standalone_launch_reads_the_picked_patient(server: LiveServer) -> None:
    Patient(WRITTEN).update(backend_client(server).server)  # okafor's patient, so it is in his picker

    smart = FHIRClient(settings={"app_id": APP, "api_base": server.fhir, "redirect_uri": REDIRECT,
                                 "scope": "openid fhirUser patient/*.rs"})
    url = smart.authorize_url  # adds launch/patient (no patient yet), PKCE S256, aud
    assert url.startswith(f"{server.root}/auth/authorize?")
    with httpx.Client(timeout=30) as browser:  # the user's part: sign in, pick, allow
        page = browser.get(url)
        assert page.status_code == 200, page.text
        fields = hidden(page.text)
        user, password = OKAFOR
        picker = browser.post(urljoin(url, "login"), data={**fields, "username": user, "password": password})
        assert WRITTEN["id"] in radio_values(picker.text, "patient"), picker.text
        consent = browser.post(urljoin(url, "patient"), data={**fields, "patient": WRITTEN["id"]})
        scopes = radio_values(consent.text, "scope")
        assert set(scopes) == {"launch/patient", "openid", "fhirUser", "patient/*.rs"}
        decision = urlencode([*fields.items(), *(("scope", scope) for scope in scopes), ("decision", "allow")])
        back = browser.post(urljoin(url, "consent"), content=decision, headers={"Content-Type": FORM})
    assert back.status_code == 303 and back.headers["location"].startswith(REDIRECT), back.text

    smart.handle_callback(back.headers["location"])  # state check, code + code_verifier for the token
    assert smart.ready and smart.patient_id == WRITTEN["id"]
    assert without_meta(smart.patient.as_json()) == WRITTEN  # read with the user's patient/*.rs token
    assert smart.human_name(smart.patient.name[0]) == "Hana Mei Nakamura"
    with pytest.raises(FHIRNotFoundException):  # another patient of okafor's: outside this token's compartment
        Patient.read("james-wilson", smart.server)

