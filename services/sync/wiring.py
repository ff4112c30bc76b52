"""Composition for the sync Lambdas: the ElevenLabs client with its key, and the Archiver they write through.

A composition root like ``services.ingest.wiring``: it may import ingest and memory to assemble them,
while ``services.sync``'s use cases meet ingest only through the ``CallArchive`` port.
"""

import time
from dataclasses import dataclass, field

from pydantic import SecretStr

from services.analytics.compaction import LateDays  # a composition root may wire analytics in
from services.core.config import Settings
from services.core.domain.errors import CallVaultError
from services.core.logging import get_logger
from services.core.ports import CallIndex
from services.core.wiring import build_storage
from services.ingest.service import Archiver
from services.ingest.wiring import build_archiver

from .audio import AudioFetcher
from .elevenlabs import KEY_HELP, ElevenLabsClient
from .ports import UpstreamRejected
from .service import Syncer, SyncSummary
from .state import build_sync_state


def elevenlabs_api_key(settings: Settings) -> str:
    """From the environment (``ELEVENLABS_API_KEY``), else (AWS) the SSM SecureString named by
    ``CALLVAULT_ELEVENLABS_API_KEY_PARAM``, read once per process (``read_ssm_secret`` caches it)."""
    from services.core.elevenlabs import api_key

    key = api_key(settings)
    if not key:
        raise UpstreamRejected(f"no ElevenLabs API key: {KEY_HELP}")
    return key


def build_source(settings: Settings, concurrency: int = 4) -> ElevenLabsClient:
    keyed = settings.model_copy(update={"elevenlabs_api_key": SecretStr(elevenlabs_api_key(settings))})
    return ElevenLabsClient.from_settings(keyed, concurrency=concurrency)


@dataclass
class SyncParts:
    archiver: Archiver
    index: CallIndex
    source: ElevenLabsClient
    late_days: LateDays = field(default_factory=LateDays)  # closed analytics days the archiver wrote to


def build_sync_parts(settings: Settings, *, concurrency: int = 4, memory_jobs: bool = True) -> SyncParts:
    """The Archiver as the webhook's (archive, index, analytics; memory jobs when a queue is set), but
    without audio-fetch scheduling: whoever holds these fetches missing audio itself."""
    late_days = LateDays()
    storage = build_storage(settings)
    jobs = None
    if memory_jobs:
        from services.memory.jobs import MemoryJobs, status_sink_for
        from services.memory.wiring import build_memory_queue

        queue = build_memory_queue(settings)
        if queue is not None:
            logger = get_logger("callvault-sync")
            jobs = MemoryJobs(queue, status_sink_for(storage.index), time.time, logger, status_in_row=True)
    archiver = build_archiver(settings, storage, jobs, on_late_write=late_days.add)
    archiver.audio_fetches = None
    return SyncParts(archiver, storage.index, build_source(settings, concurrency), late_days)


@dataclass
class ScheduledSync:
    """The sync function's run: ``Syncer.run()``, then the closed analytics days it wrote to (calls
    older than two days that webhooks missed) are merged, as ``callvault sync`` does, so a report does
    not count those calls twice until the hourly merge. A merge that fails is logged and left to the
    hourly one: the calls are archived either way."""

    syncer: Syncer
    parts: SyncParts

    def run(self) -> SyncSummary:
        try:
            return self.syncer.run()
        finally:  # also when the run stops midway (a refused key, an unreachable index)
            self._merge_late_days()

    def _merge_late_days(self) -> None:
        try:
            self.parts.late_days.merge(self.parts.archiver.analytics)
        except CallVaultError as exc:
            get_logger("callvault-sync").warning(
                "sync: closed days left for the hourly merge", extra={"reason": exc.message}
            )


def build_scheduled_sync(settings: Settings, concurrency: int = 4) -> ScheduledSync:
    """``Syncer.run()`` with the watermark beside the index (an item in the DynamoDB table on AWS)."""
    parts = build_sync_parts(settings, concurrency=concurrency)
    state = build_sync_state(settings)
    syncer = Syncer(
        parts.source, parts.archiver, parts.index, state, time.time, concurrency, settings.sync_overlap_seconds
    )
    return ScheduledSync(syncer, parts)


def build_audio_fetcher(settings: Settings) -> AudioFetcher:
    """One audio at a time per process (an SQS batch is handled in order): one connection suffices.
    Audio events submit no memory jobs, so no memory queue is built."""
    parts = build_sync_parts(settings, concurrency=1, memory_jobs=False)
    return AudioFetcher(parts.source, parts.archiver, parts.index)
