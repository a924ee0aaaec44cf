"""A Bulk Data client no one here wrote: SMART Fetch (PyPI `smart-fetch`, smart-on-fhir/smart-fetch, Apache-2.0,
the Cumulus project's exporter, tested by its authors against Epic, Oracle and the SMART bulk-data server)
against a live `fhirlead serve`.

It authorizes as a SMART Backend Services client (private_key_jwt, ES384: the client registered with
`fhirlead clients add --jwks-file`, the key handed to it as a PEM file), finds the token endpoint in
`.well-known/smart-configuration`, kicks off a system-level `$export` with `_type`, polls the status URL,
downloads every output file with its token and DELETEs the export. Its files are checked against the API.

Needs the `smart-fetch` command beside this Python (`pip install -e '.[test]'`); without it the test is
skipped, unless FHIRLEAD_BROWSER_TESTS=required (set by .ci/run), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.bulk.data import condition, observation, patient
from tests.clients.live import LiveServer, environment, fhirlead, live_server

SMART_FETCH = Path(sys.executable).with_name("smart-fetch")
CLIENT_ID = "smart-fetch-exporter"
TYPES = ["Patient", "Observation", "Condition", "Encounter"]


def smart_fetch_ready() -> None:
    if SMART_FETCH.exists():
        return
    missing = f"the smart-fetch command is not at {SMART_FETCH} (pip install -e '.[test]')"
    if os.environ.get("FHIRLEAD_BROWSER_TESTS") == "required":
        pytest.fail(f"third-party client tests are required here, but {missing}")
    pytest.skip(f"third-party bulk client test skipped: {missing}")


def write_record(server: LiveServer) -> None:
    """Twenty patients with two Observations each and a Condition every fourth, over HTTP."""
    headers = {"Authorization": f"Bearer {server.backend_token()}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=30) as http:
        for n in range(20):
            resources = [patient(f"bulk-p{n}"), observation(f"bulk-o{n}a", f"bulk-p{n}"),
                         observation(f"bulk-o{n}b", f"bulk-p{n}", value=7.0 + n / 10)]
            if n % 4 == 0:
                resources.append(condition(f"bulk-c{n}", f"bulk-p{n}"))
            for resource in resources:
                answer = http.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
                assert answer.status_code in (200, 201), answer.text


def api_resources(server: LiveServer, type_: str) -> dict[str, dict]:
    """Every resource of `type_` as the API reads it, by id."""
    headers = {"Authorization": f"Bearer {server.backend_token('system/*.rs')}", "Accept": "application/fhir+json"}
    found: dict[str, dict] = {}
    url: str | None = f"{server.fhir}/{type_}?_count=500"
    with httpx.Client(headers=headers, timeout=30) as http:
        while url:
            bundle = http.get(url).json()
            found.update({e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])})
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return found


def exported(folder: Path) -> dict[str, dict[str, dict]]:
    """What smart-fetch wrote: type -> id -> resource (it names files `<Type>.<nnn>.ndjson`)."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(folder.glob("*.ndjson")):
        if path.name == "log.ndjson":
            continue
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            assert path.name.startswith(resource["resourceType"] + ".")
            found.setdefault(resource["resourceType"], {})[resource["id"]] = resource
    return found


def test_smart_fetch_exports_the_system(tmp_path: Path) -> None:
    smart_fetch_ready()
    key = ECKey.generate_key("P-384", private=True, auto_kid=True)
    (tmp_path / "key.pem").write_bytes(key.as_pem(private=True))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    out = tmp_path / "export"
    with live_server(tmp_path) as server:
        fhirlead("clients", "add", "--store", server.store, "--client-id", CLIENT_ID,
                 "--jwks-file", str(tmp_path / "jwks.json"), "--scope", "system/*.rs")
        write_record(server)
        done = subprocess.run(
            [str(SMART_FETCH), "bulk", "--fhir-url", server.fhir, "--smart-client-id", CLIENT_ID,
             "--smart-key", str(tmp_path / "key.pem"), "--type", ",".join(TYPES), "--no-default-filters",
             "--no-compression", str(out)],
            capture_output=True, text=True, env=environment(), timeout=300)
        assert done.returncode == 0, f"smart-fetch failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        files = exported(out)
        assert set(files) <= set(TYPES) and {"Patient", "Observation", "Condition"} <= set(files)
        for type_ in TYPES:
            assert files.get(type_, {}) == api_resources(server, type_), type_
        assert {f"bulk-p{n}" for n in range(20)} <= set(files["Patient"])
        assert len([i for i in files["Observation"] if i.startswith("bulk-o")]) == 40
        events = {e["eventId"]: e for e in map(json.loads, (out / "log.ndjson").read_text().splitlines())}
        assert {"kickoff", "status_complete", "download_complete", "export_complete"} <= set(events)
        status_url = events["kickoff"]["eventDetail"]["responseHeaders"]["content-location"]
        assert status_url.startswith(f"{server.fhir}/$export-status/")
        assert events["status_page_complete"]["eventDetail"]["outputFileCount"] == len(files)
        job_folder = tmp_path / "exports" / status_url.rsplit("/", 1)[1]  # FHIRLEAD_EXPORT_DIR's default
        assert not job_folder.exists()  # smart-fetch DELETEd the export once downloaded: its files are gone
