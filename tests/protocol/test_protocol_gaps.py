"""Where the write protocol did not keep its promise: one minimal reproduction per gap.

Each was found by the enumerations in this folder (``test_crash_points.py``, the deterministic
interleavings in ``test_concurrency.py``) and is reduced here to the one interleaving or crash point
that shows it, with the line at fault and the fix proposed in the docstring. ``test_protocol_gap_*``
fail until the protocol is fixed (they are the acceptance tests of those fixes);
``test_protocol_regression_*`` were fixed meanwhile and guard the fix.
"""

from typing import Any

import pytest

from services.analytics.rows import Row, decode
from services.analytics.tables import CALLS, CONTENT_TYPE, COPIED_OUT, TABLES, day_object_key, object_key, partition_of
from services.core.domain import keys
from services.core.domain.errors import StorageUnavailable
from tests.protocol.harness import (
    A1,
    A2,
    CONV,
    DAY,
    F_LATER_DAY,
    MERGE,
    OPEN_NOW,
    START,
    A,
    Crash,
    F,
    MemoryWorld,
    OperationLog,
    Stores,
    T,
    analytics_view,
    archiver_for,
    deliver,
    delivering,
    end_state,
    number_of,
    operations_of,
    recording,
    run_step,
    step_of,
    transcript,
    verify,
)

PENDING_KEY = keys.pending_audio_key(CONV)
PLACEMENT_FIELDS = ("phone", "archive_prefix", "transcript_key", "reported_phone")  # the first event decides these


def _call_days(stores: Stores) -> list[str]:
    """The days any analytics table holds rows of the call in."""
    return sorted({dt for table in analytics_view(stores.analytics).values() for dt in table if CONV in table[dt]})


def _day_object_rows(stores: Stores, dt: str) -> list[Row]:
    """The call's rows in the ``calls`` day object of ``dt``."""
    rows = decode(stores.analytics.get_bytes(day_object_key(CALLS, dt)))
    return [row for row in rows if row.get("conversation_id") == CONV]


def _content(stores: Stores) -> dict[str, Any]:
    row = end_state(stores).index[CONV]
    return {name: value for name, value in row.items() if name not in PLACEMENT_FIELDS}


# --- 1. the index row merges fields of older versions ------------------------------------------------


def test_protocol_regression_the_row_of_the_newest_version_keeps_no_field_of_an_older_one() -> None:
    """Failure then transcript, or transcript then failure: the transcript wins both times, so the row
    must be the transcript's whatever the order (its folder aside, which the first event chooses).

    Today ``save_call`` MERGES the fields that are not None (services/core/adapters/sqlite_call_index.py
    ``_SAVE_CALL``: ``c = COALESCE(excluded.c, calls.c)``; memory.py ``save_call``; dynamo_call_index.py
    ``save_call`` SETs only non-None values), so F,T leaves ``failure_reason='no-answer'`` (and
    ``reported_phone``, ``summary``... whatever an older version had and the newer lacks) on the
    transcript's row, while the archive and analytics hold the transcript alone. `verify` compares
    five columns and sees nothing. Fixed in b585a8f as proposed: a newer version replaces every
    call-level content field (None clears it: SQLite ``c = excluded.c``; DynamoDB REMOVE for None),
    only ``phone``/``archive_prefix`` (``claim_place`` owns them) and the memory fields merged.
    """
    failure_first, transcript_first = MemoryWorld().open(), MemoryWorld().open()
    deliver(failure_first, F, T)
    deliver(transcript_first, T, F)
    assert _content(failure_first) == _content(transcript_first)


def test_protocol_regression_a_newer_transcript_without_a_summary_clears_the_summary() -> None:
    """T then a newer T2 whose analysis has no summary: the archive and analytics hold T2 (no summary),
    the row must too. Today it keeps T's summary (same cause and fix as above)."""
    newer = transcript("T2", later_by=100)
    del newer.envelope["data"]["analysis"]["transcript_summary"]
    stores = MemoryWorld().open()
    deliver(stores, T, newer)
    analytics_row = next(iter(analytics_view(stores.analytics)["calls"].values()))[CONV][0]
    row = stores.index.get(CONV)
    assert row is not None and analytics_row["summary"] is None
    assert row.summary is None


# --- 2. analytics rows left in the day a call moved away from -------------------------------------


def test_protocol_regression_a_crash_after_the_row_moved_the_call_to_another_day_leaves_the_old_day_empty() -> None:
    """F (its start is its timestamp, two days after the transcript's start) then T; T dies right
    after ``index.save_call`` and is delivered again.

    T's first attempt read the row (start = F's day) and would delete F's analytics objects in that
    day after writing its own (services/ingest/service.py:118 ``previous = existing.started_at``,
    services/analytics/writer.py:76). It died after save_call replaced the row's start, so the
    redelivery reads T's own start as "previous" and never deletes F's rows: the call is counted in
    two days (`verify` reports analytics_in_two_days since 930d8a0 and --repair drops them, but the
    redelivery itself does not complete what the crash interrupted). Fixed in b585a8f: delete the old day's
    objects (only those holding an older version: head + delete_if) BEFORE ``save_call`` changes the
    start, so a crash leaves the old start in the row and the redelivery repeats the delete; or keep
    the day the analytics rows were written to in the row (``analytics_dt``), updated only after that
    day was cleaned.
    """
    stores = MemoryWorld().open()
    deliver(stores, F_LATER_DAY)
    crash_at = number_of(operations_of([F_LATER_DAY], T), "index", "save_call")
    with pytest.raises(Crash):
        run_step(recording(stores, OperationLog(crash_at, "after")), step_of(T), OPEN_NOW)
    deliver(stores, T)  # the retry, in a restarted process
    assert _call_days(stores) == [partition_of(START)]
    assert verify(stores, OPEN_NOW) == []


