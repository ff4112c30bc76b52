"""One SQLite file shared by the call index and the memory outbox: a WAL connection per thread."""

import contextlib
import os
import sqlite3
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

from ..domain.errors import StorageUnavailable


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# A new file turns to WAL under an exclusive lock, and SQLite answers a second process doing the same
# at that moment "database is locked" at once, without its busy timeout (seen: 2 of 15 trials of four
# processes opening one new index; `serve`'s ingest processes, or `import` beside a first `serve`).
# On a file in WAL already the pragma takes no such lock, so this only ever waits at a file's birth.
def _turn_to_wal(conn: sqlite3.Connection) -> None:
    # Imported here: the Lambda layers import this module (the outbox's types) but never open SQLite,
    # and carry no tenacity.
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    for attempt in Retrying(
        retry=retry_if_exception(_locked),
        stop=stop_after_delay(10.0),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        reraise=True,
    ):
        with attempt:
            conn.execute("PRAGMA journal_mode=WAL")


BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another's lock before StorageUnavailable
CHECKPOINT_WAIT_MS = 500  # an erasure's checkpoint blocks writers: it waits this long for readers


class SqliteDatabase:
    """Thread-local connections in WAL mode with ``synchronous=FULL`` (a commit is on disk before we
    answer 200; NORMAL could lose it on power loss). SQLite errors become ``StorageUnavailable``
    naming ``what``, never quoting the SQL or its values."""

    def __init__(self, path: Path, what: str, if_damaged: str = "restore it from a backup") -> None:
        self.path = path
        self.what = what
        self.if_damaged = if_damaged  # what to do about a file that is not a database (any more)
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            make_private(self.path)
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                _turn_to_wal(conn)
                conn.execute("PRAGMA synchronous=FULL")
                # Erasure (#13): deleted rows are overwritten with zeros in their pages, not left in
                # the file's free space for a forensic read. Costs a write only where rows are deleted.
                conn.execute("PRAGMA secure_delete=ON")
                conn.row_factory = sqlite3.Row
            except sqlite3.Error as exc:
                raise self.cannot_open(exc) from exc
            self._local.conn = conn
        return conn

    def apply_schema(self, script: str) -> None:
        """Create what is absent (``CREATE ... IF NOT EXISTS``); a failure is ``StorageUnavailable``
        that says why where it can (a read-only data dir), as one from ``connection()`` is."""
        try:
            self.connection().executescript(script)
        except sqlite3.Error as exc:
            raise self.cannot_open(exc) from exc

    def cannot_open(self, exc: sqlite3.Error) -> StorageUnavailable:
        return StorageUnavailable(f"{self.what} cannot be opened{self._why(exc)}")

    def _why(self, exc: sqlite3.Error) -> str:
        """Why, and what to do, where SQLite's error (or the folder) tells; empty otherwise. Error path only."""
        message = str(exc)
        if "file is not a database" in message or "malformed" in message:
            return f": {self.path.name} is damaged or not a SQLite database; {self.if_damaged}"
        return _unwritable(self.path)

    def execute(self, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"{self.what} is unavailable{self._why(exc)}") from exc

    def checkpoint(self, wait_ms: int = CHECKPOINT_WAIT_MS) -> bool:
        """Write every WAL frame into the database file and truncate the WAL to zero bytes, so rows
        deleted for an erasure survive nowhere. Writers wait while it runs, so it waits for readers
        ``wait_ms`` at most (not the 10 s busy timeout); False when one still held the WAL then."""
        conn = self.connection()
        try:
            conn.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
            busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if _locked(exc) or "busy" in str(exc):
                return False  # another writer's lock outlasted the wait: the same as a reader's
            raise StorageUnavailable(f"{self.what} is unavailable") from exc
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"{self.what} is unavailable") from exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return not busy

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# SQLite creates these beside the database with the database's own mode (it fchmods them to match,
# whatever the umask), so a database readable by others spreads that to its journal and WAL.
_SIDE_FILES = ("-wal", "-shm", "-journal")


def _unwritable(path: Path) -> str:
    """Why a database cannot be opened when its folder is the reason (SQLite only says "unable to open
    database file"): WAL mode writes a ``-shm`` beside the file even to read it. Empty otherwise."""
    folder = path.parent
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return ""
    if read_only:
        return ": its folder is on a read-only file system (SQLite writes beside the file even to read it)"
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return ": this user may not write in its folder (SQLite writes beside the file even to read it)"
    return ""


def make_private(path: Path) -> None:
    """Make the SQLite database at ``path`` readable by its owner only, before it is opened: create it
    0600 if absent (an empty file is an empty database), else take group/other access off it and
    its side files.

    Never opens the database itself: closing any descriptor of a file drops every POSIX lock this
    process holds on it, including those of SQLite connections in other threads. A new file is made
    under a temp name, closed, then hard-linked into place (never replacing one that appeared).
    """
    if not path.exists() and path.parent.is_dir():
        tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        except OSError:
            pass  # SQLite reports the unusable folder in its own words
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)):
        with contextlib.suppress(OSError):  # absent, or not ours to change: SQLite decides
            mode = stat.S_IMODE(candidate.stat().st_mode)
            if mode & 0o077:
                candidate.chmod(mode & ~0o077)
