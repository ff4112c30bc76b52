"""The sync use case against an in-memory Conversations API: what is fetched, what is written, and
what a second run does (nothing). The real HTTP client and stand-in server: tests/integration."""

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex, MemoryTombstones
from services.core.domain import keys, payload, versions
from services.core.domain.models import WebhookEvent
from services.core.erased import ErasedConversations
from services.ingest.service import Archiver
from services.sync.audio import AudioFetcher, AudioFetchWorker
from services.sync.ports import (
    ConversationGone,
    ConversationPage,
    ConversationRefused,
    ConversationSummary,
    UpstreamError,
    UpstreamRejected,
)
from services.sync.service import Syncer
from services.sync.state import MemorySyncState, SyncState
from tests.support import TRANSCRIPTION, fixture_json

BASE = fixture_json(TRANSCRIPTION)["data"]
T0 = 1_751_888_415
NOW = T0 + 86_400


def document(n: int, *, status: str = "done", has_audio: bool = True, outcome: str = "success") -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(BASE)
    doc["conversation_id"] = f"conv_sync_{n:05d}"
    doc["status"] = status
    doc["has_audio"] = has_audio
    doc["metadata"]["start_time_unix_secs"] = T0 + n * 60
    doc["analysis"]["call_successful"] = outcome
    return doc


def audio_of(conversation_id: str) -> bytes:
    return b"ID3" + conversation_id.encode() * 1000


class FakeApi:
    """The three endpoints, in memory, counting requests."""

    def __init__(self, documents: list[dict[str, Any]], *, listed_summary_chars: int | None = None) -> None:
        self.documents = {d["conversation_id"]: d for d in documents}
        self.listed_summary_chars = listed_summary_chars  # a listing that shortens the summary text
        self.requests: dict[str, int] = {"list": 0, "get": 0, "audio": 0}
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def summary(self, doc: dict[str, Any]) -> ConversationSummary:
        return ConversationSummary(
            doc["conversation_id"],
            doc["agent_id"],
            doc["metadata"]["start_time_unix_secs"],
            doc["status"],
            doc["analysis"]["call_successful"],
            doc["metadata"]["call_duration_secs"],
            len(doc["transcript"]),
            doc["analysis"].get("transcript_summary", "")[: self.listed_summary_chars] or None,
            doc["analysis"].get("call_summary_title"),
        )

    def list_conversations(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        agent_id: str | None = None,
        cursor: str | None = None,
        page_size: int = 100,
    ) -> ConversationPage:
        self._count("list")
        rows = sorted(
            (self.summary(d) for d in self.documents.values()),
            key=lambda s: (-s.start_time_unix_secs, s.conversation_id),
        )
        rows = [
            r
            for r in rows
            if (after is None or r.start_time_unix_secs > after)
            and (before is None or r.start_time_unix_secs < before)
            and (agent_id is None or r.agent_id == agent_id)
        ]
        start = int(cursor or 0)
        page = rows[start : start + page_size]
        more = start + page_size < len(rows)
        return ConversationPage(page, str(start + page_size) if more else None, more)

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        self._count("get")
        if conversation_id in self.failing:
            raise UpstreamError("the API kept answering 503")
        if conversation_id not in self.documents:
            raise ConversationGone(f"{conversation_id} is not upstream")
        return orjson.loads(orjson.dumps(self.documents[conversation_id]))  # type: ignore[no-any-return]

    @contextmanager
    def open_audio(self, conversation_id: str) -> Iterator[Iterator[bytes]]:
        self._count("audio")
        if conversation_id not in self.documents:
            raise ConversationGone(f"no audio for {conversation_id}")
        data = audio_of(conversation_id)
        yield iter([data[i : i + 1000] for i in range(0, len(data), 1000)])


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> tuple[MemoryBlobStore, MemoryCallIndex, Archiver, Clock]:
    blobs, index, clock = MemoryBlobStore(), MemoryCallIndex(), Clock(NOW)
    return blobs, index, Archiver(blobs, index, clock), clock


