"""The Archiver use case against the in-memory fakes: ordering, duplicates, staleness, races, crashes."""

import base64
import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.domain import payload
from services.core.domain.errors import InvalidPayload, StorageUnavailable
from services.core.domain.models import AudioFacts, CallQuery, CallRecord, WebhookEvent
from services.ingest.service import Archiver, IngestResult
from tests.support import (
    AUDIO,
    FIXTURES,
    INITIATION_FAILURE,
    TRANSCRIPTION,
    TRANSCRIPTION_WEB,
    fixture_bytes,
    fixture_json,
)

CONV = "conv_01jzfrjvcce0vsea1fcbpp9p04"
TRANSCRIPT_KEY = f"16125550142/{CONV}.json"
AUDIO_KEY = f"16125550142/{CONV}.mp3"
PENDING_KEY = f"_pending-audio/{CONV}.mp3"
MP3 = (FIXTURES / "hello.mp3").read_bytes()
VOLATILE = ("ingested_at", "updated_at")


@dataclass
class Clock:
    now: float = 1_751_802_100.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@dataclass
class World:
    blobs: MemoryBlobStore = field(default_factory=MemoryBlobStore)
    index: MemoryCallIndex = field(default_factory=MemoryCallIndex)
    clock: Clock = field(default_factory=Clock)

    @property
    def archiver(self) -> Archiver:
        return Archiver(self.blobs, self.index, self.clock)

    def row(self, conversation_id: str = CONV) -> CallRecord:
        row = self.index.get(conversation_id)
        assert row is not None
        return row


def _event(name: str) -> WebhookEvent:
    return payload.parse_envelope(fixture_bytes(name))


def _stable(row: CallRecord | None) -> dict[str, Any]:
    assert row is not None
    values = row.to_dict()
    for name in VOLATILE:
        values.pop(name)
    return values


def _transcript_then_audio() -> World:
    world = World()
    assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"
    assert world.archiver.archive(_event(AUDIO)).outcome == "stored"
    return world


# --- ordering -----------------------------------------------------------------------------------


def test_archiver_transcript_then_audio_places_both_under_the_phone() -> None:
    world = _transcript_then_audio()
    assert set(world.blobs.objects) == {TRANSCRIPT_KEY, AUDIO_KEY}
    assert world.blobs.objects[AUDIO_KEY] == MP3
    assert orjson.loads(world.blobs.objects[TRANSCRIPT_KEY]) == fixture_json(TRANSCRIPTION)["data"]
    row = world.row()
    assert (row.phone, row.archive_prefix) == ("+16125550142", "16125550142")
    assert (row.transcript_key, row.transcript_bytes) == (TRANSCRIPT_KEY, len(world.blobs.objects[TRANSCRIPT_KEY]))
    assert (row.has_audio, row.audio_key, row.audio_bytes) == (True, AUDIO_KEY, len(MP3))


def test_archiver_audio_then_transcript_ends_in_the_same_objects_and_row() -> None:
    reference = _transcript_then_audio()

    world = World()
    first = world.archiver.archive(_event(AUDIO))
    assert first.outcome == "stored"
    assert set(world.blobs.objects) == {PENDING_KEY}  # parked: no phone known yet
    assert world.row().audio_key == PENDING_KEY
    assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"

    assert world.blobs.objects == reference.blobs.objects
    assert PENDING_KEY not in world.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


def test_archiver_audio_alone_is_recorded_as_pending() -> None:
    world = World()
    result = world.archiver.archive(_event(AUDIO))
    assert (result.outcome, result.event_type, result.conversation_id, result.phone) == (
        "stored",
        "post_call_audio",
        CONV,
        None,
    )
    row = world.row()
    assert (row.has_audio, row.audio_key, row.audio_bytes, row.archive_prefix) == (True, PENDING_KEY, len(MP3), None)
    assert row.agent_id == "agent_01jxbrc1trfxev5sdp5xk4ra67"
    assert world.blobs.objects[PENDING_KEY] == MP3


