"""The local memory-job outbox: a table ``memory_outbox`` in the index's own SQLite file.

Why a table and not a thread-safe queue: a job must survive a crash or restart of ``callvault
serve`` from the moment the webhook got its 200. The row is committed (WAL, ``synchronous=FULL``)
before ``enqueue`` returns, and the same file holds the call index, so backing up one file backs
up both.

One row per conversation (job id = ``conversation_id``), states ``pending`` -> ``running`` ->
``done`` | ``failed``:

- ``claim`` is one ``UPDATE ... RETURNING`` statement: SQLite runs it atomically, so two workers
  never get the same job. It takes a due ``pending`` row, or a ``running`` row whose lease ran out
  (its worker was killed), and stamps a fresh ``lease_token``.
- ``complete``/``fail`` only touch the row while it still carries that token, so a worker that
  outlived its lease cannot overwrite the newer run's result.
- ``enqueue`` of a conversation already ``running`` does not start a second, concurrent run (two
  interleaved delete-then-add runs could duplicate memories): it sets ``rerun`` and the current
  run puts the row back to ``pending`` when it finishes.

A transactional outbox: ``install_call_triggers`` adds triggers to the ``calls`` table so the job row
is written by the index's own ``save_call`` statement, in its transaction. The webhook then pays no
extra commit (a second fsync'd commit per webhook cost 15-25% of ingest throughput), and a job
exists exactly when its call row does: no crash window between the two writes.
"""

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.core.adapters.sqlite_database import SqliteDatabase
from services.core.domain.errors import StorageUnavailable

from .domain import MemoryJob

OutboxState = Literal["pending", "running", "done", "failed"]
STATES: tuple[OutboxState, ...] = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_outbox (
    conversation_id TEXT PRIMARY KEY,
    transcript_key  TEXT,
    event_at        INTEGER,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    leased_until    REAL,
    lease_token     TEXT,
    rerun           INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
) WITHOUT ROWID;
"""
# No secondary index, on purpose: every index is one more B-tree page in each webhook's fsync'd commit
# (the triggers write this table inside the index's transaction), and that showed as +10-15% on
# ingest p99 at saturation. ``claim`` scans the table instead, which ``prune_done`` keeps small:
# work waiting, failures, and the last day of finished jobs.
DONE_KEPT_SECS = 86_400

_ENQUEUE = """
INSERT INTO memory_outbox (conversation_id, transcript_key, event_at, state, attempts, next_attempt_at,
                           created_at, updated_at)
VALUES (:conversation_id, :transcript_key, :event_at, 'pending', 0, :now, :now, :now)
ON CONFLICT (conversation_id) DO UPDATE SET
    transcript_key = COALESCE(excluded.transcript_key, memory_outbox.transcript_key),
    event_at = COALESCE(excluded.event_at, memory_outbox.event_at),
    rerun = CASE WHEN memory_outbox.state = 'running' THEN 1 ELSE 0 END,
    attempts = CASE WHEN memory_outbox.state = 'running' THEN memory_outbox.attempts ELSE 0 END,
    state = CASE WHEN memory_outbox.state = 'running' THEN 'running' ELSE 'pending' END,
    next_attempt_at = excluded.next_attempt_at,
    last_error = NULL,
    updated_at = excluded.updated_at
"""

# Fired by SqliteCallIndex.save_call: on a new call row, and when a later (or equal, i.e. redelivered)
# event rewrites it (save_call always sets event_at; its staleness guard skips older events, and
# save_audio never sets event_at). Calls without a number or that never connected make no job, nor
# does a call whose memories a retention rule expired (#13; ``models.MEMORY_EXPIRED``: the field is
# merged, so the row still says so after the save). Time is SQLite's own clock (unix seconds), as the
# worker's default clock.
_TRIGGER_BODY = """
WHEN NEW.transcript_key IS NOT NULL AND NEW.phone IS NOT NULL AND NEW.status IS NOT 'initiation_failed'
    AND NEW.memory_status IS NOT 'expired'
