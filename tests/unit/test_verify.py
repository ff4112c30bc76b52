"""`ArchiveVerifier`: each broken promise is found, named, repaired when safe, and a second run is clean."""

from dataclasses import replace

import pytest

from services.analytics.rows import decode, encode
from services.analytics.tables import CALLS, object_key, partition_of
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.domain import payload
from services.core.domain.models import CallRecord, WebhookEvent
from services.ingest.service import Archiver
from services.ingest.verify import ArchiveVerifier, VerifyReport
from tests.support import AUDIO, INITIATION_FAILURE, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_bytes

CONV = "conv_01jzfrjvcce0vsea1fcbpp9p04"
TRANSCRIPT_KEY = f"16125550142/{CONV}.json"
AUDIO_KEY = f"16125550142/{CONV}.mp3"
PENDING_KEY = f"_pending-audio/{CONV}.mp3"
START = 1751802015
NOW = START + 3 * 86_400


class World:
    def __init__(self) -> None:
        self.blobs = MemoryBlobStore()
        self.index = MemoryCallIndex()
        self.analytics = MemoryBlobStore()
        self.now = float(NOW)
        self.archiver = Archiver(
            self.blobs, self.index, self.clock, analytics=AnalyticsWriter(self.analytics, self.clock)
        )

    def clock(self) -> float:
        return self.now

    def deliver(self, *names: str) -> None:
        for name in names:
            assert self.archiver.archive(payload.parse_envelope(fixture_bytes(name))).outcome == "stored"

    def verify(self, *, repair: bool = False) -> VerifyReport:
        return ArchiveVerifier(self.archiver, clock=self.clock).run(repair=repair)

    def row(self) -> CallRecord:
        row = self.index.get(CONV)
        assert row is not None
        return row


def _kinds(report: VerifyReport) -> list[str]:
    return sorted(finding.kind for finding in report.findings)


def _repair_then_clean(world: World, kind: str) -> None:
    assert kind in _kinds(world.verify())
    repaired = world.verify(repair=True)
    assert kind in _kinds(repaired) and not repaired.unresolved
    assert world.verify().findings == []


def test_verify_finds_nothing_in_an_archive_the_protocol_wrote() -> None:
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO, TRANSCRIPTION_WEB, INITIATION_FAILURE)
    report = world.verify()
    assert report.findings == []
    assert (report.rows, report.objects, report.analytics_calls) == (3, 4, 3)


def test_verify_reports_a_row_whose_transcript_is_gone_and_cannot_repair_it() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    world.blobs.delete(TRANSCRIPT_KEY)
    report = world.verify(repair=True)
    assert _kinds(report) == ["row_names_missing_object"]
    assert report.unresolved and not report.findings[0].repairable


def test_verify_repairs_an_archive_newer_than_its_row() -> None:
    # A crash after the object of a newer version and before its row: the archive holds what the row does not.
    world = World()
    world.deliver(TRANSCRIPTION)
    older = world.row()
    newer = payload.parse_envelope(fixture_bytes(TRANSCRIPTION))
    newer.data["analysis"]["transcript_summary"] = "A later analysis of the same call."
    world.archiver.archive(WebhookEvent(newer.type, (newer.event_timestamp or 0) + 60, newer.data))
    world.index.rows[CONV] = replace(older)  # the row as it was before the newer event
    _repair_then_clean(world, "archive_and_row_differ")
    assert world.row().summary == "A later analysis of the same call."


def test_verify_repairs_a_transcript_no_row_names() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    world.index.rows.clear()
    _repair_then_clean(world, "object_without_row")
    assert world.row().transcript_key == TRANSCRIPT_KEY


def test_verify_repair_rebuilds_a_lost_row_with_its_audio_in_one_run() -> None:
    # The index lost (or restored older): the transcript's replay brings the row back, and the audio
    # beside it is the same repair's to record, not a finding left for a second run.
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    world.index.rows.clear()
    repaired = world.verify(repair=True)
    assert repaired.unresolved == []
    assert world.row().audio_key == AUDIO_KEY
    assert world.verify().findings == []


