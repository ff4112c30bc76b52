"""``backfill-analytics``: the same objects ingest would have written, once per call, however often run."""

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path

from services.analytics.backfill import backfill_analytics
from services.analytics.compaction import compact_closed_days, rewrite_day, upsert
from services.analytics.erasure import AnalyticsErasure
from services.analytics.rows import decode, encode
from services.analytics.tables import MESSAGES, day_object_key, object_key, parse_day_object_key
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex, MemoryTombstones
from services.core.domain.models import WebhookEvent
from services.core.erased import ErasedConversations
from services.ingest.service import Archiver
from services.ingest.verify import ArchiveVerifier
from services.privacy.service import Eraser
from tests.analytics.callset import build_calls
from tests.memory.support import call_envelope
from tests.support import AUDIO, INITIATION_FAILURE, fixture_json


def _archive_without_analytics() -> tuple[Archiver, list[str]]:
    """Calls archived before the analytics tables existed (the case backfill is for)."""
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time)
    ids = []
    for call in build_calls(10):
        env = call.envelope
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
        ids.append(env["data"]["conversation_id"])
    audio = fixture_json(AUDIO)
    audio["data"]["conversation_id"] = "conv_test0001"
    archiver.archive(WebhookEvent(audio["type"], audio["event_timestamp"], audio["data"]))
    return archiver, ids


def _live_objects() -> dict[str, bytes]:
    """What ingest writes for the same events when analytics is on, once the next merge has run.

    The calls are from 2025, so their days are closed: ingest writes per-call objects (a late write)
    and the merge folds them into the day objects, as backfill does at its end.
    """
    analytics = MemoryBlobStore()
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    for call in build_calls(10):
        env = call.envelope
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
    audio = fixture_json(AUDIO)
    audio["data"]["conversation_id"] = "conv_test0001"
    archiver.archive(WebhookEvent(audio["type"], audio["event_timestamp"], audio["data"]))
    assert not [key for key in analytics.list_keys() if parse_day_object_key(key)]  # nothing merged yet
    assert compact_closed_days(analytics).days
    return dict(analytics.objects)


def test_backfill_writes_what_ingest_would_have(tmp_path: Path) -> None:
    archiver, ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    seen: list[tuple[int, int]] = []
    summary = backfill_analytics(archiver.blobs, archiver.index, analytics, progress=lambda d, t: seen.append((d, t)))
    assert summary.calls == len(ids) and not summary.failed
    assert seen[-1] == (len(ids), len(ids))
    backfilled = {key: analytics.get_bytes(key) for key in analytics.list_keys()}
    assert all(parse_day_object_key(key) for key in backfilled)  # closed days end merged
    assert backfilled == _live_objects()  # byte for byte, has_audio included


def test_backfill_twice_leaves_one_object_and_one_row_per_call(tmp_path: Path) -> None:
    archiver, ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    backfill_analytics(archiver.blobs, archiver.index, analytics)
    first = sorted(analytics.list_keys())
    backfill_analytics(archiver.blobs, archiver.index, analytics, workers=1)
    assert sorted(analytics.list_keys()) == first
    calls = [row for key in first if key.startswith("calls/") for row in decode(analytics.get_bytes(key))]
    assert sorted(row["conversation_id"] for row in calls) == sorted(ids)


def test_backfill_removes_a_call_left_in_another_partition(tmp_path: Path) -> None:
    archiver, _ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    stale = object_key("calls", "2001-01-01", "conv_test0003")  # e.g. written under an older dt rule
    analytics.put_bytes(stale, b"", "application/x-ndjson")
    summary = backfill_analytics(archiver.blobs, archiver.index, analytics)
    assert summary.deleted == 1
    assert analytics.size(stale) is None


def _messages_of(analytics: FsBlobStore, conversation_id: str) -> list[dict[str, object]]:
    rows = [row for key in analytics.list_keys("messages/") for row in decode(analytics.get_bytes(key))]
    return [row for row in rows if row["conversation_id"] == conversation_id]