BEGIN
    INSERT INTO memory_outbox (conversation_id, transcript_key, event_at, state, attempts, next_attempt_at,
                               created_at, updated_at)
    VALUES (NEW.conversation_id, NEW.transcript_key, NEW.event_at, 'pending', 0,
            (julianday('now') - 2440587.5) * 86400.0, (julianday('now') - 2440587.5) * 86400.0,
            (julianday('now') - 2440587.5) * 86400.0)
    ON CONFLICT (conversation_id) DO UPDATE SET
        transcript_key = excluded.transcript_key,
        event_at = excluded.event_at,
        rerun = CASE WHEN memory_outbox.state = 'running' THEN 1 ELSE 0 END,
        attempts = CASE WHEN memory_outbox.state = 'running' THEN memory_outbox.attempts ELSE 0 END,
        state = CASE WHEN memory_outbox.state = 'running' THEN 'running' ELSE 'pending' END,
        next_attempt_at = excluded.next_attempt_at,
        last_error = NULL,
        updated_at = excluded.updated_at;
END
"""
TRIGGERS = ("memory_outbox_on_call_insert", "memory_outbox_on_call_update")
# Dropped and made again in one transaction, so an index an older version wrote gets today's triggers
# and no save in another process finds the calls table without them.
_TRIGGERS_SQL = f"""
BEGIN IMMEDIATE;
DROP TRIGGER IF EXISTS {TRIGGERS[0]};
DROP TRIGGER IF EXISTS {TRIGGERS[1]};
CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON calls {_TRIGGER_BODY};
CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE OF event_at ON calls {_TRIGGER_BODY};
COMMIT;
"""

_CLAIM = """
UPDATE memory_outbox
SET state = 'running', attempts = attempts + 1, leased_until = :now + :lease, lease_token = :token,
    rerun = 0, updated_at = :now
WHERE conversation_id = (
    SELECT conversation_id FROM memory_outbox
    WHERE (state = 'pending' AND next_attempt_at <= :now) OR (state = 'running' AND leased_until <= :now)
    ORDER BY next_attempt_at, conversation_id
    LIMIT 1
)
RETURNING conversation_id, transcript_key, event_at, attempts, lease_token
"""

_COMPLETE = """
UPDATE memory_outbox
SET state = CASE WHEN rerun = 1 THEN 'pending' ELSE 'done' END,
    attempts = CASE WHEN rerun = 1 THEN 0 ELSE attempts END,
    rerun = 0, next_attempt_at = :now, leased_until = NULL, lease_token = NULL, last_error = NULL,
    updated_at = :now
WHERE conversation_id = :conversation_id AND lease_token = :token
RETURNING state
"""

_FAIL = """
UPDATE memory_outbox
SET state = CASE WHEN rerun = 1 THEN 'pending' WHEN attempts >= :max_attempts THEN 'failed' ELSE 'pending' END,
    attempts = CASE WHEN rerun = 1 THEN 0 ELSE attempts END,
    next_attempt_at = CASE WHEN rerun = 1 THEN :now ELSE :now + :delay END,
    rerun = 0, leased_until = NULL, lease_token = NULL, last_error = :error, updated_at = :now
