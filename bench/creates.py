"""Single creates (POST Observation) over the in-process HTTP stack, as a SMART backend client, one
after another: what a create costs with its sources recorded (bench/README.md, *Sources*).

    .venv/bin/python bench/creates.py [N] [DB]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson
from ingest import fresh_client  # bench/, beside this script


async def main(n: int, db: Path) -> None:
    async with fresh_client(db) as (client, headers):
        body = orjson.dumps({"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                             "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 6.1, "unit": "%"}})
        for _ in range(50):  # warm-up
            assert (await client.post("Observation", content=body, headers=headers)).status_code == 201
        started = time.perf_counter()
        for _ in range(n):
            r = await client.post("Observation", content=body, headers=headers)
            assert r.status_code == 201
        elapsed = time.perf_counter() - started
        print(f"creates: {n / elapsed:,.0f}/s ({elapsed / n * 1000:.2f} ms each)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                     Path(sys.argv[2]) if len(sys.argv) > 2 else Path("bench/results/creates.db")))