def syncer(api: FakeApi, world: Any, state: SyncState | None = None, **kwargs: Any) -> Syncer:
    _blobs, index, archiver, clock = world
    return Syncer(api, archiver, index, state or MemorySyncState(), clock, **kwargs)


def test_sync_of_an_empty_archive_archives_every_call_with_its_audio_then_fetches_nothing(world: Any) -> None:
    blobs, index, _archiver, _clock = world
    docs = [document(n) for n in range(250)]
    api = FakeApi(docs)

    first = syncer(api, world).run()

    assert (first.listed, first.counts, first.audio_fetched, first.failed) == (250, {"new": 250}, 250, 0)
    assert api.requests == {"list": 3, "get": 250, "audio": 250}  # one page per 100, one GET, one audio each
    for doc in docs:
        row = index.get(doc["conversation_id"])
        assert row is not None and row.transcript_key and row.audio_key
        assert orjson.loads(blobs.get_bytes(row.transcript_key)) == doc  # every field kept
        assert blobs.get_bytes(row.audio_key) == audio_of(doc["conversation_id"])  # byte-identical

    second = syncer(api, world).run(since=0)
    assert second.counts == {"complete": 250} and second.audio_fetched == 0
    assert api.requests == {"list": 6, "get": 250, "audio": 250}  # listing only


def test_a_call_complete_from_webhooks_is_not_fetched(world: Any) -> None:
    _blobs, _index, archiver, _clock = world
    doc = document(1)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    archiver.archive_audio_stream(doc["conversation_id"], None, lambda: [b"ID3 pushed"])
    api = FakeApi([doc])

    summary = syncer(api, world).run()

    assert summary.counts == {"complete": 1}
    assert api.requests == {"list": 1, "get": 0, "audio": 0}


def test_an_erased_conversation_upstream_still_lists_is_never_fetched(world: Any) -> None:
    """Erased here (#13): sync asks the archive before any GET, and a re-run stays a listing only."""
    _blobs, index, archiver, _clock = world
    archiver.erased = ErasedConversations(b"k" * 32, MemoryTombstones())
    erased, kept = document(1), document(2)
    archiver.erased.store.add([archiver.erased.digest(erased["conversation_id"])], NOW)
    api = FakeApi([erased, kept])

    summary = syncer(api, world).run()

    assert summary.counts == {"erased": 1, "new": 1} and summary.to_dict()["erased_here"] == 1
    assert api.requests == {"list": 1, "get": 1, "audio": 1}  # the kept call's, nothing of the erased one
    assert index.get(erased["conversation_id"]) is None
    assert summary.watermark == NOW  # an erased call does not hold the watermark back


def test_a_transcript_without_its_audio_gets_only_the_audio(world: Any) -> None:
    _blobs, index, archiver, _clock = world
    doc = document(1)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = FakeApi([doc])

    summary = syncer(api, world).run()

    assert (summary.counts, summary.audio_fetched) == ({"complete": 1}, 1)
    assert api.requests == {"list": 1, "get": 0, "audio": 1}
    row = index.get(doc["conversation_id"])
    assert row is not None and row.audio_key == keys.audio_key(row.archive_prefix or "", row.conversation_id)


def test_calls_still_processing_wait_for_the_next_run_and_hold_the_watermark_back(world: Any) -> None:
    _blobs, index, _archiver, clock = world
    done, busy = document(1), document(2, status="processing")
    api = FakeApi([done, busy])
    state = MemorySyncState()

    first = syncer(api, world, state, overlap_seconds=600).run()

    assert first.counts == {"new": 1, "processing": 1}
    assert index.get(busy["conversation_id"]) is None
    assert state.get_watermark("all") == busy["metadata"]["start_time_unix_secs"]

    busy["status"] = "done"
    clock.now += 900
    second = syncer(api, world, state, overlap_seconds=600).run()  # from the watermark, minus the overlap

    assert second.after == busy["metadata"]["start_time_unix_secs"] - 600
    assert second.counts == {"new": 1, "complete": 1}  # the finished call; the first is in the overlap
    assert state.get_watermark("all") == int(clock.now)


