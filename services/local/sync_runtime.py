"""`callvault serve` keeps the archive complete (docs/sync.md): the audio fetch worker and the
scheduled sync, both on the server's own Archiver, so they share its memory jobs and analytics.

Off unless ``ELEVENLABS_API_KEY`` is set. The sync runs every ``CALLVAULT_SYNC_INTERVAL`` seconds
(default 900 with a key; 0 switches it off); the first run starts a minute after start-up, so a
restart loop never hammers the API.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from services.core.config import Settings
from services.core.domain.errors import CallVaultError
from services.core.logging import get_logger
from services.core.wiring import Storage
from services.sync.audio import AudioFetcher, AudioFetchWorker
from services.sync.ports import CallArchive
from services.sync.service import Syncer
from services.sync.state import build_sync_state

log = logging.getLogger(__name__)
FIRST_SYNC_DELAY_SECS = 60.0


@dataclass
class SyncThread:
    syncer: Syncer
    interval: float
    first_delay: float = FIRST_SYNC_DELAY_SECS
    log: Logger | logging.Logger = log
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="callvault-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        delay = min(self.first_delay, self.interval)
        while not self._stop.wait(delay):
            delay = self.interval
            started = time.monotonic()
            try:
                summary = self.syncer.run()
            except CallVaultError as exc:  # a wrong key, the API down: said once per run, retried next run
                self.log.warning("scheduled sync failed", extra={"reason": exc.message})
                continue
            except Exception:
                self.log.exception("scheduled sync failed")
                continue
            result = summary.to_dict()
            self.log.info(
                "scheduled sync done",
                extra={
                    "seconds": round(time.monotonic() - started, 1),
                    **{k: result[k] for k in ("listed", "new", "updated", "audio_fetched", "still_processing")},
                    "failed": summary.failed,
                },
            )
            if summary.failed:  # which calls, and why: the next run tries them again
                self.log.warning(
                    "scheduled sync left calls for the next run", extra={"failed": summary.failures_to_log()}
                )


@dataclass
class LocalSync:
    audio: AudioFetchWorker
    schedule: SyncThread | None

    def start(self) -> None:
        self.audio.start()
        if self.schedule is not None:
            self.schedule.start()

    def stop(self) -> None:
        if self.schedule is not None:
            self.schedule.stop()
        self.audio.stop()


def build_local_sync(settings: Settings, storage: Storage, archive: CallArchive) -> LocalSync | None:
    """None without an API key: nothing to fetch from. A blank ``ELEVENLABS_API_KEY=`` (a compose file
    or .env template passing an unset variable on) is no key, not a start-up failure."""
    key = settings.elevenlabs_api_key
    if key is None or not key.get_secret_value().strip():
        return None
    from services.sync.elevenlabs import ElevenLabsClient

    client = ElevenLabsClient.from_settings(settings, concurrency=4)
    fetcher = AudioFetcher(client, archive, storage.index)
    grace = settings.audio_grace_seconds
    # serve's JSON log (a module logger would reach no handler: its summaries would vanish)
    logger = get_logger("callvault-sync", settings.log_level)
    worker = AudioFetchWorker(fetcher, storage.index, grace, poll_secs=max(0.5, min(15.0, grace / 4)), log=logger)
    interval = settings.effective_sync_interval()
    schedule = None
    if interval > 0:
        syncer = Syncer(
            client,
            archive,
            storage.index,
            build_sync_state(settings),
            overlap_seconds=settings.sync_overlap_seconds,
        )
        schedule = SyncThread(syncer, interval, log=logger)
    return LocalSync(worker, schedule)