WHERE conversation_id = :conversation_id AND lease_token = :token
RETURNING state
"""


@dataclass(frozen=True)
class ClaimedJob:
    job: MemoryJob
    attempt: int  # 1 on the first run; a run killed mid-way counts
    token: str


@dataclass(frozen=True)
class OutboxRow:
    conversation_id: str
    state: OutboxState
    attempts: int
    next_attempt_at: float
    leased_until: float | None
    rerun: bool
    last_error: str | None
    updated_at: float


class SqliteOutbox:
    """``MemoryJobQueue`` for the local back end, plus what the worker and the CLI need."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        # Set by ``enqueue`` so an in-process worker wakes at once instead of at its next poll.
        self.wakeup = threading.Event()
        self._db = SqliteDatabase(path, "the memory outbox")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connect().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return self._db.connection()

    def _execute(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    # -- MemoryJobQueue ------------------------------------------------------------------------

    def enqueue(self, job: MemoryJob) -> None:
        params = {
            "conversation_id": job.conversation_id,
            "transcript_key": job.transcript_key,
            "event_at": job.event_at,
            "now": self.clock(),
        }
        self._execute(_ENQUEUE, params)
        self.wakeup.set()

    # -- transactional enqueue -----------------------------------------------------------------

    def install_call_triggers(self) -> None:
        """Record a job with every call the index saves (the ``calls`` table must exist: build the
        index first). Idempotent."""
        conn = self._connect()
        try:
            conn.executescript(_TRIGGERS_SQL)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StorageUnavailable("the memory outbox triggers cannot be installed") from exc

    def remove_call_triggers(self) -> None:
        """For ``memory_backend = none``: calls stop making jobs (jobs already waiting stay)."""
        self._connect().executescript("".join(f"DROP TRIGGER IF EXISTS {name};" for name in TRIGGERS))

    def has_call_triggers(self) -> bool:
        marks = ",".join("?" * len(TRIGGERS))
        sql = f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})"  # noqa: S608
        return int(self._execute(sql, TRIGGERS).fetchone()[0]) == len(TRIGGERS)

    # -- worker --------------------------------------------------------------------------------

    def abandoned(self, max_attempts: int) -> list[str]:
        """The jobs ``give_up_abandoned`` would give up now (their rows are marked first)."""
        sql = (
            "SELECT conversation_id FROM memory_outbox "
            "WHERE state = 'running' AND leased_until <= :now AND attempts >= :max_attempts"
        )
        rows = self._execute(sql, {"now": self.clock(), "max_attempts": max_attempts}).fetchall()
        return [row["conversation_id"] for row in rows]

    def give_up_abandoned(self, max_attempts: int) -> list[str]:
        """Jobs whose every attempt ended with the worker gone (their lease ran out: a crash, an out of
        memory kill, a native fault in the model or the store) become ``failed`` here, since ``fail``
        never ran for them: else one poisonous call would take ``serve`` down after every restart."""
        sql = (
            "UPDATE memory_outbox SET state = 'failed', leased_until = NULL, lease_token = NULL, "
            "last_error = 'abandoned: the worker stopped during every attempt', updated_at = :now "
            "WHERE state = 'running' AND leased_until <= :now AND attempts >= :max_attempts "
            "RETURNING conversation_id"
        )
        rows = self._execute(sql, {"now": self.clock(), "max_attempts": max_attempts}).fetchall()
        return [row["conversation_id"] for row in rows]

    def claim(self, lease_secs: float) -> ClaimedJob | None:
        token = uuid.uuid4().hex
        row = self._execute(_CLAIM, {"now": self.clock(), "lease": lease_secs, "token": token}).fetchone()
        if row is None:
            return None
        job = MemoryJob(row["conversation_id"], row["transcript_key"], row["event_at"])
        return ClaimedJob(job, int(row["attempts"]), row["lease_token"])

    def complete(self, claimed: ClaimedJob) -> OutboxState | None:
        """``done`` (or ``pending`` again if the call was redelivered meanwhile); None if the lease was lost."""
        params = {"conversation_id": claimed.job.conversation_id, "token": claimed.token, "now": self.clock()}
        row = self._execute(_COMPLETE, params).fetchone()
        return row["state"] if row else None

    def fail(self, claimed: ClaimedJob, error: str, *, max_attempts: int, delay_secs: float) -> OutboxState | None:
        """``pending`` (retry after ``delay_secs``) or ``failed`` (gave up); None if the lease was lost."""
        params = {
            "conversation_id": claimed.job.conversation_id,
            "token": claimed.token,
            "now": self.clock(),
            "max_attempts": max_attempts,
            "delay": delay_secs,
            "error": error[:500],
        }
        row = self._execute(_FAIL, params).fetchone()
        return row["state"] if row else None

    def next_due_in(self) -> float | None:
        """Seconds until the next job is due (0 if one is due now); None when nothing waits."""
        row = self._execute(
            "SELECT MIN(CASE WHEN state = 'pending' THEN next_attempt_at ELSE leased_until END) AS due "
            "FROM memory_outbox WHERE state IN ('pending', 'running')"
        ).fetchone()
        if row is None or row["due"] is None:
            return None
        return max(0.0, float(row["due"]) - self.clock())

    def prune_done(self, older_than_secs: float = DONE_KEPT_SECS) -> int:
        """Forget finished jobs older than ``older_than_secs`` (the index row keeps the call's status)."""
        params = {"before": self.clock() - older_than_secs}
        return self._execute("DELETE FROM memory_outbox WHERE state = 'done' AND updated_at < :before", params).rowcount

    # -- operators -----------------------------------------------------------------------------

    def retry_failed(self, conversation_id: str | None = None) -> int:
        """Put failed jobs (or one) back to ``pending`` with a fresh attempt budget."""
        sql = (
            "UPDATE memory_outbox SET state = 'pending', attempts = 0, next_attempt_at = :now, "
            "last_error = NULL, updated_at = :now WHERE state = 'failed'"
        )
        params: dict[str, Any] = {"now": self.clock()}
        if conversation_id is not None:
            sql += " AND conversation_id = :conversation_id"
            params["conversation_id"] = conversation_id
        count = self._execute(sql, params).rowcount
        if count:
            self.wakeup.set()
        return count

    def forget_jobs(self, conversation_ids: list[str], *, dry_run: bool = False) -> int:
        """Erasure (#13): drop these conversations' jobs, whatever their state. A worker running one
        finds its row gone: ``complete``/``fail`` touch only a row with its lease token."""
        count = 0
        verb = "SELECT COUNT(*) FROM" if dry_run else "DELETE FROM"
        for start in range(0, len(conversation_ids), 500):  # SQLite's bound on host parameters
            chunk = conversation_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cursor = self._execute(f"{verb} memory_outbox WHERE conversation_id IN ({marks})", tuple(chunk))
            count += int(cursor.fetchone()[0]) if dry_run else cursor.rowcount
        return count

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = dict.fromkeys(STATES, 0)
        for row in self._execute("SELECT state, COUNT(*) AS n FROM memory_outbox GROUP BY state"):
            found[row["state"]] = int(row["n"])
        return found

    def get(self, conversation_id: str) -> OutboxRow | None:
        row = self._execute("SELECT * FROM memory_outbox WHERE conversation_id = ?", (conversation_id,)).fetchone()
        return _row(row) if row else None

    def rows(self, state: OutboxState | None = None, limit: int = 50) -> list[OutboxRow]:
        where, params = ("WHERE state = ?", (state, limit)) if state else ("", (limit,))
        sql = f"SELECT * FROM memory_outbox {where} ORDER BY updated_at DESC LIMIT ?"  # noqa: S608 - fixed text
        return [_row(r) for r in self._execute(sql, params)]

    def close(self) -> None:
        self._db.close()


class CallTriggeredQueue:
    """``MemoryJobQueue`` for an outbox filled by the index's triggers: the job row already exists
    (written with the call, in its transaction) when the hook runs, so this only wakes the worker."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox

    def enqueue(self, job: MemoryJob) -> None:
        self.outbox.wakeup.set()


def _row(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        conversation_id=row["conversation_id"],
        state=row["state"],
        attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]),
        leased_until=float(row["leased_until"]) if row["leased_until"] is not None else None,
        rerun=bool(row["rerun"]),
        last_error=row["last_error"],
        updated_at=float(row["updated_at"]),
    )