def test_protocol_regression_an_older_event_racing_a_newer_one_leaves_no_rows_in_its_day() -> None:
    """No crash: F saves its row, then T (newer, another day) runs whole, deleting F's day (nothing
    there yet), then F writes its analytics objects in its own day. Nothing removed them: the older
    writer's analytics write is conditional on objects under ITS day's keys, which the newer writer
    never touches. Fixed in 930d8a0: the loser re-reads the row and withdraws its rows.
    """
    stores = MemoryWorld().open()
    pause_at = number_of(operations_of([], F_LATER_DAY), "index", "save_call") + 1
    log = OperationLog(pause_at=pause_at, interrupt=delivering(stores, T))
    run_step(recording(stores, log), step_of(F_LATER_DAY), OPEN_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [partition_of(START)]


def test_protocol_regression_an_older_event_that_dies_before_withdrawing_leaves_no_rows_in_its_day() -> None:
    """As above, but F dies between writing its analytics rows and re-reading the row (the window of
    930d8a0's withdraw: services/ingest/service.py:119-124). Its redelivery finds the newer row and
    returns "stale" at once (service.py:94), so nobody withdraws F's rows: the call is counted in two
    days. Fixed in b585a8f: the stale paths withdraw too: ``analytics.withdraw(cid,
    day of our start, our version, latest.started_at)`` (a few HEADs, only for stale deliveries).
    """
    stores = MemoryWorld().open()
    operations = operations_of([], F_LATER_DAY)
    pause_at = number_of(operations, "index", "save_call") + 1
    reread = next(op.number for op in operations if op.store == "index" and op.number > pause_at)
    log = OperationLog(reread, "before", pause_at=pause_at, interrupt=delivering(stores, T))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(F_LATER_DAY), OPEN_NOW)
    assert deliver(stores, F_LATER_DAY) == ["stale"]  # the retry, in a restarted process
    assert _call_days(stores) == [partition_of(START)]