def test_a_newer_version_upstream_replaces_the_archived_one(world: Any) -> None:
    blobs, index, archiver, _clock = world
    doc = document(1, outcome="unknown")
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    doc["analysis"]["call_successful"] = "success"  # the analysis ran again upstream
    api = FakeApi([doc])

    summary = syncer(api, world).run()

    assert summary.counts == {"updated": 1}
    row = index.get(doc["conversation_id"])
    assert row is not None and row.call_successful == "success"
    assert orjson.loads(blobs.get_bytes(row.transcript_key or "")) == doc
    assert api.requests["get"] == 1


@pytest.mark.parametrize("field", ["transcript_summary", "call_summary_title"])
def test_an_analysis_rerun_upstream_that_changed_only_its_text_is_fetched(world: Any, field: str) -> None:
    blobs, index, archiver, _clock = world
    doc = document(1)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    doc["analysis"][field] = "The caller moved the appointment to Friday."  # same outcome, duration, turns
    api = FakeApi([doc])

    assert syncer(api, world).run().counts == {"updated": 1}
    row = index.get(doc["conversation_id"])
    assert row is not None and orjson.loads(blobs.get_bytes(row.transcript_key or "")) == doc
    assert syncer(api, world).run().counts == {"complete": 1}  # and only once
    assert api.requests["get"] == 1


def test_a_listing_that_shortens_the_summary_fetches_nothing_archived_already(world: Any) -> None:
    _blobs, _index, archiver, _clock = world
    doc = document(1)
    assert len(doc["analysis"]["transcript_summary"]) > 40
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = FakeApi([doc], listed_summary_chars=40)

    assert syncer(api, world).run().counts == {"complete": 1}
    assert api.requests["get"] == 0


def test_a_conversation_gone_upstream_is_reported_and_kept_here(world: Any) -> None:
    _blobs, index, archiver, _clock = world
    doc = document(1, outcome="unknown")
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = FakeApi([document(1)])  # listed with another outcome, then deleted before the GET
    api.documents.pop(doc["conversation_id"])
    api.list_conversations = lambda **_kw: ConversationPage([FakeApi([document(1)]).summary(document(1))], None, False)  # type: ignore[method-assign]

    summary = syncer(api, world).run()

    assert summary.gone == [doc["conversation_id"]] and summary.failed == 0
    assert index.get(doc["conversation_id"]) is not None


def test_failed_fetches_are_reported_and_the_next_run_starts_before_them(world: Any) -> None:
    _blobs, index, _archiver, clock = world
    ok, failing = document(1), document(2)
    api = FakeApi([ok, failing])
    api.failing.add(failing["conversation_id"])
    state = MemorySyncState()

    summary = syncer(api, world, state, overlap_seconds=0).run()

    assert summary.failures == [(failing["conversation_id"], "the API kept answering 503")]
    assert state.get_watermark("all") == failing["metadata"]["start_time_unix_secs"]
    api.failing.clear()
    clock.now += 60
    again = syncer(api, world, state, overlap_seconds=0).run()
    assert again.failed == 0 and index.get(failing["conversation_id"]) is not None


def test_a_rejected_key_stops_the_run_with_its_message(world: Any) -> None:
    api = FakeApi([document(1)])

    def rejected(_conversation_id: str) -> dict[str, Any]:
        raise UpstreamRejected("ElevenLabs refused the API key: check ELEVENLABS_API_KEY")

    api.get_conversation = rejected  # type: ignore[method-assign,assignment]
    with pytest.raises(UpstreamRejected, match="ELEVENLABS_API_KEY"):
        syncer(api, world).run()


