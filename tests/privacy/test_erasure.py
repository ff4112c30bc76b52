"""Erasure of a caller or a conversation, on every back end: nothing of it is left in any store
(every S3 version included), other callers are byte-identical, verify is clean, reruns finish."""

from pathlib import Path
from typing import Any

import pytest

from services.analytics.erasure import AnalyticsErasure
from services.core.domain.errors import StorageUnavailable
from services.ingest.verify import ArchiveVerifier
from services.memory.erasure import MemoryErasure
from services.privacy.service import Eraser
from tests.memory.support import FakeMemoryStore, call_envelope

from .conftest import DAY, T0, World

ERASED, KEPT = "+16125550142", "+16125550177"
ERASED_IDS = ("conv_erase_a", "conv_erase_b", "conv_erase_c")
KEPT_IDS = ("conv_keep_a", "conv_keep_b")


def _populate(world: World) -> None:
    """The erased caller on a closed, merged day and on an open day; the kept caller on both too."""
    world.call(ERASED_IDS[0], ERASED, T0, audio=True)
    world.call(KEPT_IDS[0], KEPT, T0 + 100, audio=True)
    world.call(ERASED_IDS[1], ERASED, T0 + 200)
    world.compact()  # T0's day is closed: one day object per table
    world.call(ERASED_IDS[2], ERASED, T0 + 4 * DAY, audio=True)
    world.call(KEPT_IDS[1], KEPT, T0 + 4 * DAY + 100)
    world.call(ERASED_IDS[1], ERASED, T0 + 200)  # no-op redelivery


def _eraser(world: World, memory: Any = None) -> Eraser:
    derived: list[Any] = [AnalyticsErasure(world.analytics)]
    if memory is not None:
        derived.append(memory)
    return Eraser(world.blobs, world.index, derived)


def _nothing_of_erased(world: World) -> None:
    listing = world.archive_listing()
    assert not [key for key in listing if any(cid in key for cid in ERASED_IDS) or key.startswith("16125550142/")]
    assert not [row for row in world.index.scan() if row.phone == ERASED or row.conversation_id in ERASED_IDS]
    rows = world.analytics_rows()
    assert not [row for row in rows if row.get("phone") == ERASED or row.get("conversation_id") in ERASED_IDS]
    assert {row["conversation_id"] for row in rows} == set(KEPT_IDS)


def test_erase_caller_leaves_nothing_of_them_and_other_callers_untouched(world: World) -> None:
    _populate(world)
    kept_before = {k: v for k, v in world.archive_bytes().items() if not k.startswith("16125550142/")}
    kept_rows_before = sorted(map(repr, (r for r in world.analytics_rows() if r.get("phone") == KEPT)))
    kept_index_before = [world.index.get(cid) for cid in KEPT_IDS]

    eraser = _eraser(world)
    plan = eraser.plan_caller(ERASED)
    summary = eraser.erase(plan)

    assert summary.conversations == 3 and summary.index_rows == 3
    assert summary.archive_objects >= 5  # 3 transcripts, 2 audios (more versions on S3)
    assert summary.derived["analytics"] > 0
    _nothing_of_erased(world)
    assert world.archive_bytes() == kept_before  # byte-identical
    assert sorted(map(repr, (r for r in world.analytics_rows() if r.get("phone") == KEPT))) == kept_rows_before
    assert [world.index.get(cid) for cid in KEPT_IDS] == kept_index_before
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


def test_dry_run_counts_what_erase_removes_and_changes_nothing(world: World) -> None:
    _populate(world)
    before = (world.archive_listing(), world.analytics_rows())
    eraser = _eraser(world)

    planned = eraser.dry_run(eraser.plan_caller(ERASED))

    assert (world.archive_listing(), world.analytics_rows()) == before
    done = eraser.erase(eraser.plan_caller(ERASED))
    assert (planned.conversations, planned.index_rows) == (done.conversations, done.index_rows)
    assert planned.derived == done.derived
    if world.name != "moto":  # S3 also removes the older versions the dry run does not count
        assert planned.archive_objects == done.archive_objects


def test_erase_is_idempotent(world: World) -> None:
    _populate(world)
    eraser = _eraser(world)
    eraser.erase(eraser.plan_caller(ERASED))

    again = eraser.erase(eraser.plan_caller(ERASED))

    assert (again.conversations, again.archive_objects, again.index_rows, again.derived) == (0, 0, 0, {"analytics": 0})


def test_erase_one_conversation_keeps_the_callers_other_calls(world: World) -> None:
    _populate(world)
    eraser = _eraser(world)

    summary = eraser.erase(eraser.plan_conversations([ERASED_IDS[0]]))

    assert summary.index_rows == 1
    assert world.index.get(ERASED_IDS[0]) is None and world.index.get(ERASED_IDS[1]) is not None
    assert not [key for key in world.archive_listing() if ERASED_IDS[0] in key]
    assert ERASED_IDS[0] not in {row["conversation_id"] for row in world.analytics_rows()}
    assert ERASED_IDS[1] in {row["conversation_id"] for row in world.analytics_rows()}
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


