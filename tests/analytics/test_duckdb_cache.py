"""The local cache: re-reads exactly the partitions that changed, and always agrees with the files."""

import time
from pathlib import Path

import pytest

from services.analytics import duckdb_engine
from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from tests.analytics.callset import Call, build_calls, ingest

COUNT_PER_DAY = "SELECT dt, count(*) AS n FROM calls GROUP BY dt ORDER BY dt"


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests write and read within milliseconds; the racy-window rule has its own test below.
    monkeypatch.setattr(duckdb_engine, "RACY_WINDOW_NS", 0)


def _write(root: Path, call: Call) -> None:
    from services.core.domain import payload

    data = call.data
    record = (
        payload.call_from_initiation_failure(data, call.envelope["event_timestamp"])
        if call.is_failure
        else payload.call_from_transcription(data, call.envelope["event_timestamp"])
    )
    AnalyticsWriter(FsBlobStore(root)).write_call(data, record, has_audio=False)


def _same_as_files(root: Path, cache: Path, sql: str = COUNT_PER_DAY) -> list[tuple[object, ...]]:
    with DuckDbEngine.local(root, cache) as cached, DuckDbEngine.local(root) as files:
        rows = cached.query(sql).rows
        assert rows == files.query(sql).rows
        return rows


def test_cache_follows_new_changed_and_removed_partitions(tmp_path: Path) -> None:
    root, cache = tmp_path / "analytics", tmp_path / "cache.duckdb"
    calls = build_calls(12)
    ingest(calls[:6], root)
    first = _same_as_files(root, cache)
    assert sum(int(str(n)) for _dt, n in first) == 6

    ingest(calls[6:], root)  # new calls, some in partitions already cached
    assert sum(int(str(n)) for _dt, n in _same_as_files(root, cache)) == len(calls)

    changed = calls[0]
    changed.data["analysis"]["call_successful"] = "unknown"
    _write(root, changed)  # a redelivery: same key, new content
    sql = "SELECT conversation_id, call_successful FROM calls ORDER BY conversation_id"
    rows: dict[object, object] = {cid: outcome for cid, outcome in _same_as_files(root, cache, sql)}
    assert rows[changed.data["conversation_id"]] == "unknown"
    assert len(rows) == len(calls)

    day = sorted(p for p in (root / "calls").iterdir())[0]
    for item in day.iterdir():
        item.unlink()
    day.rmdir()
    assert day.name.removeprefix("dt=") not in {dt for dt, _n in _same_as_files(root, cache)}


def test_only_changed_partitions_are_read_again(tmp_path: Path) -> None:
    root, cache = tmp_path / "analytics", tmp_path / "cache.duckdb"
    calls = build_calls(8)
    ingest(calls, root)
    with DuckDbEngine.local(root, cache) as engine:
        assert engine.refresh(root) == {"calls": 0, "messages": 0, "evaluations": 0}
        time.sleep(0.01)
        _write(root, calls[1])
        assert engine.refresh(root) == {"calls": 1, "messages": 1, "evaluations": 1}


def test_a_partition_written_just_now_is_read_again_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Directory times tick coarsely: a write in the same tick as our read would otherwise be missed."""
    monkeypatch.setattr(duckdb_engine, "RACY_WINDOW_NS", 3600 * 10**9)
    root, cache = tmp_path / "analytics", tmp_path / "cache.duckdb"
    ingest(build_calls(3), root)
    with DuckDbEngine.local(root, cache) as engine:
        again = engine.refresh(root)
    assert again["calls"] > 0  # not recorded as fresh, so read again


def test_a_schema_change_rebuilds_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = tmp_path / "analytics", tmp_path / "cache.duckdb"
    ingest(build_calls(5), root)
    _same_as_files(root, cache)
    with DuckDbEngine.local(root, cache) as engine:
        engine.con.execute("DELETE FROM calls")  # damage the cache: only a rebuild restores it
    monkeypatch.setattr(duckdb_engine, "_SCHEMA_VERSION", "another-schema")
    assert sum(int(str(n)) for _dt, n in _same_as_files(root, cache)) == 7


def test_a_cache_of_another_version_is_rebuilt_saying_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upgrade that changes the cache's rows (the current-rows views did) rebuilds every cache on
    its first query: a first build's wait, which a new cache announces; this one must say why too."""
    root, cache = tmp_path / "analytics", tmp_path / "cache.duckdb"
    ingest(build_calls(3), root)
    _same_as_files(root, cache)
    assert "rebuilding" not in capsys.readouterr().err  # a new cache: the CLI says so itself
    monkeypatch.setattr(duckdb_engine, "_SCHEMA_VERSION", "the-next-version")
    _same_as_files(root, cache)
    assert f"rebuilding the analytics cache {cache}" in capsys.readouterr().err
    _same_as_files(root, cache)
    assert "rebuilding" not in capsys.readouterr().err