@pytest.mark.parametrize("transcript_first", [False, True], ids=["audio-alone", "transcript-without-agent-first"])
def test_archiver_an_empty_agent_id_on_audio_is_no_agent_id(transcript_first: bool) -> None:
    """`agent_id` keys a DynamoDB index, where an empty string is refused (ValidationException): the audio
    object was written, then every delivery answered 503. Read as the call events read it: "" is none."""
    world = World()
    if transcript_first:
        transcript = fixture_json(TRANSCRIPTION)
        del transcript["data"]["agent_id"]
        assert world.archiver.archive(payload.parse_envelope(orjson.dumps(transcript))).outcome == "stored"
    audio = fixture_json(AUDIO)
    audio["data"]["agent_id"] = ""
    assert world.archiver.archive(payload.parse_envelope(orjson.dumps(audio))).outcome == "stored"
    assert world.row().agent_id is None


def test_archiver_result_carries_the_phone_for_masked_logging() -> None:
    world = World()
    result = world.archiver.archive(_event(TRANSCRIPTION))
    assert (result.phone, result.body()) == (
        "+16125550142",
        {"status": "stored", "type": "post_call_transcription", "conversation_id": CONV},
    )
    assert world.archiver.archive(_event(AUDIO)).phone == "+16125550142"


def test_archiver_web_call_goes_under_unknown() -> None:
    world = World()
    world.archiver.archive(_event(TRANSCRIPTION_WEB))
    conv = "conv_01jzfrjvcce0vsea1fcbpp9p06"
    assert set(world.blobs.objects) == {f"unknown/{conv}.json"}
    assert world.row(conv).archive_prefix == "unknown"


# --- duplicates and staleness -------------------------------------------------------------------


def test_archiver_ten_duplicate_deliveries_make_one_row_and_the_same_objects() -> None:
    reference = _transcript_then_audio()
    world = World()
    for _ in range(10):
        assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"
    for _ in range(10):
        assert world.archiver.archive(_event(AUDIO)).outcome == "stored"
    assert list(world.index.rows) == [CONV]
    assert world.blobs.objects == reference.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


@pytest.mark.parametrize("first", [TRANSCRIPTION, AUDIO])
def test_archiver_a_duplicate_is_stored_unchanged_and_answered_like_the_first(first: str) -> None:
    world = World()
    second = AUDIO if first == TRANSCRIPTION else TRANSCRIPTION
    for name in (first, second):
        assert world.archiver.archive(_event(name)).unchanged is False  # new to the archive
    for name in (first, second):
        again = world.archiver.archive(_event(name))
        assert (again.outcome, again.unchanged) == ("stored", True), name
        assert again.body()["status"] == "stored"  # the webhook's answer to a redelivery stays as it was
    newer = world.archiver.archive(_newer_transcription())
    assert (newer.outcome, newer.unchanged) == ("stored", False)


def test_archiver_interleaved_duplicates_starting_with_audio_converge() -> None:
    reference = _transcript_then_audio()
    world = World()
    for name in [AUDIO, AUDIO, AUDIO, TRANSCRIPTION, AUDIO, TRANSCRIPTION, AUDIO, TRANSCRIPTION]:
        assert world.archiver.archive(_event(name)).outcome == "stored"
    assert list(world.index.rows) == [CONV]
    assert world.blobs.objects == reference.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


def _newer_transcription(seconds: int = 100, summary: str = "A newer analysis.") -> WebhookEvent:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["event_timestamp"] += seconds
    envelope["data"]["analysis"]["transcript_summary"] = summary
    return payload.parse_envelope(orjson.dumps(envelope))


def test_archiver_older_event_after_a_newer_one_is_stale_and_changes_nothing() -> None:
    world = World()
    newer = _newer_transcription()
    assert world.archiver.archive(newer).outcome == "stored"
    row_before = world.row().to_dict()
    objects_before = dict(world.blobs.objects)

    result = world.archiver.archive(_event(TRANSCRIPTION))

    assert result.outcome == "stale"
    assert world.row().to_dict() == row_before  # updated_at included: nothing was written
    assert world.row().summary == "A newer analysis."
    assert world.blobs.objects == objects_before