@pytest.mark.parametrize("crash_at", [1, 3, 5])
def test_a_crash_during_erasure_then_a_rerun_completes_it(world: World, crash_at: int) -> None:
    _populate(world)
    purges = {"n": 0}
    real_purge = world.blobs.purge

    def crashing_purge(key: str) -> int:
        purges["n"] += 1
        if purges["n"] == crash_at:
            raise StorageUnavailable("crash")
        return real_purge(key)

    world.blobs.purge = crashing_purge  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        _eraser(world).erase(_eraser(world).plan_caller(ERASED))
    world.blobs.purge = real_purge  # type: ignore[method-assign]

    _eraser(world).erase(_eraser(world).plan_caller(ERASED))

    _nothing_of_erased(world)
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


def test_erasure_forgets_memories_of_the_caller_only() -> None:
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex

    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    _populate(world)
    store = FakeMemoryStore()
    for phone, cid in [(ERASED, ERASED_IDS[0]), (ERASED, ERASED_IDS[2]), (KEPT, KEPT_IDS[0])]:
        store.add_conversation(phone, cid, [_item(cid)])
    eraser = _eraser(world, MemoryErasure(store))

    assert eraser.dry_run(eraser.plan_caller(ERASED)).derived["memories"] == 2
    assert eraser.erase(eraser.plan_caller(ERASED)).derived["memories"] == 2

    assert store.count(ERASED) == 0 and store.count(KEPT) == 1


def test_erasing_one_conversation_forgets_only_its_memories() -> None:
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex

    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    _populate(world)
    store = FakeMemoryStore()
    for cid in (ERASED_IDS[0], ERASED_IDS[2]):
        store.add_conversation(ERASED, cid, [_item(cid)])
    eraser = _eraser(world, MemoryErasure(store))

    eraser.erase(eraser.plan_conversations([ERASED_IDS[0]]))

    assert store.count(ERASED, ERASED_IDS[0]) == 0 and store.count(ERASED, ERASED_IDS[2]) == 1


def _item(conversation_id: str) -> Any:
    from services.memory.domain import MemoryItem

    return MemoryItem("I like tea", "user", "semantic", {"conversation_id": conversation_id, "started_at": T0})


def test_an_erased_row_leaves_no_trace_in_the_sqlite_file_or_its_wal(tmp_path: Path) -> None:
    """Deleted rows would otherwise stay readable in the file's free pages (secure_delete) and in the
    WAL frames that wrote them (a checkpoint after the delete)."""
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    world = World("local", FsBlobStore(tmp_path / "archive"), index, FsBlobStore(tmp_path / "analytics"))
    for n in range(30):
        world.call(f"conv_keep_{n:02d}", KEPT, T0 + n)
    world.call("conv_secret_caller", ERASED, T0 + 100)
    eraser = _eraser(world)

    eraser.erase(eraser.plan_caller(ERASED))

    # Read while the index is still open, as a running server holds it: the file and its WAL.
    wal = tmp_path / "index.sqlite3-wal"
    stored = (tmp_path / "index.sqlite3").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"conv_secret_caller" not in stored and b"16125550142" not in stored
    assert b"conv_keep_29" in stored


def test_a_reader_holding_the_index_log_delays_its_scrub_and_the_summary_says_so(tmp_path: Path) -> None:
    """The scrub blocks writers while it runs, so it waits for a reader only briefly, then says so."""
    import sqlite3

    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    world = World("local", FsBlobStore(tmp_path / "archive"), index, FsBlobStore(tmp_path / "analytics"))
    world.call("conv_kept_caller", KEPT, T0)
    world.call("conv_secret_caller", ERASED, T0 + 1)
    reader = sqlite3.connect(tmp_path / "index.sqlite3", isolation_level=None)  # a backup tool, a shell
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM calls").fetchone() == (2,)
    eraser = _eraser(world)

    held = eraser.erase(eraser.plan_caller(ERASED))
    reader.execute("COMMIT")
    reader.close()

    assert held.index_log_pending and held.to_dict()["index_log_pending"] is True
    assert index.scrub_deleted()  # the reader gone, the next scrub (the next erasure's) finishes it
    wal = tmp_path / "index.sqlite3-wal"
    stored = (tmp_path / "index.sqlite3").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"conv_secret_caller" not in stored and b"conv_kept_caller" in stored


