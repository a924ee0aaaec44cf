"""Waiting for the server's identity linking (docs/identity.md): every Patient written is linked from a
Person by a background job, so a suite that lists everything a patient's compartment or the whole
server holds waits for those Persons before it compares."""

from __future__ import annotations

import asyncio

import httpx


async def persons_of(client: httpx.AsyncClient, *patients: str) -> dict[str, str]:
    """`Patient/x` -> the `Person/y` linking it, for each patient, once linked (20 s at most)."""
    found: dict[str, str] = {}
    async with asyncio.timeout(20):
        for patient in patients:
            while patient not in found:
                bundle = (await client.get("Person", params={"link": patient})).json()
                entries = bundle.get("entry") or []
                if entries:
                    found[patient] = f"Person/{entries[0]['resource']['id']}"
                else:
                    await asyncio.sleep(0.05)
    return found