def test_archiver_newer_event_replaces_the_call_fields() -> None:
    world = World()
    world.archiver.archive(_event(TRANSCRIPTION))
    assert world.archiver.archive(_newer_transcription()).outcome == "stored"
    assert world.row().summary == "A newer analysis."
    assert orjson.loads(world.blobs.objects[TRANSCRIPT_KEY])["analysis"]["transcript_summary"] == "A newer analysis."


def _assert_rows_name_nothing(index: MemoryCallIndex) -> None:
    """Only placement rows (``claim_place``): no row names an object, and none is listed."""
    for row in index.rows.values():
        assert (row.transcript_key, row.audio_key, row.has_audio, row.started_at) == (None, None, None, None)
    assert index.list_calls(CallQuery(limit=100)).items == []


def test_archiver_index_refusal_is_reported_as_stale() -> None:
    # The index's conditional write is the last word (another writer may have won after our read).
    class RefusingIndex(MemoryCallIndex):
        """A newer version's row lands just before ours: our compare-and-swap fails, the re-read shows why."""

        def save_call(self, record: CallRecord, now: int, **expectation: Any) -> bool:
            row = self.rows[record.conversation_id]
            row.version = "9.9999999999999.ffffffffffffffff"  # sorts after any real version
            return False

    world = World(index=RefusingIndex())
    assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stale"
    # The call was placed before its object was written: that row stays, naming nothing of ours.
    assert list(world.index.rows) == [CONV]
    assert world.row().archive_prefix == "16125550142"
    _assert_rows_name_nothing(world.index)


def test_archiver_row_that_keeps_changing_is_a_503_not_a_lost_write() -> None:
    # Every compare-and-swap fails although no newer version holds the row: retry later (503).
    class ChurningIndex(MemoryCallIndex):
        def save_call(self, record: CallRecord, now: int, **expectation: Any) -> bool:
            return False

    world = World(index=ChurningIndex())
    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(TRANSCRIPTION))
    _assert_rows_name_nothing(world.index)


@pytest.mark.parametrize("later", [0, 100], ids=["redelivery", "newer-analysis"])
def test_archiver_transcript_redelivery_never_erases_audio_fields(later: int) -> None:
    world = _transcript_then_audio()
    audio_before = {k: v for k, v in world.row().to_dict().items() if k in ("has_audio", "audio_key", "audio_bytes")}
    event = _newer_transcription(later) if later else _event(TRANSCRIPTION)
    assert world.archiver.archive(event).outcome == "stored"
    row = world.row()
    assert {"has_audio": row.has_audio, "audio_key": row.audio_key, "audio_bytes": row.audio_bytes} == audio_before
    assert audio_before == {"has_audio": True, "audio_key": AUDIO_KEY, "audio_bytes": len(MP3)}
    assert world.blobs.objects[AUDIO_KEY] == MP3


def test_archiver_a_placed_call_never_moves() -> None:
    world = _transcript_then_audio()
    envelope = fixture_json(TRANSCRIPTION)
    envelope["event_timestamp"] += 10
    envelope["data"]["metadata"]["phone_call"]["external_number"] = "+16125550999"
    assert world.archiver.archive(payload.parse_envelope(orjson.dumps(envelope))).outcome == "stored"
    assert set(world.blobs.objects) == {TRANSCRIPT_KEY, AUDIO_KEY}
    assert world.row().archive_prefix == "16125550142"


# --- other event types --------------------------------------------------------------------------


def test_archiver_records_an_initiation_failure() -> None:
    world = World()
    result = world.archiver.archive(_event(INITIATION_FAILURE))
    conv = "conv_01jzfrjvcce0vsea1fcbpp9p07"
    assert (result.outcome, result.conversation_id, result.phone) == ("stored", conv, "+16125550188")
    key = f"16125550188/{conv}.json"
    assert set(world.blobs.objects) == {key}
    assert orjson.loads(world.blobs.objects[key]) == fixture_json(INITIATION_FAILURE)["data"]
    row = world.row(conv)
    assert (row.status, row.failure_reason, row.call_successful, row.transcript_key) == (
        "initiation_failed",
        "no-answer",
        "failure",
        key,
    )
    assert row.has_audio is None


