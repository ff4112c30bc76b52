"""Rows, keys and the ingest hook: what lands in the analytics store for each event, and how often."""

import copy
import time
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from services.analytics.compaction import compact_closed_days
from services.analytics.rows import check_row_types, decode, encode
from services.analytics.tables import (
    CALLS,
    COLUMNS,
    EVALUATIONS,
    MESSAGES,
    TABLES,
    day_object_key,
    object_key,
    parse_day_object_key,
    parse_object_key,
    partition_of,
)
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.domain import versions
from services.core.domain.errors import StorageUnavailable
from services.core.domain.models import WebhookEvent
from services.ingest.service import Archiver
from services.ingest.verify import ArchiveVerifier
from tests.support import AUDIO, INITIATION_FAILURE, TRANSCRIPTION, TRANSCRIPTION_WEB, fixture_json

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"


def _event(name: str) -> WebhookEvent:
    body = fixture_json(name)
    return WebhookEvent(body["type"], body["event_timestamp"], body["data"])


FIXTURE_START = 1751802015  # 2025-07-06 11:40:15 UTC, the capture's start time
CLOCKS = {
    "open": lambda: FIXTURE_START + 3600,  # the webhook an hour after the call: its day is still open
    # Years later (a redelivery, an import): the day is closed. The write is a per-call object all the
    # same, and the compactor is told the day, so its next merge folds it into the day object.
    "closed": time.time,
}


class Harness:
    def __init__(self, day: str = "open") -> None:
        self.day = day
        self.clock = CLOCKS[day]
        self.archive = MemoryBlobStore()
        self.analytics = MemoryBlobStore()
        self.late: list[str] = []  # the days the writer reported as late writes
        writer = AnalyticsWriter(self.analytics, self.clock, on_late_write=self.late.append)
        self.archiver = Archiver(self.archive, MemoryCallIndex(), self.clock, analytics=writer)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [row for key in self.analytics.list_keys(table + "/") for row in decode(self.analytics.get_bytes(key))]

    def keys(self, dt: str, conversation_id: str = CONVERSATION) -> list[str]:
        """Where one call's three objects are expected: per call, whether the day is open or closed."""
        return sorted(object_key(t, dt, conversation_id) for t in TABLES)

    def merged_keys(self, dt: str, conversation_id: str = CONVERSATION) -> list[str]:
        """Where they are after the next merge: the day's objects once the day is closed."""
        if self.day == "open":
            return self.keys(dt, conversation_id)
        return sorted(day_object_key(t, dt) for t in TABLES)

    def merge(self) -> None:
        compact_closed_days(self.analytics, now=self.clock())

    def partitions(self) -> list[str]:
        """The ``dt`` of every object that holds at least one row."""
        found = []
        for key in self.analytics.list_keys():
            parsed = parse_object_key(key) or parse_day_object_key(key)
            assert parsed is not None, key
            if decode(self.analytics.get_bytes(key)):
                found.append(parsed[1])
        return sorted(found)


