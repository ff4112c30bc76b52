"""The call index in SQLite (WAL): the embedded twin of the DynamoDB table.

Merges are single ``INSERT ... ON CONFLICT DO UPDATE`` statements, so concurrent deliveries never
read-modify-write. Listings use keyset pagination on ``(started_at, conversation_id)`` indexes.
"""

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..domain.errors import InvalidCursor
from ..domain.models import (
    CALL_FIELDS,
    MEMORY_EXPIRED,
    MERGED_CALL_FIELDS,
    REPLACED_CALL_FIELDS,
    AudioFacts,
    CallPage,
    CallQuery,
    CallRecord,
)
from ..domain.versions import AUDIO_EXPIRED
from .sqlite_database import SqliteDatabase

_COLUMN_TYPES = {
    "conversation_id": "TEXT PRIMARY KEY",
    "started_at": "INTEGER",
    "duration_s": "INTEGER",
    "message_count": "INTEGER",
    "transcript_bytes": "INTEGER",
    "has_audio": "INTEGER",
    "expects_audio": "INTEGER",
    "audio_bytes": "INTEGER",
    "cost": "INTEGER",
    "cost_usd": "REAL",
    "memory_updated_at": "INTEGER",
    "analytics_expired_at": "INTEGER",
    "event_at": "INTEGER",
    "ingested_at": "INTEGER",
    "updated_at": "INTEGER",
}
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))
_TABLE = f"""
CREATE TABLE IF NOT EXISTS calls (
    {", ".join(f"{c} {_COLUMN_TYPES.get(c, 'TEXT')}" for c in COLUMNS)}
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS calls_by_phone ON calls (phone, started_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS calls_by_agent ON calls (agent_id, started_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (started_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS calls_by_outcome ON calls (call_successful, started_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, started_at DESC, conversation_id DESC);
-- Partial: only calls filed under another number than a later event reported (erasure by phone).
CREATE INDEX IF NOT EXISTS calls_by_reported_phone ON calls (reported_phone) WHERE reported_phone IS NOT NULL;
-- Partial: only calls waiting for their audio are in it, so the webhook's write barely grows.
CREATE INDEX IF NOT EXISTS calls_awaiting_audio ON calls (updated_at, conversation_id)
    WHERE expects_audio = 1 AND audio_key IS NULL;
"""

# Column names come from the dataclass; every value is bound.
_SAVE_CALL = f"""
INSERT INTO calls (conversation_id, {", ".join(CALL_FIELDS)}, ingested_at, updated_at)
VALUES (:conversation_id, {", ".join(":" + c for c in CALL_FIELDS)}, :now, :now)
ON CONFLICT (conversation_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in REPLACED_CALL_FIELDS)},
    {", ".join(f"{c} = COALESCE(excluded.{c}, calls.{c})" for c in MERGED_CALL_FIELDS)},
    updated_at = excluded.updated_at
WHERE CASE WHEN calls.version IS NOT NULL THEN calls.version <= excluded.version
           ELSE calls.event_at IS NULL OR excluded.event_at IS NULL OR calls.event_at <= excluded.event_at END
  AND (excluded.memory_status IS NULL OR calls.memory_status IS NOT '{MEMORY_EXPIRED}')
"""  # noqa: S608

# The same, as a compare-and-swap on the version the caller read (``IS`` also matches NULL = NULL).
_SAVE_CALL_EXPECTING = _SAVE_CALL + " AND calls.version IS :expected_version"

_SAVE_AUDIO = """
INSERT INTO calls (conversation_id, agent_id, has_audio, audio_key, audio_bytes, audio_version, ingested_at,
                   updated_at)
VALUES (:conversation_id, :agent_id, 1, :audio_key, :audio_bytes, :audio_version, :now, :now)
ON CONFLICT (conversation_id) DO UPDATE SET
    agent_id = COALESCE(calls.agent_id, excluded.agent_id),
    has_audio = 1, audio_key = excluded.audio_key, audio_bytes = excluded.audio_bytes,
    audio_version = COALESCE(excluded.audio_version, calls.audio_version),
    updated_at = excluded.updated_at
WHERE (calls.audio_version IS NULL OR calls.audio_version <= excluded.audio_version)
"""
_CLAIM_PLACE = """
INSERT INTO calls (conversation_id, archive_prefix, phone, ingested_at, updated_at)
VALUES (:conversation_id, :archive_prefix, :phone, :now, :now)
ON CONFLICT (conversation_id) DO UPDATE SET
    archive_prefix = excluded.archive_prefix, phone = excluded.phone, updated_at = excluded.updated_at
WHERE calls.archive_prefix IS NULL
"""


class SqliteCallIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteDatabase(
            path,
            "the local index",
            # Every row is derived from the archive's files (the memory jobs queued in it are not).
            if_damaged="restore it from a backup, or move it aside and run `callvault verify --repair`, which "
            "rebuilds it from the archive (caller-memory jobs still queued in it are lost)",
        )
        # SQLite takes one writer at a time; a waiting writer sleeps in its busy handler (ms steps).
        # Queueing this process's writers on a lock instead hands the write lock over at once.
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as conn:
                conn.executescript(_TABLE)
                # Index files written by older versions lack newer columns: add them in place.
                present = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
                for column in COLUMNS:
                    if column not in present:
                        conn.execute(f"ALTER TABLE calls ADD COLUMN {column} {_COLUMN_TYPES.get(column, 'TEXT')}")
                conn.executescript(_INDEXES)
        except sqlite3.Error as exc:
            raise self._db.cannot_open(exc) from exc

    def _connect(self) -> sqlite3.Connection:
        return self._db.connection()

    def _execute(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def get(self, conversation_id: str) -> CallRecord | None:
        row = self._execute("SELECT * FROM calls WHERE conversation_id = ?", (conversation_id,)).fetchone()
        return _record(row) if row else None

    def save_call(
        self, record: CallRecord, now: int, *, expect_version: bool = False, expected_version: str | None = None
    ) -> bool:
        params = {c: getattr(record, c) for c in CALL_FIELDS}
        params.update(conversation_id=record.conversation_id, now=now, expected_version=expected_version)
        sql = _SAVE_CALL_EXPECTING if expect_version else _SAVE_CALL
        with self._write_lock:
            if expect_version and expected_version is not None and self.get(record.conversation_id) is None:
                return False  # the insert branch would ignore the expectation: a row we read is gone
            return self._execute(sql, params).rowcount > 0

    def save_audio(
        self,
        conversation_id: str,
        agent_id: str | None,
        audio: AudioFacts,
        now: int,
        *,
        only_if_unplaced: bool,
    ) -> bool:
        sql = _SAVE_AUDIO + (" AND calls.archive_prefix IS NULL" if only_if_unplaced else "")
        params = {
            "conversation_id": conversation_id,
            "agent_id": agent_id,
            "audio_key": audio.key,
            "audio_bytes": audio.size,
            "audio_version": audio.version,
            "now": now,
        }
        with self._write_lock:
            return self._execute(sql, params).rowcount > 0

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        # Never touches event_at: the memory outbox's triggers fire on it.
        with self._write_lock:
            self._execute(
                # ``expired`` is final (#13): a memory job's late status must not bring the memories back.
                "UPDATE calls SET memory_status = ?, memory_updated_at = ? "
                "WHERE conversation_id = ? AND memory_status IS NOT ?",
                (status, now, conversation_id, MEMORY_EXPIRED),
            )

    def claim_place(self, conversation_id: str, archive_prefix: str, phone: str | None, now: int) -> CallRecord:
        params = {"conversation_id": conversation_id, "archive_prefix": archive_prefix, "phone": phone, "now": now}
        with self._write_lock:
            # Not fsynced on its own: a claim matters only with the row write that follows it, whose
            # synchronous commit makes the whole WAL durable, this frame included. A claim lost to a
            # power cut names nothing; the redelivery claims again. One fsync per call saved.
            self._execute("PRAGMA synchronous=NORMAL")
            try:
                self._execute(_CLAIM_PLACE, params)
            finally:
                self._execute("PRAGMA synchronous=FULL")
        # The prefix never changes once set, so reading it back after the commit is race-free.
        row = self.get(conversation_id)
        assert row is not None  # the statement above inserted it or found it
        return row

    def scan(self) -> Iterator[CallRecord]:
        last = ""
        while True:  # keyset pages: no read transaction held open while the caller works
            rows = self._execute(
                "SELECT * FROM calls WHERE conversation_id > ? ORDER BY conversation_id LIMIT 500", (last,)
            ).fetchall()
            if not rows:
                return
            yield from (_record(row) for row in rows)
            last = rows[-1]["conversation_id"]

    def awaiting_audio(self, updated_before: int, limit: int = 100) -> list[CallRecord]:
        rows = self._execute(
            "SELECT * FROM calls WHERE expects_audio = 1 AND audio_key IS NULL AND updated_at < ?"
            " ORDER BY updated_at, conversation_id LIMIT ?",
            (updated_before, limit),
        ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, conversation_id: str) -> None:
        with self._write_lock:
            self._execute("DELETE FROM calls WHERE conversation_id = ?", (conversation_id,))

    def scrub_deleted(self) -> bool:
        # secure_delete zeroes a deleted row in its page, but the WAL keeps the frames that wrote the
        # row until a checkpoint. Not under ``_write_lock``: the checkpoint waits for readers, briefly.
        return self._db.checkpoint()

    def drop_audio(self, conversation_id: str, now: int) -> bool:
        with self._write_lock:
            return (
                self._execute(
                    "UPDATE calls SET has_audio = 0, audio_key = NULL, audio_bytes = NULL, audio_version = ?,"
                    " expects_audio = 0, updated_at = ? WHERE conversation_id = ?",
                    (AUDIO_EXPIRED, now, conversation_id),
                ).rowcount
                > 0
            )

    def expire_analytics(self, conversation_id: str, now: int) -> bool:
        with self._write_lock:
            return (
                self._execute(
                    "UPDATE calls SET analytics_expired_at = COALESCE(analytics_expired_at, ?), updated_at = ?"
                    " WHERE conversation_id = ?",
                    (now, now, conversation_id),
                ).rowcount
                > 0
            )

    def list_reported(self, phone: str) -> list[CallRecord]:
        rows = self._execute("SELECT * FROM calls WHERE reported_phone = ?", (phone,)).fetchall()
        return [_record(row) for row in rows]

    def list_calls(self, query: CallQuery) -> CallPage:
        where = ["started_at IS NOT NULL"]
        params: list[Any] = []
        if query.phone is not None:
            where.append("phone = ?")
            params.append(query.phone)
        if query.agent_id is not None:
            where.append("agent_id = ?")
            params.append(query.agent_id)
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status)
        if query.call_successful is not None:
            where.append("call_successful = ?")
            params.append(query.call_successful)
        if query.since is not None:
            where.append("started_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("started_at < ?")
            params.append(query.until)
        if query.after is not None:
            started_at, conversation_id = _position(query.after)
            # A row value, not "a < ? OR (a = ? AND b < ?)": SQLite walks the index from the position
            # (0.2 ms for a page over 100k calls) instead of a multi-index OR and a sort of every older
            # row (20 ms; benchmarks/console.py, page 2).
            where.append("(started_at, conversation_id) < (?, ?)")
            params += [started_at, conversation_id]
        sql = (
            f"SELECT * FROM calls WHERE {' AND '.join(where)} "  # noqa: S608 - fixed column names only
            "ORDER BY started_at DESC, conversation_id DESC LIMIT ?"
        )
        rows = self._execute(sql, (*params, query.limit + 1)).fetchall()
        items = [_record(r) for r in rows[: query.limit]]
        next_position = None
        if len(rows) > query.limit:
            last = items[-1]
            next_position = {"started_at": last.started_at, "conversation_id": last.conversation_id}
        return CallPage(items, next_position)

    def close(self) -> None:
        self._db.close()


def _position(after: dict[str, Any]) -> tuple[int, str]:
    started_at, conversation_id = after.get("started_at"), after.get("conversation_id")
    if not isinstance(started_at, int) or isinstance(started_at, bool) or not isinstance(conversation_id, str):
        raise InvalidCursor("cursor does not belong to this index")
    return started_at, conversation_id


def _record(row: sqlite3.Row) -> CallRecord:
    values = dict(row)
    for flag in ("has_audio", "expects_audio"):
        if values.get(flag) is not None:
            values[flag] = bool(values[flag])
    return CallRecord(**values)
