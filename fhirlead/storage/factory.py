"""Opening a store from its URL: `sqlite:///path/file.db` (default) or `mongodb://…`."""

from __future__ import annotations

from urllib.parse import urlsplit

from fhirlead.storage.port import Store


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
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        from fhirlead.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    raise StoreUrlError(f"Unsupported store URL '{url}': use sqlite:///path/to/file.db")