@pytest.fixture(params=sorted(CLOCKS))
def harness(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def test_transcription_writes_three_objects_with_the_payload_facts(harness: Harness) -> None:
    harness.archiver.archive(_event(TRANSCRIPTION))
    assert sorted(harness.analytics.objects) == harness.keys("2025-07-06")
    assert harness.late == (["2025-07-06"] if harness.day == "closed" else [])
    harness.merge()
    assert sorted(harness.analytics.objects) == harness.merged_keys("2025-07-06")
    [call] = harness.rows(CALLS)
    assert call["phone"] == "+16125550142"
    assert call["direction"] == "inbound"
    assert call["started_at"] == 1751802015
    assert call["start_time"] == "2025-07-06 11:40:15"
    assert (call["duration_secs"], call["cost_credits"], call["cost_usd"]) == (7, 45, None)
    assert call["call_successful"] == "failure"
    assert call["termination_reason"] == "Client disconnected: 1005"
    assert (call["message_count"], call["agent_message_count"], call["user_message_count"]) == (1, 1, 0)
    assert (call["criteria_count"], call["criteria_failed"]) == (5, 1)
    assert call["has_audio"] is False
    [turn] = harness.rows(MESSAGES)
    assert turn["text"].startswith("Hello, Maria.")
    assert (turn["turn_index"], turn["role"], turn["interrupted"], turn["tool_names"]) == (0, "agent", True, [])
    evaluations = harness.rows(EVALUATIONS)
    criteria = {e["criteria_id"]: e["result"] for e in evaluations if e["kind"] == "criterion"}
    assert criteria["session_closure"] == "failure" and len(criteria) == 5
    data = {e["criteria_id"]: e["value"] for e in evaluations if e["kind"] == "data"}
    assert data["user_name"] == "Maria" and data["key_life_event"] is None and len(data) == 5


def test_rows_have_exactly_the_glue_columns_and_types(harness: Harness) -> None:
    for name in (TRANSCRIPTION, TRANSCRIPTION_WEB, INITIATION_FAILURE):
        harness.archiver.archive(_event(name))
    for table in TABLES:
        rows = harness.rows(table)
        assert rows or table != CALLS
        for row in rows:
            assert check_row_types(table, row) == []
            assert "dt" not in row  # the partition column is never inside the data (Athena refuses both)


def test_check_row_types_catches_a_wrong_type() -> None:
    row: dict[str, object] = {name: None for name, _type in COLUMNS[CALLS]}
    row["duration_secs"] = "7"
    assert check_row_types(CALLS, row) == ["calls.duration_secs: '7' is not bigint"]


def test_data_collection_values_as_text() -> None:
    event = _event(TRANSCRIPTION)
    results = event.data["analysis"]["data_collection_results"]
    results["session_date"]["value"] = "None"
    results["comfort_level"]["value"] = {"score": 3}
    results["consent_given"]["value"] = True
    harness = Harness("open")
    harness.archiver.archive(event)
    values = {e["criteria_id"]: e["value"] for e in harness.rows(EVALUATIONS) if e["kind"] == "data"}
    assert values["session_date"] is None
    assert values["comfort_level"] == '{"score":3}'
    assert values["consent_given"] == "true"


def test_redelivery_overwrites_and_leaves_one_row_per_call(harness: Harness) -> None:
    for _ in range(3):
        assert harness.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"
    assert len(harness.analytics.objects) == 3
    assert len(harness.rows(CALLS)) == 1
    assert len(harness.rows(EVALUATIONS)) == 10
    harness.merge()
    assert harness.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"  # after the merge too
    harness.merge()
    assert sorted(harness.analytics.objects) == harness.merged_keys("2025-07-06")
    assert (len(harness.rows(CALLS)), len(harness.rows(EVALUATIONS))) == (1, 10)


def test_a_newer_event_replaces_the_rows(harness: Harness) -> None:
    harness.archiver.archive(_event(TRANSCRIPTION))
    newer = _event(TRANSCRIPTION)
    newer = WebhookEvent(newer.type, (newer.event_timestamp or 0) + 60, copy.deepcopy(newer.data))
    newer.data["analysis"]["call_successful"] = "success"
    newer.data["transcript"] = newer.data["transcript"] * 3
    harness.archiver.archive(newer)
    [call] = harness.rows(CALLS)
    assert call["call_successful"] == "success"
    assert len(harness.rows(MESSAGES)) == 3


def test_a_stale_event_writes_nothing(harness: Harness) -> None:
    event = _event(TRANSCRIPTION)
    harness.archiver.archive(WebhookEvent(event.type, (event.event_timestamp or 0) + 60, event.data))
    before = dict(harness.analytics.objects)
    older = copy.deepcopy(event.data)
    older["analysis"]["call_successful"] = "success"
    assert harness.archiver.archive(WebhookEvent(event.type, event.event_timestamp, older)).outcome == "stale"
    assert harness.analytics.objects == before


def test_a_call_whose_start_moves_leaves_no_row_in_the_old_partition(harness: Harness) -> None:
    event = _event(TRANSCRIPTION)
    harness.archiver.archive(event)
    moved = copy.deepcopy(event.data)
    moved["metadata"]["start_time_unix_secs"] += 2 * 86400
    harness.archiver.archive(WebhookEvent(event.type, (event.event_timestamp or 0) + 1, moved))
    # (Messages and evaluations too: the fixture has turns and criteria.)
    assert harness.partitions() == ["2025-07-08"] * 3
    assert len(harness.rows(CALLS)) == 1


def test_a_call_whose_start_moves_after_its_day_was_merged_leaves_no_row_there() -> None:
    harness = Harness("closed")
    event = _event(TRANSCRIPTION)
    harness.archiver.archive(event)
    harness.merge()
    moved = copy.deepcopy(event.data)
    moved["metadata"]["start_time_unix_secs"] += 2 * 86400
    harness.archiver.archive(WebhookEvent(event.type, (event.event_timestamp or 0) + 1, moved))
    assert harness.partitions() == ["2025-07-08"] * 3  # dropped from the merged day object at once
    harness.merge()
    assert harness.partitions() == ["2025-07-08"] * 3
    assert sorted(k for k in harness.analytics.objects if "2025-07-08" in k) == harness.merged_keys("2025-07-08")
    assert len(harness.rows(CALLS)) == 1


def test_audio_after_the_merge_sets_has_audio_in_the_merged_day() -> None:
    harness = Harness("closed")
    harness.archiver.archive(_event(TRANSCRIPTION))
    harness.merge()
    harness.late.clear()
    harness.archiver.archive(_event(AUDIO))
    assert harness.late == ["2025-07-06"]  # the row was copied out of the day object: merge again
    harness.merge()
    assert sorted(harness.analytics.objects) == harness.merged_keys("2025-07-06")
    [call] = harness.rows(CALLS)
    assert call["has_audio"] is True


class RunsBeforeTheFirstWriteTo(MemoryBlobStore):
    """Runs ``then`` once, just before the first conditional write to a key containing ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.then: list[Any] = []

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        if self.marker in key and self.then:
            self.then.pop()()
        return super().put_stream_if(key, chunks, content_type, tag, version=version)


def test_two_versions_racing_with_different_start_days_count_the_call_once() -> None:
    """The older version passed the index first; the newer one (its start two days later) runs
    entirely between that and the older one's analytics write."""
    clock = CLOCKS["open"]
    analytics = RunsBeforeTheFirstWriteTo("dt=2025-07-06")
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), clock, analytics=AnalyticsWriter(analytics, clock))
    older = _event(TRANSCRIPTION)
    moved = copy.deepcopy(older.data)
    moved["metadata"]["start_time_unix_secs"] += 2 * 86400
    newer = WebhookEvent(older.type, (older.event_timestamp or 0) + 1, moved)
    analytics.then.append(lambda: archiver.archive(newer))

    archiver.archive(older)

    assert not analytics.then  # the newer event ran in the window
    row = archiver.index.get(CONVERSATION)
    assert row is not None and partition_of(row.started_at or 0) == "2025-07-08"
    assert [key for key in analytics.objects if "2025-07-06" in key] == []
    assert len([r for key in analytics.list_keys(CALLS + "/") for r in decode(analytics.get_bytes(key))]) == 1