def test_verify_places_parked_audio_of_a_placed_call() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    world.blobs.put_if(PENDING_KEY, b"ID3 parked", "audio/mpeg", None, version="0000000000001.aa")
    _repair_then_clean(world, "parked_audio_not_placed")
    assert world.blobs.objects[AUDIO_KEY] == b"ID3 parked" and PENDING_KEY not in world.blobs.objects
    assert world.row().audio_key == AUDIO_KEY


def test_verify_reports_audio_waiting_more_than_a_day_for_its_transcript() -> None:
    world = World()
    world.deliver(AUDIO)
    assert world.verify().findings == []  # audio a moment old: its transcript is on its way
    world.now += 2 * 86_400
    report = world.verify(repair=True)
    assert _kinds(report) == ["parked_audio_stale"] and report.unresolved


def test_verify_reports_audio_a_transcript_promised_that_never_came() -> None:
    world = World()
    event = payload.parse_envelope(fixture_bytes(TRANSCRIPTION))
    event.data["has_audio"] = True  # newer payloads say so (the captured one predates the flag)
    assert world.archiver.archive(event).outcome == "stored"
    assert world.row().expects_audio is True
    assert world.verify().findings == []  # the audio webhook or the audio fetch is still on its way
    world.now += 2 * 86_400
    report = world.verify(repair=True)
    assert _kinds(report) == ["audio_missing"] and report.unresolved
    assert "callvault sync" in report.findings[0].detail
    world.deliver(AUDIO)
    assert world.verify().findings == []


def test_verify_removes_a_placement_row_a_crash_left_after_a_day() -> None:
    world = World()
    world.index.claim_place(CONV, "16125550142", "+16125550142", int(world.now))
    assert world.verify().findings == []
    world.now += 2 * 86_400
    _repair_then_clean(world, "placement_without_objects")
    assert world.index.get(CONV) is None


@pytest.mark.parametrize("column", ["has_audio", "phone", "call_successful"])
def test_verify_rewrites_analytics_that_disagree_with_the_index(column: str) -> None:
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    key = object_key(CALLS, partition_of(START), CONV)
    rows = decode(world.analytics.get_bytes(key))
    rows[0][column] = {"has_audio": False, "phone": "+15550000000", "call_successful": "not-an-outcome"}[column]
    world.analytics.put_bytes(key, encode(CALLS, rows), "application/x-ndjson")
    _repair_then_clean(world, "analytics_differs_from_index")
    assert decode(world.analytics.get_bytes(key))[0]["has_audio"] is True


def test_verify_drops_analytics_rows_of_a_call_the_index_does_not_have() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    world.index.rows.clear()
    world.blobs.delete(TRANSCRIPT_KEY)
    _repair_then_clean(world, "analytics_without_row")
    assert not [key for key in world.analytics.list_keys() if CONV in key]


def test_verify_repair_is_idempotent_and_leaves_a_clean_archive_clean() -> None:
    world = World()
    world.deliver(AUDIO, TRANSCRIPTION)
    before = dict(world.blobs.objects), dict(world.analytics.objects)
    assert world.verify(repair=True).findings == []
    assert (dict(world.blobs.objects), dict(world.analytics.objects)) == before


def test_verify_reports_a_row_whose_phone_is_not_its_folders() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    world.index.rows[CONV] = replace(world.row(), phone="+15550000000")
    assert "phone_differs_from_folder" in _kinds(world.verify())


def test_verify_names_no_phone_number_in_any_finding() -> None:
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    world.index.rows.clear()
    text = repr(world.verify().to_dict())
    assert "16125550142" not in text and "6125550142" not in text


