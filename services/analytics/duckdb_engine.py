"""DuckDB over the analytics tables: a local folder (through an incremental cache) or an S3 bucket.

The tables are exposed under the Glue names (``calls``, ``messages``, ``evaluations``, each with the
``dt`` partition column as a string), so report SQL and ad-hoc SQL run unchanged here and on Athena.
They are what Athena's views of the same names are: a call with a per-call object beside its day's
day object has only the per-call object's rows (``tables.current_rows_sql``, over ``calls_objects``
and the others, which name the object of each row ``"$path"`` as Athena does).

Local folders hold one small object per call per table; opening 100,000 gzip files costs seconds
on every query, so the local engine keeps a DuckDB file (``<data-dir>/analytics-cache.duckdb``)
with the rows, refreshed per partition: a ``dt=`` folder is re-read only when its modification time
changed (every object write renames a file into it). The cache is disposable: deleting it, or
``--no-cache``, gives the same answers from the files themselves.

httpfs is loaded from the ``duckdb-extension-httpfs`` wheel by path, so nothing is ever downloaded.
"""

import contextlib
import hashlib
import os
import re
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import duckdb

from .result import QueryResult, neutral_type
from .tables import (
    COLUMNS,
    DUCKDB_TYPES,
    OBJECT_SUFFIX,
    PARTITION_COLUMN,
    PATH_COLUMN,
    TABLES,
    current_rows_sql,
    objects_table,
)

CACHE_FILE = "analytics-cache.duckdb"
# A partition folder modified this recently may still change within the same timestamp tick: it is
# read, but not recorded as fresh, so the next refresh reads it again (git's "racy index" rule).
RACY_WINDOW_NS = 2_000_000_000
# A merge deletes the per-call objects it folded in: a read that listed one (a cache refresh, or a
# query over the files) lists and reads again, soon (merges can run back to back: imports, redeliveries).
VANISHED_FILE_ATTEMPTS = 20
_DT_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
# The cache holds each partition's current rows: a change of columns, of that rule or of how rows are
# laid out (one partition per insert, since 2026-12-07) rebuilds it.
_CACHE_LAYOUT = "one partition per insert"
_SCHEMA_VERSION = hashlib.sha256(
    repr((sorted(COLUMNS.items()), [current_rows_sql(t) for t in TABLES], _CACHE_LAYOUT)).encode()
).hexdigest()[:16]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns_struct(table: str) -> str:
    return "{" + ", ".join(f"{_literal(n)}: {_literal(DUCKDB_TYPES[t])}" for n, t in COLUMNS[table]) + "}"


def _read_json(table: str, paths: Sequence[str]) -> str:
    """A ``read_json`` call returning the table's columns plus ``dt`` (a string, as in Glue) and ``filename``."""
    listed = "[" + ", ".join(_literal(p) for p in paths) + "]"
    return (
        f"read_json({listed}, columns={_columns_struct(table)}, format='newline_delimited', "
        "hive_partitioning=true, hive_types_autocast=false, filename=true)"
    )


def _objects_select(table: str, paths: Sequence[str]) -> str:
    """The rows of every object in ``paths``, each with its object's path (Athena's ``"$path"``)."""
    columns = ", ".join([f'"{name}"' for name, _t in COLUMNS[table]] + [PARTITION_COLUMN])
    return f"SELECT {columns}, filename AS {PATH_COLUMN} FROM {_read_json(table, paths)}"  # noqa: S608


def _empty_objects_select(table: str) -> str:
    typed = [f'CAST(NULL AS {DUCKDB_TYPES[t]}) AS "{n}"' for n, t in COLUMNS[table]]
    return (
        f"SELECT {', '.join(typed)}, CAST(NULL AS VARCHAR) AS {PARTITION_COLUMN}, "
        f"CAST(NULL AS VARCHAR) AS {PATH_COLUMN} WHERE false"
    )