@pytest.mark.parametrize(
    "pause_before", [("index", "claim_place"), ("archive", "head")], ids=["before-claim", "after-claim"]
)
def test_protocol_gap_a_newer_version_that_read_no_row_still_moves_the_older_versions_day(
    pause_before: tuple[str, str],
) -> None:
    """No crash. T reads no row (its ``existing`` is None); F (older: a failure, two days later) then
    runs whole: places the call, saves its row, writes its analytics rows in its own day and finds
    its own version still in the row, so it withdraws nothing. T goes on: ``leave_day`` runs only
    ``if existing is not None`` (services/ingest/service.py, b585a8f), so nothing removes F's day and
    the call is counted in two days (verify: analytics_in_two_days; --repair fixes it). OPEN.

    Fix: the old day must come from the row T actually replaces, not the one it read first:
    (1) use ``placed`` (claim_place's answer, fresher than ``existing``) for the pre-save
    ``leave_day``: closes "before-claim"; (2) make ``save_call`` a compare-and-swap on the version
    read just before it (SQLite ``WHERE calls.version IS :expected``, DynamoDB condition on
    ``version``), re-reading and re-running ``leave_day`` when it fails on a changed row: closes
    "after-claim" and stays crash-safe (the row changes only after its old day was cleaned). A
    cheaper (2'): have save_call return the replaced row (DynamoDB ReturnValues=ALL_OLD; SQLite
    SELECT + UPSERT in one BEGIN IMMEDIATE) and ``leave_day`` on it after the save; that leaves a
    crash between the save and that cleanup to `verify --repair`.
    """
    pause_at = number_of(operations_of([], T), *pause_before)
    stores = MemoryWorld().open()
    log = OperationLog(pause_at=pause_at, interrupt=delivering(stores, F_LATER_DAY))
    run_step(recording(stores, log), step_of(T), OPEN_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [partition_of(START)]
    assert verify(stores, OPEN_NOW) == []


def test_protocol_gap_leaving_a_day_is_not_undone_by_audio_marking_the_old_rows() -> None:
    """No crash. F (its day two days later) is archived; T (the call's real start) reads F's row
    and, before the row forgets F's start, deletes F's per-call objects in F's day (``leave_day``:
    head, then ``delete_if`` on that tag). Between T's head and its delete of the calls object, A
    runs whole and ``mark_audio`` rewrites that same calls object (F's version, has_audio=true, a new
    tag). T's ``delete_if`` fails on the tag and ``_delete_older`` (services/analytics/writer.py)
    moves on: F's calls row stays, the call is counted in two days. Fix: in ``_delete_older``, when
    ``delete_if`` fails, head again and retry while the object still holds an older version
    (bounded, like ``write_newest``).
    """
    operations = operations_of([F_LATER_DAY], T)
    pause_at = number_of(operations, "analytics", "delete_if", "calls/")
    stores = MemoryWorld().open()
    deliver(stores, F_LATER_DAY)
    log = OperationLog(pause_at=pause_at, interrupt=delivering(stores, A))
    run_step(recording(stores, log), step_of(T), OPEN_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [partition_of(START)]
    assert verify(stores, OPEN_NOW) == []


def test_protocol_gap_audio_marks_the_day_the_call_is_in_when_it_marks() -> None:
    """No crash. F (its day two days later) is archived; A reads the row (F's start); T runs whole
    (moves the call to its own day, writes its calls row with has_audio=false: no audio yet, and its
    re-check finds none); A writes the audio and marks analytics in the day it READ
    (``mark_audio(conversation_id, existing.started_at)`` in ``_archive_audio``'s placed branch,
    services/ingest/service.py): F's day, whose objects T deleted. T's calls row keeps
    has_audio=false (verify: analytics_differs_from_index). Fix: re-read the row after writing the
    audio and mark the day of ``latest.started_at``; either that read sees T's start, or T's
    re-check (after its analytics write) sees the audio.
    """
    stores = MemoryWorld().open()
    deliver(stores, F_LATER_DAY)
    log = OperationLog(pause_at=2, interrupt=delivering(stores, T))
    run_step(recording(stores, log), step_of(A), OPEN_NOW)
    assert log.interrupted is not None and log.interrupted.name == "head"
    assert verify(stores, OPEN_NOW) == []
    calls = analytics_view(stores.analytics)["calls"][partition_of(START)][CONV]
    assert calls[0]["has_audio"] is True


def test_protocol_regression_verify_sees_a_call_counted_in_two_days() -> None:
    """The state the gaps above and below leave, with the stale day BEFORE the call's day: `verify`
    found nothing, because ``_analytics_calls`` kept one row per call and the later day's object won.
    Fixed in 930d8a0 (``analytics_in_two_days``).
    """
    stores = MemoryWorld().open()
    deliver(stores, T)
    stale_day = partition_of(START - 2 * DAY)
    for table in TABLES:  # the call's rows, also in a day two days earlier (what a moved call leaves)
        data = stores.analytics.get_bytes(object_key(table, partition_of(START), CONV))
        stores.analytics.put_bytes(object_key(table, stale_day, CONV), data, CONTENT_TYPE)
    assert _call_days(stores) == [stale_day, partition_of(START)], "the state this test is about"
    assert verify(stores, OPEN_NOW) != []


# --- 3. has_audio never set after a crash -----------------------------------------------------------


def test_protocol_regression_audio_that_lands_during_a_transcript_that_then_dies_is_marked_in_analytics() -> None:
    """T finds no audio (place_audio; since 7fec45f a call T itself placed does not even look), A runs
    whole before T's analytics writes (A's ``mark_audio`` finds no calls row yet: False), T writes its
    calls row with has_audio=false and dies before its re-check (services/ingest/service.py:125
    ``if not has_audio and head(audio)``). The redelivered T
    finds the audio, but every analytics object is "same" version, so nothing rewrites has_audio, and
    the re-check is skipped because has_audio is now True: has_audio stays false for good.
    Fixed in b585a8f: whenever the audio is in place after the analytics write (``has_audio`` or the head), call
    ``analytics.mark_audio`` (a no-op when the row says has_audio already).
    """
    operations = operations_of([], T)
    first_analytics = next(op.number for op in operations if op.store == "analytics")
    calls_written = number_of(operations, "analytics", "put_stream_if", "calls/")
    stores = MemoryWorld().open()
    log = OperationLog(calls_written, "after", pause_at=first_analytics, interrupt=delivering(stores, A))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(T), OPEN_NOW)
    deliver(stores, T)
    assert verify(stores, OPEN_NOW) == []
    calls = analytics_view(stores.analytics)["calls"][partition_of(START)][CONV]
    assert calls[0]["has_audio"] is True


# --- 4. a spurious 503 ------------------------------------------------------------------------------------


def test_protocol_regression_an_older_audio_racing_a_newer_parked_one_is_stale_not_unavailable() -> None:
    """A1 and A2 (newer) of a call not placed yet: A1 parks, then A2 parks and records itself, then
    A1's ``save_audio(only_if_unplaced=True)`` fails because the row holds the newer audio_version;
    services/ingest/service.py:192 assumes the failed condition means "placed" (``pragma: no cover``)
    and answers 503. The retry ends "stale", so nothing is lost, but a failed condition on a newer
    version is the protocol working, not storage failing. Fixed in b585a8f: re-read the row; still unplaced means
    a newer audio is recorded: return ``IngestResult("stale", ...)``.
    """
    save = number_of(operations_of([], A1), "index", "save_audio")
    stores = MemoryWorld().open()
    log = OperationLog(pause_at=save, interrupt=delivering(stores, A2))
    outcome: str
    try:
        outcome = archiver_for(recording(stores, log), OPEN_NOW).archive(A1.parsed()).outcome
    except StorageUnavailable:
        outcome = "503"
    assert log.interrupted is not None
    row = stores.index.get(CONV)
    assert row is not None and row.audio_version == _audio_version(stores)  # the newer audio is parked and recorded
    assert outcome == "stale"


def _audio_version(stores: Stores) -> str | None:
    head = stores.blobs.head(PENDING_KEY)
    return head.version if head else None


# --- 4. a call moving out of a merged (closed) day while its audio arrives ----------------------------


def delivering_at(stores: Stores, event: Any, now: float) -> Any:
    """``delivering`` at another clock (the closed-day cases)."""

    def interrupt() -> None:
        deliver(stores, event, now=now)

    return interrupt


def _moved_out_of_a_merged_day() -> tuple[Stores, Any]:
    """T archived in a closed day and merged into the day object; T2 (newer) starts two days later."""
    from services.analytics.compaction import compact_closed_days
    from tests.protocol.harness import CLOSED_NOW, moved

    stores = MemoryWorld().open()
    deliver(stores, T, now=CLOSED_NOW)
    compact_closed_days(stores.analytics, now=CLOSED_NOW)
    later = moved(transcript("T2", later_by=100, summary="moved"), START + 2 * DAY)
    return stores, later


def test_protocol_regression_audio_copying_the_merged_row_while_the_call_leaves_the_day_is_cleaned() -> None:
    """No crash. T2 leaves T's closed day (``leave_day`` rewrites the day object without the call:
    read, list per-call objects, put). Between its listing and its put, A runs whole: the row still
    names T's day, so ``mark_audio`` copies the call's merged row out of the day object into a new
    per-call object there (has_audio=true, no version). T2's put succeeds (the day object's tag did
    not change) and its save moves the row: the copy stays, the call is counted in two days and its
    redelivery does not clean it. Fixed: after the save, the old day is left again (only the start
    moving across days pays for it)."""
    from tests.protocol.harness import CLOSED_NOW

    reference, later = _moved_out_of_a_merged_day()
    log = OperationLog()
    run_step(recording(reference, log), step_of(later), CLOSED_NOW)
    day_put = number_of(log.operations, "analytics", "put_if", f"calls/dt={partition_of(START)}/day")

    stores, later = _moved_out_of_a_merged_day()

    log = OperationLog(pause_at=day_put, interrupt=delivering_at(stores, A, CLOSED_NOW))
    run_step(recording(stores, log), step_of(later), CLOSED_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [partition_of(START + 2 * DAY)]
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_audio_copying_the_merged_row_after_the_call_left_the_day_takes_it_back() -> None:
    """No crash. A reads the row (T's closed, merged day) and the day object (the call's row is
    there); T2 then runs whole and moves the call two days later (its leave_day rewrites the day
    object without the call, its save moves the row, its second clean finds no copy yet). A goes on
    and copies the row it read into a new per-call object of T's day: the call is counted in two
    days, and nothing that comes later cleans it. Fixed: ``mark_audio`` reads the day object again
    after copying out of it, and takes its copy back if the call left the day meanwhile."""
    from tests.protocol.harness import CLOSED_NOW

    reference, later = _moved_out_of_a_merged_day()
    log = OperationLog()
    run_step(recording(reference, log), step_of(A), CLOSED_NOW)
    copy_out = number_of(log.operations, "analytics", "put_if", f"calls/dt={partition_of(START)}/{CONV}")

    stores, later = _moved_out_of_a_merged_day()
    log = OperationLog(pause_at=copy_out, interrupt=delivering_at(stores, later, CLOSED_NOW))
    run_step(recording(stores, log), step_of(A), CLOSED_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [partition_of(START + 2 * DAY)]
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_a_version_with_no_time_that_dies_before_withdrawing_leaves_no_rows() -> None:
    """Tnt (no start, no event_timestamp: it starts when first stored, five days after T's day) saves
    its row; T (newer) runs whole and moves the call to its own day; Tnt writes its rows in the day
    it was first stored and dies before re-reading the row to withdraw them. Its retry is stale at
    once, and withdrew with its record's start, which a version with no time has not yet there (None):
    the call stayed counted in two days."""
    from tests.protocol.harness import CLOSED_NOW, T_NO_TIME

    operations = operations_of([], T_NO_TIME, now=CLOSED_NOW)
    pause_at = number_of(operations, "index", "save_call") + 1
    reread = next(op.number for op in operations if op.store == "index" and op.number > pause_at)
    stores = MemoryWorld().open()
    log = OperationLog(reread, "before", pause_at=pause_at, interrupt=delivering_at(stores, T, CLOSED_NOW))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(T_NO_TIME), CLOSED_NOW)
    assert deliver(stores, T_NO_TIME, now=CLOSED_NOW) == ["stale"]  # the retry
    assert _call_days(stores) == [partition_of(START)]
    assert verify(stores, CLOSED_NOW) == []


def _merge_heals(stores: Stores) -> None:
    """Until the next merge the orphan copy counts the call in its old day too (verify says so); the
    merge (serve's compactor runs one at start, AWS hourly) drops it instead of folding it in."""
    from tests.protocol.harness import CLOSED_NOW

    assert _call_days(stores) == [partition_of(START), partition_of(START + 2 * DAY)]
    assert [finding.kind for finding in verify(stores, CLOSED_NOW)] == ["analytics_in_two_days"]
    run_step(stores, MERGE, CLOSED_NOW)
    assert _call_days(stores) == [partition_of(START + 2 * DAY)]
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_audio_that_dies_right_after_copying_the_merged_row_of_a_day_the_call_left() -> None:
    """As above, but A dies right after its copy, before reading the day object again (test_concurrency
    found it). Its retry reads the moved row and never looks at the old day, and nothing durable
    names that day any more: the call stayed counted in two days until `verify --repair`. Fixed: the
    copy is labelled ``COPIED_OUT``, and the merge drops a copy whose call the day object no longer
    holds."""
    from tests.protocol.harness import CLOSED_NOW

    reference, later = _moved_out_of_a_merged_day()
    log = OperationLog()
    run_step(recording(reference, log), step_of(A), CLOSED_NOW)
    copy_out = number_of(log.operations, "analytics", "put_if", f"calls/dt={partition_of(START)}/{CONV}")

    stores, later = _moved_out_of_a_merged_day()
    log = OperationLog(copy_out, "after", pause_at=copy_out, interrupt=delivering_at(stores, later, CLOSED_NOW))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(A), CLOSED_NOW)
    deliver(stores, A, now=CLOSED_NOW)  # the retry
    _merge_heals(stores)


def test_protocol_regression_a_move_that_dies_before_its_second_clean_leaves_a_copy_the_merge_drops() -> None:
    """The first case above, but T2 dies right after its save, before it leaves the old day again:
    A's copy stays behind, and T2's retry finds its version stored and has nothing to do. The merge
    drops the copy."""
    from tests.protocol.harness import CLOSED_NOW

    reference, later = _moved_out_of_a_merged_day()
    log = OperationLog()
    run_step(recording(reference, log), step_of(later), CLOSED_NOW)
    day_put = number_of(log.operations, "analytics", "put_if", f"calls/dt={partition_of(START)}/day")
    saved = number_of(log.operations, "index", "save_call")
    assert day_put < saved

    stores, later = _moved_out_of_a_merged_day()
    log = OperationLog(saved, "after", pause_at=day_put, interrupt=delivering_at(stores, A, CLOSED_NOW))
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(later), CLOSED_NOW)
    assert log.interrupted is not None
    deliver(stores, later, now=CLOSED_NOW)  # the sender's retry
    _merge_heals(stores)


