"""SMART App Launch in a real browser: the SMART JavaScript client (npm `fhirclient`) in Debian's headless
Chromium, driven by playwright-core (`smart-launch.mjs`), against a live `fhirlead serve`.

The app (`app/launch.html`, `app/index.html`) is served from another loopback port, so everything it asks
of fhirlead (discovery, the token endpoint, the FHIR API) is a cross-origin request, as for any real app.
An EHR launch (context from `fhirlead launch`) and a standalone launch (the user picks the patient) both
sign in as the sample user okafor, approve, and read the patient in context.

Needs node, `npm ci --prefix tests/browser` and Chromium (/usr/bin/chromium or $CHROMIUM); `.ci/run`
installs them. Without them the test is skipped, unless FHIRLEAD_BROWSER_TESTS=required (set by .ci/run).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.clients.live import OKAFOR, LiveServer, live_server

HERE = Path(__file__).parent
APP = HERE / "app"
BUNDLE = HERE / "node_modules" / "fhirclient" / "build" / "fhir-client.js"
SCRIPT = HERE / "smart-launch.mjs"
CLIENT_ID = "fhirlead-browser-app"
SCOPES = "launch launch/patient openid fhirUser patient/*.rs"
EHR_PATIENT = "james-wilson"  # a patient of Practitioner/pcp-okafor in the sample data
PICKED_PATIENT = "aiko-tanaka"  # another; the standalone launch picks this one
OKAFOR_PATIENTS = {"maria-garcia", "james-wilson", "aiko-tanaka"}


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (HERE / "node_modules" / "playwright-core").is_dir() or not BUNDLE.is_file():
        return "the npm packages are not installed (npm ci --prefix tests/browser)"
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        return f"Chromium is not installed at {chromium} (apt-get install chromium, or set CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser_ready() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("FHIRLEAD_BROWSER_TESTS") == "required":
        pytest.fail(f"browser tests are required here, but {missing}")
    pytest.skip(f"browser test skipped: {missing}")


class _AppFiles(SimpleHTTPRequestHandler):
    """app/ as the site root, plus /fhir-client.js: fhirclient's prebuilt browser bundle."""

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0] == "/fhir-client.js":
            return str(BUNDLE)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures, not page loads
        pass


@pytest.fixture(scope="module")
def app_origin(browser_ready: None) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_AppFiles, directory=str(APP)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(app_origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("browser")) as live:
        live.add_public_client(CLIENT_ID, SCOPES, [f"{app_origin}/index.html"], f"{app_origin}/launch.html")
        yield live


def run_browser(flows: list[dict[str, str]]) -> dict[str, dict]:
    done = subprocess.run(["node", str(SCRIPT), json.dumps({"flows": flows, "timeoutMs": 20000})], cwd=HERE,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"smart-launch.mjs failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ehr_and_standalone_launch_in_chromium(server: LiveServer, app_origin: str) -> None:
    _launch_id, ehr_url = server.launch(CLIENT_ID, EHR_PATIENT, user=OKAFOR[0])
    assert ehr_url is not None and ehr_url.startswith(f"{app_origin}/launch.html?")
    standalone_url = f"{app_origin}/launch.html?{urlencode({'iss': server.fhir})}"
    user, password = OKAFOR
    outcome = run_browser([
        {"name": "ehr", "url": ehr_url, "username": user, "password": password},
        {"name": "standalone", "url": standalone_url, "username": user, "password": password,
         "patient": PICKED_PATIENT},
    ])
    report = json.dumps(outcome, indent=1)
    for name in ("ehr", "standalone"):
        assert "result" in outcome[name], f"the {name} launch did not read the patient:\n{report}\n{server.output()}"

    ehr = outcome["ehr"]
    assert ehr["steps"] == ["sign-in", "consent", "app"]  # no picker: the EHR chose the patient
    assert ehr["result"]["id"] == ehr["result"]["contextPatient"] == EHR_PATIENT
    assert ehr["result"]["name"] == "James Wilson"
    assert set(ehr["consentScopes"]) == {"launch", "openid", "fhirUser", "patient/*.rs"}

    standalone = outcome["standalone"]
    assert standalone["steps"] == ["sign-in", "picker", "consent", "app"]
    assert set(standalone["offered"]) == OKAFOR_PATIENTS
    assert standalone["result"]["id"] == standalone["result"]["contextPatient"] == PICKED_PATIENT
    assert standalone["result"]["name"] == "Aiko Tanaka"
    assert set(standalone["consentScopes"]) == {"launch/patient", "openid", "fhirUser", "patient/*.rs"}

    for result in (ehr["result"], standalone["result"]):
        assert result["serverUrl"] == server.fhir
        assert result["fhirUser"] == "Practitioner/pcp-okafor"
        assert "patient/*.rs" in result["scope"].split()