def test_dry_run_reports_the_gap_and_writes_nothing(world: Any) -> None:
    blobs, index, archiver, _clock = world
    missing, outdated, no_audio = document(1), document(2, outcome="unknown"), document(3)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(outdated)))
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(no_audio)))
    outdated["analysis"]["call_successful"] = "success"
    api = FakeApi([missing, outdated, no_audio])
    state = MemorySyncState()
    before = dict(blobs.objects)

    summary = syncer(api, world, state).run(dry_run=True)

    assert summary.missing == [missing["conversation_id"]]
    assert summary.outdated == [outdated["conversation_id"]]
    assert summary.audio_missing == [no_audio["conversation_id"]]
    assert blobs.objects == before and index.get(missing["conversation_id"]) is None
    assert api.requests == {"list": 1, "get": 0, "audio": 0}
    assert state.get_watermark("all") is None


def test_the_webhook_and_the_sync_agree_on_the_newest_version_whichever_writes_last(world: Any) -> None:
    """The sync's document counts as seen when it was fetched (less a margin for clock skew): a webhook
    sent later wins, an older one (a retry of a delivery from before the sync) does not undo the sync's
    newer content."""
    blobs, index, archiver, clock = world
    doc = document(1, outcome="unknown")
    newer = copy.deepcopy(doc)
    newer["analysis"]["call_successful"] = "success"
    api = FakeApi([newer])

    syncer(api, world).run()  # observed at NOW
    late_retry = archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    row = index.get(doc["conversation_id"])
    assert late_retry.outcome == "stale" and row is not None and row.call_successful == "success"

    final = copy.deepcopy(doc)
    final["analysis"]["call_successful"] = "failure"
    assert archiver.archive(WebhookEvent("post_call_transcription", NOW + 5, final)).outcome == "stored"
    row = index.get(doc["conversation_id"])
    assert row is not None and row.call_successful == "failure"
    assert orjson.loads(blobs.get_bytes(row.transcript_key or ""))["analysis"]["call_successful"] == "failure"
    clock.now += 60
    assert syncer(FakeApi([final]), world).run().counts == {"complete": 1}  # agrees: nothing to fetch


def test_sync_and_webhooks_racing_leave_one_row_at_the_newest_version(world: Any) -> None:
    blobs, index, archiver, _clock = world
    docs = [document(n) for n in range(40)]
    api = FakeApi(docs)
    pushed = [copy.deepcopy(d) for d in docs]
    for d in pushed:
        d["analysis"]["call_successful"] = "failure"  # the webhook's content, sent after the fetch

    def deliver() -> None:
        for d in pushed:
            archiver.archive(WebhookEvent("post_call_transcription", NOW + 10, d))

    thread = threading.Thread(target=deliver)
    thread.start()
    syncer(api, world, concurrency=4).run()
    thread.join()

    for d in pushed:
        row = index.get(d["conversation_id"])
        assert row is not None and row.call_successful == "failure"
        stored = blobs.get_bytes(row.transcript_key or "")
        assert row.version == versions.call_version("post_call_transcription", NOW + 10, stored)
        assert orjson.loads(stored) == d


def test_archive_conversation_of_content_the_row_holds_writes_nothing(world: Any) -> None:
    blobs, _index, archiver, _clock = world
    doc = document(1)
    archiver.archive(
        payload.as_transcription_event({"type": "post_call_transcription", "event_timestamp": T0, "data": doc})
    )
    before = dict(blobs.objects)

    assert archiver.archive_conversation(copy.deepcopy(doc), NOW) == "unchanged"
    assert blobs.objects == before


def test_the_audio_worker_fetches_audio_the_webhook_never_brought_after_the_grace(world: Any) -> None:
    blobs, index, archiver, clock = world
    doc = document(1)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = FakeApi([doc])
    worker = AudioFetchWorker(AudioFetcher(api, archiver, index), index, grace_seconds=300, clock=clock)

    assert worker.run_once() == {}  # within the grace: the webhook may still come
    clock.now += 301
    assert worker.run_once() == {"fetched": 1}
    row = index.get(doc["conversation_id"])
    assert row is not None and blobs.get_bytes(row.audio_key or "") == audio_of(doc["conversation_id"])
    clock.now += 301
    assert worker.run_once() == {} and api.requests["audio"] == 1


