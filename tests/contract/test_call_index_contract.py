"""The CallIndex contract, run against every adapter (see conftest.py), plus DynamoDB-only checks."""

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pynamodb.connection.base import Connection

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain import keys, versions
from services.core.domain.errors import InvalidCursor, StorageUnavailable
from services.core.domain.models import AudioFacts, CallPage, CallQuery, CallRecord
from services.core.ports import CallIndex

from .conftest import TABLE

PHONE = "+16125550142"
OTHER_PHONE = "+447700900123"
AGENT = "agent_01jz0k2w7xepwtr1ztq4f2c0qy"
OTHER_AGENT = "agent_01jz0m8r3bq5vd9xk6ts2hn4fa"
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
T0 = 1_752_160_000  # 2025-07-10T15:06:40Z
NOW = T0 + 600


def conversation(n: int) -> str:
    return f"conv_01jzfrjvcce0vsea1f{n:07d}"


def placed(conversation_id: str, phone: str | None, started_at: int, **extra: Any) -> CallRecord:
    """What a post_call_transcription event yields: a placed call with its call-level fields."""
    prefix = phone.removeprefix("+") if phone else "unknown"
    values: dict[str, Any] = {
        "phone": phone,
        "archive_prefix": prefix,
        "agent_id": AGENT,
        "agent_name": "Front desk",
        "direction": "inbound",
        "started_at": started_at,
        "duration_s": 184,
        "message_count": 23,
        "transcript_key": f"{prefix}/{conversation_id}.json",
        "transcript_bytes": 48_213,
        "status": "done",
        "call_successful": "success",
        "termination_reason": "end_call tool was called",
        "cost": 1_472,
        "cost_usd": 0.4416,
        "language": "en",
        "summary_title": "Booking a dental cleaning",
        "summary": "The caller booked a cleaning for Tuesday at 10am.",
        "event_at": started_at + 200,
    }
    values.update(extra)
    return CallRecord(conversation_id, **values)


def audio_of(conversation_id: str, prefix: str = "_pending-audio") -> AudioFacts:
    return AudioFacts(f"{prefix}/{conversation_id}.mp3", 1_204_224)


def walk(index: CallIndex, query: CallQuery) -> Iterator[CallPage]:
    """Every page of a listing, following ``next`` (through JSON, as the API will)."""
    while True:
        page = index.list_calls(query)
        yield page
        if page.next is None:
            return
        query = replace(query, after=json.loads(json.dumps(page.next)))


def ids(page: CallPage) -> list[str]:
    return [r.conversation_id for r in page.items]


# --- get and merges ----------------------------------------------------------------------------


def test_call_index_get_missing_is_none(index: CallIndex) -> None:
    assert index.get(CONVERSATION) is None


def test_call_index_save_call_then_get_round_trips(index: CallIndex) -> None:
    record = placed(CONVERSATION, PHONE, T0)

    assert index.save_call(record, NOW) is True

    expected = CallRecord.from_dict(record.to_dict())
    expected.ingested_at = expected.updated_at = NOW
    assert index.get(CONVERSATION) == expected
    row = index.get(CONVERSATION)
    assert row is not None
    assert isinstance(row.started_at, int) and isinstance(row.cost_usd, float)


def test_call_index_a_newer_version_replaces_the_call_fields_and_keeps_folder_and_memory(index: CallIndex) -> None:
    # The row describes one version, never a blend: a field the newer version lacks is cleared.
    first = placed(CONVERSATION, PHONE, T0, summary=None, summary_title="Old title")
    first.memory_status, first.memory_updated_at = "done", NOW
    index.save_call(first, NOW)

    later = CallRecord(CONVERSATION, summary="Rescheduled to Wednesday.", event_at=T0 + 900)
    assert index.save_call(later, NOW + 60) is True

    row = index.get(CONVERSATION)
    assert row is not None
    assert row.summary == "Rescheduled to Wednesday."
    assert (row.summary_title, row.agent_id, row.started_at, row.duration_s) == (None, None, None, None)
    # Merged, not replaced: the folder claim_place chose, and the memory worker's progress.
    assert (row.phone, row.archive_prefix) == (PHONE, "16125550142")
    assert (row.memory_status, row.memory_updated_at) == ("done", NOW)
    assert row.event_at == T0 + 900
    assert (row.ingested_at, row.updated_at) == (NOW, NOW + 60)


def test_call_index_save_call_never_touches_audio_fields(index: CallIndex) -> None:
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)

    index.save_call(placed(CONVERSATION, PHONE, T0, has_audio=False, audio_key="x", audio_bytes=1), NOW + 5)

    row = index.get(CONVERSATION)
    assert row is not None
    assert (row.has_audio, row.audio_key, row.audio_bytes) == (True, audio_of(CONVERSATION).key, 1_204_224)


def test_call_index_stale_event_is_skipped(index: CallIndex) -> None:
    assert index.save_call(placed(CONVERSATION, PHONE, T0, event_at=T0 + 300), NOW) is True

    stale = placed(CONVERSATION, PHONE, T0, event_at=T0 + 299, status="processing", summary="old")
    assert index.save_call(stale, NOW + 60) is False

    row = index.get(CONVERSATION)
    assert row is not None
    assert (row.status, row.event_at, row.updated_at) == ("done", T0 + 300, NOW)


def test_call_index_same_event_again_is_applied(index: CallIndex) -> None:
    """A retried delivery carries the same event_at: it must merge (the write is idempotent)."""
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)

    assert index.save_call(placed(CONVERSATION, PHONE, T0), NOW + 30) is True
    row = index.get(CONVERSATION)
    assert row is not None and row.updated_at == NOW + 30


def test_call_index_event_without_timestamp_is_taken_over_a_row_without_version(index: CallIndex) -> None:
    # Rows and records from before versions: no timestamp means no order, so the write is taken (and,
    # like any accepted write, replaces the call fields: the row describes the version it was given).
    index.save_call(placed(CONVERSATION, PHONE, T0, event_at=T0 + 300), NOW)

    assert index.save_call(CallRecord(CONVERSATION, language="es"), NOW + 1) is True

    row = index.get(CONVERSATION)
    assert row is not None and (row.language, row.event_at, row.phone) == ("es", None, PHONE)


def test_call_index_ingested_at_is_kept_from_the_first_write(index: CallIndex) -> None:
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW + 10)
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION, "16125550142"), NOW + 20, only_if_unplaced=False)
    index.save_call(placed(CONVERSATION, PHONE, T0, event_at=T0 + 400), NOW + 30)

    row = index.get(CONVERSATION)
    assert row is not None
    assert (row.ingested_at, row.updated_at) == (NOW, NOW + 30)


