"""The embedded SQLite backend: the zero-set-up default store."""

from fhirlead.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