def test_audio_after_the_transcript_sets_has_audio(harness: Harness) -> None:
    harness.archiver.archive(_event(TRANSCRIPTION))
    assert harness.rows(CALLS)[0]["has_audio"] is False
    harness.archiver.archive(_event(AUDIO))
    assert harness.rows(CALLS)[0]["has_audio"] is True
    assert len(harness.rows(CALLS)) == 1


def test_audio_before_the_transcript_is_seen_when_the_row_is_written(harness: Harness) -> None:
    harness.archiver.archive(_event(AUDIO))
    assert harness.analytics.objects == {}  # no call row yet: nothing to patch
    harness.archiver.archive(_event(TRANSCRIPTION))
    assert harness.rows(CALLS)[0]["has_audio"] is True


def test_initiation_failure_has_a_call_row_and_empty_tables(harness: Harness) -> None:
    harness.archiver.archive(_event(INITIATION_FAILURE))
    [call] = harness.rows(CALLS)
    assert (call["status"], call["call_successful"], call["failure_reason"]) == (
        "initiation_failed",
        "failure",
        "no-answer",
    )
    assert call["phone"] == "+16125550188" and call["duration_secs"] == 0
    assert harness.rows(MESSAGES) == [] and harness.rows(EVALUATIONS) == []
    assert len(harness.analytics.objects) == 3  # empty objects replace any older rows of the call


