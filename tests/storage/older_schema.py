"""Stores as an older fhirlead left them, for the migration tests."""

from __future__ import annotations

import sqlite3
from contextlib import closing


def downgrade(path: str, table: str, version: int) -> None:
    """Make the SQLite store at `path` look written by the fhirlead of schema `version`, before `table`."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version={version}")
