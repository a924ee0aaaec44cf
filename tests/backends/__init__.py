"""The storage backend the contract suites run against, chosen by `FHIRLEAD_TEST_BACKEND`:

- `sqlite` (default): the embedded store, one file per test.
- `mongomock`: MongoStore over mongomock behind an async adapter (query semantics; in-process).
- `nx`: MongoStore over a `nx-27017` server (MongoDB wire protocol over SQLite) started for the session.
- `mongodb`: MongoStore over the real server at `FHIRLEAD_TEST_MONGODB_URI` (a replica set); chosen
  by default whenever that variable is set.

Each test gets an empty store of its own (a fresh database on servers, dropped afterwards); a suite
that needs preloaded data builds a template once per session and each test starts from a copy.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from fhirlead.search.extract import Extractor
from fhirlead.storage.mongo import MongoStore
from fhirlead.storage.port import Store
from fhirlead.storage.sqlite import SqliteStore

NAMES = ("sqlite", "mongomock", "nx", "mongodb")


def selected() -> str:
    name = os.environ.get("FHIRLEAD_TEST_BACKEND") or (
        "mongodb" if os.environ.get("FHIRLEAD_TEST_MONGODB_URI") else "sqlite"
    )
    if name not in NAMES:
        raise RuntimeError(f"FHIRLEAD_TEST_BACKEND={name!r}: use one of {', '.join(NAMES)}")
    return name


async def write_all(store: Store, resources: list[dict[str, Any]], extractor: Extractor) -> None:
    """Write resources (ids given) through the store's own write path, in one unit of work."""
    await store.open()
    try:
        async with store.unit_of_work() as uow:
            for resource in resources:
                copy = orjson.loads(orjson.dumps(resource))
                await uow.write(copy["resourceType"], copy["id"], copy, extractor.extract(copy), "PUT")
    finally:
        await store.close()


class Backend:
    """How tests obtain stores of one kind. `url` names a store; `store(url)` builds it (closed).

    `schemes` are the URL schemes whose opening this backend takes over while the session runs
    (`fhirlead.storage.factory.register_scheme`), so code that opens a store from its URL itself
    (`fhirlead load`, `create_app(settings)`) reaches the stand-in too.
    """

    name = ""
    schemes: tuple[str, ...] = ()

    def url(self, folder: Path, filename: str = "fhirlead.db") -> str:
        """A new, empty store's URL (`filename`: the SQLite file in `folder`)."""
        raise NotImplementedError

    def store(self, url: str) -> Store | None:
        """The store for `url`, or None when the app can open `url` itself."""
        raise NotImplementedError

    async def discard(self, url: str) -> None:
        """Release what `url` holds once its test is over."""

    async def template(self, folder: Path, resources: list[dict[str, Any]], extractor: Extractor) -> Any:
        """A store holding `resources`, built once; `from_template` copies it per test."""
        raise NotImplementedError

    async def from_template(self, template: Any, folder: Path, filename: str = "fhirlead.db") -> str:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class SqliteBackend(Backend):
    name = "sqlite"

    def url(self, folder: Path, filename: str = "fhirlead.db") -> str:
        return f"sqlite:///{folder / filename}"

    def store(self, url: str) -> Store | None:
        return None

    def fast_store(self, url: str) -> Store:
        # synchronous=OFF only skips fsync (tests need no durability); every other setting is the server's
        return SqliteStore(url[len("sqlite:///"):], synchronous="OFF")

    async def template(self, folder: Path, resources: list[dict[str, Any]], extractor: Extractor) -> Any:
        url = self.url(folder)
        await write_all(self.fast_store(url), resources, extractor)
        return url

    async def from_template(self, template: Any, folder: Path, filename: str = "fhirlead.db") -> str:
        url = self.url(folder, filename)
        shutil.copyfile(template[len("sqlite:///"):], url[len("sqlite:///"):])
        return url


