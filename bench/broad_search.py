"""First-page latency of broad and sorted searches on a large SQLite store (issue #19: "date=ge…&_sort=-date
and clauses matching tens of thousands return the first page in under 10 ms at 1,000,000 resources").

    .venv/bin/python bench/broad_search.py bench/results/search.db   # a store from bench/search.py (or bulk_export.py)

Each query runs 7 times through `store.search` (parse done once): the first run and the median are printed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from fhirlead.search.parse import parse_search
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.factory import open_store

QUERIES = [
    "Observation?date=ge2020-01-01&_sort=-date",
    "Observation?date=ge2020-01-01",
    "Observation?_sort=-date",
    "Observation?_sort=date",
    "Observation?code=http://loinc.org|8867-4&_sort=-date",
    "Observation?code=http://loinc.org|8867-4",
    "Observation?status=final&_sort=-date",
    "Observation?status=final&_sort=-_lastUpdated",
    "Encounter?date=ge2021-01-01&_sort=-date",
    "Observation?date=ge2020&date=lt2024&_sort=-date",
    "Patient?_sort=family",
    "Patient?gender=female&_sort=-family",
    "Observation?status=final&_sort=code",
    "Observation?date=lt2022-01-01&_sort=-date",
    "Observation?date=ge2020-01-01&_sort=date",
    "Observation?date=lt2015-03-01&_sort=-date",
    "Observation?date=lt2015-03-01,ge2024-11-01&_sort=-date",
    "Observation?_sort=code",
    "Observation?_sort=-status",
]


async def main(path: str) -> None:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    registry = SearchRegistry.default()
    try:
        for url in QUERIES:
            type_, _, text = url.partition("?")
            params = [(name, value) for name, _, value in (part.partition("=") for part in text.split("&"))]
            query = parse_search(registry, (type_,), params, base_url="http://bench/fhir").query
            samples = []
            for _ in range(7):
                started = time.perf_counter()
                page = await store.search(query)
                samples.append(time.perf_counter() - started)
            print(f"{url:55s} median {statistics.median(samples) * 1000:8.1f} ms   first {samples[0] * 1000:8.1f} ms"
                  f"   ({len(page.matches)} on the page)")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
