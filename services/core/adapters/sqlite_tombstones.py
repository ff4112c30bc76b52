"""Tombstones locally: a table in ``<data-dir>/privacy.sqlite3``, a file apart from the index, so
restoring an older index (a backup) keeps the tombstones: ``callvault verify`` then finds the erased
calls the backup brought back and ``--repair`` erases them again."""

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..domain.errors import StorageUnavailable
from .sqlite_database import SqliteDatabase

PRIVACY_FILE = "privacy.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    digest     TEXT PRIMARY KEY,
    erased_at  INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SqliteTombstones:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = SqliteDatabase(path, "the privacy database")
        self._db.apply_schema(_SCHEMA)

    def add(self, digests: Sequence[str], now: int) -> None:
        conn = self._db.connection()
        try:  # one transaction, one fsync
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO tombstones (digest, erased_at) VALUES (?, ?)", [(d, now) for d in digests]
                )
        except sqlite3.Error as exc:
            raise StorageUnavailable("the privacy database is unavailable") from exc

    def contains(self, digest: str) -> bool:
        return self._db.execute("SELECT 1 FROM tombstones WHERE digest = ?", (digest,)).fetchone() is not None

    def digests(self) -> Iterator[str]:
        return iter([row[0] for row in self._db.execute("SELECT digest FROM tombstones ORDER BY digest")])

    def close(self) -> None:
        self._db.close()