@pytest.mark.parametrize(
    "event_type", ["answering_machine_detection", "unredacted_transcript", "unredacted_audio", "POST_CALL_AUDIO"]
)
def test_archiver_unknown_type_is_ignored_and_writes_nothing(event_type: str) -> None:
    world = World()
    data = copy.deepcopy(fixture_json(AUDIO)["data"])
    result = world.archiver.archive(WebhookEvent(event_type, 1751802037, data))
    assert (result.outcome, result.event_type) == ("ignored", event_type)
    assert world.blobs.objects == {}
    assert world.index.rows == {}


# --- invalid audio ------------------------------------------------------------------------------

BAD_AUDIO: list[tuple[str, object]] = [
    ("empty", ""),
    ("not-base64", "this is not base64!"),
    ("length-not-multiple-of-4", "SUQzA"),
    ("bad-alphabet", "SUQz@@@@"),
    ("urlsafe-alphabet", "SUQz-_-_"),
    ("padding-in-the-middle", "SU==QzAw"),
    ("embedded-newline", "SUQz\nAAAA"),
    ("non-ascii", "SUQzé==="),
    ("number", 12345),
    ("null", None),
    ("list", ["SUQz"]),
    ("bytes-like-object", {"base64": "SUQz"}),
]


@pytest.mark.parametrize("value", [v for _, v in BAD_AUDIO], ids=[i for i, _ in BAD_AUDIO])
@pytest.mark.parametrize("transcript_first", [False, True], ids=["no-transcript", "after-transcript"])
def test_archiver_invalid_audio_is_refused_and_writes_nothing(value: object, transcript_first: bool) -> None:
    world = World()
    if transcript_first:
        world.archiver.archive(_event(TRANSCRIPTION))
    objects_before = dict(world.blobs.objects)
    rows_before = {k: v.to_dict() for k, v in world.index.rows.items()}
    data = {**fixture_json(AUDIO)["data"], "full_audio": value}
    with pytest.raises(InvalidPayload):
        world.archiver.archive(WebhookEvent("post_call_audio", 1751802037, data))
    assert world.blobs.objects == objects_before
    assert {k: v.to_dict() for k, v in world.index.rows.items()} == rows_before


def test_archiver_missing_full_audio_is_refused() -> None:
    world = World()
    data = {k: v for k, v in fixture_json(AUDIO)["data"].items() if k != "full_audio"}
    with pytest.raises(InvalidPayload):
        world.archiver.archive(WebhookEvent("post_call_audio", 1, data))
    assert (world.blobs.objects, world.index.rows) == ({}, {})


@pytest.mark.parametrize("name", [TRANSCRIPTION, AUDIO, INITIATION_FAILURE])
@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a/b", "", None, 7], ids=repr)
def test_archiver_refuses_an_unsafe_conversation_id_before_writing(name: str, bad_id: object) -> None:
    world = World()
    envelope = fixture_json(name)
    envelope["data"]["conversation_id"] = bad_id
    with pytest.raises(InvalidPayload):
        world.archiver.archive(WebhookEvent(envelope["type"], envelope["event_timestamp"], envelope["data"]))
    assert (world.blobs.objects, world.index.rows) == ({}, {})


def test_archiver_decodes_audio_larger_than_one_decoding_chunk() -> None:
    # 3 MiB of audio -> 4 MiB of base64 -> several 1 MiB decoding chunks, reassembled exactly.
    audio = bytes(range(256)) * (3 * 4096)
    data = {"agent_id": "agent_x", "conversation_id": CONV, "full_audio": base64.b64encode(audio).decode()}
    world = World()
    world.archiver.archive(WebhookEvent("post_call_audio", 1, data))
    assert world.blobs.objects[PENDING_KEY] == audio
    assert world.row().audio_bytes == len(audio)


# --- races and crashes --------------------------------------------------------------------------


