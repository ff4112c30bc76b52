"""Use cases of the ingest service: receive a signed webhook, archive an event.

Order of writes, for every event: the archive object before the index row that names it, so a row
never points at an object that is not durable; every write is conditional on the event's version,
so a failure anywhere before the 200 lets the sender retry the whole event. See ``Archiver``.
"""

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from services.analytics.writer import AnalyticsWriter
from services.core.domain import coerce, keys, payload, signing, versions
from services.core.domain.errors import InvalidPayload, PayloadTooLarge, StorageUnavailable
from services.core.domain.models import MEMORY_EXPIRED, AudioFacts, CallRecord, WebhookEvent
from services.core.erased import ErasedConversations
from services.core.newest import write_newest
from services.core.ports import BlobStore, CallIndex

log = logging.getLogger(__name__)

Outcome = Literal["stored", "ignored", "stale", "erased"]
JSON_TYPE = "application/json"
AUDIO_TYPE = "audio/mpeg"
_B64_CHUNK_CHARS = 1 << 20  # decode audio 1 MiB of text at a time: no full second copy in memory
_PLACE_ATTEMPTS = 5  # copies of parked audio racing a newer audio event (each retry re-reads both)
_SAVE_ATTEMPTS = 10  # row writes racing other events of the same call (each retry re-reads the row)


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    event_type: str
    conversation_id: str | None = None
    phone: str | None = None  # E.164, for callers that log it masked
    # "stored", and the archive and the row already held exactly this version before (a redelivery, a
    # file imported again): nothing new. Known from the reads the write protocol makes anyway. The
    # webhook answers it as "stored" (a duplicate delivery is acknowledged like the first); `callvault
    # import` reports it as "unchanged". The run still completes whatever an earlier one left undone.
    unchanged: bool = False

    def body(self) -> dict[str, Any]:
        return {"status": self.outcome, "type": self.event_type, "conversation_id": self.conversation_id}


class MemoryJobSubmitter(Protocol):
    """services.memory.jobs.MemoryJobs: records the job durably (outbox row / SQS message), never Mem0."""

    def status_for(self, event: WebhookEvent, record: CallRecord) -> str | None:
        """The memory status the call's row should carry once this event is archived."""
        ...

    def submit(self, event: WebhookEvent, record: CallRecord) -> None: ...


class AudioFetchScheduler(Protocol):
    """services.sync: fetch a call's audio from the ElevenLabs API unless it arrives within the grace
    period (an SQS message with a delay on AWS). Never raises: the scheduled sync is the backstop."""

    def schedule(self, conversation_id: str) -> None: ...