class FailingStore(MemoryBlobStore):
    """Every write fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("analytics store down")

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._check()
        super().put_bytes(key, data, content_type)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        self._check()
        return super().put_stream(key, chunks, content_type)

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        self._check()
        return super().put_if(key, data, content_type, tag, version=version)

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        self._check()
        return super().put_stream_if(key, chunks, content_type, tag, version=version)

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        self._check()
        return super().copy_if(source, destination, tag)


@pytest.mark.parametrize("day", sorted(CLOCKS))
def test_an_analytics_failure_fails_the_event_so_the_sender_retries(day: str) -> None:
    clock = CLOCKS[day]
    store = FailingStore()
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), clock, analytics=AnalyticsWriter(store, clock))
    with pytest.raises(StorageUnavailable):
        archiver.archive(_event(TRANSCRIPTION))
    assert store.objects == {}

    store.down = False  # the sender's retry, once the store is back, writes the rows
    assert archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"
    assert sorted(store.objects) == sorted(object_key(t, "2025-07-06", CONVERSATION) for t in TABLES)
    assert all(store.versions.get(key) for key in store.objects)  # written on the event's version


def test_encoding_is_deterministic_gzip_json_lines() -> None:
    rows = [{"conversation_id": "c1", "turn_index": 0, "text": "héllo"}, {"conversation_id": "c1", "turn_index": 1}]
    blob = encode(MESSAGES, rows)
    assert blob == encode(MESSAGES, rows)
    assert blob[:2] == b"\x1f\x8b"
    decoded = decode(blob)
    assert [list(r) for r in decoded] == [[n for n, _t in COLUMNS[MESSAGES]]] * 2
    assert decoded[0]["text"] == "héllo" and decoded[1]["text"] is None


@pytest.mark.parametrize(
    "key",
    [
        "calls/dt=2025-07-06/conv_1.json",
        "raw/dt=2025-07-06/conv_1.json.gz",
        "calls/2025-07-06/conv_1.json.gz",
        "calls/dt=2025-7-6/conv_1.json.gz",
        "calls/dt=2025-07-06/x/conv_1.json.gz",
    ],
)
def test_parse_object_key_rejects_foreign_keys(key: str) -> None:
    assert parse_object_key(key) is None


def test_object_keys_round_trip_and_refuse_bad_ids() -> None:
    key = object_key(MESSAGES, partition_of(1751802015), "conv_1")
    assert key == "messages/dt=2025-07-06/conv_1.json.gz"
    assert parse_object_key(key) == (MESSAGES, "2025-07-06", "conv_1")
    with pytest.raises(Exception, match="conversation_id"):
        object_key(CALLS, "2025-07-06", "../etc/passwd")
    with pytest.raises(ValueError):
        object_key(CALLS, "2025/07/06", "conv_1")


def test_a_call_without_a_start_time_keeps_its_rows_in_the_day_it_was_first_stored() -> None:
    """No start time and no event_timestamp: ``dt`` is the day the call was first stored (the index's
    ``ingested_at``, as backfill and verify use), not the day of each delivery; a redelivery on a
    later day would otherwise leave the call's rows in two days."""
    now = [float(FIXTURE_START)]
    analytics = MemoryBlobStore()
    writer = AnalyticsWriter(analytics, lambda: now[0])
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), lambda: now[0], analytics=writer)
    event = _event(TRANSCRIPTION)
    event.data["metadata"]["start_time_unix_secs"] = 0  # "not set" (older payloads)
    startless = WebhookEvent(event.type, None, event.data)

    assert archiver.archive(startless).outcome == "stored"
    now[0] += 3 * 86_400  # redelivered three days later
    assert archiver.archive(startless).outcome == "stored"

    days = {parse_object_key(key)[1] for key in analytics.list_keys(CALLS + "/")}  # type: ignore[index]
    assert days == {"2025-07-06"}


