"""Legal holds locally: table ``holds`` in ``<data-dir>/privacy.sqlite3``, beside tombstones and audit."""

from pathlib import Path
from typing import Any

from ..domain.holds import Hold
from .sqlite_database import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    label       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    placed_at   INTEGER NOT NULL,
    placed_by   TEXT NOT NULL,
    released_at INTEGER,
    released_by TEXT
) WITHOUT ROWID;
"""
_FIELDS = ("id", "kind", "subject", "label", "reason", "placed_at", "placed_by", "released_at", "released_by")


class SqliteHolds:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = SqliteDatabase(path, "the privacy database")
        self._db.apply_schema(_SCHEMA)

    def place(self, hold: Hold) -> None:
        marks = ", ".join("?" * len(_FIELDS))
        values = tuple(getattr(hold, name) for name in _FIELDS)
        self._db.execute(f"INSERT OR IGNORE INTO holds ({', '.join(_FIELDS)}) VALUES ({marks})", values)  # noqa: S608 - fixed text

    def release(self, hold_id: str, now: int, actor: str) -> Hold | None:
        self._db.execute(
            "UPDATE holds SET released_at = ?, released_by = ? WHERE id = ? AND released_at IS NULL",
            (now, actor, hold_id),
        )
        row = self._db.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
        return _hold(row) if row else None

    def all(self) -> list[Hold]:
        return [_hold(row) for row in self._db.execute("SELECT * FROM holds ORDER BY placed_at, id")]

    def close(self) -> None:
        self._db.close()


def _hold(row: Any) -> Hold:
    return Hold(**{name: row[name] for name in _FIELDS})
