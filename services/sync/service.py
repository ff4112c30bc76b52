"""``callvault sync``: list a window of upstream conversations and archive what the archive lacks.

For each conversation listed: missing from the index, or held in a version that disagrees with the
upstream summary (an analysis re-run changes the outcome) -> GET it and archive it through the same
Archiver as the webhook; the transcript says ``has_audio`` and no audio is in place -> stream the
audio. Calls still in progress upstream are counted and left for the next run, and the watermark
(where the next run starts, minus an overlap) never passes the oldest of them.

Request budget (benchmarks/sync.py measures it): one list page per 100 calls, one GET per new or
changed call, one audio GET per missing audio, nothing else. A second run fetches nothing.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from services.core.domain import keys
from services.core.domain.errors import CallVaultError, InvalidPayload
from services.core.domain.models import CallRecord
from services.core.domain.payload import indexed_summary, indexed_title
from services.core.domain.versions import FAILURE_KIND
from services.core.ports import CallIndex

from .audio import AudioFetcher
from .ports import (
    CallArchive,
    ConversationGone,
    ConversationRefused,
    ConversationSource,
    ConversationSummary,
    UpstreamError,
    UpstreamRejected,
)
from .state import SyncState

log = logging.getLogger(__name__)

Kind = Literal["complete", "new", "updated", "processing", "failed", "gone", "erased"]
PAGE_SIZE = 100
# A document fetched from the API is versioned as seen this long before its request: a webhook's
# event_timestamp is ElevenLabs' clock, ours may run ahead, and a fetched copy must not outrank a newer
# webhook for it. A newer document that loses this way is fetched again by the next run (its summary
# differs from the row), when its time has passed the webhook's.
CLOCK_SKEW_MARGIN_SECS = 300


@dataclass(frozen=True)
class ConversationResult:
    conversation_id: str
    kind: Kind
    audio_fetched: bool = False
    audio_missing: bool = False  # dry run: the archive lacks audio upstream has
    audio_gone: bool = False  # the transcript says it has audio; upstream answers 404 for it
    reason: str | None = None  # why it failed
    lasting: bool = False  # failed in a way no retry can mend (the archive refuses the document)


@dataclass
class SyncSummary:
    after: int | None
    before: int | None
    dry_run: bool = False
    listed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    audio_fetched: int = 0
    audio_missing: list[str] = field(default_factory=list)
    audio_gone: list[str] = field(default_factory=list)  # audio the archive lacks and upstream has not
    missing: list[str] = field(default_factory=list)  # dry run: what upstream has and the archive lacks
    outdated: list[str] = field(default_factory=list)  # dry run: held here in an older version
    gone: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    watermark: int | None = None

    def add(self, result: ConversationResult) -> None:
        self.counts[result.kind] = self.counts.get(result.kind, 0) + 1
        if result.audio_fetched:
            self.audio_fetched += 1
        if result.audio_missing:
            self.audio_missing.append(result.conversation_id)
        if result.audio_gone:
            self.audio_gone.append(result.conversation_id)
        if self.dry_run and result.kind == "new":
            self.missing.append(result.conversation_id)
        if self.dry_run and result.kind == "updated":
            self.outdated.append(result.conversation_id)
        if result.kind == "gone":
            self.gone.append(result.conversation_id)
        if result.kind == "failed":
            self.failures.append((result.conversation_id, result.reason or "failed"))

    @property
    def failed(self) -> int:
        return len(self.failures)

    def failures_to_log(self, limit: int = 50) -> list[dict[str, str]]:
        """The first ``limit`` failures with their reasons, cut short: a bounded log line that says why."""
        return [{"conversation_id": cid, "reason": reason[:300]} for cid, reason in self.failures[:limit]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": {"after": self.after, "before": self.before},
            "dry_run": self.dry_run,
            "listed": self.listed,
            "already_complete": self.counts.get("complete", 0),
            "new": self.counts.get("new", 0),
            "updated": self.counts.get("updated", 0),
            "audio_fetched": self.audio_fetched,
            "still_processing": self.counts.get("processing", 0),
            "erased_here": self.counts.get("erased", 0),
            "gone_upstream": self.gone,
            "audio_gone_upstream": self.audio_gone,
            "failed": [{"conversation_id": cid, "reason": reason} for cid, reason in self.failures],
            **(
                {"missing": self.missing, "outdated": self.outdated, "audio_missing": self.audio_missing}
                if self.dry_run
                else {}
            ),
            "watermark": self.watermark,
        }


@dataclass
class Syncer:
    source: ConversationSource
    archive: CallArchive
    index: CallIndex
    state: SyncState
    clock: Callable[[], float] = time.time
    concurrency: int = 4
    overlap_seconds: int = 3600

    def window(self, since: int | None, agent_id: str | None) -> int | None:
        """Where a run starts: ``since``, else the last watermark minus the overlap, else the beginning."""
        if since is not None:
            return since
        watermark = self.state.get_watermark(_scope(agent_id))
        return None if watermark is None else max(0, watermark - self.overlap_seconds)

    def run(
        self,
        *,
        since: int | None = None,
        until: int | None = None,
        agent_id: str | None = None,
        dry_run: bool = False,
        on_listed: Callable[[int], None] | None = None,
        on_done: Callable[[ConversationResult], None] | None = None,
    ) -> SyncSummary:
        started = int(self.clock())
        after = self.window(since, agent_id)
        summary = SyncSummary(after, until, dry_run)
        oldest_open = started  # the watermark never passes a call still processing or failed to fetch
        lock = threading.Lock()
        fetcher = AudioFetcher(self.source, self.archive, self.index)

        def finish(future: "Future[tuple[ConversationSummary, ConversationResult]]") -> None:
            nonlocal oldest_open
            listed, result = future.result()
            with lock:
                summary.add(result)
                if result.kind == "processing" or (result.kind == "failed" and not result.lasting):
                    # Upstream's number: an absurd one holds the watermark back to the beginning, no further.
                    oldest_open = min(oldest_open, max(0, listed.start_time_unix_secs))
            if on_done is not None:
                on_done(result)

        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="callvault-sync")
        try:
            pending: set[Future[tuple[ConversationSummary, ConversationResult]]] = set()
            for page in self._pages(after, until, agent_id):
                summary.listed += len(page)
                if on_listed is not None:
                    on_listed(len(page))
                for listed in page:
                    # Bounded: at most a few pages of work queued, whatever the window's size.
                    while len(pending) >= self.concurrency * 4:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            finish(future)
                    pending.add(pool.submit(self._sync_one, listed, fetcher, dry_run))
            for future in pending:
                finish(future)  # waits for it
        except BaseException:
            # Ctrl-C, or the run stopped: what is queued is not started (only the calls in flight
            # finish, each write being whole), and the watermark stays where it was.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
        if not dry_run and until is None:
            watermark = self._next_watermark(since, agent_id, oldest_open)
            if watermark is not None:
                summary.watermark = watermark
                self.state.set_watermark(_scope(agent_id), watermark, int(self.clock()))
        return summary

    def _next_watermark(self, since: int | None, agent_id: str | None, oldest_open: int) -> int | None:
        """Where the next run may start. A ``--since`` window that began after where a run from the
        watermark would have begun skipped the calls in between: the watermark may not pass them (nor,
        with no watermark yet, be set at all: the next run starts from the beginning)."""
        if since is None:
            return oldest_open
        stored = self.state.get_watermark(_scope(agent_id))
        if stored is None:
            return None
        if since > max(0, stored - self.overlap_seconds):
            return min(stored, oldest_open)
        return oldest_open

    def _pages(
        self, after: int | None, before: int | None, agent_id: str | None
    ) -> Iterator[list[ConversationSummary]]:
        cursor: str | None = None
        seen: set[str] = set()  # one cursor per 100 calls: a few MB for a million
        listed: set[str] = set()  # an id a later page repeats is synced once
        # ``after`` is inclusive here ("started at or after"); the API's bound may be exclusive.
        after_bound = after - 1 if after is not None else None
        while True:
            page = self.source.list_conversations(
                after=after_bound, before=before, agent_id=agent_id, cursor=cursor, page_size=PAGE_SIZE
            )
            fresh = []
            for row in page.conversations:
                if row.conversation_id not in listed:
                    listed.add(row.conversation_id)
                    fresh.append(row)
            yield fresh
            if not page.has_more:
                return
            if not page.next_cursor:  # ending here would skip the rest and move the watermark past it
                raise UpstreamError("ElevenLabs said more pages follow but gave no cursor; stopped listing")
            # A broken or hostile upstream must not keep a run (and serve's sync thread) listing for
            # ever: a cursor seen before is a loop, and "more" after a page with nothing new is not progress.
            # Raising keeps the watermark where it was, so the next run lists this window again.
            if page.next_cursor in seen:
                raise UpstreamError("ElevenLabs returned a page cursor it had returned before; stopped listing")
            if not page.conversations:
                raise UpstreamError("ElevenLabs returned an empty page that says more follow; stopped listing")
            if not fresh:  # fresh cursors over the same calls are a loop too
                raise UpstreamError(
                    "ElevenLabs returned a page that says more follow and holds nothing it had not listed; "
                    "stopped listing"
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    def _sync_one(
        self, listed: ConversationSummary, fetcher: AudioFetcher, dry_run: bool
    ) -> tuple[ConversationSummary, ConversationResult]:
        cid = listed.conversation_id
        try:
            return listed, self._sync(listed, fetcher, dry_run)
        except ConversationGone:
            return listed, ConversationResult(cid, "gone")
        except UpstreamRejected:
            raise  # a wrong key fails every call alike: stop the run with its message
        except (InvalidPayload, ConversationRefused) as exc:
            # No store can hold it (a bad id, a start outside 2000-2099), or upstream refuses this one
            # call (a 4xx but 401/403/404/429): reported, but it does not hold the watermark back, or
            # every later run would list every call since it, for ever.
            return listed, ConversationResult(cid, "failed", reason=exc.message, lasting=True)
        except CallVaultError as exc:
            return listed, ConversationResult(cid, "failed", reason=exc.message)
        except Exception as exc:  # a defect or a library's surprise: this call fails, the run goes on
            log.exception("sync of one conversation failed", extra={"conversation_id": cid})
            return listed, ConversationResult(cid, "failed", reason=f"unexpected error ({type(exc).__name__})")

    def _sync(self, listed: ConversationSummary, fetcher: AudioFetcher, dry_run: bool) -> ConversationResult:
        cid = keys.check_conversation_id(listed.conversation_id)
        if self.archive.is_erased(cid):
            return ConversationResult(cid, "erased")  # erased here: upstream still lists it, nothing is fetched
        if not listed.is_final:
            return ConversationResult(cid, "processing")
        row = self.index.get(cid)
        kind: Kind = "complete"
        if _needs_document(row, listed):
            kind = "new" if row is None or row.transcript_key is None else "updated"
            if dry_run:
                # A missing call's audio is missing too; whether it has any, only its document says.
                return ConversationResult(cid, kind)
            observed_at = int(self.clock()) - CLOCK_SKEW_MARGIN_SECS
            document = self.source.get_conversation(cid)
            if document.get("status") not in ("done", "failed"):
                return ConversationResult(cid, "processing")
            outcome = self.archive.archive_conversation(document, observed_at)
            if outcome != "stored":
                kind = "complete"  # the archive held this content already, or newer
            row = self.index.get(cid)
        if row is None or not row.expects_audio or row.audio_key is not None:
            return ConversationResult(cid, kind)
        if dry_run:
            return ConversationResult(cid, kind, audio_missing=True)
        outcome = fetcher.fetch(cid)
        return ConversationResult(cid, kind, audio_fetched=outcome == "fetched", audio_gone=outcome == "gone")


def _scope(agent_id: str | None) -> str:
    return f"agent/{agent_id}" if agent_id else "all"


def _needs_document(row: CallRecord | None, listed: ConversationSummary) -> bool:
    """The archive lacks the call, or holds a version the upstream summary contradicts."""
    if row is None or row.transcript_key is None or row.version is None:
        return True
    if row.version.startswith(f"{FAILURE_KIND}."):
        # An initiation failure: upstream lists it as a failed call without messages. A listed
        # conversation with messages happened after all; its transcript outranks the failure.
        return bool(listed.message_count)
    return (
        (listed.call_successful is not None and row.call_successful != listed.call_successful)
        or (listed.call_duration_secs is not None and row.duration_s != listed.call_duration_secs)
        or (listed.message_count is not None and row.message_count != listed.message_count)
        or (row.status != listed.status)
        # The analysis rerun upstream with the same outcome: only its text tells.
        or _text_differs(row.summary, indexed_summary(listed.transcript_summary))
        or _text_differs(row.summary_title, indexed_title(listed.call_summary_title))
    )


def _text_differs(archived: str | None, listed: str | None) -> bool:
    """A listed text the archived one neither starts with nor begins: a listing may shorten long text,
    and a shortened copy must not fetch the same document on every run."""
    if listed is None:
        return False  # not listed, or the analysis has not run: nothing to compare
    if archived is None:
        return True
    return not (archived.startswith(listed) or listed.startswith(archived))