def test_the_audio_worker_backs_off_a_failing_fetch_and_stops_at_a_404(world: Any) -> None:
    _blobs, index, archiver, clock = world
    gone, flaky = document(1), document(2)
    for doc in (gone, flaky):
        archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = FakeApi([flaky])
    calls = {"n": 0}
    real_open = api.open_audio

    @contextmanager
    def flaky_open(conversation_id: str) -> Iterator[Iterator[bytes]]:
        if conversation_id == flaky["conversation_id"]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise UpstreamError("the API answered 503")
        with real_open(conversation_id) as chunks:
            yield chunks

    api.open_audio = flaky_open  # type: ignore[method-assign]
    worker = AudioFetchWorker(AudioFetcher(api, archiver, index), index, grace_seconds=0, clock=clock)
    clock.now += 1

    assert worker.run_once() == {"gone": 1, "failed": 1}
    assert worker.run_once() == {}  # both waiting: one backs off, one is gone
    clock.now += 61
    assert worker.run_once() == {"fetched": 1}
    gone_row = index.get(gone["conversation_id"])
    assert gone_row is not None and gone_row.audio_key is None


def test_the_audio_worker_reaches_due_calls_behind_a_hundred_that_wait(world: Any) -> None:
    """Calls whose audio is gone upstream keep their rows (and their place first in line, since no write
    touches them): a due call behind more of them than one pass reads must still be fetched."""
    _blobs, index, archiver, clock = world
    gone = [document(n) for n in range(1, 121)]
    for doc in gone:
        archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    clock.now += 10
    late = document(500)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(late)))
    api = FakeApi([late])  # the others' audio answers 404
    worker = AudioFetchWorker(AudioFetcher(api, archiver, index), index, grace_seconds=0, clock=clock)
    clock.now += 1

    passes = [worker.run_once() for _ in range(3)]

    assert passes == [{"gone": 100}, {"gone": 20, "fetched": 1}, {}]
    row = index.get(late["conversation_id"])
    assert row is not None and row.audio_key is not None
    assert api.requests["audio"] == 121  # each gone call asked once


class LoopingApi(FakeApi):
    """A hostile or broken upstream: its cursor leads back to a page already listed, or it says
    ``has_more`` on empty pages with a fresh cursor each time."""

    def __init__(self, documents: list[dict[str, Any]], *, empty_pages: bool) -> None:
        super().__init__(documents)
        self.empty_pages = empty_pages

    def list_conversations(self, **kwargs: Any) -> ConversationPage:
        page = super().list_conversations(**kwargs)
        if self.requests["list"] > 1000:
            raise AssertionError("sync kept listing a looping upstream")
        if self.empty_pages and kwargs.get("cursor"):
            return ConversationPage([], f"empty-{self.requests['list']}", True)
        if not page.has_more:
            return ConversationPage(page.conversations, "0", True)  # back to the first page, forever
        return page


@pytest.mark.parametrize("empty_pages", [False, True], ids=["cursor-loops", "empty-pages-with-more"])
def test_a_looping_list_stops_the_run_without_moving_the_watermark(world: Any, empty_pages: bool) -> None:
    api = LoopingApi([document(n) for n in range(150)], empty_pages=empty_pages)
    state = MemorySyncState()

    with pytest.raises(UpstreamError, match=r"cursor it had returned before|empty page"):
        syncer(api, world, state).run()

    assert api.requests["list"] <= 3
    assert state.get_watermark("all") is None  # the next run lists the window again