def test_protocol_the_merge_folds_in_a_copy_whose_call_is_still_in_the_day() -> None:
    """The other side of the rule: late audio's copy of a call still in the day object is the newest
    ``has_audio`` and is folded in, never dropped."""
    from tests.protocol.harness import CLOSED_NOW

    stores, _later = _moved_out_of_a_merged_day()
    deliver(stores, A, now=CLOSED_NOW)
    copy = stores.analytics.head(f"calls/dt={partition_of(START)}/{CONV}.json.gz")
    assert copy is not None and copy.version == COPIED_OUT
    run_step(stores, MERGE, CLOSED_NOW)
    assert stores.analytics.head(f"calls/dt={partition_of(START)}/{CONV}.json.gz") is None
    assert [row["has_audio"] for row in _day_object_rows(stores, partition_of(START))] == [True]
    assert verify(stores, CLOSED_NOW) == []


# --- 5. retention expiring analytics rows while a delivery writes them -------------------------------


def _analytics_retention(stores: Stores, now: float) -> Any:
    from services.analytics.erasure import AnalyticsErasure
    from services.privacy.retention import RetentionRules, RetentionRunner, Rule
    from services.privacy.service import Eraser

    erasure = AnalyticsErasure(stores.analytics, clock=lambda: now)
    eraser = Eraser(stores.blobs, stores.index, [erasure], clock=lambda: now)
    rules = RetentionRules(Rule(analytics_days=1))
    return RetentionRunner(stores.index, eraser, rules, analytics=erasure, clock=lambda: now)


