"""The care team's worklist app that fhirlead serves at `/app/` (fhirlead/app, docs/worklist.md).

In a real browser (`worklist.mjs`: Debian's headless Chromium through playwright-core) against a live
`fhirlead serve --sample-data`: the sample public client `fhirlead-worklist` (auth/samples.py) is launched from
the "EHR" (`fhirlead launch`) as the sample user okafor, who signs in and consents; the page lists the open
Tasks of okafor's active care teams in due order; a click on "Complete" completes the Task in the store (read
back with a backend token) and takes it off the page. `fhir-client.js` comes from tests/browser/node_modules
through FHIRLEAD_APP_ASSETS (the same npm package `fhirlead app-assets` fetches; no network in the test).

Without node, Chromium or the npm packages the browser test is skipped, unless FHIRLEAD_BROWSER_TESTS=required.
The other tests here (the files, their headers, `fhirlead app-assets`) need no browser.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.app import assets
from fhirlead.auth.samples import WORKLIST
from tests.browser.test_smart_browser import BUNDLE, HERE, browser_ready  # noqa: F401 (a fixture)
from tests.clients import live
from tests.clients.live import OKAFOR, LiveServer

SCRIPT = HERE / "worklist.mjs"
MARIA_TEAM = "careteam-maria"  # in the sample data: Maria Garcia's team, okafor and Dr Lindqvist on it
JAMES_TEAM = "careteam-james"  # created here


def task(id_: str, patient: str, owner: str | None, due: str | None, status: str = "requested",
         priority: str | None = None) -> dict:
    body: dict = {"resourceType": "Task", "id": id_, "status": status, "intent": "order",
                  "for": {"reference": f"Patient/{patient}"}, "description": f"Follow-up {id_}",
                  "authoredOn": "2026-01-02"}
    if owner:
        body["owner"] = {"reference": owner}
    if due:
        body["restriction"] = {"period": {"end": due}}
    if priority:
        body["priority"] = priority
    return body


WORLD = [
    {"resourceType": "CareTeam", "id": JAMES_TEAM, "status": "active", "name": "James's team",
     "subject": {"reference": "Patient/james-wilson"},
     "participant": [{"member": {"reference": "Practitioner/pcp-okafor"}}]},
    task("maria-call", "maria-garcia", "Practitioner/pcp-okafor", "2026-03-01"),
    task("maria-labs", "maria-garcia", f"CareTeam/{MARIA_TEAM}", "2026-01-10"),
    task("maria-urgent", "maria-garcia", None, "2026-03-01", priority="urgent"),
    task("maria-eye-exam", "maria-garcia", "Practitioner/endo-lindqvist", None),
    task("maria-done", "maria-garcia", "Practitioner/pcp-okafor", "2026-01-01", status="completed"),
    task("james-visit", "james-wilson", "Practitioner/pcp-okafor", "2026-02-01"),
    task("james-elsewhere", "james-wilson", "Practitioner/endo-lindqvist", "2026-01-05"),  # not on James's team
]


@pytest.fixture(scope="module")
def server(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:  # noqa: F811
    folder = BUNDLE.parent

    def environment() -> dict[str, str]:
        return {**plain(), "FHIRLEAD_APP_ASSETS": str(folder)}

    plain = live.environment
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live, "environment", environment)
        with live.live_server(tmp_path_factory.mktemp("worklist")) as running:
            yield running


def fhir(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.fhir, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})


def test_the_worklist_app_lists_and_completes_tasks_in_chromium(server: LiveServer) -> None:
    with fhir(server, server.backend_token()) as http:
        for resource in WORLD:
            answer = http.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
            assert answer.status_code in (200, 201), answer.text
    _launch, url = server.launch(WORKLIST, "maria-garcia", user=OKAFOR[0])
    assert url is not None and url.startswith(f"{server.root}/app/launch.html?")  # the sample client's launch URL
    done = subprocess.run(["node", str(SCRIPT), json.dumps({"url": url, "username": OKAFOR[0], "password": OKAFOR[1],
                                                            "complete": "maria-labs", "timeoutMs": 20000})],
                          cwd=HERE, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"worklist.mjs failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.dumps(outcome, indent=1)
    assert "error" not in outcome, f"{report}\n{server.output()}"
    assert outcome["steps"] == ["sign-in", "consent", "worklist", "completed"], report
    assert set(outcome["consentScopes"]) == {"launch", "openid", "fhirUser", "user/CareTeam.rs", "user/Task.rus",
                                             "user/Patient.rs"}
    assert "script-src 'self'" in outcome["csp"] and "unsafe-inline" not in outcome["csp"]
    # due order (same day: the urgent one first; undated last); closed Tasks and other teams' Tasks left out
    assert outcome["before"] == {MARIA_TEAM: ["maria-labs", "maria-urgent", "maria-call", "maria-eye-exam"],
                                 JAMES_TEAM: ["james-visit"]}, report
    assert outcome["dueBefore"][MARIA_TEAM] == ["2026-01-10", "2026-03-01", "2026-03-01", ""]
    assert outcome["after"] == {MARIA_TEAM: ["maria-urgent", "maria-call", "maria-eye-exam"],
                                JAMES_TEAM: ["james-visit"]}, report
    assert outcome["pageError"] == "" and not [c for c in outcome["console"] if "pageerror" in c], report
    with fhir(server, server.backend_token("system/*.rs")) as http:
        stored = http.get("Task/maria-labs")
        assert stored.status_code == 200
        assert stored.json()["status"] == "completed" and stored.json()["meta"]["versionId"] == "2"
        still = http.get("Task/maria-call").json()
        assert still["status"] == "requested" and still["meta"]["versionId"] == "1"


# -- the files and the assets command: no browser needed ----------------------------------------------------

@pytest.fixture
async def site(app: FastAPI) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


async def test_the_app_files_are_served_with_a_strict_policy_and_no_token(site: httpx.AsyncClient,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIRLEAD_APP_ASSETS", str(tmp_path))
    redirect = await site.get("/app")
    assert redirect.status_code == 308 and redirect.headers["location"] == "http://testserver/app/"
    for path, media in (("/app/", "text/html"), ("/app/index.html", "text/html"), ("/app/launch.html", "text/html"),
                        ("/app/app.js", "text/javascript"), ("/app/style.css", "text/css")):
        answer = await site.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media), path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert answer.headers["referrer-policy"] == "no-referrer"
    index = (await site.get("/app/")).text
    assert "<script>" not in index and 'src="app.js"' in index and 'src="fhir-client.js"' in index
    missing = await site.get("/app/fhir-client.js")  # not installed: the page says to run the command
    assert missing.status_code == 404 and "fhirlead app-assets" in missing.text
    assert "fhirlead app-assets" in (await site.get("/app/app.js")).text
    (tmp_path / "fhir-client.js").write_text("window.FHIR = {};")
    installed = await site.get("/app/fhir-client.js")
    assert installed.status_code == 200 and installed.text == "window.FHIR = {};"
    for path in ("/app/../pyproject.toml", "/app/files.py", "/app/vendor/fhir-client.js", "/app/nope.html"):
        assert (await site.get(path)).status_code == 404, path


def package(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_app_assets_keeps_only_the_bundle_and_licence_of_the_pinned_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tgz = package({"package/build/fhir-client.js": b"bundle", "package/LICENSE": b"Apache-2.0",
                   "package/lib/other.js": b"no", "package/../../escape": b"no"})
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=tgz))
    with pytest.raises(assets.AssetError, match="pinned sha512"):  # not the pinned package
        assets.download(tmp_path / "out", transport=transport)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(assets, "INTEGRITY", "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode())
    written = assets.download(tmp_path / "out", transport=transport)
    assert sorted(p.name for p in written) == ["LICENSE", "fhir-client.js"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["LICENSE", "fhir-client.js"]
    assert (tmp_path / "out" / "fhir-client.js").read_bytes() == b"bundle"
    refused = httpx.MockTransport(lambda request: httpx.Response(404))
    with pytest.raises(assets.AssetError, match="HTTP 404"):
        assets.download(tmp_path / "again", transport=refused)


def test_the_pinned_integrity_is_the_one_the_browser_tests_install() -> None:
    lock = json.loads((HERE / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/fhirclient"]
    assert pinned["version"] == "2.6.3" and assets.PACKAGE_URL.endswith("fhirclient-2.6.3.tgz")
    assert pinned["integrity"] == assets.INTEGRITY
