"""Decimals keep their exact text from request to store to response (FHIR R4 datatypes, decimal: "0.010
is regarded as different to 0.01, and the original precision should be preserved"), on every path that
returns a resource; and a body that repeats a property name is refused."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.conftest import FHIR_JSON

# nx-27017, the wire-protocol stand-in, cannot store BSON Decimal128 (MongoDB's own decimal type, which
# MongoStore uses): resources with plain decimals fail there, not on MongoDB.
needs_decimal128 = pytest.mark.skipif(backends.selected() == "nx", reason="nx-27017 has no BSON Decimal128")

# The reproducers, plus the spellings a float or str(Decimal) would change: trailing zeros,
# an exponent in lower case and without sign, a small number without exponent, more digits than a
# double or MongoDB's Decimal128 hold, and negative zero.
TEXTS = ["1.50", "0.010", "1e-400", "1e2", "0.0000001", "-0.0", "123456789012345678901234567890.123456789012",
         "4.0E+2", "3.14159265358979323846264338327950288"]


def observation(value: str, *others: str) -> bytes:
    """An Observation as JSON text with `value` as its quantity and `others` as component quantities."""
    components = ",".join(
        f'{{"code":{{"text":"c{n}"}},"valueQuantity":{{"value":{text},"unit":"mg"}}}}' for n, text in enumerate(others)
    )
    component = f',"component":[{components}]' if others else ""
    return (
        f'{{"resourceType":"Observation","status":"final","code":{{"text":"glucose"}},'
        f'"valueQuantity":{{"value":{value},"unit":"mmol/L"}}{component}}}'
    ).encode()


def numbers_in(body: bytes) -> list[str]:
    """The texts of the quantity values in a response body, in order."""
    return [m.decode() for m in re.findall(rb'"value":\s*([-0-9.eE+]+)', body)]


async def create(client: httpx.AsyncClient, body: bytes) -> str:
    answer = await client.post("Observation", content=body, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 201, answer.text
    return answer.headers["location"].split("/_history")[0]


async def test_every_decimal_reads_back_with_its_own_digits(client: httpx.AsyncClient) -> None:
    location = await create(client, observation(TEXTS[0], *TEXTS[1:]))
    read = await client.get(location)
    assert numbers_in(read.content) == TEXTS
    assert numbers_in((await client.get(f"{location}/_history/1")).content) == TEXTS
    assert numbers_in((await client.get(f"{location}/_history")).content) == TEXTS
    assert numbers_in((await client.get(f"{location}?_pretty=true")).content) == TEXTS
    assert numbers_in((await client.get(f"{location}?_elements=component")).content) == TEXTS[1:]
    found = await client.get("Observation?value-quantity=1.5")  # the index holds the number itself
    assert found.json()["total"] == 1 and numbers_in(found.content) == TEXTS
    summary = await client.get("Observation?status=final&_elements=value")
    assert numbers_in(summary.content) == TEXTS[:1]
    everything = await client.get("?_type=Observation")
    assert numbers_in(everything.content) == TEXTS


@needs_decimal128
async def test_updates_patches_and_bundles_keep_decimals(client: httpx.AsyncClient) -> None:
    location = await create(client, observation("7.0"))
    id_ = location.rsplit("/", 1)[1]
    updated = observation("7.10", "0.50").replace(b"{", b'{"id":"' + id_.encode() + b'",', 1)
    answer = await client.put(location, content=updated,
                              headers={"Content-Type": FHIR_JSON, "Prefer": "return=representation"})
    assert numbers_in(answer.content) == ["7.10", "0.50"]
    # RFC 6902 `test` compares numbers by value (7.1 is 7.10); the replacement keeps its own digits
    patch = (b'[{"op":"test","path":"/valueQuantity/value","value":7.1},'
             b'{"op":"replace","path":"/component/0/valueQuantity/value","value":0.500}]')
    answer = await client.patch(location, content=patch, headers={
        "Content-Type": "application/json-patch+json", "Prefer": "return=representation"})
    assert answer.status_code == 200, answer.text
    assert numbers_in(answer.content) == ["7.10", "0.500"]
    assert numbers_in((await client.get(f"{location}/_history/2")).content) == ["7.10", "0.50"]

    entry = observation("5.20", "1.000").decode()
    patch_data = base64.b64encode(b'[{"op":"replace","path":"/valueQuantity/value","value":8.00}]').decode()
    transaction = (
        '{"resourceType":"Bundle","type":"transaction","entry":['
        f'{{"fullUrl":"urn:uuid:0f4a1c2e-0000-4000-8000-000000000001","resource":{entry},'
        '"request":{"method":"POST","url":"Observation"}},'
        f'{{"resource":{{"resourceType":"Binary","contentType":"application/json-patch+json","data":"{patch_data}"}},'
        f'"request":{{"method":"PATCH","url":"Observation/{id_}"}}}}]}}'
    )
    answer = await client.post("", content=transaction.encode(),
                               headers={"Content-Type": FHIR_JSON, "Prefer": "return=representation"})
    assert answer.status_code == 200, answer.text
    assert numbers_in(answer.content) == ["5.20", "1.000", "8.00", "0.500"]
    batch = transaction.replace('"transaction"', '"batch"')
    answer = await client.post("", content=batch.encode(),
                               headers={"Content-Type": FHIR_JSON, "Prefer": "return=representation"})
    assert answer.status_code == 200, answer.text
    assert numbers_in(answer.content) == ["5.20", "1.000", "8.00", "0.500"]


async def test_a_repeated_property_name_is_refused_everywhere(client: httpx.AsyncClient) -> None:
    twice = b'{"resourceType":"Patient","gender":"male","name":[{"family":"A","family":"B"}]}'
    answer = await client.post("Patient", content=twice, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 400
    assert "'family'" in answer.json()["issue"][0]["diagnostics"]
    in_bundle = b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":' + twice + \
        b',"request":{"method":"POST","url":"Patient"}}]}'
    assert (await client.post("", content=in_bundle, headers={"Content-Type": FHIR_JSON})).status_code == 400
    patch = b'[{"op":"add","path":"/active","value":true,"value":false}]'
    created = await client.post("Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": FHIR_JSON})
    answer = await client.patch(created.headers["location"].split("/_history")[0], content=patch,
                                headers={"Content-Type": "application/json-patch+json"})
    assert answer.status_code == 400
    assert (await client.get("Patient?_total=accurate")).json()["total"] == 1
    # the same name in different objects is of course fine
    fine = b'{"resourceType":"Patient","name":[{"family":"A"},{"family":"B"}]}'
    assert (await client.post("Patient", content=fine, headers={"Content-Type": FHIR_JSON})).status_code == 201


@needs_decimal128
async def test_fhirlead_load_keeps_decimals_and_reports_repeated_names(settings, tmp_path: Path) -> None:
    from fhirlead.load import load_files
    from fhirlead.storage.factory import open_store

    good = tmp_path / "good.json"
    good.write_bytes(observation("1.50", "0.010").replace(b"{", b'{"id":"exact",', 1))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"resourceType":"Patient","id":"p","id":"q"}')
    report = await load_files(settings, [good, bad])
    assert report.counts.get("Observation") == 1
    assert len(report.failures) == 1 and "'id'" in str(report.failures[0])
    store = open_store(settings.store)
    await store.open()
    try:
        stored = await store.read("Observation", "exact")
        assert numbers_in(stored.body) == ["1.50", "0.010"]
    finally:
        await store.close()


async def test_a_batch_get_of_a_subset_keeps_decimals(client: httpx.AsyncClient) -> None:
    location = await create(client, observation("1.50", "0.010"))
    reference = location.split("/fhir/")[1]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"{reference}?_elements=component"}},
        {"request": {"method": "GET", "url": f"{reference}?_summary=data"}}]}
    answer = await client.post("", json=batch, headers={"Content-Type": FHIR_JSON})
    assert answer.status_code == 200, answer.text
    assert numbers_in(answer.content) == ["0.010", "1.50", "0.010"]
