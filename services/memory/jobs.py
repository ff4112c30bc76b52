"""Memory jobs: recording one at ingest (``MemoryJobs``) and running one (``process_memory_job``).

``MemoryJobs.submit`` is the only memory code on the webhook's path. It never raises and never
talks to Mem0: the worst a broken queue can do is mark the call ``memory_status = failed``; the
call itself is already archived and the webhook still gets its 200. This module must not import
``mem0`` (the ingest Lambda loads it).
"""

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from services.core.domain.errors import NotFound
from services.core.domain.models import MEMORY_EXPIRED, CallRecord, WebhookEvent
from services.core.domain.phone import names_one_caller
from services.core.erased import ErasedConversations
from services.core.ports import BlobStore, CallIndex

from .domain import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_SKIPPED_NO_PHONE,
    MemoryJob,
    MemoryStatus,
    build_conversation_memories,
)
from .ports import MemoryJobQueue, MemoryStatusSink, MemoryStore

TRANSCRIPTION = "post_call_transcription"
# A job's outcome when its conversation was erased (#13): nothing written, and no status to record
# (the row is gone); the job is acknowledged, so a queued SQS message of an erased call is a no-op.
ERASED: Final = "erased"
# A job's outcome when a retention rule expired the call's memories (#13): nothing written, and the
# row keeps saying ``expired``, so the job is acknowledged (a queued or re-driven SQS message, a job
# that was running while the rule ran).
EXPIRED: Final = "expired"
JobOutcome = MemoryStatus | Literal["erased", "expired"]


class NullStatusSink:
    """For an index that has no memory columns yet: status lives in the outbox / queue only."""

    def set_memory_status(self, conversation_id: str, status: MemoryStatus, now: int) -> None:
        return None


def status_sink_for(index: object) -> MemoryStatusSink:
    """The index itself once it has ``set_memory_status`` (see docs/memory.md), else a no-op sink."""
    if callable(getattr(index, "set_memory_status", None)):
        sink: MemoryStatusSink = index  # type: ignore[assignment]  # checked structurally just above
        return sink
    return NullStatusSink()


