"""Daily compaction: a closed day's per-call objects become one day object, every call still counted once.

Run on the memory, local-folder and S3 (moto) stores; SeaweedFS checks the conditional writes it
rests on (test_s3_seaweed.py), and the contract suite checks them on every adapter.
"""

import copy
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import boto3
import pytest

from services.analytics.compaction import (
    CompactionThread,
    compact_closed_days,
    open_partitions,
    rewrite_day,
    upsert,
)
from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import REPORTS, ReportArgs, run_report
from services.analytics.rows import decode, encode
from services.analytics.tables import (
    CALLS,
    CONTENT_TYPE,
    COPIED_OUT,
    MESSAGES,
    TABLES,
    day_object_key,
    is_closed,
    object_key,
    parse_day_object_key,
    parse_object_key,
)
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.domain.errors import StorageUnavailable
from services.core.domain.models import WebhookEvent
from services.core.ports import BlobStore
from services.ingest.service import Archiver
from tests.analytics.callset import build_calls
from tests.contract.conftest import aws as aws  # the fixture, reused here

DAY = 86400
NOW = 1_764_000_000  # 2025-11-24 16:00 UTC: the closed days are those up to 2025-11-22
ARGS = ReportArgs(keyword="refund", phone="+16125550101")


@pytest.fixture(params=["memory", "local", "moto"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    if request.param == "local":
        return FsBlobStore(tmp_path / "analytics")
    request.getfixturevalue("aws")
    boto3.client("s3").create_bucket(Bucket="callvault-analytics-compaction")
    return S3BlobStore("callvault-analytics-compaction")


def _row(conversation_id: str, text: str = "hello") -> dict[str, Any]:
    return {"conversation_id": conversation_id, "turn_index": 0, "text": text}


def _put(store: BlobStore, dt: str, conversation_id: str, text: str = "hello") -> None:
    store.put_bytes(object_key(MESSAGES, dt, conversation_id), encode(MESSAGES, [_row(conversation_id, text)]), "x")


def _rows(store: BlobStore, table: str = MESSAGES) -> list[dict[str, Any]]:
    return [row for key in store.list_keys(table + "/") for row in decode(store.get_bytes(key))]


def _texts(store: BlobStore) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in _rows(store):
        found.setdefault(row["conversation_id"], []).append(row["text"])
    return found


def test_a_day_is_closed_two_dates_after_it() -> None:
    assert [is_closed(dt, NOW) for dt in ("2025-11-22", "2025-11-23", "2025-11-24")] == [True, False, False]
    just_after_midnight = 1_763_942_400 + 1  # 2025-11-24 00:00:01
    assert is_closed("2025-11-22", just_after_midnight) and not is_closed("2025-11-23", just_after_midnight)


def test_compaction_merges_closed_days_only_and_keeps_every_row(store: BlobStore) -> None:
    for i in range(5):
        _put(store, "2025-11-21", f"conv_a{i}")
        _put(store, "2025-11-23", f"conv_b{i}")  # yesterday: still open
    before = _texts(store)

    summary = compact_closed_days(store, now=NOW)

    assert _texts(store) == before
    keys = sorted(store.list_keys())
    assert day_object_key(MESSAGES, "2025-11-21") in keys
    assert [k for k in keys if "2025-11-21" in k] == [day_object_key(MESSAGES, "2025-11-21")]
    assert len([k for k in keys if parse_object_key(k) and "2025-11-23" in k]) == 5
    assert [(d.table, d.dt, d.merged, d.conversations) for d in summary.days] == [(MESSAGES, "2025-11-21", 5, 5)]
    assert compact_closed_days(store, now=NOW).days == []  # nothing left to do


def test_a_late_object_in_a_compacted_day_replaces_the_calls_rows(store: BlobStore) -> None:
    for i in range(3):
        _put(store, "2025-11-21", f"conv_a{i}")
    compact_closed_days(store, now=NOW)
    _put(store, "2025-11-21", "conv_a1", "redelivered")  # e.g. written by an older version, or clock skew
    _put(store, "2025-11-21", "conv_a9", "new call")

    compact_closed_days(store, now=NOW)

    assert _texts(store) == {
        "conv_a0": ["hello"],
        "conv_a1": ["redelivered"],
        "conv_a2": ["hello"],
        "conv_a9": ["new call"],
    }
    assert open_partitions(store) == {}


def test_a_write_racing_the_merge_is_never_lost(store: BlobStore) -> None:
    """A per-call object rewritten after the merge read it stays (delete_if refuses) and wins next time."""
    for i in range(3):
        _put(store, "2025-11-21", f"conv_a{i}")
    get_tagged = store.get_tagged
    raced: list[str] = []

    def rewrite_after_reading(key: str) -> tuple[bytes, str]:
        found = get_tagged(key)
        if key.endswith("conv_a1.json.gz") and not raced:
            raced.append(key)
            _put(store, "2025-11-21", "conv_a1", "newer")
        return found

    store.get_tagged = rewrite_after_reading  # type: ignore[method-assign]
    compact_closed_days(store, now=NOW)
    store.get_tagged = get_tagged  # type: ignore[method-assign]

    assert raced
    assert store.get_bytes(object_key(MESSAGES, "2025-11-21", "conv_a1"))  # the newer object survived
    compact_closed_days(store, now=NOW)
    assert _texts(store) == {"conv_a0": ["hello"], "conv_a1": ["newer"], "conv_a2": ["hello"]}


def test_concurrent_merges_of_one_day_lose_no_call(store: BlobStore) -> None:
    """Eight writers upsert their own call into the same closed day at once: all eight are there."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            start.wait()
            rewrite_day(store, MESSAGES, "2025-11-21", upsert(f"conv_w{i}", [_row(f"conv_w{i}")]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(_texts(store)) == [f"conv_w{i}" for i in range(8)]
    assert list(store.list_keys()) == [day_object_key(MESSAGES, "2025-11-21")]


def test_merging_shrinks_the_bytes_a_day_costs_to_read() -> None:
    store = MemoryBlobStore()
    for i in range(50):
        row = {name: f"value {name} {i}" for name in ("conversation_id", "agent_id", "phone", "text")}
        row["conversation_id"] = f"conv_{i:04d}"
        store.put_bytes(object_key(MESSAGES, "2025-11-21", row["conversation_id"]), encode(MESSAGES, [row]), "x")
    per_call = sum(len(blob) for blob in store.objects.values())
    compact_closed_days(store, now=NOW)
    [day] = store.objects.values()
    assert len(day) * 4 < per_call  # the measured ratio is in docs/benchmarks-analytics.md


# -- the ingest path over closed days -----------------------------------------------------------------


def _archive_callset(analytics: BlobStore, clock: Any) -> Archiver:
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), clock, analytics=AnalyticsWriter(analytics, clock))
    for call in build_calls():
        env = call.envelope
        assert archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"])).outcome == "stored"
    return archiver


def test_reports_are_the_same_before_and_after_compaction(tmp_path: Path) -> None:
    """The call set ingested while its days were open, then compacted: every report gives the same rows."""
    calls = build_calls()
    first_start = min(int(c.data.get("metadata", {}).get("start_time_unix_secs") or 0) or 10**10 for c in calls)
    root = tmp_path / "analytics"
    _archive_callset(FsBlobStore(root), lambda: first_start)  # every day still open at ingest time
    assert not [k for k in FsBlobStore(root).list_keys() if parse_day_object_key(k)]
    with DuckDbEngine.local(root) as engine:
        before = {name: run_report(engine, name, ARGS).rows for name in REPORTS}

    cache = tmp_path / "analytics-cache.duckdb"
    with DuckDbEngine.local(root, cache) as engine:  # the cache holds the per-call layout's rows
        assert {name: run_report(engine, name, ARGS).rows for name in REPORTS} == before
    time.sleep(2.1)  # past the cache's racy window, so the per-call folders were recorded as fresh

    summary = compact_closed_days(FsBlobStore(root), now=time.time())

    assert summary.days and all(parse_day_object_key(k) for k in FsBlobStore(root).list_keys())
    with DuckDbEngine.local(root) as engine:
        after = {name: run_report(engine, name, ARGS).rows for name in REPORTS}
    assert after == before and all(before.values())
    with DuckDbEngine.local(root, cache) as engine:  # refreshed: the merged folders are re-read, not doubled
        assert {name: run_report(engine, name, ARGS).rows for name in REPORTS} == before


def _summaries(store: BlobStore) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in _rows(store, CALLS):
        found.setdefault(row["conversation_id"], []).append(row["summary"])
    return found


def test_ingest_into_closed_days_leaves_per_call_objects_and_one_row_per_call_after_the_merge() -> None:
    analytics = MemoryBlobStore()
    late: list[str] = []
    calls = build_calls()
    archiver = Archiver(
        MemoryBlobStore(),
        MemoryCallIndex(),
        time.time,
        analytics=AnalyticsWriter(analytics, time.time, on_late_write=late.append),
    )
    for call in calls:  # years after the calls: every day is closed
        env = call.envelope
        assert archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"])).outcome == "stored"
    # A late write is a per-call object like any other, and the compactor is told its day.
    assert analytics.list_keys() and all(parse_object_key(key) for key in analytics.list_keys())
    assert set(late) == {call.day for call in calls}
    compact_closed_days(analytics)
    assert all(parse_day_object_key(key) for key in analytics.list_keys())

    late.clear()
    redelivered = {}
    for call in calls[:5]:  # newer versions of five calls, after their days were merged
        env = copy.deepcopy(call.envelope)
        env["event_timestamp"] += 60
        env["data"]["analysis"]["transcript_summary"] = f"revised {call.data['conversation_id']}"
        redelivered[call.data["conversation_id"]] = env["data"]["analysis"]["transcript_summary"]
        assert archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"])).outcome == "stored"
    per_call = [parsed for key in analytics.list_keys() if (parsed := parse_object_key(key))]
    assert sorted({(table, cid) for table, _dt, cid in per_call}) == sorted(
        (table, cid) for table in TABLES for cid in redelivered
    )
    assert set(late) == {call.day for call in calls[:5]}

    summary = compact_closed_days(analytics)

    assert summary.objects_merged == 3 * len(redelivered)
    assert all(parse_day_object_key(key) for key in analytics.list_keys())
    assert {parse_day_object_key(k)[0] for k in analytics.list_keys()} == set(TABLES)  # type: ignore[index]
    counted = Counter(row["conversation_id"] for row in _rows(analytics, CALLS))
    assert sorted(counted) == sorted(c.data["conversation_id"] for c in calls)
    assert set(counted.values()) == {1}
    summaries = _summaries(analytics)
    assert all(summaries[cid] == [text] for cid, text in redelivered.items())  # the newer rows replaced the old


def test_late_audio_sets_has_audio_after_the_merge() -> None:
    analytics = MemoryBlobStore()
    late: list[str] = []
    writer = AnalyticsWriter(analytics, time.time, on_late_write=late.append)
    rewrite_day(analytics, CALLS, "2025-07-06", upsert("conv_x", [{"conversation_id": "conv_x", "has_audio": False}]))
    rewrite_day(analytics, CALLS, "2025-07-06", upsert("conv_y", [{"conversation_id": "conv_y", "has_audio": False}]))
    day_before = analytics.get_bytes(day_object_key(CALLS, "2025-07-06"))

    assert writer.mark_audio("conv_x", 1751802015) is True
    assert writer.mark_audio("conv_x", 1751802015) is False  # already set: nothing written
    assert writer.mark_audio("conv_missing", 1751802015) is False

    # The merged day object is never rewritten per call: the row is copied out to a per-call object.
    assert analytics.get_bytes(day_object_key(CALLS, "2025-07-06")) == day_before
    assert sorted(analytics.list_keys()) == sorted(
        [day_object_key(CALLS, "2025-07-06"), object_key(CALLS, "2025-07-06", "conv_x")]
    )
    [copied] = decode(analytics.get_bytes(object_key(CALLS, "2025-07-06", "conv_x")))
    assert (copied["conversation_id"], copied["has_audio"]) == ("conv_x", True)
    assert late == ["2025-07-06"]

    compact_closed_days(analytics)

    flags = {row["conversation_id"]: row["has_audio"] for row in _rows(analytics, CALLS)}
    assert flags == {"conv_x": True, "conv_y": False}
    assert len(_rows(analytics, CALLS)) == 2
    assert list(analytics.list_keys()) == [day_object_key(CALLS, "2025-07-06")]


def test_late_audio_keeps_the_version_of_the_calls_row() -> None:
    """mark_audio rewrites a per-call object by compare-and-swap and keeps its version label, so the
    call's next versioned write still compares with the version that wrote the row."""
    analytics = MemoryBlobStore()
    writer = AnalyticsWriter(analytics, time.time)
    key = object_key(CALLS, "2025-07-06", "conv_x")
    row = {"conversation_id": "conv_x", "has_audio": False}
    assert analytics.put_if(key, encode(CALLS, [row]), CONTENT_TYPE, None, version="1.0001751802100.aaaa")

    assert writer.mark_audio("conv_x", 1751802015) is True

    head = analytics.head(key)
    assert head is not None and head.version == "1.0001751802100.aaaa"
    [marked] = decode(analytics.get_bytes(key))
    assert (marked["conversation_id"], marked["has_audio"]) == ("conv_x", True)


def test_the_merge_drops_an_audio_copy_of_a_call_the_day_no_longer_holds_and_folds_in_the_rest(
    store: BlobStore,
) -> None:
    """A ``COPIED_OUT`` row of a call missing from the day object is an orphan (the call left the day
    after late audio copied it, and the copier died): deleted, never folded in. A copy of a call the
    day holds, and an unlabelled row of a call it lacks (``verify --repair``'s rewrite), are folded in."""
    dt = "2025-11-21"
    for cid in ("conv_kept", "conv_copied"):
        rewrite_day(store, CALLS, dt, upsert(cid, [{"conversation_id": cid, "has_audio": False}]))
    copy = [{"conversation_id": "conv_copied", "has_audio": True}]
    assert store.put_if(
        object_key(CALLS, dt, "conv_copied"), encode(CALLS, copy), CONTENT_TYPE, None, version=COPIED_OUT
    )
    orphan = [{"conversation_id": "conv_left", "has_audio": True}]
    assert store.put_if(
        object_key(CALLS, dt, "conv_left"), encode(CALLS, orphan), CONTENT_TYPE, None, version=COPIED_OUT
    )
    repaired = [{"conversation_id": "conv_repaired", "has_audio": False}]
    store.put_bytes(object_key(CALLS, dt, "conv_repaired"), encode(CALLS, repaired), CONTENT_TYPE)

    compact_closed_days(store, now=NOW)

    flags = {row["conversation_id"]: row["has_audio"] for row in _rows(store, CALLS)}
    assert flags == {"conv_kept": False, "conv_copied": True, "conv_repaired": False}
    assert list(store.list_keys(CALLS + "/")) == [day_object_key(CALLS, dt)]


@pytest.mark.parametrize("cut", [b"\x1f\x8b cut short", b""], ids=["cut-short", "empty"])
def test_the_merge_keeps_audio_copies_when_the_day_object_is_unreadable(cut: bytes) -> None:
    """A day object cut short (or left empty) says nothing about which calls it held: every copy is
    folded in (the rows it lost are rebuilt by ``verify --repair``), none is taken for an orphan."""
    store, dt = MemoryBlobStore(), "2025-11-21"
    assert store.put_if(day_object_key(CALLS, dt), cut, CONTENT_TYPE, None)
    copy = [{"conversation_id": "conv_copied", "has_audio": True}]
    assert store.put_if(
        object_key(CALLS, dt, "conv_copied"), encode(CALLS, copy), CONTENT_TYPE, None, version=COPIED_OUT
    )

    compact_closed_days(store, now=NOW)

    assert [row["conversation_id"] for row in _rows(store, CALLS)] == ["conv_copied"]


def test_a_day_object_is_written_only_through_compare_and_swap() -> None:
    """A stale writer (it read the day object before another merge) must retry, not overwrite."""
    store = MemoryBlobStore()
    rewrite_day(store, MESSAGES, "2025-11-21", upsert("conv_1", [_row("conv_1")]))
    _, stale_tag = store.get_tagged(day_object_key(MESSAGES, "2025-11-21"))
    rewrite_day(store, MESSAGES, "2025-11-21", upsert("conv_2", [_row("conv_2")]))
    assert store.put_if(day_object_key(MESSAGES, "2025-11-21"), encode(MESSAGES, []), CONTENT_TYPE, stale_tag) is False
    assert sorted(_texts(store)) == ["conv_1", "conv_2"]


class FlakyStore(MemoryBlobStore):
    """Listing fails the first ``failures`` times (the disk or bucket briefly unavailable)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("analytics store down")
        return super().list_keys(prefix)


def test_the_serve_compactor_survives_a_failed_run_and_tries_again() -> None:
    store = FlakyStore(failures=1)
    _put(store, "2025-11-21", "conv_1")
    log = MagicMock()
    thread = CompactionThread(store, interval=0.01, log=log).start()
    deadline = time.monotonic() + 10
    while thread.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.stop() is True
    assert thread.runs >= 1
    log.warning.assert_called_once_with("analytics compaction failed", extra={"error": "StorageUnavailable"})
    assert list(store.list_keys()) == [day_object_key(MESSAGES, "2025-11-21")]