def test_prune_removes_calls_erased_from_the_archive_and_only_with_prune(tmp_path: Path) -> None:
    archiver, _ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    erased = object_key("messages", "2025-07-02", "conv_erased")
    analytics.put_bytes(erased, encode(MESSAGES, [{"conversation_id": "conv_erased", "text": "hi"}]), "x")
    backfill_analytics(archiver.blobs, archiver.index, analytics)
    assert len(_messages_of(analytics, "conv_erased")) == 1  # kept (merged into its closed day)
    backfill_analytics(archiver.blobs, archiver.index, analytics, prune=True)
    assert _messages_of(analytics, "conv_erased") == []


def test_backfill_moves_a_call_out_of_a_closed_day_object(tmp_path: Path) -> None:
    """A call whose rows sit in another closed day's object (an older dt rule) ends only in its own day."""
    archiver, _ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    backfill_analytics(archiver.blobs, archiver.index, analytics)
    stale = {"conversation_id": "conv_test0003", "text": "under the old rule"}
    rewrite_day(analytics, MESSAGES, "2001-01-01", upsert("conv_test0003", [stale]))
    before = [r for r in _messages_of(analytics, "conv_test0003") if r["text"] != "under the old rule"]

    backfill_analytics(archiver.blobs, archiver.index, analytics)

    assert _messages_of(analytics, "conv_test0003") == before and before
    assert decode(analytics.get_bytes(day_object_key(MESSAGES, "2001-01-01"))) == []


def test_unreadable_documents_are_reported_by_name_without_the_phone_prefix(tmp_path: Path) -> None:
    archiver, ids = _archive_without_analytics()
    archiver.blobs.put_bytes("16125550101/conv_broken.json", b"{not json", "application/json")
    analytics = FsBlobStore(tmp_path / "analytics")
    summary = backfill_analytics(archiver.blobs, archiver.index, analytics, prune=True)
    assert summary.failed == [("conv_broken.json", "not valid JSON")]
    assert summary.calls == len(ids)


def test_prune_keeps_a_call_a_webhook_stored_during_the_run(tmp_path: Path) -> None:
    """A call archived after the backfill listed the archive (a late webhook, an import of an old
    call into a closed day) is not one the archive lost: --prune must not drop its rows."""
    archiver, _ids = _archive_without_analytics()
    analytics = FsBlobStore(tmp_path / "analytics")
    late = build_calls(11)[10].envelope
    list_keys = archiver.blobs.list_keys

    def list_then_receive(prefix: str = "") -> Iterator[str]:
        listed = list(list_keys(prefix))
        archiver.archive(WebhookEvent(late["type"], late["event_timestamp"], late["data"]))
        return iter(listed)

    archiver.analytics = AnalyticsWriter(analytics)  # the live webhook writes its rows as ingest does
    archiver.blobs.list_keys = list_then_receive  # type: ignore[method-assign]
    backfill_analytics(archiver.blobs, archiver.index, analytics, prune=True)

    assert len(_messages_of(analytics, "conv_test0010")) == len(late["data"]["transcript"])


def test_backfill_never_replaces_rows_of_a_newer_version_a_webhook_wrote_during_the_run(tmp_path: Path) -> None:
    """The backfill read version 1 of a call; version 2 (one more turn) arrived and wrote its rows
    before the backfill wrote version 1's: the rows stay version 2's, as the index and archive are."""
    analytics = FsBlobStore(tmp_path / "analytics")
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    calls = [call.envelope for call in build_calls(4)]
    for env in calls:
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
    first = calls[3]
    second = copy.deepcopy(first)
    second["data"]["transcript"].append({**first["data"]["transcript"][0], "message": "one more thing"})
    get_bytes = archiver.blobs.get_bytes
    raced: list[str] = []

    def read_then_receive(key: str) -> bytes:
        found = get_bytes(key)
        if key.endswith("/conv_test0003.json") and not raced:
            raced.append(key)
            archiver.archive(WebhookEvent(second["type"], second["event_timestamp"] + 60, second["data"]))
        return found

    archiver.blobs.get_bytes = read_then_receive  # type: ignore[method-assign]
    backfill_analytics(archiver.blobs, archiver.index, analytics, workers=1)
    archiver.blobs.get_bytes = get_bytes  # type: ignore[method-assign]

    assert raced
    assert len(_messages_of(analytics, "conv_test0003")) == len(second["data"]["transcript"])
    assert ArchiveVerifier(archiver).run().findings == []


