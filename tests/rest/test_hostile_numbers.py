"""Numbers a hostile or careless client sends (Unicode digits, thousands of digits) are 4xx answers,
never 500s: one strict reader (`fhirlead.numbers`) serves every numeric parameter and path segment."""

from __future__ import annotations

import httpx
import orjson

from tests.conftest import FHIR_JSON

HUGE = "9" * 4400
SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says yes, int() says no
ARABIC_THREE = "%D9%A3"  # "٣": int() reads it as 3


async def create_patient(client: httpx.AsyncClient) -> str:
    answer = await client.post("Patient", content=orjson.dumps({"resourceType": "Patient", "name": [{"family": "X"}]}),
                               headers={"Content-Type": FHIR_JSON})
    return answer.json()["id"]


async def test_counts_versions_and_cursors(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    cases = {
        f"Patient?_count={SUPERSCRIPT_TWO}": 400,
        f"Patient?_count={ARABIC_THREE}": 400,
        f"Patient?_count={HUGE}": 400,
        f"Patient/_history?_count={SUPERSCRIPT_TWO}": 400,
        f"_history?_count={HUGE}": 400,
        f"Patient/{patient}/_history?_cursor={SUPERSCRIPT_TWO}": 400,
        f"Patient/{patient}/_history/{SUPERSCRIPT_TWO}": 404,
        f"Patient/{patient}/_history/{ARABIC_THREE}": 404,
        f"Patient/{patient}/_history/{HUGE}": 404,
        f"Observation?value-quantity={HUGE}": 400,  # out of range
        f"Observation?value-quantity=1e{HUGE}": 400,
    }
    for path, status in cases.items():
        answer = await client.get(path)
        assert answer.status_code == status, (path[:80], answer.status_code, answer.text[:200])
        if status != 200:
            assert answer.json()["resourceType"] == "OperationOutcome"
            assert len(answer.text) < 2000  # the diagnostics do not echo thousands of digits
    assert (await client.get(f"Patient/{patient}/_history/1")).status_code == 200


async def test_if_match_and_patch_indexes(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    body = orjson.dumps({"resourceType": "Patient", "id": patient})
    for etag in ('W/"²"', 'W/"٣"', f'W/"{HUGE}"'):
        answer = await client.put(f"Patient/{patient}", content=body,
                                  headers={"Content-Type": FHIR_JSON, "If-Match": etag.encode()})
        assert answer.status_code in (400, 412), (etag[:10], answer.status_code)
    for index in ("²", "٣", HUGE):
        patch = [{"op": "replace", "path": f"/name/{index}/family", "value": "Y"}]
        answer = await client.patch(f"Patient/{patient}", content=orjson.dumps(patch),
                                    headers={"Content-Type": "application/json-patch+json"})
        assert answer.status_code in (400, 422), (index[:10], answer.status_code, answer.text[:200])
    read = (await client.get(f"Patient/{patient}")).json()
    assert read["name"] == [{"family": "X"}] and read["meta"]["versionId"] == "1"  # nothing was changed