def test_an_object_callvault_does_not_write_is_named_so_it_can_be_found_with_its_phone_masked() -> None:
    # A Finder's .DS_Store in a caller's folder: verify exits 1 for it until it is moved out, so the
    # finding must say which file it is, without the number its folder is named by.
    world = World()
    world.deliver(TRANSCRIPTION)
    world.blobs.put_bytes("16125550142/.DS_Store", b"\0", "application/octet-stream")
    (finding,) = world.verify(repair=True).findings
    assert (finding.kind, finding.repaired) == ("unknown_object", False)
    assert ".DS_Store" in finding.detail and "*******0142" in finding.detail
    assert "6125550142" not in finding.detail


def test_verify_progress_reaches_the_total() -> None:
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    seen: list[tuple[int, int]] = []
    ArchiveVerifier(world.archiver, clock=world.clock).run(progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1]


def test_verify_row_without_audio_key_yet_with_audio_in_place_is_repaired() -> None:
    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    world.index.rows[CONV] = replace(world.row(), has_audio=None, audio_key=None, audio_bytes=None, audio_version=None)
    _repair_then_clean(world, "object_without_row")
    assert world.row().audio_key == AUDIO_KEY


def test_verify_parked_audio_without_any_row_is_recorded() -> None:
    world = World()
    world.blobs.put_if(PENDING_KEY, b"ID3 parked", "audio/mpeg", None, version="0000000000001.aa")
    _repair_then_clean(world, "object_without_row")
    row = world.row()
    assert (row.audio_key, row.audio_bytes, row.audio_version) == (PENDING_KEY, 10, "0000000000001.aa")


def test_a_truncated_analytics_object_is_rewritten_and_never_sticks_the_merge() -> None:
    # Local analytics objects are not fsynced: a power cut can leave one empty or cut short.
    from services.analytics.compaction import compact_closed_days

    world = World()
    world.deliver(TRANSCRIPTION)
    key = object_key(CALLS, partition_of(START), CONV)
    world.analytics.put_bytes(key, world.analytics.get_bytes(key)[:10], "application/x-ndjson")
    _repair_then_clean(world, "analytics_unreadable")
    world.analytics.put_bytes(key, b"\x1f\x8b truncated", "application/x-ndjson")
    compact_closed_days(world.analytics, now=world.now + 10 * 86_400)  # merges, does not raise
    _repair_then_clean(world, "analytics_differs_from_index")