class MongomockBackend(Backend):
    """Stores live in this process: a URL names an entry of `clients`."""

    name = "mongomock"
    schemes = ("mongomock",)

    def __init__(self) -> None:
        from tests.backends.mongomock_async import MockClient

        self._client_type = MockClient
        self.clients: dict[str, Any] = {}

    def url(self, folder: Path, filename: str = "fhirlead.db") -> str:
        url = f"mongomock://{uuid.uuid4().hex}/fhirlead"
        self.clients[url] = self._client_type()
        return url

    def store(self, url: str) -> Store | None:
        return MongoStore(client=self.clients[url], database="fhirlead")

    async def discard(self, url: str) -> None:
        self.clients.pop(url, None)

    async def template(self, folder: Path, resources: list[dict[str, Any]], extractor: Extractor) -> Any:
        url = self.url(folder)
        await write_all(self.store(url), resources, extractor)  # type: ignore[arg-type]
        return self.clients.pop(url)

    async def from_template(self, template: Any, folder: Path, filename: str = "fhirlead.db") -> str:
        url = f"mongomock://{uuid.uuid4().hex}/fhirlead"
        self.clients[url] = template.clone()
        return url


class ServerBackend(Backend):
    """A MongoDB server (real, or nx-27017): one database per test, dropped afterwards."""

    def __init__(self, name: str, uri: str, *, transactions: bool | None = None) -> None:
        self.name = name
        self.schemes = ("mongodb",) if transactions is not None else ()
        self.uri = uri
        self.transactions = transactions

    def url(self, folder: Path, filename: str = "fhirlead.db") -> str:
        parts = urlsplit(self.uri)
        return urlunsplit((parts.scheme, parts.netloc, f"/fhirlead_test_{uuid.uuid4().hex[:16]}", parts.query, ""))

    def store(self, url: str) -> Store | None:
        return MongoStore(url, transactions=self.transactions)

    def _client(self) -> Any:
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(self.uri)

    async def discard(self, url: str) -> None:
        client = self._client()
        try:
            await client.drop_database(urlsplit(url).path.lstrip("/"))
        finally:
            await client.close()

    async def template(self, folder: Path, resources: list[dict[str, Any]], extractor: Extractor) -> Any:
        url = self.url(folder)
        store = self.store(url)
        await write_all(store, resources, extractor)  # type: ignore[arg-type]
        return url

    async def from_template(self, template: Any, folder: Path, filename: str = "fhirlead.db") -> str:
        url = self.url(folder)
        client = self._client()
        try:
            source = client[urlsplit(template).path.lstrip("/")]
            target = client[urlsplit(url).path.lstrip("/")]
            for name in await source.list_collection_names():
                docs = await source[name].find().to_list(None)
                if docs:
                    await target[name].insert_many(docs)
        finally:
            await client.close()
        return url


class NxBackend(ServerBackend):
    """nx-27017 started on a free port for the session; it runs transactions without reporting a
    replica set, hence `transactions=True`."""

    def __init__(self, folder: Path) -> None:
        self.process = start_nx(folder)
        port = self.process.args[self.process.args.index("--port") + 1]
        super().__init__("nx", f"mongodb://127.0.0.1:{port}/?directConnection=true", transactions=True)

    def stop(self) -> None:
        stop_nx(self.process)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NxUnavailable(RuntimeError):
    pass


def start_nx(folder: Path) -> subprocess.Popen:
    """Start nx-27017 (in-memory databases) and wait until it accepts connections."""
    port = free_port()
    executable = Path(sys.executable).with_name("nx-27017")
    if not executable.exists():
        raise NxUnavailable("nx-27017 is not installed (pip install -e '.[test]')")
    process = subprocess.Popen(
        [str(executable), "--data-dir", "memory", "--host", "127.0.0.1", "--port", str(port),
         "--log-file", str(folder / "nx.log"), "--pid-file", str(folder / "nx.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NxUnavailable(f"nx-27017 exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    stop_nx(process)
    raise NxUnavailable("nx-27017 did not accept connections within 20 s")


def stop_nx(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make(name: str, folder: Path) -> Backend:
    if name == "sqlite":
        return SqliteBackend()
    if name == "mongomock":
        return MongomockBackend()
    if name == "nx":
        return NxBackend(folder)
    uri = os.environ.get("FHIRLEAD_TEST_MONGODB_URI")
    if not uri:
        raise RuntimeError("FHIRLEAD_TEST_BACKEND=mongodb needs FHIRLEAD_TEST_MONGODB_URI")
    return ServerBackend("mongodb", uri)
