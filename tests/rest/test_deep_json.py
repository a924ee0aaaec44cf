"""One explicit limit on JSON nesting (`fhirlead.fhirjson.MAX_DEPTH`): deeper bodies are a 400 naming
the limit, before anything is validated or stored, on every path that takes JSON; real content passes."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from fhirlead.fhirjson import MAX_DEPTH
from tests.conftest import FHIR_JSON


def nested_patient(levels: int) -> bytes:
    """A Patient whose extension nests `levels` extensions deep (two JSON levels each)."""
    inner = '{"url":"http://example.org/x","valueString":"a"}'
    opening = '{"url":"http://example.org/x","extension":[' * levels
    return f'{{"resourceType":"Patient","extension":[{opening}{inner}{"]}" * levels}]}}'.encode()


async def test_nesting_beyond_the_limit_is_a_400_on_create_batch_and_patch(client: httpx.AsyncClient) -> None:
    assert (await client.post("Patient", content=nested_patient(60),
                              headers={"Content-Type": FHIR_JSON})).status_code == 201  # deep, but real
    for levels in (126, 300, 600):
        answer = await client.post("Patient", content=nested_patient(levels), headers={"Content-Type": FHIR_JSON})
        assert answer.status_code == 400, levels
        assert str(MAX_DEPTH) in answer.json()["issue"][0]["diagnostics"]
    deep = orjson.loads(nested_patient(100))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": "Patient"}, "resource": deep},
    ]}
    deeper = b'"extension":[' + b'{"url":"http://x","extension":[' * 30 + b"{}" + b"]}" * 30 + b"]"
    text = orjson.dumps(batch).replace(b'"valueString":"a"', deeper)  # 100 + 30 levels of two: too deep
    answer = await client.post("", content=text, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 400  # refused whole, before any entry ran
    assert (await client.get("Patient?_total=accurate")).json()["total"] == 1
    created = await client.post("Patient", content=nested_patient(60), headers={"Content-Type": FHIR_JSON})
    innermost = "/extension/0" * 61  # the innermost extension of the 60 levels
    value = nested_patient(70)[len(b'{"resourceType":"Patient","extension":'):-1]  # an extension array, as text
    patch = b'[{"op":"add","path":"' + innermost.encode() + b'/extension","value":' + value + b"}]"
    # the patch document is within the limit; the patched resource (60 + 70 levels of two) is not
    answer = await client.patch(created.headers["location"].split("/_history")[0], content=patch,
                                headers={"Content-Type": "application/json-patch+json"})
    assert answer.status_code in (400, 422) and answer.json()["resourceType"] == "OperationOutcome"


async def test_fhirlead_load_reports_a_too_deep_file_and_loads_the_rest(settings, tmp_path: Path) -> None:
    from fhirlead.load import load_files

    good = tmp_path / "good.json"
    good.write_bytes(b'{"resourceType":"Patient","id":"fine"}')
    bad = tmp_path / "bad.json"
    bad.write_bytes(nested_patient(300))
    report = await load_files(settings, [good, bad])
    assert report.counts.get("Patient") == 1
    assert len(report.failures) == 1 and "254" in str(report.failures[0])