def test_an_erased_caller_leaves_no_folder_named_by_their_number(tmp_path: Path) -> None:
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    archive = tmp_path / "archive"
    world = World(
        "local", FsBlobStore(archive), SqliteCallIndex(tmp_path / "index.sqlite3"), FsBlobStore(tmp_path / "a")
    )
    world.call("conv_kept_caller", KEPT, T0, audio=True)
    world.call("conv_gone_caller", ERASED, T0 + 1, audio=True)
    folders = sorted(p.name for p in archive.iterdir())
    eraser = _eraser(world)

    eraser.erase(eraser.plan_caller(ERASED))

    assert len(folders) == 2 and sorted(p.name for p in archive.iterdir()) == [KEPT.lstrip("+")]
    world.call("conv_back_again", ERASED, T0 + 2, audio=True)  # a new call of theirs makes it again
    assert (archive / ERASED.lstrip("+") / "conv_back_again.mp3").is_file()


@pytest.mark.parametrize("step", ["analytics_day_rewrite", "analytics_purge", "index_delete", "tombstone"])
def test_a_crash_in_any_store_then_a_rerun_completes_the_erasure(world: World, step: str) -> None:
    """Crash points beyond the archive: the analytics day object's swap, a per-call analytics object,
    the index row, the tombstones; the row stays until the end, so the rerun finds every call."""
    _populate(world)
    target, method = {
        "analytics_day_rewrite": (world.analytics, "put_if"),
        "analytics_purge": (world.analytics, "purge"),
        "index_delete": (world.index, "delete"),
        "tombstone": (world.erased.store, "add"),
    }[step]
    real = getattr(target, method)
    calls = {"n": 0}

    def crash_on_second(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2 or (step == "tombstone" and calls["n"] == 1):
            raise StorageUnavailable("crash")
        return real(*args, **kwargs)

    setattr(target, method, crash_on_second)
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    with pytest.raises(StorageUnavailable):
        eraser.erase(eraser.plan_caller(ERASED))
    setattr(target, method, real)

    eraser.erase(eraser.plan_caller(ERASED))

    _nothing_of_erased(world)
    assert all(world.erased.is_erased(cid) for cid in ERASED_IDS)
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


def test_erasing_a_call_without_a_start_time_removes_its_analytics_rows(world: World) -> None:
    """No start time and no event_timestamp: the rows sit in the day the call was stored
    (``fallback_start``), and the row has no start to find that day by."""
    envelope = call_envelope("conv_erase_nostart", ERASED, started_at=T0, event_at=T0 + 60)
    del envelope["event_timestamp"]
    envelope["data"]["metadata"]["start_time_unix_secs"] = 0  # "not set" in older payloads
    assert world.deliver(envelope) == "stored"
    world.call(KEPT_IDS[0], KEPT, T0 + 100)
    assert {row["conversation_id"] for row in world.analytics_rows()} == {"conv_erase_nostart", KEPT_IDS[0]}

    eraser = _eraser(world)
    eraser.erase(eraser.plan_caller(ERASED))

    assert {row["conversation_id"] for row in world.analytics_rows()} == {KEPT_IDS[0]}
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


def test_erasure_drops_the_spill_files_a_killed_query_left_beside_the_duckdb_cache(tmp_path: Path) -> None:
    # DuckDB spills a large sort or join to `<cache>.tmp/`, a copy of the rows it reads; a killed query
    # (Ctrl-C twice, OOM) leaves them there, and the next rebuild of the cache never looks at them.
    from services.analytics.duckdb_engine import DuckDbEngine
    from services.analytics.erasure import DuckDbCacheErasure

    cache = tmp_path / "analytics-cache.duckdb"
    DuckDbEngine.local(tmp_path, cache).close()
    spill = tmp_path / "analytics-cache.duckdb.tmp"
    spill.mkdir()
    (spill / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"rows of the erased caller")
    erasure = DuckDbCacheErasure(cache)

    assert erasure.find(None, []) == 1
    assert erasure.erase(None, []) == 1

    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert erasure.erase(None, []) == 0  # idempotent


def test_verify_repair_erases_a_restored_object_of_an_erased_call_whose_row_is_not_back(world: World) -> None:
    # A restored archive backup without the index's: the object is back, its row is not. The plan had
    # only the id, so it purged the parked-audio key alone, said "repaired", and the transcript stayed.
    from services.privacy.service import find_reappeared, find_reappeared_objects

    _populate(world)
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    key = f"16125550142/{ERASED_IDS[0]}.json"
    backup = world.blobs.get_bytes(key)
    eraser.erase(eraser.plan_conversations([ERASED_IDS[0]]))
    world.blobs.put_bytes(key, backup, "application/json")
    assert world.index.get(ERASED_IDS[0]) is None

    found = find_reappeared_objects(world.erased, world.blobs, world.index)
    assert found == {ERASED_IDS[0]: [key]}
    eraser.erase(eraser.plan_conversations(sorted(found), found))

    assert not [k for k in world.archive_listing() if ERASED_IDS[0] in k]
    assert find_reappeared(world.erased, world.blobs, world.index) == []