@pytest.mark.parametrize("start", [-(10**30), -5, 10**30])
def test_a_listed_start_time_out_of_range_never_becomes_the_watermark(world: Any, tmp_path: Any, start: int) -> None:
    """A hostile row (still processing, started at an absurd time) holds the watermark back at most to
    the beginning; it must not crash the run or store a watermark no store can hold."""
    from services.sync.state import SqliteSyncState

    api = FakeApi([document(1)])
    row = api.summary(document(2, status="processing"))
    real_list = api.list_conversations

    def listing(**kwargs: Any) -> ConversationPage:
        page = real_list(**kwargs)
        odd = ConversationSummary(row.conversation_id, row.agent_id, start, "processing")
        return ConversationPage([*page.conversations, odd], page.next_cursor, page.has_more)

    api.list_conversations = listing  # type: ignore[method-assign]
    state = SqliteSyncState(tmp_path / "sync.sqlite3")

    summary = syncer(api, world, state).run()

    assert summary.counts == {"new": 1, "processing": 1}
    watermark = state.get_watermark("all")
    assert watermark is not None and 0 <= watermark <= NOW


def test_a_call_the_archive_refuses_for_good_is_reported_but_does_not_hold_the_watermark(world: Any) -> None:
    """Retrying cannot help a document no store can hold (a start outside 2000-2099): holding the
    watermark at it would make every later run list all calls since then, for ever."""
    ok, refused = document(1), document(2)
    refused["metadata"]["start_time_unix_secs"] = 4_200_000_000  # 2103
    api = FakeApi([ok, refused])
    listed = api.summary(refused)
    api.summary = lambda doc: (  # type: ignore[method-assign]
        listed if doc["conversation_id"] == refused["conversation_id"] else FakeApi.summary(api, doc)
    )
    object.__setattr__(listed, "start_time_unix_secs", T0 + 120)  # listed inside the window
    state = MemorySyncState()

    summary = syncer(api, world, state, overlap_seconds=0).run()

    assert [cid for cid, _reason in summary.failures] == [refused["conversation_id"]]
    assert "2000" in summary.failures[0][1]
    assert state.get_watermark("all") == NOW  # the next run starts after it


def test_one_conversation_upstream_refuses_fails_alone_and_does_not_hold_the_watermark(world: Any) -> None:
    """A 422 (or 400, 410) for one conversation is that call's failure: the run syncs the others, says
    why it failed, and a later run is not held at it for ever."""
    ok, refused, later = document(1), document(2), document(3)
    api = FakeApi([ok, refused, later])
    real_get = api.get_conversation

    def get(conversation_id: str) -> dict[str, Any]:
        if conversation_id == refused["conversation_id"]:
            raise ConversationRefused("ElevenLabs rejected GET .../conv_sync_00002 (HTTP 422: invalid)")
        return real_get(conversation_id)

    api.get_conversation = get  # type: ignore[method-assign]
    state = MemorySyncState()

    summary = syncer(api, world, state, overlap_seconds=0).run()

    assert summary.counts.get("new") == 2
    assert [cid for cid, _reason in summary.failures] == [refused["conversation_id"]]
    assert "HTTP 422" in summary.failures[0][1]
    assert state.get_watermark("all") == NOW


def test_an_unexpected_error_for_one_conversation_fails_that_call_not_the_run(world: Any) -> None:
    ok, broken = document(1), document(2)
    api = FakeApi([ok, broken])
    real_get = api.get_conversation

    def get(conversation_id: str) -> dict[str, Any]:
        if conversation_id == broken["conversation_id"]:
            raise RuntimeError("a library's surprise")
        return real_get(conversation_id)

    api.get_conversation = get  # type: ignore[method-assign]
    state = MemorySyncState()

    summary = syncer(api, world, state, overlap_seconds=0).run()

    assert summary.counts.get("new") == 1
    assert summary.failures == [(broken["conversation_id"], "unexpected error (RuntimeError)")]
    assert state.get_watermark("all") == broken["metadata"]["start_time_unix_secs"]  # retried next run


