"""Optimistic concurrency under real parallel requests: no lost update."""

from __future__ import annotations

import asyncio

import httpx

from tests.rest.helpers import patient, put

WRITERS = 12


async def test_parallel_if_match_updates_have_exactly_one_winner_per_version(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    for version in range(1, 4):
        responses = await asyncio.gather(*(
            put(client, patient(f"Writer{n}", id="p1"), **{"If-Match": f'W/"{version}"'}) for n in range(WRITERS)
        ))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [412] * (WRITERS - 1)
        winner = next(r for r in responses if r.status_code == 200).json()
        current = (await client.get("Patient/p1")).json()
        assert current == winner
        assert current["meta"]["versionId"] == str(version + 1)


async def test_parallel_unconditional_updates_each_get_their_own_version(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    responses = await asyncio.gather(*(put(client, patient(f"W{n}", id="p1")) for n in range(WRITERS)))
    assert sorted(int(r.headers["etag"][3:-1]) for r in responses) == list(range(2, WRITERS + 2))
    history = (await client.get("Patient/p1/_history", params={"_count": "100"})).json()
    assert len(history["entry"]) == WRITERS + 1