def test_protocol_regression_a_delivery_writing_rows_while_retention_expires_them_takes_them_back() -> None:
    """T2 (a newer version) read the row before retention expired the call's analytics rows, and
    wrote its rows after the run erased and marked: the rows of an expired call stayed (verify:
    analytics_expired_present). Fixed: the row T2 reads again after its analytics write (a read it
    made anyway) says the rows expired, and T2 takes its own back."""
    from tests.protocol.harness import CLOSED_NOW, T2

    stores = MemoryWorld().open()
    deliver(stores, T, now=CLOSED_NOW)
    operations = operations_of([T], T2, now=CLOSED_NOW)
    first_write = next(
        op.number
        for op in operations
        if op.store == "analytics" and op.number > number_of(operations, "index", "save_call")
    )
    runner = _analytics_retention(stores, CLOSED_NOW)
    log = OperationLog(pause_at=first_write, interrupt=lambda: runner.run() and None)
    run_step(recording(stores, log), step_of(T2), CLOSED_NOW)
    assert log.interrupted is not None
    assert stores.index.get(CONV).analytics_expired_at is not None  # type: ignore[union-attr]
    assert _call_days(stores) == []
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_rows_written_between_retentions_erase_and_its_mark_are_erased() -> None:
    """Retention erases the rows, then marks the row: T2 (newer) ran whole in between, its re-read
    saw no mark yet, so its rows stayed under the mark. Fixed: the run erases once more after the
    marks (as it does for memories)."""
    from tests.protocol.harness import CLOSED_NOW, T2

    stores = MemoryWorld().open()
    deliver(stores, T, now=CLOSED_NOW)
    probe = OperationLog()
    _analytics_retention(recording(stores, probe), CLOSED_NOW).run()
    mark = number_of(probe.operations, "index", "expire_analytics")

    stores = MemoryWorld().open()
    deliver(stores, T, now=CLOSED_NOW)
    log = OperationLog(pause_at=mark, interrupt=delivering_at(stores, T2, CLOSED_NOW))
    _analytics_retention(recording(stores, log), CLOSED_NOW).run()
    assert log.interrupted is not None
    assert _call_days(stores) == []
    assert verify(stores, CLOSED_NOW) == []


