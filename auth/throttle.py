"""Sign-in throttling per account and per client address (OWASP Authentication Cheat Sheet: limit
failed attempts), in the store's records so every server process counts the same attempts."""

from __future__ import annotations

import time

from fhirlead.storage.records import RecordConflict, Records

KIND = "throttle"
WINDOW = 15 * 60
MAX_PER_ACCOUNT = 5
MAX_PER_ADDRESS = 20


class Throttle:
    def __init__(self, records: Records) -> None:
        self._records = records

    async def blocked(self, username: str, address: str) -> bool:
        for key, limit in ((f"account:{username}", MAX_PER_ACCOUNT), (f"address:{address}", MAX_PER_ADDRESS)):
            record = await self._records.get(KIND, key)
            if record is not None and record.doc.get("failures", 0) >= limit:
                return True
        return False

    async def failed(self, username: str, address: str) -> None:
        for key in (f"account:{username}", f"address:{address}"):
            await self._increment(key)

    async def succeeded(self, username: str) -> None:
        await self._records.delete(KIND, f"account:{username}")

    async def _increment(self, key: str) -> None:
        for _ in range(5):  # compare-and-set: concurrent failures from several processes all count
            record = await self._records.get(KIND, key)
            failures = 0 if record is None else record.doc.get("failures", 0)
            expires = time.time() + WINDOW if record is None else record.expires
            try:
                await self._records.put(KIND, key, {"failures": failures + 1}, expires=expires,
                                        expected_rev=0 if record is None else record.rev)
                return
            except RecordConflict:
                continue
