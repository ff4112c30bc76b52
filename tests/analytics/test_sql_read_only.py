"""``callvault sql`` only reads (issue #14): statements that could change the analytics cache, other
databases or files are refused with a non-zero exit, and the cache keeps every row afterwards. Two
layers, each tested on its own: DuckDB's parser classifies the statements, and the query runs on the
cache opened in DuckDB's read-only mode."""

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from services.analytics.duckdb_engine import CACHE_FILE, DuckDbEngine, QueryRefused, check_read_only
from services.cli.main import cli
from tests.support import FIXTURES

WRITES = [
    "DROP TABLE calls",
    "DELETE FROM calls",
    "INSERT INTO calls (conversation_id) VALUES ('x')",
    "UPDATE calls SET agent_id = 'x'",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH 'other.duckdb' AS other",
    "COPY calls TO 'calls.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA threads=1",
    "SET threads = 1",
    "CHECKPOINT",
    "EXPLAIN ANALYZE DELETE FROM calls",
    "SELECT 1; DROP TABLE calls",
]
READS = ["SELECT count(*) FROM calls", "DESCRIBE calls", "SHOW TABLES", "EXPLAIN SELECT 1", "PRAGMA version"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("data")
    result = CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(target)])
    assert result.exit_code == 0, result.output
    return target


def _count(data_dir: Path) -> int:
    result = CliRunner().invoke(
        cli, ["sql", "SELECT count(*) AS n FROM calls", "--format", "json", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    count: int = json.loads(result.stdout)[0]["n"]
    return count


@pytest.mark.parametrize("statement", WRITES)
@pytest.mark.parametrize("cache", ["cache", "no-cache"])
def test_sql_refuses_writes(data_dir: Path, statement: str, cache: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(data_dir)
    extra = ["--no-cache"] if cache == "no-cache" else []
    result = CliRunner().invoke(cli, ["sql", statement, "--data-dir", str(data_dir), *extra])
    assert result.exit_code == 1, result.output
    assert "refused: this SQL is read-only" in result.stderr
    assert _count(data_dir) == 4  # the cache still holds every call
    assert not (data_dir / "calls.csv").exists() and not (data_dir / "other.duckdb").exists()


@pytest.mark.parametrize("statement", ["DROP TABLE calls", "DELETE FROM calls"])
def test_the_installed_command_exits_1_without_a_traceback(data_dir: Path, statement: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "services.cli", "sql", statement, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert process.stderr.startswith("Error: ") and "read-only" in process.stderr and "Traceback" not in process.stderr
    assert _count(data_dir) == 4


@pytest.mark.parametrize("statement", READS)
def test_sql_runs_reads(data_dir: Path, statement: str) -> None:
    result = CliRunner().invoke(cli, ["sql", statement, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output


def test_the_parser_not_a_pattern_decides() -> None:
    check_read_only("/* DROP TABLE calls */ SELECT 'DELETE FROM calls' AS text")
    with pytest.raises(QueryRefused):
        check_read_only("-- a comment\n  drop table calls")


def test_the_cache_is_opened_read_only(data_dir: Path) -> None:
    """Past the statement check, DuckDB itself refuses: the query connection is read-only and has no file access."""
    engine = DuckDbEngine.local(data_dir / "analytics", data_dir / CACHE_FILE, read_only=True)
    try:
        for statement in ("DROP TABLE calls", "DELETE FROM calls", "COPY calls TO 'x.csv'", "SET threads = 1"):
            with pytest.raises(duckdb.Error):
                engine.con.execute(statement)
    finally:
        engine.close()
    assert _count(data_dir) == 4


def test_without_the_cache_files_are_out_of_reach(data_dir: Path, tmp_path: Path) -> None:
    engine = DuckDbEngine.local(data_dir / "analytics", None, read_only=True)
    try:
        with pytest.raises(duckdb.Error):
            engine.con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
        with pytest.raises(duckdb.Error):
            engine.con.execute("SET enable_external_access = true")
        assert engine.query("SELECT count(*) FROM calls").rows == [(4,)]
    finally:
        engine.close()
    assert not (tmp_path / "x.csv").exists()


def test_athena_sql_is_checked_too(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["sql", "DROP TABLE calls", "--athena", "--data-dir", str(data_dir)])
    assert result.exit_code == 1 and "refused" in result.output