class IngestActivity:
    """When the last webhook was archived, so the worker can run in the gaps between them.

    The webhook must never wait for memory work: a worker sharing the process (and its GIL) with
    the receiver yields while webhooks are arriving, up to a bound so it still makes progress.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = float("-inf")

    def touch(self) -> None:
        self._last = self._clock()  # one float store: no lock needed

    def busy_for(self, quiet_secs: float) -> float:
        """Seconds until ``quiet_secs`` will have passed without a webhook (0 when it already has)."""
        return max(0.0, self._last + quiet_secs - self._clock())

    def wait_quiet(self, quiet_secs: float, max_secs: float, stop: threading.Event | None = None) -> None:
        """Sleep until ``quiet_secs`` without a webhook, at most ``max_secs`` (or until ``stop``)."""
        deadline = self._clock() + max_secs
        waiter = stop or threading.Event()
        while not waiter.is_set() and (wait := self.busy_for(quiet_secs)) > 0:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            waiter.wait(min(wait, remaining))


@dataclass
class MemoryJobs:
    """The ingest hook. ``Archiver`` calls ``submit`` after a call's row is saved, before the 200.

    ``status_in_row``: the Archiver already wrote ``status_for(...)`` into the row it saved (one
    write instead of two); otherwise ``submit`` writes it through the status sink.
    """

    queue: MemoryJobQueue
    status: MemoryStatusSink
    clock: Callable[[], float]
    logger: Any = None
    status_in_row: bool = False
    activity: IngestActivity | None = None

    @staticmethod
    def status_for(event: WebhookEvent, record: CallRecord) -> MemoryStatus | None:
        """What the row should say once this event is archived; None for events that make no memories."""
        if event.type != TRANSCRIPTION:
            return None
        return STATUS_PENDING if names_one_caller(record.phone) else STATUS_SKIPPED_NO_PHONE

    def submit(self, event: WebhookEvent, record: CallRecord) -> None:
        if self.activity is not None:
            self.activity.touch()
        status = self.status_for(event, record)
        if status is None:
            return
        now = int(self.clock())
        try:
            if not self.status_in_row:
                # Before the enqueue: a fast worker's "done" must not be overwritten by our "pending".
                self.status.set_memory_status(record.conversation_id, status, now)
            if status == STATUS_PENDING:
                self.queue.enqueue(MemoryJob(record.conversation_id, record.transcript_key, record.event_at))
        except Exception as exc:
            self._log_error("memory job not recorded", record.conversation_id, exc)
            try:
                self.status.set_memory_status(record.conversation_id, STATUS_FAILED, now)
            except Exception as status_exc:
                self._log_error("memory status not recorded", record.conversation_id, status_exc)

    def _log_error(self, message: str, conversation_id: str, exc: BaseException) -> None:
        if self.logger is not None:
            self.logger.error(
                message,
                extra={
                    "conversation_id": conversation_id,
                    "error_type": type(exc).__name__,
                    "trace": [f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)],
                },
            )


class TranscriptMissing(NotFound):
    code = "transcript_missing"


@dataclass
class JobProcessor:
    """Runs one job: read the archived transcript, build the memories, replace them in the store.

    Shared by the local worker and the SQS Lambda. Returns the status to show on the row
    (``done``, or ``skipped_no_phone`` for a call whose number was never known), or ``ERASED``.

    ``erased``: the tombstones (``core.erased``). A job of an erased conversation writes nothing: on
    AWS its SQS message cannot be taken out of the queue when the caller is erased, and without this
    it would fail on the purged transcript until the dead-letter queue took it. Asked before reading
    and again just before writing, so a job that was reading while the erasure ran stores nothing; and
    once more after writing: an erasure that ran between that check and the write tombstoned the call
    before it removed the memories, so either it removed what the job wrote or this check sees it, and
    the job replaces what it wrote with nothing.
    """

    blobs: BlobStore
    index: CallIndex
    store: MemoryStore
    default_region: str = "US"
    infer: bool = False  # the transcript goes to the back end's LLM (docs/memory.md, inference)
    erased: ErasedConversations | None = None

    def __call__(self, job: MemoryJob) -> JobOutcome:
        if self._erased(job):
            return ERASED
        row = self.index.get(job.conversation_id)
        if _memories_expired(row):
            return EXPIRED
        key = job.transcript_key or (row.transcript_key if row else None)
        if key is None:
            raise TranscriptMissing("the call has no archived transcript")
        document = orjson.loads(self.blobs.get_bytes(key))
        if not isinstance(document, dict):
            raise TranscriptMissing("the archived transcript is not a JSON object")
        memories = build_conversation_memories(
            document, phone=row.phone if row else None, default_region=self.default_region, infer=self.infer
        )
        if memories.phone is None or not names_one_caller(memories.phone):
            return STATUS_SKIPPED_NO_PHONE  # no number, or one many callers share (a placeholder)
        if self._erased(job):
            return ERASED
        self.store.add_conversation(memories.phone, memories.conversation_id, memories.items)
        if self._erased(job):  # erased (tombstone, then memories) after the check above: take them out again
            self.store.add_conversation(memories.phone, memories.conversation_id, [])
            return ERASED
        if _memories_expired(self.index.get(job.conversation_id)):
            # A retention run (erase, mark, erase again) ran since the row was read: take them out again.
            self.store.add_conversation(memories.phone, memories.conversation_id, [])
            return EXPIRED
        return STATUS_DONE

    def _erased(self, job: MemoryJob) -> bool:
        return self.erased is not None and self.erased.is_erased(job.conversation_id)


def _memories_expired(row: CallRecord | None) -> bool:
    return row is not None and row.memory_status == MEMORY_EXPIRED


def error_code(exc: BaseException) -> str:
    """What to keep about a failure: the error's stable code or class, never its message."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__