@pytest.mark.parametrize("merged", [False, True])
def test_audio_after_the_transcript_of_a_call_without_a_start_time_sets_has_audio(merged: bool) -> None:
    now = [float(FIXTURE_START)]
    analytics = MemoryBlobStore()
    writer = AnalyticsWriter(analytics, lambda: now[0])
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), lambda: now[0], analytics=writer)
    event = _event(TRANSCRIPTION)
    event.data["metadata"]["start_time_unix_secs"] = 0  # "not set" (older payloads)
    assert archiver.archive(WebhookEvent(event.type, None, event.data)).outcome == "stored"
    now[0] += 600 + (3 * 86_400 if merged else 0)  # the audio ten minutes later, or days later
    if merged:
        compact_closed_days(analytics, now=now[0])

    assert archiver.archive(_event(AUDIO)).outcome == "stored"

    compact_closed_days(analytics, now=now[0])
    rows = [row for key in analytics.list_keys(CALLS + "/") for row in decode(analytics.get_bytes(key))]
    assert [row["has_audio"] for row in rows] == [True]
    assert ArchiveVerifier(archiver, clock=lambda: now[0]).run().findings == []


def test_a_call_that_gains_a_start_time_leaves_no_row_in_the_day_it_was_first_stored() -> None:
    """Version 1 had no start time (rows in the day it was stored); version 2 says when the call
    started, another day: the call is counted once, in that day."""
    now = [float(FIXTURE_START + 5 * 86_400)]
    analytics = MemoryBlobStore()
    writer = AnalyticsWriter(analytics, lambda: now[0])
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), lambda: now[0], analytics=writer)
    event = _event(TRANSCRIPTION)
    startless = copy.deepcopy(event.data)
    startless["metadata"]["start_time_unix_secs"] = 0
    assert archiver.archive(WebhookEvent(event.type, None, startless)).outcome == "stored"
    now[0] += 60
    assert archiver.archive(WebhookEvent(event.type, int(now[0]), event.data)).outcome == "stored"

    days = sorted({parse_object_key(key)[1] for key in analytics.list_keys(CALLS + "/")})  # type: ignore[index]
    assert days == ["2025-07-06"]
    assert ArchiveVerifier(archiver, clock=lambda: now[0]).run().findings == []


def test_an_initiation_failure_carrying_turns_and_an_analysis_has_no_messages_rows() -> None:
    """A signed failure event with a ``transcript`` (unknown fields are kept in the archive): the
    index counts no turns for a failure, so the tables have none either, and verify agrees."""
    analytics = MemoryBlobStore()
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(analytics))
    event = _event(INITIATION_FAILURE)
    event.data["transcript"] = [{"role": "user", "message": "hello?"}, 5, "x"]

    assert archiver.archive(event).outcome == "stored"

    assert [len(decode(analytics.get_bytes(key))) for key in analytics.list_keys(MESSAGES + "/")] == [0]
    assert ArchiveVerifier(archiver).run().findings == []