def test_backfill_rewrites_rows_of_the_version_on_file(tmp_path: Path) -> None:
    """After a change of the table schema the rows on file carry the call's version but are stale:
    backfill rewrites them all the same (it only leaves a newer version's rows alone)."""
    analytics = FsBlobStore(tmp_path / "analytics")
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    for call in build_calls(4):
        env = call.envelope
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
    key = next(k for k in analytics.list_keys(MESSAGES) if k.endswith("/conv_test0003.json.gz"))
    head = analytics.head(key)
    assert head is not None and head.version is not None
    old_schema = encode(MESSAGES, [{"conversation_id": "conv_test0003", "text": "as the old schema wrote it"}])
    assert analytics.put_if(key, old_schema, "x", head.tag, version=head.version)

    backfill_analytics(archiver.blobs, archiver.index, analytics)

    texts = [row["text"] for row in _messages_of(analytics, "conv_test0003")]
    assert "as the old schema wrote it" not in texts and len(texts) == 4


def test_backfill_racing_a_webhook_that_moves_the_call_to_another_day_counts_it_once_there(tmp_path: Path) -> None:
    """Version 2 moves the call's start two days on while the backfill writes version 1: the backfill's
    rows in the old day are withdrawn, and the new day keeps version 2's rows (its merge keeps them)."""
    analytics = FsBlobStore(tmp_path / "analytics")
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    calls = [call.envelope for call in build_calls(4)]
    for env in calls:
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
    moved = copy.deepcopy(calls[3])
    moved["data"]["metadata"]["start_time_unix_secs"] += 2 * 86_400
    get_bytes = archiver.blobs.get_bytes
    raced: list[str] = []

    def read_then_receive(key: str) -> bytes:
        found = get_bytes(key)
        if key.endswith("/conv_test0003.json") and not raced:
            raced.append(key)
            archiver.archive(WebhookEvent(moved["type"], moved["event_timestamp"] + 3 * 86_400, moved["data"]))
        return found

    archiver.blobs.get_bytes = read_then_receive  # type: ignore[method-assign]
    backfill_analytics(archiver.blobs, archiver.index, analytics, workers=1)
    archiver.blobs.get_bytes = get_bytes  # type: ignore[method-assign]

    assert raced
    assert ArchiveVerifier(archiver).run().findings == []
    assert len(_messages_of(analytics, "conv_test0003")) == len(moved["data"]["transcript"])


def test_backfill_reads_an_initiation_failure_carrying_a_transcript_as_a_failure(tmp_path: Path) -> None:
    """The archived document's kind comes from its version label (as verify reads it), not from
    which fields a signed payload happened to carry."""
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time)
    failure = fixture_json(INITIATION_FAILURE)
    failure["data"]["transcript"] = [{"role": "user", "message": "hello?"}]
    assert archiver.archive(WebhookEvent(failure["type"], failure["event_timestamp"], failure["data"])).outcome == (
        "stored"
    )
    analytics = FsBlobStore(tmp_path / "analytics")

    summary = backfill_analytics(archiver.blobs, archiver.index, analytics)

    assert summary.calls == 1 and summary.messages == 0
    archiver.analytics = AnalyticsWriter(analytics)
    assert ArchiveVerifier(archiver).run().findings == []