def _create_views(con: duckdb.DuckDBPyConnection, table: str, objects: str) -> None:
    """``{table}_objects`` as ``objects`` selects it, and ``table`` over it: each call's current rows."""
    con.execute(f"CREATE VIEW {objects_table(table)} AS {objects}")
    con.execute(f"CREATE VIEW {table} AS {current_rows_sql(table)}")


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """Load httpfs from the installed wheel (never from the network)."""
    import duckdb_extension_httpfs

    version = con.sql("PRAGMA version").fetchone()
    if version is None:  # pragma: no cover - DuckDB always answers
        raise RuntimeError("DuckDB did not report its version")
    path = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / str(version[0]) / "httpfs.duckdb_extension"
    if not path.exists():
        raise RuntimeError(f"no httpfs extension for DuckDB {version[0]} in the duckdb-extension-httpfs wheel")
    con.execute(f"LOAD {_literal(str(path))}")


class QueryRefused(ValueError):
    """A statement that could change data, run where only reading is allowed (``callvault sql``)."""


# DuckDB's own parser says what each statement is; DESCRIBE, SHOW, SUMMARIZE and PRAGMA reads parse as SELECT.
_READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\b", re.IGNORECASE)


def check_read_only(sql: str) -> None:
    """Raise ``QueryRefused`` unless every statement in ``sql`` only reads (``duckdb.ParserException`` if
    it does not parse). ``EXPLAIN ANALYZE`` runs its statement, so what it explains is checked too."""
    for statement in duckdb.extract_statements(sql):
        if statement.type not in _READ_STATEMENTS:
            words = statement.query.split(None, 1)
            what = words[0].upper() if words else str(statement.type).rsplit(".", 1)[-1]
            raise QueryRefused(
                f"{what} refused: this SQL is read-only "
                "(SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN and PRAGMA reads run)"
            )
        if statement.type == duckdb.StatementType.EXPLAIN:
            check_read_only(_EXPLAIN_PREFIX.sub("", statement.query, count=1))


def _connect(database: str = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    # No extension is ever installed or fetched behind our back: offline, and the same on every machine.
    # preserve_insertion_order=false: with it on, reading 10,000 small gzip files took 2.9 GB and 3.9 s;
    # off, 130 MB and 0.6 s (measured, benchmarks/analytics_duckdb.py). Reports order explicitly anyway.
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "preserve_insertion_order": "false",
    }
    if read_only:  # the cache file opened read-only, no file system access, settings locked
        config |= {"enable_external_access": "false", "lock_configuration": "true"}
    return duckdb.connect(database, read_only=read_only, config=config)


def _lock_down(con: duckdb.DuckDBPyConnection, readable: Sequence[str]) -> None:
    """For an in-memory database (no file to open read-only): files outside ``readable`` out of reach,
    no extension loads, no setting changes. Writes to the views are refused by ``check_read_only``."""
    if readable:
        con.execute(f"SET allowed_directories = [{', '.join(_literal(d) for d in readable)}]")
        con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