# --- audio ---------------------------------------------------------------------------------------


def test_call_index_save_audio_on_a_new_call_creates_an_unplaced_row(index: CallIndex) -> None:
    assert index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True) is True

    assert index.get(CONVERSATION) == CallRecord(
        CONVERSATION,
        agent_id=AGENT,
        has_audio=True,
        audio_key=f"_pending-audio/{CONVERSATION}.mp3",
        audio_bytes=1_204_224,
        ingested_at=NOW,
        updated_at=NOW,
    )


def test_call_index_save_audio_only_if_unplaced_fails_once_placed(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)

    assert index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW + 5, only_if_unplaced=True) is False

    row = index.get(CONVERSATION)
    assert row is not None
    assert (row.has_audio, row.audio_key, row.audio_bytes, row.updated_at) == (None, None, None, NOW)


def test_call_index_save_audio_unconditional_sets_audio_on_a_placed_call(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    final = audio_of(CONVERSATION, "16125550142")

    assert index.save_audio(CONVERSATION, None, final, NOW + 5, only_if_unplaced=False) is True

    row = index.get(CONVERSATION)
    assert row is not None
    assert (row.has_audio, row.audio_key, row.audio_bytes) == (True, final.key, final.size)
    assert row.agent_id == AGENT  # None never erases


def test_call_index_save_audio_never_replaces_a_known_agent(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, agent_id=AGENT), NOW)

    index.save_audio(CONVERSATION, OTHER_AGENT, audio_of(CONVERSATION, "16125550142"), NOW, only_if_unplaced=False)

    row = index.get(CONVERSATION)
    assert row is not None and row.agent_id == AGENT


def test_call_index_audio_then_call_equals_call_then_audio(index: CallIndex) -> None:
    first, second = "conv_01jzfrk2m6e3tq8w0c7y4x1b2n", "conv_01jzfrm4a9d6g2h8k1p5s7v3w0"

    index.save_audio(first, AGENT, audio_of(first), NOW, only_if_unplaced=True)
    index.save_call(placed(first, PHONE, T0), NOW + 10)

    index.save_call(placed(second, PHONE, T0), NOW)
    index.save_audio(second, AGENT, audio_of(second), NOW + 10, only_if_unplaced=False)

    a, b = index.get(first), index.get(second)
    assert a is not None and b is not None
    assert {**a.to_dict(), "conversation_id": "-", "transcript_key": "-", "audio_key": "-"} == {
        **b.to_dict(),
        "conversation_id": "-",
        "transcript_key": "-",
        "audio_key": "-",
    }
    assert (a.has_audio, a.phone, a.ingested_at, a.updated_at) == (True, PHONE, NOW, NOW + 10)


# --- listings -----------------------------------------------------------------------------------


@pytest.fixture
def calls(index: CallIndex) -> dict[str, CallRecord]:
    """Twelve calls over an hour: two phones, two agents, one web call, two failed initiations,
    three unsuccessful calls, plus an audio-only row."""
    rows: dict[str, CallRecord] = {}
    for n in range(12):
        phone = PHONE if n % 3 else OTHER_PHONE
        record = placed(
            conversation(n),
            None if n == 7 else phone,
            T0 + n * 300,
            agent_id=AGENT if n % 2 else OTHER_AGENT,
            status="initiation_failed" if n in (0, 8) else "done",
            call_successful="failure" if n % 4 == 0 else "success",
        )
        index.save_call(record, NOW + n)
        rows[record.conversation_id] = record
    index.save_audio("conv_01jzfrz9audioonly0000001", AGENT, audio_of("x"), NOW, only_if_unplaced=True)
    return rows


def expected_ids(calls: dict[str, CallRecord], **match: Any) -> list[str]:
    rows = [r for r in calls.values() if all(getattr(r, k) == v for k, v in match.items())]
    rows.sort(key=lambda r: r.started_at or 0, reverse=True)
    return [r.conversation_id for r in rows]


def test_call_index_list_calls_is_newest_first(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    page = index.list_calls(CallQuery(limit=50))

    assert ids(page) == expected_ids(calls)
    assert page.next is None
    assert page.items[0] == index.get(conversation(11))


def test_call_index_list_calls_leaves_out_audio_only_rows(index: CallIndex) -> None:
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)

    assert index.list_calls(CallQuery()).items == []
    assert index.list_calls(CallQuery(agent_id=AGENT)).items == []
    assert index.get(CONVERSATION) is not None


