"""The audit trail locally: table ``audit`` in ``<data-dir>/privacy.sqlite3``, beside the tombstones.

Append-only twice over: the chain (``domain.audit``) shows any change, and triggers refuse UPDATE and
DELETE on the table, so no CallVault code path can edit it by mistake. An append reads the last entry
and inserts the next in one ``BEGIN IMMEDIATE`` transaction: two processes (serve and a CLI command)
never fork the chain. ``audit_subjects`` indexes entries by conversation hash for ``--conversation``.
"""

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..domain.audit import AuditEntry, Detail, chained
from ..domain.errors import StorageUnavailable
from .sqlite_database import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq      INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    action   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    subjects TEXT NOT NULL,
    detail   TEXT NOT NULL,
    prev     TEXT NOT NULL,
    hash     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


class SqliteAuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = SqliteDatabase(path, "the audit trail")
        self._db.apply_schema(_SCHEMA)

    def append(self, action: str, actor: str, subjects: Sequence[str], detail: Detail, now: int) -> AuditEntry:
        conn = self._db.connection()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                last = conn.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                entry = chained(_entry(last) if last else None, now, action, actor, subjects, detail)
                conn.execute(
                    "INSERT INTO audit (seq, at, action, actor, subjects, detail, prev, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.seq,
                        entry.at,
                        entry.action,
                        entry.actor,
                        orjson.dumps(list(entry.subjects)).decode(),
                        orjson.dumps(dict(entry.detail), option=orjson.OPT_SORT_KEYS).decode(),
                        entry.prev,
                        entry.hash,
                    ),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO audit_subjects (subject, seq) VALUES (?, ?)",
                    [(subject, entry.seq) for subject in entry.subjects],
                )
        except sqlite3.Error as exc:
            raise StorageUnavailable("the audit trail is unavailable") from exc
        return entry

    def entries(self, since: int | None = None, subject: str | None = None) -> Iterator[AuditEntry]:
        where: list[str] = []
        params: list[int | str] = []
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if subject is not None:
            where.append("seq IN (SELECT seq FROM audit_subjects WHERE subject = ?)")
            params.append(subject)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT * FROM audit {clause} ORDER BY seq", tuple(params)).fetchall()  # noqa: S608 - fixed text
        return iter([_entry(row) for row in rows])

    def close(self) -> None:
        self._db.close()


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row["seq"]),
        at=int(row["at"]),
        action=str(row["action"]),
        actor=str(row["actor"]),
        subjects=tuple(orjson.loads(row["subjects"])),
        detail=orjson.loads(row["detail"]),
        prev=str(row["prev"]),
        hash=str(row["hash"]),
    )