class TranscriptLandsMidAudio(MemoryCallIndex):
    """Runs the transcript archive inside the audio's conditional write: between its read and its write."""

    def __init__(self, blobs: MemoryBlobStore) -> None:
        super().__init__()
        self.blobs = blobs
        self.fired = False

    def save_audio(
        self, conversation_id: str, agent_id: str | None, audio: AudioFacts, now: int, *, only_if_unplaced: bool
    ) -> bool:
        if only_if_unplaced and not self.fired:
            self.fired = True
            outcome = Archiver(self.blobs, self, Clock()).archive(_event(TRANSCRIPTION)).outcome
            assert outcome == "stored"
        return super().save_audio(conversation_id, agent_id, audio, now, only_if_unplaced=only_if_unplaced)


def _assert_audio_placed_like(reference: World, world: World, result: IngestResult) -> None:
    """The race changed nothing: the same objects and row as transcript-then-audio, nothing parked."""
    assert (result.outcome, result.phone) == ("stored", "+16125550142")
    assert world.blobs.objects == reference.blobs.objects
    assert PENDING_KEY not in world.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


def test_archiver_transcript_landing_between_audio_read_and_write_still_places_the_audio() -> None:
    reference = _transcript_then_audio()
    blobs = MemoryBlobStore()
    index = TranscriptLandsMidAudio(blobs)
    world = World(blobs=blobs, index=index)

    result = world.archiver.archive(_event(AUDIO))

    assert index.fired
    _assert_audio_placed_like(reference, world, result)


class TranscriptLandsBeforePendingWrite(MemoryBlobStore):
    """The transcript runs after the audio read the index but before it parked the audio.

    The transcript then finds nothing to move, and the audio's conditional write fails: only the
    audio's own placing step can put the object where the call lives.
    """

    def __init__(self, index: MemoryCallIndex) -> None:
        super().__init__()
        self.index = index
        self.fired = False

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        if key == PENDING_KEY and not self.fired:
            self.fired = True
            assert Archiver(self, self.index, Clock()).archive(_event(TRANSCRIPTION)).outcome == "stored"
            assert AUDIO_KEY not in self.objects
        return super().put_stream_if(key, chunks, content_type, tag, version=version)


def test_archiver_transcript_landing_before_the_audio_is_parked_still_places_the_audio() -> None:
    reference = _transcript_then_audio()
    index = MemoryCallIndex()
    blobs = TranscriptLandsBeforePendingWrite(index)
    world = World(blobs=blobs, index=index)

    result = world.archiver.archive(_event(AUDIO))

    assert blobs.fired
    _assert_audio_placed_like(reference, world, result)


class SaveAudioFailsOnce(MemoryCallIndex):
    """The index is unreachable once, right after the transcript copied the parked audio into place."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 0

    def save_audio(
        self, conversation_id: str, agent_id: str | None, audio: AudioFacts, now: int, *, only_if_unplaced: bool
    ) -> bool:
        if self.failures_left and not only_if_unplaced:
            self.failures_left -= 1
            raise StorageUnavailable("index unreachable")
        return super().save_audio(conversation_id, agent_id, audio, now, only_if_unplaced=only_if_unplaced)


def test_archiver_crash_after_the_move_is_repaired_by_the_transcript_redelivery() -> None:
    reference = _transcript_then_audio()
    index = SaveAudioFailsOnce()
    world = World(index=index)
    world.archiver.archive(_event(AUDIO))
    index.failures_left = 1

    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(TRANSCRIPTION))
    # The crash window: the audio is copied into place, the parked copy is kept, and the row still
    # names the parked copy, which exists (copy, record, then delete: never a row naming nothing).
    assert index.failures_left == 0
    assert world.blobs.objects[AUDIO_KEY] == world.blobs.objects[PENDING_KEY] == MP3
    assert world.row().audio_key == PENDING_KEY

    assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"  # the sender's retry

    assert world.blobs.objects == reference.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


def test_archiver_crash_after_the_move_is_also_repaired_by_an_audio_redelivery() -> None:
    reference = _transcript_then_audio()
    index = SaveAudioFailsOnce()
    world = World(index=index)
    world.archiver.archive(_event(AUDIO))
    index.failures_left = 1
    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(TRANSCRIPTION))

    assert world.archiver.archive(_event(AUDIO)).outcome == "stored"

    assert world.blobs.objects[AUDIO_KEY] == reference.blobs.objects[AUDIO_KEY]
    assert _stable(world.row()) == _stable(reference.row())  # the row names the audio in place


def test_archiver_audio_redelivery_after_a_crash_removes_the_parked_copy() -> None:
    """The protocol's promise, "a redelivery completes whatever a crash interrupted": after the audio's
    own redelivery nothing is left parked for a placed call (verify reports it as parked_audio_not_placed)."""
    reference = _transcript_then_audio()
    index = SaveAudioFailsOnce()
    world = World(index=index)
    world.archiver.archive(_event(AUDIO))
    index.failures_left = 1
    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(TRANSCRIPTION))

    assert world.archiver.archive(_event(AUDIO)).outcome == "stored"

    assert world.blobs.objects == reference.blobs.objects


class DeleteIfFailsOnce(MemoryBlobStore):
    """The store is unreachable once, when the transcript deletes the parked copy it placed and recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 0

    def delete_if(self, key: str, tag: str) -> bool:
        if self.failures_left and key == PENDING_KEY:
            self.failures_left -= 1
            raise StorageUnavailable("archive unreachable")
        return super().delete_if(key, tag)