def test_a_newer_version_without_a_start_time_moves_the_rows_to_the_day_the_call_was_first_stored() -> None:
    """The row describes one version: a newer one without a start time clears the row's start, so the
    call now counts on the day it was first stored, and nowhere else (erasure finds it there)."""
    now = [float(FIXTURE_START + 5 * 86_400)]
    analytics = MemoryBlobStore()
    writer = AnalyticsWriter(analytics, lambda: now[0])
    archiver = Archiver(MemoryBlobStore(), MemoryCallIndex(), lambda: now[0], analytics=writer)
    event = _event(TRANSCRIPTION)
    first = WebhookEvent(event.type, None, event.data)
    assert archiver.archive(first).outcome == "stored"  # started 2025-07-06, stored 2025-07-11
    # Without timestamps, versions are ordered by the digest of the document: pick a newer one.
    startless = copy.deepcopy(event.data)
    startless["metadata"]["start_time_unix_secs"] = 0
    first_version = versions.call_version(event.type, None, orjson.dumps(event.data))
    while versions.call_version(event.type, None, orjson.dumps(startless)) <= first_version:
        startless["metadata"]["call_duration_secs"] += 1
    now[0] += 60
    assert archiver.archive(WebhookEvent(event.type, None, startless)).outcome == "stored"
    stored = FIXTURE_START + 5 * 86_400
    assert archiver.index.get(CONVERSATION).started_at == stored  # type: ignore[union-attr]  # first stored

    days = sorted({parse_object_key(key)[1] for key in analytics.list_keys(CALLS + "/")})  # type: ignore[index]
    assert days == ["2025-07-11"]
    assert ArchiveVerifier(archiver, clock=lambda: now[0]).run().findings == []


@pytest.mark.parametrize("name", [TRANSCRIPTION, INITIATION_FAILURE])
def test_a_call_with_no_start_and_no_event_timestamp_is_listed_and_counted_when_first_stored(name: str) -> None:
    """Signed, but with neither a start time nor an event_timestamp: the row used to have no start,
    so every time range (GET /calls, retention's age) left the call out for ever."""
    from services.core.domain.models import CallQuery

    now = [float(FIXTURE_START + 5 * 86_400)]
    analytics = MemoryBlobStore()
    archiver = Archiver(
        MemoryBlobStore(), MemoryCallIndex(), lambda: now[0], analytics=AnalyticsWriter(analytics, lambda: now[0])
    )
    event = _event(name)
    event.data.get("metadata", {})["start_time_unix_secs"] = 0
    startless = WebhookEvent(event.type, None, event.data)
    result = archiver.archive(startless)
    assert result.outcome == "stored" and result.conversation_id is not None
    now[0] += 3 * 86_400  # redelivered days later: the call keeps the time it was first stored
    assert archiver.archive(startless).outcome == "stored"

    first = FIXTURE_START + 5 * 86_400
    assert archiver.index.get(result.conversation_id).started_at == first  # type: ignore[union-attr]
    window = CallQuery(since=first - 60, until=first + 60)
    assert [row.conversation_id for row in archiver.index.list_calls(window).items] == [result.conversation_id]
    assert ArchiveVerifier(archiver, clock=lambda: now[0]).run().findings == []


def test_a_turn_time_with_a_fraction_is_kept_as_its_whole_second() -> None:
    """`time_in_call_secs` of 0.8 or 12.5 (a float; captures send ints) was stored as null, so search
    hits and the console lost the turn's place in the audio."""
    from services.analytics.rows import rows_for_call
    from services.core.domain import payload

    event = _event(TRANSCRIPTION)
    turns = [
        {"role": "agent", "message": "Hello", "time_in_call_secs": 0.8},
        {"role": "user", "message": "Hi", "time_in_call_secs": 12.5},
        {"role": "agent", "message": "Bye", "time_in_call_secs": 30},
        {"role": "user", "message": "odd", "time_in_call_secs": "3"},
    ]
    event.data["transcript"] = turns
    record = payload.call_from_transcription(event.data, event.event_timestamp, "US")

    rows = rows_for_call(event.data, record, has_audio=False, fallback_start=FIXTURE_START)

    assert [row["time_in_call_secs"] for row in rows.messages] == [0, 12, 30, None]
    assert all(check_row_types("messages", row) == [] for row in rows.messages)