def test_backfill_writes_the_phone_the_index_files_the_call_under(tmp_path: Path) -> None:
    """A newer version names another number: the call stays in its first caller's folder and row
    (the row records the reported number), and ingest writes that phone in the rows; so does backfill."""
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time)
    for phone, event_at in (("+16125550142", 1751802075), ("+16125550177", 1751802095)):
        envelope = call_envelope("conv_phone_changed", phone, started_at=1751802015, event_at=event_at)
        assert archiver.archive(WebhookEvent(envelope["type"], event_at, envelope["data"])).outcome == "stored"
    analytics = FsBlobStore(tmp_path / "analytics")

    backfill_analytics(archiver.blobs, archiver.index, analytics)

    archiver.analytics = AnalyticsWriter(analytics)
    assert ArchiveVerifier(archiver).run().findings == []


def test_an_erasure_racing_the_backfill_leaves_none_of_the_calls_rows(tmp_path: Path) -> None:
    """The backfill read a call, then `forget` erased it (tombstone first, then the tables, the
    archive and the row), then the backfill wrote its rows: the backfill sees the tombstone after its
    write and takes them out again."""
    analytics = FsBlobStore(tmp_path / "analytics")
    tombstones = ErasedConversations(b"k" * 32, MemoryTombstones())
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    for call in build_calls(4):
        env = call.envelope
        archiver.archive(WebhookEvent(env["type"], env["event_timestamp"], env["data"]))
    eraser = Eraser(archiver.blobs, archiver.index, [AnalyticsErasure(analytics)], erased=tombstones)
    get_bytes = archiver.blobs.get_bytes
    raced: list[str] = []

    def read_then_erase(key: str) -> bytes:
        found = get_bytes(key)
        if key.endswith("/conv_test0003.json") and not raced:
            raced.append(key)
            eraser.erase(eraser.plan_conversations(["conv_test0003"]))
        return found

    archiver.blobs.get_bytes = read_then_erase  # type: ignore[method-assign]
    summary = backfill_analytics(archiver.blobs, archiver.index, analytics, workers=1, is_erased=tombstones.is_erased)
    archiver.blobs.get_bytes = get_bytes  # type: ignore[method-assign]

    assert raced
    assert _messages_of(analytics, "conv_test0003") == []
    assert summary.erased == 1
    assert ArchiveVerifier(archiver).run().findings == []


def test_backfill_leaves_a_call_whose_row_is_behind_the_archive_to_its_redelivery(tmp_path: Path) -> None:
    """A delivery died between the archive object and the index row (unacknowledged: the sender
    retries). Backfill wrote rows from the archive's newer version, in a day the row did not name,
    so an erasure before the retry (which reads the days from the row) left them in the tables."""
    from tests.protocol.harness import DAY, START, Crash, OperationLog, moved, recording, transcript
    from tests.protocol.harness import Stores as HarnessStores

    analytics = FsBlobStore(tmp_path / "analytics")
    tombstones = ErasedConversations(b"k" * 32, MemoryTombstones())
    stores = HarnessStores(MemoryBlobStore(), MemoryCallIndex(), analytics)
    first, later_day = transcript("T"), moved(transcript("T'", later_by=300, summary="moved"), START + 2 * DAY)
    now = float(START + 3_600)
    Archiver(stores.blobs, stores.index, lambda: now, analytics=AnalyticsWriter(analytics, lambda: now)).archive(
        first.parsed()
    )
    log = OperationLog(crash_at=4)  # index.get, archive.head, archive.put_stream_if, then the row's turn
    crashing = recording(stores, log)
    with contextlib.suppress(Crash):
        Archiver(crashing.blobs, crashing.index, lambda: now).archive(later_day.parsed())
    assert log.crashed is not None and log.crashed.store != "archive"

    summary = backfill_analytics(stores.blobs, stores.index, analytics, clock=lambda: now)
    eraser = Eraser(stores.blobs, stores.index, [AnalyticsErasure(analytics, clock=lambda: now)], erased=tombstones)
    eraser.erase(eraser.plan_conversations([first.conversation_id]))

    assert [key for key in analytics.list_keys() if first.conversation_id in key] == []
    assert _messages_of(analytics, first.conversation_id) == []
    assert summary.behind == 1 and not summary.failed  # left to the retry (or verify --repair)
