"""Builds the Archiver the same way for the Lambda, `callvault serve` and `callvault import`."""

import time
from collections.abc import Callable

from services.analytics.writer import AnalyticsWriter
from services.core.config import Settings
from services.core.wiring import Storage, build_analytics_store, build_erased

from .service import Archiver, MemoryJobSubmitter


def build_archiver(
    settings: Settings,
    storage: Storage,
    memory_jobs: MemoryJobSubmitter | None = None,
    on_late_write: Callable[[str], None] | None = None,
) -> Archiver:
    """Archive, index and the analytics tables. On AWS without ``CALLVAULT_ANALYTICS_BUCKET`` the
    analytics tables are skipped (``archiver.analytics is None``) rather than refusing every call:
    ``backfill-analytics`` catches up later. ``on_late_write`` hears of writes to closed analytics
    days (``callvault serve`` merges them soon after)."""
    has_analytics = settings.backend != "aws" or bool(settings.analytics_bucket)
    analytics = AnalyticsWriter(build_analytics_store(settings), on_late_write=on_late_write) if has_analytics else None
    archiver = Archiver(
        storage.blobs, storage.index, time.time, settings.default_region, analytics=analytics, memory_jobs=memory_jobs
    )
    archiver.erased = build_erased(settings)  # erased conversations are never archived again (#13)
    if settings.audio_fetch_queue_url:  # AWS: a delayed SQS message per call whose audio may not come
        from services.sync.sqs_scheduler import SqsAudioFetchScheduler  # a composition root may wire sync in

        archiver.audio_fetches = SqsAudioFetchScheduler(settings.audio_fetch_queue_url, settings.audio_grace_seconds)
    return archiver
