"""`fhirlead copy --from URL --to URL`: move a whole store, every version, between backends.

How a deployment grows from the embedded SQLite store to MongoDB (or back): versions are read in the
order they were written and written verbatim (versionId, lastUpdated, method and body kept), so
history, `_history` paging order and ETags survive the move; the search index of each version is
re-derived from its body with the server's own extractor (with the SearchParameters the source holds,
whose re-indexing marks are copied too), so the target answers searches exactly as a store written
through the API would. The target must be empty. Writes are batched in units of work
(one transaction each on MongoDB); a progress line on stderr shows versions copied and the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

from fhirlead import fhirjson
from fhirlead.auth.keys import KIND as SIGNING_KEY
from fhirlead.auth.registry import CLIENT, USER
from fhirlead.auth.tokens import FAMILY, REFRESH, REVOKED
from fhirlead.search.live import StoreSearchParameters
from fhirlead.search.reindex import MARKS as REINDEX_MARKS
from fhirlead.storage.factory import open_store
from fhirlead.storage.port import ResourceVersion, Store, StoreError

BATCH = 500


class CopyError(Exception):
    """Why a copy could not start or finish (shown to the user as is)."""


class Progress:
    """One self-overwriting line on a terminal: versions copied, resources seen, rate."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, versions: int, resources: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = versions / max(now - self.started, 1e-9)
        end = "\n" if final else "\r"
        self.stream.write(f"copied {versions} versions of {resources} resources ({rate:,.0f} versions/s){end}")
        self.stream.flush()


async def copy_store(source: Store, target: Store, progress: Progress | None = None, batch: int = BATCH) -> int:
    """Copy every version of `source` into the empty `target` (both open); the number of versions."""
    if (await target.history(None, None, None, 1, None)).versions:
        raise CopyError("the target store is not empty: copy only into a new, empty store")
    # the source's SearchParameters are in force in the target as soon as it is served: index with them
    extractor = await StoreSearchParameters(source).current()
    copied = 0
    resources: set[str] = set()
    pending: list[ResourceVersion] = []

    async def flush() -> None:
        async with target.unit_of_work() as uow:
            for version in pending:
                entries = None if version.body is None else extractor.extract(fhirjson.loads(version.body))
                await uow.write_version(version, entries)
        pending.clear()

    async for version in source.all_versions():
        pending.append(version)
        resources.add(version.reference)
        if len(pending) >= batch:
            copied += len(pending)
            await flush()
            if progress:
                progress.update(copied, len(resources))
    if pending:
        copied += len(pending)
        await flush()
    await copy_records(source, target)
    if progress:
        progress.update(copied, len(resources), final=True)
    return copied


# The records that outlive a request: who may sign in and call (clients, users), the keys that signed
# live tokens, and the refresh-token families and revocations those tokens depend on. Short-lived ones
# (codes, pending sign-ins, launches, throttles, jti) are not worth moving. And which SearchParameters the
# index reflects: the copy indexed every version with them, so the target need not re-index.
DURABLE_RECORDS = (CLIENT, USER, SIGNING_KEY, REFRESH, FAMILY, REVOKED, REINDEX_MARKS)


async def copy_records(source: Store, target: Store) -> None:
    for kind in DURABLE_RECORDS:
        for record in await source.records.list(kind):
            await target.records.put(kind, record.key, record.doc, expires=record.expires)


async def copy_urls(source_url: str, target_url: str, progress: Progress | None = None) -> int:
    source, target = open_store(source_url), open_store(target_url)
    await source.open()
    try:
        await target.open()
        try:
            return await copy_store(source, target, progress)
        finally:
            await target.close()
    finally:
        await source.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("copy", help="copy a whole store (every version) to another store")
    parser.add_argument("--from", dest="source", required=True, help="store URL to read (sqlite:///… or mongodb://…)")
    parser.add_argument("--to", dest="target", required=True, help="empty store URL to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(copy_urls(args.source, args.target, Progress(sys.stderr)))
    except (CopyError, StoreError, ValueError) as error:
        print(f"fhirlead copy: {error}", file=sys.stderr)
        return 1
    return 0