@dataclass
class Archiver:
    """Writes events into the archive, the index and the analytics tables, in the one write protocol.

    Shared by the webhook, `callvault import` and tests. The protocol (docs/decisions.md, "write
    protocol"), for a transcript or an initiation failure:
      1. place: the first event of a call claims its folder in the index (``claim_place``); every
         later event uses that folder, so a call never splits between phone folders;
      2. the archive object, written only if it is not newer than ours (``write_newest``);
      3. the index row, on the same version condition;
      4. parked audio copied into place, recorded, then the parked copy deleted;
      5. the analytics objects, on the same version condition; then the memory job.
    Each step is idempotent and conditional on the version, so every store keeps the newest version
    whatever the interleaving, a redelivery completes whatever a crash interrupted, and a row only
    ever names objects that exist. ``callvault verify`` checks exactly these promises.
    """

    blobs: BlobStore
    index: CallIndex
    clock: Callable[[], float]
    default_region: str = "US"
    analytics: AnalyticsWriter | None = None  # the compact report tables, written before the 200
    memory_jobs: MemoryJobSubmitter | None = None  # records a caller-memory job; never raises
    # AWS: schedules the audio fetch a transcript with `has_audio` and no audio yet needs. Locally the
    # row itself is the job (``expects_audio`` without audio), which `callvault serve` polls for.
    audio_fetches: AudioFetchScheduler | None = None
    # Tombstones of erased conversations (#13): any event of one is answered "erased" and stores
    # nothing, whether a webhook retry, an import or a sync brings it.
    erased: ErasedConversations | None = None

    def is_erased(self, conversation_id: str) -> bool:
        """A tombstone names the conversation: nothing of it is stored again (sync asks before fetching)."""
        return self.erased is not None and self.erased.is_erased(conversation_id)

    def archive(self, event: WebhookEvent) -> IngestResult:
        if event.type == "post_call_transcription":
            record = payload.call_from_transcription(event.data, event.event_timestamp, self.default_region)
            return self._archive_call(event, record)
        if event.type == "call_initiation_failure":
            record = payload.call_from_initiation_failure(event.data, event.event_timestamp, self.default_region)
            return self._archive_call(event, record)
        if event.type == "post_call_audio":
            return self._archive_audio(event)
        return IngestResult("ignored", event.type)

    def _now(self) -> int:
        return int(self.clock())

    def _archive_call(self, event: WebhookEvent, record: CallRecord) -> IngestResult:
        conversation_id = record.conversation_id
        if self.is_erased(conversation_id):
            return IngestResult("erased", event.type)  # no id: logs and answers name no erased call
        # The whole `data`, unknown fields kept, on one line (encoded once, by the envelope check).
        document = event.document if event.document is not None else orjson.dumps(event.data)
        record.version = versions.call_version(event.type, event.event_timestamp, document)
        existing = self.index.get(conversation_id)
        if existing is not None and _row_is_newer(existing, record):
            return self._stale(event, record, existing)
        placed = existing
        if placed is None or placed.archive_prefix is None:
            prefix = record.archive_prefix or keys.UNKNOWN_PHONE_PREFIX
            placed = self.index.claim_place(conversation_id, prefix, record.phone, self._now())
        prefix = placed.archive_prefix or keys.UNKNOWN_PHONE_PREFIX
        if record.started_at is None:
            # Neither a start time nor an event_timestamp (signed, but not what ElevenLabs sends): the
            # call is listed, counted and expired as of when it was first stored, never left out of
            # every time range (listings, retention) for want of a start.
            record.started_at = placed.ingested_at
        if existing is not None and existing.audio_version == versions.AUDIO_EXPIRED:
            record.expects_audio = False  # its audio expired (retention): nothing should fetch it again
        if record.phone is not None and record.phone != placed.phone:
            record.reported_phone = record.phone  # the call stays in its folder; the row says what changed
        record.phone, record.archive_prefix = placed.phone, prefix
        record.transcript_key = keys.transcript_key(prefix, conversation_id)
        record.transcript_bytes = len(document)
        written = write_newest(self.blobs, record.transcript_key, lambda: (document,), JSON_TYPE, record.version)
        if written.outcome == "older":
            return self._stale(event, record, self.index.get(conversation_id))
        # Memories a retention rule expired (#13) stay gone: no job, and the row keeps saying so (merged).
        memories_expired = existing is not None and existing.memory_status == MEMORY_EXPIRED
        if self.memory_jobs is not None and not memories_expired:  # written with the row itself: one write
            record.memory_status = self.memory_jobs.status_for(event, record)
            record.memory_updated_at = self._now() if record.memory_status else None
        current: CallRecord | None = placed
        for _attempt in range(_SAVE_ATTEMPTS):  # compare-and-swap on the row read: see save_call
            if current is not None and _row_is_newer(current, record):
                return self._stale(event, record, current)
            if current is not None and current.memory_status == MEMORY_EXPIRED and record.memory_status:
                # Retention expired the memories after our first read: no status, no job (the row
                # refuses a status over ``expired``).
                record.memory_status = record.memory_updated_at = None
                memories_expired = True
            if self.analytics is not None and current is not None:
                # Before the row forgets the old start: a crash after this leaves the row's start as it
                # was, so the redelivery cleans the old day again (conditional deletes, idempotent).
                new_start = record.started_at or placed.ingested_at  # the row replaces its start (None too)
                self.analytics.leave_day(conversation_id, _rows_start(current), new_start, record.version)
            expected = current.version if current is not None else None
            if self.index.save_call(record, self._now(), expect_version=True, expected_version=expected):
                break
            current = self.index.get(conversation_id)  # another event wrote the row since we read it
        else:
            raise StorageUnavailable("the call's row kept changing during the write; retry")
        if self.analytics is not None and current is not None:
            # Again, now that the row names the new day: audio that read the old start meanwhile may
            # have copied the call's merged row into a per-call object of the old day (mark_audio).
            # Per-call objects only (older than ours): a newer version's rows there stay. A no-op,
            # without a read, unless the start moved across days.
            new_start = record.started_at or placed.ingested_at
            old_start = _rows_start(current)
            self.analytics.leave_day(conversation_id, old_start, new_start, record.version, day_object=False)
        # A call this event placed has no audio in place: audio that comes later places itself.
        fresh = existing is None or existing.archive_prefix is None
        has_audio = self.place_audio(conversation_id, prefix, existing, nothing_placed=fresh)
        # Rows a retention rule expired (#13) stay gone: the call is kept, its analytics are not written.
        analytics_expired = existing is not None and existing.analytics_expired_at is not None
        if self.analytics is not None and analytics_expired:
            # An earlier delivery of this version may have died after writing rows the run had expired.
            self.analytics.take_back(conversation_id, record.started_at, record.version)
        if self.analytics is not None and not analytics_expired:
            # A call without a start time is counted on the day it was first stored, whatever delivery
            # writes it (as backfill and verify do), so a redelivery never puts it in a second day.
            fallback = placed.ingested_at
            self.analytics.write_call(event.data, record, has_audio=has_audio, fallback_start=fallback)
            latest = self.index.get(conversation_id)
            if latest is not None and latest.analytics_expired_at is not None:
                # A retention run expired the call's rows after we read the row: ours go too (the
                # run erases once more after marking, for rows written before this read).
                self.analytics.take_back(conversation_id, record.started_at, record.version)
            elif latest is not None and latest.version != record.version:
                # A newer version won while we wrote; if it moved the call to another day after
                # cleaning ours, our rows there would count the call twice.
                self.analytics.withdraw(conversation_id, record.started_at, record.version, latest.started_at)
            day_start = record.started_at or fallback
            # A retention run that expired the audio after we read the row marked the rows it found
            # (ours were not written yet, or were in the day the call had before): ours say no audio too.
            expired = self._unmark_expired_audio(conversation_id, day_start, latest)
            # Audio that landed while we wrote found no row to mark, or a crash of an earlier delivery
            # left the row unmarked ("same" version: not rewritten). A no-op if marked.
            audio_here = not expired and (
                has_audio or self.blobs.head(keys.audio_key(prefix, conversation_id)) is not None
            )
            # A mark that changed the rows may have landed over a run's false: read the row again, as
            # audio does (_mark_audio); one that found them true leaves the run's later false standing.
            if audio_here and self.analytics.mark_audio(conversation_id, day_start):
                self._unmark_expired_audio(conversation_id, day_start, self.index.get(conversation_id))
        if self.audio_fetches is not None and record.expects_audio and not has_audio:
            self.audio_fetches.schedule(conversation_id)
        if self.memory_jobs is not None and not memories_expired:
            self.memory_jobs.submit(event, record)
        unchanged = existing is not None and existing.version == record.version and written.outcome == "same"
        return IngestResult("stored", event.type, conversation_id, record.phone, unchanged=unchanged)

    def _stale(self, event: WebhookEvent, record: CallRecord, latest: CallRecord | None) -> IngestResult:
        """A newer version holds the call. An earlier delivery of ours may have died after writing
        analytics rows in a day the newer version moved the call out of: withdraw them."""
        if self.analytics is not None and latest is not None and record.version is not None:
            # A version with no time at all wrote its rows in the day the call was first stored.
            start = record.started_at or latest.ingested_at
            self.analytics.withdraw(record.conversation_id, start, record.version, latest.started_at)
        phone = latest.phone if latest is not None else record.phone
        return IngestResult("stale", event.type, record.conversation_id, phone)

    def place_audio(
        self, conversation_id: str, prefix: str, known: CallRecord | None, *, nothing_placed: bool = False
    ) -> bool:
        """Bring audio that arrived before the call was placed into its folder, and make the row say so.

        Copy, record, then delete the parked copy: at every step the row names an object that exists.
        True when the call has audio in place afterwards.
        """
        final, pending = keys.audio_key(prefix, conversation_id), keys.pending_audio_key(conversation_id)
        parked = self.blobs.head(pending)
        if parked is not None:
            for _attempt in range(_PLACE_ATTEMPTS):
                target = self.blobs.head(final)
                if target is not None and not _sorts_after(parked.version, target.version):
                    break  # what is in place is as new as the parked copy
                if self.blobs.copy_if(pending, final, target.tag if target else None):
                    break
        elif nothing_placed:
            return False  # the caller knows the folder held no audio when it placed the call
        target = self.blobs.head(final)
        if target is None:
            return False
        recorded = known is not None and known.audio_key == final and known.audio_version == target.version
        if not recorded and not self._record_placed_audio(
            conversation_id, None, AudioFacts(final, target.size, target.version)
        ):
            return False
        if parked is not None:
            self.blobs.delete_if(pending, parked.tag)  # a newer parked copy that arrived meanwhile stays
        return True

    def _archive_audio(self, event: WebhookEvent) -> IngestResult:
        conversation_id = keys.check_conversation_id(event.data.get("conversation_id"))
        encoded = event.data.get("full_audio")
        if not isinstance(encoded, str) or not encoded:
            raise InvalidPayload("data.full_audio must be a non-empty base64 string")
        _check_base64_shape(encoded)
        version = versions.audio_version(event.event_timestamp, _ascii_chunks(encoded))
        # As the call events read it: "" is no agent (an empty string cannot key the DynamoDB index).
        agent_id = coerce.text(event.data.get("agent_id"))
        return self._store_audio(event.type, conversation_id, agent_id, lambda: _decode_base64(encoded), version)

    def archive_conversation(self, document: dict[str, Any], observed_at: int) -> str:
        """A ``GET /v1/convai/conversations/{id}`` document (sync), as a transcript seen at ``observed_at``.

        Content the row already holds is "unchanged" and writes nothing, whenever it was seen.
        """
        event = payload.as_transcription_event(document)
        event = WebhookEvent(event.type, observed_at, event.data)
        row = self.index.get(keys.check_conversation_id(event.data.get("conversation_id")))
        if row is not None and row.version is not None and row.transcript_key is not None:
            digest = versions.call_version(event.type, observed_at, orjson.dumps(event.data)).rsplit(".", 1)[1]
            if row.version.startswith(f"{versions.TRANSCRIPT_KIND}.") and row.version.endswith(f".{digest}"):
                return "unchanged"
        return self.archive(event).outcome

    def archive_audio_stream(
        self, conversation_id: str, agent_id: str | None, chunks: Callable[[], Iterable[bytes]]
    ) -> str:
        """The call's MP3 from a stream (the API's audio endpoint): never whole in memory.

        Its version sorts below any audio webhook's (``versions.API_AUDIO_VERSION``), so the pushed
        audio, when it comes, is kept; the same call's audio fetched twice is "same".
        """
        conversation_id = keys.check_conversation_id(conversation_id)
        version = versions.API_AUDIO_VERSION
        return self._store_audio("post_call_audio", conversation_id, agent_id, chunks, version).outcome

    def _store_audio(
        self,
        event_type: str,
        conversation_id: str,
        agent_id: str | None,
        body: Callable[[], Iterable[bytes]],
        version: str,
    ) -> IngestResult:
        if self.is_erased(conversation_id):
            return IngestResult("erased", event_type)  # no id: logs and answers name no erased call
        existing = self.index.get(conversation_id)
        if existing is not None and existing.audio_version == versions.AUDIO_EXPIRED:  # expired: not again
            if self.analytics is not None:
                # An earlier delivery may have died between setting has_audio and reading the row again
                # (_mark_audio): put false back. Reads only, when it is false already; none without rows.
                self.analytics.mark_audio(conversation_id, _rows_start(existing), has_audio=False)
            # And may have died between writing its copy and the row refusing it: that copy goes.
            placed_key = keys.audio_key(existing.archive_prefix, conversation_id) if existing.archive_prefix else None
            candidates = [key for key in (placed_key, keys.pending_audio_key(conversation_id)) if key is not None]
            self._purge_expired_audio(conversation_id, candidates)
            return IngestResult("stale", event_type, conversation_id, existing.phone)
        placed = existing is not None and existing.archive_prefix is not None
        if existing is not None and existing.archive_prefix is not None:
            key = keys.audio_key(existing.archive_prefix, conversation_id)
        else:  # no call-level event yet, so no folder: park the audio until one places the call
            key = keys.pending_audio_key(conversation_id)
        written = write_newest(self.blobs, key, body, AUDIO_TYPE, version)
        if written.outcome == "older":
            return IngestResult("stale", event_type, conversation_id, existing.phone if existing else None)
        audio = AudioFacts(key, written.size, version)
        unchanged = written.outcome == "same" and existing is not None and existing.audio_version == version
        if existing is not None and placed:
            if not self._record_placed_audio(conversation_id, agent_id, audio):
                return IngestResult("stale", event_type, conversation_id, existing.phone)
            if self.blobs.head(keys.pending_audio_key(conversation_id)) is not None:
                # A crash between a parked copy's placing and its deletion left it: finish that move
                # (the newer of the two audios stays in place).
                self.place_audio(conversation_id, existing.archive_prefix or keys.UNKNOWN_PHONE_PREFIX, None)
            if self.analytics is not None:
                # The start read before our writes may be stale: a newer version may have moved the
                # call to another day meanwhile (its own audio check ran before our audio existed).
                latest = self.index.get(conversation_id)
                # A call without a start time has its rows in the day it was first stored (_archive_call).
                known = latest if latest is not None else existing
                if known.audio_version == versions.AUDIO_EXPIRED:
                    # A retention run expired the audio meanwhile (and set has_audio false): ours is purged.
                    return IngestResult("stale", event_type, conversation_id, existing.phone)
                if not self._mark_audio(conversation_id, known.started_at or known.ingested_at):
                    return IngestResult("stale", event_type, conversation_id, existing.phone)
            return IngestResult("stored", event_type, conversation_id, existing.phone, unchanged=unchanged)
        if self.index.save_audio(conversation_id, agent_id, audio, self._now(), only_if_unplaced=True):
            return IngestResult("stored", event_type, conversation_id, unchanged=unchanged)
        row = self.index.get(conversation_id)
        if row is None or row.archive_prefix is None:
            # Still unplaced: the condition failed on the version, a newer parked audio is recorded.
            return IngestResult("stale", event_type, conversation_id)
        # A call-level event placed the call between our read and our write: place the audio ourselves.
        if not self.place_audio(conversation_id, row.archive_prefix, row):
            return IngestResult("stale", event_type, conversation_id, row.phone)  # expired meanwhile
        if self.analytics is not None and not self._mark_audio(conversation_id, row.started_at or row.ingested_at):
            return IngestResult("stale", event_type, conversation_id, row.phone)
        return IngestResult("stored", event_type, conversation_id, row.phone)

    def _mark_audio(self, conversation_id: str, day_start: int | None) -> bool:
        """Set has_audio on the call's analytics row; False if a retention run expired the audio since
        the row was last read. The run sets has_audio false after marking the row, so a mark of ours
        that lands after its false would stand over audio it purged: read the row once more (one index
        read per audio delivery) and put false back."""
        assert self.analytics is not None
        self.analytics.mark_audio(conversation_id, day_start)
        return not self._unmark_expired_audio(conversation_id, day_start, self.index.get(conversation_id))

    def _unmark_expired_audio(self, conversation_id: str, day_start: int | None, row: CallRecord | None) -> bool:
        """If ``row`` says a retention run expired the audio, set has_audio false in the analytics rows.
        The run marks the row before the rows, so a delivery that reads the row after its own mark
        either sees the expiry here or leaves the run's false to land after it. True if expired."""
        if row is None or row.audio_version != versions.AUDIO_EXPIRED:
            return False
        assert self.analytics is not None
        self.analytics.mark_audio(conversation_id, day_start, has_audio=False)
        return True

    def _record_placed_audio(self, conversation_id: str, agent_id: str | None, audio: AudioFacts) -> bool:
        """Name the audio in place on the row. False only when a retention run expired the call's audio
        meanwhile: the row refused it, so the object goes too (and a parked copy with it), or it would
        outlive its retention unnamed. A row refusing an older audio is not that: True."""
        if self.index.save_audio(conversation_id, agent_id, audio, self._now(), only_if_unplaced=False):
            return True
        row = self.index.get(conversation_id)
        if row is None or row.audio_version != versions.AUDIO_EXPIRED:
            return True
        self._purge_expired_audio(conversation_id, (audio.key, keys.pending_audio_key(conversation_id)))
        return False

    def _purge_expired_audio(self, conversation_id: str, candidates: Iterable[str]) -> None:
        """Purge the copies of a call's audio that a retention run expired, which a delivery wrote
        after the run's purge; a head first, so a key with nothing there costs no version listing."""
        try:
            for key in candidates:
                if self.blobs.head(key) is not None:
                    self.blobs.purge(key)
        except StorageUnavailable:
            # On AWS the webhook's, fetch's and sync's roles may not delete object versions (only erasure
            # and retention may): the copy stays, named by no row, and the sender gets its answer.
            log.warning(
                "audio of a call whose audio expired was left in place; `callvault verify --repair` purges it",
                extra={"conversation_id": conversation_id},
            )