def test_archiver_crash_before_the_parked_copy_is_deleted_is_repaired_by_the_transcript_redelivery() -> None:
    reference = _transcript_then_audio()
    blobs = DeleteIfFailsOnce()
    world = World(blobs=blobs)
    world.archiver.archive(_event(AUDIO))
    blobs.failures_left = 1

    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(TRANSCRIPTION))
    # The crash window: the row already names the audio in place; the parked copy is only left over.
    assert blobs.failures_left == 0
    assert world.row().audio_key == AUDIO_KEY
    assert world.blobs.objects[AUDIO_KEY] == world.blobs.objects[PENDING_KEY] == MP3

    assert world.archiver.archive(_event(TRANSCRIPTION)).outcome == "stored"

    assert world.blobs.objects == reference.blobs.objects
    assert _stable(world.row()) == _stable(reference.row())


class DownBlobStore(MemoryBlobStore):
    """Every write fails: the archive is unreachable."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        raise StorageUnavailable("archive unreachable")

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        raise StorageUnavailable("archive unreachable")

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        raise StorageUnavailable("archive unreachable")

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        raise StorageUnavailable("archive unreachable")

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        raise StorageUnavailable("archive unreachable")


@pytest.mark.parametrize("order", [(TRANSCRIPTION, AUDIO), (AUDIO, TRANSCRIPTION)], ids=["transcript", "audio"])
def test_archiver_blob_failure_leaves_no_row_that_names_an_object(order: tuple[str, str]) -> None:
    world = World(blobs=DownBlobStore())
    for name in order:
        with pytest.raises(StorageUnavailable):
            world.archiver.archive(_event(name))
    assert world.blobs.objects == {}
    # A row never names an object that is not durable: at most the call's placement row is left.
    assert set(world.index.rows) <= {CONV}
    _assert_rows_name_nothing(world.index)


def test_archiver_audio_blob_failure_leaves_no_row_at_all() -> None:
    """Audio is parked before any row is written: with the archive down, the index is untouched."""
    world = World(blobs=DownBlobStore())
    with pytest.raises(StorageUnavailable):
        world.archiver.archive(_event(AUDIO))
    assert world.index.rows == {}


def test_archiver_refuses_padding_that_ends_a_chunk_but_not_the_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each 8-character chunk is valid on its own; only the whole text shows the padding mid-stream.
    monkeypatch.setattr("services.ingest.service._B64_CHUNK_CHARS", 8)
    world = World()
    data = {**fixture_json(AUDIO)["data"], "full_audio": "QUJDRA==QUJD"}
    with pytest.raises(InvalidPayload):
        world.archiver.archive(WebhookEvent("post_call_audio", 1751802037, data))
    assert world.blobs.objects == {}
