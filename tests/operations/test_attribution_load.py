"""`fhirlead load` takes a payer's attribution file (ATR Groups in a Bundle or NDJSON) like any other
content: the list is stored member by member and answers the ATR operations at once."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI

from fhirlead.settings import Settings

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"


def attribution_file(size: int) -> bytes:
    group = {"resourceType": "Group", "id": "payer-list", "type": "person", "actual": True,
             "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "final"}],
             "member": [{"extension": [{"url": ATR + "ext-attributedProvider",
                                        "valueReference": {"reference": "Practitioner/pcp"}}],
                         "entity": {"reference": f"Patient/m-{n}"}} for n in range(size)]}
    lines = [{"resourceType": "Practitioner", "id": "pcp"}, {"resourceType": "Patient", "id": "m-7"}, group]
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


async def test_a_loaded_attribution_file_answers_the_operations(settings: Settings, tmp_path: Path,
                                                                 app: FastAPI, client: httpx.AsyncClient) -> None:
    from fhirlead.load import load_files

    path = tmp_path / "attribution.ndjson"
    path.write_bytes(attribution_file(2_000))
    report = await load_files(settings, [path])
    assert report.counts["Group"] == 1 and not report.failures
    status = await client.get("Group/payer-list/$attribution-status?patientReference=Patient/m-7")
    assert status.status_code == 200, status.text
    assert [m["entity"]["reference"] for m in status.json()["entry"][0]["resource"]["member"]] == ["Patient/m-7"]
    found = await client.get("Group?attributed-provider=Practitioner/pcp&member=Patient/m-1999&_summary=true")
    assert found.json()["total"] == 1
    assert len((await client.get("Group/payer-list")).json()["member"]) == 2_000