def test_call_index_list_calls_by_phone(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    page = index.list_calls(CallQuery(phone=PHONE, limit=50))

    assert ids(page) == expected_ids(calls, phone=PHONE)
    assert len(page.items) == 7
    assert index.list_calls(CallQuery(phone="+33612345678")).items == []


def test_call_index_list_calls_by_agent(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    page = index.list_calls(CallQuery(agent_id=AGENT, limit=50))

    assert ids(page) == expected_ids(calls, agent_id=AGENT)
    assert len(page.items) == 6


def test_call_index_list_calls_by_phone_and_agent(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    page = index.list_calls(CallQuery(phone=PHONE, agent_id=OTHER_AGENT, limit=50))

    assert ids(page) == expected_ids(calls, phone=PHONE, agent_id=OTHER_AGENT)
    assert ids(page) == [conversation(10), conversation(8), conversation(4), conversation(2)]


def test_call_index_list_calls_by_status_and_outcome(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    assert ids(index.list_calls(CallQuery(status="initiation_failed"))) == [conversation(8), conversation(0)]
    assert ids(index.list_calls(CallQuery(call_successful="failure"))) == expected_ids(calls, call_successful="failure")
    assert ids(index.list_calls(CallQuery(phone=PHONE, call_successful="failure"))) == [
        conversation(8),
        conversation(4),
    ]
    assert ids(index.list_calls(CallQuery(agent_id=OTHER_AGENT, status="done", call_successful="failure"))) == [
        conversation(4)
    ]
    assert index.list_calls(CallQuery(agent_id=AGENT, call_successful="failure")).items == []


def test_call_index_list_calls_since_is_inclusive_until_exclusive(
    index: CallIndex, calls: dict[str, CallRecord]
) -> None:
    window = CallQuery(since=T0 + 3 * 300, until=T0 + 8 * 300, limit=50)

    assert ids(index.list_calls(window)) == [conversation(n) for n in (7, 6, 5, 4, 3)]
    assert ids(index.list_calls(CallQuery(since=T0 + 10 * 300))) == [conversation(11), conversation(10)]
    assert ids(index.list_calls(CallQuery(until=T0 + 300))) == [conversation(0)]
    by_phone = CallQuery(phone=PHONE, since=T0 + 3 * 300, until=T0 + 8 * 300)
    assert ids(index.list_calls(by_phone)) == [conversation(n) for n in (5, 4)]
    assert index.list_calls(CallQuery(since=T0 + 300, until=T0 + 300)).items == []
    assert index.list_calls(CallQuery(since=T0 + 600, until=T0 + 300)).items == []


@pytest.mark.parametrize(
    "query",
    [
        CallQuery(limit=5),
        CallQuery(limit=1),
        CallQuery(phone=PHONE, limit=2),
        CallQuery(agent_id=AGENT, limit=4),
        CallQuery(phone=PHONE, agent_id=OTHER_AGENT, limit=1),
        CallQuery(since=T0 + 600, until=T0 + 3000, limit=3),
        CallQuery(call_successful="success", limit=2),
        CallQuery(agent_id=OTHER_AGENT, call_successful="failure", limit=1),
        CallQuery(phone=PHONE, status="done", since=T0 + 300, limit=2),
    ],
    ids=["time", "one-by-one", "phone", "agent", "phone+agent", "window", "outcome", "agent+outcome", "mixed"],
)
def test_call_index_walk_has_no_duplicates_or_gaps(
    index: CallIndex, calls: dict[str, CallRecord], query: CallQuery
) -> None:
    everything = index.list_calls(replace(query, limit=100))
    pages = list(walk(index, query))

    walked = [cid for page in pages for cid in ids(page)]
    assert walked == ids(everything)
    assert len(walked) == len(set(walked)) > query.limit
    assert all(len(page.items) == query.limit for page in pages[:-1])
    assert 1 <= len(pages[-1].items) <= query.limit


WINDOWS = {
    "any time": (None, None),
    "since": (T0 + 4 * 300, None),
    "until": (None, T0 + 8 * 300),
    "window": (T0 + 2 * 300, T0 + 9 * 300 + 1),
}


@pytest.mark.parametrize("window", WINDOWS, ids=list(WINDOWS))
def test_call_index_every_filter_combination_gives_the_same_calls(
    index: CallIndex, calls: dict[str, CallRecord], window: str
) -> None:
    """Each adapter answers every combination of filters (a different access path and filter on
    DynamoDB for each) with exactly the calls a plain reading of the filters selects, newest first,
    whether read as one page or walked two at a time."""
    since, until = WINDOWS[window]
    for phone, agent_id, status, call_successful in itertools.product(
        (PHONE, OTHER_PHONE, None),
        (AGENT, OTHER_AGENT, None),
        ("done", "initiation_failed", None),
        ("success", "failure", None),
    ):
        query = CallQuery(phone, agent_id, since, until, status, call_successful, limit=100)
        expected = [
            r.conversation_id
            for r in sorted(calls.values(), key=lambda r: r.started_at or 0, reverse=True)
            if (phone is None or r.phone == phone)
            and (agent_id is None or r.agent_id == agent_id)
            and (status is None or r.status == status)
            and (call_successful is None or r.call_successful == call_successful)
            and (since is None or (r.started_at or 0) >= since)
            and (until is None or (r.started_at or 0) < until)
        ]
        assert ids(index.list_calls(query)) == expected, query
        walked = [cid for page in walk(index, replace(query, limit=2)) for cid in ids(page)]
        assert walked == expected, query


def test_call_index_exact_last_page_has_no_next(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    first = index.list_calls(CallQuery(phone=PHONE, limit=4))
    assert first.next is not None
    second = index.list_calls(CallQuery(phone=PHONE, limit=3, after=first.next))

    assert len(second.items) == 3
    assert second.next is None
    assert index.list_calls(CallQuery(phone=OTHER_PHONE, limit=4)).next is None


def test_call_index_walk_through_calls_started_in_the_same_second(index: CallIndex) -> None:
    same_second = [conversation(n) for n in range(7)]
    for cid in same_second:
        index.save_call(placed(cid, PHONE, T0), NOW)
    index.save_call(placed(conversation(99), PHONE, T0 - 1), NOW)

    for query in (CallQuery(limit=2), CallQuery(phone=PHONE, limit=3), CallQuery(agent_id=AGENT, limit=1)):
        walked = [cid for page in walk(index, query) for cid in ids(page)]
        assert sorted(walked[:-1]) == sorted(same_second)
        assert walked[-1] == conversation(99)


def test_call_index_order_within_a_second_is_stable_across_page_sizes(index: CallIndex, adapter: str) -> None:
    """Calls that started in the same second come in one order whatever the page size, so a walk is
    the one-page listing cut into pages. SQLite and memory order them by conversation id, newest
    (largest) first; DynamoDB by its GSI's own order for equal keys, which is not the id's (dynalite,
    like DynamoDB, keeps such items in an order of its own): docs/search.md says so."""
    same_second = [conversation(n) for n in (3, 1, 4, 0, 5, 9, 2, 6)]
    for cid in same_second:
        index.save_call(placed(cid, PHONE, T0), NOW)
    index.save_call(placed(conversation(99), PHONE, T0 + 1), NOW)
    index.save_call(placed(conversation(98), PHONE, T0 - 1), NOW)

    for query in (CallQuery(limit=100), CallQuery(phone=PHONE, limit=100), CallQuery(agent_id=AGENT, limit=100)):
        listed = ids(index.list_calls(query))
        assert listed[0] == conversation(99) and listed[-1] == conversation(98)
        assert sorted(listed[1:-1]) == sorted(same_second)
        if adapter in {"memory", "local"}:
            assert listed[1:-1] == sorted(same_second, reverse=True)
        for limit in (1, 2, 3, 5):
            assert [cid for page in walk(index, replace(query, limit=limit)) for cid in ids(page)] == listed


def test_call_index_rows_written_between_pages(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    """Older calls written mid-walk appear once; newer ones wait for the next walk; none repeat."""
    first = index.list_calls(CallQuery(limit=4))
    assert first.next is not None

    newer = placed("conv_01jzfs0newer00000000000001", PHONE, T0 + 99 * 300)
    older = placed("conv_01jzfs0older00000000000001", PHONE, T0 - 300)
    index.save_call(newer, NOW + 100)
    index.save_call(older, NOW + 100)
    # An already listed call gets its summary: it must not be listed again.
    index.save_call(CallRecord(conversation(11), summary="Updated.", event_at=T0 + 99_999), NOW + 100)
    rest = list(walk(index, CallQuery(limit=4, after=first.next)))

    walked = ids(first) + [cid for page in rest for cid in ids(page)]
    assert walked == [*expected_ids(calls), older.conversation_id]
    assert newer.conversation_id not in walked


def test_call_index_newer_versions_and_erasures_between_pages(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    """Newer versions of calls (a rerun analysis: same start, other outcome and summary) arriving
    between two pages, for the call the cursor points at, one already listed and one not yet listed,
    and the cursor's own call erased: no call is listed twice and none still there is missed."""
    first = index.list_calls(CallQuery(limit=4))
    assert first.next is not None
    cursor_call, listed_call, unlisted_call = ids(first)[-1], ids(first)[0], conversation(2)
    for n, cid in enumerate((cursor_call, listed_call, unlisted_call)):
        newer = replace(calls[cid], summary="Analysis rerun.", call_successful="unknown", event_at=T0 + 9_000 + n)
        assert index.save_call(newer, NOW + 200)
    index.delete(cursor_call)

    rest = [cid for page in walk(index, CallQuery(limit=3, after=first.next)) for cid in ids(page)]

    assert ids(first) + rest == expected_ids(calls)
    rerun = index.get(unlisted_call)
    assert rerun is not None and rerun.summary == "Analysis rerun."


def test_call_index_cursor_outside_the_window(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    """A cursor from a wider listing, reused on a narrower window, still means 'older than this row'."""
    position = {"started_at": T0 + 11 * 300, "conversation_id": conversation(11)}
    below_window = {"started_at": T0 - 300, "conversation_id": conversation(11)}
    window = CallQuery(since=T0 + 3 * 300, until=T0 + 6 * 300, limit=10, after=position)

    assert ids(index.list_calls(window)) == [conversation(n) for n in (5, 4, 3)]
    assert index.list_calls(CallQuery(since=T0, after=below_window)) == CallPage([], None)


def test_call_index_cursor_with_an_empty_id_means_strictly_older(
    index: CallIndex, calls: dict[str, CallRecord]
) -> None:
    """No id sorts below "": such a position resumes at the first call of an earlier second."""
    page = index.list_calls(CallQuery(limit=3, after={"started_at": T0 + 5 * 300, "conversation_id": ""}))

    assert ids(page) == [conversation(4), conversation(3), conversation(2)]
    assert page.next is not None


@pytest.mark.parametrize(
    "after",
    [
        {},
        {"started_at": T0},
        {"conversation_id": CONVERSATION},
        {"started_at": str(T0), "conversation_id": CONVERSATION},
        {"started_at": T0 + 0.5, "conversation_id": CONVERSATION},
        {"started_at": T0, "conversation_id": 42},
        {"started_at": None, "conversation_id": None},
    ],
)
def test_call_index_invalid_cursor_is_rejected(
    index: CallIndex, calls: dict[str, CallRecord], after: dict[str, Any]
) -> None:
    with pytest.raises(InvalidCursor):
        index.list_calls(CallQuery(after=after))
    with pytest.raises(InvalidCursor):
        index.list_calls(CallQuery(phone=PHONE, after=after))


def test_call_index_boolean_cursor_is_rejected(index: CallIndex) -> None:
    with pytest.raises(InvalidCursor):
        index.list_calls(CallQuery(after={"started_at": True, "conversation_id": CONVERSATION}))


def test_call_index_cursor_is_plain_json(index: CallIndex, calls: dict[str, CallRecord]) -> None:
    page = index.list_calls(CallQuery(phone=PHONE, limit=2))

    assert page.next is not None
    assert json.loads(json.dumps(page.next)) == page.next
    assert PHONE not in json.dumps(page.next)


# --- DynamoDB only ------------------------------------------------------------------------------


@pytest.fixture
def dynamo_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The DynamoDB operations PynamoDB sends, in order, with their parameters."""
    sent: list[tuple[str, dict[str, Any]]] = []
    dispatch = Connection.dispatch

    def spy(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        sent.append((operation_name, dict(operation_kwargs)))
        return dispatch(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "dispatch", spy)
    return sent


@pytest.mark.usefixtures("aws")
def test_dynamo_call_index_merges_are_single_update_items(
    dynamo_requests: list[tuple[str, dict[str, Any]]],
) -> None:
    index = DynamoCallIndex(TABLE)
    index.create_table()
    dynamo_requests.clear()

    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    index.save_call(placed(CONVERSATION, PHONE, T0, event_at=T0), NOW)  # stale
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)  # placed

    assert [name for name, _ in dynamo_requests] == ["UpdateItem"] * 4


@pytest.mark.usefixtures("aws")
def test_dynamo_call_index_start_keys_stay_inside_the_key_condition(
    dynamo_requests: list[tuple[str, dict[str, Any]]],
) -> None:
    """Real DynamoDB refuses an ExclusiveStartKey outside the range condition or with an empty
    string (ValidationException); moto accepts both, so check what is sent instead."""
    index = DynamoCallIndex(TABLE)
    index.create_table()
    for n in range(6):
        index.save_call(placed(conversation(n), PHONE, T0 + n * 300), NOW)
    window = CallQuery(phone=PHONE, since=T0 + 300, until=T0 + 4 * 300, limit=2)

    def start_keys(query: CallQuery) -> list[Any]:
        dynamo_requests.clear()
        index.list_calls(query)
        return [kwargs.get("ExclusiveStartKey") for name, kwargs in dynamo_requests if name == "Query"]

    above = {"started_at": T0 + 5 * 300, "conversation_id": conversation(5)}
    below = {"started_at": T0, "conversation_id": conversation(0)}
    inside = {"started_at": T0 + 3 * 300, "conversation_id": conversation(3)}
    assert start_keys(replace(window, after=above)) == [None]
    assert start_keys(replace(window, after=below)) == []
    assert start_keys(replace(window, after={"started_at": T0 + 3 * 300, "conversation_id": ""})) == [None]
    assert start_keys(replace(window, after=inside)) == [
        {
            "conversation_id": {"S": conversation(3)},
            "started_at": {"N": str(T0 + 3 * 300)},
            "phone": {"S": PHONE},
        }
    ]


@pytest.mark.usefixtures("aws")
def test_dynamo_call_index_filtered_listing_fills_short_pages() -> None:
    """Phone + agent filters after DynamoDB's Limit: sparse matches still fill a page."""
    index = DynamoCallIndex(TABLE)
    index.create_table()
    for n in range(150):
        agent = AGENT if n % 40 == 0 else OTHER_AGENT
        index.save_call(placed(conversation(n), PHONE, T0 + n, agent_id=agent), NOW)

    page = index.list_calls(CallQuery(phone=PHONE, agent_id=AGENT, limit=3))

    assert ids(page) == [conversation(120), conversation(80), conversation(40)]
    assert page.next is not None
    last = index.list_calls(CallQuery(phone=PHONE, agent_id=AGENT, limit=3, after=page.next))
    assert (ids(last), last.next) == ([conversation(0)], None)


@pytest.mark.usefixtures("aws")
def test_dynamo_call_index_missing_table_is_unavailable_and_names_no_phone() -> None:
    index = DynamoCallIndex("callvault-no-such-table")

    for operation in (
        lambda: index.get(CONVERSATION),
        lambda: index.save_call(placed(CONVERSATION, PHONE, T0), NOW),
        lambda: index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True),
        lambda: index.list_calls(CallQuery(phone=PHONE)),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        message = str(caught.value)
        assert "6125550142" not in message and CONVERSATION not in message
        assert "ResourceNotFoundException" in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.usefixtures("aws")
def test_dynamo_call_index_tables_do_not_share_a_connection() -> None:
    """PynamoDB caches a connection per model class: two indexes must still reach their own tables."""
    first, second = DynamoCallIndex(TABLE), DynamoCallIndex("callvault-calls-other")
    first.create_table()
    second.create_table()

    first.save_call(placed(CONVERSATION, PHONE, T0), NOW)

    assert first.get(CONVERSATION) is not None
    assert second.get(CONVERSATION) is None


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    ("query", "index_name"),
    [
        (CallQuery(status="initiation_failed"), "by_status"),
        (CallQuery(call_successful="failure"), "by_outcome"),
        (CallQuery(status="done", call_successful="failure"), "by_status"),
        (CallQuery(phone=PHONE, status="done"), "by_phone"),
        (CallQuery(), "by_time"),
    ],
    ids=["status", "outcome", "status-and-outcome", "phone-and-status", "no-filter"],
)
def test_dynamo_call_index_outcome_listings_read_their_own_index(
    dynamo_requests: list[tuple[str, dict[str, Any]]], query: CallQuery, index_name: str
) -> None:
    """A rare status must not be found by filtering the whole timeline: it has its own sparse GSI."""
    index = DynamoCallIndex(TABLE)
    index.create_table()
    for n in range(30):
        status, outcome = ("initiation_failed", "failure") if n == 3 else ("done", "success")
        index.save_call(placed(conversation(n), PHONE, T0 + n, status=status, call_successful=outcome), NOW)
    dynamo_requests.clear()

    page = index.list_calls(query)

    queries = [kwargs for name, kwargs in dynamo_requests if name == "Query"]
    assert [q["IndexName"] for q in queries] == [index_name]
    if query in (CallQuery(status="initiation_failed"), CallQuery(call_successful="failure")):
        assert ids(page) == [conversation(3)]
        assert queries[0]["Limit"] == 26  # one page plus one, not a walk through the timeline


def test_call_index_memory_status_marks_an_existing_row_only(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)

    index.set_memory_status(CONVERSATION, "done", NOW + 5)
    index.set_memory_status(conversation(99), "done", NOW + 5)

    row = index.get(CONVERSATION)
    assert row is not None and (row.memory_status, row.memory_updated_at) == ("done", NOW + 5)
    assert row.event_at == placed(CONVERSATION, PHONE, T0).event_at  # untouched: the outbox triggers watch it
    assert index.get(conversation(99)) is None


def test_call_index_memory_status_expired_is_final(index: CallIndex) -> None:
    """Retention (#13) marks a call whose memories it removed; a memory job's late status (done, or the
    failed a last SQS delivery writes before it runs) must not take the mark away."""
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    index.set_memory_status(CONVERSATION, "expired", NOW + 5)

    index.set_memory_status(CONVERSATION, "failed", NOW + 6)
    index.set_memory_status(CONVERSATION, "done", NOW + 7)

    row = index.get(CONVERSATION)
    assert row is not None and (row.memory_status, row.memory_updated_at) == ("expired", NOW + 5)


def test_sqlite_call_index_adds_columns_missing_from_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE calls (conversation_id TEXT PRIMARY KEY, phone TEXT, started_at INTEGER)")
        conn.execute("INSERT INTO calls VALUES (?, ?, ?)", (CONVERSATION, PHONE, T0))

    index = SqliteCallIndex(path)
    index.set_memory_status(CONVERSATION, "pending", NOW)

    row = index.get(CONVERSATION)
    assert row is not None and (row.phone, row.memory_status) == (PHONE, "pending")
    index.close()


# --- the write protocol: placement, versions, scan, delete ---------------------------------------

FAILURE_DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","failure_reason":"busy"}'
DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"done"}'
V_OLD = versions.call_version("post_call_transcription", T0 + 200, DOC)
V_NEW = versions.call_version("post_call_transcription", T0 + 260, DOC + b" ")
V_FAILURE_LATER = versions.call_version("call_initiation_failure", T0 + 900, FAILURE_DOC)
A_OLD = versions.audio_version(T0 + 210, [b"SUQzAAAA"])
A_NEW = versions.audio_version(T0 + 270, [b"SUQzBBBB"])


def _row(index: CallIndex, conversation_id: str = CONVERSATION) -> CallRecord:
    row = index.get(conversation_id)
    assert row is not None
    return row


def test_call_index_claim_place_creates_a_row_that_names_nothing(index: CallIndex) -> None:
    placed_row = index.claim_place(CONVERSATION, "16125550142", PHONE, NOW)

    assert placed_row == index.get(CONVERSATION)
    assert (placed_row.archive_prefix, placed_row.phone, placed_row.ingested_at) == ("16125550142", PHONE, NOW)
    assert (placed_row.transcript_key, placed_row.audio_key, placed_row.has_audio) == (None, None, None)
    assert (placed_row.version, placed_row.started_at) == (None, None)
    assert index.list_calls(CallQuery()).items == []  # not a call anyone can list yet


def test_call_index_claim_place_first_wins(index: CallIndex) -> None:
    first = index.claim_place(CONVERSATION, "16125550142", PHONE, NOW)

    later = index.claim_place(CONVERSATION, "447700900123", OTHER_PHONE, NOW + 5)
    web = index.claim_place(CONVERSATION, "unknown", None, NOW + 6)

    for row in (later, web, _row(index)):
        assert (row.archive_prefix, row.phone) == ("16125550142", PHONE)
    assert (later.ingested_at, later.updated_at) == (first.ingested_at, first.updated_at)  # nothing written


def test_call_index_claim_place_of_a_web_call_keeps_no_phone(index: CallIndex) -> None:
    index.claim_place(CONVERSATION, "unknown", None, NOW)

    row = index.claim_place(CONVERSATION, "16125550142", PHONE, NOW + 5)

    assert (row.archive_prefix, row.phone) == ("unknown", None)


def test_call_index_claim_place_keeps_parked_audio_and_an_earlier_call(index: CallIndex) -> None:
    index.save_audio(CONVERSATION, AGENT, audio_of(CONVERSATION), NOW, only_if_unplaced=True)

    row = index.claim_place(CONVERSATION, "16125550142", PHONE, NOW + 5)

    assert (row.archive_prefix, row.phone, row.agent_id) == ("16125550142", PHONE, AGENT)
    assert (row.has_audio, row.audio_key, row.audio_bytes) == (True, audio_of(CONVERSATION).key, 1_204_224)
    assert row.ingested_at == NOW
    # A call placed by save_call (an older release, or an import) is placed: the claim changes nothing.
    index.save_call(placed(conversation(1), OTHER_PHONE, T0), NOW)
    assert index.claim_place(conversation(1), "16125550142", PHONE, NOW + 5).phone == OTHER_PHONE


def test_call_index_concurrent_claims_agree_on_one_place(index: CallIndex) -> None:
    claimants = [("16125550142", PHONE), ("447700900123", OTHER_PHONE), ("unknown", None)] * 3
    start = threading.Barrier(len(claimants))
    results: list[tuple[str | None, str | None]] = []
    errors: list[BaseException] = []

    def claim(prefix: str, phone: str | None) -> None:
        try:
            start.wait(timeout=30)
            row = index.claim_place(CONVERSATION, prefix, phone, NOW)
            results.append((row.archive_prefix, row.phone))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=claimant) for claimant in claimants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [thread for thread in threads if thread.is_alive()]
    assert errors == []
    stored = _row(index)
    assert results == [(stored.archive_prefix, stored.phone)] * len(claimants)
    assert (stored.archive_prefix, stored.phone) in {(prefix, phone) for prefix, phone in claimants}
    assert stored.phone is None or keys.phone_prefix(stored.phone) == stored.archive_prefix  # never mixed


def test_call_index_versions_round_trip(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD, reported_phone=OTHER_PHONE), NOW)
    index.save_audio(CONVERSATION, None, AudioFacts("16125550142/x.mp3", 10, A_OLD), NOW, only_if_unplaced=False)

    row = _row(index)
    assert (row.version, row.audio_version, row.reported_phone) == (V_OLD, A_OLD, OTHER_PHONE)


def test_call_index_save_call_newer_version_wins(index: CallIndex) -> None:
    assert index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD, summary="old"), NOW) is True

    # A newer version wins even when its event_at is older: the version decides, not the timestamp.
    newer = placed(CONVERSATION, PHONE, T0, version=V_NEW, summary="new", event_at=T0 - 1)
    assert index.save_call(newer, NOW + 5) is True

    row = _row(index)
    assert (row.version, row.summary, row.updated_at) == (V_NEW, "new", NOW + 5)


def test_call_index_save_call_older_version_is_refused(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_NEW, summary="new"), NOW)

    older = placed(CONVERSATION, PHONE, T0, version=V_OLD, summary="old", event_at=T0 + 10_000)
    assert index.save_call(older, NOW + 5) is False
    failure = placed(CONVERSATION, PHONE, T0, version=V_FAILURE_LATER, status="initiation_failed")
    assert index.save_call(failure, NOW + 6) is False  # a failure report never replaces a transcript

    row = _row(index)
    assert (row.version, row.summary, row.status, row.updated_at) == (V_NEW, "new", "done", NOW)


def test_call_index_save_call_equal_version_is_applied(index: CallIndex) -> None:
    """A redelivery carries the same version: it merges again (the write is idempotent)."""
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD), NOW)

    assert index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD, memory_status="pending"), NOW + 5) is True

    row = _row(index)
    assert (row.version, row.memory_status, row.updated_at) == (V_OLD, "pending", NOW + 5)