def test_a_since_window_after_the_watermark_does_not_move_it_past_the_calls_it_skipped(world: Any) -> None:
    _blobs, index, _archiver, clock = world
    early, late = document(1), document(100)  # T0 + 60 and T0 + 6000
    api = FakeApi([early, late])
    state = MemorySyncState()
    state.set_watermark("all", T0, int(T0))

    syncer(api, world, state, overlap_seconds=0).run(since=T0 + 3000)  # only the late call

    assert index.get(late["conversation_id"]) is not None and index.get(early["conversation_id"]) is None
    assert state.get_watermark("all") == T0  # not moved: the early call was never looked at
    clock.now += 60
    syncer(api, world, state, overlap_seconds=0).run()  # the next scheduled run finds it
    assert index.get(early["conversation_id"]) is not None
    assert state.get_watermark("all") == NOW + 60


def test_a_first_run_with_since_sets_no_watermark_and_one_covering_the_watermark_moves_it(world: Any) -> None:
    api = FakeApi([document(1), document(2)])
    state = MemorySyncState()

    syncer(api, world, state, overlap_seconds=0).run(since=T0 + 100)
    assert state.get_watermark("all") is None  # the next run starts from the beginning

    state.set_watermark("all", T0 + 500, int(T0))
    syncer(api, world, state, overlap_seconds=0).run(since=T0)  # from before the watermark: covers it
    assert state.get_watermark("all") == NOW


class StalePagesApi(FakeApi):
    """After the last page, says more follow with a fresh cursor each time, and sends a page already
    listed again: every cursor is new, every page holds calls, and none of them is."""

    def list_conversations(self, **kwargs: Any) -> ConversationPage:
        if str(kwargs.get("cursor")).startswith("again-"):
            kwargs["cursor"] = "100"
        page = super().list_conversations(**kwargs)
        if self.requests["list"] > 1000:
            raise AssertionError("sync kept listing an upstream that repeats its last page")
        if not page.has_more:
            return ConversationPage(page.conversations, f"again-{self.requests['list']}", True)
        return page


def test_pages_of_nothing_but_calls_already_listed_stop_the_run_without_moving_the_watermark(world: Any) -> None:
    api = StalePagesApi([document(n) for n in range(150)])
    state = MemorySyncState()

    with pytest.raises(UpstreamError, match="nothing it had not listed"):
        syncer(api, world, state).run()

    assert api.requests["list"] <= 10
    assert state.get_watermark("all") is None  # the next run lists the window again


class CursorlessApi(FakeApi):
    """Says more pages follow, and gives no cursor to fetch them with."""

    def list_conversations(self, **kwargs: Any) -> ConversationPage:
        page = super().list_conversations(**kwargs)
        return ConversationPage(page.conversations, None, page.has_more)


def test_a_page_that_says_more_follow_without_a_cursor_stops_the_run_and_keeps_the_watermark(world: Any) -> None:
    api = CursorlessApi([document(n) for n in range(150)])
    state = MemorySyncState()

    with pytest.raises(UpstreamError, match="no cursor"):
        syncer(api, world, state).run()

    assert state.get_watermark("all") is None  # the 50 calls on the page never fetched are listed next run


class RepeatingApi(FakeApi):
    """Lists every conversation twice: on its page and again on the next."""

    def list_conversations(self, **kwargs: Any) -> ConversationPage:
        page = super().list_conversations(**kwargs)
        return ConversationPage(page.conversations + page.conversations, page.next_cursor, page.has_more)


def test_a_conversation_listed_twice_is_fetched_once(world: Any) -> None:
    api = RepeatingApi([document(n) for n in range(20)])

    summary = syncer(api, world, concurrency=4).run()

    assert summary.listed == 20 and summary.counts == {"new": 20}
    assert api.requests["get"] == 20 and api.requests["audio"] == 20


