"""A new index file opened by several processes at once (`serve`'s ingest processes, `import` beside a
first `serve`): SQLite refuses all but one "turn to WAL" at once, without its busy timeout."""

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from services.core.adapters import sqlite_database
from services.core.adapters.sqlite_database import SqliteDatabase

PROCESSES = 4
TRIALS = 20  # before the retry, 2 of 15 such trials failed: 20 pass by luck with a chance of 6%


def _open_index(path: str, barrier: Any, answers: Any) -> None:
    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    barrier.wait()
    try:
        SqliteCallIndex(Path(path))
        answers.put("ok")
    except Exception as exc:  # reported to the test, which names it
        answers.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_index_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}" / "index.sqlite3"
        path.parent.mkdir()
        barrier, answers = ctx.Barrier(PROCESSES), ctx.Queue()
        processes = [ctx.Process(target=_open_index, args=(str(path), barrier, answers)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        results = [answers.get(timeout=5) for _ in processes]
        assert results == ["ok"] * PROCESSES, f"trial {trial}: {results}"


class _LockedTwice:
    """A connection whose first two "turn to WAL" find the file locked, as a racing process leaves it."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.refused = 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "PRAGMA journal_mode=WAL" and self.refused < 2:
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        return self.real.execute(sql, *args)


def test_turning_to_wal_is_tried_again_while_the_file_is_locked(tmp_path: Path) -> None:
    conn = _LockedTwice(sqlite3.connect(tmp_path / "new.sqlite3", isolation_level=None))
    sqlite_database._turn_to_wal(conn)  # type: ignore[arg-type]
    assert conn.refused == 2
    assert conn.real.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_other_errors_are_not_tried_again(tmp_path: Path) -> None:
    calls = []

    class Broken:
        def execute(self, sql: str) -> None:
            calls.append(sql)
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        sqlite_database._turn_to_wal(Broken())  # type: ignore[arg-type]
    assert len(calls) == 1
    assert SqliteDatabase(tmp_path / "ok.sqlite3", "the test index").connection() is not None