def _rows_start(row: CallRecord) -> int | None:
    """The instant whose day holds the call's analytics rows: its start, else (no version said when
    it started) when it was first stored; None while no transcript has written rows."""
    return (row.started_at or row.ingested_at) if row.transcript_key is not None else None


def _row_is_newer(row: CallRecord, record: CallRecord) -> bool:
    if row.version is not None and record.version is not None:
        return versions.compare(record.version, row.version) == "older"
    # A row written before versions: its event timestamp decides.
    return row.event_at is not None and record.event_at is not None and row.event_at > record.event_at


def _sorts_after(mine: str | None, stored: str | None) -> bool:
    # Audio parked by an older release has no version: it never replaces audio already in place.
    return mine is not None and versions.compare(mine, stored) == "newer"


def _ascii_chunks(text: str) -> Iterator[bytes]:
    for start in range(0, len(text), _B64_CHUNK_CHARS):
        yield text[start : start + _B64_CHUNK_CHARS].encode("ascii", "replace")


def _check_base64_shape(text: str) -> None:
    # Padding may only end the whole text; chunked decoding would otherwise accept it mid-stream.
    if len(text) % 4 or "=" in text[:-2]:
        raise InvalidPayload("data.full_audio is not valid base64")


def _decode_base64(text: str) -> Iterator[bytes]:
    """Strict base64, decoded chunk by chunk; raises InvalidPayload before the store commits anything."""
    _check_base64_shape(text)
    for start in range(0, len(text), _B64_CHUNK_CHARS):
        try:
            yield base64.b64decode(text[start : start + _B64_CHUNK_CHARS], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidPayload("data.full_audio is not valid base64") from None


@dataclass
class WebhookReceiver:
    """``POST /webhooks/elevenlabs``: size, signature, envelope, then archive. Edges only translate."""

    archiver: Archiver
    secrets: list[str]
    max_body_bytes: int

    def receive(self, raw: bytes, signature_header: str | None) -> IngestResult:
        signing.verify(raw, signature_header, self.secrets, self.archiver.clock())
        return self.receive_verified(raw)

    def receive_verified(self, raw: bytes) -> IngestResult:
        """For an edge that verified the signature while the body streamed (``callvault serve``)."""
        if len(raw) > self.max_body_bytes:
            raise PayloadTooLarge(f"webhook body is larger than the limit of {self.max_body_bytes} bytes")
        return self.archiver.archive(payload.parse_envelope(raw))