@pytest.mark.parametrize("table", ["calls", "messages", "evaluations"])
def test_an_unreadable_per_call_object_of_any_table_is_found_and_rewritten(table: str) -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    key = object_key(table, partition_of(START), CONV)
    good = world.analytics.get_bytes(key)
    world.analytics.put_bytes(key, good[: len(good) // 2], "application/x-ndjson")
    _repair_then_clean(world, "analytics_unreadable")
    assert world.analytics.get_bytes(key) == good


@pytest.mark.parametrize("table", ["calls", "messages", "evaluations"])
@pytest.mark.parametrize("merged", [False, True], ids=["per-call", "day"])
def test_an_empty_analytics_object_is_unreadable_not_a_call_without_rows(table: str, merged: bool) -> None:
    """A power cut can leave an object at zero bytes (analytics are not fsynced); ``encode`` never
    writes one. It decoded as no rows: verify said nothing, and a merge took it for a day (or a
    call) with no rows, so the call's rows were gone for good. Now it is unreadable like any cut."""
    from services.analytics.compaction import compact_closed_days
    from services.analytics.tables import day_object_key

    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    dt = partition_of(START)
    if merged:
        compact_closed_days(world.analytics, now=world.now)
    key = day_object_key(table, dt) if merged else object_key(table, dt, CONV)
    good = world.analytics.get_bytes(key)
    world.analytics.put_bytes(key, b"", "application/x-ndjson")
    _repair_then_clean(world, "analytics_unreadable")
    assert decode(world.analytics.get_bytes(key)) == decode(good)


@pytest.mark.parametrize("table", ["calls", "messages", "evaluations"])
def test_an_unreadable_day_object_is_replaced_and_its_calls_rebuilt_merged(table: str) -> None:
    """A merged day whose day object a power cut cut short: reports and merges stopped on it, and
    verify saw nothing. Now verify finds it, and repair leaves the day merged and whole again."""
    from services.analytics.compaction import compact_closed_days
    from services.analytics.tables import day_object_key

    world = World()
    world.deliver(TRANSCRIPTION, AUDIO)
    dt = partition_of(START)
    compact_closed_days(world.analytics, now=world.now)
    day = day_object_key(table, dt)
    good = {t: decode(world.analytics.get_bytes(day_object_key(t, dt))) for t in ("calls", "messages", "evaluations")}
    blob = world.analytics.get_bytes(day)
    world.analytics.put_bytes(day, blob[: len(blob) // 2], "application/x-ndjson")

    _repair_then_clean(world, "analytics_unreadable")

    assert [key for key in world.analytics.objects if key.endswith(f"{CONV}.json.gz")] == []  # folded in
    for name, rows in good.items():
        assert decode(world.analytics.get_bytes(day_object_key(name, dt))) == rows, name


def test_compaction_replaces_an_unreadable_day_object_and_goes_on_to_later_days() -> None:
    from services.analytics.compaction import compact_closed_days
    from services.analytics.tables import day_object_key

    world = World()
    world.deliver(TRANSCRIPTION)
    dt = partition_of(START)
    later = partition_of(START + 2 * 86_400)
    world.analytics.put_bytes(day_object_key("messages", dt), b"\x1f\x8b cut", "application/x-ndjson")
    late_key = object_key(CALLS, later, "conv_later_1")
    world.analytics.put_bytes(late_key, world.analytics.get_bytes(object_key(CALLS, dt, CONV)), "application/x-ndjson")

    summary = compact_closed_days(world.analytics, now=world.now + 10 * 86_400)

    assert summary.failed == [] and late_key not in world.analytics.objects  # the later day was merged too
    assert decode(world.analytics.get_bytes(day_object_key("messages", dt)))  # readable again, with rows


def test_verify_finds_a_call_counted_in_two_days_and_keeps_the_rows_day() -> None:
    world = World()
    world.deliver(TRANSCRIPTION)
    here = object_key(CALLS, partition_of(START), CONV)
    elsewhere = object_key(CALLS, partition_of(START - 2 * 86_400), CONV)
    world.analytics.put_bytes(elsewhere, world.analytics.get_bytes(here), "application/x-ndjson")
    _repair_then_clean(world, "analytics_in_two_days")
    assert elsewhere not in world.analytics.objects and here in world.analytics.objects


@pytest.mark.parametrize("line", [b"[1, 2]", b'"text"', b"42", b'{"agent_id": "a"}'])
def test_a_day_object_with_a_line_that_is_not_a_row_is_unreadable_not_a_crash(line: bytes) -> None:
    """JSON that is not one of our rows (a hand edit) made every merge and verify raise on it."""
    import gzip

    from services.analytics.compaction import compact_closed_days
    from services.analytics.tables import day_object_key

    world = World()
    world.deliver(TRANSCRIPTION)
    dt = partition_of(START)
    compact_closed_days(world.analytics, now=world.now)
    day = day_object_key(CALLS, dt)
    world.analytics.put_bytes(day, gzip.compress(gzip.decompress(world.analytics.get_bytes(day)) + line + b"\n"), "")

    _repair_then_clean(world, "analytics_unreadable")
    compact_closed_days(world.analytics, now=world.now + 10 * 86_400)  # and merges do not raise on it
    assert world.verify().findings == []


def test_a_row_without_a_start_time_left_by_an_earlier_release_is_given_its_first_stored_time() -> None:
    """Releases before 2f72629 indexed a call whose events named no time without a start: listings and
    retention never saw it. verify finds such a row and --repair replays it, as ingest now stores it."""
    world = World()
    world.deliver(TRANSCRIPTION)
    row = world.row()
    world.index.rows[CONV] = replace(row, started_at=None)  # as an earlier release left it

    _repair_then_clean(world, "row_without_start")

    assert world.row().started_at == START  # the document's own start, replayed