class DuckDbEngine:
    """Runs SQL over ``calls``, ``messages`` and ``evaluations``. Build with ``local()`` or ``s3()``."""

    dialect: Final = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection, description: str, *, read_only: bool = False) -> None:
        self.con = con
        self.description = description
        self.read_only = read_only  # query() refuses statements that could write (callvault sql)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def local(
        cls, root: Path, cache: Path | None = None, *, refresh: bool = True, read_only: bool = False
    ) -> "DuckDbEngine":
        """Over ``root`` (the folder holding ``calls/``, ``messages/``, ``evaluations/``).

        With ``cache``, rows live in that DuckDB file and only changed partitions are re-read; if
        another process holds the cache, this one reads the files directly instead (slower, same rows).
        ``read_only``: after the refresh the cache is opened again in DuckDB's read-only mode, and
        ``query`` runs only statements that read (``callvault sql``).
        """
        if cache is not None and root.is_dir():  # no folder yet: no data, nothing worth caching
            try:
                con = _connect(str(cache))
            except duckdb.IOException as exc:
                reason = str(exc).strip().splitlines()[0]
                print(f"note: cannot open the cache {cache} ({reason}); reading the files directly", file=sys.stderr)
            else:
                _make_private(cache)
                engine = cls(con, f"{root} (cached in {cache})")
                if engine._init_cache():
                    # A whole first build's wait (seconds per 10,000 calls): say why, as a new cache does.
                    print(f"note: rebuilding the analytics cache {cache} (written by another version)", file=sys.stderr)
                if refresh:
                    engine.refresh(root)
                if not read_only:
                    return engine
                engine.close()
                try:
                    return cls(_connect(str(cache), read_only=True), engine.description, read_only=True)
                # Another process took the cache in between, or this one still holds it writable.
                except (duckdb.IOException, duckdb.ConnectionException) as exc:
                    reason = str(exc).strip().splitlines()[0]
                    print(
                        f"note: cannot open the cache {cache} ({reason}); reading the files directly", file=sys.stderr
                    )
        con = _connect()
        for table in TABLES:
            folder = root / table
            has_files = folder.is_dir() and any(folder.glob(f"*/*{OBJECT_SUFFIX}"))
            pattern = f"{folder}/*/*{OBJECT_SUFFIX}"
            _create_views(con, table, _objects_select(table, [pattern]) if has_files else _empty_objects_select(table))
        if read_only:
            _lock_down(con, [str(root)])
        return cls(con, str(root), read_only=read_only)

    @classmethod
    def s3(
        cls,
        url: str,
        *,
        key_id: str | None = None,
        secret: str | None = None,
        session_token: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        read_only: bool = False,
    ) -> "DuckDbEngine":
        """Straight from a bucket: ``s3://bucket[/prefix]``. Credentials default to boto3's chain, the
        endpoint to ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (any S3 implementation works)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
        base = f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        if key_id is None or secret is None or region is None:
            import boto3

            session = boto3.Session()
            region = region or session.region_name or "us-east-1"
            credentials = session.get_credentials()
            if key_id is None and credentials is not None:
                frozen = credentials.get_frozen_credentials()
                key_id, secret, session_token = frozen.access_key, frozen.secret_key, frozen.token
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        con = _connect()
        load_httpfs(con)
        options = ["TYPE s3", f"REGION {_literal(region)}"]
        if key_id is not None and secret is not None:
            options += [f"KEY_ID {_literal(key_id)}", f"SECRET {_literal(secret)}"]
        if session_token:
            options.append(f"SESSION_TOKEN {_literal(session_token)}")
        if endpoint:
            target = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
            options += [
                f"ENDPOINT {_literal(target.netloc)}",
                "URL_STYLE 'path'",
                f"USE_SSL {'true' if target.scheme == 'https' else 'false'}",
            ]
        con.execute(f"CREATE OR REPLACE SECRET callvault_s3 ({', '.join(options)})")
        for table in TABLES:
            pattern = f"{base}/{table}/*/*{OBJECT_SUFFIX}"
            found = con.execute("SELECT count(*) FROM (SELECT file FROM glob(?) LIMIT 1)", [pattern]).fetchone()
            has_files = bool(found and found[0])
            _create_views(con, table, _objects_select(table, [pattern]) if has_files else _empty_objects_select(table))
        if read_only:
            _lock_down(con, [])
        return cls(con, base, read_only=read_only)

    # -- the local cache ---------------------------------------------------------------------------

    def _init_cache(self) -> bool:
        """Make the cache's tables; True if it held rows of another schema (dropped: read again)."""
        con = self.con
        con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        row = con.execute("SELECT value FROM _meta WHERE key = 'schema'").fetchone()
        rebuilt = row is not None and row[0] != _SCHEMA_VERSION
        if row is None or rebuilt:
            for table in (*TABLES, "_partitions"):
                con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute("INSERT OR REPLACE INTO _meta VALUES ('schema', ?)", [_SCHEMA_VERSION])
        con.execute(
            "CREATE TABLE IF NOT EXISTS _partitions "
            "(table_name VARCHAR, dt VARCHAR, mtime_ns BIGINT, PRIMARY KEY (table_name, dt))"
        )
        for table in TABLES:
            columns = ", ".join(f'"{n}" {DUCKDB_TYPES[t]}' for n, t in COLUMNS[table])
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns}, {PARTITION_COLUMN} VARCHAR)")
        return rebuilt

    def refresh(self, root: Path) -> dict[str, int]:
        """Re-read the partitions whose folders changed since the last refresh; returns how many per table.

        A merge deletes the per-call objects it folded in: a file listed here may be gone when DuckDB
        opens it. The table's refresh is then rolled back and done again from a fresh listing."""
        changed_counts: dict[str, int] = {}
        for table in TABLES:
            for attempt in range(1, VANISHED_FILE_ATTEMPTS + 1):
                try:
                    changed_counts[table] = self._refresh_table(root, table)
                    break
                except duckdb.IOException:
                    if attempt == VANISHED_FILE_ATTEMPTS:
                        raise
                    time.sleep(0.01 * attempt)
        return changed_counts

    def _refresh_table(self, root: Path, table: str) -> int:
        con = self.con
        now_ns = time.time_ns()
        on_disk: dict[str, int] = {}
        folder = root / table
        if folder.is_dir():
            for entry in os.scandir(folder):
                match = _DT_DIR.fullmatch(entry.name)
                if match and entry.is_dir():
                    on_disk[match.group(1)] = entry.stat().st_mtime_ns
        cached = dict(con.execute("SELECT dt, mtime_ns FROM _partitions WHERE table_name = ?", [table]).fetchall())
        changed = sorted(dt for dt, mtime in on_disk.items() if cached.get(dt) != mtime)
        removed = sorted(dt for dt in cached if dt not in on_disk)
        if not changed and not removed:
            return 0
        con.execute("BEGIN TRANSACTION")
        try:
            stale = changed + removed
            con.execute(f"DELETE FROM {table} WHERE {PARTITION_COLUMN} IN (SELECT unnest(?))", [stale])  # noqa: S608
            con.execute("DELETE FROM _partitions WHERE table_name = ? AND dt IN (SELECT unnest(?))", [table, stale])
            with_files = [dt for dt in changed if any((folder / f"dt={dt}").glob(f"*{OBJECT_SUFFIX}"))]
            for dt in with_files:
                # A whole partition is read, so each call's current rows are decided here, once. One
                # partition per statement: the window emits rows in hash order, so partitions read
                # together share row groups, and a later DELETE of one rewrites all of them (measured at
                # 100,000 calls: a changed day refreshed in 1.2-1.9 s after a one-statement build, 0.8 s
                # after this one; even two days per statement gave 1.5-1.8 s). The first build pays for
                # it (6 s to 10 s for a compacted month) and holds one day's rows at a time, not a month's.
                # Table and column names are constants from tables.py; paths are quoted by _literal.
                objects = f"({_objects_select(table, [f'{folder}/dt={dt}/*{OBJECT_SUFFIX}'])}) AS objects"
                con.execute(f"INSERT INTO {table} {current_rows_sql(table, objects)}")
            fresh = [(table, dt, on_disk[dt]) for dt in changed if now_ns - on_disk[dt] >= RACY_WINDOW_NS]
            if fresh:
                con.executemany("INSERT INTO _partitions VALUES (?, ?, ?)", fresh)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(changed) + len(removed)

    # -- queries -----------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[object] = ()) -> QueryResult:
        if self.read_only:
            check_read_only(sql)
        for attempt in range(1, VANISHED_FILE_ATTEMPTS + 1):
            try:
                return self._query(sql, params)
            except duckdb.IOException:  # read the files directly, one was merged away meanwhile: again
                if attempt == VANISHED_FILE_ATTEMPTS:
                    raise
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _query(self, sql: str, params: Sequence[object]) -> QueryResult:
        relation = self.con.sql(sql, params=list(params)) if params else self.con.sql(sql)
        if relation is None:  # a statement without a result (SET, CREATE ...)
            return QueryResult([], [], [])
        types = [neutral_type(str(t)) for t in relation.types]
        rows = relation.fetchall()
        return QueryResult(list(relation.columns), types, [_plain(row) for row in rows])

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def __enter__(self) -> "DuckDbEngine":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _make_private(cache: Path) -> None:
    """The cache holds call rows: owner-only (0600), like everything in the data dir. The CLI's umask
    already makes a new cache so; this fixes one an older version left readable by others. (DuckDB
    cannot be given a pre-made empty file, so it is tightened once open.)"""
    for path in (cache, cache.with_name(cache.name + ".wal")):
        with contextlib.suppress(OSError):  # no WAL right now, or not ours to change
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                path.chmod(mode & ~0o077)


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # DECIMAL results come back as Decimal: report them as floats, like Athena's double.
    from decimal import Decimal

    return tuple(float(v) if isinstance(v, Decimal) else v for v in row)
