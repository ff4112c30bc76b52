"""Use cases of the ingest service: receive a signed webhook, archive an event.

Order of writes, for every event: archive object(s) first, index row last. A row therefore never
points at an object that is not durable, and a failure anywhere before the 200 lets the sender
retry the whole event (every step is idempotent).
"""

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from services.analytics.writer import AnalyticsWriter
from services.core.domain import keys, payload, signing
from services.core.domain.errors import InvalidPayload, PayloadTooLarge
from services.core.domain.models import AudioFacts, CallRecord, WebhookEvent
from services.core.ports import BlobStore, CallIndex

Outcome = Literal["stored", "ignored", "stale"]
JSON_TYPE = "application/json"
AUDIO_TYPE = "audio/mpeg"
_B64_CHUNK_CHARS = 1 << 20  # decode audio 1 MiB of text at a time: no full second copy in memory


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    event_type: str
    conversation_id: str | None = None
    phone: str | None = None  # E.164, for callers that log it masked

    def body(self) -> dict[str, Any]:
        return {"status": self.outcome, "type": self.event_type, "conversation_id": self.conversation_id}


class MemoryJobSubmitter(Protocol):
    """services.memory.jobs.MemoryJobs: records the job durably (outbox row / SQS message), never Mem0."""

    def status_for(self, event: WebhookEvent, record: CallRecord) -> str | None:
        """The memory status the call's row should carry once this event is archived."""
        ...

    def submit(self, event: WebhookEvent, record: CallRecord) -> None: ...


@dataclass
class Archiver:
    """Writes events into the archive and the index. Shared by the webhook, `callvault import` and tests."""

    blobs: BlobStore
    index: CallIndex
    clock: Callable[[], float]
    default_region: str = "US"
    analytics: AnalyticsWriter | None = None  # the compact report tables, written before the 200
    memory_jobs: MemoryJobSubmitter | None = None  # records a caller-memory job; never raises

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
        existing = self.index.get(record.conversation_id)
        if _is_older(record, existing):
            return IngestResult("stale", event.type, record.conversation_id, record.phone)
        prefix = record.archive_prefix or keys.UNKNOWN_PHONE_PREFIX
        if existing and existing.archive_prefix:
            prefix = record.archive_prefix = existing.archive_prefix  # a call never moves once placed
        document = orjson.dumps(event.data)  # the whole `data`, unknown fields kept, on one line
        record.transcript_key = keys.transcript_key(prefix, record.conversation_id)
        record.transcript_bytes = len(document)
        self.blobs.put_bytes(record.transcript_key, document, JSON_TYPE)
        if self.memory_jobs is not None:  # written with the row itself: one index write, not two
            record.memory_status = self.memory_jobs.status_for(event, record)
            record.memory_updated_at = self._now() if record.memory_status else None
        if not self.index.save_call(record, self._now()):
            return IngestResult("stale", event.type, record.conversation_id, record.phone)
        has_audio = self._place_audio(record.conversation_id, prefix, existing)
        if self.analytics is not None:
            previous = existing.started_at if existing else None
            self.analytics.write_call(event.data, record, has_audio=has_audio, previous_start=previous)
        if self.memory_jobs is not None:
            self.memory_jobs.submit(event, record)
        return IngestResult("stored", event.type, record.conversation_id, record.phone)

    def _place_audio(self, conversation_id: str, prefix: str, before: CallRecord | None) -> bool:
        """Move audio that arrived before its transcript into place (or finish a move a crash interrupted).

        True when the call's audio is in place afterwards.
        """
        final = keys.audio_key(prefix, conversation_id)
        self.blobs.move(keys.pending_audio_key(conversation_id), final)
        size = self.blobs.size(final)
        if size is None:
            return False
        row = self.index.get(conversation_id) if before is None or before.audio_key != final else before
        if row is None or row.audio_key != final or row.audio_bytes != size:
            self.index.save_audio(conversation_id, None, AudioFacts(final, size), self._now(), only_if_unplaced=False)
        return True

    def _archive_audio(self, event: WebhookEvent) -> IngestResult:
        conversation_id = keys.check_conversation_id(event.data.get("conversation_id"))
        encoded = event.data.get("full_audio")
        if not isinstance(encoded, str) or not encoded:
            raise InvalidPayload("data.full_audio must be a non-empty base64 string")
        agent_id = event.data.get("agent_id") if isinstance(event.data.get("agent_id"), str) else None
        existing = self.index.get(conversation_id)
        if existing and existing.archive_prefix:
            key = keys.audio_key(existing.archive_prefix, conversation_id)
            size = self.blobs.put_stream(key, _decode_base64(encoded), AUDIO_TYPE)
            self.index.save_audio(conversation_id, agent_id, AudioFacts(key, size), self._now(), only_if_unplaced=False)
            if self.analytics is not None:
                self.analytics.mark_audio(conversation_id, existing.started_at)
            return IngestResult("stored", event.type, conversation_id, existing.phone)
        # No transcript yet, so no phone and no place: park the audio and record it there.
        pending = keys.pending_audio_key(conversation_id)
        size = self.blobs.put_stream(pending, _decode_base64(encoded), AUDIO_TYPE)
        if self.index.save_audio(
            conversation_id, agent_id, AudioFacts(pending, size), self._now(), only_if_unplaced=True
        ):
            return IngestResult("stored", event.type, conversation_id)
        # The transcript landed between our read and our write: place the audio ourselves.
        row = self.index.get(conversation_id)
        prefix = row.archive_prefix if row and row.archive_prefix else keys.UNKNOWN_PHONE_PREFIX
        self._place_audio(conversation_id, prefix, None)
        if self.analytics is not None and row is not None:
            self.analytics.mark_audio(conversation_id, row.started_at)
        return IngestResult("stored", event.type, conversation_id, row.phone if row else None)


def _is_older(record: CallRecord, existing: CallRecord | None) -> bool:
    return bool(
        existing
        and existing.event_at is not None
        and record.event_at is not None
        and existing.event_at > record.event_at
    )


def _decode_base64(text: str) -> Iterator[bytes]:
    """Strict base64, decoded chunk by chunk; raises InvalidPayload before the store commits anything."""
    # Padding may only end the whole text; chunked decoding would otherwise accept it mid-stream.
    if len(text) % 4 or "=" in text[:-2]:
        raise InvalidPayload("data.full_audio is not valid base64")
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
        if len(raw) > self.max_body_bytes:
            raise PayloadTooLarge(f"webhook body is larger than the limit of {self.max_body_bytes} bytes")
        signing.verify(raw, signature_header, self.secrets, self.archiver.clock())
        return self.archiver.archive(payload.parse_envelope(raw))