def _expired_while_writing_then_merged(*, crash: bool) -> Stores:
    """T, merged; T again (a redelivery writes per-call objects in the merged day) while retention
    expires the call's rows just before its first analytics write, so it writes them after the run.
    Then, before it reads the row again (which would take them back), it dies (``crash``: a merge
    runs before its retry) or a merge runs. Either way a merge folds its rows into the day object."""
    from tests.protocol.harness import CLOSED_NOW

    def merged() -> Stores:
        stores = MemoryWorld().open()
        deliver(stores, T, now=CLOSED_NOW)
        run_step(stores, MERGE, CLOSED_NOW)
        return stores

    probe = OperationLog()
    run_step(recording(merged(), probe), step_of(T), CLOSED_NOW)
    saved = number_of(probe.operations, "index", "save_call")
    first_write = next(
        op.number for op in probe.operations if op.store == "analytics" and op.number > saved and op.name != "head"
    )
    reread = next(op.number for op in probe.operations if op.store == "index" and op.number > first_write)

    stores = merged()
    runner = _analytics_retention(stores, CLOSED_NOW)
    log = OperationLog(reread if crash else None, "before", pause_at=first_write)

    def retention_then_a_merge_at_the_reread() -> None:
        runner.run()
        if not crash:  # a second pause: the merge, just before the re-read
            log.pause_at, log.interrupt = reread, lambda: run_step(stores, MERGE, CLOSED_NOW)

    log.interrupt = retention_then_a_merge_at_the_reread
    if crash:
        with pytest.raises(Crash):
            run_step(recording(stores, log), step_of(T), CLOSED_NOW)
        run_step(stores, MERGE, CLOSED_NOW)
        deliver(stores, T, now=CLOSED_NOW)  # the retry
    else:
        run_step(recording(stores, log), step_of(T), CLOSED_NOW)
        assert str(log.interrupted).startswith(f"#{reread} index.")
    return stores


def test_protocol_regression_rows_of_an_expired_call_a_merge_folded_in_before_the_retry_are_taken_back() -> None:
    """The delivery that wrote rows over retention's mark died before taking them back, and a merge
    folded them into the day object before its retry: the retry's take-back deleted per-call objects
    only, so the expired call's rows stayed in the day object for good (random history seed 28167;
    verify: analytics_expired_present). Fixed: taking back also drops the call from the closed day's
    object (always rewriting it, as an erasure does, so a merge racing it reads the day again)."""
    from tests.protocol.harness import CLOSED_NOW

    stores = _expired_while_writing_then_merged(crash=True)
    assert stores.index.get(CONV).analytics_expired_at is not None  # type: ignore[union-attr]
    assert _call_days(stores) == []
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_rows_of_an_expired_call_a_merge_folded_in_before_the_reread_are_taken_back() -> None:
    """As above without a crash: the merge runs between the delivery's write and its re-read of the
    row, so the take-back that re-read triggers found no per-call object to delete."""
    from tests.protocol.harness import CLOSED_NOW

    stores = _expired_while_writing_then_merged(crash=False)
    assert stores.index.get(CONV).analytics_expired_at is not None  # type: ignore[union-attr]
    assert _call_days(stores) == []
    assert verify(stores, CLOSED_NOW) == []


# --- 6. retention expiring memories while a delivery saves the row ----------------------------------


