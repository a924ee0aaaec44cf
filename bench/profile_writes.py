"""What holding writes to their profiles costs: single creates over the in-process HTTP stack (as a SMART
backend client) of the US Core 6.1.0 examples (profiles/us-core/examples, Bundles aside), each as
published (claiming its US Core profile) and with `meta.profile` removed, alternating round by round.

    .venv/bin/python bench/profile_writes.py [--rounds 3] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
from ingest import fresh_client  # bench/, beside this script

EXAMPLES = Path(__file__).resolve().parent.parent / "profiles" / "us-core" / "examples"


def examples(claimed: bool) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        resource: dict[str, Any] = orjson.loads(path.read_bytes())
        if resource["resourceType"] == "Bundle" or ("text" in resource and "div" not in resource["text"]):
            continue
        resource.pop("id", None)
        if not claimed:
            resource.get("meta", {}).pop("profile", None)
        found.append((resource["resourceType"], orjson.dumps(resource)))
    return found


async def main(rounds: int, db: Path) -> None:
    async with fresh_client(db) as (client, headers):
        corpora = {"claiming US Core": examples(True), "claiming nothing": examples(False)}
        best = {name: float("inf") for name in corpora}
        for _ in range(rounds + 1):  # the first round warms up (compiles every profile)
            for name, corpus in corpora.items():
                started = time.perf_counter()
                for _ in range(5):
                    for type_, body in corpus:
                        answer = await client.post(type_, content=body, headers=headers)
                        assert answer.status_code == 201, answer.text[:300]
                best[name] = min(best[name], (time.perf_counter() - started) / (5 * len(corpus)))
        for name, seconds in best.items():
            print(f"{name}: {1 / seconds:,.0f} creates/s ({seconds * 1000:.2f} ms each, {len(corpora[name])} examples)")
        cost = best["claiming US Core"] / best["claiming nothing"] - 1
        print(f"throughput cost of the profiles: {cost:.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", type=Path, default=Path("bench/results/profile_writes.db"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.db))