def test_call_index_save_call_on_a_legacy_row_falls_back_to_event_at(index: CallIndex) -> None:
    """A row written before versions has no ``version``: its event_at decides against a versioned event."""
    index.save_call(placed(CONVERSATION, PHONE, T0, event_at=T0 + 300, summary="legacy"), NOW)

    stale = placed(CONVERSATION, PHONE, T0, version=V_NEW, event_at=T0 + 299, summary="stale")
    assert index.save_call(stale, NOW + 5) is False
    assert (_row(index).summary, _row(index).version) == ("legacy", None)

    newer = placed(CONVERSATION, PHONE, T0, version=V_OLD, event_at=T0 + 301, summary="versioned")
    assert index.save_call(newer, NOW + 6) is True
    row = _row(index)
    assert (row.summary, row.version, row.event_at) == ("versioned", V_OLD, T0 + 301)


def test_call_index_save_call_without_a_version_never_overrides_a_versioned_row(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD, summary="versioned"), NOW)

    for unversioned in (
        placed(CONVERSATION, PHONE, T0, event_at=T0 + 10_000, summary="later but unversioned"),
        CallRecord(CONVERSATION, summary="no timestamp either"),
    ):
        assert index.save_call(unversioned, NOW + 5) is False

    row = _row(index)
    assert (row.summary, row.version, row.updated_at) == ("versioned", V_OLD, NOW)