class _Jobs:
    """A memory job submitter (services.memory.jobs) that records what it was asked to queue."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def status_for(self, event: Any, record: Any) -> str | None:
        return "pending"

    def submit(self, event: Any, record: Any) -> None:
        self.submitted.append(record.conversation_id)


@pytest.mark.parametrize("index_kind", ["memory", "sqlite"])
def test_protocol_regression_a_delivery_saving_after_retention_expired_the_memories_keeps_them_expired(
    index_kind: str, tmp_path: Any
) -> None:
    """T2 read the row before retention marked its memories expired and saved after: the save wrote
    ``pending`` over ``expired`` and queued a job, so the memories retention removed could come back.
    Fixed: the row refuses a memory status over ``expired`` and the Archiver saves again without one."""
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.core.domain.models import MEMORY_EXPIRED
    from services.ingest.service import Archiver
    from tests.protocol.harness import T2

    jobs = _Jobs()

    def archiver(into: Stores) -> Archiver:
        return Archiver(into.blobs, into.index, lambda: OPEN_NOW, memory_jobs=jobs)

    def world(name: str) -> Stores:
        stores = MemoryWorld().open()
        if index_kind == "sqlite":
            stores = Stores(stores.blobs, SqliteCallIndex(tmp_path / f"{name}.sqlite3"), stores.analytics)
        archiver(stores).archive(T.parsed())
        return stores

    log = OperationLog()
    archiver(recording(world("count"), log)).archive(T2.parsed())
    save = number_of(log.operations, "index", "save_call")

    stores = world("run")

    log = OperationLog(pause_at=save, interrupt=lambda: stores.index.set_memory_status(CONV, MEMORY_EXPIRED, 1))
    jobs.submitted.clear()
    assert archiver(recording(stores, log)).archive(T2.parsed()).outcome == "stored"
    assert log.interrupted is not None
    row = stores.index.get(CONV)
    assert row is not None and row.memory_status == MEMORY_EXPIRED and jobs.submitted == []


# --- 7. retention expiring audio while an audio delivery marks analytics ------------------------------


def _audio_retention(stores: Stores) -> Any:
    from services.privacy.retention import RetentionRules, RetentionRunner, Rule
    from services.privacy.service import Eraser
    from tests.protocol.harness import CLOSED_NOW

    return RetentionRunner(
        stores.index,
        Eraser(stores.blobs, stores.index, [], clock=lambda: CLOSED_NOW),
        RetentionRules(Rule(audio_days=1)),
        blobs=stores.blobs,
        audio_flags=archiver_for(stores, CLOSED_NOW).analytics,
        clock=lambda: CLOSED_NOW,
    )


def test_protocol_regression_audio_whose_call_lost_its_audio_meanwhile_does_not_mark_has_audio() -> None:
    """A2 (newer audio) wrote its object and the row; retention (audio_days) then ran whole: purged
    the audio, marked the row expired and set has_audio false in analytics. A2 read the row again
    (expired) and still marked has_audio true: verify reported has_audio differs for good."""
    from tests.protocol.harness import CLOSED_NOW

    def prepared() -> Stores:
        from services.analytics.compaction import compact_closed_days

        stores = MemoryWorld().open()
        deliver(stores, T, A1, now=CLOSED_NOW)
        compact_closed_days(stores.analytics, now=CLOSED_NOW)
        return stores

    log = OperationLog()
    run_step(recording(prepared(), log), step_of(A2), CLOSED_NOW)
    saves = number_of(log.operations, "index", "save_audio")
    reread = next(op.number for op in log.operations if (op.store, op.name) == ("index", "get") and op.number > saves)

    stores = prepared()
    runner = _audio_retention(stores)

    def expire_audio() -> None:
        runner.run()

    log = OperationLog(pause_at=reread, interrupt=expire_audio)
    run_step(recording(stores, log), step_of(A2), CLOSED_NOW)
    assert log.interrupted is not None
    calls = analytics_view(stores.analytics)["calls"][partition_of(START)][CONV]
    assert calls[0]["has_audio"] is False
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_a_delivery_that_died_writing_rows_retention_expired_leaves_none_on_retry() -> None:
    """As in section 5, but T2 dies right after writing its first rows (before reading the row again):
    its retry sees the expiry at once and wrote nothing, so the rows the dead attempt wrote stayed.
    Fixed: a delivery of a call whose rows expired takes back its own version's rows (three HEADs,
    only for calls whose rows expired)."""
    from tests.protocol.harness import CLOSED_NOW, T2

    stores = MemoryWorld().open()
    deliver(stores, T, now=CLOSED_NOW)
    operations = operations_of([T], T2, now=CLOSED_NOW)
    saved = number_of(operations, "index", "save_call")
    first_read = next(op.number for op in operations if op.store == "analytics" and op.number > saved)
    first_write = next(
        op.number for op in operations if op.store == "analytics" and op.name == "put_stream_if" and op.number > saved
    )
    runner = _analytics_retention(stores, CLOSED_NOW)

    def expire() -> None:
        runner.run()

    log = OperationLog(first_write, "after", pause_at=first_read, interrupt=expire)
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(T2), CLOSED_NOW)
    assert deliver(stores, T2, now=CLOSED_NOW) == ["stored"]  # the retry
    assert _call_days(stores) == []
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_audio_marking_after_its_reread_while_retention_expires_the_audio() -> None:
    """As above, but retention runs between A2's second read of the row (not expired yet) and its
    ``mark_audio``: A2 set has_audio true over the run's false, and the audio was gone (verify:
    has_audio differs). Seed 7746 of the random histories. Fixed: A2 reads the row once more after
    marking and puts false back if the audio expired (one index read per audio delivery)."""
    from tests.protocol.harness import CLOSED_NOW

    def prepared() -> Stores:
        from services.analytics.compaction import compact_closed_days

        stores = MemoryWorld().open()
        deliver(stores, T, A1, now=CLOSED_NOW)
        compact_closed_days(stores.analytics, now=CLOSED_NOW)
        return stores

    log = OperationLog()
    run_step(recording(prepared(), log), step_of(A2), CLOSED_NOW)
    saves = number_of(log.operations, "index", "save_audio")
    mark = next(op.number for op in log.operations if op.store == "analytics" and op.number > saves)

    stores = prepared()
    runner = _audio_retention(stores)

    def expire_audio() -> None:
        runner.run()

    log = OperationLog(pause_at=mark, interrupt=expire_audio)
    run_step(recording(stores, log), step_of(A2), CLOSED_NOW)
    assert log.interrupted is not None
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_a_transcript_writing_rows_while_retention_expires_the_audio_says_no_audio() -> None:
    """T2 (newer) placed the call's audio (has_audio true) and saved the row; retention expired the
    audio just before T2 wrote its rows, and marked the rows it found (T's, or none: T2's were not
    written yet). T2 wrote has_audio true, and its re-read of the row did not look at the audio:
    verify said has_audio differs for good (random history seeds 44965 and 48065). Fixed: the re-read
    it makes anyway sees the audio expired, and T2 marks its rows false."""
    from tests.protocol.harness import CLOSED_NOW, T2

    def prepared() -> Stores:
        stores = MemoryWorld().open()
        deliver(stores, T, A, now=CLOSED_NOW)
        return stores

    probe = OperationLog()
    run_step(recording(prepared(), probe), step_of(T2), CLOSED_NOW)
    saved = number_of(probe.operations, "index", "save_call")
    first_write = next(
        op.number
        for op in probe.operations
        if op.store == "analytics" and op.name == "put_stream_if" and op.number > saved
    )

    stores = prepared()
    runner = _audio_retention(stores)
    log = OperationLog(pause_at=first_write, interrupt=lambda: runner.run() and None)
    run_step(recording(stores, log), step_of(T2), CLOSED_NOW)
    assert log.interrupted is not None
    assert stores.index.get(CONV).has_audio is False  # type: ignore[union-attr]
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_audio_written_over_retention_by_a_delivery_that_died_is_purged_by_its_retry() -> None:
    """A2 (newer audio) read the row, retention expired the call's audio (purged it, the row refuses
    audio from then on), A2 wrote its copy into place and died before the row refused it. Its retry
    found the row expired and answered stale, leaving the copy (verify: expired_audio_present;
    random history seeds 51276 and 54702). Fixed: the retry purges any copy it finds."""
    from tests.protocol.harness import CLOSED_NOW

    def prepared() -> Stores:
        stores = MemoryWorld().open()
        deliver(stores, T, A1, now=CLOSED_NOW)
        return stores

    probe = OperationLog()
    run_step(recording(prepared(), probe), step_of(A2), CLOSED_NOW)
    write = number_of(probe.operations, "archive", "put_stream_if", ".mp3")
    head = write - 1  # write_newest's head of the same key
    assert str(probe.operations[head - 1]).startswith(f"#{head} archive.head(") and ".mp3" in str(
        probe.operations[head - 1]
    )

    stores = prepared()
    runner = _audio_retention(stores)
    log = OperationLog(write, "after", pause_at=head, interrupt=lambda: runner.run() and None)
    with pytest.raises(Crash):
        run_step(recording(stores, log), step_of(A2), CLOSED_NOW)
    assert [key for key in stores.blobs.list_keys() if key.endswith(".mp3")]  # the dead delivery's copy
    assert deliver(stores, A2, now=CLOSED_NOW) == ["stale"]  # the retry
    assert [key for key in stores.blobs.list_keys() if key.endswith(".mp3")] == []
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_a_version_leaving_a_closed_day_keeps_a_newer_versions_rows_written_there_meanwhile() -> (
    None
):
    """F+2d put the call in a closed day two days later; Tns (a newer transcript with no start: it
    starts at its timestamp, in T's day) leaves that day: it deletes F's per-call objects there and,
    the day being closed, rewrites the day object without the call. T+2d (newer still, back in the
    later day) ran whole in between and wrote its per-call objects there: the rewrite folded them in
    and dropped the call with them, so the newest version had no rows at all (random history seed
    73936; verify: no analytics row). Fixed: leaving drops the call's merged rows and its per-call
    objects of that version or older; a newer version's are folded in."""
    from tests.protocol.harness import CLOSED_NOW, T_MOVED, T_NO_START

    later_day = partition_of(START + 2 * DAY)
    operations = operations_of([F_LATER_DAY], T_NO_START, now=CLOSED_NOW)
    listing = number_of(operations, "analytics", "list_keys", f"calls/dt={later_day}/")

    stores = MemoryWorld().open()
    deliver(stores, F_LATER_DAY, now=CLOSED_NOW)
    log = OperationLog(pause_at=listing, interrupt=delivering_at(stores, T_MOVED, CLOSED_NOW))
    run_step(recording(stores, log), step_of(T_NO_START), CLOSED_NOW)
    assert log.interrupted is not None
    assert _call_days(stores) == [later_day]
    assert verify(stores, CLOSED_NOW) == []


def test_protocol_regression_a_transcript_marking_audio_after_its_reread_while_retention_expires_it() -> None:
    """T delivered again (its rows, has_audio true, already written: "same") read the row after its
    write, then retention expired the audio (row first, then has_audio false in the rows), then T's
    ``mark_audio`` set has_audio true over the run's false (random history seed 70753; verify:
    has_audio differs). Fixed: a mark that changed the rows reads the row again, as audio does."""
    from tests.protocol.harness import CLOSED_NOW

    def prepared() -> Stores:
        stores = MemoryWorld().open()
        deliver(stores, T, A, now=CLOSED_NOW)
        return stores

    probe = OperationLog()
    run_step(recording(prepared(), probe), step_of(T), CLOSED_NOW)
    calls_key = f"calls/dt={partition_of(START)}/{CONV}"
    mark = max(
        op.number for op in probe.operations if op.store == "analytics" and op.name == "head" and calls_key in op.key
    )

    stores = prepared()
    runner = _audio_retention(stores)
    log = OperationLog(pause_at=mark, interrupt=lambda: runner.run() and None)
    run_step(recording(stores, log), step_of(T), CLOSED_NOW)
    assert log.interrupted is not None
    assert stores.index.get(CONV).has_audio is False  # type: ignore[union-attr]
    assert verify(stores, CLOSED_NOW) == []