def test_the_audio_worker_backs_off_a_call_whose_fetch_raises_anything_and_reaches_the_next(world: Any) -> None:
    _blobs, index, archiver, clock = world
    first, second = document(1), document(2)
    for doc in (first, second):  # transcripts that promise audio, none arrived
        archiver.archive(WebhookEvent("post_call_transcription", T0 + 600, doc))
    api = FakeApi([first, second])
    real_open = api.open_audio

    @contextmanager
    def open_audio(conversation_id: str) -> Iterator[Iterator[bytes]]:
        if conversation_id == first["conversation_id"]:
            raise RuntimeError("a body that does not decode")
        with real_open(conversation_id) as chunks:
            yield chunks

    api.open_audio = open_audio  # type: ignore[method-assign]
    worker = AudioFetchWorker(AudioFetcher(api, archiver, index), index, grace_seconds=0, clock=clock)
    clock.now += 1

    counts = worker.run_once()

    assert counts == {"failed": 1, "fetched": 1}
    row = index.get(second["conversation_id"])
    assert row is not None and row.audio_key is not None


def test_a_webhook_sent_after_the_sync_wins_even_when_this_clock_runs_ahead(world: Any) -> None:
    """Our clock is 4 minutes fast: ElevenLabs' timestamp of a webhook sent a minute after the sync's
    fetch is still earlier than our reading of that fetch. The newer webhook must not be refused."""
    _blobs, index, archiver, clock = world
    doc = document(1, outcome="unknown")
    syncer(FakeApi([doc]), world).run()  # fetched at NOW by our (fast) clock
    rerun = copy.deepcopy(doc)
    rerun["analysis"]["call_successful"] = "success"  # the analysis, re-run upstream a minute later

    outcome = archiver.archive(WebhookEvent("post_call_transcription", int(NOW) - 240 + 60, rerun)).outcome

    row = index.get(doc["conversation_id"])
    assert outcome == "stored" and row is not None and row.call_successful == "success"
    clock.now += 600
    assert syncer(FakeApi([rerun]), world).run().counts == {"complete": 1}


def test_an_interrupted_sync_starts_nothing_more_than_what_is_in_flight(world: Any) -> None:
    api = FakeApi([document(n) for n in range(200)])
    state = MemorySyncState()
    seen: list[str] = []

    def interrupt(result: Any) -> None:
        seen.append(result.conversation_id)
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C, as the progress bar's callback meets it

    with pytest.raises(KeyboardInterrupt):
        syncer(api, world, state, concurrency=4).run(on_done=interrupt)

    assert api.requests["get"] <= 2 + 2 * 4  # those done, those in flight and a few handed over meanwhile
    assert state.get_watermark("all") is None


def test_the_failures_logged_say_why_and_stay_bounded(world: Any) -> None:
    api = FakeApi([document(n) for n in range(5)])
    api.failing.update(d for d in api.documents)
    summary = syncer(api, world).run()

    logged = summary.failures_to_log(limit=3)

    assert len(logged) == 3
    assert all(entry["reason"] == "the API kept answering 503" for entry in logged)
    long = type(summary)(None, None)
    long.failures.append(("conv_x", "x" * 10_000))
    assert len(long.failures_to_log()[0]["reason"]) == 300


class AudioGoneApi(FakeApi):
    """The transcript says the call has audio; the audio endpoint answers 404."""

    @contextmanager
    def open_audio(self, conversation_id: str) -> Iterator[Iterator[bytes]]:
        self._count("audio")
        raise ConversationGone(f"no audio for {conversation_id}")
        yield iter([])


def test_audio_upstream_no_longer_has_is_reported_not_counted_as_complete(world: Any) -> None:
    """`callvault verify` says audio_missing and to run sync: sync must say why it brought none."""
    _blobs, index, archiver, _clock = world
    doc = document(1)
    archiver.archive(WebhookEvent("post_call_transcription", T0 + 200, copy.deepcopy(doc)))
    api = AudioGoneApi([doc])

    summary = syncer(api, world).run()

    assert summary.to_dict()["audio_gone_upstream"] == [doc["conversation_id"]]
    assert summary.audio_fetched == 0 and summary.failed == 0
    assert summary.watermark == NOW  # nothing a later run can fetch: it does not hold the watermark back
    row = index.get(doc["conversation_id"])
    assert row is not None and row.audio_key is None