def test_call_index_save_call_after_claim_place_names_the_objects(index: CallIndex) -> None:
    index.claim_place(CONVERSATION, "16125550142", PHONE, NOW)

    assert index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD), NOW + 5) is True

    row = _row(index)
    assert (row.transcript_key, row.version, row.ingested_at) == (f"16125550142/{CONVERSATION}.json", V_OLD, NOW)
    assert ids(index.list_calls(CallQuery())) == [CONVERSATION]


def _audio(version: str | None, size: int = 1_000, prefix: str = "16125550142") -> AudioFacts:
    return AudioFacts(f"{prefix}/{CONVERSATION}.mp3", size, version)


def test_call_index_save_audio_newer_version_wins(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    assert index.save_audio(CONVERSATION, None, _audio(A_OLD, 1_000), NOW + 1, only_if_unplaced=False) is True

    assert index.save_audio(CONVERSATION, None, _audio(A_NEW, 2_000), NOW + 2, only_if_unplaced=False) is True

    row = _row(index)
    assert (row.audio_version, row.audio_bytes, row.updated_at) == (A_NEW, 2_000, NOW + 2)


def test_call_index_save_audio_older_version_is_refused(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    index.save_audio(CONVERSATION, None, _audio(A_NEW, 2_000), NOW + 1, only_if_unplaced=False)

    assert index.save_audio(CONVERSATION, None, _audio(A_OLD, 1_000), NOW + 2, only_if_unplaced=False) is False
    assert index.save_audio(CONVERSATION, None, _audio(None, 3_000), NOW + 3, only_if_unplaced=False) is False

    row = _row(index)
    assert (row.audio_version, row.audio_bytes, row.updated_at) == (A_NEW, 2_000, NOW + 1)


def test_call_index_save_audio_equal_version_is_applied(index: CallIndex) -> None:
    """The same audio recorded again, e.g. under its placed key once the parked copy moved."""
    index.save_audio(CONVERSATION, AGENT, _audio(A_OLD, prefix="_pending-audio"), NOW, only_if_unplaced=True)
    index.claim_place(CONVERSATION, "16125550142", PHONE, NOW + 1)

    assert index.save_audio(CONVERSATION, None, _audio(A_OLD), NOW + 2, only_if_unplaced=False) is True

    row = _row(index)
    assert (row.audio_key, row.audio_version, row.updated_at) == (_audio(A_OLD).key, A_OLD, NOW + 2)


def test_call_index_save_audio_versioned_replaces_unversioned_audio(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    index.save_audio(CONVERSATION, None, _audio(None, 1_000), NOW + 1, only_if_unplaced=False)

    assert index.save_audio(CONVERSATION, None, _audio(A_OLD, 2_000), NOW + 2, only_if_unplaced=False) is True

    row = _row(index)
    assert (row.audio_version, row.audio_bytes) == (A_OLD, 2_000)


def test_call_index_save_audio_only_if_unplaced_still_checks_the_version(index: CallIndex) -> None:
    parked = _audio(A_NEW, 2_000, prefix="_pending-audio")
    assert index.save_audio(CONVERSATION, AGENT, parked, NOW, only_if_unplaced=True) is True
    older = _audio(A_OLD, 1_000, prefix="_pending-audio")

    assert index.save_audio(CONVERSATION, AGENT, older, NOW + 1, only_if_unplaced=True) is False
    index.claim_place(CONVERSATION, "16125550142", PHONE, NOW + 2)
    newest = _audio(versions.audio_version(T0 + 999, [b"SUQzCCCC"]), prefix="_pending-audio")
    assert index.save_audio(CONVERSATION, AGENT, newest, NOW + 3, only_if_unplaced=True) is False  # placed now

    row = _row(index)
    assert (row.audio_key, row.audio_version, row.audio_bytes) == (parked.key, A_NEW, 2_000)


def test_call_index_save_call_and_save_audio_versions_are_independent(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_NEW), NOW)
    assert index.save_audio(CONVERSATION, None, _audio(A_OLD), NOW + 1, only_if_unplaced=False) is True
    assert index.save_call(placed(CONVERSATION, PHONE, T0, version=V_NEW), NOW + 2) is True

    row = _row(index)
    assert (row.version, row.audio_version, row.has_audio) == (V_NEW, A_OLD, True)


def test_call_index_scan_returns_every_row_once(index: CallIndex) -> None:
    index.save_call(placed(conversation(1), PHONE, T0, version=V_OLD), NOW)
    index.save_audio(conversation(2), AGENT, audio_of(conversation(2)), NOW, only_if_unplaced=True)
    index.claim_place(conversation(3), "unknown", None, NOW)  # a placement row naming nothing

    scanned = {row.conversation_id: row for row in index.scan()}

    assert sorted(scanned) == [conversation(1), conversation(2), conversation(3)]
    assert all(scanned[cid] == index.get(cid) for cid in scanned)


def test_call_index_scan_of_an_empty_index_is_empty(index: CallIndex) -> None:
    assert list(index.scan()) == []


def test_sqlite_call_index_scan_pages_past_500_rows(tmp_path: Path) -> None:
    """SQLite scans in keyset pages of 500: every row comes back once across page boundaries."""
    index = SqliteCallIndex(tmp_path / "index.sqlite3")
    wanted = [conversation(n) for n in range(1_203)]
    for cid in reversed(wanted):  # inserted out of order: the pages follow the key, not the insert
        index.claim_place(cid, "16125550142", PHONE, NOW)

    scanned = [row.conversation_id for row in index.scan()]

    assert sorted(scanned) == wanted
    assert len(scanned) == len(set(scanned))
    index.close()


def test_call_index_delete_removes_the_row(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD), NOW)
    index.claim_place(conversation(1), "unknown", None, NOW)

    index.delete(conversation(1))
    index.delete(CONVERSATION)
    index.delete(conversation(99))  # missing: harmless

    assert index.get(CONVERSATION) is None and index.get(conversation(1)) is None
    assert list(index.scan()) == []
    assert index.list_calls(CallQuery(phone=PHONE)).items == []
    assert index.scrub_deleted()  # with no reader holding anything, nothing of the rows is left behind
    assert index.get(CONVERSATION) is None
    # Gone means gone: the next event places the call afresh.
    assert index.claim_place(CONVERSATION, "447700900123", OTHER_PHONE, NOW + 5).phone == OTHER_PHONE


def _versioned(label: str) -> CallRecord:
    return replace(placed(CONVERSATION, PHONE, T0), version=label)


def test_call_index_save_call_is_a_compare_and_swap_on_the_version_read(index: CallIndex) -> None:
    v1, v2, v3 = (f"1.{T0 + n:013d}.{n:016x}" for n in (1, 2, 3))
    # No row yet, and the writer read none: taken.
    assert index.save_call(_versioned(v1), NOW, expect_version=True, expected_version=None) is True
    # The writer read v1 and v1 is still there: taken.
    assert index.save_call(_versioned(v2), NOW, expect_version=True, expected_version=v1) is True
    # The writer read v1, but another event wrote v2 since: refused although v3 is newer.
    assert index.save_call(_versioned(v3), NOW, expect_version=True, expected_version=v1) is False
    # A writer that read no version finds one now: refused.
    assert index.save_call(_versioned(v3), NOW, expect_version=True, expected_version=None) is False
    row = index.get(CONVERSATION)
    assert row is not None and row.version == v2
    # The expectation never overrides the order: v1 read as current cannot go back to an older one.
    assert index.save_call(_versioned(v1), NOW, expect_version=True, expected_version=v2) is False


def test_call_index_compare_and_swap_on_a_placement_row_and_on_a_vanished_row(index: CallIndex) -> None:
    v1 = f"1.{T0:013d}.{1:016x}"
    index.claim_place(CONVERSATION, "16125550142", PHONE, NOW)  # a row without a version
    assert index.save_call(_versioned(v1), NOW, expect_version=True, expected_version=None) is True
    index.delete(CONVERSATION)
    assert index.save_call(_versioned(v1), NOW, expect_version=True, expected_version=v1) is False
    assert index.get(CONVERSATION) is None


def test_call_index_awaiting_audio_lists_calls_whose_transcript_promised_audio_not_yet_in_place(
    index: CallIndex,
) -> None:
    """The local audio fetch's job list: a row is due once its last write is older than the grace."""
    waiting, early, has_it, no_audio, unsaid = (conversation(n) for n in range(5))
    index.save_call(placed(waiting, PHONE, T0, expects_audio=True), NOW)
    index.save_call(placed(early, PHONE, T0, expects_audio=True), NOW + 100)
    index.save_call(placed(has_it, PHONE, T0, expects_audio=True), NOW)
    index.save_audio(has_it, AGENT, AudioFacts(f"16125550142/{has_it}.mp3", 10, "1"), NOW, only_if_unplaced=False)
    index.save_call(placed(no_audio, PHONE, T0, expects_audio=False), NOW)
    index.save_call(placed(unsaid, PHONE, T0), NOW)

    due = index.awaiting_audio(NOW + 50)

    assert [r.conversation_id for r in due] == [waiting]
    assert due[0].expects_audio is True and index.get(no_audio).expects_audio is False  # type: ignore[union-attr]
    assert index.get(unsaid).expects_audio is None  # type: ignore[union-attr]
    assert {r.conversation_id for r in index.awaiting_audio(NOW + 101)} == {waiting, early}
    assert len(index.awaiting_audio(NOW + 101, limit=1)) == 1


def test_call_index_drop_audio_forgets_the_audio_for_good(index: CallIndex) -> None:
    """Retention (#13): the row keeps the call but no audio, expects none, and refuses audio later."""
    index.save_call(placed(CONVERSATION, PHONE, T0, expects_audio=True), NOW)
    index.save_audio(
        CONVERSATION, AGENT, AudioFacts(f"16125550142/{CONVERSATION}.mp3", 10, A_NEW), NOW, only_if_unplaced=False
    )

    assert index.drop_audio(CONVERSATION, NOW + 1) is True

    row = _row(index)
    assert (row.has_audio, row.audio_key, row.audio_bytes, row.expects_audio) == (False, None, None, False)
    assert row.audio_version == versions.AUDIO_EXPIRED and row.transcript_key is not None
    assert index.awaiting_audio(NOW + 10_000) == []  # no fetch is due for it
    for later in (versions.audio_version(T0 + 999, [b"SUQzCCCC"]), versions.API_AUDIO_VERSION):
        facts = AudioFacts(f"16125550142/{CONVERSATION}.mp3", 10, later)
        assert index.save_audio(CONVERSATION, AGENT, facts, NOW + 2, only_if_unplaced=False) is False
    assert _row(index).audio_key is None
    assert index.drop_audio(conversation(42), NOW) is False  # no row: nothing created
    assert index.get(conversation(42)) is None


def test_call_index_list_reported_finds_calls_filed_under_another_number(index: CallIndex) -> None:
    third = "+13125550199"
    index.save_call(placed(conversation(1), OTHER_PHONE, T0, reported_phone=PHONE), NOW)
    index.save_call(placed(conversation(2), PHONE, T0 + 60), NOW)  # PHONE's own folder: by_phone finds it
    index.save_call(placed(conversation(3), OTHER_PHONE, T0 + 120, reported_phone=third), NOW)
    # A row without a start (an initiation failure, say) is found too.
    unstarted = replace(placed(conversation(4), OTHER_PHONE, T0, reported_phone=PHONE), started_at=None)
    index.save_call(unstarted, NOW)

    found = index.list_reported(PHONE)

    assert sorted(r.conversation_id for r in found) == [conversation(1), conversation(4)]
    assert {r.phone for r in found} == {OTHER_PHONE} and {r.reported_phone for r in found} == {PHONE}
    assert [r.conversation_id for r in index.list_reported(third)] == [conversation(3)]
    assert index.list_reported(OTHER_PHONE) == []
    index.delete(conversation(1))
    assert [r.conversation_id for r in index.list_reported(PHONE)] == [conversation(4)]
    # A newer version that no longer reports another number takes the row out.
    index.save_call(replace(unstarted, reported_phone=None, event_at=T0 + 900), NOW + 1)
    assert index.list_reported(PHONE) == []


def test_call_index_expire_analytics_marks_the_row_for_good(index: CallIndex) -> None:
    index.save_call(placed(CONVERSATION, PHONE, T0, version=V_OLD), NOW)

    assert index.expire_analytics(CONVERSATION, NOW + 10) is True
    assert index.expire_analytics(conversation(99), NOW + 10) is False  # no row: none is created
    assert index.get(conversation(99)) is None
    row = index.get(CONVERSATION)
    assert row is not None and row.analytics_expired_at == NOW + 10
    assert row.summary == "The caller booked a cleaning for Tuesday at 10am."  # the call stays

    assert index.expire_analytics(CONVERSATION, NOW + 20) is True  # again: the first time is kept
    # A newer version of the call (a sync, a webhook retry) does not bring the rows' expiry back.
    assert index.save_call(replace(placed(CONVERSATION, PHONE, T0), version=V_NEW), NOW + 30)
    row = index.get(CONVERSATION)
    assert row is not None and row.version == V_NEW and row.analytics_expired_at == NOW + 10
    assert [r.analytics_expired_at for r in index.list_calls(CallQuery(phone=PHONE)).items] == [NOW + 10]


def test_call_index_a_newer_version_never_replaces_an_expired_memory_status(index: CallIndex) -> None:
    """A delivery read the row before retention marked the memories expired and saves after it: the
    save carrying a memory status is refused (the Archiver reads the row again and saves without one),
    one without a memory status is taken and keeps the mark."""
    index.save_call(placed(CONVERSATION, PHONE, T0), NOW)
    index.set_memory_status(CONVERSATION, "expired", NOW + 5)
    newer = placed(CONVERSATION, PHONE, T0)
    newer.version, newer.memory_status, newer.memory_updated_at = "1.9999999999999.0", "pending", NOW + 6

    assert not index.save_call(newer, NOW + 6)
    newer.memory_status = newer.memory_updated_at = None
    assert index.save_call(newer, NOW + 7)

    row = index.get(CONVERSATION)
    assert row is not None and (row.memory_status, row.memory_updated_at) == ("expired", NOW + 5)
    assert row.version == "1.9999999999999.0"
