"""One SQLite file shared by the call index and the memory outbox: a WAL connection per thread."""

import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..domain.errors import StorageUnavailable


class SqliteDatabase:
    """Thread-local connections in WAL mode with ``synchronous=FULL`` (a commit is on disk before we
    answer 200; NORMAL could lose it on power loss). SQLite errors become ``StorageUnavailable``
    naming ``what``, never quoting the SQL or its values."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.row_factory = sqlite3.Row
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"{self.what} cannot be opened") from exc
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"{self.what} is unavailable") from exc

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
