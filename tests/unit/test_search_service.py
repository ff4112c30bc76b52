"""The use cases ``search_calls`` and ``get_call`` over the in-memory index and SQLite."""

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.adapters.memory import MemoryCallIndex
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.domain.errors import InvalidCursor, InvalidRequest, NotFound
from services.core.domain.models import AudioFacts, CallRecord
from services.core.ports import CallIndex
from services.search.cursor import CursorCodec
from services.search.links import SignedLink
from services.search.params import CallFilters, parse_filters
from services.search.service import get_call, search_calls

PHONE = "+16125550142"
OTHER_PHONE = "+16125550177"
T0 = 1_751_800_000


@pytest.fixture(params=["memory", "sqlite"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CallIndex]:
    if request.param == "memory":
        yield MemoryCallIndex()
    else:
        sqlite = SqliteCallIndex(tmp_path / "index.sqlite3")
        yield sqlite
        sqlite.close()


def add(index: CallIndex, n: int, started_at: int, phone: str = PHONE, **fields: object) -> str:
    conversation_id = f"conv_{n:06d}"
    record = CallRecord(
        conversation_id,
        phone=phone,
        archive_prefix=phone.removeprefix("+"),
        agent_id=str(fields.get("agent_id", "agent_a")),
        started_at=started_at,
        status=str(fields.get("status", "done")),
        call_successful=str(fields.get("call_successful", "success")),
        transcript_key=f"{phone.removeprefix('+')}/{conversation_id}.json",
        transcript_bytes=100 + n,
        event_at=started_at + 10,
    )
    index.save_call(record, started_at + 11)
    return conversation_id


def walk(index: CallIndex, filters: CallFilters, limit: int, between_pages: object = None) -> list[str]:
    codec = CursorCodec(b"c" * 32)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = search_calls(filters, limit=limit, cursor=cursor, index=index, cursors=codec)
        assert len(page.items) <= limit
        seen += [r.conversation_id for r in page.items]
        pages += 1
        if page.next_cursor is None:
            return seen
        if callable(between_pages):
            between_pages(pages)
        cursor = page.next_cursor


def test_search_calls_pages_through_everything_newest_first_with_ties(index: CallIndex) -> None:
    # Several calls share a second: the walk must order and split them without loss.
    ids = [add(index, n, T0 + n // 3) for n in range(40)]
    seen = walk(index, CallFilters(phone=PHONE), limit=7)
    assert seen == sorted(ids, key=lambda i: (T0 + int(i[5:]) // 3, i), reverse=True)


def test_search_calls_walk_has_no_duplicates_and_no_gaps_while_calls_arrive(index: CallIndex) -> None:
    rng = random.Random(7)
    times = rng.sample(range(T0, T0 + 10_000), 60)
    initial = {add(index, n, t) for n, t in enumerate(times)}
    inserted_older: set[str] = set()
    counter = iter(range(1000, 2000))
    oldest = min(times)

    def insert(pages: int) -> None:
        # A newer call (lands before the cursor: not in this walk) and an older one (ahead: must appear).
        add(index, next(counter), T0 + 20_000 + pages)
        inserted_older.add(add(index, next(counter), oldest - pages))
        add(index, next(counter), T0 + 5, phone=OTHER_PHONE)  # another phone: never in this walk

    seen = walk(index, CallFilters(phone=PHONE), limit=9, between_pages=insert)
    assert len(seen) == len(set(seen)), "a call appeared twice"
    assert initial <= set(seen), "a call that existed before the walk was skipped"
    assert set(seen) - initial == inserted_older
    started = {r.conversation_id: r.started_at or 0 for r in (index.get(i) for i in seen) if r}
    assert [started[i] for i in seen] == sorted((started[i] for i in seen), reverse=True)


def test_search_calls_applies_every_filter(index: CallIndex) -> None:
    add(index, 1, T0 + 1)
    add(index, 2, T0 + 2, agent_id="agent_b")
    add(index, 3, T0 + 3, status="failed", call_successful="failure")
    add(index, 4, T0 + 4, phone=OTHER_PHONE)
    add(index, 5, T0 + 100)

    def ids(filters: CallFilters) -> list[str]:
        return [r.conversation_id for r in walk_page(index, filters)]

    assert ids(CallFilters()) == ["conv_000005", "conv_000004", "conv_000003", "conv_000002", "conv_000001"]
    assert ids(CallFilters(phone=OTHER_PHONE)) == ["conv_000004"]
    assert ids(CallFilters(agent_id="agent_b")) == ["conv_000002"]
    assert ids(CallFilters(phone=PHONE, agent_id="agent_b")) == ["conv_000002"]
    assert ids(CallFilters(status="failed")) == ["conv_000003"]
    assert ids(CallFilters(call_successful="failure")) == ["conv_000003"]
    assert ids(CallFilters(since=T0 + 2, until=T0 + 4)) == ["conv_000003", "conv_000002"]  # [since, until)
    assert ids(CallFilters(phone=PHONE, since=T0 + 50)) == ["conv_000005"]


def walk_page(index: CallIndex, filters: CallFilters) -> list[CallRecord]:
    return search_calls(filters, limit=100, cursor=None, index=index, cursors=CursorCodec(b"c" * 32)).items


def test_search_calls_last_page_has_no_cursor(index: CallIndex) -> None:
    for n in range(5):
        add(index, n, T0 + n)
    codec = CursorCodec(b"c" * 32)
    exact = search_calls(CallFilters(), limit=5, cursor=None, index=index, cursors=codec)
    assert len(exact.items) == 5 and exact.next_cursor is None
    empty = search_calls(CallFilters(phone=OTHER_PHONE), limit=5, cursor=None, index=index, cursors=codec)
    assert empty.items == [] and empty.next_cursor is None


def test_search_calls_cursor_for_other_filters_is_refused(index: CallIndex) -> None:
    for n in range(5):
        add(index, n, T0 + n)
    codec = CursorCodec(b"c" * 32)
    first = search_calls(CallFilters(phone=PHONE), limit=2, cursor=None, index=index, cursors=codec)
    assert first.next_cursor
    with pytest.raises(InvalidCursor):
        search_calls(CallFilters(phone=OTHER_PHONE), limit=2, cursor=first.next_cursor, index=index, cursors=codec)
    # A different page size keeps the place.
    rest = search_calls(CallFilters(phone=PHONE), limit=10, cursor=first.next_cursor, index=index, cursors=codec)
    assert [r.conversation_id for r in rest.items] == ["conv_000002", "conv_000001", "conv_000000"]


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_search_calls_limit_out_of_range_is_invalid(limit: int) -> None:
    with pytest.raises(InvalidRequest, match="limit must be between 1 and 100"):
        search_calls(CallFilters(), limit=limit, cursor=None, index=MemoryCallIndex(), cursors=CursorCodec(b"c" * 32))


class RecordingSigner:
    def __init__(self) -> None:
        self.signed: list[tuple[str, int, str]] = []

    def sign(self, key: str, expires_in: int, filename: str) -> SignedLink:
        self.signed.append((key, expires_in, filename))
        return SignedLink(f"https://signed.example/{key}", 1_000 + expires_in)


def test_get_call_links_transcript_and_audio(index: CallIndex) -> None:
    conversation_id = add(index, 1, T0)
    index.save_audio(
        conversation_id, None, AudioFacts(f"16125550142/{conversation_id}.mp3", 4321), T0, only_if_unplaced=False
    )
    signer = RecordingSigner()

    details = get_call(conversation_id, index=index, links=signer, expires_in=900)

    assert details.record.phone == PHONE
    assert signer.signed == [
        (f"16125550142/{conversation_id}.json", 900, f"{conversation_id}.json"),
        (f"16125550142/{conversation_id}.mp3", 900, f"{conversation_id}.mp3"),
    ]
    assert details.transcript is not None and details.transcript.bytes == 101
    assert details.transcript.expires_at == 1_900
    assert details.audio is not None and details.audio.bytes == 4321


def test_get_call_without_audio_has_no_audio_link(index: CallIndex) -> None:
    conversation_id = add(index, 1, T0)
    details = get_call(conversation_id, index=index, links=RecordingSigner(), expires_in=60)
    assert details.transcript is not None and details.audio is None


def test_get_call_audio_before_its_transcript_has_only_an_audio_link(index: CallIndex) -> None:
    index.save_audio(
        "conv_early", "agent_a", AudioFacts("_pending-audio/conv_early.mp3", 10), T0, only_if_unplaced=True
    )
    details = get_call("conv_early", index=index, links=RecordingSigner(), expires_in=60)
    assert details.transcript is None
    assert details.audio is not None and details.audio.url.endswith("_pending-audio/conv_early.mp3")


def test_get_call_unknown_id_is_not_found(index: CallIndex) -> None:
    with pytest.raises(NotFound):
        get_call("conv_missing", index=index, links=RecordingSigner(), expires_in=60)


@pytest.mark.parametrize("bad", ["", "conv/../x", "a b", "x" * 129, "conv_é"])
def test_get_call_malformed_id_is_invalid_request(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="conversation_id must be"):
        get_call(bad, index=MemoryCallIndex(), links=RecordingSigner(), expires_in=60)


def test_search_calls_with_a_fractional_window_lists_the_calls_inside_it(index: CallIndex) -> None:
    """A call starts on a whole second; ``since``/``until`` with a fraction must keep their meaning
    (started at or after since, before until): cutting the fraction off took in a call that started
    half a second before ``since`` and left out one that started half a second before ``until``."""
    before, inside, last = add(index, 1, T0), add(index, 2, T0 + 1), add(index, 3, T0 + 2)
    codec = CursorCodec(b"c" * 32)

    for since, until, expected in [
        ("1751800000.5", "1751800002.5", [last, inside]),
        ("2025-07-06T11:06:40.500Z", "2025-07-06T11:06:42.500Z", [last, inside]),
        ("1751800000", "1751800002", [inside, before]),
    ]:
        filters = parse_filters(since=since, until=until)
        page = search_calls(filters, limit=10, cursor=None, index=index, cursors=codec)
        assert [r.conversation_id for r in page.items] == expected, (since, until)
