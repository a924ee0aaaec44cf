"""Opening a store from its URL: `sqlite:///path/file.db` (default) or `mongodb://…`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from fhirlead.storage.port import Store

# Openers for further URL schemes, consulted first: how a third-party backend (or a test stand-in
# such as `mongomock://`) plugs in without this module knowing it. The product registers none.
_OPENERS: dict[str, Callable[[str], Store]] = {}


def register_scheme(scheme: str, opener: Callable[[str], Store] | None) -> None:
    """Open `scheme://…` URLs with `opener` (None removes a registration)."""
    if opener is None:
        _OPENERS.pop(scheme, None)
    else:
        _OPENERS[scheme] = opener


class StoreUrlError(ValueError):
    """A store URL this server cannot open; the message says what is accepted."""


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` -> `relative.db`; `sqlite:////abs/file.db` -> `/abs/file.db`."""
    path = url[len("sqlite:///"):]
    if not path:
        raise StoreUrlError(f"No database file in '{url}': use sqlite:///path/to/file.db")
    return path


def open_store(url: str) -> Store:
    """A closed store for `url` (call `await store.open()`)."""
    scheme = urlsplit(url).scheme
    if scheme in _OPENERS:
        return _OPENERS[scheme](url)
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        from fhirlead.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("mongodb", "mongodb+srv"):
        from fhirlead.storage.mongo import MongoStore

        return MongoStore(url)  # the database is the URL's path (default `fhirlead`)
    raise StoreUrlError(
        f"Unsupported store URL '{url}': use sqlite:///path/to/file.db or mongodb://host:27017/database"
    )
