"""Audio never depends on the audio webhook: fetch a call's MP3 from the API when it did not come.

Audio webhooks are never retried, and on AWS no body above 6 MB reaches Lambda, so every call whose
transcript says ``has_audio`` gets this fetch after a grace period (``CALLVAULT_AUDIO_GRACE_SECONDS``):
an SQS message with a delay on AWS, the index row itself locally (``CallIndex.awaiting_audio``).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from services.core.domain.errors import CallVaultError
from services.core.ports import CallIndex

from .ports import CallArchive, ConversationGone, ConversationSource

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

log = logging.getLogger(__name__)

FetchOutcome = Literal["fetched", "present", "gone", "stale"]
PASS_SIZE = 100  # fetches per pass of the worker, at most


@dataclass
class AudioFetcher:
    source: ConversationSource
    archive: CallArchive
    index: CallIndex

    def fetch(self, conversation_id: str) -> FetchOutcome:
        """Stream the call's audio into the archive unless audio is already in place.

        ``ConversationGone`` (404 upstream) is reported as "gone": nothing is deleted here.
        Other errors raise, so the caller retries (SQS redelivery, the worker's backoff).
        """
        row = self.index.get(conversation_id)
        if row is not None and row.audio_key is not None:
            return "present"
        agent_id = row.agent_id if row is not None else None
        try:
            outcome = self.archive.archive_audio_stream(
                conversation_id, agent_id, lambda: self._chunks(conversation_id)
            )
        except ConversationGone:
            return "gone"
        return "fetched" if outcome == "stored" else "stale"

    def _chunks(self, conversation_id: str) -> Iterator[bytes]:
        # A generator: the request opens when the store starts reading and closes when it stops,
        # so a retried conditional write opens a fresh stream.
        with self.source.open_audio(conversation_id) as chunks:
            yield from chunks


@dataclass
class AudioFetchWorker:
    """``callvault serve``: every ``poll_secs``, fetch the audio of calls waiting past the grace period.

    Durable without a queue: the index row (``expects_audio`` without ``audio_key``) is the job, so
    a restart loses nothing. Failures back off per call (in memory; a restart retries once at once).
    """

    fetcher: AudioFetcher
    index: CallIndex
    grace_seconds: int
    clock: Callable[[], float] = time.time
    poll_secs: float = 15.0
    max_backoff_secs: float = 3600.0
    log: "Logger | logging.Logger" = log
    _retry_at: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (due, last delay)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int]:
        """At most ``PASS_SIZE`` due calls; returns how many ended in each outcome (and "failed")."""
        now = self.clock()
        counts: dict[str, int] = {}
        # Rows backing off (or gone upstream) are never written, so they stay first in line: read past
        # them, or 100 calls whose audio is gone would hide every later one for good.
        waiting = sum(1 for due, _delay in self._retry_at.values() if due > now)
        rows = self.index.awaiting_audio(int(now) - self.grace_seconds, limit=PASS_SIZE + waiting)
        if len(rows) < PASS_SIZE + waiting:  # every waiting row was read: forget those that got audio
            awaiting = {row.conversation_id for row in rows}
            self._retry_at = {cid: entry for cid, entry in self._retry_at.items() if cid in awaiting}
        tried = 0
        for row in rows:
            due, delay = self._retry_at.get(row.conversation_id, (0.0, 0.0))
            if due > now:
                continue
            if tried == PASS_SIZE:
                break
            tried += 1
            try:
                outcome: str = self.fetcher.fetch(row.conversation_id)
            except Exception as exc:  # whatever one call raises backs that call off, never the pass
                outcome = "failed"
                delay = min(self.max_backoff_secs, max(60.0, delay * 2))
                self._retry_at[row.conversation_id] = (now + delay, delay)
                reason = exc.message if isinstance(exc, CallVaultError) else f"unexpected error ({type(exc).__name__})"
                self.log.warning(
                    "audio fetch failed",
                    extra={"conversation_id": row.conversation_id, "retry_in_secs": delay, "reason": reason},
                    exc_info=not isinstance(exc, CallVaultError),
                )
            else:
                if outcome == "gone":  # nothing upstream: stop asking until the next start or sync
                    self._retry_at[row.conversation_id] = (float("inf"), self.max_backoff_secs)
                else:
                    self._retry_at.pop(row.conversation_id, None)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="callvault-audio-fetch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_secs):
            try:
                counts = self.run_once()
            except Exception:  # the worker must outlive any one bad pass
                self.log.exception("audio fetch pass failed")
                continue
            if counts:
                self.log.info("audio fetch pass", extra={"outcomes": counts})
